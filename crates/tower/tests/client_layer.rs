//! The client layer delivers every byte the server sent, once, in order: when it asked for
//! usage on the application's behalf and the server ignored it, when the stream ends on a
//! finishing event or an unfinished one, and when chunks split events anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, StreamBody};
use inferscope_core::{InMemoryProcessor, Sampler, Scope, SpanKind, Tracer, Value};
use inferscope_semconv::attr;
use inferscope_tower::RequestBody;
use inferscope_tower::client::{BaseUrl, InferenceClientLayer};
use tower::{Service as _, ServiceExt as _};

type Frames = Vec<Result<http_body::Frame<Bytes>, Infallible>>;

/// Sends a streamed chat request through the layer to a server answering `events` cut into
/// `cut`-byte chunks; returns what the application read, what the server got, and the span.
async fn through_layer(
    events: &[&str],
    cut: usize,
) -> (String, String, inferscope_core::SpanRecord) {
    let spans = InMemoryProcessor::new();
    let tracer = Tracer::new(Scope::new("app"), Sampler::default(), spans.clone());
    let layer = InferenceClientLayer::builder(tracer, BaseUrl::prefix("http://engine")).build();
    let sent = Arc::new(Mutex::new(String::new()));
    let all: Vec<u8> = events.concat().into_bytes();
    let server = {
        let sent = sent.clone();
        tower::service_fn(move |req: http::Request<RequestBody<Full<Bytes>>>| {
            let sent = sent.clone();
            let all = all.clone();
            async move {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                *sent.lock().unwrap() = String::from_utf8(body.to_vec()).unwrap();
                let frames: Frames = all
                    .chunks(cut)
                    .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
                    .collect();
                let body = StreamBody::new(futures_util::stream::iter(frames));
                Ok::<_, Infallible>(
                    http::Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(body)
                        .unwrap(),
                )
            }
        })
    };
    let mut client = tower_layer::Layer::layer(&layer, server);
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    let req = http::Request::post("http://engine/v1/chat/completions")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client.ready().await.unwrap().call(req).await.unwrap();
    let read = resp.into_body().collect().await.unwrap().to_bytes();
    let span = spans
        .take()
        .into_iter()
        .find(|s| s.kind == SpanKind::Client)
        .unwrap();
    let sent = sent.lock().unwrap().clone();
    (String::from_utf8(read.to_vec()).unwrap(), sent, span)
}

const FIRST: &str = "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";
const FINISH: &str = "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
const USAGE: &str = "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

#[tokio::test]
async fn a_server_ignoring_include_usage_loses_no_byte_when_the_stream_ends_on_its_finishing_event()
{
    for cut in [1, 7, 64, 4096] {
        let (read, sent, span) = through_layer(&[FIRST, FINISH], cut).await;
        assert!(sent.contains("\"include_usage\":true"), "{sent}");
        assert_eq!(read, [FIRST, FINISH].concat(), "cut {cut}");
        assert_eq!(
            span.get(attr::RESPONSE_FINISH_REASONS)
                .map(|v| format!("{v:?}")),
            Some(format!("{:?}", Value::from(vec!["stop".to_owned()])))
        );
    }
}

#[tokio::test]
async fn an_unfinished_last_event_reaches_the_application() {
    let unfinished = "data: {\"id\":\"c\",\"choices\":[]}";
    for cut in [1, 5, 4096] {
        let (read, _, _) = through_layer(&[FIRST, FINISH, DONE, unfinished], cut).await;
        assert_eq!(
            read,
            [FIRST, FINISH, DONE, unfinished].concat(),
            "cut {cut}"
        );
    }
}

#[tokio::test]
async fn the_added_usage_chunk_is_taken_out_wherever_chunks_split_and_the_span_has_the_usage() {
    for cut in [1, 3, 17, 100, 4096] {
        let (read, _, span) = through_layer(&[FIRST, FINISH, USAGE, DONE], cut).await;
        assert_eq!(read, [FIRST, FINISH, DONE].concat(), "cut {cut}");
        assert_eq!(span.get(attr::USAGE_OUTPUT_TOKENS), Some(&Value::I64(2)));
        assert_eq!(span.get(attr::USAGE_INPUT_TOKENS), Some(&Value::I64(3)));
    }
}
