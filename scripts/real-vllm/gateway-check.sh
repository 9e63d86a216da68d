#!/usr/bin/env bash
# Checks the gateway against the real vLLM from ../shared/real-vllm (not part of CI: it needs
# vLLM's 6 GB install and a minute to start). vLLM exports its spans to the gateway's ingest,
# as a user would run it. Chat, completions, the Anthropic Messages API and Responses:
#   - vLLM's own llm_request spans carry the gateway's trace id, with the CLIENT span as parent;
#   - n=2 streamed: one engine span per sequence, each paired with its own choice, never a
#     negative TTFT difference;
#   - each trace's usage counted once (the sum over its spans equals the response's usage);
#   - /metrics scraped through the gateway every half second (as AIPerf does) makes no trace;
#   - the admin port's metrics: client and server (from vLLM's spans) histograms that match;
#   - streamed responses through the gateway equal direct ones byte for byte (same seed and
#     X-Request-Id; `created` and vLLM's random Messages/Responses ids masked), although the
#     gateway asked vLLM for usage; n>1 streams choice by choice and Responses streams with
#     their text deltas merged, as vLLM varies those from run to run;
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
ingest=$(free_port); vport=$(free_port); gport=$(free_port); admin=$(free_port)

bash "$shared/real-vllm/install.sh" >&2
# The gateway first, so vLLM's first exports (its start-up spans) find the ingest listening.
OTEL_BSP_SCHEDULE_DELAY=200 "$bin" serve --upstream "http://127.0.0.1:$vport" --listen "127.0.0.1:$gport" \
  --admin "127.0.0.1:$admin" --otlp-ingest-grpc "127.0.0.1:$ingest" --otlp-ingest-http off \
  --exporter none --spans-file "$work/gateway-spans.jsonl" >"$work/gateway.log" 2>&1 &
gw=$!
pids+=($gw)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$admin/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
PORT=$vport OTLP_TRACES_ENDPOINT=http://127.0.0.1:$ingest bash "$here/serve.sh" --enable-auto-tool-choice --tool-call-parser hermes \
  --enable-request-id-headers >"$work/vllm.log" 2>&1 &
pids+=($!)
echo "waiting for vLLM on :$vport (logs: $work/vllm.log)" >&2
for _ in $(seq 1 240); do curl -fs "http://127.0.0.1:$vport/health" >/dev/null 2>&1 && break; sleep 1; done
curl -fs "http://127.0.0.1:$vport/health" >/dev/null || { tail -50 "$work/vllm.log"; exit 1; }

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
# `created` ticks; the Messages and Responses APIs' ids are vLLM's own random ones (not from
# x-request-id), and so are the Responses API's item ids and `created_at`.
def mask(b):
    b = re.sub(rb'"created(_at)?":\d+', b'"created":0', b)
    b = re.sub(rb'"chatcmpl-[0-9a-f]{16}"', b'"chatcmpl-x"', b)
    return re.sub(rb'"(resp|msg)_[0-9a-f]{16}"', b'"id-x"', b)
cases = [
    ("/v1/chat/completions", {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12, "seed": 1, "stream": True}),
    ("/v1/completions", {"model": "tiny-llama", "prompt": "Once upon", "max_tokens": 12, "seed": 2, "stream": True}),
    ("/v1/chat/completions", {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "seed": 3}),
    ("/v1/chat/completions", {"model": "tiny-llama", "messages": [{"role": "user", "content": "weather in Paris?"}], "max_tokens": 60, "seed": 0, "stream": True,
      "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]}),
    # Several choices: the gateway adds include_usage and puts the fingerprint back on each
    # finishing chunk (learned on the connection, or held until the usage chunk).
    ("/v1/chat/completions", {"model": "tiny-llama", "messages": [{"role": "user", "content": "two"}], "max_tokens": 6, "n": 2, "seed": 5, "stream": True}),
    ("/v1/completions", {"model": "tiny-llama", "prompt": ["One", "Two"], "max_tokens": 4, "n": 2, "seed": 6, "stream": True}),
    ("/v1/messages", {"model": "tiny-llama", "max_tokens": 10, "temperature": 0, "system": "Be brief.", "messages": [{"role": "user", "content": "hi"}], "stream": True}),
    ("/v1/messages", {"model": "tiny-llama", "max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
    ("/v1/responses", {"model": "tiny-llama", "input": "hi", "instructions": "Be brief.", "max_output_tokens": 8, "temperature": 0, "stream": True}),
    ("/v1/responses", {"model": "tiny-llama", "input": [{"role": "user", "content": "hi"}], "max_output_tokens": 6, "temperature": 0}),
]
same, flaky, bad = 0, 0, 0
def by_choice(b):
    """A stream's events grouped by choice index, each group in order: vLLM interleaves the
    choices of an n>1 stream differently from run to run (its sequences finish their steps in
    either order), so their global order is not repeatable, while each choice's own events are."""
    groups = {}
    for e in mask(b).split(b"\n\n"):
        key = -1
        if e.startswith(b"data: {"):
            try:
                ch = json.loads(e[6:]).get("choices") or []
                key = ch[0].get("index", -1) if ch else -1
            except ValueError:
                pass
        groups.setdefault(key, []).append(e)
    return groups
def merged_deltas(b):
    """A Responses API stream with its text deltas merged: how many tokens vLLM puts in one
    `response.output_text.delta` depends on timing, so it differs from run to run (and with it
    the sequence numbers), while every other event and the text do not."""
    events, text = [], b""
    for e in mask(b).split(b"\n\n"):
        if b"event: response.output_text.delta" in e:
            text += json.loads(e.split(b"data: ", 1)[1])["delta"].encode()
            continue
        events.append(re.sub(rb'"sequence_number":\d+', b'"sequence_number":0', e))
    return events, text
for i, (path, body) in enumerate(cases):
    d = post(v, path, body, f"direct-{i}")
    p = post(g, path, body, f"direct-{i}")
    if mask(d) == mask(p):
        same += 1
        continue
    if path == "/v1/responses" and body.get("stream") and merged_deltas(d) == merged_deltas(p):
        same += 1
        print(f"case {i}: the same events and text, the deltas grouped otherwise (vLLM's own, run to run)")
        continue
    if (body.get("n", 1) > 1 or isinstance(body.get("prompt"), list)) and by_choice(d) == by_choice(p):
        same += 1
        print(f"case {i}: the same events per choice, interleaved in another order (vLLM's own, run to run)")
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
print(f"byte-identical through the gateway: {same}/{len(cases)} ({flaky} not repeatable upstream, {bad} real differences; n>1 streams compared choice by choice)")
if bad:
    raise SystemExit("the gateway changed response bytes")
# n=2, streamed: one engine span per sequence.
for i in range(3):
    post(g, "/v1/chat/completions", {"model": "tiny-llama", "messages": [{"role": "user", "content": f"two {i}"}],
         "max_tokens": 16, "n": 2, "seed": i, "stream": True}, f"n2-{i}")
    post(g, "/v1/completions", {"model": "tiny-llama", "prompt": f"Two {i}", "max_tokens": 16, "n": 2, "stream": True}, f"n2c-{i}")
# AIPerf-style: /metrics scraped through the gateway while requests run.
import threading
scrapes = {"ok": 0}
def scrape():
    for _ in range(20):
        with urllib.request.urlopen(f"http://127.0.0.1:{g}/metrics") as r:
            if r.status == 200 and b"vllm:" in r.read():
                scrapes["ok"] += 1
        time.sleep(0.5)
t = threading.Thread(target=scrape); t.start()
for i in range(6):
    post(g, "/v1/chat/completions", {"model": "tiny-llama", "messages": [{"role": "user", "content": f"load {i}"}],
         "max_tokens": 24, "stream": True}, f"load-{i}")
t.join()
print(f"/metrics scraped through the gateway: {scrapes['ok']}/20 answered by vLLM")
if scrapes["ok"] != 20:
    raise SystemExit("scrapes through the gateway failed")
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
sleep 6  # vLLM exports its spans every 5 s
curl -fs "http://127.0.0.1:$admin/metrics" >"$work/admin-metrics.txt"
kill -TERM "$gw"; wait "$gw" || true
metrics=$(curl -fs "http://127.0.0.1:$vport/metrics" | grep -E '^vllm:(request_success_total|num_requests_running)' || true)
echo "$metrics"
echo "vLLM log lines about aborts:"; grep -i 'abort' "$work/vllm.log" | tail -3 || true

WORK=$work python3 - <<'PY'
import json, os, re, statistics, sys
work = os.environ["WORK"]
spans = []
for line in open(f"{work}/gateway-spans.jsonl"):
    for rs in json.loads(line)["resourceSpans"]:
        service = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}.get("service.name", {}).get("stringValue")
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                s["service"] = service
                spans.append(s)
def plain(v):
    (kind, x), = v.items()
    if kind == "arrayValue":
        return [plain(e) for e in x.get("values", [])]
    return int(x) if kind == "intValue" else x
attrs = lambda s: {a["key"]: plain(a["value"]) for a in s.get("attributes", [])}
kind = lambda s: s["kind"] in (3, "SPAN_KIND_CLIENT")
clients = {s["spanId"]: s for s in spans if kind(s)}
servers = [s for s in spans if s["kind"] in (2, "SPAN_KIND_SERVER")]
engine = [s for s in spans if s["name"] == "llm_request"]
failures = []
def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f"  ({detail})" if detail else ""))
    if not ok:
        failures.append(what)
parented = [e for e in engine if e.get("parentSpanId")]
nested = [e for e in parented if e["parentSpanId"] in clients and clients[e["parentSpanId"]]["traceId"] == e["traceId"]]
def on(path):
    return [c for c in clients.values() if any(attrs(s).get("url.path") == path for s in servers if s["spanId"] == c.get("parentSpanId"))]
messages = on("/v1/messages")
responses = on("/v1/responses")
resp_nested = [e for e in nested if e["parentSpanId"] in {c["spanId"] for c in responses}]
check("/v1/responses: CLIENT spans with usage and finish reasons, vLLM's llm_request nested under each",
      len(responses) == 2 and len(resp_nested) == 2 and all("gen_ai.usage.output_tokens" in attrs(c) and attrs(c).get("gen_ai.response.finish_reasons") for c in responses),
      [(c["name"], attrs(c).get("gen_ai.usage.output_tokens"), attrs(c).get("gen_ai.response.finish_reasons"), attrs(c).get("gen_ai.response.time_to_first_chunk")) for c in responses])
msg_nested = [e for e in nested if e["parentSpanId"] in {c["spanId"] for c in messages}]
check("/v1/messages: CLIENT spans with usage and finish reasons, vLLM's llm_request nested under each",
      len(messages) == 2 and len(msg_nested) == 2 and all("gen_ai.usage.output_tokens" in attrs(c) and attrs(c).get("gen_ai.response.finish_reasons") for c in messages),
      [(c["name"], attrs(c).get("gen_ai.usage.output_tokens"), attrs(c).get("gen_ai.response.finish_reasons"), attrs(c).get("gen_ai.response.time_to_first_chunk")) for c in messages])
check("every engine span via the gateway nests under its CLIENT span", len(parented) >= 10 and len(nested) == len(parented),
      f"{len(clients)} CLIENT spans, {len(engine)} llm_request ({len(parented)} via the gateway), {len(nested)} nested")
check("engine spans carry service.name=vllm", all(e["service"] == "vllm" for e in engine), {e["service"] for e in engine})
for c in clients.values():
    a = attrs(c)
    print(f"  {c['name']:<28} n={a.get('gen_ai.request.choice.count', 1)} out={a.get('gen_ai.usage.output_tokens')} "
          f"ttfc={a.get('gen_ai.response.time_to_first_chunk')} finish={a.get('gen_ai.response.finish_reasons')} error={a.get('error.type')}")
# n=2: each sequence paired with its own choice, never negative.
n2 = [c for c in clients.values() if attrs(c).get("gen_ai.request.choice.count") == 2 and attrs(c).get("gen_ai.request.stream")]
pairs_ok, outside = True, []
for c in n2:
    seqs = [e for e in nested if e["parentSpanId"] == c["spanId"]]
    idx = sorted(attrs(e).get("inferscope.ttft.choice_index") for e in seqs if "inferscope.ttft.choice_index" in attrs(e))
    diffs = [attrs(e)["inferscope.ttft.outside_engine"] for e in seqs if "inferscope.ttft.outside_engine" in attrs(e)]
    outside += diffs
    # n=2 per prompt: two sequences, or four for two prompts.
    want = len(attrs(c).get("gen_ai.response.finish_reasons") or [])
    if len(seqs) != want or idx != list(range(want)) or any(d < 0 for d in diffs):
        pairs_ok = False
        print(f"  n=2 {c['name']}: {len(seqs)} sequences, choices {idx}, differences {diffs}")
check("n=2 streams: a sequence per choice, each paired with its own, differences never negative", len(n2) >= 6 and pairs_ok,
      f"{len(n2)} calls; outside-engine TTFT min {min(outside, default=0)*1e3:.2f} ms, median {statistics.median(outside or [0])*1e3:.2f} ms")
# Usage once per trace.
by_trace = {}
for s in spans:
    by_trace.setdefault(s["traceId"], []).append(s)
bad = []
for c in clients.values():
    a = attrs(c)
    for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
        if key in a:
            total = sum(attrs(s).get(key, 0) for s in by_trace[c["traceId"]])
            if total != a[key]:
                bad.append((c["name"], key, total, a[key]))
check("each trace's usage counted once", not bad, bad[:3])
several = [c for c in clients.values() if attrs(c).get("gen_ai.request.choice.count") == 2 and attrs(c).get("gen_ai.request.stream")]
check("streams with n=2 have usage", several and all("gen_ai.usage.output_tokens" in attrs(c) for c in several),
      [(c["name"], attrs(c).get("gen_ai.usage.output_tokens")) for c in several][:4])
probes = [s for s in servers if attrs(s).get("url.path") in ("/metrics", "/health")]
check("/metrics and /health through the gateway make no trace", not probes, len(probes))
aborted = [c for c in clients.values() if attrs(c).get("error.type") == "client_aborted"]
check("the client that left is recorded", len(aborted) == 1)
inbound = [attrs(s)["inferscope.gateway.inbound"] for s in servers if "inferscope.gateway.inbound" in attrs(s)]
outbound = [attrs(s)["inferscope.gateway.outbound"] for s in servers if "inferscope.gateway.outbound" in attrs(s)]
upstream = [attrs(s)["inferscope.upstream.time_to_first_byte"] for s in servers if "inferscope.upstream.time_to_first_byte" in attrs(s)]
single = [attrs(e)["inferscope.ttft.outside_engine"] for e in nested if "inferscope.ttft.outside_engine" in attrs(e) and "inferscope.ttft.choice_index" not in attrs(e)]
med = lambda xs: statistics.median(xs) * 1e3 if xs else float("nan")
print(f"medians: gateway inbound {med(inbound):.3f} ms, outbound {med(outbound):.3f} ms, upstream first byte {med(upstream):.2f} ms, "
      f"TTFT outside the engine (single choice) {med(single):.2f} ms over {len(single)} calls")
# The admin port, read as a dashboard would.
text = open(f"{work}/admin-metrics.txt").read()
def total(name):
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name + "{") or l.startswith(name + " "))
client_n, server_n = total("gen_ai_client_operation_duration_seconds_count"), total("gen_ai_server_request_duration_seconds_count")
check("client duration histogram counts every inference call", client_n == len(clients), f"{client_n} vs {len(clients)} CLIENT spans")
check("server duration histogram counts every engine span vLLM sent", server_n == len(engine), f"{server_n} vs {len(engine)}")
check("server TTFT and TPOT present", total("gen_ai_server_time_to_first_token_seconds_count") == len(engine) and total("gen_ai_server_time_per_output_token_seconds_count") > 0)
check("gateway processing histogram", total("inferscope_gateway_processing_seconds_count") >= len(clients))
print(f"{len(failures)} failures")
sys.exit(1 if failures else 0)
PY
echo "real-vLLM gateway check passed (artifacts in $work)"
