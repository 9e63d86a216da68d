//! `inferscope demo` as a user runs it: the built binary, its output, and the file it writes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::process::Command;

#[test]
fn demo_prints_a_waterfall_and_writes_otlp_json_lines() {
    let dir = tempfile_dir();
    let out = dir.join("spans.jsonl");
    let run = Command::new(env!("CARGO_BIN_EXE_inferscope"))
        .args(["demo", "--out"])
        .arg(&out)
        // The embedded defaults must not need any outside service.
        .env_remove("OTEL_TRACES_EXPORTER")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_SDK_DISABLED")
        .output()
        .expect("run inferscope demo");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("POST /v1/chat/completions › chat tiny-llama"),
        "{stdout}"
    );
    assert!(stdout.contains("└ llm_request"), "{stdout}");
    // The figures are explained, and the next steps named.
    assert!(stdout.contains("input → output tokens"), "{stdout}");
    assert!(
        stdout.contains("inferscope run -- vllm serve MODEL"),
        "{stdout}"
    );
    assert!(
        stdout.contains("inferscope serve --upstream URL"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&out.display().to_string()),
        "the demo must name its file:\n{stdout}"
    );

    let mut names = Vec::new();
    for line in std::fs::read_to_string(&out).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for rs in v["resourceSpans"].as_array().unwrap() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "service.name")
                .unwrap()["value"]["stringValue"]
                .clone();
            // The gateway's spans under its own resource; vLLM's (the simulator's) under theirs,
            // forwarded by the gateway's ingest.
            let scopes: Vec<&str> = rs["scopeSpans"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["scope"]["name"].as_str().unwrap())
                .collect();
            if service == "inferscope-demo" {
                assert!(
                    scopes.iter().all(|s| *s == "inferscope.gateway"),
                    "{scopes:?}"
                );
            } else {
                // The simulator, like vLLM without OTEL_SERVICE_NAME, names no service
                // (`unknown_service:…`); ingest gives its spans `engine_service_name`.
                assert_eq!(service, "vllm");
                assert!(
                    scopes
                        .iter()
                        .all(|s| *s == "vllm.tracing.otel" || *s == "inferscope.engine"),
                    "{scopes:?}"
                );
            }
            for ss in rs["scopeSpans"].as_array().unwrap() {
                for span in ss["spans"].as_array().unwrap() {
                    assert_eq!(
                        span["traceId"].as_str().unwrap().len(),
                        32,
                        "OTLP/JSON ids are hex"
                    );
                    names.push(span["name"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    // Seven requests: a SERVER span each, a CLIENT span each, and vLLM's llm_request for
    // each one the engine finished (not the unknown model, not the abandoned stream, not
    // embeddings, which vLLM does not trace).
    let count = |n: &str| names.iter().filter(|x| x.as_str() == n).count();
    assert_eq!(count("POST /v1/chat/completions"), 5, "{names:?}");
    assert_eq!(count("POST /v1/completions"), 1);
    assert_eq!(count("POST /v1/embeddings"), 1);
    assert_eq!(count("chat tiny-llama"), 4);
    assert_eq!(count("chat gpt-unknown"), 1);
    assert_eq!(count("text_completion tiny-llama"), 1);
    assert_eq!(count("embeddings tiny-llama"), 1);
    assert_eq!(count("llm_request"), 4);
    // vLLM's phases, derived by the gateway's ingest from each llm_request.
    for phase in ["queue", "prefill", "decode"] {
        assert_eq!(count(phase), 4, "{phase}: {names:?}");
    }
    assert!(stdout.contains("error.type client_aborted"), "{stdout}");
    assert!(stdout.contains("error.type NotFoundError"), "{stdout}");
    assert!(stdout.contains("tool call get_weather"), "{stdout}");
    assert!(stdout.contains("├ prefill"), "{stdout}");
    assert!(stdout.contains("ttft outside engine "), "{stdout}");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("inferscope-demo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
