//! Pre-signed requests the browser sends straight to S3: UploadPart URLs (SigV4 query
//! signing) and, for Uppy's small-file path, POST policy forms.
//!
//! Decisions:
//! - The signing itself is the engine's ([`hoist_core::presign`], shared with `hoist presign`);
//!   this module chooses what is bound: `content-length` (the part's planned size, so a replay
//!   cannot store other bytes there) and the part's `x-amz-checksum-*` header when the client
//!   sent one. The store or S3 checks both: a body of another length breaks the signature, one
//!   with another checksum gets BadDigest.
//! - Credentials are fetched once per batch of URLs (the provider caches; this keeps 10,000
//!   signatures cheap), and the time is passed in, so tests can sign "in the past".

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials as _, SharedCredentialsProvider};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use hoist_core::checksum::Checksum;
pub use hoist_core::presign::Endpoint;
use hoist_core::presign::{KEY_SEGMENT, presign};
use percent_encoding::utf8_percent_encode;
use serde::Serialize;

use crate::error::{ApiError, ApiResult};

/// Signs requests for one bucket.
#[derive(Debug, Clone)]
pub struct Presigner {
    endpoint: Endpoint,
    bucket: String,
    region: String,
    credentials: SharedCredentialsProvider,
}

/// A pre-signed part upload.
#[derive(Debug, Clone, Serialize)]
pub struct SignedPart {
    /// Part number.
    pub part_number: u32,
    /// The URL to PUT the part to.
    pub url: String,
    /// When the URL stops working (RFC 3339).
    pub expires_at: String,
    /// Headers the client must send with the PUT (`Content-Length` is bound too, but browsers
    /// set it themselves from the body).
    pub headers: std::collections::BTreeMap<String, String>,
}

/// A browser POST upload form (S3 POST policy).
#[derive(Debug, Clone, Serialize)]
pub struct PostForm {
    /// Where to POST the form.
    pub url: String,
    /// Form fields to send before the file.
    pub fields: std::collections::BTreeMap<String, String>,
}

/// One part to sign.
#[derive(Debug, Clone, Copy)]
pub struct PartToSign<'a> {
    /// Object key.
    pub key: &'a str,
    /// Multipart upload id.
    pub upload_id: &'a str,
    /// Part number.
    pub part_number: u32,
    /// Exact body length to bind, when the plan knows it.
    pub content_length: Option<u64>,
    /// Part checksum to bind, when the client sent one.
    pub checksum: Option<&'a Checksum>,
}

impl Presigner {
    /// A presigner for `bucket` at `endpoint`.
    #[must_use]
    pub fn new(endpoint: Endpoint, bucket: &str, region: &str, credentials: SharedCredentialsProvider) -> Self {
        Self { endpoint, bucket: bucket.into(), region: region.into(), credentials }
    }

    /// Current credentials (cached by the provider).
    pub async fn credentials(&self) -> ApiResult<Credentials> {
        self.credentials
            .provide_credentials()
            .await
            .map_err(|e| ApiError::store("get credentials to sign with", hoist_core::Error::Credentials(e.to_string())))
    }

    /// The object's URL (unsigned): what `location` reports.
    #[must_use]
    pub fn object_url(&self, key: &str) -> String {
        self.endpoint.object_url(&self.bucket, &self.region, key)
    }

    fn bucket_url(&self) -> String {
        self.endpoint.bucket_url(&self.bucket, &self.region)
    }

    /// Signs one UploadPart valid for `ttl` from `now`.
    pub fn upload_part(
        &self,
        creds: &Credentials,
        now: SystemTime,
        ttl: Duration,
        part: &PartToSign<'_>,
    ) -> ApiResult<SignedPart> {
        let url = format!(
            "{}?partNumber={}&uploadId={}",
            self.object_url(part.key),
            part.part_number,
            utf8_percent_encode(part.upload_id, KEY_SEGMENT)
        );
        let length = part.content_length.map(|n| n.to_string());
        let checksum = part.checksum.map(|c| (c.algorithm().header_name(), c.to_base64()));
        let mut bound: Vec<(&str, &str)> = Vec::new();
        if let Some(n) = &length {
            bound.push(("content-length", n));
        }
        if let Some((name, value)) = &checksum {
            bound.push((name, value));
        }
        let signed = presign(creds, &self.region, "PUT", &url, &bound, now, ttl)
            .map_err(|e| ApiError::Internal(format!("signing a part URL failed: {e}")))?;
        Ok(SignedPart {
            part_number: part.part_number,
            url: signed.url,
            expires_at: time::OffsetDateTime::from(signed.expires_at)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            headers: checksum.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
        })
    }

    /// A GET URL for `key` valid for `ttl` from `now` (job outputs: players and downloads).
    pub fn get_object(&self, creds: &Credentials, now: SystemTime, ttl: Duration, key: &str) -> ApiResult<String> {
        presign(creds, &self.region, "GET", &self.object_url(key), &[], now, ttl)
            .map(|signed| signed.url)
            .map_err(|e| ApiError::Internal(format!("signing a GET URL failed: {e}")))
    }

    /// A POST policy form for one object of at most `max_size` bytes and this content type.
    #[must_use]
    pub fn post_form(
        &self,
        creds: &Credentials,
        now: SystemTime,
        ttl: Duration,
        key: &str,
        content_type: &str,
        max_size: u64,
    ) -> PostForm {
        let date = time::OffsetDateTime::from(now);
        let day = format!("{:04}{:02}{:02}", date.year(), u8::from(date.month()), date.day());
        let amz_date = format!("{day}T{:02}{:02}{:02}Z", date.hour(), date.minute(), date.second());
        let credential = format!("{}/{day}/{}/s3/aws4_request", creds.access_key_id(), self.region);
        let expiration = (date + ttl).format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let mut conditions = vec![
            serde_json::json!({ "bucket": self.bucket }),
            serde_json::json!({ "key": key }),
            serde_json::json!({ "Content-Type": content_type }),
            serde_json::json!(["content-length-range", 0, max_size]),
            serde_json::json!({ "x-amz-algorithm": "AWS4-HMAC-SHA256" }),
            serde_json::json!({ "x-amz-credential": credential }),
            serde_json::json!({ "x-amz-date": amz_date }),
        ];
        if let Some(t) = creds.session_token() {
            conditions.push(serde_json::json!({ "x-amz-security-token": t }));
        }
        let policy = serde_json::json!({ "expiration": expiration, "conditions": conditions });
        let policy_b64 = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
        let key_bytes = v4::generate_signing_key(creds.secret_access_key(), now, &self.region, "s3");
        let signature = v4::calculate_signature(key_bytes, policy_b64.as_bytes());
        let mut fields: std::collections::BTreeMap<String, String> = [
            ("key", key.to_owned()),
            ("Content-Type", content_type.to_owned()),
            ("x-amz-algorithm", "AWS4-HMAC-SHA256".to_owned()),
            ("x-amz-credential", credential),
            ("x-amz-date", amz_date),
            ("policy", policy_b64),
            ("x-amz-signature", signature),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(t) = creds.session_token() {
            fields.insert("x-amz-security-token".into(), t.to_owned());
        }
        PostForm { url: format!("{}/", self.bucket_url()), fields }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presigner() -> Presigner {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        Presigner::new(
            Endpoint::PathStyle("http://127.0.0.1:9000/".into()),
            "bkt",
            "us-east-1",
            SharedCredentialsProvider::new(creds),
        )
    }

    #[test]
    fn part_urls_bind_number_length_and_checksum() {
        let p = presigner();
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let c = Checksum::of(hoist_core::checksum::ChecksumAlgorithm::Crc32c, b"hello");
        let part = PartToSign {
            key: "a b/ü?.bin",
            upload_id: "u+1",
            part_number: 3,
            content_length: Some(5),
            checksum: Some(&c),
        };
        let s = p
            .upload_part(&creds, SystemTime::UNIX_EPOCH + Duration::from_hours(500_000), Duration::from_mins(15), &part)
            .unwrap();
        assert!(
            s.url.starts_with("http://127.0.0.1:9000/bkt/a%20b/%C3%BC%3F.bin?partNumber=3&uploadId=u%2B1&"),
            "{}",
            s.url
        );
        assert!(s.url.contains("X-Amz-SignedHeaders=content-length%3Bhost%3Bx-amz-checksum-crc32c"), "{}", s.url);
        assert!(s.url.contains("X-Amz-Expires=900"), "{}", s.url);
        assert_eq!(s.headers.get("x-amz-checksum-crc32c"), Some(&c.to_base64()));
        assert_eq!(s.expires_at, "2027-01-15T08:15:00Z");
        // Signed at a fraction of a second: the URL's clock starts at the whole second.
        let late = p
            .upload_part(
                &creds,
                SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_900),
                Duration::from_mins(15),
                &part,
            )
            .unwrap();
        assert_eq!(late.expires_at, "2027-01-15T08:15:00Z");
        // Another part number gives another signature.
        let other = p
            .upload_part(
                &creds,
                SystemTime::UNIX_EPOCH + Duration::from_hours(500_000),
                Duration::from_mins(15),
                &PartToSign { part_number: 4, ..part },
            )
            .unwrap();
        let sig = |u: &str| u.split("X-Amz-Signature=").nth(1).unwrap().to_owned();
        assert_ne!(sig(&s.url), sig(&other.url));
    }

    #[test]
    fn post_form_has_a_policy_with_the_size_range() {
        let p = presigner();
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let f = p.post_form(
            &creds,
            SystemTime::UNIX_EPOCH + Duration::from_hours(500_000),
            Duration::from_mins(15),
            "k/x.png",
            "image/png",
            1000,
        );
        assert_eq!(f.url, "http://127.0.0.1:9000/bkt/");
        let policy = base64::engine::general_purpose::STANDARD.decode(&f.fields["policy"]).unwrap();
        let policy: serde_json::Value = serde_json::from_slice(&policy).unwrap();
        assert!(policy["conditions"].as_array().unwrap().contains(&serde_json::json!([
            "content-length-range",
            0,
            1000
        ])));
        assert_eq!(f.fields["x-amz-signature"].len(), 64);
    }
}
