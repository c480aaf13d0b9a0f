//! The whole flow over real HTTP: the service and its embedded store on ephemeral ports, a plain
//! HTTP client doing the part PUTs to the pre-signed URLs, as a browser would.

#![allow(clippy::cast_possible_truncation)] // sizes from JSON and test data patterns are small on purpose

mod common;

use common::*;
use hoist_core::checksum::{Checksum, ChecksumAlgorithm};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn v1_flow_with_checksums_is_byte_identical() {
    let svc = Service::start().await;
    let content = data(12 * MIB + 12_345, 1);
    let c = call(
        "POST",
        &format!("{}/v1/uploads", svc.url),
        Some(ALICE),
        Some(json!({
            "filename": "photo.png", "size": content.len(), "content_type": "image/png",
            "checksum_algorithm": "crc32c", "metadata": { "owner": "ana" }
        })),
    )
    .await;
    assert_eq!(c.status, 201, "{}", c.body);
    let id = c.body["id"].as_str().unwrap().to_owned();
    let key = c.body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("alice/") && key.ends_with("/photo.png"), "{key}");
    let part_size = c.body["part_size"].as_u64().unwrap() as usize;
    let count = c.body["part_count"].as_u64().unwrap() as u32;
    assert_eq!((part_size, count), (5 * MIB, 3));

    let chunks: Vec<&[u8]> = content.chunks(part_size).collect();
    let checksums: serde_json::Map<String, Value> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| ((i + 1).to_string(), Value::String(Checksum::of(ChecksumAlgorithm::Crc32c, c).to_base64())))
        .collect();
    let s = call(
        "POST",
        &format!("{}/v1/uploads/{id}/parts", svc.url),
        Some(ALICE),
        Some(json!({
            "part_numbers": [1, 2, 3], "checksums": checksums
        })),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.body);
    let state = call("GET", &format!("{}/v1/uploads/{id}", svc.url), Some(ALICE), None).await;
    assert_eq!(state.body["state"], "uploading");

    let mut etags = Vec::new();
    for (part, chunk) in s.body["parts"].as_array().unwrap().iter().zip(&chunks) {
        assert_eq!(part["headers"]["x-amz-checksum-crc32c"], checksums[&part["part_number"].to_string()]);
        let (status, etag, text) = put_part(part, chunk.to_vec()).await;
        assert_eq!(status, 200, "{text}");
        etags.push(json!({ "part_number": part["part_number"], "etag": etag.unwrap() }));
    }
    let listed = call("GET", &format!("{}/v1/uploads/{id}/parts", svc.url), Some(ALICE), None).await;
    assert_eq!(listed.body["parts"].as_array().unwrap().len(), 3);
    assert_eq!(listed.body["parts"][2]["size"], 2 * MIB + 12_345);

    let done =
        call("POST", &format!("{}/v1/uploads/{id}/complete", svc.url), Some(ALICE), Some(json!({ "parts": etags })))
            .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["size"], content.len());
    assert_eq!(done.body["key"], key);
    assert!(done.body["etag"].as_str().unwrap().ends_with("-3"));
    assert!(done.body["checksum"].as_str().unwrap().starts_with("CRC32C:"), "{}", done.body);
    assert!(done.body["location"].as_str().unwrap().starts_with(&svc.store_url));
    assert_eq!(svc.object(&key).await, content, "the object must be byte-identical");
    let head = svc.s3().head_object().bucket("hoist").key(&key).send().await.unwrap();
    assert_eq!(head.content_type(), Some("image/png"));
    assert_eq!(head.metadata().unwrap().get("owner").map(String::as_str), Some("ana"));

    let state = call("GET", &format!("{}/v1/uploads/{id}", svc.url), Some(ALICE), None).await;
    assert_eq!(state.body["state"], "completed");
    assert!(state.body["completed_at"].is_string());
    assert_eq!(svc.open_uploads().await, 0);
    let metrics = reqwest::get(format!("{}/metrics", svc.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hoist_uploads_completed_total 1\n"), "{metrics}");
    assert!(metrics.contains(&format!("hoist_bytes_completed_total {}\n", content.len())), "{metrics}");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_and_one_part_files_and_the_dev_token_work() {
    let svc = Service::start().await;
    for (len, name) in [(0usize, "empty.bin"), (1000, "small.bin")] {
        let content = data(len, 2);
        let c =
            call("POST", &format!("{}/v1/uploads", svc.url), Some(&svc.dev_token), Some(create_body(name, len))).await;
        assert_eq!(c.status, 201, "{}", c.body);
        assert_eq!(c.body["part_count"], 1);
        assert!(c.body["key"].as_str().unwrap().starts_with("dev/"));
        let id = c.body["id"].as_str().unwrap();
        let s = call(
            "POST",
            &format!("{}/v1/uploads/{id}/parts", svc.url),
            Some(&svc.dev_token),
            Some(json!({ "part_numbers": [1] })),
        )
        .await;
        let (status, etag, _) = put_part(&s.body["parts"][0], content.clone()).await;
        assert_eq!(status, 200);
        let done = call(
            "POST",
            &format!("{}/v1/uploads/{id}/complete", svc.url),
            Some(&svc.dev_token),
            Some(json!({
                "parts": [{ "part_number": 1, "etag": etag.unwrap() }]
            })),
        )
        .await;
        assert_eq!(done.status, 200, "{}", done.body);
        assert_eq!(svc.object(c.body["key"].as_str().unwrap()).await, content);
    }
    svc.stop().await;
}

/// Uppy's `@uppy/aws-s3` calls, in its order, through `/u/{token}/s3` (no headers) and `/s3`
/// with a bearer token; then the small-file POST form from `/s3/params`.
#[tokio::test(flavor = "multi_thread")]
async fn companion_routes_in_uppys_order() {
    let svc = Service::start().await;
    let content = data(11 * MIB, 3);
    for (base, token) in [(format!("{}/u/{BOB}/s3", svc.url), None), (format!("{}/s3", svc.url), Some(BOB))] {
        let c = call("POST", &format!("{base}/multipart"), token, Some(json!({
            "filename": "movie.mp4", "type": "video/mp4", "metadata": { "name": "movie.mp4", "caption": "é non-ascii is dropped" }
        })))
        .await;
        assert_eq!(c.status, 200, "{}", c.body);
        let (key, upload_id) =
            (c.body["key"].as_str().unwrap().to_owned(), c.body["uploadId"].as_str().unwrap().to_owned());
        assert_eq!(c.body["bucket"], "hoist");
        let q = format!("key={}", percent_encode(&key));
        let mut parts = Vec::new();
        for (i, chunk) in content.chunks(5 * MIB).enumerate() {
            let n = i + 1;
            let s = call("GET", &format!("{base}/multipart/{upload_id}/{n}?{q}"), token, None).await;
            assert_eq!(s.status, 200, "{}", s.body);
            assert!(s.body["expires"].as_u64().unwrap() > 0);
            let (status, etag, text) = put_part(&json!({ "url": s.body["url"] }), chunk.to_vec()).await;
            assert_eq!(status, 200, "{text}");
            parts.push(json!({ "PartNumber": n, "ETag": format!("\"{}\"", etag.unwrap()) }));
        }
        let l = call("GET", &format!("{base}/multipart/{upload_id}?{q}"), token, None).await;
        assert_eq!(l.body.as_array().unwrap().len(), 3, "{}", l.body);
        assert_eq!(l.body[0]["PartNumber"], 1);
        let done =
            call("POST", &format!("{base}/multipart/{upload_id}/complete?{q}"), token, Some(json!({ "parts": parts })))
                .await;
        assert_eq!(done.status, 200, "{}", done.body);
        assert!(done.body["location"].as_str().unwrap().contains("movie.mp4"));
        assert_eq!(svc.object(&key).await, content);
        // Abort answers {} (Uppy parses the body), on a fresh upload.
        let c = call(
            "POST",
            &format!("{base}/multipart"),
            token,
            Some(json!({ "filename": "x.bin", "type": "application/octet-stream" })),
        )
        .await;
        let (key, upload_id) =
            (c.body["key"].as_str().unwrap().to_owned(), c.body["uploadId"].as_str().unwrap().to_owned());
        let a =
            call("DELETE", &format!("{base}/multipart/{upload_id}?key={}", percent_encode(&key)), token, None).await;
        assert_eq!((a.status, a.body.clone()), (200, json!({})));
    }
    assert_eq!(svc.open_uploads().await, 0);

    // Small files: a POST policy form.
    let p = call("GET", &format!("{}/u/{BOB}/s3/params?filename=note.txt&type=text/plain", svc.url), None, None).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["method"], "POST");
    let fields = p.body["fields"].as_object().unwrap();
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k.clone(), v.as_str().unwrap().to_owned());
    }
    form = form.part("file", reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("note.txt"));
    let r = reqwest::Client::new().post(p.body["url"].as_str().unwrap()).multipart(form).send().await.unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    assert_eq!(svc.object(fields["key"].as_str().unwrap()).await, b"hello");
    svc.stop().await;
}

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_janitor_aborts_expired_sessions_in_the_store() {
    let svc = Service::start_with(|c| {
        c.session_ttl = std::time::Duration::from_secs(1);
        c.janitor_interval = std::time::Duration::from_millis(200);
    })
    .await;
    let c = call("POST", &format!("{}/v1/uploads", svc.url), Some(BOB), Some(create_body("old.bin", 100))).await;
    let id = c.body["id"].as_str().unwrap().to_owned();
    assert_eq!(svc.open_uploads().await, 1);
    let mut state = String::new();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if svc.open_uploads().await == 0 {
            state = call("GET", &format!("{}/v1/uploads/{id}", svc.url), Some(BOB), None).await.body["state"]
                .as_str()
                .unwrap()
                .to_owned();
            break;
        }
    }
    assert_eq!(state, "expired", "the janitor did not abort the expired upload in the store");
    let s =
        call("POST", &format!("{}/v1/uploads/{id}/parts", svc.url), Some(BOB), Some(json!({ "part_numbers": [1] })))
            .await;
    assert_eq!((s.status, s.code()), (409, "wrong_state"), "{}", s.body);
    let metrics = reqwest::get(format!("{}/metrics", svc.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hoist_uploads_expired_total 1\n"), "{metrics}");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn page_module_spec_health_and_request_ids_are_served() {
    let svc = Service::start().await;
    let page = reqwest::get(format!("{}/", svc.url)).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("src=\"app.js\""));
    let app = reqwest::get(format!("{}/app.js", svc.url)).await.unwrap().text().await.unwrap();
    assert!(app.contains("hoist-upload.js"), "the page's script loads the module");
    let module = reqwest::get(format!("{}/hoist-upload.js", svc.url)).await.unwrap();
    assert!(module.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(module.text().await.unwrap().contains("export class HoistUpload"));
    let spec: Value = reqwest::get(format!("{}/v1/openapi.json", svc.url)).await.unwrap().json().await.unwrap();
    for path in ["/v1/uploads", "/v1/uploads/{id}", "/v1/uploads/{id}/parts", "/v1/uploads/{id}/complete"] {
        assert!(spec["paths"][path].is_object(), "{path} missing from the OpenAPI spec");
    }
    let h = reqwest::get(format!("{}/healthz", svc.url)).await.unwrap();
    assert_eq!(h.status(), 200);
    assert!(h.headers().contains_key("x-request-id"));
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", svc.url))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let missing = call("GET", &format!("{}/nope", svc.url), None, None).await;
    assert_eq!((missing.status, missing.code()), (404, "no_route"));
    svc.stop().await;
}
