#!/bin/sh
# The full fault matrix: every fault of the fault proxy x every operation of `hoist put` where it
# can strike x SEEDS seeds (default 7: 96 cells x 7 = 672 runs), the real `hoist` binary through
# the proxy to the embedded store. Prints one summary line:
#   fault matrix: runs=.. ok=.. typed_errors=.. false_successes=.. hangs=.. orphans=.. rerun_failures=.. (...)
# followed by the failing cells, if any. The test itself is crates/hoist-cli/tests/fault_matrix.rs
# (CI runs it with one seed); this script only chooses more seeds.
#
# Usage: bench/fault_matrix.sh [SEEDS] [JOBS]     (CARGO_TARGET_DIR is honoured)
set -eu
cd "$(dirname "$0")/.."
SEEDS=${1:-7}
JOBS=${2:-4}
LOG=${LOG:-/tmp/hoist-fault-matrix.log}
cargo test --workspace --locked --test fault_matrix --no-run >/dev/null 2>&1
HOIST_FAULT_MATRIX_SEEDS=$SEEDS HOIST_FAULT_MATRIX_JOBS=$JOBS \
    cargo test --workspace --locked --test fault_matrix -- --nocapture >"$LOG" 2>&1 || true
grep -E '^(fault matrix:|failing cell:)' "$LOG"
echo "details: $LOG"
