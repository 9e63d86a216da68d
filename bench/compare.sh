#!/usr/bin/env bash
# The gateway's overhead, side by side with nginx, the vLLM router and the LiteLLM proxy, all in
# front of the same simulator, in zero-delay and in realistic-timing mode; then 1,000 concurrent
# streams (memory) and a run with the OTLP receiver down. Writes bench/results/*.json and the
# "Gateway overhead" section of BENCHMARKS.md.
#
#   bash bench/compare.sh [SECONDS_PER_TARGET]      (default 20; about 35 minutes in all)
#   PARTS="fixed" bash bench/compare.sh              (only some of: zero-delay realistic fixed
#                                                     c1000 receiver-down; the summary is rebuilt
#                                                     from every result file present)
#   OUT=DIR PARTS="zero-delay fixed" bash bench/compare.sh
#                                                    (results into DIR, BENCHMARKS.md untouched;
#                                                     `python3 bench/goals21.py DIR` checks issue
#                                                     21's goals)
#
# Layout on this 2-core machine: the simulator and the proxy under test share CPU 0; the load
# generator and the OTLP receiver (at nice 19) run on CPU 1. Targets are interleaved (4 rounds), every
# process is fresh for each mode, CPU and peak RSS are read from /proc per target.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=${1:-20}
out=${OUT:-$root/bench/results}
work=$(mktemp -d)
mkdir -p "$out"
cargo build --release -q --manifest-path "$root/Cargo.toml" -p inferscope
bin=$root/target/release/inferscope
py=$(bash "$root/scripts/python-env.sh")
pids=()
receiver=
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  # The receiver last: the gateway flushes its spans to it as it stops.
  if [ -n "$receiver" ]; then kill -TERM "$receiver" 2>/dev/null || true; wait "$receiver" 2>/dev/null || true; receiver=; fi
}
trap 'stop_all; rm -rf "$work"' EXIT
. "$root/bench/lib.sh"

# Installs (once) before anything is timed.
bash "$root/bench/peers/vllm-router.sh" --install
bash "$root/bench/peers/litellm.sh" --install
command -v nginx >/dev/null || (apt-get install -y -qq nginx || sudo -n apt-get install -y -qq nginx) >/dev/null

start_targets() { # mode: zero-delay | realistic | fixed; label for the receiver's count
  local simargs=(--zero-delay) label=${2:-$1}
  if [ "$1" = realistic ]; then simargs=(--step-base-ms 20 --step-per-seq-ms 0.05 --prefill-per-token-ms 0.02 --max-num-seqs 2048 --kv-cache-tokens 4000000); fi
  # Every request on its own clock: what a proxy adds to TTFT and gaps, without a shared step phase.
  if [ "$1" = fixed ]; then simargs=(--fixed-ttft-ms 20 --fixed-itl-ms 10); fi
  sim_port=$(free_port); ngx_port=$(free_port); gw_port=$(free_port); gwoff_port=$(free_port)
  vr_port=$(free_port); ll_port=$(free_port); otlp_port=$(free_port); adm_port=$(free_port)
  # The receiver stands for a trace backend on another machine: at nice 19 it takes only the CPU
  # the load generator leaves, instead of delaying its clock readings while the traced gateway runs.
  nice -n 19 taskset -c 1 "$py" "$root/bench/peers/otlp_receiver.py" "$otlp_port" > "$work/receiver-$label.json" 2>/dev/null &
  receiver=$!
  taskset -c 0 "$bin" sim "${simargs[@]}" --listen "127.0.0.1:$sim_port" --log warn & sim=$!; pids+=($sim)
  wait_http "http://127.0.0.1:$sim_port/health"
  up=http://127.0.0.1:$sim_port
  mkdir -p "$work/nginx-$1"
  taskset -c 0 bash "$root/bench/peers/nginx.sh" "$ngx_port" "127.0.0.1:$sim_port" "$work/nginx-$1" & ngx=$!; pids+=($ngx)
  OTEL_BSP_MAX_QUEUE_SIZE=65536 taskset -c 0 "$bin" serve --upstream "$up" --listen "127.0.0.1:$gw_port" --admin "127.0.0.1:$adm_port" \
    --otlp-ingest-grpc off --otlp-ingest-http off --otlp-endpoint "http://127.0.0.1:$otlp_port" --otlp-protocol grpc --log warn & gw=$!; pids+=($gw)
  OTEL_SDK_DISABLED=true taskset -c 0 "$bin" serve --upstream "$up" --listen "127.0.0.1:$gwoff_port" --admin off \
    --otlp-ingest-grpc off --otlp-ingest-http off --log warn & gwoff=$!; pids+=($gwoff)
  taskset -c 0 bash "$root/bench/peers/vllm-router.sh" "$vr_port" "$up" >/dev/null 2>&1 & vr=$!; pids+=($vr)
  taskset -c 0 bash "$root/bench/peers/litellm.sh" "$ll_port" "$up" "$work/litellm-$1" >/dev/null 2>&1 & ll=$!; pids+=($ll)
  for p in $ngx_port $gw_port $gwoff_port; do wait_http "http://127.0.0.1:$p/health"; done
  wait_http "http://127.0.0.1:$vr_port/health"
  wait_http "http://127.0.0.1:$ll_port/health/liveliness"
  targets=(--target "direct=$up" --pid "direct=$sim"
           --target "nginx=http://127.0.0.1:$ngx_port" --pid "nginx=$ngx"
           --target "inferscope=http://127.0.0.1:$gw_port" --pid "inferscope=$gw"
           --target "inferscope-untraced=http://127.0.0.1:$gwoff_port" --pid "inferscope-untraced=$gwoff"
           --target "vllm-router=http://127.0.0.1:$vr_port" --pid "vllm-router=$vr"
           --target "litellm=http://127.0.0.1:$ll_port" --pid "litellm=$ll")
}

bench() { # name, bench args...
  local name=$1; shift
  echo "== $name" >&2
  taskset -c 1 "$bin" bench "${targets[@]}" --duration "$secs" --rounds 4 --warmup 2 --title "$name" \
    --json "$out/$name.json" --markdown "$out/$name.md" "$@" >/dev/null
  gateway_counts "$name"
}

# The traced gateway's own exporter counters: bench/results/NAME.exporter.json.
gateway_counts() {
  [ -n "${adm_port:-}" ] || return 0
  exporter_counts "$adm_port" "$out/$1.exporter.json" 2>/dev/null
}

parts=" ${PARTS:-zero-delay realistic fixed c1000 receiver-down} "
for mode in zero-delay realistic fixed; do
  [[ $parts == *" $mode "* ]] || continue
  start_targets $mode
  if [ $mode = fixed ]; then
    # About 65 streams in flight (64 tokens: 20 ms + 63 x 10 ms each), Poisson arrivals.
    # Without LiteLLM, which cannot keep up with 6,400 chunks/s (TTFT of 22 s on 2026-12-02) and
    # then keeps CPU 0 busy in the other targets' turns (direct's TTFT p99: 35.7 ms with it, 24.9
    # ms without).
    targets=("${targets[@]:0:20}")
    bench "$mode-stream-poisson100" --rate 100 --poisson --stream --max-tokens 64
  elif [ $mode = zero-delay ]; then
    bench "$mode-stream-c64" --concurrency 64 --stream --max-tokens 256
    # Issue 21's streamed-throughput goal: 64 tokens a stream.
    bench "$mode-stream64-c64" --concurrency 64 --stream --max-tokens 64
    bench "$mode-nonstream-c64" --concurrency 64 --max-tokens 16
    bench "$mode-stream-open50" --rate 50 --stream --max-tokens 256
  else
    bench "$mode-stream-c64" --concurrency 64 --stream --max-tokens 256
    bench "$mode-nonstream-c64" --concurrency 64 --max-tokens 16
    # TTFT and gaps at ~64 streams in flight (64 tokens at ~20 ms = 1.3 s each), arrivals
    # spread at random so they do not lock onto the engine's step period. Without LiteLLM (last),
    # which falls behind (TTFT of 10 s) and then keeps CPU 0 busy in the other targets' turns.
    targets=("${targets[@]:0:20}")
    bench "$mode-stream-poisson50" --rate 50 --poisson --stream --max-tokens 64
  fi
  stop_all
done

# 1,000 concurrent streams, realistic timing: memory.
if [[ $parts == *" c1000 "* ]]; then
  start_targets realistic realistic-c1000
  targets=("${targets[@]:0:12}")   # direct, nginx, inferscope
  bench "realistic-stream-c1000" --concurrency 1000 --stream --max-tokens 128
  stop_all
fi

# The OTLP receiver down: the gateway exports to a closed port for two consecutive runs.
adm_port=
if [[ $parts == *" receiver-down "* ]]; then
  sim_port=$(free_port); gw_port=$(free_port); dead=$(free_port)
  taskset -c 0 "$bin" sim --zero-delay --listen "127.0.0.1:$sim_port" --log warn & sim=$!; pids+=($sim)
  wait_http "http://127.0.0.1:$sim_port/health"
  taskset -c 0 "$bin" serve --upstream "http://127.0.0.1:$sim_port" --listen "127.0.0.1:$gw_port" --admin off \
    --otlp-ingest-grpc off --otlp-ingest-http off --otlp-endpoint "http://127.0.0.1:$dead" --log error & gw=$!; pids+=($gw)
  wait_http "http://127.0.0.1:$gw_port/health"
  targets=(--target "inferscope-receiver-down=http://127.0.0.1:$gw_port" --pid "inferscope-receiver-down=$gw")
  bench "receiver-down-1" --concurrency 64 --stream --max-tokens 64
  bench "receiver-down-2" --concurrency 64 --stream --max-tokens 64
  stop_all
fi

cp "$work"/receiver-*.json "$out/" 2>/dev/null || true
if [ -z "${OUT:-}" ]; then
  python3 "$root/bench/summarize.py" "$out" "$root/BENCHMARKS.md"
  echo "results in $out; BENCHMARKS.md updated" >&2
else
  echo "results in $out" >&2
fi
