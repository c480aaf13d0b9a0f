//! HTTP routes: [`router`] assembles them with the shared middleware.
//!
//! - `v1`: the JSON API; `jobs`: its pipeline routes (status, SSE, S3 event intake).
//! - `companion`: Uppy's S3 routes.
//! - `ops`: health and metrics.
//! - `web`: the uploader page and its module.
//! - `extract`: auth and JSON extractors; `middleware`: request ids and CORS.

pub mod companion;
pub mod extract;
pub mod jobs;
pub mod middleware;
pub mod ops;
pub mod v1;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;

use crate::error::ApiError;
use crate::state::AppState;

/// The whole service as one router (testable without a socket with `tower::ServiceExt`).
pub fn router(state: Arc<AppState>, cors_origins: Vec<String>) -> Router {
    Router::new()
        .nest("/v1", v1::routes())
        .nest("/s3", companion::routes())
        .nest("/u/{token}/s3", companion::routes())
        .merge(ops::routes())
        .merge(web::routes())
        .fallback(|| async { ApiError::NoRoute })
        .layer(DefaultBodyLimit::max(extract::MAX_BODY))
        .layer(axum::middleware::from_fn(middleware::drain_refused))
        .layer(axum::middleware::from_fn_with_state(middleware::CorsOrigins(Arc::new(cors_origins)), middleware::cors))
        .layer(axum::middleware::from_fn(middleware::request_id))
        .with_state(state)
}
