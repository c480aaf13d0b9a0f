#!/usr/bin/env python3
"""Embedded store costs: CPU seconds of the `hoist store` process per GiB uploaded, and the
latency of CompleteMultipartUpload for a 1 GiB / 100-part upload.

1. starts `hoist store` under GNU time (data dir on tmpfs),
2. uploads a random 1 GiB file with `hoist put` (16 MiB parts, CRC32C) `--runs` times,
3. creates a 100-part upload of 1 GiB with boto3 and times CompleteMultipartUpload,
4. stops the store (SIGTERM) and reports its CPU per GiB received.

Usage: bench/store_bench.py [--runs 3] [--hoist target/release/hoist]
Needs: `pip install boto3`, `apt-get install time`, a release build.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ACCESS, SECRET = "storebench", "storebench-secret-0123456789"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hoist", default=str(Path(__file__).resolve().parent.parent / "target/release/hoist"))
    args = ap.parse_args()
    import boto3

    work = Path(tempfile.mkdtemp(prefix="hoist-store-bench-", dir="/dev/shm"))
    env = dict(os.environ, HOIST_STORE_ACCESS_KEY=ACCESS, HOIST_STORE_SECRET_KEY=SECRET,
               AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1")
    timing = work / "store.time"
    store = subprocess.Popen(
        ["/usr/bin/time", "-f", "%U %S %M", "-o", str(timing), args.hoist, "store", "--data",
         str(work / "data"), "--listen", "127.0.0.1:0"],
        env=env, stdout=subprocess.PIPE, text=True)
    try:
        endpoint = re.search(r"http://\S+", store.stdout.readline()).group(0)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=ACCESS, aws_secret_access_key=SECRET)
        s3.create_bucket(Bucket="bench")
        src = work / "in.bin"
        with open(src, "wb") as f:
            for _ in range(1024):
                f.write(os.urandom(1 << 20))
        for i in range(args.runs):
            subprocess.run([args.hoist, "put", str(src), f"s3://bench/obj{i}", "--endpoint-url", endpoint,
                            "--no-progress", "-q"], env=env, check=True)
            s3.delete_object(Bucket="bench", Key=f"obj{i}")
        gib = args.runs

        part = os.urandom(10 * (1 << 20)) + os.urandom(245_760)  # ~10.24 MiB × 100 ≈ 1 GiB
        latencies = []
        for i in range(3):
            up = s3.create_multipart_upload(Bucket="bench", Key=f"c{i}")["UploadId"]
            parts = []
            for n in range(1, 101):
                r = s3.upload_part(Bucket="bench", Key=f"c{i}", UploadId=up, PartNumber=n, Body=part)
                parts.append({"PartNumber": n, "ETag": r["ETag"]})
            t0 = time.perf_counter()
            s3.complete_multipart_upload(Bucket="bench", Key=f"c{i}", UploadId=up,
                                         MultipartUpload={"Parts": parts})
            latencies.append((time.perf_counter() - t0) * 1000)
            s3.delete_object(Bucket="bench", Key=f"c{i}")
        gib += 3 * 100 * len(part) / (1 << 30)
    finally:
        # Signal the store itself (the child of GNU time), so time can report its usage.
        subprocess.run(["pkill", "-TERM", "-P", str(store.pid)], check=False)
        store.wait(timeout=60)
    user, system, rss = timing.read_text().split()[-3:]
    cpu = float(user) + float(system)
    print(f"store CPU: {cpu:.2f} s for {gib:.2f} GiB received = {cpu / gib:.2f} s/GiB "
          f"(MD5 for ETags + CRC32C + disk writes; peak RSS {int(rss) / 1024:.0f} MiB)")
    print(f"CompleteMultipartUpload, 1 GiB / 100 parts: median {statistics.median(latencies):.1f} ms "
          f"(runs: {', '.join(f'{x:.1f}' for x in latencies)}), client round trip included")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
