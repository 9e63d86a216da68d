//! TLS on the proxy listener: a certificate from a generated CA, a client that trusts only that
//! CA, HTTP/1.1 and HTTP/2 (ALPN), and the pair read again while serving (SIGHUP's path).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::sync::Arc;

use common::pki::{Ca, ca, leaf};
use common::*;
use inferscope_core::SpanKind;
use inferscope_semconv::http as http_attr;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TLS connection trusting only `ca`, offering `alpn`; returns the stream.
async fn connect(
    addr: std::net::SocketAddr,
    ca: &Ca,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// The common name of the certificate the server showed.
fn served_cn(stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    let der = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    // The CN is the only printable run of the test's names in the DER.
    ["first", "second"]
        .into_iter()
        .find(|n| der.windows(n.len()).any(|w| w == n.as_bytes()))
        .unwrap_or("?")
        .to_owned()
}

#[tokio::test]
async fn the_listener_serves_tls_and_takes_a_new_certificate_without_restarting() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    leaf(&ca, "first", dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let s = stack(|_| {}, |c| c.tls = Some((cert.clone(), key.clone()))).await;

    // HTTP/1.1 over TLS, end to end through the gateway.
    let mut stream = connect(s.gw.addr(), &ca, &[b"http/1.1"]).await;
    assert_eq!(served_cn(&stream), "first");
    let body =
        r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":3}"#;
    stream
        .write_all(format!("POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("chat.completion"), "{reply}");
    let spans = take_spans(&s.spans, 2).await;
    let server = by_kind(&spans, SpanKind::Server);
    assert_eq!(string(server, http_attr::URL_SCHEME), "https");

    // HTTP/2 is offered through ALPN.
    let stream = connect(s.gw.addr(), &ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(stream);

    // A new pair in place, read again: new connections get it.
    leaf(&ca, "second", dir.path());
    assert_eq!(s.gw.reload_tls(), Ok(true));
    let stream = connect(s.gw.addr(), &ca, &[b"http/1.1"]).await;
    assert_eq!(served_cn(&stream), "second");
    drop(stream);

    // A broken file: the error names it, the pair in use stays.
    std::fs::write(&key, "not a key").unwrap();
    let e = s.gw.reload_tls().unwrap_err();
    assert!(e.contains("key.pem"), "{e}");
    let stream = connect(s.gw.addr(), &ca, &[b"http/1.1"]).await;
    assert_eq!(served_cn(&stream), "second");
}

#[tokio::test]
async fn a_certificate_without_its_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    leaf(&ca, "first", dir.path());
    let other = tempfile::tempdir().unwrap();
    leaf(&ca, "second", other.path());
    // The key of another certificate.
    let mut config =
        inferscope_gateway::config::GatewayConfig::local("http://127.0.0.1:9").unwrap();
    config.tls = Some((dir.path().join("cert.pem"), other.path().join("key.pem")));
    let tracer = inferscope_core::Tracer::disabled();
    let e = inferscope_gateway::Gateway::start(config, tracer, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("TLS:"), "{e}");
}
