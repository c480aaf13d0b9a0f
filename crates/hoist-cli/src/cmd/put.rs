//! `hoist put SOURCE s3://BUCKET/KEY` and `hoist put DIR|FILE… s3://BUCKET/PREFIX/`: flags →
//! engine config, run the upload or the batch with Ctrl-C handling, render progress, print the
//! outcome and map it to an exit code. The walk, the scheduling and the resume record of a batch
//! are the engine's (`hoist_core::batch`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use clap::builder::PossibleValue;
use hoist_core::batch::{DEFAULT_MAX_BYTES, DEFAULT_MAX_REQUESTS};
use hoist_core::checksum::ChecksumAlgorithm;
use hoist_core::config::{DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, DEFAULT_SINGLE_PUT_THRESHOLD, Provider};
use hoist_core::tree::{Filter, TreeOptions};
use hoist_core::{
    BatchConfig, BatchRequest, BatchSummary, BatchUploader, CancellationToken, ChecksumMode, ChecksumTransport,
    ClientOptions, Compare, Events, OnFailure, S3Client, Source, UploadConfig, UploadOutcome, UploadRequest, Uploader,
};

use crate::exit::{CliError, Exit};
use crate::parse::{S3Url, parse_duration, parse_metadata, parse_size};
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
    /// Give up on a request that gets no answer for this long, and retry it (default 1m; a part
    /// also gets its body's time at 1 MiB/s), e.g. 10s.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) request_timeout: Option<Duration>,
}

impl ConnectArgs {
    /// Only where to connect: no other setting.
    pub(crate) fn endpoint(endpoint_url: Option<String>) -> Self {
        Self { endpoint_url, region: None, profile: None, request_timeout: None }
    }

    /// Builds the S3 client.
    pub(crate) async fn client(&self) -> Result<S3Client, CliError> {
        if self.request_timeout.is_some_and(|t| t.is_zero()) {
            return Err(
                CliError::usage("--request-timeout must be more than zero").with_hint("e.g. --request-timeout 30s")
            );
        }
        let opts = ClientOptions {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            profile: self.profile.clone(),
            read_timeout: self.request_timeout,
            ..Default::default()
        };
        Ok(S3Client::connect(&opts).await?)
    }
}

/// `--checksum`: one of core's algorithms (by their CLI names), or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChecksumChoice(pub(crate) Option<ChecksumAlgorithm>);

/// The default `--checksum`: CRC32C (cheap, and what AWS's SDKs send by default since 2025).
const DEFAULT_CHECKSUM: ChecksumChoice = ChecksumChoice(Some(ChecksumAlgorithm::Crc32c));

impl clap::ValueEnum for ChecksumChoice {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: LazyLock<Vec<ChecksumChoice>> =
            LazyLock::new(|| ChecksumAlgorithm::ALL.into_iter().map(Some).chain([None]).map(ChecksumChoice).collect());
        &ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.map_or("none", ChecksumAlgorithm::cli_name)))
    }
}

/// `--checksum-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum ChecksumModeArg {
    /// Send the checksum with every part and verify the object.
    #[default]
    Always,
    /// Send no checksum headers (for stores that reject them).
    #[value(name = "when_required")]
    WhenRequired,
}

impl From<ChecksumModeArg> for ChecksumMode {
    fn from(m: ChecksumModeArg) -> Self {
        match m {
            ChecksumModeArg::Always => Self::Always,
            ChecksumModeArg::WhenRequired => Self::WhenRequired,
        }
    }
}

/// `--checksum-transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum TransportArg {
    /// After the data, computed while it is read.
    #[default]
    Trailer,
    /// Before the data (a checksum pass first).
    Header,
}

impl From<TransportArg> for ChecksumTransport {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Trailer => Self::Trailer,
            TransportArg::Header => Self::Header,
        }
    }
}

/// `--on-failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OnFailureArg {
    /// Keep the uploaded parts to resume.
    Keep,
    /// Abort the upload.
    Abort,
}

/// `--provider`: whose limits apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProviderArg {
    /// Amazon S3: objects up to 50 TB.
    Aws,
    /// MinIO, Ceph, Garage, `hoist store` and other S3-compatible stores: objects up to 5 TiB.
    S3Compatible,
    /// Cloudflare R2: equal-size parts, objects up to 5 TiB.
    R2,
}

impl From<ProviderArg> for Provider {
    fn from(p: ProviderArg) -> Self {
        match p {
            ProviderArg::Aws => Self::Aws,
            ProviderArg::S3Compatible => Self::S3Compatible,
            ProviderArg::R2 => Self::R2,
        }
    }
}

/// How each object is uploaded (shared by `hoist put` and `hoist sync`).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[allow(clippy::struct_excessive_bools)] // independent command-line switches
pub(crate) struct UploadFlags {
    /// Part size, e.g. 64MiB (raised automatically to fit 10,000 parts).
    #[arg(long, value_parser = parse_size, default_value_t = DEFAULT_PART_SIZE)]
    pub(crate) part_size: u64,
    /// Parts uploaded in parallel (per multipart file).
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    pub(crate) concurrency: usize,
    /// Inputs smaller than this go as one PutObject.
    #[arg(long, value_parser = parse_size, default_value_t = DEFAULT_SINGLE_PUT_THRESHOLD)]
    pub(crate) single_put_threshold: u64,
    /// Checksum sent with every part and verified after completion.
    #[arg(long, value_enum, default_value_t = DEFAULT_CHECKSUM)]
    pub(crate) checksum: ChecksumChoice,
    /// `when_required` sends no checksum headers (for stores that reject them).
    #[arg(long, value_enum, default_value_t)]
    pub(crate) checksum_mode: ChecksumModeArg,
    /// How file part checksums travel: `trailer` (after the data, computed while it is read:
    /// one read per part) or `header` (before the data: a checksum pass first; for stores that
    /// refuse aws-chunked bodies).
    #[arg(long, value_enum, default_value_t)]
    pub(crate) checksum_transport: TransportArg,
    /// Whose limits apply (object size, part rules). Default: told from --endpoint-url (none or
    /// *.amazonaws.com: aws; *.r2.cloudflarestorage.com: r2; anything else: s3-compatible).
    #[arg(long, value_enum)]
    pub(crate) provider: Option<ProviderArg>,
    /// Largest object the store takes, e.g. 5TiB (overrides the provider's; at most 10,000
    /// parts of 5 GiB).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub(crate) max_object_size: Option<u64>,
    /// Content-Type of the object(s).
    #[arg(long)]
    pub(crate) content_type: Option<String>,
    /// User metadata, repeatable: --metadata owner=ana.
    #[arg(long, value_parser = parse_metadata)]
    pub(crate) metadata: Vec<(String, String)>,
    /// One JSON event per line on stdout (one file: started, `part_done`, retry, completed,
    /// failed; several: `file_done`, `file_skipped`, `file_failed`, ignored, ..., summary).
    #[arg(long)]
    pub(crate) json: bool,
    /// No progress bar.
    #[arg(long)]
    pub(crate) no_progress: bool,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Start over: abort an interrupted upload of this file (or forget what an interrupted
    /// batch recorded) instead of resuming.
    #[arg(long)]
    pub(crate) restart: bool,
}

impl Default for UploadFlags {
    /// What `hoist put` runs with when no flag is given (`hoist resume` uses it; a test checks it
    /// against clap's defaults).
    fn default() -> Self {
        Self {
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            single_put_threshold: DEFAULT_SINGLE_PUT_THRESHOLD,
            checksum: DEFAULT_CHECKSUM,
            checksum_mode: ChecksumModeArg::default(),
            checksum_transport: TransportArg::default(),
            provider: None,
            max_object_size: None,
            content_type: None,
            metadata: Vec::new(),
            json: false,
            no_progress: false,
            quiet: false,
            restart: false,
        }
    }
}

impl UploadFlags {
    /// The engine's settings for these flags, with the limits of the provider named or told
    /// from the endpoint, and the request timeout as the stall timeout of parts.
    fn config(&self, connect: &ConnectArgs) -> Result<UploadConfig, CliError> {
        let provider =
            self.provider.map_or_else(|| Provider::from_endpoint(connect.endpoint_url.as_deref()), Provider::from);
        let mut limits = provider.limits();
        if let Some(max) = self.max_object_size {
            let ceiling = limits.multipart_ceiling();
            limits = limits.with_max_object_size(max).ok_or_else(|| {
                CliError::usage(format!(
                    "--max-object-size {max} is out of range: it must be between 1 byte and {ceiling} ({} parts of {})",
                    limits.max_parts,
                    human(limits.max_part_size)
                ))
                .with_hint("give the store's object limit, e.g. --max-object-size 5TiB")
            })?;
        }
        let mut config = UploadConfig::default()
            .limits(limits)
            .part_size(self.part_size)
            .concurrency(self.concurrency)
            .single_put_threshold(self.single_put_threshold)
            .checksum(self.checksum.0)
            .checksum_mode(self.checksum_mode.into())
            .checksum_transport(self.checksum_transport.into());
        if let Some(t) = connect.request_timeout {
            config = config.stall_timeout(t);
        }
        Ok(config)
    }

    fn mode(&self) -> Mode {
        render::Mode::from_flags(self.json, self.no_progress, self.quiet)
    }
}

/// Which files of a tree, and how many at once (shared by `hoist put` and `hoist sync`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TreeFlags {
    /// Upload only files matching this glob (repeatable). `*` and `?` stay within a directory,
    /// `**` crosses them; a pattern without `/` matches the file name, one with `/` the path
    /// relative to the directory given.
    #[arg(long, value_name = "GLOB")]
    pub(crate) include: Vec<String>,
    /// Leave out files matching this glob (repeatable; wins over --include).
    #[arg(long, value_name = "GLOB")]
    pub(crate) exclude: Vec<String>,
    /// Follow symbolic links inside directories (a loop is reported and cut).
    #[arg(long)]
    pub(crate) follow_symlinks: bool,
    /// Requests in flight across all files (small files each take one; a multipart file takes
    /// --concurrency).
    #[arg(long, default_value_t = DEFAULT_MAX_REQUESTS, value_name = "N")]
    pub(crate) max_requests: usize,
    /// Bytes of file data in flight across all files.
    #[arg(long, value_parser = parse_size, default_value_t = DEFAULT_MAX_BYTES, value_name = "SIZE")]
    pub(crate) max_bytes_in_flight: u64,
}

/// Flags of `hoist put`.
#[derive(Debug, clap::Args)]
pub(crate) struct PutArgs {
    /// Files or directories to upload, or `-` for stdin; then the destination: <s3://BUCKET/KEY>
    /// for one file, <s3://BUCKET/PREFIX/> for directories and several files (each file goes
    /// to PREFIX + its path relative to the directory given).
    #[arg(required = true, num_args = 1.., value_name = "SOURCE")]
    pub(crate) sources: Vec<String>,
    /// Destination, <s3://BUCKET/KEY> or <s3://BUCKET/PREFIX/>.
    #[arg(value_parser = S3Url::parse, value_name = "DESTINATION")]
    pub(crate) destination: S3Url,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    #[command(flatten)]
    pub(crate) upload: UploadFlags,
    #[command(flatten)]
    pub(crate) tree: TreeFlags,
    /// Skip files whose key already exists with the same size and content (MD5 ETag, multipart
    /// ETag or checksum; each skip says what was compared).
    #[arg(long)]
    pub(crate) skip_existing: bool,
    /// On failure keep the uploaded parts (to resume) or abort the upload. Default: keep after
    /// Ctrl-C or network trouble, abort after a fatal error such as access denied.
    #[arg(long, value_enum)]
    pub(crate) on_failure: Option<OnFailureArg>,
    /// With `-`: name the stream so an interrupted upload resumes when the same stream is fed
    /// again with the same key (recorded parts are read, checked and skipped).
    #[arg(long, value_name = "KEY")]
    pub(crate) resume_key: Option<String>,
}

impl PutArgs {
    /// One file (or stdin) to one key, or `None` when this is a batch (a directory, several
    /// sources, or --skip-existing).
    fn single(&self) -> Result<Option<(Source, String)>, CliError> {
        let [source] = self.sources.as_slice() else {
            if self.sources.iter().any(|s| s == "-") {
                return Err(CliError::usage("stdin (`-`) cannot be mixed with other sources"));
            }
            return Ok(None);
        };
        let folder = self.destination.key.is_empty() || self.destination.key.ends_with('/');
        if source == "-" {
            if folder {
                return Err(CliError::usage(format!("{} names a folder; stdin needs an object key", self.destination))
                    .with_hint("write the destination as s3://BUCKET/KEY"));
            }
            return Ok(Some((Source::Stdin { resume_key: self.resume_key.clone() }, self.destination.key.clone())));
        }
        if self.resume_key.is_some() {
            return Err(CliError::usage("--resume-key is for stdin (`-`); a file resumes by itself"));
        }
        let path = PathBuf::from(source);
        if !path.exists() {
            return Err(
                CliError::usage(format!("{source} does not exist")).with_hint("check the path of the file to upload")
            );
        }
        if path.is_dir() || self.skip_existing {
            return Ok(None);
        }
        let key = if folder {
            let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                CliError::usage(format!("{source} has no UTF-8 file name to use as the key"))
                    .with_hint("write the destination as s3://BUCKET/KEY")
            })?;
            format!("{}{name}", self.destination.key)
        } else {
            self.destination.key.clone()
        };
        Ok(Some((Source::File(path), key)))
    }
}

/// Runs `hoist put`.
pub(crate) async fn run(args: PutArgs) -> Result<(), CliError> {
    if args.upload.concurrency == 0 {
        return Err(CliError::usage("--concurrency must be at least 1"));
    }
    let Some((source, key)) = args.single()? else {
        if args.resume_key.is_some() || args.on_failure.is_some() {
            return Err(CliError::usage("--resume-key and --on-failure are for one file; a batch resumes by itself"));
        }
        let compare = args.skip_existing.then_some(Compare::Checksum);
        let sources: Vec<PathBuf> = args.sources.iter().map(PathBuf::from).collect();
        return run_batch(&args.connect, &args.upload, &args.tree, sources, &args.destination, compare).await;
    };
    let destination = S3Url { bucket: args.destination.bucket.clone(), key };
    put_one(&args.connect, &args.upload, source, &args.sources[0], &destination, args.on_failure).await
}

/// Uploads one file or stream to one key (`hoist put`, `hoist resume`): the upload with its
/// journal when it can resume, the hint that says how to resume or what was cleaned up, and the
/// summary line. `label` names the source in messages.
pub(crate) async fn put_one(
    connect: &ConnectArgs,
    flags: &UploadFlags,
    source: Source,
    label: &str,
    destination: &S3Url,
    on_failure: Option<OnFailureArg>,
) -> Result<(), CliError> {
    let config = flags.config(connect)?;
    let resumable = matches!(source, Source::File(_) | Source::Stdin { resume_key: Some(_) });
    let on_failure = match on_failure {
        Some(OnFailureArg::Keep) if resumable => OnFailure::Keep,
        Some(OnFailureArg::Keep) => {
            return Err(CliError::usage("--on-failure keep needs a file, or --resume-key with stdin"));
        }
        None if resumable => OnFailure::Auto,
        Some(OnFailureArg::Abort) | None => OnFailure::Abort,
    };
    let resume_hint = resume_command(label, destination, &source, connect);
    let client = connect.client().await?;
    let req = UploadRequest {
        source,
        bucket: destination.bucket.clone(),
        key: destination.key.clone(),
        content_type: flags.content_type.clone(),
        metadata: flags.metadata.clone(),
    };
    let mode = flags.mode();
    let mut uploader = Uploader::new(client, config);
    if resumable {
        let endpoint = connect.endpoint_url.clone().unwrap_or_default();
        uploader = uploader.with_journal(journal_store()?, &endpoint, flags.restart);
    }
    let outcome = upload(&uploader, &req, mode, on_failure).await.map_err(|e| {
        if let Some((id, why)) = &e.unaborted {
            let abort = format!("hoist uploads abort {} --upload-id {id}", shell_quote(&destination.to_string()));
            let endpoint = connect.endpoint_url.as_ref().map(|u| format!(" --endpoint-url {}", shell_quote(u))).unwrap_or_default();
            let resume = if resumable { format!("resume with: {resume_hint}; or ") } else { String::new() };
            e.error.with_hint(format!(
                "the upload could not be aborted ({why}) and is still pending in the store, where it is billed: {resume}remove it with: {abort}{endpoint}"
            ))
        } else if e.completed {
            e.error.with_hint(if resumable {
                "Complete succeeded, only the check of the object failed: run the same command again to check it without uploading again"
            } else {
                "Complete succeeded, only the check of the object failed: check the object before relying on it"
            })
        } else if e.kept && resumable {
            e.error.with_hint(format!("parts are kept; resume with: {resume_hint}"))
        } else if !resumable && e.error.hint.is_none() {
            e.error.with_hint(
                "the upload was aborted, nothing is left behind; to make a stdin upload resumable pass --resume-key",
            )
        } else {
            e.error
        }
    })?;
    if mode != Mode::Json && !flags.quiet {
        render::say(&summary(label, destination, &outcome));
    }
    Ok(())
}

/// Uploads a batch (`hoist put DIR…`, `hoist sync`): walk, upload, render, summarise. Exit code
/// [`Exit::Partial`] when some files failed (the summary lists them).
pub(crate) async fn run_batch(
    connect: &ConnectArgs,
    flags: &UploadFlags,
    tree: &TreeFlags,
    sources: Vec<PathBuf>,
    destination: &S3Url,
    skip_existing: Option<Compare>,
) -> Result<(), CliError> {
    for s in &sources {
        if std::fs::symlink_metadata(s).is_err() {
            return Err(
                CliError::usage(format!("{} does not exist", s.display())).with_hint("check the paths to upload")
            );
        }
    }
    let filter = Filter::new(&tree.include, &tree.exclude).map_err(|e| CliError::usage(e.to_string()))?;
    let mut prefix = destination.key.clone();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    let client = connect.client().await?;
    let endpoint = connect.endpoint_url.clone().unwrap_or_default();
    let store = journal_store()?;
    let uploader = Uploader::new(client, flags.config(connect)?).with_journal(store.clone(), &endpoint, flags.restart);
    let config = BatchConfig::default().max_requests(tree.max_requests).max_bytes(tree.max_bytes_in_flight);
    let batch = BatchUploader::new(uploader, config).with_journal(store, &endpoint, flags.restart);
    let req = BatchRequest {
        sources,
        bucket: destination.bucket.clone(),
        prefix: prefix.clone(),
        tree: TreeOptions { follow_symlinks: tree.follow_symlinks, filter },
        skip_existing,
        content_type: flags.content_type.clone(),
        metadata: flags.metadata.clone(),
    };
    let mode = flags.mode();
    let (events, rx) = Events::channel();
    let renderer = tokio::spawn(render::render_batch(mode, rx));
    let cancel = CancellationToken::new();
    let watcher = tokio::spawn(watch_interrupts(cancel.clone()));
    let result = batch.run(&req, &events, &cancel).await;
    watcher.abort();
    drop(events);
    let _ = renderer.await;
    let summary = result.map_err(|e| {
        let hint = "fix that and run the same command again: files already uploaded are skipped";
        CliError::from(e).with_hint(hint)
    })?;
    let dest = S3Url { bucket: destination.bucket.clone(), key: prefix };
    if mode != Mode::Json && !flags.quiet {
        render::say(&batch_summary(&dest, &summary));
    }
    if summary.interrupted {
        return Err(CliError::new(
            Exit::Interrupted,
            "interrupted; run the same command again to go on where it stopped",
        ));
    }
    if summary.files_failed > 0 {
        if mode != Mode::Json {
            for f in &summary.failures {
                eprintln!("failed: {}: {}", f.path, f.error);
            }
            let unlisted = summary.files_failed - summary.failures.len() as u64;
            if unlisted > 0 {
                eprintln!("failed: {unlisted} more not listed");
            }
        }
        return Err(CliError::new(
            Exit::Partial,
            format!("{} of the files could not be uploaded", summary.files_failed),
        )
        .with_hint("fix them and run the same command again: files already uploaded are skipped"));
    }
    Ok(())
}

/// One line saying what a batch did.
pub(crate) fn batch_summary(dest: &S3Url, s: &BatchSummary) -> String {
    #[allow(clippy::cast_precision_loss)] // display only
    let rate = if s.seconds > 0.0 { s.files_uploaded as f64 / s.seconds } else { 0.0 };
    let mut line = format!(
        "uploaded {} files ({}) to {dest} in {:.2} s ({rate:.0} files/s), verified",
        s.files_uploaded,
        human(s.bytes_uploaded),
        s.seconds
    );
    if s.files_skipped > 0 {
        let _ = write!(line, "; {} skipped (already there)", s.files_skipped);
    }
    if s.ignored > 0 {
        let _ = write!(line, "; {} ignored (links, special files)", s.ignored);
    }
    if s.files_failed > 0 {
        let _ = write!(line, "; {} failed", s.files_failed);
    }
    line
}

/// A failed upload: the error, and what became of the multipart upload.
pub(crate) struct Failed {
    pub(crate) error: CliError,
    /// Its parts were kept for resuming.
    pub(crate) kept: bool,
    /// Complete succeeded; only the check after it failed.
    pub(crate) completed: bool,
    /// The abort was tried and failed: the upload id and why.
    pub(crate) unaborted: Option<(String, String)>,
}

/// What the engine's failure event said about the multipart upload.
#[derive(Default)]
struct Fate {
    kept: bool,
    completed: bool,
    unaborted: Option<(String, String)>,
}

/// Runs one upload with progress rendering and Ctrl-C handling (first Ctrl-C: no new parts, the
/// ones in flight finish; second: exit at once, the journal stays valid).
pub(crate) async fn upload(
    uploader: &Uploader,
    req: &UploadRequest,
    mode: Mode,
    on_failure: OnFailure,
) -> Result<UploadOutcome, Failed> {
    let (events, mut rx) = Events::channel();
    let (fwd_tx, fwd_rx) = tokio::sync::mpsc::unbounded_channel();
    // Watch for the failure event (to learn whether parts were kept) while rendering.
    let watcher_events = tokio::spawn(async move {
        let mut fate = Fate::default();
        while let Some(e) = rx.recv().await {
            if let hoist_core::ProgressEvent::Failed { upload_id, completed, abort_error, .. } = &e {
                fate.kept = upload_id.is_some();
                fate.completed = *completed;
                fate.unaborted = upload_id.clone().zip(abort_error.clone());
            }
            let _ = fwd_tx.send(e);
        }
        fate
    });
    let renderer = tokio::spawn(render::render(mode, fwd_rx));
    let cancel = CancellationToken::new();
    let watcher = tokio::spawn(watch_interrupts(cancel.clone()));
    let result = uploader.upload(req, &events, &cancel, on_failure).await;
    watcher.abort();
    drop(events);
    let fate = watcher_events.await.unwrap_or_default();
    let _ = renderer.await;
    result.map_err(|e| {
        let error = if matches!(e, hoist_core::Error::Cancelled) {
            let what = if fate.kept { "uploaded parts were kept" } else { "the multipart upload was aborted" };
            CliError::new(Exit::Interrupted, format!("interrupted; {what}"))
        } else {
            e.into()
        };
        Failed { error, kept: fate.kept, completed: fate.completed, unaborted: fate.unaborted }
    })
}

/// The journal directory: `$HOIST_STATE_DIR`, else the XDG state dir (`~/.local/state/hoist`).
pub(crate) fn journal_store() -> Result<hoist_core::JournalStore, CliError> {
    let dir = if let Some(dir) = std::env::var_os("HOIST_STATE_DIR") {
        PathBuf::from(dir).join("journals")
    } else {
        let dirs = directories::ProjectDirs::from("", "", "hoist").ok_or_else(|| {
            CliError::new(Exit::Failure, "cannot find a home directory for resume state")
                .with_hint("set HOIST_STATE_DIR")
        })?;
        dirs.state_dir().unwrap_or_else(|| dirs.data_local_dir()).join("journals")
    };
    let store = hoist_core::JournalStore::new(dir);
    // A hoist killed while writing its journal leaves a temp file; a minute is far longer than
    // any live write takes.
    let removed = store.remove_stale_temp_files(std::time::Duration::from_mins(1));
    if removed > 0 {
        tracing::debug!(removed, "removed stale journal temp files");
    }
    Ok(store)
}

/// The command that resumes an upload of `label` (a path, or `-` with a resume key).
fn resume_command(label: &str, destination: &S3Url, source: &Source, connect: &ConnectArgs) -> String {
    let mut cmd = format!("hoist put {} {}", shell_quote(label), shell_quote(&destination.to_string()));
    if let Source::Stdin { resume_key: Some(k) } = source {
        cmd = format!("(feed the same stream) | {cmd} --resume-key {}", shell_quote(k));
    }
    match &connect.endpoint_url {
        Some(e) => format!("{cmd} --endpoint-url {}", shell_quote(e)),
        None => cmd,
    }
}

/// Quotes a word for a POSIX shell when it needs it.
pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || b"/._-:=@%+".contains(&c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
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

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    /// `UploadFlags::default()` (what `hoist resume` uses) is what `hoist put` parses with no flag.
    #[test]
    fn default_flags_are_clap_defaults() {
        #[derive(clap::Parser)]
        struct Probe {
            #[command(flatten)]
            flags: UploadFlags,
        }
        assert_eq!(Probe::parse_from(["hoist"]).flags, UploadFlags::default());
    }

    #[test]
    fn checksum_values_are_core_names_and_none() {
        use clap::ValueEnum as _;
        let names: Vec<String> = ChecksumChoice::value_variants()
            .iter()
            .filter_map(clap::ValueEnum::to_possible_value)
            .map(|v| v.get_name().to_owned())
            .collect();
        assert_eq!(names, ["crc32", "crc32c", "crc64nvme", "sha1", "sha256", "none"]);
        assert_eq!(ChecksumChoice::from_str("SHA256", true), Ok(ChecksumChoice(Some(ChecksumAlgorithm::Sha256))));
    }

    #[test]
    fn limits_follow_the_endpoint_unless_named() {
        let aws = ConnectArgs::endpoint(None);
        let local = ConnectArgs::endpoint(Some("http://127.0.0.1:9000".into()));
        let max = |flags: &UploadFlags, c: &ConnectArgs| flags.config(c).unwrap().get_limits().max_object_size;
        let flags = UploadFlags::default();
        assert_eq!(max(&flags, &aws), Provider::Aws.limits().max_object_size);
        assert_eq!(max(&flags, &local), Provider::S3Compatible.limits().max_object_size);
        let named = UploadFlags { provider: Some(ProviderArg::Aws), ..UploadFlags::default() };
        assert_eq!(max(&named, &local), Provider::Aws.limits().max_object_size);
        let set = UploadFlags { max_object_size: Some(1 << 40), ..UploadFlags::default() };
        assert_eq!(max(&set, &aws), 1 << 40);
        let e = UploadFlags { max_object_size: Some(0), ..UploadFlags::default() }.config(&aws).unwrap_err();
        assert!(e.message.contains("--max-object-size") && e.message.contains("out of range"), "{}", e.message);
    }
}
