#!/usr/bin/env bash
# Builds the `pip install inferscope-gateway` wheel and checks it as a user would get it:
#   1. maturin (bindings = "bin") builds the release binary with zig as the linker, against
#      glibc 2.17, so the wheel is manylinux2014;
#   2. auditwheel names the platform tag the wheel is consistent with;
#   3. the wheel goes into a fresh virtual environment (no index, no cargo on PATH), and
#      `inferscope --version` and `inferscope demo` run from there.
# The wheel is left in target/wheels. Part of .ci/run.
#   bash scripts/wheel.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
tools=$root/target/wheel-tools
req=$root/scripts/wheel-requirements.txt
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$tools/bin/maturin" ] || [ "$(cat "$tools/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  rm -rf "$tools"
  bash "$root/scripts/pip-install.sh" "$tools" "the wheel tools (maturin, ziglang, auditwheel; about 60 MB)" -r "$req"
  echo "$want" >"$tools/.requirements.sha256"
fi
export PATH="$tools/bin:$PATH"

rm -rf target/wheels
echo "building the wheel (a release build; several minutes on two cores)" >&2
maturin build --release --zig --compatibility manylinux2014 --out target/wheels 2>&1 \
  | grep -E "Built wheel|^error|^warning" >&2 || true
wheel=$(ls target/wheels/inferscope_gateway-*.whl 2>/dev/null | head -1)
[ -n "$wheel" ] || { echo "no wheel was built" >&2; exit 1; }
echo "wheel: $wheel" >&2
show=$(auditwheel show "$wheel")
echo "$show" >&2
echo "$show" | grep -q "manylinux_2_17_x86_64" || { echo "the wheel is not manylinux2014" >&2; exit 1; }

fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
python3 -m venv "$fresh/venv"
"$fresh/venv/bin/pip" install --quiet --disable-pip-version-check --no-index "$wheel"
version=$(env -i PATH="$fresh/venv/bin:/usr/bin:/bin" inferscope --version)
echo "from the wheel: $version" >&2
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
case "$version" in
  "inferscope $(grep -m1 '^version' Cargo.toml | cut -d'"' -f2) (commit $commit)") ;;
  *) echo "unexpected version line: $version (commit $commit)" >&2; exit 1 ;;
esac
(cd "$fresh" && env -i PATH="$fresh/venv/bin:/usr/bin:/bin" HOME="$fresh" \
  timeout 120 inferscope demo --out "$fresh/demo-spans.jsonl" >"$fresh/demo.txt" 2>&1) \
  || { cat "$fresh/demo.txt" >&2; echo "inferscope demo failed from the wheel" >&2; exit 1; }
spans=$(grep -c . "$fresh/demo-spans.jsonl" || true)
[ "$spans" -gt 0 ] || { echo "the demo wrote no spans" >&2; exit 1; }
echo "wheel ok: installed into a fresh venv, --version and demo ran ($spans span lines)" >&2
