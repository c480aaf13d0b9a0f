//! Shared helpers for the CLI tests: a spawned `hoist store` and the built binary.

#![allow(dead_code)] // each test file uses a different subset
#![allow(clippy::cast_possible_truncation)] // test data patterns keep the low byte on purpose

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub(crate) const HOIST: &str = env!("CARGO_BIN_EXE_hoist");
pub(crate) const ACCESS: &str = "cli-test-access";
pub(crate) const SECRET: &str = "cli-test-secret-key-0123456789";

/// A `hoist store` process on a free port; killed on drop.
pub(crate) struct StoreProc {
    child: Child,
    pub(crate) endpoint: String,
    _dir: tempfile::TempDir,
}

impl StoreProc {
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// A store with more flags (`--notify …`).
    pub(crate) fn start_with(flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(HOIST)
            .args(["store", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path())
            .args(flags)
            .env("HOIST_STORE_ACCESS_KEY", ACCESS)
            .env("HOIST_STORE_SECRET_KEY", SECRET)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut first).unwrap();
        // Keep draining what the store prints so it never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let endpoint = first.trim().strip_prefix("listening on ").expect(&first).to_owned();
        Self { child, endpoint, _dir: dir }
    }

    pub(crate) fn hoist_env<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        c.env("AWS_ACCESS_KEY_ID", ACCESS)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
    }

    pub(crate) fn hoist(&self, args: &[&str]) -> Output {
        self.hoist_env(&mut Command::new(HOIST)).args(args).output().unwrap()
    }

    pub(crate) fn mb(&self, bucket: &str) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async { sdk(&self.endpoint).create_bucket().bucket(bucket).send().await.unwrap() });
    }
}

impl Drop for StoreProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client for checks behind the CLI's back.
pub(crate) fn sdk(endpoint: &str) -> aws_sdk_s3::Client {
    hoist_testkit::sdk_client(endpoint, &hoist_store::Credentials::new(ACCESS, SECRET))
}

/// A file of `len` patterned bytes.
pub(crate) fn file(dir: &Path, name: &str, len: usize, seed: u8) -> std::path::PathBuf {
    let p = dir.join(name);
    let data: Vec<u8> = (0..len).map(|i| ((i * 7 + i / 251) as u8).wrapping_add(seed)).collect();
    std::fs::write(&p, data).unwrap();
    p
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
