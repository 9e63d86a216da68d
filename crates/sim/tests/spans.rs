//! The simulator's `llm_request` spans against the real vLLM 0.32's
//! (`../shared/fixtures/vllm-0.32-cpu/spans-for-http-fixtures.jsonl`): name, kind, scope,
//! attribute keys in order with their types, resource keys, parentage, the latency arithmetic,
//! and vLLM's quirks (no span for failures and aborts, `n` > 1, temperature 0, batches).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{post, send, shared, sim};
use inferscope_testkit::receiver::{ReceivedSpan, Receiver};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use serde_json::Value;

/// `(key, type)` of each attribute, in order.
fn typed_keys(span: &ReceivedSpan) -> Vec<(String, &'static str)> {
    span.span
        .attributes
        .iter()
        .map(|kv| {
            let t = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::IntValue(_)) => "int",
                Some(Any::DoubleValue(_)) => "double",
                Some(Any::StringValue(_)) => "string",
                Some(Any::BoolValue(_)) => "bool",
                _ => "other",
            };
            (kv.key.clone(), t)
        })
        .collect()
}

/// The fixture's `llm_request` spans, each with its raw line (serde_json's map sorts keys; the
/// raw line keeps vLLM's order).
fn fixture_spans() -> Vec<(Value, String)> {
    std::fs::read_to_string(shared().join("fixtures/vllm-0.32-cpu/spans-for-http-fixtures.jsonl"))
        .unwrap()
        .lines()
        .map(|l| (serde_json::from_str::<Value>(l).unwrap(), l.to_owned()))
        .filter(|(s, _)| s["name"] == "llm_request")
        .collect()
}

fn fixture_typed_keys(span: &Value) -> Vec<(String, &'static str)> {
    span["attributes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let t = if v.is_i64() || v.is_u64() {
                "int"
            } else if v.is_f64() {
                "double"
            } else if v.is_string() {
                "string"
            } else {
                "other"
            };
            (k.clone(), t)
        })
        .collect()
}

fn attr_f64(span: &ReceivedSpan, key: &str) -> f64 {
    span.attr(key)
        .unwrap_or_else(|| panic!("{key} missing"))
        .parse()
        .unwrap()
}

async fn traced_sim(receiver: &Receiver) -> inferscope_sim::Sim {
    sim(|c| {
        c.otlp_traces_endpoint = Some(receiver.grpc_endpoint());
        c.engine.step_base_ms = 2.0;
        c.engine.preprocess_ms = 1.0;
    })
    .await
}

#[tokio::test]
async fn a_traced_request_gives_a_span_shaped_like_vllms() {
    let receiver = Receiver::start().await.unwrap();
    let s = traced_sim(&receiver).await;
    // The request of the fixture: a streamed chat with the W3C example traceparent.
    let r = send(
        &s,
        "POST",
        "/v1/chat/completions",
        r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":6,"stream":true}"#,
        &[
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("tracestate", "vendor=abc"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    s.flush_spans(Duration::from_secs(10)).await.unwrap();
    let spans = receiver.wait_for_spans(1, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 1);
    let ours = &spans[0];
    let (theirs, raw) = fixture_spans()
        .into_iter()
        .find(|(s, _)| s["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736")
        .unwrap();

    assert_eq!(ours.span.name, theirs["name"]);
    assert_eq!(
        i64::from(ours.span.kind),
        theirs["kind"].as_i64().unwrap(),
        "SERVER"
    );
    assert_eq!(ours.scope, theirs["scope"]);
    let mut ours_sorted = typed_keys(ours);
    ours_sorted.sort();
    assert_eq!(
        ours_sorted,
        fixture_typed_keys(&theirs),
        "same keys and types"
    );
    let positions: Vec<usize> = typed_keys(ours)
        .iter()
        .map(|(k, _)| raw.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "same order as vLLM: {positions:?}"
    );
    let resource_keys: BTreeSet<&str> = ours.resource.iter().map(|kv| kv.key.as_str()).collect();
    let fixture_resource: BTreeSet<&str> = theirs["resource"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(resource_keys, fixture_resource);
    assert_eq!(
        ours.resource_attr("vllm.instrumenting_module_name")
            .as_deref(),
        Some("vllm.llm_engine")
    );

    // Parent and state from the request's headers.
    assert_eq!(hex(&ours.span.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex(&ours.span.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(ours.span.trace_state, "vendor=abc");
    let response_id = common::sse(&r.text())[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        ours.attr("gen_ai.request.id").unwrap(),
        response_id,
        "chat: the response id"
    );

    // vLLM's arithmetic, and the span lasting from arrival to the end.
    let ttft = attr_f64(ours, "gen_ai.latency.time_to_first_token");
    let e2e = attr_f64(ours, "gen_ai.latency.e2e");
    let queue = attr_f64(ours, "gen_ai.latency.time_in_queue");
    let prefill = attr_f64(ours, "gen_ai.latency.time_in_model_prefill");
    let decode = attr_f64(ours, "gen_ai.latency.time_in_model_decode");
    let inference = attr_f64(ours, "gen_ai.latency.time_in_model_inference");
    assert!(
        (inference - (prefill + decode)).abs() < 1e-6,
        "inference = prefill + decode"
    );
    assert!(
        ttft >= queue + prefill,
        "ttft covers preprocessing, queue and prefill"
    );
    assert!(
        ttft - queue - prefill >= 0.001,
        "one millisecond of preprocessing"
    );
    assert!(e2e >= ttft + decode - 1e-6);
    let duration = (ours.span.end_time_unix_nano - ours.span.start_time_unix_nano) as f64 / 1e9;
    assert!(
        duration >= e2e,
        "the span lasts at least e2e: {duration} < {e2e}"
    );
    assert_eq!(
        ours.attr("gen_ai.usage.completion_tokens").as_deref(),
        Some("6")
    );
    assert_eq!(ours.attr("gen_ai.request.max_tokens").as_deref(), Some("6"));
    assert_eq!(ours.attr("gen_ai.request.n").as_deref(), Some("1"));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn vllm_quirks() {
    let receiver = Receiver::start().await.unwrap();
    let s = traced_sim(&receiver).await;
    // No span for failures.
    assert_eq!(
        post(
            &s,
            "/v1/chat/completions",
            r#"{"model":"nope","messages":[]}"#
        )
        .await
        .status,
        404
    );
    assert_eq!(
        post(
            &s,
            "/v1/completions",
            r#"{"prompt":"hi","max_tokens":100000}"#
        )
        .await
        .status,
        400
    );
    // n = 2: two spans, the same id, two traces, n = 1 each.
    post(&s, "/v1/completions", r#"{"prompt":"hi","max_tokens":3,"n":2,"stream":true,"stream_options":{"include_usage":true}}"#).await;
    // temperature 0 is dropped.
    post(
        &s,
        "/v1/completions",
        r#"{"prompt":"cold","max_tokens":2,"temperature":0}"#,
    )
    .await;
    // A batch: ids end -0 and -1.
    post(
        &s,
        "/v1/completions",
        r#"{"prompt":["a","b"],"max_tokens":1}"#,
    )
    .await;
    s.flush_spans(Duration::from_secs(10)).await.unwrap();
    let spans = receiver.wait_for_spans(5, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 5, "2 + 1 + 2 spans, none for the failures");

    let ids: Vec<String> = spans
        .iter()
        .map(|s| s.attr("gen_ai.request.id").unwrap())
        .collect();
    let n2: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| {
            ids.iter()
                .filter(|i| **i == s.attr("gen_ai.request.id").unwrap())
                .count()
                == 2
                && s.attr("gen_ai.usage.completion_tokens").as_deref() == Some("3")
        })
        .collect();
    assert_eq!(n2.len(), 2, "{ids:?}");
    assert!(n2[0].attr("gen_ai.request.id").unwrap().ends_with("-0"));
    assert_ne!(
        n2[0].span.trace_id, n2[1].span.trace_id,
        "different traces without a traceparent"
    );
    assert!(
        n2.iter()
            .all(|s| s.attr("gen_ai.request.n").as_deref() == Some("1"))
    );

    let cold = spans
        .iter()
        .find(|s| s.attr("gen_ai.request.max_tokens").as_deref() == Some("2"))
        .unwrap();
    assert!(cold.attr("gen_ai.request.temperature").is_none());
    assert!(cold.attr("gen_ai.request.top_p").is_some());

    let batch: BTreeSet<String> = ids
        .iter()
        .filter(|i| {
            !n2.iter()
                .any(|s| s.attr("gen_ai.request.id").as_deref() == Some(i.as_str()))
        })
        .cloned()
        .collect();
    assert!(batch.iter().any(|i| i.ends_with("-1")), "{batch:?}");
}

#[tokio::test]
async fn no_span_for_an_aborted_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let receiver = Receiver::start().await.unwrap();
    let s = traced_sim(&receiver).await;
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":300,"stream":true}"#;
    let mut sock = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    sock.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 2048];
    let _ = sock.read(&mut buf).await.unwrap();
    drop(sock);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.aborts() == 0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    post(
        &s,
        "/v1/completions",
        r#"{"prompt":"after","max_tokens":1}"#,
    )
    .await;
    s.flush_spans(Duration::from_secs(10)).await.unwrap();
    let spans = receiver.wait_for_spans(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        receiver.spans().len(),
        1,
        "only the completed request has a span"
    );
    assert_eq!(
        spans[0].attr("gen_ai.usage.completion_tokens").as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn a_full_batch_shows_up_as_queue_time_and_long_prompts_as_prefill() {
    let receiver = Receiver::start().await.unwrap();
    let s = sim(|c| {
        c.otlp_traces_endpoint = Some(receiver.grpc_endpoint());
        c.max_model_len = 2048;
        c.engine.kv_cache_tokens = 65536;
        c.engine.max_num_seqs = 2;
        c.engine.step_base_ms = 2.0;
        c.engine.prefill_per_token_ms = 0.1;
    })
    .await;
    let requests: Vec<_> = (0..4)
        .map(|i| {
            let url = s.url();
            tokio::spawn(async move {
                let prompt = if i == 0 {
                    "word ".repeat(1000)
                } else {
                    "hi".to_owned()
                };
                let body = format!(r#"{{"prompt":"{prompt}","max_tokens":10}}"#);
                let req = http::Request::post(format!("{url}/v1/completions"))
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    .unwrap();
                common::client().request(req).await.unwrap().status()
            })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    s.flush_spans(Duration::from_secs(10)).await.unwrap();
    let spans = receiver.wait_for_spans(4, Duration::from_secs(10)).await;
    let mut queue: Vec<f64> = spans
        .iter()
        .map(|s| attr_f64(s, "gen_ai.latency.time_in_queue"))
        .collect();
    queue.sort_by(f64::total_cmp);
    assert!(
        queue[3] >= 0.018,
        "with two slots, someone waited at least nine steps: {queue:?}"
    );
    let long = spans
        .iter()
        .find(|s| {
            s.attr("gen_ai.usage.prompt_tokens")
                .unwrap()
                .parse::<u32>()
                .unwrap()
                > 1000
        })
        .unwrap();
    let prefill = attr_f64(long, "gen_ai.latency.time_in_model_prefill");
    assert!(
        prefill >= 0.1,
        "a 1000-token prompt at 0.1 ms per token: {prefill}"
    );
}
