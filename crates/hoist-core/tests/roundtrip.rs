//! Uploads through the engine into the real embedded store over HTTP, read back byte for byte.

#![allow(clippy::cast_possible_truncation)] // test data patterns keep the low byte on purpose

use std::path::Path;

use hoist_core::config::MIB;
use hoist_core::{
    CancellationToken, Category, ClientOptions, Events, OnFailure, ProgressEvent, S3Client, Source, UploadConfig,
    UploadRequest, Uploader,
};
use hoist_testkit::TestStore;

const BUCKET: &str = "roundtrip";

async fn client(store: &TestStore) -> S3Client {
    let c = store.credentials();
    S3Client::connect(&ClientOptions {
        endpoint_url: Some(store.endpoint_url()),
        credentials: Some((c.access_key, c.secret_key)),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn write_file(dir: &Path, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let p = dir.join(format!("in-{len}"));
    std::fs::write(&p, &data).unwrap();
    (p, data)
}

fn small_config() -> UploadConfig {
    UploadConfig::default().part_size(5 * MIB).single_put_threshold(5 * MIB).concurrency(4)
}

async fn upload(
    store: &TestStore,
    path: &Path,
    key: &str,
    config: UploadConfig,
) -> (hoist_core::Result<hoist_core::UploadOutcome>, Vec<ProgressEvent>) {
    let up = Uploader::new(client(store).await, config);
    let (events, mut rx) = Events::channel();
    let req = UploadRequest {
        source: Source::File(path.to_path_buf()),
        bucket: BUCKET.into(),
        key: key.into(),
        content_type: Some("application/octet-stream".into()),
        metadata: vec![("origin".into(), "test".into())],
    };
    let r = up.upload(&req, &events, &CancellationToken::new(), OnFailure::Abort).await;
    drop(events);
    let mut seen = Vec::new();
    while let Some(e) = rx.recv().await {
        seen.push(e);
    }
    (r, seen)
}

async fn read_back(store: &TestStore, key: &str) -> Vec<u8> {
    let out = store.client().get_object().bucket(BUCKET).key(key).send().await.unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn sizes_round_trip_byte_identical() {
    let store = TestStore::start().await;
    store.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let t = 5 * 1024 * 1024;
    for len in [0, 1, t - 1, t, t + 1, 2 * t + 12_345] {
        let (path, data) = write_file(dir.path(), len);
        let key = format!("obj-{len}");
        let (r, events) = upload(&store, &path, &key, small_config()).await;
        let out = r.unwrap_or_else(|e| panic!("{len}: {e}"));
        assert_eq!(out.size, len as u64);
        assert_eq!(read_back(&store, &key).await, data, "{len}");
        let parts = events.iter().filter(|e| matches!(e, ProgressEvent::PartDone { .. })).count();
        assert_eq!(parts as u64, out.parts);
        assert!(matches!(events.last(), Some(ProgressEvent::Completed { .. })));
        if len >= t {
            assert!(out.checksum.as_deref().is_some_and(|c| c.starts_with("crc32c:")), "{out:?}");
        }
    }
    let ups = store.client().list_multipart_uploads().bucket(BUCKET).send().await.unwrap();
    assert!(ups.uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_checksum_algorithm_verifies() {
    let store = TestStore::start().await;
    store.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = write_file(dir.path(), 11 * 1024 * 1024);
    for alg in hoist_core::checksum::ChecksumAlgorithm::ALL {
        let key = format!("alg-{alg}");
        let (r, _) = upload(&store, &path, &key, small_config().checksum(Some(alg))).await;
        r.unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(read_back(&store, &key).await, data);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn trailer_and_header_checksums_agree_with_the_data() {
    use hoist_core::ChecksumTransport;
    use hoist_core::checksum::{Checksum, ChecksumAlgorithm, composite};
    let store = TestStore::start().await;
    store.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = write_file(dir.path(), 11 * 1024 * 1024 + 7);
    for alg in [ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Sha256] {
        // A CRC makes a FULL_OBJECT upload (the CRC of the data, combined from the parts'); other
        // algorithms a COMPOSITE one (the checksum of the parts' checksums).
        let parts: Vec<Checksum> = data.chunks(5 * 1024 * 1024).map(|p| Checksum::of(alg, p)).collect();
        let whole =
            if alg.supports_full_object() { Checksum::of(alg, &data).to_base64() } else { composite(&parts).unwrap() };
        let want = format!("{alg}:{whole}");
        for transport in [ChecksumTransport::Trailer, ChecksumTransport::Header] {
            let key = format!("{alg}-{transport:?}");
            let config = small_config().checksum(Some(alg)).checksum_transport(transport);
            let (r, _) = upload(&store, &path, &key, config).await;
            let out = r.unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(out.checksum.as_deref(), Some(want.as_str()), "{key}");
            assert_eq!(read_back(&store, &key).await, data, "{key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_fail_clearly_and_create_nothing() {
    let store = TestStore::start().await;
    store.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_file(dir.path(), 6 * 1024 * 1024);

    // Missing file, directory.
    let (r, _) = upload(&store, &dir.path().join("nope"), "k", small_config()).await;
    assert_eq!(r.unwrap_err().category(), Category::Usage);
    let (r, _) = upload(&store, dir.path(), "k", small_config()).await;
    assert_eq!(r.unwrap_err().category(), Category::Usage);
    // Part size out of range.
    let (r, _) = upload(&store, &path, "k", small_config().part_size(MIB)).await;
    let e = r.unwrap_err();
    assert!(e.to_string().contains("between"), "{e}");

    // Bucket that does not exist.
    let up = Uploader::new(client(&store).await, small_config());
    let req = UploadRequest {
        source: Source::File(path.clone()),
        bucket: "missing-bucket".into(),
        key: "k".into(),
        content_type: None,
        metadata: vec![],
    };
    let e = up.upload(&req, &Events::none(), &CancellationToken::new(), OnFailure::Abort).await.unwrap_err();
    assert_eq!(e.category(), Category::NotFound, "{e}");

    // Wrong credentials.
    let bad = S3Client::connect(&ClientOptions {
        endpoint_url: Some(store.endpoint_url()),
        credentials: Some(("wrong".into(), "wrong-secret".into())),
        ..Default::default()
    })
    .await
    .unwrap();
    let req = UploadRequest { bucket: BUCKET.into(), ..req };
    let e = Uploader::new(bad, small_config())
        .upload(&req, &Events::none(), &CancellationToken::new(), OnFailure::Abort)
        .await
        .unwrap_err();
    assert_eq!(e.category(), Category::Auth, "{e}");

    // Unreachable endpoint (a port nothing listens on), with few retries.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gone = S3Client::connect(&ClientOptions {
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        credentials: Some(("a".into(), "b".into())),
        ..Default::default()
    })
    .await
    .unwrap();
    let quick = small_config().retry(hoist_core::retry::RetryConfig {
        base: std::time::Duration::from_millis(1),
        cap: std::time::Duration::from_millis(5),
        max_attempts: 2,
    });
    let e = Uploader::new(gone, quick)
        .upload(&req, &Events::none(), &CancellationToken::new(), OnFailure::Abort)
        .await
        .unwrap_err();
    assert_eq!(e.category(), Category::Network, "{e}");

    let objects = store.client().list_objects_v2().bucket(BUCKET).send().await.unwrap();
    assert!(objects.contents().is_empty());
    let ups = store.client().list_multipart_uploads().bucket(BUCKET).send().await.unwrap();
    assert!(ups.uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_are_survived_or_fail_cleanly() {
    use hoist_testkit::fault_proxy::{Fault, FaultConfig, FaultProxy};
    let store = TestStore::start().await;
    store.create_bucket(BUCKET).await;
    let upstream: std::net::SocketAddr = store.endpoint_url().trim_start_matches("http://").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = write_file(dir.path(), 31 * 1024 * 1024 + 77);
    let creds = store.credentials();
    let retry = hoist_core::retry::RetryConfig {
        base: std::time::Duration::from_millis(5),
        cap: std::time::Duration::from_millis(50),
        max_attempts: 12,
    };
    let config = small_config().retry(retry).stall_timeout(std::time::Duration::from_secs(2));
    let all = vec![Fault::Reset, Fault::SlowDown, Fault::InternalError, Fault::Stall, Fault::Truncate];

    // 1. A third of all requests fail: the upload still comes out byte-identical.
    let proxy =
        FaultProxy::start(upstream, FaultConfig { rate: 0.5, seed: 7, faults: all.clone(), only_part_uploads: false })
            .await;
    let client = S3Client::connect(&ClientOptions {
        endpoint_url: Some(proxy.endpoint_url()),
        credentials: Some((creds.access_key.clone(), creds.secret_key.clone())),
        ..Default::default()
    })
    .await
    .unwrap();
    let up = Uploader::new(client, config.clone());
    let req = UploadRequest {
        source: Source::File(path.clone()),
        bucket: BUCKET.into(),
        key: "faulty".into(),
        content_type: None,
        metadata: vec![],
    };
    let (events, mut rx) = Events::channel();
    up.upload(&req, &events, &CancellationToken::new(), OnFailure::Abort).await.unwrap();
    drop(events);
    let mut retries = 0;
    while let Some(e) = rx.recv().await {
        retries += usize::from(matches!(e, ProgressEvent::Retry { .. }));
    }
    assert_eq!(read_back(&store, "faulty").await, data);
    let injected = proxy.injected_total();
    println!("faults injected and survived: {injected} ({:?}); retries seen: {retries}", proxy.injected());
    assert!(injected >= 1 && retries >= 1, "{injected} {retries}");

    // 2. Every part upload fails: the upload fails cleanly and is aborted.
    let proxy = FaultProxy::start(
        upstream,
        FaultConfig { rate: 1.0, seed: 1, faults: vec![Fault::SlowDown, Fault::Reset], only_part_uploads: true },
    )
    .await;
    let client = S3Client::connect(&ClientOptions {
        endpoint_url: Some(proxy.endpoint_url()),
        credentials: Some((creds.access_key, creds.secret_key)),
        ..Default::default()
    })
    .await
    .unwrap();
    let quick = config.retry(hoist_core::retry::RetryConfig { max_attempts: 3, ..retry });
    let req = UploadRequest { key: "doomed".into(), ..req };
    let e = Uploader::new(client, quick)
        .upload(&req, &Events::none(), &CancellationToken::new(), OnFailure::Abort)
        .await
        .unwrap_err();
    assert_eq!(e.category(), Category::Network, "{e}");
    let ups = store.client().list_multipart_uploads().bucket(BUCKET).send().await.unwrap();
    assert!(ups.uploads().is_empty(), "left behind: {:?}", ups.uploads());
    assert!(store.client().head_object().bucket(BUCKET).key("doomed").send().await.is_err());
}
