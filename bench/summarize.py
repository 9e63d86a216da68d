"""Turns bench/results/*.json into the "Gateway overhead" section of BENCHMARKS.md, with the
issue's goals checked against the numbers.  Usage: summarize.py RESULTS_DIR BENCHMARKS_MD"""
import datetime
import json
import os
import platform
import subprocess
import sys

res, md_path = sys.argv[1], sys.argv[2]
START, END = "<!-- gateway-overhead:start -->", "<!-- gateway-overhead:end -->"


def load(name):
    p = os.path.join(res, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None


def target(r, name):
    return next((t for t in (r or {}).get("targets", []) if t["name"] == name), None)


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def nginx_version():
    try:
        return subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    except OSError:
        return "nginx"


goals = []


def goal(text, value, ok):
    goals.append((text, value, "met" if ok else "**missed**" if ok is False else "n/a"))


def shift(r, name, field, q):
    t, d = target(r, name), target(r, "direct")
    if not t or not d:
        return None
    return t[field][q] - d[field][q]


for mode, scenario in [("fixed", "stream-poisson100"), ("realistic", "stream-poisson50"), ("zero-delay", "stream-c64")]:
    s = load(f"{mode}-{scenario}")
    if s:
        p50, p99 = shift(s, "inferscope", "ttft", "p50_us"), shift(s, "inferscope", "ttft", "p99_us")
        n50 = shift(s, "nginx", "ttft", "p50_us")
        goal(f"{mode} ({scenario}): added TTFT, median ≤ 150 µs", f"{p50:.0f} µs", p50 <= 150)
        goal(f"{mode} ({scenario}): added TTFT, p99 ≤ 1 ms", f"{p99:.0f} µs", p99 <= 1000)
        goal(f"{mode} ({scenario}): added TTFT median ≤ 1.5 × nginx's", f"{p50:.0f} µs vs nginx {n50:.0f} µs", p50 <= max(1.5 * n50, 0) or p50 <= 0)
        g50 = shift(s, "inferscope", "gap", "p50_us")
        reads = ""
        if "frame_gap" in (target(s, "inferscope") or {}):
            reads = f" (between body reads: {shift(s, 'inferscope', 'frame_gap', 'p50_us'):.1f} µs)"
        goal(f"{mode} ({scenario}): added gap between stream chunks (SSE events), median ≤ 20 µs", f"{g50:.1f} µs{reads}", g50 <= 20)
    s = load(f"{mode}-stream-c64")
    if s:
        gi, gn = target(s, "inferscope"), target(s, "nginx")
        if gi and gn and gi["cpu_seconds_per_1000"] and gn["cpu_seconds_per_1000"]:
            ratio = gi["cpu_seconds_per_1000"] / gn["cpu_seconds_per_1000"]
            goal(f"{mode}: CPU per 1,000 streamed requests (256 tokens) ≤ 1.5 × nginx's",
                 f"{gi['cpu_seconds_per_1000']:.3f} s vs {gn['cpu_seconds_per_1000']:.3f} s ({ratio:.2f}×)", ratio <= 1.5)
    n = load(f"{mode}-nonstream-c64")
    if n and mode == "zero-delay":
        rps = {t["name"]: t["requests_per_second"] for t in n["targets"]}
        i = rps.get("inferscope", 0)
        goal("non-streamed throughput ≥ 80 % of nginx's", f"{i:.0f} vs {rps.get('nginx', 0):.0f} req/s", i >= 0.8 * rps.get("nginx", 0))
        goal("non-streamed throughput ≥ 2 × the vLLM router's", f"{i:.0f} vs {rps.get('vllm-router', 0):.0f} req/s", i >= 2 * rps.get("vllm-router", 0))
        goal("non-streamed throughput ≥ 10 × LiteLLM's", f"{i:.0f} vs {rps.get('litellm', 0):.0f} req/s", i >= 10 * rps.get("litellm", 0))

m = load("realistic-stream-c1000")
if m and target(m, "inferscope"):
    rss = target(m, "inferscope")["peak_rss_mib"]
    goal("RSS ≤ 64 MiB holding 1,000 concurrent streams", f"{rss:.1f} MiB", rss <= 64)
d1, d2 = load("receiver-down-1"), load("receiver-down-2")
if d1 and d2:
    t1, t2 = d1["targets"][0], d2["targets"][0]
    failed = sum(t1["errors"].values()) + sum(t2["errors"].values())
    goal("OTLP receiver down: zero failed requests", f"{failed} failed of {t1['requests'] + t2['requests'] + failed}", failed == 0)
    goal("OTLP receiver down: memory stays flat", f"peak RSS {t1['peak_rss_mib']:.1f} MiB, then {t2['peak_rss_mib']:.1f} MiB",
         t2["peak_rss_mib"] <= t1["peak_rss_mib"] * 1.1 + 1)

# Every span exported: the traced gateway's own counters after the last run on each instance
# (queue drained), against what the receiver counted when it stopped.
exported = []
for label, last in [("zero-delay", "zero-delay-stream-open50"), ("realistic", "realistic-stream-poisson50"),
                    ("fixed", "fixed-stream-poisson100"),
                    ("realistic-c1000", "realistic-stream-c1000")]:
    e = load(last + ".exporter")
    c = load(f"receiver-{label}")
    if e is None:
        continue
    got = e.get("exported_spans_total", 0)
    lost = e.get("dropped_spans_total", 0) + e.get("failed_spans_total", 0) + e.get("rejected_spans_total", 0)
    left = e.get("queued_spans", 0)
    recv = c.get("spans") if c else None
    exported.append((label, got, lost, left, recv))
if exported:
    ok = all(lost == 0 and left == 0 and recv == got for _, got, lost, left, recv in exported)
    goal("every span exported (gateway's counters: none dropped or failed; receiver's count equal)",
         "; ".join(f"{label}: {got} exported, {lost} lost, receiver {recv}" for label, got, lost, left, recv in exported), ok)

lines = [START, "## Gateway overhead: direct, nginx, inferscope, vLLM router, LiteLLM", ""]
lines.append(f"Recorded {datetime.date.today()} with `bash bench/compare.sh` on {os.cpu_count()} cores ({cpu_model()}), "
             f"{nginx_version()}, vllm-router 0.1.17, litellm[proxy] 1.100.0. The simulator and the proxy under test share "
             "CPU 0; `inferscope bench` and the OTLP receiver (oteltest's gRPC sink) run on CPU 1, the receiver at nice 19 "
             "(it stands for a trace backend on another machine, so it gets only the CPU the load generator leaves). "
             "Three simulator modes: zero-delay; realistic (20 ms engine steps, batching); fixed (every request on its own "
             "clock: first token 20 ms after it arrives, then one every 10 ms, so one request's timing depends neither on "
             "the others nor on a shared step's phase). Targets are "
             "interleaved in 4 rounds; CPU and peak RSS come from /proc for each target's process tree (for `direct`, the "
             "simulator itself). `inferscope` exports every span to the receiver; `inferscope-untraced` runs with "
             "`OTEL_SDK_DISABLED=true`. \"Added\" figures are the shift of a target's distribution from `direct`'s at each "
             "quantile, not a per-request difference. TTFT is the time to the first body bytes; a gap is the time between two "
             "stream chunks (server-sent events, one `chat.completion.chunk` each), each counted as arrived with the body "
             "read that completed it, so chunks a hop hands over together are 0 apart. \"reads / req\" is how many body "
             "reads a stream took: how each hop frames the stream. The gaps between reads are in the JSON (`frame_gap`).")
lines += ["", "### Goals", "", "| goal | measured | |", "|---|---|---|"]
lines += [f"| {g} | {v} | {ok} |" for g, v, ok in goals]
for name in ["fixed-stream-poisson100", "realistic-stream-poisson50", "realistic-stream-c64", "realistic-nonstream-c64", "zero-delay-stream-c64",
             "zero-delay-nonstream-c64", "zero-delay-stream-open50", "realistic-stream-c1000", "receiver-down-1", "receiver-down-2"]:
    p = os.path.join(res, name + ".md")
    if os.path.exists(p):
        lines += ["", open(p).read().strip()]
spans = []
for mode in ["zero-delay", "realistic", "fixed", "realistic-c1000"]:
    p = os.path.join(res, f"receiver-{mode}.json")
    if os.path.exists(p):
        try:
            c = json.load(open(p))
            spans.append(f"{mode}: the receiver got {c['spans']} spans in {c['requests']} export requests")
        except (ValueError, KeyError):
            pass
if spans:
    lines += ["", "OTLP receiver: " + "; ".join(spans) + "."]
lines.append(END)
section = "\n".join(lines) + "\n"
text = open(md_path).read() if os.path.exists(md_path) else "# Benchmarks\n"
if START in text and END in text:
    text = text[: text.index(START)] + section + text[text.index(END) + len(END) + 1:]
else:
    text = text.rstrip() + "\n\n" + section
open(md_path, "w").write(text)
