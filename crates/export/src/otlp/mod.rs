//! The OTLP exporter: one encoding per batch, then gRPC or HTTP with retries.
//!
//! Retry rules (OTLP specification, "Failures"):
//! - gRPC: `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE`,
//!   `DATA_LOSS` are retried; `RESOURCE_EXHAUSTED` only when the server sent `RetryInfo`.
//! - HTTP: 429, 502, 503 and 504 are retried, and so are connection failures and timeouts.
//! - The server's delay (`Retry-After`, `RetryInfo`) is honoured; otherwise exponential backoff
//!   with jitter, from 100 ms doubling to 5 s. Nothing is retried past the batch's deadline.
//! - `partial_success` is reported as rejected spans, never retried.

pub mod encode;
mod grpc;
mod http;
pub mod metrics;
pub mod tls;
mod wire;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use inferscope_core::SpanRecord;

use crate::config::{OtlpConfig, Protocol, redact_userinfo};
use crate::exporter::{Accepted, ExportError, SpanExporter};
pub use encode::Encoder;

/// Why an exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The endpoint cannot be used.
    #[error("OTLP endpoint {endpoint}: {reason}")]
    Endpoint {
        /// The endpoint, credentials hidden.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// A certificate or key file cannot be used.
    #[error("TLS file {path}: {reason}")]
    Tls {
        /// The file.
        path: String,
        /// What is wrong (never the file's contents).
        reason: String,
    },
    /// A header cannot be sent.
    #[error("OTLP header `{0}` cannot be sent (invalid name or value)")]
    Header(String),
    /// A file sink cannot be opened.
    #[error("span file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What an exporter sends: the signal picks the gRPC service and the response's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `ExportTraceServiceRequest`.
    Traces,
    /// `ExportMetricsServiceRequest`.
    Metrics,
}

impl Signal {
    fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }
}

/// An export response of either signal: `ExportTraceServiceResponse` and
/// `ExportMetricsServiceResponse` share their wire shape (`partial_success` = 1, holding the
/// rejected count = 1 and `error_message` = 2); only the JSON names of the count differ.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ExportResponse {
    #[prost(message, optional, tag = "1")]
    partial_success: Option<PartialSuccess>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PartialSuccess {
    #[prost(int64, tag = "1")]
    rejected: i64,
    #[prost(string, tag = "2")]
    error_message: String,
}

impl ExportResponse {
    /// Reads an OTLP/JSON response: `partialSuccess.rejectedSpans` or `.rejectedDataPoints`
    /// (an int64, so a string or a number), and `errorMessage`.
    fn from_json(body: &[u8]) -> Option<ExportResponse> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let Some(p) = v.get("partialSuccess") else {
            return Some(ExportResponse::default());
        };
        let rejected = ["rejectedSpans", "rejectedDataPoints"]
            .iter()
            .find_map(|k| p.get(*k))
            .and_then(|r| {
                r.as_i64()
                    .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(0);
        let error_message = p
            .get("errorMessage")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_owned();
        Some(ExportResponse {
            partial_success: Some(PartialSuccess {
                rejected,
                error_message,
            }),
        })
    }

    fn accepted(self) -> Accepted {
        let partial = self.partial_success;
        Accepted {
            rejected: partial
                .as_ref()
                .map_or(0, |p| u64::try_from(p.rejected).unwrap_or(0)),
            message: partial
                .map(|p| p.error_message)
                .filter(|m| !m.is_empty())
                .map(|m| clip(&m)),
            attempts: 1,
        }
    }
}

// Built once per pipeline; the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Transport {
    Grpc(grpc::GrpcTransport),
    Http(http::HttpTransport),
}

/// Sends encoded export requests of one signal to one endpoint, with OTLP's retry rules.
pub(crate) struct Sender {
    transport: Transport,
    protocol: Protocol,
    timeout: Duration,
    endpoint: String,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("protocol", &self.protocol)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl Sender {
    /// Must run inside a Tokio runtime (gRPC's channel starts a task); connects lazily.
    pub(crate) fn new(config: &OtlpConfig, signal: Signal) -> Result<Sender, BuildError> {
        let transport = match config.protocol {
            Protocol::Grpc => Transport::Grpc(grpc::GrpcTransport::new(config, signal)?),
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                Transport::Http(http::HttpTransport::new(config)?)
            }
        };
        Ok(Sender {
            transport,
            protocol: config.protocol,
            timeout: config.timeout,
            endpoint: redact_userinfo(&config.endpoint),
        })
    }

    async fn send_once(&self, body: Bytes, timeout: Duration) -> Result<Accepted, ExportError> {
        match &self.transport {
            Transport::Grpc(t) => t.send(body, timeout).await,
            Transport::Http(t) => t.send(body, timeout).await,
        }
    }

    /// Sends `body`, retrying what OTLP says to retry, until `deadline`.
    pub(crate) async fn send(
        &self,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Accepted, ExportError> {
        let mut backoff = Backoff::new();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ExportError {
                    message: format!("no time left to export to {}", self.endpoint),
                    retryable: true,
                    retry_after: None,
                    attempts,
                });
            }
            match self.send_once(body.clone(), self.timeout.min(left)).await {
                Ok(mut accepted) => {
                    accepted.attempts = attempts;
                    return Ok(accepted);
                }
                Err(mut e) => {
                    e.attempts = attempts;
                    e.message = format!("{} ({})", e.message, self.endpoint);
                    if !e.retryable {
                        return Err(e);
                    }
                    let wait = e.retry_after.unwrap_or_else(|| backoff.delay());
                    if Instant::now() + wait >= deadline {
                        return Err(e);
                    }
                    tracing::debug!(attempt = attempts, wait_ms = wait.as_millis() as u64, error = %e.message, "OTLP export failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Exports spans over OTLP.
pub struct OtlpExporter {
    encoder: Encoder,
    sender: Sender,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("sender", &self.sender)
            .finish()
    }
}

impl OtlpExporter {
    /// Builds the exporter. Must run inside a Tokio runtime: the gRPC channel starts a
    /// background task. Connecting is lazy, so a receiver that is down is not an error here.
    pub fn new(config: &OtlpConfig, encoder: Encoder) -> Result<OtlpExporter, BuildError> {
        Ok(OtlpExporter {
            encoder,
            sender: Sender::new(config, Signal::Traces)?,
        })
    }

    fn encode(&self, batch: &[SpanRecord]) -> Result<Bytes, ExportError> {
        match self.sender.protocol {
            Protocol::Grpc | Protocol::HttpProtobuf => {
                let mut out = Vec::new();
                self.encoder.write_protobuf(batch, &mut out);
                Ok(Bytes::from(out))
            }
            Protocol::HttpJson => serde_json::to_vec(&self.encoder.request(batch))
                .map(Bytes::from)
                .map_err(|e| ExportError::permanent(format!("cannot encode OTLP/JSON: {e}"))),
        }
    }
}

/// Exponential backoff with jitter: 100 ms, doubling, at most 5 s; each delay is drawn
/// uniformly from its upper half.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        let half = d / 2;
        half + Duration::from_nanos(fastrand::u64(
            0..=u64::try_from(half.as_nanos()).unwrap_or(0),
        ))
    }
}

impl SpanExporter for OtlpExporter {
    fn name(&self) -> &'static str {
        "otlp"
    }

    fn export<'a>(
        &'a self,
        batch: &'a [SpanRecord],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Accepted, ExportError>> {
        Box::pin(async move {
            let body = self.encode(batch)?;
            self.sender.send(body, deadline).await
        })
    }
}

/// Shortens a receiver's message for logs.
fn clip(s: &str) -> String {
    const MAX: usize = 200;
    let s = s.trim();
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let mut b = Backoff::new();
        let first = b.delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..10 {
            b.delay();
        }
        let late = b.delay();
        assert!(late >= Duration::from_millis(2500) && late <= Duration::from_secs(5));
    }

    #[test]
    fn clip_keeps_char_boundaries() {
        let s = "é".repeat(300);
        let c = clip(&s);
        assert!(c.len() <= 204);
        assert!(c.ends_with('…'));
    }
}
