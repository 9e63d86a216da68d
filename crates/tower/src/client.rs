//! The client side: a tower [`Layer`] for HTTP clients (hyper's, or any
//! `tower::Service<http::Request<B>>`). Requests whose URL matches a base-URL pattern (a
//! string prefix or a regular expression) and an OpenAI-compatible route get a CLIENT span
//! (`chat {model}`), a `traceparent`/`tracestate` naming it, and the request's and (streamed)
//! response's attributes, with content capture under [`CapturePolicy`](inferscope_core::observe::capture::CapturePolicy)'s hide switches.
//! Other requests pass through untouched.
//!
//! The parent of the CLIENT span is the [`SpanContext`] in the request's extensions, if the
//! application put one there (its own span's), else the trace starts here.
//!
//! The `tracestate` the request carries says this span records the call's token usage
//! (`inferscope=u`): an inferscope gateway or server layer further down the trace then keeps
//! its own count off `gen_ai.usage.*`, so a backend summing tokens per trace counts each once.
//!
//! ```
//! use inferscope_core::{InMemoryProcessor, Sampler, Scope, Tracer};
//! use inferscope_tower::client::{BaseUrl, InferenceClientLayer};
//!
//! let tracer = Tracer::new(Scope::new("my-app"), Sampler::default(), InMemoryProcessor::new());
//! let layer = InferenceClientLayer::builder(tracer, BaseUrl::prefix("http://127.0.0.1:9000/v1"))
//!     .provider("vllm")
//!     .build();
//! // tower::ServiceBuilder::new().layer(layer).service(hyper_util_client)
//! # let _ = layer;
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use inferscope_core::observe::call::{
    CallTarget, InferenceCall, mark_usage_counted, response_carries_usage, usage_counted_upstream,
};
use inferscope_core::observe::{request, route};
use inferscope_core::trace_context::inject;
use inferscope_core::{Span, SpanContext, SpanKind, Tracer};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    BoxError, LayerBuilder, RequestBody, ResponseFuture, Shared, TracedBody, passthrough,
    read_request, respond, take_ready,
};

/// Which request URLs are traced.
#[derive(Debug, Clone)]
pub enum BaseUrl {
    /// URLs starting with this string.
    Prefix(String),
    /// URLs this regular expression matches.
    Regex(regex::Regex),
}

impl BaseUrl {
    /// URLs starting with `base`. Its scheme and host are compared as HTTP clients write them
    /// out: in lowercase, without user information (`http://user:key@Host:8000/v1` is taken
    /// as `http://host:8000/v1`).
    pub fn prefix(base: impl Into<String>) -> BaseUrl {
        let base = base.into();
        let Some((scheme, rest)) = base.split_once("://") else {
            return BaseUrl::Prefix(base);
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        BaseUrl::Prefix(format!(
            "{}://{}{path}",
            scheme.to_ascii_lowercase(),
            host.to_ascii_lowercase()
        ))
    }

    /// URLs `pattern` matches; an error if it is not a regular expression.
    pub fn regex(pattern: &str) -> Result<BaseUrl, regex::Error> {
        regex::Regex::new(pattern).map(BaseUrl::Regex)
    }

    /// Whether `url` is traced.
    pub fn matches(&self, url: &str) -> bool {
        match self {
            BaseUrl::Prefix(p) => url.starts_with(p.as_str()),
            BaseUrl::Regex(r) => r.is_match(url),
        }
    }

    /// Whether `uri` is traced. A prefix is compared piece by piece, without writing the URL
    /// out (no allocation); a regular expression is matched against the URL written out.
    pub fn matches_uri(&self, uri: &http::Uri) -> bool {
        let BaseUrl::Prefix(prefix) = self else {
            return self.matches(&uri.to_string());
        };
        // The pieces of the URL as `Uri`'s `Display` writes them.
        let scheme = uri.scheme_str().unwrap_or("");
        let pieces = [
            scheme,
            if scheme.is_empty() { "" } else { "://" },
            uri.authority().map_or("", http::uri::Authority::as_str),
            uri.path(),
            if uri.query().is_some() { "?" } else { "" },
            uri.query().unwrap_or(""),
        ];
        let mut rest = prefix.as_bytes();
        for piece in pieces {
            let n = rest.len().min(piece.len());
            if rest[..n] != piece.as_bytes()[..n] {
                return false;
            }
            rest = &rest[n..];
        }
        rest.is_empty()
    }
}

/// The inference route of `path`, also under a base path (`/openai/v1/chat/completions`).
pub(crate) fn classify(method: &str, path: &str) -> Option<&'static route::Route> {
    if let Some(r) = route::classify(method, path) {
        return Some(r);
    }
    path.match_indices('/')
        .skip(1)
        .find_map(|(i, _)| route::classify(method, &path[i..]))
}

/// The URL's port, or the scheme's.
pub(crate) fn port_of(port: Option<u16>, scheme: Option<&str>) -> u16 {
    port.unwrap_or(if scheme == Some("https") { 443 } else { 80 })
}

/// One traced request on its way out.
pub(crate) struct Outgoing<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) route: &'static route::Route,
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) started: Instant,
}

impl Outgoing<'_> {
    /// Starts the CLIENT span for a request with these facts and (when read whole) body, and
    /// puts its context in `headers`. A chat or completions stream that does not ask for usage
    /// is made to (the added chunk is taken out of the response again, as the gateway does):
    /// then the edited body to send instead is returned, with `headers` set for it.
    pub(crate) fn start(
        self,
        span: Span,
        facts: request::RequestFacts,
        whole: Option<&Bytes>,
        headers: &mut http::HeaderMap,
    ) -> (InferenceCall, Option<Bytes>) {
        let api = self.route.api;
        let mut edited = None;
        if facts.stream
            && !facts.include_usage
            && let Some(whole) = whole
            && let Some(e) = request::with_include_usage(api, whole, &facts)
        {
            headers.remove(http::header::CONTENT_LENGTH);
            edited = Some(Bytes::from(e));
        }
        let usage_seen = edited.is_some() || response_carries_usage(api, &facts);
        let target = CallTarget {
            provider: &self.shared.provider,
            server_address: self.host,
            server_port: self.port,
        };
        let mut call = InferenceCall::with_span(span, self.route, facts, &target, self.started);
        if edited.is_some() {
            call.set_usage_requested();
        }
        // A span earlier in the trace (an outer client, or the server layer whose handler
        // makes this call) records the usage already.
        if usage_counted_upstream(&call.context().state) {
            call.set_usage_counted_upstream();
        }
        // When this span will record the usage, say so to the layers further down.
        if usage_seen && call.is_recording() {
            inject(&mark_usage_counted(call.context()), headers);
        } else {
            inject(call.context(), headers);
        }
        (call, edited)
    }
}

/// Builds an [`InferenceClientLayer`]: the server layer's settings, and the base URL.
pub type InferenceClientLayerBuilder = LayerBuilder<BaseUrl>;

impl LayerBuilder<BaseUrl> {
    /// The layer, immutable from here on.
    pub fn build(self) -> InferenceClientLayer {
        InferenceClientLayer {
            shared: Arc::new(self.shared),
            base: Arc::new(self.side),
        }
    }
}

/// The client layer. Cloning shares one configuration.
#[derive(Debug, Clone)]
pub struct InferenceClientLayer {
    shared: Arc<Shared>,
    base: Arc<BaseUrl>,
}

impl InferenceClientLayer {
    /// A builder tracing the requests to `base` with `tracer`.
    pub fn builder(tracer: Tracer, base: BaseUrl) -> InferenceClientLayerBuilder {
        LayerBuilder::new(tracer, base)
    }
}

impl<S> Layer<S> for InferenceClientLayer {
    type Service = InferenceClient<S>;

    fn layer(&self, inner: S) -> InferenceClient<S> {
        InferenceClient {
            inner,
            shared: self.shared.clone(),
            base: self.base.clone(),
        }
    }
}

/// A client traced by [`InferenceClientLayer`].
#[derive(Debug, Clone)]
pub struct InferenceClient<S> {
    inner: S,
    shared: Arc<Shared>,
    base: Arc<BaseUrl>,
}

impl<S, B, ResB> Service<Request<B>> for InferenceClient<S>
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
        let route = if self.base.matches_uri(req.uri()) {
            classify(req.method().as_str(), req.uri().path())
        } else {
            None
        };
        let Some(route) = route else {
            return passthrough(&mut self.inner, req);
        };
        // Sampling is decided first. Unsampled, the request goes on with only its
        // `traceparent` set (so the decision travels on), its body unread.
        let parent = req.extensions().get::<SpanContext>();
        let span = self.shared.tracer.start("", SpanKind::Client, parent);
        if !span.is_recording() {
            let mut req = req;
            if span.context().is_valid() {
                inject(span.context(), req.headers_mut());
            }
            return passthrough(&mut self.inner, req);
        }
        let mut inner = take_ready(&mut self.inner);
        let shared = self.shared.clone();
        ResponseFuture::traced(Box::pin(async move {
            let started = Instant::now();
            let (mut parts, body) = req.into_parts();
            let (body, facts) = read_request(body, route, &shared).await;
            let whole = match &body {
                RequestBody::Whole(Some(whole)) => Some(whole),
                _ => None,
            };
            let out = Outgoing {
                shared: &shared,
                route,
                host: parts.uri.host().unwrap_or(""),
                port: port_of(parts.uri.port_u16(), parts.uri.scheme_str()),
                started,
            };
            let (call, edited) = out.start(span, facts, whole, &mut parts.headers);
            let usage_requested = edited.is_some();
            let body = match edited {
                Some(edited) => RequestBody::Whole(Some(edited)),
                None => body,
            };
            let req = Request::from_parts(parts, body);
            let result = inner.call(req).await;
            respond(shared, None, Some(call), usage_requested, result)
        }))
    }
}
