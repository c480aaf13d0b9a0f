#!/usr/bin/env bash
# Runs every Hoist test: Rust unit and property tests, integration tests over real HTTP against
# the embedded store (engine round trips, fault injection, store conformance, the built binary),
# clippy with warnings as errors, and the browser side: web/ unit tests (node:test) and the page
# in headless Chromium against the built binary.
set -euo pipefail
cd "$(dirname "$0")"

echo "== cargo test (workspace)"
cargo test --workspace --all-targets --locked

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== web: unit tests (node --test)"
(cd web && npm test)

echo "== web: end to end in Chromium against hoist serve --dev"
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run test:e2e)

echo "== all tests passed"
