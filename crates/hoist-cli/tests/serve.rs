//! `hoist serve` as a user starts it: the lines it prints, the dev token working against the
//! API, and clear refusals of bad settings.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use common::HOIST;

/// Starts `hoist serve` with `args`, returns the child and the first lines of stdout.
fn spawn(args: &[&str], want: &[&str]) -> (std::process::Child, Vec<String>) {
    let mut child =
        Command::new(HOIST).arg("serve").args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut lines = Vec::new();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    while !want.iter().all(|w| lines.iter().any(|l: &String| l.starts_with(w))) {
        match out.next() {
            Some(Ok(l)) => lines.push(l),
            _ => panic!("hoist serve stopped printing before {want:?}: {lines:?}"),
        }
    }
    (child, lines)
}

fn value<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines.iter().find_map(|l| l.strip_prefix(prefix)).unwrap().trim()
}

#[test]
fn dev_mode_prints_address_and_token_and_keeps_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (mut child, lines) = spawn(
        &["--dev", "--listen", "127.0.0.1:0", "--data", data],
        &["listening on ", "pipeline: ", "dev token: ", "open "],
    );
    let url = value(&lines, "listening on ").to_owned();
    // One line says what --dev made of the pipeline: on with ffmpeg, or why it is off.
    let pipeline = value(&lines, "pipeline: ");
    let ffmpeg = Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success());
    if ffmpeg {
        assert!(pipeline.starts_with("video/* uploads are transcoded to mp4-720p"), "{pipeline}");
    } else {
        assert!(pipeline.starts_with("off: ") && pipeline.contains("ffmpeg"), "{pipeline}");
    }
    let token = value(&lines, "dev token: ").to_owned();
    assert!(value(&lines, "open ").ends_with(&format!("/#token={token}")));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, body) = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{url}/v1/uploads"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "filename": "a.bin", "size": 10 }))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(status, 201, "{body}");
    child.kill().unwrap();
    child.wait().unwrap();
    // A restart on the same data dir keeps the token, so an open page keeps working.
    let (mut child, lines) = spawn(&["--dev", "--listen", "127.0.0.1:0", "--data", data], &["dev token: "]);
    assert_eq!(value(&lines, "dev token: "), token);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn bad_settings_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let data = data.to_str().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "colour = \"red\"\n").unwrap();
    let preset = dir.path().join("preset.toml");
    std::fs::write(&preset, "[[pipeline.rules]]\ncontent_types = [\"video/*\"]\npreset = \"4k-hdr\"\n").unwrap();
    let lease = dir.path().join("lease.toml");
    std::fs::write(&lease, "[pipeline]\nlease = \"1s\"\nheartbeat = \"1s\"\n").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--listen", "127.0.0.1:0", "--data", data], "no API keys are configured"),
        (
            vec!["--dev", "--listen", "127.0.0.1:0", "--data", data, "--config", "/no/such.toml"],
            "cannot read config file",
        ),
        (vec!["--dev", "--listen", "127.0.0.1:0", "--data", data, "--config", cfg.to_str().unwrap()], "colour"),
        (vec!["--dev", "--listen", "127.0.0.1:0", "--data", data, "--part-url-ttl", "30d"], "7d"),
        (vec!["--dev", "--listen", "127.0.0.1:0", "--data", data, "--bucket", "Bad_Bucket"], "bucket name"),
        (vec!["--dev", "--listen", &taken_addr, "--data", data], "cannot listen"),
        (
            vec!["--dev", "--listen", "127.0.0.1:0", "--data", data, "--config", preset.to_str().unwrap()],
            "unknown preset \"4k-hdr\": use one of mp4-720p, hls",
        ),
        (
            vec!["--dev", "--listen", "127.0.0.1:0", "--data", data, "--config", lease.to_str().unwrap()],
            "at least twice pipeline.heartbeat",
        ),
    ];
    for (args, needle) in cases {
        let o = Command::new(HOIST).arg("serve").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
