#!/usr/bin/env bash
# Compares the simulator with the real vLLM: starts a generative vLLM (port 8011), a pooling
# vLLM for embeddings (8012) and `inferscope sim` (18000), runs scripts/sim-vs-vllm.py, stops
# them. The real vLLM is installed by ../shared/real-vllm on first use (~3 min, 6.3 GB) and
# needs ~4 GB of memory per instance. Not part of the test run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_health() { for _ in $(seq 1 180); do curl -sf "$1/health" >/dev/null && return 0; sleep 1; done; echo "no answer from $1" >&2; return 1; }

PORT=8011 bash "$root/scripts/real-vllm/serve.sh" > /tmp/inferscope-vllm-generate.log 2>&1 & pids+=($!)
PORT=8012 bash "$root/scripts/real-vllm/serve.sh" --runner pooling --convert embed > /tmp/inferscope-vllm-embed.log 2>&1 & pids+=($!)
cargo build --release -q --manifest-path "$root/Cargo.toml" -p inferscope
"$root/target/release/inferscope" sim --listen 127.0.0.1:18000 --step-base-ms 2 --log warn & pids+=($!)
wait_health http://127.0.0.1:18000
wait_health http://127.0.0.1:8011
wait_health http://127.0.0.1:8012
python3 "$root/scripts/sim-vs-vllm.py" --vllm http://127.0.0.1:8011 --vllm-embed http://127.0.0.1:8012 --sim http://127.0.0.1:18000
