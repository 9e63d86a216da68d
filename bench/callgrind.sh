#!/usr/bin/env bash
# Instructions per request of the gateway, counted by valgrind's callgrind (repeatable, unlike
# timings on a shared machine). The gateway runs under callgrind in front of the zero-delay
# simulator and exports every span over gRPC to oteltest's receiver; `inferscope bench` drives it
# closed-loop at concurrency 8. Not part of CI.
#
#   bash bench/callgrind.sh [nonstream|stream] [traced|untraced] [SECONDS]   (default: nonstream traced 15)
#
# Prints instructions per request and leaves the profile in target/callgrind/ for
# `callgrind_annotate --inclusive=yes target/callgrind/NAME.out`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kind=${1:-nonstream}
tracing=${2:-traced}
secs=${3:-15}
command -v valgrind >/dev/null || (apt-get install -y -qq valgrind || sudo -n apt-get install -y -qq valgrind) >/dev/null
cargo build --release -q --manifest-path "$root/Cargo.toml" -p inferscope
bin=$root/target/release/inferscope
py=$(bash "$root/scripts/python-env.sh")
out=$root/target/callgrind
mkdir -p "$out"
name=$kind-$tracing
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
. "$root/bench/lib.sh"

sim_port=$(free_port); gw_port=$(free_port); otlp_port=$(free_port)
"$py" "$root/bench/peers/otlp_receiver.py" "$otlp_port" > "$out/$name.receiver.json" 2>/dev/null & pids+=($!)
"$bin" sim --zero-delay --listen "127.0.0.1:$sim_port" --log warn & pids+=($!)
wait_http "http://127.0.0.1:$sim_port/health"
export_args=(--otlp-endpoint "http://127.0.0.1:$otlp_port" --otlp-protocol grpc)
env_args=(OTEL_BSP_MAX_QUEUE_SIZE=65536)
if [ "$tracing" = untraced ]; then export_args=(); env_args=(OTEL_SDK_DISABLED=true); fi
env "${env_args[@]}" valgrind --tool=callgrind --callgrind-out-file="$out/$name.out" \
  "$bin" serve --upstream "http://127.0.0.1:$sim_port" --listen "127.0.0.1:$gw_port" --admin off \
  --otlp-ingest-grpc off --otlp-ingest-http off "${export_args[@]}" --log warn 2> "$out/$name.valgrind.log" &
gw=$!
wait_http "http://127.0.0.1:$gw_port/health"
stream_args=(--max-tokens 16)
[ "$kind" = stream ] && stream_args=(--stream --max-tokens 256)
"$bin" bench --target "gw=http://127.0.0.1:$gw_port" --concurrency 8 --duration "$secs" --rounds 1 --warmup 0 \
  --json "$out/$name.bench.json" "${stream_args[@]}" > /dev/null
kill -TERM "$gw"; wait "$gw" || true
cleanup; pids=()
requests=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(t["requests"] + sum(t["errors"].values()) for t in d["targets"]))' "$out/$name.bench.json" 2>/dev/null || echo "?")
total=$(callgrind_annotate "$out/$name.out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !t { gsub(",", "", $1); t = $1 } END { print t }')
echo "$name: $total instructions, $requests requests (+1 health check)"
[ "$requests" != "?" ] && python3 -c "import sys; print(f'{int(sys.argv[1]) / (int(sys.argv[2]) + 1):,.0f} instructions per request')" "$total" "$requests"
# Heap allocations per request: the calls into mimalloc (the gateway's allocator, ADR 0008) to
# allocate or reallocate, Rust's and C's alike.
[ "$requests" != "?" ] && python3 - "$out/$name.out" "$requests" <<'PY'
import re, sys
names, calls, cfn = {}, 0, None
entry = re.compile(r"^mi_(malloc|zalloc|calloc|realloc)(_aligned)?$")
for line in open(sys.argv[1]):
    m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
    if m:
        kind, id_, name = m.groups()
        if name:
            names[id_] = name.strip()
        cfn = id_ if kind == "cfn" else None
    elif line.startswith("calls=") and cfn is not None:
        if entry.match(names.get(cfn, "")):
            calls += int(line[6:].split()[0])
        cfn = None
print(f"{calls / (int(sys.argv[2]) + 1):.1f} heap allocations per request")
PY
