//! The `hoist` binary: parse arguments, set up logging, run one subcommand, map its outcome to an
//! exit code. No upload logic lives here; see `hoist-core`.
//!
//! # Layout
//! - `args`: the clap command tree (doc comments are the `--help`).
//! - `cmd`: one module per subcommand (`put`, `sync`, `presign`, `resume`, `uploads`, `store`,
//!   `serve`, `worker`, `webhooks`, `demo`).
//! - `render`: progress bars or `--json` lines fed by the engine's events.
//! - `exit`: the error type, exit codes and one-line hints.
//! - `parse`: value parsers for `s3://` URLs, sizes, durations and metadata.

mod args;
mod cmd;
mod exit;
mod parse;
mod render;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

/// Threads for blocking work (file reads, checksums, store writes).
const BLOCKING_THREADS: usize = 2;

fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    init_tracing(cli.verbose);
    // Few blocking threads: each thread that frees buffers keeps its own glibc malloc arena
    // resident; with tokio's default (up to 512) a 1 GiB upload peaked at ~48 MiB RSS, with 4 at
    // ~22 MiB and the same speed (file reads from the page cache are short; see BENCHMARKS.md).
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().max_blocking_threads(BLOCKING_THREADS).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("hoist: cannot start the async runtime: {e}");
                return exit::Exit::Failure.into();
            }
        };
    match runtime.block_on(cmd::run(cli.command)) {
        Ok(()) => exit::Exit::Ok.into(),
        Err(err) => err.report(),
    }
}

/// Logs go to stderr; `RUST_LOG` wins over `-v`.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        // aws-config warns about every source of the credential chain it tries (IMDS, ...), and s3s
        // logs every refused client request as an error; the client gets those errors anyway.
        0 => "warn,aws_config=error,s3s=off",
        1 => "info,aws_config=warn,aws_smithy_runtime=warn",
        2 => "debug,aws=info,hyper=info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
