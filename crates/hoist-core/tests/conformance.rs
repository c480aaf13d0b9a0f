//! Engine conformance: the engine's uploads, written once and run on the embedded store, or on
//! any S3 endpoint named by `HOIST_CONFORMANCE_*` (see `hoist_testkit::conformance`), read
//! back byte for byte and checked for leftover uploads.

#![allow(clippy::cast_possible_truncation)] // test data patterns keep the low byte on purpose

use hoist_core::config::{ChecksumMode, MIB};
use hoist_core::{
    CancellationToken, ClientOptions, Events, OnFailure, S3Client, Source, UploadConfig, UploadRequest, Uploader,
};
use hoist_testkit::conformance::Endpoint;
use hoist_testkit::pattern;

async fn client(ep: &Endpoint) -> S3Client {
    S3Client::connect(&ClientOptions {
        endpoint_url: Some(ep.url.clone()),
        region: Some(ep.region.clone()),
        credentials: Some((ep.access_key.clone(), ep.secret_key.clone())),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Uploads `data` as `key` with `config`, reads it back, and checks that no upload is left open.
async fn round_trip(ep: &Endpoint, key: &str, data: &[u8], config: UploadConfig) -> hoist_core::UploadOutcome {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in");
    std::fs::write(&path, data).unwrap();
    let (events, _rx) = Events::channel();
    let req = UploadRequest {
        source: Source::File(path),
        bucket: ep.bucket.clone(),
        key: key.into(),
        content_type: Some("application/octet-stream".into()),
        metadata: vec![],
    };
    let out = Uploader::new(client(ep).await, config)
        .upload(&req, &events, &CancellationToken::new(), OnFailure::Abort)
        .await
        .unwrap();
    let got = ep
        .client()
        .get_object()
        .bucket(&ep.bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(got == data, "{key}: the object read back differs");
    let open = ep.client().list_multipart_uploads().bucket(&ep.bucket).prefix(key).send().await.unwrap();
    assert!(open.uploads().is_empty(), "{key}: uploads left open");
    out
}

fn config() -> UploadConfig {
    UploadConfig::default().part_size(5 * MIB).single_put_threshold(5 * MIB).concurrency(4)
}

#[tokio::test(flavor = "multi_thread")]
async fn engine_multipart_upload_with_checksums_round_trips() {
    let ep = Endpoint::from_env().await;
    let data = pattern(11 * MIB as usize + 123, 1);
    let out = round_trip(&ep, &ep.key("engine-multi.bin"), &data, config()).await;
    assert_eq!((out.size, out.parts), (data.len() as u64, 3));
    assert!(out.checksum.as_deref().is_some_and(|c| c.starts_with("crc32c:")), "{out:?}");
    ep.pass("engine_multipart_upload_with_checksums_round_trips");
}

#[tokio::test(flavor = "multi_thread")]
async fn engine_upload_without_checksums_round_trips() {
    let ep = Endpoint::from_env().await;
    let data = pattern(6 * MIB as usize, 2);
    let out =
        round_trip(&ep, &ep.key("engine-plain.bin"), &data, config().checksum_mode(ChecksumMode::WhenRequired)).await;
    assert_eq!(out.parts, 2);
    ep.pass("engine_upload_without_checksums_round_trips");
}

#[tokio::test(flavor = "multi_thread")]
async fn engine_single_put_and_empty_object_round_trip() {
    let ep = Endpoint::from_env().await;
    let out = round_trip(&ep, &ep.key("engine-small.bin"), &pattern(4096, 3), config()).await;
    assert_eq!(out.parts, 0);
    round_trip(&ep, &ep.key("engine-empty.bin"), &[], config()).await;
    ep.pass("engine_single_put_and_empty_object_round_trip");
}
