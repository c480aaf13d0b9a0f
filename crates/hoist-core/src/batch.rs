//! Many files in one run: the tree walk ([`crate::tree`]) feeds one scheduler that uploads small
//! files as single `PutObject` requests and big ones as multipart uploads ([`Uploader`]), under one
//! request budget and one byte budget, records each confirmed file in the batch journal
//! ([`crate::batch_journal`]) and reports [`BatchEvent`]s. It does not own how one big file is
//! uploaded (that is [`Uploader`]'s), nor rendering (the CLI's).
//!
//! Semantics:
//! - Budgets: at most `max_requests` requests and `max_bytes` bytes of file data in flight across
//!   all files. A small file costs one request and its size; a multipart file costs the
//!   uploader's part concurrency in requests and that many parts in bytes, so many small
//!   `PutObject` requests run side by side while only a few big parts do. One dispatch loop takes both
//!   budgets in the same order, so it never deadlocks; a file whose cost exceeds a budget is
//!   charged the whole budget.
//! - Small files (up to [`BatchConfig::inline_max`]) are read once into memory: the checksum and
//!   the body come from the same bytes, and the store's answer (the checksum it verified) is the
//!   check, without a HEAD. The file's size and modification time are taken before and after
//!   the read; if they differ the file changed while being read and is reported, not uploaded.
//!   Larger files go through [`Uploader::upload`] (with its checksum and verification) and are
//!   checked the same way before and after.
//! - A file that fails is reported and the others go on; the summary lists failures. An error
//!   that dooms every file (credentials refused, bucket missing) stops the batch: it is returned.
//! - Resume: with a journal, a file the previous run recorded with the same key, size and
//!   modification time is skipped without being opened. Multipart uploads in flight when the
//!   run died resume their parts through their own journals. The journal goes when a batch ends
//!   with every file done, except when skipping what exists (`sync`): then it stays as the
//!   record of what was stored, and a file it proves unchanged is skipped unread if the listing
//!   still shows its key with the recorded size and `ETag` (a file rewritten with the same size
//!   and modification time would be missed, as by any size-and-time check; `--restart` drops
//!   the record).
//! - Skip what is there ([`BatchRequest::skip_existing`]): the prefix is listed once; a file whose
//!   key exists with the same size is compared by content ([`Compare::Checksum`]: the `ETag` as
//!   an MD5, or a multipart `ETag` recomputed with this configuration's part size, else the
//!   full-object checksum from HEAD) or, when asked, by modification time
//!   ([`Compare::SizeMtime`]: the object is not older than the file). What was compared is said
//!   in the skip reason; a file that cannot be compared is uploaded.
//! - Cancellation: nothing new starts; what is in flight finishes or stops as [`Uploader`] does;
//!   the journal is kept and the summary says the batch was interrupted.

use std::collections::HashMap;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batch_journal::{BatchId, BatchJournal, DoneFile};
use crate::checksum::{self, Checksum};
use crate::client::ListedObject;
use crate::client::ObjectMeta;
use crate::config::MIB;
use crate::error::{Category, Error, Result};
use crate::journal::JournalStore;
use crate::plan;
use crate::progress::{Events, ProgressEvent};
use crate::scheduler::{blocking, retry};
use crate::source::{self, Source};
use crate::tree::{self, FileEntry, Found, TreeOptions};
use crate::upload::{self, OnFailure, SingleBody, UploadRequest, Uploader};

/// Default requests in flight across a batch. Measured with 10,000 files of 16 KiB into the
/// embedded store on the 2-core development machine (see BENCHMARKS.md).
pub const DEFAULT_MAX_REQUESTS: usize = 64;
/// Most requests in flight a batch allows.
pub const MAX_REQUESTS: usize = 1024;
/// Default bytes of file data in flight across a batch.
pub const DEFAULT_MAX_BYTES: u64 = 64 * MIB;
/// Files up to this size are read into memory and sent from there.
pub const DEFAULT_INLINE_MAX: u64 = MIB;
/// Failures listed by name in a summary (the rest are counted).
pub const MAX_LISTED_FAILURES: usize = 100;
/// Walk entries read ahead of the uploads.
const WALK_AHEAD: usize = 1024;
/// Least time between two [`BatchEvent::Walked`] reports.
const WALKED_EVERY: Duration = Duration::from_millis(200);

/// Budgets of a batch. Setters clamp.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    max_requests: usize,
    max_bytes: u64,
    inline_max: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_requests: DEFAULT_MAX_REQUESTS, max_bytes: DEFAULT_MAX_BYTES, inline_max: DEFAULT_INLINE_MAX }
    }
}

impl BatchConfig {
    /// Requests in flight across all files, clamped to `1..=1024`.
    #[must_use]
    pub fn max_requests(mut self, n: usize) -> Self {
        self.max_requests = n.clamp(1, MAX_REQUESTS);
        self
    }

    /// Bytes of file data in flight across all files, clamped to 1 MiB..4 GiB.
    #[must_use]
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n.clamp(MIB, u64::from(u32::MAX));
        self
    }

    /// Files up to this size are read into memory whole, clamped to at most 16 MiB.
    #[must_use]
    pub fn inline_max(mut self, n: u64) -> Self {
        self.inline_max = n.min(16 * MIB);
        self
    }
}

/// How a file is compared with an object of the same key and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    /// By content: MD5 `ETag`, multipart `ETag` or full-object checksum (the file is read).
    Checksum,
    /// By modification time: the object is not older than the file (the file is not read).
    SizeMtime,
}

/// What to upload where.
#[derive(Debug, Clone)]
pub struct BatchRequest {
    /// Files and directories.
    pub sources: Vec<PathBuf>,
    /// Bucket.
    pub bucket: String,
    /// Key prefix (`""` or ending in `/` for folder-like keys).
    pub prefix: String,
    /// Walk options.
    pub tree: TreeOptions,
    /// Skip files the destination already holds, compared this way.
    pub skip_existing: Option<Compare>,
    /// `Content-Type` of every object.
    pub content_type: Option<String>,
    /// User metadata of every object.
    pub metadata: Vec<(String, String)>,
}

/// A file that was not uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedFile {
    /// Where it is.
    pub path: String,
    /// Why.
    pub error: String,
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchSummary {
    /// Files uploaded by this run.
    pub files_uploaded: u64,
    /// Their bytes.
    pub bytes_uploaded: u64,
    /// Files skipped (done in an earlier run, or already in the store).
    pub files_skipped: u64,
    /// Files that failed.
    pub files_failed: u64,
    /// Things not uploaded by design (links not followed, FIFOs, loops).
    pub ignored: u64,
    /// The first [`MAX_LISTED_FAILURES`] failures.
    pub failures: Vec<FailedFile>,
    /// Whether the run was cancelled before it finished.
    pub interrupted: bool,
    /// Wall time in seconds.
    pub seconds: f64,
}

impl BatchSummary {
    fn fail(&mut self, path: &Path, error: &Error) {
        self.files_failed += 1;
        if self.failures.len() < MAX_LISTED_FAILURES {
            self.failures.push(FailedFile { path: path.display().to_string(), error: error.to_string() });
        }
    }
}

/// What a batch reports while it works. Field names are stable (scripts parse them).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BatchEvent {
    /// The walk's running totals (at most every 200 ms, and once with `finished` at its end).
    Walked {
        /// Files found so far.
        files: u64,
        /// Their bytes.
        bytes: u64,
        /// Whether the walk is over (the totals are final).
        finished: bool,
    },
    /// A file is in the store and verified.
    FileDone {
        /// Local path.
        path: String,
        /// Object key.
        key: String,
        /// Size.
        size: u64,
        /// The object's `ETag`.
        etag: String,
        /// The object's checksum (`alg:BASE64[-N]`), when one was sent.
        checksum: Option<String>,
        /// Parts (0 for a single PutObject).
        parts: u64,
        /// Seconds from its start to verified.
        seconds: f64,
    },
    /// A file was not uploaded because the store already has it.
    FileSkipped {
        /// Local path.
        path: String,
        /// Object key.
        key: String,
        /// Size.
        size: u64,
        /// What proved it (the batch journal, or what was compared).
        reason: String,
    },
    /// A file could not be uploaded; the batch goes on.
    FileFailed {
        /// Local path.
        path: String,
        /// Object key, when it has one.
        key: Option<String>,
        /// What went wrong.
        error: String,
    },
    /// Something was not uploaded by design (a link not followed, a FIFO, a loop).
    Ignored {
        /// Local path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A part of a multipart file was stored.
    PartDone {
        /// Object key.
        key: String,
        /// Part number.
        part_number: u32,
        /// Its size.
        size: u64,
    },
    /// A call for a multipart file failed and will be retried.
    Retry {
        /// Object key.
        key: String,
        /// Part number (absent for non-part calls).
        part_number: Option<u32>,
        /// Attempt that failed (1-based).
        attempt: u32,
        /// Delay before the next attempt, in milliseconds.
        delay_ms: u64,
        /// What failed.
        error: String,
    },
    /// The batch is over (last event).
    Summary(BatchSummary),
}

/// Uploads batches of files with one [`Uploader`] (used as is for big files).
#[derive(Debug, Clone)]
pub struct BatchUploader {
    uploader: Uploader,
    config: BatchConfig,
    journal: Option<(JournalStore, String, bool)>,
}

/// How one file ended.
enum Outcome {
    Uploaded {
        entry: FileEntry,
        size: u64,
        mtime_ns: i128,
        etag: String,
        checksum: Option<String>,
        parts: u64,
        seconds: f64,
    },
    /// `etag`: the object's, when the comparison proved the file is in it (recorded).
    Skipped {
        entry: FileEntry,
        reason: String,
        etag: Option<String>,
    },
    Failed {
        entry: FileEntry,
        error: Error,
    },
}

/// What every file task shares.
struct Shared {
    uploader: Uploader,
    inline_max: u64,
    bucket: String,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
    existing: Option<(Compare, HashMap<String, ListedObject>)>,
    events: Events<BatchEvent>,
    cancel: CancellationToken,
}

/// Size and modification time: what "the file did not change" is checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self { size: meta.len(), mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()) }
    }
}

impl BatchUploader {
    /// A batch uploader. Big files go through `uploader` (give it its journal first, with
    /// [`Uploader::with_journal`], to resume their parts).
    #[must_use]
    pub fn new(uploader: Uploader, config: BatchConfig) -> Self {
        Self { uploader, config, journal: None }
    }

    /// Makes batches resumable: their journals go in `store`'s directory, keyed with
    /// `endpoint`. With `restart`, a previous run's record is dropped and every file is sent.
    #[must_use]
    pub fn with_journal(mut self, store: JournalStore, endpoint: &str, restart: bool) -> Self {
        self.journal = Some((store, endpoint.to_owned(), restart));
        self
    }

    /// Uploads `req`, reporting to `events`, until every file is done or failed, or `cancel`led.
    /// Per-file failures are in the summary; an `Err` is a failure of the batch itself (its
    /// journal, listing the destination, or an error every file would meet).
    pub async fn run(
        &self,
        req: &BatchRequest,
        events: &Events<BatchEvent>,
        cancel: &CancellationToken,
    ) -> Result<BatchSummary> {
        let started = Instant::now();
        // Credentials refused or a missing bucket fail once here, not once per file.
        self.uploader.client().head_bucket(&req.bucket).await?;
        let mut journal = self.open_journal(req)?;
        let existing = self.list_existing(req).await?;
        let stop = cancel.child_token();
        let shared = Arc::new(Shared {
            uploader: self.uploader.clone(),
            inline_max: self.config.inline_max,
            bucket: req.bucket.clone(),
            content_type: req.content_type.clone(),
            metadata: req.metadata.clone(),
            existing,
            events: events.clone(),
            cancel: stop.clone(),
        });
        let (walker, mut rx) = spawn_walk(req)?;
        let requests = Arc::new(Semaphore::new(self.config.max_requests));
        let bytes = Arc::new(Semaphore::new(usize::try_from(self.config.max_bytes).unwrap_or(usize::MAX)));
        let mut set: JoinSet<Outcome> = JoinSet::new();
        let mut summary = BatchSummary::default();
        let mut fatal: Option<Error> = None;
        let (mut found_files, mut found_bytes, mut last_walked) = (0u64, 0u64, Instant::now());
        loop {
            let found = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                f = rx.recv() => f,
            };
            let Some(found) = found else { break };
            let entry = match found {
                Found::Ignored { path, reason } => {
                    summary.ignored += 1;
                    events.emit(BatchEvent::Ignored { path: path.display().to_string(), reason });
                    continue;
                }
                Found::Failed { path, error } => {
                    events.emit(BatchEvent::FileFailed {
                        path: path.display().to_string(),
                        key: None,
                        error: error.to_string(),
                    });
                    summary.fail(&path, &error);
                    continue;
                }
                Found::File(entry) => entry,
            };
            found_files += 1;
            found_bytes += entry.size;
            if last_walked.elapsed() >= WALKED_EVERY {
                last_walked = Instant::now();
                events.emit(BatchEvent::Walked { files: found_files, bytes: found_bytes, finished: false });
            }
            if let Some(reason) = journal.as_ref().and_then(|j| shared.proven(j, &entry)) {
                summary.files_skipped += 1;
                events.emit(BatchEvent::FileSkipped {
                    path: entry.path.display().to_string(),
                    key: entry.key,
                    size: entry.size,
                    reason,
                });
                continue;
            }
            let (want_requests, want_bytes) = self.cost(&entry);
            let permits = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                p = take(&bytes, want_bytes, &requests, want_requests) => p,
            };
            let shared = shared.clone();
            set.spawn(async move {
                let _permits = permits;
                shared.one(entry).await
            });
            while let Some(joined) = set.try_join_next() {
                settle(joined, &mut summary, journal.as_mut(), events, &mut fatal, &stop)?;
            }
        }
        while let Some(joined) = set.join_next().await {
            settle(joined, &mut summary, journal.as_mut(), events, &mut fatal, &stop)?;
        }
        drop(rx);
        let _ = walker.join();
        if !stop.is_cancelled() {
            events.emit(BatchEvent::Walked { files: found_files, bytes: found_bytes, finished: true });
        }
        if let Some(e) = fatal {
            if let Some(j) = journal.as_mut() {
                j.sync()?;
            }
            return Err(e);
        }
        summary.interrupted = cancel.is_cancelled();
        if let Some(j) = journal {
            close_journal(j, &summary, req)?;
        }
        summary.seconds = started.elapsed().as_secs_f64();
        events.emit(BatchEvent::Summary(summary.clone()));
        Ok(summary)
    }

    /// With [`BatchRequest::skip_existing`], what the destination holds under the prefix (listed
    /// once, before any upload).
    async fn list_existing(&self, req: &BatchRequest) -> Result<Option<(Compare, HashMap<String, ListedObject>)>> {
        let Some(compare) = req.skip_existing else { return Ok(None) };
        let mut listed = HashMap::new();
        self.uploader
            .client()
            .list_objects(&req.bucket, &req.prefix, &mut |o| {
                listed.insert(o.key.clone(), o);
            })
            .await?;
        Ok(Some((compare, listed)))
    }

    /// The batch journal of `req`, loaded (or dropped first, with `restart`), if batches are journaled.
    fn open_journal(&self, req: &BatchRequest) -> Result<Option<BatchJournal>> {
        let Some((store, endpoint, restart)) = &self.journal else { return Ok(None) };
        let id = BatchId::new(endpoint, &req.bucket, &req.prefix, &req.sources)?;
        let j = BatchJournal::open(store.dir(), &id)?;
        if !*restart {
            return Ok(Some(j));
        }
        j.remove()?;
        BatchJournal::open(store.dir(), &id).map(Some)
    }

    /// Requests and bytes a file holds while it is uploaded, each at most the whole budget.
    fn cost(&self, entry: &FileEntry) -> (u32, u32) {
        let cfg = self.uploader.config();
        let (requests, bytes) = if entry.size <= self.config.inline_max || entry.size < cfg.single_put_threshold {
            (1, entry.size.max(1))
        } else {
            let n = cfg.concurrency as u64;
            (n, cfg.part_size.saturating_mul(n))
        };
        let clamp = |v: u64, max: u64| u32::try_from(v.min(max)).unwrap_or(u32::MAX);
        (clamp(requests, self.config.max_requests as u64), clamp(bytes, self.config.max_bytes))
    }
}

/// Starts the walk over `req`'s sources on its own thread (not the blocking pool: it lives as
/// long as the batch), at most [`WALK_AHEAD`] entries ahead of the uploads.
fn spawn_walk(req: &BatchRequest) -> Result<(std::thread::JoinHandle<()>, tokio::sync::mpsc::Receiver<Found>)> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Found>(WALK_AHEAD);
    let (sources, prefix, options) = (req.sources.clone(), req.prefix.clone(), req.tree.clone());
    let walker = std::thread::Builder::new()
        .name("hoist-walk".into())
        .spawn(move || {
            for found in tree::walk(&sources, &prefix, options) {
                if tx.blocking_send(found).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| Error::Internal(format!("cannot start the directory walk thread: {e}")))?;
    Ok((walker, rx))
}

/// Takes `b` byte permits then `r` request permits (always in this order, from one loop).
async fn take(
    bytes: &Arc<Semaphore>,
    b: u32,
    requests: &Arc<Semaphore>,
    r: u32,
) -> (OwnedSemaphorePermit, OwnedSemaphorePermit) {
    // Neither semaphore is ever closed, so acquiring cannot fail.
    let b = bytes.clone().acquire_many_owned(b).await.expect("the byte budget is never closed");
    let r = requests.clone().acquire_many_owned(r).await.expect("the request budget is never closed");
    (b, r)
}

/// Whether an error would meet every file of the batch: stop instead of failing them one by one.
fn dooms_the_batch(e: &Error) -> bool {
    e.category() == Category::Auth || e.code() == Some("NoSuchBucket")
}

/// Every file done: the record has served, unless it serves the next sync; else it is kept for
/// the re-run.
fn close_journal(mut j: BatchJournal, summary: &BatchSummary, req: &BatchRequest) -> Result<()> {
    if summary.files_failed == 0 && !summary.interrupted && req.skip_existing.is_none() { j.remove() } else { j.sync() }
}

/// Accounts for one finished file task: journal first, then the event.
fn settle(
    joined: std::result::Result<Outcome, tokio::task::JoinError>,
    summary: &mut BatchSummary,
    journal: Option<&mut BatchJournal>,
    events: &Events<BatchEvent>,
    fatal: &mut Option<Error>,
    stop: &CancellationToken,
) -> Result<()> {
    let outcome = joined.map_err(|e| crate::error::task_lost("a file task", &e))?;
    match outcome {
        Outcome::Uploaded { entry, size, mtime_ns, etag, checksum, parts, seconds } => {
            if let Some(j) = journal {
                j.record(&DoneFile {
                    key: entry.key.clone(),
                    size,
                    mtime_ns,
                    etag: etag.clone(),
                    checksum: checksum.clone(),
                })?;
            }
            summary.files_uploaded += 1;
            summary.bytes_uploaded += size;
            events.emit(BatchEvent::FileDone {
                path: entry.path.display().to_string(),
                key: entry.key,
                size,
                etag,
                checksum,
                parts,
                seconds,
            });
        }
        Outcome::Skipped { entry, reason, etag } => {
            if let (Some(j), Some(etag)) = (journal, etag) {
                j.record(&DoneFile {
                    key: entry.key.clone(),
                    size: entry.size,
                    mtime_ns: entry.mtime_ns,
                    etag,
                    checksum: None,
                })?;
            }
            summary.files_skipped += 1;
            events.emit(BatchEvent::FileSkipped {
                path: entry.path.display().to_string(),
                key: entry.key,
                size: entry.size,
                reason,
            });
        }
        // Cancelled files are neither done nor failed: the next run does them.
        Outcome::Failed { error: Error::Cancelled, .. } => {}
        Outcome::Failed { entry, error } => {
            if dooms_the_batch(&error) {
                if fatal.is_none() {
                    stop.cancel();
                    *fatal = Some(error);
                }
                return Ok(());
            }
            events.emit(BatchEvent::FileFailed {
                path: entry.path.display().to_string(),
                key: Some(entry.key.clone()),
                error: error.to_string(),
            });
            summary.fail(&entry.path, &error);
        }
    }
    Ok(())
}

impl Shared {
    /// Why the journal proves `entry` done, if it does: a previous run recorded this key with
    /// the file's size and modification time, and, when skipping what exists, the store still
    /// lists the key with the recorded size and `ETag`.
    fn proven(&self, journal: &BatchJournal, entry: &FileEntry) -> Option<String> {
        let done = journal.proves(&entry.key, entry.size, entry.mtime_ns)?;
        let Some((_, listed)) = &self.existing else {
            return Some("done in an earlier run (batch journal: same size and modification time)".into());
        };
        let object = listed.get(&entry.key).filter(|o| o.size == done.size && o.etag == done.etag)?;
        Some(format!(
            "unchanged since it was stored (batch journal: same size and modification time; the store lists the recorded ETag {})",
            object.etag
        ))
    }

    /// Skips, uploads or fails one file.
    async fn one(&self, entry: FileEntry) -> Outcome {
        let started = Instant::now();
        if let Some((compare, listed)) = &self.existing
            && let Some(object) = listed.get(&entry.key)
            && object.size == entry.size
        {
            match self.same(&entry, object, *compare).await {
                Ok(Some(reason)) => {
                    let etag = (*compare == Compare::Checksum).then(|| object.etag.clone());
                    return Outcome::Skipped { entry, reason, etag };
                }
                Ok(None) => {}
                Err(error) => return Outcome::Failed { entry, error },
            }
        }
        let result =
            if entry.size <= self.inline_max { self.put_inline(&entry).await } else { self.put_big(&entry).await };
        match result {
            Ok((stamp, o)) => Outcome::Uploaded {
                size: stamp.size,
                mtime_ns: stamp.mtime_ns,
                etag: o.etag,
                checksum: o.checksum,
                parts: o.parts,
                seconds: started.elapsed().as_secs_f64(),
                entry,
            },
            Err(error) => Outcome::Failed { entry, error },
        }
    }

    /// Whether the store's `object` (same key and size) holds this file: `Some(what was
    /// compared)` if so, `None` if it differs or cannot be compared.
    async fn same(&self, entry: &FileEntry, object: &ListedObject, compare: Compare) -> Result<Option<String>> {
        if compare == Compare::SizeMtime {
            // Listings give whole seconds: compared to the second.
            let file_secs = entry.mtime_ns.div_euclid(1_000_000_000);
            return Ok((i128::from(object.last_modified) >= file_secs)
                .then(|| "same size, and the object is not older than the file (to the second)".to_owned()));
        }
        let path = entry.path.clone();
        let size = entry.size;
        if let Some(md5) = checksum::etag_to_md5(&object.etag) {
            let local = blocking(move || source::md5_range(&path, 0, size)).await?;
            return Ok((local == md5).then(|| "same size and MD5 (ETag)".to_owned()));
        }
        let cfg = self.uploader.config();
        if let Some((_, n)) = object.etag.rsplit_once('-')
            && let Ok(n) = n.parse::<u64>()
        {
            let plan = plan::plan(size, cfg.part_size, 0, &cfg.limits)?;
            if plan.part_count != n {
                return Ok(None);
            }
            let specs: Vec<plan::PartSpec> = plan.parts().collect();
            let local = blocking(move || {
                let md5s =
                    specs.iter().map(|s| source::md5_range(&path, s.offset, s.len)).collect::<Result<Vec<_>>>()?;
                Ok(checksum::multipart_etag(&md5s))
            })
            .await?;
            return Ok((local == object.etag)
                .then(|| format!("same size and multipart ETag ({n} parts of {} bytes)", plan.part_size)));
        }
        // No usable ETag (encrypted objects): the full-object checksum, if the store kept one.
        let head = self.uploader.client().head(&self.bucket, &entry.key).await?;
        match head.checksum {
            Some((alg, value)) if !value.contains('-') => {
                let local = blocking(move || source::checksum_range(&path, 0, size, alg)).await?;
                Ok((local.to_base64() == value).then(|| format!("same size and {alg}")))
            }
            _ => Ok(None),
        }
    }

    /// A small file: read once into memory, sent with its checksum, checked by the store's
    /// answer (or HEAD when the store answered with no checksum).
    async fn put_inline(&self, entry: &FileEntry) -> Result<(Stamp, upload::UploadOutcome)> {
        let cfg = self.uploader.config();
        let alg = cfg.effective_checksum();
        let path = entry.path.clone();
        let (stamp, data, checksum) = blocking(move || {
            let (stamp, data) = read_whole(&path)?;
            let checksum = alg.map(|a| Checksum::of(a, &data));
            Ok((stamp, data, checksum))
        })
        .await?;
        let client = self.uploader.client();
        let meta = ObjectMeta { content_type: self.content_type.as_deref(), metadata: &self.metadata };
        let (etag, stored) =
            retry(&cfg.retry, self.uploader.attempt_limit(stamp.size), &Events::none(), None, &self.cancel, || {
                client.put_bytes(&self.bucket, &entry.key, data.clone(), meta, checksum.as_ref())
            })
            .await?;
        // The store's answer vouches for the content only with its checksum and an ETag.
        let outcome = match (&checksum, stored, etag) {
            (Some(sent), Some((alg, value)), Some(etag)) if alg == sent.algorithm() => {
                if value != sent.to_base64() {
                    return Err(Error::Integrity(format!(
                        "the store's {alg} is {value}, the file's is {}",
                        sent.to_base64()
                    )));
                }
                upload::UploadOutcome { size: stamp.size, etag, checksum: Some(sent.to_string()), parts: 0 }
            }
            (_, _, etag) => {
                let req = self.request(entry);
                self.uploader
                    .verify_single(&req, SingleBody::Bytes(&data), etag.as_deref(), checksum.as_ref(), &self.cancel)
                    .await?
            }
        };
        Ok((stamp, outcome))
    }

    /// A bigger file: [`Uploader::upload`] (multipart, resumable through its journal), with the
    /// file's size and modification time checked before and after.
    async fn put_big(&self, entry: &FileEntry) -> Result<(Stamp, upload::UploadOutcome)> {
        let stat = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| Stamp::of(&m))
                .map_err(|e| Error::Source { path: p.display().to_string(), source: e })
        };
        let before = stat(&entry.path)?;
        let (events, mut rx) = Events::<ProgressEvent>::channel();
        let (batch_events, key) = (self.events.clone(), entry.key.clone());
        let forward = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                match e {
                    ProgressEvent::PartDone { part_number, size, .. } => {
                        batch_events.emit(BatchEvent::PartDone { key: key.clone(), part_number, size });
                    }
                    ProgressEvent::Retry { part_number, attempt, delay_ms, error } => {
                        batch_events.emit(BatchEvent::Retry {
                            key: key.clone(),
                            part_number,
                            attempt,
                            delay_ms,
                            error,
                        });
                    }
                    _ => {}
                }
            }
        });
        let result = self.uploader.upload(&self.request(entry), &events, &self.cancel, OnFailure::Auto).await;
        drop(events);
        let _ = forward.await;
        let outcome = result?;
        if stat(&entry.path)? != before {
            return Err(Error::ChangedDuringUpload(entry.path.display().to_string()));
        }
        Ok((before, outcome))
    }

    fn request(&self, entry: &FileEntry) -> UploadRequest {
        UploadRequest {
            source: Source::File(entry.path.clone()),
            bucket: self.bucket.clone(),
            key: entry.key.clone(),
            content_type: self.content_type.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

/// Reads a whole file, checking that it did not change while it was read (blocking).
fn read_whole(path: &Path) -> Result<(Stamp, Bytes)> {
    let err = |e| Error::Source { path: path.display().to_string(), source: e };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let before = Stamp::of(&f.metadata().map_err(err)?);
    let mut data = Vec::with_capacity(usize::try_from(before.size).unwrap_or(0));
    // One byte more than expected shows a file that grew.
    (&mut f).take(before.size + 1).read_to_end(&mut data).map_err(err)?;
    let after = Stamp::of(&f.metadata().map_err(err)?);
    if before != after || data.len() as u64 != before.size {
        return Err(Error::ChangedDuringUpload(path.display().to_string()));
    }
    Ok((before, Bytes::from(data)))
}
