//! The export pipeline against the in-process receiver: every protocol, compression, headers,
//! retries (Retry-After / RetryInfo), partial success, a full queue, flush and shutdown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inferscope_core::{SpanKind, Status, Tracer};
use inferscope_export::config::ExporterSettings;
use inferscope_export::{FlushError, Tracing, TracingBuilder};
use inferscope_semconv::attr;
use inferscope_testkit::receiver::{Receiver, Reply, Transport};

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn pipeline(endpoint: String, pairs: &[(&str, &str)]) -> Tracing {
    TracingBuilder::new("inferscope.test")
        .with_endpoint(endpoint)
        .with_env(env(pairs))
        .build()
        .unwrap()
}

/// Records `n` finished inference spans of 25 attributes.
fn record(tracer: &Tracer, n: usize) {
    for i in 0..n {
        inferscope_testkit::sample::record_inference_span(tracer, None, format!("chatcmpl-{i}"));
    }
}

async fn export_and_check(protocol: &str, extra: &[(&str, &str)], expect: Transport) {
    let receiver = Receiver::start().await.unwrap();
    let endpoint = if protocol == "grpc" {
        receiver.grpc_endpoint()
    } else {
        receiver.http_endpoint()
    };
    let mut pairs = vec![
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_SERVICE_NAME", "svc-under-test"),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-api-key=s3cret,x-tenant=acme%20corp",
        ),
    ];
    pairs.extend_from_slice(extra);
    let tracing = pipeline(endpoint, &pairs);
    record(&tracing.tracer(), 3);
    tracing.shutdown(Duration::from_secs(10)).await.unwrap();

    let spans = receiver.spans();
    assert_eq!(spans.len(), 3, "{protocol}");
    let s = &spans[0];
    assert_eq!(s.span.name, "chat tiny-llama");
    assert_eq!(s.scope, "inferscope.test");
    assert_eq!(s.attr(attr::OPERATION_NAME).as_deref(), Some("chat"));
    assert_eq!(s.attr(attr::SERVER_PORT).as_deref(), Some("8000"));
    assert_eq!(s.attr(attr::REQUEST_TEMPERATURE).as_deref(), Some("0.7"));
    assert_eq!(s.attr(attr::REQUEST_STREAM).as_deref(), Some("true"));
    assert_eq!(
        s.attr(attr::RESPONSE_FINISH_REASONS).as_deref(),
        Some("[stop]")
    );
    assert_eq!(s.span.attributes.len(), 25);
    assert_eq!(s.span.trace_id.len(), 16);
    assert_eq!(
        s.resource_attr("service.name").as_deref(),
        Some("svc-under-test")
    );
    assert_eq!(
        s.resource_attr("deployment.environment").as_deref(),
        Some("test")
    );
    assert_eq!(
        s.resource_attr("telemetry.sdk.language").as_deref(),
        Some("rust")
    );

    let requests = receiver.requests();
    let r = &requests[0];
    assert_eq!(r.transport, expect);
    assert_eq!(r.headers.get("x-api-key").unwrap(), "s3cret");
    assert_eq!(r.headers.get("x-tenant").unwrap(), "acme corp");
    let gzip = extra.iter().any(|(_, v)| *v == "gzip");
    assert_eq!(r.gzip, gzip, "{protocol} gzip");
    let stats = tracing.stats();
    assert_eq!(stats.enqueued, 3);
    assert_eq!(stats.sinks[0].exported, 3);
    assert_eq!(stats.dropped, 0);
}

#[tokio::test]
async fn grpc() {
    export_and_check("grpc", &[], Transport::Grpc).await;
}

#[tokio::test]
async fn grpc_gzip() {
    export_and_check(
        "grpc",
        &[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")],
        Transport::Grpc,
    )
    .await;
}

#[tokio::test]
async fn http_protobuf() {
    export_and_check("http/protobuf", &[], Transport::HttpProtobuf).await;
}

#[tokio::test]
async fn http_protobuf_gzip() {
    export_and_check(
        "http/protobuf",
        &[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")],
        Transport::HttpProtobuf,
    )
    .await;
}

#[tokio::test]
async fn http_json() {
    export_and_check("http/json", &[], Transport::HttpJson).await;
}

#[tokio::test]
async fn http_json_gzip() {
    export_and_check(
        "http/json",
        &[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")],
        Transport::HttpJson,
    )
    .await;
}

#[tokio::test]
async fn trace_ids_and_parents_survive_json() {
    let receiver = Receiver::start().await.unwrap();
    let tracing = pipeline(
        receiver.http_endpoint(),
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
    );
    let tracer = tracing.tracer();
    let parent = tracer.start("parent", SpanKind::Server, None);
    let parent_ctx = parent.context().clone();
    let child = tracer.start("child", SpanKind::Client, Some(&parent_ctx));
    let child_ctx = child.context().clone();
    child.end();
    parent.end();
    tracing.shutdown(Duration::from_secs(10)).await.unwrap();
    let spans = receiver.spans();
    let child = spans.iter().find(|s| s.span.name == "child").unwrap();
    assert_eq!(child.span.trace_id, parent_ctx.trace_id.0.to_vec());
    assert_eq!(child.span.span_id, child_ctx.span_id.0.to_vec());
    assert_eq!(child.span.parent_span_id, parent_ctx.span_id.0.to_vec());
}

#[tokio::test]
async fn retryable_grpc_failures_are_retried_until_accepted() {
    let receiver = Receiver::start().await.unwrap();
    receiver.script([
        Reply::GrpcStatus(tonic::Code::Unavailable, None),
        Reply::GrpcStatus(
            tonic::Code::ResourceExhausted,
            Some(Duration::from_millis(300)),
        ),
    ]);
    let tracing = pipeline(receiver.grpc_endpoint(), &[]);
    record(&tracing.tracer(), 2);
    let started = Instant::now();
    tracing.shutdown(Duration::from_secs(20)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "RetryInfo's delay was not honoured"
    );
    assert_eq!(receiver.span_count(), 2);
    let stats = tracing.stats();
    assert_eq!(stats.sinks[0].exported, 2);
    assert_eq!(stats.sinks[0].requests, 3);
    assert_eq!(stats.sinks[0].retries, 2);
}

#[tokio::test]
async fn resource_exhausted_without_retry_info_and_invalid_argument_are_not_retried() {
    for code in [tonic::Code::ResourceExhausted, tonic::Code::InvalidArgument] {
        let receiver = Receiver::start().await.unwrap();
        receiver.script([Reply::GrpcStatus(code, None)]);
        let tracing = pipeline(receiver.grpc_endpoint(), &[]);
        record(&tracing.tracer(), 4);
        let result = tracing.shutdown(Duration::from_secs(10)).await;
        assert_eq!(
            result,
            Err(FlushError::Incomplete { failed: 4 }),
            "{code:?}"
        );
        let stats = tracing.stats();
        assert_eq!(stats.sinks[0].requests, 1, "{code:?}");
        assert_eq!(stats.sinks[0].failed, 4, "{code:?}");
        assert_eq!(receiver.requests().len(), 1);
    }
}

#[tokio::test]
async fn http_429_and_503_honour_retry_after() {
    let receiver = Receiver::start().await.unwrap();
    receiver.script([
        Reply::HttpStatus(429, Some("1".into())),
        Reply::HttpStatus(503, None),
    ]);
    let tracing = pipeline(
        receiver.http_endpoint(),
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
    );
    record(&tracing.tracer(), 5);
    let started = Instant::now();
    tracing.shutdown(Duration::from_secs(20)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured"
    );
    assert_eq!(receiver.span_count(), 5);
    assert_eq!(tracing.stats().sinks[0].retries, 2);
}

#[tokio::test]
async fn http_400_is_not_retried() {
    let receiver = Receiver::start().await.unwrap();
    receiver.script([Reply::HttpStatus(400, None)]);
    let tracing = pipeline(
        receiver.http_endpoint(),
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
    );
    record(&tracing.tracer(), 2);
    assert_eq!(
        tracing.shutdown(Duration::from_secs(10)).await,
        Err(FlushError::Incomplete { failed: 2 })
    );
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn partial_success_is_counted_as_rejected() {
    for protocol in ["grpc", "http/protobuf", "http/json"] {
        let receiver = Receiver::start().await.unwrap();
        receiver.script([Reply::Partial {
            rejected: 2,
            message: "2 spans too large".into(),
        }]);
        let endpoint = if protocol == "grpc" {
            receiver.grpc_endpoint()
        } else {
            receiver.http_endpoint()
        };
        let tracing = pipeline(endpoint, &[("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)]);
        record(&tracing.tracer(), 5);
        tracing.shutdown(Duration::from_secs(10)).await.unwrap();
        let stats = tracing.stats();
        assert_eq!(stats.sinks[0].rejected, 2, "{protocol}");
        assert_eq!(stats.sinks[0].exported, 3, "{protocol}");
        assert_eq!(
            stats.sinks[0].requests, 1,
            "{protocol}: partial success is not retried"
        );
    }
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let receiver = Receiver::start().await.unwrap();
    receiver.script([Reply::Delay(Duration::from_millis(500))]);
    let tracing = pipeline(
        receiver.grpc_endpoint(),
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4"),
            ("OTEL_BSP_SCHEDULE_DELAY", "1"),
        ],
    );
    record(&tracing.tracer(), 1000);
    let stats = tracing.stats();
    assert_eq!(stats.enqueued + stats.dropped, 1000);
    assert!(stats.dropped >= 1000 - 8 - 4 - 4, "{stats:?}");
    assert!(stats.queued <= 8, "{stats:?}");
    tracing.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        receiver.span_count(),
        tracing.stats().enqueued,
        "everything enqueued is delivered"
    );
}

#[tokio::test]
async fn shutdown_exports_everything_queued_while_the_receiver_is_up() {
    let receiver = Receiver::start().await.unwrap();
    let tracing = pipeline(
        receiver.grpc_endpoint(),
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "20000"),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    );
    record(&tracing.tracer(), 10_000);
    tracing.shutdown(Duration::from_secs(30)).await.unwrap();
    assert_eq!(receiver.span_count(), 10_000);
    assert!(
        receiver
            .requests()
            .iter()
            .all(|r| { r.request.resource_spans[0].scope_spans[0].spans.len() <= 512 })
    );
    // After shutdown, spans are dropped and counted, never block.
    record(&tracing.tracer(), 3);
    assert_eq!(tracing.stats().dropped, 3);
}

#[tokio::test]
async fn flush_exports_without_stopping() {
    let receiver = Receiver::start().await.unwrap();
    let tracing = pipeline(
        receiver.http_endpoint(),
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
    );
    record(&tracing.tracer(), 2);
    tracing.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(receiver.span_count(), 2);
    record(&tracing.tracer(), 2);
    tracing.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(receiver.span_count(), 4);
}

#[tokio::test]
async fn flush_and_shutdown_respect_their_deadline_when_the_receiver_is_down() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tracing = pipeline(format!("http://127.0.0.1:{port}"), &[]);
    record(&tracing.tracer(), 10);
    let started = Instant::now();
    let result = tracing.flush(Duration::from_millis(300)).await;
    assert!(
        matches!(
            result,
            Err(FlushError::Timeout(_)) | Err(FlushError::Incomplete { .. })
        ),
        "{result:?}"
    );
    // The flush gave up on the batch at its deadline: the spans are counted as failed.
    tracing.shutdown(Duration::from_millis(300)).await.ok();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadlines were not kept"
    );
    let stats = tracing.stats();
    assert_eq!(stats.sinks[0].failed, 10, "{stats:?}");
    assert!(
        stats.sinks[0].retries >= 1,
        "connection refused is retried: {stats:?}"
    );
}

/// A shutdown that arrives while a batch is being retried (the receiver answers 503, or
/// nothing listens) cuts the retries off at its own deadline and counts every span: the
/// exported, failed and dropped counts add up to the spans ended, and the caller hears so
/// within its timeout, not a timeout.
#[tokio::test]
async fn spans_still_retrying_at_shutdown_are_counted() {
    let receiver = Receiver::start().await.unwrap();
    receiver.script(std::iter::repeat_n(Reply::HttpStatus(503, None), 10_000));
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for endpoint in [receiver.http_endpoint(), format!("http://{refused}")] {
        let tracing = pipeline(
            endpoint.clone(),
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_BSP_SCHEDULE_DELAY", "20"),
                ("OTEL_BSP_EXPORT_TIMEOUT", "30000"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "16"),
            ],
        );
        record(&tracing.tracer(), 40);
        // The first batches are in their retries now.
        tokio::time::sleep(Duration::from_millis(300)).await;
        record(&tracing.tracer(), 50);
        let started = Instant::now();
        let result = tracing.shutdown(Duration::from_millis(500)).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{endpoint}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            result,
            Err(FlushError::Incomplete { failed: 90 }),
            "{endpoint}"
        );
        let stats = tracing.stats();
        let sink = &stats.sinks[0];
        assert_eq!(
            stats.enqueued + stats.dropped,
            90,
            "{endpoint}: every span ended is counted once: {stats:?}"
        );
        assert_eq!(
            sink.exported + sink.failed + sink.rejected,
            stats.enqueued,
            "{endpoint}: {stats:?}"
        );
        assert_eq!(sink.failed, 90, "{endpoint}: {stats:?}");
    }
}

#[tokio::test]
async fn spans_survive_a_receiver_that_comes_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let tracing = pipeline(
        format!("http://{addr}"),
        &[("OTEL_BSP_SCHEDULE_DELAY", "10")],
    );
    record(&tracing.tracer(), 7);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let receiver = Receiver::start_on(addr, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    tracing.shutdown(Duration::from_secs(20)).await.unwrap();
    assert_eq!(receiver.span_count(), 7);
    assert!(tracing.stats().sinks[0].retries >= 1);
}

#[tokio::test]
async fn disabled_pipeline_records_nothing() {
    let tracing = TracingBuilder::new("t")
        .with_env(env(&[("OTEL_SDK_DISABLED", "true")]))
        .build()
        .unwrap();
    assert!(!tracing.tracer().is_enabled());
    let tracing = TracingBuilder::new("t")
        .with_env(env(&[("OTEL_TRACES_EXPORTER", "none")]))
        .build()
        .unwrap();
    assert!(!tracing.tracer().is_enabled());
}

#[tokio::test]
async fn unsampled_spans_are_not_exported() {
    let receiver = Receiver::start().await.unwrap();
    let tracing = pipeline(
        receiver.grpc_endpoint(),
        &[("OTEL_TRACES_SAMPLER", "always_off")],
    );
    record(&tracing.tracer(), 5);
    tracing.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!(receiver.span_count(), 0);
    assert_eq!(tracing.stats().enqueued, 0);
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn console_and_file_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spans.jsonl");
    let buf = SharedBuf::default();
    let tracing = TracingBuilder::new("t")
        .with_env(env(&[("OTEL_TRACES_EXPORTER", "console")]))
        .with_settings(ExporterSettings {
            file: Some(path.clone()),
            ..ExporterSettings::default()
        })
        .with_console_writer(Box::new(buf.clone()))
        .build()
        .unwrap();
    let tracer = tracing.tracer();
    let server = tracer.start("POST /v1/chat/completions", SpanKind::Server, None);
    let mut client = tracer.start("chat tiny-llama", SpanKind::Client, Some(server.context()));
    client.set_attribute(attr::OPERATION_NAME, "chat");
    client.set_attribute(attr::USAGE_INPUT_TOKENS, 5i64);
    client.set_attribute(attr::USAGE_OUTPUT_TOKENS, 16i64);
    client.end();
    server.end();
    let mut failing = tracer.start("POST /v1/completions", SpanKind::Server, None);
    failing.set_status(Status::Error("upstream refused".into()));
    failing.end();
    tracing.shutdown(Duration::from_secs(10)).await.unwrap();

    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one line per request:\n{text}");
    assert!(
        lines[0].contains("POST /v1/chat/completions › chat tiny-llama")
            && lines[0].contains("tokens=5→16"),
        "{text}"
    );
    assert!(lines[1].contains("error(upstream refused)"), "{text}");

    let file = std::fs::read_to_string(&path).unwrap();
    let mut names = Vec::new();
    for line in file.lines() {
        let req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest =
            serde_json::from_str(line).unwrap();
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                names.extend(ss.spans.into_iter().map(|s| s.name));
            }
        }
    }
    names.sort();
    assert_eq!(
        names,
        [
            "POST /v1/chat/completions",
            "POST /v1/completions",
            "chat tiny-llama"
        ]
    );
}

#[test]
fn works_without_an_async_runtime() {
    let tracing = TracingBuilder::new("sync")
        .with_endpoint("http://127.0.0.1:9")
        .with_env(env(&[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "100"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "200"),
        ]))
        .build()
        .unwrap();
    record(&tracing.tracer(), 1);
    assert!(
        tracing.shutdown_blocking(Duration::from_secs(5)).is_err(),
        "nothing listens on port 9"
    );
}

// ---------- TLS (gRPC too: vLLM forces insecure gRPC) ----------

async fn tls_export(protocol: &str, trust_ca: bool) -> (Tracing, Receiver) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key_pem = cert.signing_key.serialize_pem();
    let receiver = Receiver::start_tls(&cert_pem, &key_pem).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert_pem).unwrap();
    let endpoint = if protocol == "grpc" {
        receiver.grpc_endpoint()
    } else {
        receiver.http_endpoint()
    };
    assert!(endpoint.starts_with("https://"));
    let ca_path = ca.to_str().unwrap().to_owned();
    let mut pairs = vec![
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_EXPORT_TIMEOUT", "2000"),
    ];
    if trust_ca {
        pairs.push(("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", ca_path.as_str()));
    }
    let tracing = pipeline(endpoint, &pairs);
    record(&tracing.tracer(), 2);
    let _ = tracing.shutdown(Duration::from_secs(10)).await;
    (tracing, receiver)
}

#[tokio::test]
async fn tls_with_a_trusted_ca_over_grpc_and_http() {
    for protocol in ["grpc", "http/protobuf", "http/json"] {
        let (tracing, receiver) = tls_export(protocol, true).await;
        assert_eq!(
            receiver.span_count(),
            2,
            "{protocol}: {:?}",
            tracing.stats()
        );
    }
}

#[tokio::test]
async fn tls_with_an_unknown_ca_fails_without_panicking() {
    for protocol in ["grpc", "http/protobuf"] {
        let (tracing, receiver) = tls_export(protocol, false).await;
        assert_eq!(receiver.span_count(), 0, "{protocol}");
        assert_eq!(tracing.stats().sinks[0].failed, 2, "{protocol}");
    }
}
