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
async fn complete_with_body(
    c: &aws_sdk_s3::Client,
    id: &str,
    body: Vec<u8>,
) -> Result<(), (String, String, Duration)> {
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
    for body in [&b"<Delete><Object><Key>kept</Key></Object>"[..], b"<Delete><Object><Key>kept</Key></Wrong></Delete>"] {
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
    body.extend_from_slice(format!("<Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>").as_bytes());
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
        let request = format!("GET {path} HTTP/1.1\r\nhost: {}\r\nx-padding: {}\r\n\r\n", addr.trim_start_matches("http://"), "a".repeat(size));
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
        format!("GET {path} HTTP/1.1\r\nhost: {}\r\nx-padding: {}\r\nconnection: close\r\n\r\n", addr.trim_start_matches("http://"), "a".repeat(4000)).as_bytes(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.body, b"v");
    c.list_buckets().send().await.expect("the store still answers");
}
