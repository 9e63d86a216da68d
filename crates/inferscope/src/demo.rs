//! `inferscope demo`: records a sample inference trace through the real export pipeline
//! (console sink, OTLP-JSON file sink, and OTLP too if `OTEL_TRACES_EXPORTER` asks for it),
//! prints it as a waterfall, and names the file it wrote.
//!
//! The trace is synthetic: its shape and timings are those of a real vLLM 0.32 request
//! (`../shared/fixtures/vllm-0.32-cpu/spans-for-http-fixtures.jsonl`). Once the gateway and the
//! simulator exist, the demo sends real requests instead.

#![allow(
    clippy::print_stdout,
    reason = "the demo's terminal output is its product"
)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use inferscope_core::span::{Scope, SpanKind, SpanRecord, Status};
use inferscope_core::trace_context::extract_trace_context;
use inferscope_core::{SpanContext, SpanId, Tracer};
use inferscope_export::{Accepted, ExportError, ExporterSettings, SpanExporter, TracingBuilder};
use inferscope_semconv::{attr, http, value, vllm};

/// Options of `inferscope demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Where to write the spans as OTLP-JSON lines (default: a new file in the temp directory).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Keeps a copy of every exported span, to draw the waterfall.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<SpanRecord>>>);

impl SpanExporter for Capture {
    fn name(&self) -> &'static str {
        "demo-capture"
    }
    fn export<'a>(
        &'a self,
        batch: &'a [SpanRecord],
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Accepted, ExportError>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(batch);
        Box::pin(async { Ok(Accepted::default()) })
    }
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let out = args.out.unwrap_or_else(|| {
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        std::env::temp_dir().join(format!(
            "inferscope-demo-{stamp}-{}.jsonl",
            std::process::id()
        ))
    });
    let capture = Capture::default();
    let tracing = TracingBuilder::new("inferscope.demo")
        // Embedded defaults: the console only. OTEL_TRACES_EXPORTER=otlp,console adds OTLP.
        .with_file_settings(ExporterSettings {
            exporters: Some(vec!["console".into()]),
            service_name: Some("inferscope-demo".into()),
            schedule_delay_ms: Some(100),
            ..ExporterSettings::default()
        })
        .with_settings(ExporterSettings {
            file: Some(out.clone()),
            ..ExporterSettings::default()
        })
        .with_exporter(Box::new(capture.clone()))
        .build()
        .context("starting the trace pipeline")?;
    let tracer = tracing.tracer();

    println!("inferscope demo: a sample streamed chat request and a failed one\n");
    println!("console sink (one line per request):");
    let now = SystemTime::now();
    streamed_chat(&tracer, now - Duration::from_millis(400));
    failed_request(&tracer, now - Duration::from_millis(100));
    tracing
        .shutdown(Duration::from_secs(10))
        .await
        .context("exporting the spans")?;

    let spans = capture
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    println!("\nwaterfall:\n");
    print!("{}", crate::waterfall::render(&spans));
    let stats = tracing.stats();
    println!(
        "{} spans written as OTLP-JSON lines to {}",
        spans.len(),
        out.display()
    );
    if stats.dropped > 0 || stats.sinks.iter().any(|s| s.failed > 0) {
        anyhow::bail!("some spans were not exported: {stats:?}");
    }
    Ok(())
}

/// A streamed chat completion through a gateway, with vLLM's engine span and its phases.
fn streamed_chat(tracer: &Tracer, t0: SystemTime) {
    let ms = |m: f64| t0 + Duration::from_secs_f64(m / 1e3);
    // The caller sent the traceparent of the fixtures' streamed request.
    let incoming = vec![(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )];
    let parent = extract_trace_context(&incoming);

    let mut server = tracer.start_at(
        "POST /v1/chat/completions",
        SpanKind::Server,
        parent.as_ref(),
        t0,
    );
    server.set_attribute(http::REQUEST_METHOD, "POST");
    server.set_attribute(http::ROUTE, "/v1/chat/completions");
    server.set_attribute(http::URL_PATH, "/v1/chat/completions");
    server.set_attribute(http::URL_SCHEME, "http");
    server.set_attribute(http::NETWORK_PROTOCOL_VERSION, "1.1");
    server.set_attribute(http::RESPONSE_STATUS_CODE, 200i64);

    let mut client = tracer.start_at(
        "chat tiny-llama",
        SpanKind::Client,
        Some(server.context()),
        ms(0.4),
    );
    client.set_attribute(attr::OPERATION_NAME, value::operation::CHAT);
    client.set_attribute(attr::PROVIDER_NAME, value::provider::VLLM);
    client.set_attribute(attr::REQUEST_MODEL, "tiny-llama");
    client.set_attribute(attr::SERVER_ADDRESS, "127.0.0.1");
    client.set_attribute(attr::SERVER_PORT, 8011i64);
    client.set_attribute(attr::REQUEST_MAX_TOKENS, 8i64);
    client.set_attribute(attr::REQUEST_TEMPERATURE, 1.0);
    client.set_attribute(attr::REQUEST_TOP_P, 1.0);
    client.set_attribute(attr::REQUEST_STREAM, true);
    client.set_attribute(attr::RESPONSE_ID, "chatcmpl-beca11eecc0ffe74");
    client.set_attribute(attr::RESPONSE_MODEL, "tiny-llama");
    client.set_attribute(attr::RESPONSE_FINISH_REASONS, vec!["length".to_owned()]);
    client.set_attribute(attr::USAGE_INPUT_TOKENS, 13i64);
    client.set_attribute(attr::USAGE_OUTPUT_TOKENS, 8i64);
    client.set_attribute(attr::RESPONSE_TIME_TO_FIRST_CHUNK, 0.0301);

    // vLLM's own span, as the real server reported it, and its phases.
    let engine_start = 1.1;
    let (ttft, e2e, queue, prefill, decode) = (28.65, 65.25, 0.034, 10.12, 38.47);
    let preprocess = ttft - queue - prefill;
    let engine_ctx = SpanContext {
        span_id: SpanId::random(),
        ..client.context().clone()
    };
    let scope = Scope::new(vllm::TRACING_SCOPE);
    let client_seen_by_vllm = SpanContext {
        remote: true,
        ..client.context().clone()
    };
    let mut engine = SpanRecord::new(
        engine_ctx.clone(),
        Some(&client_seen_by_vllm),
        vllm::LLM_REQUEST_SPAN,
        SpanKind::Server,
        ms(engine_start),
        scope.clone(),
    );
    engine.end_unix_nanos = inferscope_core::span::unix_nanos(ms(engine_start + e2e));
    engine.push(vllm::attr::REQUEST_ID, "chatcmpl-beca11eecc0ffe74");
    engine.push(vllm::attr::LATENCY_TIME_TO_FIRST_TOKEN, ttft / 1e3);
    engine.push(vllm::attr::LATENCY_E2E, e2e / 1e3);
    engine.push(vllm::attr::USAGE_PROMPT_TOKENS, 13i64);
    engine.push(vllm::attr::USAGE_COMPLETION_TOKENS, 8i64);
    let mut phase_start = engine_start;
    for (name, length) in [
        ("preprocess", preprocess),
        ("queue", queue),
        ("prefill", prefill),
        ("decode", decode),
    ] {
        let end = (phase_start + length).min(engine_start + e2e);
        let ctx = SpanContext {
            span_id: SpanId::random(),
            ..engine_ctx.clone()
        };
        let mut phase = SpanRecord::new(
            ctx,
            Some(&engine_ctx),
            name,
            SpanKind::Internal,
            ms(phase_start),
            scope.clone(),
        );
        phase.end_unix_nanos = inferscope_core::span::unix_nanos(ms(end));
        tracer.export(phase);
        phase_start = end;
    }
    tracer.export(engine);
    client.end_at(ms(71.5));
    server.end_at(ms(72.0));
}

/// A request for a model the server does not have: vLLM answers 404 and emits no span; the
/// gateway's spans still record it.
fn failed_request(tracer: &Tracer, t0: SystemTime) {
    let ms = |m: f64| t0 + Duration::from_secs_f64(m / 1e3);
    let mut server = tracer.start_at("POST /v1/chat/completions", SpanKind::Server, None, t0);
    server.set_attribute(http::REQUEST_METHOD, "POST");
    server.set_attribute(http::ROUTE, "/v1/chat/completions");
    server.set_attribute(http::RESPONSE_STATUS_CODE, 404i64);
    let mut client = tracer.start_at(
        "chat no-such-model",
        SpanKind::Client,
        Some(server.context()),
        ms(0.3),
    );
    client.set_attribute(attr::OPERATION_NAME, value::operation::CHAT);
    client.set_attribute(attr::PROVIDER_NAME, value::provider::VLLM);
    client.set_attribute(attr::REQUEST_MODEL, "no-such-model");
    client.set_attribute(attr::ERROR_TYPE, "404");
    client.set_status(Status::Error(
        "The model `no-such-model` does not exist.".into(),
    ));
    client.end_at(ms(2.1));
    server.end_at(ms(2.4));
}
