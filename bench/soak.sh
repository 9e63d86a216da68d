#!/usr/bin/env bash
# Soak: the gateway (tracing on, exporting to a real OTLP receiver) in front of the simulator at
# a fixed rate for a long time, its RSS sampled every 10 s; reports the slope of RSS over time
# (a leak shows as a steady positive slope). Not part of CI.
#
#   bash bench/soak.sh [MINUTES] [RATE]        (default 30 minutes at 100 streamed req/s)
#   INGEST=1 bash bench/soak.sh ...             the simulator exports its llm_request spans to the
#                                               gateway's OTLP/gRPC ingest (the join table in use)
#
# The simulator steps every 10 ms + 0.05 ms per running sequence, so 100 req/s of 32 tokens keeps
# about 40 streams in flight; an open loop above the engine's capacity (about 600 req/s here) only
# grows its queue, which is not what a soak measures.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
minutes=${1:-30}
rate=${2:-100}
out=$root/bench/results
mkdir -p "$out"
cargo build --release -q --manifest-path "$root/Cargo.toml" -p inferscope
bin=$root/target/release/inferscope
py=$(bash "$root/scripts/python-env.sh")
. "$root/bench/lib.sh"
sim_port=$(free_port); gw_port=$(free_port); otlp_port=$(free_port); ingest_port=$(free_port); admin_port=$(free_port)
if [ "${INGEST:-0}" = 1 ]; then
  sim_extra=(--otlp-traces-endpoint "http://127.0.0.1:$ingest_port"); ingest=(--otlp-ingest-grpc "127.0.0.1:$ingest_port")
  tag=soak-ingest
else
  sim_extra=(); ingest=(--otlp-ingest-grpc off); tag=soak
fi
taskset -c 1 "$py" "$root/bench/peers/otlp_receiver.py" "$otlp_port" > "$out/$tag-receiver.json" 2>/dev/null & receiver=$!
taskset -c 0 "$bin" serve --upstream "http://127.0.0.1:$sim_port" --listen "127.0.0.1:$gw_port" --admin "127.0.0.1:$admin_port" \
  "${ingest[@]}" --otlp-ingest-http off --otlp-endpoint "http://127.0.0.1:$otlp_port" --log warn & gw=$!
taskset -c 0 "$bin" sim --listen "127.0.0.1:$sim_port" --step-base-ms 10 --step-per-seq-ms 0.05 --max-num-seqs 1024 \
  "${sim_extra[@]}" --log warn & sim=$!
trap 'kill $sim $gw 2>/dev/null; wait $gw 2>/dev/null; kill -TERM $receiver 2>/dev/null; wait $receiver 2>/dev/null' EXIT
for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$gw_port/health" && break; sleep 0.2; done
echo "seconds,rss_kib" > "$out/$tag-rss.csv"
(
  start=$(date +%s)
  while kill -0 $gw 2>/dev/null; do
    echo "$(( $(date +%s) - start )),$(awk '/VmRSS/ {print $2}' /proc/$gw/status)" >> "$out/$tag-rss.csv"
    sleep 10
  done
) & sampler=$!
taskset -c 1 "$bin" bench --target "inferscope=http://127.0.0.1:$gw_port" --pid "inferscope=$gw" \
  --rate "$rate" --poisson --stream --max-tokens 32 --duration $((minutes * 60)) --rounds 1 --warmup 0 \
  --title "soak, $minutes min" --json "$out/$tag.json" --markdown "$out/$tag.md" --no-progress >/dev/null
kill $sampler 2>/dev/null || true
# The gateway's own counters (ingest joins, exporter) before it stops; then the receiver's count.
curl -fs "http://127.0.0.1:$admin_port/metrics" | grep -E '^inferscope_(ingest|exporter)_' > "$out/$tag-gateway-counters.txt" || true
sleep 6  # the simulator's span batches (every 5 s) and the gateway's export (every 5 s) drain
kill $sim 2>/dev/null; wait $sim 2>/dev/null || true
kill -TERM $gw 2>/dev/null; wait $gw 2>/dev/null || true
kill -TERM $receiver 2>/dev/null; wait $receiver 2>/dev/null || true
trap - EXIT
python3 - "$out/$tag-rss.csv" "$out/$tag.md" <<'PY'
import csv, sys
rows = [(float(r["seconds"]), float(r["rss_kib"])) for r in csv.DictReader(open(sys.argv[1])) if r["rss_kib"]]
n = len(rows)
# Least-squares slope over the second half (after warm-up allocation settles).
half = rows[n // 2:] if n >= 4 else rows
mx = sum(x for x, _ in half) / len(half); my = sum(y for _, y in half) / len(half)
slope = sum((x - mx) * (y - my) for x, y in half) / max(sum((x - mx) ** 2 for x, _ in half), 1e-9)
line = (f"\nRSS sampled every 10 s: {n} samples, from {rows[0][1]/1024:.1f} MiB to {rows[-1][1]/1024:.1f} MiB "
        f"(max {max(y for _, y in rows)/1024:.1f} MiB); slope over the second half {slope*3600/1024:.2f} MiB per hour.\n")
open(sys.argv[2], "a").write(line)
print(line)
PY
cat "$out/$tag.md"; echo "receiver: $(cat "$out/$tag-receiver.json")"; cat "$out/$tag-gateway-counters.txt"
