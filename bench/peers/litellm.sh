#!/usr/bin/env bash
# Starts the LiteLLM proxy (PyPI `litellm[proxy]` 1.100.0, every package pinned with hashes in
# litellm-requirements.txt) in front of one upstream as a `hosted_vllm` model, one worker, no
# database, telemetry off, in a venv of its own (target/bench-venvs/litellm, created once).
#   bash bench/peers/litellm.sh LISTEN_PORT UPSTREAM_URL WORKDIR (or --install: only install)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=$root/target/bench-venvs/litellm
if [ ! -x "$venv/bin/litellm" ]; then
  python3 -m venv "$venv" >&2
  # --no-deps: the file is a complete resolved set; pip 23 backtracking over an extra
  # (`pydantic[email]`) in hash-checking mode fails on the first unpinned candidate it tries.
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --require-hashes -r "$here/litellm-requirements.txt" >&2
fi
[ "${1:-}" = --install ] && exit 0
mkdir -p "$3"
cat > "$3/litellm.yaml" <<YAML
model_list:
  - model_name: tiny-llama
    litellm_params:
      model: hosted_vllm/tiny-llama
      api_base: $2/v1
      api_key: none
litellm_settings:
  telemetry: false
YAML
LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR exec "$venv/bin/litellm" --config "$3/litellm.yaml" --host 127.0.0.1 --port "$1" --num_workers 1
