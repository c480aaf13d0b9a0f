//! A worker: claim a job → download its source → run its preset → upload the outputs → finish,
//! renewing the lease with a heartbeat the whole time. Runs inside `hoist serve` (`--workers N`)
//! and as `hoist worker` processes; any number of them share one database.
//!
//! Decisions:
//! - **One attempt, one output prefix.** Outputs go to `{source dir}/derived/{upload id}/
//!   {preset}-a{attempt}/{name}`, next to the source: two attempts never write the same key, so
//!   a zombie worker (its lease taken) can never overwrite the winner's outputs, and whoever
//!   loses the fenced [`jobs::finish`] deletes what it uploaded. The job's `outputs` list names
//!   the exact keys of the attempt that won.
//! - **The lease is the worker's licence.** A heartbeat that finds the lease gone (cancelled,
//!   requeued, claimed by another) cancels the attempt at once: ffmpeg is killed within one
//!   heartbeat of the change, and nothing is written after.
//! - **The source is fetched by `ETag`** (`If-Match`): a replaced object fails the job as
//!   `source_changed` rather than processing other bytes under the old job.
//! - **Failures.** The runner's permanent errors fail the job at once; transient ones (S3 or
//!   network trouble, ffmpeg crashing, the per-attempt timeout, the worker shutting down) requeue
//!   it with backoff until `max_attempts`. A worker killed outright leaves its lease to expire;
//!   the janitor requeues the job.
//! - Progress: 0–5 % download, 5–90 % the runner, 90–100 % the uploads; never lower.
//! - Scratch space is one directory per attempt, removed when the attempt ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hoist_core::{CancellationToken, Events, OnFailure, Source, UploadRequest, Uploader};
use serde_json::json;

use super::events::Outbox;
use super::jobs::{self, Heartbeat, JobFailure, Lease, Outcome};
use super::runner::{JobError, JobRunner, OutputFile};
use crate::db::Db;

/// Everything a worker needs; shared by the worker tasks of one process.
#[derive(Debug)]
pub struct Worker {
    /// The job queue.
    pub db: Db,
    /// Where terminal events go.
    pub outbox: Outbox,
    /// Downloads sources and uploads outputs (Hoist's engine).
    pub uploader: Uploader,
    /// Runners by preset name.
    pub runners: HashMap<String, Arc<dyn JobRunner>>,
    /// Lease of a claimed job.
    pub lease: Duration,
    /// How often the lease is renewed and progress recorded.
    pub heartbeat: Duration,
    /// How long an idle worker waits before looking for jobs again (it also wakes when this
    /// process queues one).
    pub poll: Duration,
    /// Where attempts keep their files.
    pub scratch: PathBuf,
}

/// The prefix of an attempt's outputs (see the module doc).
#[must_use]
pub fn output_prefix(job: &jobs::Job) -> String {
    format!(
        "{}{}-a{}/",
        derived_prefix(&job.source_key, job.upload_id.as_deref().unwrap_or(&job.id)),
        job.preset,
        job.attempts
    )
}

/// Where every output derived from `source_key` for `owner` (an upload session or a job) lives.
#[must_use]
pub fn derived_prefix(source_key: &str, owner: &str) -> String {
    match source_key.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/derived/{owner}/"),
        None => format!("derived/{owner}/"),
    }
}

/// Progress in basis points, only ever raised.
#[derive(Debug, Default)]
struct Progress(AtomicU64);

impl Progress {
    fn raise(&self, fraction: f64) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to 0..=10000
        let bp = (fraction.clamp(0.0, 1.0) * 10_000.0) as u64;
        self.0.fetch_max(bp, Ordering::Relaxed);
    }

    #[allow(clippy::cast_precision_loss)] // ≤ 10000
    fn get(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 10_000.0
    }
}

impl Worker {
    /// Claims and runs jobs until `shutdown` fires; a job in progress then stops and is requeued.
    pub async fn run(self: Arc<Self>, name: String, shutdown: CancellationToken) {
        tracing::info!(worker = %name, "worker started");
        while !shutdown.is_cancelled() {
            match jobs::claim(&self.db, &name, self.lease).await {
                Ok(Some(lease)) => self.process(lease, &shutdown).await,
                Ok(None) => {
                    // Idle: take over jobs whose worker died (the janitor does too, but a
                    // deployment of workers alone must recover by itself).
                    if jobs::requeue_expired(&self.db, &self.outbox, 100).await.is_ok_and(|n| n > 0) {
                        continue;
                    }
                    let woken = self.outbox.changed();
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = woken => {}
                        () = tokio::time::sleep(self.poll) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(worker = %name, error = %e, "cannot claim jobs; trying again");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(self.poll.max(Duration::from_secs(1))) => {}
                    }
                }
            }
        }
        tracing::info!(worker = %name, "worker stopped");
    }

    /// One attempt of one job, from claim to fenced finish.
    async fn process(&self, lease: Lease, shutdown: &CancellationToken) {
        let job = &lease.job;
        tracing::info!(job = %job.id, preset = %job.preset, attempt = job.attempts, key = %job.source_key, "job claimed");
        let cancel = shutdown.child_token();
        let progress = Arc::new(Progress::default());
        let lost = CancellationToken::new();
        let beat = tokio::spawn(heartbeat(
            self.db.clone(),
            lease.clone(),
            Arc::clone(&progress),
            self.heartbeat,
            self.lease,
            cancel.clone(),
            lost.clone(),
        ));
        let uploaded = Mutex::new(Vec::new());
        let dir = self.scratch.join(format!("{}-a{}", job.id, job.attempts));
        let result = tokio::time::timeout(job.timeout, self.attempt(&lease, &dir, &progress, &cancel, &uploaded)).await;
        let outcome = match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(JobError::Permanent { code, message })) => {
                Outcome::Failed(JobFailure { code: code.into(), message })
            }
            Ok(Err(JobError::Transient(message))) => {
                Outcome::Transient(JobFailure { code: "transient".into(), message })
            }
            Ok(Err(JobError::Cancelled)) => Outcome::Transient(JobFailure {
                code: "worker_stopped".into(),
                message: "the worker stopped during the job; it will run again".into(),
            }),
            Err(_) => {
                cancel.cancel();
                Outcome::Transient(JobFailure {
                    code: "timeout".into(),
                    message: format!("the job took longer than its limit of {:?}", job.timeout),
                })
            }
        };
        beat.abort();
        let succeeded = matches!(outcome, Outcome::Succeeded { .. });
        let finished = if lost.is_cancelled() {
            None
        } else {
            match jobs::finish(&self.db, &self.outbox, &lease, outcome).await {
                Ok(j) => j,
                Err(e) => {
                    // The lease will expire and the janitor requeues the job; this attempt's
                    // outputs are not named by it, so they go.
                    tracing::error!(job = %job.id, error = %e, "cannot record the job's end");
                    None
                }
            }
        };
        if let Some(j) = &finished {
            tracing::info!(job = %j.id, state = j.state.as_str(), attempts = j.attempts, "job attempt finished");
        } else {
            tracing::warn!(job = %job.id, attempt = job.attempts, "lease lost: this attempt's work is discarded");
        }
        if finished.is_none() || !succeeded {
            let keys = std::mem::take(&mut *uploaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            self.delete_outputs(&job.bucket, &keys).await;
        }
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a job's scratch directory");
        }
    }

    /// Download → run → upload; the uploaded keys are pushed to `uploaded` as they land, so
    /// the caller can delete them whatever happens next.
    async fn attempt(
        &self,
        lease: &Lease,
        dir: &Path,
        progress: &Arc<Progress>,
        cancel: &CancellationToken,
        uploaded: &Mutex<Vec<String>>,
    ) -> Result<Outcome, JobError> {
        let job = &lease.job;
        let runner = self.runners.get(&job.preset).ok_or_else(|| JobError::Permanent {
            code: "unknown_preset",
            message: format!(
                "no worker here knows preset {:?}: run workers that have it, then retry the job",
                job.preset
            ),
        })?;
        let out_dir = dir.join("out");
        tokio::fs::create_dir_all(&out_dir)
            .await
            .map_err(|e| JobError::Transient(format!("cannot make scratch directory {}: {e}", out_dir.display())))?;
        let input = dir.join("source");
        let download = self.uploader.client().download(&job.bucket, &job.source_key, &job.source_etag, &input);
        tokio::select! {
            r = download => r.map_err(|e| source_error(&e))?,
            () = cancel.cancelled() => return Err(JobError::Cancelled),
        };
        progress.raise(0.05);
        let report = {
            let progress = Arc::clone(progress);
            move |p: f64| progress.raise(0.05 + 0.85 * p)
        };
        let run = runner.run(&input, &out_dir, &report, cancel).await?;
        progress.raise(0.9);
        let prefix = output_prefix(job);
        let mut stored = Vec::with_capacity(run.outputs.len());
        let count = run.outputs.len().max(1);
        for (i, out) in run.outputs.iter().enumerate() {
            let key = format!("{prefix}{}", out.name);
            let size = self.upload(job, &key, out, cancel).await?;
            uploaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(key.clone());
            stored.push(json!({
                "key": key, "name": out.name, "size": size, "content_type": out.content_type,
                "width": out.width, "height": out.height, "duration": out.duration,
            }));
            #[allow(clippy::cast_precision_loss)] // a handful of outputs
            progress.raise(0.9 + 0.1 * (i + 1) as f64 / count as f64);
        }
        Ok(Outcome::Succeeded { source: run.source, outputs: serde_json::Value::Array(stored) })
    }

    /// Uploads one output with the engine (checksums, multipart for big files); answers its size.
    async fn upload(
        &self,
        job: &jobs::Job,
        key: &str,
        out: &OutputFile,
        cancel: &CancellationToken,
    ) -> Result<u64, JobError> {
        let req = UploadRequest {
            source: Source::File(out.path.clone()),
            bucket: job.bucket.clone(),
            key: key.to_owned(),
            content_type: Some(out.content_type.clone()),
            metadata: vec![("hoist-job".into(), job.id.clone())],
        };
        match self.uploader.upload(&req, &Events::none(), cancel, OnFailure::Abort).await {
            Ok(done) => Ok(done.size),
            Err(hoist_core::Error::Cancelled) => Err(JobError::Cancelled),
            Err(e) => Err(JobError::Transient(format!("cannot store output {}: {e}", out.name))),
        }
    }

    /// Deletes outputs an attempt uploaded but that no job names (best effort, logged).
    async fn delete_outputs(&self, bucket: &str, keys: &[String]) {
        for key in keys {
            if let Err(e) = self.uploader.client().delete(bucket, key).await {
                tracing::warn!(key = %key, error = %e, "cannot delete a discarded output");
            }
        }
    }
}

/// Maps a failed download: a replaced or deleted source fails the job for good.
fn source_error(e: &hoist_core::Error) -> JobError {
    match e {
        hoist_core::Error::Service { status: 412, .. } => JobError::Permanent {
            code: "source_changed",
            message: "the source object was replaced after the upload: the new object gets its own job".into(),
        },
        hoist_core::Error::Service { status: 404, .. } => JobError::Permanent {
            code: "source_missing",
            message: "the source object was deleted before the job ran".into(),
        },
        other => JobError::Transient(format!("cannot download the source: {other}")),
    }
}

/// Renews the lease every `every` with the current progress; when the lease is gone, cancels
/// the attempt and marks it `lost`.
async fn heartbeat(
    db: Db,
    lease: Lease,
    progress: Arc<Progress>,
    every: Duration,
    extend: Duration,
    cancel: CancellationToken,
    lost: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match jobs::heartbeat(&db, &lease, progress.get(), extend).await {
            Ok(Heartbeat::Held) => {}
            Ok(Heartbeat::Lost) => {
                tracing::info!(job = %lease.job.id, "lease lost (cancelled or taken over): stopping");
                lost.cancel();
                cancel.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(job = %lease.job.id, error = %e, "heartbeat failed; the lease runs on until it expires");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_live_next_to_the_source_one_prefix_per_attempt() {
        assert_eq!(derived_prefix("dev/abc/movie.mp4", "abc"), "dev/abc/derived/abc/");
        assert_eq!(derived_prefix("movie.mp4", "job_1"), "derived/job_1/");
        let p = Progress::default();
        p.raise(0.5);
        p.raise(0.2);
        assert!((p.get() - 0.5).abs() < 1e-9, "progress never goes down");
    }
}
