"""Issue 21's goals, checked against one `bench/compare.sh` run: prints a Markdown table.

    python3 bench/goals21.py RESULTS_DIR

Reads the zero-delay, fixed and realistic results that `PARTS="zero-delay fixed realistic" bash
bench/compare.sh` writes (with `OUT=RESULTS_DIR` to keep them apart from the full run's). Ratios are against
nginx in the same run; "added" is the shift of a target's distribution from `direct`'s."""
import json
import os
import sys

res = sys.argv[1]


def load(name):
    p = os.path.join(res, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None


def target(r, name):
    return next((t for t in (r or {}).get("targets", []) if t["name"] == name), None)


def added(r, name, q):
    return target(r, name)["ttft"][q] - target(r, "direct")["ttft"][q]


rows = []


def row(goal, nginx, traced, untraced, met):
    rows.append(f"| {goal} | {nginx} | {traced} | {untraced} | {'yes' if met else '**no**'} |")


def throughput(name, goal, traced_min, untraced_min):
    r = load(name)
    if not r:
        return
    rps = {t["name"]: t["requests_per_second"] for t in r["targets"]}
    n, t, u = rps["nginx"], rps["inferscope"], rps["inferscope-untraced"]
    ok = t >= traced_min * n and (untraced_min is None or u >= untraced_min * n)
    row(goal, f"{n:,.0f} req/s", f"{t:,.0f} ({t / n:.2f} ×)", f"{u:,.0f} ({u / n:.2f} ×)", ok)


def cpu(name, goal):
    r = load(name)
    if not r:
        return
    c = {t["name"]: t["cpu_seconds_per_1000"] for t in r["targets"]}
    n, t, u = c["nginx"], c["inferscope"], c["inferscope-untraced"]
    row(goal, f"{n:.3f} s", f"{t:.3f} s ({t / n:.2f} ×)", f"{u:.3f} s ({u / n:.2f} ×)", t <= 1.2 * n)


throughput("zero-delay-nonstream-c64", "non-streamed throughput (16 tokens, c64) ≥ 0.8 × nginx traced, ≥ 1.0 × untraced", 0.8, 1.0)
throughput("zero-delay-stream64-c64", "streamed throughput (64 tokens, c64) ≥ 0.95 × nginx traced", 0.95, None)
throughput("zero-delay-stream-c64", "streamed throughput (256 tokens, c64) ≥ 0.95 × nginx traced", 0.95, None)
f = load("fixed-stream-poisson100")
if f:
    n50, t50, u50 = (added(f, x, "p50_us") for x in ("nginx", "inferscope", "inferscope-untraced"))
    row("fixed timing: added TTFT median ≤ 1.5 × nginx's", f"{n50:.0f} µs", f"{t50:.0f} µs ({t50 / n50:.2f} ×)",
        f"{u50:.0f} µs ({u50 / n50:.2f} ×)", t50 <= 1.5 * n50 or t50 <= 0)
    n99, t99, u99 = (added(f, x, "p99_us") for x in ("nginx", "inferscope", "inferscope-untraced"))
    row("fixed timing: added TTFT p99 ≤ 1 ms", f"{n99:.0f} µs", f"{t99:.0f} µs", f"{u99:.0f} µs", t99 <= 1000)
cpu("zero-delay-stream64-c64", "CPU per 1,000 streamed requests ≤ 1.2 × nginx's (zero-delay, 64 tokens)")
cpu("zero-delay-stream-c64", "CPU per 1,000 streamed requests ≤ 1.2 × nginx's (zero-delay, 256 tokens)")
cpu("fixed-stream-poisson100", "CPU per 1,000 streamed requests ≤ 1.2 × nginx's (fixed, 64 tokens)")
cpu("zero-delay-stream-open50", "CPU per 1,000 streamed requests ≤ 1.2 × nginx's (zero-delay, 256 tokens, 50/s)")
cpu("realistic-stream-c64", "CPU per 1,000 streamed requests ≤ 1.2 × nginx's (realistic, 256 tokens)")
cpu("realistic-stream-poisson50", "CPU per 1,000 streamed requests ≤ 1.2 × nginx's (realistic, 64 tokens, Poisson 50/s)")

# Every span exported: the traced gateway's counters once its queue drained, against the receiver.
for label, last in [("zero-delay", "zero-delay-stream-open50"), ("fixed", "fixed-stream-poisson100"),
                    ("realistic", "realistic-stream-poisson50")]:
    e, c = load(last + ".exporter"), load(f"receiver-{label}")
    if e is None:
        continue
    lost = sum(e.get(k, 0) for k in ("dropped_spans_total", "failed_spans_total", "rejected_spans_total"))
    got, recv = e.get("exported_spans_total", 0), (c or {}).get("spans")
    rows.append(f"| every span exported ({label}) | | {got:,} exported, {lost} lost, receiver {recv if recv is None else f'{recv:,}'} | "
                f"| {'yes' if lost == 0 and recv == got else '**no**'} |")

print("| goal | nginx | inferscope traced | inferscope untraced | met? |")
print("|---|---|---|---|---|")
print("\n".join(rows))
