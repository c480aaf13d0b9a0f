//! `hoist serve`: the upload service (see `hoist-server`), until Ctrl-C or SIGTERM.
//!
//! Settings come, weakest first, from defaults, the TOML file (`--config`), then `HOIST_*` env
//! vars and flags (clap reads both). By default the embedded store runs in-process; with
//! `--s3-endpoint`/`--bucket` (or `--aws`) an external S3 is used with the AWS credential chain.

use std::path::PathBuf;
use std::time::Duration;

use hoist_server::{S3Target, Server, ServerConfig};

use crate::exit::{CliError, Exit};
use crate::parse::{parse_duration, parse_size};

/// Where the service keeps its state: shared by `hoist serve`, `hoist worker` and
/// `hoist webhooks`, so they find the same database.
#[derive(Debug, clap::Args)]
pub(crate) struct StateArgs {
    /// Data directory: sessions database, embedded store data, dev token
    /// [default: the user's data dir, e.g. ~/.local/share/hoist/serve].
    #[arg(long, env = "HOIST_DATA", value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,
    /// TOML config file (API keys, pipeline rules, webhooks and any of these settings).
    #[arg(long, env = "HOIST_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://…` [default: hoist.db in the data dir].
    #[arg(long, env = "HOIST_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
}

/// Which S3 the service and its workers use (default: the embedded store).
#[derive(Debug, clap::Args)]
pub(crate) struct S3Args {
    /// Use this S3 endpoint instead of the embedded store (MinIO, Garage, Ceph, …).
    #[arg(long, env = "HOIST_S3_ENDPOINT", value_name = "URL")]
    pub(crate) s3_endpoint: Option<String>,
    /// Use AWS S3 itself instead of the embedded store (needs --bucket).
    #[arg(long, conflicts_with = "s3_endpoint")]
    pub(crate) aws: bool,
    /// Bucket for uploads [default: hoist].
    #[arg(long, env = "HOIST_BUCKET")]
    pub(crate) bucket: Option<String>,
    /// Region of the external S3.
    #[arg(long, env = "AWS_REGION")]
    pub(crate) region: Option<String>,
    /// Named AWS profile for the external S3.
    #[arg(long)]
    pub(crate) profile: Option<String>,
}

/// Flags of `hoist serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address of the API and the page; port 0 picks a free port [default: 127.0.0.1:8080].
    #[arg(long, env = "HOIST_LISTEN", value_name = "ADDR")]
    pub(crate) listen: Option<String>,
    #[command(flatten)]
    pub(crate) state: StateArgs,
    /// Local use: make a token (kept in the data dir) with a generous policy and print it; turn
    /// the pipeline on for video/* when ffmpeg is installed.
    #[arg(long)]
    pub(crate) dev: bool,
    /// Accept requests without a token, under the anonymous/ prefix. Never on by default.
    #[arg(long)]
    pub(crate) allow_anonymous: bool,
    #[command(flatten)]
    pub(crate) s3: S3Args,
    /// Address of the embedded store [default: 127.0.0.1:0, any free port].
    #[arg(long, value_name = "ADDR")]
    pub(crate) store_listen: Option<String>,
    /// Lifetime of a pre-signed part URL, e.g. 15m.
    #[arg(long, env = "HOIST_PART_URL_TTL", value_parser = parse_duration)]
    pub(crate) part_url_ttl: Option<Duration>,
    /// Lifetime of an upload session before the janitor aborts it, e.g. 24h.
    #[arg(long, env = "HOIST_SESSION_TTL", value_parser = parse_duration)]
    pub(crate) session_ttl: Option<Duration>,
    /// How often the janitor looks for expired sessions, e.g. 1m.
    #[arg(long, value_parser = parse_duration)]
    pub(crate) janitor_interval: Option<Duration>,
    /// Part size the planner starts from (grown for very large files), e.g. 16MiB.
    #[arg(long, value_parser = parse_size)]
    pub(crate) part_size: Option<u64>,
    /// Another browser origin allowed to call the API and the store (repeatable; `*` for any).
    #[arg(long, value_name = "ORIGIN")]
    pub(crate) cors_origin: Vec<String>,
    /// Job workers in this process (needs ffmpeg); 0 leaves jobs to `hoist worker` processes
    /// [default: 0, or 1 with --dev when ffmpeg is found].
    #[arg(long, env = "HOIST_WORKERS", value_name = "N")]
    pub(crate) workers: Option<usize>,
    /// With --s3-endpoint: the secret a `hoist store --notify URL/v1/events/s3 --notify-secret`
    /// signs its event notifications with, so objects any client writes there start jobs (the
    /// embedded store is wired up without it).
    #[arg(long, env = "HOIST_S3_EVENTS_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub(crate) s3_events_secret: Option<String>,
}

fn default_data_dir() -> Result<PathBuf, CliError> {
    directories::ProjectDirs::from("", "", "hoist")
        .map(|d| d.data_dir().join("serve"))
        .ok_or_else(|| CliError::usage("cannot find your data directory").with_hint("pass --data DIR"))
}

/// The config as far as the state flags say: defaults, then the file, then the flags.
pub(crate) fn base_config(args: &StateArgs) -> Result<ServerConfig, CliError> {
    let mut c = ServerConfig::new(match &args.data {
        Some(d) => d.clone(),
        None => default_data_dir()?,
    });
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(format!("cannot read config file {}: {e}", path.display()))
                .with_hint("pass --config with a readable TOML file")
        })?;
        c = c.from_toml(&text).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
        if let Some(d) = &args.data {
            c.data_dir.clone_from(d);
        }
    }
    if let Some(v) = &args.database_url {
        c.database_url = Some(v.clone());
    }
    Ok(c)
}

/// Applies the S3 flags: an endpoint or `--aws` means an external S3 with the AWS chain.
pub(crate) fn apply_s3(c: &mut ServerConfig, args: S3Args) {
    if let Some(v) = args.bucket {
        c.bucket = v;
    }
    if args.s3_endpoint.is_some() || args.aws {
        c.s3 = S3Target::External {
            endpoint: args.s3_endpoint,
            region: args.region,
            profile: args.profile,
            credentials: None,
        };
    }
}

/// Builds the config: defaults, then the file, then env vars and flags.
fn config(args: ServeArgs) -> Result<ServerConfig, CliError> {
    let mut c = base_config(&args.state)?;
    if let Some(v) = args.listen {
        c.listen = v;
    }
    let external = args.s3.s3_endpoint.is_some() || args.s3.aws;
    apply_s3(&mut c, args.s3);
    if let Some(listen) = args.store_listen.filter(|_| !external) {
        c.s3 = S3Target::Embedded { listen };
    }
    if let Some(v) = args.part_url_ttl {
        c.part_url_ttl = v;
    }
    if let Some(v) = args.session_ttl {
        c.session_ttl = v;
    }
    if let Some(v) = args.janitor_interval {
        c.janitor_interval = v;
    }
    if let Some(v) = args.part_size {
        c.part_size = v;
    }
    if let Some(v) = args.workers {
        c.pipeline.workers = v;
    }
    c.dev |= args.dev;
    c.allow_anonymous |= args.allow_anonymous;
    c.cors_origins.extend(args.cors_origin);
    if let Some(v) = args.s3_events_secret.filter(|s| !s.is_empty()) {
        c.s3_events_secret = Some(v);
    }
    Ok(c)
}

/// The service's start-up errors as the CLI reports them.
pub(crate) fn start_error(e: hoist_server::Error) -> CliError {
    match e {
        hoist_server::Error::Config(c) => CliError::usage(c.to_string()),
        hoist_server::Error::Listen { .. } => CliError::usage(e.to_string())
            .with_hint("pick another address, e.g. --listen 127.0.0.1:0 for any free port"),
        hoist_server::Error::DataDir { .. } => {
            CliError::usage(e.to_string()).with_hint("pass --data with a directory you can write to")
        }
        hoist_server::Error::S3(core) => CliError::from(core),
        other => CliError::new(Exit::Failure, other.to_string()),
    }
}

/// Runs `hoist serve`.
pub(crate) async fn run(args: ServeArgs) -> Result<(), CliError> {
    let config = config(args)?;
    let data_dir = config.data_dir.clone();
    let server = Server::start(config).await.map_err(start_error)?;
    let addr = server.addr();
    crate::render::say(&format!("listening on http://{addr}"));
    if let Some(store) = server.store_endpoint() {
        crate::render::say(&format!("store: {store} (embedded, data in {})", data_dir.join("store").display()));
    }
    if let Some(note) = server.pipeline_note() {
        crate::render::say(note);
    }
    if let Some(token) = server.dev_token() {
        crate::render::say(&format!("dev token: {token}"));
        crate::render::say(&format!("open http://{addr}/#token={token}"));
    }
    server.run(super::store::shutdown_signal()).await.map_err(|e| CliError::new(Exit::Failure, e.to_string()))
}
