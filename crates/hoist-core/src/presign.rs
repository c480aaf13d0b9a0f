//! Pre-signed S3 URLs (SigV4 query signing) with chosen headers bound into the signature: the one
//! signer of Hoist, used by `hoist presign` and by the upload service's part URLs.
//!
//! Decisions:
//! - Signing uses `aws-sigv4` (the SDK's own signer) rather than the SDK's presigning, because the
//!   caller chooses which headers are bound: `content-length` (so a replay cannot store another
//!   number of bytes) and an `x-amz-checksum-*` header (so it cannot store other bytes: the store
//!   answers `BadDigest`). A request without a bound header, or with another value, breaks the
//!   signature.
//! - The payload is `UNSIGNED-PAYLOAD`: the bound checksum protects the body instead.
//! - The time is passed in, so tests can sign "in the past"; SigV4 dates are whole seconds, and
//!   the URL expires `ttl` after that second.
//! - Keys are percent-encoded segment by segment (S3 signs the path as sent, single-encoded).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::{Error, Result};

/// Everything but RFC 3986's unreserved characters is encoded (as S3's canonical URI wants).
pub const KEY_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// SigV4's longest validity for a pre-signed URL: seven days.
pub const MAX_TTL: Duration = Duration::from_hours(7 * 24);

/// Where a bucket lives and how to address it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `{base}/{bucket}/{key}`: S3-compatible stores (MinIO, Garage, Ceph, `hoist store`).
    PathStyle(String),
    /// `https://{bucket}.s3.{region}.amazonaws.com/{key}`: AWS.
    Aws,
}

impl Endpoint {
    /// The bucket's URL, without a trailing `/`.
    #[must_use]
    pub fn bucket_url(&self, bucket: &str, region: &str) -> String {
        match self {
            Self::PathStyle(base) => format!("{}/{bucket}", base.trim_end_matches('/')),
            Self::Aws => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        }
    }

    /// The object's URL (unsigned), its key encoded segment by segment.
    #[must_use]
    pub fn object_url(&self, bucket: &str, region: &str, key: &str) -> String {
        let key: Vec<_> = key.split('/').map(|s| utf8_percent_encode(s, KEY_SEGMENT).to_string()).collect();
        format!("{}/{}", self.bucket_url(bucket, region), key.join("/"))
    }
}

/// A pre-signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// The URL, signature included.
    pub url: String,
    /// When it stops working.
    pub expires_at: SystemTime,
}

/// Signs `method` on `url` (query parameters allowed, already encoded) for `ttl` from `now`,
/// binding `headers` (lowercase names) into the signature: the request must send each with
/// exactly this value. `ttl` must be 1 s..=7 days.
pub fn presign(
    creds: &Credentials,
    region: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    now: SystemTime,
    ttl: Duration,
) -> Result<Presigned> {
    if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
        return Err(Error::Config(format!("a pre-signed URL lives from 1 s to 7 days; {ttl:?} is out of range")));
    }
    let now = std::time::UNIX_EPOCH
        + Duration::from_secs(now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs());
    let identity: Identity = creds.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(ttl);
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let failed = |e: &dyn std::fmt::Display| Error::Signing { operation: "presign", message: e.to_string() };
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let request =
        SignableRequest::new(method, Cow::Borrowed(url), headers.iter().copied(), SignableBody::UnsignedPayload)
            .map_err(|e| failed(&e))?;
    // aws-sigv4 traces the canonical request, whose query holds the URL's `X-Amz-Credential`
    // and the rest of what signs it: nothing of a signing is logged.
    let signed = tracing::dispatcher::with_default(&tracing::Dispatch::none(), || sign(request, &params));
    let (instructions, _) = signed.map_err(|e| failed(&e))?.into_parts();
    let mut signed = url.to_owned();
    let mut separator = if url.contains('?') { '&' } else { '?' };
    for (name, value) in instructions.params() {
        signed.push(separator);
        separator = '&';
        signed.push_str(name);
        signed.push('=');
        signed.extend(utf8_percent_encode(value, KEY_SEGMENT));
    }
    Ok(Presigned { url: signed, expires_at: now + ttl })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::new("AKIDEXAMPLE", "secret", None, None, "test")
    }

    #[test]
    fn binds_headers_and_encodes_keys() {
        let e = Endpoint::PathStyle("http://127.0.0.1:9000/".into());
        let url = e.object_url("bkt", "us-east-1", "a b/ü?.bin");
        assert_eq!(url, "http://127.0.0.1:9000/bkt/a%20b/%C3%BC%3F.bin");
        let now = SystemTime::UNIX_EPOCH + Duration::from_hours(500_000) + Duration::from_millis(900);
        let get = presign(&creds(), "us-east-1", "GET", &url, &[], now, Duration::from_mins(15)).unwrap();
        assert!(get.url.starts_with(&format!("{url}?X-Amz-Algorithm=AWS4-HMAC-SHA256&")), "{}", get.url);
        assert!(get.url.contains("X-Amz-SignedHeaders=host&"), "{}", get.url);
        assert_eq!(get.expires_at, SystemTime::UNIX_EPOCH + Duration::from_hours(500_000) + Duration::from_mins(15));
        let put = presign(&creds(), "us-east-1", "PUT", &url, &[("content-length", "5")], now, Duration::from_mins(15))
            .unwrap();
        assert!(put.url.contains("X-Amz-SignedHeaders=content-length%3Bhost&"), "{}", put.url);
        let sig = |u: &str| u.split("X-Amz-Signature=").nth(1).unwrap().to_owned();
        let put6 =
            presign(&creds(), "us-east-1", "PUT", &url, &[("content-length", "6")], now, Duration::from_mins(15))
                .unwrap();
        assert_ne!(sig(&put.url), sig(&put6.url));
        assert_eq!(Endpoint::Aws.object_url("b", "eu-west-1", "k"), "https://b.s3.eu-west-1.amazonaws.com/k");
    }

    #[test]
    fn lifetimes_outside_sigv4s_range_are_refused() {
        for ttl in [Duration::ZERO, MAX_TTL + Duration::from_secs(1)] {
            let e = presign(&creds(), "us-east-1", "GET", "http://h/b/k", &[], SystemTime::now(), ttl).unwrap_err();
            assert!(e.to_string().contains("1 s to 7 days"), "{e}");
        }
    }
}
