#!/usr/bin/env python3
"""The pipeline measured end to end with the built binary: `hoist serve` (no in-process workers)
and `hoist worker` processes on one database, tiny H.264 videos uploaded through /v1.

Prints, per database (SQLite, and PostgreSQL when --database-url names one):
- Complete -> job claimed: p50/p99 of (job started_at - upload completed_at), from the API, one
  job at a time (the workers idle when it is queued);
- jobs per minute with 1 and with 2 worker processes (`--jobs` queued at once; wall time from the
  first Complete to the last job finished);
- the worker process's peak RSS (VmHWM), ffmpeg excluded (its own processes);
The worker's overhead against bare ffmpeg with the same arguments is measured by
crates/hoist-server/benches/transcode.rs (cargo bench -p hoist-server --bench transcode).

    python3 bench/pipeline_bench.py --hoist target/release/hoist --jobs 40
    python3 bench/pipeline_bench.py --hoist target/release/hoist --database-url postgres://…

Needs ffmpeg on PATH. Starts and stops its own processes; ports are ephemeral on 127.0.0.1.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime


def rfc3339_ms(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000.0


def api(base, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def upload(base, token, name, content):
    c = api(base, token, "POST", "/v1/uploads", {"filename": name, "size": len(content), "content_type": "video/mp4"})
    s = api(base, token, "POST", f"/v1/uploads/{c['id']}/parts", {"part_numbers": [1]})
    req = urllib.request.Request(s["parts"][0]["url"], data=content, method="PUT")
    with urllib.request.urlopen(req) as r:
        etag = r.headers["etag"].strip('"')
    done = api(base, token, "POST", f"/v1/uploads/{c['id']}/complete", {"parts": [{"part_number": 1, "etag": etag}]})
    return c["id"], done["jobs"][0]["id"]


def start(cmd, ready):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    for line in p.stdout:
        lines.append(line.strip())
        if line.startswith(ready):
            break
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    return p, lines


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
    return int(m.group(1)) if m else 0


def run(hoist, workers, jobs, video, database_url):
    tmp = tempfile.mkdtemp(prefix="hoist-pipe-")
    data = os.path.join(tmp, "data")
    cfg = os.path.join(tmp, "hoist.toml")
    with open(cfg, "w") as f:
        f.write('[pipeline]\nworkers = 0\n[[pipeline.rules]]\ncontent_types = ["video/*"]\npreset = "mp4-720p"\n')
    extra = ["--database-url", database_url] if database_url else []
    serve, lines = start([hoist, "serve", "--dev", "--listen", "127.0.0.1:0", "--data", data, "--config", cfg] + extra, "dev token: ")
    value = lambda p: next(l[len(p):].strip() for l in lines if l.startswith(p))
    base, token = value("listening on "), value("dev token: ")
    procs = [start([hoist, "worker", "--data", data, "--config", cfg] + extra, "worker: ")[0] for _ in range(workers)]
    try:
        def wait(job_ids):
            pending, views = set(job_ids), {}
            while pending:
                for j in list(pending):
                    v = api(base, token, "GET", f"/v1/jobs/{j}")
                    if v["state"] in ("succeeded", "failed", "dead", "cancelled"):
                        views[j] = v
                        pending.discard(j)
                time.sleep(0.02)
            return views

        # Latency: one job at a time, the workers idle when it is queued.
        claim, failed = [], 0
        for i in range(min(jobs, 20)):
            upload_id, j = upload(base, token, f"l{i}.mp4", video)
            v = wait([j])[j]
            failed += v["state"] != "succeeded"
            u = api(base, token, "GET", f"/v1/uploads/{upload_id}")
            claim.append(rfc3339_ms(v["started_at"]) - rfc3339_ms(u["completed_at"]))
        # Throughput: `jobs` queued at once.
        t0 = time.monotonic()
        ids = [upload(base, token, f"t{i}.mp4", video)[1] for i in range(jobs)]
        views = wait(ids)
        wall = time.monotonic() - t0
        failed += sum(v["state"] != "succeeded" for v in views.values())
        rss = max(vm_hwm_kib(p.pid) for p in procs)
        return {"wall": wall, "claim": sorted(claim), "failed": failed, "rss_kib": rss}
    finally:
        for p in procs + [serve]:
            p.terminate()
            p.wait()


def pct(xs, q):
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hoist", default="target/release/hoist")
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--database-url", help="a PostgreSQL URL (a fresh schema is made in it)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="hoist-pipe-src-")
    src = os.path.join(tmp, "v.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", src], check=True)
    video = open(src, "rb").read()
    dbs = [("sqlite", None)]
    if a.database_url:
        dbs.append(("postgres", a.database_url))
    for name, url in dbs:
        for workers in (1, 2):
            if url:
                schema = f"bench_{int(time.time() * 1000)}"
                subprocess.run(["psql", url, "-qc", f"CREATE SCHEMA {schema}"], check=True)
                url_s = url + ("&" if "?" in url else "?") + f"options=-c%20search_path%3D{schema}"
            else:
                url_s = None
            r = run(a.hoist, workers, a.jobs, video, url_s)
            c = r["claim"]
            print(f"{name} workers={workers} jobs={a.jobs}: {a.jobs / r['wall'] * 60:.0f} jobs/min, "
                  f"complete->claimed p50 {pct(c, 0.5):.0f} ms p99 {pct(c, 0.99):.0f} ms, "
                  f"worker peak RSS {r['rss_kib'] / 1024:.1f} MiB, failed {r['failed']}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
