"""Drives the gateway with the real `openai` client, as an application would, and prints what
the client saw as one JSON object. Usage: openai_client.py BASE_URL"""
import json
import sys

from openai import OpenAI

base = sys.argv[1]
client = OpenAI(base_url=f"{base}/v1", api_key="sk-test-secret-do-not-trace", max_retries=0)
seen = {}

# Streamed chat: the client never sees a usage chunk it did not ask for.
stream = client.chat.completions.create(
    model="tiny-llama",
    messages=[{"role": "user", "content": "Say hello"}],
    max_tokens=10,
    stream=True,
)
text, chunk_id, usage_chunks = "", None, 0
for chunk in stream:
    chunk_id = chunk.id
    if chunk.usage is not None or not chunk.choices:
        usage_chunks += 1
        continue
    text += chunk.choices[0].delta.content or ""
seen["stream_chat"] = {"id": chunk_id, "text": text, "usage_chunks": usage_chunks}

# Streamed chat with usage asked for by the client.
stream = client.chat.completions.create(
    model="tiny-llama",
    messages=[{"role": "user", "content": "Say hello"}],
    max_tokens=6,
    stream=True,
    stream_options={"include_usage": True},
)
usage = None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage.completion_tokens
seen["stream_chat_usage"] = {"completion_tokens": usage}

chat = client.chat.completions.create(
    model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=5, temperature=0.2
)
seen["chat"] = {"id": chat.id, "completion_tokens": chat.usage.completion_tokens, "finish": chat.choices[0].finish_reason}

comp = client.completions.create(model="tiny-llama", prompt="Once upon a time", max_tokens=7)
seen["completion"] = {"id": comp.id, "completion_tokens": comp.usage.completion_tokens}

text = ""
for chunk in client.completions.create(model="tiny-llama", prompt="Once", max_tokens=5, stream=True):
    if chunk.choices:
        text += chunk.choices[0].text
seen["stream_completion"] = {"text": text}

emb = client.embeddings.create(model="tiny-llama", input=["a", "b"])
seen["embeddings"] = {"count": len(emb.data), "dimension": len(emb.data[0].embedding), "prompt_tokens": emb.usage.prompt_tokens}

# A streamed tool call, assembled client-side from its fragments.
calls = {}
for chunk in client.chat.completions.create(
    model="tiny-llama",
    messages=[{"role": "user", "content": "Weather in Paris?"}],
    max_tokens=40,
    stream=True,
    tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    tool_choice="required",
):
    if not chunk.choices:
        continue
    for tc in chunk.choices[0].delta.tool_calls or []:
        c = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
        if tc.id:
            c["id"] = tc.id
        if tc.function and tc.function.name:
            c["name"] += tc.function.name
        if tc.function and tc.function.arguments:
            c["arguments"] += tc.function.arguments
seen["tool_call"] = calls.get(0)

# An error comes back as the client's own exception.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    seen["error"] = None
except Exception as e:  # noqa: BLE001
    seen["error"] = {"type": type(e).__name__, "status": getattr(e, "status_code", None)}

print(json.dumps(seen))
