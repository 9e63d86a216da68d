#!/usr/bin/env bash
# Installs, once, the JavaScript example's packages (examples/linked-trace/javascript, pinned
# by its package-lock.json) into target/node-linked-trace with `npm ci`, copies the example
# beside them, and prints that directory. Used by crates/gateway/tests/linked_trace.rs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$root/examples/linked-trace/javascript
dir=$root/target/node-linked-trace
mkdir -p "$dir"
exec 9>"$dir.lock"
flock 9
want=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ ! -d "$dir/node_modules" ] || [ "$(cat "$dir/.lock.sha256" 2>/dev/null)" != "$want" ]; then
  echo "installing the JavaScript example's packages (openai, OpenTelemetry; about 15 MB) into $dir (once)" >&2
  rm -rf "$dir/node_modules"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" >"$dir/.lock.sha256"
fi
cp "$src/app.mjs" "$dir/"
echo "$dir"
