//! The simulator's HTTP surface against the real vLLM 0.32's bytes: every route, the shapes of
//! bodies and stream events (keys and types, event by event), errors and statuses,
//! `X-Request-Id`, determinism, tool calls, embeddings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use base64::Engine as _;
use common::{fixture, post, send, shape, sim, sse};
use serde_json::Value;

fn shapes(events: &[Value]) -> Vec<Value> {
    events.iter().map(shape).collect()
}

/// The real server's stream and ours, with the same request, have the same events.
async fn same_stream_as_fixture(fixture_name: &str, request: &str) {
    let s = sim(|_| {}).await;
    let r = post(&s, "/v1/chat/completions", request).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let (expected, _) = fixture(fixture_name);
    assert_eq!(
        shapes(&sse(&r.text())),
        shapes(&sse(&expected)),
        "{fixture_name}:\n{}",
        r.text()
    );
}

#[tokio::test]
async fn chat_stream_with_usage() {
    same_stream_as_fixture(
        "chat-stream-usage.sse",
        r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":8,"stream":true,"stream_options":{"include_usage":true}}"#,
    )
    .await;
}

#[tokio::test]
async fn chat_stream_without_usage() {
    same_stream_as_fixture(
        "chat-stream-no-usage.sse",
        r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true}"#,
    )
    .await;
}

#[tokio::test]
async fn chat_stream_with_continuous_usage() {
    same_stream_as_fixture(
        "chat-stream-continuous-usage.sse",
        r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#,
    )
    .await;
}

#[tokio::test]
async fn chat_stream_with_two_choices_interleaves_them() {
    let s = sim(|_| {}).await;
    let r = post(
        &s,
        "/v1/chat/completions",
        r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"n":2,"stream":true}"#,
    )
    .await;
    let ours = sse(&r.text());
    let (expected, _) = fixture("chat-stream-n2.sse");
    let theirs = sse(&expected);
    // Same events, per choice, in the same order; the interleaving itself is timing.
    for index in [0, 1] {
        let pick = |events: &[Value]| -> Vec<Value> {
            events
                .iter()
                .filter(|e| e["choices"][0]["index"] == index)
                .map(shape)
                .collect()
        };
        assert_eq!(pick(&ours), pick(&theirs), "choice {index}");
    }
    assert_eq!(ours.len(), theirs.len());
    assert_eq!(ours[0]["choices"][0]["index"], 0);
    assert_eq!(
        ours[1]["choices"][0]["index"], 1,
        "both role chunks come first"
    );
    assert_eq!(ours.last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn chat_stream_ended_by_a_stop_string() {
    let s = sim(|_| {}).await;
    let r = post(
        &s,
        "/v1/chat/completions",
        r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":40,"stop":["e"],"stream":true}"#,
    )
    .await;
    let ours = sse(&r.text());
    let finish = &ours[ours.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["choices"][0]["stop_reason"], "e");
    let text: String = ours
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!text.contains('e'), "{text:?}");
    let (expected, _) = fixture("chat-stream-stop.sse");
    let theirs = sse(&expected);
    assert_eq!(
        shape(&ours[ours.len() - 2]),
        shape(&theirs[theirs.len() - 2])
    );
}

#[tokio::test]
async fn completions_stream_with_two_choices() {
    let s = sim(|_| {}).await;
    let r = post(
        &s,
        "/v1/completions",
        r#"{"model":"tiny-llama","prompt":"hi","max_tokens":6,"n":2,"stream":true,"stream_options":{"include_usage":true}}"#,
    )
    .await;
    let ours = sse(&r.text());
    let (expected, _) = fixture("completions-stream-n2.sse");
    let theirs = sse(&expected);
    let mut a = shapes(&ours);
    let mut b = shapes(&theirs);
    a.sort_by_key(|v| v.to_string());
    b.sort_by_key(|v| v.to_string());
    assert_eq!(a, b);
    let usage = &ours[ours.len() - 2]["usage"];
    assert_eq!(usage["completion_tokens"], 12, "two choices of six tokens");
}

#[tokio::test]
async fn completions_stream_variants() {
    let s = sim(|_| {}).await;
    for (name, body) in [
        (
            "completions-stream-no-usage.sse",
            r#"{"prompt":"hi","max_tokens":2,"stream":true}"#,
        ),
        (
            "completions-stream-continuous-usage.sse",
            r#"{"prompt":"hi","max_tokens":2,"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#,
        ),
        (
            "completions-token-ids-batch.sse",
            r#"{"prompt":[[1,2,3],[4,5]],"max_tokens":1,"stream":true}"#,
        ),
    ] {
        let r = post(&s, "/v1/completions", body).await;
        let (expected, _) = fixture(name);
        let mut a = shapes(&sse(&r.text()));
        let mut b = shapes(&sse(&expected));
        a.sort_by_key(|v| v.to_string());
        b.sort_by_key(|v| v.to_string());
        assert_eq!(a, b, "{name}:\n{}", r.text());
    }
}

#[tokio::test]
async fn non_streamed_bodies() {
    let s = sim(|_| {}).await;
    let r = post(
        &s,
        "/v1/chat/completions",
        r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":8}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    let (expected, _) = fixture("chat.json");
    assert_eq!(
        shape(&r.json()),
        shape(&serde_json::from_str(&expected).unwrap())
    );
    assert_eq!(r.json()["usage"]["completion_tokens"], 8);

    let r = post(
        &s,
        "/v1/completions",
        r#"{"model":"tiny-llama","prompt":["a b","c"],"max_tokens":4}"#,
    )
    .await;
    let (expected, _) = fixture("completions-batch.json");
    assert_eq!(
        shape(&r.json()),
        shape(&serde_json::from_str(&expected).unwrap())
    );
    assert_eq!(r.json()["choices"][1]["index"], 1);

    let r = post(
        &s,
        "/v1/completions",
        r#"{"prompt":"hi","max_tokens":40,"stop":["e"],"temperature":0}"#,
    )
    .await;
    let (expected, _) = fixture("completions-stop.json");
    assert_eq!(
        shape(&r.json()),
        shape(&serde_json::from_str(&expected).unwrap())
    );
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn prompt_forms_and_choice_indices() {
    let s = sim(|_| {}).await;
    let r = post(
        &s,
        "/v1/completions",
        r#"{"prompt":[[1,2,3],[4,5]],"max_tokens":2,"n":3}"#,
    )
    .await;
    let v = r.json();
    let indices: Vec<u64> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, [0, 1, 2, 3, 4, 5]);
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 12);
    let r = post(
        &s,
        "/v1/completions",
        r#"{"prompt":[1,2,3,4],"max_tokens":1}"#,
    )
    .await;
    assert_eq!(r.json()["usage"]["prompt_tokens"], 4);
}

#[tokio::test]
async fn errors_match_vllm() {
    let s = sim(|_| {}).await;
    let cases = [
        (
            "/v1/chat/completions",
            r#"{"model":"nope","messages":[]}"#,
            "error-404-model.json",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":100000}"#,
            "error-400-too-long.json",
        ),
        (
            "/v1/chat/completions",
            r#"{"model": "tiny-llama", "messages": [}"#,
            "error-malformed-json.json",
        ),
        (
            "/v1/completions",
            r#"{"model":"tiny-llama","prompt":"hi","max_tokens":0}"#,
            "error-400-max-tokens-zero.json",
        ),
        (
            "/v1/completions",
            r#"{"model":"tiny-llama","prompt":"hi","max_tokens":2,"n":0}"#,
            "error-400-n-zero.json",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"tiny-llama"}"#,
            "error-400-missing-messages.json",
        ),
        ("/v1/chat/completions", "", "error-400-empty-body.json"),
        (
            "/v1/completions",
            r#"{"model":"tiny-llama","prompt":"x","max_tokens":"five"}"#,
            "error-400-int-parsing.json",
        ),
    ];
    for (path, body, name) in cases {
        let r = post(&s, path, body).await;
        let (expected, status) = fixture(name);
        assert_eq!(Some(r.status.as_u16()), status, "{name}");
        let expected: Value = serde_json::from_str(&expected).unwrap();
        assert_eq!(shape(&r.json()), shape(&expected), "{name}: {}", r.text());
        if !name.contains("malformed") {
            assert_eq!(
                r.json(),
                expected,
                "{name}: the message is vLLM's, word for word"
            );
        }
    }
    let long = format!(
        r#"{{"model":"tiny-llama","prompt":"{}","max_tokens":5}}"#,
        "hello ".repeat(600)
    );
    let r = post(&s, "/v1/completions", &long).await;
    let (expected, status) = fixture("error-400-prompt-too-long.json");
    assert_eq!(Some(r.status.as_u16()), status);
    assert_eq!(
        shape(&r.json()),
        shape(&serde_json::from_str(&expected).unwrap())
    );
    for (method, path, name) in [
        ("GET", "/v1/nope", "error-404-route.json"),
        ("GET", "/v1/chat/completions", "error-405-method.json"),
    ] {
        let r = send(&s, method, path, "", &[]).await;
        let (expected, status) = fixture(name);
        assert_eq!(Some(r.status.as_u16()), status);
        assert_eq!(r.text(), expected);
    }
    assert!(
        s.metrics()
            .errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 8
    );
}

#[tokio::test]
async fn max_tokens_is_clamped_to_the_context_like_vllm() {
    let s = sim(|_| {}).await;
    let prompt = "hello ".repeat(150);
    let r = post(
        &s,
        "/v1/completions",
        &format!(r#"{{"prompt":"{prompt}","max_tokens":300}}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    let usage = &r.json()["usage"];
    assert_eq!(
        usage["total_tokens"], 512,
        "prompt + output fill the context exactly: {usage}"
    );
}

#[tokio::test]
async fn utility_routes() {
    let s = sim(|_| {}).await;
    let r = send(&s, "GET", "/health", "", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let r = send(&s, "GET", "/v1/models", "", &[]).await;
    let (expected, _) = fixture("models.json");
    assert_eq!(
        shape(&r.json()),
        shape(&serde_json::from_str(&expected).unwrap())
    );
    assert_eq!(r.json()["data"][0]["id"], "tiny-llama");
    assert_eq!(r.json()["data"][0]["max_model_len"], 512);
    let r = post(
        &s,
        "/tokenize",
        r#"{"model":"tiny-llama","prompt":"hello world"}"#,
    )
    .await;
    let (expected, _) = fixture("tokenize.json");
    assert_eq!(
        shape(&r.json()),
        shape(&serde_json::from_str(&expected).unwrap())
    );
    let r = post(
        &s,
        "/tokenize",
        r#"{"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(r.json()["count"], 12, "the real server counts 13 for this");

    post(&s, "/v1/completions", r#"{"prompt":"hi","max_tokens":3}"#).await;
    let m = send(&s, "GET", "/metrics", "", &[]).await.text();
    for series in [
        "vllm:num_requests_running{engine=\"0\",model_name=\"tiny-llama\"}",
        "vllm:num_requests_waiting{",
        "vllm:kv_cache_usage_perc{",
        "vllm:request_success_total{engine=\"0\",finished_reason=\"length\",model_name=\"tiny-llama\"} 1.0",
        "vllm:generation_tokens_total{engine=\"0\",model_name=\"tiny-llama\"} 3.0",
        "vllm:time_to_first_token_seconds_count{engine=\"0\",model_name=\"tiny-llama\"} 1.0",
        "inferscope_sim_aborted_requests_total 0",
    ] {
        assert!(m.contains(series), "{series} missing:\n{m}");
    }
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let s = sim(|c| c.embedding_dimension = 8).await;
    let r = post(
        &s,
        "/v1/embeddings",
        r#"{"model":"tiny-llama","input":["hello world","x"]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["object"], "embedding");
    let vector: Vec<f64> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(vector.len(), 8);
    let norm: f64 = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3);
    assert_eq!(v["usage"]["completion_tokens"], 0);

    let r = post(
        &s,
        "/v1/embeddings",
        r#"{"input":"hello world","encoding_format":"base64","dimensions":4}"#,
    )
    .await;
    let b64 = r.json()["data"][0]["embedding"]
        .as_str()
        .unwrap()
        .to_owned();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(bytes.len(), 4 * 4, "four little-endian f32");
    let first = f32::from_le_bytes(bytes[..4].try_into().unwrap());
    assert!(first.is_finite());
}

#[tokio::test]
async fn x_request_id_names_the_response_and_is_echoed_when_enabled() {
    let s = sim(|c| c.enable_request_id_headers = true).await;
    let r = send(
        &s,
        "POST",
        "/v1/completions",
        r#"{"prompt":"hi","max_tokens":2}"#,
        &[("x-request-id", "my-req-1")],
    )
    .await;
    assert_eq!(r.json()["id"], "cmpl-my-req-1");
    assert_eq!(r.headers["x-request-id"], "my-req-1");
    let s = sim(|_| {}).await;
    let r = send(
        &s,
        "POST",
        "/v1/chat/completions",
        r#"{"messages":[],"max_tokens":2}"#,
        &[("x-request-id", "abc")],
    )
    .await;
    assert_eq!(r.json()["id"], "chatcmpl-abc");
    assert!(
        r.headers.get("x-request-id").is_none(),
        "vLLM only echoes it with --enable-request-id-headers"
    );
}

#[tokio::test]
async fn output_is_deterministic() {
    let s = sim(|c| c.created = Some(1_795_355_464)).await;
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":12,"n":2,"stream":true,"stream_options":{"include_usage":true}}"#;
    let headers = [("x-request-id", "fixed")];
    let a = send(&s, "POST", "/v1/chat/completions", body, &headers).await;
    let b = send(&s, "POST", "/v1/chat/completions", body, &headers).await;
    // Choices interleave by timing; each choice's events are identical.
    for index in [0, 1] {
        let pick = |r: &common::Reply| -> Vec<Value> {
            sse(&r.text())
                .into_iter()
                .filter(|e| e["choices"][0]["index"] == index)
                .collect()
        };
        assert_eq!(pick(&a), pick(&b));
    }
    let body = r#"{"prompt":"same","max_tokens":20,"seed":7}"#;
    let a = send(&s, "POST", "/v1/completions", body, &headers).await;
    let b = send(&s, "POST", "/v1/completions", body, &headers).await;
    assert_eq!(a.body, b.body, "byte for byte");
    let c = post(
        &s,
        "/v1/completions",
        r#"{"prompt":"same","max_tokens":20,"seed":8}"#,
    )
    .await;
    assert_ne!(
        a.json()["choices"][0]["text"],
        c.json()["choices"][0]["text"],
        "the seed matters"
    );
}

#[tokio::test]
async fn tool_calls_stream_as_fragments() {
    let s = sim(|_| {}).await;
    let tools = r#""tools":[{"type":"function","function":{"name":"get_weather","description":"Get weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}}}]"#;
    let body = format!(
        r#"{{"model":"tiny-llama","messages":[{{"role":"user","content":"weather in Paris?"}}],"max_tokens":60,{tools},"tool_choice":"required","stream":true,"stream_options":{{"include_usage":true}}}}"#
    );
    let r = post(&s, "/v1/chat/completions", &body).await;
    let ours = sse(&r.text());
    let (expected, _) = fixture("tool-required-stream.sse");
    let theirs = sse(&expected);
    // vLLM's sequence: role, the call's id and name, argument fragments, an empty finish, usage.
    assert_eq!(shape(&ours[0]), shape(&theirs[0]));
    assert_eq!(shape(&ours[1]), shape(&theirs[1]));
    assert_eq!(shape(&ours[2]), shape(&theirs[2]));
    assert_eq!(
        shape(&ours[ours.len() - 3]),
        shape(&theirs[theirs.len() - 3])
    );
    assert_eq!(
        shape(&ours[ours.len() - 2]),
        shape(&theirs[theirs.len() - 2])
    );
    assert_eq!(
        ours[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    let args: String = ours
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    let args: Value = serde_json::from_str(&args).unwrap();
    assert!(args["city"].is_string() && args["days"].is_u64(), "{args}");
    assert_eq!(
        ours[ours.len() - 3]["choices"][0]["finish_reason"],
        "tool_calls"
    );

    let body = body.replace(
        r#","stream":true,"stream_options":{"include_usage":true}"#,
        "",
    );
    let r = post(&s, "/v1/chat/completions", &body).await;
    let (expected, _) = fixture("tool-required.json");
    assert_eq!(
        shape(&r.json()),
        shape(&serde_json::from_str(&expected).unwrap())
    );
    let call = &r.json()["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let _: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
}

#[tokio::test]
async fn http2_prior_knowledge_works() {
    let s = sim(|_| {}).await;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let req = http::Request::post(format!("{}/v1/completions", s.url()))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"prompt":"hi","max_tokens":2}"#,
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}
