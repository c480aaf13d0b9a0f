//! Request bodies and headers the store must refuse without harm: malformed and hostile XML,
//! bodies over the size cap, lists longer than S3 allows, a header of 100 KiB. Each gets a
//! clear S3 error quickly, nothing is stored, and the store keeps answering.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use hoist_testkit::raw_http::{self, RawConn, path_and_query};
use hoist_testkit::sdk::{ReplaceBody, presigned_get};
use hoist_testkit::{TestStore, error_code, error_message};

/// How long a refusal may take: these are all decided on a few MiB at most.
const QUICK: Duration = Duration::from_secs(2);

async fn start_with_upload() -> (TestStore, aws_sdk_s3::Client, String, CompletedPart) {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    let id = c.create_multipart_upload().bucket("bkt").key("k").send().await.unwrap().upload_id.unwrap();
    let part = c
        .upload_part()
        .bucket("bkt")
        .key("k")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from_static(b"part one"))
        .send()
        .await
        .unwrap();
    let done = CompletedPart::builder().part_number(1).e_tag(part.e_tag.unwrap()).build();
    (store, c, id, done)
}

/// Sends CompleteMultipartUpload with `body` in place of the XML the SDK would write.
async fn complete_with_body(c: &aws_sdk_s3::Client, id: &str, body: Vec<u8>) -> Result<(), (String, String, Duration)> {
    let started = Instant::now();
    c.complete_multipart_upload()
        .bucket("bkt")
        .key("k")
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().build())
        .customize()
        .interceptor(ReplaceBody(body))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| (error_code(&e), error_message(&e), started.elapsed()))
}

/// The upload is still open with its one part, and no object was made.
async fn assert_upload_untouched(c: &aws_sdk_s3::Client, id: &str) {
    let parts = c.list_parts().bucket("bkt").key("k").upload_id(id).send().await.unwrap();
    assert_eq!(parts.parts().len(), 1, "the upload and its part are still there");
    let e = c.head_object().bucket("bkt").key("k").send().await.unwrap_err();
    assert!(e.into_service_error().is_not_found(), "no object was made");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_xml_bodies_are_malformed_xml_with_a_message() {
    let (_store, c, id, _) = start_with_upload().await;
    for body in [
        &b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"[..],
        b"not xml at all",
        b"<CompleteMultipartUpload><Part><PartNumber>one</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
        b"<Other/>",
    ] {
        let (code, message, _) = complete_with_body(&c, &id, body.to_vec()).await.unwrap_err();
        assert_eq!(code, "MalformedXML", "{}", String::from_utf8_lossy(body));
        assert!(!message.is_empty(), "the refusal says what is wrong");
    }
    assert_upload_untouched(&c, &id).await;

    c.put_object().bucket("bkt").key("kept").body(ByteStream::from_static(b"v")).send().await.unwrap();
    let delete = Delete::builder().objects(ObjectIdentifier::builder().key("kept").build().unwrap()).build().unwrap();
    for body in [&b"<Delete><Object><Key>kept</Key></Object>"[..], b"<Delete><Object><Key>kept</Key></Wrong></Delete>"]
    {
        let e = c
            .delete_objects()
            .bucket("bkt")
            .delete(delete.clone())
            .customize()
            .interceptor(ReplaceBody(body.to_vec()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(&e), "MalformedXML", "{}", String::from_utf8_lossy(body));
        assert!(!error_message(&e).is_empty());
    }
    c.head_object().bucket("bkt").key("kept").send().await.expect("nothing was deleted");
}

/// The "billion laughs": ten levels of entities, each ten of the one below, 10^9 `lol`s if a
/// parser expanded them.
#[tokio::test(flavor = "multi_thread")]
async fn an_entity_expansion_body_is_refused_quickly() {
    let (store, c, id, _) = start_with_upload().await;
    let mut xml = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n");
    for level in 1..=9 {
        let refs = format!("&lol{};", if level == 1 { String::new() } else { (level - 1).to_string() }).repeat(10);
        writeln!(xml, " <!ENTITY lol{level} \"{refs}\">").unwrap();
    }
    xml.push_str("]>\n<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&lol9;</ETag></Part></CompleteMultipartUpload>");
    let (code, message, took) = complete_with_body(&c, &id, xml.into_bytes()).await.unwrap_err();
    assert_eq!(code, "MalformedXML");
    assert!(!message.is_empty());
    assert!(took < QUICK, "took {took:?}");
    assert_upload_untouched(&c, &id).await;
    // The same trick inside a DeleteObjects body.
    let body = "<!DOCTYPE d [<!ENTITY k \"kept\">]><Delete><Object><Key>&k;</Key></Object></Delete>";
    let delete = Delete::builder().objects(ObjectIdentifier::builder().key("x").build().unwrap()).build().unwrap();
    let e = c
        .delete_objects()
        .bucket("bkt")
        .delete(delete)
        .customize()
        .interceptor(ReplaceBody(body.as_bytes().to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&e), "MalformedXML");
    drop(store);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_complete_body_over_the_cap_is_refused_quickly() {
    let (_store, c, id, done) = start_with_upload().await;
    // 21 MiB of whitespace around a valid list: over the store's cap on XML bodies.
    let etag = done.e_tag().unwrap();
    let mut body = b"<CompleteMultipartUpload>".to_vec();
    body.resize(body.len() + 21 * 1024 * 1024, b' ');
    body.extend_from_slice(
        format!("<Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>").as_bytes(),
    );
    let (code, message, took) = complete_with_body(&c, &id, body).await.unwrap_err();
    assert_eq!(code, "MaxMessageLengthExceeded");
    assert!(message.contains("MiB"), "the refusal names the limit: {message:?}");
    assert!(took < QUICK, "took {took:?}");
    assert_upload_untouched(&c, &id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_complete_listing_100000_parts_is_refused_quickly() {
    let (_store, c, id, done) = start_with_upload().await;
    let etag = done.e_tag().unwrap().trim_matches('"').to_owned();
    let mut body = String::from("<CompleteMultipartUpload>");
    for n in 1..=100_000 {
        write!(body, "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>").unwrap();
    }
    body.push_str("</CompleteMultipartUpload>");
    let (code, message, took) = complete_with_body(&c, &id, body.into_bytes()).await.unwrap_err();
    assert!(code == "MalformedXML" || code == "MaxMessageLengthExceeded", "{code}: {message}");
    assert!(message.contains("10000") || message.contains("MiB"), "the refusal names the limit: {message:?}");
    assert!(took < QUICK, "took {took:?}");
    assert_upload_untouched(&c, &id).await;
}

/// A header section of 100 KiB (under hyper's own limit, so it reaches the store) and one of
/// 1 MiB (over it): both refused with a 4xx, and the store keeps answering.
#[tokio::test(flavor = "multi_thread")]
async fn huge_headers_are_refused_and_the_store_keeps_answering() {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    let c = store.client();
    c.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"v")).send().await.unwrap();
    let url = presigned_get(&c, "bkt", "k").await;
    let path = path_and_query(&url);
    let addr = store.endpoint_url();
    for size in [100 * 1024, 1024 * 1024] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: {}\r\nx-padding: {}\r\n\r\n",
            addr.trim_start_matches("http://"),
            "a".repeat(size)
        );
        let mut conn = RawConn::connect(&addr).await.unwrap();
        conn.send(request.as_bytes()).await.unwrap();
        let r = conn.read_response().await.unwrap().expect("an answer, not a dropped connection");
        assert!([400, 431].contains(&r.status), "{size} bytes: {} {}", r.status, r.text());
        if r.status == 400 {
            assert!(r.text().contains("<Code>RequestHeaderSectionTooLarge</Code>"), "{}", r.text());
            assert!(r.text().contains("<Message>"), "{}", r.text());
        }
    }
    // A header section just under the limit still works.
    let ok = raw_http::request(
        &addr,
        format!(
            "GET {path} HTTP/1.1\r\nhost: {}\r\nx-padding: {}\r\nconnection: close\r\n\r\n",
            addr.trim_start_matches("http://"),
            "a".repeat(4000)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.body, b"v");
    c.list_buckets().send().await.expect("the store still answers");
}

/// S3 takes at most 5 GiB in one PutObject or UploadPart; a declared length over it is refused
/// with 413 before a byte of the body is read, and nothing is staged.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_declared_over_5_gib_is_413_before_it_is_read() {
    let (store, c, id, _) = start_with_upload().await;
    let addr = store.endpoint_url();
    let host = addr.trim_start_matches("http://").to_owned();
    let part_url = c
        .upload_part()
        .bucket("bkt")
        .key("k")
        .upload_id(&id)
        .part_number(2)
        .presigned(aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_mins(1)).unwrap())
        .await
        .unwrap()
        .uri()
        .to_owned();
    let put_url = hoist_testkit::sdk::presigned_put(&c, "bkt", "huge").await;
    let over = 5 * 1024 * 1024 * 1024 + 1_u64;
    for url in [&part_url, &put_url] {
        let started = Instant::now();
        let mut conn = RawConn::connect(&addr).await.unwrap();
        let head = format!("PUT {} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {over}\r\n\r\n", path_and_query(url));
        conn.send(head.as_bytes()).await.unwrap();
        let _ = conn.send(&vec![7u8; 1024 * 1024]).await; // the store may close before reading it
        let r = conn.read_response().await.unwrap().expect("an answer before the body");
        assert_eq!(r.status, 413, "{}", r.text());
        assert!(r.text().contains("<Code>EntityTooLarge</Code>"), "{}", r.text());
        assert!(r.text().contains("5 GiB"), "the refusal names the limit: {}", r.text());
        assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    }
    assert_upload_untouched(&c, &id).await;
    assert!(c.head_object().bucket("bkt").key("huge").send().await.is_err(), "nothing stored");
    assert_eq!(std::fs::read_dir(store.data_dir().join("tmp")).unwrap().count(), 0, "nothing staged");
}

/// `<PartNumber>` must be a decimal integer: s3s reads `1abc`, `1.0`, `1e3` and `+1` as part 1,
/// S3 refuses them as MalformedXML.
#[tokio::test(flavor = "multi_thread")]
async fn complete_part_numbers_that_are_not_plain_integers_are_malformed_xml() {
    let (_store, c, id, done) = start_with_upload().await;
    let etag = done.e_tag().unwrap();
    for n in ["1abc", "1.0", "1e3", "+1", "-1x", "1 2"] {
        let body = format!(
            "<CompleteMultipartUpload><Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
        );
        let (code, message, _) = complete_with_body(&c, &id, body.into_bytes()).await.unwrap_err();
        assert_eq!(code, "MalformedXML", "{n:?}: {message}");
        assert!(message.contains("PartNumber"), "{n:?}: the refusal names the field: {message}");
    }
    assert_upload_untouched(&c, &id).await;
    let body = format!(
        "<CompleteMultipartUpload>\n <Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part>\n</CompleteMultipartUpload>"
    );
    complete_with_body(&c, &id, body.into_bytes()).await.expect("a plain number is fine");
}

/// XML bodies s3s reads whole: one that does not match its signed `x-amz-content-sha256`, or
/// ends before its `Content-Length`, is the client's fault (400), not an internal error.
#[tokio::test(flavor = "multi_thread")]
async fn xml_bodies_that_break_off_or_mismatch_their_sha256_are_400() {
    use aws_sdk_s3::types::{BucketLocationConstraint, CorsConfiguration, CorsRule, CreateBucketConfiguration};
    use hoist_testkit::sdk::CorruptBodyAfterSigning;
    let (store, c, id, done) = start_with_upload().await;
    c.put_object().bucket("bkt").key("kept").body(ByteStream::from_static(b"v")).send().await.unwrap();
    let check = |what: &str, e: &dyn aws_sdk_s3::error::ProvideErrorMetadata, status: Option<u16>| {
        assert_eq!(status, Some(400), "{what}: {:?} {:?}", e.code(), e.message());
        assert_eq!(e.code(), Some("XAmzContentSHA256Mismatch"), "{what}");
        assert!(e.message().unwrap_or("").contains("x-amz-content-sha256"), "{what}: {:?}", e.message());
    };
    let e = c
        .complete_multipart_upload()
        .bucket("bkt")
        .key("k")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().parts(done.clone()).build())
        .customize()
        .interceptor(CorruptBodyAfterSigning)
        .send()
        .await
        .unwrap_err();
    check("Complete", &e, e.raw_response().map(|r| r.status().as_u16()));
    let delete = Delete::builder().objects(ObjectIdentifier::builder().key("kept").build().unwrap()).build().unwrap();
    let e = c
        .delete_objects()
        .bucket("bkt")
        .delete(delete)
        .customize()
        .interceptor(CorruptBodyAfterSigning)
        .send()
        .await
        .unwrap_err();
    check("DeleteObjects", &e, e.raw_response().map(|r| r.status().as_u16()));
    let rules = CorsConfiguration::builder()
        .cors_rules(CorsRule::builder().allowed_origins("*").allowed_methods("GET").build().unwrap())
        .build()
        .unwrap();
    let e = c
        .put_bucket_cors()
        .bucket("bkt")
        .cors_configuration(rules)
        .customize()
        .interceptor(CorruptBodyAfterSigning)
        .send()
        .await
        .unwrap_err();
    check("PutBucketCors", &e, e.raw_response().map(|r| r.status().as_u16()));
    let config = CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::EuWest1).build();
    let e = c
        .create_bucket()
        .bucket("new-bkt")
        .create_bucket_configuration(config)
        .customize()
        .interceptor(CorruptBodyAfterSigning)
        .send()
        .await
        .unwrap_err();
    check("CreateBucket", &e, e.raw_response().map(|r| r.status().as_u16()));
    assert_upload_untouched(&c, &id).await;
    c.head_object().bucket("bkt").key("kept").send().await.expect("nothing was deleted");
    assert!(c.get_bucket_cors().bucket("bkt").send().await.is_err(), "no CORS rules were stored");
    assert!(c.head_bucket().bucket("new-bkt").send().await.is_err(), "no bucket was made");

    // Bodies that end before Content-Length (the client closes its side): IncompleteBody.
    let addr = store.endpoint_url();
    let host = addr.trim_start_matches("http://").to_owned();
    let presign =
        |url: String| hoist_testkit::sdk::presign_for("POST", &url, &store.credentials(), Duration::from_mins(1));
    let complete_url = presign(format!("{addr}/bkt/k?uploadId={id}"));
    let delete_url = presign(format!("{addr}/bkt?delete"));
    for (method, url) in [("POST", complete_url), ("POST", delete_url)] {
        let mut conn = RawConn::connect(&addr).await.unwrap();
        let head =
            format!("{method} {} HTTP/1.1\r\nhost: {host}\r\ncontent-length: 1000\r\n\r\n", path_and_query(&url));
        conn.send(head.as_bytes()).await.unwrap();
        conn.send(b"<CompleteMultipartUpload><Part>").await.unwrap();
        conn.shutdown_write().await.unwrap();
        let r = conn.read_response().await.unwrap().expect("an answer");
        assert_eq!(r.status, 400, "{method}: {}", r.text());
        assert!(r.text().contains("<Code>IncompleteBody</Code>"), "{method}: {}", r.text());
    }
    assert_upload_untouched(&c, &id).await;
}

/// A client that sends half a request header, or keeps a connection idle, is cut off after the
/// header read timeout (here 1 s) instead of holding the connection as long as it likes.
#[tokio::test(flavor = "multi_thread")]
async fn half_sent_headers_and_idle_connections_are_closed_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = hoist_store::Store::builder(dir.path()).header_read_timeout(Duration::from_secs(1)).build().unwrap();
    let handle = store.start("127.0.0.1:0").await.unwrap();
    let addr = handle.endpoint_url();
    let started = Instant::now();
    let mut conn = RawConn::connect(&addr).await.unwrap();
    conn.send(b"GET /bkt/k HTTP/1.1\r\nhost: x\r\nx-slow: ").await.unwrap();
    let closed = conn.read_until_closed().await;
    assert!(closed.is_some(), "the store never closed the connection");
    assert!(started.elapsed() < Duration::from_secs(4), "closed after {:?}", started.elapsed());

    let mut conn = RawConn::connect(&addr).await.unwrap();
    conn.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let r = conn.read_response().await.unwrap().expect("an answer");
    assert_eq!(r.status, 403, "{}", r.text());
    let idle_since = Instant::now();
    assert!(conn.read_until_closed().await.is_some(), "an idle keep-alive connection stayed open");
    assert!(idle_since.elapsed() < Duration::from_secs(4), "closed after {:?}", idle_since.elapsed());
    handle.shutdown().await;
}
