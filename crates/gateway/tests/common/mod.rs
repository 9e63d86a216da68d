//! Helpers for the gateway's end-to-end tests: a simulator behind a gateway, spans kept in
//! memory, a plain HTTP client, and an echo server for byte-for-byte forwarding checks.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod pki;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use inferscope_core::{
    InMemoryProcessor, Sampler, Scope, SpanKind, SpanProcessor as _, SpanRecord, Tracer, Value,
};
use inferscope_gateway::Gateway;
use inferscope_gateway::config::GatewayConfig;
use inferscope_server::{InProgress, Limits, Listener, Phase};
use inferscope_sim::{Sim, SimConfig};

pub struct Stack {
    pub sim: Sim,
    pub gw: Gateway,
    pub spans: Arc<InMemoryProcessor>,
}

pub fn sim_config() -> SimConfig {
    let mut c = SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        created: Some(1_795_355_464),
        enable_request_id_headers: true,
        ..SimConfig::default()
    };
    c.engine.step_base_ms = 1.0;
    c.engine.step_per_seq_ms = 0.0;
    c.engine.preprocess_ms = 0.0;
    c
}

pub async fn gateway(
    upstream: &str,
    tune: impl FnOnce(&mut GatewayConfig),
    sampler: Sampler,
) -> (Gateway, Arc<InMemoryProcessor>) {
    let mut config = GatewayConfig::local(upstream).unwrap();
    tune(&mut config);
    let spans = InMemoryProcessor::new();
    let tracer = Tracer::new(Scope::new("inferscope.gateway"), sampler, spans.clone());
    let gw = Gateway::start(config, tracer, None).await.unwrap();
    (gw, spans)
}

pub async fn stack(
    tune_sim: impl FnOnce(&mut SimConfig),
    tune_gw: impl FnOnce(&mut GatewayConfig),
) -> Stack {
    let mut c = sim_config();
    tune_sim(&mut c);
    let sim = Sim::start(c).await.unwrap();
    let (gw, spans) = gateway(&sim.url(), tune_gw, Sampler::default()).await;
    Stack { sim, gw, spans }
}

pub use inferscope_testkit::http::{Reply, client, post, send};

/// Waits until `n` spans were recorded, then takes them.
pub async fn take_spans(spans: &InMemoryProcessor, n: usize) -> Vec<SpanRecord> {
    for _ in 0..500 {
        if spans.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = spans.take();
    assert!(
        got.len() >= n,
        "wanted {n} spans, got {}: {:?}",
        got.len(),
        got.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    got
}

pub fn by_kind(spans: &[SpanRecord], kind: SpanKind) -> &SpanRecord {
    spans
        .iter()
        .find(|s| s.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} span in {spans:?}"))
}

pub fn int(s: &SpanRecord, key: &str) -> i64 {
    s.get(key)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("{key} not an int on {}: {:?}", s.name, s.attributes))
}

pub fn float(s: &SpanRecord, key: &str) -> f64 {
    s.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{key} not a double on {}: {:?}", s.name, s.attributes))
}

pub fn string(s: &SpanRecord, key: &str) -> String {
    s.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{key} not a string on {}: {:?}", s.name, s.attributes))
        .to_owned()
}

pub fn strings(s: &SpanRecord, key: &str) -> Vec<String> {
    match s.get(key) {
        Some(Value::StrArray(v)) => v.iter().map(|x| x.to_string()).collect(),
        other => panic!("{key} not a string array on {}: {other:?}", s.name),
    }
}

/// An upstream that answers every request with a JSON description of what it received:
/// method, path and query, headers, and the body (base64-free: its length and a hash).
pub async fn echo_server() -> (SocketAddr, tokio::task::JoinHandle<bool>) {
    let limits = Limits {
        max_connections: 1 << 16,
        header_timeout: None,
        grace: Duration::ZERO,
    };
    let listener = Listener::bind("echo", "127.0.0.1:0".parse().unwrap(), limits)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = |req: Request<hyper::body::Incoming>, in_progress: InProgress| async move {
        let peer = in_progress.conn().addr;
        let method = req.method().to_string();
        let uri = req.uri().to_string();
        let version = format!("{:?}", req.version());
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let reply = serde_json::json!({
            "method": method, "uri": uri, "version": version, "headers": headers,
            "body_len": body.len(), "body_fnv": fnv(&body), "peer_port": peer.port(),
        });
        let mut resp = Response::new(Full::new(Bytes::from(reply.to_string())));
        resp.headers_mut().insert("x-echo", "1".parse().unwrap());
        resp.headers_mut()
            .insert("connection", "keep-alive, x-hop".parse().unwrap());
        resp.headers_mut()
            .insert("x-hop", "should-not-pass".parse().unwrap());
        Ok::<_, Infallible>(resp)
    };
    // Never told to stop: the task ends with the test's runtime.
    let (stop, phase) = tokio::sync::watch::channel(Phase::Serving);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let task = tokio::spawn(async move {
        let _stop = stop;
        listener.serve(builder, handle, phase, || {}).await
    });
    (addr, task)
}

pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A gateway in front of a simulator whose `llm_request` spans go to the gateway's OTLP/gRPC
/// ingest, as `vllm serve --otlp-traces-endpoint` would.
pub async fn stack_with_ingest(
    tune_sim: impl FnOnce(&mut SimConfig),
    tune_gw: impl FnOnce(&mut GatewayConfig),
) -> Stack {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (gw, spans) = gateway(
        &format!("http://127.0.0.1:{port}"),
        tune_gw,
        Sampler::default(),
    )
    .await;
    let mut c = sim_config();
    c.listen = format!("127.0.0.1:{port}").parse().unwrap();
    c.otlp_traces_endpoint = Some(format!("http://{}", gw.ingest_grpc_addr().unwrap()));
    tune_sim(&mut c);
    let sim = Sim::start(c).await.unwrap();
    Stack { sim, gw, spans }
}

/// Waits until a span named `name` was recorded `n` times, without taking anything.
pub async fn wait_named(spans: &InMemoryProcessor, name: &str, n: usize) {
    for _ in 0..500 {
        let all = spans.take();
        let count = all.iter().filter(|s| s.name.as_str() == name).count();
        for s in all {
            spans.on_end(Box::new(s));
        }
        if count >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {n} {name} spans");
}
