//! `hoist store` (placeholder until its issue lands).

use crate::exit::CliError;

/// Flags of `hoist store`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {}

/// Runs `hoist store`.
#[allow(clippy::unused_async)]
pub(crate) async fn run(_args: StoreArgs) -> Result<(), CliError> {
    Err(CliError::usage("hoist store is not implemented yet"))
}
