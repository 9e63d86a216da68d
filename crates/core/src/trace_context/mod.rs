//! W3C Trace Context: the span context, the `traceparent` and `tracestate` headers, and
//! extraction from and injection into HTTP headers.
//!
//! Also the equivalents of vLLM's `vllm.tracing` helpers ([`TRACE_HEADERS`],
//! [`contains_trace_headers`], [`extract_trace_headers`], [`extract_trace_context`],
//! [`log_tracing_disabled_warning`]), with header names compared case-insensitively where vLLM
//! compares them case-sensitively.

mod propagation;
mod traceparent;
mod tracestate;

pub use propagation::{
    HeaderRead, HeaderWrite, TRACE_HEADERS, TRACEPARENT, TRACESTATE, TraceHeaders,
    contains_trace_headers, extract_trace_context, extract_trace_headers, inject,
    log_tracing_disabled_warning,
};
pub use traceparent::{
    TRACEPARENT_LEN, Traceparent, TraceparentBuf, TraceparentError, format_traceparent,
    parse_traceparent,
};
pub use tracestate::{
    MAX_LEN as TRACESTATE_MAX_LEN, MAX_MEMBERS, TraceState, valid_key, valid_value,
};

use crate::ids::{SpanId, TraceFlags, TraceId};

/// The identity of a span as it propagates: ids, flags and vendor state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpanContext {
    /// The trace.
    pub trace_id: TraceId,
    /// The span.
    pub span_id: SpanId,
    /// The flags (`sampled`).
    pub flags: TraceFlags,
    /// Vendor state, forwarded unchanged.
    pub state: TraceState,
    /// Whether the context came from another process.
    pub remote: bool,
}

impl SpanContext {
    /// The invalid context: no trace.
    pub const INVALID: SpanContext = SpanContext {
        trace_id: TraceId::INVALID,
        span_id: SpanId::INVALID,
        flags: TraceFlags::NONE,
        state: TraceState::EMPTY,
        remote: false,
    };

    /// Whether both ids are valid.
    pub fn is_valid(&self) -> bool {
        self.trace_id.is_valid() && self.span_id.is_valid()
    }

    /// Whether the `sampled` flag is set.
    pub fn is_sampled(&self) -> bool {
        self.flags.is_sampled()
    }

    /// The `traceparent` value for this context.
    pub fn traceparent(&self) -> TraceparentBuf {
        format_traceparent(self.trace_id, self.span_id, self.flags)
    }
}

/// Checks the parsers' invariants on arbitrary input; the fuzz targets and a smoke test call it.
/// It panics only when an invariant is broken.
#[doc(hidden)]
#[allow(clippy::panic)]
pub fn fuzz_check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tp) = parse_traceparent(text) {
        if !tp.trace_id.is_valid() || !tp.parent_id.is_valid() {
            panic!("accepted an all-zero id: {text:?}");
        }
        let again = format_traceparent(tp.trace_id, tp.parent_id, tp.flags);
        match parse_traceparent(&again) {
            Ok(back) if back.trace_id == tp.trace_id && back.parent_id == tp.parent_id => {}
            other => panic!("round trip of {text:?} gave {other:?}"),
        }
    }
    let state = TraceState::parse(text.split('\n'));
    if let Some(v) = state.header_value() {
        if v.len() > TRACESTATE_MAX_LEN || state.members().count() > MAX_MEMBERS {
            panic!("tracestate kept too much: {v:?}");
        }
        if TraceState::parse([v]) != state {
            panic!("tracestate did not round-trip: {v:?}");
        }
    }
    let headers = vec![
        (TRACEPARENT.to_owned(), text.to_owned()),
        (TRACESTATE.to_owned(), text.to_owned()),
    ];
    if let Some(ctx) = extract_trace_context(&headers)
        && (!ctx.is_valid() || !ctx.remote)
    {
        panic!("extracted an invalid or local context from {text:?}");
    }
}
