//! The real `openai` Python client (PyPI, pinned in `scripts/python-requirements.txt`) talking
//! to the simulator through the gateway: streamed chat, completions, embeddings and a streamed
//! tool call, as an application would send them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::path::PathBuf;

use common::*;
use inferscope_core::SpanKind;
use inferscope_semconv::{attr, inferscope as own};
use inferscope_testkit::paths::python;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_client_through_the_gateway() {
    let s = stack(|_| {}, |_| {}).await;
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_client.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(s.gw.url())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openai client failed:\n{stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{seen}");

    assert_eq!(
        seen["stream_chat"]["usage_chunks"], 0,
        "the client saw the gateway's usage chunk"
    );
    assert!(!seen["stream_chat"]["text"].as_str().unwrap().is_empty());
    assert!(
        seen["stream_chat_usage"]["completion_tokens"]
            .as_i64()
            .unwrap()
            > 0
    );
    assert_eq!(seen["tool_call"]["name"], "get_weather");
    assert_eq!(seen["embeddings"]["count"], 2);
    assert_eq!(seen["error"]["status"], 404);

    // 8 requests: a SERVER and a CLIENT span each.
    let spans = take_spans(&s.spans, 16).await;
    let clients: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client)
        .collect();
    assert_eq!(clients.len(), 8);
    let by_id = |id: &str| {
        *clients
            .iter()
            .find(|c| c.get(attr::RESPONSE_ID).and_then(|v| v.as_str()) == Some(id))
            .unwrap_or_else(|| panic!("no span with response id {id}"))
    };
    let sc = by_id(seen["stream_chat"]["id"].as_str().unwrap());
    assert!(
        int(sc, attr::USAGE_OUTPUT_TOKENS) > 0,
        "usage recorded although the client asked for none"
    );
    assert!(float(sc, attr::RESPONSE_TIME_TO_FIRST_CHUNK) > 0.0);
    let chat = by_id(seen["chat"]["id"].as_str().unwrap());
    assert_eq!(
        int(chat, attr::USAGE_OUTPUT_TOKENS),
        seen["chat"]["completion_tokens"].as_i64().unwrap()
    );
    assert_eq!(float(chat, attr::REQUEST_TEMPERATURE), 0.2);
    let comp = by_id(seen["completion"]["id"].as_str().unwrap());
    assert_eq!(comp.name.as_str(), "text_completion tiny-llama");
    assert_eq!(
        int(comp, attr::USAGE_OUTPUT_TOKENS),
        seen["completion"]["completion_tokens"].as_i64().unwrap()
    );
    let emb = clients
        .iter()
        .find(|c| c.name.as_str() == "embeddings tiny-llama")
        .unwrap();
    assert_eq!(
        int(emb, attr::EMBEDDINGS_DIMENSION_COUNT),
        seen["embeddings"]["dimension"].as_i64().unwrap()
    );
    assert_eq!(
        int(emb, attr::USAGE_INPUT_TOKENS),
        seen["embeddings"]["prompt_tokens"].as_i64().unwrap()
    );
    // The openai client asks for base64 embeddings by default; the span says so.
    assert_eq!(
        strings(emb, attr::REQUEST_ENCODING_FORMATS),
        vec!["base64".to_owned()]
    );
    let tool = clients
        .iter()
        .find(|c| c.get(own::RESPONSE_TOOL_CALL_NAMES).is_some())
        .unwrap();
    assert_eq!(
        strings(tool, own::RESPONSE_TOOL_CALL_NAMES),
        vec!["get_weather".to_owned()]
    );
    let err = clients
        .iter()
        .find(|c| c.name.as_str() == "chat no-such-model")
        .unwrap();
    assert_eq!(string(err, attr::ERROR_TYPE), "NotFoundError");
    // The API key is nowhere.
    assert!(!format!("{spans:?}").contains("sk-test-secret"));
}

/// The real `openai` client's Responses API through the gateway: a response and a stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_responses_api_through_the_gateway() {
    let s = stack(|_| {}, |c| c.capture.enabled = true).await;
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_responses.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(s.gw.url())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openai client failed:\n{stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{seen}");
    let spans = take_spans(&s.spans, 4).await;
    let clients: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client)
        .collect();
    assert_eq!(clients.len(), 2);
    for (which, streamed) in [("response", false), ("stream", true)] {
        let seen = &seen[which];
        let c = clients
            .iter()
            .find(|c| c.get(attr::RESPONSE_ID).and_then(|v| v.as_str()) == seen["id"].as_str())
            .unwrap_or_else(|| panic!("no span for {which}"));
        assert_eq!(c.name.as_str(), "chat tiny-llama");
        assert_eq!(
            int(c, attr::USAGE_INPUT_TOKENS),
            seen["input_tokens"].as_i64().unwrap()
        );
        assert_eq!(
            int(c, attr::USAGE_OUTPUT_TOKENS),
            seen["output_tokens"].as_i64().unwrap()
        );
        let reason = match seen["status"].as_str().unwrap() {
            "incomplete" => "max_output_tokens",
            other => other,
        };
        assert_eq!(
            strings(c, attr::RESPONSE_FINISH_REASONS),
            vec![reason.to_owned()]
        );
        assert!(
            string(c, attr::OUTPUT_MESSAGES)
                .contains(&serde_json::to_string(seen["text"].as_str().unwrap()).unwrap()[1..4]),
            "{which}"
        );
        assert_eq!(
            c.get(attr::RESPONSE_TIME_TO_FIRST_CHUNK).is_some(),
            streamed,
            "{which}"
        );
        if streamed {
            assert_eq!(
                int(c, own::STREAM_CHUNK_COUNT),
                seen["deltas"].as_i64().unwrap()
            );
            assert_eq!(float(c, attr::REQUEST_TEMPERATURE), 0.5);
        } else {
            assert!(string(c, attr::SYSTEM_INSTRUCTIONS).contains("Be brief."));
            assert_eq!(int(c, attr::REQUEST_MAX_TOKENS), 6);
        }
    }
    assert!(!format!("{spans:?}").contains("sk-test-secret"));
}
