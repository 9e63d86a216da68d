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
use inferscope_tower::reqwest::InferenceMiddleware;
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

    let app_call = one_trace_tokens_once(&s, &app_spans, Some("answer the user")).await;
    // A time to first chunk on the app's side too.
    assert!(app_call.get(attr::RESPONSE_TIME_TO_FIRST_CHUNK).is_some());
}

/// The app's spans (`app`, with its root `root` if the call had a parent) and the gateway's
/// make one trace nested all the way down, and the tokens are counted once; returns the
/// app's CLIENT span.
async fn one_trace_tokens_once(
    s: &Stack,
    app_spans: &InMemoryProcessor,
    root: Option<&str>,
) -> SpanRecord {
    wait_named(&s.spans, "llm_request", 1).await;
    let gateway = take_spans(&s.spans, 7).await;
    let app = app_spans.take();
    let app_call = app.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    let trace = app_call.context.trace_id;
    match root {
        Some(name) => {
            let app_root = app.iter().find(|s| s.name.as_str() == name).unwrap();
            assert_eq!(app_call.parent_span_id, Some(app_root.context.span_id));
        }
        None => assert_eq!(app_call.parent_span_id, None),
    }
    assert_eq!(app_call.name.as_str(), "chat tiny-llama");
    let server = by_kind(&gateway, SpanKind::Server);
    let gw_call = gateway.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    let engine = gateway
        .iter()
        .find(|s| s.name.as_str() == "llm_request")
        .unwrap();
    // One trace, nested all the way down.
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
    app_call.clone()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_with_the_reqwest_middleware_makes_the_same_one_trace() {
    let s = stack_with_ingest(|_| {}, |_| {}).await;
    let app_spans = InMemoryProcessor::new();
    let tracer = Tracer::new(Scope::new("my-app"), Sampler::default(), app_spans.clone());
    let middleware = InferenceMiddleware::builder(tracer.clone(), BaseUrl::prefix(s.gw.url()))
        .provider("vllm")
        .build();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    let root = tracer.start("answer the user", SpanKind::Internal, None);
    let url = format!("{}/v1/chat/completions?probe=1", s.gw.url());
    let body = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":6,"stream":true}"#;
    let mut resp = client
        .post(&url)
        .with_extension(root.context().clone())
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-app-secret")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The response is still reqwest's own: its URL and headers kept.
    assert_eq!(resp.url().as_str(), url);
    assert!(resp.headers().get("content-type").is_some());
    let mut text = Vec::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        text.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(text).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("\"usage\""), "{text}");
    root.end();
    let app_call = one_trace_tokens_once(&s, &app_spans, Some("answer the user")).await;
    assert!(app_call.get(attr::RESPONSE_TIME_TO_FIRST_CHUNK).is_some());
    let all = format!("{app_call:?}");
    assert!(!all.contains("sk-app-secret"));

    // Not an inference route: passed on untouched, no span.
    let resp = client
        .get(format!("{}/v1/models", s.gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(app_spans.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reqwest_middleware_records_a_refused_connection() {
    let app_spans = InMemoryProcessor::new();
    let tracer = Tracer::new(Scope::new("my-app"), Sampler::default(), app_spans.clone());
    let port = inferscope_testkit::paths::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(InferenceMiddleware::builder(tracer, BaseUrl::prefix(base.clone())).build())
        .build();
    let err = client
        .post(format!("{base}/v1/chat/completions?key=sk-in-url"))
        .body(r#"{"model":"m","messages":[]}"#)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
    let spans = app_spans.take();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        spans[0].get(attr::ERROR_TYPE),
        Some(&Value::Str("upstream_unreachable".into()))
    );
    assert!(!format!("{:?}", spans[0]).contains("sk-in-url"));
}

/// async-openai (feature `middleware`) sends its requests through a tower service of the
/// application's choosing: a `ClientWithMiddleware` carrying the middleware gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_openai_through_the_middleware_makes_the_same_one_trace() {
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
    };
    use futures_util::StreamExt as _;

    let s = stack_with_ingest(|_| {}, |_| {}).await;
    let app_spans = InMemoryProcessor::new();
    let tracer = Tracer::new(Scope::new("my-app"), Sampler::default(), app_spans.clone());
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            InferenceMiddleware::builder(tracer, BaseUrl::prefix(s.gw.url()))
                .provider("vllm")
                .build(),
        )
        .build();
    let service = tower::service_fn(
        move |factory: async_openai::middleware::HttpRequestFactory| {
            let http = http.clone();
            async move {
                let req = factory.build().await?;
                http.execute(req)
                    .await
                    .map_err(|e| async_openai::error::OpenAIError::Boxed(e.into()))
            }
        },
    );
    let config = async_openai::config::OpenAIConfig::new()
        .with_api_base(format!("{}/v1", s.gw.url()))
        .with_api_key("sk-openai-secret");
    let client = async_openai::Client::with_config(config).with_http_service(service);
    let request = CreateChatCompletionRequestArgs::default()
        .model("tiny-llama")
        .max_completion_tokens(6u32)
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("hi")
            .build()
            .unwrap()
            .into()])
        .build()
        .unwrap();
    let mut stream = client.chat().create_stream(request).await.unwrap();
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        // The usage chunk the middleware asked for never reaches the application.
        assert!(chunk.usage.is_none());
        chunks += 1;
    }
    assert!(chunks >= 2);
    let app_call = one_trace_tokens_once(&s, &app_spans, None).await;
    assert!(!format!("{app_call:?}").contains("sk-openai-secret"));
}

/// The application calls vLLM directly; the gateway only ingests vLLM's spans. vLLM's
/// `llm_request` has no gateway span to join, but its `tracestate` says the application's span
/// counted the usage: its counts stay off `gen_ai.usage.*`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_span_under_an_app_span_that_counted_the_usage_counts_nothing_again() {
    let s = stack_with_ingest(|_| {}, |_| {}).await;
    let app_spans = InMemoryProcessor::new();
    let tracer = Tracer::new(Scope::new("my-app"), Sampler::default(), app_spans.clone());
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(InferenceMiddleware::builder(tracer, BaseUrl::prefix(s.sim.url())).build())
        .build();
    let body =
        r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":6}"#;
    let resp = client
        .post(format!("{}/v1/chat/completions", s.sim.url()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.bytes().await.unwrap();
    wait_named(&s.spans, "llm_request", 1).await;
    let ingested = s.spans.take();
    let engine = ingested
        .iter()
        .find(|s| s.name.as_str() == "llm_request")
        .unwrap();
    let app = app_spans.take();
    let app_call = by_kind(&app, SpanKind::Client);
    assert_eq!(engine.parent_span_id, Some(app_call.context.span_id));
    assert_eq!(usage(app_call, attr::USAGE_OUTPUT_TOKENS), Some(6));
    let sum: i64 = ingested
        .iter()
        .chain(app.iter())
        .filter_map(|s| usage(s, attr::USAGE_OUTPUT_TOKENS))
        .sum();
    assert_eq!(sum, 6, "each token counted once");
    assert_eq!(
        usage(
            engine,
            inferscope_semconv::vllm::renamed::USAGE_OUTPUT_TOKENS
        ),
        Some(6)
    );
}
