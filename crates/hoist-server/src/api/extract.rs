//! Request extractors shared by the routes: [`Caller`] (token → API key, then the key's rate
//! limit) and [`ApiJson`] (JSON bodies whose rejections become [`ApiError`]s).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::policy::Caller;
use crate::state::AppState;

/// Largest JSON body accepted (a sign request for 10,000 parts with checksums fits).
pub const MAX_BODY: usize = 1024 * 1024;

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    /// The token comes from `Authorization: Bearer …`, or from the path (`/u/{token}/s3/…`, for
    /// clients such as Uppy that cannot send headers to a companion URL).
    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::trim);
        let token = match header {
            Some(h) => Some(h.strip_prefix("Bearer ").ok_or(ApiError::Unauthorized)?.trim().to_owned()),
            None => Path::<HashMap<String, String>>::from_request_parts(parts, st)
                .await
                .ok()
                .and_then(|Path(p)| p.get("token").cloned()),
        };
        let caller = st.keys.authenticate(token.as_deref())?;
        st.limiter.check(&caller.0, Instant::now())?;
        Ok(caller)
    }
}

/// A JSON body; malformed, mistyped or oversized bodies are [`ApiError`]s naming the problem.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(JsonRejection::BytesRejection(_)) => Err(ApiError::BodyTooLarge(MAX_BODY)),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(ApiError::BadJson("send it with Content-Type: application/json".into()))
            }
            Err(e) => Err(ApiError::BadJson(e.body_text())),
        }
    }
}
