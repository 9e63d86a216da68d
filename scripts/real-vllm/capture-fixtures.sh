#!/usr/bin/env bash
# Captures the real vLLM responses that ../shared/fixtures lacks (tool calls, n=2 chat
# streams, stop strings, more errors, models, tokenize) into crates/sim/tests/fixtures.
# Needs a real vLLM from scripts/real-vllm/serve.sh listening at $VLLM_URL.
# The tiny model's weights are random: a tool call is only parsed when its output happens to
# be valid JSON for the parser. Check tool-required*.{json,sse} hold a "tool_calls" entry and
# capture again if not.
#   VLLM_URL=http://127.0.0.1:8011 bash scripts/real-vllm/capture-fixtures.sh [GROUP...]
# GROUP: openai (chat, completions, errors), messages (the Anthropic Messages API), responses;
# all of them by default. A group's files are overwritten: tests that compare the simulator
# with a fixture name its id, so capture again only the group you are adding to.
set -euo pipefail
url=${VLLM_URL:-http://127.0.0.1:8011}
out=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/crates/sim/tests/fixtures/vllm-0.32-cpu
mkdir -p "$out"
H='Content-Type: application/json'
tools='"tools":[{"type":"function","function":{"name":"get_weather","description":"Get weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}}}]'
post() { # name path body [status-line]
  local name=$1 path=$2 body=$3
  curl -s -N -w '\n%{http_code}\n' "$url$path" -H "$H" -d "$body" > "$out/$name"
}
groups=${*:-openai messages responses}
has() { [[ " $groups " == *" $1 "* ]]; }
if has openai; then
post tool-required-stream.sse /v1/chat/completions '{"model":"tiny-llama","messages":[{"role":"user","content":"weather in Paris?"}],"max_tokens":60,'"$tools"',"tool_choice":"required","stream":true,"stream_options":{"include_usage":true}}'
post tool-required.json /v1/chat/completions '{"model":"tiny-llama","messages":[{"role":"user","content":"weather in Paris?"}],"max_tokens":60,'"$tools"',"tool_choice":"required"}'
post chat-stream-n2.sse /v1/chat/completions '{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"n":2,"stream":true}'
post chat-stream-stop.sse /v1/chat/completions '{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":40,"stop":["e"],"stream":true}'
post completions-stream-no-usage.sse /v1/completions '{"model":"tiny-llama","prompt":"hi","max_tokens":2,"stream":true}'
post completions-stream-continuous-usage.sse /v1/completions '{"model":"tiny-llama","prompt":"hi","max_tokens":2,"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}'
post completions-token-ids-batch.sse /v1/completions '{"model":"tiny-llama","prompt":[[1,2,3],[4,5]],"max_tokens":1,"stream":true}'
post completions-stop.json /v1/completions '{"model":"tiny-llama","prompt":"hi","max_tokens":40,"stop":["e"],"temperature":0}'
post error-400-max-tokens-zero.json /v1/completions '{"model":"tiny-llama","prompt":"hi","max_tokens":0}'
post error-400-n-zero.json /v1/completions '{"model":"tiny-llama","prompt":"hi","max_tokens":2,"n":0}'
post error-400-missing-messages.json /v1/chat/completions '{"model":"tiny-llama"}'
post error-400-empty-body.json /v1/chat/completions ''
post error-400-int-parsing.json /v1/completions '{"model":"tiny-llama","prompt":"x","max_tokens":"five"}'
python3 -c "import json;print(json.dumps({'model':'tiny-llama','prompt':'hello '*600,'max_tokens':5}))" > /tmp/inferscope-long-prompt.json
curl -s -w '\n%{http_code}\n' "$url/v1/completions" -H "$H" -d @/tmp/inferscope-long-prompt.json > "$out/error-400-prompt-too-long.json"
curl -s -w '\n%{http_code}\n' "$url/v1/nope" > "$out/error-404-route.json"
curl -s -w '\n%{http_code}\n' "$url/v1/chat/completions" > "$out/error-405-method.json"
curl -s -w '\n%{http_code}\n' "$url/v1/models" > "$out/models.json"
post tokenize.json /tokenize '{"model":"tiny-llama","prompt":"hello world"}'
fi
if has messages; then
  atools='"tools":[{"name":"get_weather","description":"Get weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]'
  post messages.json /v1/messages '{"model":"tiny-llama","max_tokens":8,"system":"Be brief.","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"top_k":5,"stop_sequences":["zz"]}'
  post messages-stream.sse /v1/messages '{"model":"tiny-llama","max_tokens":5,"stream":true,"system":[{"type":"text","text":"Be brief."}],"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}'
  post messages-tools.json /v1/messages '{"model":"tiny-llama","max_tokens":40,'"$atools"',"tool_choice":{"type":"any"},"messages":[{"role":"user","content":"weather in Paris?"}]}'
  post messages-tools-stream.sse /v1/messages '{"model":"tiny-llama","max_tokens":40,"stream":true,'"$atools"',"tool_choice":{"type":"any"},"messages":[{"role":"user","content":"weather in Paris?"}]}'
  post messages-tool-result.json /v1/messages '{"model":"tiny-llama","max_tokens":4,'"$atools"',"messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"}]}]}'
  post messages-count-tokens.json /v1/messages/count_tokens '{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}]}'
  post messages-error-404-model.json /v1/messages '{"model":"nope","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}'
  post messages-error-400-no-max-tokens.json /v1/messages '{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}]}'
fi
if has responses; then
  post responses.json /v1/responses '{"model":"tiny-llama","input":"hi","instructions":"Be brief.","max_output_tokens":8}'
  post responses-stream.sse /v1/responses '{"model":"tiny-llama","input":"hi","max_output_tokens":5,"stream":true}'
fi
echo "captured into $out"
