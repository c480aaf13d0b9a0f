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

use hoist_core::{ClientOptions, ObjectClient, ProviderLimits, S3Client};
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
    workers: Workers,
    pipeline_note: Option<String>,
    header_read_timeout: std::time::Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// The file in the data dir that holds the embedded store's URL while `hoist serve` runs.
pub const STORE_URL_FILE: &str = "store-url";

/// How often an idle worker looks for jobs queued by other processes (those queued in its own
/// process wake it at once): one indexed query, so a quarter second costs little and keeps
/// Complete → claimed short for `hoist worker` processes too.
const WORKER_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Workers of one process (none when the pipeline has no workers here).
struct Workers {
    worker: Option<Arc<pipeline::worker::Worker>>,
    count: usize,
}

impl Workers {
    fn new(
        db: &db::Db,
        outbox: &pipeline::events::Outbox,
        s3: &Arc<dyn ObjectClient>,
        limits: ProviderLimits,
        config: &config::PipelineConfig,
        data_dir: &std::path::Path,
        tools: Option<&pipeline::transcode::Ffmpeg>,
    ) -> Self {
        let Some(tools) = tools.filter(|_| config.workers > 0) else {
            return Self { worker: None, count: 0 };
        };
        let worker = pipeline::worker::Worker {
            db: db.clone(),
            outbox: outbox.clone(),
            uploader: hoist_core::Uploader::shared(s3.clone(), hoist_core::UploadConfig::default().limits(limits)),
            runners: pipeline::video_runners(tools),
            lease: config.lease,
            heartbeat: config.heartbeat,
            poll: WORKER_POLL,
            scratch: config.scratch_dir.clone().unwrap_or_else(|| data_dir.join("scratch")),
        };
        Self { worker: Some(Arc::new(worker)), count: config.workers }
    }

    fn spawn(&self, role: &str, stop: &hoist_core::CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(worker) = &self.worker else { return Vec::new() };
        (0..self.count)
            .map(|i| {
                tokio::spawn(Arc::clone(worker).run(format!("{role}-{}-{i}", std::process::id()), stop.child_token()))
            })
            .collect()
    }
}

/// `hoist worker`: job workers in a process of their own, on the database and S3 that
/// `hoist serve` uses (with the embedded store, the one a `hoist serve` on this data dir runs).
pub struct WorkerProcess {
    workers: Workers,
}

impl std::fmt::Debug for WorkerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerProcess").field("count", &self.workers.count).finish_non_exhaustive()
    }
}

impl WorkerProcess {
    /// Connects to the database and S3 of `config` and prepares `count` workers.
    pub async fn start(config: ServerConfig, count: usize) -> Result<Self, Error> {
        let mut pipeline_config = config.pipeline.clone();
        pipeline_config.workers = count.max(1);
        pipeline_config.validate_workers()?;
        let tools = pipeline::transcode::Ffmpeg::find()
            .map_err(|why| config::ConfigError(format!("hoist worker needs ffmpeg: {why}")))?;
        let limits = provider_limits(&config.s3);
        let s3 = match &config.s3 {
            S3Target::Embedded { .. } => {
                let url_file = config.data_dir.join(STORE_URL_FILE);
                let endpoint = std::fs::read_to_string(&url_file).map_err(|_| {
                    config::ConfigError(format!(
                        "no embedded store URL in {}: start `hoist serve --data {}` first, or pass --s3-endpoint",
                        url_file.display(),
                        config.data_dir.display()
                    ))
                })?;
                let (creds, _) = hoist_store::Credentials::load_or_generate(&config.data_dir.join("store"))?;
                embedded_client(endpoint.trim().to_owned(), creds).await?
            }
            S3Target::External { endpoint, region, profile, credentials } => {
                external_client(endpoint.as_ref(), region.as_ref(), profile.as_ref(), credentials.as_ref()).await?
            }
        };
        // The service's database must exist already: a worker never makes an empty one.
        let sqlite = config.data_dir.join("hoist.db");
        if config.database_url.is_none() && !sqlite.exists() {
            return Err(config::ConfigError(format!(
                "no service database at {}: start `hoist serve --data {}` first, or pass --database-url",
                sqlite.display(),
                config.data_dir.display()
            ))
            .into());
        }
        let url = config.database_url_or_default();
        let db = db::Db::connect(&url).await.map_err(|source| Error::Database { url: db::redact_url(&url), source })?;
        let outbox = pipeline::events::Outbox::new(Arc::new(pipeline::webhooks::Webhooks::new(&config.webhooks)?));
        let s3: Arc<dyn ObjectClient> = Arc::new(s3);
        let workers = Workers::new(&db, &outbox, &s3, limits, &pipeline_config, &config.data_dir, Some(&tools));
        Ok(Self { workers })
    }

    /// Runs the workers until `shutdown` resolves; jobs in progress are then requeued.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let stop = hoist_core::CancellationToken::new();
        let tasks = self.workers.spawn("worker", &stop);
        shutdown.await;
        stop.cancel();
        for t in tasks {
            let _ = t.await;
        }
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

/// S3's limits where objects go, told from the endpoint by core (AWS's for AWS itself, 5 TiB
/// objects for other stores; the embedded store is one of those).
fn provider_limits(target: &S3Target) -> ProviderLimits {
    match target {
        S3Target::External { endpoint, .. } => {
            hoist_core::config::Provider::from_endpoint(endpoint.as_deref()).limits()
        }
        S3Target::Embedded { .. } => hoist_core::config::Provider::S3Compatible.limits(),
    }
}

/// A client for the embedded store at `endpoint`, with its credentials.
async fn embedded_client(endpoint: String, creds: hoist_store::Credentials) -> Result<S3Client, Error> {
    Ok(S3Client::connect(&ClientOptions {
        endpoint_url: Some(endpoint),
        region: Some("us-east-1".into()),
        credentials: Some((creds.access_key, creds.secret_key)),
        ..ClientOptions::default()
    })
    .await?)
}

/// A client for an external S3, with the AWS credential chain unless a key pair is given.
async fn external_client(
    endpoint: Option<&String>,
    region: Option<&String>,
    profile: Option<&String>,
    credentials: Option<&(String, String)>,
) -> Result<S3Client, Error> {
    Ok(S3Client::connect(&ClientOptions {
        endpoint_url: endpoint.cloned(),
        region: region.cloned(),
        profile: profile.cloned(),
        credentials: credentials.cloned(),
        ..ClientOptions::default()
    })
    .await?)
}

/// The name of the embedded store's notification target that is the service's own event intake.
pub const EVENTS_TARGET: &str = "hoist-serve";

/// The service's S3: the embedded store (started here, its bucket made, its URL written for
/// `hoist worker`s, its event notifications sent to `events` signed with `events_secret`) or an
/// external one whose bucket must exist. Answers the client, how part URLs address the bucket,
/// and the store's handle when it runs here.
async fn connect_s3(
    config: &ServerConfig,
    origins: Vec<String>,
    events: &str,
    events_secret: &str,
) -> Result<(S3Client, Endpoint, Option<hoist_store::StoreHandle>), Error> {
    match &config.s3 {
        S3Target::Embedded { listen } => {
            let store = hoist_store::Store::builder(config.data_dir.join("store"))
                .cors_origins(origins)
                .header_read_timeout(config.header_read_timeout)
                .notify(hoist_store::NotifyTarget::new(EVENTS_TARGET, events, events_secret)?)
                .build()?;
            let creds = store.credentials().clone();
            let handle = store.start(listen).await?;
            // `hoist worker` processes on this machine find the store here.
            let url_file = config.data_dir.join(STORE_URL_FILE);
            std::fs::write(&url_file, handle.endpoint_url())
                .map_err(|source| Error::DataDir { path: url_file, source })?;
            let s3 = embedded_client(handle.endpoint_url(), creds).await?;
            if s3.head_bucket(&config.bucket).await.is_err() {
                s3.create_bucket(&config.bucket).await?;
            }
            Ok((s3, Endpoint::PathStyle(handle.endpoint_url()), Some(handle)))
        }
        S3Target::External { endpoint, region, profile, credentials } => {
            let s3 =
                external_client(endpoint.as_ref(), region.as_ref(), profile.as_ref(), credentials.as_ref()).await?;
            s3.head_bucket(&config.bucket).await?;
            Ok((s3, endpoint.clone().map_or(Endpoint::Aws, Endpoint::PathStyle), None))
        }
    }
}

impl Server {
    /// Validates `config`, opens the database, starts the embedded store (unless an external S3
    /// is configured), makes sure the bucket exists, and binds the API's address.
    pub async fn start(config: ServerConfig) -> Result<Self, Error> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| Error::DataDir { path: config.data_dir.clone(), source })?;
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|source| Error::Listen { addr: config.listen.clone(), source })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen { addr: config.listen.clone(), source })?;

        let url = config.database_url_or_default();
        let db = db::Db::connect(&url).await.map_err(|source| Error::Database { url: db::redact_url(&url), source })?;
        let webhooks = Arc::new(pipeline::webhooks::Webhooks::new(&config.webhooks)?);
        let stream_key = pipeline::stream_token::load_key(&db)
            .await
            .map_err(|source| Error::Database { url: db::redact_url(&url), source })?;
        let mut pipeline_config = config.pipeline.clone();
        let (tools, pipeline_note) = pipeline::setup(&mut pipeline_config, config.dev)?;

        let mut origins = vec![format!("http://{addr}")];
        if addr.ip().is_loopback() {
            origins.push(format!("http://localhost:{}", addr.port()));
        }
        origins.extend(config.cors_origins.iter().cloned());

        // Objects any client writes to the embedded store reach the pipeline through the store's
        // event notifications, POSTed to this service's own intake (over loopback when the API
        // listens on every address), signed with a secret made now.
        let intake_ip = match addr.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let intake = format!("http://{}/v1/events/s3", SocketAddr::new(intake_ip, addr.port()));
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let embedded_secret = hex::encode(secret);
        let (s3, endpoint, store) = connect_s3(&config, origins, &intake, &embedded_secret).await?;
        let store_events_secret = if store.is_some() { Some(embedded_secret) } else { config.s3_events_secret.clone() };
        // Part URLs are signed with the same credentials and region as the service's own calls.
        let provider = s3.credentials_provider().ok_or_else(|| {
            hoist_core::Error::Credentials(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --profile".into(),
            )
        })?;
        let region = s3.region();
        let presigner = Presigner::new(endpoint, &config.bucket, &region, provider);

        let dev_token = if config.dev { Some(dev_token(&config.data_dir)?) } else { None };
        let mut keys = config.keys.clone();
        if let Some(t) = &dev_token {
            keys.push(ApiKeyConfig { token_sha256: policy::sha256(t), policy: KeyPolicy::generous("dev", "dev/") });
        }
        let anonymous = config.allow_anonymous.then(|| KeyPolicy::generous("anonymous", "anonymous/"));
        let limits = provider_limits(&config.s3);
        let outbox = pipeline::events::Outbox::new(Arc::clone(&webhooks));
        let s3: Arc<dyn ObjectClient> = Arc::new(s3);
        let workers = Workers::new(&db, &outbox, &s3, limits, &pipeline_config, &config.data_dir, tools.as_ref());
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
            pipeline: pipeline_config,
            outbox,
            stream_key,
            webhooks,
            store_events_secret,
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
            workers,
            pipeline_note,
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

    /// What `--dev` made of the pipeline (on, and why not), for the start-up message.
    #[must_use]
    pub fn pipeline_note(&self) -> Option<&str> {
        self.pipeline_note.as_deref()
    }

    /// Serves the API and runs the janitor, the webhook delivery loop and the in-process
    /// workers until `shutdown` resolves; then stops the workers (their jobs are requeued) and
    /// the store. A webhook attempt cut off by the stop is sent again after its lease expires,
    /// by this or another replica. The API is served by the store's accept loop
    /// (`hoist_store::conn`), for its header read and idle timeouts, which `axum::serve` does
    /// not set.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
        let janitor = tokio::spawn(janitor::run(Arc::clone(&self.state), self.janitor_interval));
        let webhooks = tokio::spawn(Arc::clone(&self.state.webhooks).run(self.state.db.clone()));
        let stop_workers = hoist_core::CancellationToken::new();
        let workers = self.workers.spawn("serve", &stop_workers);
        let service = hyper_util::service::TowerToHyperService::new(self.router);
        hoist_store::conn::serve(self.listener, service, self.header_read_timeout, shutdown).await;
        janitor.abort();
        webhooks.abort();
        stop_workers.cancel();
        for w in workers {
            let _ = w.await;
        }
        if let Some(store) = self.store {
            store.shutdown().await;
        }
        Ok(())
    }
}
