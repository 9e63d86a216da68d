//! What the tower layers and the reqwest middleware add to a call, against the same service
//! without them: a non-streamed chat call, and chat streams of 16 and 256 chunks (vLLM's
//! bytes; the difference between the two, over 240, is the cost per chunk), each unsampled
//! and sampled. Spans go to a processor that drops them, so the export is not in
//! the figures (`cargo bench -p inferscope-export --bench record_span` has it).
//!
//! Before criterion runs, the allocations one call makes on this thread are counted and
//! printed, bare and through each layer.
//!
//! `cargo bench -p inferscope-tower --features reqwest --bench layers`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt as _, Full, StreamBody};
use inferscope_core::{Sampler, Scope, SpanProcessor, SpanRecord, Tracer};
use inferscope_tower::InferenceLayer;
use inferscope_tower::client::{BaseUrl, InferenceClientLayer};
use tower::{Service, ServiceExt as _};

#[global_allocator]
static GLOBAL: inferscope_testkit::alloc::Counting = inferscope_testkit::alloc::Counting;

use inferscope_testkit::alloc::allocations;

/// Drops every span: the layer's own work, no export.
struct Discard;

impl SpanProcessor for Discard {
    fn on_end(&self, span: Box<SpanRecord>) {
        drop(black_box(span));
    }
}

const REQUEST: &str = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"Write a long story about a lighthouse keeper."}],"max_tokens":64,"stream":false}"#;
const STREAM_REQUEST: &str = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"Write a long story about a lighthouse keeper."}],"max_tokens":64,"stream":true,"stream_options":{"include_usage":true}}"#;
const CHAT: &str = r#"{"id":"chatcmpl-28ed772eaa7cf6f1","object":"chat.completion","created":1796160334,"model":"tiny-llama","choices":[{"index":0,"message":{"role":"assistant","content":" bely start issment str; by 2linklinenhelp matrix data env","refusal":null},"logprobs":null,"finish_reason":"length","stop_reason":null}],"system_fingerprint":"vllm-0.32.0-27997771","usage":{"prompt_tokens":26,"total_tokens":42,"completion_tokens":16}}"#;
/// A stream of `chunks` events as vLLM writes it, one event per chunk, ending with its usage
/// chunk and `[DONE]`.
fn stream_events(chunks: usize) -> Arc<Vec<Bytes>> {
    let head = r#"{"id":"chatcmpl-6c4468cdde472955","object":"chat.completion.chunk","created":1796160334,"model":"tiny-llama","choices":[{"index":0,"#;
    let mut out = Vec::new();
    for i in 0..chunks - 3 {
        out.push(Bytes::from(format!(
            "data: {head}\"delta\":{{\"content\":\" w{i}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
        )));
    }
    out.push(Bytes::from(format!(
        "data: {head}\"delta\":{{\"content\":\" end\"}},\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}}]}}\n\n"
    )));
    out.push(Bytes::from_static(br#"data: {"id":"chatcmpl-6c4468cdde472955","object":"chat.completion.chunk","created":1796160334,"model":"tiny-llama","choices":[],"usage":{"prompt_tokens":26,"total_tokens":90,"completion_tokens":64}}

"#));
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    assert_eq!(out.len(), chunks);
    Arc::new(out)
}

type Frames = futures_util::stream::Iter<
    std::iter::Map<
        std::vec::IntoIter<Bytes>,
        fn(Bytes) -> Result<http_body::Frame<Bytes>, Infallible>,
    >,
>;
type Streamed = http_body_util::Either<Full<Bytes>, StreamBody<Frames>>;

fn frame(b: Bytes) -> Result<http_body::Frame<Bytes>, Infallible> {
    Ok(http_body::Frame::data(b))
}

/// The bare service: answers a chat call whole, or as the stream, without reading the
/// request.
#[derive(Clone)]
struct Engine {
    events: Arc<Vec<Bytes>>,
    stream: bool,
}

impl<B: Send + 'static> Service<http::Request<B>> for Engine {
    type Response = http::Response<Streamed>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<http::Response<Streamed>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        drop(req);
        let resp = if self.stream {
            let frames: Frames = futures_util::stream::iter(
                self.events
                    .as_ref()
                    .clone()
                    .into_iter()
                    .map(frame as fn(_) -> _),
            );
            http::Response::builder()
                .header("content-type", "text/event-stream")
                .body(http_body_util::Either::Right(StreamBody::new(frames)))
                .unwrap()
        } else {
            http::Response::builder()
                .header("content-type", "application/json")
                .body(http_body_util::Either::Left(Full::new(Bytes::from_static(
                    CHAT.as_bytes(),
                ))))
                .unwrap()
        };
        std::future::ready(Ok(resp))
    }
}

fn request(stream: bool) -> http::Request<Full<Bytes>> {
    let body = if stream { STREAM_REQUEST } else { REQUEST };
    http::Request::post("http://engine:8000/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// One call through `svc`, its response body read to the end.
async fn one<S, ResB>(svc: &mut S, stream: bool)
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<ResB>>,
    S::Error: std::fmt::Debug,
    ResB: http_body::Body,
    ResB::Error: std::fmt::Debug,
{
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(request(stream))
        .await
        .unwrap();
    let mut body = std::pin::pin!(resp.into_body());
    while let Some(f) = body.as_mut().frame().await {
        black_box(f.unwrap());
    }
}

fn tracer(sampled: bool) -> Tracer {
    let sampler = if sampled {
        Sampler::AlwaysOn
    } else {
        Sampler::AlwaysOff
    };
    Tracer::new(Scope::new("bench"), sampler, Arc::new(Discard))
}

/// The bare service adapted to take the layers' request body.
fn engine(stream: bool, events: &Arc<Vec<Bytes>>) -> Engine {
    Engine {
        events: events.clone(),
        stream,
    }
}

fn server(
    stream: bool,
    sampled: bool,
    events: &Arc<Vec<Bytes>>,
) -> impl Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<inferscope_tower::TracedBody<Streamed>>,
    Error = Infallible,
> {
    tower_layer::Layer::layer(
        &InferenceLayer::new(tracer(sampled)),
        engine(stream, events),
    )
}

fn client(
    stream: bool,
    sampled: bool,
    events: &Arc<Vec<Bytes>>,
) -> impl Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<inferscope_tower::TracedBody<Streamed>>,
    Error = Infallible,
> {
    let layer =
        InferenceClientLayer::builder(tracer(sampled), BaseUrl::prefix("http://engine:8000/v1"))
            .build();
    tower_layer::Layer::layer(&layer, engine(stream, events))
}

/// A reqwest-middleware stack whose last middleware answers in place of the network.
mod middleware {
    use super::*;
    use inferscope_tower::reqwest::InferenceMiddleware;
    use reqwest_middleware::{ClientWithMiddleware, Middleware, Next};

    pub(super) struct Answer {
        pub(super) events: Arc<Vec<Bytes>>,
        pub(super) stream: bool,
    }

    #[async_trait::async_trait]
    impl Middleware for Answer {
        async fn handle(
            &self,
            req: reqwest::Request,
            _: &mut http::Extensions,
            _: Next<'_>,
        ) -> reqwest_middleware::Result<reqwest::Response> {
            drop(req);
            let body = if self.stream {
                let frames: Frames = futures_util::stream::iter(
                    self.events
                        .as_ref()
                        .clone()
                        .into_iter()
                        .map(frame as fn(_) -> _),
                );
                reqwest::Body::wrap(StreamBody::new(frames))
            } else {
                reqwest::Body::from(CHAT)
            };
            let ct = if self.stream {
                "text/event-stream"
            } else {
                "application/json"
            };
            Ok(reqwest::Response::from(
                http::Response::builder()
                    .header("content-type", ct)
                    .body(body)
                    .unwrap(),
            ))
        }
    }

    pub(super) fn client(
        traced: Option<bool>,
        stream: bool,
        events: &Arc<Vec<Bytes>>,
    ) -> ClientWithMiddleware {
        let mut b = reqwest_middleware::ClientBuilder::new(reqwest::Client::new());
        if let Some(sampled) = traced {
            b = b.with(
                InferenceMiddleware::builder(
                    tracer(sampled),
                    BaseUrl::prefix("http://engine:8000/v1"),
                )
                .build(),
            );
        }
        b.with(Answer {
            events: events.clone(),
            stream,
        })
        .build()
    }

    pub(super) async fn one(client: &ClientWithMiddleware, stream: bool) {
        let body = if stream { STREAM_REQUEST } else { REQUEST };
        let mut resp = client
            .post("http://engine:8000/v1/chat/completions")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        while let Some(c) = resp.chunk().await.unwrap() {
            black_box(c);
        }
    }
}

/// Allocations on this thread of one more run of `$e` (run once before, to warm).
macro_rules! count {
    ($rt:expr, $e:expr) => {{
        $rt.block_on($e);
        let before = allocations();
        $rt.block_on($e);
        allocations() - before
    }};
}

fn layers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let events = stream_events(64);

    // Allocations per call, on this thread.
    for stream in [false, true] {
        let what = if stream {
            "64-chunk stream"
        } else {
            "non-streamed call"
        };
        let mut bare = engine(stream, &events);
        let n = count!(rt, one(&mut bare, stream));
        let mut line = format!("allocations per {what}: bare service {n}");
        for (name, sampled) in [("unsampled", false), ("sampled", true)] {
            let mut s = server(stream, sampled, &events);
            let n = count!(rt, one(&mut s, stream));
            line += &format!(", server layer {name} {n}");
            let mut s = client(stream, sampled, &events);
            let n = count!(rt, one(&mut s, stream));
            line += &format!(", client layer {name} {n}");
        }
        let m = middleware::client(None, stream, &events);
        let n = count!(rt, middleware::one(&m, stream));
        line += &format!("; reqwest-middleware without the middleware {n}");
        for (name, sampled) in [("unsampled", false), ("sampled", true)] {
            let m = middleware::client(Some(sampled), stream, &events);
            let n = count!(rt, middleware::one(&m, stream));
            line += &format!(", with it {name} {n}");
        }
        println!("{line}");
    }

    // A call, and streams of 16 and 256 chunks: the difference between the two streams,
    // over 240, is the cost per chunk.
    for (stream, chunks) in [(false, 0), (true, 16), (true, 256)] {
        let events = stream_events(chunks.max(3));
        let what = if stream {
            format!("stream of {chunks} chunks")
        } else {
            "call".to_owned()
        };
        let mut g = c.benchmark_group(format!("tower {what}"));
        let mut bare = engine(stream, &events);
        g.bench_function("bare service", |b| {
            b.iter(|| rt.block_on(one(&mut bare, stream)))
        });
        for (name, sampled) in [("unsampled", false), ("sampled", true)] {
            let mut s = server(stream, sampled, &events);
            g.bench_function(format!("server layer, {name}"), |b| {
                b.iter(|| rt.block_on(one(&mut s, stream)))
            });
            let mut s = client(stream, sampled, &events);
            g.bench_function(format!("client layer, {name}"), |b| {
                b.iter(|| rt.block_on(one(&mut s, stream)))
            });
        }
        g.finish();
        let mut g = c.benchmark_group(format!("reqwest-middleware {what}"));
        let m = middleware::client(None, stream, &events);
        g.bench_function("without the middleware", |b| {
            b.iter(|| rt.block_on(middleware::one(&m, stream)))
        });
        for (name, sampled) in [("unsampled", false), ("sampled", true)] {
            let m = middleware::client(Some(sampled), stream, &events);
            g.bench_function(format!("with it, {name}"), |b| {
                b.iter(|| rt.block_on(middleware::one(&m, stream)))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, layers);
criterion_main!(benches);
