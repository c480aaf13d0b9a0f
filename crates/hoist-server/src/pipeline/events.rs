//! Events: what the pipeline tells the outside (webhooks, SSE) and how objects written by other
//! clients enter it.
//!
//! Decisions:
//! - **Outbox.** Every event is a row of `events`, written by [`Outbox::record`] in the same
//!   transaction as the state change it reports (an upload completed, a job finished), so an
//!   event exists if and only if its change committed. Each carries a `dedup_key`, unique: the
//!   same change recorded twice (a repeated Complete, a duplicate S3 notification, a retried
//!   finish) is one event.
//! - **S3 event intake** (`POST /v1/events/s3`): S3 event notification JSON as AWS and MinIO send
//!   it. Only `ObjectCreated:*` records count; keys arrive URL-encoded (`+` for a space); every
//!   record is checked against the service's bucket and the caller's prefix, and objects under a
//!   `derived/` segment (the pipeline's own outputs) are ignored so outputs never feed back in.
//!   The object is looked up (`HEAD`) before a job is queued (the event may be stale or forged): the job
//!   names the `ETag` the store has now, and the job queue's idempotency makes duplicates one job.
//!   The embedded store sends its own notifications here (`hoist_store::notify`, target
//!   `hoist-serve`), signed with a secret made at each start, so an object written to it by any
//!   client (`hoist put`, the AWS SDK, a browser form) starts processing; an upload through the
//!   API is then reported twice (Complete, and the store's event) and is still one job.

use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

use crate::db::now_ms;

/// An upload was completed (either API).
pub const UPLOAD_COMPLETED: &str = "upload.completed";
/// A job finished with outputs.
pub const JOB_SUCCEEDED: &str = "job.succeeded";
/// A job failed for good (permanent error, or out of attempts).
pub const JOB_FAILED: &str = "job.failed";
/// A job was cancelled.
pub const JOB_CANCELLED: &str = "job.cancelled";
/// Every event type Hoist raises, for checking webhook subscriptions.
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

/// An event to record.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// One of the type constants.
    pub kind: &'static str,
    /// The API key whose upload or job it is.
    pub api_key: &'a str,
    /// The upload session or job id it is about.
    pub subject: &'a str,
    /// Unique per change: recording the same key twice records one event.
    pub dedup_key: String,
    /// The payload.
    pub data: serde_json::Value,
}

/// Where events go: the `events` table and a webhook delivery per subscribed endpoint, in the
/// caller's transaction; and the in-process signal that the queue or the outbox changed
/// (workers, deliverers and event streams of this process wake on it; other processes find
/// changes by polling).
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    changed: std::sync::Arc<tokio::sync::Notify>,
    webhooks: Option<std::sync::Arc<super::webhooks::Webhooks>>,
}

impl Outbox {
    /// An outbox whose events are also delivered to `webhooks`.
    #[must_use]
    pub fn new(webhooks: std::sync::Arc<super::webhooks::Webhooks>) -> Self {
        Self { changed: std::sync::Arc::default(), webhooks: Some(webhooks) }
    }

    /// Records `e` on `conn` (the caller's open transaction). Answers the event, or `None` when
    /// an event with the same dedup key exists already.
    pub async fn record(&self, conn: &mut AnyConnection, e: &NewEvent<'_>) -> Result<Option<Event>, sqlx::Error> {
        let event = Event {
            id: super::jobs::random_id("evt_"),
            kind: e.kind.to_owned(),
            at_ms: now_ms(),
            data: e.data.clone(),
        };
        let inserted = sqlx::query(
            "INSERT INTO events (id, kind, api_key, subject, dedup_key, data, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (dedup_key) DO NOTHING",
        )
        .bind(&event.id)
        .bind(&event.kind)
        .bind(e.api_key)
        .bind(e.subject)
        .bind(&e.dedup_key)
        .bind(event.data.to_string())
        .bind(event.at_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            > 0;
        if !inserted {
            return Ok(None);
        }
        if let Some(w) = &self.webhooks {
            w.enqueue(conn, &event).await?;
        }
        Ok(Some(event))
    }

    /// Says that jobs or events committed (call after the transaction commits).
    pub fn wake(&self) {
        self.changed.notify_waiters();
        if let Some(w) = &self.webhooks {
            w.wake();
        }
    }

    /// Resolves at the next [`Outbox::wake`] after this call.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

/// An S3 event notification (the parts Hoist reads).
#[derive(Debug, Deserialize)]
pub struct S3Notification {
    /// The records; AWS sends one per notification, MinIO may send several.
    #[serde(rename = "Records", default)]
    pub records: Vec<S3Record>,
}

/// One record of an S3 event notification.
#[derive(Debug, Deserialize)]
pub struct S3Record {
    /// `ObjectCreated:Put`, `ObjectRemoved:Delete`, … (AWS prefixes none; MinIO prefixes `s3:`).
    #[serde(rename = "eventName")]
    pub event_name: String,
    /// The bucket and object.
    pub s3: S3Entity,
}

/// The `s3` part of a record.
#[derive(Debug, Deserialize)]
pub struct S3Entity {
    /// The bucket.
    pub bucket: S3Bucket,
    /// The object.
    pub object: S3Object,
}

/// The bucket of a record.
#[derive(Debug, Deserialize)]
pub struct S3Bucket {
    /// Its name.
    pub name: String,
}

/// The object of a record.
#[derive(Debug, Deserialize)]
pub struct S3Object {
    /// The key, URL-encoded (`+` for a space), as S3 sends it.
    pub key: String,
    /// Size in bytes, when sent.
    pub size: Option<u64>,
    /// The `ETag`, when sent.
    #[serde(rename = "eTag")]
    pub etag: Option<String>,
    /// Orders events for one key.
    pub sequencer: Option<String>,
}

impl S3Record {
    /// Whether the record reports a new object (`ObjectCreated:*`, with or without MinIO's `s3:`).
    #[must_use]
    pub fn is_created(&self) -> bool {
        self.event_name.trim_start_matches("s3:").starts_with("ObjectCreated:")
    }

    /// The key, decoded; `None` when it is not valid percent-encoded UTF-8.
    #[must_use]
    pub fn key(&self) -> Option<String> {
        let plus_decoded = self.s3.object.key.replace('+', " ");
        percent_encoding::percent_decode_str(&plus_decoded).decode_utf8().ok().map(std::borrow::Cow::into_owned)
    }
}

/// Whether `key` is one of the pipeline's outputs (under a `derived/` segment).
#[must_use]
pub fn is_derived(key: &str) -> bool {
    key.split('/').any(|s| s == "derived")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_and_minio_records_are_read_with_decoded_keys() {
        let n: S3Notification = serde_json::from_str(
            r#"{"Records":[
              {"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:CompleteMultipartUpload",
               "s3":{"bucket":{"name":"hoist"},"object":{"key":"dev/a/my+movie%C3%A9%2B1.mp4","size":5,"eTag":"abc","sequencer":"0A1"}}},
              {"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"hoist"},"object":{"key":"x"}}},
              {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"hoist"},"object":{"key":"y"}}}
            ]}"#,
        )
        .unwrap();
        assert_eq!(n.records[0].key().as_deref(), Some("dev/a/my movieé+1.mp4"));
        assert_eq!(n.records.iter().map(S3Record::is_created).collect::<Vec<_>>(), [true, true, false]);
        assert_eq!(n.records[0].s3.object.sequencer.as_deref(), Some("0A1"));
    }

    #[test]
    fn derived_outputs_are_recognised() {
        assert!(is_derived("dev/abc/derived/abc/mp4-720p-a1/video.mp4"));
        assert!(!is_derived("dev/abc/derived.mp4"));
    }
}
