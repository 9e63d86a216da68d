//! The disabled and unsampled paths allocate nothing: a counting global allocator proves it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::sync::{Arc, Mutex};

use inferscope_core::trace_context::extract_trace_context;
use inferscope_core::{InMemoryProcessor, Sampler, Scope, SpanKind, Tracer};
use inferscope_semconv::attr;
use inferscope_testkit::alloc::{Counting, allocations};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The tracers' processors are shared; keep the tests apart anyway.
static SERIAL: Mutex<()> = Mutex::new(());

fn record(tracer: &Tracer, parent: Option<&inferscope_core::SpanContext>) {
    let mut span = tracer.start("chat tiny-llama", SpanKind::Client, parent);
    span.set_attribute(attr::OPERATION_NAME, "chat");
    span.set_attribute(attr::PROVIDER_NAME, "vllm");
    span.set_attribute(attr::REQUEST_MODEL, "tiny-llama");
    span.set_attribute(attr::SERVER_PORT, 8000i64);
    span.set_attribute(attr::REQUEST_TEMPERATURE, 0.7);
    span.set_attribute(attr::REQUEST_STREAM, true);
    span.set_attribute(attr::USAGE_INPUT_TOKENS, 5i64);
    span.set_attribute(attr::USAGE_OUTPUT_TOKENS, 16i64);
    span.end();
}

fn allocations_during(f: impl Fn()) -> u64 {
    f(); // warm up thread-locals (the id generator's seed)
    let before = allocations();
    for _ in 0..1000 {
        f();
    }
    allocations() - before
}

#[test]
fn disabled_tracer_allocates_nothing() {
    let _g = SERIAL.lock().unwrap();
    let tracer = Tracer::disabled();
    let headers = vec![(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )];
    let parent = extract_trace_context(&headers).unwrap();
    assert_eq!(allocations_during(|| record(&tracer, None)), 0);
    assert_eq!(allocations_during(|| record(&tracer, Some(&parent))), 0);
}

#[test]
fn unsampled_spans_allocate_nothing() {
    let _g = SERIAL.lock().unwrap();
    let spans = InMemoryProcessor::new();
    let off = Tracer::new(Scope::new("t"), Sampler::AlwaysOff, spans.clone());
    assert_eq!(allocations_during(|| record(&off, None)), 0);
    let ratio = Tracer::new(Scope::new("t"), Sampler::TraceIdRatio(0.0), spans.clone());
    assert_eq!(allocations_during(|| record(&ratio, None)), 0);
    // A parent that was not sampled, with vendor state: the state is shared, not copied.
    let parent_based = Tracer::new(Scope::new("t"), Sampler::default(), spans.clone());
    let headers = vec![
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ),
        ("tracestate", "rojo=00f067aa0ba902b7"),
    ];
    let parent = extract_trace_context(&headers).unwrap();
    assert_eq!(
        allocations_during(|| record(&parent_based, Some(&parent))),
        0
    );
    assert!(spans.is_empty());
}

#[test]
fn sampled_spans_do_allocate() {
    // The counter works: a recorded span needs its record and attribute list.
    let _g = SERIAL.lock().unwrap();
    let spans = InMemoryProcessor::new();
    let on = Tracer::new(Scope::new("t"), Sampler::AlwaysOn, Arc::clone(&spans) as _);
    assert!(allocations_during(|| record(&on, None)) >= 2000);
    assert_eq!(spans.take().len(), 1001);
}
