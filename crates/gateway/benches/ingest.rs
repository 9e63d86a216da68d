//! Engine-span ingest throughput: how many of vLLM's `llm_request` spans one gateway core
//! decodes, normalises, splits into phases and forwards in a second.
//!
//! The gateway is the release binary (`INFERSCOPE_BIN`), its own process, pinned to CPU 0,
//! with its gRPC ingest on and its exporter sending every span to a counting OTLP receiver in
//! this process. This process (the load and the receiver) runs on CPU 1. Requests are what
//! vLLM's batch exporter sends: 512 `llm_request` spans each, with vLLM 0.32's attributes
//! (`../shared/fixtures/vllm-0.32-cpu`), fresh ids, none of them known to the gateway (no
//! gateway CLIENT span to join). The figure is spans accepted over the gateway's own CPU
//! time (user + system, from /proc).
//!
//! `bash bench/ingest.sh [SECONDS]`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;

const SPANS_PER_REQUEST: usize = 512;
const IN_FLIGHT: usize = 4;

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(v) }),
        ..KeyValue::default()
    }
}

fn f(key: &str, v: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(v))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.to_owned()))
}

/// One request as vLLM 0.32's exporter sends it: a batch of `llm_request` spans.
fn request(seq: u64) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans = (0..SPANS_PER_REQUEST)
        .map(|n| {
            let start = now + n as u64 * 1_000;
            Span {
                trace_id: fastrand::u128(1..).to_be_bytes().to_vec(),
                span_id: fastrand::u64(1..).to_be_bytes().to_vec(),
                parent_span_id: fastrand::u64(1..).to_be_bytes().to_vec(),
                name: "llm_request".to_owned(),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 99_175_453,
                attributes: vec![
                    f("gen_ai.latency.time_to_first_token", 0.024_910_211),
                    f("gen_ai.latency.e2e", 0.099_175_453),
                    f("gen_ai.latency.time_in_queue", 0.000_048_071),
                    i("gen_ai.usage.prompt_tokens", 5),
                    i("gen_ai.usage.completion_tokens", 16),
                    f("gen_ai.latency.time_in_model_prefill", 0.013_834_147),
                    f("gen_ai.latency.time_in_model_decode", 0.074_280_424),
                    f("gen_ai.latency.time_in_model_inference", 0.088_114_571),
                    s("gen_ai.request.id", &format!("cmpl-{seq:08x}{n:08x}-0")),
                    f("gen_ai.request.top_p", 1.0),
                    i("gen_ai.request.max_tokens", 16),
                    f("gen_ai.request.temperature", 1.0),
                    i("gen_ai.request.n", 1),
                ],
                ..Span::default()
            }
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    s("telemetry.sdk.language", "python"),
                    s("telemetry.sdk.name", "opentelemetry"),
                    s("telemetry.sdk.version", "1.45.2"),
                    s(
                        "service.instance.id",
                        "82479f68-2db6-4dbb-ad38-6604a0d82e04",
                    ),
                    s("vllm.instrumenting_module_name", "vllm.llm_engine"),
                    s("vllm.process_id", "13229"),
                    s("service.name", "unknown_service:python"),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "vllm.tracing.otel".to_owned(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    // A gRPC message: uncompressed flag, length, protobuf.
    let body = req.encode_to_vec();
    let mut framed = BytesMut::with_capacity(body.len() + 5);
    framed.put_u8(0);
    framed.put_u32(body.len() as u32);
    framed.put_slice(&body);
    framed.freeze()
}

/// User + system CPU seconds of a process, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &text[text.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let secs: f64 = std::env::var("INGEST_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15.0);
    let bin = std::env::var("INFERSCOPE_BIN").expect("INFERSCOPE_BIN: the release binary");
    let receiver = inferscope_testkit::receiver::Receiver::start()
        .await
        .unwrap();
    receiver.count_only();
    let ingest = free_port();
    let admin = free_port();
    let mut gateway = Command::new("taskset")
        .args(["-c", "0", &bin, "serve", "--upstream", "http://127.0.0.1:9"])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--otlp-ingest-grpc", &format!("127.0.0.1:{ingest}")])
        .args(["--otlp-ingest-http", "off"])
        .args([
            "--otlp-endpoint",
            &receiver.grpc_endpoint(),
            "--otlp-protocol",
            "grpc",
        ])
        .args(["--log", "warn"])
        .env("OTEL_BSP_MAX_QUEUE_SIZE", "65536")
        .stdin(Stdio::null())
        .spawn()
        .expect("the gateway starts");
    let pid = gateway.id();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let url: http::Uri = format!(
        "http://127.0.0.1:{ingest}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    )
    .parse()
    .unwrap();
    // Until the ingest answers.
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", ingest)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bodies: Arc<Vec<Bytes>> = Arc::new((0..64).map(request).collect());
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let send = move |body: Bytes| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let req = http::Request::post(url)
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(Full::new(body))
                .unwrap();
            let resp = client.request(req).await.unwrap();
            let collected = resp.into_body().collect().await.unwrap();
            let status = collected
                .trailers()
                .and_then(|t| t.get("grpc-status"))
                .map(|v| v.to_str().unwrap().to_owned());
            status.as_deref() == Some("0")
        }
    };
    // Warm-up: connections, allocator, the exporter.
    for body in bodies.iter().take(8) {
        assert!(send(body.clone()).await, "the ingest accepts a request");
    }
    let warm = (8 * SPANS_PER_REQUEST) as u64;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for w in 0..IN_FLIGHT {
        let bodies = bodies.clone();
        let accepted = accepted.clone();
        let refused = refused.clone();
        let send = send.clone();
        tasks.push(tokio::spawn(async move {
            let mut k = w;
            while Instant::now() < until {
                if send(bodies[k % bodies.len()].clone()).await {
                    accepted.fetch_add(SPANS_PER_REQUEST as u64, Ordering::Relaxed);
                } else {
                    // Refused (the export queue is full): as vLLM's exporter, try again later.
                    refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                k += IN_FLIGHT;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let wall = started.elapsed().as_secs_f64();
    // Everything accepted is exported before the CPU is read: the work includes the export.
    let spans = accepted.load(Ordering::Relaxed);
    let expected_min = warm + spans;
    let drain_start = Instant::now();
    let mut last = 0;
    while drain_start.elapsed() < Duration::from_secs(60) {
        let n = receiver.span_count();
        if n >= expected_min && n == last {
            break;
        }
        last = n;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu = cpu_seconds(pid) - cpu_before;
    let received = receiver.span_count();
    let metrics = admin_metrics(admin).await;
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = gateway.wait();
    let per_cpu = spans as f64 / cpu;
    println!(
        "engine spans accepted: {spans} in {wall:.1} s ({:.0}/s); requests refused (queue full): {}",
        spans as f64 / wall,
        refused.load(Ordering::Relaxed)
    );
    println!("gateway CPU: {cpu:.2} s (user + system) -> {per_cpu:.0} engine spans per CPU-second");
    println!(
        "spans at the receiver: {received} (engine spans and their phase spans, warm-up included)"
    );
    for line in metrics.lines().filter(|l| {
        l.starts_with("inferscope_ingest_") || l.starts_with("inferscope_exporter_dropped")
    }) {
        println!("  {line}");
    }
}

/// The gateway's /metrics text (a plain HTTP/1.1 GET).
async fn admin_metrics(port: u16) -> String {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://127.0.0.1:{port}/metrics").parse().unwrap();
    match client.get(uri).await {
        Ok(resp) => match resp.into_body().collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(_) => String::new(),
        },
        Err(_) => String::new(),
    }
}
