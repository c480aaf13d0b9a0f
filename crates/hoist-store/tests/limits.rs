//! Request bodies and headers the store must refuse without harm: malformed and hostile XML,
//! bodies over the size cap, lists longer than S3 allows, a header of 100 KiB. Each gets a
//! clear S3 error quickly, nothing is stored, and the store keeps answering.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use hoist_testkit::sdk::ReplaceBody;
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

