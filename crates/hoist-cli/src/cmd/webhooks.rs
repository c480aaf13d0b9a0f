//! `hoist webhooks ls|redeliver|enable`: the operator's view of `hoist serve`'s webhook
//! deliveries, on the same database (same `--data`, `--config`, `--database-url`). These commands
//! only change rows; a running `hoist serve` sends what they queue, within a second.

use hoist_server::db::{Db, redact_url};
use hoist_server::pipeline::webhooks::{self, Redelivery};

use crate::cmd::serve::{StateArgs, base_config};
use crate::cmd::uploads::format_time;
use crate::exit::{CliError, Exit};
use crate::render::say;

/// Flags of `hoist webhooks`.
#[derive(Debug, clap::Args)]
pub(crate) struct WebhooksArgs {
    #[command(subcommand)]
    pub(crate) action: Action,
}

/// What to do with deliveries.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Action {
    /// List deliveries, newest first, and endpoints disabled after a 410 Gone.
    Ls {
        /// Only deliveries that ran out of attempts.
        #[arg(long)]
        failed: bool,
        /// One JSON object per delivery.
        #[arg(long)]
        json: bool,
        /// At most this many deliveries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Send a delivery again with a fresh schedule (its id from `hoist webhooks ls`).
    Redeliver {
        /// Delivery id (`whd_…`).
        id: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Send to an endpoint again after it answered 410 Gone; its stopped deliveries are queued again.
    Enable {
        /// The endpoint's URL, exactly as in the config file.
        url: String,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// Runs `hoist webhooks`.
pub(crate) async fn run(args: WebhooksArgs) -> Result<(), CliError> {
    let (Action::Ls { state, .. } | Action::Redeliver { state, .. } | Action::Enable { state, .. }) = &args.action;
    let config = base_config(state)?;
    let url = config.database_url_or_default();
    let db = Db::connect(&url)
        .await
        .map_err(|e| db_failed(&url, e).with_hint("pass the --data or --database-url that hoist serve uses"))?;
    let failed = |e| db_failed(&url, e);
    match args.action {
        Action::Ls { failed: failed_only, json, limit, .. } => {
            let list = webhooks::list(&db, failed_only, i64::from(limit)).await.map_err(failed)?;
            let disabled = webhooks::disabled_endpoints(&db).await.map_err(failed)?;
            if json {
                for d in &list {
                    say(&serde_json::to_string(d).unwrap_or_default());
                }
                return Ok(());
            }
            for d in &list {
                let status = d.last_status.map_or_else(String::new, |s| format!(" HTTP {s}"));
                let error = d.last_error.as_deref().map_or_else(String::new, |e| format!(" ({e})"));
                say(&format!(
                    "{}  {}  {:<9}  {} attempt(s){status}{error}  {}  {}  {}",
                    d.id,
                    format_time(d.created_at / 1000),
                    d.state.as_str(),
                    d.attempts,
                    d.event_type,
                    d.event_id,
                    d.endpoint
                ));
            }
            say(&format!("{} deliver{}", list.len(), if list.len() == 1 { "y" } else { "ies" }));
            for e in &disabled {
                say(&format!(
                    "disabled since {}: {} ({}); hoist webhooks enable URL sends to it again",
                    format_time(e.disabled_at / 1000),
                    e.endpoint,
                    e.reason
                ));
            }
            Ok(())
        }
        Action::Redeliver { id, .. } => match webhooks::redeliver(&db, &id).await.map_err(failed)? {
            Redelivery::Queued => {
                say(&format!("queued {id}: a running hoist serve sends it within a second"));
                Ok(())
            }
            Redelivery::AlreadyPending => {
                say(&format!("{id} is still pending: its next attempt comes on schedule"));
                Ok(())
            }
            Redelivery::EndpointDisabled => {
                Err(CliError::new(Exit::Conflict, format!("the endpoint of {id} is disabled after a 410 Gone"))
                    .with_hint("run hoist webhooks enable URL first (see hoist webhooks ls)"))
            }
            Redelivery::NotFound => Err(CliError::new(Exit::NotFound, format!("no webhook delivery {id}"))
                .with_hint("see hoist webhooks ls for the ids")),
        },
        Action::Enable { url: endpoint, .. } => match webhooks::enable(&db, &endpoint).await.map_err(failed)? {
            Some(n) => {
                say(&format!(
                    "enabled {}; {n} stopped deliver{} queued again",
                    hoist_server::config::url_target(&endpoint),
                    if n == 1 { "y" } else { "ies" }
                ));
                Ok(())
            }
            None => Err(CliError::new(
                Exit::NotFound,
                format!("{} is not disabled", hoist_server::config::url_target(&endpoint)),
            )
            .with_hint("give the URL exactly as in the config file; hoist webhooks ls lists disabled endpoints")),
        },
    }
}

fn db_failed(url: &str, e: impl std::fmt::Display) -> CliError {
    CliError::new(Exit::Failure, format!("database {}: {e}", redact_url(url)))
}
