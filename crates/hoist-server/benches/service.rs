//! Service time for the two heavy calls of a 10,000-part upload (issue 5's target: ≤ 1 s
//! together on the 2-core dev machine):
//! 1. signing 10,000 part URLs over HTTP (`POST /v1/uploads/{id}/parts`), in one request and
//!    in batches of 100 as a browser asks for them;
//! 2. completing a 10,000-part upload over HTTP (ListParts ×10 pages, checks, Complete, HEAD).
//!
//! The store runs in-process with its smallest-part rule lowered (10,000 parts of 1 KiB instead
//! of 50 GB of data); the service reaches it as an external endpoint. Run: `cargo bench
//! --workspace --bench service`. Under `cargo test` (no `--bench` argument) it runs once with 200
//! parts as a smoke test.

use std::time::{Duration, Instant};

use hoist_server::config::{ApiKeyConfig, KeyPolicy};
use hoist_server::{S3Target, Server, ServerConfig};
use serde_json::{Value, json};

const TOKEN: &str = "bench-token-0123456789";

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let r = http.post(url).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (parts_n, sign_rounds, complete_rounds): (u32, usize, usize) = if full { (10_000, 5, 3) } else { (200, 1, 1) };
    let dir = tempfile::tempdir().unwrap();
    let store = hoist_store::Store::builder(dir.path().join("store")).min_part_size(1).build().unwrap();
    let creds = store.credentials().clone();
    let handle = store.start("127.0.0.1:0").await.unwrap();
    let s3 = hoist_testkit::sdk_client(&handle.endpoint_url(), &creds);
    s3.create_bucket().bucket("bench").send().await.unwrap();

    let mut c = ServerConfig::new(dir.path().join("serve"));
    c.listen = "127.0.0.1:0".into();
    c.bucket = "bench".into();
    c.part_size = 5 * 1024 * 1024;
    c.s3 = S3Target::External {
        endpoint: Some(handle.endpoint_url()),
        region: Some("us-east-1".into()),
        profile: None,
        credentials: Some((creds.access_key.clone(), creds.secret_key.clone())),
    };
    c.keys = vec![ApiKeyConfig {
        token_sha256: hoist_server::policy::sha256(TOKEN),
        policy: KeyPolicy::generous("bench", "bench/"),
    }];
    let server = Server::start(c).await.unwrap();
    let base = format!("http://{}", server.addr());
    tokio::spawn(server.run(std::future::pending()));
    let http = reqwest::Client::new();

    // 1. Signing: a 10,000-part plan (5 MiB parts) needs no data to sign.
    let size = u64::from(parts_n) * 5 * 1024 * 1024;
    let mut one_request = Vec::new();
    let mut batched = Vec::new();
    for _ in 0..sign_rounds {
        let created = post(&http, format!("{base}/v1/uploads"), json!({ "filename": "big.bin", "size": size })).await;
        assert_eq!(created["part_count"], parts_n);
        let id = created["id"].as_str().unwrap().to_owned();
        let all: Vec<u32> = (1..=parts_n).collect();
        let t = Instant::now();
        let signed = post(&http, format!("{base}/v1/uploads/{id}/parts"), json!({ "part_numbers": all })).await;
        one_request.push(t.elapsed());
        assert_eq!(signed["parts"].as_array().unwrap().len(), parts_n as usize);
        let t = Instant::now();
        for chunk in all.chunks(100) {
            post(&http, format!("{base}/v1/uploads/{id}/parts"), json!({ "part_numbers": chunk })).await;
        }
        batched.push(t.elapsed());
    }

    // 2. Completing 10,000 parts, created through Uppy's route (client-chosen part sizes).
    let mut completes = Vec::new();
    for round in 0..complete_rounds {
        let created = post(
            &http,
            format!("{base}/s3/multipart"),
            json!({ "filename": format!("many{round}.bin"), "type": "application/octet-stream" }),
        )
        .await;
        let (key, upload_id) =
            (created["key"].as_str().unwrap().to_owned(), created["uploadId"].as_str().unwrap().to_owned());
        let mut parts = Vec::new();
        let mut set = tokio::task::JoinSet::new();
        for n in 1..=parts_n {
            let (s3, key, upload_id) = (s3.clone(), key.clone(), upload_id.clone());
            set.spawn(async move {
                let out = s3
                    .upload_part()
                    .bucket("bench")
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(i32::try_from(n).unwrap())
                    .body(vec![7u8; 1024].into())
                    .send()
                    .await
                    .unwrap();
                (n, out.e_tag().unwrap().to_owned())
            });
            if set.len() >= 32 {
                parts.push(set.join_next().await.unwrap().unwrap());
            }
        }
        while let Some(p) = set.join_next().await {
            parts.push(p.unwrap());
        }
        parts.sort();
        let body =
            json!({ "parts": parts.iter().map(|(n, e)| json!({ "PartNumber": n, "ETag": e })).collect::<Vec<_>>() });
        let q = percent_encoding::utf8_percent_encode(&key, percent_encoding::NON_ALPHANUMERIC);
        let t = Instant::now();
        post(&http, format!("{base}/s3/multipart/{upload_id}/complete?key={q}"), body).await;
        completes.push(t.elapsed());
    }
    let (sign1, sign100, complete) = (median(one_request), median(batched), median(completes));
    println!(
        "sign {parts_n} part URLs, one request:        {:>8.1} ms (median of {sign_rounds})",
        sign1.as_secs_f64() * 1e3
    );
    println!(
        "sign {parts_n} part URLs, requests of 100:    {:>8.1} ms (median of {sign_rounds})",
        sign100.as_secs_f64() * 1e3
    );
    println!(
        "complete a {parts_n}-part upload:              {:>8.1} ms (median of {complete_rounds})",
        complete.as_secs_f64() * 1e3
    );
    println!(
        "sign (one request) + complete:              {:>8.1} ms (target ≤ 1000)",
        (sign1 + complete).as_secs_f64() * 1e3
    );
    handle.shutdown().await;
}
