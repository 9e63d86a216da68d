#!/usr/bin/env bash
# The minimum supported Rust version (workspace `rust-version`) checked without that toolchain,
# which this network cannot fetch (no static.rust-lang.org): what can be checked is.
#  1. Every package the workspace builds with (dependencies, dev-dependencies, build
#     dependencies, for this platform) declares a rust-version no newer than ours, or none.
#     The resolver ("3", MSRV-aware) prefers such versions; this fails if one slipped in.
#  2. Our own code uses no standard-library API newer than ours: clippy's incompatible_msrv
#     lint, which reads rust-version, is on in `cargo clippy -- -D warnings` (run by .ci/run);
#     here it is run alone, denied, so a failure names the cause.
#  3. Language features newer than ours (e.g. let chains, 1.88) are not checked here: only a
#     rustc of that version can. See docs/adr/0016-msrv-without-the-toolchain.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

msrv=${MSRV_OVERRIDE:-$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
echo "MSRV (workspace rust-version): $msrv"

cargo metadata --format-version 1 --locked --filter-platform x86_64-unknown-linux-gnu \
  | python3 -c '
import json, sys
msrv = tuple(int(x) for x in sys.argv[1].split("."))
meta = json.load(sys.stdin)
used = {n["id"] for n in meta["resolve"]["nodes"]}
too_new, checked, undeclared = [], 0, 0
for p in meta["packages"]:
    if p["id"] not in used:
        continue
    rv = p.get("rust_version")
    if not rv:
        undeclared += 1
        continue
    checked += 1
    v = tuple(int(x) for x in rv.split(".")[:3])
    v = v + (0,) * (3 - len(v))
    if v > msrv + (0,) * (3 - len(msrv)):
        too_new.append("%s %s needs Rust %s" % (p["name"], p["version"], rv))
print(f"{checked} packages declare a rust-version, {undeclared} declare none")
if too_new:
    print("newer than the MSRV:", *too_new, sep="\n  ")
    sys.exit(1)
print("none needs a newer Rust than", sys.argv[1])
' "$msrv"

echo "clippy::incompatible_msrv, denied, over the workspace"
cargo clippy --workspace --all-targets --quiet -- -A clippy::all -D clippy::incompatible_msrv
echo "ok"
