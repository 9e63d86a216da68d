//! Writing what an exchange revealed onto the inference span, in the chosen dialects.

use std::time::Instant;

use inferscope_semconv::dialect::{self, Dialect};
use inferscope_semconv::{attr, inferscope as own, openinference as oi, vllm};

use super::capture::{self, CapturePolicy};
use super::request::RequestFacts;
use super::response::ResponseFacts;
use super::route::{Api, Route};
use super::timeline::GapStats;
use crate::span::{KeyValue, SpanRecord, Str, Value};

/// The timing facts of one exchange, computed once for the span and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    /// Seconds from sending the request upstream to the first content chunk (streams).
    pub time_to_first_chunk: Option<f64>,
    /// Gap statistics between chunks (streams with two or more chunks).
    pub gaps: Option<GapStats>,
    /// Seconds per output token after the first (streams with usage).
    pub time_per_output_token: Option<f64>,
    /// Content chunks received.
    pub chunks: u64,
}

impl Timing {
    /// Computes the timing of `response`, whose request was sent at `sent`.
    pub fn of(response: &mut ResponseFacts, sent: Instant) -> Timing {
        let t = &mut response.timeline;
        let time_to_first_chunk = t
            .first()
            .map(|f| f.saturating_duration_since(sent).as_secs_f64());
        let output = response.usage.and_then(|u| u.output_tokens);
        let time_per_output_token = match (t.span(), output) {
            (Some(span), Some(n)) if n > 1 => Some(span.as_secs_f64() / (n - 1) as f64),
            _ => None,
        };
        Timing {
            time_to_first_chunk,
            gaps: t.gap_stats(),
            time_per_output_token,
            chunks: t.chunks(),
        }
    }
}

/// What the span needs besides the facts.
#[derive(Debug, Clone, Copy)]
pub struct RecordOptions<'a> {
    /// Extra dialects to duplicate keys into.
    pub dialects: &'a [Dialect],
    /// The capture policy.
    pub capture: &'a CapturePolicy,
    /// Which GenAI names (the pinned release, or the newest on request).
    pub conventions: inferscope_semconv::latest::Conventions,
}

/// The attributes the semantic conventions ask to set when the span starts.
pub fn start_attributes(
    route: &Route,
    provider: &str,
    model: Option<&str>,
    server_address: &str,
    server_port: u16,
) -> [Option<KeyValue>; 5] {
    [
        Some(KeyValue::new(attr::OPERATION_NAME, route.operation)),
        Some(KeyValue::new(attr::PROVIDER_NAME, provider.to_owned())),
        model.map(|m| KeyValue::new(attr::REQUEST_MODEL, m.to_owned())),
        Some(KeyValue::new(
            attr::SERVER_ADDRESS,
            server_address.to_owned(),
        )),
        Some(KeyValue::new(attr::SERVER_PORT, i64::from(server_port))),
    ]
}

/// Writes the request's facts.
pub fn request(record: &mut SpanRecord, route: &Route, facts: &RequestFacts) {
    let r = record;
    if let Some(e) = &facts.parse_error {
        r.push(own::BODY_PARSE_ERROR, e.clone());
        return;
    }
    if let Some(v) = facts.max_tokens {
        r.push(attr::REQUEST_MAX_TOKENS, v);
    }
    if let Some(n) = facts.choice_count.filter(|n| *n != 1) {
        r.push(attr::REQUEST_CHOICE_COUNT, n);
    }
    if let Some(v) = facts.temperature {
        r.push(attr::REQUEST_TEMPERATURE, v);
    }
    if let Some(v) = facts.top_p {
        r.push(attr::REQUEST_TOP_P, v);
    }
    if let Some(v) = facts.top_k {
        r.push(attr::REQUEST_TOP_K, v);
    }
    if let Some(v) = facts.frequency_penalty {
        r.push(attr::REQUEST_FREQUENCY_PENALTY, v);
    }
    if let Some(v) = facts.presence_penalty {
        r.push(attr::REQUEST_PRESENCE_PENALTY, v);
    }
    if !facts.stop.is_empty() {
        r.push(attr::REQUEST_STOP_SEQUENCES, facts.stop.clone());
    }
    if let Some(v) = facts.seed {
        r.push(attr::REQUEST_SEED, v);
    }
    if matches!(
        route.api,
        Api::Chat | Api::Completions | Api::Responses | Api::Messages
    ) {
        // Only what the request said: no `stream` key is not `stream: false` to every
        // reader, and no `response_format` is not a request for text.
        if facts.stream_given {
            r.push(attr::REQUEST_STREAM, facts.stream);
        }
        if let Some(t) = facts.output_type {
            r.push(attr::OUTPUT_TYPE, t);
        }
    }
    if route.api == Api::Embeddings {
        r.push(
            attr::REQUEST_ENCODING_FORMATS,
            vec![
                facts
                    .encoding_format
                    .clone()
                    .unwrap_or_else(|| "float".into()),
            ],
        );
    }
    if !facts.tool_names.is_empty() {
        r.push(own::REQUEST_TOOL_NAMES, facts.tool_names.clone());
    }
    for (name, value) in &facts.extras {
        r.push(
            format!("{}{name}", vllm::REQUEST_EXTRA_PREFIX),
            value.clone(),
        );
    }
    let c = &facts.content;
    if let Some(v) = &c.input_messages {
        r.push(attr::INPUT_MESSAGES, v.clone());
    }
    if let Some(v) = &c.system_instructions {
        r.push(attr::SYSTEM_INSTRUCTIONS, v.clone());
    }
    if let Some(v) = &c.tool_definitions {
        r.push(attr::TOOL_DEFINITIONS, v.clone());
    }
}

/// Writes the response's facts and timing.
pub fn response(
    record: &mut SpanRecord,
    facts: &ResponseFacts,
    timing: &Timing,
    opts: RecordOptions<'_>,
) {
    let r = record;
    if let Some(v) = &facts.id {
        r.push(attr::RESPONSE_ID, v.clone());
    }
    if let Some(v) = &facts.model {
        r.push(attr::RESPONSE_MODEL, v.clone());
    }
    let reasons = facts.finish_reasons();
    if !reasons.is_empty() {
        r.push(attr::RESPONSE_FINISH_REASONS, reasons);
    }
    if let Some(u) = facts.usage {
        if let Some(v) = u.input_tokens {
            r.push(attr::USAGE_INPUT_TOKENS, v);
        }
        if let Some(v) = u.output_tokens {
            r.push(attr::USAGE_OUTPUT_TOKENS, v);
        }
        if let Some(v) = u.cached_input_tokens {
            r.push(attr::USAGE_CACHE_READ_INPUT_TOKENS, v);
        }
        if let Some(v) = u.cache_creation_input_tokens {
            r.push(opts.conventions.usage_cache_write_input_tokens(), v);
        }
        if let Some(v) = u.reasoning_output_tokens {
            r.push(attr::USAGE_REASONING_OUTPUT_TOKENS, v);
        }
    }
    if let Some(v) = timing.time_to_first_chunk {
        r.push(attr::RESPONSE_TIME_TO_FIRST_CHUNK, v);
    }
    if timing.chunks > 0 {
        r.push(
            own::STREAM_CHUNK_COUNT,
            i64::try_from(timing.chunks).unwrap_or(i64::MAX),
        );
        r.push(own::STREAM_COMPLETED, facts.done);
    }
    if let Some(g) = timing.gaps {
        r.push(own::STREAM_CHUNK_GAP_MEAN, g.mean);
        r.push(own::STREAM_CHUNK_GAP_P50, g.p50);
        r.push(own::STREAM_CHUNK_GAP_P90, g.p90);
        r.push(own::STREAM_CHUNK_GAP_P99, g.p99);
        r.push(own::STREAM_CHUNK_GAP_MAX, g.max);
    }
    if let Some(v) = timing.time_per_output_token {
        r.push(own::TIME_PER_OUTPUT_TOKEN, v);
    }
    if let Some(v) = facts.embedding_count {
        r.push(own::EMBEDDINGS_COUNT, v);
    }
    if let Some(v) = facts.embedding_dimension {
        r.push(attr::EMBEDDINGS_DIMENSION_COUNT, v);
    }
    if let Some(v) = facts.result_count {
        r.push(own::RESPONSE_RESULT_COUNT, v);
    }
    let names = facts.tool_call_names();
    if !names.is_empty() {
        r.push(own::RESPONSE_TOOL_CALL_NAMES, names);
    }
    if let Some(e) = &facts.parse_error {
        r.push(own::BODY_PARSE_ERROR, e.clone());
    }
    if let Some(v) = capture::output_messages(opts.capture, &facts.choices) {
        r.push(attr::OUTPUT_MESSAGES, v);
    }
}

/// Adds the keys of the extra `dialects` beside the OpenTelemetry ones already on `record`:
/// vLLM's legacy names (for dashboards built on them) and OpenInference's (for Arize Phoenix).
pub fn dialects(
    record: &mut SpanRecord,
    route: &Route,
    request: &RequestFacts,
    response: Option<&ResponseFacts>,
    opts: RecordOptions<'_>,
) {
    if opts.dialects.iter().all(|d| *d == Dialect::OTel) {
        return;
    }
    let mut extra: Vec<KeyValue> = Vec::new();
    for kv in crate::span::latest(&record.attributes) {
        for key in dialect::duplicates(&kv.key, opts.dialects) {
            extra.push(KeyValue::new(key, kv.value.clone()));
        }
    }
    if opts.dialects.contains(&Dialect::OpenInference) {
        openinference(record, &mut extra, route, request, response, opts.capture);
    }
    for kv in extra {
        record.push(kv.key, kv.value);
    }
}

fn openinference(
    record: &SpanRecord,
    extra: &mut Vec<KeyValue>,
    route: &Route,
    request: &RequestFacts,
    response: Option<&ResponseFacts>,
    capture: &CapturePolicy,
) {
    let mut push = |k: Str, v: Value| extra.push(KeyValue { key: k, value: v });
    let kind = match route.api {
        Api::Embeddings => oi::span_kind::EMBEDDING,
        Api::Pooling => oi::span_kind::RERANKER,
        _ => oi::span_kind::LLM,
    };
    push(oi::SPAN_KIND.into(), kind.into());
    if let Some(provider) = record.get(attr::PROVIDER_NAME) {
        push(oi::LLM_SYSTEM.into(), provider.clone());
    }
    let model = response
        .and_then(|r| r.model.clone())
        .or_else(|| request.model.clone());
    if let Some(m) = model {
        if route.api == Api::Embeddings {
            push(oi::EMBEDDING_MODEL_NAME.into(), m.clone().into());
        }
        if record.get(attr::RESPONSE_MODEL).is_none() {
            push(oi::LLM_MODEL_NAME.into(), m.into());
        }
    }
    let mut params = serde_json::Map::new();
    let mut param = |k: &str, v: Option<serde_json::Value>| {
        if let Some(v) = v {
            params.insert(k.to_owned(), v);
        }
    };
    param("max_tokens", request.max_tokens.map(Into::into));
    param("temperature", request.temperature.map(Into::into));
    param("top_p", request.top_p.map(Into::into));
    param("n", request.choice_count.map(Into::into));
    param("seed", request.seed.map(Into::into));
    param(
        "stream",
        request.stream_given.then(|| request.stream.into()),
    );
    push(
        oi::LLM_INVOCATION_PARAMETERS.into(),
        serde_json::Value::Object(params).to_string().into(),
    );
    if let Some(u) = response.and_then(|r| r.usage)
        && let (Some(i), Some(o)) = (u.input_tokens, u.output_tokens)
    {
        push(oi::LLM_TOKEN_COUNT_TOTAL.into(), (i + o).into());
    }
    if capture.enabled {
        let hide_system = capture.hide_system_instructions;
        let shown =
            request.content.flat.iter().filter(|(role, _)| {
                !(hide_system && matches!(role.as_str(), "system" | "developer"))
            });
        let mut messages = Vec::new();
        for (i, (role, text)) in shown.enumerate() {
            push(oi::input_message_role(i).into(), role.clone().into());
            push(oi::input_message_content(i).into(), text.clone().into());
            messages.push(serde_json::json!({"role": role, "content": text}));
        }
        // What Phoenix shows as the input: every message in order, the system one included.
        if !messages.is_empty() {
            let value = serde_json::json!({ "messages": messages }).to_string();
            push(oi::INPUT_VALUE.into(), value.into());
            push(oi::INPUT_MIME_TYPE.into(), "application/json".into());
        }
        // Tool definitions, one JSON schema each (none when they were cut to fit).
        if let Some(serde_json::Value::Array(tools)) = request
            .content
            .tool_definitions
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
        {
            for (i, tool) in tools.iter().enumerate() {
                push(oi::tool_json_schema(i).into(), tool.to_string().into());
            }
        }
        if capture.captures_output()
            && let Some(r) = response
        {
            for (i, c) in r.choices.iter().enumerate() {
                push(oi::output_message_role(i).into(), "assistant".into());
                push(
                    oi::output_message_content(i).into(),
                    capture.output_text(&c.text).into(),
                );
                for (j, t) in c.tool_calls.iter().enumerate() {
                    if let Some(name) = &t.name {
                        push(oi::output_tool_call_name(i, j).into(), name.clone().into());
                    }
                    push(
                        oi::output_tool_call_arguments(i, j).into(),
                        capture.output_text(&t.arguments).into(),
                    );
                }
            }
            if let Some(first) = r.choices.first() {
                push(
                    oi::OUTPUT_VALUE.into(),
                    capture.output_text(&first.text).into(),
                );
                push(oi::OUTPUT_MIME_TYPE.into(), "text/plain".into());
            }
        }
    }
}
