//! The sample inference span the export benchmarks and tests share.

/// Ten extra keys of the sample inference span: vLLM's sampling extras and stream statistics.
pub const SAMPLE_EXTRA_KEYS: [&str; 10] = [
    "vllm.request.min_p",
    "vllm.request.repetition_penalty",
    "vllm.request.top_k",
    "vllm.request.ignore_eos",
    "vllm.request.min_tokens",
    "inferscope.stream.chunk_gap.mean",
    "inferscope.stream.chunk_gap.p50",
    "inferscope.stream.chunk_gap.p90",
    "inferscope.stream.chunk_gap.p99",
    "inferscope.stream.chunk_gap.max",
];

/// Records the sample inference span the benchmarks and tests share: 25 attributes (the GenAI
/// keys a streamed chat reveals, with finish reasons as a string array, and ten doubles).
pub fn record_inference_span(
    tracer: &inferscope_core::Tracer,
    parent: Option<&inferscope_core::SpanContext>,
    response_id: impl Into<inferscope_core::Str>,
) {
    use inferscope_core::{SpanKind, Str, Value};
    use inferscope_semconv::attr;
    let mut span = tracer.start("chat tiny-llama", SpanKind::Client, parent);
    span.set_attribute(attr::OPERATION_NAME, "chat");
    span.set_attribute(attr::PROVIDER_NAME, "vllm");
    span.set_attribute(attr::REQUEST_MODEL, "tiny-llama");
    span.set_attribute(attr::RESPONSE_MODEL, "tiny-llama");
    span.set_attribute(attr::SERVER_ADDRESS, "127.0.0.1");
    span.set_attribute(attr::SERVER_PORT, 8000i64);
    span.set_attribute(attr::REQUEST_MAX_TOKENS, 16i64);
    span.set_attribute(attr::REQUEST_TEMPERATURE, 0.7);
    span.set_attribute(attr::REQUEST_TOP_P, 0.9);
    span.set_attribute(attr::REQUEST_STREAM, true);
    span.set_attribute(attr::RESPONSE_ID, Value::Str(response_id.into()));
    if span.is_recording() {
        span.set_attribute(
            attr::RESPONSE_FINISH_REASONS,
            Value::StrArray(vec![Str::Static("stop")]),
        );
    }
    span.set_attribute(attr::USAGE_INPUT_TOKENS, 5i64);
    span.set_attribute(attr::USAGE_OUTPUT_TOKENS, 16i64);
    span.set_attribute(attr::RESPONSE_TIME_TO_FIRST_CHUNK, 0.025);
    for (i, key) in SAMPLE_EXTRA_KEYS.iter().enumerate() {
        span.set_attribute(*key, i as f64);
    }
    span.end();
}
