"""Drives the gateway's /v1/messages with the real `anthropic` client, as a coding agent would
against a local model, and prints what the client saw as one JSON object.
Usage: anthropic_client.py BASE_URL"""
import json
import sys

import anthropic

base = sys.argv[1]
client = anthropic.Anthropic(base_url=base, api_key="sk-ant-test-secret-do-not-trace", max_retries=0)
seen = {}

msg = client.messages.create(
    model="tiny-llama",
    max_tokens=6,
    system="Be brief.",
    stop_sequences=["zzz"],
    # This client version has no sampling parameters of its own; vLLM takes them in the body.
    extra_body={"temperature": 0.3, "top_k": 5},
    messages=[{"role": "user", "content": "Say hello"}],
)
seen["message"] = {
    "id": msg.id,
    "text": "".join(b.text for b in msg.content if b.type == "text"),
    "stop_reason": msg.stop_reason,
    "input_tokens": msg.usage.input_tokens,
    "output_tokens": msg.usage.output_tokens,
}

text, deltas = "", 0
with client.messages.stream(
    model="tiny-llama",
    max_tokens=8,
    messages=[{"role": "user", "content": [{"type": "text", "text": "Stream it"}]}],
) as stream:
    for t in stream.text_stream:
        text += t
        deltas += 1
    final = stream.get_final_message()
seen["stream"] = {
    "id": final.id,
    "text": text,
    "deltas": deltas,
    "stop_reason": final.stop_reason,
    "input_tokens": final.usage.input_tokens,
    "output_tokens": final.usage.output_tokens,
}

tools = [{
    "name": "get_weather",
    "description": "Get the weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]
with client.messages.stream(
    model="tiny-llama",
    max_tokens=40,
    tools=tools,
    tool_choice={"type": "any"},
    messages=[{"role": "user", "content": "Weather in Paris?"}],
) as stream:
    final = stream.get_final_message()
uses = [b for b in final.content if b.type == "tool_use"]
seen["tool"] = {
    "id": final.id,
    "name": uses[0].name if uses else None,
    "input": uses[0].input if uses else None,
    "stop_reason": final.stop_reason,
}

try:
    client.messages.create(model="no-such-model", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    seen["error"] = {"status": None}
except anthropic.APIStatusError as e:
    seen["error"] = {"status": e.status_code, "type": type(e).__name__}

print(json.dumps(seen))
