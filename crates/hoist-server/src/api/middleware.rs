//! Cross-cutting request handling: a request id on every request (taken from `x-request-id` if
//! the caller sent a sane one, else generated), in the tracing span (with the path, its token
//! redacted) and echoed in the response;
//! CORS for the API when the operator lists other origins (the service's own page is
//! same-origin and needs none); and refused requests drain their body first (see
//! `hoist_store::drain`), so a client still sending it reads the error.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

/// The header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Tags the request with an id and logs its outcome.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map_or_else(|| crate::uploads::new_id()[..16].to_owned(), str::to_owned);
    let span =
        tracing::info_span!("request", id = %id, method = %req.method(), path = %loggable_path(req.uri().path()));
    async move {
        let mut resp = next.run(req).await;
        tracing::debug!(status = resp.status().as_u16(), "done");
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(REQUEST_ID, v);
        }
        resp
    }
    .instrument(span)
    .await
}

/// `path` as it may be logged: the token of `/u/{token}/s3/…` (Uppy's routes carry it in the
/// path) replaced by `…`, so a log line never holds a credential.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/u/") {
        Some(rest) => format!("/u/…{}", rest.find('/').map_or("", |i| &rest[i..])).into(),
        None => path.into(),
    }
}

/// Allowed origins for cross-origin API calls (`*` for any).
#[derive(Debug, Clone, Default)]
pub struct CorsOrigins(pub Arc<Vec<String>>);

impl CorsOrigins {
    fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o == "*" || o == origin)
    }
}

/// Answers preflights and decorates responses for allowed origins.
pub async fn cors(State(origins): State<CorsOrigins>, req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(origin) = origin.filter(|o| origins.allows(o)) else {
        return next.run(req).await;
    };
    let mut resp =
        if req.method() == Method::OPTIONS { StatusCode::NO_CONTENT.into_response() } else { next.run(req).await };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("origin"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE, OPTIONS"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "authorization, content-type, x-request-id, uppy-auth-token, uppy-versions, uppy-credentials-params",
        ),
    );
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after, x-request-id"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    resp
}

/// Drains what is left of a refused request's body before answering.
pub async fn drain_refused(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let (body, leftover) = hoist_store::drain::reclaimable(body);
    let resp = next.run(Request::from_parts(parts, axum::body::Body::new(body))).await;
    if resp.status().is_client_error() {
        hoist_store::drain::drain(leftover).await;
    }
    resp
}
