#!/usr/bin/env bash
# Checks the OpenInference dialect against a real Arize Phoenix from PyPI: starts Phoenix, the
# simulator and the gateway (`--dialect openinference --capture-content`), sends a chat, a
# streamed chat and an embeddings request, then asks Phoenix's REST API what it made of them:
# LLM / EMBEDDING span kinds, model name, token counts, input and output messages.
#
#   bash scripts/phoenix-check.sh          # exit 0 when Phoenix shows the spans properly
#
# Phoenix (~1 GB with its dependencies) goes into target/phoenix-venv, once; not part of CI.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/target/phoenix-venv
version=${PHOENIX_VERSION:-20.26.1}
if [ ! -x "$venv/bin/phoenix" ] || ! "$venv/bin/pip" show arize-phoenix 2>/dev/null | grep -q "^Version: $version$"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "arize-phoenix==$version"
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin=$root/target/release/inferscope
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ui=$(free_port); grpc=$(free_port); simp=$(free_port); gwp=$(free_port)

PHOENIX_WORKING_DIR=$work PHOENIX_PORT=$ui PHOENIX_GRPC_PORT=$grpc PHOENIX_HOST=127.0.0.1 \
  "$venv/bin/phoenix" serve >"$work/phoenix.log" 2>&1 &
pids+=($!)
"$bin" sim --listen "127.0.0.1:$simp" >"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 240); do curl -fs "http://127.0.0.1:$ui/healthz" >/dev/null 2>&1 && break; sleep 0.5; done
curl -fs "http://127.0.0.1:$ui/healthz" >/dev/null || { cat "$work/phoenix.log"; echo "Phoenix did not start"; exit 1; }

OTEL_RESOURCE_ATTRIBUTES=openinference.project.name=inferscope-check OTEL_BSP_SCHEDULE_DELAY=200 \
  "$bin" serve --upstream "http://127.0.0.1:$simp" --listen "127.0.0.1:$gwp" --admin off \
  --dialect openinference --capture-content \
  --otlp-endpoint "http://127.0.0.1:$grpc" --otlp-protocol grpc >"$work/gw.log" 2>&1 &
gw=$!
pids+=($gw)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$gwp/health" >/dev/null 2>&1 && break; sleep 0.1; done

api="http://127.0.0.1:$gwp/v1"
curl -fs "$api/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"tiny-llama","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello"}],"max_tokens":8}' >/dev/null
curl -fsN "$api/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"tiny-llama","messages":[{"role":"user","content":"Stream it"}],"max_tokens":8,"stream":true}' >/dev/null
curl -fs "$api/embeddings" -H 'content-type: application/json' -d '{"model":"tiny-llama","input":["a","b"]}' >/dev/null
kill -TERM "$gw"; wait "$gw" || true

PHOENIX_URL="http://127.0.0.1:$ui" "$venv/bin/python" - <<'PY'
import json, os, sys, time, urllib.request
url = os.environ["PHOENIX_URL"] + "/v1/projects/inferscope-check/spans?limit=100"
spans = []
for _ in range(60):
    try:
        spans = json.load(urllib.request.urlopen(url)).get("data", [])
    except Exception as e:  # project not created yet
        spans = []
    if len(spans) >= 6:
        break
    time.sleep(0.5)
llm = [s for s in spans if s.get("span_kind") == "LLM"]
emb = [s for s in spans if s.get("span_kind") == "EMBEDDING"]
print(f"Phoenix holds {len(spans)} spans: {len(llm)} LLM, {len(emb)} EMBEDDING")
ok = len(llm) == 2 and len(emb) == 1
for s in llm:
    a = s["attributes"]
    print(f"  {s['name']}: model={a.get('llm.model_name')} tokens={a.get('llm.token_count.prompt')}->{a.get('llm.token_count.completion')} total={a.get('llm.token_count.total')}"
          f" input={str(a.get('input.value'))[:60]!r} output={str(a.get('output.value'))[:40]!r}")
    ok &= a.get("llm.model_name") == "tiny-llama"
    ok &= isinstance(a.get("llm.token_count.completion"), int) and a["llm.token_count.completion"] > 0
    ok &= a.get("llm.input_messages.0.message.role") in ("system", "user")
    ok &= a.get("llm.output_messages.0.message.role") == "assistant"
    ok &= bool(a.get("input.value")) and "output.value" in a
sys.exit(0 if ok else f"Phoenix did not show the spans as expected:\n{json.dumps(spans, indent=1)[:4000]}")
PY
