#!/usr/bin/env python3
"""Embedded store costs: CPU seconds (user and system) of the `hoist store` process per GiB
received, and the latency of CompleteMultipartUpload for a 1 GiB / 100-part upload.

1. starts `hoist store` (data dir on tmpfs) — one per `--store` binary, to compare builds in the
   same run on a noisy machine,
2. for each run, each part size and each store in turn: uploads a random 1 GiB file with
   `hoist put` (CRC32C, default concurrency) and reads the store's user and system CPU time
   from /proc/PID/stat before and after (so only that upload is counted),
3. unless --put-only: uploads 1 GiB as 100 parts with boto3 (one at a time, payload signed with
   SHA-256 as boto3 does over plain HTTP) and times CompleteMultipartUpload, 3 times,
4. stops the stores (SIGTERM) and prints medians per store and part size.

Usage: bench/store_bench.py [--runs 2] [--part-sizes 8,16,64] [--put-only]
                            [--hoist target/release/hoist] [--store BIN ...]
                            [--concurrency N] [--data-dir DIR]
--concurrency: `hoist put --concurrency` (default: hoist put's own); --data-dir: where the stores
keep their data (default: tmpfs, /dev/shm; give a directory on disk to count a disk's costs).
Needs: a release build and `pip install boto3`.
"""

import argparse
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

ACCESS, SECRET = "storebench", "storebench-secret-0123456789"
TICK = os.sysconf("SC_CLK_TCK")
GIB = 1 << 30


def cpu(pid):
    """(user, system) seconds of process `pid`, its finished threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


class Store:
    def __init__(self, binary, data, env, index):
        self.binary = binary
        self.proc = subprocess.Popen(
            [binary, "store", "--data", str(data / f"data{index}"), "--listen", "127.0.0.1:0"],
            env=env, stdout=subprocess.PIPE, text=True)
        self.endpoint = re.search(r"http://\S+", self.proc.stdout.readline()).group(0)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2, help="1 GiB uploads per part size and store")
    ap.add_argument("--part-sizes", default="16", help="comma-separated part sizes in MiB (default 16)")
    ap.add_argument("--put-only", action="store_true", help="skip the boto3 upload and Complete timing")
    root = Path(__file__).resolve().parent.parent
    ap.add_argument("--hoist", default=str(root / "target/release/hoist"), help="client binary")
    ap.add_argument("--store", action="append", help="store binary (repeatable; default: --hoist)")
    ap.add_argument("--concurrency", type=int, help="hoist put --concurrency (default: its own)")
    ap.add_argument("--data-dir", type=Path, help="parent of the stores' data (default: tmpfs)")
    args = ap.parse_args()
    stores_bins = args.store or [args.hoist]
    sizes = [int(s) for s in args.part_sizes.split(",")]

    work = Path(tempfile.mkdtemp(prefix="hoist-store-bench-", dir="/dev/shm"))
    env = dict(os.environ, HOIST_STORE_ACCESS_KEY=ACCESS, HOIST_STORE_SECRET_KEY=SECRET,
               AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1")
    data = Path(tempfile.mkdtemp(prefix="hoist-store-bench-", dir=args.data_dir)) if args.data_dir else work
    stores = []
    results = {}  # (store index, part MiB) -> [(user, sys)] per GiB
    try:
        for i, b in enumerate(stores_bins):
            stores.append(Store(b, data, env, i))
        clients = [client(st) for st in stores]
        for c in clients:
            c.create_bucket(Bucket="bench")
        src = work / "in.bin"
        with open(src, "wb") as f:
            for _ in range(1024):
                f.write(os.urandom(1 << 20))
        size_gib = src.stat().st_size / GIB
        for run in range(args.runs):
            for mib in sizes:
                for i, st in enumerate(stores):
                    key = f"s3://bench/obj{run}-{mib}"
                    u0, s0 = cpu(st.proc.pid)
                    subprocess.run([args.hoist, "put", str(src), key, "--endpoint-url", st.endpoint,
                                    "--part-size", f"{mib}MiB", "--checksum", "crc32c", "--no-progress", "-q",
                                    *(["--concurrency", str(args.concurrency)] if args.concurrency else [])],
                                   env=env, check=True)
                    u1, s1 = cpu(st.proc.pid)
                    results.setdefault((i, mib), []).append(((u1 - u0) / size_gib, (s1 - s0) / size_gib))
                    clients[i].delete_object(Bucket="bench", Key=key.split("/", 3)[3])

        print("store CPU per GiB received, `hoist put` of 1 GiB, CRC32C (median of "
              f"{args.runs}; user + sys = total s/GiB):")
        for (i, mib), rs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            user = statistics.median(r[0] for r in rs)
            system = statistics.median(r[1] for r in rs)
            runs = ", ".join(f"{a + b:.2f}" for a, b in rs)
            print(f"  {stores_bins[i]}  {mib:>3} MiB parts: {user:.2f} + {system:.2f} = {user + system:.2f} "
                  f"(runs: {runs})")

        if not args.put_only:
            boto_phase(stores[0])
    finally:
        for st in stores:
            try:
                st.stop()
            except Exception:  # noqa: BLE001 - best effort
                st.proc.kill()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


def client(st):
    import boto3

    return boto3.client("s3", endpoint_url=st.endpoint, region_name="us-east-1",
                        aws_access_key_id=ACCESS, aws_secret_access_key=SECRET)


def boto_phase(st):
    s3 = client(st)
    s3.create_bucket(Bucket="complete")
    part = os.urandom(10 * (1 << 20)) + os.urandom(245_760)  # ~10.24 MiB × 100 ≈ 1 GiB
    latencies = []
    u0, s0 = cpu(st.proc.pid)
    for i in range(3):
        up = s3.create_multipart_upload(Bucket="complete", Key=f"c{i}")["UploadId"]
        parts = []
        for n in range(1, 101):
            r = s3.upload_part(Bucket="complete", Key=f"c{i}", UploadId=up, PartNumber=n, Body=part)
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        t0 = time.perf_counter()
        s3.complete_multipart_upload(Bucket="complete", Key=f"c{i}", UploadId=up,
                                     MultipartUpload={"Parts": parts})
        latencies.append((time.perf_counter() - t0) * 1000)
        s3.delete_object(Bucket="complete", Key=f"c{i}")
    u1, s1 = cpu(st.proc.pid)
    gib = 3 * 100 * len(part) / GIB
    print(f"store CPU per GiB, boto3 upload_part one at a time (SHA-256 signed payload): "
          f"{(u1 - u0) / gib:.2f} + {(s1 - s0) / gib:.2f} = {(u1 - u0 + s1 - s0) / gib:.2f} s/GiB")
    print(f"CompleteMultipartUpload, 1 GiB / 100 parts: median {statistics.median(latencies):.1f} ms "
          f"(runs: {', '.join(f'{x:.1f}' for x in latencies)}), client round trip included")


if __name__ == "__main__":
    sys.exit(main())
