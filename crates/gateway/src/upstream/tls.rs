//! TLS to an `https://` upstream (ADR 0015): rustls with the system's roots plus an optional
//! CA, an optional client identity (mutual TLS), SNI from the URL's host.
//!
//! Requests go through hyper's pooled client over a rustls connector that offers `h2` and
//! `http/1.1` through ALPN, so each connection speaks HTTP/2 when the upstream offers it and
//! HTTP/1.1 otherwise. A WebSocket tunnel gets a connection of its own that offers only
//! `http/1.1` (an upgrade is an HTTP/1.1 exchange).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::failure::Failure;

/// What TLS to an upstream needs: the connector for hyper's client, and one for tunnels.
#[derive(Clone)]
pub(crate) struct UpstreamTls {
    /// `h2` and `http/1.1` offered.
    pub(crate) requests: hyper_rustls::HttpsConnector<HttpConnector>,
    /// Only `http/1.1` offered.
    pub(crate) tunnels: TlsConnector,
}

impl UpstreamTls {
    /// Reads the CA and client identity files and builds both connectors.
    pub(crate) fn new(
        files: &inferscope_export::config::TlsConfig,
        connect_timeout: Duration,
    ) -> Result<UpstreamTls, inferscope_export::otlp::BuildError> {
        let config = inferscope_export::otlp::tls::client_config(files)?;
        let mut tunnel_config = config.clone();
        tunnel_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let requests = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_all_versions()
            .wrap_connector(http);
        Ok(UpstreamTls {
            requests,
            tunnels: TlsConnector::from(Arc::new(tunnel_config)),
        })
    }

    /// A TLS connection for a tunnel to `host:port`, the handshake done within `timeout`.
    pub(crate) async fn connect_tunnel(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Stream, Failure> {
        let started = tokio::time::Instant::now();
        let tcp = super::connect_tcp(host, port, timeout).await?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls_pki_types::ServerName::try_from(bare.to_owned())
            .map_err(|_| Failure::Connect(format!("`{bare}` is not a TLS server name")))?;
        let left = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, self.tunnels.connect(name, tcp)).await {
            Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls))),
            Ok(Err(e)) => Err(Failure::Connect(format!("TLS handshake: {e}"))),
            Err(_) => Err(Failure::Connect(format!(
                "no TLS handshake within {} ms",
                timeout.as_millis()
            ))),
        }
    }
}

/// A connector that gives up when `inner` has not connected within `timeout`: the TCP
/// connect and the TLS handshake together (hyper's connector bounds only the first).
#[derive(Clone)]
pub(crate) struct Timed<C> {
    pub(crate) inner: C,
    pub(crate) timeout: Duration,
}

impl<C> tower_service::Service<Uri> for Timed<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = C::Response;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(format!(
                    "no connection (TCP and TLS handshake) within {} ms",
                    timeout.as_millis()
                )
                .into()),
            }
        })
    }
}

/// An upstream connection of a tunnel: plain TCP or TLS.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
