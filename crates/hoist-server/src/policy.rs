//! What a caller may do: who the caller is (bearer token → [`Caller`]), which key an upload gets
//! (the caller's prefix + a unique id + the file's name, refused rather than silently rewritten
//! when the name could escape or confuse), size and content type limits, user metadata rules,
//! and a per-key request rate (token bucket). Quota needs the database and lives in `uploads`.
//!
//! Decisions:
//! - File names with bidirectional controls (U+202A–U+202E embeddings and overrides, U+2066–U+2069
//!   isolates, U+200E/U+200F/U+061C marks) are refused, not stripped: `invoice\u{202E}fdp.exe`
//!   displays as `invoiceexe.pdf`, and a name is never rewritten behind the client's back (the
//!   key it gets back must be the name it sent). No real file name needs them: text direction is
//!   the viewer's business.
//! - Metadata is measured as the headers it becomes: each entry travels as
//!   `x-amz-meta-NAME: VALUE` and its name again in the request's signed header list, and S3
//!   (and the store) refuse a header section over `hoist_core::config::MAX_HEADER_SECTION`.
//!   Such metadata is refused at create (400), where the caller can fix it, rather than failing
//!   in S3 as a 502 that no retry can cure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest as _, Sha256};

use crate::config::{ApiKeyConfig, KeyPolicy};
use crate::error::{ApiError, ApiResult};

/// The API key a request acts for.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<KeyPolicy>);

/// Token hashes → policies, plus the optional anonymous policy.
#[derive(Debug)]
pub struct Keys {
    by_hash: HashMap<[u8; 32], Arc<KeyPolicy>>,
    anonymous: Option<Arc<KeyPolicy>>,
}

impl Keys {
    /// Builds the lookup table.
    #[must_use]
    pub fn new(keys: &[ApiKeyConfig], anonymous: Option<KeyPolicy>) -> Self {
        Self {
            by_hash: keys.iter().map(|k| (k.token_sha256, Arc::new(k.policy.clone()))).collect(),
            anonymous: anonymous.map(Arc::new),
        }
    }

    /// The caller a token (or its absence) stands for. Tokens are compared by their SHA-256, so
    /// the table holds no secrets and lookup time says nothing about a token's bytes.
    pub fn authenticate(&self, token: Option<&str>) -> ApiResult<Caller> {
        match token {
            Some(t) => self.by_hash.get(&sha256(t)).cloned().map(Caller).ok_or(ApiError::Unauthorized),
            None => self.anonymous.clone().map(Caller).ok_or(ApiError::Unauthorized),
        }
    }
}

impl Keys {
    /// The policy an object written by some other client belongs to: the one whose prefix is the
    /// longest prefix of `key` (ties go to the name that sorts first, so the answer never
    /// depends on table order); `None` when no key's prefix holds it.
    #[must_use]
    pub fn owner_of(&self, key: &str) -> Option<Arc<KeyPolicy>> {
        self.by_hash
            .values()
            .chain(self.anonymous.iter())
            .filter(|p| key.starts_with(&p.prefix))
            .min_by(|a, b| b.prefix.len().cmp(&a.prefix.len()).then_with(|| a.name.cmp(&b.name)))
            .cloned()
    }
}

/// SHA-256 of a token, as configured in `token_sha256`.
#[must_use]
pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Longest file name accepted (bytes); S3 keys may be 1,024 bytes and the prefix needs room.
pub const MAX_FILENAME: usize = 255;

/// Checks a client's file name: refused (not rewritten) if it is empty, too long, has a path
/// separator, is `.` or `..`, or contains control characters.
pub fn check_filename(name: &str) -> ApiResult<()> {
    let refuse = |why: &str| {
        Err(ApiError::BadRequest(format!("filename {name:?} {why}: send the file's own name, e.g. \"report.pdf\"")))
    };
    if name.is_empty() || name.trim().is_empty() {
        return refuse("is empty");
    }
    if name.len() > MAX_FILENAME {
        return refuse("is longer than 255 bytes");
    }
    if name.contains(['/', '\\']) {
        return refuse("contains a path separator");
    }
    if name == "." || name == ".." {
        return refuse("is a directory reference");
    }
    if name.chars().any(char::is_control) {
        return refuse("contains control characters");
    }
    if let Some(c) = name.chars().find(|c| is_bidi_control(*c)) {
        return refuse(&format!(
            "contains the invisible bidirectional control U+{:04X}, which makes a name display as another \
             (\"invoice\\u{{202E}}fdp.exe\" shows as \"invoiceexe.pdf\")",
            u32::from(c)
        ));
    }
    Ok(())
}

/// Whether `c` changes the display order of text around it (see the module doc).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// The object key of a new upload: the caller's prefix, the upload's unique id, the file name.
#[must_use]
pub fn object_key(policy: &KeyPolicy, id: &str, filename: &str) -> String {
    format!("{}{id}/{filename}", policy.prefix)
}

/// The media type without parameters, lowercased; refused unless it looks like `type/subtype`.
pub fn normalize_content_type(ct: Option<&str>) -> ApiResult<String> {
    let Some(ct) = ct.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok("application/octet-stream".into());
    };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
    match essence.split_once('/') {
        Some((t, s)) if token(t) && token(s) => Ok(essence),
        _ => Err(ApiError::BadRequest(format!(
            "content_type {ct:?} is not a media type: write it as type/subtype, e.g. image/png"
        ))),
    }
}

/// Checks size and content type against the caller's policy.
pub fn check_object(policy: &KeyPolicy, size: Option<u64>, content_type: &str) -> ApiResult<()> {
    if let Some(size) = size
        && size > policy.max_size
    {
        return Err(ApiError::TooLarge { size, max: policy.max_size });
    }
    if !content_type_matches(&policy.content_types, content_type) {
        return Err(ApiError::ContentTypeNotAllowed {
            got: content_type.into(),
            allowed: policy.content_types.join(", "),
        });
    }
    Ok(())
}

/// Whether `content_type` (normalized) matches one of `patterns`: `type/subtype`, `type/*`, `*/*`.
#[must_use]
pub fn content_type_matches(patterns: &[String], content_type: &str) -> bool {
    let (t, _) = content_type.split_once('/').unwrap_or((content_type, ""));
    patterns.iter().any(|p| {
        let p = p.to_ascii_lowercase();
        p == "*/*" || p == content_type || p.strip_suffix("/*").is_some_and(|pt| pt == t)
    })
}

/// S3's limit on user metadata (names and values together, in bytes).
pub const MAX_METADATA_BYTES: usize = 2048;

/// Room kept in the header limit for a CreateMultipartUpload's other headers: host, date,
/// payload hash, content type, the SDK's user agents and invocation id, and the `Authorization`
/// header apart from metadata names. aws-sdk-s3 sends about 1 KiB of them; twice that is kept.
const OTHER_HEADERS: usize = 2 * 1024;

/// Checks user metadata: names of letters, digits, `-` and `_`; printable ASCII values (they
/// travel as HTTP headers); at most 2 KiB together, as S3 allows; and headers that fit S3's
/// header limit (see the module doc).
pub fn check_metadata(meta: &[(String, String)]) -> ApiResult<()> {
    let mut total = 0;
    for (k, v) in meta {
        if !hoist_core::config::is_valid_metadata_name(k) {
            return Err(ApiError::BadRequest(format!(
                "metadata name {k:?} is not allowed: use letters, digits, '-' and '_'"
            )));
        }
        if !v.bytes().all(|c| (0x20..0x7f).contains(&c)) {
            return Err(ApiError::BadRequest(format!(
                "metadata {k:?} has a value with non-printable or non-ASCII characters: S3 sends metadata as HTTP headers"
            )));
        }
        total += k.len() + v.len();
    }
    if total > MAX_METADATA_BYTES {
        return Err(ApiError::BadRequest(format!("metadata is {total} bytes: S3 allows at most {MAX_METADATA_BYTES}")));
    }
    let headers: usize = meta
        .iter()
        .map(|(k, v)| {
            let name = "x-amz-meta-".len() + k.len();
            name + v.len() + ";".len() + name
        })
        .sum();
    let max = hoist_core::config::MAX_HEADER_SECTION - OTHER_HEADERS;
    if headers > max {
        return Err(ApiError::BadRequest(format!(
            "metadata of {} entries becomes {headers} bytes of HTTP headers (x-amz-meta-NAME: VALUE, and each name \
             again in the signature); S3 takes at most {max} for metadata in one request: send fewer entries or \
             shorter names",
            meta.len()
        )));
    }
    Ok(())
}

/// Per-key request rate: a token bucket of `rate_per_minute` tokens refilled continuously.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one token for `policy`'s key, or says how many seconds until one is free.
    pub fn check(&self, policy: &KeyPolicy, now: Instant) -> ApiResult<()> {
        let capacity = f64::from(policy.rate_per_minute);
        let per_sec = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, at) = buckets.entry(policy.name.clone()).or_insert((capacity, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            // Whole seconds, at least 1, as Retry-After wants.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let wait = ((1.0 - *tokens) / per_sec).ceil().max(1.0) as u64;
            Err(ApiError::RateLimited(wait))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy() -> KeyPolicy {
        KeyPolicy {
            name: "k".into(),
            prefix: "p/".into(),
            max_size: 100,
            content_types: vec!["image/*".into(), "application/pdf".into()],
            rate_per_minute: 2,
            quota: None,
            max_open_uploads: 10,
        }
    }

    #[test]
    fn filenames_that_could_escape_or_confuse_are_refused() {
        for bad in ["", " ", "../etc/passwd", "a/b", "a\\b", "..", ".", "a\u{0}b", "line\nbreak", &"x".repeat(256)] {
            assert!(matches!(check_filename(bad), Err(ApiError::BadRequest(_))), "{bad:?}");
        }
        for bidi in ["invoice\u{202E}fdp.exe", "a\u{2066}b", "\u{200F}x", "x\u{061C}"] {
            let e = check_filename(bidi).unwrap_err().to_string();
            assert!(e.contains("bidirectional"), "{bidi:?}: {e}");
            assert!(!e.contains(|c: char| is_bidi_control(c)), "the message does not carry the control itself: {e}");
        }
        for good in ["report.pdf", "..hidden", "résumé 2026.docx", "a..b", "שלום.txt", "مرحبا.pdf"] {
            check_filename(good).unwrap();
        }
        assert_eq!(object_key(&policy(), "abc", "..hidden"), "p/abc/..hidden");
    }

    #[test]
    fn size_and_content_type_follow_the_policy() {
        let p = policy();
        check_object(&p, Some(100), "image/png").unwrap();
        check_object(&p, Some(1), "application/pdf").unwrap();
        assert!(matches!(check_object(&p, Some(101), "image/png"), Err(ApiError::TooLarge { .. })));
        assert!(matches!(check_object(&p, Some(1), "text/html"), Err(ApiError::ContentTypeNotAllowed { .. })));
        assert!(matches!(check_object(&p, Some(1), "imagex/png"), Err(ApiError::ContentTypeNotAllowed { .. })));
        assert_eq!(normalize_content_type(Some("Image/PNG; charset=x")).unwrap(), "image/png");
        assert_eq!(normalize_content_type(None).unwrap(), "application/octet-stream");
        assert!(normalize_content_type(Some("png")).is_err());
        assert!(normalize_content_type(Some("a/b c")).is_err());
    }

    #[test]
    fn metadata_rules() {
        check_metadata(&[("owner".into(), "ana".into())]).unwrap();
        assert!(check_metadata(&[("bad name".into(), "v".into())]).is_err());
        assert!(check_metadata(&[("k".into(), "é".into())]).is_err());
        assert!(check_metadata(&[("k".into(), "v".repeat(3000))]).is_err());
        // Within S3's 2 KiB of names and values, but over the header limit as headers.
        let many: Vec<(String, String)> = (0..300).map(|i| (format!("m{i:03}"), String::new())).collect();
        let e = check_metadata(&many).unwrap_err().to_string();
        assert!(e.contains("HTTP headers") && e.contains("300 entries"), "{e}");
        check_metadata(&many[..150]).unwrap();
    }

    #[test]
    fn tokens_are_looked_up_by_hash_and_anonymous_needs_consent() {
        let cfg = ApiKeyConfig { token_sha256: sha256("secret"), policy: policy() };
        let keys = Keys::new(std::slice::from_ref(&cfg), None);
        assert_eq!(keys.authenticate(Some("secret")).unwrap().0.name, "k");
        assert!(matches!(keys.authenticate(Some("wrong")), Err(ApiError::Unauthorized)));
        assert!(matches!(keys.authenticate(None), Err(ApiError::Unauthorized)));
        let open = Keys::new(&[cfg], Some(KeyPolicy::generous("anonymous", "anonymous/")));
        assert_eq!(open.authenticate(None).unwrap().0.name, "anonymous");
    }

    #[test]
    fn rate_limit_refills_and_says_when() {
        let limiter = RateLimiter::default();
        let p = policy(); // 2 per minute
        let t0 = Instant::now();
        limiter.check(&p, t0).unwrap();
        limiter.check(&p, t0).unwrap();
        match limiter.check(&p, t0) {
            Err(ApiError::RateLimited(s)) => assert_eq!(s, 30),
            other => panic!("{other:?}"),
        }
        limiter.check(&p, t0 + Duration::from_secs(30)).unwrap();
    }
}
