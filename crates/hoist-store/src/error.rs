//! The store's one error type and its single mapping to S3 error codes and HTTP statuses.

use s3s::{S3Error, S3ErrorCode, s3_error};

/// Everything the store can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bucket does not exist.
    #[error("the bucket {0:?} does not exist")]
    NoSuchBucket(String),
    /// The bucket has no CORS configuration.
    #[error("the bucket {0:?} has no CORS configuration; PutBucketCors sets one")]
    NoSuchCorsConfiguration(String),
    /// The key does not exist.
    #[error("the key {0:?} does not exist")]
    NoSuchKey(String),
    /// The upload id is unknown, aborted or completed.
    #[error("the multipart upload {0:?} does not exist; it may have been aborted or completed")]
    NoSuchUpload(String),
    /// The bucket already exists (and, in a single-user store, is ours).
    #[error("the bucket {0:?} already exists")]
    BucketAlreadyOwnedByYou(String),
    /// The bucket still holds objects or uploads.
    #[error("the bucket {0:?} is not empty")]
    BucketNotEmpty(String),
    /// The bucket name breaks S3's naming rules.
    #[error(
        "the bucket name {0:?} is not valid: use 3-63 characters of lowercase letters, digits, '.' \
         and '-', starting and ending with a letter or digit, with no \"..\", not shaped like an \
         IP address and not starting with \"xn--\""
    )]
    InvalidBucketName(String),
    /// Keys are at most 1,024 bytes.
    #[error("the key is {0} bytes long; the maximum is 1024")]
    KeyTooLong(usize),
    /// A checksum or Content-MD5 did not match the body.
    #[error("the {0} you specified did not match the calculated checksum")]
    BadDigest(String),
    /// A Content-MD5 value is not well formed.
    #[error("the {0} you specified is not valid")]
    InvalidDigest(String),
    /// An `x-amz-checksum-*` value is not the base64 of a digest of the algorithm's length (S3
    /// answers `BadDigest`, not `InvalidDigest` as for Content-MD5).
    #[error(
        "the {} value you specified is not valid: send the base64 of the {}-byte big-endian digest",
        .0.header_name(), .0.digest_len()
    )]
    MalformedChecksum(hoist_core::checksum::ChecksumAlgorithm),
    /// The body was shorter or longer than Content-Length.
    #[error("the body had {got} bytes but Content-Length said {expected}")]
    IncompleteBody {
        /// Declared length.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// A part listed in Complete does not exist or its `ETag` does not match.
    #[error("part {0} was not uploaded or its ETag does not match")]
    InvalidPart(i32),
    /// Parts in Complete are not in ascending order.
    #[error("the list of parts was not in ascending order")]
    InvalidPartOrder,
    /// A part other than the last is under 5 MiB.
    #[error("part {0} is smaller than the minimum of 5 MiB and is not the last part")]
    EntityTooSmall(i32),
    /// The request body is not what the operation needs.
    #[error("{0}")]
    MalformedXml(String),
    /// An argument is out of range (part number, max-parts, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is well formed but asks for something S3 does not allow (a CORS rule with an
    /// unsupported method, ...).
    #[error("{0}")]
    InvalidRequest(String),
    /// A conditional write's `If-None-Match` / `If-Match` does not hold.
    #[error("at least one of the preconditions you specified did not hold: {0}")]
    PreconditionFailed(String),
    /// `partNumber` names a part the object does not have.
    #[error("part {requested} is not satisfiable: the object has {parts} part(s)")]
    InvalidPartNumber {
        /// The part asked for.
        requested: i32,
        /// How many the object has.
        parts: usize,
    },
    /// A request header the store does not implement in the form sent.
    #[error("{0}")]
    NotImplemented(String),
    /// The Range header cannot be satisfied.
    #[error("the requested range is not satisfiable")]
    InvalidRange,
    /// The request carried `x-amz-*` headers its signature does not cover.
    #[error(
        "there were headers present in the request which were not signed: {}; sign every x-amz-* \
         header you send (a pre-signed URL must list it when it is made), or leave it out",
        .0.join(", ")
    )]
    HeadersNotSigned(Vec<String>),
    /// An XML request body (Complete, DeleteObjects, ...) is over the store's cap.
    #[error("the request body is {size} bytes; XML request bodies are at most {} MiB", max / (1024 * 1024))]
    XmlBodyTooLarge {
        /// Declared length.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// The request's header section is larger than S3 accepts.
    #[error("the request's headers are {size} bytes; the store accepts at most {max} (S3's limit), so send less")]
    HeaderSectionTooLarge {
        /// Bytes of header names and values.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An object or part body is over S3's 5 GiB limit for one request.
    #[error(
        "the body is {size} bytes; one PutObject or UploadPart may carry at most {max} bytes (5 GiB): \
         upload larger objects in parts"
    )]
    EntityTooLarge {
        /// Declared length.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A PUT of object bytes with neither `Content-Length` nor chunked framing.
    #[error("the PUT has no Content-Length header (and no chunked body): send the body's length in Content-Length")]
    MissingContentLength,
    /// A pre-signed URL asks for a lifetime over SigV4's maximum.
    #[error(
        "X-Amz-Expires is {0} seconds; a pre-signed URL lives at most a week (604800 seconds): sign it with a \
         shorter expiry"
    )]
    ExpiresTooLong(u64),
    /// A key with a character that S3's XML listings cannot carry.
    #[error(
        "the key contains the control character U+{:04X} at byte {at}; keys are listed in XML, which cannot carry \
         it: name the object without control characters",
        u32::from(*.ch)
    )]
    KeyControlCharacter {
        /// The character.
        ch: char,
        /// Its byte offset in the key.
        at: usize,
    },
    /// The body's SHA-256 is not the `x-amz-content-sha256` the request signed.
    #[error("the x-amz-content-sha256 header does not match the SHA-256 of the body that was sent")]
    ContentSha256Mismatch,
    /// A `--notify` target is not usable (bad name or URL, no secret, given twice).
    #[error("{0}")]
    NotifyTarget(String),
    /// The disk failed.
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    /// Receiving the request body failed.
    #[error("could not read the request body: {0}")]
    Body(String),
}

impl From<Error> for S3Error {
    fn from(e: Error) -> Self {
        let msg = e.to_string();
        match e {
            Error::NoSuchBucket(_) => s3_error!(NoSuchBucket, "{msg}"),
            Error::NoSuchCorsConfiguration(_) => s3_error!(NoSuchCORSConfiguration, "{msg}"),
            Error::NoSuchKey(_) => s3_error!(NoSuchKey, "{msg}"),
            Error::NoSuchUpload(_) => s3_error!(NoSuchUpload, "{msg}"),
            Error::BucketAlreadyOwnedByYou(_) => s3_error!(BucketAlreadyOwnedByYou, "{msg}"),
            Error::BucketNotEmpty(_) => s3_error!(BucketNotEmpty, "{msg}"),
            Error::InvalidBucketName(_) => s3_error!(InvalidBucketName, "{msg}"),
            Error::KeyTooLong(_) => s3_error!(KeyTooLongError, "{msg}"),
            Error::BadDigest(_) | Error::MalformedChecksum(_) => s3_error!(BadDigest, "{msg}"),
            Error::InvalidDigest(_) => s3_error!(InvalidDigest, "{msg}"),
            Error::IncompleteBody { .. } | Error::Body(_) => s3_error!(IncompleteBody, "{msg}"),
            Error::InvalidPart(_) => s3_error!(InvalidPart, "{msg}"),
            Error::InvalidPartOrder => s3_error!(InvalidPartOrder, "{msg}"),
            Error::EntityTooSmall(_) => s3_error!(EntityTooSmall, "{msg}"),
            Error::MalformedXml(_) => s3_error!(MalformedXML, "{msg}"),
            Error::InvalidArgument(_) | Error::KeyControlCharacter { .. } | Error::NotifyTarget(_) => {
                s3_error!(InvalidArgument, "{msg}")
            }
            Error::InvalidRequest(_) => s3_error!(InvalidRequest, "{msg}"),
            Error::InvalidRange => s3_error!(InvalidRange, "{msg}"),
            Error::PreconditionFailed(_) => s3_error!(PreconditionFailed, "{msg}"),
            Error::InvalidPartNumber { .. } => {
                let mut e = S3Error::with_message(S3ErrorCode::Custom("InvalidPartNumber".into()), msg);
                e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
                e
            }
            Error::NotImplemented(_) => s3_error!(NotImplemented, "{msg}"),
            Error::HeadersNotSigned(_) => s3_error!(AccessDenied, "{msg}"),
            Error::XmlBodyTooLarge { .. } => s3_error!(MaxMessageLengthExceeded, "{msg}"),
            Error::HeaderSectionTooLarge { .. } => s3_error!(RequestHeaderSectionTooLarge, "{msg}"),
            Error::EntityTooLarge { .. } => {
                let mut e = s3_error!(EntityTooLarge, "{msg}");
                e.set_status_code(http::StatusCode::PAYLOAD_TOO_LARGE);
                e
            }
            Error::MissingContentLength => s3_error!(MissingContentLength, "{msg}"),
            Error::ExpiresTooLong(_) => s3_error!(AuthorizationQueryParametersError, "{msg}"),
            Error::ContentSha256Mismatch => {
                let mut e = S3Error::with_message(S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()), msg);
                e.set_status_code(http::StatusCode::BAD_REQUEST);
                e
            }
            Error::Io(ref io) => {
                tracing::error!(error = %io, "storage error");
                S3Error::with_message(S3ErrorCode::InternalError, "storage error; see the store's log")
            }
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
