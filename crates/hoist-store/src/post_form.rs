//! Browser POST uploads: what S3 does with the form that s3s 0.14 does not. S3 replaces
//! `${filename}` in the form's `key` with the name of the uploaded file; s3s parses the form but
//! does not keep the file's name, so [`FileName`] reads it from the body while s3s does, and
//! `put_object` (which s3s calls for a POST, with this request's extensions) makes the
//! substitution; s3s writes the answer (`201`'s XML, `303`'s `Location`) with the key as the form
//! sent it, so [`FileName::rewrite_answer`] puts the stored key there. Owns nothing else of
//! POST: the policy and the signature are s3s's, the refusals `refusals`'s.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// What precedes the file's name in the file part's header, as s3s's parser requires it
/// (`form-data; name="file"; filename="..."`).
const MARKER: &[u8] = b"name=\"file\"; filename=\"";
/// Longest file name looked for: S3 keys are at most 1,024 bytes, so a longer name could not be
/// stored anyway.
const MAX_NAME: usize = 1024;

/// The `${filename}` placeholder S3 replaces in a POST form's key.
pub(crate) const PLACEHOLDER: &str = "${filename}";

/// The uploaded file's name, once the body has been read past the file part's header.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileName(Arc<Mutex<Scan>>);

#[derive(Debug, Default)]
struct Scan {
    /// Bytes not yet ruled out (a marker may straddle two frames).
    pending: Vec<u8>,
    state: Found,
}

/// Where a scan stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Found {
    /// Still reading.
    #[default]
    Looking,
    /// The file's name.
    Name(String),
    /// No usable name (too long, or not UTF-8): `${filename}` stays as sent.
    None,
}

impl FileName {
    /// A scan for a browser POST form (a POST to a bucket with a `multipart/form-data` body).
    pub(crate) fn for_request(parts: &http::request::Parts) -> Option<Self> {
        let form = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
        (parts.method == http::Method::POST && form).then(Self::default)
    }

    /// `body`, scanned for the file's name as it is read.
    pub(crate) fn watch<B>(&self, body: B) -> Scanned<B> {
        Scanned { inner: body, scan: Arc::clone(&self.0) }
    }

    /// The file's name, if the body carried one.
    pub(crate) fn get(&self) -> Option<String> {
        match &self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).state {
            Found::Name(n) => Some(n.clone()),
            Found::Looking | Found::None => None,
        }
    }
}

/// How `${filename}` reads in the `Location` s3s builds (form-urlencoded: `$`, `{`, `}` escaped).
const PLACEHOLDER_IN_URL: &str = "%24%7Bfilename%7D";

impl FileName {
    /// Puts the stored key, `${filename}` replaced, where s3s's answer to the POST names the key
    /// as sent: the `201` XML body and the `303` redirect's `Location`.
    pub(crate) fn rewrite_answer(&self, resp: &mut http::Response<s3s::Body>) {
        let Some(name) = self.get() else { return };
        if resp.status() == http::StatusCode::CREATED {
            let Some(body) = resp.body().bytes() else { return };
            let Ok(xml) = std::str::from_utf8(&body) else { return };
            if xml.contains(PLACEHOLDER) {
                let fixed = xml.replace(PLACEHOLDER, &escape_xml(&name));
                *resp.body_mut() = s3s::Body::from(fixed);
            }
        } else if resp.status() == http::StatusCode::SEE_OTHER {
            let Some(location) = resp.headers().get(http::header::LOCATION).and_then(|v| v.to_str().ok()) else {
                return;
            };
            let encoded = percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC).to_string();
            if let Ok(fixed) = http::HeaderValue::from_str(&location.replace(PLACEHOLDER_IN_URL, &encoded)) {
                resp.headers_mut().insert(http::header::LOCATION, fixed);
            }
        }
    }
}

/// `s` as XML text.
fn escape_xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

impl Scan {
    fn feed(&mut self, data: &[u8]) {
        if self.state != Found::Looking {
            return;
        }
        self.pending.extend_from_slice(data);
        let Some(at) = self.pending.windows(MARKER.len()).position(|w| w == MARKER) else {
            let keep = self.pending.len().min(MARKER.len() - 1);
            self.pending.drain(..self.pending.len() - keep);
            return;
        };
        let name = &self.pending[at + MARKER.len()..];
        if let Some(end) = name.iter().take(MAX_NAME + 1).position(|&b| b == b'"') {
            self.state = String::from_utf8(name[..end].to_vec()).map_or(Found::None, Found::Name);
            self.pending = Vec::new();
        } else if name.len() > MAX_NAME {
            self.state = Found::None;
            self.pending = Vec::new();
        } else {
            self.pending.drain(..at);
        }
    }
}

/// A request body scanned by a [`FileName`].
#[derive(Debug)]
pub(crate) struct Scanned<B> {
    inner: B,
    scan: Arc<Mutex<Scan>>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for Scanned<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.scan.lock().unwrap_or_else(std::sync::PoisonError::into_inner).feed(data);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(frames: &[&[u8]]) -> Option<String> {
        let mut s = Scan::default();
        for f in frames {
            s.feed(f);
        }
        match s.state {
            Found::Name(n) => Some(n),
            Found::Looking | Found::None => None,
        }
    }

    #[test]
    fn the_name_is_found_across_frame_boundaries() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nuser/${filename}\r\n--b\r\n\
                     Content-Disposition: form-data; name=\"file\"; filename=\"a photo.jpg\"\r\n\r\nDATA";
        for cut in 0..body.len() {
            assert_eq!(scan(&[&body[..cut], &body[cut..]]).as_deref(), Some("a photo.jpg"), "cut at {cut}");
        }
        assert_eq!(scan(&[b"name=\"other\"; filename=\"x\""]), None);
        let long = format!("name=\"file\"; filename=\"{}\"", "n".repeat(MAX_NAME + 1));
        assert_eq!(scan(&[long.as_bytes()]), None);
    }
}
