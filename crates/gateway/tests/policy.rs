//! Content capture, redaction, dialects, the admin endpoints, graceful shutdown, and vLLM's own
//! span nesting under the gateway's CLIENT span.
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
use inferscope_core::SpanKind;
use inferscope_core::observe::capture::{REDACTED, Redaction};
use inferscope_semconv::dialect::Dialect;
use inferscope_semconv::{attr, openinference as oi, vllm};

const CHAT: &str = r#"{"model":"tiny-llama","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"My phone is 555-1234, call me"}],"max_tokens":8,"temperature":0.5,"stream":true,
  "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]}"#;

#[tokio::test]
async fn content_is_not_captured_by_default() {
    let s = stack(|_| {}, |_| {}).await;
    post(&s.gw.url(), "/v1/chat/completions", CHAT, &[]).await;
    let spans = take_spans(&s.spans, 2).await;
    let text = format!("{spans:?}");
    assert!(!text.contains("555-1234") && !text.contains("Be brief"));
    let c = by_kind(&spans, SpanKind::Client);
    for key in [
        attr::INPUT_MESSAGES,
        attr::OUTPUT_MESSAGES,
        attr::SYSTEM_INSTRUCTIONS,
        attr::TOOL_DEFINITIONS,
    ] {
        assert!(c.get(key).is_none(), "{key} captured by default");
    }
}

#[tokio::test]
async fn captured_content_is_redacted_truncated_and_in_the_semconv_shape() {
    let s = stack(
        |_| {},
        |c| {
            c.capture.enabled = true;
            c.capture.max_length = 20;
            c.capture.redactions = vec![Redaction {
                pattern: regex::Regex::new(r"\d{3}-\d{4}").unwrap(),
                replacement: REDACTED.into(),
            }];
        },
    )
    .await;
    let r = post(&s.gw.url(), "/v1/chat/completions", CHAT, &[]).await;
    let streamed: String = r
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let spans = take_spans(&s.spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    let input: serde_json::Value = serde_json::from_str(&string(c, attr::INPUT_MESSAGES)).unwrap();
    assert_eq!(input[0]["role"], "user");
    let content = input[0]["parts"][0]["content"].as_str().unwrap();
    assert!(content.starts_with("My phone is __REDACT"), "{content}");
    assert!(content.contains("…[truncated"), "{content}");
    assert!(!format!("{spans:?}").contains("555-1234"));
    let system: serde_json::Value =
        serde_json::from_str(&string(c, attr::SYSTEM_INSTRUCTIONS)).unwrap();
    assert_eq!(system[0]["content"], "Be brief.");
    assert!(string(c, attr::TOOL_DEFINITIONS).contains("get_weather"));
    let output: serde_json::Value =
        serde_json::from_str(&string(c, attr::OUTPUT_MESSAGES)).unwrap();
    assert_eq!(output[0]["role"], "assistant");
    assert!(output[0]["finish_reason"].is_string());
    let captured = output[0]["parts"][0]["content"].as_str().unwrap();
    if streamed.len() <= 20 {
        assert_eq!(captured, streamed);
    } else {
        let mut end = 20;
        while !streamed.is_char_boundary(end) {
            end -= 1;
        }
        assert!(
            captured.starts_with(&streamed[..end]) && captured.contains("truncated"),
            "{captured:?} vs {streamed:?}"
        );
    }
}

#[tokio::test]
async fn hide_switches() {
    let s = stack(
        |_| {},
        |c| {
            c.capture.enabled = true;
            c.capture.hide_input_text = true;
            c.capture.hide_outputs = true;
            c.capture.hide_tool_definitions = true;
        },
    )
    .await;
    post(&s.gw.url(), "/v1/chat/completions", CHAT, &[]).await;
    let spans = take_spans(&s.spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    let input = string(c, attr::INPUT_MESSAGES);
    assert!(
        input.contains(REDACTED) && !input.contains("phone"),
        "{input}"
    );
    assert!(c.get(attr::OUTPUT_MESSAGES).is_none());
    assert!(c.get(attr::TOOL_DEFINITIONS).is_none());
}

#[tokio::test]
async fn dialects_duplicate_keys_for_vllm_dashboards_and_phoenix() {
    let s = stack(
        |_| {},
        |c| {
            c.dialects = vec![Dialect::OTel, Dialect::Vllm, Dialect::OpenInference];
            c.capture.enabled = true;
        },
    )
    .await;
    post(&s.gw.url(), "/v1/chat/completions", CHAT, &[]).await;
    let spans = take_spans(&s.spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    let out = int(c, attr::USAGE_OUTPUT_TOKENS);
    let inp = int(c, attr::USAGE_INPUT_TOKENS);
    assert_eq!(int(c, vllm::attr::USAGE_COMPLETION_TOKENS), out);
    assert_eq!(int(c, vllm::attr::USAGE_PROMPT_TOKENS), inp);
    assert_eq!(float(c, vllm::attr::REQUEST_TEMPERATURE), 0.5);
    assert_eq!(string(c, oi::SPAN_KIND), "LLM");
    assert_eq!(string(c, oi::LLM_MODEL_NAME), "tiny-llama");
    assert_eq!(string(c, oi::LLM_PROVIDER), "vllm");
    assert_eq!(int(c, oi::LLM_TOKEN_COUNT_TOTAL), inp + out);
    assert!(string(c, oi::LLM_INVOCATION_PARAMETERS).contains("\"temperature\":0.5"));
    assert_eq!(string(c, &oi::input_message_role(0)), "system");
    assert_eq!(string(c, &oi::output_message_role(0)), "assistant");
    assert_eq!(string(c, oi::INPUT_MIME_TYPE), "application/json");
    // Phoenix's input: every message in order, the system one included.
    let input: serde_json::Value = serde_json::from_str(&string(c, oi::INPUT_VALUE)).unwrap();
    assert_eq!(input["messages"][0]["role"], "system");
    assert_eq!(input["messages"][0]["content"], "Be brief.");
    assert_eq!(input["messages"][1]["role"], "user");
    // The root span has a kind, and the call's input and output.
    let root = by_kind(&spans, SpanKind::Server);
    assert_eq!(string(root, oi::SPAN_KIND), "CHAIN");
    assert_eq!(string(root, oi::INPUT_VALUE), string(c, oi::INPUT_VALUE));
    assert_eq!(string(root, oi::OUTPUT_VALUE), string(c, oi::OUTPUT_VALUE));
    // Tool definitions, one JSON schema each.
    let tools = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"weather?"}],"max_tokens":4,
        "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]}"#;
    post(&s.gw.url(), "/v1/chat/completions", tools, &[]).await;
    let spans = take_spans(&s.spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    let schema: serde_json::Value =
        serde_json::from_str(&string(c, &oi::tool_json_schema(0))).unwrap();
    assert_eq!(schema["function"]["name"], "get_weather");
    // Only the OTel names by default.
    let s = stack(|_| {}, |_| {}).await;
    post(&s.gw.url(), "/v1/chat/completions", CHAT, &[]).await;
    let spans = take_spans(&s.spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    assert!(c.get(vllm::attr::USAGE_COMPLETION_TOKENS).is_none() && c.get(oi::SPAN_KIND).is_none());
}

#[tokio::test]
async fn admin_metrics_health_and_readiness() {
    let s = stack(|_| {}, |_| {}).await;
    let admin = format!("http://{}", s.gw.admin_addr().unwrap());
    post(&s.gw.url(), "/v1/chat/completions", CHAT, &[]).await;
    post(
        &s.gw.url(),
        "/v1/chat/completions",
        r#"{"model":"tiny-llama","messages":[{"role":"user","content":"x"}],"max_tokens":3}"#,
        &[],
    )
    .await;
    take_spans(&s.spans, 4).await;
    let m = send(&admin, "GET", "/metrics", "", &[]).await;
    assert_eq!(m.status, 200);
    let text = m.text();
    for needle in [
        "# TYPE gen_ai_client_operation_duration_seconds histogram",
        "gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"vllm\",gen_ai_request_model=\"tiny-llama\",gen_ai_response_model=\"tiny-llama\"",
        "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
        "gen_ai_client_operation_time_per_output_chunk_seconds_bucket",
        "gen_ai_client_token_usage_bucket{le=\"16.0\"",
        "gen_ai_token_type=\"output\"",
        "inferscope_requests_in_flight 0",
        "inferscope_requests_total{route_kind=\"inference\",http_response_status_code=\"200\"} 2",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert_eq!(send(&admin, "GET", "/healthz", "", &[]).await.status, 200);
    assert_eq!(send(&admin, "GET", "/readyz", "", &[]).await.status, 200);
    assert_eq!(send(&admin, "GET", "/nope", "", &[]).await.status, 404);

    // With the upstream gone, not ready (but alive).
    let Stack { sim, gw, spans: _ } = s;
    sim.shutdown().await;
    let r = send(&admin, "GET", "/readyz", "", &[]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("upstream not ready"));
    assert_eq!(send(&admin, "GET", "/healthz", "", &[]).await.status, 200);
    drop(gw);
}

#[tokio::test]
async fn the_newest_genai_metric_names_on_request() {
    let s = stack(
        |_| {},
        |c| c.conventions = inferscope_semconv::latest::Conventions::LatestExperimental,
    )
    .await;
    let admin = format!("http://{}", s.gw.admin_addr().unwrap());
    post(&s.gw.url(), "/v1/chat/completions", CHAT, &[]).await;
    post(
        &s.gw.url(),
        "/v1/embeddings",
        r#"{"model":"tiny-llama","input":"a"}"#,
        &[],
    )
    .await;
    take_spans(&s.spans, 4).await;
    let text = send(&admin, "GET", "/metrics", "", &[]).await.text();
    for needle in [
        "gen_ai_client_inference_duration_seconds_count{gen_ai_operation_name=\"chat\"",
        "gen_ai_client_embeddings_duration_seconds_count{gen_ai_operation_name=\"embeddings\"",
        "gen_ai_client_inference_time_to_first_chunk_seconds_count{gen_ai_operation_name=\"chat\"",
        "gen_ai_client_inference_time_per_output_chunk_seconds_count{gen_ai_operation_name=\"chat\"",
        "gen_ai_client_token_usage_count{gen_ai_operation_name=\"embeddings\"",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    for old in [
        "gen_ai_client_operation_duration_seconds_count",
        "gen_ai_client_operation_time_to_first_chunk",
        "gen_ai_client_operation_time_per_output_chunk",
    ] {
        assert!(!text.contains(old), "{old} in\n{text}");
    }
}

#[tokio::test]
async fn shutdown_lets_streams_in_flight_finish() {
    let s = stack(
        |c| c.engine.step_base_ms = 10.0,
        |c| c.shutdown_grace = Duration::from_secs(10),
    )
    .await;
    let url = s.gw.url();
    let body = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"x"}],"max_tokens":60,"ignore_eos":true,"stream":true}"#;
    let inflight = tokio::spawn(async move { post(&url, "/v1/chat/completions", body, &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.gw.in_flight(), 1);
    let addr = s.gw.addr();
    let Stack {
        sim: _sim,
        gw,
        spans,
    } = s;
    let clean = gw.shutdown().await;
    assert!(clean, "requests were cut");
    let r = inflight.await.unwrap();
    assert!(
        r.text().ends_with("data: [DONE]\n\n"),
        "the stream was cut: {}",
        r.text()
    );
    assert!(!r.cut);
    let spans = take_spans(&spans, 2).await;
    assert_eq!(
        int(by_kind(&spans, SpanKind::Client), attr::USAGE_OUTPUT_TOKENS),
        60
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn vllm_llm_request_nests_under_the_client_span() {
    let receiver = inferscope_testkit::receiver::Receiver::start()
        .await
        .unwrap();
    let s = stack(
        |c| c.otlp_traces_endpoint = Some(receiver.grpc_endpoint()),
        |_| {},
    )
    .await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    post(
        &s.gw.url(),
        "/v1/chat/completions",
        CHAT,
        &[("traceparent", incoming)],
    )
    .await;
    let ours = take_spans(&s.spans, 2).await;
    let client = by_kind(&ours, SpanKind::Client);
    s.sim.flush_spans(Duration::from_secs(5)).await.unwrap();
    let engine = receiver.wait_for_spans(1, Duration::from_secs(10)).await;
    let llm = engine
        .iter()
        .find(|s| s.span.name == vllm::LLM_REQUEST_SPAN)
        .unwrap();
    assert_eq!(hex(&llm.span.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        hex(&llm.span.parent_span_id),
        client.context.span_id.to_hex().to_string()
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `gen_ai.client.operation.time_per_output_chunk` gets one observation per chunk after the
/// first (as the conventions define it), not one per stream; embeddings record no output
/// tokens.
#[tokio::test]
async fn chunk_gaps_are_observed_per_chunk_and_embeddings_have_no_output_tokens() {
    use inferscope_semconv::inferscope as own;
    let s = stack(|_| {}, |_| {}).await;
    let body = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"x"}],"max_tokens":9,"ignore_eos":true,"stream":true}"#;
    assert_eq!(
        post(&s.gw.url(), "/v1/chat/completions", body, &[])
            .await
            .status,
        200
    );
    let spans = take_spans(&s.spans, 2).await;
    let chunks = int(by_kind(&spans, SpanKind::Client), own::STREAM_CHUNK_COUNT);
    assert!(chunks >= 2);
    let embed = r#"{"model":"tiny-llama","input":"hello"}"#;
    assert_eq!(
        post(&s.gw.url(), "/v1/embeddings", embed, &[]).await.status,
        200
    );
    let spans = take_spans(&s.spans, 2).await;
    // The simulator says `"completion_tokens": 0`, as vLLM does: not a count of anything.
    let client = by_kind(&spans, SpanKind::Client);
    assert!(int(client, attr::USAGE_INPUT_TOKENS) > 0);
    assert_eq!(client.get(attr::USAGE_OUTPUT_TOKENS), None, "{client:?}");
    let text = s.gw.metrics_text();
    let count = text
        .lines()
        .find(|l| l.starts_with("gen_ai_client_operation_time_per_output_chunk_seconds_count{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<i64>().ok());
    assert_eq!(count, Some(chunks - 1), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("gen_ai_client_token_usage_count{")
                && l.contains("gen_ai_operation_name=\"embeddings\"")
                && l.contains("gen_ai_token_type=\"output\"")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("gen_ai_client_token_usage_count{")
                && l.contains("gen_ai_operation_name=\"embeddings\"")
                && l.contains("gen_ai_token_type=\"input\""))
    );
}
