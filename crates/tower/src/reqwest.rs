//! The client layer as a [`reqwest-middleware`](reqwest_middleware) middleware (feature
//! `reqwest`): for an application built on `reqwest`, the same CLIENT span, `traceparent` and
//! `tracestate`, request and (streamed) response attributes, and hide switches as
//! [`InferenceClientLayer`](crate::client::InferenceClientLayer).
//!
//! The parent of the CLIENT span is the [`SpanContext`] in the request's extensions
//! (`RequestBuilder::with_extension`), if the application put one there. Request bodies built
//! from bytes (`.json(...)`, `.body(String)`) are parsed; a streamed request body is sent
//! unread, and the span says it was not parsed.
//!
//! ```
//! use inferscope_core::{InMemoryProcessor, Sampler, Scope, Tracer};
//! use inferscope_tower::client::BaseUrl;
//! use inferscope_tower::reqwest::InferenceMiddleware;
//!
//! let tracer = Tracer::new(Scope::new("my-agent"), Sampler::default(), InMemoryProcessor::new());
//! let middleware = InferenceMiddleware::builder(tracer, BaseUrl::prefix("http://127.0.0.1:8000/v1"))
//!     .provider("vllm")
//!     .build();
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(middleware)
//!     .build();
//! # let _ = client;
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::Extensions;
use inferscope_core::observe::request;
use inferscope_core::trace_context::inject;
use inferscope_core::{SpanContext, SpanKind};
use reqwest::{Request, Response, ResponseBuilderExt as _};
use reqwest_middleware::{Middleware, Next};

use crate::client::{BaseUrl, Outgoing, classify, port_of};
use crate::{LayerBuilder, Shared, failed, respond, unparsed};

/// The reqwest side of [`LayerBuilder`]: the base URL traced.
#[derive(Debug, Clone)]
pub struct MiddlewareSide(BaseUrl);

/// Builds an [`InferenceMiddleware`]: the layers' settings, and the base URL.
pub type InferenceMiddlewareBuilder = LayerBuilder<MiddlewareSide>;

impl LayerBuilder<MiddlewareSide> {
    /// The middleware, immutable from here on.
    pub fn build(self) -> InferenceMiddleware {
        InferenceMiddleware {
            shared: Arc::new(self.shared),
            base: Arc::new(self.side.0),
        }
    }
}

/// The middleware. Cloning shares one configuration.
#[derive(Debug, Clone)]
pub struct InferenceMiddleware {
    shared: Arc<Shared>,
    base: Arc<BaseUrl>,
}

impl InferenceMiddleware {
    /// A builder tracing the requests to `base` with `tracer`.
    pub fn builder(tracer: inferscope_core::Tracer, base: BaseUrl) -> InferenceMiddlewareBuilder {
        LayerBuilder::new(tracer, MiddlewareSide(base))
    }
}

#[async_trait::async_trait]
impl Middleware for InferenceMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let route = if self.base.matches(req.url().as_str()) {
            classify(req.method().as_str(), req.url().path())
        } else {
            None
        };
        let Some(route) = route else {
            return next.run(req, extensions).await;
        };
        let started = Instant::now();
        let shared = &self.shared;
        // Sampling is decided first; unsampled, only the `traceparent` is set.
        let span = shared
            .tracer
            .start("", SpanKind::Client, extensions.get::<SpanContext>());
        if !span.is_recording() {
            if span.context().is_valid() {
                inject(span.context(), req.headers_mut());
            }
            return next.run(req, extensions).await;
        }
        let whole = req
            .body()
            .and_then(reqwest::Body::as_bytes)
            .map(Bytes::copy_from_slice);
        let facts = match &whole {
            Some(b) if b.len() <= shared.max_parse_bytes => {
                request::parse(route.api, b, &shared.capture)
            }
            Some(_) => unparsed("the request body is over max_parse_bytes"),
            None => unparsed("the request body is a stream, sent unread"),
        };
        let url = req.url().clone();
        let out = Outgoing {
            shared,
            route,
            host: url.host_str().unwrap_or(""),
            port: port_of(url.port(), Some(url.scheme())),
            started,
        };
        let (call, edited) = out.start(span, facts, whole.as_ref(), req.headers_mut());
        let usage_requested = edited.is_some();
        if let Some(edited) = edited {
            *req.body_mut() = Some(reqwest::Body::from(edited));
        }
        let resp = match next.run(req, extensions).await {
            Ok(resp) => resp,
            Err(e) => {
                failed(shared.clone(), None, Some(call), failure(&e));
                return Err(e);
            }
        };
        // Through http::Response and back: the body traced, the URL and extensions kept.
        let url = resp.url().clone();
        let resp: http::Response<reqwest::Body> = resp.into();
        let traced = match respond(
            shared.clone(),
            None,
            Some(call),
            usage_requested,
            Ok::<_, Infallible>(resp),
        ) {
            Ok(traced) => traced,
            Err(never) => match never {},
        };
        let (mut parts, body) = traced.into_parts();
        if let Ok(mut with_url) = http::Response::builder().url(url).body(()) {
            parts
                .extensions
                .extend(std::mem::take(with_url.extensions_mut()));
        }
        Ok(Response::from(http::Response::from_parts(
            parts,
            reqwest::Body::wrap(body),
        )))
    }
}

/// `error.type` and message of a failed call (the URL, which may hold a key, left out).
fn failure(e: &reqwest_middleware::Error) -> (&'static str, &'static str) {
    match e {
        reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => {
            ("timeout", "the request timed out")
        }
        reqwest_middleware::Error::Reqwest(e) if e.is_connect() => (
            "upstream_unreachable",
            "the connection to the server failed",
        ),
        reqwest_middleware::Error::Reqwest(_) => ("_OTHER", "the request failed"),
        reqwest_middleware::Error::Middleware(_) => ("_OTHER", "a later middleware failed"),
    }
}
