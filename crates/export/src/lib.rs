//! Bounded, non-blocking export of inferscope spans.
//!
//! - [`TracingBuilder`] / [`init_tracer`]: the Rust equivalent of vLLM's
//!   `init_tracer(instrumenting_module_name, otlp_traces_endpoint)`, configured from the
//!   standard `OTEL_*` variables ([`config`] lists them and their precedence).
//! - [`batch`]: the bounded queue the request path `try_send`s into, and the export thread.
//! - [`otlp`]: OTLP over gRPC, HTTP/protobuf and HTTP/JSON; TLS, headers, gzip, timeouts,
//!   retries with backoff honouring `Retry-After` / `RetryInfo`, `partial_success`.
//! - [`sink`]: a console sink (one line per request) and a file sink (OTLP-JSON lines).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use inferscope_core::SpanKind;
//! use inferscope_semconv::attr;
//!
//! // OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER… are honoured.
//! let tracing = inferscope_export::init_tracer("my.app", Some("http://127.0.0.1:4317"))?;
//! let tracer = tracing.tracer();
//! let mut span = tracer.start("chat tiny-llama", SpanKind::Client, None);
//! span.set_attribute(attr::OPERATION_NAME, "chat");
//! span.end(); // never blocks: a bounded try_send
//! tracing.shutdown(std::time::Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```

pub mod batch;
pub mod config;
pub mod exporter;
pub mod otlp;
mod pipeline;
pub mod sink;

pub use batch::{ExportStats, FlushError, StatsSnapshot};
pub use config::{ConfigErrors, ExporterConfig, ExporterSettings, Protocol};
pub use exporter::{Accepted, ExportError, SpanExporter};
pub use inferscope_settings::Secret;
pub use pipeline::{Tracing, TracingBuilder, init_tracer};

/// Why a pipeline could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The configuration has errors (all of them are listed).
    #[error(transparent)]
    Config(ConfigErrors),
    /// An exporter could not be built.
    #[error(transparent)]
    Build(#[from] otlp::BuildError),
    /// The export thread or its runtime could not start.
    #[error("cannot start the export thread: {0}")]
    Runtime(std::io::Error),
}
