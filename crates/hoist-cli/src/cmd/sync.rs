//! `hoist sync DIR s3://BUCKET/PREFIX/`: upload the files of a tree that the destination does
//! not hold yet or holds with other content. A batch like `hoist put DIR` with
//! `--skip-existing`; compared by content unless `--size-mtime` asks for size and time only.

use std::path::PathBuf;

use hoist_core::Compare;

use crate::cmd::put::{ConnectArgs, TreeFlags, UploadFlags, run_batch};
use crate::exit::CliError;
use crate::parse::S3Url;

/// Flags of `hoist sync`.
#[derive(Debug, clap::Args)]
pub(crate) struct SyncArgs {
    /// The directory to upload.
    pub(crate) source: PathBuf,
    /// Destination, <s3://BUCKET/PREFIX/>.
    #[arg(value_parser = S3Url::parse)]
    pub(crate) destination: S3Url,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    #[command(flatten)]
    pub(crate) upload: UploadFlags,
    #[command(flatten)]
    pub(crate) tree: TreeFlags,
    /// Compare size and modification time only (an object not older than the file counts as
    /// the same), without reading files. Default: same size and same content (MD5 ETag,
    /// multipart ETag or checksum).
    #[arg(long)]
    pub(crate) size_mtime: bool,
}

/// Runs `hoist sync`.
pub(crate) async fn run(args: SyncArgs) -> Result<(), CliError> {
    if !args.source.is_dir() {
        return Err(CliError::usage(format!("{} is not a directory", args.source.display()))
            .with_hint("hoist sync takes a directory; upload single files with hoist put"));
    }
    let compare = if args.size_mtime { Compare::SizeMtime } else { Compare::Checksum };
    run_batch(&args.connect, &args.upload, &args.tree, vec![args.source], &args.destination, Some(compare)).await
}
