//! One upload, top to bottom: plan → create → parts in parallel (bounded) with retries →
//! complete → verify; or one PutObject for small inputs.
//!
//! Semantics:
//! - At most `concurrency` parts are in flight. A file part is streamed from the file by position
//!   when its attempt starts (256 KiB reads, one ahead), so memory does not grow with part or
//!   file size. Its checksum is computed from the same reads and sent after the data as an
//!   `aws-chunked` trailer ([`ChecksumTransport::Trailer`], the default: the part is read once;
//!   the value kept for verification is the one the store checked). With
//!   [`ChecksumTransport::Header`] it is computed in a pass over the range just before and sent
//!   as a header. Stdin parts are buffered: at most `concurrency` parts in memory.
//! - Each call is retried per [`crate::retry`]; an attempt with no answer within the stall
//!   timeout (plus the time the part needs at 1 MiB/s) is cancelled and retried.
//! - With a journal ([`Uploader::with_journal`]), each confirmed part is recorded before it is
//!   reported, and re-running the same upload resumes it: the store's ListParts decides which
//!   recorded parts are skipped (see [`crate::journal`]).
//! - Cancellation: no new part starts; parts in flight get `grace` to finish (and be recorded),
//!   then are stopped. What happens to the multipart upload then is [`OnFailure`]'s choice:
//!   `Auto` keeps it (with its journal) after a cancel or exhausted retries and aborts it after a
//!   fatal error such as `AccessDenied`; `Keep` and `Abort` force one way.
//! - After Complete the object is checked with HEAD: size, and the composite checksum computed
//!   locally from the part checksums (or the multipart `ETag` when no checksum was sent). A
//!   mismatch is an [`Error::Integrity`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::checksum::Checksum;
use crate::client::{PartChecksum, PartInfo, PartsMatch, S3Client};
use crate::config::{ChecksumTransport, MIB, UploadConfig};
use crate::error::{Error, Result};
use crate::journal::{Fingerprint, JournalKey, JournalStore};
use crate::plan::{self, Plan};
use crate::progress::{Events, ProgressEvent};
use crate::retry::RetryConfig;
use crate::source::{self, Source};

/// What to upload where.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    /// The input.
    pub source: Source,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// `Content-Type` of the object.
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: Vec<(String, String)>,
}

/// What to do with a multipart upload when the upload fails or is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Abort it: nothing is left behind.
    #[default]
    Abort,
    /// Keep its parts so the upload can be resumed.
    Keep,
    /// Keep it when resuming can help (cancelled, retries exhausted), abort after a fatal error.
    Auto,
}

impl OnFailure {
    fn keeps(self, error: &Error) -> bool {
        match self {
            Self::Abort => false,
            Self::Keep => true,
            Self::Auto => matches!(error, Error::Cancelled | Error::RetriesExhausted { .. } | Error::Timeout { .. } | Error::Transport { .. }),
        }
    }
}

/// A finished, verified upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOutcome {
    /// Bytes uploaded.
    pub size: u64,
    /// The object's `ETag`.
    pub etag: String,
    /// The object's checksum (`crc32c:BASE64[-N]`), when one was sent.
    pub checksum: Option<String>,
    /// Parts (0 for a single PutObject).
    pub parts: u64,
}

/// Uploads objects with one client and one configuration.
#[derive(Debug, Clone)]
pub struct Uploader {
    client: S3Client,
    config: UploadConfig,
    journal: Option<Resume>,
    grace: Duration,
}

/// Where journals go and what identifies the endpoint in them.
#[derive(Debug, Clone)]
struct Resume {
    store: JournalStore,
    endpoint: String,
    restart: bool,
}

/// A multipart upload opened through its journal.
struct Opened {
    id: String,
    part_size: u64,
    alg: Option<crate::checksum::ChecksumAlgorithm>,
    ledger: Ledger,
}

type Target = (String, String, String);

impl Uploader {
    /// An uploader.
    #[must_use]
    pub fn new(client: S3Client, config: UploadConfig) -> Self {
        Self { client, config, journal: None, grace: Duration::from_secs(10) }
    }

    /// Makes file uploads resumable: journals in `store`, keyed with `endpoint`. With `restart`,
    /// an interrupted upload of the same file is aborted and started over.
    #[must_use]
    pub fn with_journal(mut self, store: JournalStore, endpoint: &str, restart: bool) -> Self {
        self.journal = Some(Resume { store, endpoint: endpoint.to_owned(), restart });
        self
    }

    /// How long parts in flight may finish after a cancel (default 10 s).
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The client.
    #[must_use]
    pub fn client(&self) -> &S3Client {
        &self.client
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &UploadConfig {
        &self.config
    }

    /// Uploads `req`, reporting to `events`, until done, failed or `cancel`led.
    pub async fn upload(
        &self,
        req: &UploadRequest,
        events: &Events,
        cancel: &CancellationToken,
        on_failure: OnFailure,
    ) -> Result<UploadOutcome> {
        let started = Instant::now();
        let outcome = match &req.source {
            Source::File(path) => {
                let size = source::file_size(path)?;
                let plan = plan::plan(size, self.config.part_size, self.config.single_put_threshold, &self.config.limits)?;
                if plan.is_single_put() {
                    self.put_file(req, path, size, events, cancel).await?
                } else {
                    self.multipart_file(req, path, plan, events, cancel, on_failure).await?
                }
            }
            Source::Stdin { resume_key } => {
                plan::check_part_size(self.config.part_size, &self.config.limits)?;
                self.upload_stream(req, std::io::stdin(), resume_key.as_deref(), events, cancel, on_failure).await?
            }
        };
        events.emit(ProgressEvent::Completed {
            bucket: req.bucket.clone(),
            key: req.key.clone(),
            size: outcome.size,
            etag: outcome.etag.clone(),
            checksum: outcome.checksum.clone(),
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(outcome)
    }

    async fn put_file(
        &self,
        req: &UploadRequest,
        path: &std::path::Path,
        size: u64,
        events: &Events,
        cancel: &CancellationToken,
    ) -> Result<UploadOutcome> {
        events.emit(started(req, Some(size), size, Some(0), None, 0));
        let alg = self.config.effective_checksum();
        let checksum = match alg {
            Some(a) => {
                let p = path.to_path_buf();
                Some(blocking(move || source::checksum_range(&p, 0, size, a)).await?)
            }
            None => None,
        };
        let etag = retry(&self.config.retry, self.attempt_limit(size), events, None, cancel, || async {
            let body = ByteStream::read_from()
                .path(path)
                .length(aws_sdk_s3::primitives::Length::Exact(size))
                .build()
                .await
                .map_err(|e| Error::Source { path: path.display().to_string(), source: std::io::Error::other(e) })?;
            self.client
                .put_object(&req.bucket, &req.key, body, size, req.content_type.as_deref(), &req.metadata, checksum.as_ref())
                .await
        })
        .await?;
        self.verify_single(req, size, &etag, checksum.as_ref()).await
    }

    /// Checks a single-request object with HEAD: its size, and its checksum when both sides have one.
    pub(crate) async fn verify_single(
        &self,
        req: &UploadRequest,
        size: u64,
        etag: &str,
        checksum: Option<&Checksum>,
    ) -> Result<UploadOutcome> {
        let head = self.client.head(&req.bucket, &req.key).await?;
        if head.size != size {
            return Err(Error::Integrity(format!("the store holds {} bytes, {size} were sent", head.size)));
        }
        if let (Some(c), Some((alg, value))) = (checksum, &head.checksum)
            && *alg == c.algorithm()
            && *value != c.to_base64()
        {
            return Err(Error::Integrity(format!("the store's {alg} is {value}, the file's is {}", c.to_base64())));
        }
        Ok(UploadOutcome { size, etag: etag.to_owned(), checksum: checksum.map(ToString::to_string), parts: 0 })
    }

    /// How long one attempt to send `len` bytes may take.
    pub(crate) fn attempt_limit(&self, len: u64) -> Duration {
        // The stall timeout, plus the time the body needs at a slow-but-alive 1 MiB/s.
        self.config.stall_timeout + Duration::from_secs(len / MIB)
    }

    async fn create(&self, req: &UploadRequest, events: &Events, cancel: &CancellationToken) -> Result<String> {
        let alg = self.config.effective_checksum();
        retry(&self.config.retry, self.config.stall_timeout, events, None, cancel, || {
            self.client.create_upload(&req.bucket, &req.key, req.content_type.as_deref(), &req.metadata, alg)
        })
        .await
    }

    async fn multipart_file(
        &self,
        req: &UploadRequest,
        path: &std::path::Path,
        plan: Plan,
        events: &Events,
        cancel: &CancellationToken,
        on_failure: OnFailure,
    ) -> Result<UploadOutcome> {
        let (upload_id, mut ledger, plan, alg) = match self.begin(req, path, plan, events, cancel).await {
            Err(Error::UploadGone(id)) => return self.completed_before(req, path, id).await,
            other => other?,
        };
        let target: Target = (req.bucket.clone(), req.key.clone(), upload_id);
        let result = self.send_file_parts(&target, path, plan, alg, &mut ledger, cancel).await;
        let result = match result {
            Ok(()) => self.finish(&target, plan.size, ledger.parts(), events, cancel).await,
            Err(e) => Err(e),
        };
        self.settle(&target, result, &mut ledger, events, |e| on_failure.keeps(e)).await
    }

    /// The journal names an upload the store no longer has. If a previous run completed it and
    /// died before clearing the journal (the Complete response was lost), the object is there:
    /// HEAD it and compare size and the checksum (or multipart `ETag`) the journal's parts give.
    /// Only a full match counts as done; anything else is [`Error::UploadGone`].
    async fn completed_before(&self, req: &UploadRequest, path: &std::path::Path, id: String) -> Result<UploadOutcome> {
        let gone = || Error::UploadGone(id.clone());
        let Some(resume) = &self.journal else { return Err(gone()) };
        let abs = path.canonicalize().map_err(|e| Error::Source { path: path.display().to_string(), source: e })?;
        let key = JournalKey { endpoint: &resume.endpoint, bucket: &req.bucket, key: &req.key, source: &abs };
        let Some(j) = resume.store.load(&key)? else { return Err(gone()) };
        let count = j.fingerprint.size.div_ceil(j.part_size.max(1));
        let all_parts = (1..=count).all(|n| u32::try_from(n).is_ok_and(|n| j.parts.contains_key(&n)));
        let Ok(head) = self.client.head(&req.bucket, &req.key).await else { return Err(gone()) };
        if !all_parts || head.size != j.fingerprint.size {
            return Err(gone());
        }
        let parts: Vec<PartInfo> = Ledger::new(Events::none(), Some((resume.store.clone(), j.clone()))).parts();
        if !matches!(head.compare_with_parts(&parts), Ok(PartsMatch::Checksum(_) | PartsMatch::ETag)) {
            return Err(gone());
        }
        tracing::info!(upload_id = %id, "the interrupted upload had already completed");
        resume.store.remove(&j)?;
        Ok(UploadOutcome {
            size: head.size,
            etag: head.etag,
            checksum: head.checksum.map(|(a, v)| format!("{a}:{v}")),
            parts: parts.len() as u64,
        })
    }

    /// Creates the multipart upload, or picks up an interrupted one from its journal (checked
    /// against the source and against ListParts). Returns the upload id, the ledger of confirmed
    /// parts, the plan and the checksum algorithm in force.
    async fn begin(
        &self,
        req: &UploadRequest,
        path: &std::path::Path,
        plan: Plan,
        events: &Events,
        cancel: &CancellationToken,
    ) -> Result<(String, Ledger, Plan, Option<crate::checksum::ChecksumAlgorithm>)> {
        let alg = self.config.effective_checksum();
        let Some(resume) = &self.journal else {
            let id = self.create(req, events, cancel).await?;
            events.emit(started(req, Some(plan.size), plan.part_size, Some(plan.part_count), Some(id.clone()), 0));
            return Ok((id, Ledger::new(events.clone(), None), plan, alg));
        };
        let abs = path.canonicalize().map_err(|e| Error::Source { path: path.display().to_string(), source: e })?;
        let fingerprint = Fingerprint::of(path)?;
        let opened = self.open_journal(resume, req, &abs, fingerprint, plan.part_size, events, cancel).await?;
        let plan = plan::plan(plan.size, opened.part_size, 0, &self.config.limits)?;
        let resumed = opened.ledger.done.len() as u64;
        events.emit(started(req, Some(plan.size), plan.part_size, Some(plan.part_count), Some(opened.id.clone()), resumed));
        Ok((opened.id, opened.ledger, plan, opened.alg))
    }

    /// Picks up the journaled upload of `source` (checked against `fingerprint` and ListParts),
    /// or records the intent and creates a new one. Cleans up after a crash between the two.
    #[allow(clippy::too_many_arguments)] // the identity of a journaled upload, spelled out
    async fn open_journal(
        &self,
        resume: &Resume,
        req: &UploadRequest,
        source: &std::path::Path,
        fingerprint: Fingerprint,
        part_size: u64,
        events: &Events,
        cancel: &CancellationToken,
    ) -> Result<Opened> {
        let key = JournalKey { endpoint: &resume.endpoint, bucket: &req.bucket, key: &req.key, source };
        let mut existing = resume.store.load(&key)?;
        if resume.restart && let Some(old) = existing.take() {
            if !old.upload_id.is_empty() {
                match self.client.abort(&old.bucket, &old.key, &old.upload_id).await {
                    Ok(()) | Err(Error::Service { status: 404, .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            resume.store.remove(&old)?;
        }
        if let Some(pending) = existing.take_if(|j| j.upload_id.is_empty()) {
            // A run died between CreateMultipartUpload and recording its id: abort what it may
            // have created (uploads of this key started since), so nothing is left behind.
            for u in self.client.list_uploads(&req.bucket, &req.key).await? {
                if u.key == req.key && u.initiated.is_some_and(|t| t >= pending.started - 2) {
                    tracing::info!(upload_id = %u.upload_id, "aborting an upload orphaned by a crash");
                    self.client.abort(&req.bucket, &req.key, &u.upload_id).await?;
                }
            }
        }
        if let Some(mut j) = existing {
            if j.fingerprint != fingerprint {
                return Err(Error::SourceChanged(source.display().to_string()));
            }
            let listed = match self.client.list_parts(&j.bucket, &j.key, &j.upload_id).await {
                Ok(l) => l,
                Err(e) if e.code() == Some("NoSuchUpload") => return Err(Error::UploadGone(j.upload_id.clone())),
                Err(e) => return Err(e),
            };
            j.parts = j.confirmed_by(&listed);
            resume.store.save(&j)?;
            let (id, part_size, alg) = (j.upload_id.clone(), j.part_size, j.checksum);
            return Ok(Opened { id, part_size, alg, ledger: Ledger::new(events.clone(), Some((resume.store.clone(), j))) });
        }
        // Record the intent first, so a crash right after the create can be cleaned up.
        let alg = self.config.effective_checksum();
        let mut j = JournalStore::start(&key, String::new(), part_size, alg, fingerprint);
        resume.store.save(&j)?;
        let id = self.create(req, events, cancel).await?;
        j.upload_id.clone_from(&id);
        resume.store.save(&j)?;
        Ok(Opened { id: id.clone(), part_size, alg, ledger: Ledger::new(events.clone(), Some((resume.store.clone(), j))) })
    }

    async fn send_file_parts(
        &self,
        target: &Target,
        path: &std::path::Path,
        plan: Plan,
        alg: Option<crate::checksum::ChecksumAlgorithm>,
        ledger: &mut Ledger,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let hard = self.hard_stop(cancel);
        let sem = Arc::new(Semaphore::new(self.config.concurrency));
        let mut set = JoinSet::new();
        let todo: Vec<plan::PartSpec> = plan.parts().filter(|s| !ledger.has(s.number)).collect();
        for spec in todo {
            let permit = tokio::select! {
                p = sem.clone().acquire_owned() => p.map_err(|_| Error::Cancelled)?,
                () = cancel.cancelled() => break,
            };
            let this = self.clone();
            let (target, path, ev, hard) = (target.clone(), path.to_path_buf(), ledger.events.clone(), hard.clone());
            set.spawn(async move {
                let _permit = permit;
                this.send_file_part(&target, &path, spec, alg, &ev, &hard).await
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
        first_error.map_or(Ok(()), Err)
    }

    /// A token cancelled `grace` after `cancel` is: what parts in flight obey.
    fn hard_stop(&self, cancel: &CancellationToken) -> CancellationToken {
        let hard = CancellationToken::new();
        let (c, h, grace) = (cancel.clone(), hard.clone(), self.grace);
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

    async fn send_file_part(
        &self,
        target: &Target,
        path: &std::path::Path,
        spec: plan::PartSpec,
        alg: Option<crate::checksum::ChecksumAlgorithm>,
        events: &Events,
        cancel: &CancellationToken,
    ) -> Result<PartInfo> {
        // With a trailer the checksum is computed as the body is read (per attempt: a retry
        // re-reads the range); with a header it needs a pass over the range first.
        let checksum = match (alg, self.config.checksum_transport) {
            (Some(a), ChecksumTransport::Header) => {
                let p = path.to_path_buf();
                Some(blocking(move || source::checksum_range(&p, spec.offset, spec.len, a)).await?)
            }
            _ => None,
        };
        let how = match (alg, &checksum) {
            (_, Some(c)) => PartChecksum::Header(c),
            (Some(a), None) => PartChecksum::Trailer(a),
            (None, None) => PartChecksum::None,
        };
        let t = (target.0.as_str(), target.1.as_str(), target.2.as_str());
        let (etag, checksum) = retry(&self.config.retry, self.attempt_limit(spec.len), events, Some(spec.number), cancel, || {
            self.client.upload_part_from_file(t, spec.number, path, spec.offset, spec.len, how)
        })
        .await?;
        Ok(PartInfo { number: spec.number, size: spec.len, etag, checksum })
    }

    #[allow(clippy::too_many_lines)] // one loop reads, plans and dispatches parts; splitting it hides the flow
    async fn upload_stream(
        &self,
        req: &UploadRequest,
        reader: impl std::io::Read + Send + 'static,
        resume_key: Option<&str>,
        events: &Events,
        cancel: &CancellationToken,
        on_failure: OnFailure,
    ) -> Result<UploadOutcome> {
        let reader = Arc::new(std::sync::Mutex::new(reader));
        let read = |len: u64| {
            let r = reader.clone();
            blocking(move || {
                let mut guard = r.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                source::read_stream_part(&mut *guard, len)
                    .map_err(|e| Error::Source { path: "stdin".into(), source: e })
            })
        };
        let alg = self.config.effective_checksum();
        let first_len = plan::stream_part_size(1, self.config.part_size, &self.config.limits);
        let first = read(first_len.max(self.config.single_put_threshold)).await?;
        if (first.len() as u64) < self.config.single_put_threshold {
            let size = first.len() as u64;
            events.emit(started(req, Some(size), size, Some(0), None, 0));
            let checksum = alg.map(|a| Checksum::of(a, &first));
            let etag = retry(&self.config.retry, self.attempt_limit(size), events, None, cancel, || {
                self.client.put_object(
                    &req.bucket,
                    &req.key,
                    ByteStream::from(first.clone()),
                    size,
                    req.content_type.as_deref(),
                    &req.metadata,
                    checksum.as_ref(),
                )
            })
            .await?;
            return self.verify_single(req, size, &etag, checksum.as_ref()).await;
        }
        // With a resume key the stream is journaled like a file; re-fed, its recorded parts are
        // read, checked against the journal (size and checksum) and skipped.
        let (upload_id, mut ledger, initial, alg) = match (resume_key, &self.journal) {
            (Some(k), Some(resume)) => {
                let source = std::path::PathBuf::from(format!("stdin:{k}"));
                let fingerprint = Fingerprint { size: 0, mtime_ns: 0, head_tail_crc32c: String::new() };
                let o = self.open_journal(resume, req, &source, fingerprint, self.config.part_size, events, cancel).await?;
                (o.id, o.ledger, o.part_size, o.alg)
            }
            _ => (self.create(req, events, cancel).await?, Ledger::new(events.clone(), None), self.config.part_size, alg),
        };
        let resumable = ledger.journal.is_some();
        let resumed = ledger.done.len() as u64;
        let first_len = plan::stream_part_size(1, initial, &self.config.limits);
        events.emit(started(req, None, first_len, None, Some(upload_id.clone()), resumed));
        let target: Target = (req.bucket.clone(), req.key.clone(), upload_id);
        let sent = async {
            let sem = Arc::new(Semaphore::new(self.config.concurrency));
            let mut set = JoinSet::new();
            let mut pending = first;
            let mut number = 1u32;
            loop {
                let len = plan::stream_part_size(number, initial, &self.config.limits);
                // The first read may hold more than part 1: split it.
                let data = if pending.len() as u64 > len { pending.split_to(usize::try_from(len).unwrap_or(usize::MAX)) } else {
                    let mut d = std::mem::take(&mut pending);
                    if (d.len() as u64) < len {
                        let more = read(len - d.len() as u64).await?;
                        d = if d.is_empty() { more } else { [d, more].concat().into() };
                    }
                    d
                };
                if data.is_empty() && number > 1 {
                    break;
                }
                if u64::from(number) > self.config.limits.max_parts {
                    return Err(Error::Plan(plan::PlanError::TooLarge {
                        size: ledger.bytes_done,
                        max: self.config.limits.max_object_size,
                    }));
                }
                let last = (data.len() as u64) < len;
                if let Some(recorded) = ledger.done.get(&number) {
                    let same = data.len() as u64 == recorded.size
                        && match (&recorded.checksum, alg) {
                            (Some(c), Some(a)) => Checksum::of(a, &data) == *c,
                            _ => true,
                        };
                    if !same {
                        return Err(Error::SourceChanged(format!("the stream for resume key {:?}", resume_key.unwrap_or(""))));
                    }
                    number += 1;
                    if last {
                        break;
                    }
                    continue;
                }
                let permit = tokio::select! {
                    p = sem.clone().acquire_owned() => p.map_err(|_| Error::Cancelled)?,
                    () = cancel.cancelled() => return Err(Error::Cancelled),
                };
                let this = self.clone();
                let (target, ev, cancel) = (target.clone(), events.clone(), cancel.clone());
                let n = number;
                set.spawn(async move {
                    let _permit = permit;
                    let checksum = alg.map(|a| Checksum::of(a, &data));
                    let t = (target.0.as_str(), target.1.as_str(), target.2.as_str());
                    let size = data.len() as u64;
                    let etag = retry(&this.config.retry, this.attempt_limit(size), &ev, Some(n), &cancel, || {
                        this.client.upload_part_bytes(t, n, data.clone(), checksum.as_ref())
                    })
                    .await?;
                    Ok(PartInfo { number: n, size, etag, checksum })
                });
                while let Some(r) = set.try_join_next() {
                    ledger.confirm(r)?;
                }
                number += 1;
                if last {
                    break;
                }
            }
            while let Some(r) = set.join_next().await {
                ledger.confirm(r)?;
            }
            Ok::<_, Error>(ledger.parts())
        }
        .await;
        // Without a resume key a stream cannot be fed again: a failed upload is never kept.
        let result = match sent {
            Ok(parts) => {
                let size = parts.iter().map(|p| p.size).sum();
                self.finish(&target, size, parts, events, cancel).await
            }
            Err(e) => Err(e),
        };
        // A stream that differs from the recorded one is refused; the upload stays.
        self.settle(&target, result, &mut ledger, events, |e| {
            resumable && (matches!(e, Error::SourceChanged(_)) || on_failure.keeps(e))
        })
        .await
    }

    /// Completes with the parts in order, then verifies the object.
    async fn finish(
        &self,
        target: &Target,
        size: u64,
        parts: Vec<PartInfo>,
        events: &Events,
        cancel: &CancellationToken,
    ) -> Result<UploadOutcome> {
        let t = (target.0.as_str(), target.1.as_str(), target.2.as_str());
        let list: Vec<(u32, String, Option<Checksum>)> =
            parts.iter().map(|p| (p.number, p.etag.clone(), p.checksum.clone())).collect();
        let etag = retry(&self.config.retry, self.config.stall_timeout, events, None, cancel, || {
            self.client.complete(t, &list)
        })
        .await?;
        let head = self.client.head(&target.0, &target.1).await?;
        if head.size != size {
            return Err(Error::Integrity(format!("the store holds {} bytes, {size} were sent", head.size)));
        }
        let checksum = match head.compare_with_parts(&parts) {
            Ok(PartsMatch::Checksum(c)) => Some(c),
            Ok(PartsMatch::ETag | PartsMatch::Unknown) => None,
            Err(problem) => return Err(Error::Integrity(problem)),
        };
        Ok(UploadOutcome { size, etag, checksum, parts: parts.len() as u64 })
    }

    /// Ends a multipart upload: on success its journal goes; on failure the upload is kept (with
    /// its journal) when `keep` says so, else aborted and the journal dropped. An integrity
    /// failure is never kept.
    async fn settle(
        &self,
        target: &Target,
        result: Result<UploadOutcome>,
        ledger: &mut Ledger,
        events: &Events,
        keep: impl Fn(&Error) -> bool,
    ) -> Result<UploadOutcome> {
        match result {
            Ok(o) => {
                ledger.forget();
                Ok(o)
            }
            Err(e) => {
                let keep = keep(&e) && !matches!(e, Error::Integrity(_));
                let e = self.fail(target, e, events, keep).await;
                if !keep {
                    ledger.forget();
                }
                Err(e)
            }
        }
    }

    /// Handles a failed multipart upload: abort it (unless `keep`), report, return the error.
    async fn fail(&self, target: &Target, error: Error, events: &Events, keep: bool) -> Error {
        let aborted = !keep && {
            let never = CancellationToken::new();
            let quick = RetryConfig { max_attempts: 3, ..self.config.retry };
            retry(&quick, self.config.stall_timeout, &Events::none(), None, &never, || {
                self.client.abort(&target.0, &target.1, &target.2)
            })
            .await
            .inspect_err(|e| tracing::warn!(error = %e, upload_id = %target.2, "could not abort the upload"))
            .is_ok()
        };
        events.emit(ProgressEvent::Failed {
            error: error.to_string(),
            aborted,
            upload_id: (!aborted).then(|| target.2.clone()),
        });
        error
    }
}

/// Parts confirmed so far: recorded in the journal (when there is one) before they are reported.
struct Ledger {
    done: BTreeMap<u32, PartInfo>,
    bytes_done: u64,
    events: Events,
    journal: Option<(JournalStore, crate::journal::Journal)>,
}

impl Ledger {
    fn new(events: Events, journal: Option<(JournalStore, crate::journal::Journal)>) -> Self {
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

    fn has(&self, number: u32) -> bool {
        self.done.contains_key(&number)
    }

    /// Records a finished part task: journal first, then the event.
    fn confirm(&mut self, joined: std::result::Result<Result<PartInfo>, tokio::task::JoinError>) -> Result<()> {
        let part = joined.map_err(|e| Error::Config(format!("a part task failed: {e}")))??;
        if let Some((store, j)) = &mut self.journal {
            j.parts.insert(part.number, crate::journal::JournalPart {
                size: part.size,
                etag: part.etag.clone(),
                checksum: part.checksum.as_ref().map(Checksum::to_base64),
            });
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

    fn parts(&self) -> Vec<PartInfo> {
        self.done.values().cloned().collect()
    }

    /// Removes the journal (the upload completed or was aborted).
    fn forget(&mut self) {
        if let Some((store, j)) = self.journal.take()
            && let Err(e) = store.remove(&j)
        {
            tracing::warn!(error = %e, "could not remove the journal");
        }
    }
}

fn started(
    req: &UploadRequest,
    size: Option<u64>,
    part_size: u64,
    part_count: Option<u64>,
    upload_id: Option<String>,
    resumed_parts: u64,
) -> ProgressEvent {
    ProgressEvent::Started {
        bucket: req.bucket.clone(),
        key: req.key.clone(),
        size,
        part_size,
        part_count,
        upload_id,
        resumed_parts,
    }
}

/// Runs blocking file work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Config(format!("a blocking task failed: {e}")))?
}

/// Runs `f` until it succeeds, fails fatally, runs out of attempts, or is cancelled. Each
/// attempt is bounded by `limit`.
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
