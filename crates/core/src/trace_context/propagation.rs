//! Extraction and injection of trace context through HTTP headers, case-insensitively.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{SpanContext, TraceState, parse_traceparent};

/// The `traceparent` header name.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header name.
pub const TRACESTATE: &str = "tracestate";
/// The headers that carry trace context, as in vLLM's `TRACE_HEADERS`.
pub const TRACE_HEADERS: [&str; 2] = [TRACEPARENT, TRACESTATE];

/// Read access to a set of headers, with names compared case-insensitively.
pub trait HeaderRead {
    /// Every value of the header `name`, in order. Values that are not valid UTF-8 are skipped.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a;
}

/// Write access to a set of headers.
pub trait HeaderWrite {
    /// Replaces every value of header `name` (matched case-insensitively) with `value`.
    fn set(&mut self, name: &'static str, value: &str);
    /// Removes header `name` (matched case-insensitively).
    fn remove(&mut self, name: &'static str);
}

impl HeaderRead for http::HeaderMap {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        // `HeaderMap` stores names lowercased and lowercases the name looked up.
        self.get_all(name).iter().filter_map(|v| v.to_str().ok())
    }
}

impl HeaderWrite for http::HeaderMap {
    fn set(&mut self, name: &'static str, value: &str) {
        match http::HeaderValue::from_str(value) {
            Ok(v) => {
                self.insert(http::HeaderName::from_static(name), v);
            }
            Err(_) => {
                self.remove(name);
            }
        }
    }
    fn remove(&mut self, name: &'static str) {
        http::HeaderMap::remove(self, name);
    }
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderRead for [(K, V)] {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderRead for Vec<(K, V)> {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.as_slice().values(name)
    }
}

impl HeaderWrite for Vec<(String, String)> {
    fn set(&mut self, name: &'static str, value: &str) {
        HeaderWrite::remove(self, name);
        self.push((name.to_owned(), value.to_owned()));
    }
    fn remove(&mut self, name: &'static str) {
        self.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
}

impl<S: std::hash::BuildHasher> HeaderRead for HashMap<String, String, S> {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl<S: std::hash::BuildHasher> HeaderWrite for HashMap<String, String, S> {
    fn set(&mut self, name: &'static str, value: &str) {
        HeaderWrite::remove(self, name);
        self.insert(name.to_owned(), value.to_owned());
    }
    fn remove(&mut self, name: &'static str) {
        self.retain(|k, _| !k.eq_ignore_ascii_case(name));
    }
}

impl HeaderRead for BTreeMap<String, String> {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Whether `traceparent` or `tracestate` is present, as vLLM's `contains_trace_headers`.
pub fn contains_trace_headers<H: HeaderRead + ?Sized>(headers: &H) -> bool {
    TRACE_HEADERS
        .iter()
        .any(|name| headers.values(name).next().is_some())
}

/// The trace headers found, with canonical lowercase names; vLLM's `extract_trace_headers`.
/// Several `tracestate` lines are joined with `,` as one list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceHeaders {
    /// The `traceparent` value, if exactly one was sent.
    pub traceparent: Option<String>,
    /// The `tracestate` value(s), joined.
    pub tracestate: Option<String>,
}

impl TraceHeaders {
    /// `(name, value)` pairs of the headers present.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            (TRACEPARENT, self.traceparent.as_deref()),
            (TRACESTATE, self.tracestate.as_deref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
    }
}

/// vLLM's `extract_trace_headers`, case-insensitive. A repeated `traceparent` is dropped: the
/// specification treats it as invalid.
pub fn extract_trace_headers<H: HeaderRead + ?Sized>(headers: &H) -> TraceHeaders {
    let mut tp = headers.values(TRACEPARENT);
    let traceparent = match (tp.next(), tp.next()) {
        (Some(one), None) => Some(one.to_owned()),
        _ => None,
    };
    let mut states = headers.values(TRACESTATE).peekable();
    let tracestate = states
        .peek()
        .is_some()
        .then(|| states.collect::<Vec<_>>().join(","));
    TraceHeaders {
        traceparent,
        tracestate,
    }
}

/// The remote span context the headers carry, or `None` when `traceparent` is absent, repeated
/// or invalid (then the caller starts a new trace). Never panics.
///
/// ```
/// use inferscope_core::trace_context::extract_trace_context;
/// let headers = vec![("TraceParent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")];
/// let ctx = extract_trace_context(&headers).unwrap();
/// assert!(ctx.is_sampled() && ctx.remote);
/// ```
pub fn extract_trace_context<H: HeaderRead + ?Sized>(headers: &H) -> Option<SpanContext> {
    let mut values = headers.values(TRACEPARENT);
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    match parse_traceparent(value) {
        Ok(tp) => Some(SpanContext {
            trace_id: tp.trace_id,
            span_id: tp.parent_id,
            flags: tp.flags,
            state: TraceState::parse(headers.values(TRACESTATE)),
            remote: true,
        }),
        Err(error) => {
            tracing::debug!(%error, "invalid traceparent ignored; a new trace starts");
            None
        }
    }
}

/// Writes `ctx` as `traceparent` (and `tracestate`, or removes a stale one). An invalid context
/// removes both headers.
pub fn inject<H: HeaderWrite + ?Sized>(ctx: &SpanContext, headers: &mut H) {
    if !ctx.is_valid() {
        headers.remove(TRACEPARENT);
        headers.remove(TRACESTATE);
        return;
    }
    headers.set(TRACEPARENT, &ctx.traceparent());
    match ctx.state.header_value() {
        Some(state) => headers.set(TRACESTATE, state),
        None => headers.remove(TRACESTATE),
    }
}

static DISABLED_WARNING_LOGGED: AtomicBool = AtomicBool::new(false);

/// Logs, once per process, that a request carried trace context while tracing is off; vLLM's
/// `log_tracing_disabled_warning`. Returns whether this call logged it.
pub fn log_tracing_disabled_warning() -> bool {
    let first = !DISABLED_WARNING_LOGGED.swap(true, Ordering::Relaxed);
    if first {
        tracing::warn!("Received a request with trace context but tracing is disabled");
    }
    first
}
