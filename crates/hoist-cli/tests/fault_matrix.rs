//! The fault matrix: every fault of the fault proxy × every S3 operation of `hoist put` where it
//! can strike (create, part, list parts, list uploads, complete, abort, head/verify, single PUT)
//! × seeds, each run the real `hoist` binary through the proxy to the embedded store.
//!
//! Each run must end in one of two ways: exit 0 with a byte-identical object, or a documented
//! exit code with no wrong object, after which a plain re-run (faults off) succeeds. Counted
//! against it: false successes (exit 0, object missing or different), hangs (no exit within
//! [`RUN_LIMIT`]; a stall must be cut by `--request-timeout`), orphans (an incomplete upload in
//! the store that no journal names, or any at the end), journals left after a success, runs
//! given up on faults that a client can ride out (see [`survivable`]: everything but a 403, a
//! spoiled ETag, or an error code a HEAD answer cannot carry), undocumented exits (a panic), and
//! re-run failures. False failures (an error while the object is stored and right) are counted
//! too; after survivable faults they are give-ups. A fault whose request never came (the setup
//! did not lead there) is counted as not reached, so coverage is visible.
//!
//! Seeds choose which occurrence of the operation is hit (part 1, 2 or 3), file or stdin, and
//! single PUT or multipart where both apply. CI runs [`CI_SEEDS`] seed(s) of every cell;
//! `bench/fault_matrix.sh` runs more (`HOIST_FAULT_MATRIX_SEEDS`) and prints the same summary.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::HOIST;
use hoist_testkit::TestStore;
use hoist_testkit::fault_proxy::{Fault, FaultProxy, Op, REFUSE_FOR, Rule};
use rand::{Rng as _, SeedableRng as _};

const BUCKET: &str = "matrix";
const MIB: usize = 1024 * 1024;
/// Three parts of 5 MiB (S3's smallest), the last short.
const MULTI_LEN: usize = 2 * 5 * MIB + 54_321;
/// Under the 5 MiB single-PUT threshold set below.
const SINGLE_LEN: usize = 300_001;
/// What a run may take before it counts as a hang: the slowest legitimate run is one stall cut by
/// the 2 s request timeout plus backoff, or a 2 s refusal window plus backoff (well under 20 s).
const RUN_LIMIT: Duration = Duration::from_mins(1);
/// Seeds per cell in CI (the bench sets `HOIST_FAULT_MATRIX_SEEDS`).
const CI_SEEDS: u64 = 1;
/// Runs at once (most of a run's time is waiting on timeouts and backoff, not CPU).
const DEFAULT_JOBS: usize = 4;
/// Exit codes `hoist` documents for failures (README, `exit.rs`).
const DOCUMENTED_FAILURES: [i32; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// Faults that can strike any operation.
const ANY_OP: [Fault; 11] = [
    Fault::Reset,
    Fault::SlowDown,
    Fault::InternalError,
    Fault::Stall,
    Fault::Truncate,
    Fault::LostResponse,
    Fault::Trickle,
    Fault::RequestTimeout,
    Fault::TimeTooSkewed,
    Fault::Forbidden,
    Fault::Refuse,
];
/// The operations of an upload.
const OPS: [Op; 8] = [Op::Create, Op::Part, Op::ListParts, Op::ListUploads, Op::Complete, Op::Abort, Op::Head, Op::Put];

/// Whether a client should ride out `fault` at `op` (retry the request, or find out what a lost
/// response did) rather than fail the run. Not: a 403 (refused is refused); a spoiled or missing
/// ETag (the client cannot tell what the store kept; failing is safe, guessing is not); and on a HEAD,
/// the faults told apart only by the error code in the body, which a HEAD answer does not carry
/// (`RequestTimeout` is a bare 400, `RequestTimeTooSkewed` a bare 403, as from S3).
fn survivable(fault: Fault, op: Op) -> bool {
    match fault {
        Fault::Forbidden | Fault::NoEtag | Fault::WrongEtag | Fault::Dropped => false,
        Fault::RequestTimeout | Fault::TimeTooSkewed => op != Op::Head,
        _ => true,
    }
}

/// The faults that can strike `op`.
fn faults_for(op: Op) -> Vec<Fault> {
    let mut faults = ANY_OP.to_vec();
    match op {
        Op::Complete => faults.extend([Fault::ErrorIn200, Fault::LostThenNoSuchUpload]),
        Op::Part | Op::Put => faults.extend([Fault::NoEtag, Fault::WrongEtag, Fault::Dropped]),
        _ => {}
    }
    faults
}

/// One cell of the matrix with one seed.
#[derive(Debug, Clone, Copy)]
struct Case {
    op: Op,
    fault: Fault,
    seed: u64,
}

/// What one case came to: independent findings, several of which can hold at once.
#[derive(Debug, Default, Clone, Copy)]
#[allow(clippy::struct_excessive_bools)] // independent findings, counted one by one
struct Verdict {
    ok: bool,
    typed_error: bool,
    false_success: bool,
    false_failure: bool,
    wrong_object: bool,
    untyped: bool,
    gave_up: bool,
    hang: bool,
    orphans: bool,
    journal_left: bool,
    rerun_failed: bool,
    not_reached: bool,
}

impl Verdict {
    fn clean(&self) -> bool {
        !(self.false_success
            || self.wrong_object
            || self.untyped
            || self.gave_up
            || self.hang
            || self.orphans
            || self.journal_left
            || self.rerun_failed)
    }
}

/// How a case runs, drawn from its seed.
struct Setup {
    stdin: bool,
    len: usize,
    /// Rules of a first run with `--on-failure keep` that leaves what the faulted run resumes.
    prepare: Vec<Rule>,
    /// Rules of the faulted run.
    rules: Vec<Rule>,
    /// The rule whose firing shows the case reached its fault.
    target: Rule,
}

fn setup(case: Case) -> Setup {
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        case.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (case.op as u64) << 8 ^ case.fault as u64,
    );
    let single = match case.op {
        Op::Put => true,
        Op::Head => rng.random_bool(0.5),
        _ => false,
    };
    // Streams are journaled with --resume-key; the list operations need a file's journal.
    let stdin = matches!(case.op, Op::Create | Op::Part | Op::Complete | Op::Head | Op::Put) && rng.random_ratio(1, 3);
    let len = if single { SINGLE_LEN } else { MULTI_LEN };
    let nth = if case.op == Op::Part { rng.random_range(1..=3) } else { 1 };
    let target = Rule { op: case.op, nth, fault: case.fault };
    let (prepare, rules) = match case.op {
        // An abort follows a fatal error: 403 on a part first.
        Op::Abort => {
            (vec![], vec![Rule { op: Op::Part, nth: rng.random_range(1..=3), fault: Fault::Forbidden }, target])
        }
        // ListParts runs when a journal names an upload: a kept failure leaves one.
        Op::ListParts => (vec![Rule { op: Op::Part, nth: 2, fault: Fault::Forbidden }], vec![target]),
        // ListMultipartUploads looks for uploads a lost Create response left: lose one, then
        // fail the retried Create, keeping the journal.
        Op::ListUploads => (
            vec![
                Rule { op: Op::Create, nth: 1, fault: Fault::LostResponse },
                Rule { op: Op::Create, nth: 2, fault: Fault::Forbidden },
            ],
            vec![target],
        ),
        _ => (vec![], vec![target]),
    };
    Setup { stdin, len, prepare, rules, target }
}

/// The shared store and a runtime to talk to it.
struct World {
    rt: tokio::runtime::Runtime,
    store: TestStore,
    upstream: std::net::SocketAddr,
    s3: aws_sdk_s3::Client,
}

impl World {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let store = rt.block_on(TestStore::start());
        rt.block_on(store.create_bucket(BUCKET));
        let upstream = store.endpoint_url().trim_start_matches("http://").parse().unwrap();
        let s3 = store.client();
        Self { rt, store, upstream, s3 }
    }

    /// The object's bytes, if it exists.
    fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.rt.block_on(async {
            let o = self.s3.get_object().bucket(BUCKET).key(key).send().await.ok()?;
            Some(o.body.collect().await.ok()?.into_bytes().to_vec())
        })
    }

    /// Upload ids of incomplete uploads of `key`.
    fn uploads(&self, key: &str) -> Vec<String> {
        self.rt.block_on(async {
            let l = self.s3.list_multipart_uploads().bucket(BUCKET).prefix(key).send().await.unwrap();
            l.uploads()
                .iter()
                .filter(|u| u.key() == Some(key))
                .filter_map(|u| u.upload_id().map(str::to_owned))
                .collect()
        })
    }
}

/// One `hoist put` through the proxy; `None` if it had to be killed after [`RUN_LIMIT`].
fn hoist_put(
    world: &World,
    proxy: &str,
    state: &Path,
    src: &Source,
    key: &str,
    extra: &[&str],
) -> (Option<i32>, String) {
    let creds = world.store.credentials();
    let mut c = Command::new(HOIST);
    c.env("AWS_ACCESS_KEY_ID", &creds.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &creds.secret_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("HOIST_STATE_DIR", state)
        .arg("put")
        .arg(match src {
            Source::File(p) => p.as_os_str(),
            Source::Stdin(_) => "-".as_ref(),
        })
        .arg(format!("s3://{BUCKET}/{key}"))
        .args(["--endpoint-url", proxy, "--part-size", "5MiB", "--single-put-threshold", "5MiB", "--concurrency", "2"])
        .args(["--request-timeout", "2s", "--no-progress", "--quiet"])
        .args(extra)
        .stdin(if matches!(src, Source::Stdin(_)) { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Source::Stdin(_) = src {
        c.args(["--resume-key", key]);
    }
    let mut child = c.spawn().unwrap();
    let feeder = if let Source::Stdin(data) = src {
        let mut input = child.stdin.take().unwrap();
        let data = data.clone();
        // A broken pipe (hoist gave up) is part of what is tested, not a test failure.
        Some(std::thread::spawn(move || {
            let _ = input.write_all(&data);
        }))
    } else {
        None
    };
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    (code, reader.join().unwrap_or_default())
}

enum Source {
    File(PathBuf),
    Stdin(Vec<u8>),
}

/// The upload ids of the journals left in `state` (temp files of an interrupted write excluded);
/// an empty id is a recorded intent to create one (its cleanup lists the key's uploads).
fn journals(state: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(state.join("journals")) else { return vec![] };
    dir.filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let j: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path()).unwrap_or_default()).unwrap_or_default();
            j["upload_id"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

fn run_case(world: &World, case: Case, scratch: &Path) -> (Verdict, String) {
    let s = setup(case);
    let key = format!("{:?}-{:?}-{}", case.op, case.fault, case.seed).to_lowercase();
    let dir = scratch.join(&key);
    let state = dir.join("state");
    std::fs::create_dir_all(&dir).unwrap();
    let data: Vec<u8> = {
        let mut rng = rand::rngs::StdRng::seed_from_u64(case.seed ^ 0x5eed);
        (0..s.len).map(|_| rng.random()).collect()
    };
    let src = if s.stdin {
        Source::Stdin(data.clone())
    } else {
        let p = dir.join("src");
        std::fs::write(&p, &data).unwrap();
        Source::File(p)
    };
    let proxy = world.rt.block_on(FaultProxy::scripted(world.upstream, s.prepare.clone()));
    let url = proxy.endpoint_url();
    let mut v = Verdict::default();
    let mut log = format!("source: {} of {} bytes\n", if s.stdin { "stdin" } else { "file" }, s.len);
    if !s.prepare.is_empty() {
        let (code, err) = hoist_put(world, &url, &state, &src, &key, &["--on-failure", "keep"]);
        let _ = writeln!(log, "prepare: exit {code:?}: {}", err.trim());
    }
    proxy.set_rules(s.rules.clone());
    let (code, err) = hoist_put(world, &url, &state, &src, &key, &[]);
    let fired = proxy.seen(s.target.op) >= s.target.nth;
    let _ = writeln!(log, "faulted: exit {code:?} (fault reached: {fired}): {}", err.trim());
    v.not_reached = !fired;
    let stored = world.object(&key);
    let identical = stored.as_deref() == Some(data.as_slice());
    match code {
        None => v.hang = true,
        Some(0) => {
            v.ok = identical;
            v.false_success = !identical;
            v.journal_left = !journals(&state).is_empty();
        }
        Some(c) => {
            v.typed_error = DOCUMENTED_FAILURES.contains(&c);
            v.untyped = !v.typed_error;
            v.false_failure = identical;
            v.wrong_object = stored.is_some() && !identical;
            v.gave_up = s.rules.iter().all(|r| survivable(r.fault, r.op));
        }
    }
    // An upload no journal names is an orphan: nothing will ever resume or abort it (unless a
    // journal records an intent to create one, whose next run cleans up the key's uploads).
    let named = journals(&state);
    let pending = named.iter().any(String::is_empty);
    let stray: Vec<String> = world.uploads(&key).into_iter().filter(|id| !pending && !named.contains(id)).collect();
    if !stray.is_empty() {
        v.orphans = true;
        let _ = writeln!(log, "orphans after the faulted run: {stray:?}");
    }
    if code != Some(0) {
        proxy.set_rules(vec![]);
        if s.rules.iter().any(|r| r.fault == Fault::Refuse) {
            // A user re-runs later than at once: not inside the refusal window.
            std::thread::sleep(REFUSE_FOR);
        }
        let (code, err) = hoist_put(world, &url, &state, &src, &key, &[]);
        let identical = world.object(&key).as_deref() == Some(data.as_slice());
        v.rerun_failed = code != Some(0) || !identical;
        v.journal_left |= code == Some(0) && !journals(&state).is_empty();
        let _ = writeln!(log, "re-run: exit {code:?}, identical {identical}: {}", err.trim());
    }
    let left = world.uploads(&key);
    if !left.is_empty() {
        v.orphans = true;
        let _ = writeln!(log, "uploads left at the end: {left:?}");
    }
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
    (v, log)
}

/// Counts over all runs.
#[derive(Debug, Default)]
struct Tally {
    runs: u64,
    ok: u64,
    typed_errors: u64,
    false_successes: u64,
    hangs: u64,
    orphans: u64,
    rerun_failures: u64,
    false_failures: u64,
    wrong_objects: u64,
    untyped: u64,
    gave_up: u64,
    journals_left: u64,
    not_reached: u64,
}

impl Tally {
    fn add(&mut self, v: &Verdict) {
        self.runs += 1;
        self.ok += u64::from(v.ok);
        self.typed_errors += u64::from(v.typed_error);
        self.false_successes += u64::from(v.false_success);
        self.hangs += u64::from(v.hang);
        self.orphans += u64::from(v.orphans);
        self.rerun_failures += u64::from(v.rerun_failed);
        self.false_failures += u64::from(v.false_failure);
        self.wrong_objects += u64::from(v.wrong_object);
        self.untyped += u64::from(v.untyped);
        self.gave_up += u64::from(v.gave_up);
        self.journals_left += u64::from(v.journal_left);
        self.not_reached += u64::from(v.not_reached);
    }

    fn line(&self) -> String {
        format!(
            "fault matrix: runs={} ok={} typed_errors={} false_successes={} hangs={} orphans={} rerun_failures={} \
             (false_failures={} gave_up_on_one_fault={} wrong_objects={} undocumented_exits={} journals_left={} not_reached={})",
            self.runs,
            self.ok,
            self.typed_errors,
            self.false_successes,
            self.hangs,
            self.orphans,
            self.rerun_failures,
            self.false_failures,
            self.gave_up,
            self.wrong_objects,
            self.untyped,
            self.journals_left,
            self.not_reached
        )
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn every_fault_at_every_operation_ends_clean_or_typed_and_a_rerun_succeeds() {
    let seeds = env_number("HOIST_FAULT_MATRIX_SEEDS", CI_SEEDS);
    let jobs =
        usize::try_from(env_number("HOIST_FAULT_MATRIX_JOBS", DEFAULT_JOBS as u64)).unwrap_or(DEFAULT_JOBS).max(1);
    let only: Option<String> = std::env::var("HOIST_FAULT_MATRIX_ONLY").ok();
    let cases: Vec<Case> = (0..seeds)
        .flat_map(|seed| {
            OPS.iter().flat_map(move |&op| faults_for(op).into_iter().map(move |fault| Case { op, fault, seed }))
        })
        .filter(|c| {
            only.as_ref().is_none_or(|o| format!("{:?}-{:?}", c.op, c.fault).to_lowercase().contains(&o.to_lowercase()))
        })
        .collect();
    let world = World::start();
    let scratch = tempfile::tempdir().unwrap();
    let queue = Mutex::new(cases.into_iter());
    let results: Mutex<Vec<(Case, Verdict, String)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let Some(case) = queue.lock().unwrap().next() else { break };
                    let (v, log) = run_case(&world, case, scratch.path());
                    results.lock().unwrap().push((case, v, log));
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    let mut tally = Tally::default();
    let mut dirty: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (case, v, log) in &results {
        tally.add(v);
        if !v.clean() || v.not_reached {
            println!("--- {:?} at {:?} (seed {}): {v:?}\n{log}", case.fault, case.op, case.seed);
        }
        if !v.clean() {
            dirty.entry(format!("{:?} at {:?}", case.fault, case.op)).or_default().push(case.seed);
        }
    }
    println!("{}  [{:.0} s]", tally.line(), started.elapsed().as_secs_f64());
    for (cell, seeds) in &dirty {
        println!("failing cell: {cell} (seeds {seeds:?})");
    }
    assert!(
        dirty.is_empty(),
        "{} of {} runs broke the rules (see above): {}",
        dirty.values().map(Vec::len).sum::<usize>(),
        tally.runs,
        tally.line()
    );
    assert_eq!(tally.not_reached, 0, "some faults never had their request: {}", tally.line());
}
