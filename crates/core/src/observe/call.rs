//! One inference call's life as one value: [`InferenceCall`]. It starts from the request's
//! facts, is fed the response head, each body chunk and the end, and [`InferenceCall::finish`]
//! ends its span with an outcome and returns a [`CallSummary`] for metrics and joins.
//!
//! What goes on the span is decided here and in [`super::record`]; the gateway, the tower
//! layer and the client middleware only feed it.
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use inferscope_core::observe::call::{CallTarget, InferenceCall, Outcome};
//! use inferscope_core::observe::capture::CapturePolicy;
//! use inferscope_core::observe::record::RecordOptions;
//! use inferscope_core::observe::response::ResponseObserver;
//! use inferscope_core::observe::{request, route};
//! use inferscope_core::{InMemoryProcessor, Sampler, Scope, SpanKind, Tracer};
//!
//! let spans = InMemoryProcessor::new();
//! let tracer = Tracer::new(Scope::new("example"), Sampler::default(), spans.clone());
//! let route = route::classify("POST", "/v1/chat/completions").unwrap();
//! let capture = CapturePolicy::default();
//! let facts = request::parse(route.api, br#"{"model":"m","messages":[]}"#, &capture);
//! let target = CallTarget { provider: "vllm", server_address: "127.0.0.1", server_port: 8000 };
//! let mut call = InferenceCall::start(&tracer, None, SpanKind::Client, route, facts, &target, Instant::now());
//! call.response_head(200, Some(ResponseObserver::new(false, false, &capture, 1 << 20)));
//! let body = br#"{"id":"c1","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
//! call.on_chunk(Bytes::from_static(body), Instant::now());
//! call.on_end();
//! let opts = RecordOptions { dialects: &[], capture: &capture, conventions: Default::default() };
//! let summary = call.finish(Outcome::default(), opts);
//! assert_eq!(summary.facts.usage.unwrap().output_tokens, Some(2));
//! assert_eq!(spans.take()[0].name.as_str(), "chat m");
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use inferscope_semconv::dialect::Dialect;
use inferscope_semconv::{attr, http as http_attr, inferscope as own, openinference as oi};

use super::record::{self, RecordOptions, Timing};
use super::request::RequestFacts;
use super::response::{ResponseFacts, ResponseObserver};
use super::route::Route;
use crate::SpanContext;
use crate::span::{KeyValue, SpanKind, Status, Str, Value};
use crate::tracer::{Span, Tracer};

/// Where the call goes: the conventions' `gen_ai.provider.name`, `server.address`, `server.port`.
#[derive(Debug, Clone, Copy)]
pub struct CallTarget<'a> {
    /// `gen_ai.provider.name`.
    pub provider: &'a str,
    /// `server.address`.
    pub server_address: &'a str,
    /// `server.port`.
    pub server_port: u16,
}

/// How the call ended, besides what its response said.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome<'a> {
    /// A failure outside the response (a timeout, a broken connection, the client leaving):
    /// its `error.type` and a message for the span's status.
    pub failure: Option<(&'a str, &'a str)>,
}

/// What a finished call revealed, for metrics and joins (the span is already ended).
#[derive(Debug)]
pub struct CallSummary {
    /// The span's context.
    pub context: SpanContext,
    /// Whether the span was recorded (sampled).
    pub recorded: bool,
    /// `gen_ai.operation.name`.
    pub operation: &'static str,
    /// The request's facts.
    pub request: RequestFacts,
    /// The response's facts.
    pub facts: ResponseFacts,
    /// Timings computed from them.
    pub timing: Timing,
    /// `error.type`, when the call failed.
    pub error_type: Option<String>,
    /// From the call's start to its end.
    pub duration: Duration,
    /// When the call started (the request went out).
    pub started: Instant,
    /// The OpenInference input and output attributes, for a root span to repeat (empty
    /// unless that dialect is on).
    pub root_io: Vec<KeyValue>,
}

/// One inference call: its span, the request's facts and the response observer.
#[derive(Debug)]
pub struct InferenceCall {
    route: &'static Route,
    span: Span,
    request: RequestFacts,
    observer: Option<ResponseObserver>,
    started: Instant,
    usage_requested: bool,
    status: Option<u16>,
    response_bytes: u64,
    usage_counted_upstream: bool,
}

/// Whether `state` (a request's trace state) says a span earlier in the trace records the
/// call's token usage: inferscope's client middleware marks the requests it records.
pub fn usage_counted_upstream(state: &crate::TraceState) -> bool {
    state.get(own::TRACESTATE_KEY) == Some(own::TRACESTATE_USAGE_COUNTED)
}

/// Whether the response to a request with these facts carries the call's usage, so that the
/// span observing it records the usage: a whole response does, a chat or completions stream
/// only when it asked for it (`stream_options.include_usage`). An unparsed request: unknown,
/// so no.
pub fn response_carries_usage(api: super::route::Api, request: &RequestFacts) -> bool {
    request.parse_error.is_none()
        && (!request.stream
            || request.include_usage
            || !matches!(
                api,
                super::route::Api::Chat | super::route::Api::Completions
            ))
}

/// `ctx` with the trace state saying its span records the call's token usage (for the
/// `traceparent`/`tracestate` a client sends on).
pub fn mark_usage_counted(ctx: &SpanContext) -> SpanContext {
    let mut marked = ctx.clone();
    if let Some(state) = ctx
        .state
        .with(own::TRACESTATE_KEY, own::TRACESTATE_USAGE_COUNTED)
    {
        marked.state = state;
    }
    marked
}

impl InferenceCall {
    /// Starts the call's span (named per the conventions, `chat {model}`), a child of
    /// `parent`, with the start attributes and the request's facts; `started`: when the
    /// request goes out.
    pub fn start(
        tracer: &Tracer,
        parent: Option<&SpanContext>,
        kind: SpanKind,
        route: &'static Route,
        request: RequestFacts,
        target: &CallTarget<'_>,
        started: Instant,
    ) -> InferenceCall {
        // Named by `with_span`, once sampled.
        let span = tracer.start("", kind, parent);
        InferenceCall::with_span(span, route, request, target, started)
    }

    /// [`InferenceCall::start`] with a span already started (its sampling decided before
    /// the request's body was read): names it per the conventions and records the start
    /// attributes and the request's facts.
    pub fn with_span(
        mut span: Span,
        route: &'static Route,
        request: RequestFacts,
        target: &CallTarget<'_>,
        started: Instant,
    ) -> InferenceCall {
        if span.is_recording() {
            span.update_name(inferscope_semconv::span_name::inference(
                route.operation,
                request.model.as_deref(),
            ));
        }
        if let Some(r) = span.record_mut() {
            for kv in record::start_attributes(
                route,
                target.provider,
                request.model.as_deref(),
                target.server_address,
                target.server_port,
            )
            .into_iter()
            .flatten()
            {
                r.push(kv.key, kv.value);
            }
            record::request(r, route, &request);
        }
        InferenceCall {
            route,
            span,
            request,
            observer: None,
            started,
            usage_requested: false,
            status: None,
            response_bytes: 0,
            usage_counted_upstream: false,
        }
    }

    /// A span earlier in the trace records this call's usage ([`usage_counted_upstream`]):
    /// this span keeps it under `inferscope.usage_counted_upstream.*`, not `gen_ai.usage.*`.
    pub fn set_usage_counted_upstream(&mut self) {
        self.usage_counted_upstream = true;
    }

    /// Adds an attribute to the span (when recording).
    pub fn set_attribute(&mut self, key: impl Into<Str>, value: impl Into<Value>) {
        self.span.set_attribute(key, value);
    }

    /// The caller asked the server for stream usage the client did not (the added chunk is
    /// taken out again): recorded as `inferscope.stream.usage_requested`.
    pub fn set_usage_requested(&mut self) {
        self.usage_requested = true;
    }

    /// Whether usage was asked for on the client's behalf.
    pub fn usage_requested(&self) -> bool {
        self.usage_requested
    }

    /// The span's context: the parent of whatever the call causes downstream.
    pub fn context(&self) -> &SpanContext {
        self.span.context()
    }

    /// Whether the span is recorded.
    pub fn is_recording(&self) -> bool {
        self.span.is_recording()
    }

    /// The route.
    pub fn route(&self) -> &'static Route {
        self.route
    }

    /// The request's facts.
    pub fn request(&self) -> &RequestFacts {
        &self.request
    }

    /// When the request went out.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The response head: its status, and the observer for its body (`None`: the body is
    /// not read, a failure answered by the caller itself).
    pub fn response_head(&mut self, status: u16, observer: Option<ResponseObserver>) {
        self.status = Some(status);
        self.observer = observer;
    }

    /// The observer, once the response head arrived.
    pub fn observer(&self) -> Option<&ResponseObserver> {
        self.observer.as_ref()
    }

    /// A body chunk that arrived `at`; returns the bytes for the client (the added usage
    /// chunk taken out).
    pub fn on_chunk(&mut self, data: Bytes, at: Instant) -> Bytes {
        self.response_bytes += data.len() as u64;
        match self.observer.as_mut() {
            Some(o) => o.on_chunk(data, at),
            None => data,
        }
    }

    /// The body ended; returns bytes still held back for the client.
    pub fn on_end(&mut self) -> Option<Bytes> {
        self.observer.as_mut().and_then(ResponseObserver::on_end)
    }

    /// Ends the span: the response's facts, timing, status and outcome; returns what the
    /// call revealed.
    pub fn finish(mut self, outcome: Outcome<'_>, opts: RecordOptions<'_>) -> CallSummary {
        let now = Instant::now();
        let mut facts = match self.observer.take() {
            Some(o) => o.into_facts(),
            None => ResponseFacts::default(),
        };
        // Embeddings produce no output tokens: a server's `completion_tokens: 0` is not a
        // count, on the span or in the token-usage histogram.
        if self.route.operation == inferscope_semconv::value::operation::EMBEDDINGS
            && let Some(u) = facts.usage.as_mut()
        {
            u.output_tokens = None;
        }
        let timing = Timing::of(&mut facts, self.started);
        let error_type: Option<String> = outcome
            .failure
            .map(|(t, _)| t.to_owned())
            .or_else(|| facts.error_type.clone())
            .or_else(|| self.status.filter(|s| *s >= 400).map(|s| s.to_string()));
        let mut root_io = Vec::new();
        if let Some(r) = self.span.record_mut() {
            record::response(r, &facts, &timing, opts);
            if self.usage_counted_upstream {
                for kv in &mut r.attributes {
                    if let Some(key) = own::usage_counted_upstream(kv.key.as_str()) {
                        kv.key = key.into();
                    }
                }
            }
            if self.usage_requested {
                r.push(own::STREAM_USAGE_REQUESTED, true);
            }
            if let Some(code) = self.status {
                r.push(http_attr::RESPONSE_STATUS_CODE, i64::from(code));
            }
            r.push(
                own::RESPONSE_BYTES,
                i64::try_from(self.response_bytes).unwrap_or(i64::MAX),
            );
            if let Some(e) = &error_type {
                r.push(attr::ERROR_TYPE, e.clone());
            }
            // The dialects' token counts (OpenInference's totals) stay off too.
            let usage = if self.usage_counted_upstream {
                facts.usage.take()
            } else {
                None
            };
            record::dialects(r, self.route, &self.request, Some(&facts), opts);
            if usage.is_some() {
                facts.usage = usage;
            }
            if opts.dialects.contains(&Dialect::OpenInference) {
                let io = [
                    oi::INPUT_VALUE,
                    oi::INPUT_MIME_TYPE,
                    oi::OUTPUT_VALUE,
                    oi::OUTPUT_MIME_TYPE,
                ];
                root_io = r
                    .attributes
                    .iter()
                    .filter(|kv| io.contains(&kv.key.as_str()))
                    .cloned()
                    .collect();
            }
        }
        if let Some((_, message)) = outcome.failure {
            self.span
                .set_status(Status::Error(message.to_owned().into()));
        } else if let Some(e) = &error_type {
            self.span.set_status(Status::Error(e.clone().into()));
        }
        let context = self.span.context().clone();
        let recorded = self.span.is_recording();
        self.span.end();
        CallSummary {
            context,
            recorded,
            operation: self.route.operation,
            request: self.request,
            facts,
            timing,
            error_type,
            duration: now.saturating_duration_since(self.started),
            started: self.started,
            root_io,
        }
    }
}
