//! The video runner: turns a local source file into web-ready outputs with `ffprobe` and
//! `ffmpeg`. It owns finding the tools, checking an untrusted input before any transcoding
//! (container, video stream, decoders, caps), the named presets and the exact `ffmpeg` arguments
//! they stand for, progress from `-progress pipe:1`, killing `ffmpeg` on cancel, and describing
//! the outputs. It does not own the job around it (claiming, downloading, uploading, retries: the
//! worker's business, through [`JobRunner`]).
//!
//! Decisions:
//! - **Untrusted input, local files only.** Every `ffprobe` and `ffmpeg` run gets
//!   `-protocol_whitelist file` and a `-format_whitelist` of plain container demuxers, so a
//!   playlist (HLS, concat, image sequences) posing as a video cannot make ffmpeg read other files
//!   or the network. Paths are made absolute so a name can never parse as an option or a protocol.
//!   `ffmpeg` is then held to the demuxer `ffprobe` found.
//! - **Presets are names** ([`VideoPreset`]); the arguments are built here from the probed source,
//!   never taken from callers or config.
//! - **Checked before transcoding**, each refusal a [`JobError::Permanent`] with a stable code:
//!   `invalid_input` (not a media file, no video stream, container not accepted, truncated),
//!   `unsupported_codec` (this ffmpeg has no decoder for it), `too_long` and `too_large`
//!   ([`MediaCaps`]). Cover art (`attached_pic`) is not a video stream.
//! - **Size:** "720p" bounds the short side to 720 and the long side to 1280, so a portrait phone
//!   video becomes 720×1280, not 404×720; dimensions keep the display aspect (sample aspect ratio
//!   and rotation applied), are even (yuv420p needs it) and never grow.
//! - **One `ffmpeg` run per job** decodes once and writes every output (the video or the HLS
//!   ladder, and the poster) through one `split` filter graph.
//! - **Failure classes:** `ffmpeg` failing on an input that probed fine is [`JobError::Transient`]
//!   (killed, disk full, a bug) unless its stderr says the input is broken, which is permanent.
//!   A truncated file whose index is at the start (a faststart MP4 cut short) probes fine and
//!   `ffmpeg` exits 0 on it, so the output's duration is compared with the source's as well.
//! - **Cancel:** `ffmpeg` is killed (SIGKILL) and reaped at once, and every child is spawned with
//!   `kill_on_drop`, so a dropped future never leaves one running. On any failure the files the
//!   preset writes are removed from `out_dir`.
//! - **Metadata is not copied** (`-map_metadata -1`): phone videos carry GPS locations in tags.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use hoist_core::CancellationToken;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, BufReader};
use tokio::process::Command;

use super::runner::{JobError, JobRunner, OutputFile, Progress, RunOutput};

/// The container demuxers accepted for transcoding, by ffmpeg's demuxer names: the mp4/mov
/// family, Matroska/WebM, AVI, MPEG-TS, FLV, Ogg and MPEG-PS. All read one file and nothing else.
const VIDEO_FORMATS: &[&str] = &["mov", "matroska", "avi", "mpegts", "flv", "ogg", "mpeg"];

/// Audio-only containers `ffprobe` may also open, only so that an audio file is refused with
/// "no video stream" rather than "not a media file". `ffmpeg` never gets them.
const AUDIO_FORMATS: &[&str] = &["wav", "w64", "mp3", "flac", "aac"];

/// The last bytes of `ffmpeg`'s stderr kept for the error message.
const STDERR_TAIL: usize = 8 * 1024;

/// The most `ffprobe` JSON read (a file with thousands of streams is refused, not buffered).
const PROBE_JSON_MAX: usize = 4 * 1024 * 1024;

/// Encoders every preset needs.
const ENCODERS: &[(&str, &str)] = &[("libx264", "H.264 video"), ("aac", "AAC audio"), ("mjpeg", "the JPEG poster")];

/// Phrases in `ffmpeg`'s stderr that mean the input itself is broken, not the machine.
const BROKEN_INPUT: &[&str] = &[
    "invalid data found when processing input",
    "partial file",
    "moov atom not found",
    "error while decoding",
    "corrupt",
    "invalid nal unit",
];

/// Where `ffmpeg` and `ffprobe` are, and what this build can decode.
#[derive(Debug, Clone)]
pub struct Ffmpeg {
    /// `ffmpeg`.
    exe: PathBuf,
    /// `ffprobe`.
    probe_exe: PathBuf,
    version: String,
    /// Codec names (ffprobe's `codec_name`) this build has a decoder for.
    decoders: BTreeSet<String>,
}

impl Ffmpeg {
    /// Finds `ffmpeg` and `ffprobe` on `PATH` and checks them ([`Ffmpeg::at`]). The error is one
    /// line saying what is missing and how to get it. Runs a few short processes: call it once
    /// at start-up, not on an async worker thread in a hot path.
    pub fn find() -> Result<Self, String> {
        let ffmpeg = on_path("ffmpeg")?;
        let ffprobe = on_path("ffprobe")?;
        Self::at(ffmpeg, ffprobe)
    }

    /// Uses the given executables: checks that both run, that `ffmpeg` has the encoders the
    /// presets need, and lists its decoders.
    pub fn at(ffmpeg: impl Into<PathBuf>, ffprobe: impl Into<PathBuf>) -> Result<Self, String> {
        let (ffmpeg, ffprobe) = (ffmpeg.into(), ffprobe.into());
        let version = capture(&ffmpeg, &["-hide_banner", "-version"])?;
        let version = version.lines().next().and_then(|l| l.split_whitespace().nth(2)).unwrap_or("unknown").to_owned();
        capture(&ffprobe, &["-hide_banner", "-version"])?;
        let encoders = codec_list(&capture(&ffmpeg, &["-hide_banner", "-encoders"])?);
        for (encoder, purpose) in ENCODERS {
            if !encoders.contains(*encoder) {
                return Err(format!(
                    "{} has no {encoder} encoder (needed for {purpose}): install an ffmpeg built with it, such as Debian's `apt-get install ffmpeg`",
                    ffmpeg.display()
                ));
            }
        }
        let decoders = codec_list(&capture(&ffmpeg, &["-hide_banner", "-decoders"])?);
        Ok(Self { exe: ffmpeg, probe_exe: ffprobe, version, decoders })
    }

    /// The `ffmpeg` executable.
    #[must_use]
    pub fn ffmpeg(&self) -> &Path {
        &self.exe
    }

    /// The `ffprobe` executable.
    #[must_use]
    pub fn ffprobe(&self) -> &Path {
        &self.probe_exe
    }

    /// `ffmpeg`'s version, as it reports it (`5.1.6-0+deb12u1`).
    #[must_use]
    pub fn version(&self) -> &str {
        &self.version
    }

    fn can_decode(&self, codec: &str) -> bool {
        self.decoders.contains(codec)
    }
}

/// The first executable `name` in `PATH`.
fn on_path(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p)).ok_or_else(|| {
        format!("{name} not found on PATH: install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg) to turn the video pipeline on")
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `exe args` to completion and returns its stdout, or a one-line reason.
fn capture(exe: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{} {} failed ({}): {}", exe.display(), args.join(" "), out.status, last_lines(&err, 1)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The codec names in `ffmpeg -encoders` / `-decoders` output: each coder's own name and, when
/// it differs (`libdav1d … (codec av1)`), the codec it handles.
fn codec_list(listing: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let rows = listing.lines().skip_while(|l| !l.trim_start().starts_with("------")).skip(1);
    for row in rows {
        let mut words = row.split_whitespace();
        let (Some(_flags), Some(name)) = (words.next(), words.next()) else { continue };
        names.insert(name.to_owned());
        if let Some(codec) = row.trim_end().strip_suffix(')').and_then(|r| r.rsplit_once("(codec ")).map(|(_, c)| c) {
            names.insert(codec.to_owned());
        }
    }
    names
}

/// A named output recipe, chosen by name in config; callers never pass `ffmpeg` arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VideoPreset {
    /// `mp4-720p`: H.264 (libx264, CRF 23) and AAC in an MP4 with the index first
    /// (`+faststart`), at most 720p, at most 60 fps, yuv420p; `video.mp4` and `poster.jpg`.
    #[default]
    Mp4,
    /// `hls`: an HLS ladder of H.264/AAC MPEG-TS variants (360p, and 720p when the source is
    /// larger than 360p; never upscaled), 4 s segments, `hls/master.m3u8` naming them, each
    /// variant `hls/{height}p.m3u8` with `hls/{height}p_NNN.ts`; and `poster.jpg`.
    Hls,
}

impl VideoPreset {
    /// Every preset.
    pub const ALL: [Self; 2] = [Self::Mp4, Self::Hls];

    /// The preset called `name` (`mp4-720p`, `hls`), if there is one.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Its name in config and in job records.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4-720p",
            Self::Hls => "hls",
        }
    }
}

/// One rung of a size ladder: the bounds of the short and long side, and the HLS peak rate.
#[derive(Debug, Clone, Copy)]
struct Rung {
    short: u32,
    long: u32,
    /// `-maxrate` in kbit/s; the HLS muxer writes `BANDWIDTH` from it (without it, it leaves
    /// the variant out of the master playlist).
    maxrate_k: u32,
}

/// 720p: the MP4 preset's size and the HLS ladder's top.
const R720: Rung = Rung { short: 720, long: 1280, maxrate_k: 3000 };
/// 360p: the HLS ladder's bottom.
const R360: Rung = Rung { short: 360, long: 640, maxrate_k: 1000 };

/// What a source may be, checked after `ffprobe` and before any transcoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaCaps {
    /// Longest accepted duration. Default 4 h: long recordings (a lecture, a feature film) pass,
    /// and a job's CPU time stays bounded (a 720p encode runs at about real time on one core).
    pub max_duration: Duration,
    /// Most accepted pixels per frame (width × height). Default 3840 × 2160: 4K UHD, the largest
    /// size phones and consumer cameras record; decoding 8K for a 720p output costs 4× for nothing.
    pub max_pixels: u64,
}

impl Default for MediaCaps {
    fn default() -> Self {
        Self { max_duration: Duration::from_hours(4), max_pixels: 3840 * 2160 }
    }
}

/// Turns a video into a [`VideoPreset`]'s outputs. See the module doc.
#[derive(Debug, Clone)]
pub struct VideoRunner {
    /// The tools.
    pub tools: Ffmpeg,
    /// What to make.
    pub preset: VideoPreset,
    /// What to accept.
    pub caps: MediaCaps,
}

#[async_trait::async_trait]
impl JobRunner for VideoRunner {
    async fn run(
        &self,
        input: &Path,
        out_dir: &Path,
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<RunOutput, JobError> {
        let result = self.transcode(input, out_dir, progress, cancel).await;
        if result.is_err() {
            remove_outputs(out_dir).await;
        }
        result
    }
}

impl VideoRunner {
    /// Probes `input` and returns the `ffmpeg` arguments (without the executable) this runner
    /// would run on it, writing into `out_dir`; for inspection and for measuring the runner
    /// against bare `ffmpeg`.
    pub async fn ffmpeg_args(
        &self,
        input: &Path,
        out_dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<Vec<OsString>, JobError> {
        let input = absolute(input)?;
        let source = self.check(&input, cancel).await?;
        Ok(self.args(&source, &input, &absolute(out_dir)?))
    }

    async fn transcode(
        &self,
        input: &Path,
        out_dir: &Path,
        progress: Progress<'_>,
        cancel: &CancellationToken,
    ) -> Result<RunOutput, JobError> {
        let (input, out_dir) = (absolute(input)?, absolute(out_dir)?);
        let source = self.check(&input, cancel).await?;
        if self.preset == VideoPreset::Hls {
            tokio::fs::create_dir_all(out_dir.join("hls"))
                .await
                .map_err(|e| JobError::Transient(format!("cannot create {}/hls: {e}", out_dir.display())))?;
        }
        let args = self.args(&source, &input, &out_dir);
        tracing::debug!(preset = self.preset.name(), ?args, "running ffmpeg");

        // Progress: out_time against the duration ffmpeg will write, kept monotone and below 1
        // until the outputs are checked.
        let total_us = source.duration.map(|d| d.min(self.caps.max_duration.as_secs_f64()) * 1e6);
        let mut reported = 0.0_f64;
        let on_line = |line: &str| {
            let (Some(total), Some(us)) =
                (total_us, line.strip_prefix("out_time_us=").and_then(|v| v.trim().parse::<f64>().ok()))
            else {
                return;
            };
            let p = (us / total).clamp(0.0, 0.99);
            if p > reported {
                reported = p;
                progress(p);
            }
        };
        let mut cmd = Command::new(&self.tools.exe);
        cmd.args(&args);
        let done = run_child(cmd, cancel, usize::MAX, on_line).await?;
        let stderr_says_broken = broken_input(&done.stderr_tail);
        if !done.status.success() {
            let tail = last_lines(&done.stderr_tail, 3);
            return Err(if stderr_says_broken {
                JobError::Permanent {
                    code: "invalid_input",
                    message: format!(
                        "ffmpeg cannot read the file ({tail}): it is damaged or truncated; upload it again"
                    ),
                }
            } else {
                JobError::Transient(format!("ffmpeg failed ({}): {tail}", done.status))
            });
        }

        let outputs = self.describe_outputs(&out_dir, cancel).await?;
        // Only the video and the HLS variant playlists have a duration.
        let written = outputs.iter().filter_map(|o| o.duration).reduce(f64::max);
        if let (Some(expected), Some(written)) = (source.duration, written) {
            let expected = expected.min(self.caps.max_duration.as_secs_f64());
            if written + (expected * 0.05).max(1.0) < expected {
                return Err(JobError::Permanent {
                    code: "invalid_input",
                    message: format!(
                        "the file ends early: its header says {}, but only {} could be read; it is truncated or damaged, upload it again",
                        human(expected),
                        human(written)
                    ),
                });
            }
        }
        if done.stderr_tail.contains("partial file") {
            return Err(JobError::Permanent {
                code: "invalid_input",
                message: "the file is truncated (ffmpeg read a partial file); upload it again".into(),
            });
        }
        progress(1.0);
        Ok(RunOutput { source: source.to_json(), outputs })
    }

    /// `ffprobe`, then every check; what was learned about the source.
    async fn check(&self, input: &Path, cancel: &CancellationToken) -> Result<Source, JobError> {
        let allowed: Vec<&str> = VIDEO_FORMATS.iter().chain(AUDIO_FORMATS).copied().collect();
        let probe = match probe(&self.tools, input, &allowed.join(","), cancel).await? {
            Ok(p) => p,
            Err(why) => {
                return Err(JobError::Permanent {
                    code: "invalid_input",
                    message: format!(
                        "the file is not a video ffmpeg can read ({why}); upload a video such as MP4, MOV, MKV or WebM"
                    ),
                });
            }
        };
        let format = probe.format.unwrap_or_default();
        let video =
            probe.streams.iter().find(|s| s.codec_type.as_deref() == Some("video") && s.disposition.attached_pic == 0);
        let Some(video) = video else {
            let what = if probe.streams.iter().any(|s| s.codec_type.as_deref() == Some("audio")) {
                "it is audio only"
            } else {
                "it has no streams ffmpeg can use"
            };
            return Err(JobError::Permanent {
                code: "invalid_input",
                message: format!(
                    "the file has no video stream ({what}, {}); upload a video file",
                    format.long_name.as_deref().unwrap_or(&format.name)
                ),
            });
        };
        let demuxer = format.name.split(',').find(|n| VIDEO_FORMATS.contains(n));
        let Some(demuxer) = demuxer else {
            return Err(JobError::Permanent {
                code: "invalid_input",
                message: format!(
                    "the container {} is not accepted; re-mux the video into MP4, MKV or WebM",
                    format.name
                ),
            });
        };
        let audio = probe.streams.iter().find(|s| s.codec_type.as_deref() == Some("audio"));
        for (kind, stream) in [("video", Some(video)), ("audio", audio)] {
            let Some(stream) = stream else { continue };
            let codec = stream.codec_name.as_deref().unwrap_or("unknown");
            if !self.tools.can_decode(codec) {
                return Err(JobError::Permanent {
                    code: "unsupported_codec",
                    message: format!(
                        "this server cannot decode the {kind} codec {codec}; re-encode the file to H.264 video and AAC audio"
                    ),
                });
            }
        }
        let (Some(width), Some(height)) = (video.width.filter(|w| *w > 0), video.height.filter(|h| *h > 0)) else {
            return Err(JobError::Permanent {
                code: "invalid_input",
                message: "the video stream has no picture size; the file is damaged, upload it again".into(),
            });
        };
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.caps.max_pixels {
            return Err(JobError::Permanent {
                code: "too_large",
                message: format!(
                    "the video is {width}×{height} ({:.1} megapixels); the limit is {:.1} megapixels per frame (3840×2160 by default): scale it down before uploading",
                    megapixels(pixels),
                    megapixels(self.caps.max_pixels)
                ),
            });
        }
        let duration = format
            .duration
            .as_deref()
            .or(video.duration.as_deref())
            .and_then(|d| d.parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d > 0.0);
        if let Some(d) = duration
            && d > self.caps.max_duration.as_secs_f64()
        {
            return Err(JobError::Permanent {
                code: "too_long",
                message: format!(
                    "the video is {} long; the limit is {}: trim or split it",
                    human(d),
                    human(self.caps.max_duration.as_secs_f64())
                ),
            });
        }
        let (display_width, display_height) = display_size(video, width, height);
        Ok(Source {
            demuxer: demuxer.to_owned(),
            format: format.name.clone(),
            duration,
            bit_rate: format.bit_rate.as_deref().and_then(|b| b.parse().ok()),
            video: video.index,
            video_codec: video.codec_name.clone().unwrap_or_default(),
            width,
            height,
            display: (display_width, display_height),
            frame_rate: video.avg_frame_rate.as_deref().and_then(ratio),
            audio: audio.map(|a| (a.index, a.codec_name.clone().unwrap_or_default())),
        })
    }

    /// The `ffmpeg` arguments for this preset on `source`. Paths are absolute.
    fn args(&self, source: &Source, input: &Path, out_dir: &Path) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        push(&mut a, &["-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-progress", "pipe:1", "-y"]);
        push(&mut a, &["-protocol_whitelist", "file", "-format_whitelist", &source.demuxer, "-f", &source.demuxer]);
        a.push("-i".into());
        a.push(input.into());

        let rungs: Vec<Rung> = match self.preset {
            VideoPreset::Mp4 => vec![R720],
            VideoPreset::Hls => {
                let short = source.display.0.min(source.display.1);
                let mut ladder = vec![R360];
                if short > R360.short {
                    ladder.push(R720);
                }
                ladder
            }
        };
        let sizes: Vec<(u32, u32)> = rungs.iter().map(|r| fit(source.display, r.short, r.long)).collect();
        // One decode, split into every rendition and the poster (taken from the largest).
        let mut graph = format!("[0:{}]setsar=1,format=yuv420p,split={}", source.video, sizes.len() + 1);
        for i in 0..sizes.len() {
            let _ = write!(graph, "[s{i}]");
        }
        graph.push_str("[p];");
        for (i, (w, h)) in sizes.iter().enumerate() {
            let _ = write!(graph, "[s{i}]scale={w}:{h}[v{i}];");
        }
        let (pw, ph) = sizes[sizes.len() - 1];
        let _ = write!(graph, "[p]scale={pw}:{ph}[poster]");
        push(&mut a, &["-filter_complex", &graph]);

        let audio = source.audio.as_ref().map(|(index, _)| format!("0:{index}"));
        for i in 0..sizes.len() {
            push(&mut a, &["-map", &format!("[v{i}]")]);
            if let Some(audio) = &audio {
                push(&mut a, &["-map", audio]);
            }
        }
        let limit = self.caps.max_duration.as_secs().to_string();
        push(&mut a, &["-map_metadata", "-1", "-map_chapters", "-1", "-t", &limit]);
        push(
            &mut a,
            &[
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "23",
                "-profile:v",
                "high",
                "-pix_fmt",
                "yuv420p",
                "-fpsmax",
                "60",
            ],
        );
        if audio.is_some() {
            push(&mut a, &["-c:a", "aac", "-b:a", "128k", "-ac", "2"]);
        }
        match self.preset {
            VideoPreset::Mp4 => {
                push(&mut a, &["-movflags", "+faststart", "-f", "mp4"]);
                a.push(out_dir.join("video.mp4").into());
            }
            VideoPreset::Hls => {
                let mut map = Vec::new();
                for (i, (r, (w, h))) in rungs.iter().zip(&sizes).enumerate() {
                    push(
                        &mut a,
                        &[
                            &format!("-maxrate:v:{i}"),
                            &format!("{}k", r.maxrate_k),
                            &format!("-bufsize:v:{i}"),
                            &format!("{}k", 2 * r.maxrate_k),
                        ],
                    );
                    let name = format!("{}p", w.min(h));
                    map.push(if audio.is_some() {
                        format!("v:{i},a:{i},name:{name}")
                    } else {
                        format!("v:{i},name:{name}")
                    });
                }
                push(&mut a, &["-force_key_frames", "expr:gte(t,n_forced*4)", "-sc_threshold", "0"]);
                push(
                    &mut a,
                    &["-f", "hls", "-hls_time", "4", "-hls_playlist_type", "vod", "-hls_segment_type", "mpegts"],
                );
                push(
                    &mut a,
                    &["-master_pl_name", "master.m3u8", "-var_stream_map", &map.join(" "), "-hls_segment_filename"],
                );
                a.push(out_dir.join("hls/%v_%03d.ts").into());
                a.push(out_dir.join("hls/%v.m3u8").into());
            }
        }
        // The poster: a tenth into the video (past a fade-in), at most 10 s in.
        let at = source.duration.map_or(0.0, |d| (d * 0.1).min(10.0));
        push(
            &mut a,
            &[
                "-map",
                "[poster]",
                "-ss",
                &format!("{at:.3}"),
                "-frames:v",
                "1",
                "-c:v",
                "mjpeg",
                "-q:v",
                "3",
                "-f",
                "image2",
                "-update",
                "1",
            ],
        );
        a.push(out_dir.join("poster.jpg").into());
        a
    }

    /// Every file the preset wrote, with `ffprobe`'s size and duration where they apply.
    async fn describe_outputs(&self, out_dir: &Path, cancel: &CancellationToken) -> Result<Vec<OutputFile>, JobError> {
        let mut names = vec!["poster.jpg".to_owned()];
        match self.preset {
            VideoPreset::Mp4 => names.insert(0, "video.mp4".to_owned()),
            VideoPreset::Hls => {
                let hls = out_dir.join("hls");
                let mut dir = tokio::fs::read_dir(&hls)
                    .await
                    .map_err(|e| JobError::Transient(format!("cannot list {}: {e}", hls.display())))?;
                let mut files = Vec::new();
                while let Some(entry) = dir
                    .next_entry()
                    .await
                    .map_err(|e| JobError::Transient(format!("cannot list {}: {e}", hls.display())))?
                {
                    files.push(format!("hls/{}", entry.file_name().to_string_lossy()));
                }
                files.sort();
                names.splice(0..0, files);
            }
        }
        let mut outputs = Vec::with_capacity(names.len());
        for name in names {
            let path = out_dir.join(&name);
            let content_type = content_type(&name);
            // Probed: the video, each HLS variant playlist (not the master, not each segment), the poster.
            let probed = name == "video.mp4"
                || name == "poster.jpg"
                || (content_type == "application/vnd.apple.mpegurl" && name != "hls/master.m3u8");
            let (mut width, mut height, mut duration) = (None, None, None);
            if probed {
                let p = probe(&self.tools, &path, "mov,hls,mpegts,image2,jpeg_pipe", cancel).await?.map_err(|why| {
                    JobError::Transient(format!("ffmpeg wrote {name} but ffprobe cannot read it: {why}"))
                })?;
                if let Some(v) = p.streams.iter().find(|s| s.codec_type.as_deref() == Some("video")) {
                    (width, height) = (v.width, v.height);
                }
                if name != "poster.jpg" {
                    duration = p.format.and_then(|f| f.duration).and_then(|d| d.parse().ok());
                }
            } else if tokio::fs::metadata(&path).await.is_err() {
                return Err(JobError::Transient(format!("ffmpeg did not write {name}")));
            }
            outputs.push(OutputFile { path, name, content_type: content_type.to_owned(), width, height, duration });
        }
        Ok(outputs)
    }
}

/// Appends `items` to the argument list.
fn push(args: &mut Vec<OsString>, items: &[&str]) {
    args.extend(items.iter().map(OsString::from));
}

/// Removes what a preset may have written into `out_dir` (after a failure: no half outputs).
async fn remove_outputs(out_dir: &Path) {
    for name in ["video.mp4", "poster.jpg"] {
        let _ = tokio::fs::remove_file(out_dir.join(name)).await;
    }
    let _ = tokio::fs::remove_dir_all(out_dir.join("hls")).await;
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("mp4") => "video/mp4",
        Some("jpg") => "image/jpeg",
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("ts") => "video/mp2t",
        _ => "application/octet-stream",
    }
}

fn absolute(p: &Path) -> Result<PathBuf, JobError> {
    std::path::absolute(p).map_err(|e| JobError::Transient(format!("cannot resolve {}: {e}", p.display())))
}

/// What the checks learned about a source.
#[derive(Debug)]
struct Source {
    /// The accepted demuxer `ffmpeg` is held to.
    demuxer: String,
    /// ffprobe's `format_name`.
    format: String,
    duration: Option<f64>,
    bit_rate: Option<u64>,
    /// The video stream's index.
    video: u32,
    video_codec: String,
    width: u32,
    height: u32,
    /// Width and height as shown (sample aspect ratio and rotation applied).
    display: (u32, u32),
    frame_rate: Option<f64>,
    /// The first audio stream's index and codec.
    audio: Option<(u32, String)>,
}

impl Source {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "format": self.format,
            "duration": self.duration,
            "bit_rate": self.bit_rate,
            "width": self.width,
            "height": self.height,
            "display_width": self.display.0,
            "display_height": self.display.1,
            "frame_rate": self.frame_rate,
            "video_codec": self.video_codec,
            "audio_codec": self.audio.as_ref().map(|(_, c)| c),
        })
    }
}

/// `ffprobe`'s JSON, the parts used.
#[derive(Debug, Default, Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<Stream>,
    format: Option<Format>,
}

#[derive(Debug, Default, Deserialize)]
struct Format {
    #[serde(default, rename = "format_name")]
    name: String,
    #[serde(rename = "format_long_name")]
    long_name: Option<String>,
    duration: Option<String>,
    bit_rate: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Stream {
    index: u32,
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    sample_aspect_ratio: Option<String>,
    avg_frame_rate: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    disposition: Disposition,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    side_data_list: Vec<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Disposition {
    #[serde(default)]
    attached_pic: u8,
}

/// Runs `ffprobe` on a local file with only `formats` allowed. The outer error is a job error
/// (cancelled, cannot run); the inner one says why the file is not readable media.
async fn probe(
    tools: &Ffmpeg,
    file: &Path,
    formats: &str,
    cancel: &CancellationToken,
) -> Result<Result<Probe, String>, JobError> {
    let mut cmd = Command::new(&tools.probe_exe);
    cmd.args(["-v", "error", "-protocol_whitelist", "file", "-format_whitelist", formats]);
    cmd.args(["-print_format", "json", "-show_format", "-show_streams", "-i"]).arg(file);
    let mut json = String::new();
    let done = run_child(cmd, cancel, PROBE_JSON_MAX, |line| {
        json.push_str(line);
        json.push('\n');
    })
    .await?;
    if !done.status.success() {
        let why = last_lines(&done.stderr_tail, 1).replace(&format!("{}: ", file.display()), "");
        return Ok(Err(if why.is_empty() { format!("ffprobe {}", done.status) } else { why }));
    }
    Ok(serde_json::from_str::<Probe>(&json).map_err(|e| format!("ffprobe's report is unreadable: {e}")))
}

/// How a child ended.
struct Finished {
    status: ExitStatus,
    /// The last [`STDERR_TAIL`] bytes of stderr, lossily decoded.
    stderr_tail: String,
}

/// Runs `cmd` (stdin closed, killed on drop) feeding each stdout line to `on_line` until
/// `max_stdout` bytes; kills and reaps it and returns [`JobError::Cancelled`] when `cancel` fires.
async fn run_child(
    mut cmd: Command,
    cancel: &CancellationToken,
    max_stdout: usize,
    on_line: impl FnMut(&str),
) -> Result<Finished, JobError> {
    let exe = PathBuf::from(cmd.as_std().get_program());
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    if cancel.is_cancelled() {
        return Err(JobError::Cancelled);
    }
    let mut child = cmd.spawn().map_err(|e| JobError::Transient(format!("cannot run {}: {e}", exe.display())))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(JobError::Transient(format!("{}: no pipes", exe.display())));
    };
    let finished = {
        let work = async { tokio::join!(child.wait(), read_lines(stdout, max_stdout, on_line), read_tail(stderr)) };
        tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            r = work => Some(r),
        }
    };
    let Some((status, stdout_ok, stderr_tail)) = finished else {
        let _ = child.start_kill();
        let _ = child.wait().await;
        return Err(JobError::Cancelled);
    };
    let status = status.map_err(|e| JobError::Transient(format!("waiting for {}: {e}", exe.display())))?;
    if !stdout_ok {
        return Err(JobError::Permanent {
            code: "invalid_input",
            message: format!("{} reported more than {max_stdout} bytes; the file is not a usable video", exe.display()),
        });
    }
    Ok(Finished { status, stderr_tail })
}

/// Feeds lines to `on_line`; false if more than `max` bytes came (the rest is drained unread).
async fn read_lines(pipe: impl AsyncRead + Unpin, max: usize, mut on_line: impl FnMut(&str)) -> bool {
    let mut reader = BufReader::new(pipe);
    let (mut line, mut total, mut within) = (String::new(), 0_usize, true);
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return within,
            Ok(n) => {
                total = total.saturating_add(n);
                within &= total <= max;
                if within {
                    on_line(line.trim_end());
                }
            }
        }
    }
}

/// Reads everything, keeping the last [`STDERR_TAIL`] bytes.
async fn read_tail(mut pipe: impl AsyncRead + Unpin) -> String {
    let (mut tail, mut buf) = (Vec::new(), vec![0_u8; 4096]);
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
    String::from_utf8_lossy(&tail).into_owned()
}

/// Whether `ffmpeg`'s stderr says the input is broken.
fn broken_input(stderr: &str) -> bool {
    let lower = stderr.to_ascii_lowercase();
    BROKEN_INPUT.iter().any(|p| lower.contains(p))
}

/// The last `n` non-empty lines, joined with "; ".
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("; ")
}

/// Width and height as displayed: the sample aspect ratio stretches the width, a quarter turn
/// swaps them.
fn display_size(video: &Stream, width: u32, height: u32) -> (u32, u32) {
    let sar = video.sample_aspect_ratio.as_deref().and_then(ratio).filter(|r| *r > 0.0).unwrap_or(1.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a positive ratio of u32 sizes, clamped
    let width = (f64::from(width) * sar).round().clamp(2.0, f64::from(u32::MAX)) as u32;
    let rotation = video
        .side_data_list
        .iter()
        .find_map(|d| d.get("rotation").and_then(serde_json::Value::as_i64))
        .or_else(|| video.tags.get("rotate").and_then(|r| r.parse().ok()))
        .unwrap_or(0);
    if rotation.rem_euclid(180) == 90 { (height, width) } else { (width, height) }
}

/// `(w, h)` scaled to fit `short` × `long` (either orientation), never up, each side even.
fn fit((w, h): (u32, u32), short: u32, long: u32) -> (u32, u32) {
    let (s, l) = (u64::from(w.min(h)), u64::from(w.max(h)));
    // The smaller of short/s and long/l, as a fraction num/den; no scaling when it is ≥ 1.
    let (num, den) =
        if u64::from(short) * l <= u64::from(long) * s { (u64::from(short), s) } else { (u64::from(long), l) };
    let (num, den) = if num >= den { (1, 1) } else { (num, den) };
    let even = |x: u32| u32::try_from((u64::from(x) * num / den) / 2 * 2).unwrap_or(u32::MAX).max(2);
    (even(w), even(h))
}

/// `"16/9"` or `"4:3"` as a number; `None` for `0/0` and the like.
fn ratio(r: &str) -> Option<f64> {
    let (a, b) = r.split_once(['/', ':'])?;
    let (a, b) = (a.parse::<f64>().ok()?, b.parse::<f64>().ok()?);
    (b != 0.0 && a != 0.0).then(|| a / b)
}

#[allow(clippy::cast_precision_loss)] // pixel counts are far below 2^52
fn megapixels(pixels: u64) -> f64 {
    pixels as f64 / 1e6
}

/// `4 h 3 min`, `12 min 5 s`, `42.5 s`.
fn human(secs: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // non-negative durations well within u64
    let whole = secs.max(0.0) as u64;
    match whole {
        0..60 => format!("{secs:.1} s"),
        60..3600 => format!("{} min {} s", whole / 60, whole % 60),
        _ => format!("{} h {} min", whole / 3600, whole % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_bounds_both_sides_keeps_aspect_and_never_upscales() {
        assert_eq!(fit((1920, 1080), 720, 1280), (1280, 720));
        assert_eq!(fit((1080, 1920), 720, 1280), (720, 1280));
        assert_eq!(fit((1280, 720), 720, 1280), (1280, 720));
        assert_eq!(fit((320, 240), 720, 1280), (320, 240));
        assert_eq!(fit((321, 241), 720, 1280), (320, 240));
        assert_eq!(fit((3840, 1600), 720, 1280), (1280, 532));
        assert_eq!(fit((1920, 1080), 360, 640), (640, 360));
        assert_eq!(fit((7, 1), 360, 640), (6, 2));
    }

    #[test]
    fn codec_list_reads_names_and_the_codec_a_wrapper_decodes() {
        let listing = "Decoders:\n V..... = Video\n ------\n V....D h264                 H.264 / AVC\n V....D libdav1d             dav1d AV1 decoder by VideoLAN (codec av1)\n A....D aac                  AAC\n";
        let names = codec_list(listing);
        assert!(["h264", "libdav1d", "av1", "aac"].iter().all(|n| names.contains(*n)), "{names:?}");
        assert!(!names.contains("Video"));
    }

    #[test]
    fn presets_round_trip_by_name() {
        for p in VideoPreset::ALL {
            assert_eq!(VideoPreset::from_name(p.name()), Some(p));
        }
        assert_eq!(VideoPreset::from_name("-vf scale=1:1"), None);
        assert_eq!(VideoPreset::default().name(), "mp4-720p");
    }

    #[test]
    fn display_size_applies_aspect_and_rotation() {
        let anamorphic = Stream { sample_aspect_ratio: Some("4:3".into()), ..Stream::default() };
        assert_eq!(display_size(&anamorphic, 720, 576), (960, 576));
        let rotated = Stream { side_data_list: vec![serde_json::json!({ "rotation": -90 })], ..Stream::default() };
        assert_eq!(display_size(&rotated, 1920, 1080), (1080, 1920));
        let tagged = Stream { tags: [("rotate".to_owned(), "180".to_owned())].into(), ..Stream::default() };
        assert_eq!(display_size(&tagged, 1920, 1080), (1920, 1080));
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(42.5), "42.5 s");
        assert_eq!(human(725.0), "12 min 5 s");
        assert_eq!(human(4.0 * 3600.0 + 180.0), "4 h 3 min");
    }
}
