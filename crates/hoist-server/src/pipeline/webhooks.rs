//! Webhooks: every event goes to each configured endpoint whose `events` include its type,
//! signed as the Standard Webhooks spec says (<https://www.standardwebhooks.com>), durably. This
//! module owns the `webhook_deliveries` and `webhook_endpoints_disabled` tables, the signature,
//! the retry schedule, the delivery loop, and the operator's view (list, redeliver, enable). It
//! does not own the events themselves (`events`) nor the transactions that raise them: callers
//! pass their open transaction to [`Webhooks::enqueue`].
//!
//! Decisions:
//! - One row per (event, endpoint), inserted in the caller's transaction, so a delivery exists
//!   exactly when the state change it reports committed; a unique index on (event id, endpoint)
//!   makes a repeated enqueue of the same event a no-op. The body is fixed at enqueue time, so
//!   every attempt signs and sends the same bytes; `webhook-id` is the event id, stable across
//!   attempts, endpoints and replicas, which is what receivers deduplicate on.
//! - Claims are a compare-and-set `UPDATE` (on the lease and the attempt count the claimer read),
//!   the same statement on `SQLite` and Postgres: of several `hoist serve` replicas exactly one
//!   sends each attempt. The lease (twice the request timeout, plus a second) outlives any
//!   attempt; when a process dies mid-attempt the lease expires and another loop retries it, so
//!   delivery is at least once (a receiver may see an attempt whose answer was lost again, with
//!   the same `webhook-id`). The attempt count is raised at claim time, so a delivery that kills
//!   its sender still runs out of attempts.
//! - Each loop claims only rows of endpoints in its own config: during a rolling config change a
//!   replica never fails a delivery it cannot sign; another replica sends it.
//! - Schedule: attempts at 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the previous one
//!   (the issue's schedule, Svix's), each ±10 % jitter so a receiver that was down is not hit by
//!   every retry in the same second; then `failed`. A `Retry-After` (seconds or an HTTP date) that
//!   asks for later than the schedule wins, capped at [`MAX_RETRY_AFTER`].
//! - 2xx is delivered. 410 Gone disables the endpoint: its pending deliveries stop and new events
//!   are not queued for it until `hoist webhooks enable URL`. Anything else (3xx included:
//!   redirects are never followed, so a receiver cannot bounce a signed body elsewhere; 4xx; 5xx;
//!   timeout; connection error) is retried.
//! - Logs name the endpoint by host and path only (a query string may hold a token) and never
//!   print secrets, signatures or bodies.
//! - HTTP: `hoist_store::notify::http_client` (the store's event notifications use the same):
//!   hyper's client with hyper-rustls, rustls on the aws-lc-rs provider and the system's
//!   roots: the crates aws-sdk-s3 already builds, so https endpoints add no crate. Not reqwest:
//!   its rustls features would make every reqwest client in the workspace default to rustls with
//!   no crypto provider installed. hyper never follows redirects; the timeout covers connecting,
//!   sending and the response's status and headers (the body is not read).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use rand::Rng as _;
use sha2::Sha256;
use sqlx::Row as _;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::config::{ConfigError, WebhookEndpoint, url_target};
use crate::db::{Db, now_ms};
use crate::pipeline::events::Event;

/// The delay before each attempt, counted from the previous one (the first is immediate).
pub const DEFAULT_SCHEDULE: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_mins(5),
    Duration::from_mins(30),
    Duration::from_hours(2),
    Duration::from_hours(5),
    Duration::from_hours(10),
    Duration::from_hours(10),
];

/// How long one attempt may take, connection and answer included (the issue: 15 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest wait a receiver's `Retry-After` can ask for (beyond it, the schedule's own delay).
pub const MAX_RETRY_AFTER: Duration = Duration::from_hours(24);

/// How often the loop looks for rows it was not woken for (other replicas', or come due).
const POLL: Duration = Duration::from_secs(1);

/// Attempts in flight per loop: enough that one slow receiver does not hold up the others.
const MAX_IN_FLIGHT: usize = 16;

/// Jitter around each scheduled delay: ±10 %.
const JITTER: f64 = 0.1;

/// The Standard Webhooks signature of one attempt: `v1,` + base64 of HMAC-SHA256 over
/// `{id}.{timestamp}.{body}` with `secret_key` (the decoded part of `whsec_…`).
#[must_use]
pub fn sign(secret_key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes keys of any length; the error branch cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret_key) else { unreachable!("HMAC accepts any key length") };
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// When to try again: a delay before each attempt, jittered.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    delays: Vec<Duration>,
}

impl Default for Schedule {
    fn default() -> Self {
        Self { delays: DEFAULT_SCHEDULE.to_vec() }
    }
}

impl Schedule {
    /// A schedule of `delays.len()` attempts; `delays[n]` is the wait before attempt `n + 1`
    /// after attempt `n` (`delays[0]`, before the first, is not used: the first is immediate).
    #[must_use]
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// Attempts in all.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX)
    }

    /// The wait after `done` attempts, scaled by `unit` in [0, 1] to ±10 % (0 → -10 %, 0.5 → the
    /// delay itself, 1 → +10 %); `None` when no attempt is left.
    #[must_use]
    pub fn delay_with(&self, done: u32, unit: f64) -> Option<Duration> {
        let d = self.delays.get(usize::try_from(done).ok()?)?;
        Some(d.mul_f64(1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0)))
    }

    /// The wait after `done` attempts, with thread-local randomness.
    #[must_use]
    pub fn delay(&self, done: u32) -> Option<Duration> {
        self.delay_with(done, rand::rng().random::<f64>())
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx answered.
    Delivered,
    /// Out of attempts (an operator can redeliver it).
    Failed,
    /// Its endpoint answered 410 Gone; nothing is sent until an operator enables it again.
    Disabled,
}

impl DeliveryState {
    /// As stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "disabled" => Self::Disabled,
            _ => Self::Failed,
        }
    }
}

/// One delivery, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    /// The delivery's id (`whd_…`), for `hoist webhooks redeliver`.
    pub id: String,
    /// The event's id (the `webhook-id` header).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The endpoint's host and path (never its query string).
    pub endpoint: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made (or started).
    pub attempts: i64,
    /// Unix ms of the next attempt, while pending.
    pub next_attempt_at: i64,
    /// HTTP status of the last answer.
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// Unix ms of the 2xx.
    pub delivered_at: Option<i64>,
}

/// An endpoint disabled after a 410 Gone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DisabledEndpoint {
    /// Its host and path.
    pub endpoint: String,
    /// Unix ms.
    pub disabled_at: i64,
    /// What it answered.
    pub reason: String,
}

/// What [`redeliver`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    /// Queued for an attempt now, with a fresh schedule.
    Queued,
    /// Still pending: its next attempt comes anyway.
    AlreadyPending,
    /// Its endpoint is disabled: enable it first.
    EndpointDisabled,
    /// No delivery has that id.
    NotFound,
}

/// A configured endpoint, ready to sign.
struct Target {
    endpoint: WebhookEndpoint,
    /// The decoded secret.
    key: Vec<u8>,
    /// Host and path, for logs.
    name: String,
}

/// A claimed attempt.
struct Claimed {
    id: String,
    event_id: String,
    endpoint_url: String,
    body: String,
    /// Attempts including this one.
    attempts: u32,
    token: String,
}

/// What one attempt came to.
enum Outcome {
    Delivered(u16),
    Gone,
    Retry { status: Option<u16>, error: String, retry_after: Option<Duration> },
}

/// The webhook deliverer: enqueues deliveries in the caller's transaction and runs the loop that
/// sends them.
pub struct Webhooks {
    targets: Vec<Target>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    schedule: Schedule,
    timeout: Duration,
    notify: Notify,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.targets.iter().map(|t| t.name.as_str()).collect();
        f.debug_struct("Webhooks")
            .field("endpoints", &names)
            .field("schedule", &self.schedule)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// For these endpoints (already validated by `ServerConfig::validate`), with the default
    /// schedule and timeout.
    pub fn new(endpoints: &[WebhookEndpoint]) -> Result<Self, ConfigError> {
        let targets = endpoints
            .iter()
            .map(|e| Ok(Target { endpoint: e.clone(), key: e.signing_key()?, name: e.target() }))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let client = hoist_store::notify::http_client();
        Ok(Self { targets, client, schedule: Schedule::default(), timeout: DEFAULT_TIMEOUT, notify: Notify::new() })
    }

    /// Replaces the retry schedule (tests run a whole schedule in milliseconds).
    #[must_use]
    pub fn with_schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Replaces the per-attempt timeout (the lease follows it).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Queues `event` for every endpoint that wants its type and is not disabled, on `conn` (the
    /// caller's open transaction: the rows commit with the state change). Idempotent per event.
    /// Call [`Webhooks::wake`] after the commit.
    pub async fn enqueue(&self, conn: &mut sqlx::AnyConnection, event: &Event) -> Result<(), sqlx::Error> {
        let wanted: Vec<&Target> = self.targets.iter().filter(|t| t.endpoint.wants(&event.kind)).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let body = body(event);
        let now = now_ms();
        // One statement per endpoint, a write from the start: on SQLite a read followed by a
        // write in one transaction cannot wait for another writer and fails at once.
        for t in wanted {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, event_id, event_type, endpoint_url, body, state, attempts, next_attempt_at, \
                 lease_until, created_at, updated_at) SELECT $1, $2, $3, $4, $5, $6, 0, $7, 0, $8, $9 \
                 WHERE NOT EXISTS (SELECT 1 FROM webhook_endpoints_disabled WHERE endpoint_url = $10) \
                 ON CONFLICT (event_id, endpoint_url) DO NOTHING",
            )
            .bind(random_id("whd_"))
            .bind(&event.id)
            .bind(&event.kind)
            .bind(&t.endpoint.url)
            .bind(&body)
            .bind(DeliveryState::Pending.as_str())
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(&t.endpoint.url)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Tells the loop that deliveries were committed, so they go out now rather than at the next
    /// poll.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// The delivery loop: claims due deliveries of this config's endpoints, sends them (at most
    /// 16 at once), records each outcome; wakes on [`Webhooks::wake`] and every second. Runs
    /// until the task is aborted; an attempt cut off then is retried once its lease expires.
    pub async fn run(self: Arc<Self>, db: Db) {
        if self.targets.is_empty() {
            return;
        }
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut sending = JoinSet::new();
        // The earliest retry this loop scheduled itself, when sooner than the next poll.
        let mut soonest: Option<Instant> = None;
        loop {
            if soonest.is_some_and(|s| s <= Instant::now()) {
                soonest = None;
            }
            let free = permits.available_permits();
            if free > 0 {
                match self.claim(&db, free).await {
                    Ok(claimed) => {
                        for c in claimed {
                            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
                            let (me, db) = (Arc::clone(&self), db.clone());
                            sending.spawn(async move {
                                let next = me.attempt(&db, c).await;
                                drop(permit);
                                next
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "webhooks: cannot claim deliveries; trying again in a second"),
                }
            }
            let poll = Instant::now() + POLL;
            tokio::select! {
                () = self.notify.notified() => {}
                () = tokio::time::sleep_until(soonest.map_or(poll, |s| s.min(poll)).into()) => {}
                Some(done) = sending.join_next(), if !sending.is_empty() => {
                    if let Ok(Some(next)) = done {
                        soonest = Some(soonest.map_or(next, |s| s.min(next)));
                    }
                }
            }
        }
    }

    /// Claims up to `limit` due deliveries (compare-and-set on lease and attempts).
    async fn claim(&self, db: &Db, limit: usize) -> Result<Vec<Claimed>, sqlx::Error> {
        let now = now_ms();
        let urls: Vec<String> = (3..3 + self.targets.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, event_id, endpoint_url, body, attempts, lease_until FROM webhook_deliveries \
             WHERE state = 'pending' AND next_attempt_at <= $1 AND lease_until <= $1 AND endpoint_url IN ({}) \
             ORDER BY next_attempt_at LIMIT $2",
            urls.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(now).bind(i64::try_from(limit).unwrap_or(i64::MAX));
        for t in &self.targets {
            q = q.bind(&t.endpoint.url);
        }
        let rows = q.fetch_all(db.pool()).await?;
        let lease = i64::try_from((self.timeout * 2 + Duration::from_secs(1)).as_millis()).unwrap_or(i64::MAX);
        let mut claimed = Vec::new();
        for r in rows {
            let (id, attempts, lease_until): (String, i64, i64) =
                (r.try_get("id")?, r.try_get("attempts")?, r.try_get("lease_until")?);
            let token = random_id("");
            let won = sqlx::query(
                "UPDATE webhook_deliveries SET lease_until = $1, lease_token = $2, attempts = attempts + 1, updated_at = $3 \
                 WHERE id = $4 AND state = 'pending' AND lease_until = $5 AND attempts = $6",
            )
            .bind(now.saturating_add(lease))
            .bind(&token)
            .bind(now)
            .bind(&id)
            .bind(lease_until)
            .bind(attempts)
            .execute(db.pool())
            .await?
            .rows_affected()
                == 1;
            if won {
                claimed.push(Claimed {
                    id,
                    event_id: r.try_get("event_id")?,
                    endpoint_url: r.try_get("endpoint_url")?,
                    body: r.try_get("body")?,
                    attempts: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
                    token,
                });
            }
        }
        Ok(claimed)
    }

    /// Sends one claimed attempt and records what came of it; returns when its next attempt is
    /// due, if it has one.
    async fn attempt(&self, db: &Db, c: Claimed) -> Option<Instant> {
        let target = self.targets.iter().find(|t| t.endpoint.url == c.endpoint_url)?;
        let outcome = self.send(target, &c).await;
        match &outcome {
            Outcome::Delivered(status) => {
                tracing::info!(endpoint = %target.name, event = %c.event_id, attempt = c.attempts, status, "webhook delivered");
            }
            Outcome::Gone => {
                tracing::warn!(endpoint = %target.name, event = %c.event_id, "webhook endpoint answered 410 Gone: disabled until `hoist webhooks enable`");
            }
            Outcome::Retry { error, .. } => {
                tracing::warn!(endpoint = %target.name, event = %c.event_id, attempt = c.attempts, error = %error, "webhook attempt failed");
            }
        }
        match self.record(db, &c, outcome).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(endpoint = %target.name, event = %c.event_id, error = %e, "webhooks: cannot record an attempt; it is retried when its lease expires");
                None
            }
        }
    }

    async fn send(&self, target: &Target, c: &Claimed) -> Outcome {
        let timestamp = now_ms() / 1000;
        let request = http::Request::post(target.endpoint.url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, concat!("hoist-webhooks/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", &c.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sign(&target.key, &c.event_id, timestamp, &c.body))
            .body(Full::new(Bytes::from(c.body.clone())));
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    status: None,
                    error: format!("cannot build the request: {e}"),
                    retry_after: None,
                };
            }
        };
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => Outcome::Retry {
                status: None,
                error: format!("no answer within {:?}", self.timeout),
                retry_after: None,
            },
            Ok(Err(e)) => Outcome::Retry { status: None, error: causes(&e), retry_after: None },
            Ok(Ok(r)) if r.status().is_success() => Outcome::Delivered(r.status().as_u16()),
            Ok(Ok(r)) if r.status() == http::StatusCode::GONE => Outcome::Gone,
            Ok(Ok(r)) => {
                let status = r.status();
                let error = if status.is_redirection() {
                    format!("HTTP {status}: redirects are not followed; configure the final URL")
                } else {
                    format!("HTTP {status}")
                };
                let retry_after = r
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                Outcome::Retry { status: Some(status.as_u16()), error, retry_after }
            }
        }
    }

    /// Writes an attempt's outcome, fenced on the claim's token; returns when the next attempt is
    /// due, if there is one.
    async fn record(&self, db: &Db, c: &Claimed, outcome: Outcome) -> Result<Option<Instant>, sqlx::Error> {
        let now = now_ms();
        let mut next_attempt = None;
        match outcome {
            Outcome::Delivered(status) => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET state = $1, lease_until = 0, lease_token = NULL, last_status = $2, last_error = NULL, \
                     delivered_at = $3, updated_at = $4 WHERE id = $5 AND lease_token = $6",
                )
                .bind(DeliveryState::Delivered.as_str())
                .bind(i64::from(status))
                .bind(now)
                .bind(now)
                .bind(&c.id)
                .bind(&c.token)
                .execute(db.pool())
                .await?;
            }
            Outcome::Gone => {
                let mut tx = db.pool().begin().await?;
                sqlx::query(
                    "INSERT INTO webhook_endpoints_disabled (endpoint_url, disabled_at, reason) VALUES ($1, $2, $3) \
                     ON CONFLICT (endpoint_url) DO NOTHING",
                )
                .bind(&c.endpoint_url)
                .bind(now)
                .bind("HTTP 410 Gone")
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE webhook_deliveries SET state = $1, lease_until = 0, lease_token = NULL, last_status = 410, \
                     last_error = $2, updated_at = $3 WHERE id = $4 AND lease_token = $5",
                )
                .bind(DeliveryState::Disabled.as_str())
                .bind("HTTP 410 Gone: the endpoint is disabled")
                .bind(now)
                .bind(&c.id)
                .bind(&c.token)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE webhook_deliveries SET state = $1, updated_at = $2 WHERE endpoint_url = $3 AND state = 'pending'")
                    .bind(DeliveryState::Disabled.as_str())
                    .bind(now)
                    .bind(&c.endpoint_url)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Outcome::Retry { status, error, retry_after } => {
                let (state, next) = match self.schedule.delay(c.attempts) {
                    Some(d) => {
                        let d = retry_after.map_or(d, |r| d.max(r.min(MAX_RETRY_AFTER)));
                        next_attempt = Instant::now().checked_add(d);
                        (DeliveryState::Pending, now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
                    }
                    None => (DeliveryState::Failed, now),
                };
                // `state = 'pending'`: a 410 seen meanwhile by another attempt of this endpoint wins.
                sqlx::query(
                    "UPDATE webhook_deliveries SET state = $1, next_attempt_at = $2, lease_until = 0, lease_token = NULL, \
                     last_status = $3, last_error = $4, updated_at = $5 WHERE id = $6 AND lease_token = $7 AND state = 'pending'",
                )
                .bind(state.as_str())
                .bind(next)
                .bind(status.map(i64::from))
                .bind(error)
                .bind(now)
                .bind(&c.id)
                .bind(&c.token)
                .execute(db.pool())
                .await?;
            }
        }
        Ok(next_attempt)
    }
}

/// The body every attempt sends: `{"type", "timestamp" (RFC 3339), "data"}`.
fn body(event: &Event) -> String {
    use time::format_description::well_known::Rfc3339;
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(event.at_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let timestamp = at.format(&Rfc3339).unwrap_or_default();
    serde_json::json!({ "type": event.kind, "timestamp": timestamp, "data": event.data }).to_string()
}

/// An error and its causes on one line (hyper's own message is only "client error (Connect)").
fn causes(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

/// `prefix` + 32 random hex digits.
fn random_id(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// A `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3); a date in the past
/// is no delay.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

/// Deliveries, newest first: all, or only the failed ones.
pub async fn list(db: &Db, failed_only: bool, limit: i64) -> Result<Vec<Delivery>, sqlx::Error> {
    let filter = if failed_only { "WHERE state = 'failed'" } else { "" };
    let rows = sqlx::query(&format!(
        "SELECT id, event_id, event_type, endpoint_url, state, attempts, next_attempt_at, last_status, last_error, created_at, \
         updated_at, delivered_at FROM webhook_deliveries {filter} ORDER BY created_at DESC, id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Delivery {
                id: r.try_get("id")?,
                event_id: r.try_get("event_id")?,
                event_type: r.try_get("event_type")?,
                endpoint: url_target(&r.try_get::<String, _>("endpoint_url")?),
                state: DeliveryState::parse(&r.try_get::<String, _>("state")?),
                attempts: r.try_get("attempts")?,
                next_attempt_at: r.try_get("next_attempt_at")?,
                last_status: r.try_get("last_status")?,
                last_error: r.try_get("last_error")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
                delivered_at: r.try_get("delivered_at")?,
            })
        })
        .collect()
}

/// Endpoints disabled after a 410 Gone.
pub async fn disabled_endpoints(db: &Db) -> Result<Vec<DisabledEndpoint>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT endpoint_url, disabled_at, reason FROM webhook_endpoints_disabled ORDER BY disabled_at")
            .fetch_all(db.pool())
            .await?;
    rows.iter()
        .map(|r| {
            Ok(DisabledEndpoint {
                endpoint: url_target(&r.try_get::<String, _>("endpoint_url")?),
                disabled_at: r.try_get("disabled_at")?,
                reason: r.try_get("reason")?,
            })
        })
        .collect()
}

/// Queues delivery `id` again with a fresh schedule (attempts from zero, the first now). A
/// running `hoist serve` sends it within a second.
pub async fn redeliver(db: &Db, id: &str) -> Result<Redelivery, sqlx::Error> {
    let now = now_ms();
    let queued = sqlx::query(
        "UPDATE webhook_deliveries SET state = $1, attempts = 0, next_attempt_at = $2, lease_until = 0, lease_token = NULL, \
         delivered_at = NULL, updated_at = $3 WHERE id = $4 AND state <> $5 \
         AND endpoint_url NOT IN (SELECT endpoint_url FROM webhook_endpoints_disabled)",
    )
    .bind(DeliveryState::Pending.as_str())
    .bind(now)
    .bind(now)
    .bind(id)
    .bind(DeliveryState::Pending.as_str())
    .execute(db.pool())
    .await?;
    if queued.rows_affected() == 1 {
        return Ok(Redelivery::Queued);
    }
    // Not queued: say why.
    let row = sqlx::query(
        "SELECT d.state, (SELECT COUNT(*) FROM webhook_endpoints_disabled x WHERE x.endpoint_url = d.endpoint_url) AS disabled \
         FROM webhook_deliveries d WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(Redelivery::NotFound) };
    Ok(if row.try_get::<i64, _>("disabled")? > 0 { Redelivery::EndpointDisabled } else { Redelivery::AlreadyPending })
}

/// Enables an endpoint disabled after a 410 (`url` exactly as configured) and queues its stopped
/// deliveries again with a fresh schedule. `None` when it was not disabled; else how many
/// deliveries were queued again.
pub async fn enable(db: &Db, url: &str) -> Result<Option<u64>, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let removed = sqlx::query("DELETE FROM webhook_endpoints_disabled WHERE endpoint_url = $1")
        .bind(url)
        .execute(&mut *tx)
        .await?;
    if removed.rows_affected() == 0 {
        return Ok(None);
    }
    let now = now_ms();
    let requeued = sqlx::query(
        "UPDATE webhook_deliveries SET state = $1, attempts = 0, next_attempt_at = $2, lease_until = 0, lease_token = NULL, \
         updated_at = $3 WHERE endpoint_url = $4 AND state = $5",
    )
    .bind(DeliveryState::Pending.as_str())
    .bind(now)
    .bind(now)
    .bind(url)
    .bind(DeliveryState::Disabled.as_str())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(requeued.rows_affected()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_spec_vector() {
        // The test vector of the Standard Webhooks reference libraries.
        let key = base64::engine::general_purpose::STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, r#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn schedule_is_jittered_by_ten_percent_and_ends() {
        let s = Schedule::default();
        assert_eq!(s.attempts(), 8);
        assert_eq!(s.delay_with(0, 0.7), Some(Duration::ZERO));
        assert_eq!(s.delay_with(1, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(s.delay_with(1, 0.0), Some(Duration::from_millis(4500)));
        assert_eq!(s.delay_with(2, 1.0), Some(Duration::from_secs(330)));
        assert_eq!(s.delay_with(7, 0.5), Some(Duration::from_hours(10)));
        assert_eq!(s.delay_with(8, 0.5), None);
        for n in 1..8 {
            let d = s.delay(n).unwrap();
            let base = DEFAULT_SCHEDULE[n as usize];
            assert!(d >= base.mul_f64(0.9) && d <= base.mul_f64(1.1), "{n}: {d:?}");
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_mins(2)));
        assert_eq!(parse_retry_after(" 1 "), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_mins(10));
        let d = parse_retry_after(&later).unwrap();
        assert!(d > Duration::from_secs(590) && d <= Duration::from_mins(10), "{d:?}");
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-5"), None);
    }

    #[test]
    fn body_is_type_timestamp_data() {
        let e = Event {
            id: "evt_1".into(),
            kind: "job.succeeded".into(),
            at_ms: 1_700_000_000_123,
            data: serde_json::json!({"job": "j1"}),
        };
        let v: serde_json::Value = serde_json::from_str(&body(&e)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "job.succeeded", "timestamp": "2023-11-14T22:13:20.123Z", "data": {"job": "j1"}})
        );
    }
}
