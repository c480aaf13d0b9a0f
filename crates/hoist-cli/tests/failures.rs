//! What `hoist put` says when a failure leaves something in the store: a fault proxy between the
//! CLI and a `hoist store` refuses chosen requests, and the test reads the exit code, the hint and
//! what is left in the store and in the state directory.

mod common;

use std::path::Path;
use std::process::Command;

use common::{HOIST, StoreProc, file, stderr};
use hoist_testkit::fault_proxy::{Fault, FaultConfig, FaultProxy, Op, Rule};

const MIB: usize = 1024 * 1024;

fn proxy(rt: &tokio::runtime::Runtime, store: &StoreProc) -> FaultProxy {
    let upstream = store.endpoint.trim_start_matches("http://").parse().unwrap();
    rt.block_on(FaultProxy::start(upstream, FaultConfig::none()))
}

fn put(store: &StoreProc, state: &Path, src: &Path, endpoint: &str) -> std::process::Output {
    let mut c = Command::new(HOIST);
    store.hoist_env(&mut c).env("HOIST_STATE_DIR", state);
    c.args([
        "put",
        src.to_str().unwrap(),
        "s3://fail-bkt/obj",
        "--endpoint-url",
        endpoint,
        "--part-size",
        "5MiB",
        "--single-put-threshold",
        "5MiB",
    ]);
    c.output().unwrap()
}

/// Defect 2: the abort refused, hoist said "parts are kept; resume with …", deleted the journal,
/// and the re-run started a new upload while the old one stayed pending.
#[test]
fn a_refused_abort_names_the_pending_upload_and_keeps_its_journal() {
    let store = StoreProc::start();
    store.mb("fail-bkt");
    let dir = tempfile::tempdir().unwrap();
    let src = file(dir.path(), "in.bin", 12 * MIB, 3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = proxy(&rt, &store);
    // Every part and every abort refused (a rule fires once: one per request, ten covers all).
    let denied = |op| (1..=10).map(move |nth| Rule { op, nth, fault: Fault::Forbidden });
    proxy.set_rules(denied(Op::Part).chain(denied(Op::Abort)).collect());
    let state = dir.path().join("state");

    let out = put(&store, &state, &src, &proxy.endpoint_url());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("could not be aborted") && err.contains("hoist uploads abort s3://fail-bkt/obj --upload-id"),
        "{err}"
    );
    assert!(!err.contains("parts are kept"), "{err}");
    let journals = std::fs::read_dir(state.join("journals")).map_or(0, Iterator::count);
    assert_eq!(journals, 1, "the journal of the pending upload must stay");
    let listed = store.hoist(&["uploads", "ls", "s3://fail-bkt", "--endpoint-url", &store.endpoint]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("obj"), "the upload is still pending: {listed:?}");
}

/// Defect 4: the HEAD after Complete kept failing: hoist aborted the completed upload, deleted the
/// journal, said "parts are kept", and the re-run uploaded everything again.
#[test]
fn a_failed_check_after_complete_says_so_and_the_rerun_only_checks() {
    let store = StoreProc::start();
    store.mb("fail-bkt");
    let dir = tempfile::tempdir().unwrap();
    let src = file(dir.path(), "in.bin", 12 * MIB, 5);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = proxy(&rt, &store);
    // Ten attempts (the default retry count) of the HEAD after Complete, then it passes.
    proxy.set_rules((1..=10).map(|nth| Rule { op: Op::Head, nth, fault: Fault::SlowDown }).collect());
    let state = dir.path().join("state");

    let out = put(&store, &state, &src, &proxy.endpoint_url());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("Complete succeeded") && err.contains("run the same command again"), "{err}");
    assert!(!err.contains("parts are kept"), "{err}");

    let again = put(&store, &state, &src, &proxy.endpoint_url());
    assert!(again.status.success(), "{}", stderr(&again));
    let listed = store.hoist(&["uploads", "ls", "s3://fail-bkt", "--endpoint-url", &store.endpoint]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("obj"), "{listed:?}");
    assert_eq!(std::fs::read_dir(state.join("journals")).map_or(0, Iterator::count), 0);
}

/// The same for a stream with a resume key: the re-run fed the same bytes read them again, found
/// the upload gone and failed with "upload no longer exists" (exit 7) although the hint had said it
/// would only check. It must check the stream against its journal and the object, and send no part.
#[test]
fn a_failed_check_after_complete_of_a_stream_is_confirmed_by_the_rerun_without_sending_parts() {
    let store = StoreProc::start();
    store.mb("fail-bkt");
    let dir = tempfile::tempdir().unwrap();
    let src = file(dir.path(), "in.bin", 12 * MIB, 6);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = proxy(&rt, &store);
    proxy.set_rules((1..=10).map(|nth| Rule { op: Op::Head, nth, fault: Fault::SlowDown }).collect());
    let state = dir.path().join("state");
    let put_stdin = |input: &Path| {
        let mut c = Command::new(HOIST);
        store.hoist_env(&mut c).env("HOIST_STATE_DIR", &state);
        c.args(["put", "-", "s3://fail-bkt/obj", "--resume-key", "k1", "--endpoint-url", &proxy.endpoint_url()]);
        c.args(["--part-size", "5MiB", "--single-put-threshold", "5MiB"]);
        c.stdin(std::fs::File::open(input).unwrap()).output().unwrap()
    };

    let out = put_stdin(&src);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("Complete succeeded"), "{err}");
    let parts_sent = proxy.seen(Op::Part);

    // Other bytes under the same resume key are not the completed upload: refused, nothing sent.
    let other = file(dir.path(), "other.bin", 12 * MIB, 7);
    let refused = put_stdin(&other);
    assert!(!refused.status.success(), "{}", stderr(&refused));
    assert_eq!(proxy.seen(Op::Part), parts_sent, "no part may be sent for a stream that is not the recorded one");

    let again = put_stdin(&src);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(proxy.seen(Op::Part), parts_sent, "the re-run only checks: no part is sent again");
    assert_eq!(std::fs::read_dir(state.join("journals")).map_or(0, Iterator::count), 0);
    let got = rt.block_on(async {
        let o = common::sdk(&store.endpoint).get_object().bucket("fail-bkt").key("obj").send().await.unwrap();
        o.body.collect().await.unwrap().into_bytes()
    });
    assert!(got == std::fs::read(&src).unwrap(), "the object must be the stream's bytes");
}
