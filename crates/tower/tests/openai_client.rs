//! The example axum server, traced by the layer, driven by the real `openai` Python client:
//! each request gets a SERVER span continuing the caller's context and an inference span with
//! the conventions' attributes, streamed bodies pass through chunk by chunk, and a layer
//! applied twice records one set of spans.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

#[path = "../examples/axum_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use inferscope_core::observe::capture::CapturePolicy;
use inferscope_core::{InMemoryProcessor, Sampler, Scope, SpanKind, SpanRecord, Tracer, Value};
use inferscope_semconv::{attr, http as http_attr};
use inferscope_testkit::paths::python;
use inferscope_tower::InferenceLayer;

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

fn layer(spans: &Arc<InMemoryProcessor>) -> InferenceLayer {
    let tracer = Tracer::new(Scope::new("tower-test"), Sampler::default(), spans.clone());
    InferenceLayer::builder(tracer)
        .provider("axum-example")
        .capture(CapturePolicy {
            enabled: true,
            ..CapturePolicy::default()
        })
        .build()
}

async fn take(spans: &InMemoryProcessor, n: usize) -> Vec<SpanRecord> {
    for _ in 0..200 {
        if spans.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    spans.take()
}

fn get<'a>(s: &'a SpanRecord, key: &str) -> Option<&'a Value> {
    s.attributes
        .iter()
        .rev()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_client_against_a_traced_axum_server() {
    let spans = InMemoryProcessor::new();
    let url = serve(example::router(layer(&spans))).await;
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_chat.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(&url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["chat"]["text"], "Hello from axum.");
    assert_eq!(seen["stream"]["text"], "Hello from axum.");
    assert_eq!(seen["stream"]["usage"], 4);

    let all = take(&spans, 4).await;
    assert_eq!(all.len(), 4, "{all:#?}");
    let servers: Vec<_> = all.iter().filter(|s| s.kind == SpanKind::Server).collect();
    let calls: Vec<_> = all
        .iter()
        .filter(|s| s.kind == SpanKind::Internal)
        .collect();
    assert_eq!((servers.len(), calls.len()), (2, 2));
    for s in &servers {
        assert_eq!(s.name.as_str(), "POST /v1/chat/completions");
        assert_eq!(
            get(s, http_attr::RESPONSE_STATUS_CODE),
            Some(&Value::I64(200))
        );
    }
    for c in &calls {
        assert_eq!(c.name.as_str(), "chat example-model");
        let server = servers
            .iter()
            .find(|s| Some(s.context.span_id) == c.parent_span_id)
            .expect("the inference span is a child of a SERVER span");
        assert_eq!(server.context.trace_id, c.context.trace_id);
        assert_eq!(
            get(c, attr::PROVIDER_NAME),
            Some(&Value::from("axum-example"))
        );
        assert_eq!(get(c, attr::USAGE_OUTPUT_TOKENS), Some(&Value::I64(4)));
        assert_eq!(get(c, attr::USAGE_INPUT_TOKENS), Some(&Value::I64(9)));
        assert!(get(c, attr::OUTPUT_MESSAGES).is_some(), "content captured");
    }
    let streamed = calls
        .iter()
        .find(|c| get(c, attr::RESPONSE_TIME_TO_FIRST_CHUNK).is_some())
        .expect("the streamed call has a time to first chunk");
    assert_eq!(
        get(streamed, attr::REQUEST_STREAM),
        Some(&Value::Bool(true))
    );
    assert!(!format!("{all:?}").contains("sk-tower-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_applied_twice_records_one_set_of_spans_and_continues_the_callers_trace() {
    let spans = InMemoryProcessor::new();
    let l = layer(&spans);
    let url = serve(example::router(l.clone()).layer(l)).await;
    let client = inferscope_testkit::http::client();
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let req = http::Request::post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap();
    let all = take(&spans, 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let all = [all, spans.take()].concat();
    assert_eq!(all.len(), 2, "{all:#?}");
    let server = all.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    assert_eq!(
        server.context.trace_id.to_hex().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert!(server.parent_is_remote);
}
