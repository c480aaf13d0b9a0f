#!/usr/bin/env bash
# Runs every Hoist test: the formatting check, Rust unit and property tests, integration tests over real HTTP against
# the embedded store (engine round trips, fault injection, store conformance, the upload service,
# the built binary), the service's queries on PostgreSQL, clippy with warnings as errors, and the
# browser side: web/ unit tests (node:test) and the page in headless Chromium against the built
# `hoist serve --dev`.
#
# First it installs what is missing (as root on Debian: Chromium, PostgreSQL, the web tests' npm
# packages; see .ci/setup.sh and .ci/postgres.sh). Set HOIST_TEST_DATABASE_URL to use another
# PostgreSQL, or HOIST_TEST_DATABASE_URL=none to skip it.
set -euo pipefail
cd "$(dirname "$0")"

echo "== setup"
.ci/setup.sh
if [[ -z "${HOIST_TEST_DATABASE_URL:-}" ]]; then
  if ! HOIST_TEST_DATABASE_URL=$(.ci/postgres.sh); then
    echo "WARNING: could not start PostgreSQL (see above): the service's queries are checked on SQLite only" >&2
    HOIST_TEST_DATABASE_URL=none
  fi
fi
[[ "$HOIST_TEST_DATABASE_URL" == none ]] && unset HOIST_TEST_DATABASE_URL
export HOIST_TEST_DATABASE_URL

echo "== cargo fmt --check (rustfmt.toml)"
cargo fmt --all --check

echo "== cargo test (workspace)"
cargo test --workspace --all-targets --locked

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== web: unit tests (node --test)"
(cd web && npm test)

echo "== web: end to end in Chromium against hoist serve --dev"
(cd web && HOIST_BIN="${CARGO_TARGET_DIR:-$PWD/../target}/debug/hoist" npm run test:e2e)

echo "== all tests passed"
