//! Uppy's Companion-style S3 routes, as `@uppy/aws-s3` calls them, under `/s3` (token in the
//! `Authorization` header) and `/u/{token}/s3` (token in the path, for `companionUrl`s, since
//! Uppy sends no headers of its own there). Same policy and auth as `/v1`.
//!
//! Decisions: errors are `{"message": …}` (what Uppy shows); Uppy sends no file size, so part
//! URLs bind no Content-Length, the size limit is enforced at complete and the quota counts each
//! signed part at S3's largest part size (see `uploads`); part numbers in the path are plain
//! decimal (`01`, `+1` refused); Uppy's
//! own metadata (`name`, `type`, …) is passed on only where S3 can carry it (ASCII values), the
//! rest is dropped rather than failing the upload.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::extract::ApiJson;
use crate::error::ApiError;
use crate::policy::{self, Caller};
use crate::state::AppState;
use crate::uploads::{self, NewUpload};

/// An [`ApiError`] in Companion's shape.
#[derive(Debug)]
pub struct CompanionError(ApiError);

impl From<ApiError> for CompanionError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for CompanionError {
    fn into_response(self) -> Response {
        let body = json!({ "message": self.0.to_string() });
        self.0.respond(body)
    }
}

type Result<T> = std::result::Result<T, CompanionError>;

/// The routes, to be nested under `/s3` and `/u/{token}/s3`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/multipart", post(create))
        .route("/multipart/{upload_id}", get(list_parts).delete(abort))
        .route("/multipart/{upload_id}/{part_number}", get(sign))
        .route("/multipart/{upload_id}/complete", post(complete))
        .route("/params", get(params))
}

fn auth(caller: std::result::Result<Caller, ApiError>) -> Result<Caller> {
    caller.map_err(CompanionError)
}

/// The caller and the session Uppy names by `{upload_id}` in the path and `?key=`.
async fn session(
    st: &AppState,
    caller: std::result::Result<Caller, ApiError>,
    path: &HashMap<String, String>,
    q: &KeyQuery,
) -> Result<(Caller, crate::db::Session)> {
    let caller = auth(caller)?;
    let s = uploads::get_by_upload_id(st, &caller, path.get("upload_id").map_or("", String::as_str), &q.key).await?;
    Ok((caller, s))
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    filename: String,
    #[serde(rename = "type")]
    content_type: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, serde_json::Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    key: String,
    upload_id: String,
    bucket: String,
}

async fn create(
    State(st): State<Arc<AppState>>,
    caller: std::result::Result<Caller, ApiError>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Json<Created>> {
    let caller = auth(caller)?;
    let metadata: Vec<(String, String)> = body
        .metadata
        .into_iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.to_ascii_lowercase(), v.to_owned())))
        .filter(|kv| policy::check_metadata(std::slice::from_ref(kv)).is_ok())
        .collect();
    let s = uploads::create(
        &st,
        &caller,
        NewUpload {
            filename: body.filename,
            size: None,
            content_type: body.content_type,
            checksum_algorithm: None,
            metadata,
        },
    )
    .await?;
    Ok(Json(Created { key: s.object_key, upload_id: s.upload_id, bucket: s.bucket }))
}

#[derive(Debug, Deserialize)]
struct KeyQuery {
    key: String,
}

async fn sign(
    State(st): State<Arc<AppState>>,
    caller: std::result::Result<Caller, ApiError>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<KeyQuery>,
) -> Result<Json<serde_json::Value>> {
    let n = p.get("part_number").and_then(|n| part_number(n)).ok_or_else(|| {
        ApiError::BadRequest(
            "the part number in the path is not a number from 1 to 10000 (written plainly: 1, not 01 or +1)".into(),
        )
    })?;
    let (caller, s) = session(&st, caller, &p, &q).await?;
    let signed = uploads::sign_parts(&st, &caller, &s, &[n], &HashMap::new()).await?;
    let part = signed.into_iter().next().ok_or_else(|| ApiError::BadRequest("nothing to sign".into()))?;
    Ok(Json(json!({ "url": part.url, "expires": st.part_url_ttl.as_secs() })))
}

/// A part number as Uppy writes it: canonical decimal, 1 to S3's highest (10,000). `01` or `+1` would name the
/// same part as `1` through another path, so they are refused rather than read leniently.
fn part_number(text: &str) -> Option<u32> {
    let canonical = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    let n: u32 = if canonical { text.parse().ok()? } else { return None };
    (1..=hoist_core::ProviderLimits::AWS.max_part_number()).contains(&n).then_some(n)
}

async fn list_parts(
    State(st): State<Arc<AppState>>,
    caller: std::result::Result<Caller, ApiError>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<KeyQuery>,
) -> Result<Json<Vec<serde_json::Value>>> {
    let (_, s) = session(&st, caller, &p, &q).await?;
    let parts = uploads::list_parts(&st, &s).await?;
    Ok(Json(
        parts
            .into_iter()
            .map(|p| json!({ "PartNumber": p.number, "ETag": format!("\"{}\"", p.etag), "Size": p.size }))
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
struct CompletePart {
    #[serde(rename = "PartNumber")]
    part_number: u32,
    #[serde(rename = "ETag")]
    etag: String,
}

#[derive(Debug, Deserialize)]
struct CompleteBody {
    parts: Vec<CompletePart>,
}

async fn complete(
    State(st): State<Arc<AppState>>,
    caller: std::result::Result<Caller, ApiError>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<KeyQuery>,
    ApiJson(body): ApiJson<CompleteBody>,
) -> Result<Json<serde_json::Value>> {
    let (caller, s) = session(&st, caller, &p, &q).await?;
    let mut parts: Vec<(u32, String)> = body.parts.into_iter().map(|p| (p.part_number, p.etag)).collect();
    parts.sort_by_key(|p| p.0);
    let done = uploads::complete(&st, &caller, &s, &parts).await?;
    Ok(Json(json!({ "location": done.location, "key": done.key, "bucket": done.bucket, "jobs": done.jobs })))
}

async fn abort(
    State(st): State<Arc<AppState>>,
    caller: std::result::Result<Caller, ApiError>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<KeyQuery>,
) -> Result<Json<serde_json::Value>> {
    let (_, s) = session(&st, caller, &p, &q).await?;
    uploads::abort(&st, &s).await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
struct ParamsQuery {
    filename: String,
    #[serde(rename = "type")]
    content_type: Option<String>,
}

/// A POST policy form for a small file in one request (Uppy's non-multipart path).
async fn params(
    State(st): State<Arc<AppState>>,
    caller: std::result::Result<Caller, ApiError>,
    Query(q): Query<ParamsQuery>,
) -> Result<Json<serde_json::Value>> {
    let caller = auth(caller)?;
    policy::check_filename(&q.filename)?;
    let content_type = policy::normalize_content_type(q.content_type.as_deref())?;
    policy::check_object(&caller.0, None, &content_type)?;
    let key = policy::object_key(&caller.0, &uploads::new_id(), &q.filename);
    let creds = st.presigner.credentials().await?;
    let form = st.presigner.post_form(
        &creds,
        std::time::SystemTime::now(),
        st.part_url_ttl,
        &key,
        &content_type,
        caller.0.max_size,
    );
    Ok(Json(json!({ "method": "POST", "url": form.url, "fields": form.fields, "headers": {} })))
}
