//! Who may do what: every request must be signed with the store's key (s3s has checked the
//! signature by the time this runs), and every `x-amz-*` header it carries must be covered by
//! that signature. Owns that rule only; which operations exist is s3s's and `s3`'s business.
//!
//! Decision: s3s 0.14 verifies a SigV4 signature over the headers the request *lists* as signed
//! and ignores any other header ("FIXME: throw error if any signed header is not in the
//! request" in its `signature.rs`). A pre-signed URL signs `host` only, so whoever holds one
//! could add `x-amz-meta-*` (metadata stored under someone else's signature), `x-amz-tagging`,
//! a checksum, or `x-amz-copy-source` (which makes s3s route the PUT to `CopyObject`). S3 requires
//! every `x-amz-*` header sent to be signed and refuses the request otherwise (`AccessDenied`,
//! "There were headers present in the request which were not signed"); so does the store.
//! Exempt: `x-amz-content-sha256` and `x-amz-date`, whose values enter the string to sign
//! whether or not they are listed. Browser POST forms (fields covered by the policy instead) and
//! `SigV2` (which signs every `x-amz-*` header by construction) have no list to check.

use percent_encoding::percent_decode_str;
use s3s::S3Result;
use s3s::access::{S3Access, S3AccessContext};

use crate::error::Error;

/// Headers bound into a SigV4 signature whether or not `SignedHeaders` lists them.
const ALWAYS_BOUND: [&str; 2] = ["x-amz-content-sha256", "x-amz-date"];

/// The store's access rule (see the module doc).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignedRequestsOnly;

#[async_trait::async_trait]
impl S3Access for SignedRequestsOnly {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_none() {
            return Err(s3s::s3_error!(
                AccessDenied,
                "Signature is required: sign requests (SigV4) with the store's access key, or use a pre-signed URL"
            ));
        }
        let unsigned = unsigned_amz_headers(cx.uri(), cx.headers());
        if unsigned.is_empty() { Ok(()) } else { Err(Error::HeadersNotSigned(unsigned).into()) }
    }
}

/// The `x-amz-*` headers of a SigV4 request that its `SignedHeaders` list leaves out (none when
/// the request has no such list: a POST form, `SigV2`).
fn unsigned_amz_headers(uri: &http::Uri, headers: &http::HeaderMap) -> Vec<String> {
    let Some(signed) = signed_headers(uri, headers) else { return Vec::new() };
    let mut unsigned: Vec<String> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|n| n.starts_with("x-amz-") && !ALWAYS_BOUND.contains(n) && !signed.iter().any(|s| s == n))
        .map(str::to_owned)
        .collect();
    unsigned.dedup();
    unsigned
}

/// The `SignedHeaders` of a SigV4 request: from a pre-signed URL's `X-Amz-SignedHeaders`, or
/// from the `Authorization` header.
fn signed_headers(uri: &http::Uri, headers: &http::HeaderMap) -> Option<Vec<String>> {
    let list = if let Some(q) = uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("X-Amz-SignedHeaders="))
            .map(|v| percent_decode_str(v).decode_utf8_lossy().into_owned())
    }) {
        q
    } else {
        let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let params = auth.strip_prefix("AWS4-HMAC-SHA256")?;
        params.split(',').find_map(|p| p.trim().strip_prefix("SignedHeaders="))?.to_owned()
    };
    Some(list.split(';').map(|h| h.trim().to_ascii_lowercase()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        pairs.iter().map(|(n, v)| (n.parse().unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn presigned_urls_cover_only_the_headers_they_list() {
        let uri: http::Uri =
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=host%3Bx-amz-checksum-crc32c&X-Amz-Signature=ab"
                .parse()
                .unwrap();
        let h = headers(&[("host", "h"), ("x-amz-checksum-crc32c", "x"), ("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]);
        assert!(unsigned_amz_headers(&uri, &h).is_empty());
        let h = headers(&[("host", "h"), ("x-amz-meta-a", "1"), ("X-Amz-Copy-Source", "/b/o"), ("content-type", "t")]);
        assert_eq!(unsigned_amz_headers(&uri, &h), ["x-amz-meta-a", "x-amz-copy-source"]);
    }

    #[test]
    fn header_auth_covers_only_the_headers_it_lists() {
        let uri: http::Uri = "/b/k".parse().unwrap();
        let auth = "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/s3/aws4_request, \
                    SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-a, Signature=ab";
        let h = headers(&[("authorization", auth), ("x-amz-meta-a", "1"), ("x-amz-date", "d")]);
        assert!(unsigned_amz_headers(&uri, &h).is_empty());
        let h = headers(&[("authorization", auth), ("x-amz-meta-b", "1"), ("x-amz-meta-b", "2")]);
        assert_eq!(unsigned_amz_headers(&uri, &h), ["x-amz-meta-b"]);
        // No list to check: a POST form, or SigV2.
        let h = headers(&[("x-amz-meta-b", "1")]);
        assert!(unsigned_amz_headers(&uri, &h).is_empty());
        let h = headers(&[("authorization", "AWS AK:sig"), ("x-amz-meta-b", "1")]);
        assert!(unsigned_amz_headers(&uri, &h).is_empty());
    }
}
