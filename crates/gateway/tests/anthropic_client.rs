//! The real `anthropic` Python client (PyPI, pinned in `scripts/python-requirements.txt`)
//! talking to the simulator's `/v1/messages` through the gateway, as a coding agent would
//! against a local model: a message, a streamed message, a streamed tool call, an error.
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
async fn the_anthropic_client_through_the_gateway() {
    let s = stack(|_| {}, |c| c.capture.enabled = true).await;
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/anthropic_client.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(s.gw.url())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "anthropic client failed:\n{stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{seen}");
    assert_eq!(seen["error"]["status"], 404);
    assert_eq!(seen["error"]["type"], "NotFoundError");
    assert_eq!(seen["tool"]["name"], "get_weather");
    assert!(seen["stream"]["deltas"].as_i64().unwrap() > 0);

    // 4 requests: a SERVER and a CLIENT span each.
    let spans = take_spans(&s.spans, 8).await;
    let clients: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client)
        .collect();
    assert_eq!(clients.len(), 4);
    let by_id = |id: &str| {
        *clients
            .iter()
            .find(|c| c.get(attr::RESPONSE_ID).and_then(|v| v.as_str()) == Some(id))
            .unwrap_or_else(|| panic!("no span with response id {id}"))
    };
    let usage = |c: &inferscope_core::SpanRecord, seen: &serde_json::Value| {
        assert_eq!(
            int(c, attr::USAGE_INPUT_TOKENS),
            seen["input_tokens"].as_i64().unwrap()
        );
        assert_eq!(
            int(c, attr::USAGE_OUTPUT_TOKENS),
            seen["output_tokens"].as_i64().unwrap()
        );
    };

    let m = by_id(seen["message"]["id"].as_str().unwrap());
    assert_eq!(m.name.as_str(), "chat tiny-llama");
    assert_eq!(string(m, attr::OPERATION_NAME), "chat");
    assert_eq!(int(m, attr::REQUEST_MAX_TOKENS), 6);
    assert_eq!(float(m, attr::REQUEST_TEMPERATURE), 0.3);
    assert_eq!(float(m, attr::REQUEST_TOP_K), 5.0);
    assert_eq!(
        strings(m, attr::REQUEST_STOP_SEQUENCES),
        vec!["zzz".to_owned()]
    );
    assert_eq!(
        strings(m, attr::RESPONSE_FINISH_REASONS),
        vec![seen["message"]["stop_reason"].as_str().unwrap().to_owned()]
    );
    usage(m, &seen["message"]);
    assert!(m.get(attr::RESPONSE_TIME_TO_FIRST_CHUNK).is_none());
    assert!(string(m, attr::SYSTEM_INSTRUCTIONS).contains("Be brief."));
    assert!(string(m, attr::INPUT_MESSAGES).contains("Say hello"));
    assert!(string(m, attr::OUTPUT_MESSAGES).contains(
        &serde_json::to_string(seen["message"]["text"].as_str().unwrap()).unwrap()[1..3]
    ));

    let st = by_id(seen["stream"]["id"].as_str().unwrap());
    usage(st, &seen["stream"]);
    assert!(float(st, attr::RESPONSE_TIME_TO_FIRST_CHUNK) > 0.0);
    assert_eq!(
        int(st, own::STREAM_CHUNK_COUNT),
        seen["stream"]["deltas"].as_i64().unwrap(),
        "one chunk per content delta"
    );
    assert_eq!(
        st.get(own::STREAM_COMPLETED),
        Some(&inferscope_core::Value::Bool(true))
    );
    assert_eq!(
        strings(st, attr::RESPONSE_FINISH_REASONS),
        vec![seen["stream"]["stop_reason"].as_str().unwrap().to_owned()]
    );

    let t = by_id(seen["tool"]["id"].as_str().unwrap());
    assert_eq!(
        strings(t, own::RESPONSE_TOOL_CALL_NAMES),
        vec!["get_weather".to_owned()]
    );
    assert_eq!(
        strings(t, attr::RESPONSE_FINISH_REASONS),
        vec!["tool_use".to_owned()]
    );
    assert!(string(t, attr::OUTPUT_MESSAGES).contains("get_weather"));
    assert!(string(t, attr::TOOL_DEFINITIONS).contains("input_schema"));

    let err = clients
        .iter()
        .find(|c| c.name.as_str() == "chat no-such-model")
        .unwrap();
    assert_eq!(string(err, attr::ERROR_TYPE), "NotFoundError");
    // The API key (x-api-key) is nowhere.
    assert!(!format!("{spans:?}").contains("sk-ant-test-secret"));
}
