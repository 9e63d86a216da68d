#!/usr/bin/env bash
# Starts the real vLLM from ../shared/real-vllm (installing it first if needed) with the one
# adjustment this machine needs: AMX reported unavailable (see pythonpath/sitecustomize.py).
#   PORT, OTLP_TRACES_ENDPOINT, REAL_VLLM_HOME: as ../shared/real-vllm/serve.sh
#   extra arguments go to `vllm serve`
# Default extra arguments enable tool calls (vLLM 0.32 refuses `tools` without a parser).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
shared=${INFERSCOPE_SHARED:-$here/../../../shared}
bash "$shared/real-vllm/install.sh" >&2
export PYTHONPATH="$here/pythonpath${PYTHONPATH:+:$PYTHONPATH}"
if [ $# -eq 0 ]; then
  set -- --enable-auto-tool-choice --tool-call-parser hermes
fi
exec bash "$shared/real-vllm/serve.sh" "$@"
