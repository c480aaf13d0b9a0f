//! Trees and many files: `hoist put DIR|FILE… s3://B/P/`, `--skip-existing`, `hoist sync`, kill -9
//! in the middle of a tree, and `hoist presign`, with the built binary against a spawned
//! `hoist store`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{HOIST, StoreProc, file, sdk, stderr};

const MIB: usize = 1024 * 1024;

/// `hoist ARGS` against `store`, with its own state dir.
fn hoist(store: &StoreProc, state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(HOIST);
    store.hoist_env(&mut c).env("HOIST_STATE_DIR", state).args(args);
    c
}

/// Like [`hoist`], without the power to read files whose mode forbids it, so a `chmod 000` file
/// is unreadable even when the tests run as root (`CAP_DAC_OVERRIDE` is dropped with setpriv).
fn hoist_unprivileged(store: &StoreProc, state: &Path, probe: &Path, args: &[&str]) -> Command {
    if std::fs::read(probe).is_err() {
        return hoist(store, state, args);
    }
    let mut c = Command::new("setpriv");
    c.args(["--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search", HOIST]);
    store.hoist_env(&mut c).env("HOIST_STATE_DIR", state).args(args);
    c
}

fn events(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn of_kind<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// Every object under `prefix`: key → bytes.
fn objects(store: &StoreProc, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s3 = sdk(&store.endpoint);
        let mut out = BTreeMap::new();
        let mut token = None;
        loop {
            let page =
                s3.list_objects_v2().bucket(bucket).prefix(prefix).set_continuation_token(token).send().await.unwrap();
            for o in page.contents() {
                let key = o.key().unwrap().to_owned();
                let body = s3.get_object().bucket(bucket).key(&key).send().await.unwrap().body.collect().await.unwrap();
                out.insert(key, body.into_bytes().to_vec());
            }
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return out;
            }
        }
    })
}

fn no_uploads_left(store: &StoreProc, bucket: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let left =
        rt.block_on(async { sdk(&store.endpoint).list_multipart_uploads().bucket(bucket).send().await.unwrap() });
    assert!(left.uploads().is_empty(), "uploads left behind: {:?}", left.uploads());
}

/// A tree with nested directories, an empty directory, a 0-byte file, unicode and spaces in
/// names, files on each side of the inline and single-PUT thresholds.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut want = BTreeMap::new();
    let mut add = |rel: &str, len: usize, seed: u8| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let f = file(p.parent().unwrap(), p.file_name().unwrap().to_str().unwrap(), len, seed);
        want.insert(rel.to_owned(), std::fs::read(f).unwrap());
    };
    add("top.txt", 100, 1);
    add("empty.bin", 0, 2);
    add("a/b/c/deep.bin", 20_000, 3);
    add("a/b/sibling", 1, 4);
    add("ünïcode dir/with spaces & signs+=.txt", 4096, 5);
    add("日本/ファイル.txt", 777, 6);
    add("mid/two-mib.bin", 2 * MIB + 5, 7);
    add("big/twelve-mib.bin", 12 * MIB + 3, 8);
    std::fs::create_dir_all(root.join("nothing/inside")).unwrap();
    want
}

#[test]
fn put_uploads_trees_and_files_under_a_prefix_byte_identical() {
    let store = StoreProc::start();
    store.mb("trees");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let root = dir.path().join("root");
    let want = tree(&root);
    let loose = file(dir.path(), "loose file.txt", 321, 9);
    let o = hoist(
        &store,
        &state,
        &[
            "put",
            root.to_str().unwrap(),
            loose.to_str().unwrap(),
            "s3://trees/backup",
            "--part-size",
            "5MiB",
            "--single-put-threshold",
            "5MiB",
            "--json",
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = events(&o);
    let got = objects(&store, "trees", "");
    let mut expected: BTreeMap<String, Vec<u8>> = want.into_iter().map(|(k, v)| (format!("backup/{k}"), v)).collect();
    expected.insert("backup/loose file.txt".into(), std::fs::read(&loose).unwrap());
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (k, v) in &expected {
        assert!(got[k] == *v, "{k} differs");
    }
    let done = of_kind(&ev, "file_done");
    assert_eq!(done.len(), expected.len());
    let big = done.iter().find(|e| e["key"] == "backup/big/twelve-mib.bin").unwrap();
    assert_eq!(big["parts"], 3, "12 MiB in 5 MiB parts");
    assert!(done.iter().all(|e| e["checksum"].as_str().is_some_and(|c| c.starts_with("crc32c:"))), "{done:?}");
    let summary = ev.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["files_uploaded"], expected.len());
    assert_eq!(summary["files_failed"], 0);
    let walked = of_kind(&ev, "walked");
    assert_eq!(walked.last().unwrap()["finished"], true);
    assert_eq!(walked.last().unwrap()["files"], expected.len());
    // The batch finished: its journal is gone.
    let left: Vec<_> = std::fs::read_dir(state.join("journals")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    no_uploads_left(&store, "trees");

    // A single file to a folder-like destination keeps its name.
    let o = hoist(&store, &state, &["put", loose.to_str().unwrap(), "s3://trees/one/", "-q"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(objects(&store, "trees", "one/").contains_key("one/loose file.txt"));

    // Include and exclude.
    let o = hoist(
        &store,
        &state,
        &["put", root.to_str().unwrap(), "s3://trees/picked/", "--include", "*.txt", "--exclude", "日本/**", "-q"],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let picked: Vec<String> = objects(&store, "trees", "picked/").into_keys().collect();
    assert_eq!(picked, vec!["picked/top.txt", "picked/ünïcode dir/with spaces & signs+=.txt"]);

    // A bad glob is a usage error naming it.
    let o =
        hoist(&store, &state, &["put", root.to_str().unwrap(), "s3://trees/x/", "--include", "[abc"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("[abc"), "{}", stderr(&o));
}

#[test]
fn unreadable_files_are_reported_and_the_rest_go_on() {
    use std::os::unix::fs::PermissionsExt as _;
    let store = StoreProc::start();
    store.mb("trees");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("locked")).unwrap();
    for i in 0..20 {
        file(&root, &format!("ok{i}"), 1000 + i, 1);
    }
    let secret = file(&root, "secret", 500, 2);
    file(&root.join("locked"), "inside", 10, 3);
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let o =
        hoist_unprivileged(&store, &state, &secret, &["put", root.to_str().unwrap(), "s3://trees/u/", "--no-progress"])
            .output()
            .unwrap();
    std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("failed: {}", secret.display())) && err.contains("Permission denied"), "{err}");
    assert!(err.contains("locked"), "the unreadable directory is reported: {err}");
    assert!(err.contains("2 of the files could not be uploaded"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("uploaded 20 files"), "{o:?}");
    assert_eq!(objects(&store, "trees", "u/").len(), 20);
}

#[test]
fn links_and_special_files() {
    let store = StoreProc::start();
    store.mb("trees");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    file(&root.join("sub"), "real", 10, 1);
    let outside = tempfile::tempdir().unwrap();
    file(outside.path(), "elsewhere", 20, 2);
    std::os::unix::fs::symlink(outside.path().join("elsewhere"), root.join("link")).unwrap();
    std::os::unix::fs::symlink(&root, root.join("sub/loop")).unwrap();
    assert!(Command::new("mkfifo").arg(root.join("fifo")).status().unwrap().success());

    let o = hoist(&store, &state, &["put", root.to_str().unwrap(), "s3://trees/nofollow/", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = events(&o);
    let ignored: Vec<String> =
        of_kind(&ev, "ignored").iter().map(|e| e["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ignored.iter().filter(|r| r.contains("not followed")).count(), 2, "{ignored:?}");
    assert_eq!(ignored.iter().filter(|r| r.contains("FIFO")).count(), 1, "{ignored:?}");
    assert_eq!(objects(&store, "trees", "nofollow/").into_keys().collect::<Vec<_>>(), vec!["nofollow/sub/real"]);

    // Following: the link's target is uploaded under the link's name; the loop is cut.
    let o = hoist(
        &store,
        &state,
        &["put", root.to_str().unwrap(), "s3://trees/follow/", "--follow-symlinks", "--no-progress"],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("loop"), "{}", stderr(&o));
    let got = objects(&store, "trees", "follow/");
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["follow/link", "follow/sub/real"]);
    assert_eq!(got["follow/link"], std::fs::read(outside.path().join("elsewhere")).unwrap());
}

#[test]
fn a_file_that_changes_while_it_is_uploaded_is_reported_not_recorded() {
    let store = StoreProc::start();
    store.mb("trees");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let growing = file(&root, "growing.bin", 64 * MIB, 1);
    file(&root, "calm.txt", 100, 2);
    let mut child = hoist(
        &store,
        &state,
        &[
            "put",
            root.to_str().unwrap(),
            "s3://trees/c/",
            "--part-size",
            "5MiB",
            "--single-put-threshold",
            "5MiB",
            "--concurrency",
            "1",
            "--json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut failed = Vec::new();
    let mut touched = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "part_done" && !touched {
            std::fs::OpenOptions::new().append(true).open(&growing).unwrap().write_all(b"more").unwrap();
            touched = true;
        }
        if v["event"] == "file_failed" {
            failed.push(v);
        }
    }
    let status = child.wait().unwrap();
    assert!(touched);
    assert_eq!(status.code(), Some(8));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0]["error"].as_str().unwrap().contains("changed while it was being uploaded"), "{failed:?}");
    // The re-run uploads it again (it was not recorded as done) and succeeds.
    let o = hoist(&store, &state, &["put", root.to_str().unwrap(), "s3://trees/c/", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = events(&o);
    assert!(of_kind(&ev, "file_done").iter().any(|e| e["key"] == "c/growing.bin"));
    assert_eq!(objects(&store, "trees", "c/")["c/growing.bin"], std::fs::read(&growing).unwrap());
}

/// Runs a batch with --json, killing it with SIGKILL once `kill_after` says so. Returns the
/// events seen.
fn run_until(mut cmd: Command, kill_after: impl Fn(&[serde_json::Value]) -> bool) -> (Vec<serde_json::Value>, bool) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut seen = Vec::new();
    let mut killed = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        seen.push(serde_json::from_str(&line).unwrap());
        if !killed && kill_after(&seen) {
            let _ = child.kill();
            killed = true;
        }
    }
    let _ = child.wait();
    (seen, killed)
}

#[test]
fn kill_9_mid_tree_then_rerun_skips_recorded_files_unread_and_resumes_parts() {
    use std::os::unix::fs::PermissionsExt as _;
    let store = StoreProc::start();
    store.mb("trees");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let root = dir.path().join("root");
    let mut local: BTreeMap<String, PathBuf> = BTreeMap::new();
    for d in 0..6 {
        std::fs::create_dir_all(root.join(format!("d{d}"))).unwrap();
        for i in 0..50 {
            let p = file(&root.join(format!("d{d}")), &format!("f{i}"), 3000 + i * 17, u8::try_from(d).unwrap());
            local.insert(format!("t/d{d}/f{i}"), p);
        }
        let p = file(&root.join(format!("d{d}")), "big.bin", 22 * MIB + d, 9);
        local.insert(format!("t/d{d}/big.bin"), p);
    }
    let args = [
        "put",
        root.to_str().unwrap(),
        "s3://trees/t/",
        "--part-size",
        "5MiB",
        "--single-put-threshold",
        "5MiB",
        "--concurrency",
        "1",
        "--max-requests",
        "3",
        "--json",
    ];
    // Killed once some files are done and a big file has parts stored.
    let (first, killed) = run_until(hoist(&store, &state, &args), |seen| {
        of_kind(seen, "file_done").len() >= 40 && !of_kind(seen, "part_done").is_empty()
    });
    assert!(killed, "the batch ended before the kill");
    let done_first: BTreeSet<String> =
        of_kind(&first, "file_done").iter().map(|e| e["key"].as_str().unwrap().to_owned()).collect();
    let mut parts_first: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for e in of_kind(&first, "part_done") {
        parts_first
            .entry(e["key"].as_str().unwrap().to_owned())
            .or_default()
            .insert(e["part_number"].as_u64().unwrap());
    }
    // The files the journal proves must not be read again: make them unreadable.
    for key in &done_first {
        std::fs::set_permissions(&local[key], std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let probe = &local[done_first.iter().next().unwrap()];
    let o = hoist_unprivileged(&store, &state, probe, &args).output().unwrap();
    for key in &done_first {
        std::fs::set_permissions(&local[key], std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    assert!(o.status.success(), "{}", stderr(&o));
    let second = events(&o);
    let skipped: BTreeSet<String> = of_kind(&second, "file_skipped")
        .iter()
        .filter(|e| e["reason"].as_str().unwrap().contains("batch journal"))
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    // Every file reported done before the kill is skipped by the journal; a few more may be too:
    // a file is recorded before it is reported, and the kill can land in between.
    assert!(
        skipped.is_superset(&done_first),
        "every file done before the kill is skipped by the journal: {skipped:?} {done_first:?}"
    );
    assert!(skipped.len() <= done_first.len() + 3, "at most the files in flight were recorded unreported: {skipped:?}");
    let done_second: BTreeSet<String> =
        of_kind(&second, "file_done").iter().map(|e| e["key"].as_str().unwrap().to_owned()).collect();
    assert!(done_second.is_disjoint(&skipped));
    assert_eq!(done_second.len() + skipped.len(), local.len());
    // Parts stored before the kill are not sent again.
    let mut resumed_parts = 0;
    for e in of_kind(&second, "part_done") {
        let key = e["key"].as_str().unwrap();
        let n = e["part_number"].as_u64().unwrap();
        assert!(
            !parts_first.get(key).is_some_and(|p| p.contains(&n)) || skipped.contains(key),
            "{key} part {n} sent twice"
        );
    }
    for (key, parts) in &parts_first {
        if !done_first.contains(key) {
            resumed_parts += parts.len();
        }
    }
    assert!(resumed_parts > 0, "a big file was in flight at the kill: {parts_first:?}");
    let got = objects(&store, "trees", "t/");
    assert_eq!(got.len(), local.len());
    for (key, path) in &local {
        assert!(got[key] == std::fs::read(path).unwrap(), "{key} differs");
    }
    no_uploads_left(&store, "trees");
}

#[test]
fn skip_existing_and_sync_compare_with_objects_another_client_wrote() {
    let store = StoreProc::start();
    store.mb("trees");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let same = file(&root, "same.txt", 5000, 1);
    let differs = file(&root, "differs.txt", 5000, 2);
    let big = file(&root, "big.bin", 12 * MIB, 3);
    let new = file(&root, "new.txt", 10, 4);
    // Another client: a PutObject of the same bytes, one of other bytes of the same size, and
    // the big file as a multipart upload in 5 MiB parts.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s3 = sdk(&store.endpoint);
        let put = |key: &'static str, body: Vec<u8>| {
            let s3 = s3.clone();
            async move { s3.put_object().bucket("trees").key(key).body(body.into()).send().await.unwrap() }
        };
        put("s/same.txt", std::fs::read(&same).unwrap()).await;
        put("s/differs.txt", vec![0u8; 5000]).await;
        let data = std::fs::read(&big).unwrap();
        let up = s3.create_multipart_upload().bucket("trees").key("s/big.bin").send().await.unwrap();
        let id = up.upload_id().unwrap();
        let mut parts = Vec::new();
        for (i, chunk) in data.chunks(5 * MIB).enumerate() {
            let n = i32::try_from(i + 1).unwrap();
            let p = s3
                .upload_part()
                .bucket("trees")
                .key("s/big.bin")
                .upload_id(id)
                .part_number(n)
                .body(chunk.to_vec().into())
                .send()
                .await
                .unwrap();
            parts.push(aws_sdk_s3::types::CompletedPart::builder().part_number(n).e_tag(p.e_tag().unwrap()).build());
        }
        s3.complete_multipart_upload()
            .bucket("trees")
            .key("s/big.bin")
            .upload_id(id)
            .multipart_upload(aws_sdk_s3::types::CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .unwrap();
    });
    let o = hoist(
        &store,
        &state,
        &["put", root.to_str().unwrap(), "s3://trees/s/", "--skip-existing", "--part-size", "5MiB", "--json"],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = events(&o);
    let skipped: BTreeMap<String, String> = of_kind(&ev, "file_skipped")
        .iter()
        .map(|e| (e["key"].as_str().unwrap().to_owned(), e["reason"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped["s/same.txt"].contains("MD5"), "{skipped:?}");
    assert!(skipped["s/big.bin"].contains("multipart ETag"), "{skipped:?}");
    let uploaded: BTreeSet<&str> = of_kind(&ev, "file_done").iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(uploaded, BTreeSet::from(["s/differs.txt", "s/new.txt"]));
    let got = objects(&store, "trees", "s/");
    for (k, p) in [("s/same.txt", &same), ("s/differs.txt", &differs), ("s/big.bin", &big), ("s/new.txt", &new)] {
        assert!(got[k] == std::fs::read(p).unwrap(), "{k}");
    }

    // sync: nothing changed, nothing sent; then by size and time (no file read).
    let o = hoist(&store, &state, &["sync", root.to_str().unwrap(), "s3://trees/s/", "--part-size", "5MiB", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(of_kind(&events(&o), "file_done").is_empty());
    let o = hoist(&store, &state, &["sync", root.to_str().unwrap(), "s3://trees/s/", "--size-mtime", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = events(&o);
    assert!(of_kind(&ev, "file_done").is_empty());
    let reasons: Vec<&str> = of_kind(&ev, "file_skipped").iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    // Files this tool stored or compared before are proven by its journal and the listing's ETag.
    assert!(reasons.iter().all(|r| r.contains("unchanged since it was stored")), "{reasons:?}");
    // Same size, other content: sync by checksum sends it; nothing else.
    file(&root, "same.txt", 5000, 42);
    let o = hoist(&store, &state, &["sync", root.to_str().unwrap(), "s3://trees/s/", "--part-size", "5MiB", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let uploaded: Vec<String> =
        of_kind(&events(&o), "file_done").iter().map(|e| e["key"].as_str().unwrap().to_owned()).collect();
    assert_eq!(uploaded, vec!["s/same.txt"]);
    assert_eq!(objects(&store, "trees", "s/same.txt")["s/same.txt"], std::fs::read(&same).unwrap());
    // Another client overwrites an object with the same size: the listed ETag no longer matches
    // the journal's, so the file is compared again and sent.
    rt.block_on(async {
        sdk(&store.endpoint)
            .put_object()
            .bucket("trees")
            .key("s/new.txt")
            .body(vec![7u8; 10].into())
            .send()
            .await
            .unwrap();
    });
    let o = hoist(&store, &state, &["sync", root.to_str().unwrap(), "s3://trees/s/", "--part-size", "5MiB", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let uploaded: Vec<String> =
        of_kind(&events(&o), "file_done").iter().map(|e| e["key"].as_str().unwrap().to_owned()).collect();
    assert_eq!(uploaded, vec!["s/new.txt"]);
    assert_eq!(objects(&store, "trees", "s/new.txt")["s/new.txt"], std::fs::read(&new).unwrap());
    // sync takes a directory.
    let o = hoist(&store, &state, &["sync", same.to_str().unwrap(), "s3://trees/s/"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn presign_get_and_put_with_length_and_checksum_bound() {
    let store = StoreProc::start();
    store.mb("trees");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let src = file(dir.path(), "obj", 1000, 1);
    let o = hoist(&store, &state, &["put", src.to_str().unwrap(), "s3://trees/p/obj ü", "-q"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();

    let o = hoist(&store, &state, &["presign", "s3://trees/p/obj ü"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let url = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    let (status, body) = rt.block_on(async {
        let r = http.get(&url).send().await.unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap())
    });
    assert_eq!(status, 200);
    assert_eq!(body.as_ref(), std::fs::read(&src).unwrap().as_slice());
    // Tampered: another key with the same signature is refused.
    let tampered = url.replace("obj%20%C3%BC", "other");
    assert_eq!(rt.block_on(async { http.get(&tampered).send().await.unwrap().status().as_u16() }), 403);

    // PUT bound to 5 bytes and their CRC32C.
    let crc = hoist_core::checksum::Checksum::of(hoist_core::checksum::ChecksumAlgorithm::Crc32c, b"hello").to_base64();
    let bound = format!("crc32c:{crc}");
    let o = hoist(
        &store,
        &state,
        &["presign", "s3://trees/p/up", "--method", "put", "--content-length", "5", "--checksum", &bound, "--json"],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let url = v["url"].as_str().unwrap().to_owned();
    assert_eq!(v["headers"]["x-amz-checksum-crc32c"], crc.as_str());
    let put = |body: &'static [u8], checksum: &str| {
        let (http, url, checksum) = (http.clone(), url.clone(), checksum.to_owned());
        rt.block_on(async move {
            http.put(&url).header("x-amz-checksum-crc32c", checksum).body(body).send().await.unwrap().status().as_u16()
        })
    };
    assert_eq!(put(b"hell", &crc), 403, "another length breaks the signature");
    assert_eq!(put(b"jello", &crc), 400, "other bytes of the same length fail the checksum");
    assert_eq!(put(b"hello", &crc), 200);
    assert_eq!(objects(&store, "trees", "p/up")["p/up"], b"hello");

    // Expired: refused.
    let o = hoist(&store, &state, &["presign", "s3://trees/p/up", "--expires", "1s"]).output().unwrap();
    let url = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(rt.block_on(async { http.get(&url).send().await.unwrap().status().as_u16() }), 403);

    // Bad input: clear errors.
    for (args, needle) in [
        (&["presign", "s3://trees/k", "--content-length", "5"][..], "--method put"),
        (&["presign", "s3://trees/k", "--method", "put", "--checksum", "crc32c:nope"][..], "ALG:BASE64"),
        (&["presign", "s3://trees/k", "--expires", "8d"][..], "7 days"),
    ] {
        let o = hoist(&store, &state, args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
}
