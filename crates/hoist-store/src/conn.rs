//! Serving HTTP/1.1 connections with the limits a server open to the network needs: the store's
//! accept loop, also used by `hoist serve` for its API, so both answer slow clients the same way.
//!
//! Decisions:
//! - **Header read timeout.** Without one, a client that sends half a request header holds its
//!   connection (a socket, a task) for as long as it likes, so idle sockets pile up at an
//!   attacker's pace. hyper 1.x enforces [`HEADER_READ_TIMEOUT`] only when it is given a timer,
//!   which neither server did. hyper starts that clock whenever it waits for a request head,
//!   so the same timeout is also the idle (keep-alive) timeout: a connection with no new
//!   request for that long is closed. Request bodies are not timed (parts may take minutes on
//!   a slow link): a client stalled in the middle of a body still holds its connection.
//! - **Header count.** hyper refuses more than 100 headers with a bare `431`, a limit S3 does
//!   not have: a CreateMultipartUpload with 92 `x-amz-meta-*` entries (and the SDK's own
//!   headers) was refused although its header section was far under S3's 8 KiB. The count is
//!   raised to [`MAX_HEADERS`], so the byte limit `refusals` enforces is the one that applies.
//!   (hyper then keeps header slots on the heap: one allocation per request.)
//! - **Graceful stop.** On shutdown the listener closes, idle connections close at once,
//!   requests in flight get [`SHUTDOWN_GRACE`] to finish, then [`serve`] returns (and drops any
//!   connection still open, such as a client stalled in the middle of a body).

use std::future::Future;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// How long a client may take to send a whole request header, and how long a keep-alive
/// connection may sit idle between requests. 30 s is hyper's own default for the header, which it
/// applies only when a timer is configured; nginx allows 60 s (`client_header_timeout`) and
/// keeps idle connections 75 s, Apache 20-40 s (`RequestReadTimeout header=20-40`).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long requests in flight may take to finish once shutdown starts. Kubernetes sends
/// SIGKILL 30 s after SIGTERM by default; 10 s leaves the rest of the stop (janitor, store,
/// database) room within that.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Most headers in one request: as many as S3's 8 KiB header section
/// (`hoist_core::config::MAX_HEADER_SECTION`) holds when each is 8 bytes on the wire
/// (`x-a: 1` and CRLF).
pub const MAX_HEADERS: usize = hoist_core::config::MAX_HEADER_SECTION / 8;

/// Serves HTTP/1.1 on `listener` with `service` until `shutdown` resolves (then stops as the
/// module doc says), closing connections whose request header, or next request when idle, does
/// not arrive within `header_read_timeout` ([`HEADER_READ_TIMEOUT`] unless a test needs it short).
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let socket = match accepted {
                    Ok((socket, _)) => socket,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let service = service.clone();
                let mut stop = stop_rx.clone();
                connections.spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(header_read_timeout)
                        .max_headers(MAX_HEADERS)
                        .serve_connection(TokioIo::new(socket), service);
                    let mut conn = std::pin::pin!(conn);
                    let ended = tokio::select! {
                        ended = conn.as_mut() => ended,
                        () = async { let _ = stop.wait_for(|stop| *stop).await; } => {
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    };
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} }).await;
}
