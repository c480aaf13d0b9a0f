#!/bin/sh
# Kill -9 at scale: SIGKILL `hoist put` (a file, or stdin with --resume-key) at random moments,
# sometimes twice per upload, until KILLS kills have landed (default 200); resume each to the end.
# Prints one summary line:
#   kill loop: uploads=.. kills=.. (twice: ..) resumed_identical=../.. resent_per_resume mean=.. max=.. over_target=..
#              torn_journals=.. torn_accepted=.. failures=.. uploads_left=..
# The loop itself is crates/hoist-cli/tests/kill_loop.rs (CI runs a few kills); this script only
# asks for more.
#
# Usage: bench/kill_loop.sh [KILLS]     (CARGO_TARGET_DIR is honoured)
set -eu
cd "$(dirname "$0")/.."
KILLS=${1:-200}
LOG=${LOG:-/tmp/hoist-kill-loop.log}
cargo test --workspace --locked --test kill_loop --no-run >/dev/null 2>&1
HOIST_KILL_LOOP_KILLS=$KILLS cargo test --workspace --locked --test kill_loop -- --nocapture >"$LOG" 2>&1 || true
grep -E '^(kill loop:|failed:)' "$LOG"
echo "details: $LOG"
