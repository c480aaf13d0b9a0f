//! Checksums sent as `aws-chunked` trailers (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`, what `hoist
//! put` sends by default): the store checks the trailer against the bytes, stores and lists the
//! value, and refuses a wrong one without storing anything. The bodies are encoded here by hand,
//! so these tests pin the store's side independently of Hoist's client.

use aws_runtime::auth::PayloadSigningOverride;
use aws_sdk_s3::config::RequestChecksumCalculation;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use hoist_core::checksum::{Checksum, ChecksumAlgorithm};
use hoist_testkit::TestStore;

/// Sets the `aws-chunked` headers and the streaming-unsigned-trailer payload hash.
#[derive(Debug)]
struct Chunked {
    decoded_len: usize,
    encoded_len: usize,
    trailer: &'static str,
}

impl Intercept for Chunked {
    fn name(&self) -> &'static str {
        "TestAwsChunked"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let h = context.request_mut().headers_mut();
        h.insert("content-length", self.encoded_len.to_string());
        h.insert("content-encoding", "aws-chunked");
        h.insert("x-amz-decoded-content-length", self.decoded_len.to_string());
        h.insert("x-amz-trailer", self.trailer);
        cfg.interceptor_state().store_put(PayloadSigningOverride::StreamingUnsignedPayloadTrailer);
        Ok(())
    }
}

/// `data` as an unsigned `aws-chunked` body in chunks of `chunk` bytes, then `trailer_lines`.
fn encode(data: &[u8], chunk: usize, trailer_lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in data.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for l in trailer_lines {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| u8::try_from(i % 253).unwrap()).collect()
}

async fn start() -> (TestStore, aws_sdk_s3::Client, String) {
    let store = TestStore::start().await;
    store.create_bucket("bkt").await;
    // No checksum of the SDK's own: it would hash the encoded body.
    let conf = store
        .client()
        .config()
        .to_builder()
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    let c = aws_sdk_s3::Client::from_conf(conf);
    let id = c.create_multipart_upload().bucket("bkt").key("k").send().await.unwrap().upload_id.unwrap();
    (store, c, id)
}

async fn put_part(
    c: &aws_sdk_s3::Client,
    id: &str,
    number: i32,
    decoded_len: usize,
    wire: Vec<u8>,
    trailer: &'static str,
) -> Result<aws_sdk_s3::operation::upload_part::UploadPartOutput, String> {
    let chunked = Chunked { decoded_len, encoded_len: wire.len(), trailer };
    c.upload_part()
        .bucket("bkt")
        .key("k")
        .upload_id(id)
        .part_number(number)
        .body(ByteStream::from(wire))
        .customize()
        .interceptor(chunked)
        .send()
        .await
        .map_err(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(&e).unwrap_or("?").to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_right_trailer_is_checked_stored_and_listed() {
    let (_store, c, id) = start().await;
    let body = data(300_000);
    for (number, alg) in [(1, ChecksumAlgorithm::Crc32c), (2, ChecksumAlgorithm::Sha256)] {
        let sum = Checksum::of(alg, &body);
        let wire = encode(&body, 65_536, &[format!("{}:{}", alg.header_name(), sum.to_base64())]);
        put_part(&c, &id, number, body.len(), wire, alg.header_name()).await.unwrap();
    }
    let parts = c.list_parts().bucket("bkt").key("k").upload_id(&id).send().await.unwrap();
    assert_eq!(parts.parts().len(), 2);
    assert_eq!(parts.parts()[0].size(), Some(300_000));
    let crc = Checksum::of(ChecksumAlgorithm::Crc32c, &body).to_base64();
    assert_eq!(parts.parts()[0].checksum_crc32_c(), Some(crc.as_str()));
    let sha = Checksum::of(ChecksumAlgorithm::Sha256, &body).to_base64();
    assert_eq!(parts.parts()[1].checksum_sha256(), Some(sha.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_trailer_is_refused_and_nothing_is_stored() {
    let (_store, c, id) = start().await;
    let body = data(300_000);
    let alg = ChecksumAlgorithm::Crc32c;
    let wrong = Checksum::of(alg, b"other bytes");
    let wire = encode(&body, 65_536, &[format!("{}:{}", alg.header_name(), wrong.to_base64())]);
    assert_eq!(put_part(&c, &id, 1, body.len(), wire, alg.header_name()).await.unwrap_err(), "BadDigest");

    // The right trailer, but a byte of the data changed on the way.
    let right = Checksum::of(alg, &body);
    let mut wire = encode(&body, 65_536, &[format!("{}:{}", alg.header_name(), right.to_base64())]);
    wire[100_000] ^= 1;
    assert_eq!(put_part(&c, &id, 1, body.len(), wire, alg.header_name()).await.unwrap_err(), "BadDigest");

    let parts = c.list_parts().bucket("bkt").key("k").upload_id(&id).send().await.unwrap();
    assert!(parts.parts().is_empty());
}
