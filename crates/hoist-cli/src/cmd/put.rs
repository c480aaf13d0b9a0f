//! `hoist put` (placeholder until its issue lands).

use crate::exit::CliError;

/// Flags of `hoist put`.
#[derive(Debug, clap::Args)]
pub(crate) struct PutArgs {}

/// Runs `hoist put`.
#[allow(clippy::unused_async)]
pub(crate) async fn run(_args: PutArgs) -> Result<(), CliError> {
    Err(CliError::usage("hoist put is not implemented yet"))
}
