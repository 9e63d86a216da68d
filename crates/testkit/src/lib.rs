//! What inferscope's tests and benchmarks share (`publish = false`):
//!
//! - [`alloc`]: a global allocator counting each thread's allocations;
//! - [`receiver`]: an in-process OTLP receiver (gRPC and HTTP, protobuf and JSON, gzip, TLS)
//!   that records every request and can be scripted to fail, throttle or partially reject;
//! - [`http`]: a plain HTTP client and the reply it reads whole (status, headers, body, frames,
//!   whether the body was cut);
//! - [`sample`]: the sample inference span of the export benchmarks and tests;
//! - [`paths`]: the workspace, `../shared`, a free port, and the Python venv that
//!   `scripts/python-env.sh` makes (the real `openai`, `oteltest`, Phoenix clients).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod alloc;
pub mod http;
pub mod paths;
pub mod receiver;
pub mod sample;

pub use receiver::{Received, ReceivedSpan, Receiver, Reply, Transport, display};
