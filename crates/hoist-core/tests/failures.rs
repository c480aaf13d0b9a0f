//! The engine under failures: a [`FailingClient`] over the real client on the embedded store fails
//! chosen calls (before they reach the store, or after: a lost answer), and each test checks what
//! the upload did about it: the result, the events, the journal, and that nothing leaked (no
//! pending upload in the store, Complete never called after a failed part…). The single-PutObject
//! checks go through the fault proxy, since they are about what arrives over HTTP.

#![allow(clippy::cast_possible_truncation)] // test data patterns keep the low byte on purpose

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hoist_core::checksum::{Checksum, ChecksumAlgorithm};
use hoist_core::config::MIB;
use hoist_core::retry::RetryConfig;
use hoist_core::{
    CancellationToken, Category, Error, Events, JournalStore, OnFailure, ProgressEvent, Source, UploadConfig,
    UploadOutcome, UploadRequest, Uploader,
};
use hoist_testkit::TestStore;
use hoist_testkit::failing::{FailingClient, Op, When, reset, service};
use hoist_testkit::fault_proxy::{self, Fault, FaultConfig, FaultProxy, Rule};

const BUCKET: &str = "failures";

/// Two parts and a bit: 5 MiB parts, retries quick enough for a test (1 ms base, 20 ms cap).
fn config() -> UploadConfig {
    let retry = RetryConfig { base: Duration::from_millis(1), cap: Duration::from_millis(20), max_attempts: 10 };
    UploadConfig::default().part_size(5 * MIB).single_put_threshold(5 * MIB).concurrency(2).retry(retry)
}

struct Fixture {
    store: TestStore,
    dir: tempfile::TempDir,
    path: PathBuf,
    data: Vec<u8>,
}

async fn fixture(len: usize) -> Fixture {
    let store = TestStore::start().await;
    store.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let path = dir.path().join("in.bin");
    std::fs::write(&path, &data).unwrap();
    Fixture { store, dir, path, data }
}

impl Fixture {
    async fn failing(&self) -> FailingClient {
        FailingClient::new(self.store.engine_client(None).await)
    }

    fn journal(&self) -> JournalStore {
        JournalStore::new(self.dir.path().join("state"))
    }

    /// An uploader on `client`, journaled when `journal`.
    fn uploader(&self, client: &Arc<FailingClient>, journal: bool) -> Uploader {
        let up = Uploader::shared(client.clone(), config());
        if journal { up.with_journal(self.journal(), &self.store.endpoint_url(), false) } else { up }
    }

    /// The store's address, for a proxy in front of it.
    fn upstream(&self) -> std::net::SocketAddr {
        self.store.endpoint_url().trim_start_matches("http://").parse().unwrap()
    }

    async fn pending_uploads(&self) -> usize {
        let listed = self.store.client().list_multipart_uploads().bucket(BUCKET).send().await.unwrap();
        listed.uploads().len()
    }

    async fn read_back(&self, key: &str) -> Vec<u8> {
        let out = self.store.client().get_object().bucket(BUCKET).key(key).send().await.unwrap();
        out.body.collect().await.unwrap().into_bytes().to_vec()
    }
}

async fn upload(
    up: &Uploader,
    path: &Path,
    key: &str,
    on_failure: OnFailure,
) -> (hoist_core::Result<UploadOutcome>, Vec<ProgressEvent>) {
    let (events, mut rx) = Events::channel();
    let req = UploadRequest {
        source: Source::File(path.to_path_buf()),
        bucket: BUCKET.into(),
        key: key.into(),
        content_type: None,
        metadata: vec![],
    };
    let r = up.upload(&req, &events, &CancellationToken::new(), on_failure).await;
    drop(events);
    let mut seen = Vec::new();
    while let Some(e) = rx.recv().await {
        seen.push(e);
    }
    (r, seen)
}

/// The failure event's `(aborted, upload_id, completed, abort_error)`.
fn failed(events: &[ProgressEvent]) -> (bool, Option<String>, bool, Option<String>) {
    events
        .iter()
        .find_map(|e| match e {
            ProgressEvent::Failed { aborted, upload_id, completed, abort_error, .. } => {
                Some((*aborted, upload_id.clone(), *completed, abort_error.clone()))
            }
            _ => None,
        })
        .expect("a Failed event")
}

const LEN: usize = 12 * 1024 * 1024 + 345;

/// At most `concurrency` parts are in flight, and that many are (the stream feeds the same loop).
#[tokio::test(flavor = "multi_thread")]
async fn parts_in_flight_are_bounded_by_the_concurrency() {
    let f = fixture(4 * 5 * 1024 * 1024 + 1).await;
    for concurrency in [1, 3] {
        let client = Arc::new(f.failing().await);
        let up = Uploader::shared(client.clone(), config().concurrency(concurrency));
        let (r, _) = upload(&up, &f.path, "bounded", OnFailure::Abort).await;
        assert_eq!(r.unwrap().parts, 5);
        assert_eq!(client.max_in_flight(Op::UploadPart), u32::try_from(concurrency).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fatal_part_failure_aborts_and_never_completes() {
    let f = fixture(LEN).await;
    let client =
        Arc::new(f.failing().await.fail(Op::UploadPart, 2, u32::MAX, When::Before, service(403, "AccessDenied")));
    let (r, events) = upload(&f.uploader(&client, false), &f.path, "fatal", OnFailure::Abort).await;
    assert_eq!(r.unwrap_err().category(), Category::Auth);
    assert_eq!(client.calls(Op::Complete), 0);
    assert_eq!(client.calls(Op::Abort), 1);
    assert_eq!(failed(&events), (true, None, false, None));
    assert_eq!(f.pending_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicked_part_is_an_internal_error_and_the_upload_is_aborted() {
    let f = fixture(LEN).await;
    let client =
        Arc::new(f.failing().await.fail(Op::UploadPart, 1, 1, When::Before, |_| panic!("injected panic in a part")));
    let (r, _) = upload(&f.uploader(&client, false), &f.path, "panicked", OnFailure::Auto).await;
    let e = r.unwrap_err();
    assert_eq!(e.category(), Category::Internal, "{e}");
    assert!(e.to_string().contains("panicked"), "{e}");
    assert_eq!(client.calls(Op::Complete), 0);
    assert_eq!(f.pending_uploads().await, 0);
}

/// Defect 2: an abort refused (403) kept nothing: the journal went, the CLI said "parts are kept",
/// and the re-run started a new upload, leaving the old one pending forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_abort_keeps_the_journal_and_the_rerun_resumes_the_same_upload() {
    let f = fixture(LEN).await;
    let client =
        Arc::new(f.failing().await.fail(Op::UploadPart, 2, u32::MAX, When::Before, service(403, "AccessDenied")).fail(
            Op::Abort,
            1,
            u32::MAX,
            When::Before,
            service(403, "AccessDenied"),
        ));
    let (r, events) = upload(&f.uploader(&client, true), &f.path, "abort-refused", OnFailure::Auto).await;
    assert_eq!(r.unwrap_err().category(), Category::Auth);
    let (aborted, upload_id, completed, abort_error) = failed(&events);
    assert!(!aborted && !completed);
    assert!(abort_error.is_some_and(|e| e.contains("AccessDenied")));
    assert_eq!(f.journal().list().len(), 1, "the journal must stay while the upload is pending");
    assert_eq!(f.pending_uploads().await, 1);

    let again = Arc::new(f.failing().await);
    let (r, _) = upload(&f.uploader(&again, true), &f.path, "abort-refused", OnFailure::Auto).await;
    r.unwrap();
    assert_eq!(again.calls(Op::Create), 0, "the re-run must resume {upload_id:?}, not start another upload");
    assert_eq!(f.pending_uploads().await, 0);
    assert_eq!(f.read_back("abort-refused").await, f.data);
    assert!(f.journal().list().is_empty());
}

/// Defect 2: three 500s in a row outlasted the abort's three quick attempts.
#[tokio::test(flavor = "multi_thread")]
async fn an_abort_is_retried_like_any_call() {
    let f = fixture(LEN).await;
    let client =
        Arc::new(f.failing().await.fail(Op::UploadPart, 1, u32::MAX, When::Before, service(403, "AccessDenied")).fail(
            Op::Abort,
            1,
            3,
            When::Before,
            service(500, "InternalError"),
        ));
    let (r, events) = upload(&f.uploader(&client, false), &f.path, "abort-retried", OnFailure::Abort).await;
    assert_eq!(r.unwrap_err().category(), Category::Auth);
    assert_eq!(client.calls(Op::Abort), 4);
    assert_eq!(failed(&events), (true, None, false, None));
    assert_eq!(f.pending_uploads().await, 0);
}

/// Defect 3: a CreateMultipartUpload whose answer was lost created an upload nobody aborted.
/// The ListMultipartUploads of the cleanup fails once too (defect 6).
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_create_answer_leaves_no_stray_upload() {
    let f = fixture(LEN).await;
    let client = Arc::new(f.failing().await.fail(Op::Create, 1, 1, When::After, reset).fail(
        Op::ListUploads,
        1,
        1,
        When::Before,
        service(503, "SlowDown"),
    ));
    let (r, _) = upload(&f.uploader(&client, false), &f.path, "lost-create", OnFailure::Abort).await;
    r.unwrap();
    assert_eq!(client.calls(Op::Create), 2);
    assert_eq!(f.pending_uploads().await, 0, "the upload the lost answer created must be aborted");
    assert_eq!(f.read_back("lost-create").await, f.data);
}

/// Defect 4: one 503 on the HEAD after Complete failed the upload and aborted the completed one.
#[tokio::test(flavor = "multi_thread")]
async fn the_check_after_complete_is_retried() {
    let f = fixture(LEN).await;
    let client = Arc::new(f.failing().await.fail(Op::Head, 1, 1, When::Before, service(503, "SlowDown")));
    let (r, _) = upload(&f.uploader(&client, true), &f.path, "head-retried", OnFailure::Auto).await;
    r.unwrap();
    assert_eq!(client.calls(Op::Head), 2);
    assert_eq!(client.calls(Op::Abort), 0);
    assert!(f.journal().list().is_empty());
}

/// Defect 4: when the check after Complete keeps failing, nothing is aborted, the journal stays,
/// and the re-run checks the object instead of uploading it again.
#[tokio::test(flavor = "multi_thread")]
async fn a_check_that_keeps_failing_after_complete_aborts_nothing_and_the_rerun_verifies() {
    let f = fixture(LEN).await;
    let client = Arc::new(f.failing().await.fail(Op::Head, 1, u32::MAX, When::Before, service(503, "SlowDown")));
    let (r, events) = upload(&f.uploader(&client, true), &f.path, "head-down", OnFailure::Auto).await;
    assert_eq!(r.unwrap_err().category(), Category::Network);
    assert_eq!(client.calls(Op::Abort), 0);
    assert_eq!(failed(&events), (false, None, true, None));
    assert_eq!(f.journal().list().len(), 1);

    let again = Arc::new(f.failing().await);
    let (r, _) = upload(&f.uploader(&again, true), &f.path, "head-down", OnFailure::Auto).await;
    let out = r.unwrap();
    assert_eq!(out.size, LEN as u64);
    assert_eq!((again.calls(Op::Create), again.calls(Op::UploadPart), again.calls(Op::Complete)), (0, 0, 0));
    assert!(f.journal().list().is_empty());
    assert_eq!(f.read_back("head-down").await, f.data);
}

/// Defect 5: Complete's answer lost, its retry answered NoSuchUpload (as MinIO and AWS answer; the
/// embedded store repeats the first answer instead, so the rule gives that answer): exit 3 with
/// the object complete and correct.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_complete_answer_then_no_such_upload_is_a_success() {
    let f = fixture(LEN).await;
    let client = Arc::new(f.failing().await.fail(Op::Complete, 1, 1, When::After, reset).fail(
        Op::Complete,
        2,
        1,
        When::Before,
        service(404, "NoSuchUpload"),
    ));
    let (r, _) = upload(&f.uploader(&client, true), &f.path, "lost-complete", OnFailure::Auto).await;
    let out = r.unwrap();
    assert_eq!(out.parts, 3);
    assert!(out.checksum.is_some_and(|c| c.starts_with("crc32c:")));
    assert_eq!(client.calls(Op::Complete), 2);
    assert_eq!(client.calls(Op::Abort), 0);
    assert!(f.journal().list().is_empty());
    assert_eq!(f.read_back("lost-complete").await, f.data);
}

/// A Complete answered NoSuchUpload without an earlier lost answer (the upload was aborted
/// elsewhere) stays a failure: the object is not what the parts make.
#[tokio::test(flavor = "multi_thread")]
async fn no_such_upload_on_complete_without_the_object_is_not_found() {
    let f = fixture(LEN).await;
    let client = Arc::new(f.failing().await.fail(Op::Complete, 1, 1, When::Before, service(404, "NoSuchUpload")));
    let (r, _) = upload(&f.uploader(&client, false), &f.path, "gone", OnFailure::Abort).await;
    assert_eq!(r.unwrap_err().code(), Some("NoSuchUpload"));
    assert_eq!(f.pending_uploads().await, 0);
}

/// Defect 6: one 503 on the ListParts of a resume was the end of it, after 0 retries.
#[tokio::test(flavor = "multi_thread")]
async fn resume_retries_list_parts() {
    let f = fixture(LEN).await;
    let first = Arc::new(f.failing().await.fail(Op::UploadPart, 3, u32::MAX, When::Before, reset));
    let (r, events) = upload(&f.uploader(&first, true), &f.path, "resumed", OnFailure::Keep).await;
    assert!(matches!(r.unwrap_err(), Error::RetriesExhausted { .. }));
    assert!(failed(&events).1.is_some(), "the upload is kept");

    let again = Arc::new(f.failing().await.fail(Op::ListParts, 1, 1, When::Before, service(503, "SlowDown")));
    let (r, _) = upload(&f.uploader(&again, true), &f.path, "resumed", OnFailure::Auto).await;
    let out = r.unwrap();
    let want = Checksum::of(ChecksumAlgorithm::Crc32c, &f.data).to_base64();
    assert_eq!(
        out.checksum,
        Some(format!("crc32c:{want}")),
        "the resumed upload completes FULL_OBJECT, as it was created"
    );
    assert_eq!(again.calls(Op::ListParts), 2);
    assert_eq!(again.calls(Op::UploadPart), 1, "only the part the first run did not send");
    assert_eq!(f.read_back("resumed").await, f.data);
}

/// Defect 7: `RequestTimeTooSkewed` on one part aborted the upload with "check your credentials".
#[tokio::test(flavor = "multi_thread")]
async fn a_skewed_clock_refusal_is_retried() {
    let f = fixture(LEN).await;
    let client =
        Arc::new(f.failing().await.fail(Op::UploadPart, 1, 1, When::Before, service(403, "RequestTimeTooSkewed")));
    let (r, _) = upload(&f.uploader(&client, false), &f.path, "skewed", OnFailure::Auto).await;
    r.unwrap();
    assert_eq!(client.calls(Op::Abort), 0);
    assert_eq!(f.read_back("skewed").await, f.data);
}

/// Defect 7 over HTTP: the store's refusal, as a proxy answers it, is retried.
#[tokio::test(flavor = "multi_thread")]
async fn a_skewed_clock_refusal_over_http_is_retried() {
    let f = fixture(LEN).await;
    let proxy = FaultProxy::start(f.upstream(), FaultConfig::none()).await;
    proxy.set_rules(vec![Rule { op: fault_proxy::Op::Part, nth: 2, fault: Fault::TimeTooSkewed }]);
    let up = Uploader::new(f.store.engine_client(Some(proxy.endpoint_url())).await, config());
    let (r, _) = upload(&up, &f.path, "skewed-http", OnFailure::Auto).await;
    r.unwrap();
    assert_eq!(f.read_back("skewed-http").await, f.data);
}

const SMALL: usize = 64 * 1024;

/// Defect 1: a PutObject answered `200` without an `ETag` was reported with `"etag":""`. When the
/// store did keep the object, its content proves it: a success with the stored object's `ETag`.
#[tokio::test(flavor = "multi_thread")]
async fn a_put_answered_without_an_etag_is_checked_by_content() {
    let f = fixture(SMALL).await;
    let proxy = FaultProxy::start(f.upstream(), FaultConfig::none()).await;
    proxy.set_rules(vec![Rule { op: fault_proxy::Op::Put, nth: 1, fault: Fault::NoEtag }]);
    let up = Uploader::new(f.store.engine_client(Some(proxy.endpoint_url())).await, config());
    let (r, _) = upload(&up, &f.path, "no-etag", OnFailure::Auto).await;
    let out = r.unwrap();
    let head = f.store.client().head_object().bucket(BUCKET).key("no-etag").send().await.unwrap();
    assert_eq!(
        Some(format!("\"{}\"", out.etag).as_str()),
        head.e_tag(),
        "the stored object's ETag, never an empty one"
    );
    assert_eq!(f.read_back("no-etag").await, f.data);
}

/// Defect 1: a `200` without an `ETag` from a gateway that stored nothing, over an older object
/// of the same size with a checksum of another algorithm, passed on size alone (exit 0).
#[tokio::test(flavor = "multi_thread")]
async fn a_put_that_left_the_older_object_there_fails_verification() {
    let f = fixture(SMALL).await;
    let older = vec![7u8; SMALL];
    f.store.client().put_object().bucket(BUCKET).key("stale").body(older.clone().into()).send().await.unwrap();
    let proxy = FaultProxy::start(f.upstream(), FaultConfig::none()).await;
    proxy.set_rules(vec![Rule { op: fault_proxy::Op::Put, nth: 1, fault: Fault::Dropped }]);
    let up = Uploader::new(f.store.engine_client(Some(proxy.endpoint_url())).await, config());
    let (r, _) = upload(&up, &f.path, "stale", OnFailure::Auto).await;
    let e = r.unwrap_err();
    assert_eq!(e.category(), Category::Integrity, "{e}");
    assert_eq!(f.read_back("stale").await, older, "the test's premise: the older object is still there");
}

/// Issue 16: with a CRC, a multipart object gets the CRC of all its bytes (`FULL_OBJECT`), which
/// the engine combines from the part CRCs, sends with Complete and checks with HEAD.
#[tokio::test(flavor = "multi_thread")]
async fn multipart_objects_get_the_full_object_crc() {
    let f = fixture(LEN).await;
    for alg in [ChecksumAlgorithm::Crc32, ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Crc64Nvme] {
        let client = Arc::new(f.failing().await);
        let up = Uploader::shared(client.clone(), config().checksum(Some(alg)));
        let key = format!("full-{alg}");
        let (r, _) = upload(&up, &f.path, &key, OnFailure::Abort).await;
        let want = Checksum::of(alg, &f.data).to_base64();
        assert_eq!(r.unwrap().checksum, Some(format!("{alg}:{want}")), "{alg}");
        let head = f
            .store
            .client()
            .head_object()
            .bucket(BUCKET)
            .key(&key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled);
        let head = head.send().await.unwrap();
        assert_eq!(head.checksum_type(), Some(&aws_sdk_s3::types::ChecksumType::FullObject), "{alg}");
    }
}

/// A store that refuses `FULL_OBJECT` at Create gets a `COMPOSITE` upload instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_refusing_full_object_checksums_gets_composite_ones() {
    let f = fixture(LEN).await;
    let client = Arc::new(f.failing().await.fail(Op::Create, 1, 1, When::Before, service(400, "InvalidRequest")));
    let (r, _) = upload(&f.uploader(&client, false), &f.path, "composite", OnFailure::Abort).await;
    let out = r.unwrap();
    assert!(out.checksum.as_deref().is_some_and(|c| c.starts_with("crc32c:") && c.ends_with("-3")), "{out:?}");
    assert_eq!(client.calls(Op::Create), 2);
    assert_eq!(f.read_back("composite").await, f.data);
}
