//! The command tree. Each subcommand's flags live beside its code in `cmd/<name>.rs`; this file
//! only lists them, so `hoist --help` reads like a table of contents.

use clap::{Parser, Subcommand};

use crate::cmd;

/// Fast, resumable S3 multipart uploads.
///
/// Credentials come from the standard AWS chain (env vars, ~/.aws/config and credentials,
/// `--profile`); `--endpoint-url` points at any S3-compatible store (MinIO, Garage, Ceph, or
/// `hoist store`).
#[derive(Debug, Parser)]
#[command(name = "hoist", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// More log output on stderr (-v info, -vv debug); `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Upload a file or stdin to <s3://BUCKET/KEY>, or directories and files under
    /// <s3://BUCKET/PREFIX/> (an interrupted upload or batch resumes when run again).
    Put(cmd::put::PutArgs),
    /// Upload the files of a directory that are new or changed at <s3://BUCKET/PREFIX/>.
    Sync(cmd::sync::SyncArgs),
    /// Print a pre-signed URL for an object (GET, or PUT with its length and checksum bound).
    Presign(cmd::presign::PresignArgs),
    /// List uploads that can be resumed, or resume one (by number or upload id).
    Resume(cmd::resume::ResumeArgs),
    /// List, abort or prune incomplete multipart uploads (they cost money until aborted).
    Uploads(cmd::uploads::UploadsArgs),
    /// Quick start: start the embedded store, upload a generated file, verify it.
    Demo(cmd::demo::DemoArgs),
    /// Run the embedded S3-compatible store on local disk.
    Store(cmd::store::StoreArgs),
    /// Run the upload service: pre-signed multipart uploads for browsers and apps, and its page.
    Serve(cmd::serve::ServeArgs),
    /// Run pipeline jobs (video transcoding) for `hoist serve`, on its database and S3.
    Worker(cmd::worker::WorkerArgs),
    /// List the service's webhook deliveries, redeliver one, or enable an endpoint after a 410.
    Webhooks(cmd::webhooks::WebhooksArgs),
}
