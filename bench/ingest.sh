#!/usr/bin/env bash
# Engine-span ingest throughput (crates/gateway/benches/ingest.rs): vLLM-sized batches of
# llm_request spans sent to the release gateway's gRPC ingest (CPU 0), every span forwarded
# with its phases to a counting OTLP receiver (CPU 1, with the load). Prints engine spans
# accepted per second and per gateway CPU-second.
#
#   bash bench/ingest.sh [SECONDS]     (default 15)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cargo build --release -q --manifest-path "$root/Cargo.toml" -p inferscope
INFERSCOPE_BIN=$root/target/release/inferscope INGEST_SECONDS=${1:-15} \
  taskset -c 1 cargo bench -q --manifest-path "$root/Cargo.toml" -p inferscope-gateway --bench ingest
