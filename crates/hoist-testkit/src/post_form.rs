//! Browser POST uploads built by hand, as a page would send them: a POST policy (JSON, base64),
//! signed with SigV4 (signing key from the secret, date, region, `s3`, `aws4_request`; the
//! signature is the HMAC-SHA256 of the base64 policy), and the `multipart/form-data` body with
//! the fields and then the file. The signature comes from `aws-sigv4` (the AWS SDK's signer, as
//! `hoist serve` uses it); the store checks it with s3s's own code, so the two do not share an
//! implementation.
//!
//! See <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html> and
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-authentication-HTTPPOST.html>.

use aws_sigv4::sign::v4;
use base64::Engine as _;
use hoist_store::Credentials;
use time::OffsetDateTime;
use time::macros::format_description;

/// The region the test clients sign for.
pub const REGION: &str = "us-east-1";
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
        Self {
            expiration: now + time::Duration::minutes(10),
            signed_at: now,
            conditions: Vec::new(),
            fields: Vec::new(),
        }
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
        let key = v4::generate_signing_key(&credentials.secret_key, self.signed_at.into(), REGION, "s3");
        let signature = v4::calculate_signature(key, policy.as_bytes());
        let mut fields = self.fields.clone();
        fields.extend(self.sigv4_fields(credentials));
        fields.push(("policy".into(), policy));
        fields.push(("x-amz-signature".into(), signature));
        fields
    }

    fn sigv4_fields(&self, credentials: &Credentials) -> Vec<(String, String)> {
        let day = self.signed_at.format(format_description!("[year][month][day]")).unwrap_or_default();
        let date = self
            .signed_at
            .format(format_description!("[year][month][day]T[hour][minute][second]Z"))
            .unwrap_or_default();
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
