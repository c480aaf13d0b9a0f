//! The uploader page at `/` and its files (`/hoist-upload.js`, …), embedded at build time from
//! the repository's `web/` directory (see `build.rs`). Served with `no-cache` so a new binary's
//! page is picked up, and `nosniff`.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::state::AppState;

include!(concat!(env!("OUT_DIR"), "/web_files.rs"));

/// `/` (the page) and `/{file}`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { serve("index.html") }))
        .route("/{file}", get(|Path(f): Path<String>| async move { serve(&f) }))
}

fn serve(name: &str) -> Response {
    let Some((_, bytes, mime)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return ApiError::NoRoute.into_response();
    };
    let mut resp = (*bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}
