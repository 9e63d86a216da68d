#!/usr/bin/env bash
# Checks the gateway's /metrics against a real Prometheus server (Debian's `prometheus`
# package): starts the simulator, the gateway with engine-span ingest (the simulator exports its
# llm_request spans to it, as vLLM would), and Prometheus scraping the admin port every second;
# sends streamed and non-streamed chat and an embeddings request; then asks Prometheus' HTTP API
# for each metric and checks what a dashboard would read: every series present, counts that
# match the requests sent, no empty label values, and the scrape healthy; then, after steady
# traffic, that every query of every panel of the Grafana dashboard (deploy/grafana) returns data. Prometheus asks for
# OpenMetrics; the classic text format (what a scraper without OpenMetrics gets) is checked with
# Prometheus' own `promtool check metrics`. With Prometheus' exemplar storage on, the duration and
# time-to-first-chunk exemplars must name CLIENT spans the gateway exported.
#
#   bash scripts/prometheus-check.sh        # exit 0 when Prometheus reads every metric right
#
# Installs `prometheus` with apt when it is missing. Not part of CI.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v prometheus >/dev/null || (apt-get install -y -qq prometheus || sudo -n apt-get install -y -qq prometheus) >/dev/null
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p inferscope
bin=$root/target/release/inferscope
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -fs -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "not up: $1" >&2; return 1; }

run() {
  local label=$1
  local simp gwp admin ingest promp
  simp=$(free_port); gwp=$(free_port); admin=$(free_port); ingest=$(free_port); promp=$(free_port)
  OTEL_BSP_SCHEDULE_DELAY=200 "$bin" serve --upstream "http://127.0.0.1:$simp" --listen "127.0.0.1:$gwp" --admin "127.0.0.1:$admin" \
    --otlp-ingest-grpc "127.0.0.1:$ingest" --otlp-ingest-http off --exporter none --spans-file "$work/spans-$label.jsonl" \
    >"$work/gw-$label.log" 2>&1 &
  pids+=($!)
  "$bin" sim --listen "127.0.0.1:$simp" --otlp-traces-endpoint "http://127.0.0.1:$ingest" >"$work/sim-$label.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$simp/health"
  wait_http "http://127.0.0.1:$admin/healthz"
  cat >"$work/prom-$label.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: inferscope
    static_configs:
      - targets: ["127.0.0.1:$admin"]
EOF
  prometheus --config.file="$work/prom-$label.yml" --storage.tsdb.path="$work/tsdb-$label" \
    --web.listen-address="127.0.0.1:$promp" --enable-feature=exemplar-storage >"$work/prom-$label.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$promp/-/ready"

  local api="http://127.0.0.1:$gwp/v1"
  for _ in 1 2 3; do
    curl -fsN "$api/chat/completions" -H 'content-type: application/json' \
      -d '{"model":"tiny-llama","messages":[{"role":"user","content":"Stream it"}],"max_tokens":8,"ignore_eos":true,"stream":true}' >/dev/null
  done
  curl -fs "$api/chat/completions" -H 'content-type: application/json' \
    -d '{"model":"tiny-llama","messages":[{"role":"user","content":"Say hello"}],"max_tokens":8}' >/dev/null
  curl -fs "$api/embeddings" -H 'content-type: application/json' -d '{"model":"tiny-llama","input":"a"}' >/dev/null
  curl -fs "http://127.0.0.1:$gwp/health" >/dev/null
  # vLLM exports its spans every few seconds; the simulator at once. Let two scrapes pass.
  sleep 8

  DASHBOARD="$root/deploy/grafana/inferscope.json" GATEWAY="http://127.0.0.1:$gwp" \
  SPANS="$work/spans-$label.jsonl" PROM="http://127.0.0.1:$promp" LABEL="$label" python3 - <<'PY'
import json, os, sys, urllib.error, urllib.parse, urllib.request
prom = os.environ["PROM"]
def query(q):
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
    r = json.load(urllib.request.urlopen(url))
    assert r["status"] == "success", r
    return r["data"]["result"]
def total(q):
    return sum(float(s["value"][1]) for s in query(q))
failures = []
def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f"  ({detail})" if detail else ""))
    if not ok:
        failures.append(what)
targets = json.load(urllib.request.urlopen(prom + "/api/v1/targets"))["data"]["activeTargets"]
check("scrape healthy", all(t["health"] == "up" for t in targets), "; ".join(t.get("lastError", "") for t in targets))
# Four chat calls (three streamed), one embeddings call.
check("operation duration: 5 calls",
      total('sum(gen_ai_client_operation_duration_seconds_count)') == 5,
      total('sum(gen_ai_client_operation_duration_seconds_count)'))
check("time to first chunk: the 3 streamed calls only",
      total('sum(gen_ai_client_operation_time_to_first_chunk_seconds_count)') == 3)
gaps = total('sum(gen_ai_client_operation_time_per_output_chunk_seconds_count)')
check("time per output chunk: one per chunk after the first", gaps >= 3 * 7, gaps)
check("input tokens for chat and embeddings",
      total('sum(gen_ai_client_token_usage_count{gen_ai_token_type="input"})') == 5)
check("no output tokens for embeddings",
      total('sum(gen_ai_client_token_usage_count{gen_ai_token_type="output",gen_ai_operation_name="embeddings"})') == 0)
check("server metrics from vLLM's spans: 4 chat requests",
      total('sum(gen_ai_server_request_duration_seconds_count)') == 4,
      total('sum(gen_ai_server_request_duration_seconds_count)'))
check("server time to first token", total('sum(gen_ai_server_time_to_first_token_seconds_count)') == 4)
check("server time per output token", total('sum(gen_ai_server_time_per_output_token_seconds_count)') == 4)
check("requests counter is one series per status, not split in two",
      total('sum(inferscope_requests_total{route_kind="inference"})') == 5)
check("probes counted, not traced", total('sum(inferscope_requests_total{route_kind="other"})') >= 1)
check("gateway processing histogram", total('sum(inferscope_gateway_processing_seconds_count)') >= 6)
check("in-flight gauge", len(query('inferscope_requests_in_flight')) == 1)
empty = [s["metric"] for s in query('{job="inferscope"}') if any(v == "" for v in s["metric"].values())]
check("no empty label values", not empty, empty[:3])
p50 = query('histogram_quantile(0.5, sum by (le) (rate(gen_ai_client_operation_duration_seconds_bucket[1m])))')
check("histogram_quantile works on the duration buckets", len(p50) == 1)
# Exemplars: a duration or TTFT bucket links to the CLIENT span of a trace the gateway exported.
clients = set()
for line in open(os.environ["SPANS"]):
    for rs in json.loads(line)["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            clients |= {(s["traceId"], s["spanId"]) for s in ss["spans"] if s["kind"] in (3, "SPAN_KIND_CLIENT")}
def exemplars(metric):
    url = prom + "/api/v1/query_exemplars?" + urllib.parse.urlencode({"query": metric, "start": "0", "end": "9999999999"})
    r = json.load(urllib.request.urlopen(url))
    assert r["status"] == "success", r
    return [(e["labels"].get("trace_id"), e["labels"].get("span_id")) for s in r["data"] for e in s["exemplars"]]
for metric, least in [("gen_ai_client_operation_duration_seconds_bucket", 1), ("gen_ai_client_operation_time_to_first_chunk_seconds_bucket", 1)]:
    ex = exemplars(metric)
    check(f"exemplars on {metric} name exported CLIENT spans", len(ex) >= least and all(e in clients for e in ex),
          f"{len(ex)} exemplars, {sum(e in clients for e in ex)} matching {len(clients)} CLIENT spans")
# The Grafana dashboard (deploy/grafana): after a few seconds of steady traffic (a call
# fails now and then), every query of every panel returns data, as Grafana would run it.
import math, time
gw = os.environ["GATEWAY"]
def call(body):
    req = urllib.request.Request(gw + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        urllib.request.urlopen(req).read()
    except urllib.error.HTTPError:
        pass
for _ in range(12):
    call({"model": "tiny-llama", "messages": [{"role": "user", "content": "Stream it"}], "max_tokens": 6, "stream": True})
    call({"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    call({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    time.sleep(0.5)
time.sleep(6)  # the engine's spans, and two more scrapes
dashboard = json.load(open(os.environ["DASHBOARD"]))
for panel in dashboard["panels"]:
    for t in panel["targets"]:
        q = t["expr"].replace("$__rate_interval", "1m").replace("$model", ".*")
        series = query(q)
        finite = [s for s in series if math.isfinite(float(s["value"][1]))]
        check(f"dashboard: {panel['title']} / {t['legendFormat']}", bool(finite), f"{len(series)} series, {len(finite)} finite")
print(f"{os.environ['LABEL']}: {len(failures)} failures")
sys.exit(1 if failures else 0)
PY
  echo "--- the classic text format, linted by promtool"
  curl -fsD "$work/classic.headers" "http://127.0.0.1:$admin/metrics" -H 'accept: text/plain;version=0.0.4' >"$work/classic.txt"
  grep -qi '^content-type: text/plain; version=0.0.4' "$work/classic.headers" || { echo "FAIL classic content type"; cat "$work/classic.headers"; exit 1; }
  if promtool check metrics <"$work/classic.txt"; then echo "ok   promtool: no problems"; else echo "FAIL promtool"; exit 1; fi
  echo "--- OpenMetrics, as Prometheus asks for it"
  curl -fsD "$work/om.headers" "http://127.0.0.1:$admin/metrics" \
    -H 'accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1' >"$work/om.txt"
  grep -qi '^content-type: application/openmetrics-text' "$work/om.headers" && tail -1 "$work/om.txt" | grep -qx '# EOF' \
    && echo "ok   OpenMetrics with # EOF" || { echo "FAIL OpenMetrics"; exit 1; }
}

echo "--- Prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') scraping the admin port"
run default
