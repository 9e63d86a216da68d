#!/usr/bin/env bash
# Throughput of the simulator in zero-delay mode on ONE core: the simulator is pinned to CPU 0
# (taskset), wrk (Debian package, installed if missing) to CPU 1.
#   bash bench/sim-throughput.sh [SECONDS]
# Goals (issue 3): >= 20k non-streamed requests/s and >= 200k streamed chunks/s.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-15}
port=${PORT:-18931}
command -v wrk >/dev/null || { sudo -n apt-get install -y -qq wrk 2>/dev/null || apt-get install -y -qq wrk; }
cargo build --release -q --manifest-path "$root/Cargo.toml" -p inferscope
bin=$root/target/release/inferscope
taskset -c 0 "$bin" sim --zero-delay --listen "127.0.0.1:$port" --log warn &
sim=$!
trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null; rm -f "$lua"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
lua=$(mktemp --suffix .lua)

run() { # label body connections
  cat > "$lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[$2]]
LUA
  echo "== $1 ($3 connections, ${seconds}s)"
  taskset -c 1 wrk -t1 -c"$3" -d"${seconds}s" --latency -s "$lua" "http://127.0.0.1:$port/v1/chat/completions" | grep -E "Requests/sec|Latency|50%|99%|Non-2xx|Socket errors"
}

# Non-streamed chat, 16 tokens each.
run "non-streamed chat, max_tokens=16" '{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":16}' 64
# Streamed chat, 256 tokens: 256 content chunks + role + [DONE] = 258 chunks per request.
run "streamed chat, max_tokens=256 (258 chunks per request)" '{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":256,"stream":true}' 64
echo "chunks/s = streamed requests/s x 258"
cpu=$(ps -o times= -p $sim)
echo "simulator CPU seconds over both runs: $cpu"
