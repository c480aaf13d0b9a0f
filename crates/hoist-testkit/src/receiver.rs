//! [`Receiver`]: a real HTTP server on `127.0.0.1:0` that records every request (path, headers,
//! body, arrival time) and answers from a script, then `200 OK` once the script is used up. For
//! tests of what Hoist sends out (webhooks); it checks nothing itself.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status, empty body.
    Status(u16),
    /// This status with one header (`Retry-After`, `Location`).
    WithHeader(u16, &'static str, String),
    /// Never answers (the connection stays open until the client gives up).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Request path.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl Hit {
    /// A header's value as text (empty when absent or not text).
    #[must_use]
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

#[derive(Debug, Default)]
struct Script {
    replies: VecDeque<Reply>,
    hits: Vec<Hit>,
}

/// The running receiver; stopped on drop.
#[derive(Debug)]
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hooks/hoist`.
    pub url: String,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver that answers with `replies` in order, then 200.
    ///
    /// # Panics
    /// When no port on 127.0.0.1 can be bound.
    pub async fn start(replies: Vec<Reply>) -> Self {
        Self::start_on("127.0.0.1:0", replies).await
    }

    /// Like [`start`](Self::start), on `addr` (a receiver that comes back on the port a sender
    /// already knows).
    ///
    /// # Panics
    /// When `addr` cannot be bound.
    pub async fn start_on(addr: &str, replies: Vec<Reply>) -> Self {
        let script = Arc::new(Mutex::new(Script { replies: replies.into(), hits: Vec::new() }));
        let s = Arc::clone(&script);
        let app =
            axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let s = Arc::clone(&s);
                async move {
                    answer(&s, Hit { path: uri.path().to_owned(), headers, body: body.to_vec(), at: Instant::now() })
                        .await
                }
            });
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind the receiver's address");
        let url = format!("http://{}/hooks/hoist", listener.local_addr().expect("local address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, script, task }
    }

    /// The requests so far, in arrival order.
    #[must_use]
    pub fn hits(&self) -> Vec<Hit> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner).hits.clone()
    }

    /// Waits until at least `n` requests arrived or `within` passed; returns what arrived.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Hit> {
        let end = Instant::now() + within;
        loop {
            let hits = self.hits();
            if hits.len() >= n || Instant::now() > end {
                return hits;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn answer(script: &Mutex<Script>, hit: Hit) -> Response {
    let reply = {
        let mut s = script.lock().unwrap_or_else(PoisonError::into_inner);
        s.hits.push(hit);
        s.replies.pop_front().unwrap_or(Reply::Status(200))
    };
    let status = |c: u16| StatusCode::from_u16(c).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match reply {
        Reply::Status(c) => status(c).into_response(),
        Reply::WithHeader(c, name, value) => {
            let mut r = status(c).into_response();
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().insert(name, v);
            }
            r
        }
        Reply::Hang => std::future::pending().await,
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
