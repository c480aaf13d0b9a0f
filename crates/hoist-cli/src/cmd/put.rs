//! `hoist put SOURCE s3://BUCKET/KEY`: flags → engine config, run the upload with Ctrl-C
//! handling, render progress, print the outcome.

use std::path::PathBuf;

use hoist_core::checksum::ChecksumAlgorithm;
use hoist_core::config::{DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, DEFAULT_SINGLE_PUT_THRESHOLD};
use hoist_core::{
    CancellationToken, ChecksumMode, ClientOptions, Events, OnFailure, S3Client, Source, UploadConfig,
    UploadOutcome, UploadRequest, Uploader,
};

use crate::exit::{CliError, Exit};
use crate::parse::{S3Url, parse_metadata, parse_size};
use crate::render::{self, Mode};

/// Where to connect (shared by every command that talks to S3).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectArgs {
    /// S3-compatible endpoint, e.g. <http://127.0.0.1:9000> (path-style addressing is used).
    #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub(crate) endpoint_url: Option<String>,
    /// Region (default: from the AWS config, else us-east-1).
    #[arg(long)]
    pub(crate) region: Option<String>,
    /// Named profile from ~/.aws/config.
    #[arg(long, env = "AWS_PROFILE")]
    pub(crate) profile: Option<String>,
}

impl ConnectArgs {
    /// Builds the S3 client.
    pub(crate) async fn client(&self) -> Result<S3Client, CliError> {
        let opts = ClientOptions {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            profile: self.profile.clone(),
            ..Default::default()
        };
        Ok(S3Client::connect(&opts).await?)
    }
}

/// Flags of `hoist put`.
#[derive(Debug, clap::Args)]
pub(crate) struct PutArgs {
    /// File to upload, or `-` for stdin.
    pub(crate) source: String,
    /// Destination, <s3://BUCKET/KEY>.
    #[arg(value_parser = S3Url::parse_object)]
    pub(crate) destination: S3Url,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Part size, e.g. 64MiB (raised automatically to fit 10,000 parts).
    #[arg(long, value_parser = parse_size, default_value_t = DEFAULT_PART_SIZE)]
    pub(crate) part_size: u64,
    /// Parts uploaded in parallel.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    pub(crate) concurrency: usize,
    /// Inputs smaller than this go as one PutObject.
    #[arg(long, value_parser = parse_size, default_value_t = DEFAULT_SINGLE_PUT_THRESHOLD)]
    pub(crate) single_put_threshold: u64,
    /// Checksum sent with every part and verified after completion.
    #[arg(long, default_value = "crc32c", value_parser = ["crc32c", "crc32", "crc64nvme", "sha1", "sha256", "none"])]
    pub(crate) checksum: String,
    /// `when_required` sends no checksum headers (for stores that reject them).
    #[arg(long, default_value = "always", value_parser = ["always", "when_required"])]
    pub(crate) checksum_mode: String,
    /// Content-Type of the object.
    #[arg(long)]
    pub(crate) content_type: Option<String>,
    /// User metadata, repeatable: --metadata owner=ana.
    #[arg(long, value_parser = parse_metadata)]
    pub(crate) metadata: Vec<(String, String)>,
    /// One JSON event per line on stdout (started, `part_done`, retry, completed, failed).
    #[arg(long)]
    pub(crate) json: bool,
    /// No progress bar.
    #[arg(long)]
    pub(crate) no_progress: bool,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}


impl PutArgs {
    fn config(&self) -> UploadConfig {
        let mode = if self.checksum_mode == "when_required" { ChecksumMode::WhenRequired } else { ChecksumMode::Always };
        UploadConfig::default()
            .part_size(self.part_size)
            .concurrency(self.concurrency)
            .single_put_threshold(self.single_put_threshold)
            .checksum(self.checksum.parse::<ChecksumAlgorithm>().ok())
            .checksum_mode(mode)
    }

    fn source(&self) -> Result<Source, CliError> {
        if self.source == "-" {
            return Ok(Source::Stdin);
        }
        let path = PathBuf::from(&self.source);
        if !path.exists() {
            return Err(CliError::usage(format!("{} does not exist", self.source))
                .with_hint("check the path of the file to upload"));
        }
        if path.is_dir() {
            return Err(CliError::usage(format!("{} is a directory; hoist put uploads one file", self.source))
                .with_hint("give the path of a file inside it"));
        }
        Ok(Source::File(path))
    }
}

/// Runs `hoist put`.
pub(crate) async fn run(args: PutArgs) -> Result<(), CliError> {
    if args.concurrency == 0 {
        return Err(CliError::usage("--concurrency must be at least 1"));
    }
    let source = args.source()?;
    let client = args.connect.client().await?;
    let req = UploadRequest {
        source,
        bucket: args.destination.bucket.clone(),
        key: args.destination.key.clone(),
        content_type: args.content_type.clone(),
        metadata: args.metadata.clone(),
    };
    let mode = render::Mode::from_flags(args.json, args.no_progress, args.quiet);
    let outcome = upload(&Uploader::new(client, args.config()), &req, mode).await?;
    if mode != Mode::Json && !args.quiet {
        render::say(&summary(&args.source, &args.destination, &outcome));
    }
    Ok(())
}

/// Runs one upload with progress rendering and Ctrl-C handling (first Ctrl-C: stop and abort;
/// second: exit at once).
pub(crate) async fn upload(uploader: &Uploader, req: &UploadRequest, mode: Mode) -> Result<UploadOutcome, CliError> {
    let (events, rx) = Events::channel();
    let renderer = tokio::spawn(render::render(mode, rx));
    let cancel = CancellationToken::new();
    let watcher = tokio::spawn(watch_interrupts(cancel.clone()));
    let result = uploader.upload(req, &events, &cancel, OnFailure::Abort).await;
    watcher.abort();
    drop(events);
    let _ = renderer.await;
    result.map_err(|e| {
        if matches!(e, hoist_core::Error::Cancelled) {
            CliError::new(Exit::Interrupted, "interrupted; the multipart upload was aborted, nothing is left behind")
        } else {
            e.into()
        }
    })
}

async fn watch_interrupts(cancel: CancellationToken) {
    if tokio::signal::ctrl_c().await.is_ok() {
        eprintln!("\nhoist: stopping (press Ctrl-C again to quit at once)");
        cancel.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(i32::from(Exit::Interrupted as u8));
        }
    }
}

/// One line saying what was uploaded, how fast, and how it was verified.
pub(crate) fn summary(source: &str, dest: &S3Url, o: &UploadOutcome) -> String {
    let verified = o.checksum.as_deref().map_or_else(|| format!("ETag {}", o.etag), ToOwned::to_owned);
    let parts = if o.parts == 0 { "one request".to_owned() } else { format!("{} parts", o.parts) };
    format!("uploaded {source} to {dest}: {} in {parts}, verified ({verified})", human(o.size))
}

/// Bytes as a short human string (binary units).
pub(crate) fn human(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // display only
    let f = n as f64;
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", f / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", f / 1_048_576.0),
        _ => format!("{:.2} GiB", f / 1_073_741_824.0),
    }
}
