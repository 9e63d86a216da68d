//! Export to a real OTLP receiver from PyPI: the sinks of `oteltest` (its `otelsink`), over gRPC
//! and over HTTP. `scripts/python-env.sh` installs them (pinned) into `target/venv` the first time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use inferscope_core::SpanKind;
use inferscope_core::trace_context::extract_trace_context;
use inferscope_export::TracingBuilder;
use inferscope_semconv::attr;
use inferscope_testkit::paths::{free_port, python};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct Sink {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Sink {
    async fn start(flag: &str, port: u16) -> Sink {
        let mut child = Command::new(python())
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/oteltest_sink.py"))
            .arg(flag)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the oteltest sink");
        let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = err.next_line().await {
                if line.contains("READY") {
                    return true;
                }
                eprintln!("oteltest: {line}");
            }
            false
        })
        .await;
        assert_eq!(ready, Ok(true), "the oteltest sink did not start");
        tokio::spawn(async move { while let Ok(Some(_)) = err.next_line().await {} });
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Sink { child, lines }
    }

    /// Reads export requests until `n` spans arrived; returns (headers, span, resource attrs).
    async fn spans(&mut self, n: usize) -> Vec<(Value, Value, Value)> {
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), async {
            while out.len() < n {
                let Ok(Some(line)) = self.lines.next_line().await else {
                    break;
                };
                let v: Value = serde_json::from_str(&line).unwrap();
                for rs in v["request"]["resourceSpans"].as_array().unwrap() {
                    for ss in rs["scopeSpans"].as_array().unwrap() {
                        for span in ss["spans"].as_array().unwrap() {
                            let mut span = span.clone();
                            span["scope"] = ss["scope"]["name"].clone();
                            out.push((
                                v["headers"].clone(),
                                span,
                                rs["resource"]["attributes"].clone(),
                            ));
                        }
                    }
                }
            }
        })
        .await;
        assert!(
            read.is_ok(),
            "only {} of {n} spans reached oteltest",
            out.len()
        );
        let _ = self.child.start_kill();
        out
    }
}

/// The value of `key` in a protobuf-JSON attribute list, as JSON.
fn attr_of(attrs: &Value, key: &str) -> Value {
    attrs
        .as_array()
        .into_iter()
        .flatten()
        .find(|kv| kv["key"] == key)
        .map(|kv| kv["value"].clone())
        .unwrap_or(Value::Null)
}

async fn send_three(endpoint: String, protocol: &str) -> (String, String) {
    let env: BTreeMap<String, String> = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_SERVICE_NAME", "inferscope-oteltest"),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-scope-orgid=tenant-1"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let tracing = TracingBuilder::new("inferscope.oteltest")
        .with_endpoint(endpoint)
        .with_env(env)
        .build()
        .unwrap();
    let tracer = tracing.tracer();
    let incoming = vec![(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )];
    let parent = extract_trace_context(&incoming).unwrap();
    let mut ids = (String::new(), String::new());
    for i in 0..3i64 {
        let mut span = tracer.start("chat tiny-llama", SpanKind::Client, Some(&parent));
        span.set_attribute(attr::OPERATION_NAME, "chat");
        span.set_attribute(attr::PROVIDER_NAME, "vllm");
        span.set_attribute(attr::REQUEST_MODEL, "tiny-llama");
        span.set_attribute(attr::USAGE_INPUT_TOKENS, 5 + i);
        span.set_attribute(attr::REQUEST_TEMPERATURE, 0.5);
        span.set_attribute(attr::RESPONSE_FINISH_REASONS, vec!["stop".to_owned()]);
        ids = (
            span.context().trace_id.to_string(),
            span.context().span_id.to_string(),
        );
        span.end();
    }
    tracing.shutdown(Duration::from_secs(20)).await.unwrap();
    assert_eq!(tracing.stats().sinks[0].exported, 3);
    ids
}

fn check(spans: &[(Value, Value, Value)]) {
    assert_eq!(spans.len(), 3);
    let (headers, span, resource) = &spans[0];
    assert_eq!(headers["x-scope-orgid"], "tenant-1", "{headers}");
    assert_eq!(span["name"], "chat tiny-llama");
    assert_eq!(span["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(span["scope"], "inferscope.oteltest");
    let attrs = &span["attributes"];
    assert_eq!(attr_of(attrs, attr::OPERATION_NAME)["stringValue"], "chat");
    assert_eq!(attr_of(attrs, attr::PROVIDER_NAME)["stringValue"], "vllm");
    assert_eq!(
        attr_of(attrs, attr::REQUEST_MODEL)["stringValue"],
        "tiny-llama"
    );
    assert_eq!(attr_of(attrs, attr::USAGE_INPUT_TOKENS)["intValue"], "5");
    assert_eq!(
        attr_of(attrs, attr::REQUEST_TEMPERATURE)["doubleValue"],
        0.5
    );
    assert_eq!(
        attr_of(attrs, attr::RESPONSE_FINISH_REASONS)["arrayValue"]["values"][0]["stringValue"],
        "stop"
    );
    assert_eq!(
        attr_of(resource, "service.name")["stringValue"],
        "inferscope-oteltest"
    );
    assert_eq!(
        attr_of(resource, "deployment.environment")["stringValue"],
        "ci"
    );
    assert_eq!(
        attr_of(resource, "telemetry.sdk.name")["stringValue"],
        "inferscope"
    );
}

/// Protobuf JSON carries ids as base64; the spec's OTLP/JSON carries them as hex.
fn b64_to_hex(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = String::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        bits = (bits << 6) | T.iter().position(|t| *t == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push_str(&format!("{:02x}", (bits >> n) & 0xff));
        }
    }
    out
}

#[tokio::test]
async fn grpc_to_oteltest() {
    let port = free_port();
    let mut sink = Sink::start("--grpc", port).await;
    let (trace, span_id) = send_three(format!("http://127.0.0.1:{port}"), "grpc").await;
    let spans = sink.spans(3).await;
    check(&spans);
    let last = &spans[2].1;
    assert_eq!(b64_to_hex(last["traceId"].as_str().unwrap()), trace);
    assert_eq!(b64_to_hex(last["spanId"].as_str().unwrap()), span_id);
    assert_eq!(
        b64_to_hex(last["parentSpanId"].as_str().unwrap()),
        "00f067aa0ba902b7"
    );
}

#[tokio::test]
async fn http_protobuf_to_oteltest() {
    let port = free_port();
    let mut sink = Sink::start("--http", port).await;
    let (trace, _) = send_three(
        format!("http://127.0.0.1:{port}/v1/traces"),
        "http/protobuf",
    )
    .await;
    let spans = sink.spans(3).await;
    check(&spans);
    assert_eq!(b64_to_hex(spans[0].1["traceId"].as_str().unwrap()), trace);
}

#[tokio::test]
async fn http_json_to_oteltest() {
    // oteltest parses JSON bodies with protobuf's generic JSON mapping, which reads ids as
    // base64 rather than OTLP/JSON's hex, so only attributes and resource are compared here;
    // the in-repo receiver checks JSON ids (tests/pipeline.rs).
    let port = free_port();
    let mut sink = Sink::start("--http", port).await;
    send_three(format!("http://127.0.0.1:{port}/v1/traces"), "http/json").await;
    check(&sink.spans(3).await);
}
