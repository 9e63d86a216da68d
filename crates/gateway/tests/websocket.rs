//! WebSocket pass-through (vLLM's `/v1/realtime` is one): a real client and a real server from
//! PyPI's `websockets`, the gateway between them. Messages go both ways unchanged, the session
//! is one SERVER span with its bytes and close code, and an upstream that refuses the upgrade
//! has its answer passed back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use inferscope_core::{SpanKind, Status};
use inferscope_semconv::{http as http_attr, inferscope as own};
use inferscope_testkit::paths::{free_port, python};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/websocket_pair.py")
}

/// The echo server, listening; killed when dropped.
async fn echo_server(python: &std::path::Path) -> (tokio::process::Child, u16) {
    let port = free_port();
    let mut server = tokio::process::Command::new(python)
        .arg(script())
        .args(["server", &port.to_string()])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut err = BufReader::new(server.stderr.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = err.next_line().await {
            if line.contains("READY") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the websocket server did not start");
    (server, port)
}

/// Runs `n` client sessions through the gateway at `addr`; what each saw.
async fn run_sessions(
    python: &std::path::Path,
    addr: std::net::SocketAddr,
    n: usize,
) -> Vec<serde_json::Value> {
    let out = tokio::process::Command::new(python)
        .arg(script())
        .args([
            "client",
            &format!("ws://{addr}/v1/realtime"),
            &n.to_string(),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let seen: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(seen.len(), n, "{text}");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_session_is_tunnelled_and_traced() {
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let (server, port) = echo_server(&python).await;
    let (gw, spans) = gateway(
        &format!("http://127.0.0.1:{port}"),
        |_| {},
        inferscope_core::Sampler::default(),
    )
    .await;
    // Twenty sessions: the server's close frame and its end of the connection arrive right
    // after the last data, a race a single run would rarely lose.
    const SESSIONS: usize = 20;
    let began = Instant::now();
    let sessions = run_sessions(&python, gw.addr(), SESSIONS).await;
    eprintln!("{SESSIONS} sessions in {:?}", began.elapsed());
    for seen in sessions {
        assert_eq!(seen["echoes"], serde_json::json!([11, 14, 70006]));
        assert_eq!(
            seen["binary"],
            serde_json::json!([101, 99, 104, 111, 58, 32, 0, 1, 2])
        );
        assert_eq!(seen["close_code"], 4001);
    }

    let all = take_spans(&spans, SESSIONS).await;
    let servers: Vec<_> = all.iter().filter(|s| s.kind == SpanKind::Server).collect();
    assert_eq!(servers.len(), SESSIONS);
    for s in servers {
        assert_eq!(s.name.as_str(), "GET /v1/realtime");
        assert_eq!(int(s, http_attr::RESPONSE_STATUS_CODE), 101);
        assert_eq!(string(s, own::UPGRADE_PROTOCOL), "websocket");
        // The pair negotiates permessage-deflate: the 70,000-byte message crosses compressed.
        assert!(int(s, own::TUNNEL_BYTES_FROM_CLIENT) > 40);
        assert!(int(s, own::TUNNEL_BYTES_FROM_UPSTREAM) > 40);
        assert_eq!(int(s, own::WEBSOCKET_CLOSE_CODE), 4001);
        assert_eq!(string(s, own::WEBSOCKET_CLOSED_BY), "upstream");
        assert_eq!(s.status, Status::Unset);
    }
    assert!(
        all.iter().all(|s| s.kind != SpanKind::Client),
        "no model call"
    );
    assert!(!format!("{all:?}").contains("ws-secret"));
    assert_eq!(gw.in_flight(), 0, "the session's exchange ended");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_cuts_a_session_at_the_end_of_its_grace_and_keeps_its_span() {
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let (_server, port) = echo_server(&python).await;
    let (gw, spans) = gateway(
        &format!("http://127.0.0.1:{port}"),
        |c| c.shutdown_grace = Duration::from_millis(300),
        inferscope_core::Sampler::default(),
    )
    .await;
    let mut client = tokio::process::Command::new(&python)
        .arg(script())
        .args(["hold", &format!("ws://{}/v1/realtime", gw.addr())])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), out.next_line()).await;
    assert_eq!(line.unwrap().unwrap().as_deref(), Some("READY"));
    assert_eq!(gw.in_flight(), 1);
    let began = Instant::now();
    gw.shutdown().await;
    let took = began.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    let line = tokio::time::timeout(Duration::from_secs(10), out.next_line()).await;
    assert_eq!(
        line.unwrap().unwrap().as_deref(),
        Some("CLOSED"),
        "the client saw its session end"
    );
    let all = take_spans(&spans, 1).await;
    let s = all.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    assert_eq!(
        string(s, inferscope_semconv::attr::ERROR_TYPE),
        "gateway_shutdown"
    );
    assert!(int(s, own::TUNNEL_BYTES_FROM_CLIENT) > 0);
}

#[tokio::test]
async fn an_upstream_that_does_not_switch_has_its_answer_passed_back() {
    let s = stack(|_| {}, |_| {}).await;
    let mut stream = tokio::net::TcpStream::connect(s.gw.addr()).await.unwrap();
    stream
        .write_all(b"GET /v1/realtime HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        while !reply.ends_with(b"}") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    assert!(reply.contains("traceresponse: 00-"), "{reply}");
    assert!(reply.contains("Not Found"), "{reply}");
    let spans = take_spans(&s.spans, 1).await;
    let server = by_kind(&spans, SpanKind::Server);
    assert_eq!(int(server, http_attr::RESPONSE_STATUS_CODE), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_to_an_https_upstream_is_tunnelled_over_tls() {
    use common::pki::{TlsFront, ca, leaf, write_ca};
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let (server, port) = echo_server(&python).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    leaf(&ca, "upstream", dir.path());
    let ca_file = write_ca(&ca, dir.path());
    // The front offers h2 too: a tunnel's connection must still ask for HTTP/1.1 only.
    let front = TlsFront::start(
        format!("127.0.0.1:{port}").parse().unwrap(),
        dir.path(),
        &[b"h2", b"http/1.1"],
        None,
    )
    .await;
    let (gw, spans) = gateway(
        &format!("https://localhost:{}", front.addr.port()),
        |c| c.upstream_tls.ca_certificate = Some(ca_file),
        inferscope_core::Sampler::default(),
    )
    .await;
    // Twenty, as in plain TCP: close right after data, now through TLS's buffering.
    const SESSIONS: usize = 20;
    for seen in run_sessions(&python, gw.addr(), SESSIONS).await {
        assert_eq!(seen["echoes"], serde_json::json!([11, 14, 70006]));
        assert_eq!(
            seen["binary"],
            serde_json::json!([101, 99, 104, 111, 58, 32, 0, 1, 2])
        );
        assert_eq!(seen["close_code"], 4001);
    }
    let all = take_spans(&spans, SESSIONS).await;
    for s in all.iter().filter(|s| s.kind == SpanKind::Server) {
        assert_eq!(int(s, http_attr::RESPONSE_STATUS_CODE), 101);
        assert_eq!(int(s, own::WEBSOCKET_CLOSE_CODE), 4001);
    }
    let shakes = front.handshakes();
    assert_eq!(shakes.len(), SESSIONS);
    assert!(
        shakes
            .iter()
            .all(|h| h.alpn.as_deref() == Some("http/1.1") && h.sni.as_deref() == Some("localhost")),
        "{shakes:?}"
    );
    drop(server);
}
