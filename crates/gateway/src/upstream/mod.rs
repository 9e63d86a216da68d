//! HTTP/1.1 connections to the upstream, each driven by the request that is using it.
//!
//! hyper's pooled client runs every connection in a task of its own and hands a response body
//! over one HTTP chunk at a time, through a channel of one slot: every token of a stream then
//! costs a task switch, and the gateway writes each chunk to the client with a syscall of its
//! own even when the upstream sent fifty in one segment (measured: one `writev` per token,
//! nine times nginx's CPU per streamed request). Here the connection future is polled by the
//! request's own body ([`crate::body::ResponseBody`]): after a chunk is taken, the connection
//! decodes the next one at once if its bytes are already read, so everything that arrived
//! together leaves together, and nothing waits for bytes that have not arrived.
//!
//! The pool keeps idle connections (most recently used first) up to a count and an age; a
//! connection the upstream closed while idle is noticed when it is checked out, and a request
//! whose body can be replayed is retried once on a fresh connection if a reused one fails
//! before the response starts. h2c upstreams keep hyper's pooled client.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::RequestBody;
use crate::failure::{Failure, describe};

type Driver = Pin<Box<http1::Connection<TokioIo<TcpStream>, RequestBody>>>;

/// One upstream connection: the handle that sends requests and the future that does its I/O.
pub(crate) struct Conn {
    sender: http1::SendRequest<RequestBody>,
    driver: Driver,
    /// The driver finished (the connection is closed).
    done: bool,
}

impl Conn {
    /// Does the connection's pending reads and writes. `Ready` once it is closed.
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        match self.driver.as_mut().poll(cx) {
            Poll::Ready(_) => {
                self.done = true;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether it can take another request now (drives it once without a waker first, so a
    /// finished response lets the connection return to idle, and a close is noticed).
    fn reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..2 {
            if self.drive(&mut cx).is_ready() {
                return false;
            }
            if self.sender.is_ready() {
                return true;
            }
        }
        false
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
            if since.elapsed() <= self.idle_timeout && conn.reusable() {
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose response has ended; it is dropped (closed) if it cannot be
    /// reused or the pool is full.
    pub(crate) fn put_back(&self, mut conn: Conn) {
        if !conn.reusable() {
            return;
        }
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
        let (sender, driver) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failure::Connect(describe(&e)))?;
        Ok(Conn {
            sender,
            driver: Box::pin(driver),
            done: false,
        })
    }

    /// Sends `req` and waits for the response head, driving the connection meanwhile. Returns
    /// the response and the connection, which the response body must keep driving.
    pub(crate) async fn send(
        &self,
        req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Conn), Failure> {
        if let Some(conn) = self.checkout() {
            // A reused connection may have been closed by the upstream a moment ago; keep a
            // copy of a replayable request to try once more on a fresh one.
            let replay = replayable(&req);
            match exchange(conn, req).await {
                Ok(r) => return Ok(r),
                Err((e, was_sent)) => match replay {
                    Some(again) if !was_sent => {
                        tracing::debug!(error = %describe(&e), "pooled upstream connection was closed; retrying on a new one");
                        return exchange(self.connect().await?, again)
                            .await
                            .map_err(|(e, _)| Failure::UpstreamBroken(describe(&e)));
                    }
                    _ => return Err(Failure::UpstreamBroken(describe(&e))),
                },
            }
        }
        exchange(self.connect().await?, req)
            .await
            .map_err(|(e, _)| Failure::UpstreamBroken(describe(&e)))
    }
}

/// A copy of a request whose body is held in memory.
fn replayable(req: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    let body = match req.body() {
        RequestBody::Full(b) => RequestBody::Full(b.clone()),
        _ => return None,
    };
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// Sends on `conn`; on failure, also says whether the request may have reached the upstream.
async fn exchange(
    mut conn: Conn,
    req: Request<RequestBody>,
) -> Result<(Response<Incoming>, Conn), (hyper::Error, bool)> {
    let mut response = std::pin::pin!(conn.sender.send_request(req));
    let result = std::future::poll_fn(|cx| {
        let _ = conn.drive(cx);
        response.as_mut().poll(cx)
    })
    .await;
    match result {
        Ok(r) => Ok((r, conn)),
        Err(e) => {
            let sent = !e.is_canceled();
            Err((e, sent))
        }
    }
}
