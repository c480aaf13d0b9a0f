//! A seeded HTTP fault proxy to put between an S3 client and the real store.
//!
//! Each connection carries one request (the proxy adds `Connection: close`), so every request is
//! classified on its own: its S3 operation ([`Op`], from the method and query of the request
//! line) and how many requests of that operation came before it. Two ways pick a request to
//! spoil, and both can be used at once:
//! - scripted [`Rule`]s: "the k-th `op` gets `fault`" (the way to fail the k-th call and then
//!   check that nothing leaked, as mountpoint-s3's failure client does); each rule fires once;
//! - a seeded dice roll per request: with probability `rate` (only part uploads, if
//!   `only_part_uploads`) one of `faults`, chosen uniformly; a seed repeats a run for a given
//!   request order.
//!
//! What each [`Fault`] does to the request is documented on its variant. Faults that answer for
//! the store read the request body first (when its length is declared and no `100-continue` is
//! awaited), so the client reads the answer instead of a reset caused by unread bytes. The
//! proxy fakes nothing it does not say it fakes: a passed-through request reaches the real store,
//! and the faults that need the store's work ([`Fault::LostResponse`], [`Fault::NoEtag`], ...)
//! pass the request on first and spoil only the response.
//!
//! Injected faults are counted, and so are requests per operation, so tests can tell a fault
//! that fired from one that never had its request; request body bytes passed on to the store are
//! counted per operation as they go (so a client killed mid-part still counts what it sent).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Connection reset mid-body (nothing reaches the store).
    Reset,
    /// `503 SlowDown`.
    SlowDown,
    /// `500 InternalError`.
    InternalError,
    /// No answer at all (for [`STALL`]; a client's request timeout must end it).
    Stall,
    /// The store did the work; its response is cut in half, then the connection is reset.
    Truncate,
    /// The store did the work; the whole response is lost (the connection is reset instead).
    LostResponse,
    /// `200 OK` whose body is an `<Error>` (`InternalError`), as S3 can answer
    /// CompleteMultipartUpload; the store is not called.
    ErrorIn200,
    /// The store did the work; its response comes without the `ETag` header.
    NoEtag,
    /// `200 OK` with no body and no `ETag`; the store is not called: a gateway that lost the write
    /// and answered success.
    Dropped,
    /// The store did the work; its response carries another `ETag` ([`WRONG_ETAG`]).
    WrongEtag,
    /// [`Fault::LostResponse`], and the next request of the same operation is answered
    /// `404 NoSuchUpload` (what a Complete retried after a lost response gets from stores that
    /// forget a completed upload at once).
    LostThenNoSuchUpload,
    /// `404 NoSuchUpload` (the store is not called).
    NoSuchUpload,
    /// The store did the work; its response is delivered slowly ([`TRICKLE_CHUNK`] bytes every
    /// [`TRICKLE_GAP`]): a slow but live link, which a read timeout must not cut.
    Trickle,
    /// `400 RequestTimeout` (S3's answer when a body stops arriving); retryable.
    RequestTimeout,
    /// `403 RequestTimeTooSkewed` (the signing clock is off by more than 15 minutes).
    TimeTooSkewed,
    /// `403 AccessDenied` on this one request.
    Forbidden,
    /// The connection is reset and the proxy stops listening for [`REFUSE_FOR`]:
    /// every connection in that window is refused, as from a restarting endpoint.
    Refuse,
}

/// The S3 operation of a request, told from its method, path and query (path-style addressing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `POST /bucket/key?uploads`: CreateMultipartUpload.
    Create,
    /// `PUT /bucket/key?partNumber=N&uploadId=…`: UploadPart.
    Part,
    /// `GET /bucket/key?uploadId=…`: ListParts.
    ListParts,
    /// `GET /bucket?uploads`: ListMultipartUploads.
    ListUploads,
    /// `POST /bucket/key?uploadId=…`: CompleteMultipartUpload.
    Complete,
    /// `DELETE /bucket/key?uploadId=…`: AbortMultipartUpload.
    Abort,
    /// `HEAD /bucket/key`: HeadObject (the verification after an upload).
    Head,
    /// `PUT /bucket/key`: PutObject.
    Put,
    /// Anything else (bucket calls, GetObject, listings).
    Other,
}

impl Op {
    /// Classifies a request line (`METHOD /path?query HTTP/1.1`).
    #[must_use]
    pub fn of(request_line: &str) -> Self {
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or("");
        let target = words.next().unwrap_or("");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let has = |name: &str| query.split('&').any(|p| p.split('=').next() == Some(name));
        // "/bucket/key": a key follows the bucket.
        let object = path.trim_start_matches('/').split_once('/').is_some_and(|(_, k)| !k.is_empty());
        match method {
            "POST" if has("uploads") => Self::Create,
            "POST" if has("uploadId") => Self::Complete,
            "PUT" if has("partNumber") && has("uploadId") => Self::Part,
            "PUT" if object && !has("uploadId") && !has("partNumber") => Self::Put,
            "GET" if has("uploadId") => Self::ListParts,
            "GET" if has("uploads") => Self::ListUploads,
            "DELETE" if has("uploadId") => Self::Abort,
            "HEAD" if object => Self::Head,
            _ => Self::Other,
        }
    }
}

/// A scripted fault: the `nth` request (1-based, retries counted) of `op` gets `fault`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The operation.
    pub op: Op,
    /// Which occurrence of it, from 1.
    pub nth: u64,
    /// What it gets.
    pub fault: Fault,
}

/// What to inject at random.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Probability of a fault per eligible request.
    pub rate: f64,
    /// RNG seed (runs are repeatable for a given request order).
    pub seed: u64,
    /// Faults to choose from, uniformly.
    pub faults: Vec<Fault>,
    /// Only part uploads are eligible (so create/complete/abort pass).
    pub only_part_uploads: bool,
}

impl FaultConfig {
    /// No random faults (scripted [`Rule`]s only).
    #[must_use]
    pub fn none() -> Self {
        Self { rate: 0.0, seed: 0, faults: Vec::new(), only_part_uploads: false }
    }
}

/// How long a [`Fault::Stall`] holds its connection: longer than any request timeout a test
/// sets, short enough that a broken client shows up as a hang instead of a stuck test process.
pub const STALL: Duration = Duration::from_mins(2);
/// Bytes per write of a [`Fault::Trickle`] response.
pub const TRICKLE_CHUNK: usize = 32;
/// Pause between the writes of a [`Fault::Trickle`] response: 32 B per 50 ms = 640 B/s, so an
/// S3 response (300-600 bytes of head and XML) takes about a second, and no single read waits
/// long enough to trip a read timeout.
pub const TRICKLE_GAP: Duration = Duration::from_millis(50);
/// The `ETag` a [`Fault::WrongEtag`] response carries: a well-formed MD5 of nothing uploaded.
pub const WRONG_ETAG: &str = "\"0123456789abcdef0123456789abcdef\"";
/// How long a [`Fault::Refuse`] keeps the port closed: "a few seconds" of a restarting endpoint.
pub const REFUSE_FOR: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Shared {
    config: Mutex<FaultConfig>,
    rules: Mutex<Vec<Rule>>,
    rng: Mutex<StdRng>,
    injected: Mutex<BTreeMap<Fault, u64>>,
    seen: Mutex<BTreeMap<Op, u64>>,
    body_bytes: Mutex<BTreeMap<Op, u64>>,
    refuse: mpsc::UnboundedSender<Duration>,
    upstream: SocketAddr,
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// Longest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How long an answering fault waits for the rest of a request body before answering anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `upstream`.
    ///
    /// # Panics
    /// If no local port can be bound.
    #[allow(clippy::unused_async)] // every caller awaits it; binding needs no await today
    pub async fn start(upstream: SocketAddr, config: FaultConfig) -> Self {
        let listener = listen("127.0.0.1:0".parse().expect("address")).expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (refuse, refusals) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config: Mutex::new(config),
            rules: Mutex::new(Vec::new()),
            injected: Mutex::new(BTreeMap::new()),
            seen: Mutex::new(BTreeMap::new()),
            body_bytes: Mutex::new(BTreeMap::new()),
            refuse,
            upstream,
        });
        let task = tokio::spawn(accept_loop(listener, addr, shared.clone(), refusals));
        Self { addr, shared, task }
    }

    /// Starts a proxy that injects only the scripted `rules`.
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn scripted(upstream: SocketAddr, rules: Vec<Rule>) -> Self {
        let proxy = Self::start(upstream, FaultConfig::none()).await;
        proxy.set_rules(rules);
        proxy
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    #[must_use]
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the fault rate (e.g. 0 to let cleanup through).
    ///
    /// # Panics
    /// If the lock is poisoned.
    pub fn set_rate(&self, rate: f64) {
        self.shared.config.lock().unwrap().rate = rate;
    }

    /// Replaces the scripted rules and restarts the per-operation counts they refer to.
    ///
    /// # Panics
    /// If a lock is poisoned.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.shared.rules.lock().unwrap() = rules;
        self.shared.seen.lock().unwrap().clear();
    }

    /// Faults injected so far, by kind.
    ///
    /// # Panics
    /// If the lock is poisoned.
    #[must_use]
    pub fn injected(&self) -> BTreeMap<Fault, u64> {
        self.shared.injected.lock().unwrap().clone()
    }

    /// Total faults injected so far.
    #[must_use]
    pub fn injected_total(&self) -> u64 {
        self.injected().values().sum()
    }

    /// Requests of `op` seen since the rules were last set.
    ///
    /// # Panics
    /// If the lock is poisoned.
    #[must_use]
    pub fn seen(&self, op: Op) -> u64 {
        self.shared.seen.lock().unwrap().get(&op).copied().unwrap_or(0)
    }

    /// Request body bytes of `op` passed on to the store since the proxy started (framing of
    /// `aws-chunked` bodies included).
    ///
    /// # Panics
    /// If the lock is poisoned.
    #[must_use]
    pub fn body_bytes(&self, op: Op) -> u64 {
        self.shared.body_bytes.lock().unwrap().get(&op).copied().unwrap_or(0)
    }
}

impl Shared {
    fn count_body(&self, op: Op, n: usize) {
        if let Ok(mut m) = self.body_bytes.lock() {
            *m.entry(op).or_default() += n as u64;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener with `SO_REUSEADDR`, so the port can be bound again after a refusal window while
/// the connections of before it sit in `TIME_WAIT`.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // The kernel's usual default backlog (somaxconn).
    socket.listen(4096)
}

/// Accepts connections; on a refusal, closes the port for the window asked and binds it again.
async fn accept_loop(
    mut listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut refusals: mpsc::UnboundedReceiver<Duration>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let s = shared.clone();
                tokio::spawn(async move {
                    let _ = handle(client, &s).await;
                });
            }
            Some(window) = refusals.recv() => {
                drop(listener);
                tokio::time::sleep(window).await;
                listener = loop {
                    match listen(addr) {
                        Ok(l) => break l,
                        Err(e) => {
                            tracing::warn!(%addr, error = %e, "fault proxy cannot listen again yet");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                };
            }
        }
    }
}

/// The fault for this request of `op`, if any: a scripted rule first, then the dice.
fn choose(shared: &Shared, op: Op) -> Option<Fault> {
    let nth = {
        let mut seen = shared.seen.lock().ok()?;
        let n = seen.entry(op).or_default();
        *n += 1;
        *n
    };
    let scripted = {
        let mut rules = shared.rules.lock().ok()?;
        let i = rules.iter().position(|r| r.op == op && r.nth == nth);
        i.map(|i| {
            let rule = rules.remove(i);
            if rule.fault == Fault::LostThenNoSuchUpload {
                rules.push(Rule { op, nth: nth + 1, fault: Fault::NoSuchUpload });
            }
            rule.fault
        })
    };
    let fault = scripted.or_else(|| roll(shared, op))?;
    *shared.injected.lock().ok()?.entry(fault).or_default() += 1;
    Some(fault)
}

fn roll(shared: &Shared, op: Op) -> Option<Fault> {
    let config = shared.config.lock().ok()?.clone();
    if (config.only_part_uploads && op != Op::Part) || config.faults.is_empty() {
        return None;
    }
    let mut rng = shared.rng.lock().ok()?;
    if rng.random::<f64>() >= config.rate {
        return None;
    }
    Some(config.faults[rng.random_range(0..config.faults.len())])
}

fn error_response(status: &str, code: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the fault proxy</Message></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The status line and S3 code a fault answers with by itself, if it is one of those.
fn answer(fault: Fault) -> Option<(&'static str, &'static str)> {
    Some(match fault {
        Fault::SlowDown => ("503 Slow Down", "SlowDown"),
        Fault::InternalError => ("500 Internal Server Error", "InternalError"),
        Fault::ErrorIn200 => ("200 OK", "InternalError"),
        Fault::NoSuchUpload => ("404 Not Found", "NoSuchUpload"),
        Fault::RequestTimeout => ("400 Bad Request", "RequestTimeout"),
        Fault::TimeTooSkewed => ("403 Forbidden", "RequestTimeTooSkewed"),
        Fault::Forbidden => ("403 Forbidden", "AccessDenied"),
        _ => return None,
    })
}

async fn handle(mut client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    let head_end = loop {
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let op = Op::of(head.lines().next().unwrap_or(""));
    let fault = choose(shared, op);
    if let Some((status, code)) = fault.and_then(answer) {
        drain_body(&mut client, &head, buf.len() - head_end).await;
        client.write_all(&error_response(status, code)).await?;
        return client.shutdown().await;
    }
    match fault {
        Some(Fault::Dropped) => {
            drain_body(&mut client, &head, buf.len() - head_end).await;
            client.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await?;
            client.shutdown().await
        }
        Some(Fault::Reset) => {
            let mut chunk = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_millis(50), client.read(&mut chunk)).await;
            reset(&client)
        }
        Some(Fault::Refuse) => {
            let _ = shared.refuse.send(REFUSE_FOR);
            reset(&client)
        }
        Some(Fault::Stall) => {
            tokio::time::sleep(STALL).await;
            Ok(())
        }
        Some(Fault::Truncate) => {
            let response = exchange(&mut client, shared, op, &buf, head_end).await?;
            client.write_all(&response[..response.len() / 2]).await?;
            reset(&client)
        }
        Some(Fault::LostResponse | Fault::LostThenNoSuchUpload) => {
            exchange(&mut client, shared, op, &buf, head_end).await?;
            reset(&client)
        }
        Some(fault @ (Fault::NoEtag | Fault::WrongEtag)) => {
            let response = exchange(&mut client, shared, op, &buf, head_end).await?;
            let etag = (fault == Fault::WrongEtag).then_some(WRONG_ETAG);
            client.write_all(&replace_etag(&response, etag)).await?;
            client.shutdown().await
        }
        Some(Fault::Trickle) => {
            let response = exchange(&mut client, shared, op, &buf, head_end).await?;
            for chunk in response.chunks(TRICKLE_CHUNK) {
                client.write_all(chunk).await?;
                client.flush().await?;
                tokio::time::sleep(TRICKLE_GAP).await;
            }
            client.shutdown().await
        }
        _ => {
            let mut upstream = TcpStream::connect(shared.upstream).await?;
            upstream.write_all(&with_close(&buf, head_end)).await?;
            shared.count_body(op, buf.len() - head_end);
            let (mut cr, mut cw) = client.split();
            let (mut ur, mut uw) = upstream.split();
            let _ = tokio::join!(send_body(&mut cr, &mut uw, shared, op), tokio::io::copy(&mut ur, &mut cw));
            Ok(())
        }
    }
}

/// Copies the rest of a request body from the client to the store, counting it as it goes;
/// closes the store's side when the client closes its own.
async fn send_body(
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
    shared: &Shared,
    op: Op,
) -> std::io::Result<()> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut chunk).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&chunk[..n]).await?;
        shared.count_body(op, n);
    }
}

/// Passes the request (head in `buf`, the rest of the body still on `client`) to the store and
/// returns its whole response (the store closes after it: `Connection: close`).
async fn exchange(
    client: &mut TcpStream,
    shared: &Shared,
    op: Op,
    buf: &[u8],
    head_end: usize,
) -> std::io::Result<Vec<u8>> {
    let mut upstream = TcpStream::connect(shared.upstream).await?;
    upstream.write_all(&with_close(buf, head_end)).await?;
    shared.count_body(op, buf.len() - head_end);
    let mut response = Vec::new();
    let (mut cr, _cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    let send = async {
        let _ = send_body(&mut cr, &mut uw, shared, op).await;
        std::future::pending::<()>().await;
    };
    tokio::select! {
        r = ur.read_to_end(&mut response) => { r?; }
        () = send => {}
    }
    Ok(response)
}

/// Reads the rest of a request body of declared length (`have` bytes of it already read), so
/// that an answer sent now is read by the client rather than lost to a reset. Bounded by
/// [`DRAIN_LIMIT`]; skipped when the client waits for `100-continue` before sending it.
async fn drain_body(client: &mut TcpStream, head: &str, have: usize) {
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
        })
    };
    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        return;
    }
    let Some(mut left) = header("content-length").and_then(|v| v.parse::<usize>().ok()).map(|n| n.saturating_sub(have))
    else {
        return;
    };
    let drain = async {
        let mut chunk = vec![0u8; 64 * 1024];
        while left > 0 {
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_LIMIT, drain).await;
}

/// `response` with its `ETag` header removed, or replaced by `etag`.
fn replace_etag(response: &[u8], etag: Option<&str>) -> Vec<u8> {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else { return response.to_vec() };
    let head = String::from_utf8_lossy(&response[..end]);
    let mut out = String::new();
    for line in head.split("\r\n") {
        if line.split_once(':').is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("etag")) {
            if let Some(e) = etag {
                out.push_str("ETag: ");
                out.push_str(e);
                out.push_str("\r\n");
            }
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&response[end + 2..]);
    bytes
}

/// The buffered bytes with `Connection: close` added to the request head.
fn with_close(buf: &[u8], head_end: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len() + 19);
    out.extend_from_slice(&buf[..head_end - 2]);
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(&buf[head_end..]);
    out
}

/// Makes the coming close a reset (RST) rather than an orderly FIN. Linger 0 never blocks on
/// drop, which is what the deprecation of `set_linger` warns about.
#[allow(deprecated)]
fn reset(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_linger(Some(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_told_from_the_request_line() {
        for (line, op) in [
            ("POST /b/k?uploads HTTP/1.1", Op::Create),
            ("POST /b/k?uploads= HTTP/1.1", Op::Create),
            ("PUT /b/k?partNumber=3&uploadId=u HTTP/1.1", Op::Part),
            ("PUT /b/k?x-id=UploadPart&partNumber=3&uploadId=u HTTP/1.1", Op::Part),
            ("GET /b/k?uploadId=u HTTP/1.1", Op::ListParts),
            ("GET /b?uploads&prefix=k HTTP/1.1", Op::ListUploads),
            ("POST /b/k?uploadId=u HTTP/1.1", Op::Complete),
            ("DELETE /b/k?uploadId=u HTTP/1.1", Op::Abort),
            ("HEAD /b/k HTTP/1.1", Op::Head),
            ("PUT /b/dir/k HTTP/1.1", Op::Put),
            ("PUT /b/k?x-id=PutObject HTTP/1.1", Op::Put),
            ("PUT /b HTTP/1.1", Op::Other),
            ("HEAD /b HTTP/1.1", Op::Other),
            ("GET /b/k HTTP/1.1", Op::Other),
        ] {
            assert_eq!(Op::of(line), op, "{line}");
        }
    }

    #[test]
    fn etag_is_removed_or_replaced_and_the_body_kept() {
        let r = b"HTTP/1.1 200 OK\r\nETag: \"abc\"\r\ncontent-length: 2\r\n\r\nok";
        let none = String::from_utf8(replace_etag(r, None)).unwrap();
        assert_eq!(none, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        let wrong = String::from_utf8(replace_etag(r, Some(WRONG_ETAG))).unwrap();
        assert!(wrong.contains(WRONG_ETAG) && !wrong.contains("\"abc\"") && wrong.ends_with("\r\n\r\nok"), "{wrong}");
    }
}
