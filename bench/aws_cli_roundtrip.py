#!/usr/bin/env python3
"""`aws s3 cp` round trip of a multi-GiB file through the embedded store, with the AWS CLI's own
checksums (issue 16): too slow for CI, so a script.

1. starts `hoist store` (data dir on disk, next to the file, unless --data-dir),
2. writes a random file of --size-gib GiB, and times a plain `cp` of it on the same disk (the
   peer: what moving the bytes costs without S3),
3. for each checksum mode (the CLI's default, and each --checksum-algorithm given): `aws s3 cp`
   up, `aws s3api head-object --checksum-mode ENABLED` (the checksum and its type), `aws s3 cp`
   down, and a byte compare of the download with the file,
4. prints the CLI's version, what it sent (algorithm and checksum type, from a --debug probe of a
   small multipart upload), and per mode the times and their ratio to the plain `cp`.

Exits non-zero if a round trip fails or the bytes differ.

Usage: bench/aws_cli_roundtrip.py [--size-gib 2] [--hoist target/debug/hoist] [--aws aws]
                                  [--checksum-algorithm CRC64NVME ...] [--work-dir DIR]
The CLI's CRC32C and CRC64NVME need awscrt (`pip install awscli awscrt` into a venv and pass its
`aws` with --aws); CRC32 (the default) does not.
"""

import argparse
import filecmp
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ACCESS, SECRET = "clibench", "clibench-secret-0123456789"
GIB = 1 << 30
CHUNK = 64 << 20


class Store:
    def __init__(self, binary, data, env):
        self.proc = subprocess.Popen([binary, "store", "--data", str(data), "--listen", "127.0.0.1:0"],
                                     env=env, stdout=subprocess.PIPE, text=True)
        self.endpoint = re.search(r"http://\S+", self.proc.stdout.readline()).group(0)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def timed(cmd, env):
    start = time.monotonic()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def probe(aws, endpoint, env, work, extra):
    """What the CLI sends for a multipart upload: (algorithm at Create, checksum type at Create)."""
    small = work / "probe.bin"
    small.write_bytes(os.urandom(9 << 20))  # over the CLI's 8 MiB multipart threshold
    out = subprocess.run([aws, "--endpoint-url", endpoint, "s3", "cp", str(small), "s3://clibench/probe", "--debug",
                          *extra], env=env, capture_output=True, text=True, check=True).stderr
    small.unlink()
    alg = re.search(r"x-amz-checksum-algorithm': b'([A-Z0-9]+)'", out)
    kind = re.search(r"x-amz-checksum-type': b'([A-Z_]+)'", out)  # request headers are bytes
    return (alg.group(1) if alg else None), (kind.group(1) if kind else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gib", type=float, default=2)
    ap.add_argument("--hoist", default="target/debug/hoist")
    ap.add_argument("--aws", default="aws")
    ap.add_argument("--checksum-algorithm", action="append", default=[])
    ap.add_argument("--work-dir", default=None, help="where the file, the download and the store live")
    args = ap.parse_args()
    if shutil.which(args.aws) is None:
        print(f"SKIP: {args.aws!r} is not installed", file=sys.stderr)
        return 0
    work = Path(tempfile.mkdtemp(prefix="hoist-cli-bench-", dir=args.work_dir))
    env = dict(os.environ, HOIST_STORE_ACCESS_KEY=ACCESS, HOIST_STORE_SECRET_KEY=SECRET,
               AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1")
    env.pop("AWS_PROFILE", None)
    store = Store(args.hoist, work / "data", env)
    try:
        version = subprocess.run([args.aws, "--version"], env=env, capture_output=True, text=True).stdout.strip()
        print(f"{version}; store at {store.endpoint}; work dir {work}")
        cli = [args.aws, "--endpoint-url", store.endpoint]
        subprocess.run([*cli, "s3", "mb", "s3://clibench"], env=env, check=True, stdout=subprocess.DEVNULL)
        src, copy, down = work / "file.bin", work / "copy.bin", work / "down.bin"
        size = int(args.size_gib * GIB)
        with open(src, "wb") as f:
            for _ in range(0, size, CHUNK):
                f.write(os.urandom(CHUNK))
            f.truncate(size)
        os.sync()
        peer = timed(["cp", str(src), str(copy)], env)
        os.sync()
        copy.unlink()
        print(f"file: {size / GIB:.2f} GiB; plain cp on the same disk: {peer:.1f} s")
        failed = False
        for alg in [None, *args.checksum_algorithm]:
            extra = ["--checksum-algorithm", alg] if alg else []
            sent_alg, sent_type = probe(args.aws, store.endpoint, env, work, extra)
            key = f"s3://clibench/file-{alg or 'default'}"
            up = timed([*cli, "s3", "cp", str(src), key, *extra], env)
            head = json.loads(subprocess.run([*cli, "s3api", "head-object", "--bucket", "clibench", "--key",
                                              key.rsplit("/", 1)[1], "--checksum-mode", "ENABLED"],
                                             env=env, capture_output=True, text=True, check=True).stdout)
            sums = {k: v for k, v in head.items() if k.startswith("Checksum")}
            get = timed([*cli, "s3", "cp", key, str(down)], env)
            same = filecmp.cmp(src, down, shallow=False)
            failed |= not same or head.get("ContentLength") != size
            down.unlink()
            subprocess.run([*cli, "s3", "rm", key], env=env, check=True, stdout=subprocess.DEVNULL)
            print(f"mode {alg or 'CLI default'}: sent {sent_alg} {sent_type or '(no checksum type)'}; "
                  f"stored {sums}; up {up:.1f} s ({up / peer:.2f}x plain cp), "
                  f"down {get:.1f} s ({get / peer:.2f}x plain cp); bytes equal: {same}")
        return 1 if failed else 0
    finally:
        store.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
