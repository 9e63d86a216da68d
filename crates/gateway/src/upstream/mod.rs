//! HTTP/1.1 connections to the upstream: a pool of idle ones, and the exchange of one request
//! on one of them.
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

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use tokio::net::TcpStream;

use crate::body::RequestBody;
use crate::failure::Failure;
use h1::{Conn, Framing};

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

/// Idle connections to one upstream.
pub(crate) struct Pool {
    authority: http::uri::Authority,
    connect_timeout: Duration,
    idle: Mutex<VecDeque<(Instant, Conn)>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(authority: http::uri::Authority, connect_timeout: Duration) -> Pool {
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
    pub(crate) fn put_back(&self, body: Body) {
        let Some(conn) = body.into_conn() else {
            return;
        };
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push_back((Instant::now(), conn));
        }
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        let host = self
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = self.authority.port_u16().unwrap_or(80);
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((host, port)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(Failure::Connect(format!("tcp connect error: {e}"))),
            Err(_) => {
                return Err(Failure::Connect(format!(
                    "no connection within {} ms",
                    self.connect_timeout.as_millis()
                )));
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(Conn::new(stream))
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
