//! One module per subcommand; [`run`] dispatches.

pub(crate) mod demo;
pub(crate) mod presign;
pub(crate) mod put;
pub(crate) mod resume;
pub(crate) mod serve;
pub(crate) mod store;
pub(crate) mod sync;
pub(crate) mod uploads;
pub(crate) mod webhooks;
pub(crate) mod worker;

use crate::args::Command;
use crate::exit::CliError;

/// Runs one subcommand to completion.
pub(crate) async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Put(args) => put::run(args).await,
        Command::Sync(args) => sync::run(args).await,
        Command::Presign(args) => presign::run(args).await,
        Command::Resume(args) => resume::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Store(args) => store::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Uploads(args) => uploads::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Webhooks(args) => webhooks::run(args).await,
    }
}
