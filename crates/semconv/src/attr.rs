//! OpenTelemetry GenAI span attribute keys (semantic conventions v1.41.0).
//!
//! Every constant here is defined or referenced, and not deprecated, in the release's YAML
//! model; `tests/semconv_yaml.rs` checks that against `../shared/semconv-v1.41.0/`.

consts! {
    // --- set at span start (sampling relevant) ---
    /// `chat`, `text_completion`, `embeddings`, … (see [`crate::value::operation`]).
    OPERATION_NAME = "gen_ai.operation.name";
    /// The provider; well-known values in [`crate::value::provider`], custom values allowed.
    PROVIDER_NAME = "gen_ai.provider.name";
    /// The model name the request asked for.
    REQUEST_MODEL = "gen_ai.request.model";
    /// The server's host name or address.
    SERVER_ADDRESS = "server.address";
    /// The server's port.
    SERVER_PORT = "server.port";

    // --- request parameters ---
    /// `max_tokens` / `max_completion_tokens`.
    REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens";
    /// `n`, when it is not 1.
    REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count";
    /// `temperature`.
    REQUEST_TEMPERATURE = "gen_ai.request.temperature";
    /// `top_p`.
    REQUEST_TOP_P = "gen_ai.request.top_p";
    /// `top_k`.
    REQUEST_TOP_K = "gen_ai.request.top_k";
    /// `stop`, as a string array.
    REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences";
    /// `frequency_penalty`.
    REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty";
    /// `presence_penalty`.
    REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty";
    /// Embedding `encoding_format`, as a string array.
    REQUEST_ENCODING_FORMATS = "gen_ai.request.encoding_formats";
    /// `seed`.
    REQUEST_SEED = "gen_ai.request.seed";
    /// Set (to `true`) if and only if the request streams.
    REQUEST_STREAM = "gen_ai.request.stream";
    /// `text`, `json`, `image`, `speech` (see [`crate::value::output_type`]).
    OUTPUT_TYPE = "gen_ai.output.type";
    /// A conversation or session id, when the request reveals one.
    CONVERSATION_ID = "gen_ai.conversation.id";

    // --- response ---
    /// The response's `id`.
    RESPONSE_ID = "gen_ai.response.id";
    /// The model that actually answered.
    RESPONSE_MODEL = "gen_ai.response.model";
    /// Finish reasons of every choice, as a string array.
    RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons";
    /// Seconds from sending the request to receiving the first chunk (streaming).
    RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk";

    // --- usage ---
    /// Prompt tokens.
    USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens";
    /// Generated tokens.
    USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens";
    /// Prompt tokens served from a cache.
    USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens";
    /// Prompt tokens written to a cache.
    USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens";
    /// Reasoning tokens (included in the output tokens).
    USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens";
    /// `input` or `output`, on the token-usage metric.
    TOKEN_TYPE = "gen_ai.token.type";

    // --- embeddings ---
    /// The number of dimensions of the returned embeddings.
    EMBEDDINGS_DIMENSION_COUNT = "gen_ai.embeddings.dimension.count";

    // --- opt-in content ---
    /// Input messages, in the semconv JSON shape.
    INPUT_MESSAGES = "gen_ai.input.messages";
    /// Output messages, in the semconv JSON shape.
    OUTPUT_MESSAGES = "gen_ai.output.messages";
    /// System instructions, in the semconv JSON shape.
    SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions";
    /// Tool definitions offered to the model.
    TOOL_DEFINITIONS = "gen_ai.tool.definitions";

    // --- tools ---
    /// A tool's name.
    TOOL_NAME = "gen_ai.tool.name";
    /// A tool call's id.
    TOOL_CALL_ID = "gen_ai.tool.call.id";
    /// A tool call's arguments (opt-in content).
    TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments";
    /// A tool's type (`function`, …).
    TOOL_TYPE = "gen_ai.tool.type";

    // --- errors ---
    /// A low-cardinality class of the error the operation ended with.
    ERROR_TYPE = "error.type";
}
