//! `hoist resume`: lists the uploads that can be resumed (from their journals) and resumes one
//! by running `hoist put` again with the journal's source, destination and endpoint.

use clap::Parser as _;

use crate::args::{Cli, Command};
use crate::cmd::put::{human, journal_store, shell_quote};
use crate::exit::CliError;
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
    let source = j.source.display().to_string();
    let dest = format!("s3://{}/{}", j.bucket, j.key);
    let mut command_line = vec!["hoist".to_owned(), "put".to_owned(), source, dest];
    if !j.endpoint.is_empty() {
        command_line.extend(["--endpoint-url".to_owned(), j.endpoint.clone()]);
    }
    if args.json {
        command_line.push("--json".to_owned());
    }
    tracing::info!(command = %command_line.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "), "resuming");
    let cli = Cli::try_parse_from(&command_line).map_err(|e| CliError::usage(e.to_string()))?;
    match cli.command {
        Command::Put(put) => Box::pin(crate::cmd::put::run(put)).await,
        _ => unreachable!("the command_line above is a put command"),
    }
}
