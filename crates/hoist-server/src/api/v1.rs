//! The `/v1` JSON API (documented in `openapi.json`, served at `/v1/openapi.json`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::extract::ApiJson;
use crate::db::{Session, State as UploadState};
use crate::error::ApiResult;
use crate::policy::Caller;
use crate::presign::SignedPart;
use crate::state::AppState;
use crate::uploads::{self, Completed, NewUpload};

/// The routes under `/v1`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/uploads", post(create))
        .route("/uploads/{id}", get(show).delete(abort))
        .route("/uploads/{id}/parts", post(sign).get(list_parts))
        .route("/uploads/{id}/complete", post(complete))
        .route("/openapi.json", get(openapi))
        .merge(super::jobs::routes())
}

async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], include_str!("../../openapi.json"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    filename: String,
    size: u64,
    content_type: Option<String>,
    checksum_algorithm: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
}

/// Unix milliseconds as RFC 3339.
pub(crate) fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[derive(Debug, Serialize)]
struct Created {
    id: String,
    key: String,
    part_size: u64,
    part_count: u32,
    checksum_algorithm: Option<String>,
    expires_at: String,
}

async fn create(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let s = uploads::create(
        &st,
        &caller,
        NewUpload {
            filename: body.filename,
            size: Some(body.size),
            content_type: body.content_type,
            checksum_algorithm: body.checksum_algorithm,
            metadata: body.metadata.unwrap_or_default().into_iter().collect(),
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            part_size: s.part_size.unwrap_or(0),
            part_count: s.part_count.unwrap_or(0),
            expires_at: rfc3339(s.expires_at),
            checksum_algorithm: s.checksum_algorithm,
            id: s.id,
            key: s.object_key,
        }),
    ))
}

#[derive(Debug, Serialize)]
struct View {
    id: String,
    key: String,
    filename: String,
    size: Option<u64>,
    content_type: String,
    part_size: Option<u64>,
    part_count: Option<u32>,
    checksum_algorithm: Option<String>,
    state: UploadState,
    created_at: String,
    updated_at: String,
    expires_at: String,
    completed_at: Option<String>,
    etag: Option<String>,
    checksum: Option<String>,
}

impl From<Session> for View {
    fn from(s: Session) -> Self {
        Self {
            state: s.state_now(),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
            expires_at: rfc3339(s.expires_at),
            completed_at: s.completed_at.map(rfc3339),
            id: s.id,
            key: s.object_key,
            filename: s.filename,
            size: s.size,
            content_type: s.content_type,
            part_size: s.part_size,
            part_count: s.part_count,
            checksum_algorithm: s.checksum_algorithm,
            etag: s.etag,
            checksum: s.checksum,
        }
    }
}

async fn show(State(st): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<View>> {
    Ok(Json(uploads::get(&st, &caller, &id).await?.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignBody {
    part_numbers: Vec<u32>,
    checksums: Option<HashMap<String, String>>,
}

#[derive(Debug, Serialize)]
struct Signed {
    parts: Vec<SignedPart>,
}

async fn sign(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SignBody>,
) -> ApiResult<Json<Signed>> {
    let s = uploads::get(&st, &caller, &id).await?;
    let parts = uploads::sign_parts(&st, &caller, &s, &body.part_numbers, &body.checksums.unwrap_or_default()).await?;
    Ok(Json(Signed { parts }))
}

#[derive(Debug, Serialize)]
struct ListedPart {
    part_number: u32,
    etag: String,
    size: u64,
    checksum: Option<String>,
}

#[derive(Debug, Serialize)]
struct Listed {
    parts: Vec<ListedPart>,
}

async fn list_parts(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Listed>> {
    let s = uploads::get(&st, &caller, &id).await?;
    let parts = uploads::list_parts(&st, &s).await?;
    Ok(Json(Listed {
        parts: parts
            .into_iter()
            .map(|p| ListedPart {
                part_number: p.number,
                etag: p.etag,
                size: p.size,
                checksum: p.checksum.map(|c| c.to_base64()),
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompletePart {
    part_number: u32,
    etag: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    parts: Vec<CompletePart>,
}

async fn complete(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CompleteBody>,
) -> ApiResult<Json<Completed>> {
    let s = uploads::get(&st, &caller, &id).await?;
    let parts: Vec<(u32, String)> = body.parts.into_iter().map(|p| (p.part_number, p.etag)).collect();
    Ok(Json(uploads::complete(&st, &caller, &s, &parts).await?))
}

#[derive(Debug, Serialize)]
struct Aborted {
    id: String,
    state: UploadState,
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    deleted: Option<uploads::Deleted>,
}

/// `DELETE /v1/uploads/{id}`: aborts an open upload; deletes a completed one with its jobs' outputs.
async fn abort(State(st): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Aborted>> {
    let s = uploads::get(&st, &caller, &id).await?;
    if s.state == UploadState::Completed {
        let deleted = uploads::delete_completed(&st, &s).await?;
        return Ok(Json(Aborted { id: s.id, state: UploadState::Deleted, deleted: Some(deleted) }));
    }
    uploads::abort(&st, &s).await?;
    Ok(Json(Aborted { id: s.id, state: UploadState::Aborted, deleted: None }))
}
