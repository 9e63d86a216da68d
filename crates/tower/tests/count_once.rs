//! A server whose handler calls an engine through the client layer (the pattern the docs give:
//! `span_context(&req)` as the call's parent), itself called through the client layer: every
//! layer records its span, and a sum of `gen_ai.usage.*` over the trace counts each token once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity,
    missing_docs
)]

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use inferscope_core::{InMemoryProcessor, Sampler, Scope, SpanKind, SpanRecord, Tracer, Value};
use inferscope_semconv::{attr, inferscope as own};
use inferscope_tower::client::{BaseUrl, InferenceClientLayer};
use inferscope_tower::{InferenceLayer, RequestBody, span_context};
use tower::{Service as _, ServiceExt as _};

const REPLY: &str = r#"{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}"#;

/// The engine: answers every chat call whole, with its usage.
async fn engine(
    _req: http::Request<RequestBody<Full<Bytes>>>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    Ok(http::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(REPLY.as_bytes())))
        .unwrap())
}

/// A server traced by the server layer whose handler forwards each call to the engine through
/// the client layer, continuing the trace from `span_context`.
fn proxy_server(
    tracer: Tracer,
) -> impl tower::Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<inferscope_tower::TracedBody<Full<Bytes>>>,
    Error = Infallible,
    Future = impl std::future::Future<
        Output = Result<http::Response<inferscope_tower::TracedBody<Full<Bytes>>>, Infallible>,
    > + Send
             + 'static,
> + Clone
+ Send
+ 'static {
    let to_engine =
        InferenceClientLayer::builder(tracer.clone(), BaseUrl::prefix("http://engine")).build();
    let handler = tower::service_fn(move |req: http::Request<RequestBody<Full<Bytes>>>| {
        let mut client = tower_layer::Layer::layer(&to_engine, tower::service_fn(engine));
        async move {
            let parent = span_context(&req);
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let mut call = http::Request::post("http://engine/v1/chat/completions")
                .body(Full::new(body))
                .unwrap();
            if let Some(p) = parent {
                call.extensions_mut().insert(p);
            }
            let resp = client.ready().await.unwrap().call(call).await.unwrap();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(http::Response::new(Full::new(bytes)))
        }
    });
    tower_layer::Layer::layer(&InferenceLayer::new(tracer), handler)
}

fn output_tokens(spans: &[SpanRecord]) -> i64 {
    spans
        .iter()
        .filter_map(|s| s.get(attr::USAGE_OUTPUT_TOKENS).and_then(Value::as_i64))
        .sum()
}

const ASK: &str = r#"{"model":"m","messages":[{"role":"user","content":"hey"}]}"#;

#[tokio::test]
async fn a_server_whose_handler_calls_on_counts_each_token_once() {
    let spans = InMemoryProcessor::new();
    let tracer = Tracer::new(Scope::new("svc"), Sampler::default(), spans.clone());
    let server = proxy_server(tracer);
    let req = http::Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from_static(ASK.as_bytes())))
        .unwrap();
    let resp = server.oneshot(req).await.unwrap();
    let _ = resp.into_body().collect().await.unwrap();
    let recorded = spans.take();
    let inner = recorded
        .iter()
        .find(|s| s.kind == SpanKind::Client)
        .unwrap();
    let outer = recorded
        .iter()
        .find(|s| s.kind == SpanKind::Internal)
        .unwrap();
    assert_eq!(inner.parent_span_id, Some(outer.context.span_id));
    assert_eq!(outer.get(attr::USAGE_OUTPUT_TOKENS), Some(&Value::I64(3)));
    assert_eq!(inner.get(attr::USAGE_OUTPUT_TOKENS), None);
    assert_eq!(
        inner.get(own::USAGE_COUNTED_OUTPUT_TOKENS),
        Some(&Value::I64(3))
    );
    assert_eq!(output_tokens(&recorded), 3);
}

#[tokio::test]
async fn an_app_calling_that_server_through_the_client_layer_counts_each_token_once() {
    let spans = InMemoryProcessor::new();
    let tracer = Tracer::new(Scope::new("app"), Sampler::default(), spans.clone());
    let server = proxy_server(tracer.clone());
    let app = InferenceClientLayer::builder(tracer, BaseUrl::prefix("http://svc")).build();
    // The app's request reaches the server as a server would get it: headers, not extensions.
    let to_server = tower::service_fn(move |req: http::Request<RequestBody<Full<Bytes>>>| {
        let server = server.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let mut fresh = http::Request::post("/v1/chat/completions")
                .body(Full::new(body))
                .unwrap();
            *fresh.headers_mut() = parts.headers;
            let resp = server.oneshot(fresh).await.unwrap();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(http::Response::new(Full::new(bytes)))
        }
    });
    let mut client = tower_layer::Layer::layer(&app, to_server);
    let req = http::Request::post("http://svc/v1/chat/completions")
        .body(Full::new(Bytes::from_static(ASK.as_bytes())))
        .unwrap();
    let resp = client.ready().await.unwrap().call(req).await.unwrap();
    let _ = resp.into_body().collect().await.unwrap();
    let recorded = spans.take();
    assert_eq!(
        recorded.len(),
        4,
        "app CLIENT, SERVER, inference, handler CLIENT"
    );
    let trace = recorded[0].context.trace_id;
    assert!(recorded.iter().all(|s| s.context.trace_id == trace));
    assert_eq!(output_tokens(&recorded), 3, "{recorded:#?}");
    let counted_apart = recorded
        .iter()
        .filter(|s| s.get(own::USAGE_COUNTED_OUTPUT_TOKENS).is_some())
        .count();
    assert_eq!(
        counted_apart, 2,
        "the server's inference span and the handler's call"
    );
}
