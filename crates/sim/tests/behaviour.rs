//! Disconnects free the engine's slot; every injected fault does what it says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::{post, send, sim, sse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_aborts_the_request_and_frees_its_slot() {
    let s = sim(|c| c.engine.step_base_ms = 5.0).await;
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":400,"stream":true}"#;
    let mut sock = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(body.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while seen.windows(6).filter(|w| w == b"data: ").count() < 3 {
        let n = sock.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(s.running(), 1);
    assert_eq!(s.aborts(), 0);
    drop(sock);
    eventually("the abort to be counted", || s.aborts() == 1).await;
    eventually("the slot to be freed", || s.running() == 0).await;
    let metrics = send(&s, "GET", "/metrics", "", &[]).await.text();
    assert!(metrics.contains("vllm:request_success_total{engine=\"0\",finished_reason=\"abort\",model_name=\"tiny-llama\"} 1.0"));
    // A request that completes is not an abort.
    post(
        &s,
        "/v1/completions",
        r#"{"prompt":"hi","max_tokens":2,"stream":true}"#,
    )
    .await;
    assert_eq!(s.aborts(), 1);
}

#[tokio::test]
async fn status_fault() {
    let s = sim(|_| {}).await;
    let r = send(
        &s,
        "POST",
        "/v1/chat/completions",
        r#"{"messages":[]}"#,
        &[("x-inferscope-fault", "status=503")],
    )
    .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["type"], "ServiceUnavailableError");
    assert_eq!(r.json()["error"]["code"], 503);
    let r = send(
        &s,
        "POST",
        "/v1/chat/completions",
        r#"{"messages":[]}"#,
        &[("x-inferscope-fault", "nonsense")],
    )
    .await;
    assert_eq!(r.status, 400);
    // /health is never faulted.
    let s = sim(|c| c.fault = Some("status=500".into())).await;
    assert_eq!(send(&s, "GET", "/health", "", &[]).await.status, 200);
    assert_eq!(
        post(&s, "/v1/completions", r#"{"prompt":"x"}"#)
            .await
            .status,
        500
    );
    let r = send(
        &s,
        "POST",
        "/v1/completions",
        r#"{"prompt":"x","max_tokens":1}"#,
        &[("x-inferscope-fault", "status=429")],
    )
    .await;
    assert_eq!(r.status, 429, "the header wins over the configuration");
}

#[tokio::test]
async fn stall_before_the_first_byte() {
    let s = sim(|_| {}).await;
    let started = Instant::now();
    let r = send(
        &s,
        "POST",
        "/v1/completions",
        r#"{"prompt":"x","max_tokens":1}"#,
        &[("x-inferscope-fault", "stall_ms=300")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn close_mid_stream_and_mid_body() {
    let s = sim(|_| {}).await;
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":10,"stream":true}"#;
    let r = send(
        &s,
        "POST",
        "/v1/chat/completions",
        body,
        &[("x-inferscope-fault", "close_after=3")],
    )
    .await;
    assert!(r.cut, "the connection must close without a proper end");
    assert_eq!(sse(&r.text()).len(), 3);
    let r = send(
        &s,
        "POST",
        "/v1/completions",
        r#"{"prompt":"x","max_tokens":5}"#,
        &[("x-inferscope-fault", "close_after=10")],
    )
    .await;
    assert!(r.cut);
    assert_eq!(r.body.len(), 10);
}

#[tokio::test]
async fn malformed_event() {
    let s = sim(|_| {}).await;
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"stream":true}"#;
    let r = send(
        &s,
        "POST",
        "/v1/chat/completions",
        body,
        &[("x-inferscope-fault", "malformed_after=1")],
    )
    .await;
    let text = r.text();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert!(
        serde_json::from_str::<serde_json::Value>(events[0].trim_start_matches("data: ")).is_ok()
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(events[1].trim_start_matches("data: ")).is_err(),
        "{}",
        events[1]
    );
    assert_eq!(*events.last().unwrap(), "data: [DONE]");
    assert_eq!(
        events.len(),
        1 + 1 + 4 + 1,
        "role, malformed, four tokens, done"
    );
}

#[tokio::test]
async fn split_events_keep_the_same_bytes_in_more_writes() {
    let s = sim(|c| c.created = Some(1_795_355_464)).await;
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":6,"stream":true,"stream_options":{"include_usage":true}}"#;
    let whole = send(
        &s,
        "POST",
        "/v1/chat/completions",
        body,
        &[("x-request-id", "r1")],
    )
    .await;
    for split in ["split=3", "split=random"] {
        let parts = send(
            &s,
            "POST",
            "/v1/chat/completions",
            body,
            &[("x-request-id", "r1"), ("x-inferscope-fault", split)],
        )
        .await;
        assert_eq!(parts.body, whole.body, "{split}: the same bytes");
        assert!(
            parts.frames > sse(&whole.text()).len() * 2,
            "{split}: {} frames",
            parts.frames
        );
    }
}

#[tokio::test]
async fn a_full_batch_queues_requests() {
    let s = sim(|c| {
        c.engine.max_num_seqs = 2;
        c.engine.step_base_ms = 2.0;
    })
    .await;
    let body = r#"{"prompt":"hi","max_tokens":20,"stream":true}"#;
    let started = Instant::now();
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let url = s.url();
            tokio::spawn(async move {
                let client = common::client();
                let req = http::Request::post(format!("{url}/v1/completions"))
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                        body.as_bytes(),
                    )))
                    .unwrap();
                let resp = client.request(req).await.unwrap();
                let mut b = resp.into_body();
                use http_body_util::BodyExt;
                let mut first = None;
                while let Some(f) = b.frame().await {
                    f.unwrap();
                    first.get_or_insert_with(Instant::now);
                }
                first.unwrap()
            })
        })
        .collect();
    let mut firsts = Vec::new();
    for r in requests {
        firsts.push(r.await.unwrap().duration_since(started));
    }
    firsts.sort();
    // Two run at once; the other two wait at least the first two's twenty steps of 2 ms.
    assert!(
        firsts[2] >= firsts[0] + Duration::from_millis(30),
        "{firsts:?}"
    );
    assert!(
        s.engine_stats()
            .steps
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 40
    );
}

#[tokio::test]
async fn tokens_without_text_send_no_chunk_and_an_empty_final_delta_like_vllm() {
    let s = sim(|c| c.engine.partial_token_probability = 0.5).await;
    let mut saw_empty_finish = false;
    for seed in 0..40 {
        let body = format!(
            r#"{{"messages":[{{"role":"user","content":"hi"}}],"max_tokens":20,"seed":{seed},"stream":true,"stream_options":{{"include_usage":true}}}}"#
        );
        let events = sse(&post(&s, "/v1/chat/completions", &body).await.text());
        let content_chunks = events
            .iter()
            .filter(|e| {
                e["choices"][0]["delta"]
                    .get("content")
                    .is_some_and(|c| c != "")
            })
            .count();
        assert_eq!(
            events[events.len() - 2]["usage"]["completion_tokens"],
            20,
            "every token counts"
        );
        assert!(
            content_chunks < 20,
            "tokens without text send no chunk (seed {seed})"
        );
        let finish = &events[events.len() - 3];
        assert_eq!(finish["choices"][0]["finish_reason"], "length");
        if finish["choices"][0]["delta"] == serde_json::json!({}) {
            saw_empty_finish = true;
        }
    }
    assert!(saw_empty_finish, "some seed ends on a token without text");
}
