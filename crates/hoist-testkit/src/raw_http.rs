//! HTTP/1.1 written byte by byte over TCP, for requests no well-behaved client sends (a body
//! longer than its `Content-Length`, a header of 100 KiB): the test writes exactly the bytes it
//! means, then reads the store's answer off the socket.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long a read waits for the store before the test gives up on it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP response as read off the socket.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked when the response was chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A TCP connection to the store that a test writes raw bytes to.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    /// Bytes read past the end of the last response.
    buffered: Vec<u8>,
}

impl RawConn {
    /// Connects to `addr` (`127.0.0.1:PORT`, or an `http://` URL).
    pub async fn connect(addr: &str) -> std::io::Result<Self> {
        let addr = addr.trim_start_matches("http://").trim_end_matches('/');
        Ok(Self { stream: TcpStream::connect(addr).await?, buffered: Vec::new() })
    }

    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Closes the sending side (the peer reads the end of the stream), keeping the reading side.
    pub async fn shutdown_write(&mut self) -> std::io::Result<()> {
        self.stream.shutdown().await
    }

    /// Reads until the peer closes the connection: what it sent before closing (nothing, or an
    /// error response), or `None` if the connection was still open after 10 s.
    pub async fn read_until_closed(&mut self) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buffered)).await {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => return Some(std::mem::take(&mut self.buffered)),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Reads one response: status line, headers, and a body framed by `Content-Length`, chunked,
    /// or (when neither) running to the end of the connection. `None` if the store closed the
    /// connection (or said nothing for 10 s) before a whole head arrived.
    pub async fn read_response(&mut self) -> std::io::Result<Option<RawResponse>> {
        let head_end = loop {
            if let Some(i) = find(&self.buffered, b"\r\n\r\n") {
                break i;
            }
            if self.fill().await? == 0 {
                return Ok(None);
            }
        };
        let head = String::from_utf8_lossy(&self.buffered[..head_end]).into_owned();
        self.buffered.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut resp = RawResponse { status, headers, body: Vec::new() };
        if let Some(len) = resp.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            resp.body = self.take(len).await?;
        } else if resp.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            resp.body = self.dechunk().await?;
        } else {
            while self.fill().await? > 0 {}
            resp.body = std::mem::take(&mut self.buffered);
        }
        Ok(Some(resp))
    }

    /// Reads more bytes into the buffer; 0 at the end of the stream or after the read timeout.
    async fn fill(&mut self) -> std::io::Result<usize> {
        self.buffered.reserve(64 * 1024);
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read_buf(&mut self.buffered)).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(0),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(0),
        }
    }

    async fn take(&mut self, len: usize) -> std::io::Result<Vec<u8>> {
        while self.buffered.len() < len {
            if self.fill().await? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "response body cut short"));
            }
        }
        Ok(self.buffered.drain(..len).collect())
    }

    async fn dechunk(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buffered, b"\r\n") {
                    break i;
                }
                if self.fill().await? == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "chunk size cut short"));
                }
            };
            let size_line = String::from_utf8_lossy(&self.buffered[..line_end]).into_owned();
            self.buffered.drain(..line_end + 2);
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size_line:?}")))?;
            let chunk = self.take(size + 2).await?;
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends one request on a fresh connection and reads its response.
///
/// # Panics
/// If the store cannot be reached or answers nothing (the caller expected an answer).
pub async fn request(addr: &str, bytes: &[u8]) -> RawResponse {
    let mut conn = RawConn::connect(addr).await.expect("connect to the store");
    conn.send(bytes).await.expect("send the request");
    conn.read_response().await.expect("read the response").expect("the store answered nothing")
}

/// Path and query of `url` (`http://HOST/PATH?QUERY` → `/PATH?QUERY`), for a request line.
#[must_use]
pub fn path_and_query(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}
