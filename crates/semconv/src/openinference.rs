//! OpenInference keys (what Arize Phoenix reads).

consts! {
    /// `LLM`, `EMBEDDING`, … (see [`span_kind`]).
    SPAN_KIND = "openinference.span.kind";
    /// The model name.
    LLM_MODEL_NAME = "llm.model_name";
    /// The hosting provider.
    LLM_PROVIDER = "llm.provider";
    /// The AI system (vendor of the model API).
    LLM_SYSTEM = "llm.system";
    /// Invocation parameters as a JSON string.
    LLM_INVOCATION_PARAMETERS = "llm.invocation_parameters";
    /// Prompt tokens.
    LLM_TOKEN_COUNT_PROMPT = "llm.token_count.prompt";
    /// Completion tokens.
    LLM_TOKEN_COUNT_COMPLETION = "llm.token_count.completion";
    /// Total tokens.
    LLM_TOKEN_COUNT_TOTAL = "llm.token_count.total";
    /// Prompt tokens read from a cache.
    LLM_TOKEN_COUNT_PROMPT_CACHE_READ = "llm.token_count.prompt_details.cache_read";
    /// Prompt tokens written to a cache.
    LLM_TOKEN_COUNT_PROMPT_CACHE_WRITE = "llm.token_count.prompt_details.cache_write";
    /// Reasoning tokens.
    LLM_TOKEN_COUNT_COMPLETION_REASONING = "llm.token_count.completion_details.reasoning";
    /// The input, usually the request body.
    INPUT_VALUE = "input.value";
    /// `application/json` or `text/plain`.
    INPUT_MIME_TYPE = "input.mime_type";
    /// The output.
    OUTPUT_VALUE = "output.value";
    /// `application/json` or `text/plain`.
    OUTPUT_MIME_TYPE = "output.mime_type";
    /// The embedding model name.
    EMBEDDING_MODEL_NAME = "embedding.model_name";
    /// Session id.
    SESSION_ID = "session.id";
}

/// Values of [`SPAN_KIND`].
pub mod span_kind {
    /// A call to a language model.
    pub const LLM: &str = "LLM";
    /// A call to an embedding model.
    pub const EMBEDDING: &str = "EMBEDDING";
    /// A reranker.
    pub const RERANKER: &str = "RERANKER";
    /// Anything else, e.g. an HTTP hop.
    pub const CHAIN: &str = "CHAIN";
}

/// `llm.input_messages.{i}.message.role`.
pub fn input_message_role(i: usize) -> String {
    format!("llm.input_messages.{i}.message.role")
}

/// `llm.input_messages.{i}.message.content`.
pub fn input_message_content(i: usize) -> String {
    format!("llm.input_messages.{i}.message.content")
}

/// `llm.output_messages.{i}.message.role`.
pub fn output_message_role(i: usize) -> String {
    format!("llm.output_messages.{i}.message.role")
}

/// `llm.output_messages.{i}.message.content`.
pub fn output_message_content(i: usize) -> String {
    format!("llm.output_messages.{i}.message.content")
}

/// `llm.output_messages.{i}.message.tool_calls.{j}.tool_call.function.name`.
pub fn output_tool_call_name(i: usize, j: usize) -> String {
    format!("llm.output_messages.{i}.message.tool_calls.{j}.tool_call.function.name")
}

/// `llm.output_messages.{i}.message.tool_calls.{j}.tool_call.function.arguments`.
pub fn output_tool_call_arguments(i: usize, j: usize) -> String {
    format!("llm.output_messages.{i}.message.tool_calls.{j}.tool_call.function.arguments")
}

/// `llm.tools.{i}.tool.json_schema`.
pub fn tool_json_schema(i: usize) -> String {
    format!("llm.tools.{i}.tool.json_schema")
}
