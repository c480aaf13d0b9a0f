//! `hoist serve` (placeholder until its issue lands).

use crate::exit::CliError;

/// Flags of `hoist serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {}

/// Runs `hoist serve`.
#[allow(clippy::unused_async)]
pub(crate) async fn run(_args: ServeArgs) -> Result<(), CliError> {
    Err(CliError::usage("hoist serve is not implemented yet"))
}
