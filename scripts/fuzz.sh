#!/usr/bin/env bash
# Runs a fuzz target coverage-guided with cargo-fuzz (libFuzzer) for a while.
#   bash scripts/fuzz.sh [TARGET] [SECONDS]      default: trace_context 300
# Not part of the test run; the default tests replay the same invariants on generated inputs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${1:-trace_context}
seconds=${2:-300}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
cd "$root/fuzz"
mkdir -p "corpus/$target"
# cargo-fuzz needs nightly flags; the machine has one stable toolchain, so allow them.
RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
  -max_total_time="$seconds" -max_len=${MAX_LEN:-4096}
