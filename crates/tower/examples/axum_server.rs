//! A small OpenAI-compatible server (axum) traced by [`inferscope_tower::InferenceLayer`].
//!
//! `POST /v1/chat/completions` answers with a fixed reply, whole or streamed (SSE, with a
//! usage chunk when `stream_options.include_usage` is set). Spans go where the standard
//! `OTEL_*` variables say (OTLP to `localhost:4317` by default).
//!
//!   cargo run -p inferscope-tower --example axum_server -- 127.0.0.1:8080
//!   curl localhost:8080/v1/chat/completions -d '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use axum::Router;
use axum::body::Body;
use axum::http::{Response, StatusCode, header};
use axum::routing::post;
use inferscope_tower::InferenceLayer;

/// The reply's words, one per streamed chunk.
const WORDS: [&str; 4] = ["Hello", " from", " axum", "."];

/// The router, traced by `layer`.
pub fn router(layer: InferenceLayer) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route_layer(layer)
}

async fn chat(body: axum::body::Bytes) -> Response<Body> {
    let Ok(req) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                r#"{"error":{"message":"the body is not JSON","type":"BadRequestError"}}"#,
            ))
            .unwrap();
    };
    let model = req["model"].as_str().unwrap_or("example-model").to_owned();
    let prompt_tokens = 9;
    let completion_tokens = WORDS.len();
    if req["stream"].as_bool() == Some(true) {
        let usage = req["stream_options"]["include_usage"].as_bool() == Some(true);
        let mut events = Vec::new();
        for (i, w) in WORDS.iter().enumerate() {
            let finish = (i + 1 == WORDS.len()).then_some("stop");
            let chunk = serde_json::json!({
                "id": "chatcmpl-axum", "object": "chat.completion.chunk", "created": 1, "model": model,
                "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": finish}],
            });
            events.push(format!("data: {chunk}\n\n"));
        }
        if usage {
            let chunk = serde_json::json!({
                "id": "chatcmpl-axum", "object": "chat.completion.chunk", "created": 1, "model": model,
                "choices": [],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            });
            events.push(format!("data: {chunk}\n\n"));
        }
        events.push("data: [DONE]\n\n".to_owned());
        // One event at a time, a little apart, as a model would produce them.
        let stream = futures_util::stream::unfold(events.into_iter(), |mut it| async move {
            let next = it.next()?;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            Some((Ok::<_, std::convert::Infallible>(next), it))
        });
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let reply = serde_json::json!({
        "id": "chatcmpl-axum", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": WORDS.concat()}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(reply.to_string()))
        .unwrap()
}

#[tokio::main]
#[allow(dead_code)]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    // Spans as the OTEL_* environment says.
    let tracing = inferscope_export::TracingBuilder::new("axum-example")
        .build()
        .expect("the OTEL_* settings");
    let layer = InferenceLayer::builder(tracing.tracer())
        .provider("axum-example")
        .build();
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("listening on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, router(layer))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .unwrap();
    let _ = tracing.shutdown(std::time::Duration::from_secs(5)).await;
}
