//! vLLM's per-request span, `llm_request`, as vLLM 0.32 emits it: name, kind SERVER, scope
//! `vllm.tracing.otel`, the legacy attribute keys in vLLM's order and types, the same latency
//! arithmetic, a resource with vLLM's keys, export batched to `--otlp-traces-endpoint`.
//!
//! Like vLLM: the span is created when the sequence finishes and starts at the request's
//! arrival; there is none for failed or aborted requests; each of `n` choices is its own span
//! with the same request id (in separate traces when no `traceparent` came) and `n` = 1.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use inferscope_core::{SpanContext, SpanKind, Tracer};
use inferscope_export::{ExporterSettings, InitError, Tracing, TracingBuilder};
use inferscope_semconv::vllm;

use crate::generate::ChoiceDone;

/// Request parameters vLLM copies onto the span (each only when non-zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanParams {
    /// `top_p`.
    pub top_p: f64,
    /// `max_tokens` after clamping to the context.
    pub max_tokens: u32,
    /// `temperature`.
    pub temperature: f64,
}

/// When a request arrived, in both clocks.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Wall clock (the span's start).
    pub wall: SystemTime,
    /// Monotonic clock (latency arithmetic).
    pub at: Instant,
    /// When it entered the engine queue.
    pub queued: Instant,
}

/// Exports `llm_request` spans.
#[derive(Debug)]
pub struct EngineSpans {
    tracing: Tracing,
}

impl EngineSpans {
    /// A pipeline to `endpoint` (protocol and the rest from the `OTEL_*` environment, as
    /// vLLM reads `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`).
    pub fn start(endpoint: &str) -> Result<EngineSpans, InitError> {
        let resource: BTreeMap<String, String> = [
            (
                vllm::resource::INSTRUMENTING_MODULE_NAME.to_owned(),
                "vllm.llm_engine".to_owned(),
            ),
            (
                vllm::resource::PROCESS_ID.to_owned(),
                std::process::id().to_string(),
            ),
            ("service.instance.id".to_owned(), instance_id()),
        ]
        .into();
        let tracing = TracingBuilder::new(vllm::TRACING_SCOPE)
            .with_endpoint(endpoint)
            .with_settings(ExporterSettings {
                resource_attributes: Some(resource),
                ..ExporterSettings::default()
            })
            .with_file_settings(ExporterSettings {
                // vLLM sets no service name; the OpenTelemetry default names the process.
                service_name: Some("unknown_service:inferscope-sim".to_owned()),
                ..ExporterSettings::default()
            })
            .build()?;
        Ok(EngineSpans { tracing })
    }

    /// The pipeline (flush, shutdown, counters).
    pub fn tracing(&self) -> &Tracing {
        &self.tracing
    }

    /// Records one finished sequence.
    pub fn record(
        &self,
        parent: Option<&SpanContext>,
        arrival: Arrival,
        done: &ChoiceDone,
        prompt_tokens: u32,
        request_id: String,
        params: SpanParams,
    ) {
        record(
            &self.tracing.tracer(),
            parent,
            arrival,
            done,
            prompt_tokens,
            request_id,
            params,
        );
    }
}

fn instance_id() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

fn secs(later: Instant, earlier: Instant) -> f64 {
    later.saturating_duration_since(earlier).as_secs_f64()
}

/// Builds and ends the span on `tracer` (which must use the `vllm.tracing.otel` scope).
pub fn record(
    tracer: &Tracer,
    parent: Option<&SpanContext>,
    arrival: Arrival,
    done: &ChoiceDone,
    prompt_tokens: u32,
    request_id: String,
    params: SpanParams,
) {
    use vllm::attr::*;
    let mut span = tracer.start_at(
        vllm::LLM_REQUEST_SPAN,
        SpanKind::Server,
        parent,
        arrival.wall,
    );
    if !span.is_recording() {
        return;
    }
    span.set_attribute(
        LATENCY_TIME_TO_FIRST_TOKEN,
        secs(done.first_token, arrival.at),
    );
    span.set_attribute(LATENCY_E2E, secs(done.last_token, arrival.at));
    span.set_attribute(LATENCY_TIME_IN_QUEUE, secs(done.scheduled, arrival.queued));
    span.set_attribute(USAGE_PROMPT_TOKENS, i64::from(prompt_tokens));
    span.set_attribute(USAGE_COMPLETION_TOKENS, i64::from(done.completion_tokens));
    span.set_attribute(
        LATENCY_TIME_IN_MODEL_PREFILL,
        secs(done.first_token, done.scheduled),
    );
    span.set_attribute(
        LATENCY_TIME_IN_MODEL_DECODE,
        secs(done.last_token, done.first_token),
    );
    span.set_attribute(
        LATENCY_TIME_IN_MODEL_INFERENCE,
        secs(done.last_token, done.scheduled),
    );
    span.set_attribute(REQUEST_ID, request_id);
    if params.top_p != 0.0 {
        span.set_attribute(REQUEST_TOP_P, params.top_p);
    }
    if params.max_tokens != 0 {
        span.set_attribute(REQUEST_MAX_TOKENS, i64::from(params.max_tokens));
    }
    if params.temperature != 0.0 {
        span.set_attribute(REQUEST_TEMPERATURE, params.temperature);
    }
    span.set_attribute(REQUEST_N, 1i64);
    // The span ends when the final output is processed: now.
    let elapsed = Instant::now().saturating_duration_since(arrival.at);
    span.end_at(arrival.wall + elapsed.max(Duration::from_nanos(1)));
}
