#!/usr/bin/env bash
# Starts the vLLM router (PyPI `vllm-router`, a Rust binary wheel) in front of one upstream, in
# a venv of its own (target/bench-venvs/vllm-router, created once). Tracing stays off: the
# router can only switch it on from Python.
#   bash bench/peers/vllm-router.sh LISTEN_PORT UPSTREAM_URL     (or --install: only install)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=$root/target/bench-venvs/vllm-router
if [ ! -x "$venv/bin/vllm-router" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check vllm-router==0.1.17 >&2
fi
[ "${1:-}" = --install ] && exit 0
exec "$venv/bin/vllm-router" --host 127.0.0.1 --port "$1" --worker-urls "$2" --policy round_robin \
  --log-level error --disable-retries --disable-circuit-breaker
