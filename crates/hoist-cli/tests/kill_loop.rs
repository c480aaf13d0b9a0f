//! Kill -9 at scale: `hoist put` of a file, or of stdin with `--resume-key`, is killed with SIGKILL at random
//! moments (after k parts plus a few milliseconds, or at a random time since start), sometimes
//! twice per upload, then run again to the end. Counted: kills, resumed uploads that came out
//! byte-identical, bytes sent again per resume (part bodies the store received, beyond the
//! object's size, measured by the proxy in front of the store), torn journals found after a kill
//! and how many a run accepted (must be 0), and incomplete uploads left in the store at the end.
//!
//! A resume may re-send the parts that were in flight when the kill landed, and the one that
//! finished but was not yet recorded: at most (concurrency + 1) × part size (plus the framing of
//! the bodies, [`FRAMING_SLACK`]); more is counted as over target.
//!
//! CI runs [`CI_KILLS`] kills; `bench/kill_loop.sh` sets `HOIST_KILL_LOOP_KILLS` (200) and prints
//! the same summary line.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::HOIST;
use hoist_testkit::TestStore;
use hoist_testkit::fault_proxy::{FaultProxy, Op};
use rand::{Rng as _, SeedableRng as _};

const BUCKET: &str = "kills";
const MIB: u64 = 1024 * 1024;
/// Part size of every run: S3's smallest, so an upload has many parts to be killed between.
const PART: u64 = 5 * MIB;
/// Bytes the target allows beyond whole parts: the proxy counts request bodies as sent, which for
/// file parts includes their `aws-chunked` framing (a chunk header per 1 MiB chunk and the
/// checksum trailer: about 100 bytes per 5 MiB part), on every part every run sent. 64 KiB covers
/// hundreds of parts and is still 1/80 of one part.
const FRAMING_SLACK: u64 = 64 * 1024;
/// Kills in CI (the bench sets `HOIST_KILL_LOOP_KILLS`).
const CI_KILLS: u64 = 6;
/// Longest a run to the end may take (tens of MiB over loopback take about a second).
const RUN_LIMIT: Duration = Duration::from_mins(2);

/// A running `hoist put --json`, its stdin fed from a thread when the source is a stream.
struct Run {
    child: Child,
    events: std::sync::mpsc::Receiver<serde_json::Value>,
}

struct Upload<'a> {
    world: &'a World,
    key: String,
    data: Vec<u8>,
    src: Option<std::path::PathBuf>,
    concurrency: u64,
}

struct World {
    rt: tokio::runtime::Runtime,
    store: TestStore,
    proxy: FaultProxy,
    state: tempfile::TempDir,
}

impl Upload<'_> {
    fn start(&self, extra: &[&str]) -> Run {
        let creds = self.world.store.credentials();
        let mut c = Command::new(HOIST);
        c.env("AWS_ACCESS_KEY_ID", &creds.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &creds.secret_key)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env("HOIST_STATE_DIR", self.world.state.path())
            .arg("put")
            .arg(self.src.as_ref().map_or("-".as_ref(), |p| p.as_os_str()))
            .arg(format!("s3://{BUCKET}/{}", self.key))
            .args([
                "--endpoint-url",
                &self.world.proxy.endpoint_url(),
                "--part-size",
                "5MiB",
                "--single-put-threshold",
                "5MiB",
            ])
            .args(["--concurrency", &self.concurrency.to_string(), "--json"])
            .args(extra)
            .stdin(if self.src.is_none() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if self.src.is_none() {
            c.args(["--resume-key", &self.key]);
        }
        let mut child = c.spawn().unwrap();
        if self.src.is_none() {
            let mut input = child.stdin.take().unwrap();
            let data = self.data.clone();
            // A broken pipe is what a kill does to the producer; not a test failure.
            std::thread::spawn(move || {
                let _ = input.write_all(&data);
            });
        }
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Run { child, events }
    }

    fn object(&self) -> Option<Vec<u8>> {
        let s3 = self.world.store.client();
        self.world.rt.block_on(async {
            let o = s3.get_object().bucket(BUCKET).key(&self.key).send().await.ok()?;
            Some(o.body.collect().await.ok()?.into_bytes().to_vec())
        })
    }
}

/// How a kill is timed.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// After this many `part_done` events, plus a delay.
    AfterParts(usize, Duration),
    /// This long after the start.
    After(Duration),
}

/// Kills `run` at `moment`; returns whether the kill landed before the run ended by itself.
fn kill_at(mut run: Run, moment: Moment) -> bool {
    let started = Instant::now();
    let mut parts = 0;
    loop {
        if let Ok(Some(_)) = run.child.try_wait() {
            return false;
        }
        let due = match moment {
            Moment::AfterParts(k, _) => parts >= k,
            Moment::After(t) => started.elapsed() >= t,
        };
        if due {
            if let Moment::AfterParts(_, delay) = moment {
                std::thread::sleep(delay);
            }
            let ended = matches!(run.child.try_wait(), Ok(Some(_)));
            let _ = run.child.kill();
            let _ = run.child.wait();
            return !ended;
        }
        match run.events.recv_timeout(Duration::from_millis(2)) {
            Ok(v) if v["event"] == "part_done" => parts += 1,
            _ => {}
        }
        assert!(started.elapsed() < RUN_LIMIT, "a run to be killed took over {RUN_LIMIT:?}");
    }
}

/// Runs to the end; the exit code (`None`: killed after [`RUN_LIMIT`]) and the parts its
/// `started` event says were resumed.
fn finish(mut run: Run) -> (Option<i32>, u64) {
    let started = Instant::now();
    let mut resumed = 0;
    loop {
        if let Ok(Some(status)) = run.child.try_wait() {
            resumed = run
                .events
                .try_iter()
                .find(|v| v["event"] == "started")
                .map_or(resumed, |v| v["resumed_parts"].as_u64().unwrap_or(0));
            return (status.code(), resumed);
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = run.child.kill();
            let _ = run.child.wait();
            return (None, resumed);
        }
        if let Ok(v) = run.events.recv_timeout(Duration::from_millis(5))
            && v["event"] == "started"
        {
            resumed = v["resumed_parts"].as_u64().unwrap_or(0);
        }
    }
}

/// Journal files that do not parse (torn by a kill mid-write).
fn torn_journals(state: &Path) -> usize {
    let Ok(dir) = std::fs::read_dir(state.join("journals")) else { return 0 };
    dir.filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter(|e| serde_json::from_slice::<serde_json::Value>(&std::fs::read(e.path()).unwrap_or_default()).is_err())
        .count()
}

fn part_bytes(proxy: &FaultProxy) -> u64 {
    proxy.body_bytes(Op::Part) + proxy.body_bytes(Op::Put)
}

/// Counts over the whole loop.
#[derive(Default)]
struct Tally {
    uploads: u64,
    kills: u64,
    double: u64,
    completed_before_kill: u64,
    resumed: u64,
    resumed_identical: u64,
    torn: u64,
    torn_accepted: u64,
    over_target: u64,
    resent_per_resume: Vec<u64>,
    failures: Vec<String>,
}

/// MiB, for display.
#[allow(clippy::cast_precision_loss)] // display only
fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// One upload: killed once or twice at random moments, then run to the end.
fn one_upload(world: &World, scratch: &Path, rng: &mut rand::rngs::StdRng, t: &mut Tally) {
    t.uploads += 1;
    let len = rng.random_range(3 * PART..8 * PART) + rng.random_range(0..PART);
    let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    let stdin = rng.random_ratio(1, 3);
    let src = (!stdin).then(|| {
        let p = scratch.join(format!("src{}", t.uploads));
        std::fs::write(&p, &data).unwrap();
        p
    });
    let up = Upload { world, key: format!("obj{}", t.uploads), data, src, concurrency: rng.random_range(1..=4) };
    let what =
        format!("{} ({len} bytes, {}, concurrency {})", up.key, if stdin { "stdin" } else { "file" }, up.concurrency);
    let before = part_bytes(&world.proxy);
    let planned = if rng.random_ratio(1, 3) { 2 } else { 1 };
    let mut moments = Vec::new();
    for _ in 0..planned {
        let moment = if rng.random_bool(0.5) {
            let parts = usize::try_from(len.div_ceil(PART)).unwrap();
            Moment::AfterParts(rng.random_range(0..parts), Duration::from_millis(rng.random_range(0..30)))
        } else {
            Moment::After(Duration::from_millis(rng.random_range(0..500)))
        };
        let killed = kill_at(up.start(&[]), moment);
        if killed {
            moments.push(moment);
            t.torn += torn_journals(world.state.path()) as u64;
        }
        // Done before the kill (it ran to the end, or the kill landed after Complete): what is
        // left would be a new upload, not a resume.
        if !killed || up.object().is_some() {
            t.kills += moments.len() as u64;
            t.completed_before_kill += 1;
            if up.object().as_deref() != Some(up.data.as_slice()) {
                t.failures.push(format!("{what}: completed before the kill landed, but the object is not identical"));
            }
            return;
        }
    }
    let landed = moments.len() as u64;
    t.kills += landed;
    t.double += u64::from(landed == 2);
    let torn_before = torn_journals(world.state.path());
    let (code, resumed_parts) = finish(up.start(&[]));
    t.torn_accepted += u64::from(torn_before > 0 && code == Some(0));
    let identical = up.object().as_deref() == Some(up.data.as_slice());
    if code != Some(0) || !identical {
        t.failures.push(format!("{what}: exit {code:?}, identical {identical}"));
    }
    t.resumed += 1;
    t.resumed_identical += u64::from(code == Some(0) && identical);
    let per_resume = (part_bytes(&world.proxy) - before).saturating_sub(len) / landed;
    t.resent_per_resume.push(per_resume);
    if per_resume > (up.concurrency + 1) * PART + FRAMING_SLACK {
        t.over_target += 1;
        println!(
            "over target: {what}: {:.1} MiB re-sent per resume after kills {moments:?}; the last run resumed {resumed_parts} parts",
            mib(per_resume)
        );
    }
}

#[test]
fn kill_9_at_random_moments_then_resume_is_byte_identical_and_resends_little() {
    let target_kills = std::env::var("HOIST_KILL_LOOP_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(CI_KILLS);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let store = rt.block_on(TestStore::start());
    rt.block_on(store.create_bucket(BUCKET));
    let upstream = store.endpoint_url().trim_start_matches("http://").parse().unwrap();
    let proxy = rt.block_on(FaultProxy::scripted(upstream, vec![]));
    let world = World { rt, store, proxy, state: tempfile::tempdir().unwrap() };
    let scratch = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_201);
    let mut t = Tally::default();
    let started = Instant::now();
    while t.kills < target_kills {
        one_upload(&world, scratch.path(), &mut rng, &mut t);
    }
    let left =
        world.rt.block_on(async { world.store.client().list_multipart_uploads().bucket(BUCKET).send().await.unwrap() });
    let resent = &t.resent_per_resume;
    let mean = resent.iter().sum::<u64>().checked_div(resent.len() as u64).unwrap_or(0);
    println!(
        "kill loop: uploads={} kills={} (twice: {}; finished before the kill: {}) resumed_identical={}/{} \
         resent_per_resume mean={:.1} MiB max={:.1} MiB over_target={} torn_journals={} torn_accepted={} \
         failures={} uploads_left={}  [{:.0} s]",
        t.uploads,
        t.kills,
        t.double,
        t.completed_before_kill,
        t.resumed_identical,
        t.resumed,
        mib(mean),
        mib(resent.iter().max().copied().unwrap_or(0)),
        t.over_target,
        t.torn,
        t.torn_accepted,
        t.failures.len(),
        left.uploads().len(),
        started.elapsed().as_secs_f64()
    );
    for f in &t.failures {
        println!("failed: {f}");
    }
    assert!(t.failures.is_empty(), "{} uploads did not finish byte-identical", t.failures.len());
    assert_eq!(t.torn_accepted, 0, "a torn journal was accepted");
    assert_eq!(t.over_target, 0, "a resume re-sent more than (concurrency + 1) parts");
    assert!(left.uploads().is_empty(), "uploads left behind: {:?}", left.uploads());
}
