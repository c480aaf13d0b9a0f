//! Events: what the pipeline tells the outside (webhooks, SSE) and itself. Every event is a row
//! of the outbox, written in the same transaction as the state change it reports.

use serde::Serialize;

/// The event types Hoist raises (Standard Webhooks' `type`).
pub const UPLOAD_COMPLETED: &str = "upload.completed";
/// A job finished with outputs.
pub const JOB_SUCCEEDED: &str = "job.succeeded";
/// A job failed for good (permanent error, or out of attempts).
pub const JOB_FAILED: &str = "job.failed";
/// A job was cancelled.
pub const JOB_CANCELLED: &str = "job.cancelled";

/// Every event type, for checking configured filters.
pub const TYPES: &[&str] = &[UPLOAD_COMPLETED, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED];

/// One event: its stable id (`evt_…`, also the webhook id), type, time and payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Stable id: the same event keeps it across retries and replicas.
    pub id: String,
    /// One of the type constants above.
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix milliseconds when it happened.
    #[serde(skip)]
    pub at_ms: i64,
    /// The payload (`data` in a webhook body).
    pub data: serde_json::Value,
}
