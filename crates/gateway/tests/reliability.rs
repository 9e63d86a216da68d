//! Reliability under faults: an upstream that closes right after its last bytes, a reused
//! connection that dies after the upstream read the request, clients that send nothing, and a
//! shutdown that has to cut requests. Race-prone cases repeat until a one-in-ten failure
//! would show.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use inferscope_core::{SpanKind, Status};
use inferscope_semconv::{attr, http as http_attr};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Reads one request (head and a `Content-Length` body) from `s`; `None` at the end of the
/// stream.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            let total = end + 4 + len;
            while buf.len() < total {
                let mut chunk = [0u8; 8192];
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let request = buf[..total].to_vec();
            buf.drain(..total);
            return Some(request);
        }
        let mut chunk = [0u8; 8192];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A scripted upstream on loopback: `each` runs for every connection it accepts.
async fn scripted<F, Fut>(each: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(each(s));
        }
    });
    addr
}

/// An upstream that answers each request with `reply` in one write and closes the connection
/// in the same breath.
async fn closing_upstream(reply: &'static [u8]) -> SocketAddr {
    scripted(move |mut s| async move {
        let mut buf = Vec::new();
        if read_request(&mut s, &mut buf).await.is_some() {
            let _ = s.write_all(reply).await;
        }
        // Dropped here: the FIN follows the last bytes at once.
    })
    .await
}

/// What a client made of a response read to the end of the connection.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: Option<u16>,
    body: Vec<u8>,
    complete: bool,
}

/// Sends `request` on a new connection and reads until the response is complete or the
/// server closes the connection.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Seen {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut wire = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => wire.extend_from_slice(&chunk[..n]),
            }
            if framed(&wire) && parse_response(&wire).complete {
                break;
            }
        }
    })
    .await
    .expect("the response ends");
    parse_response(&wire)
}

/// Whether the response says where its body ends (else it ends with the connection).
fn framed(wire: &[u8]) -> bool {
    let head = String::from_utf8_lossy(wire).to_ascii_lowercase();
    head.contains("content-length:") || head.contains("transfer-encoding:")
}

fn parse_response(wire: &[u8]) -> Seen {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut fields);
    let Ok(httparse::Status::Complete(used)) = r.parse(wire) else {
        return Seen {
            status: None,
            body: Vec::new(),
            complete: false,
        };
    };
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
    };
    let rest = &wire[used..];
    let (body, complete) = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)
    } else if let Some(len) = header("content-length") {
        let len: usize = len.trim().parse().unwrap();
        (rest[..len.min(rest.len())].to_vec(), rest.len() >= len)
    } else {
        (rest.to_vec(), true)
    };
    Seen {
        status: r.code,
        body,
        complete,
    }
}

/// Decodes what arrived of a chunked body; complete only with its last chunk.
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let line = String::from_utf8_lossy(&rest[..nl]);
        let Ok(size) = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
        else {
            return (body, false);
        };
        rest = &rest[nl + 2..];
        if size == 0 {
            return (body, rest.starts_with(b"\r\n"));
        }
        let take = size.min(rest.len());
        body.extend_from_slice(&rest[..take]);
        if rest.len() < size + 2 {
            return (body, false);
        }
        rest = &rest[size + 2..];
    }
}

const SHORT_LENGTH: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"model\":\"m\"";
const CHUNKED_CUT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\n world, and";
const SSE_CUT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
60\r\ndata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0}]}\n\n\r\n\
60\r\ndata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":1}]}\n\n\r\n";
const UNTIL_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"object\":\"list\",\"data\":[]}";
const WHOLE_THEN_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 27\r\n\r\n{\"object\":\"list\",\"data\":[]}";

fn request(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An upstream that writes its last bytes and its FIN together (a short `Content-Length`
/// body, a chunked body cut mid-chunk, an event stream cut between events, a body delimited
/// by the close, a whole body and then the close): through the gateway the client gets
/// exactly what it gets directly, 30 times out of 30, and the spans record the truncation.
#[tokio::test]
async fn an_upstream_that_closes_right_after_its_last_bytes_loses_nothing() {
    const TRIES: usize = 30;
    let chat = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let chat_stream = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;
    let cases: [(&str, &[u8], &str, &str, bool); 6] = [
        (
            "short Content-Length",
            SHORT_LENGTH,
            "/v1/completions",
            chat,
            false,
        ),
        (
            "short Content-Length, not traced as inference",
            SHORT_LENGTH,
            "/v1/other",
            chat,
            false,
        ),
        (
            "chunked, cut mid-chunk",
            CHUNKED_CUT,
            "/v1/chat/completions",
            chat,
            false,
        ),
        (
            "event stream, cut between events",
            SSE_CUT,
            "/v1/chat/completions",
            chat_stream,
            false,
        ),
        (
            "delimited by the close",
            UNTIL_CLOSE,
            "/v1/chat/completions",
            chat,
            true,
        ),
        (
            "whole, then closed",
            WHOLE_THEN_CLOSE,
            "/v1/models",
            "",
            true,
        ),
    ];
    for (name, reply, path, body, complete) in cases {
        let up = closing_upstream(reply).await;
        let (gw, spans) = gateway(
            &format!("http://{up}"),
            |_| {},
            inferscope_core::Sampler::default(),
        )
        .await;
        let req = request(path, body);
        let direct = raw_exchange(up, &req).await;
        assert_eq!(direct.status, Some(200), "{name}: direct");
        assert_eq!(direct.complete, complete, "{name}: direct");
        let mut wrong = Vec::new();
        for i in 0..TRIES {
            let through = raw_exchange(gw.addr(), &req).await;
            if through != direct {
                wrong.push((i, through));
            }
        }
        assert!(
            wrong.is_empty(),
            "{name}: {} of {TRIES} differ from the direct {direct:?}, e.g. {:?}",
            wrong.len(),
            wrong.first()
        );
        let got = take_spans(
            &spans,
            if path == "/v1/other" || path == "/v1/models" {
                TRIES
            } else {
                2 * TRIES
            },
        )
        .await;
        for s in &got {
            assert_eq!(
                int(s, http_attr::RESPONSE_STATUS_CODE),
                200,
                "{name}: {s:?}"
            );
            if complete {
                assert_eq!(s.status, Status::Unset, "{name}: {s:?}");
            } else {
                assert_eq!(
                    string(s, attr::ERROR_TYPE),
                    "upstream_broken",
                    "{name}: {s:?}"
                );
                assert!(
                    matches!(&s.status, Status::Error(m) if m.contains("before the body ended")),
                    "{name}: {s:?}"
                );
            }
        }
        assert_eq!(gw.in_flight(), 0, "{name}");
    }
}

/// The simulator's `close_after` fault: the stream's last events before the cut reach the
/// client every time, and the stream is cut (no `[DONE]`), as it is directly.
#[tokio::test]
async fn a_stream_cut_by_the_simulator_reaches_the_client_up_to_the_cut() {
    let s = stack(|_| {}, |_| {}).await;
    let body = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"Say hello"}],"max_tokens":12,"seed":3,"stream":true,"stream_options":{"include_usage":true}}"#;
    for (path, body) in [
        ("/v1/chat/completions", body),
        (
            "/v1/completions",
            r#"{"model":"tiny-llama","prompt":"Say hello","max_tokens":12,"seed":3}"#,
        ),
    ] {
        let req = format!(
            "POST {path} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\nx-inferscope-fault: close_after=3\r\nx-request-id: cut\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let direct = raw_exchange(s.sim.addr(), req.as_bytes()).await;
        assert!(
            !direct.complete && !direct.body.is_empty(),
            "{path}: {direct:?}"
        );
        for i in 0..20 {
            let through = raw_exchange(s.gw.addr(), req.as_bytes()).await;
            assert_eq!(through, direct, "{path}, try {i}");
        }
        let spans = take_spans(&s.spans, 40).await;
        let clients: Vec<_> = spans
            .iter()
            .filter(|s| s.kind == SpanKind::Client)
            .collect();
        assert_eq!(clients.len(), 20);
        for c in clients {
            assert_eq!(string(c, attr::ERROR_TYPE), "upstream_broken");
        }
    }
}

/// An upstream that serves the first request on each connection and, on the second, reads the
/// request whole and closes without answering (it crashed, or its worker was killed). Counts
/// the requests it read.
async fn reads_then_dies() -> (SocketAddr, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let addr = scripted(move |mut s| {
        let counter = counter.clone();
        async move {
            let mut buf = Vec::new();
            let mut n = 0;
            while read_request(&mut s, &mut buf).await.is_some() {
                counter.fetch_add(1, Ordering::SeqCst);
                n += 1;
                if n == 2 {
                    return;
                }
                let body = br#"{"id":"cmpl-1","object":"text_completion","model":"m","choices":[]}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body).await;
            }
        }
    })
    .await;
    (addr, seen)
}

/// A POST that a reused upstream connection carried whole before it died is never sent again
/// (a second generation on the GPU): the client gets a 502, the upstream saw it once.
#[tokio::test]
async fn a_request_the_upstream_may_have_read_is_not_sent_twice() {
    for path in ["/v1/completions", "/v1/files"] {
        let (up, seen) = reads_then_dies().await;
        let (gw, spans) = gateway(
            &format!("http://{up}"),
            |_| {},
            inferscope_core::Sampler::default(),
        )
        .await;
        let body = r#"{"model":"m","prompt":"hi"}"#;
        let first = post(&gw.url(), path, body, &[]).await;
        assert_eq!(first.status, 200, "{path}");
        let second = post(&gw.url(), path, body, &[]).await;
        assert_eq!(second.status, 502, "{path}: {}", second.text());
        // Let a replay, if any, arrive.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            seen.load(Ordering::SeqCst),
            2,
            "{path}: the upstream read a request twice"
        );
        let got = take_spans(&spans, if path == "/v1/files" { 2 } else { 4 }).await;
        assert!(
            got.iter().any(
                |s| s.get(attr::ERROR_TYPE).and_then(|v| v.as_str()) == Some("upstream_broken")
            ),
            "{got:?}"
        );
    }
}

/// A pooled connection the upstream closed while it was idle is noticed before it is used:
/// the next request goes on a new connection and succeeds, sent once.
#[tokio::test]
async fn a_connection_closed_while_idle_is_not_used() {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let up = scripted(move |mut s| {
        let counter = counter.clone();
        async move {
            let mut buf = Vec::new();
            if read_request(&mut s, &mut buf).await.is_some() {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // A keep-alive timeout, as uvicorn's: closed while idle.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await;
    let (gw, _spans) = gateway(
        &format!("http://{up}"),
        |_| {},
        inferscope_core::Sampler::default(),
    )
    .await;
    for i in 0..10 {
        let r = post(
            &gw.url(),
            "/v1/completions",
            r#"{"model":"m","prompt":"hi"}"#,
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(seen.load(Ordering::SeqCst), 10);
}

/// The same over HTTP/2 from the client (h2c): the data before the upstream's break arrives,
/// then the stream is reset, 20 times out of 20.
#[tokio::test]
async fn an_http2_client_gets_the_data_before_the_break_then_a_reset() {
    use http_body_util::BodyExt as _;
    let up = closing_upstream(SSE_CUT).await;
    let (gw, _spans) = gateway(
        &format!("http://{up}"),
        |_| {},
        inferscope_core::Sampler::default(),
    )
    .await;
    let direct = raw_exchange(up, &request("/v1/chat/completions", "{}")).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    for i in 0..20 {
        let req = http::Request::post(format!("{}/v1/chat/completions", gw.url()))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut got = Vec::new();
        let mut reset = false;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => got.extend_from_slice(&f.into_data().unwrap_or_default()),
                Err(_) => {
                    reset = true;
                    break;
                }
            }
        }
        assert!(reset, "try {i}: the stream ended as if complete");
        assert_eq!(got, direct.body, "try {i}");
    }
}

/// The bytes held for parsing are bounded across requests: while one large body is held (its
/// upstream reads nothing), a second that does not fit the shared budget is not parsed; it
/// streams through unparsed, and its span says why.
#[tokio::test]
async fn bodies_held_for_parsing_are_bounded_across_requests() {
    use inferscope_semconv::inferscope as own;
    // An upstream that accepts and never reads: the first body stays in the gateway.
    let up = scripted(|s| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    })
    .await;
    let (gw, spans) = gateway(
        &format!("http://{up}"),
        |c| {
            c.max_parse_bytes = 24 << 20;
            c.max_parse_bytes_total = 24 << 20;
            c.timeouts.first_byte = Duration::from_secs(2);
        },
        inferscope_core::Sampler::default(),
    )
    .await;
    let big = |tag: &str| {
        let filler = "x".repeat(16 << 20);
        format!(r#"{{"model":"{tag}","messages":[{{"role":"user","content":"{filler}"}}]}}"#)
    };
    let first = tokio::spawn({
        let url = gw.url();
        let body = big("first");
        async move { post(&url, "/v1/chat/completions", &body, &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = post(&gw.url(), "/v1/chat/completions", &big("second"), &[]).await;
    assert_eq!(second.status, 504);
    assert_eq!(first.await.unwrap().status, 504);
    let got = take_spans(&spans, 4).await;
    let clients: Vec<_> = got.iter().filter(|s| s.kind == SpanKind::Client).collect();
    assert_eq!(clients.len(), 2);
    let parsed = clients
        .iter()
        .find(|s| s.get(attr::REQUEST_MODEL).and_then(|v| v.as_str()) == Some("first"))
        .expect("the first body was parsed");
    assert!(parsed.get(own::BODY_PARSE_ERROR).is_none(), "{parsed:?}");
    let unparsed = clients
        .iter()
        .find(|s| s.get(attr::REQUEST_MODEL).is_none())
        .expect("the second body was not parsed");
    assert!(
        string(unparsed, own::BODY_PARSE_ERROR).contains("bytes for parsing"),
        "{unparsed:?}"
    );
}

/// A body with `stream_options` but no `include_usage`: only `include_usage` is added, every
/// other byte (key order, a number too large for a double) reaches the upstream unchanged.
#[tokio::test]
async fn only_include_usage_is_added_to_stream_options() {
    let (up, _task) = echo_server().await;
    let (gw, _spans) = gateway(
        &format!("http://{up}"),
        |_| {},
        inferscope_core::Sampler::default(),
    )
    .await;
    let sent = r#"{"seed":123456789012345678901234,"stream":true,"model":"m","stream_options":{"x":1},"messages":[]}"#;
    let want = r#"{"seed":123456789012345678901234,"stream":true,"model":"m","stream_options":{"include_usage":true,"x":1},"messages":[]}"#;
    let r = post(&gw.url(), "/v1/chat/completions", sent, &[]).await;
    let echo = r.json();
    assert_eq!(echo["body_len"], want.len(), "{echo}");
    assert_eq!(echo["body_fnv"], fnv(want.as_bytes()), "{echo}");
}

/// Streams still running when the grace period ends, over HTTP/1.1 and over HTTP/2, have ended
/// their spans (marked as cut by the shutdown) by the time `shutdown` returns, so an exporter
/// flushed afterwards loses none.
#[tokio::test]
async fn shutdown_returns_once_every_cut_exchange_has_its_spans() {
    use http_body_util::BodyExt as _;
    let s = stack(
        |c| c.engine.step_base_ms = 25.0,
        |c| c.shutdown_grace = Duration::from_millis(300),
    )
    .await;
    let body = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":400,"ignore_eos":true,"stream":true}"#;
    let mut bodies = Vec::new();
    for h2 in [false, true] {
        for _ in 0..3 {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .http2_only(h2)
                    .build_http::<http_body_util::Full<bytes::Bytes>>();
            let req = http::Request::post(format!("{}/v1/chat/completions", s.gw.url()))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    body.as_bytes(),
                )))
                .unwrap();
            let mut resp = client.request(req).await.unwrap().into_body();
            // The stream has started.
            resp.frame().await.unwrap().unwrap();
            bodies.push((client, resp));
        }
    }
    assert_eq!(s.gw.in_flight(), 6);
    let clean = s.gw.shutdown().await;
    assert!(!clean);
    let got = s.spans.take();
    let cut = got
        .iter()
        .filter(|sp| sp.get(attr::ERROR_TYPE).and_then(|v| v.as_str()) == Some("gateway_shutdown"))
        .count();
    assert_eq!((got.len(), cut), (12, 12), "{got:?}");
    assert!(
        got.iter()
            .all(|sp| matches!(sp.status, inferscope_core::Status::Error(_))),
        "a cut by the gateway's own shutdown is its error, on both spans"
    );
    drop(bodies);
}

/// A client that trickles an inference body holds its share of the parse budget for the header
/// timeout at most: then the part read goes upstream, the rest streams behind it unparsed, the
/// upstream gets every byte, and the span says why nothing was parsed.
#[tokio::test]
async fn a_trickled_body_is_forwarded_unparsed_after_the_header_timeout() {
    use inferscope_semconv::inferscope as own;
    let (up, _task) = echo_server().await;
    let (gw, spans) = gateway(
        &format!("http://{up}"),
        |c| c.header_timeout = Some(Duration::from_millis(300)),
        inferscope_core::Sampler::default(),
    )
    .await;
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hello there"}]}"#;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.write_all(&body[10..]).await.unwrap();
    let mut wire = Vec::new();
    let mut chunk = [0u8; 4096];
    while !framed(&wire) || !parse_response(&wire).complete {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early");
        wire.extend_from_slice(&chunk[..n]);
    }
    let seen = parse_response(&wire);
    assert_eq!(seen.status, Some(200));
    let echo: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(echo["body_len"], body.len());
    assert_eq!(echo["body_fnv"], fnv(body));
    let got = take_spans(&spans, 2).await;
    let client = got.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    assert!(
        string(client, own::BODY_PARSE_ERROR).contains("still arriving"),
        "{client:?}"
    );
}

/// A client that sends its whole body before it reads (as curl and Python's `requests` do)
/// gets an upstream's early answer, not a reset: the gateway reads away the rest of the
/// upload before it closes the connection.
#[tokio::test]
async fn a_client_still_uploading_gets_the_early_answer() {
    const BODY: usize = 16 << 20;
    let upstream = scripted(|mut s| async move {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let body = r#"{"error":{"message":"upload too large","type":"PayloadTooLarge"}}"#;
        let reply = format!(
            "HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(reply.as_bytes()).await;
        // Closed with the upload unread.
    })
    .await;
    let (gw, _spans) = gateway(
        &format!("http://{upstream}"),
        |_| {},
        inferscope_core::Sampler::default(),
    )
    .await;
    let addr: SocketAddr = gw.addr();
    let upload = vec![b'x'; BODY];
    for path in ["/v1/files", "/v1/chat/completions"] {
        for attempt in 0..10 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {BODY}\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            let sent = tokio::time::timeout(Duration::from_secs(10), s.write_all(&upload))
                .await
                .expect("the upload is read in time");
            assert!(sent.is_ok(), "{path} #{attempt}: upload failed: {sent:?}");
            // Read until the answer is complete (the connection may stay open for the next).
            let mut wire = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), async {
                let mut chunk = [0u8; 8192];
                while !parse_response(&wire).complete {
                    match s.read(&mut chunk).await {
                        Ok(0) => break,
                        Ok(n) => wire.extend_from_slice(&chunk[..n]),
                        Err(e) => panic!("{path} #{attempt}: the answer, not {e}"),
                    }
                }
            })
            .await
            .expect("the answer in time");
            let seen = parse_response(&wire);
            assert_eq!(seen.status, Some(413), "{path} #{attempt}");
            assert!(seen.complete, "{path} #{attempt}: {seen:?}");
        }
    }
}

/// A request head over `max_request_head_bytes` gets 431; one under it, or under a raised
/// limit, is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_the_limit_gets_431_and_the_limit_can_be_raised() {
    let s = stack(|_| {}, |_| {}).await;
    let with_header = |len: usize| {
        let value = "k".repeat(len);
        format!(
            "GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-big: {value}\r\nconnection: close\r\n\r\n"
        )
        .into_bytes()
    };
    assert_eq!(
        raw_exchange(s.gw.addr(), &with_header(6000)).await.status,
        Some(200)
    );
    assert_eq!(
        raw_exchange(s.gw.addr(), &with_header(12_000)).await.status,
        Some(431)
    );
    let raised = stack(|_| {}, |c| c.max_request_head_bytes = 32 << 10).await;
    assert_eq!(
        raw_exchange(raised.gw.addr(), &with_header(12_000))
            .await
            .status,
        Some(200)
    );
}
