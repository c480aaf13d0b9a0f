//! Bad input against the real store over HTTP: each gets S3's error, nothing is stored, nothing
//! escapes the data dir. Also pre-signed URLs used by a plain HTTP client, and CORS preflight.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use hoist_testkit::error_code as code;
use hoist_testkit::raw_http::{RawConn, path_and_query};
use hoist_testkit::sdk::{TamperSignature, presigned_put};
use hoist_testkit::{TestStore, error_message, pattern};
use md5::Digest as _;

#[tokio::test(flavor = "multi_thread")]
async fn out_of_range_and_malformed_requests_are_refused() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let id = c.create_multipart_upload().bucket("bkt").key("k").send().await.unwrap().upload_id.unwrap();
    for n in [0, 10_001] {
        let e = c
            .upload_part()
            .bucket("bkt")
            .key("k")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidArgument", "part {n}");
    }
    let e = c.create_bucket().bucket("Bad_Name").send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidBucketName");
    let long = "k".repeat(1025);
    let e = c.put_object().bucket("bkt").key(&long).body(ByteStream::from_static(b"x")).send().await.unwrap_err();
    assert_eq!(code(&e), "KeyTooLongError");
    let e = c.put_object().bucket("nope-bucket").key("k").body(ByteStream::from_static(b"x")).send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchBucket");
    let e = c.list_parts().bucket("bkt").key("k").upload_id("../../../etc").send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_opaque_and_never_leave_the_data_dir() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let store = TestStore::start_in(&data).await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let keys = ["..", "../../escape", "/etc/passwd", "a/b/../b/c", "a/b/c", "%2e%2e/x", "k\u{7f}ey", "ü/ñ"];
    for (i, k) in keys.iter().enumerate() {
        c.put_object()
            .bucket("bkt")
            .key(*k)
            .body(ByteStream::from(vec![u8::try_from(i).unwrap(); 3]))
            .send()
            .await
            .unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        let got = c.get_object().bucket("bkt").key(*k).send().await.unwrap().body.collect().await.unwrap();
        assert_eq!(got.into_bytes().as_ref(), &[u8::try_from(i).unwrap(); 3], "{k}");
    }
    let listed = c.list_objects_v2().bucket("bkt").send().await.unwrap();
    assert_eq!(listed.contents().len(), keys.len());
    let outside: Vec<_> = std::fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("data")], "something was created outside the data dir");
}

#[tokio::test(flavor = "multi_thread")]
async fn presigned_upload_part_works_once_bound_and_expires() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let id = c.create_multipart_upload().bucket("bkt").key("k").send().await.unwrap().upload_id.unwrap();
    let presigned = c
        .upload_part()
        .bucket("bkt")
        .key("k")
        .upload_id(&id)
        .part_number(1)
        .presigned(PresigningConfig::expires_in(Duration::from_mins(1)).unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let ok = http.put(presigned.uri()).body(vec![7u8; 1000]).send().await.unwrap();
    assert_eq!(ok.status(), 200, "{:?}", ok.text().await);
    assert!(ok.headers().contains_key("etag"));
    // The same URL with another part number: the signature no longer matches.
    let changed = presigned.uri().replace("partNumber=1", "partNumber=2");
    let r = http.put(&changed).body(vec![7u8; 1000]).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // An expired URL.
    let short = c
        .upload_part()
        .bucket("bkt")
        .key("k")
        .upload_id(&id)
        .part_number(3)
        .presigned(PresigningConfig::expires_in(Duration::from_secs(1)).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = http.put(short.uri()).body(vec![7u8; 10]).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let parts = c.list_parts().bucket("bkt").key("k").upload_id(&id).send().await.unwrap();
    let numbers: Vec<_> = parts.parts().iter().map(|p| p.part_number().unwrap()).collect();
    assert_eq!(numbers, vec![1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_body_stores_nothing() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let presigned = c
        .put_object()
        .bucket("bkt")
        .key("half")
        .presigned(PresigningConfig::expires_in(Duration::from_mins(1)).unwrap())
        .await
        .unwrap();
    let url = presigned.uri().to_owned();
    let addr = store.endpoint_url().trim_start_matches("http://").to_owned();
    let path = &url[url.find(&addr).unwrap() + addr.len()..];
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!("PUT {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 1000\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[1u8; 400]).await.unwrap();
    s.shutdown().await.unwrap();
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp)).await;
    let e = c.head_object().bucket("bkt").key("half").send().await.unwrap_err();
    assert!(e.into_service_error().is_not_found());
    let tmp_left = std::fs::read_dir(store.data_dir().join("tmp")).unwrap().count();
    assert_eq!(tmp_left, 0, "a refused body left a temp file");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_allows_configured_origins_only() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        hoist_store::Store::builder(dir.path()).cors_origins(vec!["http://app.example".into()]).build().unwrap();
    let handle = store.start("127.0.0.1:0").await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/bkt/key?partNumber=1&uploadId=x", handle.endpoint_url());
    let pre = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "content-type,x-amz-checksum-crc32c")
            .send()
    };
    let ok = pre("http://app.example").await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], "http://app.example");
    assert!(ok.headers()["access-control-expose-headers"].to_str().unwrap().contains("ETag"));
    let bad = pre("http://evil.example").await.unwrap();
    assert_eq!(bad.status(), 403);
    assert!(!bad.headers().contains_key("access-control-allow-origin"));
    // Errors carry CORS headers too, so a browser can read why it failed.
    let err = http
        .get(format!("{}/bkt/key", handle.endpoint_url()))
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(err.status(), 403);
    assert_eq!(err.headers()["access-control-allow-origin"], "http://app.example");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_header_signature_is_403_and_stores_nothing() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let e = c
        .put_object()
        .bucket("bkt")
        .key("forged")
        .body(ByteStream::from_static(b"forged bytes"))
        .customize()
        .interceptor(TamperSignature)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "SignatureDoesNotMatch");
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert!(!error_message(&e).is_empty(), "the refusal says why");
    let e = c.list_buckets().customize().interceptor(TamperSignature).send().await.unwrap_err();
    assert_eq!(code(&e), "SignatureDoesNotMatch");
    assert!(c.list_objects_v2().bucket("bkt").send().await.unwrap().contents().is_empty());
}

/// A pre-signed URL signs `host` only; headers it did not sign must not change what it does
/// (S3: every `x-amz-*` header sent must be signed). Metadata would be stored under someone
/// else's signature, and `x-amz-copy-source` would turn the upload into a copy.
#[tokio::test(flavor = "multi_thread")]
async fn a_presigned_put_with_unsigned_amz_headers_is_403_and_stores_nothing() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    c.put_object().bucket("bkt").key("secret").body(ByteStream::from_static(b"private")).send().await.unwrap();
    let url = presigned_put(&c, "bkt", "k").await;
    let http = reqwest::Client::new();
    for (name, value) in [
        ("x-amz-meta-foo", "bar"),
        ("x-amz-copy-source", "/bkt/secret"),
        ("x-amz-checksum-crc32c", "AAAAAA=="),
        ("X-Amz-Tagging", "a=b"),
    ] {
        let r = http.put(&url).header(name, value).body("body").send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, 403, "{name}: {text}");
        assert!(text.contains("<Code>AccessDenied</Code>"), "{name}: {text}");
        assert!(
            text.to_ascii_lowercase().contains(name.to_ascii_lowercase().as_str()),
            "the refusal names {name}: {text}"
        );
        let e = c.head_object().bucket("bkt").key("k").send().await.unwrap_err();
        assert!(e.into_service_error().is_not_found(), "{name}: something was stored");
    }
    // The same URL with only what it signed works.
    let r = http.put(&url).body("body").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let head = c.head_object().bucket("bkt").key("k").send().await.unwrap();
    assert!(head.metadata().is_none_or(std::collections::HashMap::is_empty));
}

/// HTTP frames a body by `Content-Length`: bytes past it are the start of the next request,
/// never part of this body. With a digest of what the client meant to send, the short reading
/// is refused and nothing is stored; without one, exactly `Content-Length` bytes are stored and
/// the leftover is refused as a malformed request, not stored anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_longer_than_content_length_stores_nothing_past_it() {
    use base64::Engine as _;
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let addr = store.endpoint_url();
    let host = addr.trim_start_matches("http://").to_owned();
    let sent = pattern(1400, 5);

    let url = presigned_put(&c, "bkt", "with-md5").await;
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&sent));
    let head = format!(
        "PUT {} HTTP/1.1\r\nhost: {host}\r\ncontent-md5: {md5}\r\ncontent-length: 1000\r\n\r\n",
        path_and_query(&url)
    );
    let mut conn = RawConn::connect(&addr).await.unwrap();
    conn.send(head.as_bytes()).await.unwrap();
    conn.send(&sent).await.unwrap();
    let r = conn.read_response().await.unwrap().expect("an answer");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("<Code>BadDigest</Code>"), "{}", r.text());
    let e = c.head_object().bucket("bkt").key("with-md5").send().await.unwrap_err();
    assert!(e.into_service_error().is_not_found());

    let url = presigned_put(&c, "bkt", "plain").await;
    let head = format!("PUT {} HTTP/1.1\r\nhost: {host}\r\ncontent-length: 1000\r\n\r\n", path_and_query(&url));
    let mut conn = RawConn::connect(&addr).await.unwrap();
    conn.send(head.as_bytes()).await.unwrap();
    conn.send(&sent).await.unwrap();
    let r = conn.read_response().await.unwrap().expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    let leftover = conn.read_response().await.unwrap();
    assert!(
        leftover.as_ref().is_none_or(|r| r.status == 400),
        "the 400 leftover bytes are not a request: {leftover:?}"
    );
    let got =
        c.get_object().bucket("bkt").key("plain").send().await.unwrap().body.collect().await.unwrap().into_bytes();
    assert_eq!(got.as_ref(), &sent[..1000], "exactly Content-Length bytes");
    let listed = c.list_objects_v2().bucket("bkt").send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["plain"]);
    assert_eq!(std::fs::read_dir(store.data_dir().join("tmp")).unwrap().count(), 0);
}

/// A PUT with neither `Content-Length` nor chunked framing has, for HTTP, an empty body: S3
/// refuses it (411 `MissingContentLength`) rather than storing an empty object.
#[tokio::test(flavor = "multi_thread")]
async fn a_put_without_content_length_is_411_and_stores_nothing() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let addr = store.endpoint_url();
    let host = addr.trim_start_matches("http://").to_owned();
    let url = presigned_put(&c, "bkt", "empty").await;
    let r = hoist_testkit::raw_http::request(
        &addr,
        format!("PUT {} HTTP/1.1\r\nhost: {host}\r\n\r\n", path_and_query(&url)).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 411, "{}", r.text());
    assert!(r.text().contains("<Code>MissingContentLength</Code>"), "{}", r.text());
    assert!(r.text().contains("Content-Length"), "{}", r.text());
    let e = c.head_object().bucket("bkt").key("empty").send().await.unwrap_err();
    assert!(e.into_service_error().is_not_found(), "an empty object was stored");
    // An explicit empty body is still an empty object.
    let r = hoist_testkit::raw_http::request(
        &addr,
        format!("PUT {} HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0\r\n\r\n", path_and_query(&url)).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A pre-signed URL lives at most a week (`X-Amz-Expires` ≤ 604800); one signed for longer is
/// refused as S3 refuses it, whatever its signature.
#[tokio::test(flavor = "multi_thread")]
async fn presigned_urls_signed_for_more_than_a_week_are_refused() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    c.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"v")).send().await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/bkt/k", store.endpoint_url());
    let week = Duration::from_hours(168);
    let ok = hoist_testkit::sdk::presign_for("GET", &url, &store.credentials(), week);
    let r = http.get(&ok).send().await.unwrap();
    assert_eq!(r.status(), 200, "a week is allowed: {:?}", r.text().await);
    let long = hoist_testkit::sdk::presign_for("GET", &url, &store.credentials(), week + Duration::from_secs(1));
    assert!(long.contains("X-Amz-Expires=604801"), "{long}");
    let r = http.get(&long).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("<Code>AuthorizationQueryParametersError</Code>"), "{text}");
    assert!(text.contains("604800"), "the refusal names the limit: {text}");
}

/// Keys with control characters are refused on every write (XML listings cannot carry them, so
/// one such key would break ListObjects for every client); DEL stays allowed (valid XML), and
/// listings keep parsing.
#[tokio::test(flavor = "multi_thread")]
async fn keys_with_control_characters_are_refused_on_write() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    for key in ["nul\u{0}key", "line\nbreak", "carriage\rreturn", "tab\tkey", "esc\u{1b}[31m", "bad\u{ffff}"] {
        let e = c.put_object().bucket("bkt").key(key).body(ByteStream::from_static(b"x")).send().await.unwrap_err();
        assert_eq!(code(&e), "InvalidArgument", "{key:?}");
        assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(400), "{key:?}");
        assert!(error_message(&e).contains("control character"), "{key:?}: {}", error_message(&e));
        let e = c.create_multipart_upload().bucket("bkt").key(key).send().await.unwrap_err();
        assert_eq!(code(&e), "InvalidArgument", "{key:?}");
    }
    c.put_object().bucket("bkt").key("del\u{7f}key").body(ByteStream::from_static(b"x")).send().await.unwrap();
    let listed = c.list_objects_v2().bucket("bkt").send().await.expect("the listing parses");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["del\u{7f}key"]);
    assert!(c.list_multipart_uploads().bucket("bkt").send().await.unwrap().uploads().is_empty());
}
