#!/usr/bin/env bash
# Runs every Hoist test: Rust unit + integration tests (real HTTP against the embedded store),
# clippy (warnings are errors here, not in the code), and the browser module's unit tests and
# end-to-end tests in headless Chromium against a real `hoist serve`.
# Needs: Rust 1.95, Node 20 + `npm ci` in web/, Debian's chromium (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")"

echo "== cargo test (workspace)"
cargo test --workspace --all-targets --locked

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== web: unit tests and Chromium end-to-end"
cargo build -p hoist-cli --locked
export HOIST_BIN="$PWD/target/debug/hoist"
(cd web && npm test)

echo "== all tests passed"
