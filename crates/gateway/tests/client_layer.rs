//! An application using inferscope's client layer (a hyper client wrapped in
//! `InferenceClientLayer`) calls through the gateway to the simulated vLLM: one trace, app
//! CLIENT span → gateway SERVER → gateway CLIENT → `llm_request` → phases, and each token
//! counted once in a sum over the trace's `gen_ai.usage.*`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use inferscope_core::{InMemoryProcessor, Sampler, Scope, SpanKind, SpanRecord, Tracer, Value};
use inferscope_semconv::{attr, inferscope as own};
use inferscope_tower::RequestBody;
use inferscope_tower::client::{BaseUrl, InferenceClientLayer};
use tower_service::Service as _;

fn usage(s: &SpanRecord, key: &str) -> Option<i64> {
    match s.get(key) {
        Some(Value::I64(n)) => Some(*n),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_with_the_client_layer_the_gateway_and_vllm_make_one_trace_counting_tokens_once() {
    let s = stack_with_ingest(|_| {}, |_| {}).await;
    let app_spans = InMemoryProcessor::new();
    let tracer = Tracer::new(Scope::new("my-app"), Sampler::default(), app_spans.clone());
    let layer = InferenceClientLayer::builder(tracer.clone(), BaseUrl::prefix(s.gw.url()))
        .provider("vllm")
        .build();
    let http: Client<_, RequestBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut client = tower_layer::Layer::layer(&layer, http);

    let root = tracer.start("answer the user", SpanKind::Internal, None);
    let body = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":6,"stream":true}"#;
    let mut req = http::Request::post(format!("{}/v1/chat/completions", s.gw.url()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    req.extensions_mut().insert(root.context().clone());
    let resp = client.call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(text.ends_with("data: [DONE]\n\n"));
    // The layer asked for usage on the app's behalf and took the added chunk out again.
    assert!(!text.contains("\"usage\""), "{text}");
    root.end();

    wait_named(&s.spans, "llm_request", 1).await;
    let gateway = take_spans(&s.spans, 7).await;
    let app = app_spans.take();
    let app_call = app.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    let app_root = app
        .iter()
        .find(|s| s.name.as_str() == "answer the user")
        .unwrap();
    assert_eq!(app_call.parent_span_id, Some(app_root.context.span_id));
    assert_eq!(app_call.name.as_str(), "chat tiny-llama");
    let server = by_kind(&gateway, SpanKind::Server);
    let gw_call = gateway.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    let engine = gateway
        .iter()
        .find(|s| s.name.as_str() == "llm_request")
        .unwrap();
    // One trace, nested all the way down.
    let trace = app_root.context.trace_id;
    for span in gateway.iter().chain(app.iter()) {
        assert_eq!(span.context.trace_id, trace, "{}", span.name);
    }
    assert_eq!(server.parent_span_id, Some(app_call.context.span_id));
    assert_eq!(gw_call.parent_span_id, Some(server.context.span_id));
    assert_eq!(engine.parent_span_id, Some(gw_call.context.span_id));
    for phase in ["queue", "prefill", "decode"] {
        assert!(
            gateway
                .iter()
                .any(|s| s.name.as_str() == phase
                    && s.parent_span_id == Some(engine.context.span_id)),
            "{phase}"
        );
    }
    // The app's span holds the usage; the gateway keeps its count apart.
    let output = usage(app_call, attr::USAGE_OUTPUT_TOKENS).unwrap();
    assert_eq!(output, 6);
    assert_eq!(usage(gw_call, attr::USAGE_OUTPUT_TOKENS), None);
    assert_eq!(usage(gw_call, own::USAGE_COUNTED_OUTPUT_TOKENS), Some(6));
    let sum: i64 = gateway
        .iter()
        .chain(app.iter())
        .filter_map(|s| usage(s, attr::USAGE_OUTPUT_TOKENS))
        .sum();
    assert_eq!(sum, output, "each token counted once in the trace");
    let sum_in: i64 = gateway
        .iter()
        .chain(app.iter())
        .filter_map(|s| usage(s, attr::USAGE_INPUT_TOKENS))
        .sum();
    assert_eq!(Some(sum_in), usage(app_call, attr::USAGE_INPUT_TOKENS));
    // A time to first chunk on the app's side too.
    assert!(app_call.get(attr::RESPONSE_TIME_TO_FIRST_CHUNK).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_outside_the_base_url_pass_through_untraced() {
    let s = stack(|_| {}, |_| {}).await;
    let app_spans = InMemoryProcessor::new();
    let tracer = Tracer::new(Scope::new("my-app"), Sampler::default(), app_spans.clone());
    let base = BaseUrl::regex(r"^http://nowhere\.example/").unwrap();
    let layer = InferenceClientLayer::builder(tracer, base).build();
    let http: Client<_, RequestBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut client = tower_layer::Layer::layer(&layer, http);
    let body =
        r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":2}"#;
    let req = http::Request::post(format!("{}/v1/chat/completions", s.gw.url()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client.call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await.unwrap();
    let gateway = take_spans(&s.spans, 2).await;
    assert!(app_spans.take().is_empty());
    // The gateway counts the usage itself: nothing marked it as counted.
    let gw_call = by_kind(&gateway, SpanKind::Client);
    assert!(gw_call.get(attr::USAGE_OUTPUT_TOKENS).is_some());
}
