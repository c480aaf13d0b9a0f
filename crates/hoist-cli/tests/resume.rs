//! Resume after a crash: kill -9 at random moments, then resume; refusals when resuming cannot be
//! trusted; and `hoist uploads ls/abort/prune` across more than one page of uploads.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{HOIST, StoreProc, file, sdk, stderr};
use rand::{Rng as _, SeedableRng as _};

const MIB: usize = 1024 * 1024;

fn put_cmd(store: &StoreProc, state: &Path, src: &Path, key: &str) -> Command {
    let mut c = Command::new(HOIST);
    store.hoist_env(&mut c).env("HOIST_STATE_DIR", state).args([
        "put",
        src.to_str().unwrap(),
        &format!("s3://resume-bkt/{key}"),
        "--endpoint-url",
        &store.endpoint,
        "--part-size",
        "5MiB",
        "--single-put-threshold",
        "5MiB",
        "--concurrency",
        "2",
        "--json",
    ]);
    c
}

/// Runs a put; kills it with SIGKILL after `k` `part_done` events plus a delay, if given.
/// Returns the part numbers reported done, the `resumed_parts` of its start event, and whether it
/// completed.
fn run_put(mut cmd: Command, kill: Option<(usize, Duration)>) -> (BTreeSet<u64>, u64, bool, Option<i32>) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut done = BTreeSet::new();
    let mut resumed = 0;
    let mut completed = false;
    let mut killed = false;
    if let Some((0, delay)) = kill {
        std::thread::sleep(delay);
        let _ = child.kill();
        killed = true;
    }
    for line in out.lines() {
        let Ok(line) = line else { break };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        match v["event"].as_str().unwrap() {
            "started" => resumed = v["resumed_parts"].as_u64().unwrap(),
            "part_done" => {
                done.insert(v["part_number"].as_u64().unwrap());
            }
            "completed" => completed = true,
            _ => {}
        }
        if let Some((k, delay)) = kill
            && !killed
            && done.len() >= k
        {
            std::thread::sleep(delay);
            let _ = child.kill();
            killed = true;
        }
    }
    let code = child.wait().ok().and_then(|s| s.code());
    (done, resumed, completed, code)
}

#[test]
fn kill_9_at_random_moments_then_resume_is_byte_identical_and_never_resends_recorded_parts() {
    let store = StoreProc::start();
    store.mb("resume-bkt");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_124);
    let (mut kills, mut resumed_runs, mut skipped_total) = (0, 0, 0u64);
    for round in 0..10u8 {
        let len = 40 * MIB + usize::from(round) * 12_345;
        let src = file(dir.path(), &format!("src{round}"), len, round);
        let key = format!("obj{round}");
        let mut recorded: BTreeSet<u64> = BTreeSet::new();
        // Two kills at random moments, then run to completion.
        for attempt in 0..3 {
            let kill =
                (attempt < 2).then(|| (rng.random_range(0..=8usize), Duration::from_millis(rng.random_range(0..40))));
            let (done, resumed, completed, _) = run_put(put_cmd(&store, &state, &src, &key), kill);
            if attempt > 0 {
                resumed_runs += 1;
                let again: Vec<_> = done.intersection(&recorded).collect();
                assert!(again.is_empty(), "round {round}: parts {again:?} were recorded and uploaded again");
                assert!(
                    resumed >= recorded.len() as u64 || completed,
                    "round {round}: resumed {resumed} < {}",
                    recorded.len()
                );
                skipped_total += resumed;
            }
            if kill.is_some() {
                kills += 1;
            }
            recorded.extend(done);
            if completed || (kill.is_some() && object_exists(&store, &key)) {
                // Completed; or killed after Complete but before it said so: then the journal
                // is gone with the upload, and a re-run is a new upload, not a resume. The
                // object is checked byte for byte below either way.
                break;
            }
            assert!(attempt < 2, "round {round}: did not complete after the kills");
        }
        let rt = tokio::runtime::Runtime::new().unwrap();
        let got = rt.block_on(async {
            let o = sdk(&store.endpoint).get_object().bucket("resume-bkt").key(&key).send().await.unwrap();
            o.body.collect().await.unwrap().into_bytes()
        });
        assert_eq!(got.as_ref(), std::fs::read(&src).unwrap().as_slice(), "round {round}");
    }
    println!(
        "kill -9 loop: {kills} kills, {resumed_runs} resumed runs, {skipped_total} parts skipped on resume, all byte-identical"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let left =
        rt.block_on(async { sdk(&store.endpoint).list_multipart_uploads().bucket("resume-bkt").send().await.unwrap() });
    assert!(left.uploads().is_empty(), "uploads left behind: {:?}", left.uploads());
}

/// Whether `key` exists in the test bucket.
fn object_exists(store: &StoreProc, key: &str) -> bool {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { sdk(&store.endpoint).head_object().bucket("resume-bkt").key(key).send().await.is_ok() })
}

/// Starts an upload and kills it after two parts, leaving a journal and an incomplete upload.
fn interrupted(store: &StoreProc, state: &Path, src: &Path, key: &str) {
    let (done, _, completed, _) = run_put(put_cmd(store, state, src, key), Some((2, Duration::ZERO)));
    assert!(!completed && done.len() >= 2);
}

#[test]
fn resume_refuses_what_it_cannot_trust() {
    let store = StoreProc::start();
    store.mb("resume-bkt");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = sdk(&store.endpoint);

    // The source changed: refused (exit 7), --restart starts over and completes.
    let src = file(dir.path(), "changing", 30 * MIB, 1);
    interrupted(&store, &state, &src, "changing");
    file(dir.path(), "changing", 30 * MIB, 2);
    let o = put_cmd(&store, &state, &src, "changing").output().unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("changed since") && stderr(&o).contains("--restart"), "{}", stderr(&o));
    let o = put_cmd(&store, &state, &src, "changing").arg("--restart").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // The upload was aborted elsewhere: NoSuchUpload said plainly.
    let src = file(dir.path(), "gone", 30 * MIB, 3);
    interrupted(&store, &state, &src, "gone");
    rt.block_on(async {
        let ups = s3.list_multipart_uploads().bucket("resume-bkt").send().await.unwrap();
        for u in ups.uploads() {
            s3.abort_multipart_upload()
                .bucket("resume-bkt")
                .key(u.key().unwrap())
                .upload_id(u.upload_id().unwrap())
                .send()
                .await
                .unwrap();
        }
    });
    let o = put_cmd(&store, &state, &src, "gone").output().unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("no longer exists"), "{}", stderr(&o));

    // A corrupted journal: detected, clear message, and the upload in the store is untouched.
    let src = file(dir.path(), "corrupt", 30 * MIB, 4);
    interrupted(&store, &state, &src, "corrupt");
    let journals: Vec<_> = std::fs::read_dir(state.join("journals")).unwrap().map(|e| e.unwrap().path()).collect();
    for j in &journals {
        let text = std::fs::read(j).unwrap();
        if String::from_utf8_lossy(&text).contains("\"corrupt\"") {
            std::fs::write(j, &text[..text.len() / 3]).unwrap();
        }
    }
    let o = put_cmd(&store, &state, &src, "corrupt").output().unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("corrupt"), "{}", stderr(&o));
    let ups =
        rt.block_on(async { s3.list_multipart_uploads().bucket("resume-bkt").prefix("corrupt").send().await.unwrap() });
    assert_eq!(ups.uploads().len(), 1, "the interrupted upload must still be there");

    // A plain re-run says that it resumes, and finishes.
    let src = file(dir.path(), "plain", 30 * MIB, 5);
    interrupted(&store, &state, &src, "plain");
    let mut again = Command::new(HOIST);
    store.hoist_env(&mut again).env("HOIST_STATE_DIR", &state).args([
        "put",
        src.to_str().unwrap(),
        "s3://resume-bkt/plain",
        "--endpoint-url",
        &store.endpoint,
    ]);
    let o = again.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming: ") && stderr(&o).contains("parts already uploaded"), "{}", stderr(&o));

    // `hoist resume` lists the one still interrupted.
    let o = store.hoist_env(&mut Command::new(HOIST)).env("HOIST_STATE_DIR", &state).arg("resume").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("s3://resume-bkt/"), "{o:?}");
}

#[test]
fn uploads_ls_abort_prune_across_pages() {
    let store = StoreProc::start();
    store.mb("resume-bkt");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = sdk(&store.endpoint);
    let n = 1003; // more than one page of 1000
    let ids: Vec<String> = rt.block_on(async {
        let mut ids = Vec::new();
        for i in 0..n {
            let o = s3.create_multipart_upload().bucket("resume-bkt").key(format!("p/{i:04}")).send().await.unwrap();
            ids.push(o.upload_id.unwrap());
        }
        ids
    });
    let ls = store.hoist(&["uploads", "ls", "s3://resume-bkt/p/", "--json"]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    assert_eq!(String::from_utf8_lossy(&ls.stdout).lines().count(), n);

    let o = store.hoist(&["uploads", "abort", "s3://resume-bkt/p/0000", "--upload-id", &ids[0]]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = store.hoist(&["uploads", "abort", "s3://resume-bkt/p/0000", "--upload-id", &ids[0]]);
    assert_eq!(o.status.code(), Some(3), "aborting twice: {}", stderr(&o));

    let dry = store.hoist(&["uploads", "prune", "s3://resume-bkt/p/", "--older-than", "0s", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would free"));
    let ls = store.hoist(&["uploads", "ls", "s3://resume-bkt", "--json"]);
    assert_eq!(String::from_utf8_lossy(&ls.stdout).lines().count(), n - 1, "dry run changed something");

    let young = store.hoist(&["uploads", "prune", "s3://resume-bkt", "--older-than", "7d"]);
    assert!(String::from_utf8_lossy(&young.stdout).contains("0 upload(s)"), "{young:?}");
    let prune = store.hoist(&["uploads", "prune", "s3://resume-bkt", "--older-than", "0s"]);
    assert!(prune.status.success(), "{}", stderr(&prune));
    let ls = store.hoist(&["uploads", "ls", "s3://resume-bkt", "--json"]);
    assert_eq!(String::from_utf8_lossy(&ls.stdout).lines().count(), 0);
    let bad = store.hoist(&["uploads", "prune", "s3://resume-bkt", "--older-than", "7"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("needs a unit"), "{}", stderr(&bad));
}

#[test]
fn a_completed_upload_whose_journal_survived_a_crash_is_recognised() {
    use hoist_core::checksum::{Checksum, ChecksumAlgorithm};
    use hoist_core::journal::{Fingerprint, JournalKey, JournalPart};
    let store = StoreProc::start();
    store.mb("resume-bkt");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let src = file(dir.path(), "done", 12 * MIB, 9);
    let o = put_cmd(&store, &state, &src, "done").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // The state a kill -9 right after CompleteMultipartUpload leaves: every part recorded, the
    // upload gone from the store, the object complete.
    let journals = hoist_core::JournalStore::new(state.join("journals"));
    let abs = src.canonicalize().unwrap();
    let key = JournalKey { endpoint: &store.endpoint, bucket: "resume-bkt", key: "done", source: &abs };
    let mut j = hoist_core::JournalStore::start(
        &key,
        "gone-upload-id".into(),
        5 * MIB as u64,
        Some(ChecksumAlgorithm::Crc32c),
        Fingerprint::of(&src).unwrap(),
    );
    let data = std::fs::read(&src).unwrap();
    for (i, chunk) in data.chunks(5 * MIB).enumerate() {
        let crc = Checksum::of(ChecksumAlgorithm::Crc32c, chunk).to_base64();
        j.parts.insert(
            u32::try_from(i + 1).unwrap(),
            JournalPart { size: chunk.len() as u64, etag: "unknown".into(), checksum: Some(crc) },
        );
    }
    journals.save(&j).unwrap();
    let o = put_cmd(&store, &state, &src, "done").output().unwrap();
    assert!(o.status.success(), "a completed upload must be recognised: {}", stderr(&o));
    assert!(journals.load(&key).unwrap().is_none(), "the journal is cleared");
    // A journal whose parts do not match the object is not taken for a completed upload.
    j.parts.get_mut(&1).unwrap().checksum = Some(Checksum::of(ChecksumAlgorithm::Crc32c, b"other").to_base64());
    journals.save(&j).unwrap();
    let o = put_cmd(&store, &state, &src, "done").output().unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("no longer exists"), "{}", stderr(&o));
}

/// `hoist put - --resume-key K` fed from `src`; killed after `kill_after` recorded parts if given.
fn stdin_put(
    store: &StoreProc,
    state: &Path,
    src: &Path,
    kill_after: Option<usize>,
) -> (BTreeSet<u64>, u64, bool, Option<i32>) {
    let mut c = Command::new(HOIST);
    store.hoist_env(&mut c).env("HOIST_STATE_DIR", state).args([
        "put",
        "-",
        "s3://resume-bkt/stream",
        "--endpoint-url",
        &store.endpoint,
        "--part-size",
        "5MiB",
        "--single-put-threshold",
        "5MiB",
        "--concurrency",
        "2",
        "--json",
        "--resume-key",
        "nightly-backup",
    ]);
    c.stdin(std::fs::File::open(src).unwrap());
    run_put(c, kill_after.map(|k| (k, Duration::ZERO)))
}

#[test]
fn stdin_with_a_resume_key_resumes_when_fed_the_same_stream() {
    let store = StoreProc::start();
    store.mb("resume-bkt");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let src = file(dir.path(), "stream", 33 * MIB, 6);
    let (first, _, completed, _) = stdin_put(&store, &state, &src, Some(3));
    assert!(!completed && first.len() >= 3);
    // `hoist resume` cannot feed a stream: it says who can, and how.
    let o = store
        .hoist_env(&mut Command::new(HOIST))
        .env("HOIST_STATE_DIR", &state)
        .args(["resume", "1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("reads a stream"), "{}", stderr(&o));
    assert!(stderr(&o).contains("hoist put - s3://resume-bkt/stream --resume-key"), "{}", stderr(&o));
    // Another stream under the same key is refused (its first part differs from the record).
    let other = file(dir.path(), "other", 33 * MIB, 7);
    let (_, _, completed, code) = stdin_put(&store, &state, &other, None);
    assert!(!completed);
    assert_eq!(code, Some(7));
    // The same stream again: recorded parts are skipped, the object is byte-identical.
    let (second, resumed, completed, _) = stdin_put(&store, &state, &src, None);
    assert!(completed);
    assert!(resumed >= first.len() as u64, "resumed {resumed}, recorded {}", first.len());
    assert!(
        second.is_disjoint(&first),
        "recorded parts sent again: {:?}",
        second.intersection(&first).collect::<Vec<_>>()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let got = rt.block_on(async {
        let o = sdk(&store.endpoint).get_object().bucket("resume-bkt").key("stream").send().await.unwrap();
        o.body.collect().await.unwrap().into_bytes()
    });
    assert_eq!(got.as_ref(), std::fs::read(&src).unwrap().as_slice());
}

#[test]
fn ctrl_c_keeps_parts_and_hoist_resume_finishes_the_upload() {
    let store = StoreProc::start();
    store.mb("resume-bkt");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let src = file(dir.path(), "sigint", 40 * MIB, 8);
    let mut child =
        put_cmd(&store, &state, &src, "sigint").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut done = 0;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "part_done" {
            done += 1;
            if done == 2 {
                // The first Ctrl-C: no new parts, those in flight finish, the journal is kept.
                Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
            }
        }
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("uploaded parts were kept") && stderr(&o).contains("resume with: hoist put"),
        "{}",
        stderr(&o)
    );

    // `hoist resume` lists it with its number; `hoist resume N` finishes it.
    let list = store.hoist_env(&mut Command::new(HOIST)).env("HOIST_STATE_DIR", &state).arg("resume").output().unwrap();
    let listing = String::from_utf8_lossy(&list.stdout).into_owned();
    let line = listing.lines().find(|l| l.contains("s3://resume-bkt/sigint")).expect(&listing);
    let number = line.split_whitespace().next().unwrap();
    let o = store
        .hoist_env(&mut Command::new(HOIST))
        .env("HOIST_STATE_DIR", &state)
        .args(["resume", number, "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let events = String::from_utf8_lossy(&o.stdout).into_owned();
    let start: serde_json::Value = serde_json::from_str(events.lines().next().unwrap()).unwrap();
    assert!(start["resumed_parts"].as_u64().unwrap() >= 2, "{events}");
    assert!(events.lines().last().unwrap().contains("\"completed\""), "{events}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let got = rt.block_on(async {
        let o = sdk(&store.endpoint).get_object().bucket("resume-bkt").key("sigint").send().await.unwrap();
        o.body.collect().await.unwrap().into_bytes()
    });
    assert_eq!(got.as_ref(), std::fs::read(&src).unwrap().as_slice());
    let list = store.hoist_env(&mut Command::new(HOIST)).env("HOIST_STATE_DIR", &state).arg("resume").output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("nothing to resume"));
}

#[test]
fn aborting_an_interrupted_upload_removes_its_journal() {
    let store = StoreProc::start();
    store.mb("resume-bkt");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Finished journals only: a kill during a write may leave a temp file (cleaned after a minute).
    let journals = || {
        std::fs::read_dir(state.join("journals")).map_or(0, |d| {
            d.filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))).count()
        })
    };
    for (key, how) in [("by-abort", "abort"), ("by-prune", "prune")] {
        let src = file(dir.path(), key, 30 * MIB, 6);
        interrupted(&store, &state, &src, key);
        assert_eq!(journals(), 1, "{how}: the interrupted upload has a journal");
        let listed =
            store.hoist_env(&mut Command::new(HOIST)).env("HOIST_STATE_DIR", &state).arg("resume").output().unwrap();
        assert!(String::from_utf8_lossy(&listed.stdout).contains(key), "{listed:?}");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let id = rt.block_on(async {
            let ups =
                sdk(&store.endpoint).list_multipart_uploads().bucket("resume-bkt").prefix(key).send().await.unwrap();
            ups.uploads()[0].upload_id().unwrap().to_owned()
        });
        let args: Vec<String> = match how {
            "abort" => {
                ["uploads", "abort", &format!("s3://resume-bkt/{key}"), "--upload-id", &id].map(String::from).to_vec()
            }
            _ => {
                ["uploads", "prune", &format!("s3://resume-bkt/{key}"), "--older-than", "0s"].map(String::from).to_vec()
            }
        };
        let o = store.hoist_env(&mut Command::new(HOIST)).env("HOIST_STATE_DIR", &state).args(&args).output().unwrap();
        assert!(o.status.success(), "{how}: {}", stderr(&o));
        assert_eq!(journals(), 0, "{how}: the journal of the aborted upload must be removed");
        let listed =
            store.hoist_env(&mut Command::new(HOIST)).env("HOIST_STATE_DIR", &state).arg("resume").output().unwrap();
        assert!(!String::from_utf8_lossy(&listed.stdout).contains(key), "{how}: {listed:?}");
    }
}
