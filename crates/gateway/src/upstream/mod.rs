//! The upstream, as the request path sees it: [`Upstream::send`] takes a request and returns
//! the response head and an [`UpstreamBody`]. HTTP/1.1 goes over the gateway's own connections
//! ([`Pool`], [`h1`]); h2c, and `https://` upstreams (HTTP/2 or HTTP/1.1 by ALPN, [`tls`]),
//! over hyper's pooled client.
//!
//! A connection belongs to the request using it. Its response body ([`Body`]) reads the socket
//! directly when the client side asks for more: everything that arrived together leaves
//! together, and nothing waits for bytes that have not arrived ([`h1`], ADR 0010).
//!
//! The pool keeps idle connections (most recently used first) up to a count and an age. A
//! connection the upstream closed while idle is noticed when it is checked out. A request is
//! sent once more, on a fresh connection, only when a reused connection failed before any of
//! its bytes were written and its body is in memory: a request the upstream may have read is
//! never sent twice (RFC 9110 §9.2.2; ADR 0010). h2c upstreams use hyper's pooled client, which
//! retries only requests it never started to write.

pub(crate) mod h1;
pub(crate) mod tls;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpStream;

use crate::failure::{Failure, describe};
use crate::request_body::{BoxError, RequestBody};
use h1::{Conn, Framing};

/// The one client of the upstream (clones share connections).
#[derive(Clone)]
pub(crate) enum Upstream {
    /// HTTP/1.1 over the gateway's own connections.
    H1(Arc<Pool>),
    /// HTTP/2 with prior knowledge, over hyper's pooled client (HTTP/2 streams buffer their
    /// data frames anyway).
    H2c(Box<Client<HttpConnector, RequestBody>>),
    /// `https://`: HTTP/2 or HTTP/1.1 per connection as ALPN settles it, over hyper's pooled
    /// client (ADR 0015).
    Tls(Box<TlsClient>),
}

/// hyper's client over rustls, and the connector of tunnels.
#[derive(Clone)]
pub(crate) struct TlsClient {
    client: Client<tls::Timed<hyper_rustls::HttpsConnector<HttpConnector>>, RequestBody>,
    tls: tls::UpstreamTls,
}

impl Upstream {
    /// The client `config` asks for: TLS for an `https://` upstream, else h2c or HTTP/1.1.
    pub(crate) fn new(
        config: &crate::config::GatewayConfig,
    ) -> Result<Upstream, inferscope_export::otlp::BuildError> {
        let connect_timeout = config.timeouts.connect;
        if config.upstream.tls {
            let tls = tls::UpstreamTls::new(&config.upstream_tls, connect_timeout)?;
            let connector = tls::Timed {
                inner: tls.requests.clone(),
                timeout: connect_timeout,
            };
            // Idle connections are let go before uvicorn's default keep-alive (5 s) closes
            // them, so a request rarely meets a connection the upstream is closing.
            let client = hyper_client(Duration::from_secs(4)).build(connector);
            return Ok(Upstream::Tls(Box::new(TlsClient { client, tls })));
        }
        if !config.upstream_h2c {
            return Ok(Upstream::H1(Arc::new(Pool::new(
                config.upstream.authority.clone(),
                connect_timeout,
            ))));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = hyper_client(Duration::from_secs(90))
            .http2_only(true)
            .build(connector);
        Ok(Upstream::H2c(Box::new(client)))
    }

    /// A connection of a tunnel's own to `host:port` (never pooled): TLS for an `https://`
    /// upstream, offering only HTTP/1.1.
    pub(crate) async fn connect_tunnel(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<tls::Stream, Failure> {
        match self {
            Upstream::Tls(t) => t.tls.connect_tunnel(host, port, timeout).await,
            _ => connect_tcp(host, port, timeout)
                .await
                .map(tls::Stream::Plain),
        }
    }

    /// Sends `req` (its URI absolute) and reads the response head.
    pub(crate) async fn send(
        &self,
        mut req: Request<RequestBody>,
    ) -> Result<(http::response::Parts, UpstreamBody), Failure> {
        match self {
            Upstream::H1(pool) => {
                let (parts, body) = pool.send(req).await?;
                let body = Pooled {
                    body: Some(body),
                    pool: pool.clone(),
                };
                Ok((parts, UpstreamBody::Own(body)))
            }
            Upstream::H2c(client) => {
                *req.version_mut() = http::Version::HTTP_2;
                hyper_send(client.request(req).await)
            }
            // HTTP/1.1 in the request: hyper sends it as HTTP/2 on a connection that
            // negotiated `h2`.
            Upstream::Tls(t) => hyper_send(t.client.request(req).await),
        }
    }
}

/// hyper's pooled client as both its uses set it up: idle connections let go after
/// `idle`, HTTP/2 windows large enough for a stream's chunks not to wait on updates.
fn hyper_client(idle: Duration) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(idle)
        .http2_initial_stream_window_size(Some(4 << 20))
        .http2_initial_connection_window_size(Some(8 << 20));
    builder
}

fn hyper_send(
    r: Result<http::Response<Incoming>, hyper_util::client::legacy::Error>,
) -> Result<(http::response::Parts, UpstreamBody), Failure> {
    match r {
        Ok(r) => {
            let (parts, body) = r.into_parts();
            Ok((parts, UpstreamBody::Hyper(body)))
        }
        Err(e) if e.is_connect() => Err(Failure::Connect(describe(&e))),
        Err(e) => Err(Failure::UpstreamBroken(describe(&e))),
    }
}

/// The upstream's response body: from a connection of the gateway's own pool, or from hyper's
/// client (h2c upstreams).
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    /// HTTP/1.1, read straight from the connection.
    Own(Pooled),
    /// h2c through hyper.
    Hyper(Incoming),
}

impl UpstreamBody {
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            UpstreamBody::Own(b) => b
                .poll_data(cx)
                .map(|d| d.map(|r| r.map(Frame::data).map_err(Into::into))),
            UpstreamBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Own(b) => b.is_end(),
            UpstreamBody::Hyper(b) => b.is_end_stream(),
        }
    }

    /// The upstream's `system_fingerprint`, when known for this connection (HTTP/1.1 only).
    pub(crate) fn fingerprint(&self) -> Option<String> {
        match self {
            UpstreamBody::Own(b) => b.fingerprint(),
            UpstreamBody::Hyper(_) => None,
        }
    }

    /// See [`Pooled::learn_fingerprint`].
    pub(crate) fn learn_fingerprint(&mut self, fingerprint: Option<String>) {
        if let UpstreamBody::Own(b) = self {
            b.learn_fingerprint(fingerprint);
        }
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Own(b) => b
                .remaining()
                .map_or_else(SizeHint::default, SizeHint::with_exact),
            UpstreamBody::Hyper(b) => b.size_hint(),
        }
    }
}

/// A response body on a connection of the pool; the connection goes back when the body is
/// dropped, if the body was read to its end and the connection can carry another request
/// (else it closes, which also tells the upstream the request was abandoned).
pub(crate) struct Pooled {
    /// Always `Some` until dropped.
    body: Option<Body>,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled").field("body", &self.body).finish()
    }
}

impl Pooled {
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, h1::Error>>> {
        match &mut self.body {
            Some(b) => b.poll_data(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end)
    }

    fn remaining(&self) -> Option<u64> {
        self.body.as_ref().map_or(Some(0), Body::remaining)
    }

    /// The upstream's `system_fingerprint` as an earlier response on this connection showed it.
    pub(crate) fn fingerprint(&self) -> Option<String> {
        self.body.as_ref().and_then(|b| b.conn.fingerprint.clone())
    }

    /// Remembers the fingerprint this response showed, for the connection's next requests.
    pub(crate) fn learn_fingerprint(&mut self, fingerprint: Option<String>) {
        if let (Some(b), Some(fp)) = (self.body.as_mut(), fingerprint) {
            b.conn.fingerprint = Some(fp);
        }
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(body) = self.body.take() {
            self.pool.put_back(body);
        }
    }
}

/// A response body arriving on an upstream connection of the pool.
#[derive(Debug)]
pub(crate) struct Body {
    conn: Conn,
    framing: Framing,
}

impl Body {
    /// The next piece of the body (everything decodable now); `Ready(None)` at the end.
    pub(crate) fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, h1::Error>>> {
        self.conn.poll_body(&mut self.framing, cx)
    }

    /// Whether every byte of the body has been read.
    pub(crate) fn is_end(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Empty)
    }

    /// Bytes still to come, when the upstream said.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(n) => Some(n),
            Framing::Done | Framing::Empty => Some(0),
            _ => None,
        }
    }

    /// The connection, when the body is over and it can carry another request.
    pub(crate) fn into_conn(self) -> Option<Conn> {
        (self.is_end() && self.conn.keep_alive()).then_some(self.conn)
    }
}

/// A TCP connection to the upstream within `timeout`, with Nagle off (a `[v6]` host is taken
/// without its brackets): the pool's connections, and a tunnel's.
pub(crate) async fn connect_tcp(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, Failure> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Failure::Connect(format!("tcp connect error: {e}"))),
        Err(_) => {
            return Err(Failure::Connect(format!(
                "no connection within {} ms",
                timeout.as_millis()
            )));
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Idle connections to one upstream.
pub(crate) struct Pool {
    authority: http::uri::Authority,
    connect_timeout: Duration,
    idle: Mutex<VecDeque<(Instant, Conn)>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    fn new(authority: http::uri::Authority, connect_timeout: Duration) -> Pool {
        Pool {
            authority,
            connect_timeout,
            idle: Mutex::new(VecDeque::new()),
            max_idle: 4096,
            idle_timeout: Duration::from_secs(90),
        }
    }

    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((since, mut conn)) = idle.pop_back() {
            let idle_for = since.elapsed();
            if idle_for <= self.idle_timeout && conn.is_idle_usable(idle_for) {
                return Some(conn);
            }
        }
        None
    }

    /// Takes back the connection of a finished body; it is closed instead if it cannot carry
    /// another request or the pool is full.
    fn put_back(&self, body: Body) {
        let Some(conn) = body.into_conn() else {
            return;
        };
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push_back((Instant::now(), conn));
        }
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        let port = self.authority.port_u16().unwrap_or(80);
        connect_tcp(self.authority.host(), port, self.connect_timeout)
            .await
            .map(Conn::new)
    }

    /// Sends `req` and reads the response head. Returns the head and the body, which reads
    /// the rest from the connection.
    pub(crate) async fn send(
        &self,
        req: Request<RequestBody>,
    ) -> Result<(http::response::Parts, Body), Failure> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let head_request = parts.method == Method::HEAD;
        if let Some(conn) = self.checkout() {
            // A reused connection may have been closed by the upstream a moment ago. Only a
            // request none of whose bytes were written is sent again, on a new connection:
            // anything else may have reached the upstream (a second generation on the GPU).
            let again = replayable(&body);
            match self.exchange(conn, &parts, path, body, head_request).await {
                Ok(r) => return Ok(r),
                Err(h1::Error::NotSent(why)) if again.is_some() => {
                    tracing::debug!(error = %why, "pooled upstream connection failed before the request was written; sending it on a new one");
                    let conn = self.connect().await?;
                    let body = again.unwrap_or_else(RequestBody::empty);
                    return self
                        .exchange(conn, &parts, path, body, head_request)
                        .await
                        .map_err(failure);
                }
                Err(e) => return Err(failure(e)),
            }
        }
        let conn = self.connect().await?;
        self.exchange(conn, &parts, path, body, head_request)
            .await
            .map_err(failure)
    }

    async fn exchange(
        &self,
        mut conn: Conn,
        parts: &http::request::Parts,
        path: &str,
        body: RequestBody,
        head_request: bool,
    ) -> Result<(http::response::Parts, Body), h1::Error> {
        let (head, framing) = conn
            .exchange(
                &parts.method,
                path,
                self.authority.as_str(),
                &parts.headers,
                body,
                head_request,
            )
            .await?;
        Ok((head, Body { conn, framing }))
    }
}

/// A copy of the body to send again, when it is in memory (or empty).
fn replayable(body: &RequestBody) -> Option<RequestBody> {
    use http_body::Body as _;
    match body {
        RequestBody::Full(pieces, _) => Some(RequestBody::Full(pieces.clone(), None)),
        RequestBody::Stream(s) if s.is_end_stream() => Some(RequestBody::empty()),
        _ => None,
    }
}

fn failure(e: h1::Error) -> Failure {
    match e {
        h1::Error::RequestBody(m) => Failure::RequestBody(m),
        e => Failure::UpstreamBroken(e.to_string()),
    }
}
