//! Exit codes and the one error type of the CLI. Every failure ends as one line on stderr,
//! `hoist: <what went wrong>` and, when there is one, `hint: <what to do>`, and a documented exit
//! code that scripts can branch on.

use std::process::ExitCode;

/// Exit codes of `hoist` (stable; documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Success.
    Ok = 0,
    /// A failure that fits no narrower code.
    Failure = 1,
    /// Bad command line or input (bad URL, missing file, size out of range).
    Usage = 2,
    /// The bucket, key or upload does not exist.
    NotFound = 3,
    /// Credentials missing or refused.
    Auth = 4,
    /// The endpoint could not be reached or kept failing after retries.
    Network = 5,
    /// Data did not verify (checksum, ETag or size mismatch).
    Integrity = 6,
    /// Resume refused: the source changed or the saved state does not fit.
    Conflict = 7,
    /// Some files of a batch could not be uploaded (the rest were; the summary lists them).
    Partial = 8,
    /// Interrupted (Ctrl-C); uploaded parts were kept and can be resumed. 130 = 128 + SIGINT.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        // Every variant fits in a u8 by construction.
        ExitCode::from(e as u8)
    }
}

/// A failed command: a message naming the problem, an optional hint naming the fix, an exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct CliError {
    /// What went wrong, one line.
    pub(crate) message: String,
    /// What to do about it, one line.
    pub(crate) hint: Option<String>,
    /// The exit code.
    pub(crate) code: Exit,
}

impl CliError {
    /// A failure with the given exit code.
    pub(crate) fn new(code: Exit, message: impl Into<String>) -> Self {
        Self { message: message.into(), hint: None, code }
    }

    /// Bad input from the user.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    /// Adds the line that tells the user what to do.
    #[must_use]
    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prints the error (and hint) to stderr and returns the exit code.
    pub(crate) fn report(&self) -> ExitCode {
        eprintln!("hoist: {}", self.message);
        if let Some(hint) = &self.hint {
            eprintln!("hint: {hint}");
        }
        self.code.into()
    }
}

impl From<hoist_core::Error> for CliError {
    fn from(e: hoist_core::Error) -> Self {
        use hoist_core::Category;
        let (code, hint) = match e.category() {
            Category::Usage => (Exit::Usage, None),
            Category::NotFound => (
                Exit::NotFound,
                Some(match e.code() {
                    Some("NoSuchBucket") => "check the bucket name, or create it first (e.g. `aws s3 mb s3://BUCKET`)",
                    Some("NoSuchUpload") => "the upload was aborted or completed elsewhere; run again with --restart",
                    _ => "check the bucket and key",
                }),
            ),
            Category::Auth if matches!(e, hoist_core::Error::NoCredentials(_)) => (
                Exit::Auth,
                Some(
                    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, pick a profile with --profile, or run `aws configure`",
                ),
            ),
            Category::Auth => (
                Exit::Auth,
                Some(
                    "check your credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, --profile, or ~/.aws/credentials",
                ),
            ),
            Category::Network => (
                Exit::Network,
                Some("check that --endpoint-url is right and reachable, then run the same command again"),
            ),
            Category::Integrity => (Exit::Integrity, Some("the data did not verify; run the upload again")),
            Category::Conflict => (Exit::Conflict, Some("run again with --restart to start the upload over")),
            Category::Interrupted => (Exit::Interrupted, None),
            Category::Internal => (
                Exit::Failure,
                Some(
                    "this is a bug in hoist: please report it with the command you ran, this message and `hoist --version`",
                ),
            ),
            Category::Other => (Exit::Failure, None),
        };
        let err = Self::new(code, e.to_string());
        match hint {
            Some(h) => err.with_hint(h),
            None => err,
        }
    }
}

impl From<hoist_store::Error> for CliError {
    fn from(e: hoist_store::Error) -> Self {
        Self::new(Exit::Failure, format!("store: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: u16, code: &str) -> hoist_core::Error {
        hoist_core::Error::Service { operation: "UploadPart", status, code: code.into(), message: String::new() }
    }

    #[test]
    fn a_bug_is_exit_1_and_asks_for_a_report_not_for_credentials() {
        let e = CliError::from(hoist_core::Error::Internal("a part task panicked: boom".into()));
        assert_eq!(e.code, Exit::Failure);
        let hint = e.hint.unwrap();
        assert!(hint.contains("bug") && hint.contains("report"), "{hint}");
        assert!(!hint.contains("credentials"), "{hint}");
        let signing = CliError::from(hoist_core::Error::Signing { operation: "UploadPart", message: "x".into() });
        assert_eq!(signing.code, Exit::Failure);
    }

    #[test]
    fn store_answers_map_by_their_code() {
        assert_eq!(CliError::from(service(403, "RequestTimeTooSkewed")).code, Exit::Network);
        assert_eq!(CliError::from(service(403, "AccessDenied")).code, Exit::Auth);
        let unknown = CliError::from(service(409, "SomethingNew"));
        assert_eq!(unknown.code, Exit::Failure);
        assert!(unknown.message.contains("SomethingNew"), "{}", unknown.message);
        assert_eq!(CliError::from(hoist_core::Error::Config("bad glob".into())).code, Exit::Usage);
    }
}
