//! The video runner's overhead against bare `ffmpeg` (issue 13's target: ≤ 10 % wall time):
//! the same `mp4-720p` arguments ([`VideoRunner::ffmpeg_args`]) on the same generated file,
//! run alternately so that a busy machine slows both alike. The runner's time includes what it
//! adds: `ffprobe` of the input, reading `-progress`, and `ffprobe` of each output.
//!
//! Run: `cargo bench -p hoist-server --bench transcode` (30 s of 1920×1080 with sound, 5 runs
//! each; `-- --bench --runs N` to change the count). The timed work is ffmpeg's, so a debug build
//! measures the same: `cargo test -p hoist-server --bench transcode -- --bench`. Under
//! `cargo test` (no `--bench` argument) it runs once on a 2 s clip as a smoke test. Skips, saying
//! so, when `ffmpeg` is not installed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hoist_core::CancellationToken;
use hoist_server::pipeline::runner::JobRunner as _;
use hoist_server::pipeline::transcode::{Ffmpeg, MediaCaps, VideoPreset, VideoRunner};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Empties `dir` (the outputs of the previous run).
fn fresh(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map_or(if full { 5 } else { 1 }, |n| n.parse().expect("--runs N"));
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        eprintln!("SKIPPED: ffmpeg is not installed (Debian: apt-get install ffmpeg)");
        return;
    }
    let (secs, size) = if full { (30, "1920x1080") } else { (2, "320x240") };
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("source.mp4");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=30:duration={secs}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={secs}"))
        .args(["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success(), "cannot generate the source");

    let runner = VideoRunner { tools: Ffmpeg::find().unwrap(), preset: VideoPreset::Mp4, caps: MediaCaps::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let out = work.path().join("out");
    let cancel = CancellationToken::new();
    let ffmpeg_args = rt.block_on(runner.ffmpeg_args(&input, &out, &cancel)).unwrap();
    println!("source: {secs} s of {size}; preset {}; {runs} runs each, alternating", runner.preset.name());

    let bare = || {
        fresh(&out);
        let t = Instant::now();
        let status = Command::new(runner.tools.ffmpeg()).args(&ffmpeg_args).stdout(Stdio::null()).status().unwrap();
        assert!(status.success());
        t.elapsed()
    };
    let hoist = || {
        fresh(&out);
        let t = Instant::now();
        let result = rt.block_on(runner.run(&input, &out, &|_| {}, &cancel)).unwrap();
        assert_eq!(result.outputs.len(), 2);
        t.elapsed()
    };
    let (mut bare_times, mut runner_times) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let (b, r) = if i % 2 == 0 {
            let b = bare();
            (b, hoist())
        } else {
            let r = hoist();
            (bare(), r)
        };
        println!("run {}: bare ffmpeg {:.3} s, VideoRunner {:.3} s", i + 1, b.as_secs_f64(), r.as_secs_f64());
        bare_times.push(b);
        runner_times.push(r);
    }
    let (b, r) = (median(bare_times), median(runner_times));
    println!(
        "median: bare ffmpeg {:.3} s, VideoRunner {:.3} s, overhead {:+.1} % ({:+.3} s)",
        b.as_secs_f64(),
        r.as_secs_f64(),
        (r.as_secs_f64() / b.as_secs_f64() - 1.0) * 100.0,
        r.as_secs_f64() - b.as_secs_f64()
    );
}
