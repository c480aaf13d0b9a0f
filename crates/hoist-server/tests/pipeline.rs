//! The pipeline over real HTTP with real parts: the service and its embedded store on ephemeral
//! ports, uploads through the API as a browser makes them, in-process workers running Debian's
//! ffmpeg on media generated here, and the job's server-sent events read off the wire.

#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)] // small test sizes

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt as _;
use hoist_server::ServerConfig;
use hoist_server::config::PipelineRule;
use serde_json::{Value, json};

/// Whether ffmpeg is here; in CI it must be (`.ci/setup.sh` installs it).
fn ffmpeg_here() -> bool {
    let found = std::process::Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success());
    assert!(found || std::env::var_os("CI").is_none(), "CI must have ffmpeg: .ci/setup.sh installs it");
    if !found {
        eprintln!("ffmpeg is not installed: pipeline tests skipped (apt-get install ffmpeg)");
    }
    found
}

/// A small H.264/AAC MP4 made by ffmpeg: `seconds` long, `size` (`WxH`).
fn make_video(dir: &Path, name: &str, seconds: u32, size: &str) -> Vec<u8> {
    let path = dir.join(name);
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(path).unwrap()
}

/// Rules: every video goes to `mp4-720p`; `workers` in-process workers with fast heartbeats.
fn pipeline(workers: usize) -> impl FnOnce(&mut ServerConfig) {
    move |c| {
        c.pipeline.rules = vec![PipelineRule {
            content_types: vec!["video/*".into()],
            prefix: String::new(),
            preset: "mp4-720p".into(),
        }];
        c.pipeline.workers = workers;
        c.pipeline.heartbeat = Duration::from_millis(200);
        c.pipeline.lease = Duration::from_secs(2);
    }
}

/// Uploads `content` through `/v1` (parts as the service plans them) and completes; answers the
/// complete response and the parts it completed with.
async fn upload(svc: &Service, token: &str, filename: &str, content_type: &str, content: &[u8]) -> (Resp, Value) {
    let c = call(
        "POST",
        &format!("{}/v1/uploads", svc.url),
        Some(token),
        Some(json!({
            "filename": filename, "size": content.len(), "content_type": content_type
        })),
    )
    .await;
    assert_eq!(c.status, 201, "{}", c.body);
    let id = c.body["id"].as_str().unwrap().to_owned();
    let (count, part_size) = (c.body["part_count"].as_u64().unwrap(), c.body["part_size"].as_u64().unwrap() as usize);
    let numbers: Vec<u64> = (1..=count).collect();
    let s = call(
        "POST",
        &format!("{}/v1/uploads/{id}/parts", svc.url),
        Some(token),
        Some(json!({ "part_numbers": numbers })),
    )
    .await;
    let mut parts = Vec::new();
    let chunks: Vec<&[u8]> = if content.is_empty() { vec![content] } else { content.chunks(part_size).collect() };
    for (part, chunk) in s.body["parts"].as_array().unwrap().iter().zip(chunks) {
        let (status, etag, text) = put_part(part, chunk.to_vec()).await;
        assert_eq!(status, 200, "{text}");
        parts.push(json!({ "part_number": part["part_number"], "etag": etag.unwrap() }));
    }
    let parts = Value::Array(parts);
    let done = complete(svc, token, &id, &parts).await;
    assert_eq!(done.status, 200, "{}", done.body);
    (done, parts)
}

async fn complete(svc: &Service, token: &str, id: &str, parts: &Value) -> Resp {
    call("POST", &format!("{}/v1/uploads/{id}/complete", svc.url), Some(token), Some(json!({ "parts": parts }))).await
}

/// Polls the job until it is terminal (or `limit` passes); answers its view.
async fn wait_job(svc: &Service, token: &str, id: &str, limit: Duration) -> Value {
    let until = Instant::now() + limit;
    loop {
        let j = call("GET", &format!("{}/v1/jobs/{id}", svc.url), Some(token), None).await;
        assert_eq!(j.status, 200, "{}", j.body);
        if ["succeeded", "failed", "dead", "cancelled"].contains(&j.body["state"].as_str().unwrap())
            || Instant::now() > until
        {
            return j.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads a job's server-sent events until the stream ends: (event, id, data) each.
async fn read_events(url: &str, last_event_id: Option<&str>) -> Vec<(String, String, Value)> {
    let mut req = reqwest::Client::new().get(url);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_mins(2));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            chunk = body.next() => match chunk {
                Some(c) => text.push_str(&String::from_utf8_lossy(&c.unwrap())),
                None => break,
            },
            () = &mut deadline => panic!("the event stream did not end: {events:?}, then {text:?}"),
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned());
            if let (Some(event), Some(data)) = (field("event:"), field("data:")) {
                events.push((event, field("id:").unwrap_or_default(), serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn a_video_upload_is_transcoded_once_and_followed_over_sse() {
    if !ffmpeg_here() {
        return;
    }
    let svc = Service::start_with(pipeline(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let video = make_video(dir.path(), "in.mp4", 3, "1280x720");
    let (done, parts) = upload(&svc, BOB, "clip.mp4", "video/mp4", &video).await;
    let jobs = done.body["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 1, "{}", done.body);
    let job_id = jobs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(jobs[0]["status_url"], format!("/v1/jobs/{job_id}"));

    // Progress then the terminal event, monotone, over SSE.
    let events = read_events(&format!("{}{}", svc.url, jobs[0]["events_url"].as_str().unwrap()), None).await;
    let (last, rest) = events.split_last().unwrap();
    assert_eq!(last.0, "succeeded", "{events:?}");
    assert!(rest.iter().all(|e| e.0 == "progress"), "{events:?}");
    let progress: Vec<f64> = events.iter().map(|e| e.2["progress"].as_f64().unwrap()).collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "progress must not go down: {progress:?}");
    assert!((progress.last().unwrap() - 1.0).abs() < 1e-9);
    let ids: Vec<i64> = events.iter().map(|e| e.1.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "event ids grow: {ids:?}");
    // Reconnecting with Last-Event-ID of the terminal event: nothing new, the stream ends.
    let again = read_events(&format!("{}{}", svc.url, jobs[0]["events_url"].as_str().unwrap()), Some(&last.1)).await;
    assert!(again.is_empty(), "{again:?}");

    // The job's outputs: an H.264 MP4 of at most 720p next to the source, and a poster.
    let job = wait_job(&svc, BOB, &job_id, Duration::from_secs(5)).await;
    assert_eq!((job["state"].as_str(), job["attempts"].as_u64()), (Some("succeeded"), Some(1)), "{job}");
    assert!(job["source"]["duration"].as_f64().unwrap() > 2.5, "{job}");
    let outputs = job["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["video.mp4", "poster.jpg"], "{job}");
    let source_dir = done.body["key"].as_str().unwrap().rsplit_once('/').unwrap().0.to_owned();
    let upload_id = job["upload_id"].as_str().unwrap();
    for o in outputs {
        let key = o["key"].as_str().unwrap();
        assert!(key.starts_with(&format!("{source_dir}/derived/{upload_id}/mp4-720p-a1/")), "{key}");
        let got = reqwest::get(o["url"].as_str().unwrap()).await.unwrap();
        assert_eq!(got.status(), 200, "the output's GET URL works");
        let bytes = got.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, o["size"].as_u64().unwrap());
        assert_eq!(bytes.to_vec(), svc.object(key).await);
    }
    assert!(outputs[0]["height"].as_u64().unwrap() <= 720 && outputs[0]["duration"].as_f64().unwrap() > 2.5, "{job}");

    // A repeated Complete answers the same job; one upload.completed event, one job.succeeded.
    let id = done.body["jobs"][0]["id"].as_str().unwrap();
    let view = call("GET", &format!("{}/v1/jobs?upload_id={upload_id}", svc.url), Some(BOB), None).await;
    assert_eq!(view.body["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(view.body["jobs"][0]["id"], id);
    let again = complete(&svc, BOB, upload_id, &parts).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["jobs"][0]["id"], id);
    assert_eq!(count_events(&svc, upload_id, "upload.completed").await, 1);
    assert_eq!(count_events(&svc, &job_id, "job.succeeded").await, 1);

    // Another key sees none of it.
    let other = call("GET", &format!("{}/v1/jobs/{job_id}", svc.url), Some(ALICE), None).await;
    assert_eq!((other.status, other.code()), (404, "job_not_found"));
    let other = call("POST", &format!("{}/v1/jobs/{job_id}/cancel", svc.url), Some(ALICE), None).await;
    assert_eq!(other.status, 404);
    // A stream URL with a forged or missing token is refused.
    let forged = reqwest::get(format!("{}/v1/jobs/{job_id}/events?token=1.abcd", svc.url)).await.unwrap();
    assert_eq!(forged.status(), 401);
    let bare = reqwest::get(format!("{}/v1/jobs/{job_id}/events", svc.url)).await.unwrap();
    assert_eq!(bare.status(), 401);

    // Deleting the upload deletes its object and every output.
    let d = call("DELETE", &format!("{}/v1/uploads/{upload_id}", svc.url), Some(BOB), None).await;
    assert_eq!((d.status, &d.body["objects_deleted"]), (200, &json!(3)), "{}", d.body);
    let left = svc.s3().list_objects_v2().bucket("hoist").prefix(format!("{source_dir}/")).send().await.unwrap();
    assert_eq!(left.key_count(), Some(0), "{left:?}");
    svc.stop().await;
}

/// Events of `kind` about `subject` in the service's outbox (its `SQLite` file).
async fn count_events(svc: &Service, subject: &str, kind: &str) -> i64 {
    let url = format!("sqlite://{}", svc.data.path().join("hoist.db").display());
    count(&url, "SELECT COUNT(*) FROM events WHERE subject = $1 AND kind = $2", &[subject, kind]).await
}

/// A `COUNT(*)` query on the database at `url`.
async fn count(url: &str, sql: &str, binds: &[&str]) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let mut q = sqlx::query_scalar(sql);
    for b in binds {
        q = q.bind(*b);
    }
    q.fetch_one(&pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_fail_at_the_first_attempt_while_a_good_job_next_to_them_succeeds() {
    if !ffmpeg_here() {
        return;
    }
    let svc = Service::start_with(pipeline(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let good = make_video(dir.path(), "good.mp4", 2, "320x240");
    let random: Vec<u8> = data(200_000, 9);
    let truncated = good[..good.len() / 2].to_vec();
    let text = b"this is a text file, not a video\n".repeat(100);
    let mut jobs = Vec::new();
    for (name, bytes) in
        [("random.mp4", &random), ("truncated.mp4", &truncated), ("notes.mp4", &text), ("good.mp4", &good)]
    {
        let (done, _) = upload(&svc, BOB, name, "video/mp4", bytes).await;
        jobs.push((name, done.body["jobs"][0]["id"].as_str().unwrap().to_owned()));
    }
    for (name, id) in &jobs {
        let job = wait_job(&svc, BOB, id, Duration::from_mins(1)).await;
        if *name == "good.mp4" {
            assert_eq!(job["state"], "succeeded", "{job}");
        } else {
            assert_eq!((job["state"].as_str(), job["attempts"].as_u64()), (Some("failed"), Some(1)), "{name}: {job}");
            assert_eq!(job["error"]["code"], "invalid_input", "{name}: {job}");
            assert!(!job["error"]["message"].as_str().unwrap().is_empty());
            assert_eq!(job["outputs"], json!([]), "a failed job names no outputs");
        }
    }
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_s3_events_make_one_job_and_foreign_or_derived_keys_none() {
    if !ffmpeg_here() {
        return;
    }
    // No workers: the test looks at the queue only.
    let svc = Service::start_with(pipeline(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let video = make_video(dir.path(), "v.mp4", 1, "160x120");
    let s3 = svc.s3();
    for key in ["bob/cam/my clip+1.mp4", "bob/cam/derived/x/video.mp4", "alice/cam/a.mp4", "bob/cam/readme.txt"] {
        let ct = if key.rsplit('.').next() == Some("txt") { "text/plain" } else { "video/mp4" };
        s3.put_object().bucket("hoist").key(key).content_type(ct).body(video.clone().into()).send().await.unwrap();
    }
    let record = |key: &str| {
        json!({
            "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": { "bucket": { "name": "hoist" }, "object": { "key": key, "size": video.len(), "sequencer": "00A1" } }
        })
    };
    let body = json!({ "Records": [
        record("bob/cam/my+clip%2B1.mp4"), record("bob/cam/my+clip%2B1.mp4"),
        record("bob/cam/derived/x/video.mp4"), record("alice/cam/a.mp4"), record("bob/cam/readme.txt"), record("bob/cam/missing.mp4"),
        { "eventName": "ObjectRemoved:Delete", "s3": { "bucket": { "name": "hoist" }, "object": { "key": "bob/cam/a.mp4" } } },
    ]});
    let first = call("POST", &format!("{}/v1/events/s3", svc.url), Some(BOB), Some(body.clone())).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let accepted = first.body["accepted"].as_array().unwrap();
    assert_eq!(accepted.len(), 2, "the same event twice in one notification: {}", first.body);
    assert_eq!(accepted[0]["key"], "bob/cam/my clip+1.mp4", "keys are URL-decoded");
    assert_eq!(accepted[0]["jobs"][0]["id"], accepted[1]["jobs"][0]["id"], "one job");
    let reasons: Vec<&str> =
        first.body["ignored"].as_array().unwrap().iter().map(|i| i["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 5, "{}", first.body);
    assert!(reasons.iter().any(|r| r.contains("pipeline output")));
    assert!(reasons.iter().any(|r| r.contains("prefix")));
    assert!(reasons.iter().any(|r| r.contains("no pipeline rule")));
    assert!(reasons.iter().any(|r| r.contains("not in the store")));
    assert!(reasons.iter().any(|r| r.contains("ObjectCreated")));
    // The same notification again (S3 delivers at least once): still one job.
    let second = call("POST", &format!("{}/v1/events/s3", svc.url), Some(BOB), Some(body)).await;
    assert_eq!(second.body["accepted"][0]["jobs"][0]["id"], accepted[0]["jobs"][0]["id"]);
    let job = call(
        "GET",
        &format!("{}/v1/jobs/{}", svc.url, accepted[0]["jobs"][0]["id"].as_str().unwrap()),
        Some(BOB),
        None,
    )
    .await;
    assert_eq!(
        (job.body["state"].as_str(), job.body["upload_id"].as_null()),
        (Some("queued"), Some(())),
        "{}",
        job.body
    );
    // Bad input: not JSON of the right shape, and no token.
    let bad = call("POST", &format!("{}/v1/events/s3", svc.url), Some(BOB), Some(json!({ "Records": "nope" }))).await;
    assert_eq!((bad.status, bad.code()), (400, "bad_json"), "{}", bad.body);
    let anon = call("POST", &format!("{}/v1/events/s3", svc.url), None, Some(json!({ "Records": [] }))).await;
    assert_eq!(anon.status, 401);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_ffmpeg_within_two_heartbeats_and_retry_runs_it_again() {
    if !ffmpeg_here() {
        return;
    }
    let svc = Service::start_with(pipeline(1)).await;
    let dir = tempfile::tempdir().unwrap();
    // Long enough that the job is still transcoding when it is cancelled.
    let video = make_video(dir.path(), "long.mp4", 60, "1280x720");
    let (done, _) = upload(&svc, BOB, "long.mp4", "video/mp4", &video).await;
    let id = done.body["jobs"][0]["id"].as_str().unwrap().to_owned();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let j = call("GET", &format!("{}/v1/jobs/{id}", svc.url), Some(BOB), None).await;
        if j.body["state"] == "running" && j.body["progress"].as_f64().unwrap() > 0.05 {
            break;
        }
        assert!(Instant::now() < until, "the job never started transcoding: {}", j.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ffmpeg_running(svc.data.path()), "ffmpeg runs for the job");
    let c = call("POST", &format!("{}/v1/jobs/{id}/cancel", svc.url), Some(BOB), None).await;
    assert_eq!((c.status, c.body["state"].as_str()), (200, Some("cancelled")), "{}", c.body);
    let cancelled_at = Instant::now();
    while ffmpeg_running(svc.data.path()) {
        assert!(
            cancelled_at.elapsed() < Duration::from_millis(2 * 200 + 1000),
            "ffmpeg still runs after two heartbeats"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Cancelled is terminal: cancelling again is refused, retry queues it again.
    let again = call("POST", &format!("{}/v1/jobs/{id}/cancel", svc.url), Some(BOB), None).await;
    assert_eq!((again.status, again.code()), (409, "wrong_state"), "{}", again.body);
    let r = call("POST", &format!("{}/v1/jobs/{id}/retry", svc.url), Some(BOB), None).await;
    assert_eq!((r.status, r.body["state"].as_str()), (200, Some("queued")), "{}", r.body);
    let r = call("POST", &format!("{}/v1/jobs/{id}/retry", svc.url), Some(BOB), None).await;
    assert_eq!((r.status, r.code()), (409, "wrong_state"), "only finished jobs can be retried: {}", r.body);
    // Deleting the upload cancels the job again, stops ffmpeg, and leaves no outputs.
    let upload_id = job_upload(&svc, &id).await;
    let d = call("DELETE", &format!("{}/v1/uploads/{upload_id}", svc.url), Some(BOB), None).await;
    assert_eq!(d.status, 200, "{}", d.body);
    let j = call("GET", &format!("{}/v1/jobs/{id}", svc.url), Some(BOB), None).await;
    assert_eq!(j.body["state"], "cancelled");
    let stopped_at = Instant::now();
    while ffmpeg_running(svc.data.path()) {
        assert!(stopped_at.elapsed() < Duration::from_secs(3), "ffmpeg still runs after the upload was deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let left = svc.s3().list_objects_v2().bucket("hoist").prefix("bob/").send().await.unwrap();
    assert_eq!(left.key_count(), Some(0), "no source, no outputs: {left:?}");
    svc.stop().await;
}

async fn job_upload(svc: &Service, job_id: &str) -> String {
    let j = call("GET", &format!("{}/v1/jobs/{job_id}", svc.url), Some(BOB), None).await;
    j.body["upload_id"].as_str().unwrap().to_owned()
}

/// Whether an ffmpeg process works inside `data_dir` (its scratch directory is there).
fn ffmpeg_running(data_dir: &Path) -> bool {
    let needle = data_dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        cmd.split('\0').next().is_some_and(|exe| exe.ends_with("ffmpeg")) && cmd.contains(&needle)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_complete_answer_is_recovered_by_the_retry() {
    let svc = Service::start().await;
    let content = data(6 * MIB + 5, 4);
    let c =
        call("POST", &format!("{}/v1/uploads", svc.url), Some(BOB), Some(create_body("lost.bin", content.len()))).await;
    let id = c.body["id"].as_str().unwrap().to_owned();
    let key = c.body["key"].as_str().unwrap().to_owned();
    let s =
        call("POST", &format!("{}/v1/uploads/{id}/parts", svc.url), Some(BOB), Some(json!({ "part_numbers": [1, 2] })))
            .await;
    let mut parts = Vec::new();
    for (part, chunk) in s.body["parts"].as_array().unwrap().iter().zip(content.chunks(5 * MIB)) {
        let (status, etag, _) = put_part(part, chunk.to_vec()).await;
        assert_eq!(status, 200);
        parts.push(json!({ "part_number": part["part_number"], "etag": etag.unwrap() }));
    }
    // The store completes the upload, but the service never sees the answer (as when the
    // connection drops after the store did the work).
    let session = svc.state.db.get("bob", &id).await.unwrap().unwrap();
    let completed = aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|p| {
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(p["part_number"].as_i64().unwrap() as i32)
                        .e_tag(p["etag"].as_str().unwrap())
                        .build()
                })
                .collect(),
        ))
        .build();
    svc.s3()
        .complete_multipart_upload()
        .bucket("hoist")
        .key(&key)
        .upload_id(&session.upload_id)
        .multipart_upload(completed)
        .send()
        .await
        .unwrap();
    // The client retries its Complete: answered with the object, and the session is completed.
    let done =
        call("POST", &format!("{}/v1/uploads/{id}/complete", svc.url), Some(BOB), Some(json!({ "parts": parts })))
            .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["size"], content.len());
    assert!(done.body["etag"].as_str().unwrap().ends_with("-2"));
    let state = call("GET", &format!("{}/v1/uploads/{id}", svc.url), Some(BOB), None).await;
    assert_eq!(state.body["state"], "completed");
    assert_eq!(svc.object(&key).await, content);
    // And once more: the same answer.
    let again =
        call("POST", &format!("{}/v1/uploads/{id}/complete", svc.url), Some(BOB), Some(json!({ "parts": parts })))
            .await;
    assert_eq!((again.status, &again.body["etag"]), (200, &done.body["etag"]));

    // A lost answer where the object there is not made of the client's parts: refused, not completed.
    let c = call("POST", &format!("{}/v1/uploads", svc.url), Some(BOB), Some(create_body("gone.bin", 10))).await;
    let id = c.body["id"].as_str().unwrap().to_owned();
    let session = svc.state.db.get("bob", &id).await.unwrap().unwrap();
    svc.s3()
        .abort_multipart_upload()
        .bucket("hoist")
        .key(&session.object_key)
        .upload_id(&session.upload_id)
        .send()
        .await
        .unwrap();
    let r = call(
        "POST",
        &format!("{}/v1/uploads/{id}/complete", svc.url),
        Some(BOB),
        Some(json!({
            "parts": [{ "part_number": 1, "etag": "0123456789abcdef0123456789abcdef" }]
        })),
    )
    .await;
    assert_eq!((r.status, r.code()), (409, "wrong_state"), "{}", r.body);
    assert!(r.message().contains("start a new upload"), "{}", r.message());
    svc.stop().await;
}

/// Many workers on one `PostgreSQL`: 4 workers (as separate processes would, each with its own
/// connection pool) take 50 jobs; each job runs exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn four_workers_on_postgres_run_fifty_jobs_each_exactly_once() {
    let Ok(base) = std::env::var("HOIST_TEST_DATABASE_URL") else {
        eprintln!("HOIST_TEST_DATABASE_URL is not set: the PostgreSQL worker test is skipped");
        return;
    };
    if !ffmpeg_here() {
        return;
    }
    let url = hoist_server::db::fresh_postgres_schema(&base).await.unwrap();
    let svc = Service::start_with({
        let url = url.clone();
        move |c| {
            pipeline(0)(c);
            c.database_url = Some(url);
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let video = make_video(dir.path(), "tiny.mp4", 1, "160x120");
    let s3 = svc.s3();
    let mut records = Vec::new();
    for i in 0..50 {
        let key = format!("bob/batch/{i:02}.mp4");
        s3.put_object()
            .bucket("hoist")
            .key(&key)
            .content_type("video/mp4")
            .body(video.clone().into())
            .send()
            .await
            .unwrap();
        records.push(json!({ "eventName": "ObjectCreated:Put", "s3": { "bucket": { "name": "hoist" }, "object": { "key": key } } }));
    }
    let queued =
        call("POST", &format!("{}/v1/events/s3", svc.url), Some(BOB), Some(json!({ "Records": records }))).await;
    let ids: Vec<String> = queued.body["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["jobs"][0]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 50, "{}", queued.body);

    let (creds, _) = hoist_store::Credentials::load_or_generate(&svc.data.path().join("store")).unwrap();
    let stop = hoist_core::CancellationToken::new();
    let mut tasks = Vec::new();
    for n in 0..4 {
        let client = hoist_core::S3Client::connect(&hoist_core::ClientOptions {
            endpoint_url: Some(svc.store_url.clone()),
            region: Some("us-east-1".into()),
            credentials: Some((creds.access_key.clone(), creds.secret_key.clone())),
            ..hoist_core::ClientOptions::default()
        })
        .await
        .unwrap();
        let worker = hoist_server::pipeline::worker::Worker {
            db: hoist_server::db::Db::connect(&url).await.unwrap(),
            outbox: hoist_server::pipeline::events::Outbox::default(),
            uploader: hoist_core::Uploader::new(client, hoist_core::UploadConfig::default()),
            runners: hoist_server::pipeline::video_runners(&hoist_server::pipeline::transcode::Ffmpeg::find().unwrap()),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(1),
            poll: Duration::from_millis(100),
            scratch: dir.path().join(format!("scratch-{n}")),
        };
        tasks.push(tokio::spawn(std::sync::Arc::new(worker).run(format!("w{n}"), stop.child_token())));
    }
    let mut workers = std::collections::HashSet::new();
    for id in &ids {
        let job = wait_job(&svc, BOB, id, Duration::from_mins(5)).await;
        assert_eq!((job["state"].as_str(), job["attempts"].as_u64()), (Some("succeeded"), Some(1)), "{job}");
        workers
            .insert(hoist_server::pipeline::jobs::get_any(&svc.state.db, id).await.unwrap().unwrap().worker.unwrap());
    }
    stop.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(workers.len() > 1, "the jobs were shared: {workers:?}");
    // Exactly once: one job.succeeded event per job, and one output set per job in the store.
    let pool = svc.state.db.clone();
    for id in &ids {
        let job = hoist_server::pipeline::jobs::get_any(&pool, id).await.unwrap().unwrap();
        let prefix = hoist_server::pipeline::worker::derived_prefix(&job.source_key, &job.id);
        let stored = s3.list_objects_v2().bucket("hoist").prefix(&prefix).send().await.unwrap();
        assert_eq!(stored.key_count(), Some(2), "{prefix}: {stored:?}");
    }
    assert_eq!(count(&url, "SELECT COUNT(*) FROM events WHERE kind = $1", &["job.succeeded"]).await, 50);
    svc.stop().await;
}

/// The jobs in the service's database (`SQLite` in the data dir, read on a connection of the
/// test's own): (source key, API key, upload id), by key.
async fn jobs_in_db(svc: &Service) -> Vec<(String, String, Option<String>)> {
    use sqlx::{Connection as _, Row as _};
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", svc.db_path.display())).await.unwrap();
    let rows = sqlx::query("SELECT source_key, api_key, upload_id FROM jobs ORDER BY source_key")
        .fetch_all(&mut db)
        .await
        .unwrap();
    rows.iter().map(|r| (r.get("source_key"), r.get("api_key"), r.get("upload_id"))).collect()
}

/// Polls until the service's jobs are `n` (or 20 s pass), then waits a little for any extra.
async fn wait_jobs(svc: &Service, n: usize) -> Vec<(String, String, Option<String>)> {
    let until = Instant::now() + Duration::from_secs(20);
    while jobs_in_db(svc).await.len() < n && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    jobs_in_db(svc).await
}

/// The embedded store's queue for the service's intake (events not yet accepted).
fn store_queue(data: &Path) -> usize {
    std::fs::read_dir(data.join("store/notify").join(hoist_server::EVENTS_TARGET)).map_or(0, Iterator::count)
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_written_straight_to_the_embedded_store_start_one_job_each() {
    // No workers: the test looks at the queue only, so no ffmpeg is needed.
    let svc = Service::start_with(pipeline(0)).await;
    let s3 = svc.s3();
    let put = |key: &'static str, ct: &'static str| {
        s3.put_object().bucket("hoist").key(key).content_type(ct).body(vec![1u8; 1024].into()).send()
    };
    put("bob/cam/direct clip.mp4", "video/mp4").await.unwrap();
    put("nobody/x.mp4", "video/mp4").await.unwrap();
    put("bob/cam/readme.txt", "text/plain").await.unwrap();
    let id = s3
        .create_multipart_upload()
        .bucket("hoist")
        .key("bob/cam/multi.mp4")
        .content_type("video/mp4")
        .send()
        .await
        .unwrap()
        .upload_id
        .unwrap();
    let mut parts = Vec::new();
    for (n, len) in [(1, 5 * MIB), (2, 1024)] {
        let e = s3
            .upload_part()
            .bucket("hoist")
            .key("bob/cam/multi.mp4")
            .upload_id(&id)
            .part_number(n)
            .body(vec![2u8; len].into())
            .send()
            .await
            .unwrap()
            .e_tag;
        parts.push(aws_sdk_s3::types::CompletedPart::builder().part_number(n).set_e_tag(e).build());
    }
    let done = aws_sdk_s3::types::CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
    s3.complete_multipart_upload()
        .bucket("hoist")
        .key("bob/cam/multi.mp4")
        .upload_id(&id)
        .multipart_upload(done)
        .send()
        .await
        .unwrap();
    let jobs = wait_jobs(&svc, 2).await;
    let expected = |key: &str| (key.to_owned(), "bob".to_owned(), None);
    assert_eq!(
        jobs,
        [expected("bob/cam/direct clip.mp4"), expected("bob/cam/multi.mp4")],
        "one job each; none outside a key's prefix or without a rule"
    );

    // An upload through the API is reported twice (its Complete and the store's event): one job, the upload's.
    upload(&svc, BOB, "api.mp4", "video/mp4", &[3u8; 2048]).await;
    let until = Instant::now() + Duration::from_secs(20);
    while store_queue(svc.data.path()) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store_queue(svc.data.path()), 0, "the store's events were accepted");
    let jobs = wait_jobs(&svc, 3).await;
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    let api = jobs.iter().find(|j| j.0.ends_with("/api.mp4")).unwrap();
    // The key is `bob/{upload id}/api.mp4`.
    assert_eq!(api.2.as_deref(), api.0.split('/').nth(1), "the job is the upload's: {jobs:?}");

    // A notification signed with another secret is refused.
    let body = br#"{"Records":[]}"#;
    let forged = reqwest::Client::new()
        .post(format!("{}/v1/events/s3", svc.url))
        .header("content-type", "application/json")
        .header(hoist_store::notify::SIGNATURE_HEADER, hoist_store::notify::signature("guess", body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn store_events_pending_at_a_stop_start_jobs_after_the_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut c = Service::config(data.path());
    pipeline(0)(&mut c);
    // Started but never run: the store takes writes, the API does not answer its events.
    let server = hoist_server::Server::start(c).await.unwrap();
    let (creds, _) = hoist_store::Credentials::load_or_generate(&data.path().join("store")).unwrap();
    let s3 = hoist_testkit::sdk_client(&server.store_endpoint().unwrap(), &creds);
    s3.put_object()
        .bucket("hoist")
        .key("bob/early.mp4")
        .content_type("video/mp4")
        .body(vec![1u8; 10].into())
        .send()
        .await
        .unwrap();
    assert_eq!(store_queue(data.path()), 1, "the event waits on disk");
    drop(server);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store_queue(data.path()), 1, "a stop keeps it");

    let dir = data.path().to_path_buf();
    let svc = Service::start_with(move |c| {
        *c = Service::config(&dir);
        pipeline(0)(c);
    })
    .await;
    let jobs = wait_jobs(&svc, 1).await;
    assert_eq!(jobs, [("bob/early.mp4".to_owned(), "bob".to_owned(), None)]);
    assert_eq!(store_queue(data.path()), 0);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_hoist_store_notifies_a_service_that_knows_its_secret() {
    // The service's port is chosen first: the store must know where to send.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let store_dir = tempfile::tempdir().unwrap();
    let target =
        hoist_store::NotifyTarget::new("serve", &format!("http://127.0.0.1:{port}/v1/events/s3"), "ext-secret")
            .unwrap();
    let store = hoist_store::Store::builder(store_dir.path()).notify(target).build().unwrap();
    let creds = store.credentials().clone();
    let handle = store.start("127.0.0.1:0").await.unwrap();
    let s3 = hoist_testkit::sdk_client(&handle.endpoint_url(), &creds);
    s3.create_bucket().bucket("hoist").send().await.unwrap();
    let endpoint = handle.endpoint_url();
    let svc = Service::start_with(move |c| {
        pipeline(0)(c);
        c.listen = format!("127.0.0.1:{port}");
        c.s3 = hoist_server::config::S3Target::External {
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            profile: None,
            credentials: Some((creds.access_key.clone(), creds.secret_key.clone())),
        };
        c.s3_events_secret = Some("ext-secret".into());
    })
    .await;
    s3.put_object()
        .bucket("hoist")
        .key("bob/ext.mp4")
        .content_type("video/mp4")
        .body(vec![1u8; 10].into())
        .send()
        .await
        .unwrap();
    assert_eq!(wait_jobs(&svc, 1).await, [("bob/ext.mp4".to_owned(), "bob".to_owned(), None)]);
    svc.stop().await;
    handle.shutdown().await;
}
