//! The I/O-free heart of inferscope: W3C trace context, span records, sampling and the tracer.
//!
//! - [`trace_context`]: `traceparent` / `tracestate` parsing and formatting to Trace Context
//!   Level 1, extraction and injection through any header map (case-insensitive), and the
//!   equivalents of vLLM's `vllm.tracing` helpers.
//! - [`ids`]: trace and span ids and flags.
//! - [`span`]: [`SpanRecord`], the finished span every exporter consumes, and its values.
//! - [`sampling`]: the `OTEL_TRACES_SAMPLER` samplers.
//! - [`tracer`]: [`Tracer`] and [`Span`]; the disabled and unsampled paths allocate nothing.
//! - [`observe`]: the exchange observer, which reads an OpenAI-style request and its response
//!   (a JSON body or an SSE stream) into an inference span's attributes.
//!
//! Exporting lives in `inferscope-export`, which implements [`SpanProcessor`].
//!
//! ```
//! use inferscope_core::{InMemoryProcessor, Sampler, Scope, SpanKind, Tracer};
//! use inferscope_core::trace_context::{extract_trace_context, inject};
//! use inferscope_semconv::attr;
//!
//! let spans = InMemoryProcessor::new();
//! let tracer = Tracer::new(Scope::new("example"), Sampler::default(), spans.clone());
//!
//! // A request arrives with a traceparent; the span we start is its child.
//! let incoming = vec![("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")];
//! let parent = extract_trace_context(&incoming);
//! let mut span = tracer.start("chat tiny-llama", SpanKind::Client, parent.as_ref());
//! span.set_attribute(attr::OPERATION_NAME, "chat");
//!
//! // The upstream call carries the new span as its parent.
//! let mut outgoing: Vec<(String, String)> = Vec::new();
//! inject(span.context(), &mut outgoing);
//! assert!(outgoing[0].1.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//!
//! span.end();
//! assert_eq!(spans.take().len(), 1);
//! ```

pub mod ids;
pub mod observe;
pub mod sampling;
pub mod span;
pub mod trace_context;
pub mod tracer;

pub use ids::{SpanId, TraceFlags, TraceId};
pub use sampling::Sampler;
pub use span::{Event, KeyValue, Link, Resource, Scope, SpanKind, SpanRecord, Status, Str, Value};
pub use trace_context::{SpanContext, TraceState};
pub use tracer::{InMemoryProcessor, Span, SpanProcessor, Tracer};
