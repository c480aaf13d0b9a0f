//! CORS for browsers calling the store: what a bucket CORS rule is, which rules PutBucketCors
//! accepts, and how a request is matched against the rules and against the global
//! `--cors-origin` list, for preflights (`OPTIONS`) and for the headers of every other response.
//! Keeping the rules (in the bucket record) is the backend's; their DTOs are `s3`'s.
//!
//! Decisions:
//! - Two sources, asked in this order. The global `--cors-origin` list (`*` for any origin)
//!   applies to every path and there the origin alone decides: the
//!   answer allows every method and requested header. Then the rules of the bucket named by the
//!   path's first segment (the store serves path-style addressing only).
//! - A bucket rule applies as on AWS: the first rule whose `AllowedOrigin`, `AllowedMethod` and (for
//!   a preflight) `AllowedHeader` entries cover the origin, the method and every requested header.
//!   An origin or allowed header holds at most one `*`, standing for any run of characters;
//!   matching ignores ASCII case (hosts and header names are case-insensitive). Methods match
//!   exactly (browsers send them in upper case).
//! - Preflights are answered here, before SigV4 (a preflight carries no signature). An allowed
//!   one gets the rule's `AllowedMethods`, the requested headers, its `ExposeHeaders` and
//!   `MaxAgeSeconds`. A refused one gets 403 and a body naming what did not match and how to allow
//!   it. It says "no CORS configuration" alike for a bucket without rules and a missing bucket,
//!   so an unsigned request cannot tell which buckets exist.
//! - Other responses, errors included, get `Access-Control-Allow-Origin` and the exposed headers
//!   when the origin and the request's method match. The allowed origin is echoed, never `*`,
//!   always with `Vary: Origin`, so a cache does not hand one origin's answer to another.
//! - Validation follows AWS: 1 to 100 rules; each with at least one `AllowedOrigin` and one
//!   `AllowedMethod` (`MalformedXML`); methods among GET, PUT, HEAD, POST, DELETE and at most one
//!   `*` per origin or allowed header (`InvalidRequest`). Beyond that, an `ExposeHeader` must be a
//!   header name and `MaxAgeSeconds` not negative, so a stored rule always renders as valid headers.

use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Headers a browser may read from responses the global list allows.
const EXPOSE: &str = "ETag, x-amz-checksum-crc32, x-amz-checksum-crc32c, x-amz-checksum-crc64nvme, \
                      x-amz-checksum-sha1, x-amz-checksum-sha256, x-amz-version-id, x-amz-request-id";
/// Methods the global list allows.
const METHODS: &str = "GET, HEAD, PUT, POST, DELETE";
/// How long a browser may cache a preflight the global list allowed (seconds).
const MAX_AGE: &str = "3600";
/// Most rules a bucket holds (AWS: "You can add up to 100 rules to the configuration").
const MAX_RULES: usize = 100;
/// Methods a rule may allow (AWS's list for `AllowedMethod`).
const RULE_METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];
/// Longest rule ID, in characters (AWS: "cannot be longer than 255 characters").
const MAX_ID_LEN: usize = 255;
const REQUEST_METHOD: &str = "access-control-request-method";
const REQUEST_HEADERS: &str = "access-control-request-headers";

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

/// Why no bucket rule allowed a request.
#[derive(Debug, PartialEq, Eq)]
enum Refusal<'a> {
    /// The bucket has no rules (or does not exist).
    NoRules,
    /// No rule allows the origin.
    Origin,
    /// Rules allow the origin but not the method.
    Method,
    /// Rules allow the origin and the method but not this requested header.
    Header(&'a str),
}

impl Refusal<'_> {
    /// How far through a rule the request got.
    fn progress(&self) -> u8 {
        match self {
            Self::NoRules => 0,
            Self::Origin => 1,
            Self::Method => 2,
            Self::Header(_) => 3,
        }
    }
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

    /// Whether this rule lets `origin` use `method` sending `headers`; if not, how far it got.
    fn check<'a>(&self, origin: &str, method: &str, headers: &[&'a str]) -> Result<(), Refusal<'a>> {
        if !self.allowed_origins.iter().any(|p| wildcard_match(p, origin)) {
            return Err(Refusal::Origin);
        }
        if !self.allowed_methods.iter().any(|m| m == method) {
            return Err(Refusal::Method);
        }
        match headers.iter().find(|h| !self.allowed_headers.iter().any(|p| wildcard_match(p, h))) {
            Some(h) => Err(Refusal::Header(h)),
            None => Ok(()),
        }
    }

    /// `Access-Control-Expose-Headers` for responses this rule allows.
    fn expose(&self) -> Option<HeaderValue> {
        if self.expose_headers.is_empty() { None } else { HeaderValue::from_str(&self.expose_headers.join(", ")).ok() }
    }
}

/// The first rule that allows the request or, when none does, the refusal from the first rule
/// that got furthest.
fn first_match<'r, 'a>(
    rules: &'r [CorsRule],
    origin: &str,
    method: &str,
    headers: &[&'a str],
) -> Result<&'r CorsRule, Refusal<'a>> {
    let mut why = Refusal::NoRules;
    for rule in rules {
        match rule.check(origin, method, headers) {
            Ok(()) => return Ok(rule),
            Err(e) if e.progress() > why.progress() => why = e,
            Err(_) => {}
        }
    }
    Err(why)
}

/// Whether `value` matches `pattern`, where one `*` stands for any run of characters, ignoring
/// ASCII case.
fn wildcard_match(pattern: &str, value: &str) -> bool {
    let value = value.as_bytes();
    match pattern.split_once('*') {
        None => value.eq_ignore_ascii_case(pattern.as_bytes()),
        Some((prefix, suffix)) => {
            let (prefix, suffix) = (prefix.as_bytes(), suffix.as_bytes());
            value.len() >= prefix.len() + suffix.len()
                && value[..prefix.len()].eq_ignore_ascii_case(prefix)
                && value[value.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
    }
}

/// The bucket a path-style request addresses: the path's first segment, if any.
pub(crate) fn bucket_of(path: &str) -> Option<&str> {
    let bucket = path.trim_start_matches('/').split('/').next()?;
    (!bucket.is_empty()).then_some(bucket)
}

/// The global `--cors-origin` list, and the answers built from it and from bucket rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cors {
    origins: Vec<String>,
}

impl Cors {
    /// CORS with `origins` (`*` for any) allowed on every path.
    pub(crate) fn new(origins: Vec<String>) -> Self {
        Self { origins }
    }

    /// Whether the global list allows `origin`.
    fn allows_globally(&self, origin: &str) -> bool {
        self.origins.iter().any(|a| a == "*" || a == origin)
    }

    /// Answers a preflight for `bucket` (whose rules are `rules`, empty if it has none): 200
    /// with what is allowed, or 403 with a body saying what did not match and how to allow it.
    pub(crate) fn preflight<B: From<String>>(
        &self,
        headers: &HeaderMap,
        bucket: Option<&str>,
        rules: &[CorsRule],
    ) -> Response<B> {
        let Some((origin_value, origin)) = origin_of(headers) else {
            return refused("CORS preflight refused: the request has no Origin header".into());
        };
        let mut r = Response::new(B::from(String::new()));
        if self.allows_globally(origin) {
            let h = r.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(METHODS));
            let requested = headers.get(REQUEST_HEADERS).cloned().unwrap_or_else(|| HeaderValue::from_static("*"));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE));
            allow_origin(h, origin_value);
            return r;
        }
        let method = headers.get(REQUEST_METHOD).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let requested: Vec<&str> = headers
            .get_all(REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        let rule = match first_match(rules, origin, method, &requested) {
            Ok(rule) => rule,
            Err(why) => {
                tracing::debug!(origin, method, ?bucket, ?why, "CORS preflight refused");
                return refused(refusal_message(&why, bucket, origin, method));
            }
        };
        let h = r.headers_mut();
        let methods = HeaderValue::from_str(&rule.allowed_methods.join(", ")).ok();
        let requested = if requested.is_empty() { None } else { HeaderValue::from_str(&requested.join(", ")).ok() };
        let max_age = rule.max_age_seconds.map(HeaderValue::from);
        for (name, value) in [
            (header::ACCESS_CONTROL_ALLOW_METHODS, methods),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, requested),
            (header::ACCESS_CONTROL_EXPOSE_HEADERS, rule.expose()),
            (header::ACCESS_CONTROL_MAX_AGE, max_age),
        ] {
            if let Some(v) = value {
                h.insert(name, v);
            }
        }
        allow_origin(h, origin_value);
        r
    }

    /// Adds CORS headers to the response to a `method` request when its origin is allowed by
    /// the global list or by one of `rules` (the bucket's).
    pub(crate) fn decorate<B>(
        &self,
        req_headers: &HeaderMap,
        method: &Method,
        rules: &[CorsRule],
        resp: &mut Response<B>,
    ) {
        let Some((origin_value, origin)) = origin_of(req_headers) else { return };
        let expose = if self.allows_globally(origin) {
            Some(HeaderValue::from_static(EXPOSE))
        } else if let Ok(rule) = first_match(rules, origin, method.as_str(), &[]) {
            rule.expose()
        } else {
            return;
        };
        let h = resp.headers_mut();
        if let Some(expose) = expose {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose);
        }
        allow_origin(h, origin_value);
    }

    /// Whether a request is a CORS preflight.
    pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS && headers.contains_key(REQUEST_METHOD)
    }
}

/// The request's `Origin`, as a header value and as text.
fn origin_of(headers: &HeaderMap) -> Option<(&HeaderValue, &str)> {
    let value = headers.get(header::ORIGIN)?;
    Some((value, value.to_str().ok()?))
}

/// Allows `origin` (echoed) and marks the response as depending on it.
fn allow_origin(h: &mut HeaderMap, origin: &HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// A 403 answer to a preflight, with `why` as its body.
fn refused<B: From<String>>(why: String) -> Response<B> {
    let mut r = Response::new(B::from(why));
    *r.status_mut() = StatusCode::FORBIDDEN;
    r
}

/// What a refused preflight's body says: what did not match, and how to allow it.
fn refusal_message(why: &Refusal<'_>, bucket: Option<&str>, origin: &str, method: &str) -> String {
    let global = format!("start the store with --cors-origin {origin}");
    let Some(bucket) = bucket else {
        return format!("CORS preflight refused: origin {origin} is not allowed here; {global}");
    };
    let detail = match why {
        Refusal::NoRules => format!("bucket {bucket:?} has no CORS configuration; add a rule with PutBucketCors"),
        Refusal::Origin => {
            format!("no CORS rule of bucket {bucket:?} allows origin {origin}; add it to a rule's AllowedOrigin")
        }
        Refusal::Method => format!(
            "no CORS rule of bucket {bucket:?} allows origin {origin} to use method {method:?}; \
             add it to that rule's AllowedMethod"
        ),
        Refusal::Header(h) => format!(
            "no CORS rule of bucket {bucket:?} allows origin {origin} to send header {h:?} with {method}; \
             add it to that rule's AllowedHeader"
        ),
    };
    format!("CORS preflight refused: {detail}, or {global}")
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
    fn wildcards_stand_for_any_run_and_ignore_case() {
        for (pattern, value) in [
            ("*", "https://anything.example"),
            ("*", ""),
            ("https://*.example.com", "https://app.example.com"),
            ("https://*.example.com", "https://a.b.example.com"),
            ("https://*.example.com", "HTTPS://App.Example.COM"),
            ("http://localhost:*", "http://localhost:5173"),
            ("x-amz-*", "x-amz-checksum-crc32c"),
            ("*-type", "Content-Type"),
            ("https://app.example.com", "https://APP.example.com"),
            ("a*a", "aa"),
        ] {
            assert!(wildcard_match(pattern, value), "{pattern} should match {value}");
        }
        for (pattern, value) in [
            ("https://*.example.com", "https://example.com"),
            ("https://*.example.com", "https://app.example.com.evil"),
            ("https://*.example.com", "http://app.example.com"),
            ("https://app.example.com", "https://app.example.com:8443"),
            ("x-amz-*", "content-type"),
            ("a*a", "a"),
            ("é*", "e"),
        ] {
            assert!(!wildcard_match(pattern, value), "{pattern} should not match {value}");
        }
    }

    #[test]
    fn the_first_matching_rule_wins_and_a_refusal_says_how_far_it_got() {
        let rules = [
            rule(&["https://*.example.org"], &["GET"], &[]),
            rule(&["https://*.example.com"], &["PUT", "POST"], &["content-type", "x-amz-*"]),
            rule(&["https://app.example.com"], &["PUT"], &["*"]),
            rule(&["https://app.example.com"], &["POST"], &["a-*"]),
        ];
        let found =
            |o: &str, m: &str, h: &[&'static str]| first_match(&rules, o, m, h).map(|r| r.allowed_methods.clone());
        assert_eq!(found("https://x.example.org", "GET", &[]), Ok(vec!["GET".to_owned()]));
        assert_eq!(found("https://a.example.com", "PUT", &["Content-Type"]), Ok(vec!["PUT".into(), "POST".into()]));
        assert_eq!(found("https://app.example.com", "PUT", &["x-custom"]), Ok(vec!["PUT".to_owned()]));
        assert_eq!(found("https://app.example.com", "PUT", &["content-type"]), Ok(vec!["PUT".into(), "POST".into()]));
        assert_eq!(found("https://other.example", "PUT", &[]), Err(Refusal::Origin));
        assert_eq!(found("https://a.example.com", "DELETE", &[]), Err(Refusal::Method));
        assert_eq!(
            found("https://a.example.com", "PUT", &["x-amz-date", "x-custom"]),
            Err(Refusal::Header("x-custom"))
        );
        let headers = &["x-amz-date", "a-custom"];
        // The second and fourth rules both get as far as the headers: the earlier one's refusal counts.
        assert_eq!(found("https://app.example.com", "POST", headers), Err(Refusal::Header("a-custom")));
        assert_eq!(first_match(&[], "https://a.example.com", "GET", &[]).map(|_| ()), Err(Refusal::NoRules));
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

    #[test]
    fn the_bucket_is_the_first_path_segment() {
        assert_eq!(bucket_of("/bkt/some/key"), Some("bkt"));
        assert_eq!(bucket_of("/bkt"), Some("bkt"));
        assert_eq!(bucket_of("/bkt/"), Some("bkt"));
        assert_eq!(bucket_of("/"), None);
        assert_eq!(bucket_of(""), None);
    }
}
