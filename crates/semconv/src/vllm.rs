//! vLLM's own tracing vocabulary (vLLM 0.32/0.33, `vllm.tracing`), kept as the `vllm` dialect.
//!
//! `gen_ai.latency.*`, `gen_ai.request.id`, `gen_ai.request.n` and `gen_ai.usage.num_sequences`
//! were never OpenTelemetry names: vLLM made them up. `gen_ai.usage.prompt_tokens` and
//! `gen_ai.usage.completion_tokens` were OpenTelemetry names, deprecated in 1.28.

/// The name of vLLM's per-request span.
pub const LLM_REQUEST_SPAN: &str = "llm_request";

/// The instrumentation scope of `llm_request`.
pub const TRACING_SCOPE: &str = "vllm.tracing.otel";

/// `vllm.` prefix under which the gateway records vLLM's extra sampling parameters
/// (`vllm.request.min_p`, `vllm.request.repetition_penalty`, …).
pub const REQUEST_EXTRA_PREFIX: &str = "vllm.request.";

/// Keys vLLM puts on `llm_request` (`SpanAttributes` in vLLM).
pub mod attr {
    consts! {
        /// Completions: response id + `-<prompt index>`; chat: the response id.
        REQUEST_ID = "gen_ai.request.id";
        /// `max_tokens`, only when non-zero (same key as OpenTelemetry's).
        REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens";
        /// `n`, only when non-zero.
        REQUEST_N = "gen_ai.request.n";
        /// `temperature`, only when non-zero (same key as OpenTelemetry's).
        REQUEST_TEMPERATURE = "gen_ai.request.temperature";
        /// `top_p`, only when non-zero (same key as OpenTelemetry's).
        REQUEST_TOP_P = "gen_ai.request.top_p";
        /// Prompt tokens (deprecated OpenTelemetry name).
        USAGE_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens";
        /// Generated tokens (deprecated OpenTelemetry name).
        USAGE_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens";
        /// Defined by vLLM, never set.
        USAGE_NUM_SEQUENCES = "gen_ai.usage.num_sequences";
        /// Defined by vLLM, never set.
        RESPONSE_MODEL = "gen_ai.response.model";
        /// Seconds, first output's iteration timestamp − arrival.
        LATENCY_TIME_TO_FIRST_TOKEN = "gen_ai.latency.time_to_first_token";
        /// Seconds, final iteration timestamp − arrival.
        LATENCY_E2E = "gen_ai.latency.e2e";
        /// Seconds, scheduled − queued (engine clock).
        LATENCY_TIME_IN_QUEUE = "gen_ai.latency.time_in_queue";
        /// Seconds, first token − scheduled.
        LATENCY_TIME_IN_MODEL_PREFILL = "gen_ai.latency.time_in_model_prefill";
        /// Seconds, last token − first token.
        LATENCY_TIME_IN_MODEL_DECODE = "gen_ai.latency.time_in_model_decode";
        /// Seconds, last token − scheduled.
        LATENCY_TIME_IN_MODEL_INFERENCE = "gen_ai.latency.time_in_model_inference";
    }
}

/// Resource keys vLLM's `init_tracer` sets.
pub mod resource {
    consts! {
        /// `vllm.llm_engine`, `vllm.worker`, …
        INSTRUMENTING_MODULE_NAME = "vllm.instrumenting_module_name";
        /// The process id, as a string.
        PROCESS_ID = "vllm.process_id";
        /// `worker`, … (start-up spans).
        PROCESS_KIND = "vllm.process_kind";
        /// `Worker_0`, … (start-up spans).
        PROCESS_NAME = "vllm.process_name";
    }
}

/// Names of the INTERNAL spans vLLM 0.32+ emits while starting up.
pub const STARTUP_SPANS: &[&str] = &[
    "Overall Loading",
    "EngineCoreProc init",
    "Executor init",
    "Worker init",
    "Loading (CPU)",
    "Load model",
    "Initialize model",
    "Load weights",
    "Allocate KV cache",
    "Prepare model",
    "AsyncMPClient init",
    "Warmup (CPU)",
];

/// Where inferscope puts vLLM's own facts when the `vllm` dialect is off: vLLM's made-up
/// `gen_ai.*` keys move under `vllm.*`, so nothing squats in the GenAI namespace.
pub mod renamed {
    consts! {
        /// vLLM's request id (`gen_ai.request.id`).
        REQUEST_ID = "vllm.request.id";
        /// `gen_ai.latency.time_to_first_token`.
        LATENCY_TIME_TO_FIRST_TOKEN = "vllm.latency.time_to_first_token";
        /// `gen_ai.latency.e2e`.
        LATENCY_E2E = "vllm.latency.e2e";
        /// `gen_ai.latency.time_in_queue`.
        LATENCY_TIME_IN_QUEUE = "vllm.latency.time_in_queue";
        /// `gen_ai.latency.time_in_model_prefill`.
        LATENCY_TIME_IN_MODEL_PREFILL = "vllm.latency.time_in_model_prefill";
        /// `gen_ai.latency.time_in_model_decode`.
        LATENCY_TIME_IN_MODEL_DECODE = "vllm.latency.time_in_model_decode";
        /// `gen_ai.latency.time_in_model_inference`.
        LATENCY_TIME_IN_MODEL_INFERENCE = "vllm.latency.time_in_model_inference";
        /// The engine's prompt tokens on a span nested under the gateway's CLIENT span, which
        /// carries the request's usage under `gen_ai.usage.*` (counted once per trace).
        USAGE_INPUT_TOKENS = "vllm.usage.input_tokens";
        /// The engine's generated tokens, likewise.
        USAGE_OUTPUT_TOKENS = "vllm.usage.output_tokens";
    }

    /// (vLLM's key, where it goes when the `vllm` dialect is off).
    pub const MAP: &[(&str, &str)] = &[
        (super::attr::REQUEST_ID, REQUEST_ID),
        (
            super::attr::LATENCY_TIME_TO_FIRST_TOKEN,
            LATENCY_TIME_TO_FIRST_TOKEN,
        ),
        (super::attr::LATENCY_E2E, LATENCY_E2E),
        (super::attr::LATENCY_TIME_IN_QUEUE, LATENCY_TIME_IN_QUEUE),
        (
            super::attr::LATENCY_TIME_IN_MODEL_PREFILL,
            LATENCY_TIME_IN_MODEL_PREFILL,
        ),
        (
            super::attr::LATENCY_TIME_IN_MODEL_DECODE,
            LATENCY_TIME_IN_MODEL_DECODE,
        ),
        (
            super::attr::LATENCY_TIME_IN_MODEL_INFERENCE,
            LATENCY_TIME_IN_MODEL_INFERENCE,
        ),
    ];
}

/// The INTERNAL child spans inferscope derives from `llm_request`'s latencies, in order.
pub mod phase {
    consts! {
        /// Arrival to queued: tokenisation and input processing (only when above zero).
        PREPROCESS = "preprocess";
        /// Waiting for the scheduler.
        QUEUE = "queue";
        /// Scheduled to first token.
        PREFILL = "prefill";
        /// First token to last token.
        DECODE = "decode";
    }

    /// The instrumentation scope of the derived spans (inside vLLM's resource).
    pub const SCOPE: &str = "inferscope.engine";
}
