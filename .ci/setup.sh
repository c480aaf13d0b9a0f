#!/usr/bin/env bash
# Installs what the tests need beyond Rust, once (each step is skipped when already done):
# Debian's Chromium for the browser tests, Debian's ffmpeg (ffmpeg and ffprobe) for the
# pipeline's workers and their tests, and the web tests' npm packages (playwright-core only
# drives that Chromium; it downloads no browser).
# PostgreSQL is started by .ci/postgres.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need+=(ffmpeg)
command -v node >/dev/null || need+=(nodejs npm)
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing ${need[*]}: install them (Debian: sudo apt-get install ${need[*]}) and run again" >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [[ ! -d web/node_modules/playwright-core ]]; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
