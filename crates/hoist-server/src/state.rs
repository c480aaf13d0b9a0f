//! [`AppState`]: what every request handler shares.

use std::sync::Arc;
use std::time::Duration;

use hoist_core::{ObjectClient, ProviderLimits};

use crate::config::PipelineConfig;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::pipeline::events::Outbox;
use crate::pipeline::webhooks::Webhooks;
use crate::policy::{Keys, RateLimiter};
use crate::presign::Presigner;

/// Shared by all handlers (behind an `Arc`).
#[derive(Debug)]
pub struct AppState {
    /// Upload sessions.
    pub db: Db,
    /// The S3 calls the service makes itself (create, list parts, complete, abort, head).
    pub s3: Arc<dyn ObjectClient>,
    /// Signs what clients send to S3.
    pub presigner: Presigner,
    /// Bucket for uploads.
    pub bucket: String,
    /// Who may call, and what they may do.
    pub keys: Keys,
    /// Per-key request rate.
    pub limiter: RateLimiter,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Lifetime of a pre-signed part URL.
    pub part_url_ttl: Duration,
    /// Lifetime of an upload session.
    pub session_ttl: Duration,
    /// Part size the planner starts from.
    pub part_size: u64,
    /// The provider's multipart limits.
    pub limits: ProviderLimits,
    /// Rules and job settings.
    pub pipeline: PipelineConfig,
    /// Where events go.
    pub outbox: Outbox,
    /// Signs the tokens of job event stream URLs (shared by replicas through the database).
    pub stream_key: [u8; 32],
    /// Webhook deliveries: enqueue in the transaction that raises an event, wake after commit.
    pub webhooks: Arc<Webhooks>,
    /// The secret S3 event notifications are signed with by a store that sends them to
    /// `POST /v1/events/s3` without an API key (`hoist_store::notify`'s signature): the embedded
    /// store's (made at each start), or `s3_events_secret` for an external `hoist store`.
    pub store_events_secret: Option<String>,
}
