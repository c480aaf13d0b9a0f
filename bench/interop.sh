#!/usr/bin/env bash
# Hoist against Garage: a 3-node Garage cluster on loopback (ephemeral ports, temp dirs, layout
# assigned and applied, a key and a bucket) next to a `hoist store` (the embedded store), and the
# same cases on both:
#   put_1gib        hoist put of a SIZE_MIB file, downloaded through a pre-signed GET, byte-compared
#   resume_kill9    hoist put killed with SIGKILL mid-upload, run again: resumes, byte-compared
#   stdin           hoist put - of STDIN_MIB from a pipe, byte-compared
#   serve_browser   hoist serve --s3-endpoint: create upload, pre-signed part PUTs with curl, complete
#   conformance:*   the store and engine conformance tests through HOIST_CONFORMANCE_* variables
# and prints a table: case x embedded store / Garage (pass, fail, skip: why), then timings.
#
# Garage: GARAGE_BIN, else `garage` on PATH, else installed from crates.io into
# GARAGE_ROOT (default ~/.cache/hoist/garage) with
#   cargo install garage --locked --no-default-features --features bundled-libs,lmdb
# hoist: HOIST_BIN, else built here (cargo build --workspace --locked, debug; CARGO_TARGET_DIR
# is honoured). Needs curl (with --aws-sigv4), python3, cmp.
#
# Usage: bench/interop.sh            (SIZE_MIB=1024 STDIN_MIB=256 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
STDIN_MIB=${STDIN_MIB:-256}
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hoist-interop.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '%s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port, seconds
    for _ in $(seq 1 $(($2 * 10))); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    return 1
}

# --- tools --------------------------------------------------------------------------------
GARAGE=${GARAGE_BIN:-$(command -v garage || true)}
if [ -z "$GARAGE" ]; then
    GARAGE_ROOT=${GARAGE_ROOT:-$HOME/.cache/hoist/garage}
    if [ ! -x "$GARAGE_ROOT/bin/garage" ]; then
        say "installing Garage into $GARAGE_ROOT (this takes a while)"
        cargo install garage --locked --no-default-features --features bundled-libs,lmdb --root "$GARAGE_ROOT" >&2
    fi
    GARAGE=$GARAGE_ROOT/bin/garage
fi
if [ -z "${HOIST_BIN:-}" ]; then
    cargo build --workspace --locked >&2
    HOIST_BIN=$TARGET_DIR/debug/hoist
fi
say "garage: $("$GARAGE" --version 2>/dev/null | head -1); hoist: $HOIST_BIN"

# --- Garage: three nodes --------------------------------------------------------------------
RPC_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
GARAGE_S3=""
for i in 1 2 3; do
    d=$WORK/garage$i
    mkdir -p "$d/meta" "$d/data"
    rpc=$(free_port); s3=$(free_port); admin=$(free_port)
    [ "$i" = 1 ] && GARAGE_S3=$s3
    cat >"$d/garage.toml" <<EOF
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "lmdb"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$RPC_SECRET"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF
    "$GARAGE" -c "$d/garage.toml" server >"$d/log" 2>&1 &
    PIDS+=($!)
    wait_port "$rpc" 30 || { say "garage node $i did not start:"; tail -20 "$d/log" >&2; exit 1; }
done
g() { "$GARAGE" -c "$WORK/garage1/garage.toml" "$@"; }
for i in 2 3; do
    g node connect "$("$GARAGE" -c "$WORK/garage$i/garage.toml" node id -q 2>/dev/null)" >/dev/null
done
for i in 1 2 3; do
    id=$("$GARAGE" -c "$WORK/garage$i/garage.toml" node id -q 2>/dev/null | cut -d@ -f1)
    g layout assign -z dc1 -c 10G "${id:0:16}" >/dev/null
done
g layout apply --version 1 >/dev/null
g key create hoist-interop >"$WORK/key.txt"
GARAGE_KEY=$(awk '/Key ID/ {print $NF}' "$WORK/key.txt")
GARAGE_SECRET=$(awk '/Secret key/ {print $NF}' "$WORK/key.txt")
g bucket create hoist-interop >/dev/null
g bucket allow --read --write --owner hoist-interop --key hoist-interop >/dev/null
wait_port "$GARAGE_S3" 30
say "garage: 3 nodes, S3 on 127.0.0.1:$GARAGE_S3, key $GARAGE_KEY"

# --- the embedded store ------------------------------------------------------------------------
STORE_KEY=interop-access
STORE_SECRET=interop-secret-key-0123456789
store_port=$(free_port)
HOIST_STORE_ACCESS_KEY=$STORE_KEY HOIST_STORE_SECRET_KEY=$STORE_SECRET \
    "$HOIST_BIN" store --listen "127.0.0.1:$store_port" --data "$WORK/store" >"$WORK/store.log" 2>&1 &
PIDS+=($!)
wait_port "$store_port" 30
curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$STORE_KEY:$STORE_SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X PUT "http://127.0.0.1:$store_port/hoist-interop" >/dev/null

# --- the cases ------------------------------------------------------------------------------
SRC=$WORK/src.bin
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$SRC"
declare -A RESULT TIME

# target endpoint access secret region
use() {
    T=$1; EP=$2
    export AWS_ACCESS_KEY_ID=$3 AWS_SECRET_ACCESS_KEY=$4 AWS_REGION=$5 AWS_ENDPOINT_URL=$2
    export AWS_EC2_METADATA_DISABLED=true HOIST_STATE_DIR=$WORK/state-$1
    unset AWS_PROFILE
    B=hoist-interop
}
record() { RESULT[$1,$T]=$2; say "[$T] $1: $2"; }
# Downloads s3://$B/$1 through a pre-signed GET and compares it with the file $2 (first $3 bytes).
same() {
    local url; url=$("$HOIST_BIN" presign "s3://$B/$1")
    curl -sf -o "$WORK/down.bin" "$url" && cmp -s <(head -c "$3" "$2") "$WORK/down.bin"
}
timed() { local t0 t1; t0=$(date +%s.%N); "$@"; local rc=$?; t1=$(date +%s.%N); LAST=$(echo "$t1 - $t0" | bc); return $rc; }

case_put() {
    local size; size=$(stat -c %s "$SRC")
    if timed "$HOIST_BIN" put "$SRC" "s3://$B/big.bin" -q 2>"$WORK/put.err"; then
        TIME[put_1gib,$T]=$LAST
        if same big.bin "$SRC" "$size"; then record put_1gib pass; else record put_1gib "fail: the download differs"; fi
    else
        record put_1gib "fail: $(tail -1 "$WORK/put.err")"
    fi
}

case_resume() {
    local size; size=$(stat -c %s "$SRC")
    "$HOIST_BIN" put "$SRC" "s3://$B/resume.bin" --concurrency 2 -q 2>/dev/null &
    local pid=$!
    sleep "${KILL_AFTER:-3}"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local uploads; uploads=$(ls "$HOIST_STATE_DIR" 2>/dev/null | wc -l)
    if "$HOIST_BIN" put "$SRC" "s3://$B/resume.bin" 2>"$WORK/resume.err" >"$WORK/resume.out"; then
        if ! same resume.bin "$SRC" "$size"; then record resume_kill9 "fail: the download differs"
        elif grep -qi resum "$WORK/resume.out" "$WORK/resume.err"; then record resume_kill9 pass
        else record resume_kill9 "fail: the second run did not resume (state files after the kill: $uploads)"; fi
    else
        record resume_kill9 "fail: $(tail -1 "$WORK/resume.err")"
    fi
}

case_stdin() {
    local n=$((STDIN_MIB * 1024 * 1024))
    if head -c "$n" "$SRC" | "$HOIST_BIN" put - "s3://$B/stdin.bin" -q 2>"$WORK/stdin.err"; then
        if same stdin.bin "$SRC" "$n"; then record stdin pass; else record stdin "fail: the download differs"; fi
    else
        record stdin "fail: $(tail -1 "$WORK/stdin.err")"
    fi
}

case_serve() {
    local port; port=$(free_port)
    "$HOIST_BIN" serve --listen "127.0.0.1:$port" --data "$WORK/serve-$T" --dev --workers 0 \
        --s3-endpoint "$EP" --bucket "$B" --region "$AWS_REGION" >"$WORK/serve-$T.log" 2>&1 &
    local pid=$!
    if ! wait_port "$port" 30; then
        kill "$pid" 2>/dev/null || true
        record serve_browser "fail: hoist serve did not start: $(tail -1 "$WORK/serve-$T.log")"
        return
    fi
    local token=""
    for _ in $(seq 1 300); do
        token=$(sed -n 's/^dev token: //p' "$WORK/serve-$T.log")
        [ -n "$token" ] && break
        sleep 0.1
    done
    local n=$((12 * 1024 * 1024 + 4321))
    head -c "$n" "$SRC" >"$WORK/browser.bin"
    # A browser's flow: create, sign part URLs, PUT each part (curl, with the headers the
    # service says the URL binds), complete with the ETags; answers the object key.
    local key
    if key=$(python3 - "http://127.0.0.1:$port" "$token" "$WORK/browser.bin" <<'EOF'
import json, subprocess, sys, urllib.request
api, token, path = sys.argv[1:4]
data = open(path, "rb").read()
def call(method, url, body):
    req = urllib.request.Request(api + url, method=method, data=json.dumps(body).encode(),
        headers={"authorization": "Bearer " + token, "content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))
up = call("POST", "/v1/uploads", {"filename": "browser.bin", "size": len(data), "content_type": "application/octet-stream"})
size, count = up["part_size"], up["part_count"]
signed = call("POST", f"/v1/uploads/{up['id']}/parts", {"part_numbers": list(range(1, count + 1))})
parts = []
for p in signed["parts"]:
    n = p["part_number"]
    chunk = path + f".{n}"
    open(chunk, "wb").write(data[(n - 1) * size:n * size])
    cmd = ["curl", "-sf", "-X", "PUT", "-T", chunk, "-D", "-", "-o", "/dev/null", p["url"]]
    for k, v in (p.get("headers") or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    head = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    etag = next(l.split(":", 1)[1].strip() for l in head.splitlines() if l.lower().startswith("etag:"))
    parts.append({"part_number": n, "etag": etag.strip('"')})
done = call("POST", f"/v1/uploads/{up['id']}/complete", {"parts": parts})
print(done.get("key") or up["key"])
EOF
    ) && same "$key" "$WORK/browser.bin" "$n"; then
        record serve_browser pass
    else
        record serve_browser "fail: see $(basename "$WORK")/serve-$T.log: $(grep -m1 -i error "$WORK/serve-$T.log" || true)"
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

case_conformance() {
    local log=$WORK/conformance-$T.log
    HOIST_CONFORMANCE_ENDPOINT=$EP HOIST_CONFORMANCE_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID \
        HOIST_CONFORMANCE_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY HOIST_CONFORMANCE_BUCKET=$B \
        HOIST_CONFORMANCE_REGION=$AWS_REGION \
        cargo test --workspace --locked --test conformance -- --nocapture --test-threads 2 >"$log" 2>&1 || true
    local c line
    for c in $(grep -oE '^test [a-z0-9_]+ \.\.\.' "$log" | awk '{print $2}' | sort -u); do
        line=$(grep -m1 -E "^CONFORMANCE external $c " "$log" || true)
        if [ -n "$line" ]; then
            record "conformance:$c" "${line#CONFORMANCE external $c }"
        else
            record "conformance:$c" "fail: $(grep -A3 -m1 "'$c'.*panicked" "$log" | sed -n 2p | cut -c1-120)"
        fi
    done
}

run_all() {
    case_put; case_resume; case_stdin; case_serve; case_conformance
}

use embedded "http://127.0.0.1:$store_port" "$STORE_KEY" "$STORE_SECRET" us-east-1
run_all
use garage "http://127.0.0.1:$GARAGE_S3" "$GARAGE_KEY" "$GARAGE_SECRET" garage
run_all

# --- the table ------------------------------------------------------------------------------
printf '\n| case | embedded store | Garage %s (3 nodes) |\n|---|---|---|\n' "$("$GARAGE" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1)"
for c in $(printf '%s\n' "${!RESULT[@]}" | cut -d, -f1 | sort -u); do
    printf '| %s | %s | %s |\n' "$c" "${RESULT[$c,embedded]:-not run}" "${RESULT[$c,garage]:-not run}"
done
if [ -n "${TIME[put_1gib,embedded]:-}" ] && [ -n "${TIME[put_1gib,garage]:-}" ]; then
    printf '\nhoist put of %s MiB: embedded store %.1f s, Garage %.1f s (Garage / embedded = %.2fx the time)\n' "$SIZE_MIB" \
        "${TIME[put_1gib,embedded]}" "${TIME[put_1gib,garage]}" "$(echo "${TIME[put_1gib,garage]} / ${TIME[put_1gib,embedded]}" | bc -l)"
fi
