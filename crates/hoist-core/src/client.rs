//! The S3 calls Hoist makes, as one trait, [`ObjectClient`], and its implementation on
//! `aws-sdk-s3`, [`S3Client`], and nothing else: create, upload part (from a file range or
//! bytes), complete, abort, list parts, uploads and objects (all pages), put, head, bucket checks,
//! and for the pipeline's workers: download to a file, delete. Every call on a multipart upload
//! takes its [`UploadRef`].
//!
//! Decisions:
//! - The engine and the service hold an `Arc<dyn ObjectClient>`, never the SDK: a wrapper can
//!   decorate any call (the test kit's `FailingClient` fails the k-th one) and no caller reaches
//!   past the trait into the SDK.
//! - An UploadPart or Complete answered without an `ETag` fails with [`Error::Integrity`]: the
//!   part list cannot be built without it. A PutObject answered without one answers `None`; the
//!   engine then trusts only what a HEAD shows of the content (a `200` from a gateway that stored
//!   nothing is never taken for success, a store that stored the object but dropped the header
//!   is not taken for a failure).
//! - The SDK's retries are disabled: [`crate::retry`] retries whole parts, and stacking two
//!   retry loops multiplies attempts and hides stalls.
//! - Payload signing is disabled on part and object uploads (`UNSIGNED-PAYLOAD`): over plain
//!   HTTP the SDK would otherwise SHA-256 every byte (≈ 0.8 s of CPU per GiB here) although the
//!   CRC32C checksum header already protects the body end to end.
//! - The SDK computes no checksums of its own (`WhenRequired`); Hoist computes the part checksum
//!   itself and sends it as a header, so the same value is kept for verification after Complete.
//! - Path-style addressing whenever an endpoint URL is given (MinIO, Garage, Ceph, hoist store).

use std::path::Path;
use std::time::Duration;

use aws_credential_types::provider::ProvideCredentials as _;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::config::{BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::error::{Error, Result};

/// How to reach an S3 endpoint.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Custom endpoint (`http://127.0.0.1:9000`); `None` for AWS.
    pub endpoint_url: Option<String>,
    /// Region; default from the AWS config chain, else `us-east-1`.
    pub region: Option<String>,
    /// Named profile from `~/.aws/config`.
    pub profile: Option<String>,
    /// Explicit key pair instead of the credential chain.
    pub credentials: Option<(String, String)>,
    /// Give up on a call with no response for this long.
    pub read_timeout: Option<Duration>,
}

/// One multipart upload: where its object goes and the id the store gave it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadRef {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// The store's upload id.
    pub upload_id: String,
}

impl std::fmt::Display for UploadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{} (upload {})", self.bucket, self.key, self.upload_id)
    }
}

/// What a new object carries besides its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObjectMeta<'a> {
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: &'a [(String, String)],
}

/// An upload's checksum: its algorithm, and whether the object gets the CRC of all its bytes
/// (`FULL_OBJECT`, CRCs only) or the checksum of its parts' checksums (`COMPOSITE`, `…-N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadChecksum {
    /// The algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// `FULL_OBJECT` rather than `COMPOSITE`.
    pub full_object: bool,
}

/// A part to complete with: its number, `ETag` and checksum.
pub type CompletedPartSpec = (u32, String, Option<Checksum>);

/// The S3 calls the engine and the service make. [`S3Client`] implements it on the SDK; wrappers
/// (fault injection in tests, logging) decorate it. Errors are the engine's, S3 codes kept.
#[async_trait::async_trait]
pub trait ObjectClient: std::fmt::Debug + Send + Sync {
    /// HeadBucket (`NoSuchBucket` when it is missing).
    async fn head_bucket(&self, bucket: &str) -> Result<()>;
    /// CreateBucket.
    async fn create_bucket(&self, bucket: &str) -> Result<()>;
    /// CreateMultipartUpload → the new upload.
    async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        meta: ObjectMeta<'_>,
        checksum: Option<UploadChecksum>,
    ) -> Result<UploadRef>;
    /// UploadPart with the bytes `offset..offset+len` of `path` streamed as the body → `ETag` and
    /// the part's checksum (the one given, or the one computed for the trailer).
    async fn upload_part_from_file(
        &self,
        upload: &UploadRef,
        number: u32,
        path: &Path,
        offset: u64,
        len: u64,
        checksum: PartChecksum<'_>,
    ) -> Result<(String, Option<Checksum>)>;
    /// UploadPart of bytes in memory → `ETag`.
    async fn upload_part_bytes(
        &self,
        upload: &UploadRef,
        number: u32,
        data: Bytes,
        checksum: Option<&Checksum>,
    ) -> Result<String>;
    /// CompleteMultipartUpload with parts in ascending order → the object's `ETag`. `whole`: the
    /// CRC of all the bytes, for an upload created `FULL_OBJECT` (the store checks it).
    async fn complete(
        &self,
        upload: &UploadRef,
        parts: &[CompletedPartSpec],
        whole: Option<&Checksum>,
    ) -> Result<String>;
    /// AbortMultipartUpload.
    async fn abort(&self, upload: &UploadRef) -> Result<()>;
    /// ListParts, all pages.
    async fn list_parts(&self, upload: &UploadRef) -> Result<Vec<PartInfo>>;
    /// ListMultipartUploads under `prefix`, all pages.
    async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadInfo>>;
    /// PutObject of the first `len` bytes of the file at `path` → the `ETag`, if the store answered
    /// with one.
    async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        len: u64,
        meta: ObjectMeta<'_>,
        checksum: Option<&Checksum>,
    ) -> Result<Option<String>>;
    /// PutObject of bytes in memory → the `ETag` (if the store answered with one) and the checksum
    /// the store answered with (the value it checked the body against, so a match needs no HEAD).
    async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        data: Bytes,
        meta: ObjectMeta<'_>,
        checksum: Option<&Checksum>,
    ) -> Result<(Option<String>, Option<(ChecksumAlgorithm, String)>)>;
    /// ListObjectsV2 under `prefix`, all pages, each object handed to `each` as its page arrives
    /// (a listing of 100,000 keys is never one `Vec` here).
    async fn list_objects(&self, bucket: &str, prefix: &str, each: &mut (dyn FnMut(ListedObject) + Send))
    -> Result<()>;
    /// HeadObject with checksums requested.
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo>;
    /// GetObject of the version whose `ETag` is `etag` (`If-Match`: a replaced object answers
    /// 412 instead of other bytes), streamed into a new file at `path`. Answers the bytes written.
    async fn download(&self, bucket: &str, key: &str, etag: &str, path: &Path) -> Result<u64>;
    /// DeleteObject (deleting a missing key succeeds, as in S3).
    async fn delete(&self, bucket: &str, key: &str) -> Result<()>;
}

/// A part as S3 lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// Part number.
    pub number: u32,
    /// Size in bytes.
    pub size: u64,
    /// `ETag` without quotes.
    pub etag: String,
    /// Checksum, when the store reports one.
    pub checksum: Option<Checksum>,
}

/// An incomplete multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    /// Key.
    pub key: String,
    /// Upload id.
    pub upload_id: String,
    /// When it was started (Unix seconds), if known.
    pub initiated: Option<i64>,
}

/// What HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// `ETag` without quotes.
    pub etag: String,
    /// The object's checksum as the store reports it (composite values end in `-N`).
    pub checksum: Option<(ChecksumAlgorithm, String)>,
    /// Its `Content-Type`, when the store has one.
    pub content_type: Option<String>,
}

/// An object as ListObjectsV2 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// `ETag` without quotes.
    pub etag: String,
    /// Last modified (Unix seconds; 0 when the store did not say).
    pub last_modified: i64,
}

/// How a part's checksum travels with it.
#[derive(Debug, Clone, Copy)]
pub enum PartChecksum<'a> {
    /// No checksum.
    None,
    /// Computed beforehand, sent as an `x-amz-checksum-*` header.
    Header(&'a Checksum),
    /// Computed while the body is read and sent after it as an `aws-chunked` trailer
    /// (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`): one read of the data instead of two.
    Trailer(ChecksumAlgorithm),
}

/// Turns an UploadPart whose body is a [`crate::source::FileRangeBody::with_trailer`] into an
/// `aws-chunked` request with an unsigned payload and a checksum trailer: the headers S3 wants
/// (`Content-Encoding`, `x-amz-decoded-content-length`, `x-amz-trailer`, the encoded
/// `Content-Length`) and the payload hash `STREAMING-UNSIGNED-PAYLOAD-TRAILER` in the signature.
///
/// Why not the SDK's own trailer support: over `http://` it signs every chunk (SHA-256 of the
/// whole body again, the cost unsigned payloads avoid), and it keeps the checksum to itself,
/// while Hoist needs it for the check after Complete.
#[derive(Debug)]
struct AwsChunkedTrailer {
    decoded_len: u64,
    algorithm: ChecksumAlgorithm,
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for AwsChunkedTrailer {
    fn name(&self) -> &'static str {
        "HoistAwsChunkedTrailer"
    }

    fn modify_before_signing(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let encoded = crate::source::aws_chunked_len(self.decoded_len, self.algorithm);
        let headers = context.request_mut().headers_mut();
        headers.insert("content-length", encoded.to_string());
        headers.insert("content-encoding", "aws-chunked");
        headers.insert("x-amz-decoded-content-length", self.decoded_len.to_string());
        headers.insert("x-amz-trailer", self.algorithm.header_name());
        cfg.interceptor_state().store_put(aws_runtime::auth::PayloadSigningOverride::StreamingUnsignedPayloadTrailer);
        Ok(())
    }
}

/// How an object, as HEAD reports it, compares with the parts it was completed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartsMatch {
    /// The composite checksum matches (`alg:value-N`).
    Checksum(String),
    /// No checksum to compare, but the multipart `ETag` matches.
    ETag,
    /// Nothing comparable (no checksum, `ETags` not MD5s).
    Unknown,
}

impl ObjectInfo {
    /// Compares the object with the `parts` it was completed from: its checksum if both sides
    /// have one (a `FULL_OBJECT` CRC, without `-N`, against the CRC the parts' CRCs and sizes
    /// combine to; a composite one against the checksum of the parts' checksums), else the
    /// multipart `ETag`. `Err` names the mismatch. The size is the caller's to check.
    pub fn compare_with_parts(&self, parts: &[PartInfo]) -> std::result::Result<PartsMatch, String> {
        let sized: Option<Vec<(Checksum, u64)>> =
            parts.iter().map(|p| p.checksum.clone().map(|c| (c, p.size))).collect();
        if let Some((alg, got)) = &self.checksum
            && !got.contains('-')
            && let Some(want) = sized.as_deref().and_then(crate::checksum::combine_full_object)
            && want.algorithm() == *alg
        {
            return if want.to_base64() == *got {
                Ok(PartsMatch::Checksum(format!("{alg}:{got}")))
            } else {
                Err(format!("the store's full-object {alg} is {got}, the parts sent give {}", want.to_base64()))
            };
        }
        let sums: Option<Vec<Checksum>> = parts.iter().map(|p| p.checksum.clone()).collect();
        if let (Some(want), Some((alg, got))) = (sums.as_deref().and_then(crate::checksum::composite), &self.checksum) {
            return if want == *got {
                Ok(PartsMatch::Checksum(format!("{alg}:{got}")))
            } else {
                Err(format!("the store's composite {alg} is {got}, the parts sent give {want}"))
            };
        }
        let md5s: Vec<[u8; 16]> = parts.iter().filter_map(|p| crate::checksum::etag_to_md5(&p.etag)).collect();
        if md5s.len() != parts.len() {
            return Ok(PartsMatch::Unknown);
        }
        let want = crate::checksum::multipart_etag(&md5s);
        if want == self.etag {
            Ok(PartsMatch::ETag)
        } else {
            Err(format!("the store's ETag is {}, the parts give {want}", self.etag))
        }
    }
}

/// The S3 client Hoist uses.
#[derive(Debug, Clone)]
pub struct S3Client {
    inner: aws_sdk_s3::Client,
    /// The resolved credentials, for callers that sign requests themselves (the upload service).
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').to_owned()
}

/// Resolves the credential chain once, before any call: when it finds nothing, say so at once
/// (naming where it looked) instead of letting each call fail, be retried as a network error,
/// and end minutes later as "could not reach the endpoint".
async fn check_credentials(shared: &aws_config::SdkConfig, profile: Option<&str>) -> Result<()> {
    let Some(provider) = shared.credentials_provider() else {
        return Err(Error::NoCredentials(credential_sources(profile)));
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(CredentialsError::CredentialsNotLoaded(_)) => Err(Error::NoCredentials(credential_sources(profile))),
        // The chain ends with instance metadata; off EC2 it answers with an error of its own.
        Err(e @ (CredentialsError::ProviderError(_) | CredentialsError::ProviderTimedOut(_))) => {
            Err(Error::NoCredentials(format!(
                "{}; the last of them answered: {}",
                credential_sources(profile),
                DisplayChain(&e)
            )))
        }
        Err(e) => Err(Error::Credentials(format!("cannot load credentials: {}", DisplayChain(&e)))),
    }
}

/// An error and its sources, `a: b: c`.
struct DisplayChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(c) = cur {
            write!(f, ": {c}")?;
            cur = c.source();
        }
        Ok(())
    }
}

/// Maps an SDK error into the engine's error, keeping S3's code and the HTTP status.
fn map_err<E>(operation: &'static str, e: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(where_) = missing_credentials(e) {
        return Error::NoCredentials(where_);
    }
    match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().map_or_else(
                || match status {
                    403 => "AccessDenied".to_owned(),
                    404 => "NotFound".to_owned(),
                    s => format!("HTTP {s}"),
                },
                str::to_owned,
            );
            let message = se.err().message().unwrap_or("").to_owned();
            Error::Service { operation, status, code, message }
        }
        SdkError::TimeoutError(_) => Error::Timeout { operation, after: Duration::ZERO },
        SdkError::DispatchFailure(d) => {
            let message = if d.is_timeout() {
                "timed out".to_owned()
            } else {
                std::error::Error::source(e).map_or_else(|| format!("{e:?}"), |s| DisplayChain(s).to_string())
            };
            Error::Transport { operation, message }
        }
        SdkError::ResponseError(r) => Error::Transport { operation, message: format!("{r:?}") },
        SdkError::ConstructionFailure(_) => Error::Signing { operation, message: DisplayChain(e).to_string() },
        _ => Error::Internal(format!("{operation}: unexpected SDK failure: {}", DisplayChain(e))),
    }
}

/// Where the chain looked, if `e` (or an error under it) says no credentials were found: the
/// SDK reports that as a dispatch failure, which would otherwise be retried as a network error.
fn missing_credentials(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(CredentialsError::CredentialsNotLoaded(_)) = err.downcast_ref::<CredentialsError>() {
            return Some(credential_sources(None));
        }
        cur = err.source();
    }
    None
}

/// The places the AWS credential chain looks, in its order, as the environment sets them up.
fn credential_sources(profile: Option<&str>) -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let home = env("HOME").unwrap_or_else(|| "~".into());
    let credentials = env("AWS_SHARED_CREDENTIALS_FILE").unwrap_or_else(|| format!("{home}/.aws/credentials"));
    let config = env("AWS_CONFIG_FILE").unwrap_or_else(|| format!("{home}/.aws/config"));
    let profile = profile.map(str::to_owned).or_else(|| env("AWS_PROFILE")).unwrap_or_else(|| "default".into());
    let imds = if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        "EC2 instance metadata (disabled by AWS_EC2_METADATA_DISABLED)"
    } else {
        "EC2 instance metadata (IMDS)"
    };
    format!(
        "the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), profile {profile:?} in {credentials} and \
         {config} (keys, SSO, credential_process), web identity (AWS_WEB_IDENTITY_TOKEN_FILE), the ECS/EKS container \
         endpoint (AWS_CONTAINER_CREDENTIALS_*), and {imds}"
    )
}

fn checksum_dto(alg: ChecksumAlgorithm) -> aws_sdk_s3::types::ChecksumAlgorithm {
    match alg {
        ChecksumAlgorithm::Crc32 => aws_sdk_s3::types::ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c => aws_sdk_s3::types::ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Crc64Nvme => aws_sdk_s3::types::ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1 => aws_sdk_s3::types::ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256 => aws_sdk_s3::types::ChecksumAlgorithm::Sha256,
    }
}

/// Sets the one checksum field matching `c` on a fluent builder.
macro_rules! with_checksum {
    ($builder:expr, $c:expr) => {{
        let b = $builder;
        match $c {
            None => b,
            Some(c) => {
                let v = c.to_base64();
                match c.algorithm() {
                    ChecksumAlgorithm::Crc32 => b.checksum_crc32(v),
                    ChecksumAlgorithm::Crc32c => b.checksum_crc32_c(v),
                    ChecksumAlgorithm::Crc64Nvme => b.checksum_crc64_nvme(v),
                    ChecksumAlgorithm::Sha1 => b.checksum_sha1(v),
                    ChecksumAlgorithm::Sha256 => b.checksum_sha256(v),
                }
            }
        }
    }};
}

/// The first checksum field that is set, from a DTO with the usual five getters.
macro_rules! read_checksum {
    ($dto:expr) => {{
        let d = $dto;
        [
            (ChecksumAlgorithm::Crc32, d.checksum_crc32()),
            (ChecksumAlgorithm::Crc32c, d.checksum_crc32_c()),
            (ChecksumAlgorithm::Crc64Nvme, d.checksum_crc64_nvme()),
            (ChecksumAlgorithm::Sha1, d.checksum_sha1()),
            (ChecksumAlgorithm::Sha256, d.checksum_sha256()),
        ]
        .into_iter()
        .find_map(|(a, v)| v.map(|v| (a, v.to_owned())))
    }};
}

impl S3Client {
    /// Builds a client from the standard AWS chain plus `opts`.
    pub async fn connect(opts: &ClientOptions) -> Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(p) = &opts.profile {
            loader = loader.profile_name(p);
        }
        match (&opts.region, &opts.endpoint_url) {
            (Some(r), _) => loader = loader.region(Region::new(r.clone())),
            // A custom endpoint rarely cares about the region; do not probe EC2 metadata for it.
            (None, Some(_))
                if std::env::var_os("AWS_REGION").is_none()
                    && std::env::var_os("AWS_DEFAULT_REGION").is_none()
                    && opts.profile.is_none() =>
            {
                loader = loader.region(Region::new("us-east-1"));
            }
            _ => {}
        }
        if let Some((a, s)) = &opts.credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(a, s, None, None, "hoist"));
        }
        let shared = loader.load().await;
        if opts.credentials.is_none() {
            check_credentials(&shared, opts.profile.as_deref()).await?;
        }
        let mut b = aws_sdk_s3::config::Builder::from(&shared)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(opts.read_timeout.unwrap_or(Duration::from_mins(1)))
                    .build(),
            );
        if shared.region().is_none() {
            b = b.region(Region::new("us-east-1"));
        }
        if let Some(url) = &opts.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::Config(format!("endpoint URL {url:?} must start with http:// or https://")));
            }
            b = b.endpoint_url(url).force_path_style(true);
        }
        Ok(Self { inner: aws_sdk_s3::Client::from_conf(b.build()), credentials: shared.credentials_provider() })
    }

    /// Wraps an SDK client as is.
    #[must_use]
    pub fn from_sdk(inner: aws_sdk_s3::Client) -> Self {
        Self { inner, credentials: None }
    }

    /// The credentials this client signs with (`None` when built with [`S3Client::from_sdk`]).
    #[must_use]
    pub fn credentials_provider(&self) -> Option<aws_credential_types::provider::SharedCredentialsProvider> {
        self.credentials.clone()
    }

    /// The current credentials, for signing URLs (`Error::Credentials` when there are none).
    pub async fn credentials(&self) -> Result<aws_credential_types::Credentials> {
        use aws_credential_types::provider::ProvideCredentials as _;
        let provider =
            self.credentials.as_ref().ok_or_else(|| Error::Credentials("no credentials to sign with".into()))?;
        provider
            .provide_credentials()
            .await
            .map_err(|e| Error::Credentials(format!("no credentials to sign with: {e}")))
    }

    /// The region requests are signed for.
    #[must_use]
    pub fn region(&self) -> String {
        self.inner.config().region().map_or_else(|| "us-east-1".to_owned(), |r| r.as_ref().to_owned())
    }

    async fn upload_part(
        &self,
        upload: &UploadRef,
        number: u32,
        body: ByteStream,
        len: u64,
        checksum: Option<&Checksum>,
        trailer: Option<AwsChunkedTrailer>,
    ) -> Result<String> {
        let req = self
            .inner
            .upload_part()
            .bucket(&upload.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .part_number(i32::try_from(number).unwrap_or(i32::MAX))
            .content_length(i64::try_from(len).unwrap_or(i64::MAX))
            .body(body);
        let mut op = with_checksum!(req, checksum).customize().disable_payload_signing();
        if let Some(t) = trailer {
            op = op.interceptor(t);
        }
        let out = op.send().await.map_err(|e| map_err("UploadPart", &e))?;
        required_etag(out.e_tag, || format!("UploadPart {number}"))
    }

    async fn put_object_output(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        len: u64,
        meta: ObjectMeta<'_>,
        checksum: Option<&Checksum>,
    ) -> Result<aws_sdk_s3::operation::put_object::PutObjectOutput> {
        let mut req = self
            .inner
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_length(i64::try_from(len).unwrap_or(i64::MAX))
            .set_content_type(meta.content_type.map(str::to_owned))
            .body(body);
        for (k, v) in meta.metadata {
            req = req.metadata(k, v);
        }
        with_checksum!(req, checksum)
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| map_err("PutObject", &e))
    }
}

/// The `ETag` a successful write must answer with, unquoted; its absence is an integrity failure
/// (the store did not confirm what it stored).
fn required_etag(etag: Option<String>, what: impl FnOnce() -> String) -> Result<String> {
    match answered_etag(etag) {
        Some(e) => Ok(e),
        None => Err(Error::Integrity(format!(
            "{} answered success without an ETag; the store did not confirm it kept the data",
            what()
        ))),
    }
}

/// The `ETag` a response carried, unquoted; `None` when it had none (or an empty one).
fn answered_etag(etag: Option<String>) -> Option<String> {
    etag.map(|e| unquote(&e)).filter(|e| !e.is_empty())
}

#[async_trait::async_trait]
impl ObjectClient for S3Client {
    async fn head_bucket(&self, bucket: &str) -> Result<()> {
        self.inner.head_bucket().bucket(bucket).send().await.map_err(|e| match map_err("HeadBucket", &e) {
            Error::Service { status: 404, operation, message, .. } => {
                Error::Service { operation, status: 404, code: "NoSuchBucket".into(), message }
            }
            other => other,
        })?;
        Ok(())
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.inner.create_bucket().bucket(bucket).send().await.map_err(|e| map_err("CreateBucket", &e))?;
        Ok(())
    }

    async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        meta: ObjectMeta<'_>,
        checksum: Option<UploadChecksum>,
    ) -> Result<UploadRef> {
        let mut req = self
            .inner
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_content_type(meta.content_type.map(str::to_owned));
        for (k, v) in meta.metadata {
            req = req.metadata(k, v);
        }
        if let Some(c) = checksum {
            req = req.checksum_algorithm(checksum_dto(c.algorithm));
            let kind = if c.full_object { ChecksumType::FullObject } else { ChecksumType::Composite };
            req = req.checksum_type(kind);
        }
        let out = req.send().await.map_err(|e| map_err("CreateMultipartUpload", &e))?;
        let upload_id =
            out.upload_id.ok_or_else(|| Error::Integrity("CreateMultipartUpload returned no upload id".into()))?;
        Ok(UploadRef { bucket: bucket.to_owned(), key: key.to_owned(), upload_id })
    }

    async fn upload_part_from_file(
        &self,
        target: &UploadRef,
        number: u32,
        path: &Path,
        offset: u64,
        len: u64,
        checksum: PartChecksum<'_>,
    ) -> Result<(String, Option<Checksum>)> {
        match checksum {
            PartChecksum::None => {
                let body = ByteStream::from_body_1_x(crate::source::FileRangeBody::open(path, offset, len)?);
                Ok((self.upload_part(target, number, body, len, None, None).await?, None))
            }
            PartChecksum::Header(c) => {
                let body = ByteStream::from_body_1_x(crate::source::FileRangeBody::open(path, offset, len)?);
                Ok((self.upload_part(target, number, body, len, Some(c), None).await?, Some(c.clone())))
            }
            PartChecksum::Trailer(alg) => {
                let (body, sent) = crate::source::FileRangeBody::with_trailer(path, offset, len, alg)?;
                let trailer = AwsChunkedTrailer { decoded_len: len, algorithm: alg };
                let etag =
                    self.upload_part(target, number, ByteStream::from_body_1_x(body), len, None, Some(trailer)).await?;
                // The store answered after reading the whole body, trailer included.
                let checksum = sent.get().cloned().ok_or_else(|| {
                    Error::Integrity(format!("UploadPart {number} succeeded before its checksum trailer was sent"))
                })?;
                Ok((etag, Some(checksum)))
            }
        }
    }

    async fn upload_part_bytes(
        &self,
        target: &UploadRef,
        number: u32,
        data: Bytes,
        checksum: Option<&Checksum>,
    ) -> Result<String> {
        let len = data.len() as u64;
        self.upload_part(target, number, ByteStream::from(data), len, checksum, None).await
    }

    async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        len: u64,
        meta: ObjectMeta<'_>,
        checksum: Option<&Checksum>,
    ) -> Result<Option<String>> {
        let body = ByteStream::read_from()
            .path(path)
            .length(aws_sdk_s3::primitives::Length::Exact(len))
            .build()
            .await
            .map_err(|e| Error::Source { path: path.display().to_string(), source: std::io::Error::other(e) })?;
        let out = self.put_object_output(bucket, key, body, len, meta, checksum).await?;
        Ok(answered_etag(out.e_tag))
    }

    async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        data: Bytes,
        meta: ObjectMeta<'_>,
        checksum: Option<&Checksum>,
    ) -> Result<(Option<String>, Option<(ChecksumAlgorithm, String)>)> {
        let len = data.len() as u64;
        let out = self.put_object_output(bucket, key, ByteStream::from(data), len, meta, checksum).await?;
        let stored = read_checksum!(&out);
        Ok((answered_etag(out.e_tag), stored))
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        each: &mut (dyn FnMut(ListedObject) + Send),
    ) -> Result<()> {
        let mut token: Option<String> = None;
        loop {
            let page = self
                .inner
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| map_err("ListObjectsV2", &e))?;
            for o in page.contents() {
                each(ListedObject {
                    key: o.key().unwrap_or_default().to_owned(),
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    etag: o.e_tag().map(unquote).unwrap_or_default(),
                    last_modified: o.last_modified().map_or(0, aws_sdk_s3::primitives::DateTime::secs),
                });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return Ok(()),
            }
        }
    }

    async fn complete(
        &self,
        upload: &UploadRef,
        parts: &[CompletedPartSpec],
        whole: Option<&Checksum>,
    ) -> Result<String> {
        let parts: Vec<CompletedPart> = parts
            .iter()
            .map(|(n, etag, c)| {
                let b = CompletedPart::builder().part_number(i32::try_from(*n).unwrap_or(i32::MAX)).e_tag(etag);
                with_checksum!(b, c.as_ref()).build()
            })
            .collect();
        let req = self
            .inner
            .complete_multipart_upload()
            .bucket(&upload.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
        let req =
            if whole.is_some() { with_checksum!(req, whole).checksum_type(ChecksumType::FullObject) } else { req };
        let out = req.send().await.map_err(|e| map_err("CompleteMultipartUpload", &e))?;
        required_etag(out.e_tag, || "CompleteMultipartUpload".to_owned())
    }

    async fn abort(&self, upload: &UploadRef) -> Result<()> {
        self.inner
            .abort_multipart_upload()
            .bucket(&upload.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .send()
            .await
            .map_err(|e| map_err("AbortMultipartUpload", &e))?;
        Ok(())
    }

    async fn list_parts(&self, upload: &UploadRef) -> Result<Vec<PartInfo>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .inner
                .list_parts()
                .bucket(&upload.bucket)
                .key(&upload.key)
                .upload_id(&upload.upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| map_err("ListParts", &e))?;
            for p in page.parts() {
                let checksum = read_checksum!(p).and_then(|(a, v)| Checksum::from_base64(a, &v));
                out.push(PartInfo {
                    number: p.part_number().and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
                    size: p.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    etag: p.e_tag().map(unquote).unwrap_or_default(),
                    checksum,
                });
            }
            if page.is_truncated() == Some(true) && page.next_part_number_marker().is_some() {
                marker = page.next_part_number_marker().map(str::to_owned);
            } else {
                return Ok(out);
            }
        }
    }

    async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadInfo>> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .inner
                .list_multipart_uploads()
                .bucket(bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| map_err("ListMultipartUploads", &e))?;
            for u in page.uploads() {
                out.push(UploadInfo {
                    key: u.key().unwrap_or_default().to_owned(),
                    upload_id: u.upload_id().unwrap_or_default().to_owned(),
                    initiated: u.initiated().map(aws_sdk_s3::primitives::DateTime::secs),
                });
            }
            if page.is_truncated() == Some(true) {
                key_marker = page.next_key_marker().map(str::to_owned);
                id_marker = page.next_upload_id_marker().map(str::to_owned);
                if key_marker.is_none() {
                    return Ok(out);
                }
            } else {
                return Ok(out);
            }
        }
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        let out = self
            .inner
            .head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| map_err("HeadObject", &e))?;
        Ok(ObjectInfo {
            size: out.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            etag: out.e_tag().map(unquote).unwrap_or_default(),
            checksum: read_checksum!(&out),
            content_type: out.content_type().map(str::to_owned),
        })
    }

    async fn download(&self, bucket: &str, key: &str, etag: &str, path: &Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt as _;
        let out = self
            .inner
            .get_object()
            .bucket(bucket)
            .key(key)
            .if_match(format!("\"{}\"", etag.trim_matches('"')))
            .send()
            .await
            .map_err(|e| map_err("GetObject", &e))?;
        let io = |source| Error::Source { path: path.display().to_string(), source };
        let mut file = tokio::fs::File::create(path).await.map_err(io)?;
        let mut body = out.body;
        let mut written = 0u64;
        while let Some(chunk) =
            body.try_next().await.map_err(|e| Error::Transport { operation: "GetObject", message: e.to_string() })?
        {
            file.write_all(&chunk).await.map_err(io)?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(io)?;
        Ok(written)
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.inner.delete_object().bucket(bucket).key(key).send().await.map_err(|e| map_err("DeleteObject", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(alg: ChecksumAlgorithm, chunks: &[&[u8]]) -> Vec<PartInfo> {
        (1u32..)
            .zip(chunks)
            .map(|(number, c)| PartInfo {
                number,
                size: c.len() as u64,
                etag: "x".into(),
                checksum: Some(Checksum::of(alg, c)),
            })
            .collect()
    }

    fn object(checksum: Option<(ChecksumAlgorithm, String)>) -> ObjectInfo {
        ObjectInfo { size: 0, etag: "e-2".into(), checksum, content_type: None }
    }

    #[test]
    fn full_object_and_composite_checksums_are_compared_with_the_parts() {
        let alg = ChecksumAlgorithm::Crc32c;
        let sent = parts(alg, &[b"hello, ", b"world"]);
        let whole = Checksum::of(alg, b"hello, world").to_base64();
        assert_eq!(
            object(Some((alg, whole.clone()))).compare_with_parts(&sent),
            Ok(PartsMatch::Checksum(format!("crc32c:{whole}")))
        );
        let other = Checksum::of(alg, b"hello, there").to_base64();
        assert!(object(Some((alg, other))).compare_with_parts(&sent).unwrap_err().contains("full-object"));
        let sums: Vec<Checksum> = sent.iter().filter_map(|p| p.checksum.clone()).collect();
        let composite = crate::checksum::composite(&sums).unwrap();
        assert!(composite.ends_with("-2"));
        assert!(matches!(object(Some((alg, composite))).compare_with_parts(&sent), Ok(PartsMatch::Checksum(_))));
    }
}
