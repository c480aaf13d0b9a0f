//! A running `hoist serve` (with its embedded store) on ephemeral ports, and a small HTTP client
//! for its API. Every test talks real HTTP to the service and the store.

#![allow(dead_code, unreachable_pub, clippy::cast_possible_truncation)] // shared by several test crates; data patterns keep the low byte

use std::time::Duration;

use hoist_server::config::{ApiKeyConfig, KeyPolicy};
use hoist_server::{Server, ServerConfig};
use serde_json::{Value, json};

/// Token of the key `alice` (prefix `alice/`, 64 MiB, images and octet-stream, quota 200 MiB).
pub const ALICE: &str = "alice-token-0123456789";
/// Token of the key `bob` (prefix `bob/`).
pub const BOB: &str = "bob-token-0123456789";
/// Token of the key `tiny` (3 requests a minute).
pub const TINY: &str = "tiny-token-0123456789";
pub const MIB: usize = 1024 * 1024;

pub struct Service {
    pub url: String,
    pub store_url: String,
    pub dev_token: String,
    pub state: std::sync::Arc<hoist_server::state::AppState>,
    pub data: tempfile::TempDir,
    /// The service's `SQLite` database.
    pub db_path: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn key(name: &str, token: &str, max: u64, types: &[&str], rate: u32, quota: Option<u64>) -> ApiKeyConfig {
    ApiKeyConfig {
        token_sha256: hoist_server::policy::sha256(token),
        policy: KeyPolicy {
            name: name.into(),
            prefix: format!("{name}/"),
            max_size: max,
            content_types: types.iter().map(|s| (*s).to_owned()).collect(),
            rate_per_minute: rate,
            quota,
            max_open_uploads: hoist_server::config::DEFAULT_MAX_OPEN_UPLOADS,
        },
    }
}

impl Service {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// The tests' config on `data`: API on any free port, dev mode, the keys above.
    pub fn config(data: &std::path::Path) -> ServerConfig {
        let mut c = ServerConfig::new(data);
        c.listen = "127.0.0.1:0".into();
        c.dev = true;
        c.part_size = 5 * MIB as u64;
        c.keys = vec![
            key(
                "alice",
                ALICE,
                64 * MIB as u64,
                &["image/*", "application/octet-stream"],
                100_000,
                Some(200 * MIB as u64),
            ),
            key("bob", BOB, 64 * MIB as u64, &["*/*"], 100_000, None),
            key("tiny", TINY, 64 * MIB as u64, &["*/*"], 3, None),
        ];
        c
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut c = Self::config(data.path());
        adjust(&mut c);
        let db_path = c.data_dir.join("hoist.db");
        let server = Server::start(c).await.unwrap();
        let url = format!("http://{}", server.addr());
        // Empty when the service talks to an external S3 endpoint.
        let store_url = server.store_endpoint().unwrap_or_default();
        let dev_token = server.dev_token().unwrap().to_owned();
        let state = server.state();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self { url, store_url, dev_token, state, data, db_path, stop: Some(stop), task: Some(task) }
    }

    /// An aws-sdk-s3 client straight to the embedded store (to check what S3 holds).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let (c, _) = hoist_store::Credentials::load_or_generate(&self.data.path().join("store")).unwrap();
        hoist_testkit::sdk_client(&self.store_url, &c)
    }

    pub async fn object(&self, key: &str) -> Vec<u8> {
        let o = self.s3().get_object().bucket("hoist").key(key).send().await.unwrap();
        o.body.collect().await.unwrap().into_bytes().to_vec()
    }

    pub async fn open_uploads(&self) -> usize {
        let l = self.s3().list_multipart_uploads().bucket("hoist").send().await.unwrap();
        l.uploads().len()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// A response: status, headers and JSON body (Null when not JSON).
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().or(self.body["message"].as_str()).unwrap_or("")
    }
}

pub async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> Resp {
    let http = reqwest::Client::new();
    let mut req = http.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Resp { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
}

pub fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8).collect()
}

/// PUTs `body` to a signed part, with the headers the service listed; returns (status, ETag,
/// body text). Status 0: the store cut the connection while the body was still being sent (it
/// refuses a bad signature before reading a large body, so the 403 may never be read).
pub async fn put_part(part: &Value, body: Vec<u8>) -> (u16, Option<String>, String) {
    let http = reqwest::Client::new();
    // A browser sends `Content-Length: 0` for an empty body; reqwest sends none unless told.
    let mut req = http.put(part["url"].as_str().unwrap()).header("content-length", body.len()).body(body);
    if let Some(h) = part["headers"].as_object() {
        for (k, v) in h {
            req = req.header(k, v.as_str().unwrap());
        }
    }
    let r = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_request() => return (0, None, e.to_string()),
        Err(e) => panic!("{e}"),
    };
    let etag = r.headers().get("etag").map(|v| v.to_str().unwrap().trim_matches('"').to_owned());
    (r.status().as_u16(), etag, r.text().await.unwrap_or_default())
}

pub fn create_body(filename: &str, size: usize) -> Value {
    json!({ "filename": filename, "size": size, "content_type": "application/octet-stream" })
}
