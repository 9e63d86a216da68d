//! inferscope's own keys, for facts no convention names. All live under `inferscope.`.

consts! {
    /// Mean gap between consecutive chunks of a stream, seconds.
    STREAM_CHUNK_GAP_MEAN = "inferscope.stream.chunk_gap.mean";
    /// Median gap between chunks, seconds.
    STREAM_CHUNK_GAP_P50 = "inferscope.stream.chunk_gap.p50";
    /// 90th percentile gap between chunks, seconds.
    STREAM_CHUNK_GAP_P90 = "inferscope.stream.chunk_gap.p90";
    /// 99th percentile gap between chunks, seconds.
    STREAM_CHUNK_GAP_P99 = "inferscope.stream.chunk_gap.p99";
    /// Largest gap between chunks, seconds.
    STREAM_CHUNK_GAP_MAX = "inferscope.stream.chunk_gap.max";
    /// Number of content chunks received.
    STREAM_CHUNK_COUNT = "inferscope.stream.chunk_count";
    /// Time per output token after the first, seconds.
    TIME_PER_OUTPUT_TOKEN = "inferscope.time_per_output_token";
    /// Why a request or response body could not be parsed for tracing.
    BODY_PARSE_ERROR = "inferscope.body.parse_error";
    /// The gateway asked the upstream for stream usage (`stream_options.include_usage`) and
    /// removed the extra chunk from what the client received.
    STREAM_USAGE_REQUESTED = "inferscope.stream.usage_requested";
    /// The stream ended with `data: [DONE]`.
    STREAM_COMPLETED = "inferscope.stream.completed";
    /// Names of the tools the request offered (string array; the definitions themselves are
    /// content, captured only when capture is on).
    REQUEST_TOOL_NAMES = "inferscope.request.tool_names";
    /// Names of the tool calls in the response, assembled from streamed fragments.
    RESPONSE_TOOL_CALL_NAMES = "inferscope.response.tool_call_names";
    /// Embeddings: how many vectors came back.
    EMBEDDINGS_COUNT = "inferscope.embeddings.count";
    /// Pooling routes (score, rerank, classify): how many results came back.
    RESPONSE_RESULT_COUNT = "inferscope.response.result_count";
    /// Bytes of the response body received from the upstream before the exchange ended.
    RESPONSE_BYTES = "inferscope.response.bytes";
    /// The upstream base URL that served the request (userinfo removed).
    UPSTREAM = "inferscope.upstream";
    /// On the SERVER span: the gateway's own time on the way in, seconds: from the request's
    /// arrival (or, for an inference body read for tracing, from the end of the client's
    /// body) to the request handed to the upstream client.
    GATEWAY_INBOUND = "inferscope.gateway.inbound";
    /// On the SERVER span: the gateway's own time on the way out, seconds: from the first
    /// response chunk read from the upstream to that chunk handed to the client's connection
    /// (observed, and the usage chunk taken out if the gateway asked for it).
    GATEWAY_OUTBOUND = "inferscope.gateway.outbound";
    /// On the SERVER span: from the request handed to the upstream client to the upstream's
    /// response head, seconds (connecting, writing the request, and the upstream's work).
    UPSTREAM_TIME_TO_FIRST_BYTE = "inferscope.upstream.time_to_first_byte";
    /// On vLLM's `llm_request`: the time to first chunk the gateway measured for the same
    /// request (request sent → first chunk received), seconds.
    GATEWAY_TIME_TO_FIRST_CHUNK = "inferscope.gateway.time_to_first_chunk";
    /// On vLLM's `llm_request`: the time to first chunk the gateway measured minus vLLM's
    /// engine TTFT, seconds: the network both ways, vLLM's API server (HTTP, input processing
    /// before the engine) and the first chunk's serialisation. Not the gateway's own cost.
    /// With `n` > 1, each sequence is compared with the choice it was paired with
    /// ([`TTFT_CHOICE_INDEX`]).
    TTFT_OUTSIDE_ENGINE = "inferscope.ttft.outside_engine";
    /// On vLLM's `llm_request` of a call with `n` > 1: the choice this sequence was paired with,
    /// by rank of first token (vLLM's sequence spans do not name their choice).
    TTFT_CHOICE_INDEX = "inferscope.ttft.choice_index";
    /// On vLLM's `llm_request`: whether the gateway's record of the parent CLIENT span was found.
    GATEWAY_JOINED = "inferscope.gateway.joined";
    /// On the SERVER span of a tunnelled upgrade (a WebSocket): the protocol it switched to.
    UPGRADE_PROTOCOL = "inferscope.upgrade.protocol";
    /// Bytes the client sent through the tunnel after the switch.
    TUNNEL_BYTES_FROM_CLIENT = "inferscope.tunnel.bytes_from_client";
    /// Bytes the upstream sent through the tunnel after the switch.
    TUNNEL_BYTES_FROM_UPSTREAM = "inferscope.tunnel.bytes_from_upstream";
    /// WebSocket sessions: the status code of the first close frame seen, and who sent it.
    WEBSOCKET_CLOSE_CODE = "inferscope.websocket.close_code";
    /// `client` or `upstream`: who sent the first close frame.
    WEBSOCKET_CLOSED_BY = "inferscope.websocket.closed_by";
    /// On a derived engine phase span: its duration as vLLM reported it, seconds (before
    /// clamping into the parent).
    ENGINE_PHASE_SECONDS = "inferscope.engine.phase.seconds";
    /// Input tokens of a call whose usage a span closer to the caller already records (the
    /// trace state says so): kept off `gen_ai.usage.*` so a trace's sum counts each token once.
    USAGE_COUNTED_INPUT_TOKENS = "inferscope.usage_counted_upstream.input_tokens";
    /// Output tokens, likewise.
    USAGE_COUNTED_OUTPUT_TOKENS = "inferscope.usage_counted_upstream.output_tokens";
    /// Cached input tokens read, likewise.
    USAGE_COUNTED_CACHE_READ_INPUT_TOKENS = "inferscope.usage_counted_upstream.cache_read.input_tokens";
    /// Input tokens written to the cache, likewise.
    USAGE_COUNTED_CACHE_WRITE_INPUT_TOKENS = "inferscope.usage_counted_upstream.cache_write.input_tokens";
    /// Reasoning output tokens, likewise.
    USAGE_COUNTED_REASONING_OUTPUT_TOKENS = "inferscope.usage_counted_upstream.reasoning.output_tokens";
}

/// The `tracestate` key inferscope's layers use, and its value saying a span earlier in the
/// trace records this call's token usage (its `gen_ai.usage.*`).
pub const TRACESTATE_KEY: &str = "inferscope";
/// See [`TRACESTATE_KEY`].
pub const TRACESTATE_USAGE_COUNTED: &str = "u";

/// Where a `gen_ai.usage.*` key goes on a span whose call's usage is counted by an earlier
/// span of the trace; `None` for other keys.
pub fn usage_counted_upstream(key: &str) -> Option<&'static str> {
    Some(match key {
        "gen_ai.usage.input_tokens" => USAGE_COUNTED_INPUT_TOKENS,
        "gen_ai.usage.output_tokens" => USAGE_COUNTED_OUTPUT_TOKENS,
        "gen_ai.usage.cache_read.input_tokens" => USAGE_COUNTED_CACHE_READ_INPUT_TOKENS,
        "gen_ai.usage.cache_creation.input_tokens" | "gen_ai.usage.cache_write.input_tokens" => {
            USAGE_COUNTED_CACHE_WRITE_INPUT_TOKENS
        }
        "gen_ai.usage.reasoning.output_tokens" => USAGE_COUNTED_REASONING_OUTPUT_TOKENS,
        _ => return None,
    })
}
