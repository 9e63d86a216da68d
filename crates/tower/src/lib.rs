//! Tower layers and client middleware that record, in-process, the spans the inferscope
//! gateway records: for Rust servers that serve an OpenAI-compatible API (axum, hyper) and
//! for Rust applications that call one (hyper, reqwest, async-openai).
//!
//! - [`InferenceLayer`], for servers: a SERVER span per request, continuing the caller's W3C
//!   `traceparent`/`tracestate`; for inference routes (`POST /v1/chat/completions`,
//!   `/v1/completions`, `/v1/embeddings`, `/v1/messages`, `/v1/responses`, …) an INTERNAL
//!   inference span (`chat {model}`) with the request's parameters, the response's id, model,
//!   finish reasons and usage, the time to first chunk and the gaps between chunks, and content
//!   capture under the same hide and redact switches ([`CapturePolicy`]). The response body
//!   passes through chunk by chunk; nothing is buffered whole (an inference request's body is
//!   read, up to a limit, to find its model).
//! - [`client::InferenceClientLayer`] for tower clients (hyper's), and, with the feature
//!   `reqwest`, `reqwest::InferenceMiddleware` for `reqwest-middleware` (and through it
//!   async-openai): a CLIENT span for the requests whose URL matches a base (a prefix or a
//!   regular expression), with `traceparent`/`tracestate` injected.
//!
//! Sampling is decided before anything else: an unsampled request passes through with its body
//! unread and no allocation on the server side (the client side sets `traceparent`, so that the
//! decision travels on). The configuration is fixed when a layer is built: `build` takes the
//! builder by value and returns an immutable layer shared by `Arc`, so nothing can be changed
//! once it serves. Applying the server layer twice records one set of spans.
//!
//! # Spans from the `OTEL_*` environment, and the server layer
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use bytes::Bytes;
//! use http_body_util::{BodyExt as _, Full};
//! use inferscope_tower::InferenceLayer;
//! use tower::{ServiceExt as _, service_fn};
//!
//! // The standard variables (here given in place of the process environment): the
//! // exporter, the service name, the sampler, OTLP endpoints and headers.
//! let env = [("OTEL_TRACES_EXPORTER", "console"), ("OTEL_SERVICE_NAME", "my-server")];
//! let tracing = inferscope_export::TracingBuilder::new("my-server")
//!     .with_env(env)
//!     .with_console_writer(Box::new(std::io::sink()))
//!     .build()?;
//! let layer = InferenceLayer::builder(tracing.tracer()).provider("my-engine").build();
//!
//! // Any tower service: with axum, `Router::new().route(…).route_layer(layer)`.
//! let engine = service_fn(|_req: http::Request<_>| async {
//!     let reply = r#"{"id":"c1","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(reply))))
//! });
//! let server = tower_layer::Layer::layer(&layer, engine);
//! let req = http::Request::post("/v1/chat/completions")
//!     .body(Full::new(Bytes::from(r#"{"model":"m","messages":[{"role":"user","content":"hey"}]}"#)))?;
//! let resp = server.oneshot(req).await?;
//! let _ = resp.into_body().collect().await?; // the spans end with the body
//! tracing.shutdown(std::time::Duration::from_secs(5)).await?;
//! // Two spans: SERVER `POST /v1/chat/completions` and INTERNAL `chat m`.
//! assert_eq!(tracing.stats().enqueued, 2);
//! # Ok(()) }
//! ```
//!
//! # Continuing the trace from a handler, and propagating by hand
//!
//! [`span_context`] is the context a handler's own calls continue (the inference span when
//! sampled, else the caller's `traceparent`). Give it to the client layer or middleware as
//! the request's extension, or write it into any header map yourself:
//!
//! ```
//! use inferscope_core::trace_context::{extract_trace_context, inject};
//! use inferscope_core::{InMemoryProcessor, Sampler, Scope, SpanKind, Tracer};
//!
//! let tracer = Tracer::new(Scope::new("my-app"), Sampler::default(), InMemoryProcessor::new());
//! let incoming = http::Request::get("/")
//!     .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
//!     .body(())
//!     .unwrap();
//! let parent = inferscope_tower::span_context(&incoming); // no layer ran: the caller's
//! let span = tracer.start("fetch the prompt", SpanKind::Client, parent.as_ref());
//! let mut outgoing = http::HeaderMap::new();
//! inject(span.context(), &mut outgoing);
//! let sent = extract_trace_context(&outgoing).unwrap();
//! assert_eq!(sent.trace_id, parent.unwrap().trace_id);
//! assert_eq!(sent.span_id, span.context().span_id);
//! span.end();
//! ```
//!
//! # vLLM's `vllm.tracing` helpers
//!
//! `contains_trace_headers`, `extract_trace_headers` and `log_tracing_disabled_warning` have
//! equivalents in `inferscope_core::trace_context`, and `init_tracer` in
//! `inferscope_export`:
//!
//! ```
//! use inferscope_core::trace_context::{contains_trace_headers, extract_trace_headers};
//!
//! let headers = [
//!     ("TraceParent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
//!     ("tracestate", "vendor=1"),
//!     ("tracestate", "other=2"),
//! ];
//! assert!(contains_trace_headers(&headers[..]));
//! let found = extract_trace_headers(&headers[..]);
//! assert_eq!(found.tracestate.as_deref(), Some("vendor=1,other=2"));
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use inferscope_core::observe::call::{
    CallTarget, InferenceCall, Outcome, mark_usage_counted, response_carries_usage,
    usage_counted_upstream,
};
use inferscope_core::observe::capture::CapturePolicy;
use inferscope_core::observe::record::RecordOptions;
use inferscope_core::observe::response::ResponseObserver;
use inferscope_core::observe::{request, route};
use inferscope_core::trace_context::extract_trace_context;
use inferscope_core::{Span, SpanKind, Status, Tracer};
use inferscope_semconv::dialect::Dialect;
use inferscope_semconv::latest::Conventions;
use inferscope_semconv::{attr, http as http_attr, span_name};
use tower_layer::Layer;
use tower_service::Service;

pub mod client;
#[cfg(feature = "reqwest")]
pub mod reqwest;

/// Errors of bodies: boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request extension marking a request an [`InferenceService`] already traces.
#[derive(Debug, Clone, Copy)]
struct Traced;

/// Everything the layer needs, fixed at build time.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) tracer: Tracer,
    pub(crate) provider: String,
    pub(crate) capture: CapturePolicy,
    pub(crate) dialects: Vec<Dialect>,
    pub(crate) conventions: Conventions,
    pub(crate) max_parse_bytes: usize,
}

/// Builds a layer: the server's ([`InferenceLayer`], `Side` = [`ServerSide`]) or a client's
/// ([`client::InferenceClientLayer`], `Side` = [`client::BaseUrl`]); consumed by `build`.
#[derive(Debug)]
#[must_use]
pub struct LayerBuilder<Side> {
    pub(crate) shared: Shared,
    pub(crate) side: Side,
}

/// The server side of [`LayerBuilder`].
#[derive(Debug, Clone, Copy)]
pub struct ServerSide;

/// Builds an [`InferenceLayer`].
pub type InferenceLayerBuilder = LayerBuilder<ServerSide>;

impl<Side> LayerBuilder<Side> {
    /// A builder with every default (`gen_ai.provider.name` `openai`, capture off, OpenTelemetry
    /// names, 32 MiB parse limit).
    pub(crate) fn new(tracer: Tracer, side: Side) -> LayerBuilder<Side> {
        LayerBuilder {
            shared: Shared {
                tracer,
                provider: "openai".to_owned(),
                capture: CapturePolicy::default(),
                dialects: vec![Dialect::OTel],
                conventions: Conventions::default(),
                max_parse_bytes: 32 << 20,
            },
            side,
        }
    }

    /// `gen_ai.provider.name` (default `openai`, as an OpenAI-compatible server).
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.shared.provider = provider.into();
        self
    }

    /// Content capture, hiding (`hide_inputs`, `hide_outputs`, …) and redaction (off by
    /// default).
    pub fn capture(mut self, capture: CapturePolicy) -> Self {
        self.shared.capture = capture;
        self
    }

    /// An attribute dialect besides OpenTelemetry's (`vllm`, `openinference`).
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        if !self.shared.dialects.contains(&dialect) {
            self.shared.dialects.push(dialect);
        }
        self
    }

    /// Which GenAI names: the pinned release (default) or the newest experimental ones.
    pub fn conventions(mut self, conventions: Conventions) -> Self {
        self.shared.conventions = conventions;
        self
    }

    /// Most bytes of a request or non-streamed response body read for tracing (default 32 MiB).
    pub fn max_parse_bytes(mut self, bytes: usize) -> Self {
        self.shared.max_parse_bytes = bytes;
        self
    }
}

impl LayerBuilder<ServerSide> {
    /// The layer, immutable from here on.
    pub fn build(self) -> InferenceLayer {
        InferenceLayer {
            shared: Arc::new(self.shared),
        }
    }
}

/// The tower layer. Cloning shares one configuration.
#[derive(Debug, Clone)]
pub struct InferenceLayer {
    shared: Arc<Shared>,
}

impl InferenceLayer {
    /// A builder recording spans with `tracer`.
    pub fn builder(tracer: Tracer) -> InferenceLayerBuilder {
        LayerBuilder::new(tracer, ServerSide)
    }

    /// The layer with every default.
    pub fn new(tracer: Tracer) -> InferenceLayer {
        InferenceLayer::builder(tracer).build()
    }
}

impl<S> Layer<S> for InferenceLayer {
    type Service = InferenceService<S>;

    fn layer(&self, inner: S) -> InferenceService<S> {
        InferenceService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// A service traced by [`InferenceLayer`].
#[derive(Debug, Clone)]
pub struct InferenceService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B, ResB> Service<Request<B>> for InferenceService<S>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<TracedBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // An outer layer traces it already.
        if req.extensions().get::<Traced>().is_some() {
            return passthrough(&mut self.inner, req);
        }
        // Sampling is decided first: an unsampled request passes through untouched, with
        // nothing allocated and its body unread.
        let parent = extract_trace_context(req.headers());
        let mut server = self
            .shared
            .tracer
            .start("", SpanKind::Server, parent.as_ref());
        if !server.is_recording() {
            return passthrough(&mut self.inner, req);
        }
        let mut inner = take_ready(&mut self.inner);
        let shared = self.shared.clone();
        ResponseFuture::traced(Box::pin(async move {
            let started = Instant::now();
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(Traced);
            let path = parts.uri.path().to_owned();
            let inference = route::classify(parts.method.as_str(), &path);
            let template = inference
                .map(|r| r.template)
                .or_else(|| route::template(&path));
            server.set_attribute(http_attr::REQUEST_METHOD, parts.method.as_str().to_owned());
            server.set_attribute(http_attr::URL_PATH, path);
            let method = parts.method.clone();
            let mut counts_usage = false;
            let (body, call) = match inference {
                Some(route) => {
                    let (body, facts) = read_request(body, route, &shared).await;
                    counts_usage = response_carries_usage(route.api, &facts);
                    let host = parts
                        .headers
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .and_then(|h| http::uri::Authority::try_from(h).ok());
                    let target = CallTarget {
                        provider: &shared.provider,
                        server_address: host.as_ref().map_or("", |a| a.host()),
                        server_port: host.as_ref().and_then(|a| a.port_u16()).unwrap_or(80),
                    };
                    let mut call = InferenceCall::start(
                        &shared.tracer,
                        Some(server.context()),
                        SpanKind::Internal,
                        route,
                        facts,
                        &target,
                        started,
                    );
                    if usage_counted_upstream(&server.context().state) {
                        call.set_usage_counted_upstream();
                    }
                    (body, Some(call))
                }
                None => (RequestBody::Untouched(body), None),
            };
            // The handler's own calls continue the trace from here (see [`span_context`]).
            let here = call.as_ref().map_or(server.context(), |c| c.context());
            // When the inference span records the usage, the handler's own calls (through
            // the client layer) say it is counted, so that a backend summing the trace's
            // usage counts each token once.
            let here = if counts_usage && call.as_ref().is_some_and(InferenceCall::is_recording) {
                mark_usage_counted(here)
            } else {
                here.clone()
            };
            parts.extensions.insert(here);
            let req = Request::from_parts(parts, body);
            let result = inner.call(req).await;
            // The route (and the span's name with it) is settled by the response: a route
            // the application does not serve (404, 405) is not one.
            let served = result
                .as_ref()
                .map_or(true, |r| !matches!(r.status().as_u16(), 404 | 405));
            let route = template.filter(|_| served);
            server.update_name(span_name::http_server(method.as_str(), route));
            if let Some(t) = route {
                server.set_attribute(http_attr::ROUTE, t);
            }
            respond(shared, Some(server), call, false, result)
        }))
    }
}

/// The trace context a handler's own outgoing calls continue: the layer's span (the
/// inference span on an inference route, else the SERVER span) when the request is sampled,
/// else the caller's `traceparent`, so that the decision not to sample travels on. Give it
/// to the client layer or middleware as the request's extension.
pub fn span_context<B>(req: &Request<B>) -> Option<inferscope_core::SpanContext> {
    req.extensions()
        .get::<inferscope_core::SpanContext>()
        .cloned()
        .or_else(|| extract_trace_context(req.headers()))
}

pin_project_lite::pin_project! {
    /// The future of a traced service's response: the inner service's own future when the
    /// request is not traced (no allocation), else a boxed one that reads the request first.
    pub struct ResponseFuture<F, ResB: Body, E> {
        #[pin]
        kind: Kind<F, ResB, E>,
    }
}

type TracedFuture<ResB, E> =
    Pin<Box<dyn Future<Output = Result<Response<TracedBody<ResB>>, E>> + Send>>;

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, ResB: Body, E> {
        // Not traced: the inner future, its body wrapped without state.
        Passthrough { #[pin] inner: F },
        // Traced: reads the request, calls the inner service, traces its response.
        Traced { inner: TracedFuture<ResB, E> },
    }
}

impl<F, ResB: Body, E> ResponseFuture<F, ResB, E> {
    pub(crate) fn passthrough(inner: F) -> Self {
        ResponseFuture {
            kind: Kind::Passthrough { inner },
        }
    }

    pub(crate) fn traced(inner: TracedFuture<ResB, E>) -> Self {
        ResponseFuture {
            kind: Kind::Traced { inner },
        }
    }
}

impl<F, ResB: Body, E> std::fmt::Debug for ResponseFuture<F, ResB, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            Kind::Passthrough { .. } => "ResponseFuture(passthrough)",
            Kind::Traced { .. } => "ResponseFuture(traced)",
        })
    }
}

impl<F, ResB, E> Future for ResponseFuture<F, ResB, E>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    ResB: Body,
{
    type Output = Result<Response<TracedBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { inner } => inner
                .poll(cx)
                .map(|r| r.map(|resp| resp.map(|b| TracedBody::new(b, None)))),
            KindProj::Traced { inner } => inner.as_mut().poll(cx),
        }
    }
}

/// A request not traced: the inner service gets it as it came, and its future is the
/// response's (nothing boxed).
pub(crate) fn passthrough<S, B, ResB>(
    inner: &mut S,
    req: Request<B>,
) -> ResponseFuture<S::Future, ResB, S::Error>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResB>>,
    ResB: Body,
{
    ResponseFuture::passthrough(inner.call(req.map(RequestBody::Untouched)))
}

/// The service made ready by `poll_ready`, for a call that reads the request first: a
/// fresh clone stays behind for the next `poll_ready`.
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// The inner service's answer: the response with its body traced (the observer reading the
/// body as a stream when it is SSE), or the failure recorded on the spans.
pub(crate) fn respond<ResB: Body, E>(
    shared: Arc<Shared>,
    mut server: Option<Span>,
    mut call: Option<InferenceCall>,
    usage_requested: bool,
    result: Result<Response<ResB>, E>,
) -> Result<Response<TracedBody<ResB>>, E> {
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            failed(shared, server, call, ("_OTHER", "the service failed"));
            return Err(e);
        }
    };
    let (mut parts, body) = resp.into_parts();
    let status = parts.status.as_u16();
    if let Some(c) = call.as_mut() {
        let stream = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if stream && usage_requested {
            // The added usage chunk is taken out: the upstream's length no longer holds.
            parts.headers.remove(http::header::CONTENT_LENGTH);
        }
        c.response_head(
            status,
            Some(ResponseObserver::new(
                stream,
                usage_requested,
                &shared.capture,
                shared.max_parse_bytes,
            )),
        );
    }
    if let Some(s) = server.as_mut() {
        s.set_attribute(http_attr::RESPONSE_STATUS_CODE, i64::from(status));
    }
    let state = State {
        shared,
        server,
        call,
        status,
    };
    Ok(Response::from_parts(
        parts,
        TracedBody::new(body, Some(state)),
    ))
}

/// The inner service failed: ends the spans with `failure` (`error.type`, message).
pub(crate) fn failed(
    shared: Arc<Shared>,
    server: Option<Span>,
    call: Option<InferenceCall>,
    failure: (&str, &str),
) {
    let state = State {
        shared,
        server,
        call,
        status: 500,
    };
    state.finish(Some(failure));
}

/// Reads an inference request's body up to the parse limit and parses it; returns the body
/// for the inner service (the bytes read, then the rest) and the facts.
pub(crate) async fn read_request<B>(
    mut body: B,
    route: &'static route::Route,
    shared: &Shared,
) -> (RequestBody<B>, request::RequestFacts)
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let limit = shared.max_parse_bytes;
    if body.size_hint().lower() > limit as u64 {
        return (
            RequestBody::Untouched(body),
            unparsed("the request body is over max_parse_bytes"),
        );
    }
    let mut read = BytesMut::new();
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => {
                let e: BoxError = e.into();
                let facts = unparsed("the request body failed");
                return (RequestBody::Failed(Some(e)), facts);
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    read.extend_from_slice(&data);
                }
                if read.len() > limit {
                    return (
                        RequestBody::Partial {
                            read: Some(read.freeze()),
                            rest: body,
                        },
                        unparsed("the request body is over max_parse_bytes"),
                    );
                }
            }
        }
    }
    let whole = read.freeze();
    let facts = request::parse(route.api, &whole, &shared.capture);
    (RequestBody::Whole(Some(whole)), facts)
}

/// The facts of a request body not parsed, and why.
pub(crate) fn unparsed(why: &str) -> request::RequestFacts {
    request::RequestFacts {
        parse_error: Some(why.to_owned()),
        ..request::RequestFacts::default()
    }
}

/// The request body the inner service gets.
#[derive(Debug)]
pub enum RequestBody<B> {
    /// Not read (not an inference route, or already traced by an outer layer).
    Untouched(B),
    /// Read whole for tracing.
    Whole(Option<Bytes>),
    /// Read up to the parse limit: those bytes, then the rest.
    Partial {
        /// The bytes read, until sent on.
        read: Option<Bytes>,
        /// The rest of the client's body.
        rest: B,
    },
    /// Reading it failed: the error, for the inner service to see.
    Failed(Option<BoxError>),
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Untouched(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            RequestBody::Whole(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Partial { read, rest } => match read.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Pin::new(rest).poll_frame(cx).map_err(Into::into),
            },
            RequestBody::Failed(e) => Poll::Ready(e.take().map(Err)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Untouched(b) => b.is_end_stream(),
            RequestBody::Whole(b) => b.is_none(),
            RequestBody::Partial { read, rest } => read.is_none() && rest.is_end_stream(),
            RequestBody::Failed(e) => e.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Untouched(b) => b.size_hint(),
            RequestBody::Whole(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RequestBody::Partial { read, rest } => {
                let mut h = rest.size_hint();
                let n = read.as_ref().map_or(0, |b| b.len() as u64);
                h.set_lower(h.lower() + n);
                if let Some(u) = h.upper() {
                    h.set_upper(u + n);
                }
                h
            }
            RequestBody::Failed(_) => SizeHint::default(),
        }
    }
}

/// A traced request's spans, until its response body ends.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) shared: Arc<Shared>,
    /// The SERVER span (the server layer's; none for the client layer).
    pub(crate) server: Option<Span>,
    pub(crate) call: Option<InferenceCall>,
    pub(crate) status: u16,
}

impl State {
    /// Ends both spans; `failure`: an `error.type` and message when the exchange broke.
    pub(crate) fn finish(mut self, failure: Option<(&str, &str)>) {
        let s = &self.shared;
        if let Some(call) = self.call.take() {
            let opts = RecordOptions {
                dialects: &s.dialects,
                capture: &s.capture,
                conventions: s.conventions,
            };
            call.finish(Outcome { failure }, opts);
        }
        let Some(mut server) = self.server.take() else {
            return;
        };
        if let Some((error_type, message)) = failure {
            server.set_attribute(attr::ERROR_TYPE, error_type.to_owned());
            server.set_status(Status::Error(message.to_owned().into()));
        } else if self.status >= 500 {
            server.set_attribute(attr::ERROR_TYPE, self.status.to_string());
            server.set_status(Status::Error(format!("HTTP {}", self.status).into()));
        }
        server.end();
    }
}

pin_project_lite::pin_project! {
    /// The response body, passed through chunk by chunk; the spans end with it (or when it
    /// is dropped unfinished: the client went away).
    pub struct TracedBody<B: Body> {
        #[pin]
        inner: B,
        state: Option<State>,
        // A frame to send before anything else: the inner body's trailers, or the bytes the
        // observer still held when the inner body ended.
        queued: Option<Frame<Bytes>>,
        // The inner body ended (and must not be polled again).
        ended: bool,
    }

    impl<B: Body> PinnedDrop for TracedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(state) = this.state.take() {
                // A body whose end the server never polled for still ended.
                if this.inner.is_end_stream() {
                    state.finish(None);
                } else {
                    state.finish(Some(("client_aborted", "the client went away before the end of the response")));
                }
            }
        }
    }
}

impl<B: Body> TracedBody<B> {
    pub(crate) fn new(inner: B, state: Option<State>) -> TracedBody<B> {
        TracedBody {
            inner,
            state,
            queued: None,
            ended: false,
        }
    }
}

impl<B: Body> std::fmt::Debug for TracedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedBody")
            .field("traced", &self.state.is_some())
            .finish()
    }
}

impl<B> Body for TracedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        if let Some(frame) = this.queued.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if *this.ended {
            return Poll::Ready(None);
        }
        let polled = this.inner.as_mut().poll_frame(cx);
        let Some(state) = this.state.as_mut() else {
            return polled;
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match (frame.into_data(), state.call.as_mut()) {
                    (Ok(data), Some(call)) => Frame::data(call.on_chunk(data, Instant::now())),
                    (Ok(data), None) => Frame::data(data),
                    (Err(other), _) => other,
                };
                // The last frame: the server may not poll for the end.
                if this.inner.is_end_stream()
                    && let Some(state) = this.state.take()
                    && let Some(rest) = end(state)
                {
                    // What the observer held goes out after the last data, before trailers.
                    if frame.is_data() {
                        *this.queued = Some(Frame::data(rest));
                    } else {
                        *this.queued = Some(frame);
                        return Poll::Ready(Some(Ok(Frame::data(rest))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                *this.ended = true;
                match this.state.take().and_then(end) {
                    Some(rest) => Poll::Ready(Some(Ok(Frame::data(rest)))),
                    None => Poll::Ready(None),
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(state) = this.state.take() {
                    state.finish(Some(("response_body_error", "the response body failed")));
                }
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        // A traced body ends when its state has seen the end, so that nothing held is lost.
        self.queued.is_none()
            && (self.ended || (self.state.is_none() && self.inner.is_end_stream()))
    }

    fn size_hint(&self) -> SizeHint {
        let stripping = self
            .state
            .as_ref()
            .and_then(|s| s.call.as_ref())
            .is_some_and(InferenceCall::usage_requested);
        if stripping || self.queued.is_some() {
            // Taking out an added usage chunk changes the length: unknown.
            return SizeHint::new();
        }
        self.inner.size_hint()
    }
}

/// The inner body ended: ends the spans; returns the bytes the observer still held.
fn end(mut state: State) -> Option<Bytes> {
    let rest = state.call.as_mut().and_then(InferenceCall::on_end);
    state.finish(None);
    rest.filter(|b| !b.is_empty())
}
