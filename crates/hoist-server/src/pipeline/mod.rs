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
//! - [`stream_token`]: signed URLs for job event streams.
//! - [`transcode`]: the video runner: `ffprobe`, then a named preset with `ffmpeg`.
//! - [`worker`]: claim → download → run → upload outputs → finish, with heartbeats.
//! - [`webhooks`]: Standard Webhooks deliveries with their own retry schedule.

pub mod events;
pub mod jobs;
pub mod runner;
pub mod stream_token;
pub mod transcode;
pub mod webhooks;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{ConfigError, PipelineConfig, PipelineRule};
use runner::JobRunner;
use transcode::{Ffmpeg, MediaCaps, VideoPreset};

/// The presets workers can run, by name.
#[must_use]
pub fn preset_names() -> Vec<&'static str> {
    VideoPreset::ALL.iter().map(|p| p.name()).collect()
}

/// A runner for every preset, with these tools and the default caps.
#[must_use]
pub fn video_runners(tools: &Ffmpeg) -> HashMap<String, Arc<dyn JobRunner>> {
    VideoPreset::ALL
        .iter()
        .map(|&preset| {
            let runner: Arc<dyn JobRunner> =
                Arc::new(transcode::VideoRunner { tools: tools.clone(), preset, caps: MediaCaps::default() });
            (preset.name().to_owned(), runner)
        })
        .collect()
}

/// Finds ffmpeg when the pipeline needs it. With `dev` and no rules of its own, turns the
/// pipeline on for `video/*` (one in-process worker at least) when ffmpeg is here. Answers the
/// tools (if found) and, for `dev`, one line saying what the pipeline does, or why it is off.
pub fn setup(config: &mut PipelineConfig, dev: bool) -> Result<(Option<Ffmpeg>, Option<String>), ConfigError> {
    let found = Ffmpeg::find();
    if dev && config.rules.is_empty() {
        return Ok(match found {
            Ok(tools) => {
                config.rules.push(PipelineRule {
                    content_types: vec!["video/*".into()],
                    prefix: String::new(),
                    preset: VideoPreset::Mp4.name().into(),
                });
                config.workers = config.workers.max(1);
                let note = format!(
                    "pipeline: video/* uploads are transcoded to {} by {} worker(s) in this process ({})",
                    VideoPreset::Mp4.name(),
                    config.workers,
                    tools.version()
                );
                (Some(tools), Some(note))
            }
            Err(why) => (None, Some(format!("pipeline: off: {why}"))),
        });
    }
    if config.workers == 0 {
        return Ok((found.ok(), None));
    }
    match found {
        Ok(tools) => Ok((Some(tools), None)),
        Err(why) => Err(ConfigError(format!(
            "pipeline.workers = {} needs ffmpeg: {why}; or set workers = 0 and run `hoist worker` elsewhere",
            config.workers
        ))),
    }
}
