//! `hoist worker`: runs pipeline jobs (video transcoding) in a process of its own, on the same
//! database and S3 as `hoist serve`, until Ctrl-C or SIGTERM (a job in progress is then stopped
//! and requeued). Any number of workers, on any number of machines, can share one `PostgreSQL`;
//! with the embedded store, a worker on the serving machine finds it through the data dir.

use crate::cmd::serve::{S3Args, StateArgs, apply_s3, base_config, start_error};
use crate::exit::CliError;

/// Flags of `hoist worker`.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    pub(crate) state: StateArgs,
    #[command(flatten)]
    pub(crate) s3: S3Args,
    /// Jobs this process runs at once (each runs one ffmpeg).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) concurrency: u16,
}

/// Runs `hoist worker`.
pub(crate) async fn run(args: WorkerArgs) -> Result<(), CliError> {
    let mut config = base_config(&args.state)?;
    apply_s3(&mut config, args.s3);
    let workers =
        hoist_server::WorkerProcess::start(config, usize::from(args.concurrency)).await.map_err(start_error)?;
    crate::render::say(&format!("worker: running up to {} job(s) at once; Ctrl-C to stop", args.concurrency));
    workers.run(super::store::shutdown_signal()).await;
    Ok(())
}
