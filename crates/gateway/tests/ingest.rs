//! Engine-span ingest: the simulator (and raw OTLP payloads, real vLLM spans among them) sends
//! spans to the gateway, which normalises `llm_request`, joins the gateway's view, derives the
//! phases and forwards everything with its resource and scope.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::time::Duration;

use common::*;
use inferscope_core::span::{KeyValue, Resource, Scope, SpanKind, SpanRecord, Value};
use inferscope_core::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use inferscope_export::otlp::Encoder;
use inferscope_semconv::{attr, inferscope as own, vllm};
use prost::Message as _;

const CHAT: &str = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hello"}],"max_tokens":16,"temperature":0,"stream":true}"#;

fn check_phases(spans: &[SpanRecord], parent: &SpanRecord) -> Vec<String> {
    let mut kids: Vec<&SpanRecord> = spans
        .iter()
        .filter(|s| s.parent_span_id == Some(parent.context.span_id))
        .collect();
    kids.sort_by_key(|k| k.start_unix_nanos);
    let mut t = parent.start_unix_nanos;
    for k in &kids {
        assert_eq!(k.kind, SpanKind::Internal);
        assert_eq!(k.context.trace_id, parent.context.trace_id);
        assert!(
            k.start_unix_nanos >= t
                && k.end_unix_nanos >= k.start_unix_nanos
                && k.end_unix_nanos <= parent.end_unix_nanos,
            "{} out of place",
            k.name
        );
        assert_eq!(
            k.resource, parent.resource,
            "phases live in vLLM's resource"
        );
        t = k.end_unix_nanos;
    }
    kids.iter().map(|k| k.name.to_string()).collect()
}

#[tokio::test]
async fn engine_spans_are_normalised_joined_and_split_into_phases() {
    let s = stack_with_ingest(|c| c.engine.prefill_per_token_ms = 0.2, |_| {}).await;
    let r = post(&s.gw.url(), "/v1/chat/completions", CHAT, &[]).await;
    assert_eq!(r.status, 200);
    s.sim.flush_spans(Duration::from_secs(5)).await.unwrap();
    wait_named(&s.spans, "decode", 1).await;
    let spans = s.spans.take();
    let server = by_kind(&spans, SpanKind::Server);
    let client = by_kind(&spans, SpanKind::Client);
    let engine = spans
        .iter()
        .find(|s| s.name.as_str() == vllm::LLM_REQUEST_SPAN)
        .unwrap();
    // The tree: SERVER → CLIENT → llm_request → phases.
    assert_eq!(client.parent_span_id, Some(server.context.span_id));
    assert_eq!(engine.parent_span_id, Some(client.context.span_id));
    assert_eq!(engine.context.trace_id, server.context.trace_id);
    let phases = check_phases(&spans, engine);
    assert!(
        phases.ends_with(&[
            "queue".to_owned(),
            "prefill".to_owned(),
            "decode".to_owned()
        ]),
        "{phases:?}"
    );
    // Current keys, the model and the gateway's view.
    assert_eq!(string(engine, attr::OPERATION_NAME), "chat");
    assert_eq!(string(engine, attr::PROVIDER_NAME), "vllm");
    assert_eq!(string(engine, attr::REQUEST_MODEL), "tiny-llama");
    assert_eq!(string(engine, attr::RESPONSE_MODEL), "tiny-llama");
    // Usage is counted once per trace: the CLIENT span carries it; the engine span, nested
    // under it, keeps its own counts under vllm.usage.*.
    assert_eq!(
        int(engine, vllm::renamed::USAGE_OUTPUT_TOKENS),
        int(client, attr::USAGE_OUTPUT_TOKENS)
    );
    assert_eq!(
        int(engine, vllm::renamed::USAGE_INPUT_TOKENS),
        int(client, attr::USAGE_INPUT_TOKENS)
    );
    assert!(engine.get(attr::USAGE_INPUT_TOKENS).is_none());
    assert!(engine.get(attr::USAGE_OUTPUT_TOKENS).is_none());
    assert_eq!(
        strings(engine, attr::RESPONSE_FINISH_REASONS),
        strings(client, attr::RESPONSE_FINISH_REASONS)
    );
    // vLLM dropped temperature 0; the gateway saw it.
    assert_eq!(float(engine, attr::REQUEST_TEMPERATURE), 0.0);
    let client_ttft = float(client, attr::RESPONSE_TIME_TO_FIRST_CHUNK);
    assert_eq!(float(engine, own::GATEWAY_TIME_TO_FIRST_CHUNK), client_ttft);
    let engine_ttft = float(engine, vllm::renamed::LATENCY_TIME_TO_FIRST_TOKEN);
    assert!((float(engine, own::TTFT_OUTSIDE_ENGINE) - (client_ttft - engine_ttft)).abs() < 1e-9);
    // Legacy keys gone (default dialect), vLLM's facts kept under vllm.*.
    assert!(engine.get(vllm::attr::USAGE_PROMPT_TOKENS).is_none());
    assert!(engine.get(vllm::attr::LATENCY_E2E).is_none());
    assert!(engine.get(vllm::renamed::REQUEST_ID).is_some());
    // vLLM's resource and scope are intact.
    let resource = engine.resource.as_ref().unwrap();
    assert!(
        resource
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == vllm::resource::INSTRUMENTING_MODULE_NAME)
    );
    assert_eq!(engine.scope.name.as_str(), vllm::TRACING_SCOPE);
    assert_eq!(
        s.gw.ingest_stats()
            .joined
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let metrics = s.gw.metrics_text();
    assert!(
        metrics.contains("inferscope_ingest_joined_spans_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn several_choices_and_the_vllm_dialect() {
    let s = stack_with_ingest(
        |_| {},
        |c| {
            c.dialects = vec![
                inferscope_semconv::dialect::Dialect::OTel,
                inferscope_semconv::dialect::Dialect::Vllm,
            ]
        },
    )
    .await;
    post(
        &s.gw.url(),
        "/v1/completions",
        r#"{"model":"tiny-llama","prompt":"Once","max_tokens":5,"n":2}"#,
        &[],
    )
    .await;
    s.sim.flush_spans(Duration::from_secs(5)).await.unwrap();
    wait_named(&s.spans, vllm::LLM_REQUEST_SPAN, 2).await;
    let spans = s.spans.take();
    let client = by_kind(&spans, SpanKind::Client);
    let engines: Vec<&SpanRecord> = spans
        .iter()
        .filter(|s| s.name.as_str() == vllm::LLM_REQUEST_SPAN)
        .collect();
    assert_eq!(engines.len(), 2, "n=2 gives two engine spans");
    for e in engines {
        assert_eq!(e.parent_span_id, Some(client.context.span_id));
        assert_eq!(string(e, attr::OPERATION_NAME), "text_completion");
        assert_eq!(int(e, attr::REQUEST_CHOICE_COUNT), 2);
        // The vllm dialect keeps vLLM's names beside the current ones, but not its usage
        // keys: nested under the CLIENT span, the engine's counts go under vllm.usage.*.
        assert!(e.get(vllm::attr::USAGE_PROMPT_TOKENS).is_none());
        assert!(e.get(attr::USAGE_INPUT_TOKENS).is_none());
        assert!(int(e, vllm::renamed::USAGE_INPUT_TOKENS) > 0);
        // Not streamed: no first chunks, so no TTFT comparison.
        assert!(e.get(own::TTFT_OUTSIDE_ENGINE).is_none());
        assert!(e.get(vllm::attr::LATENCY_TIME_TO_FIRST_TOKEN).is_some());
        check_phases(&spans, e);
    }
    // What a backend that sums usage over the trace finds: the request's usage, once (the
    // prompt once, not once per sequence plus once for the CLIENT span).
    for (current, legacy) in [
        (attr::USAGE_INPUT_TOKENS, vllm::attr::USAGE_PROMPT_TOKENS),
        (
            attr::USAGE_OUTPUT_TOKENS,
            vllm::attr::USAGE_COMPLETION_TOKENS,
        ),
    ] {
        let total: i64 = spans
            .iter()
            .filter_map(|s| s.get(current).and_then(|v| v.as_i64()))
            .sum();
        assert_eq!(total, int(client, current), "{current}");
        let total: i64 = spans
            .iter()
            .filter_map(|s| s.get(legacy).and_then(|v| v.as_i64()))
            .sum();
        assert_eq!(total, int(client, legacy), "{legacy}");
    }
}

#[tokio::test]
async fn each_sequence_of_a_stream_with_several_choices_is_compared_with_its_own_choice() {
    let s = stack_with_ingest(|c| c.engine.step_base_ms = 2.0, |_| {}).await;
    for (path, body) in [
        (
            "/v1/completions",
            r#"{"model":"tiny-llama","prompt":"Once","max_tokens":6,"n":3,"stream":true}"#,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":6,"n":2,"stream":true}"#,
        ),
    ] {
        let n = if path.contains("chat") { 2 } else { 3 };
        let r = post(&s.gw.url(), path, body, &[]).await;
        assert_eq!(r.status, 200);
        s.sim.flush_spans(Duration::from_secs(5)).await.unwrap();
        wait_named(&s.spans, vllm::LLM_REQUEST_SPAN, n).await;
        let spans = s.spans.take();
        let client = by_kind(&spans, SpanKind::Client);
        let mut indices = Vec::new();
        for e in spans
            .iter()
            .filter(|s| s.name.as_str() == vllm::LLM_REQUEST_SPAN)
        {
            let engine = e
                .get(vllm::renamed::LATENCY_TIME_TO_FIRST_TOKEN)
                .and_then(|v| v.as_f64())
                .unwrap();
            let gateway = e
                .get(own::GATEWAY_TIME_TO_FIRST_CHUNK)
                .and_then(|v| v.as_f64())
                .unwrap();
            let outside = e
                .get(own::TTFT_OUTSIDE_ENGINE)
                .and_then(|v| v.as_f64())
                .unwrap();
            assert!(outside >= 0.0, "{path}: never negative: {outside}");
            assert!((outside - (gateway - engine)).abs() < 1e-9);
            // Each choice's first chunk, at or after the stream's first.
            let first = client
                .get(attr::RESPONSE_TIME_TO_FIRST_CHUNK)
                .and_then(|v| v.as_f64())
                .unwrap();
            assert!(gateway >= first - 1e-9, "{gateway} < {first}");
            indices.push(int(e, own::TTFT_CHOICE_INDEX));
        }
        indices.sort_unstable();
        let want: Vec<i64> = (0..n as i64).collect();
        assert_eq!(indices, want, "{path}: every choice paired once");
    }
}

#[tokio::test]
async fn failed_and_aborted_requests_have_complete_traces_without_engine_spans() {
    let s = stack_with_ingest(|c| c.engine.step_base_ms = 10.0, |_| {}).await;
    let r = post(
        &s.gw.url(),
        "/v1/chat/completions",
        r#"{"model":"nope","messages":[]}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 404);
    s.sim.flush_spans(Duration::from_secs(5)).await.unwrap();
    let spans = take_spans(&s.spans, 2).await;
    assert!(
        spans
            .iter()
            .all(|s| s.name.as_str() != vllm::LLM_REQUEST_SPAN)
    );
    assert!(matches!(
        by_kind(&spans, SpanKind::Client).status,
        inferscope_core::Status::Error(_)
    ));
    // Engine spans that never come leave nothing behind for long: the table is bounded.
    assert!(s.gw.join_entries() <= 1);
}

#[tokio::test]
async fn without_an_ingest_listener_nothing_is_remembered_for_joining() {
    for ingest in [false, true] {
        let s = stack(
            |_| {},
            |c| {
                if !ingest {
                    c.ingest.grpc = None;
                    c.ingest.http = None;
                }
            },
        )
        .await;
        let r = post(&s.gw.url(), "/v1/chat/completions", CHAT, &[]).await;
        assert_eq!(r.status, 200);
        take_spans(&s.spans, 2).await;
        assert_eq!(
            s.gw.join_entries(),
            usize::from(ingest),
            "ingest on: {ingest}"
        );
    }
}

fn fixture_llm_request() -> (SpanRecord, serde_json::Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/vllm-0.32-cpu/spans-for-http-fixtures.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let line = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["name"] == "llm_request")
        .unwrap();
    let hex = |s: &str, n: usize| -> Vec<u8> {
        (0..n)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    };
    let ctx = SpanContext {
        trace_id: TraceId(
            hex(line["trace_id"].as_str().unwrap(), 16)
                .try_into()
                .unwrap(),
        ),
        span_id: SpanId(
            hex(line["span_id"].as_str().unwrap(), 8)
                .try_into()
                .unwrap(),
        ),
        flags: TraceFlags(1),
        state: TraceState::default(),
        remote: false,
    };
    let mut r = SpanRecord::new(
        ctx,
        None,
        "llm_request",
        SpanKind::Server,
        std::time::UNIX_EPOCH,
        Scope::new(vllm::TRACING_SCOPE),
    );
    if let Some(p) = line["parent_span_id"].as_str().filter(|p| p.len() == 16) {
        r.parent_span_id = Some(SpanId(hex(p, 8).try_into().unwrap()));
    }
    r.start_unix_nanos = line["start_ns"].as_u64().unwrap();
    r.end_unix_nanos = line["end_ns"].as_u64().unwrap();
    for (k, v) in line["attributes"].as_object().unwrap() {
        let value = match v {
            serde_json::Value::String(s) => Value::from(s.clone()),
            serde_json::Value::Number(n) if n.is_i64() => Value::I64(n.as_i64().unwrap()),
            serde_json::Value::Number(n) => Value::F64(n.as_f64().unwrap()),
            other => Value::from(other.to_string()),
        };
        r.push(k.clone(), value);
    }
    let attrs: Vec<KeyValue> = line["resource"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            KeyValue::new(
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            )
        })
        .collect();
    r.resource = Some(std::sync::Arc::new(Resource {
        attributes: attrs,
        ..Resource::default()
    }));
    (r, line)
}

async fn post_raw(base: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Reply {
    send(base, "POST", "/v1/traces", body, headers).await
}

#[tokio::test]
async fn a_real_vllm_span_over_http_protobuf_json_and_gzip() {
    let (gw, spans) = gateway(
        "http://127.0.0.1:9",
        |c| c.ingest.engine_model = Some("tiny-llama".into()),
        inferscope_core::Sampler::default(),
    )
    .await;
    let base = format!("http://{}", gw.ingest_http_addr().unwrap());
    let (record, line) = fixture_llm_request();
    let request = Encoder::new(&[]).request(std::slice::from_ref(&record));
    let proto = request.encode_to_vec();
    let json = serde_json::to_vec(&request).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &proto).unwrap();
    let gz = gz.finish().unwrap();
    for (body, headers) in [
        (
            proto.clone(),
            vec![("content-type", "application/x-protobuf")],
        ),
        (json, vec![("content-type", "application/json")]),
        (
            gz,
            vec![
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
            ],
        ),
    ] {
        let r = post_raw(&base, body, &headers).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let got = take_spans(&spans, 4).await;
        let engine = got
            .iter()
            .find(|s| s.name.as_str() == "llm_request")
            .unwrap();
        assert_eq!(string(engine, attr::REQUEST_MODEL), "tiny-llama");
        assert_eq!(engine.get(own::GATEWAY_JOINED), Some(&Value::Bool(false)));
        assert_eq!(
            int(engine, attr::USAGE_INPUT_TOKENS),
            line["attributes"]["gen_ai.usage.prompt_tokens"]
                .as_i64()
                .unwrap()
        );
        let names = check_phases(&got, engine);
        assert_eq!(names, ["preprocess", "queue", "prefill", "decode"]);
        // The times add up: prefill ends at arrival + vLLM's TTFT.
        let ttft = line["attributes"]["gen_ai.latency.time_to_first_token"]
            .as_f64()
            .unwrap();
        let prefill = got.iter().find(|s| s.name.as_str() == "prefill").unwrap();
        assert!(
            (prefill.end_unix_nanos as f64 - (engine.start_unix_nanos as f64 + ttft * 1e9)).abs()
                <= 2.0
        );
        let service = engine
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "service.name")
            .map(|kv| kv.value.to_string());
        // vLLM without OTEL_SERVICE_NAME says `unknown_service:python`: the gateway names it
        // (`engine_service_name`, default `vllm`), on the phases too; other resource
        // attributes pass as they came.
        let sent = line["resource"]["service.name"].as_str().unwrap_or("");
        let expected = if sent.starts_with("unknown_service") {
            "vllm"
        } else {
            sent
        };
        assert_eq!(service.as_deref(), Some(expected));
        let resource = engine.resource.as_ref().unwrap();
        for s in got
            .iter()
            .filter(|s| s.scope.name.as_str() == "inferscope.engine")
        {
            assert_eq!(s.resource.as_deref(), Some(&**resource), "{}", s.name);
        }
        if let Some(others) = line["resource"].as_object() {
            for key in others.keys().filter(|k| *k != "service.name") {
                assert!(
                    resource.attributes.iter().any(|kv| kv.key.as_str() == key),
                    "{key} kept"
                );
            }
        }
    }
}

#[tokio::test]
async fn bad_payloads_get_proper_otlp_refusals() {
    let (gw, spans) = gateway(
        "http://127.0.0.1:9",
        |c| c.ingest.max_bytes = 4096,
        inferscope_core::Sampler::default(),
    )
    .await;
    let base = format!("http://{}", gw.ingest_http_addr().unwrap());
    let pb = [("content-type", "application/x-protobuf")];
    assert_eq!(
        post_raw(&base, b"\xff\xff\xff".to_vec(), &pb).await.status,
        400
    );
    assert_eq!(
        post_raw(
            &base,
            b"{\"resourceSpans\": 3".to_vec(),
            &[("content-type", "application/json")]
        )
        .await
        .status,
        400
    );
    assert_eq!(post_raw(&base, vec![0; 10_000], &pb).await.status, 413);
    assert_eq!(
        post_raw(&base, b"x".to_vec(), &[("content-type", "text/plain")])
            .await
            .status,
        415
    );
    assert_eq!(
        post_raw(
            &base,
            b"x".to_vec(),
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "br")
            ]
        )
        .await
        .status,
        415
    );
    assert_eq!(
        post_raw(
            &base,
            b"notgzip".to_vec(),
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip")
            ]
        )
        .await
        .status,
        400
    );
    // A gzip bomb: small on the wire, over the limit inflated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &vec![0u8; 1 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    assert_eq!(
        post_raw(
            &base,
            bomb,
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip")
            ]
        )
        .await
        .status,
        413
    );
    assert_eq!(send(&base, "GET", "/v1/traces", "", &[]).await.status, 405);
    // A span with a bad id is refused alone (partial success); the other is forwarded.
    let (record, _) = fixture_llm_request();
    let mut other = record.clone();
    other.name = "Worker init".into();
    let mut req = Encoder::new(&[]).request(&[record, other]);
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![0; 3];
    let r = post_raw(
        &base,
        serde_json::to_vec(&req).unwrap(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["partialSuccess"]["rejectedSpans"],
        1,
        "{}",
        r.text()
    );
    let got = take_spans(&spans, 1).await;
    assert_eq!(got.len(), 1);
    // gRPC: over the limit is refused, nothing panics, the listener keeps serving.
    let mut client = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(format!("http://{}", gw.ingest_grpc_addr().unwrap()))
        .await
        .unwrap();
    let mut big = Encoder::new(&[]).request(&[fixture_llm_request().0]);
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(10_000);
    let err = client.export(big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
    let ok = client
        .export(Encoder::new(&[]).request(&[fixture_llm_request().0]))
        .await
        .unwrap();
    assert!(ok.into_inner().partial_success.is_none());
}

#[tokio::test]
async fn startup_spans_are_forwarded_unless_filtered() {
    let (record, _) = fixture_llm_request();
    let mut startup = record.clone();
    startup.name = "Load weights".into();
    startup.attributes = vec![KeyValue::new("code.lineno", "484")];
    // A vLLM 0.34 start-up span: a name no list knew, marked by its code location.
    let mut newer = record.clone();
    newer.name = "Init device".into();
    newer.context.span_id = inferscope_core::SpanId([9; 8]);
    newer.attributes = vec![
        KeyValue::new("code.function", "Worker.init_device"),
        KeyValue::new("code.namespace", "vllm.v1.worker.gpu_worker"),
        KeyValue::new("code.filepath", "/srv/vllm/v1/worker/gpu_worker.py"),
        KeyValue::new("code.lineno", "201"),
    ];
    let body = Encoder::new(&[])
        .request(&[startup.clone(), newer.clone()])
        .encode_to_vec();
    for (drop, expected) in [(false, 2usize), (true, 0)] {
        let (gw, spans) = gateway(
            "http://127.0.0.1:9",
            |c| c.ingest.drop_startup_spans = drop,
            inferscope_core::Sampler::default(),
        )
        .await;
        let base = format!("http://{}", gw.ingest_http_addr().unwrap());
        assert_eq!(
            post_raw(
                &base,
                body.clone(),
                &[("content-type", "application/x-protobuf")]
            )
            .await
            .status,
            200
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let got = spans.take();
        assert_eq!(got.len(), expected);
        if let Some(s) = got.iter().find(|s| s.name.as_str() == "Load weights") {
            // Forwarded with the current code keys, the line number as an integer.
            assert_eq!(int(s, "code.line.number"), 484);
            assert!(s.get("code.lineno").is_none());
            assert_eq!(s.scope, startup.scope);
        }
        if let Some(s) = got.iter().find(|s| s.name.as_str() == "Init device") {
            assert_eq!(
                string(s, "code.function.name"),
                "vllm.v1.worker.gpu_worker.Worker.init_device"
            );
            assert_eq!(
                string(s, "code.file.path"),
                "/srv/vllm/v1/worker/gpu_worker.py"
            );
            assert_eq!(int(s, "code.line.number"), 201);
        }
    }
}

/// An exporter that never finishes, so the export queue fills.
struct Stuck;

impl inferscope_export::SpanExporter for Stuck {
    fn name(&self) -> &'static str {
        "stuck"
    }
    fn export<'a>(
        &'a self,
        _batch: &'a [SpanRecord],
        _deadline: std::time::Instant,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<inferscope_export::Accepted, inferscope_export::ExportError>,
    > {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn a_full_export_queue_asks_the_sender_to_retry() {
    let tracing = inferscope_export::TracingBuilder::new("inferscope.gateway")
        .with_settings(inferscope_export::ExporterSettings {
            exporters: Some(Vec::new()),
            max_queue_size: Some(8),
            max_export_batch_size: Some(4),
            schedule_delay_ms: Some(10),
            ..Default::default()
        })
        .with_exporter(Box::new(Stuck))
        .build()
        .unwrap();
    let config = inferscope_gateway::config::GatewayConfig::local("http://127.0.0.1:9").unwrap();
    let gw = inferscope_gateway::Gateway::start(config, tracing.tracer(), tracing.stats_handle())
        .await
        .unwrap();
    let base = format!("http://{}", gw.ingest_http_addr().unwrap());
    let (record, _) = fixture_llm_request();
    let body = Encoder::new(&[]).request(&[record]).encode_to_vec();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = post_raw(
            &base,
            body.clone(),
            &[("content-type", "application/x-protobuf")],
        )
        .await;
        statuses.push((r.status.as_u16(), r.headers.get("retry-after").is_some()));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(statuses[0], (200, false));
    assert!(statuses.contains(&(429, true)), "{statuses:?}");
    // gRPC says RESOURCE_EXHAUSTED with a retry delay.
    let mut client = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(format!("http://{}", gw.ingest_grpc_addr().unwrap()))
        .await
        .unwrap();
    let err = client
        .export(Encoder::new(&[]).request(&[fixture_llm_request().0]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(tonic_types::StatusExt::get_details_retry_info(&err).is_some());
    assert_eq!(
        tracing.stats().dropped,
        0,
        "nothing was dropped: the sender was told to retry"
    );
}

/// An exporter that takes a moment per batch and counts what it got.
struct Slow(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl inferscope_export::SpanExporter for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }
    fn export<'a>(
        &'a self,
        batch: &'a [SpanRecord],
        _deadline: std::time::Instant,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<inferscope_export::Accepted, inferscope_export::ExportError>,
    > {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.0
                .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(inferscope_export::Accepted::default())
        })
    }
}

/// vLLM sends up to 512 spans at once: 512 `llm_request` spans are 2,560 records with their
/// phases, more than the default export queue (2,048) holds. Such a request is taken and fed to
/// the exporter as it drains, never refused for good (before, it was refused forever and vLLM
/// dropped it after its retries) and nothing is dropped.
#[tokio::test]
async fn a_request_larger_than_the_export_queue_is_fed_in_not_refused() {
    let got = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tracing = inferscope_export::TracingBuilder::new("inferscope.gateway")
        .with_settings(inferscope_export::ExporterSettings {
            exporters: Some(Vec::new()),
            ..Default::default()
        })
        .with_exporter(Box::new(Slow(got.clone())))
        .build()
        .unwrap();
    let config = inferscope_gateway::config::GatewayConfig::local("http://127.0.0.1:9").unwrap();
    let gw = inferscope_gateway::Gateway::start(config, tracing.tracer(), tracing.stats_handle())
        .await
        .unwrap();
    let (record, _) = fixture_llm_request();
    let batch: Vec<SpanRecord> = (0..512u32)
        .map(|i| {
            let mut r = record.clone();
            r.context.span_id = SpanId([(i >> 8) as u8 + 1, i as u8, 3, 4, 5, 6, 7, 8]);
            r
        })
        .collect();
    // The gateway's own spans keep the queue from being empty (a partial batch waits there
    // for the schedule delay).
    for i in 0..10 {
        inferscope_testkit::sample::record_inference_span(
            &tracing.tracer(),
            None,
            format!("own-{i}"),
        );
    }
    let mut client = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(format!("http://{}", gw.ingest_grpc_addr().unwrap()))
        .await
        .unwrap();
    for round in 0..3 {
        client
            .export(Encoder::new(&[]).request(&batch))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    tracing.shutdown(Duration::from_secs(10)).await.unwrap();
    let stats = tracing.stats();
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(
        got.load(std::sync::atomic::Ordering::Relaxed),
        3 * 2560 + 10
    );
    assert_eq!(
        gw.ingest_stats()
            .forwarded
            .load(std::sync::atomic::Ordering::Relaxed),
        3 * 2560
    );
}

/// vLLM's own timings of each finished request, ingested, become the conventions' server
/// metrics (`gen_ai.server.*`), which no client-side view can give.
#[tokio::test]
async fn engine_spans_become_server_metrics() {
    let s = stack_with_ingest(|_| {}, |_| {}).await;
    let body = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"x"}],"max_tokens":6,"ignore_eos":true,"stream":true}"#;
    assert_eq!(
        post(&s.gw.url(), "/v1/chat/completions", body, &[])
            .await
            .status,
        200
    );
    s.sim.flush_spans(Duration::from_secs(5)).await.unwrap();
    wait_named(&s.spans, vllm::LLM_REQUEST_SPAN, 1).await;
    let text = s.gw.metrics_text();
    for name in [
        "gen_ai_server_request_duration_seconds_count{",
        "gen_ai_server_time_to_first_token_seconds_count{",
        "gen_ai_server_time_per_output_token_seconds_count{",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        assert!(line.ends_with(" 1"), "{line}");
        assert!(line.contains("gen_ai_operation_name=\"chat\""), "{line}");
        assert!(
            line.contains("gen_ai_request_model=\"tiny-llama\""),
            "{line}"
        );
        assert!(line.contains("gen_ai_provider_name=\"vllm\""), "{line}");
    }
}
