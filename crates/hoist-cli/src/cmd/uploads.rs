//! `hoist uploads ls|abort|prune`: find and clean incomplete multipart uploads, which are
//! invisible in object listings but billed. Aborting also removes the matching resume journal.

use std::time::Duration;

use hoist_core::{ObjectClient as _, S3Client, UploadRef};

use crate::cmd::put::{ConnectArgs, human, journal_store};
use crate::exit::CliError;
use crate::parse::{S3Url, parse_duration};
use crate::render::say;

/// Flags of `hoist uploads`.
#[derive(Debug, clap::Args)]
pub(crate) struct UploadsArgs {
    #[command(subcommand)]
    pub(crate) action: Action,
}

/// What to do with incomplete uploads.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Action {
    /// List incomplete uploads under `s3://BUCKET[/PREFIX]`.
    Ls {
        /// `s3://BUCKET[/PREFIX]`
        #[arg(value_parser = S3Url::parse)]
        location: S3Url,
        /// Also count each upload's parts and bytes (one ListParts per upload).
        #[arg(long)]
        long: bool,
        /// One JSON object per upload.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Abort one upload.
    Abort {
        /// `s3://BUCKET/KEY`
        #[arg(value_parser = S3Url::parse_object)]
        object: S3Url,
        /// The upload id (see `hoist uploads ls`).
        #[arg(long)]
        upload_id: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Abort every upload under `s3://BUCKET[/PREFIX]` started longer ago than --older-than.
    Prune {
        /// `s3://BUCKET[/PREFIX]`
        #[arg(value_parser = S3Url::parse)]
        location: S3Url,
        /// Age, e.g. 7d, 36h.
        #[arg(long, value_parser = parse_duration)]
        older_than: Duration,
        /// Print what would be aborted, change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// Runs `hoist uploads`.
pub(crate) async fn run(args: UploadsArgs) -> Result<(), CliError> {
    match args.action {
        Action::Ls { location, long, json, connect } => {
            let client = connect.client().await?;
            let uploads = client.list_uploads(&location.bucket, &location.key).await?;
            for u in &uploads {
                let (parts, bytes) =
                    if long { sizes(&client, &location.bucket, &u.key, &u.upload_id).await? } else { (0, 0) };
                if json {
                    let mut v = serde_json::json!({"key": u.key, "upload_id": u.upload_id, "initiated": u.initiated});
                    if long {
                        v["parts"] = parts.into();
                        v["bytes"] = bytes.into();
                    }
                    say(&v.to_string());
                } else {
                    let when = u.initiated.map_or_else(|| "-".to_owned(), format_time);
                    let extra = if long { format!("  {parts} parts  {}", human(bytes)) } else { String::new() };
                    say(&format!("{when}  {}  {}{extra}", u.upload_id, u.key));
                }
            }
            if !json {
                say(&format!("{} incomplete upload(s)", uploads.len()));
            }
            Ok(())
        }
        Action::Abort { object, upload_id, connect } => {
            let client = connect.client().await?;
            client
                .abort(&UploadRef {
                    bucket: object.bucket.clone(),
                    key: object.key.clone(),
                    upload_id: upload_id.clone(),
                })
                .await?;
            forget_journals(std::slice::from_ref(&upload_id));
            say(&format!("aborted {upload_id} ({object})"));
            Ok(())
        }
        Action::Prune { location, older_than, dry_run, connect } => {
            let client = connect.client().await?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let cutoff = now - i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
            let old: Vec<_> = client
                .list_uploads(&location.bucket, &location.key)
                .await?
                .into_iter()
                .filter(|u| u.initiated.is_some_and(|t| t <= cutoff))
                .collect();
            let mut freed = 0u64;
            let mut aborted = Vec::new();
            for u in &old {
                let (_, bytes) = sizes(&client, &location.bucket, &u.key, &u.upload_id).await?;
                freed += bytes;
                let verb = if dry_run { "would abort" } else { "aborting" };
                say(&format!("{verb} {}  {}  ({})", u.upload_id, u.key, human(bytes)));
                if !dry_run {
                    client
                        .abort(&UploadRef {
                            bucket: location.bucket.clone(),
                            key: u.key.clone(),
                            upload_id: u.upload_id.clone(),
                        })
                        .await?;
                    aborted.push(u.upload_id.clone());
                }
            }
            forget_journals(&aborted);
            let verb = if dry_run { "would free" } else { "freed" };
            say(&format!("{} upload(s), {verb} {}", old.len(), human(freed)));
            Ok(())
        }
    }
}

async fn sizes(client: &S3Client, bucket: &str, key: &str, id: &str) -> Result<(usize, u64), CliError> {
    let parts = client
        .list_parts(&UploadRef { bucket: bucket.to_owned(), key: key.to_owned(), upload_id: id.to_owned() })
        .await?;
    Ok((parts.len(), parts.iter().map(|p| p.size).sum()))
}

/// Removes resume journals of uploads that no longer exist.
fn forget_journals(upload_ids: &[String]) {
    let Ok(store) = journal_store() else { return };
    for j in store.list().into_iter().filter(|j| upload_ids.contains(&j.upload_id)) {
        if let Err(e) = store.remove(&j) {
            tracing::warn!(error = %e, "could not remove a journal");
        }
    }
}

/// Unix seconds as RFC 3339, or the number when out of range.
pub(crate) fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}
