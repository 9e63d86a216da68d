#!/usr/bin/env bash
# Many concurrent streams through one gateway process: peak RSS, errors, every span exported,
# the gap the gateway adds. Realistic simulator (20 ms steps, batching), the traced gateway
# exporting to a real OTLP receiver (oteltest's gRPC sink) with the simulator's engine spans
# ingested, `inferscope bench` holding N streams. Writes bench/results/scale-cN.{json,md} and
# scale-cN.exporter.json (the gateway's exporter counters once its queue drained).
#
#   bash bench/scale.sh [STREAMS] [SECONDS]      (default 8000 streams, 40 s)
#
# Open files: each stream holds two in the gateway (client and upstream), one in the simulator
# and one in the load generator; these machines cap a process at 20,000, so 8,000 streams is
# the most one gateway can be shown holding here.
#
# Layout as bench/compare.sh: simulator and gateway on CPU 0; load generator and receiver (nice
# 19) on CPU 1. "direct" (the simulator alone) is the baseline of the added-gap figure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
streams=${1:-8000}
secs=${2:-40}
out=$root/bench/results
work=$(mktemp -d)
mkdir -p "$out"
# INFERSCOPE_BIN: another build (e.g. one with --features system-allocator for heaptrack).
if [ -z "${INFERSCOPE_BIN:-}" ]; then
  cargo build --release -q --manifest-path "$root/Cargo.toml" -p inferscope
fi
bin=${INFERSCOPE_BIN:-$root/target/release/inferscope}
py=$(bash "$root/scripts/python-env.sh")
ulimit -n "$(ulimit -Hn)"
pids=()
receiver=
stop_all() {
  # Children first: a GATEWAY_WRAP profiler runs the gateway as its child.
  for p in "${pids[@]}"; do pkill -TERM -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  if [ -n "$receiver" ]; then kill -TERM "$receiver" 2>/dev/null || true; wait "$receiver" 2>/dev/null || true; receiver=; fi
}
trap 'stop_all; rm -rf "$work"' EXIT
. "$root/bench/lib.sh"

sim_port=$(free_port); gw_port=$(free_port); otlp_port=$(free_port); adm_port=$(free_port); ingest_port=$(free_port)
nice -n 19 taskset -c 1 "$py" "$root/bench/peers/otlp_receiver.py" "$otlp_port" > "$work/receiver.json" 2>/dev/null &
receiver=$!
# GATEWAY_WRAP: a command the gateway runs under, e.g. "heaptrack -o /tmp/gw" (a profile).
OTEL_BSP_MAX_QUEUE_SIZE=65536 taskset -c 0 ${GATEWAY_WRAP:-} "$bin" serve --upstream "http://127.0.0.1:$sim_port" --listen "127.0.0.1:$gw_port" \
  --admin "127.0.0.1:$adm_port" --otlp-ingest-grpc "127.0.0.1:$ingest_port" --otlp-ingest-http off \
  --otlp-endpoint "http://127.0.0.1:$otlp_port" --otlp-protocol grpc --log warn & gw=$!; pids+=($gw)
wait_http "http://127.0.0.1:$adm_port/metrics"
taskset -c 0 "$bin" sim --step-base-ms 20 --step-per-seq-ms 0.05 --prefill-per-token-ms 0.02 \
  --max-num-seqs $((streams + 192)) --kv-cache-tokens 4000000 --listen "127.0.0.1:$sim_port" \
  --otlp-traces-endpoint "http://127.0.0.1:$ingest_port" --log warn & sim=$!; pids+=($sim)
wait_http "http://127.0.0.1:$sim_port/health"
wait_http "http://127.0.0.1:$gw_port/health"

name=scale-c$streams
echo "== $name" >&2
taskset -c 1 "$bin" bench --target "direct=http://127.0.0.1:$sim_port" --pid "direct=$sim" \
  --target "inferscope=http://127.0.0.1:$gw_port" --pid "inferscope=$gw" \
  --concurrency "$streams" --stream --max-tokens 32 --duration "$secs" --rounds 1 --warmup 5 \
  --timeout 300 --title "$name" --json "$out/$name.json" --markdown "$out/$name.md" --no-progress >/dev/null

# Every span the gateway made or ingested is exported, failed or dropped once its queue drains.
exporter_counts "$adm_port" "$out/$name.exporter.json"
stop_all
echo "receiver: $(cat "$work/receiver.json")" >&2
cp "$work/receiver.json" "$out/$name.receiver.json"
cat "$out/$name.md"
