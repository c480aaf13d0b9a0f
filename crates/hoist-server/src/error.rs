//! The service's one error type, [`ApiError`]: a catalog of stable codes, each with an HTTP status
//! and a message that names the problem and the fix. Causes (S3 or database failures) are logged
//! with the request's id and never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything an API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No bearer token, or one the service does not know.
    #[error(
        "missing or unknown API token: send Authorization: Bearer TOKEN with a token from the service's configuration"
    )]
    Unauthorized,
    /// The upload does not exist or belongs to another API key (indistinguishable on purpose).
    #[error("no upload {0} for this API key: check the id returned by POST /v1/uploads")]
    UploadNotFound(String),
    /// The request body or a parameter is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The request body is not the JSON the route expects.
    #[error("the request body is not valid JSON for this route: {0}")]
    BadJson(String),
    /// The request body is larger than the service accepts.
    #[error("the request body is too large: send at most {0} bytes")]
    BodyTooLarge(usize),
    /// The declared size is over the caller's limit.
    #[error("{size} bytes is more than this API key may upload in one object ({max} bytes)")]
    TooLarge {
        /// Declared size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The content type is not allowed for the caller.
    #[error("content type {got:?} is not allowed for this API key: allowed are {allowed}")]
    ContentTypeNotAllowed {
        /// What was asked for.
        got: String,
        /// The allowed patterns, comma-separated.
        allowed: String,
    },
    /// The caller's storage quota would be exceeded.
    #[error(
        "this upload would exceed the API key's quota of {quota} bytes ({used} bytes in use): complete or abort other uploads first"
    )]
    QuotaExceeded {
        /// The quota.
        quota: u64,
        /// Bytes held by the key's live uploads.
        used: u64,
    },
    /// The caller already has as many unfinished uploads as its policy allows.
    #[error(
        "this API key already has {max} unfinished uploads, its limit: complete or abort some before starting more"
    )]
    TooManyOpenUploads {
        /// The limit.
        max: u32,
    },
    /// Too many requests from this API key.
    #[error("too many requests for this API key: retry after {0} s")]
    RateLimited(u64),
    /// The upload is in a state that does not allow the call.
    #[error("upload {id} is {state}: {hint}")]
    WrongState {
        /// Upload id.
        id: String,
        /// Its state.
        state: String,
        /// What the caller can do.
        hint: &'static str,
    },
    /// The parts given to complete do not match what the store holds.
    #[error("{0}; the upload is kept: upload the missing or wrong parts again and complete once more")]
    PartsMismatch(String),
    /// The object store refused or failed.
    #[error("the object store could not {action}: try again later")]
    Store {
        /// What the service tried.
        action: &'static str,
        /// The cause (logged only).
        #[source]
        source: hoist_core::Error,
    },
    /// The session database failed.
    #[error("the service's database failed: try again later")]
    Database(#[from] sqlx::Error),
    /// A route that does not exist.
    #[error("no such route: see /v1/openapi.json for the API")]
    NoRoute,
    /// The job does not exist or belongs to another API key (indistinguishable on purpose).
    #[error("no job {0} for this API key: check the id in the upload's complete response or GET /v1/jobs?upload_id=")]
    JobNotFound(String),
    /// The job is in a state that does not allow the call.
    #[error("job {id} is {state}: {hint}")]
    JobWrongState {
        /// Job id.
        id: String,
        /// Its state.
        state: &'static str,
        /// What the caller can do.
        hint: &'static str,
    },
    /// The events URL's token is missing, forged, for another job, or expired.
    #[error("the events URL's token is missing, wrong or expired: get a fresh events_url from GET /v1/jobs/{{id}}")]
    BadStreamToken,
    /// A bug or local failure in the service itself (the cause is logged, not sent).
    #[error("the service failed internally: this is a bug; the log has the details (request id in x-request-id)")]
    Internal(String),
}

impl ApiError {
    /// A stable, machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::UploadNotFound(_) => "upload_not_found",
            Self::BadRequest(_) => "bad_request",
            Self::BadJson(_) => "bad_json",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::TooLarge { .. } => "too_large",
            Self::ContentTypeNotAllowed { .. } => "content_type_not_allowed",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::TooManyOpenUploads { .. } => "too_many_open_uploads",
            Self::RateLimited(_) => "rate_limited",
            Self::WrongState { .. } | Self::JobWrongState { .. } => "wrong_state",
            Self::PartsMismatch(_) => "parts_mismatch",
            Self::Store { .. } => "store_unavailable",
            Self::Database(_) => "database_unavailable",
            Self::NoRoute => "no_route",
            Self::JobNotFound(_) => "job_not_found",
            Self::BadStreamToken => "bad_token",
            Self::Internal(_) => "internal",
        }
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized | Self::BadStreamToken => StatusCode::UNAUTHORIZED,
            Self::UploadNotFound(_) | Self::NoRoute | Self::JobNotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) | Self::BadJson(_) | Self::PartsMismatch(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge(_) | Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ContentTypeNotAllowed { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::QuotaExceeded { .. } | Self::TooManyOpenUploads { .. } => StatusCode::FORBIDDEN,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::WrongState { .. } | Self::JobWrongState { .. } => StatusCode::CONFLICT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Store { .. } => StatusCode::BAD_GATEWAY,
            Self::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// An S3 call's failure as the service's error: the store's answers and unreachable stores are
    /// 502 `store_unavailable`; a failure inside Hoist (a request it could not sign, a lost task)
    /// is 500 `internal`, since no store was at fault.
    pub(crate) fn store(action: &'static str, source: hoist_core::Error) -> Self {
        if source.category() == hoist_core::Category::Internal {
            return Self::Internal(format!("{action}: {source}"));
        }
        Self::Store { action, source }
    }
}

impl ApiError {
    /// Logs the error (causes included) and answers with its status, `Retry-After` where it
    /// applies, and `body` (the API's shape of the error).
    pub(crate) fn respond(self, body: serde_json::Value) -> Response {
        match &self {
            Self::Store { source, .. } => {
                tracing::error!(error = %source, code = self.code(), "object store call failed");
            }
            Self::Database(e) => tracing::error!(error = %e, "database call failed"),
            Self::Internal(cause) => tracing::error!(cause = %cause, "internal failure"),
            _ => tracing::info!(code = self.code(), message = %self, "request refused"),
        }
        let mut resp = (self.status(), axum::Json(body)).into_response();
        if let Self::RateLimited(secs) = self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code(), "message": self.to_string() } });
        self.respond(body)
    }
}

/// The service's result type.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_failures_are_internal_and_store_answers_are_bad_gateway() {
        let signing = hoist_core::Error::Signing { operation: "presign", message: "bad key".into() };
        let e = ApiError::store("sign the part URL", signing);
        assert_eq!((e.status(), e.code()), (StatusCode::INTERNAL_SERVER_ERROR, "internal"));
        let panicked = ApiError::store("complete the upload", hoist_core::Error::Internal("a task panicked".into()));
        assert_eq!(panicked.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let unknown = hoist_core::Error::Service {
            operation: "CompleteMultipartUpload",
            status: 409,
            code: "SomethingNew".into(),
            message: String::new(),
        };
        let e = ApiError::store("complete the upload", unknown);
        assert_eq!((e.status(), e.code()), (StatusCode::BAD_GATEWAY, "store_unavailable"));
    }
}
