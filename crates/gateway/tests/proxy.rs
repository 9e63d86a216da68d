//! End-to-end: a client → the gateway → the simulator, every inference route, the trace
//! model, usage injection byte-identity, and forwarding of everything else.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use common::*;
use inferscope_core::{SpanKind, Status};
use inferscope_semconv::{attr, http as http_attr, inferscope as own};
use std::time::Duration;

const CHAT_STREAM: &str = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"Say hello"}],"max_tokens":12,"temperature":0.7,"top_p":0.9,"seed":3,"stream":true}"#;

#[tokio::test]
async fn streamed_chat_becomes_a_server_and_a_client_span() {
    let s = stack(|_| {}, |_| {}).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = post(
        &s.gw.url(),
        "/v1/chat/completions",
        CHAT_STREAM,
        &[
            ("traceparent", parent),
            ("authorization", "Bearer sk-secret-123"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.text().ends_with("data: [DONE]\n\n"));
    assert!(
        !r.text().contains("\"usage\""),
        "the injected usage chunk reached the client"
    );
    let spans = take_spans(&s.spans, 2).await;
    let server = by_kind(&spans, SpanKind::Server);
    let client = by_kind(&spans, SpanKind::Client);
    assert_eq!(server.name.as_str(), "POST /v1/chat/completions");
    assert_eq!(client.name.as_str(), "chat tiny-llama");
    assert_eq!(
        server.context.trace_id.to_hex().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        server.parent_span_id.unwrap().to_hex().to_string(),
        "00f067aa0ba902b7"
    );
    assert_eq!(client.parent_span_id, Some(server.context.span_id));
    assert_eq!(client.context.trace_id, server.context.trace_id);
    assert!(
        client.start_unix_nanos >= server.start_unix_nanos
            && client.end_unix_nanos <= server.end_unix_nanos
    );

    assert_eq!(string(client, attr::OPERATION_NAME), "chat");
    assert_eq!(string(client, attr::PROVIDER_NAME), "vllm");
    assert_eq!(string(client, attr::REQUEST_MODEL), "tiny-llama");
    assert_eq!(string(client, attr::RESPONSE_MODEL), "tiny-llama");
    assert!(string(client, attr::RESPONSE_ID).starts_with("chatcmpl-"));
    assert_eq!(int(client, attr::REQUEST_MAX_TOKENS), 12);
    assert_eq!(int(client, attr::REQUEST_SEED), 3);
    assert_eq!(float(client, attr::REQUEST_TEMPERATURE), 0.7);
    assert_eq!(
        client.get(attr::REQUEST_STREAM),
        Some(&inferscope_core::Value::Bool(true))
    );
    assert_eq!(string(client, attr::SERVER_ADDRESS), "127.0.0.1");
    assert_eq!(
        int(client, attr::SERVER_PORT),
        i64::from(s.sim.addr().port())
    );
    let output = int(client, attr::USAGE_OUTPUT_TOKENS);
    assert!((1..=12).contains(&output));
    assert!(int(client, attr::USAGE_INPUT_TOKENS) > 0);
    assert_eq!(strings(client, attr::RESPONSE_FINISH_REASONS).len(), 1);
    let ttfc = float(client, attr::RESPONSE_TIME_TO_FIRST_CHUNK);
    assert!(ttfc > 0.0 && ttfc < 5.0);
    let chunks = int(client, own::STREAM_CHUNK_COUNT);
    assert!(chunks >= output, "{chunks} chunks for {output} tokens");
    for key in [
        own::STREAM_CHUNK_GAP_MEAN,
        own::STREAM_CHUNK_GAP_P50,
        own::STREAM_CHUNK_GAP_P90,
        own::STREAM_CHUNK_GAP_P99,
        own::STREAM_CHUNK_GAP_MAX,
    ] {
        assert!(float(client, key) >= 0.0);
    }
    assert!(float(client, own::STREAM_CHUNK_GAP_MAX) >= float(client, own::STREAM_CHUNK_GAP_P50));
    if output > 1 {
        assert!(float(client, own::TIME_PER_OUTPUT_TOKEN) > 0.0);
    }
    assert_eq!(
        client.get(own::STREAM_USAGE_REQUESTED),
        Some(&inferscope_core::Value::Bool(true))
    );
    assert_eq!(int(server, http_attr::RESPONSE_STATUS_CODE), 200);
    assert_eq!(client.status, Status::Unset);
    // The secret is nowhere.
    for span in &spans {
        assert!(!format!("{span:?}").contains("sk-secret"), "{span:?}");
    }
    // traceresponse names the SERVER span.
    let tr = r.headers.get("traceresponse").unwrap().to_str().unwrap();
    assert_eq!(
        tr,
        format!(
            "00-{}-{}-01",
            server.context.trace_id.to_hex(),
            server.context.span_id.to_hex()
        )
    );
}

/// The same request, straight to the simulator and through the gateway: byte-identical bodies.
async fn direct_and_proxied(s: &Stack, path: &str, body: &str, id: &str) -> (Reply, Reply) {
    with_headers(s, path, body, &[("x-request-id", id)]).await
}

async fn with_headers(s: &Stack, path: &str, body: &str, h: &[(&str, &str)]) -> (Reply, Reply) {
    let direct = post(&s.sim.url(), path, body, h).await;
    let proxied = post(&s.gw.url(), path, body, h).await;
    (direct, proxied)
}

#[tokio::test]
async fn usage_injection_is_invisible_to_the_client() {
    let s = stack(|_| {}, |_| {}).await;
    let cases = [
        ("/v1/chat/completions", CHAT_STREAM.to_owned(), true),
        (
            "/v1/chat/completions",
            r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true,"stream_options":{"continuous_usage_stats":true}}"#.to_owned(),
            true,
        ),
        ("/v1/completions", r#"{"model":"tiny-llama","prompt":"Once upon","max_tokens":6,"stream":true}"#.to_owned(), true),
        // Several choices: usage too; each finishing chunk gets the fingerprint back.
        ("/v1/completions", r#"{"model":"tiny-llama","prompt":"Once upon","max_tokens":6,"n":2,"stream":true}"#.to_owned(), true),
        // The client asked for usage itself: nothing to add or remove.
        (
            "/v1/chat/completions",
            r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}"#.to_owned(),
            false,
        ),
    ];
    for (i, (path, body, injected)) in cases.iter().enumerate() {
        let (direct, proxied) = direct_and_proxied(&s, path, body, &format!("same-{i}")).await;
        assert_eq!(direct.status, 200);
        assert_eq!(proxied.text(), direct.text(), "case {i} differs");
        let spans = take_spans(&s.spans, 2).await;
        let client = by_kind(&spans, SpanKind::Client);
        assert!(
            client.get(attr::USAGE_OUTPUT_TOKENS).is_some(),
            "case {i}: usage"
        );
        assert_eq!(
            client.get(own::STREAM_USAGE_REQUESTED).is_some(),
            *injected,
            "case {i}"
        );
    }
    // n=2: both choices' finish reasons.
    let (_, _) = direct_and_proxied(&s, "/v1/completions", &cases[3].1, "n2").await;
    let spans = take_spans(&s.spans, 2).await;
    assert_eq!(
        strings(
            by_kind(&spans, SpanKind::Client),
            attr::RESPONSE_FINISH_REASONS
        )
        .len(),
        2
    );
    assert_eq!(
        int(
            by_kind(&spans, SpanKind::Client),
            attr::REQUEST_CHOICE_COUNT
        ),
        2
    );
}

#[tokio::test]
async fn anthropic_messages_pass_unchanged_and_are_traced_as_chat() {
    let s = stack(|_| {}, |_| {}).await;
    let stream = r#"{"model":"tiny-llama","max_tokens":6,"stream":true,"system":"Be brief.","messages":[{"role":"user","content":"hi"}]}"#;
    let whole = r#"{"model":"tiny-llama","max_tokens":6,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#;
    for (i, body) in [stream, whole].iter().enumerate() {
        let (direct, proxied) =
            direct_and_proxied(&s, "/v1/messages", body, &format!("msg-{i}")).await;
        assert_eq!(direct.status, 200);
        assert_eq!(proxied.text(), direct.text(), "case {i} differs");
        let spans = take_spans(&s.spans, 2).await;
        let client = by_kind(&spans, SpanKind::Client);
        assert_eq!(client.name.as_str(), "chat tiny-llama");
        assert!(int(client, attr::USAGE_OUTPUT_TOKENS) > 0);
        assert_eq!(
            strings(client, attr::RESPONSE_FINISH_REASONS),
            vec!["max_tokens".to_owned()]
        );
        // Usage is always in a Messages stream: nothing asked for, nothing removed.
        assert!(client.get(own::STREAM_USAGE_REQUESTED).is_none());
        assert_eq!(
            client.get(attr::RESPONSE_TIME_TO_FIRST_CHUNK).is_some(),
            i == 0
        );
    }
    // A model the engine does not serve: the Messages API's error shape, the span's error.
    let r = post(
        &s.gw.url(),
        "/v1/messages",
        r#"{"model":"nope","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(
        r.text()
            .starts_with(r#"{"type":"error","error":{"type":"NotFoundError""#)
    );
    let spans = take_spans(&s.spans, 2).await;
    assert_eq!(
        string(by_kind(&spans, SpanKind::Client), attr::ERROR_TYPE),
        "NotFoundError"
    );
}

#[tokio::test]
async fn responses_pass_unchanged_and_are_traced_as_chat() {
    let s = stack(|_| {}, |_| {}).await;
    let stream = r#"{"model":"tiny-llama","input":"hi","max_output_tokens":5,"stream":true}"#;
    let whole = r#"{"model":"tiny-llama","input":[{"role":"user","content":"hi"}],"instructions":"Be brief.","max_output_tokens":5}"#;
    for (i, body) in [stream, whole].iter().enumerate() {
        let (direct, proxied) =
            direct_and_proxied(&s, "/v1/responses", body, &format!("resp-{i}")).await;
        assert_eq!(direct.status, 200);
        assert_eq!(proxied.text(), direct.text(), "case {i} differs");
        let spans = take_spans(&s.spans, 2).await;
        let client = by_kind(&spans, SpanKind::Client);
        assert_eq!(client.name.as_str(), "chat tiny-llama");
        assert_eq!(int(client, attr::USAGE_OUTPUT_TOKENS), 5);
        assert_eq!(
            strings(client, attr::RESPONSE_FINISH_REASONS),
            vec!["max_output_tokens".to_owned()]
        );
        assert_eq!(
            client.get(attr::RESPONSE_TIME_TO_FIRST_CHUNK).is_some(),
            i == 0
        );
    }
}

#[tokio::test]
async fn an_engine_failure_mid_stream_is_the_calls_error() {
    let s = stack(|_| {}, |_| {}).await;
    for (path, body, marker) in [
        ("/v1/chat/completions", CHAT_STREAM, "data: [DONE]"),
        (
            "/v1/completions",
            r#"{"model":"tiny-llama","prompt":"Once","max_tokens":20,"ignore_eos":true,"stream":true}"#,
            "data: [DONE]",
        ),
        (
            "/v1/messages",
            r#"{"model":"tiny-llama","max_tokens":20,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            "event: error",
        ),
        (
            "/v1/responses",
            r#"{"model":"tiny-llama","input":"hi","max_output_tokens":20,"stream":true}"#,
            "event: error",
        ),
    ] {
        let (direct, proxied) = with_headers(
            &s,
            path,
            body,
            &[
                ("x-inferscope-fault", "error_after=3"),
                ("x-request-id", "e"),
            ],
        )
        .await;
        assert_eq!(proxied.status, 200, "{path}");
        assert_eq!(proxied.text(), direct.text(), "{path}: bytes unchanged");
        assert!(
            proxied.text().contains(marker),
            "{path}: {}",
            proxied.text()
        );
        let spans = take_spans(&s.spans, 2).await;
        let client = by_kind(&spans, SpanKind::Client);
        assert_eq!(
            string(client, attr::ERROR_TYPE),
            "InternalServerError",
            "{path}"
        );
        assert!(
            matches!(client.status, inferscope_core::Status::Error(_)),
            "{path}: {:?}",
            client.status
        );
        // The HTTP exchange itself succeeded (200, every byte delivered).
        let server = by_kind(&spans, SpanKind::Server);
        assert_eq!(server.status, inferscope_core::Status::Unset, "{path}");
    }
}

#[tokio::test]
async fn streams_with_several_choices_get_usage_with_their_bytes_unchanged() {
    // A fresh gateway: its first stream's connection has not shown the fingerprint yet (the
    // finishing chunks wait for the usage chunk); the next ones on it have (no wait).
    let s = stack(|c| c.engine.step_base_ms = 1.0, |_| {}).await;
    let cases = [
        (
            "/v1/chat/completions",
            r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"n":2,"stream":true}"#,
            10,
        ),
        (
            "/v1/completions",
            r#"{"model":"tiny-llama","prompt":["Once upon","a time"],"max_tokens":4,"n":2,"stream":true}"#,
            16,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"tiny-llama","messages":[{"role":"user","content":"again"}],"max_tokens":7,"n":3,"stream":true}"#,
            21,
        ),
    ];
    for round in 0..2 {
        for (i, (path, body, output)) in cases.iter().enumerate() {
            let (direct, proxied) =
                direct_and_proxied(&s, path, body, &format!("several-{round}-{i}")).await;
            assert_eq!(direct.status, 200);
            assert!(direct.text().contains("system_fingerprint"));
            assert_eq!(
                proxied.text(),
                direct.text(),
                "round {round}, case {i} differs"
            );
            let spans = take_spans(&s.spans, 2).await;
            let client = by_kind(&spans, SpanKind::Client);
            assert_eq!(int(client, attr::USAGE_OUTPUT_TOKENS), *output, "case {i}");
            assert!(client.get(own::STREAM_USAGE_REQUESTED).is_some());
        }
    }
}

#[tokio::test]
async fn the_switch_turns_usage_injection_off() {
    let s = stack(|_| {}, |c| c.inject_usage = false).await;
    let (direct, proxied) =
        direct_and_proxied(&s, "/v1/chat/completions", CHAT_STREAM, "off").await;
    assert_eq!(proxied.text(), direct.text());
    let spans = take_spans(&s.spans, 2).await;
    let client = by_kind(&spans, SpanKind::Client);
    assert!(client.get(attr::USAGE_OUTPUT_TOKENS).is_none());
    assert!(client.get(own::STREAM_USAGE_REQUESTED).is_none());
    assert!(int(client, own::STREAM_CHUNK_COUNT) > 0);
}

#[tokio::test]
async fn non_streamed_routes_and_embeddings() {
    let s = stack(|_| {}, |_| {}).await;
    let (d, p) = direct_and_proxied(
        &s,
        "/v1/chat/completions",
        r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"stop":["\n"],"presence_penalty":0.5,"top_k":20,"min_p":0.05}"#,
        "ns",
    )
    .await;
    assert_eq!(p.body, d.body);
    let spans = take_spans(&s.spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    assert_eq!(string(c, attr::RESPONSE_ID), "chatcmpl-ns");
    // The request said neither `stream` nor `response_format`: neither is recorded.
    assert_eq!(c.get(attr::REQUEST_STREAM), None);
    assert_eq!(c.get(attr::OUTPUT_TYPE), None);
    assert_eq!(
        strings(c, attr::REQUEST_STOP_SEQUENCES),
        vec!["\n".to_owned()]
    );
    assert_eq!(float(c, attr::REQUEST_PRESENCE_PENALTY), 0.5);
    assert_eq!(float(c, attr::REQUEST_TOP_K), 20.0);
    assert_eq!(float(c, "vllm.request.min_p"), 0.05);
    assert!(c.get(attr::RESPONSE_TIME_TO_FIRST_CHUNK).is_none());
    assert_eq!(
        int(c, attr::USAGE_OUTPUT_TOKENS),
        p.json()["usage"]["completion_tokens"].as_i64().unwrap()
    );

    let (d, p) = direct_and_proxied(
        &s,
        "/v1/completions",
        r#"{"model":"tiny-llama","prompt":["a","b"],"max_tokens":3}"#,
        "cmp",
    )
    .await;
    assert_eq!(p.body, d.body);
    let spans = take_spans(&s.spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    assert_eq!(c.name.as_str(), "text_completion tiny-llama");
    assert_eq!(strings(c, attr::RESPONSE_FINISH_REASONS).len(), 2);

    let (d, p) = direct_and_proxied(
        &s,
        "/v1/embeddings",
        r#"{"model":"tiny-llama","input":["one","two","three"]}"#,
        "emb",
    )
    .await;
    assert_eq!(p.body, d.body);
    let spans = take_spans(&s.spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    assert_eq!(c.name.as_str(), "embeddings tiny-llama");
    assert_eq!(int(c, own::EMBEDDINGS_COUNT), 3);
    assert_eq!(
        int(c, attr::EMBEDDINGS_DIMENSION_COUNT),
        p.json()["data"][0]["embedding"].as_array().unwrap().len() as i64
    );
    assert_eq!(
        strings(c, attr::REQUEST_ENCODING_FORMATS),
        vec!["float".to_owned()]
    );
    assert!(int(c, attr::USAGE_INPUT_TOKENS) > 0);

    // Not inference: one SERVER span, the body untouched.
    let d = send(&s.sim.url(), "GET", "/v1/models", "", &[]).await;
    let p = send(&s.gw.url(), "GET", "/v1/models", "", &[]).await;
    assert_eq!(p.body, d.body);
    let spans = take_spans(&s.spans, 1).await;
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name.as_str(), "GET /v1/models");
}

#[tokio::test]
async fn streamed_tool_calls_are_assembled() {
    let s = stack(|_| {}, |_| {}).await;
    let body = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"weather?"}],"max_tokens":40,"stream":true,
        "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"tool_choice":"required"}"#;
    let r = post(&s.gw.url(), "/v1/chat/completions", body, &[]).await;
    assert!(r.text().contains("tool_calls"));
    let spans = take_spans(&s.spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    assert_eq!(
        strings(c, own::REQUEST_TOOL_NAMES),
        vec!["get_weather".to_owned()]
    );
    assert_eq!(
        strings(c, own::RESPONSE_TOOL_CALL_NAMES),
        vec!["get_weather".to_owned()]
    );
    assert_eq!(
        strings(c, attr::RESPONSE_FINISH_REASONS),
        vec!["tool_calls".to_owned()]
    );
    // Content capture is off: no definitions, no arguments.
    assert!(c.get(attr::TOOL_DEFINITIONS).is_none());
    assert!(c.get(attr::OUTPUT_MESSAGES).is_none());
}

#[tokio::test]
async fn upstream_errors_and_faults_become_error_spans() {
    let s = stack(
        |_| {},
        |c| {
            c.timeouts.first_byte = std::time::Duration::from_millis(300);
            c.timeouts.idle = Some(std::time::Duration::from_millis(300));
        },
    )
    .await;
    let gw = s.gw.url();

    // 503 from the upstream: status and body pass through.
    let d = post(
        &s.sim.url(),
        "/v1/chat/completions",
        CHAT_STREAM,
        &[("x-inferscope-fault", "status=503")],
    )
    .await;
    let r = post(
        &gw,
        "/v1/chat/completions",
        CHAT_STREAM,
        &[("x-inferscope-fault", "status=503")],
    )
    .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, d.body);
    let spans = take_spans(&s.spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    assert!(matches!(c.status, Status::Error(_)));
    assert!(c.get(attr::ERROR_TYPE).is_some());
    let sv = by_kind(&spans, SpanKind::Server);
    assert_eq!(string(sv, attr::ERROR_TYPE), "503");
    assert_eq!(int(sv, http_attr::RESPONSE_STATUS_CODE), 503);
    assert!(
        matches!(sv.status, Status::Error(_)),
        "a 5xx is the server's error"
    );

    // Unknown model: vLLM's 404 passes through; the span says why.
    let r = post(
        &gw,
        "/v1/chat/completions",
        r#"{"model":"nope","messages":[]}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 404);
    let spans = take_spans(&s.spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    assert_eq!(string(c, attr::ERROR_TYPE), "NotFoundError");
    assert!(matches!(c.status, Status::Error(_)), "a 4xx fails the call");
    let sv = by_kind(&spans, SpanKind::Server);
    assert_eq!(sv.status, Status::Unset, "a 4xx is not the server's error");

    // Stalled headers: 504 with an OpenAI-style error.
    let r = post(
        &gw,
        "/v1/chat/completions",
        CHAT_STREAM,
        &[("x-inferscope-fault", "stall_ms=2000")],
    )
    .await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"]["code"], 504);
    let spans = take_spans(&s.spans, 2).await;
    assert_eq!(
        string(by_kind(&spans, SpanKind::Client), attr::ERROR_TYPE),
        "timeout"
    );
    for kind in [SpanKind::Client, SpanKind::Server] {
        assert!(matches!(by_kind(&spans, kind).status, Status::Error(_)));
    }

    // The upstream cuts the stream: the client's stream is cut too; partial output counted.
    let r = post(
        &gw,
        "/v1/chat/completions",
        CHAT_STREAM,
        &[("x-inferscope-fault", "close_after=3")],
    )
    .await;
    assert!(r.cut || !r.text().contains("[DONE]"));
    let spans = take_spans(&s.spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    assert_eq!(string(c, attr::ERROR_TYPE), "upstream_broken");
    assert_eq!(int(c, own::STREAM_CHUNK_COUNT), 3);
    for kind in [SpanKind::Client, SpanKind::Server] {
        assert!(matches!(by_kind(&spans, kind).status, Status::Error(_)));
    }

    // A malformed event is forwarded and counted.
    let (d, r) = with_headers(
        &s,
        "/v1/chat/completions",
        CHAT_STREAM,
        &[
            ("x-inferscope-fault", "malformed_after=2"),
            ("x-request-id", "m"),
        ],
    )
    .await;
    assert_eq!(r.text(), d.text());
    let spans = take_spans(&s.spans, 2).await;
    assert!(
        string(by_kind(&spans, SpanKind::Client), own::BODY_PARSE_ERROR).contains("stream event")
    );

    // Events split into tiny writes: same bytes, same facts.
    let (d, r) = with_headers(
        &s,
        "/v1/chat/completions",
        CHAT_STREAM,
        &[
            ("x-inferscope-fault", "split=random"),
            ("x-request-id", "sp"),
        ],
    )
    .await;
    assert_eq!(r.text(), d.text());
    let spans = take_spans(&s.spans, 2).await;
    assert!(int(by_kind(&spans, SpanKind::Client), attr::USAGE_OUTPUT_TOKENS) > 0);

    // Malformed client JSON: forwarded unchanged, the upstream answers 400, the span notes it.
    let d = post(
        &s.sim.url(),
        "/v1/chat/completions",
        "{\"model\": tiny",
        &[],
    )
    .await;
    let r = post(&gw, "/v1/chat/completions", "{\"model\": tiny", &[]).await;
    assert_eq!((r.status, r.body.clone()), (d.status, d.body.clone()));
    let spans = take_spans(&s.spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    assert!(string(c, own::BODY_PARSE_ERROR).contains("not a JSON object"));
    assert_eq!(c.name.as_str(), "chat");
}

#[tokio::test]
async fn an_unreachable_upstream_gets_a_502() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (gw, spans) = gateway(
        &format!("http://127.0.0.1:{port}"),
        |_| {},
        inferscope_core::Sampler::default(),
    )
    .await;
    let r = post(&gw.url(), "/v1/chat/completions", CHAT_STREAM, &[]).await;
    assert_eq!(r.status, 502);
    let e = r.json();
    assert_eq!(e["error"]["type"], "BadGateway");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unreachable")
    );
    let spans = take_spans(&spans, 2).await;
    assert_eq!(
        string(by_kind(&spans, SpanKind::Client), attr::ERROR_TYPE),
        "upstream_unreachable"
    );
    assert_eq!(
        int(
            by_kind(&spans, SpanKind::Server),
            http_attr::RESPONSE_STATUS_CODE
        ),
        502
    );
    for kind in [SpanKind::Client, SpanKind::Server] {
        assert!(matches!(by_kind(&spans, kind).status, Status::Error(_)));
    }
    assert!(
        gw.metrics_text()
            .contains("inferscope_upstream_errors_total{error_type=\"upstream_unreachable\"} 1")
    );
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_aborts_the_upstream_request() {
    use http_body_util::BodyExt as _;
    let s = stack(|c| c.engine.step_base_ms = 20.0, |_| {}).await;
    let body = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"long"}],"max_tokens":500,"ignore_eos":true,"stream":true}"#;
    let req = http::Request::post(format!("{}/v1/chat/completions", s.gw.url()))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    let mut body = resp.into_body();
    let mut chunks = 0;
    while chunks < 5 {
        if let Some(Ok(f)) = body.frame().await
            && f.is_data()
        {
            chunks += 1;
        }
    }
    assert_eq!(s.sim.aborts(), 0);
    drop(body);
    let mut waited = 0;
    while s.sim.aborts() == 0 && waited < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(s.sim.aborts(), 1, "the simulator never saw the abort");
    let spans = take_spans(&s.spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    assert_eq!(string(c, attr::ERROR_TYPE), "client_aborted");
    assert!(matches!(c.status, Status::Error(_)));
    // The client's own doing is not the server's error; error.type still says what happened.
    let sv = by_kind(&spans, SpanKind::Server);
    assert_eq!(string(sv, attr::ERROR_TYPE), "client_aborted");
    assert_eq!(sv.status, Status::Unset);
    assert!(int(c, own::STREAM_CHUNK_COUNT) >= 4);
    assert_eq!(s.gw.in_flight(), 0);
}

#[tokio::test]
async fn everything_else_is_forwarded_byte_for_byte() {
    let (addr, _task) = echo_server().await;
    let (gw, spans) = gateway(
        &format!("http://{addr}"),
        |_| {},
        inferscope_core::Sampler::default(),
    )
    .await;
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    type Case<'a> = (&'a str, &'a str, Vec<u8>, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case<'_>> = vec![
        ("GET", "/v1/models?x=1&y=%20z", vec![], vec![]),
        (
            "PUT",
            "/some/unknown/route",
            b"plain".to_vec(),
            vec![("content-type", "text/plain")],
        ),
        ("DELETE", "/v1/responses/abc", vec![], vec![]),
        (
            "POST",
            "/v1/audio/transcriptions",
            big.clone(),
            vec![("content-type", "multipart/form-data; boundary=xyz")],
        ),
        ("PATCH", "/v1/chat/completions", b"{}".to_vec(), vec![]),
    ];
    for (method, path, body, headers) in cases {
        let mut h = headers.clone();
        h.push(("x-custom", "kept"));
        h.push(("connection", "x-drop-me"));
        h.push(("x-drop-me", "hop"));
        let r = send(&gw.url(), method, path, body.clone(), &h).await;
        assert_eq!(r.status, 200, "{method} {path}");
        let echo = r.json();
        assert_eq!(echo["method"], method);
        assert!(echo["uri"].as_str().unwrap().ends_with(path), "{echo}");
        assert_eq!(echo["body_len"], body.len());
        assert_eq!(echo["body_fnv"], fnv(&body));
        let names: Vec<String> = echo["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h[0].as_str().unwrap().to_owned())
            .collect();
        assert!(names.contains(&"x-custom".to_owned()));
        assert!(
            !names.contains(&"x-drop-me".to_owned()),
            "hop-by-hop header forwarded: {names:?}"
        );
        assert!(names.contains(&"traceparent".to_owned()));
        assert!(r.headers.contains_key("x-echo"));
        assert!(
            !r.headers.contains_key("x-hop"),
            "a response hop-by-hop header came back"
        );
    }
    let spans = take_spans(&spans, 5).await;
    assert!(spans.iter().all(|s| s.kind == SpanKind::Server));
    assert!(
        spans
            .iter()
            .any(|s| s.name.as_str() == "DELETE /v1/responses/{id}")
    );
    assert!(spans.iter().any(|s| s.name.as_str() == "PUT"));
}

#[tokio::test]
async fn the_upstream_traceparent_is_a_child_of_the_client_span() {
    let (addr, _task) = echo_server().await;
    let (gw, spans) = gateway(
        &format!("http://{addr}"),
        |_| {},
        inferscope_core::Sampler::default(),
    )
    .await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = post(
        &gw.url(),
        "/v1/chat/completions",
        r#"{"model":"m","messages":[]}"#,
        &[("traceparent", incoming), ("tracestate", "vendor=abc")],
    )
    .await;
    let echo = r.json();
    let header = |name: &str| {
        echo["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .map(|h| h[1].as_str().unwrap().to_owned())
    };
    let sent = header("traceparent").unwrap();
    let spans = take_spans(&spans, 2).await;
    let c = by_kind(&spans, SpanKind::Client);
    assert_eq!(
        sent,
        format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
            c.context.span_id.to_hex()
        )
    );
    assert_eq!(header("tracestate").as_deref(), Some("vendor=abc"));

    // Not sampled: a new span id still goes upstream, with the flag cleared, and no span.
    let (gw, spans) = gateway(
        &format!("http://{addr}"),
        |_| {},
        inferscope_core::Sampler::from_name("always_off", None).unwrap(),
    )
    .await;
    let r = post(
        &gw.url(),
        "/v1/chat/completions",
        r#"{"model":"m","messages":[]}"#,
        &[("traceparent", incoming)],
    )
    .await;
    let echo = r.json();
    let sent = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "traceparent")
        .unwrap()[1]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && sent.ends_with("-00"),
        "{sent}"
    );
    assert!(!sent.contains("00f067aa0ba902b7"));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(spans.is_empty());
    assert!(
        gw.metrics_text()
            .contains("gen_ai_client_operation_duration_seconds_count"),
        "metrics recorded unsampled requests too"
    );
}

#[tokio::test]
async fn h2c_on_both_sides() {
    let s = stack(|_| {}, |c| c.upstream_h2c = true).await;
    let h2: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let req = http::Request::post(format!("{}/v1/chat/completions", s.gw.url()))
        .header("content-type", "application/json")
        .header("x-request-id", "h2")
        .body(http_body_util::Full::new(bytes::Bytes::from(CHAT_STREAM)))
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    use http_body_util::BodyExt as _;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let direct = post(
        &s.sim.url(),
        "/v1/chat/completions",
        CHAT_STREAM,
        &[("x-request-id", "h2")],
    )
    .await;
    assert_eq!(body, direct.body);
    let spans = take_spans(&s.spans, 2).await;
    assert_eq!(
        string(
            by_kind(&spans, SpanKind::Server),
            http_attr::NETWORK_PROTOCOL_VERSION
        ),
        "2"
    );
}

#[tokio::test]
async fn chunked_and_oversized_bodies_stream_through_and_connections_are_pooled() {
    let (addr, _task) = echo_server().await;
    let (gw, spans) = gateway(
        &format!("http://{addr}"),
        |c| c.max_parse_bytes = 1024,
        inferscope_core::Sampler::default(),
    )
    .await;
    // A chunked upload (no Content-Length), to an inference route and over the parse limit.
    let pieces: Vec<bytes::Bytes> = (0..64)
        .map(|i| bytes::Bytes::from(format!("{{\"k{i}\":\"{}\"}}", "x".repeat(100))))
        .collect();
    let whole: Vec<u8> = pieces.iter().flat_map(|p| p.to_vec()).collect();
    let stream = futures_util::stream::iter(
        pieces
            .into_iter()
            .map(|b| Ok::<_, std::convert::Infallible>(http_body::Frame::data(b))),
    );
    let body = http_body_util::StreamBody::new(stream);
    let c: hyper_util::client::legacy::Client<_, _> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = http::Request::post(format!("{}/v1/chat/completions", gw.url()))
        .body(body)
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let echo: serde_json::Value = serde_json::from_slice(
        &http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(echo["body_len"], whole.len());
    assert_eq!(echo["body_fnv"], fnv(&whole));
    let got = take_spans(&spans, 2).await;
    assert!(
        string(by_kind(&got, SpanKind::Client), own::BODY_PARSE_ERROR).contains("over 1024 bytes")
    );

    // Sequential requests reuse one upstream connection (keep-alive pool).
    let mut ports = Vec::new();
    for _ in 0..3 {
        let r = send(&gw.url(), "GET", "/v1/models", "", &[]).await;
        ports.push(r.json()["peer_port"].as_u64().unwrap());
    }
    assert!(
        ports.windows(2).all(|w| w[0] == w[1]),
        "no connection reuse: {ports:?}"
    );
}

#[tokio::test]
async fn streams_are_forwarded_as_they_are_generated() {
    use http_body_util::BodyExt as _;
    // 200 tokens at 10 ms a step: the engine is still generating when the first chunks arrive.
    let s = stack(|c| c.engine.step_base_ms = 10.0, |_| {}).await;
    let body = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"x"}],"max_tokens":200,"ignore_eos":true,"stream":true}"#;
    let req = http::Request::post(format!("{}/v1/chat/completions", s.gw.url()))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    let mut body = resp.into_body();
    let mut seen = 0;
    while seen < 3 {
        if let Some(Ok(f)) = body.frame().await
            && f.is_data()
        {
            seen += 1;
        }
    }
    assert_eq!(
        s.sim.running(),
        1,
        "the gateway waited for the whole stream before forwarding"
    );
    while body.frame().await.is_some() {}
}

/// How the test upstream answers an upload as soon as it has the request head.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Early {
    /// 413, then it stops reading but keeps the connection open for a while.
    RefuseAndStall,
    /// 413, then it closes.
    RefuseAndClose,
    /// 200, then it reads the whole body (counted in the returned counter).
    AcceptAndRead,
}

async fn early_upstream(
    how: Early,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let (status, body) = match how {
                    Early::AcceptAndRead => ("200 OK", r#"{"ok":true}"#),
                    _ => (
                        "413 Payload Too Large",
                        r#"{"error":{"message":"upload too large","type":"PayloadTooLarge"}}"#,
                    ),
                };
                let close = if how == Early::AcceptAndRead {
                    ""
                } else {
                    "connection: close\r\n"
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{close}\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                match how {
                    Early::RefuseAndStall => tokio::time::sleep(Duration::from_secs(3)).await,
                    Early::RefuseAndClose => {}
                    Early::AcceptAndRead => {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = stream.read(&mut buf).await {
                            counter.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    (addr, received)
}

#[tokio::test]
async fn an_upstream_that_answers_before_the_upload_ends_is_heard() {
    use std::sync::atomic::Ordering;
    // 16 MiB: far more than the socket buffers hold, to a route that streams it through and
    // to an inference route over the parse limit.
    let upload = bytes::Bytes::from(vec![b'x'; 16 << 20]);
    for how in [Early::RefuseAndStall, Early::RefuseAndClose] {
        let (addr, _) = early_upstream(how).await;
        let (gw, spans) = gateway(
            &format!("http://{addr}"),
            |_| {},
            inferscope_core::Sampler::default(),
        )
        .await;
        for path in ["/v1/files", "/v1/chat/completions"] {
            let started = std::time::Instant::now();
            let r = send(&gw.url(), "POST", path, upload.clone(), &[]).await;
            assert_eq!(r.status, 413, "{how:?}, {path}: {}", r.text());
            assert_eq!(r.json()["error"]["type"], "PayloadTooLarge");
            // Heard when it was said, not when the upstream hung up.
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{how:?}, {path}: {:?}",
                started.elapsed()
            );
        }
        // Two SERVER spans and the chat's CLIENT span, each with the upstream's status.
        let got = take_spans(&spans, 3).await;
        assert_eq!(got.len(), 3);
        assert!(
            got.iter()
                .all(|s| int(s, http_attr::RESPONSE_STATUS_CODE) == 413),
            "{got:?}"
        );
    }
    // An early 200 is held while the rest of the body still goes up, all of it.
    let (addr, received) = early_upstream(Early::AcceptAndRead).await;
    let (gw, _spans) = gateway(
        &format!("http://{addr}"),
        |_| {},
        inferscope_core::Sampler::default(),
    )
    .await;
    let r = send(&gw.url(), "POST", "/v1/files", upload.clone(), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["ok"], true);
    for _ in 0..200 {
        if received.load(Ordering::Relaxed) == upload.len() as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(received.load(Ordering::Relaxed), upload.len() as u64);
}

/// A client whose inference body ends before its announced length: 400, one SERVER span whose
/// `error.type` says `request_body` and whose status stays unset (the client's doing).
#[tokio::test]
async fn a_client_body_cut_short_is_the_clients_error_not_the_servers() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let s = stack(|_| {}, |_| {}).await;
    let mut conn = tokio::net::TcpStream::connect(s.gw.addr()).await.unwrap();
    conn.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"model\":",
    )
    .await
    .unwrap();
    conn.shutdown().await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut reply),
    )
    .await
    .expect("the gateway answers or closes");
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 400"),
        "{reply}"
    );
    let spans = take_spans(&s.spans, 1).await;
    let sv = by_kind(&spans, SpanKind::Server);
    assert_eq!(string(sv, attr::ERROR_TYPE), "request_body");
    assert_eq!(sv.status, Status::Unset);
}

/// Probes and scrapes (`/health`, `/metrics`, …) are forwarded but make no trace; the list is a
/// setting, and an empty list traces them again.
#[tokio::test]
async fn probes_are_forwarded_without_a_trace() {
    let s = stack(|_| {}, |_| {}).await;
    let gw = s.gw.url();
    for path in ["/health", "/metrics", "/version", "/ping"] {
        let d = send(&s.sim.url(), "GET", path, "", &[]).await;
        let r = send(&gw, "GET", path, "", &[]).await;
        assert_eq!(r.status, d.status, "{path}");
    }
    let r = send(&gw, "GET", "/health?probe=1", "", &[]).await;
    assert_eq!(r.status, 200);
    // A traced request after them: its span is the only one.
    assert_eq!(send(&gw, "GET", "/v1/models", "", &[]).await.status, 200);
    let spans = take_spans(&s.spans, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(spans.len() + s.spans.len(), 1, "{spans:?}");
    assert_eq!(
        string(&spans[0], http_attr::URL_PATH),
        "/v1/models",
        "only the API call is traced"
    );
    assert!(s.gw.metrics_text().contains("inferscope_requests_total"));

    let t = stack(|_| {}, |c| c.untraced_paths.clear()).await;
    assert_eq!(
        send(&t.gw.url(), "GET", "/health", "", &[]).await.status,
        200
    );
    let spans = take_spans(&t.spans, 1).await;
    assert_eq!(string(&spans[0], http_attr::URL_PATH), "/health");
}

/// The gateway's own time is on the SERVER span, split from the upstream's, and in a histogram.
#[tokio::test]
async fn the_gateways_own_time_is_split_from_the_upstreams() {
    let s = stack(|c| c.engine.preprocess_ms = 20.0, |_| {}).await;
    let body = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"x"}],"max_tokens":4,"stream":true}"#;
    assert_eq!(
        post(&s.gw.url(), "/v1/chat/completions", body, &[])
            .await
            .status,
        200
    );
    let spans = take_spans(&s.spans, 2).await;
    let sv = by_kind(&spans, SpanKind::Server);
    let inbound = float(sv, own::GATEWAY_INBOUND);
    let outbound = float(sv, own::GATEWAY_OUTBOUND);
    let upstream = float(sv, own::UPSTREAM_TIME_TO_FIRST_BYTE);
    assert!(inbound >= 0.0 && outbound >= 0.0, "{inbound} {outbound}");
    // The simulated engine takes 20 ms before its head: the upstream's, not the gateway's.
    assert!(upstream >= 0.015, "{upstream}");
    assert!(
        inbound < upstream && outbound < upstream,
        "{inbound} {outbound} {upstream}"
    );
    let text = s.gw.metrics_text();
    assert!(
        text.contains("inferscope_gateway_processing_seconds_count 1"),
        "{text}"
    );
}
