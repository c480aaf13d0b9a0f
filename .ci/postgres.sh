#!/usr/bin/env bash
# Starts the Debian PostgreSQL cluster (installing it if needed) and prints a URL for a fresh
# database `hoist_test` owned by role `hoist`, for the service's Postgres query tests.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null; then
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_lsclusters -h | grep -q "^$ver main" || pg_createcluster "$ver" main >&2
pg_ctlcluster "$ver" main start >&2 2>/dev/null || true
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
su postgres -c "psql -qtAc \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='hoist') THEN CREATE ROLE hoist LOGIN PASSWORD 'hoist'; END IF; END \\\$\\\$;\"" >&2
su postgres -c "dropdb --if-exists hoist_test && createdb -O hoist hoist_test" >&2
echo "postgres://hoist:hoist@127.0.0.1:5432/hoist_test"
