//! What the service does with an upload, whichever API asked (`/v1` or Uppy's `/s3` routes):
//! create, sign part URLs, list parts, complete, abort, look up. Handlers translate JSON to
//! these calls and back; the rules live here once.
//!
//! Decisions:
//! - Complete never trusts the client's part list alone: it is checked against ListParts
//!   (every ETag, every planned size, no gap), and a HEAD of the object follows (size and
//!   multipart ETag computed from the parts). A mismatch is a 4xx and the upload stays
//!   resumable; a completed upload is never reported as failed because a response was lost:
//!   a Complete that fails in a way a retry can cure (reset, cut or lost answer, 5xx, timeout)
//!   is retried ([`COMPLETE_ATTEMPTS`]), NoSuchUpload on a retry means an earlier attempt may
//!   have completed it, and either way the HEAD decides; only when no matching object is there
//!   is the Complete's error reported.
//! - Uploads whose size is unknown (Uppy) cannot bind a Content-Length into part URLs; their
//!   size limit is enforced at Complete by summing ListParts, and an oversized upload is aborted.
//!   Toward the key's quota each counts what it may have staged: the highest part number signed
//!   × the largest part S3 (and the store) accepts, since nothing else bounds what a part URL
//!   stores. Signing over the quota is refused, and the quota is checked again at Complete.
//!   So a key with a quota that serves Uppy needs 5 GiB of quota per part in flight.
//! - A key has at most `max_open_uploads` unfinished uploads (checked at create).
//! - Nothing is left behind: if the session cannot be stored, the multipart upload just
//!   created is aborted.

use std::collections::HashMap;
use std::str::FromStr as _;
use std::time::{Instant, SystemTime};

use hoist_core::UploadRef;
use hoist_core::checksum::{Checksum, ChecksumAlgorithm};
use hoist_core::client::{ObjectMeta, PartInfo, UploadChecksum};
use hoist_core::plan::PlanError;
use rand::RngCore as _;

use crate::db::{Session, State, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::policy::{self, Caller};
use crate::presign::{PartToSign, SignedPart};
use crate::state::AppState;

/// Most part URLs one request may ask for (S3's part count limit, from core's one definition).
#[allow(clippy::cast_possible_truncation)] // 10,000
pub const MAX_PARTS_PER_REQUEST: usize = hoist_core::ProviderLimits::AWS.max_parts as usize;

/// A new upload as the client describes it.
#[derive(Debug, Clone, Default)]
pub struct NewUpload {
    /// The file's name.
    pub filename: String,
    /// Declared size; `None` when the client does not say (Uppy).
    pub size: Option<u64>,
    /// Content type.
    pub content_type: Option<String>,
    /// Checksum algorithm every part must carry.
    pub checksum_algorithm: Option<String>,
    /// User metadata.
    pub metadata: Vec<(String, String)>,
}

/// The outcome of a completed upload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Completed {
    /// Object URL.
    pub location: String,
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// The object's `ETag`.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// The object's checksum as the store reports it (`ALGORITHM:value`), if any.
    pub checksum: Option<String>,
    /// The jobs the upload started (its pipeline rules), with where to follow them.
    pub jobs: Vec<JobRef>,
}

/// A job as a Complete response names it: where to poll it and where to stream its events.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobRef {
    /// Job id.
    pub id: String,
    /// Preset.
    pub preset: String,
    /// State when the response was made.
    pub state: crate::pipeline::jobs::JobState,
    /// `GET` it for the job's status (with the caller's token).
    pub status_url: String,
    /// Server-sent events of the job; the URL carries its own short-lived token (a browser's
    /// `EventSource` cannot send headers).
    pub events_url: String,
}

impl JobRef {
    /// The reference to `job`, with a freshly signed events URL.
    #[must_use]
    pub fn new(st: &AppState, job: &crate::pipeline::jobs::Job) -> Self {
        Self {
            id: job.id.clone(),
            preset: job.preset.clone(),
            state: job.state,
            status_url: format!("/v1/jobs/{}", job.id),
            events_url: crate::pipeline::stream_token::events_url(&st.stream_key, &job.id, now_ms()),
        }
    }
}

/// A new random id (32 hex digits): session ids and the unique part of object keys.
#[must_use]
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Creates the multipart upload and its session.
pub async fn create(st: &AppState, caller: &Caller, req: NewUpload) -> ApiResult<Session> {
    let policy = &caller.0;
    policy::check_filename(&req.filename)?;
    let content_type = policy::normalize_content_type(req.content_type.as_deref())?;
    policy::check_object(policy, req.size, &content_type)?;
    policy::check_metadata(&req.metadata)?;
    let algorithm = req
        .checksum_algorithm
        .as_deref()
        .map(ChecksumAlgorithm::from_str)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if algorithm == Some(ChecksumAlgorithm::Crc64Nvme) {
        return Err(ApiError::BadRequest(
            "checksum_algorithm crc64nvme has no per-part checksums in S3: use crc32c or sha256".into(),
        ));
    }
    if st.db.open_count(&policy.name).await? >= u64::from(policy.max_open_uploads) {
        return Err(ApiError::TooManyOpenUploads { max: policy.max_open_uploads });
    }
    if let (Some(quota), Some(size)) = (policy.quota, req.size) {
        let used = st.db.open_bytes(&policy.name).await?;
        if used.saturating_add(size) > quota {
            return Err(ApiError::QuotaExceeded { quota, used });
        }
    }
    let plan = match req.size {
        Some(size) => Some(hoist_core::plan::plan(size, st.part_size, 0, &st.limits).map_err(|e| match e {
            PlanError::TooLarge { max, .. } => ApiError::TooLarge { size, max },
            other @ PlanError::PartSizeOutOfRange { .. } => ApiError::BadRequest(other.to_string()),
        })?),
        None => None,
    };
    let id = new_id();
    let key = policy::object_key(policy, &id, &req.filename);
    let meta = ObjectMeta { content_type: Some(&content_type), metadata: &req.metadata };
    let upload_id = st
        .s3
        // The service completes from ListParts, part checksums only: COMPOSITE.
        .create_upload(
            &st.bucket,
            &key,
            meta,
            algorithm.map(|algorithm| UploadChecksum { algorithm, full_object: false }),
        )
        .await
        .map_err(|e| ApiError::store("create the multipart upload", e))?
        .upload_id;
    let now = now_ms();
    let session = Session {
        id,
        api_key: policy.name.clone(),
        bucket: st.bucket.clone(),
        object_key: key,
        upload_id,
        filename: req.filename,
        content_type,
        size: req.size,
        part_size: plan.map(|p| p.part_size),
        part_count: plan.map(|p| u32::try_from(p.part_count).unwrap_or(u32::MAX)),
        checksum_algorithm: algorithm.map(|a| a.cli_name().to_owned()),
        state: State::Created,
        created_at: now,
        updated_at: now,
        expires_at: now.saturating_add(millis(st.session_ttl)),
        completed_at: None,
        etag: None,
        checksum: None,
    };
    if let Err(e) = st.db.insert(&session).await {
        if let Err(abort) = st.s3.abort(&upload_of(&session)).await {
            tracing::error!(error = %abort, upload_id = %session.upload_id, "could not abort an upload whose session was not stored");
        }
        return Err(e.into());
    }
    Metrics::inc(&st.metrics.created, 1);
    tracing::info!(id = %session.id, key = %session.object_key, size = ?session.size, "upload created");
    Ok(session)
}

/// The caller's session `id`, or 404 (also for another key's id: indistinguishable on purpose).
pub async fn get(st: &AppState, caller: &Caller, id: &str) -> ApiResult<Session> {
    st.db.get(&caller.0.name, id).await?.ok_or_else(|| ApiError::UploadNotFound(id.to_owned()))
}

/// The caller's session for an S3 upload id and key (Uppy's routes name uploads that way).
pub async fn get_by_upload_id(st: &AppState, caller: &Caller, upload_id: &str, key: &str) -> ApiResult<Session> {
    st.db
        .get_by_upload_id(&caller.0.name, upload_id, key)
        .await?
        .ok_or_else(|| ApiError::UploadNotFound(upload_id.to_owned()))
}

/// Refuses calls on sessions that are finished or past their expiry.
fn require_open(s: &Session) -> ApiResult<()> {
    let state = s.state_now();
    let hint = match state {
        State::Created | State::Uploading => return Ok(()),
        State::Completed => "it is complete; GET /v1/uploads/{id} shows the result",
        State::Aborted => "it was aborted; start a new upload",
        State::Expired => "its session expired and it was aborted; start a new upload",
        State::Deleted => "it was completed, then deleted; start a new upload",
    };
    Err(ApiError::WrongState { id: s.id.clone(), state: state.as_str().into(), hint })
}

/// The planned length of part `n` (1-based), when the size is known.
fn planned_len(s: &Session, n: u32) -> Option<u64> {
    let (size, part_size, count) = (s.size?, s.part_size?, s.part_count?);
    Some(if n < count { part_size } else { size - part_size * u64::from(count - 1) })
}

/// Signs UploadPart URLs for `numbers`, binding planned lengths and the given checksums
/// (base64, keyed by part number as a string).
pub async fn sign_parts<H: std::hash::BuildHasher>(
    st: &AppState,
    caller: &Caller,
    s: &Session,
    numbers: &[u32],
    checksums: &HashMap<String, String, H>,
) -> ApiResult<Vec<SignedPart>> {
    require_open(s)?;
    let started = Instant::now();
    if numbers.is_empty() {
        return Err(ApiError::BadRequest("part_numbers is empty: list the parts to sign, e.g. [1, 2, 3]".into()));
    }
    if numbers.len() > MAX_PARTS_PER_REQUEST {
        return Err(ApiError::BadRequest(format!(
            "{} part numbers in one request: ask for at most {MAX_PARTS_PER_REQUEST}",
            numbers.len()
        )));
    }
    let max = s.part_count.unwrap_or_else(|| st.limits.max_part_number());
    let mut seen = std::collections::HashSet::new();
    for &n in numbers {
        if n == 0 || n > max {
            return Err(ApiError::BadRequest(format!(
                "part number {n} is out of range: this upload has parts 1 to {max}"
            )));
        }
        if !seen.insert(n) {
            return Err(ApiError::BadRequest(format!("part number {n} is listed twice")));
        }
    }
    let algorithm = s.checksum_algorithm.as_deref().and_then(|a| ChecksumAlgorithm::from_str(a).ok());
    let mut bound: HashMap<u32, Checksum> = HashMap::new();
    for (k, v) in checksums {
        let n: u32 =
            k.parse().map_err(|_| ApiError::BadRequest(format!("checksums key {k:?} is not a part number")))?;
        if !seen.contains(&n) {
            return Err(ApiError::BadRequest(format!(
                "a checksum is given for part {n}, which is not in part_numbers"
            )));
        }
        let Some(alg) = algorithm else {
            return Err(ApiError::BadRequest("checksums were sent but the upload was created without checksum_algorithm: create it with one, or send none".into()));
        };
        let c = Checksum::from_base64(alg, v)
            .ok_or_else(|| ApiError::BadRequest(format!("checksum of part {n} is not a base64 {alg} value")))?;
        bound.insert(n, c);
    }
    if let Some(alg) = algorithm
        && let Some(n) = numbers.iter().find(|n| !bound.contains_key(n))
    {
        return Err(ApiError::BadRequest(format!(
            "part {n} has no checksum: this upload was created with checksum_algorithm {alg}, so every part needs one"
        )));
    }
    stage_unknown_size(st, caller, s, numbers).await?;
    let creds = st.presigner.credentials().await?;
    let now = SystemTime::now();
    let signed = numbers
        .iter()
        .map(|&n| {
            st.presigner.upload_part(
                &creds,
                now,
                st.part_url_ttl,
                &PartToSign {
                    key: &s.object_key,
                    upload_id: &s.upload_id,
                    part_number: n,
                    content_length: planned_len(s, n),
                    checksum: bound.get(&n),
                },
            )
        })
        .collect::<ApiResult<Vec<_>>>()?;
    if s.state == State::Created {
        st.db.transition(&s.id, &[State::Created], State::Uploading).await?;
    }
    Metrics::inc(&st.metrics.urls_signed, signed.len() as u64);
    st.metrics.observe_sign(started.elapsed());
    Ok(signed)
}

/// Counts what the parts about to be signed may stage, for an upload of unknown size (see the
/// module doc), refusing if that would put the key over its quota. Part URLs of uploads of
/// declared size bind their planned length, which the declared size already counts.
async fn stage_unknown_size(st: &AppState, caller: &Caller, s: &Session, numbers: &[u32]) -> ApiResult<()> {
    if s.size.is_some() {
        return Ok(());
    }
    let highest = numbers.iter().copied().max().unwrap_or(0);
    let staged = u64::from(highest).saturating_mul(st.limits.max_part_size);
    let quota = caller.0.quota;
    if st.db.stage(&s.id, &s.api_key, staged, quota).await? {
        return Ok(());
    }
    let used = st.db.open_bytes(&s.api_key).await?;
    Err(ApiError::QuotaExceeded { quota: quota.unwrap_or(0), used })
}

/// Refuses to complete while the caller's open uploads are over its quota (the quota was
/// lowered, or uploads of unknown size signed more parts than it allows).
async fn check_quota(st: &AppState, caller: &Caller) -> ApiResult<()> {
    let Some(quota) = caller.0.quota else { return Ok(()) };
    let used = st.db.open_bytes(&caller.0.name).await?;
    if used > quota { Err(ApiError::QuotaExceeded { quota, used }) } else { Ok(()) }
}

/// Completes the session's upload with `chosen`, retrying what a retry can cure. `Ok(Some(e))`:
/// it kept failing that way (its answers may have been lost after the store completed it, so the
/// caller's HEAD decides); `Ok(None)`: completed, or answered `NoSuchUpload` (the HEAD decides too).
async fn send_complete(st: &AppState, s: &Session, chosen: &[PartInfo]) -> ApiResult<Option<hoist_core::Error>> {
    let list: Vec<(u32, String, Option<Checksum>)> =
        chosen.iter().map(|p| (p.number, p.etag.clone(), p.checksum.clone())).collect();
    let backoff = hoist_core::retry::RetryConfig::default();
    for attempt in 1..=COMPLETE_ATTEMPTS {
        match st.s3.complete(&upload_of(s), &list, None).await {
            Ok(_) => return Ok(None),
            Err(e) if is_no_such_upload(&e) => {
                tracing::warn!(id = %s.id, "Complete answered NoSuchUpload; checking whether the object is there");
                return Ok(None);
            }
            Err(e) if e.is_retryable() && attempt < COMPLETE_ATTEMPTS => {
                tracing::warn!(id = %s.id, attempt, error = %e, "Complete failed; retrying");
                tokio::time::sleep(backoff.delay(attempt - 1)).await;
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(id = %s.id, error = %e, "Complete kept failing; checking whether the object is there");
                return Ok(Some(e));
            }
            Err(e) => return Err(ApiError::store("complete the upload", e)),
        }
    }
    Ok(None)
}

/// The multipart upload a session stands for.
fn upload_of(s: &Session) -> UploadRef {
    UploadRef { bucket: s.bucket.clone(), key: s.object_key.clone(), upload_id: s.upload_id.clone() }
}

/// The parts S3 holds for the session (all pages), ascending.
pub async fn list_parts(st: &AppState, s: &Session) -> ApiResult<Vec<PartInfo>> {
    require_open(s)?;
    let mut parts = st.s3.list_parts(&upload_of(s)).await.map_err(|e| ApiError::store("list the parts", e))?;
    parts.sort_by_key(|p| p.number);
    Ok(parts)
}

fn same_etag(a: &str, b: &str) -> bool {
    a.trim().trim_matches('"') == b.trim().trim_matches('"')
}

/// The multipart `ETag` the client's parts make (`None` when a part's `ETag` is not an MD5).
fn etag_of_parts(parts: &[(u32, String)]) -> Option<String> {
    let md5s: Option<Vec<[u8; 16]>> = parts.iter().map(|(_, e)| hoist_core::checksum::etag_to_md5(e)).collect();
    md5s.map(|m| hoist_core::checksum::multipart_etag(&m))
}

/// Attempts at CompleteMultipartUpload when it fails in a way a retry can cure: enough to ride
/// out a lost answer or a short burst of 5xx without holding the caller's request for long
/// (with the engine's default backoff, at most 0.7 s of waiting in all).
pub const COMPLETE_ATTEMPTS: u32 = 4;

fn is_no_such_upload(e: &hoist_core::Error) -> bool {
    matches!(e, hoist_core::Error::Service { status: 404, code, .. } if code == "NoSuchUpload")
}

/// Completes after checking the client's parts against ListParts and the plan; HEADs the object;
/// records the completion, its `upload.completed` event and the jobs its rules start in one
/// transaction.
///
/// Idempotent, as S3's Complete is: a repeat of the Complete that completed the upload (same
/// parts, so the same multipart `ETag`) answers the same result; and when a Complete reached the
/// store but its answer was lost, the upload is gone from the store (ListParts or Complete say
/// NoSuchUpload) and the HEAD of the object decides: the object's `ETag` must be the one the
/// client's parts make, and its size the planned size.
pub async fn complete(st: &AppState, caller: &Caller, s: &Session, parts: &[(u32, String)]) -> ApiResult<Completed> {
    if s.state == State::Completed {
        return repeated_complete(st, s, parts).await;
    }
    check_quota(st, caller).await?;
    require_open(s)?;
    if parts.is_empty() {
        return Err(ApiError::BadRequest("parts is empty: send every part's number and ETag".into()));
    }
    for (i, (n, _)) in parts.iter().enumerate() {
        let want = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if *n != want {
            return Err(ApiError::PartsMismatch(format!(
                "parts must be numbered 1, 2, 3, … in order without gaps; part {want} is missing or out of order"
            )));
        }
    }
    if let Some(count) = s.part_count
        && parts.len() != count as usize
    {
        return Err(ApiError::PartsMismatch(format!("{} parts were sent but the upload has {count}", parts.len())));
    }
    let listed = match st.s3.list_parts(&upload_of(s)).await {
        Ok(listed) => Some(listed),
        // Gone from the store: completed by a Complete whose answer was lost, or aborted.
        Err(e) if is_no_such_upload(&e) => None,
        Err(e) => return Err(ApiError::store("list the parts", e)),
    };
    let checked = match listed {
        Some(listed) => Some(check_parts(st, caller, s, parts, listed).await?),
        None => None,
    };
    // A Complete that kept failing in a way a retry could cure: its answers may have been lost
    // after the store completed the upload, so the HEAD below decides before it is reported.
    let mut complete_error = None;
    if let Some((chosen, _)) = &checked {
        complete_error = send_complete(st, s, chosen).await?;
    } else {
        tracing::warn!(id = %s.id, "ListParts answered NoSuchUpload; checking whether an earlier Complete made the object");
    }
    let head = match st.s3.head(&s.bucket, &s.object_key).await {
        Ok(h) => h,
        Err(_) if let Some(e) = complete_error => return Err(ApiError::store("complete the upload", e)),
        Err(hoist_core::Error::Service { status: 404, .. }) if checked.is_none() => {
            return Err(ApiError::WrongState {
                id: s.id.clone(),
                state: "gone".into(),
                hint: "the store no longer has this upload and no object was made from it; start a new upload",
            });
        }
        Err(e) => return Err(ApiError::store("verify the completed object", e)),
    };
    let total = if let Some((chosen, total)) = &checked {
        let verified = if head.size == *total {
            head.compare_with_parts(chosen).map(|_| ())
        } else {
            Err(format!("the object is {} bytes, its parts add up to {total}", head.size))
        };
        if let Err(problem) = verified {
            if let Some(e) = complete_error {
                // Not the object these parts make: the Complete's own failure is the answer.
                return Err(ApiError::store("complete the upload", e));
            }
            return Err(ApiError::store("verify the completed object", hoist_core::Error::Integrity(problem)));
        }
        *total
    } else {
        // No part list to compare with: the object must be the one these parts make.
        let same = etag_of_parts(parts).is_some_and(|e| same_etag(&e, &head.etag))
            && s.size.is_none_or(|size| size == head.size);
        if !same {
            return Err(ApiError::WrongState {
                id: s.id.clone(),
                state: "gone".into(),
                hint: "the store no longer has this upload and the object there is not made of these parts; start a new upload",
            });
        }
        head.size
    };
    let checksum = head.checksum.map(|(a, v)| format!("{}:{v}", a.s3_name()));
    let done = Completed {
        location: st.presigner.object_url(&s.object_key),
        bucket: s.bucket.clone(),
        key: s.object_key.clone(),
        etag: head.etag,
        size: total,
        checksum,
        jobs: Vec::new(),
    };
    let Some(jobs) = record_completion(st, s, &done).await? else {
        // Another request recorded it first: answer what it recorded.
        let now = st.db.get(&s.api_key, &s.id).await?.ok_or_else(|| ApiError::UploadNotFound(s.id.clone()))?;
        return repeated_complete(st, &now, parts).await;
    };
    Metrics::inc(&st.metrics.completed, 1);
    Metrics::inc(&st.metrics.bytes_completed, total);
    tracing::info!(id = %s.id, key = %s.object_key, size = total, jobs = jobs.len(), "upload completed");
    Ok(Completed { jobs, ..done })
}

/// The parts the client named, checked against ListParts (every `ETag`, every planned size) and
/// the caller's size limit; answers them with their total size.
async fn check_parts(
    st: &AppState,
    caller: &Caller,
    s: &Session,
    parts: &[(u32, String)],
    listed: Vec<PartInfo>,
) -> ApiResult<(Vec<PartInfo>, u64)> {
    let listed: HashMap<u32, PartInfo> = listed.into_iter().map(|p| (p.number, p)).collect();
    let mut chosen = Vec::with_capacity(parts.len());
    let mut total = 0u64;
    for (n, etag) in parts {
        let p = listed.get(n).ok_or_else(|| ApiError::PartsMismatch(format!("part {n} is not in the store")))?;
        if !same_etag(&p.etag, etag) {
            return Err(ApiError::PartsMismatch(format!("part {n}: the ETag sent does not match the stored part's")));
        }
        if let Some(len) = planned_len(s, *n)
            && p.size != len
        {
            return Err(ApiError::PartsMismatch(format!("part {n} is {} bytes but the plan says {len}", p.size)));
        }
        total += p.size;
        chosen.push(p.clone());
    }
    if s.size.is_none() && total > caller.0.max_size {
        abort(st, s).await?;
        return Err(ApiError::TooLarge { size: total, max: caller.0.max_size });
    }
    Ok((chosen, total))
}

/// A Complete of an upload that is complete already: the same result when the parts are the ones
/// that made the object (a retry after a lost answer), 409 otherwise.
async fn repeated_complete(st: &AppState, s: &Session, parts: &[(u32, String)]) -> ApiResult<Completed> {
    let stored = s.etag.as_deref().unwrap_or_default();
    if !etag_of_parts(parts).is_some_and(|e| same_etag(&e, stored)) {
        return Err(ApiError::WrongState {
            id: s.id.clone(),
            state: State::Completed.as_str().into(),
            hint: "it was completed with other parts; GET /v1/uploads/{id} shows the result",
        });
    }
    let jobs = crate::pipeline::jobs::for_upload(&st.db, &s.api_key, &s.id).await?;
    Ok(Completed {
        location: st.presigner.object_url(&s.object_key),
        bucket: s.bucket.clone(),
        key: s.object_key.clone(),
        etag: stored.to_owned(),
        size: s.size.unwrap_or(0),
        checksum: s.checksum.clone(),
        jobs: jobs.iter().map(|j| JobRef::new(st, j)).collect(),
    })
}

/// One transaction: the session completed (if it still was open), its `upload.completed` event,
/// and a job per matching rule. `None` when another request completed the session first.
async fn record_completion(st: &AppState, s: &Session, done: &Completed) -> ApiResult<Option<Vec<JobRef>>> {
    use crate::pipeline::{events, jobs};
    let mut tx = st.db.begin_write().await?;
    if !crate::db::complete_in(&mut tx, &s.id, &done.etag, done.checksum.as_deref(), done.size).await? {
        return Ok(None);
    }
    let source = jobs::NewJob {
        api_key: s.api_key.clone(),
        upload_id: Some(s.id.clone()),
        bucket: s.bucket.clone(),
        source_key: s.object_key.clone(),
        source_etag: done.etag.clone(),
        source_size: done.size,
        content_type: s.content_type.clone(),
        preset: String::new(),
        max_attempts: st.pipeline.max_attempts,
        timeout: st.pipeline.job_timeout,
    };
    let queued: Vec<JobRef> = jobs::enqueue_matching(&mut tx, &st.pipeline.rules, &source)
        .await?
        .iter()
        .map(|j| JobRef::new(st, j))
        .collect();
    let data = serde_json::json!({
        "upload_id": s.id,
        "bucket": done.bucket,
        "key": done.key,
        "filename": s.filename,
        "content_type": s.content_type,
        "size": done.size,
        "etag": done.etag,
        "checksum": done.checksum,
        "jobs": queued.iter().map(|j| &j.id).collect::<Vec<_>>(),
    });
    st.outbox
        .record(
            &mut tx,
            &events::NewEvent {
                kind: events::UPLOAD_COMPLETED,
                api_key: &s.api_key,
                subject: &s.id,
                dedup_key: format!("{}:{}", events::UPLOAD_COMPLETED, s.id),
                data,
            },
        )
        .await?;
    tx.commit().await?;
    st.outbox.wake();
    Ok(Some(queued))
}

/// What deleting a completed upload removed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Deleted {
    /// Jobs that were queued or running and are now cancelled.
    pub jobs_cancelled: usize,
    /// Objects deleted: the upload's object and its jobs' outputs.
    pub objects_deleted: usize,
}

/// Deletes a completed upload: cancels its open jobs (running workers stop at their next
/// heartbeat and delete what they wrote), deletes its jobs' outputs and its object, and marks it
/// `deleted`. Repeating it after a failure finishes what is left.
pub async fn delete_completed(st: &AppState, s: &Session) -> ApiResult<Deleted> {
    use crate::pipeline::{jobs, worker};
    if s.state != State::Completed {
        return Err(ApiError::WrongState {
            id: s.id.clone(),
            state: s.state_now().as_str().into(),
            hint: "only completed uploads can be deleted",
        });
    }
    let before = jobs::for_upload(&st.db, &s.api_key, &s.id).await?;
    let open = before.iter().filter(|j| !j.state.is_terminal()).count();
    jobs::cancel_for_upload(&st.db, &st.outbox, &s.api_key, &s.id).await?;
    let derived = worker::derived_prefix(&s.object_key, &s.id);
    let mut keys = Vec::new();
    st.s3
        .list_objects(&s.bucket, &derived, &mut |o| keys.push(o.key))
        .await
        .map_err(|e| ApiError::store("list the upload's outputs", e))?;
    keys.push(s.object_key.clone());
    for key in &keys {
        st.s3.delete(&s.bucket, key).await.map_err(|e| ApiError::store("delete the upload's objects", e))?;
    }
    st.db.transition(&s.id, &[State::Completed], State::Deleted).await?;
    tracing::info!(id = %s.id, key = %s.object_key, jobs_cancelled = open, objects = keys.len(), "completed upload deleted");
    Ok(Deleted { jobs_cancelled: open, objects_deleted: keys.len() })
}

/// Aborts the multipart upload (an upload S3 no longer has counts as aborted) and marks it.
pub async fn abort(st: &AppState, s: &Session) -> ApiResult<()> {
    require_open(s)?;
    abort_in_store(st, s).await?;
    st.db.transition(&s.id, &[State::Created, State::Uploading], State::Aborted).await?;
    Metrics::inc(&st.metrics.aborted, 1);
    tracing::info!(id = %s.id, key = %s.object_key, "upload aborted");
    Ok(())
}

/// AbortMultipartUpload, treating NoSuchUpload as done.
pub async fn abort_in_store(st: &AppState, s: &Session) -> ApiResult<()> {
    match st.s3.abort(&upload_of(s)).await {
        Ok(()) | Err(hoist_core::Error::Service { status: 404, .. }) => Ok(()),
        Err(e) => Err(ApiError::store("abort the upload", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_lengths_cover_the_size_exactly() {
        let mut s = crate::db::tests_support::session();
        s.size = Some(25);
        s.part_size = Some(10);
        s.part_count = Some(3);
        assert_eq!((planned_len(&s, 1), planned_len(&s, 2), planned_len(&s, 3)), (Some(10), Some(10), Some(5)));
        s.size = None;
        assert_eq!(planned_len(&s, 1), None);
    }

    #[test]
    fn finished_and_expired_sessions_are_refused_with_their_state() {
        let mut s = crate::db::tests_support::session();
        s.expires_at = now_ms() + 60_000;
        require_open(&s).unwrap();
        s.expires_at = now_ms() - 1;
        assert!(matches!(require_open(&s), Err(ApiError::WrongState { ref state, .. }) if state == "expired"));
        s.state = State::Completed;
        assert!(matches!(require_open(&s), Err(ApiError::WrongState { ref state, .. }) if state == "completed"));
    }
}
