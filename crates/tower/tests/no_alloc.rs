//! An unsampled request through the server layer allocates nothing the same service without
//! the layer does not: counted by a global allocator, on this thread.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::convert::Infallible;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body_util::Full;
use inferscope_core::{InMemoryProcessor, Sampler, Scope, Tracer};
use inferscope_testkit::alloc::allocations;
use inferscope_tower::InferenceLayer;
use tower::Service;

#[global_allocator]
static GLOBAL: inferscope_testkit::alloc::Counting = inferscope_testkit::alloc::Counting;

const BODY: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
const REPLY: &[u8] =
    br#"{"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;

/// Answers at once, without reading the request.
#[derive(Clone)]
struct Engine;

impl<B> Service<http::Request<B>> for Engine {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: http::Request<B>) -> Self::Future {
        std::future::ready(Ok(http::Response::new(Full::new(Bytes::from_static(
            REPLY,
        )))))
    }
}

/// One call through `svc`, its response body read to the end, polled by hand (no runtime);
/// returns the allocations it made.
fn one_call<S, ResB>(svc: &mut S, traceparent: &http::HeaderValue) -> u64
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<ResB>>,
    S::Error: std::fmt::Debug,
    ResB: http_body::Body + Unpin,
    ResB::Error: std::fmt::Debug,
{
    // The request is built before counting: it is the caller's, not the layer's.
    let mut req = http::Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from_static(BODY)))
        .unwrap();
    req.headers_mut().insert("traceparent", traceparent.clone());
    let mut cx = Context::from_waker(Waker::noop());
    let before = allocations();
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut fut = std::pin::pin!(svc.call(req));
    let Poll::Ready(resp) = fut.as_mut().poll(&mut cx) else {
        panic!("the engine answers at once")
    };
    let mut body = resp.unwrap().into_body();
    while let Poll::Ready(Some(frame)) = std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
        drop(frame.unwrap());
    }
    drop(body);
    allocations() - before
}

#[test]
fn an_unsampled_request_through_the_server_layer_allocates_nothing_more() {
    // The caller decided not to sample; the layer follows its decision.
    let unsampled =
        http::HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
    let spans = InMemoryProcessor::new();
    let tracer = Tracer::new(
        Scope::new("server"),
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        spans.clone(),
    );
    let mut bare = Engine;
    let mut traced = tower_layer::Layer::layer(&InferenceLayer::new(tracer), Engine);
    // Warm thread-locals (the id generator's seed) first.
    one_call(&mut bare, &unsampled);
    one_call(&mut traced, &unsampled);
    let without = one_call(&mut bare, &unsampled);
    let with = one_call(&mut traced, &unsampled);
    assert_eq!(with, without, "the layer allocated {} more", with - without);
    assert!(spans.take().is_empty());
}
