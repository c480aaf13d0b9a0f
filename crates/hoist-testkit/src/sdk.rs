//! Talking to the store through aws-sdk-s3 beyond its fluent calls: an error's S3 code and
//! message, pre-signed URLs for requests a test then sends with another HTTP client, and
//! interceptors that send a signed request with a body the SDK would never build, or with its
//! signature broken on the way.

use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;

/// The S3 error code of an SDK error (`?` when the response carried none).
pub fn error_code<E: ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("?").to_owned()
}

/// The S3 error message of an SDK error (empty when the response carried none: what boto3
/// shows as "Unknown").
pub fn error_message<E: ProvideErrorMetadata>(e: &E) -> String {
    e.message().unwrap_or_default().to_owned()
}

/// A pre-signed `PutObject` URL valid for a minute (it signs only `host`).
///
/// # Panics
/// If the SDK cannot presign (a broken test setup).
pub async fn presigned_put(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .presigned(PresigningConfig::expires_in(Duration::from_mins(1)).expect("presigning config"))
        .await
        .expect("presign PutObject")
        .uri()
        .to_owned()
}

/// A pre-signed `GetObject` URL valid for a minute.
///
/// # Panics
/// If the SDK cannot presign.
pub async fn presigned_get(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    client
        .get_object()
        .bucket(bucket)
        .key(key)
        .presigned(PresigningConfig::expires_in(Duration::from_mins(1)).expect("presigning config"))
        .await
        .expect("presign GetObject")
        .uri()
        .to_owned()
}

/// `len` bytes of a pattern that differs with `seed` (test data whose every position matters).
#[must_use]
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| u8::try_from(i % 251).unwrap_or(0).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Replaces the request body with these bytes before the SDK computes checksums and signs, so
/// the store receives a correctly signed request with any body (malformed XML, a huge list).
/// Use with `.customize().interceptor(ReplaceBody(bytes))`.
#[derive(Debug, Clone)]
pub struct ReplaceBody(pub Vec<u8>);

impl Intercept for ReplaceBody {
    fn name(&self) -> &'static str {
        "TestReplaceBody"
    }

    fn modify_before_retry_loop(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request_mut();
        req.headers_mut().insert("content-length", self.0.len().to_string());
        req.headers_mut().remove("content-md5");
        *req.body_mut() = SdkBody::from(self.0.clone());
        Ok(())
    }
}

/// Changes the last character of the `Authorization` header's signature after signing, as a
/// forger or a corrupting proxy would.
#[derive(Debug, Clone, Copy)]
pub struct TamperSignature;

impl Intercept for TamperSignature {
    fn name(&self) -> &'static str {
        "TestTamperSignature"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let headers = context.request_mut().headers_mut();
        let auth = headers.get("authorization").ok_or("the request was not signed")?.to_owned();
        let last = if auth.ends_with('0') { '1' } else { '0' };
        let tampered = format!("{}{last}", &auth[..auth.len() - 1]);
        headers.insert("authorization", tampered);
        Ok(())
    }
}

/// Flips the last byte of the request body after the SDK has signed it (and its
/// `x-amz-content-sha256`), as a corrupting proxy would: same length, another SHA-256.
#[derive(Debug, Clone, Copy)]
pub struct CorruptBodyAfterSigning;

impl Intercept for CorruptBodyAfterSigning {
    fn name(&self) -> &'static str {
        "TestCorruptBodyAfterSigning"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request_mut();
        let mut body = req.body().bytes().ok_or("the body is not in memory")?.to_vec();
        let last = body.last_mut().ok_or("the body is empty")?;
        *last ^= 0x20;
        *req.body_mut() = SdkBody::from(body);
        Ok(())
    }
}

/// A SigV4 pre-signed URL for `method` on `url` (`http://HOST/BUCKET/KEY?…`) that expires after
/// `expires`, signed with aws-sigv4 directly: the SDK refuses to presign for more than a week,
/// and a test of that limit needs a URL signed for longer.
///
/// # Panics
/// If the URL cannot be signed (a broken test setup).
#[must_use]
pub fn presign_for(method: &str, url: &str, credentials: &hoist_store::Credentials, expires: Duration) -> String {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(&credentials.access_key, &credentials.secret_key, None, None, "test")
            .into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(crate::post_form::REGION)
        .name("s3")
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let request =
        SignableRequest::new(method, url, std::iter::empty(), SignableBody::UnsignedPayload).expect("signable request");
    let (instructions, _) = sign(request, &params).expect("sign").into_parts();
    let mut signed = url.to_owned();
    for (name, value) in instructions.params() {
        signed.push(if signed.contains('?') { '&' } else { '?' });
        signed.push_str(name);
        signed.push('=');
        signed.push_str(&value.replace('/', "%2F").replace(';', "%3B"));
    }
    signed
}
