//! What the store refuses around s3s, and how those refusals read. Owns the limits s3s is
//! configured with, the checks made before s3s routes a request, and the messages added to the
//! refusals s3s makes on its own; it does not own any S3 operation.
//!
//! Decisions:
//! - **Refused before routing.** s3s 0.14 checks bucket names and key lengths while routing,
//!   before our code runs, and answers `InvalidBucketName` / `KeyTooLongError` with a code and no
//!   message: boto3 showed `create_bucket(Bucket='b')` failing with message "Unknown". The store
//!   makes the same checks first (the bucket rule is s3s's own `check_bucket_name`, so nothing
//!   s3s would accept is refused) and answers with a message that names the bucket and the rule.
//!   A header section over [`MAX_HEADER_SECTION`] bytes (S3's limit) is refused here too: s3s
//!   has no limit of its own, and hyper's (≈ 400 KiB) answers `431` with no S3 error at all.
//!   So is an XML request whose `Content-Length` is over [`MAX_XML_BODY`]: s3s 0.14 means to
//!   answer `MaxMessageLengthExceeded`, but a streamed body over its limit fails with
//!   http-body-util's error type where s3s looks for its own, and the client got a bare
//!   `500 InternalError`. Also refused here, as S3 does: an object PUT with neither
//!   `Content-Length` nor chunked framing (`411 MissingContentLength`: HTTP reads it as an empty
//!   body, so an empty object was stored), one over 5 GiB (`413 EntityTooLarge`, before a byte
//!   of it is read), and a pre-signed URL living over a week (`AuthorizationQueryParametersError`).
//!   (Keys with control characters are refused where every write checks its key, in `backend`.)
//! - **Bodies s3s reads whole.** An XML body that breaks off before `Content-Length`, or does not
//!   match its signed `x-amz-content-sha256`, makes s3s answer a bare `500 InternalError` with
//!   nothing logged. [`XmlBodyWatch`] watches the body as s3s reads it, so such a 500 becomes
//!   S3's `IncompleteBody` / `XAmzContentSHA256Mismatch` (400), and a chunked body over the cap
//!   `MaxMessageLengthExceeded`. It also keeps a Complete's body, whose `<PartNumber>`s s3s reads
//!   leniently (`1abc` as 1), for the strict check S3 makes.
//! - **Messages for s3s's bare refusals.** s3s answers some refusals with only a code:
//!   `SignatureDoesNotMatch`, `MalformedXML` (its parse error goes to its log, not the client),
//!   `MaxMessageLengthExceeded`, `MissingContentLength`, `InvalidURI`, ... An error that reaches a
//!   client as "Unknown" says nothing about what to fix, so [`explain`] adds S3's message for the
//!   code (and the limit, where one was hit) to any error response s3s sent without one.
//! - **Browser POST policy failures as S3 answers them.** s3s refuses a form that breaks its
//!   policy (a failed condition, a `bucket` field that is not the URL's) with `400
//!   InvalidPolicyDocument`; S3 with `403 AccessDenied`, "Invalid according to Policy", and
//!   [`policy_failure_as_s3`] makes it so. A policy that does not parse stays a 400.
//! - **Limits.** XML bodies (Complete, DeleteObjects) are read whole before parsing, so they are
//!   capped at [`MAX_XML_BODY`]; a longer one is `MaxMessageLengthExceeded`. s3s 0.14 holds a
//!   browser POST's file in memory, whole, before it checks the policy's size range and before
//!   it refuses an unsigned form, so the file is capped at [`MAX_POST_FILE`] (s3s's default is
//!   5 GiB: one anonymous request could have made the store hold 5 GiB).

use std::pin::Pin;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hoist_core::ProviderLimits;
use hoist_core::config::{MAX_HEADER_SECTION, MAX_PRESIGNED_EXPIRY_SECS};
use http::{HeaderMap, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use percent_encoding::percent_decode_str;
use s3s::{S3Error, S3ErrorCode};
use sha2::{Digest as _, Sha256};

use crate::backend::MAX_KEY_LEN;
use crate::error::Error;

/// Largest XML request body. The largest real one is a Complete of 10,000 parts: ≈ 90 bytes a
/// part, ≈ 160 with a checksum, so ≈ 1.6 MiB; DeleteObjects of 1,000 keys of 1,024 bytes ≈ 1.1
/// MiB. s3s's default (20 MiB) is kept: every real body fits with room, and one request can make
/// the store hold no more than this.
pub(crate) const MAX_XML_BODY: usize = 20 * 1024 * 1024;
/// Largest file in a browser POST upload. Uppy's AWS S3 plugin (what `hoist serve`'s companion
/// routes serve) sends files over 100 MiB in parts and smaller ones by POST.
pub(crate) const MAX_POST_FILE: u64 = 100 * 1024 * 1024;

/// s3s's configuration: s3s's defaults with the limits above.
pub(crate) fn s3s_config() -> Arc<s3s::config::StaticConfigProvider> {
    let mut config = s3s::config::S3Config::default(); // non-exhaustive: no struct literal
    config.xml_max_body_size = MAX_XML_BODY;
    config.post_object_max_file_size = MAX_POST_FILE;
    Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(config)))
}

/// The refusal, if any, for a request s3s would otherwise route: a header section over the
/// limit, an invalid bucket name, a key over 1,024 bytes, a pre-signed URL living over a week,
/// an object body without a length or over 5 GiB, an XML body over the limit.
pub(crate) fn before_routing(parts: &http::request::Parts) -> Option<Error> {
    let size = header_section_size(&parts.headers);
    if size > MAX_HEADER_SECTION {
        return Some(Error::HeaderSectionTooLarge { size, max: MAX_HEADER_SECTION });
    }
    // s3s decodes the path the same way; a path that is not UTF-8 is left to it (InvalidURI).
    let path = percent_decode_str(parts.uri.path()).decode_utf8().ok()?;
    let rest = path.strip_prefix('/')?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if !bucket.is_empty() && !s3s::path::check_bucket_name(bucket) {
        return Some(Error::InvalidBucketName(bucket.to_owned()));
    }
    if key.len() > MAX_KEY_LEN {
        return Some(Error::KeyTooLong(key.len()));
    }
    if let Some(seconds) = query_value(&parts.uri, "X-Amz-Expires").and_then(|v| v.parse::<u64>().ok())
        && seconds > MAX_PRESIGNED_EXPIRY_SECS
    {
        return Some(Error::ExpiresTooLong(seconds));
    }
    let declared = header_u64(&parts.headers, http::header::CONTENT_LENGTH.as_str());
    let object_put = parts.method == http::Method::PUT && !key.is_empty();
    if object_put {
        let chunked = parts
            .headers
            .get(http::header::TRANSFER_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if declared.is_none() && !chunked {
            return Some(Error::MissingContentLength);
        }
        // An aws-chunked body declares its decoded length; Content-Length counts the framing.
        let max = ProviderLimits::AWS.max_part_size;
        if let Some(size) = header_u64(&parts.headers, "x-amz-decoded-content-length").or(declared)
            && size > max
        {
            return Some(Error::EntityTooLarge { size, max });
        }
    }
    if let Some(size) = declared
        && size > MAX_XML_BODY as u64
        && !carries_object_bytes(parts, !key.is_empty())
    {
        return Some(Error::XmlBodyTooLarge { size, max: MAX_XML_BODY });
    }
    None
}

/// The first value of query parameter `name` (raw, as sent).
fn query_value<'a>(uri: &'a http::Uri, name: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name).and_then(|v| v.to_str().ok()?.trim().parse().ok())
}

/// What the store saw of an XML request body while s3s read it.
#[derive(Debug, Default)]
struct Seen {
    bytes: u64,
    /// SHA-256 of the bytes so far, when the request signed one to compare with.
    sha256: Option<Sha256>,
    /// The body broke off (the connection ended before `Content-Length` bytes came).
    failed: bool,
    /// The bytes themselves, kept for CompleteMultipartUpload (see [`XmlBodyWatch::check_part_numbers`]).
    kept: Option<Vec<u8>>,
}

/// Watches an XML request body (Complete, DeleteObjects, PutBucketCors, CreateBucket) while s3s
/// reads it. s3s 0.14 answers a body that breaks off, or does not match its signed
/// `x-amz-content-sha256`, with a bare `500 InternalError`; [`fault`](Self::fault) says what
/// really happened, so the client gets S3's 400 instead. Also carried into the request's
/// extensions, where Complete reads the raw part numbers.
#[derive(Debug, Clone)]
pub(crate) struct XmlBodyWatch {
    seen: Arc<Mutex<Seen>>,
    declared_len: Option<u64>,
    declared_sha256: Option<[u8; 32]>,
}

impl XmlBodyWatch {
    /// A watch for requests whose body is an XML document (none for object bytes and forms).
    pub(crate) fn for_request(parts: &http::request::Parts) -> Option<Self> {
        let has_key =
            parts.uri.path().strip_prefix('/').and_then(|p| p.split_once('/')).is_some_and(|(_, key)| !key.is_empty());
        if !(parts.method == http::Method::POST || parts.method == http::Method::PUT)
            || carries_object_bytes(parts, has_key)
        {
            return None;
        }
        let declared_sha256 = parts.headers.get("x-amz-content-sha256").and_then(|v| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(v.as_bytes(), &mut out).ok().map(|()| out)
        });
        let complete = parts.method == http::Method::POST && query_value(&parts.uri, "uploadId").is_some();
        let seen =
            Seen { sha256: declared_sha256.map(|_| Sha256::new()), kept: complete.then(Vec::new), ..Seen::default() };
        Some(Self {
            seen: Arc::new(Mutex::new(seen)),
            declared_len: header_u64(&parts.headers, http::header::CONTENT_LENGTH.as_str()),
            declared_sha256,
        })
    }

    /// `body`, observed by this watch as it is read.
    pub(crate) fn watch<B>(&self, body: B) -> Watched<B> {
        Watched { inner: body, seen: Arc::clone(&self.seen) }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The client's fault behind an internal error s3s answered while reading the body, if any.
    pub(crate) fn fault(&self) -> Option<Error> {
        let seen = self.seen();
        if seen.bytes > MAX_XML_BODY as u64 {
            return Some(Error::XmlBodyTooLarge { size: seen.bytes, max: MAX_XML_BODY });
        }
        match self.declared_len {
            Some(expected) if seen.failed || seen.bytes < expected => {
                return Some(Error::IncompleteBody { expected, got: seen.bytes });
            }
            None if seen.failed => return Some(Error::Body(format!("the body broke off after {} bytes", seen.bytes))),
            _ => {}
        }
        let got: Option<[u8; 32]> = seen.sha256.clone().map(|h| h.finalize().into());
        (got.is_some() && got != self.declared_sha256).then_some(Error::ContentSha256Mismatch)
    }

    /// Refuses a CompleteMultipartUpload body whose `<PartNumber>` values are not plain decimal
    /// integers: s3s parses them leniently (`1abc`, `+1` and `1.0` read as part 1), S3 answers
    /// `MalformedXML`.
    pub(crate) fn check_part_numbers(&self) -> Result<(), Error> {
        let seen = self.seen();
        let Some(xml) = seen.kept.as_deref() else { return Ok(()) };
        let xml = String::from_utf8_lossy(xml);
        for (i, _) in xml.match_indices("PartNumber>") {
            let opening = xml[..i].rsplit('<').next().is_some_and(|tag| tag.is_empty() || tag.ends_with(':'));
            if !opening {
                continue; // a closing tag
            }
            let value = xml[i + "PartNumber>".len()..].split('<').next().unwrap_or("");
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::MalformedXml(format!(
                    "<PartNumber>{value}</PartNumber> is not a part number: write it as a decimal integer from 1 to 10000"
                )));
            }
        }
        Ok(())
    }
}

/// A request body observed by an [`XmlBodyWatch`].
#[derive(Debug)]
pub(crate) struct Watched<B> {
    inner: B,
    seen: Arc<Mutex<Seen>>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for Watched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    seen.bytes += data.len() as u64;
                    if let Some(h) = seen.sha256.as_mut() {
                        h.update(data);
                    }
                    if let Some(k) = seen.kept.as_mut()
                        && k.len() <= MAX_XML_BODY
                    {
                        k.extend_from_slice(data);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => seen.failed = true,
            Poll::Ready(None) | Poll::Pending => {}
        }
        drop(seen);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether the request's body is object data, streamed to disk (PutObject, UploadPart, a browser
/// POST form) rather than an XML document s3s reads whole.
fn carries_object_bytes(parts: &http::request::Parts, has_key: bool) -> bool {
    let form = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    (parts.method == http::Method::PUT && has_key) || (parts.method == http::Method::POST && form)
}

/// Bytes of header names and values (what S3's limit counts).
fn header_section_size(headers: &HeaderMap) -> usize {
    headers.iter().map(|(n, v)| n.as_str().len() + v.len()).sum()
}

/// An error response for `e`, as s3s would have written it.
pub(crate) fn respond(e: Error) -> Response<s3s::Body> {
    to_response(S3Error::from(e))
}

fn to_response(e: S3Error) -> Response<s3s::Body> {
    let status = e.status_code().unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    e.to_http_response().unwrap_or_else(|_| {
        let mut r = Response::new(s3s::Body::empty());
        *r.status_mut() = status;
        r
    })
}

/// S3's message for a code s3s refused with and gave no message (see the module doc).
fn message_for(code: &str) -> Option<String> {
    Some(match code {
        "SignatureDoesNotMatch" => "The request signature we calculated does not match the signature you provided. \
                                    Check your key and signing method."
            .to_owned(),
        "MalformedXML" => {
            "The XML you provided was not well-formed or did not validate against the published schema.".to_owned()
        }
        "MaxMessageLengthExceeded" => {
            format!("Your request was too big: XML request bodies are at most {} MiB.", MAX_XML_BODY / (1024 * 1024))
        }
        "MissingContentLength" => "You must provide the Content-Length HTTP header.".to_owned(),
        "IncompleteBody" => {
            "You did not provide the number of bytes specified by the Content-Length HTTP header.".to_owned()
        }
        "InvalidURI" => {
            "Couldn't parse the specified URI: its path or query is not valid percent-encoded UTF-8.".to_owned()
        }
        "MethodNotAllowed" => "The specified method is not allowed against this resource.".to_owned(),
        "MalformedPOSTRequest" => "The body of your POST request is not well-formed multipart/form-data.".to_owned(),
        "InvalidPolicyDocument" => "The content of the form does not meet the conditions specified in the policy \
                                    document."
            .to_owned(),
        "MissingRequestBodyError" => "Request Body is empty.".to_owned(),
        "InvalidRange" => "The requested range is not satisfiable.".to_owned(),
        "AccessDenied" => "Access Denied.".to_owned(),
        "InternalError" => "We encountered an internal error; see the store's log.".to_owned(),
        _ => return None,
    })
}

/// The start of the messages s3s 0.14 gives a browser POST whose form breaks its policy: a
/// failed `eq` / `starts-with` condition, or a `bucket` field that is not the URL's bucket.
const POLICY_CONDITION_FAILURES: [&str; 2] = ["Policy condition", "Bucket in form field"];

/// A browser POST refused because its form breaks its policy: s3s answers `400
/// InvalidPolicyDocument`, S3 `403 AccessDenied` ("Invalid according to Policy"), and browser
/// code tells the two apart. A policy that does not parse stays `InvalidPolicyDocument` (so it
/// is on S3).
pub(crate) fn policy_failure_as_s3(method: &http::Method, resp: &mut Response<s3s::Body>) {
    if method != http::Method::POST || resp.status() != StatusCode::BAD_REQUEST {
        return;
    }
    let Some(body) = resp.body().bytes() else { return };
    let Ok(xml) = std::str::from_utf8(&body) else { return };
    let inner = |tag: &str| {
        let (_, after) = xml.split_once(&format!("<{tag}>"))?;
        after.split_once(&format!("</{tag}>")).map(|(v, _)| v)
    };
    let Some(message) = inner("Message").filter(|_| inner("Code") == Some("InvalidPolicyDocument")) else { return };
    let message = unescape_xml(message);
    if !POLICY_CONDITION_FAILURES.iter().any(|p| message.starts_with(p)) {
        return;
    }
    let e = S3Error::with_message(
        S3ErrorCode::AccessDenied,
        format!("Invalid according to Policy: Policy Condition failed: {message}"),
    );
    *resp = to_response(e);
}

/// Text of an XML element as s3s escapes it (the five predefined entities).
fn unescape_xml(s: &str) -> String {
    s.replace("&apos;", "'").replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// Adds S3's message to an error response s3s wrote without one (see the module doc).
pub(crate) fn explain(resp: &mut Response<s3s::Body>) {
    if !(resp.status().is_client_error() || resp.status().is_server_error()) {
        return;
    }
    let Some(body) = resp.body().bytes() else { return };
    let Ok(xml) = std::str::from_utf8(&body) else { return };
    if !xml.contains("<Error>") || xml.contains("<Message>") {
        return;
    }
    let Some(code) = xml.split_once("<Code>").and_then(|(_, rest)| rest.split_once("</Code>")).map(|(c, _)| c) else {
        return;
    };
    let (Some(message), Ok(code)) = (message_for(code), S3ErrorCode::from_str(code)) else { return };
    let mut e = S3Error::with_message(code, message);
    e.set_status_code(resp.status());
    let mut explained = to_response(e);
    for (name, value) in resp.headers() {
        if name != http::header::CONTENT_LENGTH && name != http::header::CONTENT_TYPE {
            explained.headers_mut().insert(name, value.clone());
        }
    }
    *resp = explained;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bad_bucket_names_and_long_keys_are_refused_before_routing() {
        assert!(before_routing(&parts("/", &[])).is_none());
        assert!(before_routing(&parts("/good-bucket/any/key", &[])).is_none());
        for (uri, bucket) in [("/b", "b"), ("/B_ad/k", "B_ad"), ("/192.168.1.1", "192.168.1.1"), ("/%41bc/k", "Abc")] {
            match before_routing(&parts(uri, &[])) {
                Some(Error::InvalidBucketName(b)) => assert_eq!(b, bucket),
                other => panic!("{uri}: {other:?}"),
            }
        }
        let long = format!("/bkt/{}", "k".repeat(1025));
        assert!(matches!(before_routing(&parts(&long, &[])), Some(Error::KeyTooLong(1025))));
        assert!(before_routing(&parts(&format!("/bkt/{}", "k".repeat(1024)), &[])).is_none());
    }

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut p = parts(uri, headers);
        p.method = method.parse().unwrap();
        p
    }

    #[test]
    fn xml_bodies_over_the_cap_are_refused_and_object_bodies_are_not() {
        let big = (MAX_XML_BODY + 1).to_string();
        let cl = [("content-length", big.as_str())];
        for (method, uri) in [("POST", "/bkt/k?uploadId=u"), ("POST", "/bkt?delete"), ("PUT", "/bkt?cors")] {
            assert!(
                matches!(before_routing(&request(method, uri, &cl)), Some(Error::XmlBodyTooLarge { .. })),
                "{method} {uri}"
            );
        }
        assert!(before_routing(&request("PUT", "/bkt/k?partNumber=1&uploadId=u", &cl)).is_none());
        assert!(before_routing(&request("PUT", "/bkt/k", &cl)).is_none());
        let form = [("content-length", big.as_str()), ("content-type", "multipart/form-data; boundary=x")];
        assert!(before_routing(&request("POST", "/bkt", &form)).is_none());
        let ok = MAX_XML_BODY.to_string();
        assert!(before_routing(&request("POST", "/bkt?delete", &[("content-length", ok.as_str())])).is_none());
    }

    #[test]
    fn header_sections_over_8_kib_are_refused() {
        let under = "a".repeat(MAX_HEADER_SECTION - "x-pad".len());
        assert!(before_routing(&parts("/bkt", &[("x-pad", &under)])).is_none());
        let over = "a".repeat(MAX_HEADER_SECTION);
        assert!(matches!(
            before_routing(&parts("/bkt", &[("x-pad", &over)])),
            Some(Error::HeaderSectionTooLarge { .. })
        ));
    }

    fn bare(code: S3ErrorCode) -> Response<s3s::Body> {
        S3Error::new(code).to_http_response().unwrap()
    }

    fn text(r: &Response<s3s::Body>) -> String {
        String::from_utf8(r.body().bytes().unwrap().to_vec()).unwrap()
    }

    #[test]
    fn bare_refusals_get_a_message_and_keep_their_status() {
        let mut r = bare(S3ErrorCode::SignatureDoesNotMatch);
        assert!(!text(&r).contains("<Message>"));
        explain(&mut r);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(text(&r).contains("<Code>SignatureDoesNotMatch</Code><Message>The request signature"), "{}", text(&r));

        let mut r = respond(Error::NoSuchKey("k".into()));
        let before = text(&r);
        explain(&mut r);
        assert_eq!(text(&r), before, "a message is never replaced");

        let mut r = bare(S3ErrorCode::Custom("SomethingNew".into()));
        let before = text(&r);
        explain(&mut r);
        assert_eq!(text(&r), before, "unknown codes are left alone");
    }
}
