//! The pipeline: what happens after an upload. Completing an upload (either API) or an S3 event
//! notification writes an [`events::Event`] into the outbox and, when a rule matches, a job, in the
//! same transaction; workers ([`worker`]) claim jobs with a lease and a random fencing token, run
//! them through a [`runner::JobRunner`] (video: [`transcode`]), upload the outputs with Hoist's
//! engine, and finish fenced on the token; [`webhooks`] delivers the events, signed, durably.
//!
//! # Layout
//! - [`events`]: the outbox (`upload.completed`, `job.*`) and the S3 event intake.
//! - [`jobs`]: the job table: enqueue (idempotent), claim, heartbeat, finish (fenced), requeue.
//! - [`runner`]: the trait a kind of job implements, and what it reports.
//! - [`transcode`]: the video runner: `ffprobe`, then a named preset with `ffmpeg`.
//! - [`worker`]: claim → download → run → upload outputs → finish, with heartbeats.
//! - [`webhooks`]: Standard Webhooks deliveries with their own retry schedule.

pub mod runner;
pub mod events;
pub mod webhooks;
