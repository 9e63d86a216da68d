//! An application instrumented with OpenTelemetry (Python: the official
//! `opentelemetry-instrumentation-openai-v2`, with the two-line request hook of
//! `examples/linked-trace/python/app.py`) calls through the gateway: one trace, the gateway's
//! SERVER span a child of the application's CLIENT span.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::path::PathBuf;

use common::*;
use inferscope_core::SpanKind;
use inferscope_testkit::paths::python;

/// Runs `program app --print-spans` against the gateway; the application's spans.
async fn run_app(
    program: &std::path::Path,
    app: &std::path::Path,
    gateway: &str,
) -> Vec<serde_json::Value> {
    let out = tokio::process::Command::new(program)
        .arg(app)
        .arg(format!("{gateway}/v1"))
        .arg("--print-spans")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the app failed:\n{stderr}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The application's two calls and the gateway's spans form one trace: the gateway's SERVER
/// spans are children of the application's CLIENT spans (remote parents).
async fn one_trace(app_spans: &[serde_json::Value], spans: &inferscope_core::InMemoryProcessor) {
    let app_clients: Vec<&serde_json::Value> =
        app_spans.iter().filter(|s| s["kind"] == "CLIENT").collect();
    assert!(app_clients.len() >= 2, "{app_spans:#?}");
    let root = app_spans
        .iter()
        .find(|s| s["name"] == "answer the user")
        .unwrap();
    let trace_id = root["trace_id"].as_str().unwrap();
    // Two calls: a SERVER and a CLIENT span each at the gateway, all in the app's trace.
    let spans = take_spans(spans, 4).await;
    for span in &spans {
        assert_eq!(&*span.context.trace_id.to_hex(), trace_id, "{}", span.name);
    }
    for server in spans.iter().filter(|s| s.kind == SpanKind::Server) {
        let parent = server.parent_span_id.unwrap().to_hex().to_string();
        assert!(
            app_clients.iter().any(|c| c["span_id"] == parent.as_str()),
            "the gateway's SERVER span's parent {parent} is not an app call: {app_clients:#?}"
        );
        assert!(server.parent_is_remote);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instrumented_python_app_and_the_gateway_make_one_trace() {
    let s = stack(|_| {}, |_| {}).await;
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let app =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/linked-trace/python/app.py");
    let app_spans = run_app(&python, &app, &s.gw.url()).await;
    // The official instrumentation's spans are the CLIENT spans the gateway continues.
    let calls = app_spans
        .iter()
        .filter(|s| s["kind"] == "CLIENT" && s["attributes"]["gen_ai.operation.name"] == "chat")
        .count();
    assert_eq!(calls, 2, "{app_spans:#?}");
    one_trace(&app_spans, &s.spans).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_javascript_sdk_and_the_gateway_make_one_trace() {
    let s = stack(|_| {}, |_| {}).await;
    let dir = tokio::task::spawn_blocking(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = std::process::Command::new("bash")
            .arg(root.join("scripts/node-env.sh"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "scripts/node-env.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .await
    .unwrap();
    let app_spans = run_app(
        std::path::Path::new("node"),
        &dir.join("app.mjs"),
        &s.gw.url(),
    )
    .await;
    one_trace(&app_spans, &s.spans).await;
}
