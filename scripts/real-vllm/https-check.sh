#!/usr/bin/env bash
# The gateway in front of the real vLLM 0.32 served over HTTPS with mutual TLS (not part of
# CI: it needs vLLM's install and a minute to start). A CA, a server certificate for localhost
# and a client certificate are generated with openssl; vLLM gets `--ssl-certfile`,
# `--ssl-keyfile`, `--ssl-ca-certs` and `--ssl-cert-reqs 2` (client certificate required) and
# exports its spans to the gateway's ingest. Checks:
#   - vLLM refuses a client without a certificate (so the gateway really presents one);
#   - chat (streamed and not) and Messages (streamed) through the gateway equal direct
#     requests byte for byte (same seed and X-Request-Id; `created` and vLLM's random ids
#     masked);
#   - each gateway CLIENT span has `network.protocol.version` 1.1 (uvicorn offers no h2),
#     usage and TTFT, and vLLM's llm_request span nests under it;
#   - /readyz answers 200 (vLLM's /health over TLS);
#   - the Authorization header reached vLLM (vLLM started with --api-key) and no span holds it.
#
#   bash scripts/real-vllm/https-check.sh
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

# A CA, a server certificate for localhost, a client certificate.
cd "$work"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=inferscope check CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
for who in server client; do
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$who" -keyout $who.key -out $who.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >$who.ext
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile $who.ext -out $who.pem 2>/dev/null
done
cd - >/dev/null

bash "$shared/real-vllm/install.sh" >&2
OTEL_BSP_SCHEDULE_DELAY=200 "$bin" serve --upstream "https://localhost:$vport" \
  --upstream-ca-cert "$work/ca.pem" --upstream-client-cert "$work/client.pem" \
  --upstream-client-key "$work/client.key" --listen "127.0.0.1:$gport" \
  --admin "127.0.0.1:$admin" --otlp-ingest-grpc "127.0.0.1:$ingest" --otlp-ingest-http off \
  --exporter none --spans-file "$work/gateway-spans.jsonl" >"$work/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$admin/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
PORT=$vport OTLP_TRACES_ENDPOINT=http://127.0.0.1:$ingest bash "$here/serve.sh" \
  --enable-request-id-headers --api-key sk-check-secret \
  --ssl-certfile "$work/server.pem" --ssl-keyfile "$work/server.key" \
  --ssl-ca-certs "$work/ca.pem" --ssl-cert-reqs 2 >"$work/vllm.log" 2>&1 &
pids+=($!)
echo "waiting for vLLM on https://localhost:$vport (logs: $work/vllm.log)" >&2
up() { curl -fs --cacert "$work/ca.pem" --cert "$work/client.pem" --key "$work/client.key" \
  "https://localhost:$vport/health" >/dev/null 2>&1; }
for _ in $(seq 1 240); do up && break; sleep 1; done
up || { tail -50 "$work/vllm.log"; exit 1; }

WORK=$work VPORT=$vport GPORT=$gport ADMIN=$admin "$venv/bin/python" - <<'PY'
import json, os, re, ssl, time, urllib.request, urllib.error
work, v, g, admin = (os.environ[k] for k in ("WORK", "VPORT", "GPORT", "ADMIN"))
failures = []
def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)
def tls(cert=True):
    ctx = ssl.create_default_context(cafile=f"{work}/ca.pem")
    if cert:
        ctx.load_cert_chain(f"{work}/client.pem", f"{work}/client.key")
    return ctx
def post(url, body, rid, ctx=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={
        "content-type": "application/json", "x-request-id": rid,
        "authorization": "Bearer sk-check-secret"})
    with urllib.request.urlopen(req, context=ctx) as r:
        return r.read()
def mask(b):
    b = re.sub(rb'"created(_at)?":\d+', b'"created":0', b)
    b = re.sub(rb'"chatcmpl-[0-9a-f]{16}"', b'"chatcmpl-x"', b)
    return re.sub(rb'"(resp|msg)_[0-9a-f]{16}"', b'"id-x"', b)

try:
    post(f"https://localhost:{v}/v1/models", {}, "nocert", tls(cert=False))
    check(False, "vLLM refuses a client without a certificate")
except (ssl.SSLError, urllib.error.URLError, ConnectionError) as e:
    check(True, f"vLLM refuses a client without a certificate ({type(e).__name__})")

cases = [
    ("/v1/chat/completions", {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12, "seed": 1, "stream": True}),
    ("/v1/chat/completions", {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "seed": 3}),
    ("/v1/messages", {"model": "tiny-llama", "max_tokens": 10, "temperature": 0, "messages": [{"role": "user", "content": "hi"}], "stream": True}),
]
for i, (path, body) in enumerate(cases):
    direct = post(f"https://localhost:{v}{path}", body, f"https-{i}", tls())
    through = post(f"http://127.0.0.1:{g}{path}", body, f"https-{i}")
    check(mask(direct) == mask(through), f"{path} stream={body.get('stream', False)}: identical through the gateway ({len(through)} bytes)")

with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz") as r:
    check(r.status == 200, "/readyz 200 (vLLM's /health over TLS)")

time.sleep(8)  # vLLM exports its spans in batches about every 5 s
spans = [s for line in open(f"{work}/gateway-spans.jsonl")
         for rs in json.loads(line)["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
def attrs(s):
    return {a["key"]: list(a["value"].values())[0] for a in s.get("attributes", [])}
clients = [s for s in spans if s.get("kind") in (3, "SPAN_KIND_CLIENT")]
check(len(clients) == len(cases), f"{len(clients)} CLIENT spans for {len(cases)} requests")
for c in clients:
    a = attrs(c)
    check(a.get("network.protocol.version") == "1.1" and "gen_ai.usage.output_tokens" in a,
          f"{c['name']}: HTTP/1.1 over TLS, usage {a.get('gen_ai.usage.output_tokens')}")
    engine = [s for s in spans if s["name"] == "llm_request" and s.get("parentSpanId") == c["spanId"]
              and s["traceId"] == c["traceId"]]
    check(len(engine) == 1, f"{c['name']}: vLLM's llm_request nested under the CLIENT span")
check(not any("sk-check-secret" in json.dumps(s) for s in spans), "no span holds the Authorization value")
raise SystemExit(1 if failures else 0)
PY
echo "https check passed; work files in $work" >&2
