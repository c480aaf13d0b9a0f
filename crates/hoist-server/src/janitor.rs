//! The janitor: every interval, aborts the multipart uploads of sessions past their expiry and
//! marks them `expired`, so an abandoned upload stops costing storage; and requeues jobs whose
//! worker stopped renewing its lease (killed, or stalled), or buries them when they are out of
//! attempts. Works in small batches; a failure to reach the store leaves the session for the
//! next round. Every replica runs one; the fenced updates make concurrent janitors harmless.

use std::sync::Arc;
use std::time::Duration;

use crate::db::{State, now_ms};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::uploads;

/// Sessions handled per round.
const BATCH: i64 = 100;

/// One round: returns how many sessions were expired.
pub async fn sweep(st: &AppState) -> usize {
    let expired = match st.db.expired(now_ms(), BATCH).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "janitor: cannot read expired sessions");
            return 0;
        }
    };
    let mut done = 0;
    for s in expired {
        if let Err(e) = uploads::abort_in_store(st, &s).await {
            tracing::warn!(id = %s.id, error = %e, "janitor: abort failed; will retry next round");
            continue;
        }
        match st.db.transition(&s.id, &[State::Created, State::Uploading], State::Expired).await {
            Ok(true) => {
                done += 1;
                Metrics::inc(&st.metrics.expired, 1);
                tracing::info!(id = %s.id, key = %s.object_key, "janitor: expired session aborted");
            }
            Ok(false) => {}
            Err(e) => tracing::error!(id = %s.id, error = %e, "janitor: cannot mark session expired"),
        }
    }
    done
}

/// Requeues jobs with expired leases; returns how many were moved.
pub async fn requeue_jobs(st: &AppState) -> usize {
    match crate::pipeline::jobs::requeue_expired(&st.db, &st.outbox, BATCH).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "janitor: cannot requeue jobs with expired leases");
            0
        }
    }
}

/// Sweeps every `interval` until the task is dropped.
pub async fn run(st: Arc<AppState>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        while i64::try_from(sweep(&st).await).unwrap_or(0) == BATCH {}
        while i64::try_from(requeue_jobs(&st).await).unwrap_or(0) == BATCH {}
    }
}
