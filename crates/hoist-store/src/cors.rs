//! CORS for browsers calling the store. Origins from `--cors-origin` (`*` allowed) apply to every
//! bucket. Preflight (`OPTIONS`) is answered here, before SigV4 (a preflight carries no
//! signature); other responses, errors included, get the CORS headers when the request's
//! `Origin` is allowed. `ETag` is exposed so a browser can read a part's `ETag`.
//!
//! Buckets also have CORS rules of their own: what a rule is and which rules PutBucketCors
//! accepts are defined here; keeping them (in the bucket record) is the backend's, their DTOs
//! are `s3`'s.
//!
//! Decision: validation follows AWS: 1 to 100 rules; each with at least one `AllowedOrigin` and
//! one `AllowedMethod` (`MalformedXML`); methods among GET, PUT, HEAD, POST, DELETE and at most
//! one `*` per origin or allowed header (`InvalidRequest`). Beyond that, an `ExposeHeader` must be
//! a header name and `MaxAgeSeconds` not negative, so a stored rule always renders as valid
//! headers.

use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Headers a browser may read from responses.
const EXPOSE: &str = "ETag, x-amz-checksum-crc32, x-amz-checksum-crc32c, x-amz-checksum-crc64nvme, \
                      x-amz-checksum-sha1, x-amz-checksum-sha256, x-amz-version-id, x-amz-request-id";
const METHODS: &str = "GET, HEAD, PUT, POST, DELETE";
/// Preflight results may be cached this long (seconds).
const MAX_AGE: &str = "3600";

/// Most rules a bucket holds (AWS: "You can add up to 100 rules to the configuration").
const MAX_RULES: usize = 100;
/// Methods a rule may allow (AWS's list for `AllowedMethod`).
const RULE_METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];
/// Longest rule ID, in characters (AWS: "cannot be longer than 255 characters").
const MAX_ID_LEN: usize = 255;

/// One bucket CORS rule, as kept in the bucket record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CorsRule {
    /// The rule's name, if it was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    /// Origins allowed, each with at most one `*`.
    pub(crate) allowed_origins: Vec<String>,
    /// Methods allowed (from [`RULE_METHODS`]).
    pub(crate) allowed_methods: Vec<String>,
    /// Headers a preflight may ask for, each with at most one `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) allowed_headers: Vec<String>,
    /// Response headers a browser may read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) expose_headers: Vec<String>,
    /// How long a browser may cache the preflight (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_age_seconds: Option<i32>,
}

/// Checks a bucket's CORS configuration as PutBucketCors does on AWS.
pub(crate) fn validate(rules: &[CorsRule]) -> Result<()> {
    if rules.is_empty() {
        return Err(Error::MalformedXml(
            "the CORS configuration has no CORSRule; give at least one (DeleteBucketCors removes the configuration)"
                .into(),
        ));
    }
    if rules.len() > MAX_RULES {
        return Err(Error::InvalidRequest(format!(
            "the CORS configuration has {} rules; a bucket takes at most {MAX_RULES}: \
             merge rules that allow the same methods",
            rules.len()
        )));
    }
    rules.iter().zip(1..).try_for_each(|(rule, n)| rule.validate(n))
}

impl CorsRule {
    /// Checks one rule; `n` (from 1) names it in the message.
    fn validate(&self, n: usize) -> Result<()> {
        if self.allowed_origins.is_empty() || self.allowed_methods.is_empty() {
            return Err(Error::MalformedXml(format!(
                "CORSRule {n} needs at least one AllowedOrigin and one AllowedMethod"
            )));
        }
        if let Some(m) = self.allowed_methods.iter().find(|m| !RULE_METHODS.contains(&m.as_str())) {
            return Err(Error::InvalidRequest(format!(
                "CORSRule {n}: unsupported AllowedMethod {m:?}; use GET, PUT, HEAD, POST or DELETE (upper case)"
            )));
        }
        for (what, patterns) in [("AllowedOrigin", &self.allowed_origins), ("AllowedHeader", &self.allowed_headers)] {
            if patterns.iter().any(String::is_empty) {
                return Err(Error::MalformedXml(format!(
                    "CORSRule {n}: an {what} is empty; remove it or give a value"
                )));
            }
            if let Some(p) = patterns.iter().find(|p| p.matches('*').count() > 1) {
                return Err(Error::InvalidRequest(format!(
                    "CORSRule {n}: {what} {p:?} has more than one '*' wildcard; use at most one"
                )));
            }
        }
        if let Some(h) = self.expose_headers.iter().find(|h| HeaderName::from_bytes(h.as_bytes()).is_err()) {
            return Err(Error::InvalidRequest(format!(
                "CORSRule {n}: ExposeHeader {h:?} is not a header name (no spaces, commas or other separators)"
            )));
        }
        if let Some(s) = self.max_age_seconds.filter(|s| *s < 0) {
            return Err(Error::MalformedXml(format!("CORSRule {n}: MaxAgeSeconds is {s}; give 0 or more")));
        }
        if self.id.as_ref().is_some_and(|id| id.chars().count() > MAX_ID_LEN) {
            return Err(Error::InvalidRequest(format!("CORSRule {n}: the ID is longer than {MAX_ID_LEN} characters")));
        }
        Ok(())
    }
}

/// The allowed origins.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cors {
    origins: Vec<String>,
}

impl Cors {
    pub(crate) fn new(origins: Vec<String>) -> Self {
        Self { origins }
    }

    /// The value for `Access-Control-Allow-Origin` if `origin` may use the store.
    fn allow(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(http::header::ORIGIN)?;
        let o = origin.to_str().ok()?;
        self.origins.iter().any(|a| a == "*" || a == o).then(|| origin.clone())
    }

    /// Answers a preflight: 200 with the allowed methods and headers, or 403 naming the fix.
    pub(crate) fn preflight<B: From<String>>(&self, headers: &HeaderMap) -> Response<B> {
        let Some(origin) = self.allow(headers) else {
            let body = "CORS preflight refused: this origin is not allowed; start the store with \
                        --cors-origin ORIGIN"
                .to_owned();
            let mut r = Response::new(B::from(body));
            *r.status_mut() = StatusCode::FORBIDDEN;
            return r;
        };
        let mut r = Response::new(B::from(String::new()));
        let h = r.headers_mut();
        h.insert("access-control-allow-origin", origin);
        h.insert("access-control-allow-methods", HeaderValue::from_static(METHODS));
        let req_headers =
            headers.get("access-control-request-headers").cloned().unwrap_or_else(|| HeaderValue::from_static("*"));
        h.insert("access-control-allow-headers", req_headers);
        h.insert("access-control-max-age", HeaderValue::from_static(MAX_AGE));
        h.insert("access-control-expose-headers", HeaderValue::from_static(EXPOSE));
        h.insert(http::header::VARY, HeaderValue::from_static("Origin"));
        r
    }

    /// Adds CORS headers to a response when the request's origin is allowed.
    pub(crate) fn decorate<B>(&self, req_headers: &HeaderMap, resp: &mut Response<B>) {
        if let Some(origin) = self.allow(req_headers) {
            let h = resp.headers_mut();
            h.insert("access-control-allow-origin", origin);
            h.insert("access-control-expose-headers", HeaderValue::from_static(EXPOSE));
            h.insert(http::header::VARY, HeaderValue::from_static("Origin"));
        }
    }

    /// Whether a request is a CORS preflight.
    pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS && headers.contains_key("access-control-request-method")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        let v = |s: &[&str]| s.iter().map(|&s| s.to_owned()).collect();
        CorsRule {
            id: None,
            allowed_origins: v(origins),
            allowed_methods: v(methods),
            allowed_headers: v(headers),
            expose_headers: Vec::new(),
            max_age_seconds: None,
        }
    }

    fn message(r: Result<()>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn valid_rules_pass() {
        let mut r = rule(&["https://*.example.com", "*"], &["GET", "PUT", "HEAD", "POST", "DELETE"], &["*", "x-amz-*"]);
        r.expose_headers = vec!["ETag".into(), "x-amz-checksum-crc32c".into()];
        r.max_age_seconds = Some(0);
        r.id = Some("i".repeat(MAX_ID_LEN));
        validate(&vec![r; MAX_RULES]).unwrap();
    }

    #[test]
    fn invalid_rules_are_refused_with_what_to_fix() {
        let ok = rule(&["https://app.example.com"], &["GET"], &[]);
        let with = |f: fn(&mut CorsRule)| {
            let mut bad = ok.clone();
            f(&mut bad);
            vec![ok.clone(), bad]
        };
        let cases: [(Vec<CorsRule>, &str); 11] = [
            (vec![], "at least one"),
            (vec![ok.clone(); MAX_RULES + 1], "101 rules; a bucket takes at most 100"),
            (with(|r| r.allowed_methods = vec!["PATCH".into()]), "CORSRule 2: unsupported AllowedMethod \"PATCH\""),
            (with(|r| r.allowed_methods = vec!["get".into()]), "\"get\""),
            (with(|r| r.allowed_methods.clear()), "CORSRule 2 needs at least one AllowedOrigin and one AllowedMethod"),
            (with(|r| r.allowed_origins.clear()), "CORSRule 2 needs at least one AllowedOrigin"),
            (
                with(|r| r.allowed_origins = vec!["https://*.*.example.com".into()]),
                "\"https://*.*.example.com\" has more than one '*'",
            ),
            (with(|r| r.allowed_headers = vec![String::new()]), "an AllowedHeader is empty"),
            (with(|r| r.expose_headers = vec!["ETag, x-amz-request-id".into()]), "is not a header name"),
            (with(|r| r.max_age_seconds = Some(-1)), "MaxAgeSeconds is -1"),
            (with(|r| r.id = Some("i".repeat(MAX_ID_LEN + 1))), "longer than 255"),
        ];
        for (rules, expected) in cases {
            let m = message(validate(&rules));
            assert!(m.contains(expected), "{m:?} should contain {expected:?}");
        }
        let m = with(|r| r.allowed_methods = vec!["PATCH".into()]);
        assert!(matches!(validate(&m), Err(Error::InvalidRequest(_))));
        let m = with(|r| r.allowed_origins.clear());
        assert!(matches!(validate(&m), Err(Error::MalformedXml(_))));
    }
}
