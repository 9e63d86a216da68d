#!/usr/bin/env bash
# Checks the gateway against the real vLLM from ../shared/real-vllm (not part of CI: it needs
# vLLM's 6 GB install and a minute to start):
#   - vLLM's own llm_request spans carry the gateway's trace id, with the CLIENT span as parent;
#   - streamed responses through the gateway equal direct ones byte for byte (same seed and
#     X-Request-Id; `created` masked), although the gateway asked vLLM for usage;
#   - the gateway's spans carry usage, TTFT and finish reasons for every request;
#   - a client that leaves mid-stream makes vLLM abort the request;
#   - after vLLM closed an idle pooled connection, the next request (a chunked upload) succeeds.
#
#   bash scripts/real-vllm/gateway-check.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=${INFERSCOPE_SHARED:-$root/../shared}
venv=${REAL_VLLM_HOME:-/tmp/real-vllm}/venv
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin=$root/target/release/inferscope
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
otlp=$(free_port); vport=$(free_port); gport=$(free_port)

bash "$shared/real-vllm/install.sh" >&2
"$venv/bin/python" "$shared/real-vllm/capture_otlp_grpc.py" "$work/vllm-spans.jsonl" "127.0.0.1:$otlp" >"$work/capture.log" 2>&1 &
pids+=($!)
PORT=$vport OTLP_TRACES_ENDPOINT=http://127.0.0.1:$otlp bash "$here/serve.sh" --enable-auto-tool-choice --tool-call-parser hermes \
  --enable-request-id-headers >"$work/vllm.log" 2>&1 &
pids+=($!)
echo "waiting for vLLM on :$vport (logs: $work/vllm.log)" >&2
for _ in $(seq 1 240); do curl -fs "http://127.0.0.1:$vport/health" >/dev/null 2>&1 && break; sleep 1; done
curl -fs "http://127.0.0.1:$vport/health" >/dev/null || { tail -50 "$work/vllm.log"; exit 1; }

OTEL_BSP_SCHEDULE_DELAY=200 "$bin" serve --upstream "http://127.0.0.1:$vport" --listen "127.0.0.1:$gport" \
  --admin off --exporter none --spans-file "$work/gateway-spans.jsonl" >"$work/gateway.log" 2>&1 &
gw=$!
pids+=($gw)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$gport/health" >/dev/null 2>&1 && break; sleep 0.1; done

WORK=$work VPORT=$vport GPORT=$gport "$venv/bin/python" - <<'PY'
import json, os, re, time, urllib.request
work, v, g = os.environ["WORK"], os.environ["VPORT"], os.environ["GPORT"]
def post(port, path, body, rid, read_chunks=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json", "x-request-id": rid})
    with urllib.request.urlopen(req) as r:
        if read_chunks is None:
            return r.read()
        for _ in range(read_chunks):
            r.fp.readline()
        return b""
mask = lambda b: re.sub(rb'"created":\d+', b'"created":0', b)
cases = [
    ("/v1/chat/completions", {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12, "seed": 1, "stream": True}),
    ("/v1/completions", {"model": "tiny-llama", "prompt": "Once upon", "max_tokens": 12, "seed": 2, "stream": True}),
    ("/v1/chat/completions", {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "seed": 3}),
    ("/v1/chat/completions", {"model": "tiny-llama", "messages": [{"role": "user", "content": "weather in Paris?"}], "max_tokens": 60, "seed": 0, "stream": True,
      "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]}),
]
same, flaky, bad = 0, 0, 0
for i, (path, body) in enumerate(cases):
    d = post(v, path, body, f"direct-{i}")
    p = post(g, path, body, f"direct-{i}")
    if mask(d) == mask(p):
        same += 1
        continue
    # Control: is vLLM itself repeatable for this request?
    d2 = post(v, path, body, f"direct-{i}")
    de, pe = mask(d).split(b"\n\n"), mask(p).split(b"\n\n")
    first = next((j for j, (a, b) in enumerate(zip(de, pe)) if a != b), min(len(de), len(pe)) - 1)
    if mask(d) != mask(d2):
        flaky += 1
        print(f"case {i}: vLLM answers this request differently on its own (direct twice differs); not the gateway")
    else:
        bad += 1
        print(f"case {i} differs at event {first}:", "\n direct ", de[first][:400], "\n proxied", pe[first][:400])
print(f"byte-identical through the gateway: {same}/{len(cases)} ({flaky} not repeatable upstream, {bad} real differences)")
if bad:
    raise SystemExit("the gateway changed response bytes")
# A client that leaves after a few chunks.
post(g, "/v1/chat/completions", {"model": "tiny-llama", "messages": [{"role": "user", "content": "long"}], "max_tokens": 400,
     "ignore_eos": True, "stream": True}, "leaver", read_chunks=6)
time.sleep(8)
PY
sleep 6
# Reuse after vLLM's keep-alive timeout: its server (uvicorn) closes a connection idle for 5 s.
# The gateway must notice before sending on a pooled one, even a request with a chunked upload,
# which it cannot send twice.
body='{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
curl -fs -o /dev/null "http://127.0.0.1:$gport/v1/chat/completions" -H 'content-type: application/json' -d "$body"
sleep 7
closed=$(ss -Htn state close-wait "( dport = :$vport )" | wc -l)
code=$(printf '%s' "$body" | curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$gport/v1/chat/completions" \
  -H 'content-type: application/json' -H 'transfer-encoding: chunked' --data-binary @-)
echo "after 7 s idle: $closed pooled connection(s) closed by vLLM; a chunked upload through the gateway got $code"
[ "$code" = 200 ] && [ "$closed" -ge 1 ] || { echo "idle-reuse check failed" >&2; exit 1; }
kill -TERM "$gw"; wait "$gw" || true
metrics=$(curl -fs "http://127.0.0.1:$vport/metrics" | grep -E '^vllm:(request_success_total|num_requests_running)' || true)
echo "$metrics"
echo "vLLM log lines about aborts:"; grep -i 'abort' "$work/vllm.log" | tail -3 || true

WORK=$work python3 - <<'PY'
import json, os, sys
work = os.environ["WORK"]
ours = []
for line in open(f"{work}/gateway-spans.jsonl"):
    for rs in json.loads(line)["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            ours += ss["spans"]
engine = [json.loads(l) for l in open(f"{work}/vllm-spans.jsonl")]
engine = [s for s in engine if s["name"] == "llm_request"]
clients = {s["spanId"]: s for s in ours if s["kind"] in (3, "SPAN_KIND_CLIENT")}
def plain(v):
    (kind, x), = v.items()
    return [plain(e) for e in x.get("values", [])] if kind == "arrayValue" else x
attrs = lambda s: {a["key"]: plain(a["value"]) for a in s["attributes"]}
# Direct requests (the byte-identity baseline) have no parent; every other one must nest.
parented = [e for e in engine if e.get("parent_span_id")]
nested = [e for e in parented if e["parent_span_id"] in clients and clients[e["parent_span_id"]]["traceId"] == e["trace_id"]]
print(f"gateway CLIENT spans: {len(clients)}; vLLM llm_request spans: {len(engine)} ({len(parented)} via the gateway); "
      f"nested under a CLIENT span of the same trace: {len(nested)}")
for c in clients.values():
    a = attrs(c)
    print(f"  {c['name']:<28} out={a.get('gen_ai.usage.output_tokens')} ttfc={a.get('gen_ai.response.time_to_first_chunk')} "
          f"finish={a.get('gen_ai.response.finish_reasons')} error={a.get('error.type')} tools={a.get('inferscope.response.tool_call_names')}")
aborted = [c for c in clients.values() if attrs(c).get("error.type") == "client_aborted"]
print(f"client-aborted exchanges recorded by the gateway: {len(aborted)}")
ok = len(parented) >= 4 and len(nested) == len(parented) and len(aborted) == 1
sys.exit(0 if ok else "nesting check failed")
PY
echo "real-vLLM gateway check passed (artifacts in $work)"
