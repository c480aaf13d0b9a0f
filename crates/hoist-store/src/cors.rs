//! CORS for browsers uploading straight to the store: origins come from `--cors-origin` (`*`
//! allowed) and apply to every bucket. Preflight (`OPTIONS`) is answered here, before SigV4 (a
//! preflight carries no signature); other responses, errors included, get the CORS headers when
//! the request's `Origin` is allowed. `ETag` is exposed so a browser can read a part's `ETag`.

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

/// Headers a browser may read from responses.
const EXPOSE: &str = "ETag, x-amz-checksum-crc32, x-amz-checksum-crc32c, x-amz-checksum-crc64nvme, \
                      x-amz-checksum-sha1, x-amz-checksum-sha256, x-amz-version-id, x-amz-request-id";
const METHODS: &str = "GET, HEAD, PUT, POST, DELETE";
/// Preflight results may be cached this long (seconds).
const MAX_AGE: &str = "3600";

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
        let req_headers = headers
            .get("access-control-request-headers")
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("*"));
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
