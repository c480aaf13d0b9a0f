//! Hoist's embedded S3-compatible store on local disk: the `s3s` crate speaks the protocol
//! (routing, XML, SigV4 including pre-signed URLs), Hoist's own backend keeps the data.
//!
//! ```no_run
//! # async fn run() -> Result<(), hoist_store::Error> {
//! let store = hoist_store::Store::builder("/tmp/hoist-data")
//!     .credentials(hoist_store::Credentials::new("access", "secret-key-of-some-length"))
//!     .build()?;
//! let handle = store.start("127.0.0.1:0").await?;
//! println!("listening on {}", handle.endpoint_url());
//! handle.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`error`]: the one error enum and its mapping to S3 error codes.
//! - [`drain`]: refused requests read what is left of their body, so the client sees the error.
//! - [`conn`]: the accept loop: HTTP/1.1 with a header read (and idle) timeout, graceful stop.
//! - `quiet`: s3s's debug logs (whole requests, signatures) kept out of the application's logs.
//! - `fs`: on-disk layout, atomic durable writes, start-up cleanup.
//! - `backend`: in-memory state mirrored on disk; buckets.
//! - `direct_io`: temp files written past the page cache (`O_DIRECT`), aligned buffers.
//! - `ingest`: request bodies streamed to disk with MD5 and checksums computed on the way.
//! - `md5_lanes`: MD5 of several streams at once (the parts being uploaded together).
//! - `objects`: put, get (ranges across segments), head, delete, list.
//! - `multipart`: the upload state machine and S3's rules for Complete.
//! - `s3`: the `s3s::S3` trait implementation (DTOs only).
//! - `access`: every request signed, every `x-amz-*` header covered by its signature.
//! - `refusals`: limits given to s3s, checks before it routes, messages for its bare refusals.
//! - `cors`: bucket CORS rules (validation, matching), preflight and CORS headers.
//! - `post_form`: browser POST forms: the file's name, for `${filename}` in the key.
//! - [`notify`]: S3 event notifications: bucket rules, the durable per-target queue, signed
//!   delivery with backoff.

pub mod conn;
pub mod drain;
pub mod error;
pub mod notify;

mod access;
mod backend;
mod cors;
mod direct_io;
mod fs;
mod ingest;
mod md5_lanes;
mod multipart;
mod objects;
mod post_form;
mod quiet;
mod refusals;
mod s3;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore as _;
use s3s::service::{S3Service, S3ServiceBuilder};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tracing::instrument::WithSubscriber as _;

pub use error::{Error, Result};
pub use notify::{NotifyOptions, NotifyTarget};

/// An access key pair the store accepts (SigV4).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_key", &self.access_key).finish_non_exhaustive()
    }
}

impl Credentials {
    /// A key pair.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self { access_key: access_key.into(), secret_key: secret_key.into() }
    }

    /// A random key pair (20-character access key, 40-character secret, as AWS issues them).
    #[must_use]
    pub fn generate() -> Self {
        let mut a = [0u8; 10];
        let mut s = [0u8; 20];
        rand::rng().fill_bytes(&mut a);
        rand::rng().fill_bytes(&mut s);
        Self::new(format!("HOIST{}", &hex::encode_upper(a)[..15]), hex::encode(s))
    }

    /// The pair stored in `data_dir/credentials.json`, or a new one written there. The flag says
    /// whether it was generated now.
    pub fn load_or_generate(data_dir: &Path) -> Result<(Self, bool)> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join("credentials.json");
        if let Some(c) = fs::read_json::<Self>(&path)? {
            return Ok((c, false));
        }
        let layout = fs::Layout::open(data_dir)?;
        let c = Self::generate();
        fs::write_json(&layout, &path, &c)?;
        Ok((c, true))
    }
}

/// Builds a [`Store`].
#[derive(Debug)]
pub struct StoreBuilder {
    data_dir: PathBuf,
    credentials: Option<Credentials>,
    cors_origins: Vec<String>,
    min_part_size: u64,
    header_read_timeout: Duration,
    notify: Vec<NotifyTarget>,
    notify_options: NotifyOptions,
}

impl StoreBuilder {
    /// Sends S3 event notifications to `target` (repeatable; see [`notify`] for which events go
    /// where). Events wait in `DATA/notify/NAME/` until the target accepts them.
    #[must_use]
    pub fn notify(mut self, target: NotifyTarget) -> Self {
        self.notify.push(target);
        self
    }

    /// Retry backoff, attempt timeout and queue cap of notifications (default
    /// [`NotifyOptions::default`]; tests shorten the backoff).
    #[must_use]
    pub fn notify_options(mut self, options: NotifyOptions) -> Self {
        self.notify_options = options;
        self
    }

    /// The key pair clients must sign with (default: [`Credentials::load_or_generate`]).
    #[must_use]
    pub fn credentials(mut self, c: Credentials) -> Self {
        self.credentials = Some(c);
        self
    }

    /// Origins allowed to call the store from a browser (`*` for any), for every bucket, on top
    /// of each bucket's own CORS rules (PutBucketCors).
    #[must_use]
    pub fn cors_origins(mut self, origins: Vec<String>) -> Self {
        self.cors_origins = origins;
        self
    }

    /// Lowers the smallest part Complete accepts (S3's rule: 5 MiB except the last part). Only
    /// for benchmarks and tests that need many parts without gigabytes of data.
    #[must_use]
    pub fn min_part_size(mut self, bytes: u64) -> Self {
        self.min_part_size = bytes;
        self
    }

    /// How long a client may take to send a request header, or leave a kept-alive connection
    /// idle (default [`conn::HEADER_READ_TIMEOUT`]; tests shorten it).
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Opens the data dir (creating it, loading what a previous run stored, removing temp files).
    pub fn build(self) -> Result<Store> {
        let credentials = match self.credentials {
            Some(c) => c,
            None => Credentials::load_or_generate(&self.data_dir)?.0,
        };
        let backend = Arc::new(backend::Backend::open(&self.data_dir, self.min_part_size)?);
        let notifier = Arc::new(notify::Notifier::open(&backend.layout, self.notify, self.notify_options)?);
        let mut b =
            S3ServiceBuilder::new(s3::HoistS3 { backend: Arc::clone(&backend), notifier: Arc::clone(&notifier) });
        b.set_auth(s3s::auth::SimpleAuth::from_single(credentials.access_key.clone(), credentials.secret_key.clone()));
        b.set_access(access::SignedRequestsOnly);
        b.set_config(refusals::s3s_config());
        Ok(Store {
            service: b.build(),
            backend,
            notifier,
            cors: cors::Cors::new(self.cors_origins),
            credentials,
            header_read_timeout: self.header_read_timeout,
            s3s_logs: quiet::WithoutS3sDebug::around_default(),
        })
    }
}

/// The store, ready to serve.
#[derive(Clone)]
pub struct Store {
    service: S3Service,
    /// The state behind `service`, read here for bucket CORS rules.
    backend: Arc<backend::Backend>,
    /// Event notifications; its delivery loops run while [`Store::serve`] does.
    notifier: Arc<notify::Notifier>,
    cors: cors::Cors,
    credentials: Credentials,
    header_read_timeout: Duration,
    /// Where s3s's logs go while it handles a request (see `quiet`).
    s3s_logs: tracing::Dispatch,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("credentials", &self.credentials).finish_non_exhaustive()
    }
}

impl Store {
    /// Starts building a store on `data_dir`.
    pub fn builder(data_dir: impl Into<PathBuf>) -> StoreBuilder {
        StoreBuilder {
            data_dir: data_dir.into(),
            credentials: None,
            cors_origins: Vec::new(),
            min_part_size: multipart::MIN_PART_SIZE,
            header_read_timeout: conn::HEADER_READ_TIMEOUT,
            notify: Vec::new(),
            notify_options: NotifyOptions::default(),
        }
    }

    /// The key pair clients sign with.
    #[must_use]
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown` resolves (see [`conn::serve`]), and
    /// delivers event notifications meanwhile (an attempt cut off by the stop is made again by
    /// the next run: the event stays queued on disk).
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let timeout = self.header_read_timeout;
        let stop = tokio_util::sync::CancellationToken::new();
        let deliveries = self.notifier.spawn(&stop);
        let svc = hyper::service::service_fn(move |req| self.clone().handle(req));
        conn::serve(listener, svc, timeout, shutdown).await;
        stop.cancel();
        for d in deliveries {
            let _ = d.await;
        }
        Ok(())
    }

    async fn handle(
        self,
        req: http::Request<hyper::body::Incoming>,
    ) -> std::result::Result<http::Response<s3s::Body>, s3s::HttpError> {
        // Read before the request runs: CORS is judged by the rules in force when it arrived.
        let rules = if req.headers().contains_key(http::header::ORIGIN) {
            self.bucket_cors(req.uri().path())
        } else {
            Arc::default()
        };
        if cors::Cors::is_preflight(req.method(), req.headers()) {
            return Ok(self.cors.preflight(req.headers(), cors::bucket_of(req.uri().path()), &rules));
        }
        let headers = req.headers().clone();
        let method = req.method().clone();
        let (parts, body) = req.into_parts();
        let (body, leftover) = drain::reclaimable(body);
        let mut resp = if let Some(refused) = refusals::before_routing(&parts) {
            drop(body); // handed back to `leftover`, drained below
            refusals::respond(refused)
        } else if let Some(watch) = refusals::XmlBodyWatch::for_request(&parts) {
            let mut parts = parts;
            parts.extensions.insert(watch.clone());
            let req = http::Request::from_parts(parts, s3s::Body::http_body(watch.watch(body)));
            let resp = self.service.call(req).with_subscriber(self.s3s_logs.clone()).await?;
            match watch.fault() {
                Some(fault) if resp.status() == http::StatusCode::INTERNAL_SERVER_ERROR => refusals::respond(fault),
                _ => resp,
            }
        } else if let Some(file_name) = post_form::FileName::for_request(&parts) {
            let mut parts = parts;
            parts.extensions.insert(file_name.clone());
            let req = http::Request::from_parts(parts, s3s::Body::http_body(file_name.watch(body)));
            let mut resp = self.service.call(req).with_subscriber(self.s3s_logs.clone()).await?;
            file_name.rewrite_answer(&mut resp);
            resp
        } else {
            let req = http::Request::from_parts(parts, s3s::Body::http_body(body));
            self.service.call(req).with_subscriber(self.s3s_logs.clone()).await?
        };
        refusals::policy_failure_as_s3(&method, &mut resp);
        refusals::explain(&mut resp);
        if resp.status().is_client_error() {
            drain::drain(leftover).await;
        }
        self.cors.decorate(&headers, &method, &rules, &mut resp);
        Ok(resp)
    }

    /// The CORS rules of the bucket `path` addresses (none for the root, a missing bucket or one
    /// without rules).
    fn bucket_cors(&self, path: &str) -> Arc<[cors::CorsRule]> {
        cors::bucket_of(path).and_then(|b| self.backend.bucket_cors(b).ok()).unwrap_or_default()
    }

    /// Binds `addr` (`127.0.0.1:0` for an ephemeral port) and serves in the background.
    pub async fn start(self, addr: &str) -> Result<StoreHandle> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let credentials = self.credentials.clone();
        let task = tokio::spawn(self.serve(listener, async move {
            let _ = rx.await;
        }));
        Ok(StoreHandle { addr: local, credentials, stop: Some(tx), task })
    }
}

/// A running store; [`shutdown`](Self::shutdown) stops it (dropping the handle stops it too).
#[derive(Debug)]
pub struct StoreHandle {
    addr: SocketAddr,
    credentials: Credentials,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl StoreHandle {
    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for `--endpoint-url`.
    #[must_use]
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The key pair clients sign with.
    #[must_use]
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for StoreHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
