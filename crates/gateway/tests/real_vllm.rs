//! The gateway in front of the real vLLM (`../shared/real-vllm/`), with vLLM's
//! `--otlp-traces-endpoint` pointing at the gateway's ingest: one trace holds the SERVER span,
//! the CLIENT `chat tiny-llama` span, vLLM's `llm_request`, and its queue, prefill and decode
//! spans, with times that add up.
//!
//! Runs only when `INFERSCOPE_REAL_VLLM` names an installed real-vLLM home (the directory
//! `../shared/real-vllm/install.sh` fills, e.g. `/tmp/real-vllm`); it says it was skipped
//! otherwise. Starting vLLM takes about a minute.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use inferscope_core::{SpanKind, SpanRecord};
use inferscope_semconv::{attr, inferscope as own, vllm};

/// Stops vLLM's whole process group, and reaps the shell, when the test ends (or fails).
struct Killer(std::process::Child);

impl Drop for Killer {
    // Runs as the test ends, on no worker of the runtime's: waiting on a thread is fine here.
    #[allow(clippy::disallowed_methods)]
    fn drop(&mut self) {
        // `--`: util-linux's kill reads a bare `-PGID` as a signal name, and the group would
        // live on (and `wait` below hang).
        let group = format!("-{}", self.0.id());
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &group])
            .status();
        for _ in 0..300 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_trace_through_the_real_vllm() {
    let Some(home) = std::env::var_os("INFERSCOPE_REAL_VLLM") else {
        eprintln!(
            "skipped: set INFERSCOPE_REAL_VLLM to an installed real-vLLM home (e.g. /tmp/real-vllm) to run this test"
        );
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (gw, spans) = gateway(
        &format!("http://127.0.0.1:{port}"),
        |_| {},
        inferscope_core::Sampler::default(),
    )
    .await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/real-vllm/serve.sh");
    let log =
        std::fs::File::create(std::env::temp_dir().join("inferscope-real-vllm-test.log")).unwrap();
    let child = std::process::Command::new("bash")
        .arg(script)
        .env("REAL_VLLM_HOME", &home)
        .env("PORT", port.to_string())
        .env(
            "OTLP_TRACES_ENDPOINT",
            format!("http://{}", gw.ingest_grpc_addr().unwrap()),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "500")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let _killer = Killer(child);
    let health = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(Ok(r)) = tokio::time::timeout(
            Duration::from_secs(2),
            client().request(
                http::Request::get(format!("{health}/health"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap(),
            ),
        )
        .await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        ready,
        "vLLM did not become ready; see {}",
        std::env::temp_dir()
            .join("inferscope-real-vllm-test.log")
            .display()
    );

    let body = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16,"temperature":0,"stream":true}"#;
    let r = post(
        &gw.url(),
        "/v1/chat/completions",
        body,
        &[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.text().ends_with("data: [DONE]\n\n"));
    wait_named(&spans, "decode", 1).await;
    let all = spans.take();
    let trace: Vec<&SpanRecord> = all
        .iter()
        .filter(|s| s.context.trace_id.to_hex().to_string() == "4bf92f3577b34da6a3ce929d0e0e4736")
        .collect();
    let find = |pred: &dyn Fn(&SpanRecord) -> bool| {
        *trace
            .iter()
            .find(|s| pred(s))
            .unwrap_or_else(|| panic!("missing span in {trace:#?}"))
    };
    let server =
        find(&|s| s.kind == SpanKind::Server && s.name.as_str() == "POST /v1/chat/completions");
    let client = find(&|s| s.kind == SpanKind::Client);
    let engine = find(&|s| s.name.as_str() == vllm::LLM_REQUEST_SPAN);
    assert_eq!(client.name.as_str(), "chat tiny-llama");
    assert_eq!(client.parent_span_id, Some(server.context.span_id));
    assert_eq!(engine.parent_span_id, Some(client.context.span_id));
    let mut phases: Vec<&SpanRecord> = trace
        .iter()
        .copied()
        .filter(|s| s.parent_span_id == Some(engine.context.span_id))
        .collect();
    phases.sort_by_key(|s| s.start_unix_nanos);
    let names: Vec<&str> = phases.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.ends_with(&["queue", "prefill", "decode"]),
        "{names:?}"
    );
    // Times add up: each span inside its parent (the engine's inside the CLIENT span up to the
    // clock resolution of two processes on one host), phases end to end.
    let inside = |c: &SpanRecord, p: &SpanRecord, slack: u64| {
        c.start_unix_nanos + slack >= p.start_unix_nanos
            && c.end_unix_nanos <= p.end_unix_nanos + slack
    };
    assert!(inside(client, server, 0));
    assert!(
        inside(engine, client, 1_000_000),
        "llm_request outside the CLIENT span"
    );
    let mut t = engine.start_unix_nanos;
    for p in &phases {
        assert!(p.start_unix_nanos >= t && inside(p, engine, 0));
        t = p.end_unix_nanos;
    }
    let ttft = float(engine, vllm::renamed::LATENCY_TIME_TO_FIRST_TOKEN);
    let prefill = phases
        .iter()
        .find(|p| p.name.as_str() == "prefill")
        .unwrap();
    assert!(
        (prefill.end_unix_nanos as f64 - (engine.start_unix_nanos as f64 + ttft * 1e9)).abs() < 2.0
    );
    assert_eq!(string(engine, attr::REQUEST_MODEL), "tiny-llama");
    assert_eq!(float(engine, attr::REQUEST_TEMPERATURE), 0.0);
    // Nested under the CLIENT span, the engine's counts are under vllm.usage.* (the trace's
    // usage is counted once, on the CLIENT span).
    assert_eq!(
        int(engine, vllm::renamed::USAGE_OUTPUT_TOKENS),
        int(client, attr::USAGE_OUTPUT_TOKENS)
    );
    assert!(engine.get(attr::USAGE_OUTPUT_TOKENS).is_none());
    let overhead = float(engine, own::TTFT_OUTSIDE_ENGINE);
    let ms = |s: &SpanRecord| (s.end_unix_nanos - s.start_unix_nanos) as f64 / 1e6;
    eprintln!("trace 4bf92f3577b34da6a3ce929d0e0e4736 through the real vLLM:");
    eprintln!("  {:<28} {:>9.2} ms", server.name.as_str(), ms(server));
    eprintln!(
        "  └ {:<26} {:>9.2} ms  ttft {:.2} ms",
        client.name.as_str(),
        ms(client),
        float(client, attr::RESPONSE_TIME_TO_FIRST_CHUNK) * 1e3
    );
    eprintln!(
        "    └ {:<24} {:>9.2} ms  engine ttft {:.2} ms, gateway sees +{:.2} ms",
        engine.name.as_str(),
        ms(engine),
        ttft * 1e3,
        overhead * 1e3
    );
    for p in &phases {
        eprintln!(
            "      · {:<22} {:>9.3} ms  (+{:.3} ms from arrival)",
            p.name.as_str(),
            ms(p),
            (p.start_unix_nanos - engine.start_unix_nanos) as f64 / 1e6
        );
    }
}
