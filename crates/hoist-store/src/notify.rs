//! S3 event notifications: which writes raise an event, which targets get it (the store's
//! `--notify` targets and each bucket's notification configuration), the durable per-target
//! queue, and delivery (signed HTTP POSTs, retried with backoff). It does not own the writes
//! themselves: `s3` calls [`Notifier::object_created`] / [`Notifier::object_removed`] after a
//! write succeeded and before it answers.
//!
//! Decisions:
//! - **Shape.** AWS's S3 event notification JSON (`Records[]`, `eventVersion` 2.1, `eventSource`
//!   `aws:s3`, `eventName` without the `s3:` prefix, `s3.object.key` URL-encoded with `+` for a
//!   space, `size`, `eTag`, `sequencer`), one record per POST as AWS sends it. Events:
//!   `ObjectCreated:Put` (PutObject), `ObjectCreated:Post` (browser POST forms),
//!   `ObjectCreated:CompleteMultipartUpload` (also for a repeated Complete, so a client that
//!   retries a Complete whose answer was lost still causes an event), `ObjectRemoved:Delete`
//!   (DeleteObject and each key of DeleteObjects). `ObjectCreated:Copy` is accepted in
//!   configurations but never raised: the store has no `CopyObject`.
//! - **Signature.** Each POST carries [`SIGNATURE_HEADER`] = `sha256=` + hex HMAC-SHA256 of the
//!   exact body with the target's secret (see [`signature`], [`verify`]); the body is signed at
//!   send time, so a changed secret applies to queued events too.
//! - **Who gets what.** A bucket without a notification configuration sends every event to every
//!   `--notify` target, so `hoist store --notify URL` needs no further call. Once
//!   `PutBucketNotificationConfiguration` has set one it governs: only `QueueConfiguration`s,
//!   whose `QueueArn` names a target (`arn:hoist:sqs:::NAME`; any ARN whose last field is a
//!   target's name is accepted, as MinIO's `arn:minio:sqs::ID:webhook` style), with `Events` out
//!   of the list above (and their `*` forms) and at most one `prefix` and one `suffix` filter
//!   rule. An empty configuration turns a bucket's notifications off. Topic, Lambda and
//!   `EventBridge` configurations are refused, not ignored. The configuration is kept in
//!   `buckets/NAME/notification.json` and read when an event is raised (one small cached read
//!   per write, and only when targets exist).
//! - **At least once.** The event is written to `notify/TARGET/SEQUENCER.json` (temp file, fsync,
//!   rename, directory fsync) before the write's 200 goes out; if that fails, the request fails
//!   (the object is written; the client's retry raises the event again). A file is removed only
//!   after its target answered 2xx (without an fsync: a removal lost in a crash sends the event
//!   again); a stop or crash before that sends it again after the restart with the same body and
//!   `sequencer`. Receivers deduplicate on (bucket, key, sequencer).
//! - **Order and retries.** One POST in flight per target, oldest first, so a target sees a key's
//!   events in order. Anything but 2xx (and connection errors and timeouts) is retried after a
//!   full-jitter backoff: a uniform delay in `[0, min(cap, base × 2^n))` (AWS's "Exponential
//!   Backoff And Jitter"), by default base 1 s and cap 5 min; events are never given up.
//! - **Bounded disk.** A target's queue holds at most [`NotifyOptions::max_queued`] events
//!   (default [`DEFAULT_MAX_QUEUED`]); past that new events for that target are dropped, not the
//!   write: a receiver that is down must not stop uploads. Dropping is logged as an error (at most
//!   once a minute per target, with the count).
//! - **Logs.** The first failure of a streak is a warning; at 4, 8, 16, … consecutive failures an
//!   error says how long the target has failed, how many events wait and the last error; the
//!   first success after failures says the target recovered. Targets are named by their name,
//!   never by URL (a query string may hold a token), and secrets are never logged.
//! - **Sequencer.** 16 upper-case hex digits of the wall-clock time in nanoseconds, strictly
//!   increasing within a process (the next one is at least the last + 1), so sequencers of one
//!   key compare as S3 says they do (as strings, later is greater), across restarts too unless
//!   the clock goes back.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::fs::{Layout, read_json, write_json};

/// The header that carries a notification's signature: `sha256=` + hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "x-hoist-signature";

/// Default cap on one target's queue, in events. An event file is under 4 KiB (a 1,024-byte key
/// URL-encodes to at most 3 KiB), so a full queue takes at most ≈ 40 MiB of disk.
pub const DEFAULT_MAX_QUEUED: usize = 10_000;

/// First retry delay bound (the backoff doubles from here).
const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Largest retry delay bound: a receiver back after an outage waits at most this long.
const DEFAULT_BACKOFF_CAP: Duration = Duration::from_mins(5);
/// One attempt (connect, send, status line): the same bound the service's webhooks use.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a full queue may log that it drops events.
const DROP_LOG_EVERY: Duration = Duration::from_mins(1);
/// `configurationId` of events sent because a bucket has no configuration of its own.
const DEFAULT_CONFIGURATION_ID: &str = "hoist-notify";

/// The event names the store raises, as `eventName` carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    /// PutObject.
    Put,
    /// A browser POST form upload.
    Post,
    /// CompleteMultipartUpload.
    CompleteMultipartUpload,
    /// DeleteObject, or a key of DeleteObjects.
    Delete,
}

impl EventName {
    /// `ObjectCreated:Put`, … (AWS's `eventName`: no `s3:` prefix).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Put => "ObjectCreated:Put",
            Self::Post => "ObjectCreated:Post",
            Self::CompleteMultipartUpload => "ObjectCreated:CompleteMultipartUpload",
            Self::Delete => "ObjectRemoved:Delete",
        }
    }
}

/// The event types a configuration may name (with the `s3:` prefix, as in S3's XML).
const CONFIGURABLE_EVENTS: &[&str] = &[
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
];

/// Where notifications go: a name (what ARNs and queue directories use), a URL and a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    name: String,
    url: http::Uri,
    secret: String,
}

impl std::fmt::Debug for NotifyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyTarget").field("name", &self.name).finish_non_exhaustive()
    }
}

impl NotifyTarget {
    /// A target; refuses a name that is not 1-64 of `a-z 0-9 - _`, a URL that is not absolute
    /// `http://` or `https://`, and an empty secret.
    pub fn new(name: &str, url: &str, secret: &str) -> Result<Self> {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(Error::NotifyTarget(format!(
                "the target name {name:?} is not valid: use 1-64 characters of a-z, 0-9, '-' and '_'"
            )));
        }
        let parsed: http::Uri = url
            .parse()
            .ok()
            .filter(|u: &http::Uri| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
            .ok_or_else(|| {
                Error::NotifyTarget(format!("the URL of target {name:?} is not an absolute http:// or https:// URL"))
            })?;
        if secret.is_empty() {
            return Err(Error::NotifyTarget(format!(
                "target {name:?} has no secret: every notification is signed, so give one"
            )));
        }
        Ok(Self { name: name.to_owned(), url: parsed, secret: secret.to_owned() })
    }

    /// The target's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ARN a bucket configuration names this target by: `arn:hoist:sqs:::NAME`.
    #[must_use]
    pub fn arn(&self) -> String {
        format!("arn:hoist:sqs:::{}", self.name)
    }
}

/// Delivery settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyOptions {
    /// The first retry's delay bound; each failure doubles it.
    pub backoff_base: Duration,
    /// The largest delay bound.
    pub backoff_cap: Duration,
    /// One attempt's time limit.
    pub timeout: Duration,
    /// Events one target's queue holds at most (newer ones are dropped, and logged).
    pub max_queued: usize,
}

impl Default for NotifyOptions {
    fn default() -> Self {
        Self {
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_cap: DEFAULT_BACKOFF_CAP,
            timeout: DEFAULT_TIMEOUT,
            max_queued: DEFAULT_MAX_QUEUED,
        }
    }
}

/// `sha256=` + hex HMAC-SHA256 of `body` keyed with `secret`: the [`SIGNATURE_HEADER`] value.
#[must_use]
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, body).finalize().into_bytes()))
}

/// Whether `header` is the signature of `body` under `secret` (compared in constant time).
#[must_use]
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(sig) = header.trim().strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()) else { return false };
    mac(secret, body).verify_slice(&sig).is_ok()
}

fn mac(secret: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; the error branch cannot happen.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC accepts any key length")
    };
    m.update(body);
    m
}

/// The delay after `failures` consecutive failures (1 for the first): full jitter, `unit` in
/// [0, 1) picks the point in `[0, min(cap, base × 2^(failures-1)))`.
#[must_use]
pub fn full_jitter(failures: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let exp = 2f64.powi(i32::try_from(failures.saturating_sub(1).min(62)).unwrap_or(62));
    let bound = base.as_secs_f64() * exp;
    Duration::from_secs_f64(bound.min(cap.as_secs_f64()) * unit.clamp(0.0, 1.0))
}

/// The HTTP client notifications (and the service's webhooks) are sent with: hyper with
/// hyper-rustls, rustls on the aws-lc-rs provider and the system's roots (crates aws-sdk-s3
/// builds already), http/1.1, no redirects followed.
#[must_use]
pub fn http_client() -> Client<HttpsConnector<HttpConnector>, Full<Bytes>> {
    let https =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls_config()).https_or_http().enable_http1().build();
    Client::builder(hyper_util::rt::TokioExecutor::new()).build(https)
}

fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("no system root certificates found: https receivers will fail (install ca-certificates)");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
        Ok(b) => b.with_root_certificates(roots).with_no_client_auth(),
        // The default provider supports the default versions; kept total all the same.
        Err(_) => {
            rustls::ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
        }
    }
}

/// Characters kept as they are in `s3.object.key`; a space becomes `+` afterwards.
const KEY_KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// A key as S3 event records carry it: percent-encoded UTF-8, `+` for a space (`+` itself is
/// `%2B`), `/` kept.
#[must_use]
pub fn encode_key(key: &str) -> String {
    percent_encoding::utf8_percent_encode(key, KEY_KEEP).to_string().replace("%20", "+")
}

/// One rule of a bucket's configuration, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NotificationRule {
    pub(crate) id: Option<String>,
    /// The ARN as given (its last field names the target).
    pub(crate) arn: String,
    pub(crate) target: String,
    /// Event types with the `s3:` prefix, as given.
    pub(crate) events: Vec<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) suffix: Option<String>,
}

impl NotificationRule {
    fn matches(&self, name: EventName, key: &str) -> bool {
        let event = name.as_str();
        let family = event.split(':').next().unwrap_or_default();
        let wanted = self.events.iter().any(|e| {
            let e = e.trim_start_matches("s3:");
            e == event || e.strip_suffix(":*") == Some(family)
        });
        wanted
            && self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && self.suffix.as_deref().is_none_or(|s| key.ends_with(s))
    }
}

/// A bucket's configuration on disk.
#[derive(Debug, Default, Serialize, Deserialize)]
struct BucketNotifications {
    rules: Vec<NotificationRule>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// Checks a `PutBucketNotificationConfiguration` body against the targets; answers the rules.
pub(crate) fn rules_from_dto(
    config: s3s::dto::NotificationConfiguration,
    targets: &[NotifyTarget],
) -> Result<Vec<NotificationRule>> {
    let unsupported = config.topic_configurations.as_ref().is_some_and(|t| !t.is_empty())
        || config.lambda_function_configurations.as_ref().is_some_and(|l| !l.is_empty())
        || config.event_bridge_configuration.is_some();
    if unsupported {
        return Err(invalid(
            "only QueueConfiguration is supported: name a --notify target of the store by its ARN \
             (arn:hoist:sqs:::NAME); topic, Lambda and EventBridge configurations are not",
        ));
    }
    let mut rules = Vec::new();
    for q in config.queue_configurations.unwrap_or_default() {
        let name = q.queue_arn.rsplit(':').next().unwrap_or_default();
        if !q.queue_arn.starts_with("arn:") || !targets.iter().any(|t| t.name == name) {
            let known: Vec<String> = targets.iter().map(NotifyTarget::arn).collect();
            return Err(invalid(format!(
                "Unable to validate the following destination configurations: {:?} names no target of this store; \
                 its targets are {} (start the store with --notify NAME=URL to add one)",
                q.queue_arn,
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            )));
        }
        if q.events.is_empty() {
            return Err(invalid(format!("the configuration for {} lists no events", q.queue_arn)));
        }
        let mut events = Vec::new();
        for e in q.events {
            let e: String = e.into();
            if !CONFIGURABLE_EVENTS.contains(&e.as_str()) {
                return Err(invalid(format!(
                    "the event {e:?} is not supported for notifications; use one of {}",
                    CONFIGURABLE_EVENTS.join(", ")
                )));
            }
            events.push(e);
        }
        let (mut prefix, mut suffix) = (None, None);
        for r in q.filter.and_then(|f| f.key).and_then(|k| k.filter_rules).unwrap_or_default() {
            let value = r.value.unwrap_or_default();
            let slot = match r.name.as_ref().map(|n| n.as_str().to_ascii_lowercase()).as_deref() {
                Some("prefix") => &mut prefix,
                Some("suffix") => &mut suffix,
                other => {
                    return Err(invalid(format!(
                        "the filter rule name {:?} is not valid: use prefix or suffix",
                        other.unwrap_or_default()
                    )));
                }
            };
            if slot.replace(value).is_some() {
                return Err(invalid("a filter may have at most one prefix rule and one suffix rule"));
            }
        }
        rules.push(NotificationRule {
            id: q.id,
            arn: q.queue_arn.clone(),
            target: name.to_owned(),
            events,
            prefix,
            suffix,
        });
    }
    Ok(rules)
}

/// The stored rules as `GetBucketNotificationConfiguration` answers them.
pub(crate) fn rules_to_dto(rules: &[NotificationRule]) -> s3s::dto::GetBucketNotificationConfigurationOutput {
    let queues = rules
        .iter()
        .map(|r| {
            let rule = |name: &'static str, v: &Option<String>| {
                v.as_ref().map(|v| s3s::dto::FilterRule {
                    name: Some(s3s::dto::FilterRuleName::from(name.to_owned())),
                    value: Some(v.clone()),
                })
            };
            let filter_rules: Vec<s3s::dto::FilterRule> =
                [rule("prefix", &r.prefix), rule("suffix", &r.suffix)].into_iter().flatten().collect();
            s3s::dto::QueueConfiguration {
                events: r.events.iter().cloned().map(s3s::dto::Event::from).collect(),
                filter: (!filter_rules.is_empty()).then_some(s3s::dto::NotificationConfigurationFilter {
                    key: Some(s3s::dto::S3KeyFilter { filter_rules: Some(filter_rules) }),
                }),
                id: r.id.clone(),
                queue_arn: r.arn.clone(),
            }
        })
        .collect();
    s3s::dto::GetBucketNotificationConfigurationOutput { queue_configurations: Some(queues), ..Default::default() }
}

/// One target's queue: its directory and the sequencers waiting there, oldest first.
struct Queue {
    target: NotifyTarget,
    dir: PathBuf,
    pending: Mutex<BTreeSet<String>>,
    wake: Notify,
    /// Events dropped because the queue was full, since the last log line about it.
    dropped: AtomicU64,
    last_drop_log: Mutex<Option<Instant>>,
}

impl Queue {
    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn file(&self, sequencer: &str) -> PathBuf {
        self.dir.join(format!("{sequencer}.json"))
    }
}

/// Raises events and delivers them; one per store.
pub(crate) struct Notifier {
    layout: Layout,
    queues: Vec<Arc<Queue>>,
    options: NotifyOptions,
    last_sequencer: Mutex<u64>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.queues.iter().map(|q| q.target.name.as_str()).collect();
        f.debug_struct("Notifier").field("targets", &names).field("options", &self.options).finish_non_exhaustive()
    }
}

impl Notifier {
    /// Opens the queues of `targets` under the data dir (loading what a previous run left).
    pub(crate) fn open(layout: &Layout, targets: Vec<NotifyTarget>, options: NotifyOptions) -> Result<Self> {
        let mut queues = Vec::new();
        for target in targets {
            if queues.iter().any(|q: &Arc<Queue>| q.target.name == target.name) {
                return Err(Error::NotifyTarget(format!("the target name {:?} is given twice", target.name)));
            }
            let dir = layout.notify_queue(&target.name);
            std::fs::create_dir_all(&dir)?;
            let mut pending = BTreeSet::new();
            for entry in std::fs::read_dir(&dir)? {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if let Some(seq) = name.strip_suffix(".json") {
                    pending.insert(seq.to_owned());
                }
            }
            if !pending.is_empty() {
                tracing::info!(target = %target.name, queued = pending.len(), "notifications left by the previous run will be delivered");
            }
            queues.push(Arc::new(Queue {
                target,
                dir,
                pending: Mutex::new(pending),
                wake: Notify::new(),
                dropped: AtomicU64::new(0),
                last_drop_log: Mutex::new(None),
            }));
        }
        if let Ok(entries) = std::fs::read_dir(layout.root().join("notify")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !queues.iter().any(|q| q.target.name == name) {
                    tracing::warn!(target = %name, "a notification queue exists for a target that is not configured: its events stay on disk until the target is given again");
                }
            }
        }
        Ok(Self { layout: layout.clone(), queues, options, last_sequencer: Mutex::new(0) })
    }

    /// The configured targets.
    pub(crate) fn targets(&self) -> Vec<NotifyTarget> {
        self.queues.iter().map(|q| q.target.clone()).collect()
    }

    /// `PutBucketNotificationConfiguration` (the bucket's existence is the caller's check).
    pub(crate) fn put_config(&self, bucket: &str, rules: Vec<NotificationRule>) -> Result<()> {
        let path = self.layout.notification_record(bucket);
        let count = rules.len();
        write_json(&self.layout, &path, &BucketNotifications { rules }).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NoSuchBucket(bucket.to_owned()),
            _ => Error::Io(e),
        })?;
        tracing::info!(bucket, rules = count, "notification configuration replaced");
        Ok(())
    }

    /// The bucket's rules: `None` when it has no configuration (every event to every target).
    pub(crate) fn config(&self, bucket: &str) -> Result<Option<Vec<NotificationRule>>> {
        Ok(read_json::<BucketNotifications>(&self.layout.notification_record(bucket))?.map(|c| c.rules))
    }

    /// Raises `name` for a created object (after the write succeeded).
    pub(crate) fn object_created(&self, bucket: &str, key: &str, name: EventName, size: u64, etag: &str) -> Result<()> {
        self.raise(bucket, key, name, Some((size, etag)))
    }

    /// Raises `ObjectRemoved:Delete`.
    pub(crate) fn object_removed(&self, bucket: &str, key: &str) -> Result<()> {
        self.raise(bucket, key, EventName::Delete, None)
    }

    fn raise(&self, bucket: &str, key: &str, name: EventName, object: Option<(u64, &str)>) -> Result<()> {
        if self.queues.is_empty() {
            return Ok(());
        }
        // (queue, configurationId) for each target that wants the event, once per target.
        let wanted: Vec<(&Arc<Queue>, String)> = match self.config(bucket)? {
            None => self.queues.iter().map(|q| (q, DEFAULT_CONFIGURATION_ID.to_owned())).collect(),
            Some(rules) => {
                let mut w: Vec<(&Arc<Queue>, String)> = Vec::new();
                for r in rules.iter().filter(|r| r.matches(name, key)) {
                    if let Some(q) = self.queues.iter().find(|q| q.target.name == r.target)
                        && !w.iter().any(|(seen, _)| Arc::ptr_eq(seen, q))
                    {
                        w.push((q, r.id.clone().unwrap_or_else(|| DEFAULT_CONFIGURATION_ID.to_owned())));
                    }
                }
                w
            }
        };
        if wanted.is_empty() {
            return Ok(());
        }
        let sequencer = self.next_sequencer();
        let time = event_time();
        for (q, configuration_id) in wanted {
            if q.pending().len() >= self.options.max_queued {
                note_dropped(q, self.options.max_queued);
                continue;
            }
            let mut object_json = serde_json::json!({ "key": encode_key(key), "sequencer": sequencer });
            if let Some((size, etag)) = object {
                object_json["size"] = size.into();
                object_json["eTag"] = etag.into();
            }
            let record = serde_json::json!({
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": time,
                "eventName": name.as_str(),
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": configuration_id,
                    "bucket": { "name": bucket, "arn": format!("arn:aws:s3:::{bucket}") },
                    "object": object_json,
                },
            });
            write_json(&self.layout, &q.file(&sequencer), &record)?;
            q.pending().insert(sequencer.clone());
            q.wake.notify_one();
        }
        Ok(())
    }

    fn next_sequencer(&self) -> String {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let mut last = self.last_sequencer.lock().unwrap_or_else(PoisonError::into_inner);
        *last = u64::try_from(nanos).unwrap_or(u64::MAX).max(last.saturating_add(1));
        format!("{:016X}", *last)
    }

    /// Starts one delivery loop per target; they end when `stop` is cancelled.
    pub(crate) fn spawn(&self, stop: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        if self.queues.is_empty() {
            return Vec::new();
        }
        let client = http_client();
        self.queues
            .iter()
            .map(|q| tokio::spawn(deliver(Arc::clone(q), client.clone(), self.options, stop.clone())))
            .collect()
    }
}

fn note_dropped(q: &Queue, max: usize) {
    let dropped = q.dropped.fetch_add(1, Ordering::Relaxed) + 1;
    let mut last = q.last_drop_log.lock().unwrap_or_else(PoisonError::into_inner);
    if last.is_none_or(|t| t.elapsed() >= DROP_LOG_EVERY) {
        *last = Some(Instant::now());
        q.dropped.store(0, Ordering::Relaxed);
        tracing::error!(
            target = %q.target.name,
            dropped,
            max_queued = max,
            "notification queue is full: events for this target are being dropped until its receiver accepts the \
             ones waiting; check that the receiver is up and accepts the signature"
        );
    }
}

/// `eventTime`: ISO 8601 in UTC with milliseconds, as AWS writes it.
fn event_time() -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::now_utc().format(&f).unwrap_or_default()
}

/// Delivers `q`'s events oldest first until `stop`.
async fn deliver(
    q: Arc<Queue>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    options: NotifyOptions,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    let mut failing_since = Instant::now();
    loop {
        let next = q.pending().first().cloned();
        let Some(sequencer) = next else {
            tokio::select! {
                () = q.wake.notified() => continue,
                () = stop.cancelled() => return,
            }
        };
        let path = q.file(&sequencer);
        let outcome = match std::fs::read(&path) {
            Ok(record) => {
                let body = [b"{\"Records\":[".as_slice(), &record, b"]}"].concat();
                tokio::select! {
                    r = send(&client, &q.target, body, options.timeout) => r,
                    () = stop.cancelled() => return,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                q.pending().remove(&sequencer);
                continue;
            }
            Err(e) => Err(format!("cannot read the queued event {}: {e}", path.display())),
        };
        match outcome {
            Ok(()) => {
                // Not fsynced: a removal lost in a crash only sends the event again (at least
                // once), and a directory fsync per delivered event is a disk flush per event.
                if let Err(e) = std::fs::remove_file(&path) {
                    // Sent but still on disk: it goes out again after a restart (at least once).
                    tracing::warn!(target = %q.target.name, error = %e, "cannot remove a delivered notification");
                }
                q.pending().remove(&sequencer);
                if failures > 0 {
                    tracing::info!(target = %q.target.name, failures, "notification target accepts events again");
                    failures = 0;
                }
            }
            Err(why) => {
                failures += 1;
                if failures == 1 {
                    failing_since = Instant::now();
                }
                let queued = q.pending().len();
                if failures == 1 {
                    tracing::warn!(target = %q.target.name, error = %why, queued, "notification delivery failed; retrying with backoff");
                } else if failures >= 4 && failures.is_power_of_two() {
                    tracing::error!(
                        target = %q.target.name,
                        failures,
                        failing_for_s = failing_since.elapsed().as_secs(),
                        queued,
                        error = %why,
                        "notification target keeps failing: its events wait on disk and are retried; check that the \
                         receiver is up and accepts the signature"
                    );
                } else {
                    tracing::debug!(target = %q.target.name, failures, error = %why, "notification delivery failed again");
                }
                let delay =
                    full_jitter(failures, options.backoff_base, options.backoff_cap, rand::rng().random::<f64>());
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

/// One signed POST; `Err` says why it did not get a 2xx.
async fn send(
    client: &Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    target: &NotifyTarget,
    body: Vec<u8>,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let sig = signature(&target.secret, &body);
    let req = http::Request::post(target.url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, concat!("hoist-store/", env!("CARGO_PKG_VERSION")))
        .header(SIGNATURE_HEADER, sig)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
        Ok(Err(e)) => Err(format!("connection failed: {e}")),
        Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
        Ok(Ok(resp)) => Err(format!("the receiver answered HTTP {}", resp.status().as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject_changes() {
        let sig = signature("s3cret", b"{\"Records\":[]}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert!(verify("s3cret", b"{\"Records\":[]}", &sig));
        assert!(!verify("other", b"{\"Records\":[]}", &sig));
        assert!(!verify("s3cret", b"{\"Records\":[1]}", &sig));
        assert!(!verify("s3cret", b"{\"Records\":[]}", "sha256=zz"));
        assert!(!verify("s3cret", b"{\"Records\":[]}", sig.trim_start_matches("sha256=")));
    }

    #[test]
    fn full_jitter_stays_under_the_doubling_bound_and_the_cap() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_mins(5));
        assert_eq!(full_jitter(1, base, cap, 0.0), Duration::ZERO);
        assert_eq!(full_jitter(1, base, cap, 0.5), Duration::from_millis(500));
        assert_eq!(full_jitter(4, base, cap, 0.5), Duration::from_secs(4));
        assert_eq!(full_jitter(30, base, cap, 0.5), Duration::from_secs(150));
        assert_eq!(full_jitter(u32::MAX, base, cap, 1.0), cap);
    }

    #[test]
    fn keys_are_encoded_as_s3_event_records_carry_them() {
        assert_eq!(encode_key("dev/my movie+1é.mp4"), "dev/my+movie%2B1%C3%A9.mp4");
        assert_eq!(encode_key("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn targets_are_checked() {
        assert!(NotifyTarget::new("hook-1", "http://127.0.0.1:1/x", "s").is_ok());
        for (name, url, secret) in [
            ("Hook", "http://h/", "s"),
            ("", "http://h/", "s"),
            ("h", "ftp://h/", "s"),
            ("h", "/x", "s"),
            ("h", "http://h/", ""),
        ] {
            let e = NotifyTarget::new(name, url, secret).unwrap_err().to_string();
            assert!(e.contains("name") || e.contains("URL") || e.contains("secret"), "{e}");
        }
        assert_eq!(NotifyTarget::new("a", "http://h/", "s").unwrap().arn(), "arn:hoist:sqs:::a");
    }

    fn rule(events: &[&str], prefix: Option<&str>, suffix: Option<&str>) -> NotificationRule {
        NotificationRule {
            id: None,
            arn: "arn:hoist:sqs:::a".into(),
            target: "a".into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            prefix: prefix.map(Into::into),
            suffix: suffix.map(Into::into),
        }
    }

    #[test]
    fn rules_match_event_families_and_key_filters() {
        let r = rule(&["s3:ObjectCreated:*"], Some("in/"), Some(".mp4"));
        assert!(r.matches(EventName::Put, "in/a.mp4"));
        assert!(r.matches(EventName::CompleteMultipartUpload, "in/a.mp4"));
        assert!(!r.matches(EventName::Delete, "in/a.mp4"));
        assert!(!r.matches(EventName::Put, "out/a.mp4"));
        assert!(!r.matches(EventName::Put, "in/a.mov"));
        let d = rule(&["s3:ObjectRemoved:Delete", "s3:ObjectCreated:Post"], None, None);
        assert!(
            d.matches(EventName::Delete, "x") && d.matches(EventName::Post, "x") && !d.matches(EventName::Put, "x")
        );
    }

    #[test]
    fn configurations_name_known_targets_and_supported_events() {
        let targets = vec![NotifyTarget::new("a", "http://h/", "s").unwrap()];
        let queue = |arn: &str, events: &[&str], rules: Vec<(&str, &str)>| s3s::dto::NotificationConfiguration {
            queue_configurations: Some(vec![s3s::dto::QueueConfiguration {
                events: events.iter().map(|e| s3s::dto::Event::from((*e).to_owned())).collect(),
                filter: Some(s3s::dto::NotificationConfigurationFilter {
                    key: Some(s3s::dto::S3KeyFilter {
                        filter_rules: Some(
                            rules
                                .into_iter()
                                .map(|(n, v)| s3s::dto::FilterRule {
                                    name: Some(s3s::dto::FilterRuleName::from(n.to_owned())),
                                    value: Some(v.to_owned()),
                                })
                                .collect(),
                        ),
                    }),
                }),
                id: Some("r1".into()),
                queue_arn: arn.into(),
            }]),
            ..Default::default()
        };
        let ok = rules_from_dto(
            queue("arn:hoist:sqs:::a", &["s3:ObjectCreated:*"], vec![("Prefix", "in/"), ("suffix", ".mp4")]),
            &targets,
        )
        .unwrap();
        assert_eq!(
            ok,
            vec![NotificationRule {
                id: Some("r1".into()),
                ..rule(&["s3:ObjectCreated:*"], Some("in/"), Some(".mp4"))
            }]
        );
        let back = rules_to_dto(&ok);
        assert_eq!(back.queue_configurations.unwrap()[0].queue_arn, "arn:hoist:sqs:::a");
        for (cfg, says) in [
            (queue("arn:hoist:sqs:::b", &["s3:ObjectCreated:*"], vec![]), "destination"),
            (queue("a", &["s3:ObjectCreated:*"], vec![]), "destination"),
            (queue("arn:hoist:sqs:::a", &["s3:ObjectRestore:*"], vec![]), "not supported"),
            (queue("arn:hoist:sqs:::a", &[], vec![]), "no events"),
            (queue("arn:hoist:sqs:::a", &["s3:ObjectCreated:*"], vec![("middle", "x")]), "prefix or suffix"),
            (
                queue("arn:hoist:sqs:::a", &["s3:ObjectCreated:*"], vec![("prefix", "x"), ("prefix", "y")]),
                "at most one",
            ),
        ] {
            let e = rules_from_dto(cfg, &targets).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}
