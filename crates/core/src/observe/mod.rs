//! The exchange observer: reads an OpenAI-style exchange (request body, then a response body
//! or SSE stream as it passes) into the facts an inference span records. No I/O: the gateway
//! and the library's tower layer feed it bytes and instants.
//!
//! - [`route`]: which requests are inference calls.
//! - [`request`]: the request body's facts, and the `include_usage` rewrite.
//! - [`response`]: a stream's events or a whole body, with the added usage chunk removed.
//! - [`sse`]: incremental SSE framing; [`timeline`]: time to first chunk and gap statistics.
//! - [`capture`]: content capture, hiding, redaction and truncation.
//! - [`budget`]: a bound on the bytes held for parsing across all exchanges.
//! - [`record`]: writing it all onto a span, in the chosen dialects.
//! - [`call`]: one inference call's life as one value, owning its span.
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use inferscope_core::observe::{capture::CapturePolicy, request, response::ResponseObserver, route};
//!
//! let route = route::classify("POST", "/v1/chat/completions").unwrap();
//! let body = br#"{"model":"tiny-llama","stream":true,"messages":[]}"#;
//! let facts = request::parse(route.api, body, &CapturePolicy::default());
//! let upstream_body = request::with_include_usage(route.api, body, &facts).unwrap();
//! assert!(upstream_body.ends_with(br#""stream_options":{"include_usage":true}}"#));
//!
//! let mut obs = ResponseObserver::new(true, true, &CapturePolicy::default(), 1 << 20);
//! let usage = Bytes::from_static(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n");
//! assert!(obs.on_chunk(usage, Instant::now()).is_empty()); // the client never sees it
//! assert_eq!(obs.facts().usage.unwrap().output_tokens, Some(1));
//! ```

pub mod budget;
pub mod call;
pub mod capture;
mod json;
pub mod record;
pub mod request;
pub mod response;
pub mod route;
pub mod sse;
pub mod timeline;
