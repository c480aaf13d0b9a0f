#!/usr/bin/env python3
"""What S3 event notifications cost the embedded store: `hoist put` of a tree of small files
into a `hoist store` without targets, then into one with `--notify` to a receiver (this script,
checking every signature), in the same run. Prints wall time of each upload, the ratio, and how
long after the upload's end the last event arrived (events/s delivered).

Usage: bench/notify_bench.py HOIST_BIN [FILES] [SIZE_BYTES]   (default 1000 files of 4096 bytes)
"""
import hashlib
import hmac
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOIST = sys.argv[1]
FILES = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
SIZE = int(sys.argv[3]) if len(sys.argv) > 3 else 4096
SECRET = "bench-notify-secret"
ACCESS, KEY = "bench-access", "bench-secret-key-0123456789"

received = []
bad = []


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, self.headers.get("x-hoist-signature", "")):
            bad.append(body)
        received.append((time.monotonic(), json.loads(body)["Records"][0]["s3"]["object"]["key"]))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def store(data, extra):
    port = free_port()
    env = dict(os.environ, HOIST_STORE_ACCESS_KEY=ACCESS, HOIST_STORE_SECRET_KEY=KEY)
    p = subprocess.Popen([HOIST, "store", "--listen", f"127.0.0.1:{port}", "--data", data, *extra],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            break
        except OSError:
            time.sleep(0.1)
    subprocess.run(["curl", "-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{ACCESS}:{KEY}",
                    "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-X", "PUT", f"http://127.0.0.1:{port}/bench"], check=True)
    return p, f"http://127.0.0.1:{port}"


def put(endpoint, tree, state):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=KEY, AWS_ENDPOINT_URL=endpoint,
               AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", HOIST_STATE_DIR=state)
    t0 = time.monotonic()
    subprocess.run([HOIST, "put", tree, "s3://bench/t/", "-q"], env=env, check=True)
    return t0, time.monotonic()


def main():
    http_port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", http_port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as work:
        tree = os.path.join(work, "tree")
        os.makedirs(tree)
        for i in range(FILES):
            with open(os.path.join(tree, f"f{i:05}.bin"), "wb") as f:
                f.write(os.urandom(SIZE))
        results = {}
        for name, extra in [("no targets", []),
                            ("--notify", ["--notify", f"bench=http://127.0.0.1:{http_port}/", "--notify-secret", SECRET])]:
            p, endpoint = store(os.path.join(work, name.strip("-").replace(" ", "")), extra)
            try:
                t0, t1 = put(endpoint, tree, os.path.join(work, "state-" + name.strip("-").replace(" ", "")))
                if extra:
                    deadline = time.monotonic() + 120
                    while len(received) < FILES and time.monotonic() < deadline:
                        time.sleep(0.01)
                results[name] = (t0, t1)
            finally:
                p.terminate()
                p.wait()
        base = results["no targets"][1] - results["no targets"][0]
        t0, t1 = results["--notify"]
        with_n = t1 - t0
        keys = {k for _, k in received}
        last = max(t for t, _ in received) if received else float("nan")
        print(f"{FILES} files of {SIZE} bytes, hoist put of the tree")
        print(f"  no targets: {base:.2f} s; with one --notify target: {with_n:.2f} s (ratio {with_n / base:.2f}x)")
        print(f"  events received: {len(received)} ({len(keys)} distinct keys), bad signatures: {len(bad)}")
        print(f"  last event {last - t1:.2f} s after the upload ended; {len(received) / (last - t0):.0f} events/s from the upload's start")


main()
