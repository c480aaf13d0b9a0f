//! The pipeline's routes under `/v1`: job status, cancel and retry, the job's server-sent events,
//! and the S3 event notification intake.
//!
//! Decisions:
//! - A job of another API key is a 404, like an upload.
//! - `GET /v1/jobs/{id}/events` is authorised by the signed token in its URL (see
//!   `pipeline::stream_token`), since `EventSource` cannot send headers. It sends a `progress`
//!   event whenever the job changes and a terminal event (`succeeded`, `failed`, `cancelled`,
//!   `dead`) last, then closes. Event ids are the job's `version`: a client reconnecting with
//!   `Last-Event-ID` gets only what changed since (the current state, not every past tick).
//!   Changes are found by reading the row when this process signals a change, and every
//!   [`STREAM_POLL`] for changes made by other processes (`hoist worker`, other replicas).
//! - `POST /v1/events/s3` takes an API key (the objects must be under its prefix), or, with no
//!   `Authorization`, a store's signature (`hoist_store::notify::SIGNATURE_HEADER`, checked
//!   against `AppState::store_events_secret`): then each object belongs to the API key whose
//!   prefix holds it (the longest), and objects under no key's prefix are ignored.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{FromRequest as _, FromRequestParts as _, Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::extract::{ApiJson, MAX_BODY};
use crate::config::KeyPolicy;
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::pipeline::events::{S3Notification, is_derived};
use crate::pipeline::jobs::{self, Job, JobState};
use crate::pipeline::{jobs::NewJob, stream_token};
use crate::policy::Caller;
use crate::state::AppState;
use crate::uploads::JobRef;
use hoist_store::notify::SIGNATURE_HEADER;

/// How often an event stream re-reads its job when nothing in this process said it changed.
pub const STREAM_POLL: Duration = Duration::from_millis(250);

/// The routes, nested under `/v1`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/jobs", get(list))
        .route("/jobs/{id}", get(show))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/retry", post(retry))
        .route("/jobs/{id}/events", get(events))
        .route("/events/s3", post(s3_events))
}

/// A job as the API shows it.
#[derive(Debug, Serialize)]
pub struct JobView {
    id: String,
    upload_id: Option<String>,
    bucket: String,
    key: String,
    preset: String,
    state: JobState,
    progress: f64,
    attempts: u32,
    max_attempts: u32,
    error: Option<jobs::JobFailure>,
    source: Option<serde_json::Value>,
    outputs: Vec<serde_json::Value>,
    created_at: String,
    updated_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    status_url: String,
    events_url: String,
}

impl JobView {
    /// The view of `job`; outputs get GET URLs valid for the part URL lifetime.
    pub async fn new(st: &AppState, job: Job) -> ApiResult<Self> {
        let r = JobRef::new(st, &job);
        let mut outputs: Vec<serde_json::Value> = match job.outputs {
            Some(serde_json::Value::Array(v)) => v,
            _ => Vec::new(),
        };
        if !outputs.is_empty() {
            let creds = st.presigner.credentials().await?;
            let now = SystemTime::now();
            for o in &mut outputs {
                if let Some(key) = o.get("key").and_then(serde_json::Value::as_str) {
                    let url = st.presigner.get_object(&creds, now, st.part_url_ttl, key)?;
                    o["url"] = serde_json::Value::String(url);
                }
            }
        }
        Ok(Self {
            id: job.id,
            upload_id: job.upload_id,
            bucket: job.bucket,
            key: job.source_key,
            preset: job.preset,
            state: job.state,
            progress: job.progress,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            error: job.error,
            source: job.source_info,
            outputs,
            created_at: super::v1::rfc3339(job.created_at),
            updated_at: super::v1::rfc3339(job.updated_at),
            started_at: job.started_at.map(super::v1::rfc3339),
            finished_at: job.finished_at.map(super::v1::rfc3339),
            status_url: r.status_url,
            events_url: r.events_url,
        })
    }
}

async fn owned(st: &AppState, caller: &Caller, id: &str) -> ApiResult<Job> {
    jobs::get(&st.db, &caller.0.name, id).await?.ok_or_else(|| ApiError::JobNotFound(id.to_owned()))
}

async fn show(State(st): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<JobView>> {
    let job = owned(&st, &caller, &id).await?;
    Ok(Json(JobView::new(&st, job).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    upload_id: Option<String>,
}

async fn list(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let Some(upload_id) = q.upload_id.filter(|u| !u.is_empty()) else {
        return Err(ApiError::BadRequest(
            "name the upload: GET /v1/jobs?upload_id=ID (the id from POST /v1/uploads)".into(),
        ));
    };
    let mut views = Vec::new();
    for job in jobs::for_upload(&st.db, &caller.0.name, &upload_id).await? {
        views.push(JobView::new(&st, job).await?);
    }
    Ok(Json(json!({ "jobs": views })))
}

async fn cancel(State(st): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<JobView>> {
    let (job, cancelled) = jobs::cancel(&st.db, &st.outbox, &caller.0.name, &id)
        .await?
        .ok_or_else(|| ApiError::JobNotFound(id.clone()))?;
    if !cancelled {
        return Err(ApiError::JobWrongState {
            id,
            state: job.state.as_str(),
            hint: "it has finished already; only queued or running jobs can be cancelled",
        });
    }
    tracing::info!(job = %job.id, "job cancelled");
    Ok(Json(JobView::new(&st, job).await?))
}

async fn retry(State(st): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<JobView>> {
    let before = owned(&st, &caller, &id).await?;
    if !matches!(before.state, JobState::Failed | JobState::Dead | JobState::Cancelled) {
        return Err(ApiError::JobWrongState {
            id,
            state: before.state.as_str(),
            hint: "only failed, dead or cancelled jobs can be retried",
        });
    }
    let job = jobs::retry(&st.db, &caller.0.name, &id, st.pipeline.max_attempts)
        .await?
        .ok_or_else(|| ApiError::JobNotFound(id.clone()))?;
    st.outbox.wake();
    tracing::info!(job = %job.id, "job queued again by hand");
    Ok(Json(JobView::new(&st, job).await?))
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The SSE event for a job's state: `progress` while it runs, its terminal state last.
fn sse_event(job: &Job) -> SseEvent {
    let name = if job.state.is_terminal() { job.state.as_str() } else { "progress" };
    let data = json!({
        "id": job.id, "state": job.state, "progress": job.progress, "attempts": job.attempts, "error": job.error,
    });
    SseEvent::default().event(name).id(job.version.to_string()).data(data.to_string())
}

async fn events(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    if !q.token.as_deref().is_some_and(|t| stream_token::verify(&st.stream_key, &id, t, now_ms())) {
        return Err(ApiError::BadStreamToken);
    }
    let first = jobs::get_any(&st.db, &id).await?.ok_or_else(|| ApiError::JobNotFound(id.clone()))?;
    let seen: i64 =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).unwrap_or(-1);
    let stream =
        futures::stream::unfold((st, id, Some(first), seen, false), |(st, id, mut next, mut seen, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(job) = next.take() {
                    if job.version > seen {
                        seen = job.version;
                        let terminal = job.state.is_terminal();
                        return Some((Ok(sse_event(&job)), (st, id, None, seen, terminal)));
                    }
                    if job.state.is_terminal() {
                        // The client saw the end already (it resumed with the last event's id).
                        return None;
                    }
                }
                let changed = st.outbox.changed();
                tokio::select! {
                    () = changed => {}
                    () = tokio::time::sleep(STREAM_POLL) => {}
                }
                match jobs::get_any(&st.db, &id).await {
                    Ok(Some(job)) => next = Some(job),
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::warn!(job = %id, error = %e, "event stream cannot read its job; closing");
                        return None;
                    }
                }
            }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Debug, Serialize)]
struct Ignored {
    key: String,
    reason: &'static str,
}

/// Who sent S3 event notifications.
enum Sender {
    /// A caller with an API key: only objects under its prefix.
    Key(Arc<KeyPolicy>),
    /// A store that signed the body with the service's store secret: objects of every key.
    Store,
}

/// `POST /v1/events/s3`: S3 event notifications (AWS's or MinIO's JSON) start jobs for objects
/// written by any client, within the caller's prefix (or, from a store, the prefix of the key
/// that owns the object).
async fn s3_events(State(st): State<Arc<AppState>>, req: Request) -> ApiResult<Json<serde_json::Value>> {
    let (mut parts, body) = req.into_parts();
    let signature = parts.headers.get(SIGNATURE_HEADER).map(|v| v.to_str().unwrap_or_default().to_owned());
    let (sender, body) = match signature {
        Some(sig) if !parts.headers.contains_key(AUTHORIZATION) => {
            let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| ApiError::BodyTooLarge(MAX_BODY))?;
            let signed = st
                .store_events_secret
                .as_deref()
                .is_some_and(|secret| hoist_store::notify::verify(secret, &bytes, &sig));
            if !signed {
                tracing::warn!("S3 event notification with a signature that does not match the store secret: refused");
                return Err(ApiError::Unauthorized);
            }
            (Sender::Store, Body::from(bytes))
        }
        _ => (Sender::Key(Caller::from_request_parts(&mut parts, &st).await?.0), body),
    };
    let ApiJson(body) = ApiJson::<S3Notification>::from_request(Request::from_parts(parts, body), &st).await?;
    let mut accepted = Vec::new();
    let mut ignored = Vec::new();
    for record in &body.records {
        let Some(key) = record.key() else {
            ignored
                .push(Ignored { key: record.s3.object.key.clone(), reason: "the key is not valid URL-encoded UTF-8" });
            continue;
        };
        let owner = match &sender {
            Sender::Key(policy) => key.starts_with(&policy.prefix).then(|| Arc::clone(policy)),
            Sender::Store => st.keys.owner_of(&key),
        };
        let reason = if !record.is_created() {
            Some("only ObjectCreated events start jobs")
        } else if record.s3.bucket.name != st.bucket {
            Some("the bucket is not this service's bucket")
        } else if owner.is_none() {
            Some(match sender {
                Sender::Key(_) => "the key is outside this API key's prefix",
                Sender::Store => "no API key's prefix holds the key",
            })
        } else if is_derived(&key) {
            Some("the object is a pipeline output")
        } else {
            None
        };
        let (None, Some(policy)) = (reason, owner) else {
            ignored.push(Ignored { key, reason: reason.unwrap_or_default() });
            continue;
        };
        let head = match st.s3.head(&st.bucket, &key).await {
            Ok(h) => h,
            Err(hoist_core::Error::Service { status: 404, .. }) => {
                ignored
                    .push(Ignored { key, reason: "the object is not in the store (deleted since, or never written)" });
                continue;
            }
            Err(e) => return Err(ApiError::store("look up the object of an S3 event", e)),
        };
        let content_type = crate::policy::normalize_content_type(head.content_type.as_deref())
            .unwrap_or_else(|_| "application/octet-stream".into());
        let source = NewJob {
            api_key: policy.name.clone(),
            upload_id: None,
            bucket: st.bucket.clone(),
            source_key: key.clone(),
            source_etag: head.etag.clone(),
            source_size: head.size,
            content_type,
            preset: String::new(),
            max_attempts: st.pipeline.max_attempts,
            timeout: st.pipeline.job_timeout,
        };
        let mut tx = st.db.begin_write().await?;
        let queued: Vec<JobRef> = jobs::enqueue_matching(&mut tx, &st.pipeline.rules, &source)
            .await?
            .iter()
            .map(|j| JobRef::new(&st, j))
            .collect();
        tx.commit().await?;
        if queued.is_empty() {
            ignored.push(Ignored { key, reason: "no pipeline rule matches the object's key and content type" });
        } else {
            st.outbox.wake();
            accepted.push(json!({ "key": key, "etag": head.etag, "jobs": queued }));
        }
    }
    if matches!(sender, Sender::Store) {
        for i in &ignored {
            tracing::debug!(key = %i.key, reason = i.reason, "store event notification starts no job");
        }
    }
    Ok(Json(json!({ "accepted": accepted, "ignored": ignored })))
}
