//! `hoist serve`: lets browsers and apps upload straight to S3 with short-lived pre-signed part
//! URLs. The service creates, signs, lists, completes and aborts multipart uploads, enforces
//! size, type and key scope per API key, keeps sessions in SQL, and serves the uploader page.
//! It never touches upload bytes.
//!
//! ```no_run
//! # async fn run() -> Result<(), hoist_server::Error> {
//! let mut config = hoist_server::ServerConfig::new("/tmp/hoist-serve");
//! config.dev = true;
//! config.listen = "127.0.0.1:0".into();
//! let server = hoist_server::Server::start(config).await?;
//! println!("listening on http://{}", server.addr());
//! server.run(std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: settings, the TOML file, validation.
//! - [`policy`]: tokens, key scope, size, content type, metadata, rate.
//! - [`presign`]: part URLs and POST forms signed with SigV4.
//! - [`uploads`]: create, sign, list, complete, abort: the rules, once for every API.
//! - [`db`]: sessions in `SQLite` or Postgres.
//! - [`api`]: routes (`/v1`, Uppy's `/s3`, ops, the page) and middleware.
//! - [`janitor`]: aborts expired sessions' uploads.
//! - [`metrics`]: counters for `/metrics`.
//! - [`pipeline`]: after an upload: events, jobs, workers, webhooks.
//! - [`error`]: the API's error catalog.

pub mod api;
pub mod config;
pub mod db;
pub mod error;
pub mod janitor;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod presign;
pub mod state;
pub mod uploads;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hoist_core::{ClientOptions, ProviderLimits, S3Client};
use rand::RngCore as _;

pub use config::{ApiKeyConfig, KeyPolicy, S3Target, ServerConfig};
pub use error::ApiError;
use presign::{Endpoint, Presigner};
use state::AppState;

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The data directory cannot be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The database cannot be opened.
    #[error("database {url}: {source}")]
    Database {
        /// The URL, without password.
        url: String,
        /// The cause.
        source: sqlx::Error,
    },
    /// The embedded store failed.
    #[error("embedded store: {0}")]
    Store(#[from] hoist_store::Error),
    /// S3 refused or could not be reached at start.
    #[error("object store: {0}")]
    S3(#[from] hoist_core::Error),
}

/// A started service, bound and ready; [`Server::run`] serves until shutdown.
pub struct Server {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    state: Arc<AppState>,
    addr: SocketAddr,
    store: Option<hoist_store::StoreHandle>,
    dev_token: Option<String>,
    janitor_interval: std::time::Duration,
    header_read_timeout: std::time::Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Strips a password from a database URL for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// The dev token kept in the data dir (made on first use), so a restart keeps the page working.
fn dev_token(data_dir: &std::path::Path) -> Result<String, Error> {
    let path = data_dir.join("dev-token");
    let io = |source| Error::DataDir { path: data_dir.to_path_buf(), source };
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim().len() >= 32 => return Ok(t.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    let token = format!("hoist_dev_{}", hex::encode(b));
    std::fs::write(&path, &token).map_err(io)?;
    Ok(token)
}

impl Server {
    /// Validates `config`, opens the database, starts the embedded store (unless an external S3
    /// is configured), makes sure the bucket exists, and binds the API's address.
    pub async fn start(config: ServerConfig) -> Result<Self, Error> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::DataDir { path: config.data_dir.clone(), source })?;
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|source| Error::Listen { addr: config.listen.clone(), source })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen { addr: config.listen.clone(), source })?;

        let url = config
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", config.data_dir.join("hoist.db").display()));
        let db = db::Db::connect(&url).await.map_err(|source| Error::Database { url: redact(&url), source })?;

        let mut origins = vec![format!("http://{addr}")];
        if addr.ip().is_loopback() {
            origins.push(format!("http://localhost:{}", addr.port()));
        }
        origins.extend(config.cors_origins.iter().cloned());

        let (s3, endpoint, store) = match &config.s3 {
            S3Target::Embedded { listen } => {
                let store = hoist_store::Store::builder(config.data_dir.join("store"))
                    .cors_origins(origins.clone())
                    .header_read_timeout(config.header_read_timeout)
                    .build()?;
                let creds = store.credentials().clone();
                let handle = store.start(listen).await?;
                let s3 = S3Client::connect(&ClientOptions {
                    endpoint_url: Some(handle.endpoint_url()),
                    region: Some("us-east-1".into()),
                    credentials: Some((creds.access_key, creds.secret_key)),
                    ..ClientOptions::default()
                })
                .await?;
                if s3.head_bucket(&config.bucket).await.is_err() {
                    s3.sdk().create_bucket().bucket(&config.bucket).send().await.map_err(|e| {
                        hoist_core::Error::Config(format!("cannot create bucket {} in the embedded store: {e}", config.bucket))
                    })?;
                }
                (s3, Endpoint::PathStyle(handle.endpoint_url()), Some(handle))
            }
            S3Target::External { endpoint, region, profile, credentials } => {
                let s3 = S3Client::connect(&ClientOptions {
                    endpoint_url: endpoint.clone(),
                    region: region.clone(),
                    profile: profile.clone(),
                    credentials: credentials.clone(),
                    ..ClientOptions::default()
                })
                .await?;
                s3.head_bucket(&config.bucket).await?;
                (s3, endpoint.clone().map_or(Endpoint::Aws, Endpoint::PathStyle), None)
            }
        };
        // Part URLs are signed with the same credentials and region as the service's own calls.
        let provider = s3
            .credentials_provider()
            .ok_or_else(|| hoist_core::Error::Config("no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --profile".into()))?;
        let region = s3.sdk().config().region().map_or_else(|| "us-east-1".to_owned(), ToString::to_string);
        let presigner = Presigner::new(endpoint, &config.bucket, &region, provider);

        let dev_token = if config.dev { Some(dev_token(&config.data_dir)?) } else { None };
        let mut keys = config.keys.clone();
        if let Some(t) = &dev_token {
            keys.push(ApiKeyConfig { token_sha256: policy::sha256(t), policy: KeyPolicy::generous("dev", "dev/") });
        }
        let anonymous = config.allow_anonymous.then(|| KeyPolicy::generous("anonymous", "anonymous/"));
        let limits = match &config.s3 {
            S3Target::External { endpoint: None, .. } => ProviderLimits::AWS,
            _ => ProviderLimits::STORE_5TIB,
        };
        let state = Arc::new(AppState {
            db,
            s3,
            presigner,
            bucket: config.bucket.clone(),
            keys: policy::Keys::new(&keys, anonymous),
            limiter: policy::RateLimiter::default(),
            metrics: metrics::Metrics::default(),
            part_url_ttl: config.part_url_ttl,
            session_ttl: config.session_ttl,
            part_size: config.part_size,
            limits,
        });
        let router = api::router(Arc::clone(&state), config.cors_origins.clone());
        Ok(Self {
            listener,
            router,
            state,
            addr,
            store,
            dev_token,
            janitor_interval: config.janitor_interval,
            header_read_timeout: config.header_read_timeout,
        })
    }

    /// The bound address of the API.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The embedded store's URL, when it runs.
    #[must_use]
    pub fn store_endpoint(&self) -> Option<String> {
        self.store.as_ref().map(hoist_store::StoreHandle::endpoint_url)
    }

    /// The `--dev` token, when in dev mode.
    #[must_use]
    pub fn dev_token(&self) -> Option<&str> {
        self.dev_token.as_deref()
    }

    /// The shared state (for tests and benchmarks that call the domain directly).
    #[must_use]
    pub fn state(&self) -> Arc<AppState> {
        Arc::clone(&self.state)
    }

    /// Serves the API and runs the janitor until `shutdown` resolves; then stops the store. The
    /// API is served by the store's accept loop (`hoist_store::conn`), for its header read and
    /// idle timeouts, which `axum::serve` does not set.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
        let janitor = tokio::spawn(janitor::run(Arc::clone(&self.state), self.janitor_interval));
        let service = hyper_util::service::TowerToHyperService::new(self.router);
        hoist_store::conn::serve(self.listener, service, self.header_read_timeout, shutdown).await;
        janitor.abort();
        if let Some(store) = self.store {
            store.shutdown().await;
        }
        Ok(())
    }
}
