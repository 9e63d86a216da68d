//! Sampling is decided before anything else: an unsampled request passes through both
//! layers with its body unread and no span, and the decision travels on in `traceparent`.
//! A sampled one gives the handler the context its own calls continue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use inferscope_core::{InMemoryProcessor, Sampler, Scope, SpanContext, SpanKind, Tracer};
use inferscope_tower::client::{BaseUrl, InferenceClientLayer};
use inferscope_tower::{InferenceLayer, RequestBody, span_context};
use tower::{Service as _, ServiceExt as _};

const BODY: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331";

/// What the inner service saw: the body, the `traceparent`, the handler's context.
#[derive(Default, Debug, Clone)]
struct Seen {
    body: String,
    traceparent: Option<String>,
    context: Option<SpanContext>,
}

#[allow(clippy::type_complexity)]
fn recorder(
    seen: Arc<Mutex<Seen>>,
) -> impl tower::Service<
    http::Request<RequestBody<Full<Bytes>>>,
    Response = http::Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<http::Response<Full<Bytes>>, Infallible>>
             + Send
             + 'static,
> + Clone {
    tower::service_fn(move |req: http::Request<RequestBody<Full<Bytes>>>| {
        let seen = seen.clone();
        async move {
            let context = span_context(&req);
            let traceparent = req
                .headers()
                .get("traceparent")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            *seen.lock().unwrap() = Seen {
                body: String::from_utf8(body.to_vec()).unwrap(),
                traceparent,
                context,
            };
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    })
}

fn request(traceparent: Option<String>) -> http::Request<Full<Bytes>> {
    let mut b = http::Request::post("http://engine/v1/chat/completions");
    if let Some(tp) = traceparent {
        b = b.header("traceparent", tp);
    }
    b.body(Full::new(Bytes::from(BODY))).unwrap()
}

#[tokio::test]
async fn an_unsampled_request_passes_the_server_layer_untouched_and_its_handler_continues_the_callers_decision()
 {
    let spans = InMemoryProcessor::new();
    let tracer = Tracer::new(
        Scope::new("server"),
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        spans.clone(),
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut svc = tower_layer::Layer::layer(&InferenceLayer::new(tracer), recorder(seen.clone()));
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(request(Some(format!("{PARENT}-00"))))
        .await
        .unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    assert!(spans.take().is_empty());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.body, BODY);
    // No span here: the handler's calls continue the caller's context, unsampled.
    let ctx = seen.context.unwrap();
    let mut headers = http::HeaderMap::new();
    inferscope_core::trace_context::inject(&ctx, &mut headers);
    assert_eq!(headers["traceparent"], format!("{PARENT}-00").as_str());
    assert!(!ctx.is_sampled());
}

#[tokio::test]
async fn a_sampled_request_gives_its_handler_the_inference_span_as_the_parent_of_its_calls() {
    let spans = InMemoryProcessor::new();
    let tracer = Tracer::new(Scope::new("server"), Sampler::default(), spans.clone());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut svc = tower_layer::Layer::layer(&InferenceLayer::new(tracer), recorder(seen.clone()));
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(request(Some(format!("{PARENT}-01"))))
        .await
        .unwrap();
    let _ = resp.into_body().collect().await.unwrap();
    let recorded = spans.take();
    let call = recorded
        .iter()
        .find(|s| s.kind == SpanKind::Internal)
        .unwrap();
    let server = recorded
        .iter()
        .find(|s| s.kind == SpanKind::Server)
        .unwrap();
    assert_eq!(server.name.as_str(), "POST /v1/chat/completions");
    assert_eq!(call.name.as_str(), "chat m");
    let ctx = seen.lock().unwrap().context.clone().unwrap();
    assert_eq!(ctx.span_id, call.context.span_id);
    assert!(ctx.is_sampled());
}

#[tokio::test]
async fn an_unsampled_call_through_the_client_layer_carries_only_its_traceparent() {
    let spans = InMemoryProcessor::new();
    let tracer = Tracer::new(
        Scope::new("app"),
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        spans.clone(),
    );
    let layer = InferenceClientLayer::builder(tracer, BaseUrl::prefix("http://engine/v1")).build();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut client = tower_layer::Layer::layer(&layer, recorder(seen.clone()));
    let mut req = request(None);
    let parent =
        inferscope_core::trace_context::extract_trace_context(&http::HeaderMap::from_iter([(
            http::header::HeaderName::from_static("traceparent"),
            format!("{PARENT}-00").parse().unwrap(),
        )]))
        .unwrap();
    req.extensions_mut().insert(parent);
    let resp = client.ready().await.unwrap().call(req).await.unwrap();
    let _ = resp.into_body().collect().await.unwrap();
    assert!(spans.take().is_empty());
    let seen = seen.lock().unwrap().clone();
    // The body as the application wrote it: no include_usage asked for without a span.
    assert_eq!(seen.body, BODY);
    let tp = seen.traceparent.unwrap();
    assert!(
        tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "{tp}"
    );
    assert!(tp.ends_with("-00"), "{tp}");
    assert!(!tp.contains("b7ad6b7169203331"), "a fresh span id: {tp}");
}

#[test]
fn a_prefix_matches_a_uri_as_it_matches_the_uri_written_out() {
    let uris = [
        "http://engine/v1/chat/completions",
        "http://engine:8000/v1/chat/completions?x=1",
        "https://api.example.com/openai/v1/completions",
        "/v1/chat/completions",
        "http://engine/",
    ];
    let prefixes = [
        "",
        "http",
        "http://",
        "http://engine",
        "http://engine/v1",
        "http://engine:8000/v1/chat/completions?x",
        "http://engine:8000/v1/chat/completions?x=1&more",
        "https://api.example.com/openai",
        "/v1",
        "http://engin/",
        "https://engine",
    ];
    for u in uris {
        let uri: http::Uri = u.parse().unwrap();
        for p in prefixes {
            let base = BaseUrl::prefix(p);
            assert_eq!(
                base.matches_uri(&uri),
                base.matches(&uri.to_string()),
                "{p:?} on {u:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_route_the_application_does_not_serve_is_not_named_as_one() {
    let spans = InMemoryProcessor::new();
    let tracer = Tracer::new(Scope::new("server"), Sampler::default(), spans.clone());
    let not_found = tower::service_fn(|_req: http::Request<RequestBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(
            http::Response::builder()
                .status(404)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    });
    let svc = tower_layer::Layer::layer(&InferenceLayer::new(tracer), not_found);
    let resp = svc.oneshot(request(None)).await.unwrap();
    let _ = resp.into_body().collect().await.unwrap();
    let recorded = spans.take();
    let server = recorded
        .iter()
        .find(|s| s.kind == SpanKind::Server)
        .unwrap();
    assert_eq!(server.name.as_str(), "POST");
    assert!(server.get(inferscope_semconv::http::ROUTE).is_none());
}

#[test]
fn a_prefix_is_compared_as_clients_write_urls_out() {
    let uri: http::Uri = "http://localhost:8000/v1/chat/completions".parse().unwrap();
    for p in [
        "HTTP://LocalHost:8000/v1",
        "http://user:sk-key@localhost:8000/v1",
        "http://localhost:8000",
    ] {
        assert!(BaseUrl::prefix(p).matches_uri(&uri), "{p}");
    }
    // The path stays as written: paths are case-sensitive.
    assert!(!BaseUrl::prefix("http://localhost:8000/V1").matches_uri(&uri));
}
