#!/usr/bin/env bash
# Checks the OpenInference dialect against a real Arize Phoenix from PyPI: starts Phoenix, the
# gateway (`--dialect openinference --capture-content`, engine-span ingest on) and the simulator,
# which exports its llm_request spans to the gateway's ingest as vLLM would. Sends a chat with a
# system message, a streamed chat, a chat with n=2, a chat with a tool, and an embeddings
# request, then asks Phoenix's REST API what it made of them: span kinds (the root too), model
# name, input (system message included) and output, tool definitions, and, per trace, a token
# total equal to the request's usage (vLLM's spans must not count it again).
#
#   bash scripts/phoenix-check.sh          # exit 0 when Phoenix shows the spans properly
#
# Phoenix (~1 GB with its dependencies) goes into target/phoenix-venv, once; not part of CI.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/target/phoenix-venv
version=${PHOENIX_VERSION:-20.26.1}
if [ ! -x "$venv/bin/phoenix" ] || ! "$venv/bin/pip" show arize-phoenix 2>/dev/null | grep -q "^Version: $version$"; then
  bash "$root/scripts/pip-install.sh" "$venv" "Arize Phoenix $version (about 1 GB with its dependencies)" "arize-phoenix==$version"
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin=$root/target/release/inferscope
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ui=$(free_port); grpc=$(free_port); simp=$(free_port); gwp=$(free_port); ing=$(free_port)

PHOENIX_WORKING_DIR=$work PHOENIX_PORT=$ui PHOENIX_GRPC_PORT=$grpc PHOENIX_HOST=127.0.0.1 \
  "$venv/bin/phoenix" serve >"$work/phoenix.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 240); do curl -fs "http://127.0.0.1:$ui/healthz" >/dev/null 2>&1 && break; sleep 0.5; done
curl -fs "http://127.0.0.1:$ui/healthz" >/dev/null || { cat "$work/phoenix.log"; echo "Phoenix did not start"; exit 1; }

OTEL_RESOURCE_ATTRIBUTES=openinference.project.name=inferscope-check OTEL_BSP_SCHEDULE_DELAY=200 \
  "$bin" serve --upstream "http://127.0.0.1:$simp" --listen "127.0.0.1:$gwp" --admin off \
  --dialect openinference --capture-content \
  --otlp-ingest-grpc "127.0.0.1:$ing" --otlp-ingest-http off \
  --otlp-endpoint "http://127.0.0.1:$grpc" --otlp-protocol grpc >"$work/gw.log" 2>&1 &
gw=$!
pids+=($gw)
OTEL_BSP_SCHEDULE_DELAY=200 "$bin" sim --listen "127.0.0.1:$simp" \
  --otlp-traces-endpoint "http://127.0.0.1:$ing" >"$work/sim.log" 2>&1 &
sim=$!
pids+=($sim)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$simp/health" >/dev/null 2>&1 && break; sleep 0.1; done

api="http://127.0.0.1:$gwp/v1"
curl -fs "$api/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"tiny-llama","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello"}],"max_tokens":8}' >/dev/null
curl -fsN "$api/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"tiny-llama","messages":[{"role":"user","content":"Stream it"}],"max_tokens":8,"stream":true}' >/dev/null
curl -fs "$api/embeddings" -H 'content-type: application/json' -d '{"model":"tiny-llama","input":["a","b"]}' >/dev/null
curl -fs "$api/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"tiny-llama","messages":[{"role":"user","content":"Two answers"}],"max_tokens":6,"n":2}' >/dev/null
curl -fs "$api/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"tiny-llama","messages":[{"role":"user","content":"Weather?"}],"max_tokens":6,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}' >/dev/null
sleep 1
kill -TERM "$sim"; wait "$sim" || true
sleep 1
kill -TERM "$gw"; wait "$gw" || true

PHOENIX_URL="http://127.0.0.1:$ui" "$venv/bin/python" - <<'PY'
import collections, json, os, sys, time, urllib.request
url = os.environ["PHOENIX_URL"] + "/v1/projects/inferscope-check/spans?limit=1000"
spans = []
for _ in range(60):
    try:
        spans = json.load(urllib.request.urlopen(url)).get("data", [])
    except Exception:  # project not created yet
        spans = []
    # 5 requests: 5 SERVER + 5 CLIENT, and vLLM's llm_request spans (n=2 makes two) with their
    # phases.
    if len(spans) >= 10 and sum(s["name"] == "llm_request" for s in spans) >= 5:
        break
    time.sleep(0.5)
failures = []
def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f"  ({detail})" if detail else ""))
    if not ok:
        failures.append(what)
kinds = collections.Counter(s.get("span_kind") for s in spans)
print(f"Phoenix holds {len(spans)} spans: {dict(kinds)}")
llm = [s for s in spans if s.get("span_kind") == "LLM"]
emb = [s for s in spans if s.get("span_kind") == "EMBEDDING"]
check("4 LLM spans (the chat calls, not vLLM's spans under them) and 1 EMBEDDING span",
      len(llm) == 4 and len(emb) == 1, [s["name"] for s in llm])
for s in llm:
    a = s["attributes"]
    print(f"  {s['name']}: model={a.get('llm.model_name')} tokens={a.get('llm.token_count.prompt')}->{a.get('llm.token_count.completion')} total={a.get('llm.token_count.total')}"
          f" input={str(a.get('input.value'))[:70]!r} output={str(a.get('output.value'))[:40]!r}")
    check(f"{s['name']}: model, tokens, messages",
          a.get("llm.model_name") == "tiny-llama"
          and isinstance(a.get("llm.token_count.completion"), int) and a["llm.token_count.completion"] > 0
          and a.get("llm.output_messages.0.message.role") == "assistant"
          and bool(a.get("input.value")) and "output.value" in a)
with_system = [s for s in llm if '"role":"system"' in str(s["attributes"].get("input.value", ""))]
check("the system message is in input.value", len(with_system) == 1)
tools = [s for s in llm if s["attributes"].get("llm.tools.0.tool.json_schema")]
check("tool definitions shown", len(tools) == 1)
e = emb[0]["attributes"] if emb else {}
check("embedding tokens", (e.get("llm.token_count.prompt") or 0) > 0, {k: v for k, v in e.items() if "token" in k})
# Per trace: the root has a kind and the call's input and output; the token total is the
# request's usage, once, however many engine spans sit under it.
by_trace = collections.defaultdict(list)
for s in spans:
    by_trace[s["context"]["trace_id"]].append(s)
roots = [s for s in spans if not s.get("parent_id")]
check("every root has a kind", all(r.get("span_kind") not in (None, "", "UNKNOWN", "unknown") for r in roots),
      collections.Counter(r.get("span_kind") for r in roots))
check("roots of the chat calls show their input and output",
      sum(1 for r in roots if r["attributes"].get("input.value") and r["attributes"].get("output.value")) == 4)
check("every span has a kind", all(s.get("span_kind") not in (None, "", "UNKNOWN") for s in spans),
      collections.Counter(s["name"] for s in spans if s.get("span_kind") in (None, "", "UNKNOWN")))
engine_traces = 0
for trace, group in by_trace.items():
    client = [s for s in group if s.get("span_kind") in ("LLM", "EMBEDDING") and s["name"] != "llm_request"]
    if len(client) != 1:
        continue
    usage = client[0]["attributes"].get("llm.token_count.total")
    counted = sum((s["attributes"].get("llm.token_count.total") or 0) for s in group)
    engines = [s for s in group if s["name"] == "llm_request"]
    engine_traces += bool(engines)
    stray = [s["name"] for s in group if s is not client[0]
             and any(k.startswith(("llm.token_count", "gen_ai.usage")) for k in s["attributes"])]
    check(f"trace {trace[:8]} ({client[0]['name']}, {len(engines)} engine spans): tokens counted once",
          counted == usage and not stray, f"usage {usage}, summed {counted}, also on {stray}")
    for s in engines:
        out = str(s["attributes"].get("output.value") or "")
        check("  llm_request's output is the engine's account, not one made up from its model",
              '"request_id"' in out and '"output_tokens"' in out, out[:80])
check("engine spans arrived through ingest, in the 4 chat traces", engine_traces == 4, engine_traces)
sys.exit(1 if failures else 0)
PY
