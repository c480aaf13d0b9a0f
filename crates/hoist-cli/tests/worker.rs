//! `hoist worker` processes as an operator runs them beside `hoist serve`: a worker killed with
//! SIGKILL in the middle of a job, and a worker frozen (SIGSTOP) until its lease is taken. Another
//! worker finishes each job exactly once; the frozen one, woken, is fenced off and leaves no
//! outputs behind. Real binaries, real ffmpeg, the embedded store, `SQLite` shared by processes.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::HOIST;
use serde_json::{Value, json};

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill").args([sig, &p.0.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig}");
}

/// Starts `hoist ARGS…` and waits for a line starting with `ready`; answers it and the process.
fn start(args: &[&str], ready: &str) -> (Proc, Vec<String>) {
    let mut child = Command::new(HOIST).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.starts_with(ready)) {
        match out.next() {
            Some(Ok(l)) => lines.push(l),
            _ => panic!("hoist {args:?} stopped before printing {ready:?}: {lines:?}"),
        }
    }
    std::thread::spawn(move || out.for_each(drop));
    (Proc(child), lines)
}

fn make_video(path: &Path, seconds: u32) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=1280x720:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

struct Api {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// Uploads `bytes` as one part and completes; answers the job id the upload started.
    async fn upload_video(&self, name: &str, bytes: Vec<u8>) -> String {
        let c = self
            .call(
                reqwest::Method::POST,
                "/v1/uploads",
                Some(json!({ "filename": name, "size": bytes.len(), "content_type": "video/mp4" })),
            )
            .await;
        let id = c["id"].as_str().unwrap().to_owned();
        assert_eq!(c["part_count"], 1);
        let s = self
            .call(reqwest::Method::POST, &format!("/v1/uploads/{id}/parts"), Some(json!({ "part_numbers": [1] })))
            .await;
        let put = self.http.put(s["parts"][0]["url"].as_str().unwrap()).body(bytes).send().await.unwrap();
        assert_eq!(put.status(), 200);
        let etag = put.headers()["etag"].to_str().unwrap().trim_matches('"').to_owned();
        let done = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/uploads/{id}/complete"),
                Some(json!({ "parts": [{ "part_number": 1, "etag": etag }] })),
            )
            .await;
        done["jobs"][0]["id"].as_str().unwrap().to_owned()
    }

    async fn job(&self, id: &str) -> Value {
        self.call(reqwest::Method::GET, &format!("/v1/jobs/{id}"), None).await
    }

    /// Polls the job until `done(job)` or `limit`.
    async fn wait(&self, id: &str, limit: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + limit;
        loop {
            let j = self.job(id).await;
            if done(&j) {
                return j;
            }
            assert!(Instant::now() < until, "timed out waiting for {what}: {j}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn running_past(j: &Value, progress: f64) -> bool {
    j["state"] == "running" && j["progress"].as_f64().unwrap() > progress
}

#[test]
fn a_killed_or_frozen_worker_loses_its_job_to_another_that_finishes_it_once() {
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must have ffmpeg: .ci/setup.sh installs it");
        eprintln!("ffmpeg is not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    // Jobs run only in `hoist worker` processes; leases are short so a lost worker is noticed fast.
    let config = dir.path().join("hoist.toml");
    std::fs::write(
        &config,
        "[pipeline]\nworkers = 0\nlease = \"2s\"\nheartbeat = \"300ms\"\n[[pipeline.rules]]\ncontent_types = [\"video/*\"]\npreset = \"mp4-720p\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(hoist_testkit::receiver::Receiver::start(Vec::new()));
    let mut text = std::fs::read_to_string(config).unwrap();
    // A webhook receiver for job.succeeded: each job must be announced exactly once.
    let secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes, base64
    std::fmt::Write::write_fmt(
        &mut text,
        format_args!("[[webhooks]]\nurl = \"{}\"\nsecret = \"{secret}\"\nevents = [\"job.succeeded\"]\n", receiver.url),
    )
    .unwrap();
    std::fs::write(config, text).unwrap();
    let (_serve, lines) = start(
        &["serve", "--dev", "--listen", "127.0.0.1:0", "--data", data, "--config", config, "--janitor-interval", "1s"],
        "dev token: ",
    );
    let value = |p: &str| lines.iter().find_map(|l| l.strip_prefix(p)).unwrap().trim().to_owned();
    let api = Api { url: value("listening on "), token: value("dev token: "), http: reqwest::Client::new() };
    let video = dir.path().join("v.mp4");
    make_video(&video, 20);
    let bytes = std::fs::read(&video).unwrap();
    let worker = || start(&["worker", "--data", data, "--config", config], "worker: ");
    rt.block_on(async {
        // 1. SIGKILL mid-job: another worker requeues it once the lease lapses and finishes it.
        let killed_job = api.upload_video("killed.mp4", bytes.clone()).await;
        let (a, _) = worker();
        api.wait(&killed_job, Duration::from_mins(1), "worker A to transcode", |j| running_past(j, 0.1)).await;
        signal(&a, "-KILL");
        let (b, _) = worker();
        let done = api
            .wait(&killed_job, Duration::from_mins(2), "the job to succeed", |j| {
                j["state"] != "running" && j["state"] != "queued"
            })
            .await;
        assert_eq!((done["state"].as_str(), done["attempts"].as_u64()), (Some("succeeded"), Some(2)), "{done}");
        drop(a);

        // 2. SIGSTOP mid-job: B takes the job over after the lease; A, woken, is fenced off.
        drop(b);
        let frozen_job = api.upload_video("frozen.mp4", bytes.clone()).await;
        let (c, _) = worker();
        api.wait(&frozen_job, Duration::from_mins(1), "worker C to transcode", |j| running_past(j, 0.1)).await;
        signal(&c, "-STOP");
        let (_d, _) = worker();
        let done = api
            .wait(&frozen_job, Duration::from_mins(2), "the job to succeed", |j| {
                j["state"] != "running" && j["state"] != "queued"
            })
            .await;
        assert_eq!((done["state"].as_str(), done["attempts"].as_u64()), (Some("succeeded"), Some(2)), "{done}");
        signal(&c, "-CONT");
        // The woken worker stops at its next heartbeat and writes nothing; give it time to try.
        tokio::time::sleep(Duration::from_secs(3)).await;

        for (job, j) in [(&killed_job, api.job(&killed_job).await), (&frozen_job, api.job(&frozen_job).await)] {
            assert_eq!(j["state"], "succeeded", "{job}: {j}");
            let keys: Vec<&str> = j["outputs"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap()).collect();
            assert!(keys.iter().all(|k| k.contains("/mp4-720p-a2/")), "the winner's outputs: {keys:?}");
            // Only the winning attempt's outputs are in the store.
            let prefix = keys[0].rsplit_once("/mp4-720p-a2/").unwrap().0;
            let stored = store_keys(data, prefix).await;
            assert_eq!(stored.len(), keys.len(), "no loser's outputs: {stored:?}");
            assert!(stored.iter().all(|k| k.contains("/mp4-720p-a2/")), "{stored:?}");
        }
        drop(c);

        // One job.succeeded delivery per job, whatever happened to the losing workers.
        let hits = receiver.wait_for(2, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let hits = if receiver.hits().len() > hits.len() { receiver.hits() } else { hits };
        let mut announced: Vec<String> = hits
            .iter()
            .map(|h| serde_json::from_slice::<Value>(&h.body).unwrap()["data"]["job_id"].as_str().unwrap().to_owned())
            .collect();
        announced.sort();
        let mut want = vec![killed_job.clone(), frozen_job.clone()];
        want.sort();
        assert_eq!(announced, want, "each job announced exactly once");
    });
}

/// The keys under `prefix` in the embedded store of the serve data dir `data`.
async fn store_keys(data: &str, prefix: &str) -> Vec<String> {
    let (creds, _) = hoist_store::Credentials::load_or_generate(&Path::new(data).join("store")).unwrap();
    let url = std::fs::read_to_string(Path::new(data).join(hoist_server::STORE_URL_FILE)).unwrap();
    let s3 = hoist_testkit::sdk_client(url.trim(), &creds);
    let l = s3.list_objects_v2().bucket("hoist").prefix(prefix).send().await.unwrap();
    l.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
}

#[test]
fn a_worker_without_a_service_or_with_bad_settings_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let o = Command::new(HOIST).args(["worker", "--data", data]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        assert!(err.contains("needs ffmpeg"), "{err}");
        return;
    }
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("start `hoist serve --data") && err.contains("--s3-endpoint"), "{err}");
    let o = Command::new(HOIST).args(["worker", "--data", data, "--concurrency", "0"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("concurrency"));
}
