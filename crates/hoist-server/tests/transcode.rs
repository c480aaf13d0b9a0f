//! The video runner against the real `ffmpeg` and `ffprobe`, on media generated here with lavfi.
//! Outputs are checked by reading them independently: `ffprobe` called by the test, and the
//! MP4's box order and the poster's JPEG markers read from the bytes. Every test skips, saying
//! so, only when `ffmpeg` is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hoist_core::CancellationToken;
use hoist_server::pipeline::runner::{JobError, JobRunner, RunOutput};
use hoist_server::pipeline::transcode::{Ffmpeg, MediaCaps, VideoPreset, VideoRunner};
use serde_json::Value;

/// The tools, or `None` (with the reason printed) when `ffmpeg` is not installed. Installed but
/// unusable is a failure, not a skip.
fn tools() -> Option<Ffmpeg> {
    if let Err(e) = Command::new("ffmpeg").arg("-version").output()
        && e.kind() == std::io::ErrorKind::NotFound
    {
        eprintln!("SKIPPED: ffmpeg is not installed (Debian: apt-get install ffmpeg)");
        return None;
    }
    Some(Ffmpeg::find().expect("ffmpeg is installed but unusable"))
}

fn runner(tools: Ffmpeg, preset: VideoPreset) -> VideoRunner {
    VideoRunner { tools, preset, caps: MediaCaps::default() }
}

/// Runs `ffmpeg -v error -y ARGS` and panics with its stderr if it fails.
fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg").args(["-nostdin", "-v", "error", "-y"]).args(args).output().unwrap();
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A test clip: testsrc2 at `size` for `secs`, with a 440 Hz tone unless `audio` is false.
fn clip(dir: &Path, name: &str, size: &str, secs: u32, audio: bool) -> PathBuf {
    let path = dir.join(name);
    let video = format!("testsrc2=size={size}:rate=25:duration={secs}");
    let tone = format!("sine=frequency=440:duration={secs}");
    let mut args = vec!["-f", "lavfi", "-i", &video];
    if audio {
        args.extend(["-f", "lavfi", "-i", &tone, "-c:a", "aac"]);
    }
    args.extend(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", path.to_str().unwrap()]);
    ffmpeg(&args);
    path
}

/// 20 s of 1280x720 with sound, made once for the tests that need ffmpeg busy for a while.
fn long_clip() -> &'static Path {
    static CLIP: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &CLIP
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = clip(dir.path(), "long.mp4", "1280x720", 20, true);
            (dir, path)
        })
        .1
}

/// An independent `ffprobe` of a file.
fn probe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stream<'a>(probe: &'a Value, kind: &str) -> Option<&'a Value> {
    probe["streams"].as_array().unwrap().iter().find(|s| s["codec_type"] == kind)
}

fn num(v: &Value) -> f64 {
    v.as_str().map_or_else(|| v.as_f64().unwrap(), |s| s.parse().unwrap())
}

/// The MP4's top-level box types, in order, read from the bytes.
fn top_level_boxes(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let (mut at, mut boxes) = (0_usize, Vec::new());
    while at + 8 <= bytes.len() {
        let mut size = u64::from(u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()));
        boxes.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        if size == 1 {
            size = u64::from_be_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        } else if size == 0 {
            break;
        }
        at += usize::try_from(size).unwrap();
    }
    boxes
}

/// Runs `runner` on `input` into a fresh directory, collecting progress.
async fn run(runner: &VideoRunner, input: &Path) -> (tempfile::TempDir, Result<RunOutput, JobError>, Vec<f64>) {
    let out = tempfile::tempdir().unwrap();
    let seen = Mutex::new(Vec::new());
    let report = |p: f64| seen.lock().unwrap().push(p);
    let result = runner.run(input, out.path(), &report, &CancellationToken::new()).await;
    (out, result, seen.into_inner().unwrap())
}

fn assert_monotone_to_one(progress: &[f64]) {
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "not monotone: {progress:?}");
    assert_eq!(progress.last(), Some(&1.0), "{progress:?}");
    assert!(progress.iter().all(|p| (0.0..=1.0).contains(p)), "{progress:?}");
}

fn assert_permanent(result: Result<RunOutput, JobError>, want: &str) -> String {
    match result {
        Err(JobError::Permanent { code, message }) => {
            assert_eq!(code, want, "{message}");
            message
        }
        other => panic!("expected Permanent {{ code: {want} }}, got {other:?}"),
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn mp4_720p_is_h264_aac_faststart_playable_with_a_jpeg_poster() {
    let Some(tools) = tools() else { return };
    let src = tempfile::tempdir().unwrap();
    let input = clip(src.path(), "in.mp4", "1280x720", 3, true);
    let (out, result, progress) = run(&runner(tools, VideoPreset::Mp4), &input).await;
    let result = result.unwrap();
    assert_monotone_to_one(&progress);

    let names: Vec<&str> = result.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["video.mp4", "poster.jpg"]);
    let video = &result.outputs[0];
    assert_eq!(video.path, out.path().join("video.mp4"));
    assert_eq!((video.content_type.as_str(), video.width, video.height), ("video/mp4", Some(1280), Some(720)));

    let p = probe(&video.path);
    let v = stream(&p, "video").unwrap();
    let a = stream(&p, "audio").unwrap();
    assert_eq!((v["codec_name"].as_str(), v["pix_fmt"].as_str()), (Some("h264"), Some("yuv420p")));
    assert_eq!(a["codec_name"], "aac");
    assert!(v["height"].as_u64().unwrap() <= 720);
    let duration = num(&p["format"]["duration"]);
    assert!((duration - 3.0).abs() < 0.3, "duration {duration}");
    assert!((video.duration.unwrap() - duration).abs() < 0.01);

    let boxes = top_level_boxes(&video.path);
    let pos = |t: &str| boxes.iter().position(|b| b == t).unwrap_or_else(|| panic!("no {t} in {boxes:?}"));
    assert!(pos("moov") < pos("mdat"), "not faststart: {boxes:?}");

    let poster = &result.outputs[1];
    assert_eq!(
        (poster.content_type.as_str(), poster.width, poster.height, poster.duration),
        ("image/jpeg", Some(1280), Some(720), None)
    );
    let jpeg = std::fs::read(&poster.path).unwrap();
    assert!(jpeg.starts_with(&[0xFF, 0xD8, 0xFF]) && jpeg.ends_with(&[0xFF, 0xD9]), "not a JPEG");

    let s = &result.source;
    assert!(s["format"].as_str().unwrap().contains("mp4"), "{s}");
    assert!((s["duration"].as_f64().unwrap() - 3.0).abs() < 0.1, "{s}");
    assert_eq!((s["width"].as_u64(), s["height"].as_u64()), (Some(1280), Some(720)), "{s}");
    assert_eq!((s["video_codec"].as_str(), s["audio_codec"].as_str()), (Some("h264"), Some("aac")), "{s}");
    assert!(s["bit_rate"].as_u64().unwrap() > 0, "{s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mp4_720p_scales_1080p_down_and_never_up() {
    let Some(tools) = tools() else { return };
    let src = tempfile::tempdir().unwrap();
    let runner = runner(tools, VideoPreset::Mp4);
    for (size, audio, want) in
        [("1920x1080", true, (1280, 720)), ("320x240", false, (320, 240)), ("1080x1920", false, (720, 1280))]
    {
        let input = clip(src.path(), &format!("{size}.mp4"), size, 2, audio);
        let (_out, result, _) = run(&runner, &input).await;
        let result = result.unwrap_or_else(|e| panic!("{size}: {e}"));
        let p = probe(&result.outputs[0].path);
        let v = stream(&p, "video").unwrap();
        assert_eq!(
            (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap()),
            (u64::from(want.0), u64::from(want.1)),
            "{size}"
        );
        assert_eq!(stream(&p, "audio").is_some(), audio, "{size}");
        assert_eq!((result.outputs[0].width, result.outputs[0].height), (Some(want.0), Some(want.1)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hls_writes_a_master_playlist_naming_its_variants_never_upscaled() {
    let Some(tools) = tools() else { return };
    let src = tempfile::tempdir().unwrap();
    let runner = runner(tools, VideoPreset::Hls);
    for (size, variants) in
        [("1280x720", vec![("360p", 640, 360), ("720p", 1280, 720)]), ("320x240", vec![("240p", 320, 240)])]
    {
        let input = clip(src.path(), &format!("{size}.mp4"), size, 3, true);
        let (out, result, progress) = run(&runner, &input).await;
        let result = result.unwrap_or_else(|e| panic!("{size}: {e}"));
        assert_monotone_to_one(&progress);
        let master = std::fs::read_to_string(out.path().join("hls/master.m3u8")).unwrap();
        let named: Vec<&str> = master.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        assert_eq!(named, variants.iter().map(|v| format!("{}.m3u8", v.0)).collect::<Vec<_>>(), "{master}");
        for (name, w, h) in &variants {
            assert!(master.contains(&format!("RESOLUTION={w}x{h}")), "{master}");
            let playlist = std::fs::read_to_string(out.path().join(format!("hls/{name}.m3u8"))).unwrap();
            assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
            let segments: Vec<&str> = playlist.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
            assert!(!segments.is_empty(), "{playlist}");
            for seg in segments {
                let p = probe(&out.path().join("hls").join(seg));
                let v = stream(&p, "video").unwrap();
                assert_eq!(
                    (v["codec_name"].as_str(), v["width"].as_u64(), v["height"].as_u64()),
                    (Some("h264"), Some(u64::from(*w)), Some(u64::from(*h)))
                );
                assert!(
                    result.outputs.iter().any(|o| o.name == format!("hls/{seg}") && o.content_type == "video/mp2t"),
                    "{seg} not listed"
                );
            }
            let listed = result.outputs.iter().find(|o| o.name == format!("hls/{name}.m3u8")).unwrap();
            assert_eq!((listed.width, listed.height), (Some(*w), Some(*h)));
            assert!((listed.duration.unwrap() - 3.0).abs() < 0.3, "{listed:?}");
        }
        assert!(
            result
                .outputs
                .iter()
                .any(|o| o.name == "hls/master.m3u8" && o.content_type == "application/vnd.apple.mpegurl")
        );
        assert!(result.outputs.iter().any(|o| o.name == "poster.jpg"));
        assert_eq!(result.outputs.len(), files_in(&out.path().join("hls")).len() + 1, "every file written is listed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_is_monotone_reported_along_the_way_and_ends_at_one() {
    let Some(tools) = tools() else { return };
    let (_out, result, progress) = run(&runner(tools, VideoPreset::Mp4), long_clip()).await;
    result.unwrap();
    assert_monotone_to_one(&progress);
    let along = progress.iter().filter(|p| **p > 0.0 && **p < 1.0).count();
    assert!(along >= 2, "only {along} reports before the end: {progress:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn not_a_video_fails_at_once_as_invalid_input_and_leaves_nothing() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let good = clip(dir.path(), "good.mp4", "640x360", 3, true);
    let faststart = dir.path().join("faststart.mp4");
    ffmpeg(&["-i", good.to_str().unwrap(), "-c", "copy", "-movflags", "+faststart", faststart.to_str().unwrap()]);

    let mut bad = Vec::new();
    let mut random = vec![0_u8; 256 * 1024];
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    for b in &mut random {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x.to_le_bytes()[0];
    }
    bad.push(("random.mp4", random));
    for (name, from) in [("truncated.mp4", &good), ("truncated-faststart.mp4", &faststart)] {
        let bytes = std::fs::read(from).unwrap();
        bad.push((name, bytes[..bytes.len() / 2].to_vec()));
    }
    bad.push(("notes.mp4", "This is a text file, not a video.\n".repeat(2000).into_bytes()));

    let runner = runner(tools, VideoPreset::Mp4);
    for (name, bytes) in bad {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let started = Instant::now();
        let (out, result, progress) = run(&runner, &path).await;
        let message = assert_permanent(result, "invalid_input");
        eprintln!("{name}: {message}");
        assert!(!message.is_empty() && message.contains("upload"), "{name}: {message}");
        assert!(files_in(out.path()).is_empty(), "{name}: left {:?}", files_in(out.path()));
        assert!(!progress.contains(&1.0), "{name}: {progress:?}");
        assert!(started.elapsed() < Duration::from_secs(30), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn audio_only_fails_as_invalid_input_saying_there_is_no_video() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.mp4");
    ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-f", "wav", wav.to_str().unwrap()]);
    let (_out, result, _) = run(&runner(tools, VideoPreset::Mp4), &wav).await;
    let message = assert_permanent(result, "invalid_input");
    assert!(message.contains("no video stream") && message.contains("audio only"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_caps_fails_as_too_long_or_too_large() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", "1280x720", 3, true);
    let short = VideoRunner {
        tools: tools.clone(),
        preset: VideoPreset::Mp4,
        caps: MediaCaps { max_duration: Duration::from_secs(2), ..MediaCaps::default() },
    };
    let message = assert_permanent(run(&short, &input).await.1, "too_long");
    assert!(message.contains("3.0 s") && message.contains("2.0 s"), "{message}");
    let small = VideoRunner {
        tools: tools.clone(),
        preset: VideoPreset::Mp4,
        caps: MediaCaps { max_pixels: 1280 * 720 - 1, ..MediaCaps::default() },
    };
    let message = assert_permanent(run(&small, &input).await.1, "too_large");
    assert!(message.contains("1280×720"), "{message}");
    let exact = VideoRunner {
        tools,
        preset: VideoPreset::Mp4,
        caps: MediaCaps { max_duration: Duration::from_secs(3), max_pixels: 1280 * 720 },
    };
    run(&exact, &input).await.1.expect("at the caps is accepted");
}

/// The pid of this process's `ffmpeg` child whose command line mentions `marker`.
#[cfg(target_os = "linux")]
fn ffmpeg_child(marker: &Path) -> Option<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let after_comm = &stat[stat.rfind(')')? + 2..];
        let parent = after_comm.split(' ').nth(1)?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (parent == me && stat.contains("(ffmpeg)") && cmdline.contains(marker.to_str()?)).then_some(pid)
    })
}

/// Whether `pid` is still a running process (a zombie awaiting its reaper is not running).
#[cfg(target_os = "linux")]
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn cancel_kills_ffmpeg_at_once_and_returns_cancelled() {
    let Some(tools) = tools() else { return };
    let out = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let seen = Mutex::new(None::<(u32, Instant)>);
    let report = |p: f64| {
        let mut seen = seen.lock().unwrap();
        if seen.is_none() && p < 1.0 {
            let pid = ffmpeg_child(out.path()).expect("ffmpeg is running while it reports progress");
            *seen = Some((pid, Instant::now()));
            cancel.cancel();
        }
    };
    let result = VideoRunner { tools, preset: VideoPreset::Mp4, caps: MediaCaps::default() }
        .run(long_clip(), out.path(), &report, &cancel)
        .await;
    let (pid, cancelled_at) = seen.into_inner().unwrap().expect("a progress report before the end");
    assert_eq!(result, Err(JobError::Cancelled));
    assert!(cancelled_at.elapsed() < Duration::from_secs(2), "took {:?}", cancelled_at.elapsed());
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "ffmpeg {pid} was left behind (or not reaped)");
    assert!(files_in(out.path()).is_empty(), "left {:?}", files_in(out.path()));
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_run_kills_ffmpeg() {
    let Some(tools) = tools() else { return };
    let out = tempfile::tempdir().unwrap();
    let started = tokio::sync::Notify::new();
    let pid = Mutex::new(None);
    let report = |_: f64| {
        let mut pid = pid.lock().unwrap();
        if pid.is_none() {
            *pid = ffmpeg_child(out.path());
            started.notify_one();
        }
    };
    let runner = VideoRunner { tools, preset: VideoPreset::Mp4, caps: MediaCaps::default() };
    let cancel = CancellationToken::new();
    tokio::select! {
        r = runner.run(long_clip(), out.path(), &report, &cancel) => panic!("finished before it was dropped: {r:?}"),
        () = started.notified() => {}
    }
    let pid = pid.into_inner().unwrap().expect("ffmpeg is running while it reports progress");
    let dropped = Instant::now();
    while running(pid) {
        assert!(dropped.elapsed() < Duration::from_secs(2), "ffmpeg {pid} still running after the run was dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn unusable_tools_are_refused_in_one_line_naming_them() {
    let err = Ffmpeg::at("/nonexistent/ffmpeg", "/nonexistent/ffprobe").unwrap_err();
    assert!(err.contains("/nonexistent/ffmpeg") && !err.contains('\n'), "{err}");
    if tools().is_some() {
        let err = Ffmpeg::at("ffmpeg", "/nonexistent/ffprobe").unwrap_err();
        assert!(err.contains("/nonexistent/ffprobe") && !err.contains('\n'), "{err}");
        let ok = Ffmpeg::find().unwrap();
        assert!(ok.ffmpeg().is_absolute() && ok.ffprobe().is_absolute() && !ok.version().is_empty(), "{ok:?}");
    }
}
