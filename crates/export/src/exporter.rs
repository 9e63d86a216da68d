//! The interface every sink implements: OTLP, console, file, or one of a library user's own.

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use inferscope_core::SpanRecord;

/// What a receiver accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Spans the receiver rejected in an otherwise successful request (OTLP `partial_success`).
    pub rejected: u64,
    /// The receiver's explanation of the rejection.
    pub message: Option<String>,
    /// Attempts made, the successful one included.
    pub attempts: u32,
}

/// A failed export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExportError {
    /// What happened; never contains header values or other secrets.
    pub message: String,
    /// Whether the same request may succeed later (OTLP's retryable codes and statuses).
    pub retryable: bool,
    /// How long the receiver asked us to wait (`Retry-After`, gRPC `RetryInfo`).
    pub retry_after: Option<Duration>,
    /// Attempts made.
    pub attempts: u32,
}

impl ExportError {
    /// A failure that retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> ExportError {
        ExportError {
            message: message.into(),
            retryable: false,
            retry_after: None,
            attempts: 1,
        }
    }

    /// A failure that may go away.
    pub fn retryable(message: impl Into<String>, retry_after: Option<Duration>) -> ExportError {
        ExportError {
            message: message.into(),
            retryable: true,
            retry_after,
            attempts: 1,
        }
    }
}

/// A destination for finished spans. Called from the export thread only, one batch at a time.
pub trait SpanExporter: Send + Sync {
    /// A short name for logs and metrics (`otlp`, `console`, `file`).
    fn name(&self) -> &'static str;

    /// Exports `batch`, retrying where that makes sense, and gives up at `deadline`.
    fn export<'a>(
        &'a self,
        batch: &'a [SpanRecord],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Accepted, ExportError>>;
}
