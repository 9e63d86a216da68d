#!/usr/bin/env bash
# Creates, once, the Python virtual environment the tests use (pinned packages from
# scripts/python-requirements.txt) and prints the path of its python. Safe to run
# concurrently: test binaries call it in parallel and a lock serialises them.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${INFERSCOPE_VENV:-$root/target/venv}
req=$root/scripts/python-requirements.txt
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
  echo "$venv/bin/python"
  exit 0
fi
rm -rf "$venv"
bash "$root/scripts/pip-install.sh" "$venv" \
  "the tests' Python packages (openai, anthropic, oteltest, grpcio, websockets; about 150 MB)" -r "$req"
echo "$want" > "$venv/.requirements.sha256"
echo "$venv/bin/python"
