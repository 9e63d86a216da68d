#!/usr/bin/env bash
# The fault matrix (not part of CI): the release gateway against a hostile client, a broken
# upstream and a failing trace backend, each case with fresh processes; prints a table of
# sent / failed / spans expected / spans received / RSS before and after, writes it to
# bench/results/faults.md, and exits non-zero if any case fails.
#
#   bash bench/faults.sh [CASE ...]        (default: every case; names in bench/faults.py)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$root/bench/results"
cargo build --release -q --manifest-path "$root/Cargo.toml" -p inferscope
py=$(bash "$root/scripts/python-env.sh")
exec "$py" "$root/bench/faults.py" "$root/target/release/inferscope" "$root/bench/results/faults.md" "$@"
