//! A seeded HTTP fault proxy to put between an S3 client and the real store.
//!
//! Each connection carries one request (the proxy adds `Connection: close`), so every request is
//! an independent roll of the dice: with probability `rate` (and, if `only_part_uploads`, only for
//! `PUT …?partNumber=…`) one of the configured faults is injected instead of a clean pass-through:
//! - `Reset`: read part of the body, then reset the connection (nothing reaches the store),
//! - `SlowDown`: answer `503 SlowDown`, `InternalError`: answer `500 InternalError`,
//! - `Stall`: hold the connection silent until the client gives up,
//! - `Truncate`: pass the request to the store, then cut its response in half.
//!
//! Injected faults are counted so tests can report what they survived.
//!
//! Besides the dice, [`FaultProxy::script`] makes chosen requests (the k-th `PUT` whose request
//! line contains `x-id=PutObject`…) get a chosen answer: a [`Fault`], or raw bytes written
//! instead of the store's response after the request body was read (a broken gateway).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// Connection reset mid-body.
    Reset,
    /// `503 SlowDown`.
    SlowDown,
    /// `500 InternalError`.
    InternalError,
    /// No answer at all.
    Stall,
    /// The store's response cut in half.
    Truncate,
}

/// What to inject.
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

/// What a scripted request gets.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// One of the faults.
    Fault(Fault),
    /// These bytes (a whole HTTP response), after reading the request body; the store sees nothing.
    Answer(Vec<u8>),
}

#[derive(Debug)]
struct Script {
    method: &'static str,
    needle: &'static str,
    /// 1-based number of the first matching request to script.
    first: u64,
    times: u64,
    seen: u64,
    action: Scripted,
}

#[derive(Debug)]
struct Shared {
    scripts: Mutex<Vec<Script>>,
    config: Mutex<FaultConfig>,
    rng: Mutex<StdRng>,
    injected: Mutex<BTreeMap<Fault, u64>>,
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

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `upstream`.
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn start(upstream: SocketAddr, config: FaultConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            scripts: Mutex::new(Vec::new()),
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config: Mutex::new(config),
            injected: Mutex::new(BTreeMap::new()),
            upstream,
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = handle(client, &s).await;
                });
            }
        });
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    #[must_use]
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Scripts requests whose method is `method` and whose request line contains `needle`: the
    /// matching requests `first..first+times` (1-based) get `action`. Scripts are checked before
    /// the dice.
    ///
    /// # Panics
    /// If the lock is poisoned.
    pub fn script(&self, method: &'static str, needle: &'static str, first: u64, times: u64, action: Scripted) {
        self.shared.scripts.lock().unwrap().push(Script { method, needle, first, times, seen: 0, action });
    }

    /// Changes the fault rate (e.g. 0 to let cleanup through).
    ///
    /// # Panics
    /// If the lock is poisoned.
    pub fn set_rate(&self, rate: f64) {
        self.shared.config.lock().unwrap().rate = rate;
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
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The scripted action for the request with this head, if a script takes it.
fn scripted(shared: &Shared, head: &str) -> Option<Scripted> {
    let first = head.lines().next().unwrap_or("");
    let mut scripts = shared.scripts.lock().ok()?;
    scripts.iter_mut().find_map(|s| {
        if !(first.starts_with(s.method) && first[s.method.len()..].starts_with(' ') && first.contains(s.needle)) {
            return None;
        }
        s.seen += 1;
        (s.seen >= s.first && s.seen - s.first < s.times).then(|| s.action.clone())
    })
}

/// An S3 error response with `status` (`"403 Forbidden"`) and `code`, as the store would write it.
#[must_use]
pub fn error_answer(status: &str, code: &str) -> Vec<u8> {
    error_response(status, code)
}

fn roll(shared: &Shared, head: &str) -> Option<Fault> {
    let config = shared.config.lock().ok()?.clone();
    let first = head.lines().next().unwrap_or("");
    let eligible = !config.only_part_uploads || (first.starts_with("PUT ") && first.contains("partNumber="));
    if !eligible || config.faults.is_empty() {
        return None;
    }
    let mut rng = shared.rng.lock().ok()?;
    if rng.random::<f64>() >= config.rate {
        return None;
    }
    let fault = config.faults[rng.random_range(0..config.faults.len())];
    drop(rng);
    *shared.injected.lock().ok()?.entry(fault).or_default() += 1;
    Some(fault)
}

fn error_response(status: &str, code: &str) -> Vec<u8> {
    let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the fault proxy</Message></Error>");
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
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
    let fault = match scripted(shared, &head) {
        Some(Scripted::Answer(bytes)) => {
            let mut rest = content_length(&head).saturating_sub((buf.len() - head_end) as u64);
            let mut chunk = vec![0u8; 8192];
            while rest > 0 {
                let n = client.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                rest = rest.saturating_sub(n as u64);
            }
            client.write_all(&bytes).await?;
            return client.shutdown().await;
        }
        Some(Scripted::Fault(f)) => Some(f),
        None => roll(shared, &head),
    };
    match fault {
        Some(Fault::Reset) => {
            let mut chunk = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_millis(50), client.read(&mut chunk)).await;
            reset(&client)?;
            drop(client);
            Ok(())
        }
        Some(Fault::SlowDown) => {
            client.write_all(&error_response("503 Slow Down", "SlowDown")).await?;
            client.shutdown().await
        }
        Some(Fault::InternalError) => {
            client.write_all(&error_response("500 Internal Server Error", "InternalError")).await?;
            client.shutdown().await
        }
        Some(Fault::Stall) => {
            tokio::time::sleep(Duration::from_mins(2)).await;
            Ok(())
        }
        Some(Fault::Truncate) => {
            let mut upstream = TcpStream::connect(shared.upstream).await?;
            upstream.write_all(&with_close(&buf, head_end)).await?;
            let mut response = Vec::new();
            {
                let (mut cr, _cw) = client.split();
                let (mut ur, mut uw) = upstream.split();
                // Pass the rest of the request on; the store closes after its response.
                let send = async {
                    let _ = tokio::io::copy(&mut cr, &mut uw).await;
                    std::future::pending::<()>().await;
                };
                tokio::select! {
                    _ = ur.read_to_end(&mut response) => {}
                    () = send => {}
                }
            }
            let half = response.len() / 2;
            client.write_all(&response[..half]).await?;
            reset(&client)?;
            Ok(())
        }
        None => {
            let mut upstream = TcpStream::connect(shared.upstream).await?;
            upstream.write_all(&with_close(&buf, head_end)).await?;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            Ok(())
        }
    }
}

/// The request's `Content-Length` (0 when absent).
fn content_length(head: &str) -> u64 {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
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
