#!/usr/bin/env python3
"""Sends the same requests to a real vLLM and to inferscope's simulator and diffs the
responses' shapes: status, content type, JSON keys and value types, and the sequence of
stream events (per choice, since the interleaving of choices is timing).

    python3 scripts/sim-vs-vllm.py --vllm http://127.0.0.1:8011 --sim http://127.0.0.1:18000

`bash scripts/sim-vs-vllm.sh` starts the servers (a generative vLLM, a pooling vLLM for
embeddings, the simulator) and runs this. Standard library only.
Values (ids, texts, token counts, timestamps) are not compared: only what a client or a
parser depends on. Exit status 1 when a shape differs.
"""

import argparse
import json
import sys
import urllib.error
import urllib.request

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    }
]
HI = [{"role": "user", "content": "hi"}]

# (name, method, path, body or None, raw body override)
CASES = [
    ("health", "GET", "/health", None),
    ("models", "GET", "/v1/models", None),
    ("tokenize prompt", "POST", "/tokenize", {"model": "tiny-llama", "prompt": "hello world"}),
    ("tokenize messages", "POST", "/tokenize", {"model": "tiny-llama", "messages": HI}),
    ("chat", "POST", "/v1/chat/completions", {"model": "tiny-llama", "messages": HI, "max_tokens": 8}),
    ("chat without model", "POST", "/v1/chat/completions", {"messages": HI, "max_tokens": 4}),
    ("chat n=2", "POST", "/v1/chat/completions", {"model": "tiny-llama", "messages": HI, "max_tokens": 4, "n": 2}),
    ("chat stream", "POST", "/v1/chat/completions", {"model": "tiny-llama", "messages": HI, "max_tokens": 6, "stream": True}),
    ("chat stream usage", "POST", "/v1/chat/completions",
     {"model": "tiny-llama", "messages": HI, "max_tokens": 6, "stream": True, "stream_options": {"include_usage": True}}),
    ("chat stream continuous usage", "POST", "/v1/chat/completions",
     {"model": "tiny-llama", "messages": HI, "max_tokens": 6, "stream": True,
      "stream_options": {"include_usage": True, "continuous_usage_stats": True}}),
    ("chat stream n=2", "POST", "/v1/chat/completions", {"model": "tiny-llama", "messages": HI, "max_tokens": 3, "n": 2, "stream": True}),
    ("chat stream n=2 usage", "POST", "/v1/chat/completions",
     {"model": "tiny-llama", "messages": HI, "max_tokens": 3, "n": 2, "stream": True, "stream_options": {"include_usage": True}}),
    ("chat stop string", "POST", "/v1/chat/completions",
     {"model": "tiny-llama", "messages": HI, "max_tokens": 60, "stop": ["e"], "stream": True, "seed": 2}),
    ("chat tool required", "POST", "/v1/chat/completions",
     {"model": "tiny-llama", "messages": [{"role": "user", "content": "weather in Paris?"}], "max_tokens": 60,
      "tools": TOOLS, "tool_choice": "required", "seed": 0}),
    ("chat tool required stream", "POST", "/v1/chat/completions",
     {"model": "tiny-llama", "messages": [{"role": "user", "content": "weather in Paris?"}], "max_tokens": 60,
      "tools": TOOLS, "tool_choice": "required", "stream": True, "stream_options": {"include_usage": True}, "seed": 0}),
    ("completions", "POST", "/v1/completions", {"model": "tiny-llama", "prompt": "hi", "max_tokens": 5}),
    ("completions batch", "POST", "/v1/completions", {"model": "tiny-llama", "prompt": ["a b", "c"], "max_tokens": 4}),
    ("completions token ids", "POST", "/v1/completions", {"model": "tiny-llama", "prompt": [1, 2, 3], "max_tokens": 3}),
    ("completions stop", "POST", "/v1/completions", {"model": "tiny-llama", "prompt": "hi", "max_tokens": 40, "stop": ["e"], "temperature": 0}),
    ("completions stream", "POST", "/v1/completions", {"model": "tiny-llama", "prompt": "hi", "max_tokens": 4, "stream": True}),
    ("completions stream n=2 usage", "POST", "/v1/completions",
     {"model": "tiny-llama", "prompt": "hi", "max_tokens": 6, "n": 2, "stream": True, "stream_options": {"include_usage": True}}),
    ("completions stream continuous", "POST", "/v1/completions",
     {"model": "tiny-llama", "prompt": "hi", "max_tokens": 3, "stream": True,
      "stream_options": {"include_usage": True, "continuous_usage_stats": True}}),
    ("completions stream batch ids", "POST", "/v1/completions", {"model": "tiny-llama", "prompt": [[1, 2, 3], [4, 5]], "max_tokens": 2, "stream": True}),
    ("completions clamped to context", "POST", "/v1/completions", {"model": "tiny-llama", "prompt": "hello " * 150, "max_tokens": 300}),
    ("error unknown model", "POST", "/v1/chat/completions", {"model": "nope", "messages": HI}),
    ("error max_tokens over context", "POST", "/v1/chat/completions", {"model": "tiny-llama", "messages": HI, "max_tokens": 100000}),
    ("error prompt over context", "POST", "/v1/completions", {"model": "tiny-llama", "prompt": "hello " * 600, "max_tokens": 5}),
    ("error max_tokens 0", "POST", "/v1/completions", {"model": "tiny-llama", "prompt": "hi", "max_tokens": 0}),
    ("error n 0", "POST", "/v1/completions", {"model": "tiny-llama", "prompt": "hi", "n": 0}),
    ("error missing messages", "POST", "/v1/chat/completions", {"model": "tiny-llama"}),
    ("error wrong type", "POST", "/v1/completions", {"model": "tiny-llama", "prompt": "x", "max_tokens": "five"}),
    ("error malformed json", "POST", "/v1/chat/completions", '{"model": "tiny-llama", "messages": [}'),
    ("error empty body", "POST", "/v1/chat/completions", ""),
    ("error unknown route", "GET", "/v1/nope", None),
    ("error wrong method", "GET", "/v1/chat/completions", None),
    ("embeddings", "POST", "/v1/embeddings", {"model": "tiny-llama", "input": "hello"}),
    ("embeddings batch", "POST", "/v1/embeddings", {"model": "tiny-llama", "input": ["hello", "x"]}),
    ("embeddings base64", "POST", "/v1/embeddings", {"model": "tiny-llama", "input": "hello", "encoding_format": "base64"}),
    ("embeddings token ids", "POST", "/v1/embeddings", {"model": "tiny-llama", "input": [1, 2, 3]}),
    ("embeddings unknown model", "POST", "/v1/embeddings", {"model": "nope", "input": "hello"}),
]


def fetch(base, method, path, body):
    data = None
    headers = {}
    if body is not None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.headers.get("content-type", ""), r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode("utf-8", "replace")


def shape(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return [shape(x) for x in v]
    return {k: shape(x) for k, x in v.items()}


def events(text):
    out = []
    for e in text.split("\n\n"):
        if not e.strip():
            continue
        data = e[len("data: "):] if e.startswith("data: ") else e
        if data == "[DONE]":
            out.append("[DONE]")
        else:
            try:
                out.append(json.loads(data))
            except ValueError:
                out.append({"<unparsable>": data[:60]})
    return out


def per_choice(evts):
    """Event shapes grouped by choice index, plus the non-choice events in order. Runs of
    identical shapes count once: how many content chunks a choice has is a value (tokens)."""
    groups = {}
    for e in evts:
        key = e["choices"][0].get("index") if isinstance(e, dict) and e.get("choices") else "other"
        s = shape(e) if e != "[DONE]" else "[DONE]"
        seq = groups.setdefault(key, [])
        if not seq or seq[-1] != s:
            seq.append(s)
    return groups


def diff(a, b, path="$"):
    """Differences between two shapes, as readable lines (a = vLLM, b = simulator)."""
    if type(a) is not type(b):
        return [f"{path}: vLLM {json.dumps(a)[:80]} vs simulator {json.dumps(b)[:80]}"]
    if isinstance(a, dict):
        lines = []
        for k in a:
            if k not in b:
                lines.append(f"{path}.{k}: only in vLLM")
        for k in b:
            if k not in a:
                lines.append(f"{path}.{k}: only in the simulator")
        if list(k for k in a if k in b) != list(k for k in b if k in a):
            lines.append(f"{path}: key order differs: vLLM {list(a)} vs simulator {list(b)}")
        for k in a:
            if k in b:
                lines.extend(diff(a[k], b[k], f"{path}.{k}"))
        return lines
    if isinstance(a, list):
        scalars = {"int", "float", "string", "bool", "null"}
        if all(isinstance(x, str) and x in scalars for x in a + b) and set(a) == set(b):
            return []  # a list of plain values (token ids, a vector): its length is a value
        lines = []
        if len(a) != len(b):
            lines.append(f"{path}: {len(a)} items in vLLM vs {len(b)} in the simulator")
        for i, (x, y) in enumerate(zip(a, b)):
            lines.extend(diff(x, y, f"{path}[{i}]"))
        return lines
    return [] if a == b else [f"{path}: vLLM {a} vs simulator {b}"]


def compare(case, vllm, sim):
    name, method, path, body = case
    sv, ctv, tv = fetch(vllm, method, path, body)
    ss, cts, ts = fetch(sim, method, path, body)
    problems = []
    if sv != ss:
        problems.append(f"status: vLLM {sv} vs simulator {ss}")
    if ctv.split(";")[0] != cts.split(";")[0]:
        problems.append(f"content-type: vLLM {ctv!r} vs simulator {cts!r}")
    if "event-stream" in ctv and "event-stream" in cts:
        gv, gs = per_choice(events(tv)), per_choice(events(ts))
        problems.extend(diff(gv, gs))
    else:
        try:
            jv, js = json.loads(tv) if tv else None, json.loads(ts) if ts else None
            problems.extend(diff(shape(jv), shape(js)))
        except ValueError:
            if tv != ts:
                problems.append(f"bodies differ: vLLM {tv[:80]!r} vs simulator {ts[:80]!r}")
    return problems, tv


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--vllm", default="http://127.0.0.1:8011")
    p.add_argument("--sim", default="http://127.0.0.1:18000")
    p.add_argument("--vllm-embed", default=None,
                   help="a real vLLM in pooling mode (--runner pooling --convert embed) for /v1/embeddings; "
                        "a generative vLLM has no embeddings route")
    args = p.parse_args()
    failed = 0
    for case in CASES:
        vllm = args.vllm_embed if case[2] == "/v1/embeddings" and args.vllm_embed else args.vllm
        problems, vllm_body = compare(case, vllm, args.sim)
        if case[0].startswith("chat tool") and '"finish_reason":"tool_calls"' not in vllm_body:
            print(f"SKIP  {case[0]}: the real (random) model's output was not a parsable tool call this time")
            continue
        if problems and all("delta.content: only in" in p for p in problems):
            print(f"SAME  {case[0]} (a choice ends on a token without text: vLLM sends \"delta\":{{}}; "
                  "the simulator does too with engine.partial_token_probability > 0)")
            continue
        if problems:
            failed += 1
            print(f"DIFF  {case[0]}")
            for line in problems[:12]:
                print(f"        {line}")
        else:
            print(f"SAME  {case[0]}")
    print(f"\n{len(CASES) - failed} of {len(CASES)} cases have the same shape.")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
