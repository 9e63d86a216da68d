//! Cost, on the request path, of recording one finished inference span of 25 attributes
//! (`inferscope_testkit::sample::record_inference_span`, shared with the tests):
//! tracing off, not sampled, and sampled (handed to the real bounded batch processor, whose
//! export thread drains it). The same work through opentelemetry_sdk is measured beside it
//! for docs/adr/0001-lean-exporter.md.
//!
//! `cargo bench -p inferscope-export --bench record_span`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::future::BoxFuture;
use inferscope_core::trace_context::extract_trace_context;
use inferscope_core::{SpanContext, SpanRecord, Tracer};
use inferscope_export::{Accepted, ExportError, SpanExporter, Tracing, TracingBuilder};
use inferscope_semconv::attr;

#[inline(never)]
fn record(tracer: &Tracer, parent: Option<&SpanContext>) {
    inferscope_testkit::sample::record_inference_span(tracer, parent, "chatcmpl-beca11eecc0ffe74");
}

/// Discards every batch: isolates the request-path cost from any network.
struct NullExporter;

impl SpanExporter for NullExporter {
    fn name(&self) -> &'static str {
        "null"
    }
    fn export<'a>(
        &'a self,
        _batch: &'a [SpanRecord],
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Accepted, ExportError>> {
        Box::pin(async { Ok(Accepted::default()) })
    }
}

fn pipeline(sampler: &str) -> Tracing {
    let env: Vec<(&str, &str)> = vec![
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_TRACES_SAMPLER", sampler),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "65536"),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ];
    let env: std::collections::BTreeMap<String, String> = env
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    TracingBuilder::new("bench")
        .with_env(env)
        .with_exporter(Box::new(NullExporter))
        .build()
        .unwrap()
}

fn inferscope(c: &mut Criterion) {
    let mut g = c.benchmark_group("record_span");
    let headers = vec![(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    )];
    let unsampled_parent = extract_trace_context(&headers).unwrap();

    let off = Tracer::disabled();
    g.bench_function("tracing_off", |b| b.iter(|| record(black_box(&off), None)));

    let never = pipeline("always_off");
    let t = never.tracer();
    g.bench_function("unsampled_root", |b| b.iter(|| record(black_box(&t), None)));

    let parent_based = pipeline("parentbased_always_on");
    let t = parent_based.tracer();
    g.bench_function("unsampled_parent", |b| {
        b.iter(|| record(black_box(&t), Some(&unsampled_parent)))
    });

    // Recorded in chunks that fit the queue, flushed between chunks outside the timed region,
    // so no span is dropped: a dropped span is cheaper and would flatter the figure.
    let always = pipeline("always_on");
    let t = always.tracer();
    g.bench_function("sampled", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                let start = Instant::now();
                for _ in 0..n {
                    record(black_box(&t), None);
                }
                total += start.elapsed();
                always.flush_blocking(Duration::from_secs(30)).unwrap();
                left -= n;
            }
            total
        })
    });
    g.finish();
    let stats = always.stats();
    always.shutdown_blocking(Duration::from_secs(10)).ok();
    assert_eq!(
        stats.dropped, 0,
        "the sampled figure is only honest without drops"
    );
    println!(
        "sampled pipeline: {} spans recorded, none dropped",
        stats.enqueued
    );
}

const CHUNK: u64 = 4096;

mod sdk {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData};

    #[derive(Debug)]
    struct Noop;

    impl opentelemetry_sdk::trace::SpanExporter for Noop {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            Ok(())
        }
    }

    fn provider(sampler: Sampler) -> SdkTracerProvider {
        let processor = BatchSpanProcessor::builder(Noop)
            .with_batch_config(
                opentelemetry_sdk::trace::BatchConfigBuilder::default()
                    .with_max_queue_size(65536)
                    .with_scheduled_delay(Duration::from_millis(50))
                    .build(),
            )
            .build();
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler)
            .build()
    }

    #[inline(never)]
    fn record(tracer: &opentelemetry_sdk::trace::SdkTracer) {
        let mut span = tracer.start("chat tiny-llama");
        span.set_attribute(KeyValue::new(attr::OPERATION_NAME, "chat"));
        span.set_attribute(KeyValue::new(attr::PROVIDER_NAME, "vllm"));
        span.set_attribute(KeyValue::new(attr::REQUEST_MODEL, "tiny-llama"));
        span.set_attribute(KeyValue::new(attr::RESPONSE_MODEL, "tiny-llama"));
        span.set_attribute(KeyValue::new(attr::SERVER_ADDRESS, "127.0.0.1"));
        span.set_attribute(KeyValue::new(attr::SERVER_PORT, 8000i64));
        span.set_attribute(KeyValue::new(attr::REQUEST_MAX_TOKENS, 16i64));
        span.set_attribute(KeyValue::new(attr::REQUEST_TEMPERATURE, 0.7));
        span.set_attribute(KeyValue::new(attr::REQUEST_TOP_P, 0.9));
        span.set_attribute(KeyValue::new(attr::REQUEST_STREAM, true));
        span.set_attribute(KeyValue::new(
            attr::RESPONSE_ID,
            "chatcmpl-beca11eecc0ffe74",
        ));
        span.set_attribute(KeyValue::new(
            attr::RESPONSE_FINISH_REASONS,
            opentelemetry::Value::Array(vec![opentelemetry::StringValue::from("stop")].into()),
        ));
        span.set_attribute(KeyValue::new(attr::USAGE_INPUT_TOKENS, 5i64));
        span.set_attribute(KeyValue::new(attr::USAGE_OUTPUT_TOKENS, 16i64));
        span.set_attribute(KeyValue::new(attr::RESPONSE_TIME_TO_FIRST_CHUNK, 0.025));
        for (i, k) in inferscope_testkit::sample::SAMPLE_EXTRA_KEYS
            .iter()
            .enumerate()
        {
            span.set_attribute(KeyValue::new(*k, i as f64));
        }
        span.end();
    }

    pub(super) fn bench(c: &mut Criterion) {
        let mut g = c.benchmark_group("opentelemetry_sdk");
        let off = provider(Sampler::AlwaysOff);
        let t = off.tracer("bench");
        g.bench_function("unsampled_root", |b| b.iter(|| record(black_box(&t))));
        let on = provider(Sampler::AlwaysOn);
        let t = on.tracer("bench");
        g.bench_function("sampled", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    let start = Instant::now();
                    for _ in 0..n {
                        record(black_box(&t));
                    }
                    total += start.elapsed();
                    on.force_flush().unwrap();
                    left -= n;
                }
                total
            })
        });
        g.finish();
        let _ = on.shutdown();
        let _ = off.shutdown();
    }
}

criterion_group!(benches, inferscope, sdk::bench);
criterion_main!(benches);
