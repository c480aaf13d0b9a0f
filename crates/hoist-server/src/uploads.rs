//! What the service does with an upload, whichever API asked (`/v1` or Uppy's `/s3` routes):
//! create, sign part URLs, list parts, complete, abort, look up. Handlers translate JSON to
//! these calls and back; the rules live here once.
//!
//! Decisions:
//! - Complete never trusts the client's part list alone: it is checked against ListParts
//!   (every ETag, every planned size, no gap), and a HEAD of the object follows (size and
//!   multipart ETag computed from the parts). A mismatch is a 4xx and the upload stays
//!   resumable; a completed upload is never reported as failed because a response was lost
//!   (NoSuchUpload on Complete → HEAD decides).
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

use hoist_core::checksum::{Checksum, ChecksumAlgorithm};
use hoist_core::client::PartInfo;
use hoist_core::plan::PlanError;
use rand::RngCore as _;

use crate::db::{Session, State, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::policy::{self, Caller};
use crate::presign::{PartToSign, SignedPart};
use crate::state::AppState;

/// Most part URLs one request may ask for (S3's part count limit).
pub const MAX_PARTS_PER_REQUEST: usize = 10_000;

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
        return Err(ApiError::BadRequest("checksum_algorithm crc64nvme has no per-part checksums in S3: use crc32c or sha256".into()));
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
    let upload_id = st
        .s3
        .create_upload(&st.bucket, &key, Some(&content_type), &req.metadata, algorithm)
        .await
        .map_err(|e| ApiError::store("create the multipart upload", e))?;
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
        if let Err(abort) = st.s3.abort(&st.bucket, &session.object_key, &session.upload_id).await {
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
        return Err(ApiError::BadRequest(format!("{} part numbers in one request: ask for at most {MAX_PARTS_PER_REQUEST}", numbers.len())));
    }
    let max = s.part_count.unwrap_or(10_000);
    let mut seen = std::collections::HashSet::new();
    for &n in numbers {
        if n == 0 || n > max {
            return Err(ApiError::BadRequest(format!("part number {n} is out of range: this upload has parts 1 to {max}")));
        }
        if !seen.insert(n) {
            return Err(ApiError::BadRequest(format!("part number {n} is listed twice")));
        }
    }
    let algorithm = s.checksum_algorithm.as_deref().and_then(|a| ChecksumAlgorithm::from_str(a).ok());
    let mut bound: HashMap<u32, Checksum> = HashMap::new();
    for (k, v) in checksums {
        let n: u32 = k.parse().map_err(|_| ApiError::BadRequest(format!("checksums key {k:?} is not a part number")))?;
        if !seen.contains(&n) {
            return Err(ApiError::BadRequest(format!("a checksum is given for part {n}, which is not in part_numbers")));
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
        return Err(ApiError::BadRequest(format!("part {n} has no checksum: this upload was created with checksum_algorithm {alg}, so every part needs one")));
    }
    stage_unknown_size(st, caller, s, numbers).await?;
    let creds = st.presigner.credentials().await?;
    let now = SystemTime::now();
    let signed = numbers
        .iter()
        .map(|&n| {
            st.presigner.upload_part(&creds, now, st.part_url_ttl, &PartToSign {
                key: &s.object_key,
                upload_id: &s.upload_id,
                part_number: n,
                content_length: planned_len(s, n),
                checksum: bound.get(&n),
            })
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

/// The parts S3 holds for the session (all pages), ascending.
pub async fn list_parts(st: &AppState, s: &Session) -> ApiResult<Vec<PartInfo>> {
    require_open(s)?;
    let mut parts = st
        .s3
        .list_parts(&s.bucket, &s.object_key, &s.upload_id)
        .await
        .map_err(|e| ApiError::store("list the parts", e))?;
    parts.sort_by_key(|p| p.number);
    Ok(parts)
}

fn same_etag(a: &str, b: &str) -> bool {
    a.trim().trim_matches('"') == b.trim().trim_matches('"')
}

/// Completes after checking the client's parts against ListParts and the plan; HEADs the object.
pub async fn complete(st: &AppState, caller: &Caller, s: &Session, parts: &[(u32, String)]) -> ApiResult<Completed> {
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
    let listed: HashMap<u32, PartInfo> = list_parts(st, s).await?.into_iter().map(|p| (p.number, p)).collect();
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
    let target = (s.bucket.as_str(), s.object_key.as_str(), s.upload_id.as_str());
    let list: Vec<(u32, String, Option<Checksum>)> = chosen.iter().map(|p| (p.number, p.etag.clone(), p.checksum.clone())).collect();
    match st.s3.complete(target, &list).await {
        Ok(_) => {}
        // The upload is gone: a previous Complete may have succeeded and its response was lost.
        Err(hoist_core::Error::Service { status: 404, ref code, .. }) if code == "NoSuchUpload" => {
            tracing::warn!(id = %s.id, "Complete answered NoSuchUpload; checking whether the object is there");
        }
        Err(e) => return Err(ApiError::store("complete the upload", e)),
    }
    let head = st.s3.head(&s.bucket, &s.object_key).await.map_err(|e| ApiError::store("verify the completed object", e))?;
    let verified = if head.size == total {
        head.compare_with_parts(&chosen)
    } else {
        Err(format!("the object is {} bytes, its parts add up to {total}", head.size))
    };
    if let Err(problem) = verified {
        return Err(ApiError::store("verify the completed object", hoist_core::Error::Integrity(problem)));
    }
    let checksum = head.checksum.map(|(a, v)| format!("{}:{v}", a.s3_name()));
    st.db.complete(&s.id, &head.etag, checksum.as_deref(), total).await?;
    Metrics::inc(&st.metrics.completed, 1);
    Metrics::inc(&st.metrics.bytes_completed, total);
    tracing::info!(id = %s.id, key = %s.object_key, size = total, "upload completed");
    Ok(Completed {
        location: st.presigner.object_url(&s.object_key),
        bucket: s.bucket.clone(),
        key: s.object_key.clone(),
        etag: head.etag,
        size: total,
        checksum,
    })
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
    match st.s3.abort(&s.bucket, &s.object_key, &s.upload_id).await {
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
