//! [`JobRunner`]: what one kind of job does with a source file on local disk. The worker owns
//! everything around it (claiming, the lease, downloading the source, uploading what the runner
//! wrote, finishing); a runner only reads `input`, writes files into `out_dir`, reports progress,
//! and stops promptly when `cancel` fires (the job was cancelled, timed out, or its lease was lost).
//! A second kind of job (image thumbnails, say) is one more file implementing this trait.

use std::path::{Path, PathBuf};

use hoist_core::CancellationToken;
use serde::Serialize;

/// Reports progress from 0.0 to 1.0 (monotone is the caller's business: the worker keeps the max).
pub type Progress<'a> = &'a (dyn Fn(f64) + Send + Sync);

/// One kind of job.
#[async_trait::async_trait]
pub trait JobRunner: Send + Sync + std::fmt::Debug {
    /// Runs the job on `input`, writing outputs into `out_dir` (empty, owned by the worker).
    async fn run(
        &self,
        input: &Path,
        out_dir: &Path,
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<RunOutput, JobError>;
}

/// What a finished run produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunOutput {
    /// What the runner learned about the source (for video: ffprobe's duration, size, codecs).
    pub source: serde_json::Value,
    /// The files written into `out_dir`.
    pub outputs: Vec<OutputFile>,
}

/// One file a run wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputFile {
    /// Where it is on disk (inside `out_dir`).
    #[serde(skip)]
    pub path: PathBuf,
    /// Its name under the job's output prefix (`video.mp4`, `poster.jpg`, `hls/720p.m3u8`).
    pub name: String,
    /// Its content type.
    pub content_type: String,
    /// Pixels across, for pictures and video.
    pub width: Option<u32>,
    /// Pixels down, for pictures and video.
    pub height: Option<u32>,
    /// Seconds, for video and audio.
    pub duration: Option<f64>,
}

/// Why a run did not produce its outputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The input can never succeed (not a video, unsupported codec, over the caps): fail at once.
    /// `code` is stable (`invalid_input`, `unsupported_codec`, `too_long`, `too_large`);
    /// `message` says what a person can do about it.
    #[error("{code}: {message}")]
    Permanent {
        /// Stable machine-readable code.
        code: &'static str,
        /// What went wrong and what to do.
        message: String,
    },
    /// Worth another attempt (ffmpeg crashed, disk full, I/O error).
    #[error("{0}")]
    Transient(String),
    /// `cancel` fired; the runner stopped (and killed its child processes).
    #[error("cancelled")]
    Cancelled,
}
