//! One module per subcommand; [`run`] dispatches.

pub(crate) mod demo;
pub(crate) mod put;
pub(crate) mod store;

use crate::args::Command;
use crate::exit::CliError;

/// Runs one subcommand to completion.
pub(crate) async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Put(args) => put::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Store(args) => store::run(args).await,
    }
}
