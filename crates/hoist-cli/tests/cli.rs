//! The built `hoist` binary against a spawned `hoist store`, as a user runs them.

#![allow(clippy::cast_possible_truncation)] // test data patterns keep the low byte on purpose

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{HOIST, StoreProc, stderr};

fn file(dir: &Path, len: usize) -> std::path::PathBuf {
    let p = dir.join(format!("f{len}"));
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(&p, data).unwrap();
    p
}

#[test]
fn put_file_and_json_events() {
    let store = StoreProc::start();
    store.mb("cli-bucket");
    let dir = tempfile::tempdir().unwrap();
    let f = file(dir.path(), 12 * 1024 * 1024 + 3);
    let f = f.to_str().unwrap();
    let o = store.hoist(&[
        "put",
        f,
        "s3://cli-bucket/a/b.bin",
        "--part-size",
        "5MiB",
        "--single-put-threshold",
        "5MiB",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = lines.iter().map(|v| v["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"started"));
    assert_eq!(kinds.iter().filter(|k| **k == "part_done").count(), 3);
    assert_eq!(kinds.last(), Some(&"completed"));
    assert_eq!(lines.last().unwrap()["size"], 12 * 1024 * 1024 + 3);

    let o = store.hoist(&["put", f, "s3://cli-bucket/plain.bin", "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("verified"), "{o:?}");
}

#[test]
fn put_from_stdin() {
    let store = StoreProc::start();
    store.mb("cli-bucket");
    let data: Vec<u8> = (0..(11 * 1024 * 1024)).map(|i: usize| (i % 253) as u8).collect();
    let mut child = store
        .hoist_env(&mut Command::new(HOIST))
        .args([
            "put",
            "-",
            "s3://cli-bucket/stdin.bin",
            "--part-size",
            "5MiB",
            "--single-put-threshold",
            "5MiB",
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let last = String::from_utf8_lossy(&o.stdout).lines().last().unwrap().to_owned();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["event"], "completed");
    assert_eq!(v["size"], data.len());
}

#[test]
fn bad_inputs_have_clear_errors_and_exit_codes() {
    let store = StoreProc::start();
    store.mb("cli-bucket");
    let dir = tempfile::tempdir().unwrap();
    let f = file(dir.path(), 1000);
    let f = f.to_str().unwrap();
    let d = dir.path().to_str().unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["put", "/no/such/file", "s3://cli-bucket/k"], 2, "does not exist"),
        (&["put", "-", "s3://cli-bucket/dir/"], 2, "stdin needs an object key"),
        (&["put", "-", f, "s3://cli-bucket/dir/"], 2, "cannot be mixed"),
        (&["put", d, "/no/such/dir", "s3://cli-bucket/dir/"], 2, "does not exist"),
        (&["put", d, "s3://no-such-bucket/dir/"], 3, "NoSuchBucket"),
        (&["put", f, "s3:/x"], 2, "s3://BUCKET/KEY"),
        (&["put", f, "s3://cli-bucket/k", "--part-size", "1MiB"], 2, "out of range"),
        (&["put", f, "s3://no-such-bucket/k"], 3, "NoSuchBucket"),
        (&["put", f, "s3://cli-bucket/k", "--max-object-size", "0"], 2, "--max-object-size 0 is out of range"),
        (&["put", f, "s3://cli-bucket/k", "--max-object-size", "100TiB"], 2, "10000 parts of 5.00 GiB"),
        (&["put", f, "s3://cli-bucket/k", "--max-object-size", "500"], 2, "object limit of 500 bytes"),
        (&["put", f, "s3://cli-bucket/k", "--max-object-size", "lots"], 2, "--max-object-size"),
        (&["put", f, "s3://cli-bucket/k", "--provider", "gcs"], 2, "[possible values: aws, s3-compatible, r2]"),
        (
            &["put", f, "s3://cli-bucket/k", "--checksum", "md5"],
            2,
            "[possible values: crc32, crc32c, crc64nvme, sha1, sha256, none]",
        ),
        (&["put", f, "s3://cli-bucket/k", "--checksum-mode", "never"], 2, "[possible values: always, when_required]"),
        (&["put", f, "s3://cli-bucket/k", "--on-failure", "retry"], 2, "[possible values: keep, abort]"),
        (&["put", f, "s3://cli-bucket/k", "--request-timeout", "0s"], 2, "--request-timeout must be more than zero"),
        (&["presign", "s3://cli-bucket/k", "--method", "post"], 2, "[possible values: get, put]"),
    ];
    for (args, code, needle) in cases {
        let o = store.hoist(args);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    // Wrong credentials → 4.
    let o = store
        .hoist_env(&mut Command::new(HOIST))
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .args(["put", f, "s3://cli-bucket/k"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("hint: check your credentials"), "{}", stderr(&o));
    // Endpoint not reachable → 5.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o = store
        .hoist_env(&mut Command::new(HOIST))
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .args(["put", f, "s3://cli-bucket/k"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    // Nothing was created by any of these.
    let o = store.hoist(&["put", f, "s3://cli-bucket/only", "-q"]);
    assert!(o.status.success());
}

/// No credentials anywhere (no env vars, no shared files, instance metadata not reachable):
/// exit 4 at once, saying so and where the chain looked, not minutes of retries ending in "could
/// not reach the endpoint" (exit 5).
#[test]
fn put_without_credentials_exits_4_at_once_naming_where_it_looked() {
    let store = StoreProc::start();
    store.mb("cli-bucket");
    let dir = tempfile::tempdir().unwrap();
    let f = file(dir.path(), 1000);
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(HOIST);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let started = std::time::Instant::now();
    let o = cmd
        .env("HOME", home.path())
        .env("HOIST_STATE_DIR", home.path())
        .env("AWS_ENDPOINT_URL", &store.endpoint)
        .args(["put", f.to_str().unwrap(), "s3://cli-bucket/k"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("no credentials found"), "{err}");
    for place in [
        "AWS_ACCESS_KEY_ID",
        &format!("{}/.aws/credentials", home.path().display()),
        ".aws/config",
        "SSO",
        "instance metadata",
        "container",
    ] {
        assert!(err.contains(place), "the message names {place}: {err}");
    }
    assert!(err.contains("hint:"), "{err}");
    assert!(took < std::time::Duration::from_secs(15), "took {took:?}");
}

/// The README's first command: `hoist demo` starts its own store, uploads a generated multipart
/// file, reads it back, and says the copy is identical.
#[test]
fn demo_uploads_verifies_and_reads_back() {
    let home = tempfile::tempdir().unwrap();
    let o = Command::new(HOIST)
        .args(["demo", "--size", "21MiB"])
        .env("HOIST_STATE_DIR", home.path())
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(out.contains("in 2 parts, verified"), "21 MiB in 16 MiB parts: {out}");
    assert!(out.contains("compared: identical"), "{out}");
}

/// `hoist store --notify`: a `hoist put` (multipart) becomes one signed
/// `ObjectCreated:CompleteMultipartUpload` record at the receiver; `--notify` without a secret is
/// a usage error that says what to pass.
#[test]
fn store_notify_reports_a_hoist_put_to_a_receiver() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rx = rt.block_on(hoist_testkit::receiver::Receiver::start(vec![]));
    let store =
        StoreProc::start_with(&["--notify", &format!("app={}", rx.url), "--notify-secret", "cli-notify-secret"]);
    store.mb("cli-bucket");
    let dir = tempfile::tempdir().unwrap();
    let f = file(dir.path(), 6 * 1024 * 1024);
    let o = store.hoist(&[
        "put",
        f.to_str().unwrap(),
        "s3://cli-bucket/in/a b.bin",
        "--part-size",
        "5MiB",
        "--single-put-threshold",
        "5MiB",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let hits = rt.block_on(rx.wait_for(1, std::time::Duration::from_secs(10)));
    assert_eq!(hits.len(), 1, "{hits:?}");
    let sig = hits[0].header(hoist_store::notify::SIGNATURE_HEADER);
    assert!(hoist_store::notify::verify("cli-notify-secret", &hits[0].body, sig), "signed with --notify-secret");
    let v: serde_json::Value = serde_json::from_slice(&hits[0].body).unwrap();
    let r = &v["Records"][0];
    assert_eq!(r["eventName"], "ObjectCreated:CompleteMultipartUpload", "{v}");
    assert_eq!(
        (r["s3"]["object"]["key"].as_str(), r["s3"]["object"]["size"].as_u64()),
        (Some("in/a+b.bin"), Some(6 * 1024 * 1024))
    );

    let data = tempfile::tempdir().unwrap();
    let o = Command::new(HOIST)
        .args(["store", "--listen", "127.0.0.1:0", "--notify", "http://127.0.0.1:1/"])
        .arg("--data")
        .arg(data.path())
        .env_remove("HOIST_NOTIFY_SECRET")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--notify needs a secret") && err.contains("--notify-secret"), "{err}");
}
