//! `hoist resume`: lists the uploads that can be resumed (from their journals) and resumes one
//! by calling the same upload `hoist put` calls, with the journal's source, destination and
//! endpoint and `hoist put`'s default flags (the journal fixes part size and checksum). A stream
//! cannot be resumed from here: only its producer can feed it again; the error says how.

use hoist_core::Source;

use crate::cmd::put::{ConnectArgs, UploadFlags, human, journal_store, put_one, shell_quote};
use crate::exit::CliError;
use crate::parse::S3Url;
use crate::render::say;

/// Flags of `hoist resume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ResumeArgs {
    /// Which upload: its number in the list, or its upload id. Without it, list them.
    pub(crate) which: Option<String>,
    /// One JSON event per line while resuming.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Runs `hoist resume`.
pub(crate) async fn run(args: ResumeArgs) -> Result<(), CliError> {
    let store = journal_store()?;
    let journals = store.list();
    let Some(which) = args.which else {
        if journals.is_empty() {
            say("nothing to resume");
        }
        for (i, j) in journals.iter().enumerate() {
            let total = j.fingerprint.size.div_ceil(j.part_size.max(1));
            let done: u64 = j.parts.values().map(|p| p.size).sum();
            let endpoint = if j.endpoint.is_empty() { String::new() } else { format!("  ({})", j.endpoint) };
            say(&format!(
                "{}  {}/{total} parts ({} of {})  {} -> s3://{}/{}{endpoint}  upload {}",
                i + 1,
                j.parts.len(),
                human(done),
                human(j.fingerprint.size),
                j.source.display(),
                j.bucket,
                j.key,
                j.upload_id
            ));
        }
        return Ok(());
    };
    let j = which
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| journals.get(i))
        .or_else(|| journals.iter().find(|j| j.upload_id == which))
        .ok_or_else(|| {
            CliError::usage(format!("no resumable upload {which:?}")).with_hint("run `hoist resume` to list them")
        })?;
    let dest = S3Url { bucket: j.bucket.clone(), key: j.key.clone() };
    let label = j.source.display().to_string();
    if let Some(key) = label.strip_prefix(hoist_core::journal::STREAM_SOURCE_PREFIX) {
        return Err(CliError::usage(format!(
            "upload {} reads a stream, which only its producer can feed again",
            j.upload_id
        ))
        .with_hint(format!(
            "feed the same stream to: hoist put - {} --resume-key {}",
            shell_quote(&dest.to_string()),
            shell_quote(key)
        )));
    }
    let connect = ConnectArgs::endpoint((!j.endpoint.is_empty()).then(|| j.endpoint.clone()));
    let flags = UploadFlags { json: args.json, ..UploadFlags::default() };
    tracing::info!(source = %label, destination = %dest, endpoint = %j.endpoint, "resuming");
    Box::pin(put_one(&connect, &flags, Source::File(j.source.clone()), &label, &dest, None)).await
}
