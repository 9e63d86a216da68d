//! `https://` upstreams: a TLS front with a generated CA before the simulator (or the echo
//! server), the gateway trusting that CA. HTTP/1.1 and HTTP/2 as ALPN settles them, SNI from
//! the URL's host, mutual TLS, an untrusted certificate, and a WebSocket tunnel over TLS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use common::pki::{Ca, Handshake, TlsFront, ca, leaf, leaf_for, write_ca};
use common::*;
use inferscope_core::{Sampler, SpanKind, Status};
use inferscope_gateway::config::GatewayConfig;
use inferscope_semconv::{attr, http as http_attr, inferscope as own};
use inferscope_sim::Sim;

const CHAT: &str =
    r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#;
const CHAT_STREAM: &str = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true}"#;

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
}

/// A CA, a server certificate for localhost in `server/`, a client one in `client/`.
fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    for sub in ["server", "client"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        leaf(&ca, sub, &dir.path().join(sub));
    }
    write_ca(&ca, dir.path());
    Pki { dir, ca }
}

impl Pki {
    fn trust(&self) -> impl FnOnce(&mut GatewayConfig) + '_ {
        |c| c.upstream_tls.ca_certificate = Some(self.dir.path().join("ca.pem"))
    }

    fn server_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("server")
    }
}

async fn sim() -> Sim {
    Sim::start(sim_config()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_speaking_http1_is_proxied_byte_for_byte_and_traced() {
    let pki = pki();
    let sim = sim().await;
    let front = TlsFront::start(sim.addr(), &pki.server_dir(), &[b"http/1.1"], None).await;
    let url = format!("https://localhost:{}", front.addr.port());
    let (gw, spans) = gateway(&url, pki.trust(), Sampler::default()).await;

    for (i, body) in [CHAT, CHAT_STREAM].into_iter().enumerate() {
        let id = [("x-request-id", format!("tls-{i}"))];
        let h: Vec<(&str, &str)> = id.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let direct = post(&sim.url(), "/v1/chat/completions", body, &h).await;
        let proxied = post(&gw.url(), "/v1/chat/completions", body, &h).await;
        assert_eq!(proxied.status, 200, "{}", proxied.text());
        assert_eq!(proxied.text(), direct.text(), "case {i}");
        let all = take_spans(&spans, 2).await;
        let client = by_kind(&all, SpanKind::Client);
        assert_eq!(client.status, Status::Unset);
        assert_eq!(string(client, attr::SERVER_ADDRESS), "localhost");
        assert_eq!(int(client, attr::SERVER_PORT), i64::from(front.addr.port()));
        assert_eq!(string(client, own::UPSTREAM), url);
        assert_eq!(string(client, http_attr::NETWORK_PROTOCOL_VERSION), "1.1");
        assert!(int(client, attr::USAGE_OUTPUT_TOKENS) > 0, "case {i}");
        if i == 1 {
            assert!(float(client, attr::RESPONSE_TIME_TO_FIRST_CHUNK) > 0.0);
        }
    }
    // /readyz asks the upstream's /health over TLS too.
    let admin = format!("http://{}", gw.admin_addr().unwrap());
    let ready = send(&admin, "GET", "/readyz", "", &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    // SNI from the URL's host; the pool reused its connection.
    let shakes = front.handshakes();
    assert!(!shakes.is_empty());
    assert!(shakes.len() <= 2, "{shakes:?}");
    for h in shakes {
        assert_eq!(
            h,
            Handshake {
                alpn: Some("http/1.1".into()),
                sni: Some("localhost".into()),
                client_certificate: false
            }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_spoken_when_the_upstream_offers_it() {
    let pki = pki();
    let sim = sim().await;
    let front = TlsFront::start(sim.addr(), &pki.server_dir(), &[b"h2", b"http/1.1"], None).await;
    let url = format!("https://localhost:{}", front.addr.port());
    let (gw, spans) = gateway(&url, pki.trust(), Sampler::default()).await;
    // Streamed, and several at once over the one connection.
    let requests = (0..4).map(|i| {
        let url = gw.url();
        async move {
            let id = format!("h2-{i}");
            post(
                &url,
                "/v1/chat/completions",
                CHAT_STREAM,
                &[("x-request-id", id.as_str())],
            )
            .await
        }
    });
    for reply in futures_util::future::join_all(requests).await {
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(
            reply.text().ends_with("data: [DONE]\n\n"),
            "{}",
            reply.text()
        );
    }
    let all = take_spans(&spans, 8).await;
    for client in all.iter().filter(|s| s.kind == SpanKind::Client) {
        assert_eq!(string(client, http_attr::NETWORK_PROTOCOL_VERSION), "2");
        assert!(int(client, attr::USAGE_OUTPUT_TOKENS) > 0);
        assert!(float(client, attr::RESPONSE_TIME_TO_FIRST_CHUNK) > 0.0);
    }
    let shakes = front.handshakes();
    assert!(
        shakes.iter().all(|h| h.alpn.as_deref() == Some("h2")),
        "{shakes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_presents_the_client_certificate_and_forwards_authorization_unrecorded() {
    let pki = pki();
    let (echo, _task) = echo_server().await;
    let front = TlsFront::start(echo, &pki.server_dir(), &[b"http/1.1"], Some(&pki.ca)).await;
    let url = format!("https://localhost:{}", front.addr.port());
    let headers = [("authorization", "Bearer sk-upstream-secret")];

    // Without a client certificate the upstream refuses the handshake: a 502 that says so.
    let (gw, spans) = gateway(&url, pki.trust(), Sampler::default()).await;
    let refused = post(&gw.url(), "/v1/chat/completions", CHAT, &headers).await;
    assert_eq!(refused.status, 502, "{}", refused.text());
    let all = take_spans(&spans, 2).await;
    let client = by_kind(&all, SpanKind::Client);
    assert!(matches!(client.status, Status::Error(_)));
    eprintln!("without a client certificate: {:?}", client.status);
    drop(gw);

    // With one: the request goes through, `authorization` reaches the upstream, no span has it.
    let client_dir = pki.dir.path().join("client");
    let (gw, spans) = gateway(
        &url,
        |c| {
            pki.trust()(c);
            c.upstream_tls.client_certificate = Some(client_dir.join("cert.pem"));
            c.upstream_tls.client_key = Some(client_dir.join("key.pem"));
        },
        Sampler::default(),
    )
    .await;
    let reply = post(&gw.url(), "/v1/chat/completions", CHAT, &headers).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = reply.json();
    let got = |name: &str| {
        seen["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .map(|h| h[1].as_str().unwrap().to_owned())
    };
    assert_eq!(
        got("authorization").as_deref(),
        Some("Bearer sk-upstream-secret")
    );
    assert_eq!(
        got("host"),
        Some(format!("localhost:{}", front.addr.port()))
    );
    let all = take_spans(&spans, 2).await;
    assert!(!format!("{all:?}").contains("sk-upstream-secret"));
    assert!(front.handshakes().iter().any(|h| h.client_certificate));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_the_gateway_does_not_trust_is_a_502_naming_the_reason() {
    let pki = pki();
    let sim = sim().await;
    let front = TlsFront::start(sim.addr(), &pki.server_dir(), &[b"http/1.1"], None).await;
    // The system's roots only: the test CA is unknown.
    let url = format!("https://localhost:{}", front.addr.port());
    let (gw, spans) = gateway(&url, |_| {}, Sampler::default()).await;
    let reply = post(&gw.url(), "/v1/chat/completions", CHAT, &[]).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    let all = take_spans(&spans, 2).await;
    let client = by_kind(&all, SpanKind::Client);
    let Status::Error(why) = &client.status else {
        panic!("{:?}", client.status)
    };
    eprintln!("refused: {why}");
    assert!(why.contains("certificate"), "{why}");
    // A certificate for another name: refused even from the trusted CA.
    let elsewhere = pki.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    leaf_for(&pki.ca, "elsewhere", &["upstream.example"], &elsewhere);
    let other = TlsFront::start(sim.addr(), &elsewhere, &[b"http/1.1"], None).await;
    let url = format!("https://localhost:{}", other.addr.port());
    let (gw, spans) = gateway(&url, pki.trust(), Sampler::default()).await;
    let reply = post(&gw.url(), "/v1/chat/completions", CHAT, &[]).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    let all = take_spans(&spans, 2).await;
    let Status::Error(why) = &by_kind(&all, SpanKind::Client).status else {
        panic!()
    };
    eprintln!("refused: {why}");
    assert!(why.contains("certificate"), "{why}");
}

#[tokio::test]
async fn unusable_tls_files_stop_the_start_with_the_file_named() {
    let pki = pki();
    let missing = pki.dir.path().join("nowhere.pem");
    let not_pem = pki.dir.path().join("server").join("key.pem");
    for (ca, why) in [(missing, "nowhere.pem"), (not_pem, "no certificate found")] {
        let mut config = GatewayConfig::local("https://localhost:9").unwrap();
        config.upstream_tls.ca_certificate = Some(ca);
        let e =
            inferscope_gateway::Gateway::start(config, inferscope_core::Tracer::disabled(), None)
                .await
                .unwrap_err()
                .to_string();
        assert!(e.starts_with("upstream TLS: TLS file"), "{e}");
        assert!(e.contains(why), "{e}");
        assert!(!e.contains("PRIVATE KEY"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_upstream_closed_while_idle_is_not_reused() {
    let pki = pki();
    let sim = sim().await;
    // The upstream closes a connection idle for 100 ms; the gateway keeps idle ones 4 s.
    let front = TlsFront::start_closing_idle(
        sim.addr(),
        &pki.server_dir(),
        &[b"http/1.1"],
        None,
        Some(std::time::Duration::from_millis(100)),
    )
    .await;
    let url = format!("https://localhost:{}", front.addr.port());
    let (gw, spans) = gateway(&url, pki.trust(), Sampler::default()).await;
    // Each request comes after the last connection was closed: twenty of them, so a one in
    // ten failure to notice the close would show.
    for i in 0..20 {
        let reply = post(&gw.url(), "/v1/chat/completions", CHAT, &[]).await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        let _ = take_spans(&spans, 2).await;
        tokio::time::sleep(std::time::Duration::from_millis(150 + (i % 3) * 20)).await;
    }
    // A new connection each time: none was reused after its close.
    assert!(
        front.handshakes().len() >= 20,
        "{}",
        front.handshakes().len()
    );
}
