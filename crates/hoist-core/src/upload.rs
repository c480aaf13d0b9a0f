//! One upload, top to bottom: plan → open (resume) or create → schedule the parts → complete →
//! verify; or one PutObject for small inputs. The parts in flight, the retry loop and the ledger
//! are [`crate::scheduler`]'s.
//!
//! Semantics:
//! - The plan is made once, with the part size of the journal being resumed (if any).
//! - Every call is retried per [`crate::retry`]: create, parts, complete, the HEAD that verifies,
//!   ListParts and ListMultipartUploads when resuming, and aborts.
//! - A CreateMultipartUpload retried after a failed attempt may have created an upload whose
//!   answer was lost: the uploads of the key started since are listed and aborted (all but the
//!   one in use), so none is left pending.
//! - With a journal ([`Uploader::with_journal`]), each confirmed part is recorded before it is
//!   reported, and re-running the same upload resumes it: the store's ListParts decides which
//!   recorded parts are skipped (see [`crate::journal`]).
//! - Cancellation: no new part starts; parts in flight get `grace` to finish (and be recorded),
//!   then are stopped. What happens to the multipart upload then is [`OnFailure`]'s choice:
//!   `Auto` keeps it (with its journal) after a cancel or exhausted retries and aborts it after a
//!   fatal error such as `AccessDenied`; `Keep` and `Abort` force one way. An abort that fails
//!   keeps the journal and says so ([`ProgressEvent::Failed`]'s `abort_error`): the upload is
//!   still pending and can be resumed or aborted, never silently forgotten.
//! - Complete answered `NoSuchUpload` (a retry after its answer was lost) is a success when the
//!   object there matches the parts sent (size and checksum or multipart `ETag`).
//! - With a CRC, uploads are created `FULL_OBJECT` (the object's checksum is the CRC of all its
//!   bytes, which Complete sends, combined from the parts' CRCs without a second read), or
//!   `COMPOSITE` when the store refuses that type; the journal records which, so a resumed
//!   upload completes the way it was created.
//! - After Complete the object is checked with HEAD: size, and the checksum computed locally from
//!   the part checksums (or the multipart `ETag` when no checksum was sent). A
//!   mismatch is an [`Error::Integrity`]. A failure after Complete never aborts (the upload is
//!   gone; it is an object now), and the journal stays unless the object is wrong, so running
//!   again verifies the object instead of uploading it again.
//! - A single PutObject is verified by content, never by size alone: the checksum sent when the
//!   store keeps one of that algorithm, else the `ETag` when it is an MD5 (compared with the MD5
//!   of the bytes sent), else the `ETag` the PutObject answered with (none: not verifiable, an
//!   [`Error::Integrity`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::client::{ObjectClient, ObjectInfo, ObjectMeta, PartInfo, PartsMatch, UploadChecksum, UploadRef};
use crate::config::UploadConfig;
use crate::error::{Error, Result};
use crate::journal::{Fingerprint, Journal, JournalKey, JournalStore, STREAM_SOURCE_PREFIX};
use crate::plan;
use crate::progress::{Events, ProgressEvent};
use crate::scheduler::{self, Feed, Ledger, PartContext, StreamFeed, blocking, retry};
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

impl UploadRequest {
    fn meta(&self) -> ObjectMeta<'_> {
        ObjectMeta { content_type: self.content_type.as_deref(), metadata: &self.metadata }
    }
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
            Self::Auto => matches!(
                error,
                Error::Cancelled | Error::RetriesExhausted { .. } | Error::Timeout { .. } | Error::Transport { .. }
            ),
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

/// The bytes of a single PutObject, for verifying what the store holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SingleBody<'a> {
    /// The first `len` bytes of a file.
    File(&'a Path, u64),
    /// Bytes in memory.
    Bytes(&'a Bytes),
}

impl SingleBody<'_> {
    fn len(&self) -> u64 {
        match self {
            Self::File(_, len) => *len,
            Self::Bytes(b) => b.len() as u64,
        }
    }

    async fn md5(&self) -> Result<[u8; 16]> {
        use md5::Digest as _;
        match *self {
            Self::File(path, len) => {
                let p = path.to_path_buf();
                blocking(move || source::md5_range(&p, 0, len)).await
            }
            Self::Bytes(b) => Ok(md5::Md5::digest(b).into()),
        }
    }
}

/// Uploads objects with one client and one configuration.
#[derive(Debug, Clone)]
pub struct Uploader {
    client: Arc<dyn ObjectClient>,
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

impl Resume {
    /// The journal of `source` for `req`, if there is one.
    fn find(&self, req: &UploadRequest, source: PathBuf, fingerprint: Fingerprint) -> Result<Journaled> {
        let key = JournalKey { endpoint: &self.endpoint, bucket: &req.bucket, key: &req.key, source: &source };
        let found = self.store.load(&key)?;
        Ok(Journaled { source, fingerprint, found })
    }
}

/// A journaled source: what names its journal, and the journal found there.
struct Journaled {
    source: PathBuf,
    fingerprint: Fingerprint,
    found: Option<Journal>,
}

/// A multipart upload, created or picked up from its journal.
struct Opened {
    upload: UploadRef,
    part_size: u64,
    alg: Option<ChecksumAlgorithm>,
    /// Created `FULL_OBJECT`: Complete sends the CRC of all the bytes.
    full_object: bool,
    ledger: Ledger,
}

/// A multipart upload that did not end well, and how far it got.
struct Unfinished {
    error: Error,
    /// Complete succeeded: the object exists; only its verification failed.
    completed: bool,
}

impl From<Error> for Unfinished {
    fn from(error: Error) -> Self {
        Self { error, completed: false }
    }
}

/// Seconds of slack when matching a listed upload's `Initiated` (second-granular in S3's
/// listings) against the local time a create started: rounding on both sides, one second each.
const INITIATED_SLACK_SECS: i64 = 2;

impl Uploader {
    /// An uploader.
    #[must_use]
    pub fn new(client: impl ObjectClient + 'static, config: UploadConfig) -> Self {
        Self::shared(Arc::new(client), config)
    }

    /// An uploader on a client shared with other users.
    #[must_use]
    pub fn shared(client: Arc<dyn ObjectClient>, config: UploadConfig) -> Self {
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
    pub fn client(&self) -> &Arc<dyn ObjectClient> {
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
            Source::File(path) => self.upload_file(req, path, events, cancel, on_failure).await?,
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

    /// How long one attempt to send `len` bytes may take.
    pub(crate) fn attempt_limit(&self, len: u64) -> Duration {
        scheduler::attempt_limit(self.config.stall_timeout, len)
    }

    async fn upload_file(
        &self,
        req: &UploadRequest,
        path: &Path,
        events: &Events,
        cancel: &CancellationToken,
        on_failure: OnFailure,
    ) -> Result<UploadOutcome> {
        let size = source::file_size(path)?;
        let journaled = match &self.journal {
            Some(resume) => {
                let abs =
                    path.canonicalize().map_err(|e| Error::Source { path: path.display().to_string(), source: e })?;
                Some(resume.find(req, abs, Fingerprint::of(path)?)?)
            }
            None => None,
        };
        // A journal being resumed decides the part size; the plan is made once, with it.
        let resumed_part_size = journaled.as_ref().and_then(|j| j.found.as_ref()).map(|j| j.part_size);
        let part_size = resumed_part_size.filter(|_| !self.journal.as_ref().is_some_and(|r| r.restart));
        let plan = plan::plan(
            size,
            part_size.unwrap_or(self.config.part_size),
            self.config.single_put_threshold,
            &self.config.limits,
        )?;
        if plan.is_single_put() {
            return self.put_file(req, path, size, events, cancel).await;
        }
        let opened = match self.open(req, journaled, plan.part_size, events, cancel).await {
            Err(Error::UploadGone(id)) => return self.completed_before(req, path, id, cancel).await,
            other => other?,
        };
        let id = Some(opened.upload.upload_id.clone());
        events.emit(started(req, Some(size), plan.part_size, Some(plan.part_count), id, opened.ledger.count()));
        let feed = Feed::file(path, &plan, &opened.ledger);
        self.run(opened, feed, events, cancel, |e| on_failure.keeps(e)).await
    }

    async fn put_file(
        &self,
        req: &UploadRequest,
        path: &Path,
        size: u64,
        events: &Events,
        cancel: &CancellationToken,
    ) -> Result<UploadOutcome> {
        events.emit(started(req, Some(size), size, Some(0), None, 0));
        let checksum = match self.config.effective_checksum() {
            Some(a) => {
                let p = path.to_path_buf();
                Some(blocking(move || source::checksum_range(&p, 0, size, a)).await?)
            }
            None => None,
        };
        let etag = retry(&self.config.retry, self.attempt_limit(size), events, None, cancel, || {
            self.client.put_file(&req.bucket, &req.key, path, size, req.meta(), checksum.as_ref())
        })
        .await?;
        self.verify_single(req, SingleBody::File(path, size), etag.as_deref(), checksum.as_ref(), cancel).await
    }

    /// Checks a single-request object with HEAD: its size, and its content: the checksum sent
    /// when the store keeps one of that algorithm, else an MD5 `ETag` against the MD5 of the bytes
    /// sent, else the `ETag` the PutObject answered with (the store keeps neither).
    pub(crate) async fn verify_single(
        &self,
        req: &UploadRequest,
        body: SingleBody<'_>,
        etag: Option<&str>,
        checksum: Option<&Checksum>,
        cancel: &CancellationToken,
    ) -> Result<UploadOutcome> {
        let size = body.len();
        let head = self.head(&req.bucket, &req.key, cancel).await?;
        if head.size != size {
            return Err(Error::Integrity(format!("the store holds {} bytes, {size} were sent", head.size)));
        }
        let outcome = |checksum: Option<&Checksum>| UploadOutcome {
            size,
            etag: head.etag.clone(),
            checksum: checksum.map(ToString::to_string),
            parts: 0,
        };
        if let (Some(c), Some((alg, value))) = (checksum, &head.checksum)
            && *alg == c.algorithm()
        {
            if *value != c.to_base64() {
                return Err(Error::Integrity(format!("the store's {alg} is {value}, the data's is {}", c.to_base64())));
            }
            return Ok(outcome(Some(c)));
        }
        if let Some(stored) = crate::checksum::etag_to_md5(&head.etag) {
            let sent = body.md5().await?;
            if stored != sent {
                return Err(Error::Integrity(format!(
                    "the store's ETag (MD5) is {}, the data's MD5 is {}: the object there is not what was sent",
                    head.etag,
                    hex::encode(sent)
                )));
            }
            return Ok(outcome(checksum));
        }
        match etag {
            Some(sent) if head.etag == sent => Ok(outcome(checksum)),
            Some(sent) => Err(Error::Integrity(format!(
                "the object's ETag is {}, the PutObject answered {sent}: the object there is not the one sent",
                head.etag
            ))),
            None => Err(Error::Integrity(
                "the PutObject answered without an ETag and the store keeps no checksum or MD5 to compare: the object \
                 cannot be confirmed"
                    .into(),
            )),
        }
    }

    /// HEAD, retried.
    async fn head(&self, bucket: &str, key: &str, cancel: &CancellationToken) -> Result<ObjectInfo> {
        retry(&self.config.retry, self.config.stall_timeout, &Events::none(), None, cancel, || {
            self.client.head(bucket, key)
        })
        .await
    }

    /// Creates the multipart upload with `FULL_OBJECT` checksums when the algorithm is a CRC, and
    /// `COMPOSITE` ones when the store refuses that type (or the algorithm has no full-object form).
    async fn create(
        &self,
        req: &UploadRequest,
        events: &Events,
        cancel: &CancellationToken,
    ) -> Result<(UploadRef, bool)> {
        let alg = self.config.effective_checksum();
        if let Some(algorithm) = alg.filter(|a| a.supports_full_object()) {
            match self.create_as(req, Some(UploadChecksum { algorithm, full_object: true }), events, cancel).await {
                Ok(upload) => return Ok((upload, true)),
                Err(e) if matches!(e.code(), Some("InvalidRequest" | "InvalidArgument" | "NotImplemented")) => {
                    tracing::info!(error = %e, "the store refused FULL_OBJECT checksums; creating the upload COMPOSITE");
                }
                Err(e) => return Err(e),
            }
        }
        let composite = alg.map(|algorithm| UploadChecksum { algorithm, full_object: false });
        Ok((self.create_as(req, composite, events, cancel).await?, false))
    }

    /// CreateMultipartUpload, retried. When an attempt failed before the one that succeeded (or
    /// every attempt failed), an earlier attempt may have created an upload whose answer was
    /// lost: those are found and aborted.
    async fn create_as(
        &self,
        req: &UploadRequest,
        alg: Option<UploadChecksum>,
        events: &Events,
        cancel: &CancellationToken,
    ) -> Result<UploadRef> {
        let since = unix_now();
        let mut attempts = 0u32;
        let created = retry(&self.config.retry, self.config.stall_timeout, events, None, cancel, || {
            attempts += 1;
            self.client.create_upload(&req.bucket, &req.key, req.meta(), alg)
        })
        .await;
        if attempts > 1 {
            let ours = created.as_ref().ok().map(|u| u.upload_id.as_str());
            if let Err(e) = self.abort_strays(&req.bucket, &req.key, since, ours, cancel).await {
                tracing::warn!(error = %e, key = %req.key, "could not clean up after a lost CreateMultipartUpload answer");
            }
        }
        created
    }

    /// Aborts the uploads of `key` started at or after `since` (Unix seconds, local clock), except
    /// `keep`: what a create whose answer was lost, or a run that died before recording its
    /// upload id, left behind.
    async fn abort_strays(
        &self,
        bucket: &str,
        key: &str,
        since: i64,
        keep: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let listed = retry(&self.config.retry, self.config.stall_timeout, &Events::none(), None, cancel, || {
            self.client.list_uploads(bucket, key)
        })
        .await?;
        for u in listed {
            let stray = u.key == key
                && Some(u.upload_id.as_str()) != keep
                && u.initiated.is_some_and(|t| t >= since - INITIATED_SLACK_SECS);
            if stray {
                tracing::info!(upload_id = %u.upload_id, "aborting an upload whose creation was not recorded");
                let stray = UploadRef { bucket: bucket.to_owned(), key: key.to_owned(), upload_id: u.upload_id };
                self.abort(&stray, cancel).await?;
            }
        }
        Ok(())
    }

    /// AbortMultipartUpload, retried; an upload already gone counts as aborted.
    async fn abort(&self, upload: &UploadRef, cancel: &CancellationToken) -> Result<()> {
        match retry(&self.config.retry, self.config.stall_timeout, &Events::none(), None, cancel, || {
            self.client.abort(upload)
        })
        .await
        {
            Err(e) if e.code() == Some("NoSuchUpload") => Ok(()),
            other => other,
        }
    }

    /// Creates the multipart upload, or picks up an interrupted one from its journal (checked
    /// against the source and against ListParts).
    async fn open(
        &self,
        req: &UploadRequest,
        journaled: Option<Journaled>,
        part_size: u64,
        events: &Events,
        cancel: &CancellationToken,
    ) -> Result<Opened> {
        let (Some(resume), Some(journaled)) = (&self.journal, journaled) else {
            let (upload, full_object) = self.create(req, events, cancel).await?;
            let ledger = Ledger::new(events.clone(), None);
            return Ok(Opened { upload, part_size, alg: self.config.effective_checksum(), full_object, ledger });
        };
        let Journaled { source, fingerprint, mut found } = journaled;
        if resume.restart
            && let Some(old) = found.take()
        {
            if !old.upload_id.is_empty() {
                self.abort(&journal_upload(&old), cancel).await?;
            }
            resume.store.remove(&old)?;
        }
        if let Some(pending) = found.take_if(|j| j.upload_id.is_empty()) {
            // A run died between CreateMultipartUpload and recording its id: abort what it may
            // have created (uploads of this key started since), so nothing is left behind.
            self.abort_strays(&req.bucket, &req.key, pending.started, None, cancel).await?;
        }
        if let Some(mut j) = found {
            if j.fingerprint != fingerprint {
                return Err(Error::SourceChanged(source.display().to_string()));
            }
            let upload = journal_upload(&j);
            let listed = retry(&self.config.retry, self.config.stall_timeout, events, None, cancel, || {
                self.client.list_parts(&upload)
            })
            .await;
            let listed = match listed {
                Ok(l) => l,
                Err(e) if e.code() == Some("NoSuchUpload") => return Err(Error::UploadGone(j.upload_id.clone())),
                Err(e) => return Err(e),
            };
            j.parts = j.confirmed_by(&listed);
            resume.store.save(&j)?;
            let (part_size, alg, full_object) = (j.part_size, j.checksum, j.full_object);
            let ledger = Ledger::new(events.clone(), Some((resume.store.clone(), j)));
            return Ok(Opened { upload, part_size, alg, full_object, ledger });
        }
        // Record the intent first, so a crash right after the create can be cleaned up.
        let key = JournalKey { endpoint: &resume.endpoint, bucket: &req.bucket, key: &req.key, source: &source };
        let alg = self.config.effective_checksum();
        let mut j = JournalStore::start(&key, String::new(), part_size, alg, fingerprint);
        resume.store.save(&j)?;
        let (upload, full_object) = self.create(req, events, cancel).await?;
        j.upload_id.clone_from(&upload.upload_id);
        j.full_object = full_object;
        resume.store.save(&j)?;
        Ok(Opened {
            upload,
            part_size,
            alg,
            full_object,
            ledger: Ledger::new(events.clone(), Some((resume.store.clone(), j))),
        })
    }

    /// The journal names an upload the store no longer has. If a previous run completed it and
    /// died before clearing the journal (the Complete response was lost, or its verification
    /// failed), the object is there: HEAD it and compare size and the checksum (or multipart
    /// `ETag`) the journal's parts give. Only a full match counts as done; anything else is
    /// [`Error::UploadGone`].
    async fn completed_before(
        &self,
        req: &UploadRequest,
        path: &Path,
        id: String,
        cancel: &CancellationToken,
    ) -> Result<UploadOutcome> {
        let gone = || Error::UploadGone(id.clone());
        let abs = path.canonicalize().map_err(|e| Error::Source { path: path.display().to_string(), source: e })?;
        let Some((resume, j)) = self.gone_journal(req, &abs)? else { return Err(gone()) };
        // The fingerprint vouches for the file; the journal must hold every planned part.
        let count = j.fingerprint.size.div_ceil(j.part_size.max(1));
        if !(1..=count).all(|n| u32::try_from(n).is_ok_and(|n| j.parts.contains_key(&n))) {
            return Err(gone());
        }
        self.confirm_completed(resume, j, id, cancel).await
    }

    /// [`Self::completed_before`] for a stream fed again with its resume key (`source` names its
    /// journal): a stream has no fingerprint, so it is read again and must be exactly the
    /// recorded parts (size and checksum each) before the object is compared with them.
    async fn stream_completed_before(
        &self,
        req: &UploadRequest,
        stream: StreamFeed,
        source: Option<&Path>,
        id: String,
        cancel: &CancellationToken,
    ) -> Result<UploadOutcome> {
        let gone = || Error::UploadGone(id.clone());
        let Some((resume, j)) = source.map(|s| self.gone_journal(req, s)).transpose()?.flatten() else {
            return Err(gone());
        };
        let ledger = Ledger::new(Events::none(), Some((resume.store.clone(), j.clone())));
        if !stream.parts_of(j.part_size, j.checksum).matches_record(&ledger).await? {
            return Err(gone());
        }
        self.confirm_completed(resume, j, id, cancel).await
    }

    /// The journal of `source` for `req` (when uploads are journaled and it exists).
    fn gone_journal(&self, req: &UploadRequest, source: &Path) -> Result<Option<(&Resume, Journal)>> {
        let Some(resume) = &self.journal else { return Ok(None) };
        let key = JournalKey { endpoint: &resume.endpoint, bucket: &req.bucket, key: &req.key, source };
        Ok(resume.store.load(&key)?.map(|j| (resume, j)))
    }

    /// Succeeds when the object at the key is the one journal `j`'s parts make (its upload `id`
    /// is gone from the store: a previous run completed it), and removes the journal.
    async fn confirm_completed(
        &self,
        resume: &Resume,
        j: Journal,
        id: String,
        cancel: &CancellationToken,
    ) -> Result<UploadOutcome> {
        let parts = Ledger::new(Events::none(), Some((resume.store.clone(), j.clone()))).parts();
        let size = parts.iter().map(|p| p.size).sum();
        let Some(outcome) = self.object_matches(&journal_upload(&j), size, &parts, cancel).await? else {
            return Err(Error::UploadGone(id));
        };
        tracing::info!(upload_id = %id, "the interrupted upload had already completed");
        resume.store.remove(&j)?;
        Ok(outcome)
    }

    /// Whether the object at `upload`'s key is the one `parts` make (size, and checksum or
    /// multipart `ETag`): `Some` outcome when it is, `None` when it is not or is missing.
    async fn object_matches(
        &self,
        upload: &UploadRef,
        size: u64,
        parts: &[PartInfo],
        cancel: &CancellationToken,
    ) -> Result<Option<UploadOutcome>> {
        let head = match self.head(&upload.bucket, &upload.key, cancel).await {
            Ok(h) => h,
            Err(Error::Service { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if head.size != size {
            return Ok(None);
        }
        Ok(match head.compare_with_parts(parts) {
            Ok(PartsMatch::Checksum(c)) => Some(outcome_of(head, Some(c), parts)),
            Ok(PartsMatch::ETag) => Some(outcome_of(head, None, parts)),
            Ok(PartsMatch::Unknown) | Err(_) => None,
        })
    }

    async fn upload_stream(
        &self,
        req: &UploadRequest,
        reader: impl std::io::Read + Send + 'static,
        resume_key: Option<&str>,
        events: &Events,
        cancel: &CancellationToken,
        on_failure: OnFailure,
    ) -> Result<UploadOutcome> {
        let name = resume_key.map_or_else(|| "stdin".to_owned(), |k| format!("the stream for resume key {k:?}"));
        let mut stream = StreamFeed::new(reader, name, self.config.limits);
        let first_len = plan::stream_part_size(1, self.config.part_size, &self.config.limits);
        let ahead = stream.read_ahead(first_len.max(self.config.single_put_threshold)).await?;
        if (ahead.len() as u64) < self.config.single_put_threshold {
            return self.put_stream(req, &ahead, events, cancel).await;
        }
        // The feed holds these bytes; a second reference would keep part 1 in memory to the end.
        drop(ahead);
        // With a resume key the stream is journaled like a file; re-fed, its recorded parts are
        // read, checked against the journal (size and checksum) and skipped.
        let journaled = match (resume_key, &self.journal) {
            (Some(k), Some(resume)) => {
                let fingerprint = Fingerprint { size: 0, mtime_ns: 0, head_tail_crc32c: String::new() };
                Some(resume.find(req, PathBuf::from(format!("{STREAM_SOURCE_PREFIX}{k}")), fingerprint)?)
            }
            _ => None,
        };
        let source = journaled.as_ref().map(|j| j.source.clone());
        let opened = match self.open(req, journaled, self.config.part_size, events, cancel).await {
            Err(Error::UploadGone(id)) => {
                return self.stream_completed_before(req, stream, source.as_deref(), id, cancel).await;
            }
            other => other?,
        };
        let resumable = opened.ledger.journaled();
        let first_len = plan::stream_part_size(1, opened.part_size, &self.config.limits);
        let id = Some(opened.upload.upload_id.clone());
        events.emit(started(req, None, first_len, None, id, opened.ledger.count()));
        let feed = Feed::Stream(stream.parts_of(opened.part_size, opened.alg));
        // Without a resume key a stream cannot be fed again: a failed upload is never kept. A
        // stream that differs from the recorded one is refused; the upload stays.
        self.run(opened, feed, events, cancel, |e| {
            resumable && (matches!(e, Error::SourceChanged(_)) || on_failure.keeps(e))
        })
        .await
    }

    async fn put_stream(
        &self,
        req: &UploadRequest,
        data: &Bytes,
        events: &Events,
        cancel: &CancellationToken,
    ) -> Result<UploadOutcome> {
        let size = data.len() as u64;
        events.emit(started(req, Some(size), size, Some(0), None, 0));
        let checksum = self.config.effective_checksum().map(|a| Checksum::of(a, data));
        let (etag, _) = retry(&self.config.retry, self.attempt_limit(size), events, None, cancel, || {
            self.client.put_bytes(&req.bucket, &req.key, data.clone(), req.meta(), checksum.as_ref())
        })
        .await?;
        self.verify_single(req, SingleBody::Bytes(data), etag.as_deref(), checksum.as_ref(), cancel).await
    }

    /// Schedules the parts, completes, verifies, and settles the upload's fate.
    async fn run(
        &self,
        opened: Opened,
        feed: Feed,
        events: &Events,
        cancel: &CancellationToken,
        keep: impl Fn(&Error) -> bool,
    ) -> Result<UploadOutcome> {
        let Opened { upload, alg, full_object, mut ledger, .. } = opened;
        let cx = PartContext {
            client: self.client.clone(),
            upload: Arc::new(upload.clone()),
            retry: self.config.retry,
            stall: self.config.stall_timeout,
            alg,
            transport: self.config.checksum_transport,
            events: events.clone(),
        };
        let result = match scheduler::schedule(cx, feed, &mut ledger, self.config.concurrency, cancel, self.grace).await
        {
            Ok(parts) => self.finish(&upload, parts, full_object, events, cancel).await,
            Err(e) => Err(e.into()),
        };
        self.settle(&upload, result, &mut ledger, events, keep).await
    }

    /// Completes with the parts in order, then verifies the object.
    async fn finish(
        &self,
        upload: &UploadRef,
        parts: Vec<PartInfo>,
        full_object: bool,
        events: &Events,
        cancel: &CancellationToken,
    ) -> std::result::Result<UploadOutcome, Unfinished> {
        let size = parts.iter().map(|p| p.size).sum();
        let list: Vec<(u32, String, Option<Checksum>)> =
            parts.iter().map(|p| (p.number, p.etag.clone(), p.checksum.clone())).collect();
        // FULL_OBJECT: the CRC of all the bytes, combined from the parts' CRCs (no second read).
        let whole = if full_object {
            let sized: Option<Vec<(Checksum, u64)>> =
                parts.iter().map(|p| p.checksum.clone().map(|c| (c, p.size))).collect();
            let whole = sized.as_deref().and_then(crate::checksum::combine_full_object);
            if whole.is_none() {
                return Err(Error::Integrity("a part of a FULL_OBJECT upload has no CRC to combine".into()).into());
            }
            whole
        } else {
            None
        };
        let completed = retry(&self.config.retry, self.config.stall_timeout, events, None, cancel, || {
            self.client.complete(upload, &list, whole.as_ref())
        })
        .await;
        match completed {
            Ok(_) => {}
            // A retry of a Complete whose answer was lost finds the upload gone (AWS, MinIO): the
            // object decides.
            Err(e) if e.code() == Some("NoSuchUpload") => {
                return match self.object_matches(upload, size, &parts, cancel).await {
                    Ok(Some(outcome)) => {
                        tracing::info!(upload_id = %upload.upload_id, "Complete's answer was lost; the object matches the parts");
                        Ok(outcome)
                    }
                    Ok(None) => Err(e.into()),
                    Err(head) => Err(Unfinished { error: head, completed: false }),
                };
            }
            Err(e) => return Err(e.into()),
        }
        let after = |error| Unfinished { error, completed: true };
        let head = self.head(&upload.bucket, &upload.key, cancel).await.map_err(after)?;
        if head.size != size {
            return Err(after(Error::Integrity(format!("the store holds {} bytes, {size} were sent", head.size))));
        }
        match head.compare_with_parts(&parts) {
            Ok(PartsMatch::Checksum(c)) => Ok(outcome_of(head, Some(c), &parts)),
            Ok(PartsMatch::ETag | PartsMatch::Unknown) => Ok(outcome_of(head, None, &parts)),
            Err(problem) => Err(after(Error::Integrity(problem))),
        }
    }

    /// Ends a multipart upload. On success its journal goes. After Complete nothing is aborted;
    /// the journal stays (so a re-run verifies the object) unless the object is wrong. Before
    /// Complete the upload is kept (with its journal) when `keep` says so, else aborted and the
    /// journal dropped; an abort that fails keeps the journal and reports why. An integrity
    /// failure is never kept.
    async fn settle(
        &self,
        upload: &UploadRef,
        result: std::result::Result<UploadOutcome, Unfinished>,
        ledger: &mut Ledger,
        events: &Events,
        keep: impl Fn(&Error) -> bool,
    ) -> Result<UploadOutcome> {
        let Unfinished { error, completed } = match result {
            Ok(o) => {
                ledger.forget();
                return Ok(o);
            }
            Err(u) => u,
        };
        let integrity = matches!(error, Error::Integrity(_));
        let failed = |aborted, upload_id: Option<String>, abort_error| ProgressEvent::Failed {
            error: error.to_string(),
            aborted,
            upload_id,
            completed,
            abort_error,
        };
        if completed {
            if integrity {
                ledger.forget();
            }
            events.emit(failed(false, None, None));
        } else if keep(&error) && !integrity {
            events.emit(failed(false, Some(upload.upload_id.clone()), None));
        } else {
            // A cancel may be what ended the upload: the abort is not cancelled by it.
            match self.abort(upload, &CancellationToken::new()).await {
                Ok(()) => {
                    ledger.forget();
                    events.emit(failed(true, None, None));
                }
                Err(e) => {
                    tracing::warn!(error = %e, upload_id = %upload.upload_id, "could not abort the upload");
                    events.emit(failed(false, Some(upload.upload_id.clone()), Some(e.to_string())));
                }
            }
        }
        Err(error)
    }
}

/// The upload a journal records.
fn journal_upload(j: &Journal) -> UploadRef {
    UploadRef { bucket: j.bucket.clone(), key: j.key.clone(), upload_id: j.upload_id.clone() }
}

fn outcome_of(head: ObjectInfo, checksum: Option<String>, parts: &[PartInfo]) -> UploadOutcome {
    UploadOutcome { size: head.size, etag: head.etag, checksum, parts: parts.len() as u64 }
}

/// Now, in Unix seconds (local clock).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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
