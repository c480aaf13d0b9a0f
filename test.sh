#!/usr/bin/env bash
# Runs every Hoist test: Rust unit and property tests, integration tests over real HTTP against
# the embedded store (engine round trips, fault injection, store conformance, the built binary),
# and clippy with warnings as errors.
set -euo pipefail
cd "$(dirname "$0")"

echo "== cargo test (workspace)"
cargo test --workspace --all-targets --locked

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== all tests passed"
