//! Logs never hold a credential: the service runs with every crate logging at TRACE into a
//! buffer, through a whole upload by both APIs (the token in the path for Uppy's routes, bearer
//! tokens, signed part URLs, the SDK's signed calls to the store, a tampered signature the store
//! refuses), and the captured text is searched for each secret. (Access key ids are not secret:
//! the AWS SDK itself logs its own at trace, with the secret redacted.) Its own test binary: the
//! subscriber is process-wide.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;

/// Everything logged, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

fn signature_of(url: &str) -> String {
    url.split("X-Amz-Signature=").nth(1).unwrap().split('&').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_logs_of_a_whole_upload_hold_no_token_signature_or_secret() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .init();
    let svc = Service::start().await;
    let store_creds = hoist_store::Credentials::load_or_generate(&svc.data.path().join("store")).unwrap().0;
    let mut signatures = Vec::new();

    // Uppy's routes, token in the path.
    let base = format!("{}/u/{BOB}/s3", svc.url);
    let c = call("POST", &format!("{base}/multipart"), None, Some(json!({ "filename": "a.bin" }))).await;
    assert_eq!(c.status, 200, "{}", c.body);
    let (key, upload_id) =
        (c.body["key"].as_str().unwrap().to_owned(), c.body["uploadId"].as_str().unwrap().to_owned());
    let q = format!("key={}", percent_encoding::utf8_percent_encode(&key, percent_encoding::NON_ALPHANUMERIC));
    let s = call("GET", &format!("{base}/multipart/{upload_id}/1?{q}"), None, None).await;
    let url = s.body["url"].as_str().unwrap().to_owned();
    signatures.push(signature_of(&url));
    let (status, etag, _) = put_part(&json!({ "url": url }), data(1000, 1)).await;
    assert_eq!(status, 200);
    let parts = json!({ "parts": [{ "PartNumber": 1, "ETag": etag.unwrap() }] });
    assert_eq!(
        call("POST", &format!("{base}/multipart/{upload_id}/complete?{q}"), None, Some(parts)).await.status,
        200
    );

    // /v1 with a bearer token and the dev token.
    for token in [ALICE, svc.dev_token.as_str()] {
        let c = call("POST", &format!("{}/v1/uploads", svc.url), Some(token), Some(create_body("b.bin", 1000))).await;
        assert_eq!(c.status, 201, "{}", c.body);
        let id = c.body["id"].as_str().unwrap().to_owned();
        let s = call(
            "POST",
            &format!("{}/v1/uploads/{id}/parts", svc.url),
            Some(token),
            Some(json!({ "part_numbers": [1] })),
        )
        .await;
        let part = s.body["parts"][0].clone();
        signatures.push(signature_of(part["url"].as_str().unwrap()));
        let (status, etag, _) = put_part(&part, data(1000, 2)).await;
        assert_eq!(status, 200);
        let done = call(
            "POST",
            &format!("{}/v1/uploads/{id}/complete", svc.url),
            Some(token),
            Some(json!({ "parts": [{ "part_number": 1, "etag": etag.unwrap() }] })),
        )
        .await;
        assert_eq!(done.status, 200, "{}", done.body);
    }
    // A refused token, and a forged signature the store refuses (s3s logs the one it expected).
    assert_eq!(
        call("GET", &format!("{}/u/not-a-real-token-42/s3/params?filename=x", svc.url), None, None).await.status,
        401
    );
    let forged = svc.s3().list_buckets().customize().interceptor(hoist_testkit::sdk::TamperSignature).send().await;
    assert!(forged.is_err());

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("upload completed") && logs.contains("TRACE"), "the logs were captured at trace level");
    assert!(logs.contains("/u/…/s3/multipart"), "Uppy's routes are logged, without the token");
    let mut secrets: Vec<(&str, String)> = vec![
        ("bob's token", BOB.to_owned()),
        ("alice's token", ALICE.to_owned()),
        ("the dev token", svc.dev_token.clone()),
        ("a refused token", "not-a-real-token-42".to_owned()),
        ("the store's secret key", store_creds.secret_key.clone()),
        ("a part URL's signature", "X-Amz-Signature=".to_owned()),
        ("a part URL's credential", "X-Amz-Credential=".to_owned()),
    ];
    secrets.extend(signatures.into_iter().map(|s| ("a signature", s)));
    for (what, secret) in &secrets {
        if let Some(at) = logs.find(secret.as_str()) {
            let from = logs.floor_char_boundary(at.saturating_sub(300));
            let to = logs.ceil_char_boundary((at + 100).min(logs.len()));
            panic!("{what} is in the logs: …{}…", &logs[from..to]);
        }
    }
    // SigV4 Authorization headers carry `Signature=<64 hex>`.
    let hexes = logs
        .match_indices("Signature=")
        .filter(|(i, _)| logs[i + "Signature=".len()..].chars().take(64).filter(char::is_ascii_hexdigit).count() == 64);
    assert_eq!(hexes.count(), 0, "an Authorization header's signature is in the logs");
    svc.stop().await;
}
