//! Browser POST uploads built by hand, as a page would send them: a POST policy (JSON, base64),
//! signed with SigV4 (signing key from the secret, date, region, `s3`, `aws4_request`; the
//! signature is the HMAC-SHA256 of the base64 policy), and the `multipart/form-data` body with
//! the fields and then the file. Nothing here comes from the store or the SDK, so a test of the
//! store's POST checks does not share code with what it tests.
//!
//! See <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html> and
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-authentication-HTTPPOST.html>.

use base64::Engine as _;
use hoist_store::Credentials;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

/// The region the test clients sign for.
pub const REGION: &str = "us-east-1";
/// SHA-256's block size, for HMAC.
const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104).
#[must_use]
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner_hash = Sha256::new().chain_update(&inner).chain_update(message).finalize();
    Sha256::new().chain_update(&outer).chain_update(inner_hash).finalize().into()
}

/// The SigV4 signing key for a day (`YYYYMMDD`), region and service.
#[must_use]
pub fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac_sha256(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let k = hmac_sha256(&k, region.as_bytes());
    let k = hmac_sha256(&k, service.as_bytes());
    hmac_sha256(&k, b"aws4_request")
}

/// A POST policy and the form fields it covers, to be signed.
#[derive(Debug, Clone)]
pub struct PostForm {
    expiration: OffsetDateTime,
    signed_at: OffsetDateTime,
    conditions: Vec<String>,
    fields: Vec<(String, String)>,
}

impl Default for PostForm {
    fn default() -> Self {
        Self::new()
    }
}

impl PostForm {
    /// A policy that expires in ten minutes, signed now, with no conditions yet.
    #[must_use]
    pub fn new() -> Self {
        let now = OffsetDateTime::now_utc();
        Self { expiration: now + time::Duration::minutes(10), signed_at: now, conditions: Vec::new(), fields: Vec::new() }
    }

    /// Sets when the policy expires.
    #[must_use]
    pub fn expires_at(mut self, at: OffsetDateTime) -> Self {
        self.expiration = at;
        self
    }

    /// Adds a policy condition, written as JSON: `{"bucket": "b"}`,
    /// `["starts-with", "$key", "user/"]`, `["content-length-range", 0, 100]`.
    #[must_use]
    pub fn condition(mut self, json: &str) -> Self {
        self.conditions.push(json.to_owned());
        self
    }

    /// Adds a form field (sent before the file, in this order).
    #[must_use]
    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.fields.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The policy JSON this form signs (with the `x-amz-*` conditions SigV4 requires).
    #[must_use]
    pub fn policy_json(&self, credentials: &Credentials) -> String {
        let mut conditions = self.conditions.clone();
        for (name, value) in self.sigv4_fields(credentials) {
            conditions.push(format!("{{\"{name}\": \"{value}\"}}"));
        }
        let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].000Z");
        let expiration = self.expiration.format(&fmt).unwrap_or_default();
        format!("{{\"expiration\": \"{expiration}\", \"conditions\": [{}]}}", conditions.join(", "))
    }

    /// All form fields: the given ones, then `x-amz-algorithm`, `x-amz-credential`,
    /// `x-amz-date`, `policy` and `x-amz-signature`.
    #[must_use]
    pub fn sign(&self, credentials: &Credentials) -> Vec<(String, String)> {
        let policy = base64::engine::general_purpose::STANDARD.encode(self.policy_json(credentials));
        let day = self.signed_at.format(format_description!("[year][month][day]")).unwrap_or_default();
        let key = signing_key(&credentials.secret_key, &day, REGION, "s3");
        let signature = hex::encode(hmac_sha256(&key, policy.as_bytes()));
        let mut fields = self.fields.clone();
        fields.extend(self.sigv4_fields(credentials));
        fields.push(("policy".into(), policy));
        fields.push(("x-amz-signature".into(), signature));
        fields
    }

    fn sigv4_fields(&self, credentials: &Credentials) -> Vec<(String, String)> {
        let day = self.signed_at.format(format_description!("[year][month][day]")).unwrap_or_default();
        let date = self.signed_at.format(format_description!("[year][month][day]T[hour][minute][second]Z")).unwrap_or_default();
        vec![
            ("x-amz-algorithm".into(), "AWS4-HMAC-SHA256".into()),
            ("x-amz-credential".into(), format!("{}/{day}/{REGION}/s3/aws4_request", credentials.access_key)),
            ("x-amz-date".into(), date),
        ]
    }
}

/// The `multipart/form-data` body of `fields` then the file: the `Content-Type` header value and
/// the bytes.
#[must_use]
pub fn multipart_body(fields: &[(String, String)], file_name: &str, file: &[u8]) -> (String, Vec<u8>) {
    let (content_type, mut body, tail) = multipart_around_file(fields, file_name);
    body.extend_from_slice(file);
    body.extend_from_slice(&tail);
    (content_type, body)
}

/// The `multipart/form-data` body around a file the caller streams itself: the `Content-Type`
/// header value, the bytes before the file (fields, then the file part's head) and after it.
#[must_use]
pub fn multipart_around_file(fields: &[(String, String)], file_name: &str) -> (String, Vec<u8>, Vec<u8>) {
    let boundary = "----hoist-test-boundary-7MA4YWxkTrZu0gW";
    let mut head = Vec::with_capacity(4096);
    for (name, value) in fields {
        head.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    head.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
    (format!("multipart/form-data; boundary={boundary}"), head, tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn signing_key_matches_aws_published_example() {
        // AWS's "Examples of how to derive a signing key for Signature Version 4".
        let key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam");
        assert_eq!(hex::encode(key), "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    }
}
