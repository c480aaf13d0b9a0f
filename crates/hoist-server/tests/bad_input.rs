//! Bad input and attacks: each is a clear 4xx naming the problem, and nothing changes (no upload
//! created, no part stored, the upload still resumable). Real HTTP to the service and the store.

#![allow(clippy::cast_possible_truncation)] // sizes from JSON and test data patterns are small on purpose

mod common;

use common::*;
use serde_json::json;

async fn new_upload(svc: &Service, token: &str, len: usize) -> (String, String) {
    let c = call("POST", &format!("{}/v1/uploads", svc.url), Some(token), Some(create_body("f.bin", len))).await;
    assert_eq!(c.status, 201, "{}", c.body);
    (c.body["id"].as_str().unwrap().to_owned(), c.body["key"].as_str().unwrap().to_owned())
}

async fn sign(svc: &Service, token: &str, id: &str, body: serde_json::Value) -> Resp {
    call("POST", &format!("{}/v1/uploads/{id}/parts", svc.url), Some(token), Some(body)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_creates_change_nothing() {
    let svc = Service::start().await;
    let url = format!("{}/v1/uploads", svc.url);
    let cases: Vec<(Option<&str>, serde_json::Value, u16, &str, &str)> = vec![
        (None, create_body("a.bin", 10), 401, "unauthorized", "Authorization: Bearer"),
        (Some("not-a-token"), create_body("a.bin", 10), 401, "unauthorized", "Bearer"),
        (Some(ALICE), create_body("../../etc/passwd", 10), 400, "bad_request", "path separator"),
        (Some(ALICE), create_body("..", 10), 400, "bad_request", "directory reference"),
        (Some(ALICE), create_body("evil\u{0}.png", 10), 400, "bad_request", "control characters"),
        (Some(ALICE), create_body("line\r\nbreak.png", 10), 400, "bad_request", "control characters"),
        (Some(ALICE), create_body("", 10), 400, "bad_request", "empty"),
        (Some(ALICE), create_body("big.bin", 64 * MIB + 1), 413, "too_large", "67108864"),
        (
            Some(ALICE),
            json!({ "filename": "a.html", "size": 10, "content_type": "text/html" }),
            415,
            "content_type_not_allowed",
            "image/*",
        ),
        (
            Some(ALICE),
            json!({ "filename": "a.png", "size": 10, "content_type": "nonsense" }),
            400,
            "bad_request",
            "type/subtype",
        ),
        (
            Some(ALICE),
            json!({ "filename": "a.png", "size": 10, "checksum_algorithm": "md4" }),
            400,
            "bad_request",
            "crc32c",
        ),
        (
            Some(ALICE),
            json!({ "filename": "a.png", "size": 10, "metadata": { "bad name": "v" } }),
            400,
            "bad_request",
            "metadata name",
        ),
        (Some(ALICE), json!({ "filename": "a.png", "size": -1 }), 400, "bad_json", "size"),
        (Some(ALICE), json!({ "filename": "a.png" }), 400, "bad_json", "size"),
        (Some(ALICE), json!({ "filename": "a.png", "size": 1, "colour": "red" }), 400, "bad_json", "colour"),
    ];
    for (token, body, status, code, words) in cases {
        let r = call("POST", &url, token, Some(body.clone())).await;
        assert_eq!((r.status, r.code()), (status, code), "{body}: {}", r.body);
        assert!(r.message().contains(words), "{body}: message {:?} should mention {words:?}", r.message());
    }
    // Not JSON at all, and JSON over the size cap.
    let http = reqwest::Client::new();
    let r = http
        .post(&url)
        .bearer_auth(ALICE)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let huge = format!("{{\"filename\": \"{}\", \"size\": 1}}", "x".repeat(2 * MIB));
    let r =
        http.post(&url).bearer_auth(ALICE).header("content-type", "application/json").body(huge).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let r = http.post(&url).bearer_auth(ALICE).body(create_body("a.bin", 1).to_string()).send().await.unwrap();
    assert_eq!(r.status(), 400, "a body without Content-Type: application/json is refused");
    assert_eq!(svc.open_uploads().await, 0, "no refused request may create an upload");

    // Quota: alice may hold 200 MiB in open uploads.
    let (_id, _) = new_upload(&svc, ALICE, 60 * MIB).await;
    let (_id, _) = new_upload(&svc, ALICE, 60 * MIB).await;
    let (_id, _) = new_upload(&svc, ALICE, 60 * MIB).await;
    let r = call("POST", &url, Some(ALICE), Some(create_body("more.bin", 60 * MIB))).await;
    assert_eq!((r.status, r.code()), (403, "quota_exceeded"), "{}", r.body);
    assert_eq!(svc.open_uploads().await, 3);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn other_keys_uploads_are_invisible_and_part_numbers_are_checked() {
    let svc = Service::start().await;
    let (id, _) = new_upload(&svc, ALICE, 12 * MIB).await; // 3 parts of 5 MiB
    for (method, path, body) in [
        ("GET", format!("/v1/uploads/{id}"), None),
        ("GET", format!("/v1/uploads/{id}/parts"), None),
        ("POST", format!("/v1/uploads/{id}/parts"), Some(json!({ "part_numbers": [1] }))),
        ("POST", format!("/v1/uploads/{id}/complete"), Some(json!({ "parts": [{ "part_number": 1, "etag": "x" }] }))),
        ("DELETE", format!("/v1/uploads/{id}"), None),
    ] {
        let r = call(method, &format!("{}{path}", svc.url), Some(BOB), body).await;
        assert_eq!((r.status, r.code()), (404, "upload_not_found"), "{method} {path}: {}", r.body);
    }
    for (numbers, words) in [
        (json!([0]), "out of range"),
        (json!([10_001]), "out of range"),
        (json!([4]), "parts 1 to 3"),
        (json!([]), "empty"),
        (json!([1, 1]), "twice"),
    ] {
        let r = sign(&svc, ALICE, &id, json!({ "part_numbers": numbers })).await;
        assert_eq!((r.status, r.code()), (400, "bad_request"), "{numbers}: {}", r.body);
        assert!(r.message().contains(words), "{numbers}: {}", r.message());
    }
    let r = sign(&svc, ALICE, &id, json!({ "part_numbers": [1], "checksums": { "1": "AAAAAA==" } })).await;
    assert!(r.status == 400 && r.message().contains("without checksum_algorithm"), "{}", r.body);
    let state = call("GET", &format!("{}/v1/uploads/{id}", svc.url), Some(ALICE), None).await;
    assert_eq!(state.body["state"], "created", "refused sign requests change nothing");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_refuses_what_the_url_did_not_sign() {
    let ttl = std::time::Duration::from_secs(5);
    let svc = Service::start_with(|c| c.part_url_ttl = ttl).await;
    let c = call("POST", &format!("{}/v1/uploads", svc.url), Some(ALICE), Some(json!({
        "filename": "f.bin", "size": 6 * MIB, "content_type": "application/octet-stream", "checksum_algorithm": "crc32c"
    })))
    .await;
    let id = c.body["id"].as_str().unwrap().to_owned();
    let part1 = data(5 * MIB, 1);
    let sum = hoist_core::checksum::Checksum::of(hoist_core::checksum::ChecksumAlgorithm::Crc32c, &part1).to_base64();
    let r = sign(&svc, ALICE, &id, json!({ "part_numbers": [1] })).await;
    assert!(r.status == 400 && r.message().contains("has no checksum"), "{}", r.body);
    let signed_at = std::time::Instant::now();
    let s = sign(&svc, ALICE, &id, json!({ "part_numbers": [1], "checksums": { "1": sum } })).await;
    let part = s.body["parts"][0].clone();
    let refused = |status: u16| status == 403 || status == 0;

    // Another length than planned: the signature binds Content-Length.
    let (status, _, text) = put_part(&part, data(5 * MIB - 1, 1)).await;
    assert!(refused(status), "a shorter body must be refused: {status} {text}");
    // Same length, other bytes: the bound checksum does not match.
    let (status, _, text) = put_part(&part, data(5 * MIB, 9)).await;
    assert_eq!(status, 400, "{text}");
    // The URL with another part number or upload id.
    let url = part["url"].as_str().unwrap();
    let moved = json!({ "url": url.replace("partNumber=1", "partNumber=2"), "headers": part["headers"] });
    assert!(refused(put_part(&moved, part1.clone()).await.0));
    let other_upload = url.replacen("uploadId=", "uploadId=x", 1);
    assert!(refused(put_part(&json!({ "url": other_upload, "headers": part["headers"] }), part1.clone()).await.0));
    let listed = call("GET", &format!("{}/v1/uploads/{id}/parts", svc.url), Some(ALICE), None).await;
    assert_eq!(listed.body["parts"], json!([]), "nothing may be stored by refused PUTs");
    // The right body is accepted; after expiry the same URL is refused.
    assert_eq!(put_part(&part, part1.clone()).await.0, 200);
    tokio::time::sleep((ttl + std::time::Duration::from_secs(1)).saturating_sub(signed_at.elapsed())).await;
    assert!(refused(put_part(&part, part1).await.0), "an expired URL must be refused");
    let listed = call("GET", &format!("{}/v1/uploads/{id}/parts", svc.url), Some(ALICE), None).await;
    assert_eq!(listed.body["parts"].as_array().unwrap().len(), 1, "only the one good PUT is stored");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn complete_checks_parts_against_the_store_and_stays_resumable() {
    let svc = Service::start().await;
    let len = 11 * MIB;
    let (id, key) = new_upload(&svc, BOB, len).await; // parts 5, 5, 1 MiB
    let content = data(len, 4);
    let s = sign(&svc, BOB, &id, json!({ "part_numbers": [1, 2] })).await;
    let mut etags = Vec::new();
    for (i, p) in s.body["parts"].as_array().unwrap().iter().enumerate() {
        let (status, etag, _) = put_part(p, content[i * 5 * MIB..(i + 1) * 5 * MIB].to_vec()).await;
        assert_eq!(status, 200);
        etags.push(etag.unwrap());
    }
    // Part 3 uploaded around the service with a wrong size (straight to the store).
    let upload_id = svc.s3().list_multipart_uploads().bucket("hoist").send().await.unwrap().uploads()[0]
        .upload_id()
        .unwrap()
        .to_owned();
    let wrong = svc
        .s3()
        .upload_part()
        .bucket("hoist")
        .key(&key)
        .upload_id(&upload_id)
        .part_number(3)
        .body(data(MIB + 7, 4).into())
        .send()
        .await
        .unwrap();
    let wrong_etag = wrong.e_tag().unwrap().trim_matches('"').to_owned();
    let complete = |parts: serde_json::Value| {
        let url = format!("{}/v1/uploads/{id}/complete", svc.url);
        async move { call("POST", &url, Some(BOB), Some(json!({ "parts": parts }))).await }
    };
    let p = |n: u32, e: &str| json!({ "part_number": n, "etag": e });
    for (parts, words) in [
        (json!([p(1, &etags[0]), p(2, &etags[1])]), "2 parts were sent but the upload has 3"),
        (json!([p(1, &etags[0]), p(3, &wrong_etag)]), "part 2 is missing"),
        (json!([p(2, &etags[1]), p(1, &etags[0]), p(3, &wrong_etag)]), "out of order"),
        (
            json!([p(1, &etags[0]), p(2, "0123456789abcdef0123456789abcdef"), p(3, &wrong_etag)]),
            "part 2: the ETag sent does not match",
        ),
        (
            json!([p(1, &etags[0]), p(2, &etags[1]), p(3, &wrong_etag)]),
            "part 3 is 1048583 bytes but the plan says 1048576",
        ),
        (json!([]), "parts is empty"),
    ] {
        let r = complete(parts.clone()).await;
        assert_eq!(r.status, 400, "{parts}: {}", r.body);
        assert!(r.message().contains(words), "{parts}: {:?} should say {words:?}", r.message());
    }
    // Still resumable: sign part 3 again, upload the right bytes, complete.
    let s = sign(&svc, BOB, &id, json!({ "part_numbers": [3] })).await;
    let (status, third_etag, _) = put_part(&s.body["parts"][0], content[10 * MIB..].to_vec()).await;
    assert_eq!(status, 200);
    let all = json!([p(1, &etags[0]), p(2, &etags[1]), p(3, &third_etag.unwrap())]);
    let done = complete(all.clone()).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(svc.object(&key).await, content);
    // The same Complete again (a retry after a lost answer): the same result, as S3 answers.
    let again = complete(all).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!((&again.body["etag"], &again.body["size"]), (&done.body["etag"], &done.body["size"]));
    // Another part list for the completed upload: refused, and the object is untouched.
    let other = complete(json!([p(1, &etags[0]), p(2, &etags[1]), p(3, &etags[0])])).await;
    assert_eq!((other.status, other.code()), (409, "wrong_state"), "{}", other.body);
    assert!(other.message().contains("other parts"), "{}", other.message());
    assert_eq!(svc.object(&key).await, content);
    // Deleting a completed upload deletes its object; then it is `deleted` and stays so.
    let a = call("DELETE", &format!("{}/v1/uploads/{id}", svc.url), Some(BOB), None).await;
    assert_eq!(
        (a.status, &a.body["state"], &a.body["objects_deleted"]),
        (200, &json!("deleted"), &json!(1)),
        "{}",
        a.body
    );
    assert!(svc.s3().head_object().bucket("hoist").key(&key).send().await.is_err(), "the object is gone");
    let a = call("DELETE", &format!("{}/v1/uploads/{id}", svc.url), Some(BOB), None).await;
    assert_eq!((a.status, a.code()), (409, "wrong_state"), "{}", a.body);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_leaves_nothing_and_rate_limits_say_when_to_retry() {
    let svc = Service::start().await;
    let (id, _) = new_upload(&svc, BOB, 6 * MIB).await;
    let s = sign(&svc, BOB, &id, json!({ "part_numbers": [1] })).await;
    assert_eq!(put_part(&s.body["parts"][0], data(5 * MIB, 5)).await.0, 200);
    let a = call("DELETE", &format!("{}/v1/uploads/{id}", svc.url), Some(BOB), None).await;
    assert_eq!((a.status, a.body["state"].as_str()), (200, Some("aborted")), "{}", a.body);
    assert_eq!(svc.open_uploads().await, 0);
    let again = call("DELETE", &format!("{}/v1/uploads/{id}", svc.url), Some(BOB), None).await;
    assert_eq!(again.status, 409);
    let st = call("GET", &format!("{}/v1/uploads/{id}", svc.url), Some(BOB), None).await;
    assert_eq!(st.body["state"], "aborted");

    // tiny: 3 requests a minute.
    for _ in 0..3 {
        assert_eq!(call("GET", &format!("{}/v1/uploads/nope", svc.url), Some(TINY), None).await.status, 404);
    }
    let r = call("GET", &format!("{}/v1/uploads/nope", svc.url), Some(TINY), None).await;
    assert_eq!((r.status, r.code()), (429, "rate_limited"), "{}", r.body);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    // Other keys are not slowed down by tiny's limit.
    assert_eq!(call("GET", &format!("{}/v1/uploads/nope", svc.url), Some(BOB), None).await.status, 404);
    svc.stop().await;
}

/// Uppy's routes: errors in Companion's `{"message"}` shape, the size limit enforced at complete
/// (Uppy never declares a size) with the oversized upload aborted, and CORS for another origin.
#[tokio::test(flavor = "multi_thread")]
async fn companion_errors_size_limit_at_complete_and_cors() {
    let svc = Service::start_with(|c| {
        c.keys[1].policy.max_size = 6 * MIB as u64; // bob
        c.cors_origins = vec!["https://app.example".into()];
    })
    .await;
    let r =
        call("POST", &format!("{}/u/wrong-token/s3/multipart", svc.url), None, Some(json!({ "filename": "a.bin" })))
            .await;
    assert_eq!(r.status, 401);
    assert!(r.body["message"].as_str().unwrap().contains("token"), "{}", r.body);
    assert!(r.body.get("error").is_none(), "Companion's shape, not /v1's: {}", r.body);
    let r = call("POST", &format!("{}/u/{BOB}/s3/multipart", svc.url), None, Some(json!({ "filename": "../x" }))).await;
    assert_eq!(r.status, 400);
    assert!(r.body["message"].as_str().unwrap().contains("path separator"), "{}", r.body);

    let base = format!("{}/u/{BOB}/s3", svc.url);
    let c = call(
        "POST",
        &format!("{base}/multipart"),
        None,
        Some(json!({ "filename": "big.bin", "type": "application/octet-stream" })),
    )
    .await;
    let (key, upload_id) =
        (c.body["key"].as_str().unwrap().to_owned(), c.body["uploadId"].as_str().unwrap().to_owned());
    let q = format!("key={}", percent_encoding::utf8_percent_encode(&key, percent_encoding::NON_ALPHANUMERIC));
    let mut parts = Vec::new();
    for (n, len) in [(1, 5 * MIB), (2, 2 * MIB)] {
        let s = call("GET", &format!("{base}/multipart/{upload_id}/{n}?{q}"), None, None).await;
        let (status, etag, _) = put_part(&json!({ "url": s.body["url"] }), data(len, 7)).await;
        assert_eq!(status, 200);
        parts.push(json!({ "PartNumber": n, "ETag": etag.unwrap() }));
    }
    let done =
        call("POST", &format!("{base}/multipart/{upload_id}/complete?{q}"), None, Some(json!({ "parts": parts })))
            .await;
    assert_eq!(done.status, 413, "{}", done.body);
    assert!(done.body["message"].as_str().unwrap().contains("6291456"), "{}", done.body);
    assert_eq!(svc.open_uploads().await, 0, "the oversized upload must be aborted, not left behind");
    assert!(svc.s3().head_object().bucket("hoist").key(&key).send().await.is_err(), "no object may be created");

    // CORS: the configured origin gets a preflight answer and headers; another origin does not.
    let http = reqwest::Client::new();
    let pre = http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/uploads", svc.url))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], "https://app.example");
    assert!(pre.headers()["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    let other = http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/uploads", svc.url))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    svc.stop().await;
}

const GIB: u64 = 1024 * 1024 * 1024;

/// Creates an upload through Uppy's routes for `token`; (base URL, key query, upload id).
async fn uppy_upload(svc: &Service, token: &str, filename: &str) -> (String, String, String) {
    let base = format!("{}/u/{token}/s3", svc.url);
    let c = call(
        "POST",
        &format!("{base}/multipart"),
        None,
        Some(json!({ "filename": filename, "type": "application/octet-stream" })),
    )
    .await;
    assert_eq!(c.status, 200, "{}", c.body);
    let key = c.body["key"].as_str().unwrap();
    let q = format!("key={}", percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC));
    (base, q, c.body["uploadId"].as_str().unwrap().to_owned())
}

/// Uppy's uploads declare no size and their part URLs bind no length, so each part signed counts
/// toward the quota at S3's largest part (5 GiB): signing past the quota is refused, and so is a
/// Complete while the key is over its quota. Open uploads per key are capped.
#[tokio::test(flavor = "multi_thread")]
async fn uppy_parts_count_toward_the_quota_and_open_uploads_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    let at = data_dir.clone();
    let svc = Service::start_with(move |c| {
        c.data_dir = at;
        c.keys[1].policy.quota = Some(12 * GIB); // bob
    })
    .await;
    let (base, q, upload_id) = uppy_upload(&svc, BOB, "big.bin").await;
    let sign = |n: u32| {
        let url = format!("{base}/multipart/{upload_id}/{n}?{q}");
        async move { call("GET", &url, None, None).await }
    };
    let mut parts = Vec::new();
    for (n, len) in [(1, 5 * MIB), (2, MIB)] {
        let s = sign(n).await;
        assert_eq!(s.status, 200, "part {n}: {}", s.body);
        let (status, etag, _) = put_part(&json!({ "url": s.body["url"] }), data(len, 1)).await;
        assert_eq!(status, 200);
        parts.push(json!({ "PartNumber": n, "ETag": etag.unwrap() }));
    }
    let r = sign(3).await;
    assert_eq!(r.status, 403, "a third part would stage up to 15 GiB on a 12 GiB quota: {}", r.body);
    assert!(r.message().contains("quota"), "{}", r.body);
    assert_eq!(sign(2).await.status, 200, "signing a part again counts nothing more");
    // The rest of the quota is what /v1 uploads may still declare.
    let r = call("POST", &format!("{}/v1/uploads", svc.url), Some(BOB), Some(create_body("more.bin", 64 * MIB))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    svc.stop().await;

    // The same data with a lower quota: the key is over it, so Complete is refused too.
    let at = data_dir.clone();
    let svc = Service::start_with(move |c| {
        c.data_dir = at;
        c.keys[1].policy.quota = Some(6 * GIB);
    })
    .await;
    let done = call(
        "POST",
        &format!("{}/u/{BOB}/s3/multipart/{upload_id}/complete?{q}", svc.url),
        None,
        Some(json!({ "parts": parts })),
    )
    .await;
    assert_eq!(done.status, 403, "{}", done.body);
    assert!(done.message().contains("quota"), "{}", done.body);
    svc.stop().await;
    drop(dir);

    // At most `max_open_uploads` unfinished uploads per key.
    let svc = Service::start_with(|c| c.keys[1].policy.max_open_uploads = 2).await;
    let (id, _) = new_upload(&svc, BOB, MIB).await;
    let _ = uppy_upload(&svc, BOB, "two.bin").await;
    let r = call("POST", &format!("{}/v1/uploads", svc.url), Some(BOB), Some(create_body("three.bin", MIB))).await;
    assert_eq!((r.status, r.code()), (403, "too_many_open_uploads"), "{}", r.body);
    assert!(r.message().contains("2 unfinished uploads"), "{}", r.body);
    let r = call("POST", &format!("{}/u/{BOB}/s3/multipart", svc.url), None, Some(json!({ "filename": "three.bin" })))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(svc.open_uploads().await, 2, "nothing was created by the refused calls");
    assert_eq!(call("DELETE", &format!("{}/v1/uploads/{id}", svc.url), Some(BOB), None).await.status, 200);
    let _ = new_upload(&svc, BOB, MIB).await;
    svc.stop().await;
}

/// File names with bidirectional controls are refused (they make a name display as another);
/// Uppy's part route takes plain decimal part numbers only.
#[tokio::test(flavor = "multi_thread")]
async fn bidi_file_names_and_odd_part_numbers_are_refused() {
    let svc = Service::start().await;
    for name in ["invoice\u{202E}fdp.exe", "a\u{2066}b.png", "x\u{200F}.png", "\u{202A}y.png"] {
        let r = call("POST", &format!("{}/v1/uploads", svc.url), Some(BOB), Some(create_body(name, 10))).await;
        assert_eq!((r.status, r.code()), (400, "bad_request"), "{name:?}: {}", r.body);
        assert!(r.message().contains("bidirectional"), "{name:?}: {}", r.body);
        let r =
            call("POST", &format!("{}/u/{BOB}/s3/multipart", svc.url), None, Some(json!({ "filename": name }))).await;
        assert_eq!(r.status, 400, "{name:?}: {}", r.body);
    }
    assert_eq!(svc.open_uploads().await, 0);
    let (base, q, upload_id) = uppy_upload(&svc, BOB, "f.bin").await;
    for n in ["01", "+1", "1.0", "0", "10001", "-1", "%2B1"] {
        let r = call("GET", &format!("{base}/multipart/{upload_id}/{n}?{q}"), None, None).await;
        assert_eq!(r.status, 400, "{n}: {}", r.body);
        assert!(r.message().contains("part number"), "{n}: {}", r.body);
    }
    for n in ["1", "10000"] {
        let r = call("GET", &format!("{base}/multipart/{upload_id}/{n}?{q}"), None, None).await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert!(r.body["url"].as_str().unwrap().contains(&format!("partNumber={n}&")), "{}", r.body);
    }
    svc.stop().await;
}

/// Metadata is sent to S3 as `x-amz-meta-*` headers, and S3 (like the store) refuses a header
/// section over 8 KiB: metadata that would not fit is a 400 at create, not a 502 from the store.
/// Exactly at the service's budget it still fits the store.
#[tokio::test(flavor = "multi_thread")]
async fn metadata_over_the_header_limit_is_refused_at_create() {
    let svc = Service::start().await;
    let url = format!("{}/v1/uploads", svc.url);
    let meta = |n: usize, value_bytes: usize| -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for i in 0..n {
            let len = value_bytes / n + usize::from(i < value_bytes % n);
            m.insert(format!("m{i:03}"), json!("v".repeat(len)));
        }
        json!({ "filename": "f.bin", "size": 10, "metadata": m })
    };
    // 152 entries: names of 4 bytes, values of 1432 bytes in all (2040 bytes of names and values,
    // under S3's 2 KiB); as headers (x-amz-meta-NAME: VALUE, and the name again in the signature)
    // 152 × 31 + 1432 = 6144 bytes, the service's budget.
    let r = call("POST", &url, Some(BOB), Some(meta(152, 1432))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call("POST", &url, Some(BOB), Some(meta(152, 1433))).await;
    assert_eq!((r.status, r.code()), (400, "bad_request"), "{}", r.body);
    assert!(r.message().contains("HTTP headers"), "{}", r.body);
    let r = call("POST", &url, Some(BOB), Some(meta(300, 0))).await;
    assert_eq!((r.status, r.code()), (400, "bad_request"), "many small entries: {}", r.body);
    assert_eq!(svc.open_uploads().await, 1, "only the upload that fits was created");
    svc.stop().await;
}

/// A client that sends half a request header, or leaves a connection idle, is cut off after the
/// header read timeout, on the API and on the embedded store.
#[tokio::test(flavor = "multi_thread")]
async fn half_sent_headers_and_idle_connections_are_closed_on_both_servers() {
    use hoist_testkit::raw_http::RawConn;
    use std::time::{Duration, Instant};
    let svc = Service::start_with(|c| c.header_read_timeout = Duration::from_secs(1)).await;
    for addr in [&svc.url, &svc.store_url] {
        let started = Instant::now();
        let mut conn = RawConn::connect(addr).await.unwrap();
        conn.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ").await.unwrap();
        assert!(conn.read_until_closed().await.is_some(), "{addr}: the connection stayed open");
        assert!(started.elapsed() < Duration::from_secs(4), "{addr}: closed after {:?}", started.elapsed());
        let mut conn = RawConn::connect(addr).await.unwrap();
        conn.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert!(conn.read_response().await.unwrap().is_some(), "{addr}: no answer");
        let idle = Instant::now();
        assert!(conn.read_until_closed().await.is_some(), "{addr}: an idle connection stayed open");
        assert!(idle.elapsed() < Duration::from_secs(4), "{addr}: closed after {:?}", idle.elapsed());
    }
    // Requests that take their time after the header are not cut: a normal call still works.
    assert_eq!(call("GET", &format!("{}/healthz", svc.url), None, None).await.status, 200);
    svc.stop().await;
}
