//! The bodies the gateway sends: upstream (the client's body, streamed, or re-assembled after
//! it was read for tracing) and downstream (the upstream's body as it arrives, observed chunk
//! by chunk, with idle and total timeouts; or a body the gateway wrote itself).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::exchange::Exchange;
use crate::failure::{Failure, describe};

/// Errors of a body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body on its way upstream.
#[derive(Debug)]
pub enum RequestBody {
    /// Read whole (and perhaps rewritten) for tracing.
    Full(Option<Bytes>),
    /// Streamed as it arrives.
    Stream(Incoming),
    /// The first chunks were read (the body was over the parse limit), the rest streams.
    Chained(VecDeque<Bytes>, Incoming),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Stream(s) => Pin::new(s).poll_frame(cx).map_err(Into::into),
            RequestBody::Chained(prefix, rest) => match prefix.pop_front() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Pin::new(rest).poll_frame(cx).map_err(Into::into),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Full(b) => b.is_none(),
            RequestBody::Stream(s) => s.is_end_stream(),
            RequestBody::Chained(p, s) => p.is_empty() && s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RequestBody::Stream(s) => s.size_hint(),
            RequestBody::Chained(p, s) => {
                let prefix: u64 = p.iter().map(|b| b.len() as u64).sum();
                let rest = s.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(prefix + rest.lower());
                if let Some(upper) = rest.upper() {
                    hint.set_upper(prefix + upper);
                }
                hint
            }
        }
    }
}

/// A response body on its way to the client. The exchange ends when the body ends, fails,
/// times out, or is dropped because the client went away; dropping `inner` then drops the
/// upstream request, so the engine aborts it.
pub struct ResponseBody {
    inner: Option<Incoming>,
    exchange: Option<Exchange>,
    /// Bytes to send before (or instead of) the upstream's.
    tail: Option<Bytes>,
    /// The idle timeout: its length, a timer, and when the body last moved. The timer is not
    /// reset per chunk (a timer-wheel update per token); when it fires early it is re-armed
    /// from the last activity.
    idle: Option<(Duration, Pin<Box<Sleep>>, Instant)>,
    total: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("streaming", &self.inner.is_some())
            .finish()
    }
}

impl ResponseBody {
    /// A body the gateway wrote itself.
    pub fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody {
            inner: None,
            exchange: None,
            tail: Some(bytes),
            idle: None,
            total: None,
        }
    }

    /// The upstream's body, observed.
    pub(crate) fn observed(
        inner: Incoming,
        exchange: Exchange,
        idle: Option<Duration>,
        total_deadline: Option<Instant>,
    ) -> ResponseBody {
        ResponseBody {
            inner: Some(inner),
            exchange: Some(exchange),
            tail: None,
            idle: idle.map(|d| (d, Box::pin(tokio::time::sleep(d)), Instant::now())),
            total: total_deadline.map(|t| Box::pin(tokio::time::sleep_until(t))),
        }
    }

    fn fail(&mut self, failure: Failure) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let message = failure.message();
        if let Some(mut e) = self.exchange.take() {
            e.finish(Some(failure));
        }
        self.inner = None;
        Poll::Ready(Some(Err(message.into())))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(tail) = this.tail.take() {
                return Poll::Ready(Some(Ok(Frame::data(tail))));
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some((_, _, last)) = &mut this.idle {
                        *last = Instant::now();
                    }
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                    };
                    let mut out = match &mut this.exchange {
                        Some(e) => e.on_chunk(data),
                        None => data,
                    };
                    // A body of known length is over once its last byte arrived: the server
                    // may never poll again, so the exchange ends here.
                    if this.inner.as_ref().is_some_and(Body::is_end_stream) {
                        this.inner = None;
                        if let Some(mut e) = this.exchange.take() {
                            if let Some(rest) = e.on_end() {
                                out = if out.is_empty() {
                                    rest
                                } else {
                                    [out, rest].concat().into()
                                };
                            }
                            e.finish(None);
                        }
                    }
                    if out.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Ready(Some(Err(e))) => {
                    return this.fail(Failure::UpstreamBroken(describe(&e)));
                }
                Poll::Ready(None) => {
                    this.inner = None;
                    if let Some(mut e) = this.exchange.take() {
                        this.tail = e.on_end();
                        e.finish(None);
                    }
                    continue;
                }
                Poll::Pending => {
                    if let Some(total) = &mut this.total
                        && total.as_mut().poll(cx).is_ready()
                    {
                        return this.fail(Failure::TotalTimeout);
                    }
                    if let Some((d, idle, last)) = &mut this.idle {
                        while idle.as_mut().poll(cx).is_ready() {
                            let due = *last + *d;
                            if due <= Instant::now() {
                                return this.fail(Failure::IdleTimeout);
                            }
                            idle.as_mut().reset(due);
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.tail.is_none() && self.inner.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.inner, &self.tail) {
            (None, Some(t)) => SizeHint::with_exact(t.len() as u64),
            (None, None) => SizeHint::with_exact(0),
            (Some(inner), None)
                if self
                    .exchange
                    .as_ref()
                    .is_none_or(Exchange::passes_bytes_unchanged) =>
            {
                inner.size_hint()
            }
            _ => SizeHint::default(),
        }
    }
}

use std::future::Future as _;
