//! The job queue, in the service's database: one row per (source object version, preset).
//!
//! Decisions:
//! - **Idempotent enqueue.** `idem_key` = bucket, key, `ETag` and preset, unique: a repeated
//!   Complete, the lost-response path, a duplicate S3 event, or the same object arriving through
//!   both APIs never makes a second job ([`enqueue`] answers the existing one).
//! - **Leases with fencing tokens.** [`claim`] moves one due `queued` job to `running` with a
//!   random token and a lease end (on `PostgreSQL` through `FOR UPDATE SKIP LOCKED`, so many workers
//!   never wait on each other; `SQLite` serialises writers, so one conditional UPDATE is enough).
//!   Every later write by the worker ([`heartbeat`], [`finish`]) names the token: a worker whose
//!   lease was taken (it stalled, the janitor requeued its job, another worker claimed it, or the
//!   job was cancelled) changes nothing and learns that it lost.
//! - **Attempts.** `attempts` counts claims. A transient failure, or a lease that expired (worker
//!   killed), requeues the job after a full-jitter backoff until `max_attempts`, then it is
//!   `dead`; a permanent failure is `failed` at once. Retrying a finished job by hand raises
//!   `max_attempts` rather than resetting `attempts`, so every attempt keeps its own number (the
//!   outputs' prefix and the events' dedup keys use it).
//! - **Terminal transitions write their event in the same transaction** (through the
//!   [`Outbox`]), so a `job.succeeded` is sent if and only if the job succeeded.
//! - Progress is stored in basis points (0..=10000) and only ever grows within an attempt;
//!   `version` grows with every visible change, for SSE.

use std::time::Duration;

use rand::RngCore as _;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::events::{self, NewEvent, Outbox};
use crate::db::{Db, now_ms};

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker (or for its backoff to pass).
    Queued,
    /// Claimed by a worker holding a lease.
    Running,
    /// Finished; outputs stored.
    Succeeded,
    /// Failed for good (the input can never succeed).
    Failed,
    /// Cancelled by the caller or because its upload was deleted.
    Cancelled,
    /// Out of attempts after transient failures or lost workers.
    Dead,
}

impl JobState {
    /// As stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Result<Self, sqlx::Error> {
        Ok(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "dead" => Self::Dead,
            other => return Err(sqlx::Error::Decode(format!("unknown job state {other:?}").into())),
        })
    }

    /// Whether the job will not change any more (unless retried by hand).
    #[must_use]
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// A job's failure, as shown to callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobFailure {
    /// Stable code (`invalid_input`, `unsupported_codec`, `too_long`, `too_large`, `timeout`,
    /// `worker_lost`, `source_changed`, `transient`, …).
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
}

/// One job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// `job_` + 32 hex digits.
    pub id: String,
    /// The API key that owns it (its uploads' key).
    pub api_key: String,
    /// The upload session it came from (`None` for jobs from S3 events).
    pub upload_id: Option<String>,
    /// Bucket of the source.
    pub bucket: String,
    /// Key of the source.
    pub source_key: String,
    /// `ETag` of the source version this job processes.
    pub source_etag: String,
    /// Size of the source.
    pub source_size: u64,
    /// Content type of the source.
    pub content_type: String,
    /// Preset name.
    pub preset: String,
    /// State.
    pub state: JobState,
    /// Claims so far.
    pub attempts: u32,
    /// Claims allowed.
    pub max_attempts: u32,
    /// 0.0..=1.0.
    pub progress: f64,
    /// Grows with every visible change (SSE event ids).
    pub version: i64,
    /// Worker name holding (or last holding) the lease.
    pub worker: Option<String>,
    /// Per-attempt time limit.
    pub timeout: Duration,
    /// Why it failed.
    pub error: Option<JobFailure>,
    /// What the runner learned about the source.
    pub source_info: Option<serde_json::Value>,
    /// The stored outputs (`[{key, name, size, content_type, width, height, duration}]`).
    pub outputs: Option<serde_json::Value>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// Unix ms of the last claim.
    pub started_at: Option<i64>,
    /// Unix ms of the terminal transition.
    pub finished_at: Option<i64>,
}

/// What to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Owner.
    pub api_key: String,
    /// Upload session, when there is one.
    pub upload_id: Option<String>,
    /// Bucket.
    pub bucket: String,
    /// Source key.
    pub source_key: String,
    /// Source `ETag`.
    pub source_etag: String,
    /// Source size.
    pub source_size: u64,
    /// Source content type.
    pub content_type: String,
    /// Preset name.
    pub preset: String,
    /// Claims allowed.
    pub max_attempts: u32,
    /// Per-attempt time limit.
    pub timeout: Duration,
}

/// A claimed job and the fencing token every write must name.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The job as claimed (state `running`, `attempts` counting this claim).
    pub job: Job,
    /// The fencing token.
    pub token: String,
}

/// How an attempt ended, as the worker reports it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Outputs stored.
    Succeeded {
        /// What the runner learned about the source.
        source: serde_json::Value,
        /// The stored outputs.
        outputs: serde_json::Value,
    },
    /// The input can never succeed: fail now.
    Failed(JobFailure),
    /// Worth another attempt (if any are left).
    Transient(JobFailure),
}

/// Whether the worker still holds its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// Keep going.
    Held,
    /// Stop: cancelled, requeued or claimed by another worker.
    Lost,
}

const COLUMNS: &str = "id, api_key, upload_id, bucket, source_key, source_etag, source_size, content_type, preset, state, \
     attempts, max_attempts, progress_bp, version, worker, timeout_ms, error_code, error_message, source_info, outputs, \
     created_at, updated_at, started_at, finished_at";

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `prefix` + 32 random hex digits.
pub(crate) fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

fn json_col(r: &AnyRow, name: &str) -> Result<Option<serde_json::Value>, sqlx::Error> {
    r.try_get::<Option<String>, _>(name)?
        .map(|t| serde_json::from_str(&t).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .transpose()
}

fn from_row(r: &AnyRow) -> Result<Job, sqlx::Error> {
    let code: Option<String> = r.try_get("error_code")?;
    let message: Option<String> = r.try_get("error_message")?;
    let bp: i64 = r.try_get("progress_bp")?;
    Ok(Job {
        id: r.try_get("id")?,
        api_key: r.try_get("api_key")?,
        upload_id: r.try_get("upload_id")?,
        bucket: r.try_get("bucket")?,
        source_key: r.try_get("source_key")?,
        source_etag: r.try_get("source_etag")?,
        source_size: u64::try_from(r.try_get::<i64, _>("source_size")?).unwrap_or(0),
        content_type: r.try_get("content_type")?,
        preset: r.try_get("preset")?,
        state: JobState::parse(&r.try_get::<String, _>("state")?)?,
        attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        max_attempts: u32::try_from(r.try_get::<i64, _>("max_attempts")?).unwrap_or(u32::MAX),
        #[allow(clippy::cast_precision_loss)] // 0..=10000
        progress: bp.clamp(0, 10_000) as f64 / 10_000.0,
        version: r.try_get("version")?,
        worker: r.try_get("worker")?,
        timeout: Duration::from_millis(u64::try_from(r.try_get::<i64, _>("timeout_ms")?).unwrap_or(0)),
        error: code.map(|code| JobFailure { code, message: message.unwrap_or_default() }),
        source_info: json_col(r, "source_info")?,
        outputs: json_col(r, "outputs")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

/// The idempotency key of a job: one per source object version and preset.
fn idem_key(j: &NewJob) -> String {
    format!("{}\n{}\n{}\n{}", j.bucket, j.source_key, j.source_etag.trim_matches('"'), j.preset)
}

/// Queues `j` on `conn` (the caller's transaction), or finds the job that already exists for
/// the same object version and preset. Answers the job and whether it was new. A job queued
/// first by an S3 event (no upload) is claimed by the upload that made the object when that
/// upload's Complete comes second: it gets the upload's id and API key, so the upload lists it.
pub async fn enqueue(conn: &mut AnyConnection, j: &NewJob) -> Result<(Job, bool), sqlx::Error> {
    let now = now_ms();
    let key = idem_key(j);
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, api_key, upload_id, bucket, source_key, source_etag, source_size, content_type, preset, idem_key, \
         state, attempts, max_attempts, progress_bp, version, run_after, timeout_ms, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', 0, $11, 0, 1, $12, $13, $12, $12) ON CONFLICT (idem_key) DO NOTHING",
    )
    .bind(random_id("job_"))
    .bind(&j.api_key)
    .bind(j.upload_id.as_deref())
    .bind(&j.bucket)
    .bind(&j.source_key)
    .bind(&j.source_etag)
    .bind(i64_of(j.source_size))
    .bind(&j.content_type)
    .bind(&j.preset)
    .bind(&key)
    .bind(i64::from(j.max_attempts))
    .bind(now)
    .bind(millis(j.timeout))
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if !inserted && let Some(upload_id) = &j.upload_id {
        sqlx::query("UPDATE jobs SET upload_id = $1, api_key = $2 WHERE idem_key = $3 AND upload_id IS NULL")
            .bind(upload_id)
            .bind(&j.api_key)
            .bind(&key)
            .execute(&mut *conn)
            .await?;
    }
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE idem_key = $1"))
        .bind(&key)
        .fetch_one(&mut *conn)
        .await?;
    Ok((from_row(&row)?, inserted))
}

/// Queues one job per preset of the `rules` that match `source`'s key and content type, on
/// `conn` (the caller's transaction); `source.preset` is ignored. Answers the jobs (new or
/// already there for the same object version and preset).
pub async fn enqueue_matching(
    conn: &mut AnyConnection,
    rules: &[crate::config::PipelineRule],
    source: &NewJob,
) -> Result<Vec<Job>, sqlx::Error> {
    let mut presets = std::collections::HashSet::new();
    let mut queued = Vec::new();
    for rule in rules.iter().filter(|r| r.matches(&source.source_key, &source.content_type)) {
        if presets.insert(rule.preset.as_str()) {
            let (job, _) = enqueue(&mut *conn, &NewJob { preset: rule.preset.clone(), ..source.clone() }).await?;
            queued.push(job);
        }
    }
    Ok(queued)
}

/// The job `id` if it belongs to `api_key` (another key's job is indistinguishable from none).
pub async fn get(db: &Db, api_key: &str, id: &str) -> Result<Option<Job>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1 AND api_key = $2"))
        .bind(id)
        .bind(api_key)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The job `id`, whoever owns it (for the signed SSE URL, whose token names the job).
pub async fn get_any(db: &Db, id: &str) -> Result<Option<Job>, sqlx::Error> {
    let row =
        sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1")).bind(id).fetch_optional(db.pool()).await?;
    row.as_ref().map(from_row).transpose()
}

/// The jobs of one upload session, oldest first.
pub async fn for_upload(db: &Db, api_key: &str, upload_id: &str) -> Result<Vec<Job>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE api_key = $1 AND upload_id = $2 ORDER BY created_at, id"
    ))
    .bind(api_key)
    .bind(upload_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Claims the oldest due queued job for `worker`, with a lease of `lease`.
pub async fn claim(db: &Db, worker: &str, lease: Duration) -> Result<Option<Lease>, sqlx::Error> {
    let now = now_ms();
    let token = random_id("");
    let pick = if db.is_postgres() {
        "SELECT id FROM jobs WHERE state = 'queued' AND run_after <= $4 ORDER BY run_after, created_at LIMIT 1 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT id FROM jobs WHERE state = 'queued' AND run_after <= $4 ORDER BY run_after, created_at LIMIT 1"
    };
    let sql = format!(
        "UPDATE jobs SET state = 'running', lease_token = $1, lease_until = $2, worker = $3, attempts = attempts + 1, \
         progress_bp = 0, started_at = $4, updated_at = $4, version = version + 1, error_code = NULL, error_message = NULL \
         WHERE state = 'queued' AND id = ({pick}) RETURNING {COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(&token)
        .bind(now.saturating_add(millis(lease)))
        .bind(worker)
        .bind(now)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?.map(|job| Lease { job, token }))
}

/// Extends the lease and records progress (never lower than before); `Lost` when the lease is
/// no longer this worker's.
pub async fn heartbeat(db: &Db, lease: &Lease, progress: f64, extend: Duration) -> Result<Heartbeat, sqlx::Error> {
    let now = now_ms();
    #[allow(clippy::cast_possible_truncation)] // clamped to 0..=10000
    let bp = (progress.clamp(0.0, 1.0) * 10_000.0).round() as i64;
    let held = sqlx::query(
        "UPDATE jobs SET lease_until = $1, updated_at = $2, \
         version = version + CASE WHEN $3 > progress_bp THEN 1 ELSE 0 END, \
         progress_bp = CASE WHEN $3 > progress_bp THEN $3 ELSE progress_bp END \
         WHERE id = $4 AND lease_token = $5 AND state = 'running'",
    )
    .bind(now.saturating_add(millis(extend)))
    .bind(now)
    .bind(bp)
    .bind(&lease.job.id)
    .bind(&lease.token)
    .execute(db.pool())
    .await?
    .rows_affected()
        > 0;
    Ok(if held { Heartbeat::Held } else { Heartbeat::Lost })
}

/// Backoff before the job's next attempt after `attempts` claims (full jitter, 5 s base, 5 min cap).
fn requeue_delay(attempts: u32) -> Duration {
    let policy = hoist_core::retry::RetryConfig {
        base: Duration::from_secs(5),
        cap: Duration::from_mins(5),
        max_attempts: u32::MAX,
    };
    policy.delay(attempts.saturating_sub(1))
}

/// The state a job takes after a transient failure of its latest attempt.
fn after_transient(job: &Job) -> JobState {
    if job.attempts >= job.max_attempts { JobState::Dead } else { JobState::Queued }
}

/// Ends the lease's attempt, fenced on its token, writing the terminal event (if any) in the
/// same transaction. Answers the job as it is now, or `None` when the lease was lost (nothing
/// was written: the caller must discard what the attempt produced).
pub async fn finish(db: &Db, outbox: &Outbox, lease: &Lease, outcome: Outcome) -> Result<Option<Job>, sqlx::Error> {
    let (state, failure, source, outputs) = match outcome {
        Outcome::Succeeded { source, outputs } => (JobState::Succeeded, None, Some(source), Some(outputs)),
        Outcome::Failed(f) => (JobState::Failed, Some(f), None, None),
        Outcome::Transient(f) => (after_transient(&lease.job), Some(f), None, None),
    };
    let mut tx = db.begin_write().await?;
    let job = transition(
        &mut tx,
        &lease.job.id,
        Some(&lease.token),
        &[JobState::Running],
        state,
        failure.as_ref(),
        source.as_ref(),
        outputs.as_ref(),
    )
    .await?;
    if let Some(job) = &job {
        record_terminal(&mut tx, outbox, job).await?;
    }
    tx.commit().await?;
    if job.as_ref().is_some_and(|j| j.state.is_terminal()) {
        outbox.wake();
    }
    Ok(job)
}

/// One fenced state change: `from` states only, and the lease token when given. Terminal
/// states clear the lease and stamp `finished_at`; `queued` sets the backoff.
#[allow(clippy::too_many_arguments)]
async fn transition(
    conn: &mut AnyConnection,
    id: &str,
    token: Option<&str>,
    from: &[JobState],
    to: JobState,
    failure: Option<&JobFailure>,
    source: Option<&serde_json::Value>,
    outputs: Option<&serde_json::Value>,
) -> Result<Option<Job>, sqlx::Error> {
    let now = now_ms();
    let prior_attempts: Option<i64> =
        sqlx::query_scalar("SELECT attempts FROM jobs WHERE id = $1").bind(id).fetch_optional(&mut *conn).await?;
    let run_after = match (to, prior_attempts) {
        (JobState::Queued, Some(a)) => now.saturating_add(millis(requeue_delay(u32::try_from(a).unwrap_or(u32::MAX)))),
        _ => now,
    };
    let states: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 11)).collect();
    let fence = if token.is_some() { format!("AND lease_token = ${}", from.len() + 11) } else { String::new() };
    let sql = format!(
        "UPDATE jobs SET state = $1, lease_token = NULL, lease_until = NULL, updated_at = $2, version = version + 1, \
         finished_at = $3, run_after = $4, error_code = $5, error_message = $6, \
         source_info = COALESCE($7, source_info), outputs = COALESCE($8, outputs), \
         progress_bp = CASE WHEN $9 = 'succeeded' THEN 10000 WHEN $9 = 'queued' THEN 0 ELSE progress_bp END \
         WHERE id = $10 AND state IN ({}) {fence} RETURNING {COLUMNS}",
        states.join(", ")
    );
    let to_json = |v: Option<&serde_json::Value>| v.map(ToString::to_string);
    let mut q = sqlx::query(&sql)
        .bind(to.as_str())
        .bind(now)
        .bind(if to.is_terminal() { Some(now) } else { None })
        .bind(run_after)
        .bind(failure.map(|f| f.code.clone()))
        .bind(failure.map(|f| f.message.clone()))
        .bind(to_json(source))
        .bind(to_json(outputs))
        .bind(to.as_str())
        .bind(id);
    for s in from {
        q = q.bind(s.as_str());
    }
    if let Some(t) = token {
        q = q.bind(t);
    }
    q.fetch_optional(&mut *conn).await?.as_ref().map(from_row).transpose()
}

/// The outbox event of a terminal job (`job.succeeded`, `job.failed` for failed and dead,
/// `job.cancelled`); nothing for a requeued one.
async fn record_terminal(conn: &mut AnyConnection, outbox: &Outbox, job: &Job) -> Result<(), sqlx::Error> {
    let kind = match job.state {
        JobState::Succeeded => events::JOB_SUCCEEDED,
        JobState::Failed | JobState::Dead => events::JOB_FAILED,
        JobState::Cancelled => events::JOB_CANCELLED,
        JobState::Queued | JobState::Running => return Ok(()),
    };
    let data = serde_json::json!({
        "job_id": job.id,
        "upload_id": job.upload_id,
        "bucket": job.bucket,
        "key": job.source_key,
        "preset": job.preset,
        "state": job.state,
        "attempts": job.attempts,
        "error": job.error,
        "source": job.source_info,
        "outputs": job.outputs,
    });
    outbox
        .record(
            conn,
            &NewEvent {
                kind,
                api_key: &job.api_key,
                subject: &job.id,
                dedup_key: format!("{kind}:{}:{}", job.id, job.attempts),
                data,
            },
        )
        .await?;
    Ok(())
}

/// Cancels the caller's job if it is queued or running (a running worker learns at its next
/// heartbeat and stops). Answers the job as it is now and whether this call cancelled it, or
/// `None` when there is no such job.
pub async fn cancel(db: &Db, outbox: &Outbox, api_key: &str, id: &str) -> Result<Option<(Job, bool)>, sqlx::Error> {
    if get(db, api_key, id).await?.is_none() {
        return Ok(None);
    }
    let mut tx = db.begin_write().await?;
    let changed =
        transition(&mut tx, id, None, &[JobState::Queued, JobState::Running], JobState::Cancelled, None, None, None)
            .await?;
    if let Some(job) = &changed {
        record_terminal(&mut tx, outbox, job).await?;
    }
    tx.commit().await?;
    if changed.is_some() {
        outbox.wake();
    }
    Ok(get(db, api_key, id).await?.map(|j| (j, changed.is_some())))
}

/// Queues a failed, dead or cancelled job of the caller again, with `more` attempts.
/// Answers the job as it is now, or `None` when there is no such job.
pub async fn retry(db: &Db, api_key: &str, id: &str, more: u32) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET state = 'queued', max_attempts = attempts + $1, run_after = $2, updated_at = $2, version = version + 1, \
         progress_bp = 0, error_code = NULL, error_message = NULL, finished_at = NULL \
         WHERE id = $3 AND api_key = $4 AND state IN ('failed', 'dead', 'cancelled')",
    )
    .bind(i64::from(more))
    .bind(now_ms())
    .bind(id)
    .bind(api_key)
    .execute(db.pool())
    .await?;
    get(db, api_key, id).await
}

/// Requeues (or buries, when out of attempts) running jobs whose lease ended before now: their
/// worker died or stalled. Fenced on the expired token, so a worker that wakes up later finds
/// its lease gone. Answers how many jobs were moved.
pub async fn requeue_expired(db: &Db, outbox: &Outbox, limit: i64) -> Result<usize, sqlx::Error> {
    let rows = sqlx::query("SELECT id, lease_token, attempts, max_attempts FROM jobs WHERE state = 'running' AND lease_until < $1 ORDER BY lease_until LIMIT $2")
        .bind(now_ms())
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    let mut moved = 0;
    for r in rows {
        let (id, token): (String, Option<String>) = (r.try_get("id")?, r.try_get("lease_token")?);
        let (attempts, max): (i64, i64) = (r.try_get("attempts")?, r.try_get("max_attempts")?);
        let to = if attempts >= max { JobState::Dead } else { JobState::Queued };
        let failure = JobFailure {
            code: "worker_lost".into(),
            message: format!(
                "the worker running attempt {attempts} stopped answering (killed, or stalled past its lease)"
            ),
        };
        let mut tx = db.begin_write().await?;
        let job =
            transition(&mut tx, &id, token.as_deref(), &[JobState::Running], to, Some(&failure), None, None).await?;
        if let Some(job) = &job {
            record_terminal(&mut tx, outbox, job).await?;
            moved += 1;
            tracing::warn!(job = %id, attempts, to = to.as_str(), "job lease expired");
        }
        tx.commit().await?;
    }
    if moved > 0 {
        outbox.wake();
    }
    Ok(moved)
}

/// Cancels every open job of an upload session (it is being deleted); answers all its jobs.
pub async fn cancel_for_upload(
    db: &Db,
    outbox: &Outbox,
    api_key: &str,
    upload_id: &str,
) -> Result<Vec<Job>, sqlx::Error> {
    for job in for_upload(db, api_key, upload_id).await? {
        if !job.state.is_terminal() {
            cancel(db, outbox, api_key, &job.id).await?;
        }
    }
    for_upload(db, api_key, upload_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_job(tag: &str, preset: &str) -> NewJob {
        NewJob {
            api_key: format!("{tag}key"),
            upload_id: Some(format!("{tag}up")),
            bucket: "b".into(),
            source_key: format!("{tag}/movie.mp4"),
            source_etag: "\"abc\"".into(),
            source_size: 10,
            content_type: "video/mp4".into(),
            preset: preset.into(),
            max_attempts: 2,
            timeout: Duration::from_mins(1),
        }
    }

    async fn queue(db: &Db, j: &NewJob) -> (Job, bool) {
        let mut conn = db.pool().acquire().await.unwrap();
        enqueue(&mut conn, j).await.unwrap()
    }

    /// Claims until it gets the job with `id` (other tests' jobs may share a Postgres database).
    async fn claim_job(db: &Db, id: &str) -> Lease {
        loop {
            let l = claim(db, "w", Duration::from_mins(1)).await.unwrap().expect("a queued job");
            if l.job.id == id {
                return l;
            }
        }
    }

    /// The same checks on `SQLite` always, and on `PostgreSQL` when `HOIST_TEST_DATABASE_URL` is set.
    async fn check_queue(db: &Db, tag: &str) {
        let outbox = Outbox::default();
        let (a, new) = queue(db, &new_job(tag, "mp4-720p")).await;
        assert!(new && a.state == JobState::Queued && a.attempts == 0);
        let (again, new) = queue(db, &new_job(tag, "mp4-720p")).await;
        assert!(!new, "the same object version and preset is one job");
        assert_eq!(again.id, a.id);
        let (other, new) = queue(db, &new_job(tag, "hls")).await;
        assert!(new && other.id != a.id, "another preset is another job");
        assert_eq!(for_upload(db, &a.api_key, a.upload_id.as_deref().unwrap()).await.unwrap().len(), 2);
        assert!(get(db, "someone-else", &a.id).await.unwrap().is_none(), "another key's job is invisible");
        // An S3 event queues a job first (no upload); the upload's Complete then claims it.
        let made = NewJob {
            upload_id: Some(format!("{tag}up2")),
            source_key: format!("{tag}/other.mp4"),
            ..new_job(tag, "mp4-720p")
        };
        let event = NewJob { upload_id: None, api_key: format!("{tag}other"), ..made.clone() };
        let (from_event, _) = queue(db, &event).await;
        assert_eq!(from_event.upload_id, None);
        let (claimed, new) = queue(db, &made).await;
        assert!(!new && claimed.id == from_event.id, "one job for the object version");
        assert_eq!((claimed.upload_id, claimed.api_key), (Some(format!("{tag}up2")), format!("{tag}key")));
        let (still, _) = queue(db, &event).await;
        assert_eq!(still.upload_id, Some(format!("{tag}up2")), "a later event leaves the upload's job alone");

        // Claim, heartbeat, lose the lease to the janitor, get fenced off.
        let first = claim_job(db, &a.id).await;
        assert_eq!((first.job.state, first.job.attempts), (JobState::Running, 1));
        assert_eq!(heartbeat(db, &first, 0.5, Duration::from_mins(1)).await.unwrap(), Heartbeat::Held);
        assert_eq!(heartbeat(db, &first, 0.25, Duration::from_mins(1)).await.unwrap(), Heartbeat::Held);
        let j = get(db, &a.api_key, &a.id).await.unwrap().unwrap();
        assert!((j.progress - 0.5).abs() < 1e-9, "progress never goes down: {}", j.progress);
        sqlx::query("UPDATE jobs SET lease_until = 0, run_after = 0 WHERE id = $1")
            .bind(&a.id)
            .execute(db.pool())
            .await
            .unwrap();
        assert!(requeue_expired(db, &outbox, 1000).await.unwrap() >= 1);
        let j = get(db, &a.api_key, &a.id).await.unwrap().unwrap();
        assert_eq!((j.state, j.error.as_ref().map(|e| e.code.as_str())), (JobState::Queued, Some("worker_lost")));
        assert_eq!(heartbeat(db, &first, 0.9, Duration::from_mins(1)).await.unwrap(), Heartbeat::Lost);
        sqlx::query("UPDATE jobs SET run_after = 0 WHERE id = $1").bind(&a.id).execute(db.pool()).await.unwrap();
        let second = claim_job(db, &a.id).await;
        assert_eq!(second.job.attempts, 2);
        let zombie = finish(
            db,
            &outbox,
            &first,
            Outcome::Succeeded { source: serde_json::json!({}), outputs: serde_json::json!(["zombie"]) },
        )
        .await
        .unwrap();
        assert!(zombie.is_none(), "a worker whose lease was taken writes nothing");
        let done = finish(
            db,
            &outbox,
            &second,
            Outcome::Succeeded { source: serde_json::json!({"w": 1}), outputs: serde_json::json!(["winner"]) },
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            (done.state, done.progress, done.outputs.clone()),
            (JobState::Succeeded, 1.0, Some(serde_json::json!(["winner"])))
        );
        let succeeded: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE subject = $1 AND kind = 'job.succeeded'")
                .bind(&a.id)
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(succeeded, 1);

        // Transient failures until out of attempts: dead, with one job.failed.
        let t = claim_job(db, &other.id).await;
        let failure = JobFailure { code: "transient".into(), message: "ffmpeg crashed".into() };
        let j = finish(db, &outbox, &t, Outcome::Transient(failure.clone())).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Queued);
        sqlx::query("UPDATE jobs SET run_after = 0 WHERE id = $1").bind(&other.id).execute(db.pool()).await.unwrap();
        let t = claim_job(db, &other.id).await;
        let j = finish(db, &outbox, &t, Outcome::Transient(failure)).await.unwrap().unwrap();
        assert_eq!((j.state, j.attempts), (JobState::Dead, 2));
        // Retry by hand: queued again with more attempts; cancel it; cancelling twice changes nothing.
        let j = retry(db, &other.api_key, &other.id, 3).await.unwrap().unwrap();
        assert_eq!((j.state, j.max_attempts), (JobState::Queued, 5));
        let (j, changed) = cancel(db, &outbox, &other.api_key, &other.id).await.unwrap().unwrap();
        assert_eq!((j.state, changed), (JobState::Cancelled, true));
        let (j, changed) = cancel(db, &outbox, &other.api_key, &other.id).await.unwrap().unwrap();
        assert_eq!((j.state, changed), (JobState::Cancelled, false), "cancelling twice changes nothing");
        let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM events WHERE subject = $1 ORDER BY kind")
            .bind(&other.id)
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert_eq!(kinds, ["job.cancelled", "job.failed"], "one event per terminal transition");
    }

    #[tokio::test]
    async fn queue_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display())).await.unwrap();
        check_queue(&db, "s").await;
    }

    #[tokio::test]
    async fn queue_on_postgres_when_configured() {
        let Ok(url) = std::env::var("HOIST_TEST_DATABASE_URL") else {
            eprintln!("HOIST_TEST_DATABASE_URL is not set: Postgres not checked here");
            return;
        };
        let db = Db::connect(&crate::db::fresh_postgres_schema(&url).await.unwrap()).await.unwrap();
        check_queue(&db, "p").await;
    }
}
