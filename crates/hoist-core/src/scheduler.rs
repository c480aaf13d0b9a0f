//! The parts of one multipart upload, in flight: the one dispatch loop that file and stream parts
//! both go through, the retry loop every call of the engine uses, and the ledger of confirmed
//! parts. What to upload and what happens before (create, resume) and after (complete, verify,
//! abort) is `upload`'s; this module never creates, completes or aborts an upload.
//!
//! Decisions:
//! - At most `concurrency` parts are in flight (one semaphore permit each). A file part is a
//!   [`Job::File`]: only its position travels, and it is read from the file when its attempt
//!   starts (a retry re-reads; nothing is held for retries), so memory does not grow with part or
//!   file size. A stream part is read before it waits for a permit, so at most `concurrency + 1`
//!   stream parts are in memory; a retry resends the same [`Bytes`] (a reference, not a copy).
//! - One cancel semantics for both sources: after a cancel no new part starts; parts in flight get
//!   `grace` to finish (and be recorded), then are stopped.
//! - The first failed part ends the dispatch at once (the parts still in flight are dropped): the
//!   caller decides whether to keep or abort the upload.
//! - A confirmed part is recorded in the journal (when there is one) before it is reported, and as
//!   soon as it finishes (also while the loop waits for a permit), so a crash re-sends only the
//!   parts still in flight.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::client::{ObjectClient, PartChecksum, PartInfo, UploadRef};
use crate::config::{ChecksumTransport, MIB, ProviderLimits};
use crate::error::{Error, Result};
use crate::journal::{Journal, JournalPart, JournalStore};
use crate::plan::{self, PartSpec, Plan};
use crate::progress::{Events, ProgressEvent};
use crate::retry::RetryConfig;
use crate::source;

/// How long one attempt to send `len` bytes may take: the stall timeout, plus the time the body
/// needs at a slow-but-alive 1 MiB/s.
#[must_use]
pub(crate) fn attempt_limit(stall: Duration, len: u64) -> Duration {
    stall + Duration::from_secs(len / MIB)
}

/// Runs `f` until it succeeds, fails fatally, runs out of attempts, or is cancelled. Each
/// attempt is bounded by `limit`; retries wait per `cfg` and are reported as events.
pub(crate) async fn retry<T, F, Fut>(
    cfg: &RetryConfig,
    limit: Duration,
    events: &Events,
    part: Option<u32>,
    cancel: &CancellationToken,
    mut f: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let start = Instant::now();
    let mut attempt = 1u32;
    loop {
        let result = tokio::select! {
            () = cancel.cancelled() => return Err(Error::Cancelled),
            r = tokio::time::timeout(limit, f()) => r.unwrap_or(Err(Error::Timeout { operation: "request", after: limit })),
        };
        let error = match result {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !error.is_retryable() {
            return Err(error);
        }
        if attempt >= cfg.max_attempts {
            return Err(Error::RetriesExhausted { last: Box::new(error), attempts: attempt, elapsed: start.elapsed() });
        }
        let delay = cfg.delay(attempt - 1);
        tracing::debug!(?part, attempt, ?delay, error = %error, "retrying");
        events.emit(ProgressEvent::Retry {
            part_number: part,
            attempt,
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error: error.to_string(),
        });
        tokio::select! {
            () = cancel.cancelled() => return Err(Error::Cancelled),
            () = tokio::time::sleep(delay) => {}
        }
        attempt += 1;
    }
}

/// What every part of one upload shares.
#[derive(Debug, Clone)]
pub(crate) struct PartContext {
    /// The client.
    pub(crate) client: Arc<dyn ObjectClient>,
    /// The upload the parts belong to.
    pub(crate) upload: Arc<UploadRef>,
    /// Retry policy per part.
    pub(crate) retry: RetryConfig,
    /// Stall timeout (see [`attempt_limit`]).
    pub(crate) stall: Duration,
    /// Checksum algorithm of the parts, if any.
    pub(crate) alg: Option<ChecksumAlgorithm>,
    /// How a file part's checksum travels.
    pub(crate) transport: ChecksumTransport,
    /// Where retries are reported.
    pub(crate) events: Events,
}

/// One part to send.
#[derive(Debug)]
pub(crate) enum Job {
    /// A range of a file, read by position when its attempt starts.
    File {
        /// The file.
        path: Arc<Path>,
        /// Which range, as which part.
        spec: PartSpec,
    },
    /// Bytes read from a stream.
    Bytes {
        /// Part number.
        number: u32,
        /// The part's bytes.
        data: Bytes,
    },
}

impl Job {
    /// Sends the part (with retries) and answers what the store confirmed.
    async fn send(self, cx: &PartContext, cancel: &CancellationToken) -> Result<PartInfo> {
        match self {
            Self::File { path, spec } => {
                // With a trailer the checksum is computed as the body is read (per attempt: a retry
                // re-reads the range); with a header it needs a pass over the range first.
                let checksum = match (cx.alg, cx.transport) {
                    (Some(a), ChecksumTransport::Header) => {
                        let p = path.clone();
                        Some(blocking(move || source::checksum_range(&p, spec.offset, spec.len, a)).await?)
                    }
                    _ => None,
                };
                let how = match (cx.alg, &checksum) {
                    (_, Some(c)) => PartChecksum::Header(c),
                    (Some(a), None) => PartChecksum::Trailer(a),
                    (None, None) => PartChecksum::None,
                };
                let limit = attempt_limit(cx.stall, spec.len);
                let (etag, checksum) = retry(&cx.retry, limit, &cx.events, Some(spec.number), cancel, || {
                    cx.client.upload_part_from_file(&cx.upload, spec.number, &path, spec.offset, spec.len, how)
                })
                .await?;
                Ok(PartInfo { number: spec.number, size: spec.len, etag, checksum })
            }
            Self::Bytes { number, data } => {
                let checksum = cx.alg.map(|a| Checksum::of(a, &data));
                let size = data.len() as u64;
                let etag = retry(&cx.retry, attempt_limit(cx.stall, size), &cx.events, Some(number), cancel, || {
                    cx.client.upload_part_bytes(&cx.upload, number, data.clone(), checksum.as_ref())
                })
                .await?;
                Ok(PartInfo { number, size, etag, checksum })
            }
        }
    }
}

/// Where the parts come from.
pub(crate) enum Feed {
    /// A file's planned ranges not yet confirmed.
    File {
        /// The file.
        path: Arc<Path>,
        /// The ranges left, in order.
        todo: std::vec::IntoIter<PartSpec>,
    },
    /// A stream, read part by part.
    Stream(StreamFeed),
}

impl Feed {
    /// The parts of `plan` over the file at `path` that `ledger` has not confirmed.
    pub(crate) fn file(path: &Path, plan: &Plan, ledger: &Ledger) -> Self {
        let todo: Vec<PartSpec> = plan.parts().filter(|s| !ledger.done.contains_key(&s.number)).collect();
        Self::File { path: Arc::from(path), todo: todo.into_iter() }
    }

    /// The next part to send; `None` when there is none left.
    async fn next(&mut self, ledger: &Ledger) -> Result<Option<Job>> {
        match self {
            Self::File { path, todo } => Ok(todo.next().map(|spec| Job::File { path: path.clone(), spec })),
            Self::Stream(s) => s.next(ledger).await,
        }
    }
}

/// A reader shared with the blocking pool.
type SharedReader = Arc<Mutex<dyn std::io::Read + Send>>;

/// A stream cut into parts of growing size ([`plan::stream_part_size`]). Parts the ledger holds
/// (a journaled stream fed again) are read, checked against the record and skipped.
pub(crate) struct StreamFeed {
    reader: SharedReader,
    /// Read but not yet cut into a part.
    pending: Bytes,
    /// The next part's number.
    number: u32,
    /// The part size the growth starts from.
    initial: u64,
    limits: ProviderLimits,
    alg: Option<ChecksumAlgorithm>,
    /// What names the stream in errors.
    name: String,
    finished: bool,
}

impl StreamFeed {
    /// A stream over `reader`, named `name` in errors.
    pub(crate) fn new(reader: impl std::io::Read + Send + 'static, name: String, limits: ProviderLimits) -> Self {
        Self {
            reader: Arc::new(Mutex::new(reader)),
            pending: Bytes::new(),
            number: 1,
            initial: 0,
            limits,
            alg: None,
            name,
            finished: false,
        }
    }

    /// Reads up to `len` bytes ahead (fewer only at the end of the stream) and keeps them for the
    /// parts; answers them, to decide between one PutObject and a multipart upload.
    pub(crate) async fn read_ahead(&mut self, len: u64) -> Result<Bytes> {
        let more = self.read(len.saturating_sub(self.pending.len() as u64)).await?;
        self.pending = concat(std::mem::take(&mut self.pending), more);
        Ok(self.pending.clone())
    }

    /// Sets the part size the growth starts from and the parts' checksum algorithm.
    pub(crate) fn parts_of(mut self, initial: u64, alg: Option<ChecksumAlgorithm>) -> Self {
        self.initial = initial;
        self.alg = alg;
        self
    }

    async fn read(&self, len: u64) -> Result<Bytes> {
        let (r, name) = (self.reader.clone(), self.name.clone());
        blocking(move || {
            let mut guard = r.lock().unwrap_or_else(PoisonError::into_inner);
            source::read_stream_part(&mut &mut *guard, len).map_err(|e| Error::Source { path: name, source: e })
        })
        .await
    }

    /// Whether the rest of the stream is exactly the parts `ledger` records (each read and checked
    /// against its record, as a resume does): how a stream fed again proves that an upload the
    /// store no longer has completed with these bytes.
    pub(crate) async fn matches_record(mut self, ledger: &Ledger) -> Result<bool> {
        Ok(self.next(ledger).await?.is_none())
    }

    async fn next(&mut self, ledger: &Ledger) -> Result<Option<Job>> {
        loop {
            if self.finished {
                return Ok(None);
            }
            let len = plan::stream_part_size(self.number, self.initial, &self.limits);
            // The first read may hold more than part 1: split it.
            let data = if self.pending.len() as u64 > len {
                self.pending.split_to(usize::try_from(len).unwrap_or(usize::MAX))
            } else {
                let have = std::mem::take(&mut self.pending);
                let short = len.saturating_sub(have.len() as u64);
                if short > 0 { concat(have, self.read(short).await?) } else { have }
            };
            if data.is_empty() && self.number > 1 {
                return Ok(None);
            }
            if u64::from(self.number) > self.limits.max_parts {
                return Err(Error::Plan(plan::PlanError::TooLarge {
                    size: ledger.bytes_done,
                    max: self.limits.max_object_size,
                }));
            }
            let number = self.number;
            self.number += 1;
            self.finished = (data.len() as u64) < len;
            let Some(recorded) = ledger.done.get(&number) else {
                return Ok(Some(Job::Bytes { number, data }));
            };
            let same = data.len() as u64 == recorded.size
                && match (&recorded.checksum, self.alg) {
                    (Some(c), Some(a)) => Checksum::of(a, &data) == *c,
                    _ => true,
                };
            if !same {
                return Err(Error::SourceChanged(self.name.clone()));
            }
        }
    }
}

/// `a` then `b`, copying only when both hold bytes.
fn concat(a: Bytes, b: Bytes) -> Bytes {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b,
        (_, true) => a,
        _ => [a, b].concat().into(),
    }
}

/// Sends every part `feed` yields, at most `concurrency` at a time, recording each in `ledger`.
/// Answers all confirmed parts in order, or the first failure; [`Error::Cancelled`] after a
/// cancel (parts in flight had `grace` to finish and were recorded).
pub(crate) async fn schedule(
    cx: PartContext,
    mut feed: Feed,
    ledger: &mut Ledger,
    concurrency: usize,
    cancel: &CancellationToken,
    grace: Duration,
) -> Result<Vec<PartInfo>> {
    let hard = hard_stop(cancel, grace);
    // Ends the grace timer's task with the schedule.
    let _stop_timer = hard.clone().drop_guard();
    let sem = Arc::new(Semaphore::new(concurrency));
    let mut set = JoinSet::new();
    loop {
        let next = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            n = feed.next(ledger) => n?,
        };
        let Some(job) = next else { break };
        // While waiting for a permit, parts that finish are recorded at once: a part the store
        // confirmed but the journal does not hold would be sent again after a crash.
        let permit = loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break None,
                Some(r) = set.join_next(), if !set.is_empty() => ledger.confirm(r)?,
                // The semaphore is never closed.
                p = sem.clone().acquire_owned() => break Some(p.map_err(|_| Error::Cancelled)?),
            }
        };
        let Some(permit) = permit else { break };
        let (cx, hard) = (cx.clone(), hard.clone());
        set.spawn(async move {
            let _permit = permit;
            job.send(&cx, &hard).await
        });
        while let Some(r) = set.try_join_next() {
            ledger.confirm(r)?;
        }
    }
    // After a cancel, parts in flight finish (or are stopped after the grace period).
    let mut first_error = None;
    while let Some(r) = set.join_next().await {
        if let Err(e) = ledger.confirm(r) {
            if !cancel.is_cancelled() {
                return Err(e);
            }
            first_error.get_or_insert(e);
        }
    }
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    first_error.map_or_else(|| Ok(ledger.parts()), Err)
}

/// A token cancelled `grace` after `cancel` is: what parts in flight obey.
fn hard_stop(cancel: &CancellationToken, grace: Duration) -> CancellationToken {
    let hard = CancellationToken::new();
    let (c, h) = (cancel.clone(), hard.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = c.cancelled() => {
                tokio::time::sleep(grace).await;
                h.cancel();
            }
            () = h.cancelled() => {}
        }
    });
    hard
}

/// Parts confirmed so far: recorded in the journal (when there is one) before they are reported.
#[derive(Debug)]
pub(crate) struct Ledger {
    done: BTreeMap<u32, PartInfo>,
    bytes_done: u64,
    events: Events,
    journal: Option<(JournalStore, Journal)>,
}

impl Ledger {
    /// A ledger holding the parts `journal` records (none without one).
    pub(crate) fn new(events: Events, journal: Option<(JournalStore, Journal)>) -> Self {
        let mut done = BTreeMap::new();
        if let Some((_, j)) = &journal {
            for (n, p) in &j.parts {
                let checksum = j.checksum.zip(p.checksum.as_deref()).and_then(|(a, v)| Checksum::from_base64(a, v));
                done.insert(*n, PartInfo { number: *n, size: p.size, etag: p.etag.clone(), checksum });
            }
        }
        let bytes_done = done.values().map(|p| p.size).sum();
        Self { done, bytes_done, events, journal }
    }

    /// Parts confirmed so far.
    pub(crate) fn count(&self) -> u64 {
        self.done.len() as u64
    }

    /// Whether a journal records the parts.
    pub(crate) fn journaled(&self) -> bool {
        self.journal.is_some()
    }

    /// Records a finished part task: journal first, then the event.
    fn confirm(&mut self, joined: std::result::Result<Result<PartInfo>, tokio::task::JoinError>) -> Result<()> {
        let part = joined.map_err(|e| crate::error::task_lost("a part task", &e))??;
        if let Some((store, j)) = &mut self.journal {
            j.parts.insert(
                part.number,
                JournalPart {
                    size: part.size,
                    etag: part.etag.clone(),
                    checksum: part.checksum.as_ref().map(Checksum::to_base64),
                },
            );
            store.save(j)?;
        }
        self.bytes_done += part.size;
        self.events.emit(ProgressEvent::PartDone {
            part_number: part.number,
            size: part.size,
            etag: part.etag.clone(),
            bytes_done: self.bytes_done,
        });
        self.done.insert(part.number, part);
        Ok(())
    }

    /// The confirmed parts, in order.
    pub(crate) fn parts(&self) -> Vec<PartInfo> {
        self.done.values().cloned().collect()
    }

    /// Removes the journal (the upload completed or was aborted).
    pub(crate) fn forget(&mut self) {
        if let Some((store, j)) = self.journal.take()
            && let Err(e) = store.remove(&j)
        {
            tracing::warn!(error = %e, "could not remove the journal");
        }
    }
}

/// Runs blocking file work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| crate::error::task_lost("a blocking file task", &e))?
}
