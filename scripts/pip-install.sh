#!/usr/bin/env bash
# Installs Python packages into a virtual environment, saying what and how much first and
# showing each package as pip fetches it (the scripts' installs are hundreds of megabytes).
#   bash scripts/pip-install.sh VENV "WHAT (about SIZE)" PIP-ARGS...
set -euo pipefail
venv=$1 what=$2
shift 2
echo "installing $what into $venv (once; later runs reuse it)" >&2
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
set +e
"$venv/bin/pip" install --disable-pip-version-check --no-input --progress-bar off "$@" 2>&1 \
  | grep --line-buffered -E "^(Collecting|Successfully installed|ERROR|error)" \
  | sed -u 's/^/  pip: /' >&2
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] || { echo "pip failed ($status) installing $what" >&2; exit "$status"; }
