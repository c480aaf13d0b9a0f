//! `hoist store`: the embedded S3-compatible store on local disk, until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use hoist_store::{Credentials, NotifyOptions, NotifyTarget, Store};

use crate::exit::{CliError, Exit};

/// Flags of `hoist store`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// Data directory (created if missing; a previous run's data is kept).
    #[arg(long, value_name = "DIR")]
    pub(crate) data: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9000", value_name = "ADDR")]
    pub(crate) listen: String,
    /// Access key clients sign with (default: generated and kept in the data dir).
    #[arg(long, env = "HOIST_STORE_ACCESS_KEY", requires = "secret_key")]
    pub(crate) access_key: Option<String>,
    /// Secret key clients sign with.
    #[arg(long, env = "HOIST_STORE_SECRET_KEY", requires = "access_key", hide_env_values = true)]
    pub(crate) secret_key: Option<String>,
    /// Browser origin allowed to call the store (repeatable; `*` for any), for every bucket, on top
    /// of the buckets' own CORS rules (PutBucketCors).
    #[arg(long, value_name = "ORIGIN")]
    pub(crate) cors_origin: Vec<String>,
    /// Send S3 event notifications (AWS's JSON, one record per POST) to this receiver: `NAME=URL`,
    /// or a bare URL for the target `default` (repeatable). Every event of a bucket goes to every
    /// target until a bucket notification configuration names targets by `arn:hoist:sqs:::NAME`.
    /// Events wait in DATA/notify/NAME/ until the receiver answers 2xx.
    #[arg(long, value_name = "NAME=URL")]
    pub(crate) notify: Vec<String>,
    /// Secret that signs notifications: each POST carries `X-Hoist-Signature: sha256=<hex
    /// HMAC-SHA256 of the body>`. Required with --notify.
    #[arg(long, env = "HOIST_NOTIFY_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub(crate) notify_secret: Option<String>,
    /// Most events kept on disk per target while its receiver is down; newer ones are dropped
    /// (and logged), the writes are not refused.
    #[arg(long, default_value_t = hoist_store::notify::DEFAULT_MAX_QUEUED, value_name = "EVENTS")]
    pub(crate) notify_queue_max: usize,
}

/// The `--notify` targets, each signed with `--notify-secret`.
fn notify_targets(args: &StoreArgs) -> Result<Vec<NotifyTarget>, CliError> {
    if args.notify.is_empty() {
        return Ok(Vec::new());
    }
    let Some(secret) = args.notify_secret.as_deref().filter(|s| !s.is_empty()) else {
        return Err(CliError::new(Exit::Usage, "--notify needs a secret to sign notifications with").with_hint(
            "pass --notify-secret SECRET or set HOIST_NOTIFY_SECRET; receivers check X-Hoist-Signature with it",
        ));
    };
    args.notify
        .iter()
        .map(|spec| {
            let (name, url) = if spec.starts_with("http://") || spec.starts_with("https://") {
                ("default", spec.as_str())
            } else {
                spec.split_once('=').unwrap_or(("", spec.as_str()))
            };
            NotifyTarget::new(name, url, secret).map_err(|e| {
                CliError::new(Exit::Usage, format!("--notify {spec}: {e}"))
                    .with_hint("write --notify NAME=http://HOST:PORT/PATH, or a bare URL for the target `default`")
            })
        })
        .collect()
}

/// Runs `hoist store`.
pub(crate) async fn run(args: StoreArgs) -> Result<(), CliError> {
    let targets = notify_targets(&args)?;
    let (credentials, generated) = match (args.access_key, args.secret_key) {
        (Some(a), Some(s)) => (Credentials::new(a, s), false),
        _ => Credentials::load_or_generate(&args.data).map_err(|e| {
            CliError::new(Exit::Usage, format!("cannot use data dir {}: {e}", args.data.display()))
                .with_hint("pass --data with a directory you can write to")
        })?,
    };
    let mut builder = Store::builder(&args.data)
        .credentials(credentials.clone())
        .cors_origins(args.cors_origin)
        .notify_options(NotifyOptions { max_queued: args.notify_queue_max, ..NotifyOptions::default() });
    for t in &targets {
        builder = builder.notify(t.clone());
    }
    let store = builder.build().map_err(|e| match e {
        hoist_store::Error::NotifyTarget(_) => CliError::new(Exit::Usage, format!("--notify: {e}"))
            .with_hint("give each target its own NAME (--notify NAME=URL)"),
        _ => CliError::new(Exit::Usage, format!("cannot open data dir {}: {e}", args.data.display()))
            .with_hint("pass --data with a directory you can write to"),
    })?;
    let listener = tokio::net::TcpListener::bind(&args.listen).await.map_err(|e| {
        CliError::new(Exit::Usage, format!("cannot listen on {}: {e}", args.listen))
            .with_hint("pick another address, e.g. --listen 127.0.0.1:0 for any free port")
    })?;
    let addr = listener.local_addr().map_err(|e| CliError::new(Exit::Failure, e.to_string()))?;
    crate::render::say(&format!("listening on http://{addr}"));
    if generated {
        crate::render::say(&format!(
            "generated credentials (kept in {}):",
            args.data.join("credentials.json").display()
        ));
    }
    crate::render::say(&format!("export AWS_ACCESS_KEY_ID={}", credentials.access_key));
    if generated {
        crate::render::say(&format!("export AWS_SECRET_ACCESS_KEY={}", credentials.secret_key));
    }
    crate::render::say(&format!("export AWS_ENDPOINT_URL=http://{addr}"));
    for t in &targets {
        crate::render::say(&format!("event notifications to target {} ({})", t.name(), t.arn()));
    }
    store.serve(listener, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
