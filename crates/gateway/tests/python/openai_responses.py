"""Drives the gateway's /v1/responses with the real `openai` client's Responses API and prints
what the client saw as one JSON object. Usage: openai_responses.py BASE_URL"""
import json
import sys

from openai import OpenAI

client = OpenAI(base_url=f"{sys.argv[1]}/v1", api_key="sk-test-secret-do-not-trace", max_retries=0)
seen = {}

r = client.responses.create(model="tiny-llama", input="Say hello", instructions="Be brief.", max_output_tokens=6)
seen["response"] = {
    "id": r.id,
    "status": r.status,
    "text": r.output_text,
    "input_tokens": r.usage.input_tokens,
    "output_tokens": r.usage.output_tokens,
}

deltas, text = 0, ""
with client.responses.stream(
    model="tiny-llama",
    input=[{"role": "user", "content": [{"type": "input_text", "text": "Stream it"}]}],
    max_output_tokens=8,
    temperature=0.5,
) as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            deltas += 1
            text += event.delta
    final = stream.get_final_response()
seen["stream"] = {
    "id": final.id,
    "status": final.status,
    "text": text,
    "deltas": deltas,
    "input_tokens": final.usage.input_tokens,
    "output_tokens": final.usage.output_tokens,
}
print(json.dumps(seen))
