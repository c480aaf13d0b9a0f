//! The engine's one error type. Each error has a [`Category`] the CLI maps to an exit code, and
//! [`Error::is_retryable`] is the single place that decides whether a failed call is retried.

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
    /// Anything else.
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
    /// Configuration problem (credentials, endpoint URL, profile).
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// Whether the failed call may succeed if tried again: connection errors, timeouts, HTTP
    /// 500/502/503/504, 429, `SlowDown`, `RequestTimeout`, `InternalError`. Never `AccessDenied`,
    /// `NoSuchBucket`, `NoSuchUpload`, `InvalidArgument` or other 4xx.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::Service { status, code, .. } => {
                matches!(*status, 429 | 500 | 502 | 503 | 504)
                    || matches!(code.as_str(), "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable")
            }
            _ => false,
        }
    }

    /// The category, for exit codes.
    #[must_use]
    pub fn category(&self) -> Category {
        match self {
            Self::Plan(_) | Self::NotAFile(_) | Self::Source { .. } => Category::Usage,
            Self::Service { code, status, .. } => match code.as_str() {
                "NoSuchBucket" | "NoSuchKey" | "NoSuchUpload" | "NotFound" => Category::NotFound,
                "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken"
                | "InvalidToken" => Category::Auth,
                "BadDigest" | "InvalidDigest" | "XAmzContentChecksumMismatch" => Category::Integrity,
                "InvalidArgument" | "InvalidBucketName" | "KeyTooLongError" | "EntityTooLarge" => Category::Usage,
                _ if *status == 403 => Category::Auth,
                _ if *status == 404 => Category::NotFound,
                _ if self.is_retryable() => Category::Network,
                _ => Category::Other,
            },
            Self::Transport { .. } | Self::Timeout { .. } => Category::Network,
            Self::RetriesExhausted { last, .. } => last.category(),
            Self::Integrity(_) => Category::Integrity,
            Self::Journal { .. } | Self::SourceChanged(_) | Self::ChangedDuringUpload(_) | Self::UploadGone(_) => Category::Conflict,
            Self::Cancelled => Category::Interrupted,
            Self::Config(_) | Self::NoCredentials(_) => Category::Auth,
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
        for (status, code) in [(503, "SlowDown"), (500, "InternalError"), (502, "x"), (504, "x"), (429, "x"), (400, "RequestTimeout")] {
            assert!(svc(status, code).is_retryable(), "{status} {code}");
        }
        for (status, code) in [(403, "AccessDenied"), (404, "NoSuchBucket"), (404, "NoSuchUpload"), (400, "InvalidArgument")] {
            assert!(!svc(status, code).is_retryable(), "{status} {code}");
        }
        assert!(Error::Transport { operation: "x", message: "reset".into() }.is_retryable());
        assert!(!Error::Cancelled.is_retryable());
        assert_eq!(svc(403, "AccessDenied").category(), Category::Auth);
        assert_eq!(svc(404, "NoSuchBucket").category(), Category::NotFound);
        assert_eq!(svc(503, "SlowDown").category(), Category::Network);
        assert_eq!(svc(400, "BadDigest").category(), Category::Integrity);
    }
}
