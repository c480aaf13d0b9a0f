//! The engine's one error type. Each error has a [`Category`] the CLI maps to an exit code, and
//! [`Error::is_retryable`] is the single place that decides whether a failed call is retried.
//!
//! Decisions:
//! - No catch-all variant. A store's answer keeps its S3 code and status ([`Error::Service`]) even
//!   when Hoist does not know the code; a failure inside Hoist (a panicked task, an SDK error of a
//!   kind it does not know) is [`Error::Internal`], a bug to report, never a credentials problem;
//!   a request that could not be built or signed locally is [`Error::Signing`].
//! - `RequestTimeTooSkewed` is retryable: the SDK measures the store's clock from every response's
//!   `Date` header and keeps the offset for the client (aws-runtime's `ServiceClockSkewInterceptor`),
//!   so the retry is signed with a corrected time; only its own retry loop, which Hoist disables,
//!   would otherwise have used it.

use std::time::Duration;

use crate::plan::PlanError;

/// Broad kinds of failure, for exit codes and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Bad input from the caller (file, size, URL).
    Usage,
    /// Bucket, key or upload missing.
    NotFound,
    /// Credentials missing or refused.
    Auth,
    /// Network or server trouble that outlasted the retries.
    Network,
    /// Data did not verify.
    Integrity,
    /// Resume refused (source changed, state does not fit).
    Conflict,
    /// Cancelled by the caller.
    Interrupted,
    /// A failure inside Hoist itself: a bug to report.
    Internal,
    /// A store's answer Hoist has no narrower category for (its S3 code is kept).
    Other,
}

/// Everything the engine can fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input cannot be planned within the provider's limits.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The source cannot be read.
    #[error("cannot read {path}: {source}")]
    Source {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The source is not a regular file.
    #[error("{0} is not a regular file")]
    NotAFile(String),
    /// S3 answered with an error.
    #[error("{operation}: {code}: {message}")]
    Service {
        /// The S3 operation.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// S3 error code (`NoSuchBucket`, `SlowDown`, ...).
        code: String,
        /// S3's message.
        message: String,
    },
    /// The endpoint could not be reached or the connection broke.
    #[error("{operation}: could not reach the endpoint: {message}")]
    Transport {
        /// The S3 operation.
        operation: &'static str,
        /// What happened.
        message: String,
    },
    /// A call made no progress for too long.
    #[error("{operation}: no progress for {after:?}")]
    Timeout {
        /// The S3 operation.
        operation: &'static str,
        /// The stall timeout.
        after: Duration,
    },
    /// Retries ran out.
    #[error("{last} (gave up after {attempts} attempts in {elapsed:?})")]
    RetriesExhausted {
        /// The last error.
        last: Box<Error>,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
    },
    /// The stored object does not match what was sent.
    #[error("verification failed: {0}")]
    Integrity(String),
    /// The caller cancelled the upload.
    #[error("upload cancelled")]
    Cancelled,
    /// The resume journal cannot be used.
    #[error("the resume journal {path} cannot be used: {problem}")]
    Journal {
        /// Its path.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The source file changed since the interrupted upload started.
    #[error("{0} changed since the interrupted upload started (size, time or content differ)")]
    SourceChanged(String),
    /// The source file changed while it was being read for an upload of a batch.
    #[error("{0} changed while it was being uploaded (size or modification time differ); run again once it is stable")]
    ChangedDuringUpload(String),
    /// The interrupted upload no longer exists in the store.
    #[error("the interrupted upload {0} no longer exists in the store (aborted or expired)")]
    UploadGone(String),
    /// The credential chain found no credentials anywhere it looked.
    #[error("no credentials found; looked in {0}")]
    NoCredentials(String),
    /// A setting given to the engine is invalid (endpoint URL, glob, URL lifetime).
    #[error("{0}")]
    Config(String),
    /// Credentials exist but could not be loaded or are not available for signing.
    #[error("{0}")]
    Credentials(String),
    /// A request could not be built or signed locally (nothing was sent).
    #[error("{operation}: the request could not be built or signed locally: {message}")]
    Signing {
        /// The S3 operation (or `presign`).
        operation: &'static str,
        /// What failed.
        message: String,
    },
    /// A failure inside Hoist: a task panicked or was lost, or the SDK failed in a way Hoist does
    /// not know. Always a bug.
    #[error("internal error in hoist ({0}); this is a bug")]
    Internal(String),
}

impl Error {
    /// Whether the failed call may succeed if tried again: connection errors, timeouts, HTTP
    /// 500/502/503/504, 429, `SlowDown`, `RequestTimeout`, `InternalError`, `RequestTimeTooSkewed` (the
    /// retry is signed with the store's clock, as the module doc explains). Never `AccessDenied`,
    /// `NoSuchBucket`, `NoSuchUpload`, `InvalidArgument` or other 4xx.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::Service { status, code, .. } => {
                matches!(*status, 429 | 500 | 502 | 503 | 504)
                    || matches!(
                        code.as_str(),
                        "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable" | "RequestTimeTooSkewed"
                    )
            }
            _ => false,
        }
    }

    /// The category, for exit codes.
    #[must_use]
    pub fn category(&self) -> Category {
        match self {
            Self::Plan(_) | Self::NotAFile(_) | Self::Source { .. } | Self::Config(_) => Category::Usage,
            Self::Service { code, status, .. } => match code.as_str() {
                "NoSuchBucket" | "NoSuchKey" | "NoSuchUpload" | "NotFound" => Category::NotFound,
                "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" | "InvalidToken" => {
                    Category::Auth
                }
                "BadDigest" | "InvalidDigest" | "XAmzContentChecksumMismatch" => Category::Integrity,
                "InvalidArgument" | "InvalidBucketName" | "KeyTooLongError" | "EntityTooLarge" => Category::Usage,
                _ if self.is_retryable() => Category::Network,
                _ if *status == 403 => Category::Auth,
                _ if *status == 404 => Category::NotFound,
                _ => Category::Other,
            },
            Self::Transport { .. } | Self::Timeout { .. } => Category::Network,
            Self::RetriesExhausted { last, .. } => last.category(),
            Self::Integrity(_) => Category::Integrity,
            Self::Journal { .. } | Self::SourceChanged(_) | Self::ChangedDuringUpload(_) | Self::UploadGone(_) => {
                Category::Conflict
            }
            Self::Cancelled => Category::Interrupted,
            Self::Credentials(_) | Self::NoCredentials(_) => Category::Auth,
            Self::Signing { .. } | Self::Internal(_) => Category::Internal,
        }
    }

    /// The S3 error code, if S3 answered with one.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            Self::RetriesExhausted { last, .. } => last.code(),
            _ => None,
        }
    }
}

/// A task that panicked or was dropped by the runtime, as the bug it is.
pub(crate) fn task_lost(what: &str, e: &tokio::task::JoinError) -> Error {
    let how = if e.is_panic() { "panicked" } else { "was cancelled by the runtime" };
    Error::Internal(format!("{what} {how}: {e}"))
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(status: u16, code: &str) -> Error {
        Error::Service { operation: "UploadPart", status, code: code.into(), message: String::new() }
    }

    #[test]
    fn classification() {
        for (status, code) in
            [(503, "SlowDown"), (500, "InternalError"), (502, "x"), (504, "x"), (429, "x"), (400, "RequestTimeout")]
        {
            assert!(svc(status, code).is_retryable(), "{status} {code}");
        }
        for (status, code) in
            [(403, "AccessDenied"), (404, "NoSuchBucket"), (404, "NoSuchUpload"), (400, "InvalidArgument")]
        {
            assert!(!svc(status, code).is_retryable(), "{status} {code}");
        }
        assert!(Error::Transport { operation: "x", message: "reset".into() }.is_retryable());
        assert!(!Error::Cancelled.is_retryable());
        assert_eq!(svc(403, "AccessDenied").category(), Category::Auth);
        assert_eq!(svc(404, "NoSuchBucket").category(), Category::NotFound);
        assert_eq!(svc(503, "SlowDown").category(), Category::Network);
        assert_eq!(svc(400, "BadDigest").category(), Category::Integrity);
    }

    #[test]
    fn a_skewed_clock_is_retried_not_an_auth_failure() {
        let skewed = svc(403, "RequestTimeTooSkewed");
        assert!(skewed.is_retryable());
        assert_eq!(skewed.category(), Category::Network);
    }

    #[test]
    fn local_failures_are_internal_and_unknown_codes_are_kept() {
        assert_eq!(Error::Internal("a part task panicked".into()).category(), Category::Internal);
        assert_eq!(Error::Signing { operation: "UploadPart", message: "x".into() }.category(), Category::Internal);
        let unknown = svc(409, "SomethingNew");
        assert_eq!(unknown.category(), Category::Other);
        assert_eq!(unknown.code(), Some("SomethingNew"));
        assert_eq!(Error::Config("bad glob".into()).category(), Category::Usage);
    }
}
