"""The real openai client against an axum server traced by inferscope-tower: a chat, a
streamed chat with usage, and a 400. Prints what it saw as JSON."""
import json
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="sk-tower-secret", max_retries=0)
seen = {}
r = client.chat.completions.create(model="example-model", messages=[{"role": "user", "content": "hi"}])
seen["chat"] = {"text": r.choices[0].message.content, "usage": r.usage.completion_tokens}
text, usage = "", None
for chunk in client.chat.completions.create(
    model="example-model", messages=[{"role": "user", "content": "hi"}], stream=True,
    stream_options={"include_usage": True},
):
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        usage = chunk.usage.completion_tokens
seen["stream"] = {"text": text, "usage": usage}
print(json.dumps(seen))
