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
mod tls;
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

// Built once per pipeline; the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Transport {
    Grpc(grpc::GrpcTransport),
    Http(http::HttpTransport),
}

/// Exports spans over OTLP.
pub struct OtlpExporter {
    encoder: Encoder,
    transport: Transport,
    protocol: Protocol,
    timeout: Duration,
    endpoint: String,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("protocol", &self.protocol)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl OtlpExporter {
    /// Builds the exporter. Must run inside a Tokio runtime: the gRPC channel starts a
    /// background task. Connecting is lazy, so a receiver that is down is not an error here.
    pub fn new(config: &OtlpConfig, encoder: Encoder) -> Result<OtlpExporter, BuildError> {
        let transport = match config.protocol {
            Protocol::Grpc => Transport::Grpc(grpc::GrpcTransport::new(config)?),
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                Transport::Http(http::HttpTransport::new(config)?)
            }
        };
        Ok(OtlpExporter {
            encoder,
            transport,
            protocol: config.protocol,
            timeout: config.timeout,
            endpoint: redact_userinfo(&config.endpoint),
        })
    }

    fn encode(&self, batch: &[SpanRecord]) -> Result<Bytes, ExportError> {
        match self.protocol {
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

    async fn send_once(&self, body: Bytes, timeout: Duration) -> Result<Accepted, ExportError> {
        match &self.transport {
            Transport::Grpc(t) => t.send(body, timeout).await,
            Transport::Http(t) => t.send(body, timeout).await,
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
