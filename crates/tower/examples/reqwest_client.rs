//! An agent built on `reqwest` that calls an OpenAI-compatible server (vLLM, the inferscope
//! gateway, the axum example) through [`inferscope_tower::reqwest::InferenceMiddleware`].
//! The call gets a CLIENT span, child of the agent's own span, and the request carries its
//! `traceparent`. Spans go where the standard `OTEL_*` variables say.
//!
//!   cargo run -p inferscope-tower --features reqwest --example reqwest_client -- http://127.0.0.1:8000/v1 MODEL
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use inferscope_core::SpanKind;
use inferscope_tower::client::BaseUrl;
use inferscope_tower::reqwest::InferenceMiddleware;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8000/v1".to_owned());
    let model = args.next().unwrap_or_else(|| "tiny-llama".to_owned());
    let tracing = inferscope_export::TracingBuilder::new("reqwest-agent")
        .build()
        .expect("the OTEL_* settings");
    let tracer = tracing.tracer();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(InferenceMiddleware::builder(tracer.clone(), BaseUrl::prefix(base.clone())).build())
        .build();

    let task = tracer.start("answer the user", SpanKind::Internal, None);
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 16,
        "stream": true,
    });
    let resp = client
        .post(format!("{base}/chat/completions"))
        .with_extension(task.context().clone())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the server answers");
    println!("HTTP {}", resp.status());
    let mut resp = resp;
    while let Some(chunk) = resp.chunk().await.expect("the stream") {
        print!("{}", String::from_utf8_lossy(&chunk));
    }
    task.end();
    let _ = tracing.shutdown(std::time::Duration::from_secs(5)).await;
}
