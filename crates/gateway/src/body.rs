//! The bodies the gateway sends: upstream (the client's body, streamed, or re-assembled after
//! it was read for tracing) and downstream (the upstream's body as it arrives, observed chunk
//! by chunk, with idle and total timeouts; or a body the gateway wrote itself).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use inferscope_core::observe::budget::{Held, ParseBudget};
use inferscope_core::observe::request::Edit;
use tokio::time::{Instant, Sleep};

use crate::exchange::Exchange;
use crate::failure::{Failure, describe};
use crate::upstream::{self, Pool};
use inferscope_server::{ClientBody, InProgress};

/// Errors of a body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The pieces of a body in memory: usually one, kept without a list (no allocation), or the
/// several of an edited large body.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pieces {
    first: Option<Bytes>,
    rest: VecDeque<Bytes>,
}

impl Pieces {
    /// One piece.
    pub(crate) fn one(bytes: Bytes) -> Pieces {
        Pieces {
            first: Some(bytes),
            rest: VecDeque::new(),
        }
    }

    fn pop_front(&mut self) -> Option<Bytes> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    fn len(&self) -> u64 {
        let first = self.first.as_ref().map_or(0, |b| b.len() as u64);
        first + self.rest.iter().map(|b| b.len() as u64).sum::<u64>()
    }
}

impl FromIterator<Bytes> for Pieces {
    fn from_iter<I: IntoIterator<Item = Bytes>>(iter: I) -> Pieces {
        let mut it = iter.into_iter();
        Pieces {
            first: it.next(),
            rest: it.collect(),
        }
    }
}

/// A request body on its way upstream.
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the `Held` parts are kept for their drop: the parse budget returns when the body has gone"
)]
pub(crate) enum RequestBody {
    /// Read whole for tracing (perhaps edited, as pieces that share the bytes read), with the
    /// parse budget it holds until it has gone.
    Full(Pieces, Option<Held>),
    /// Streamed as it arrives.
    Stream(ClientBody),
    /// The first chunks were read (the body was over the parse limit or the budget), the rest
    /// streams; the chunks read hold their part of the budget until they have gone.
    Chained(Pieces, ClientBody, Option<Held>),
}

impl RequestBody {
    /// An empty body.
    pub(crate) fn empty() -> RequestBody {
        RequestBody::Full(Pieces::default(), None)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Full(pieces, _) => {
                Poll::Ready(pieces.pop_front().map(|b| Ok(Frame::data(b))))
            }
            RequestBody::Stream(s) => Pin::new(s).poll_frame(cx).map_err(Into::into),
            RequestBody::Chained(prefix, rest, _) => match prefix.pop_front() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Pin::new(rest).poll_frame(cx).map_err(Into::into),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Full(pieces, _) => pieces.is_empty(),
            RequestBody::Stream(s) => s.is_end_stream(),
            RequestBody::Chained(p, s, _) => p.is_empty() && s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Full(pieces, _) => SizeHint::with_exact(pieces.len()),
            RequestBody::Stream(s) => s.size_hint(),
            RequestBody::Chained(p, s, _) => {
                let prefix = p.len();
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

/// An inference request body as read for tracing.
#[derive(Debug)]
pub(crate) enum ReadBody {
    /// All of it, in one buffer, and the parse budget it holds.
    Whole(Bytes, Held),
    /// Not read whole: what was read (and the budget it holds), the rest to stream, and why.
    Partial(Pieces, Option<Held>, ClientBody, String),
}

/// Bodies smaller than this are copied into one buffer when edited; larger ones are sent as
/// pieces that share the bytes read (one copy of a 30 MiB body, not two).
const EDIT_IN_PLACE_BELOW: usize = 64 * 1024;

/// Reads an inference request body whole, into one buffer of the announced length, taking
/// its bytes from `budget`: the announced length at once (a body that cannot fit is not read
/// at all, so a burst of large bodies parses some whole instead of all in part), more as bytes
/// beyond it arrive. A body over `limit`, one that does not fit the budget, or one still
/// arriving after `within` (the header timeout: a client that trickles a large body would
/// otherwise hold its share of the budget as long as it likes) is not read further: the part
/// read and the rest stream upstream unparsed.
pub(crate) async fn read_inference_body(
    mut body: ClientBody,
    limit: usize,
    budget: &Arc<ParseBudget>,
    within: Option<Duration>,
) -> Result<ReadBody, String> {
    let over_limit = || format!("request body over {limit} bytes, not parsed");
    let over_budget = || {
        format!(
            "request body not parsed: the gateway already holds its limit of {} bytes for parsing",
            budget.limit()
        )
    };
    let hint = body.size_hint();
    let announced = usize::try_from(hint.lower()).unwrap_or(usize::MAX);
    if announced > limit {
        return Ok(ReadBody::Partial(
            Pieces::default(),
            None,
            body,
            over_limit(),
        ));
    }
    let Some(mut held) = budget.take(announced) else {
        return Ok(ReadBody::Partial(
            Pieces::default(),
            None,
            body,
            over_budget(),
        ));
    };
    let deadline = within.map(|w| Instant::now() + w);
    // Made only when the body is not all there at once (most are).
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    // One chunk is kept as it came; more are gathered into one buffer of the body's size.
    let mut first: Option<Bytes> = None;
    let mut all: Option<BytesMut> = None;
    let mut len = 0usize;
    loop {
        let next = std::future::poll_fn(|cx| {
            if let Poll::Ready(frame) = Pin::new(&mut body).poll_frame(cx) {
                return Poll::Ready(Some(frame));
            }
            let Some(deadline) = deadline else {
                return Poll::Pending;
            };
            let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            t.as_mut().poll(cx).map(|()| None)
        })
        .await;
        let frame = match next {
            Some(Some(frame)) => frame.map_err(|e| describe(&e))?,
            Some(None) => break,
            None => {
                let read = all.map(BytesMut::freeze).or(first).into_iter().collect();
                let why = format!(
                    "request body not parsed: still arriving after {} ms",
                    within.unwrap_or_default().as_millis()
                );
                return Ok(ReadBody::Partial(read, Some(held), body, why));
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        len += data.len();
        let fits = len <= limit && (len <= held.len() || held.grow(len - held.len()));
        match (&mut all, first.take()) {
            (Some(all), _) => all.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(earlier)) => {
                let mut buf = BytesMut::with_capacity(announced.max(len).min(limit.max(len)));
                buf.extend_from_slice(&earlier);
                buf.extend_from_slice(&data);
                all = Some(buf);
            }
        }
        if !fits {
            let read = all.map(BytesMut::freeze).or(first).into_iter().collect();
            let why = if len > limit {
                over_limit()
            } else {
                over_budget()
            };
            return Ok(ReadBody::Partial(read, Some(held), body, why));
        }
    }
    let whole = all.map(BytesMut::freeze).or(first).unwrap_or_default();
    Ok(ReadBody::Whole(whole, held))
}

/// The body to send upstream: `whole` with `edit` made (if any).
pub(crate) fn edited(whole: Bytes, edit: Option<&Edit>, held: Held) -> RequestBody {
    let pieces = match edit {
        None => Pieces::one(whole),
        Some(e) if whole.len() < EDIT_IN_PLACE_BELOW => Pieces::one(Bytes::from(e.apply(&whole))),
        Some(e) => {
            let mut pieces = Vec::with_capacity(5);
            let mut at = 0;
            for c in e.changes() {
                pieces.push(whole.slice(at..c.range.start));
                pieces.push(Bytes::from_static(c.with));
                at = c.range.end;
            }
            pieces.push(whole.slice(at..));
            pieces.into_iter().collect()
        }
    };
    RequestBody::Full(pieces, Some(held))
}

/// The upstream's response body: from a connection of the gateway's own pool, or from hyper's
/// client (h2c upstreams).
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    /// HTTP/1.1, read straight from the connection.
    Own(upstream::Body),
    /// h2c through hyper.
    Hyper(Incoming),
}

impl UpstreamBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
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

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Own(b) => b
                .remaining()
                .map_or_else(SizeHint::default, SizeHint::with_exact),
            UpstreamBody::Hyper(b) => b.size_hint(),
        }
    }
}

/// A response body on its way to the client. The exchange ends when the body ends, fails,
/// times out, or is dropped because the client went away; dropping `inner` (and the upstream
/// connection) then drops the upstream request, so the engine aborts it.
///
/// When the body cannot be completed (the upstream broke off or a timeout ran out), every
/// byte that arrived still reaches the client, and then the response ends the way it would
/// have from the upstream directly: an HTTP/1 connection is cut after hyper has written
/// everything ([`inferscope_server::ClientIo`]); an HTTP/2 stream is reset a moment later
/// ([`H2_RESET_DELAY`]), once the connection has had the chance to send the data before it.
///
/// The upstream connection is driven from here ([`crate::upstream`]): each poll lets it decode
/// whatever bytes it has already read, and every chunk available now leaves as one frame (one
/// write to the client), up to [`COALESCE`] bytes; the first chunk leaves alone, at once.
/// Nothing waits for bytes not yet arrived.
pub(crate) struct ResponseBody {
    inner: Option<UpstreamBody>,
    exchange: Option<Exchange>,
    /// Where the upstream connection goes back at the end of the body.
    pool: Option<Arc<Pool>>,
    /// Bytes to send before (or instead of) the upstream's.
    tail: Option<Bytes>,
    /// The idle timeout: its length, a timer, and when the body last moved. The timer is not
    /// reset per chunk (a timer-wheel update per token); when it fires early it is re-armed
    /// from the last activity.
    idle: Option<(Duration, Pin<Box<Sleep>>, Instant)>,
    total: Option<Pin<Box<Sleep>>>,
    /// A frame (trailers) to return after the data gathered with it.
    next: Option<Result<Frame<Bytes>, BoxError>>,
    /// Whether the first chunk has gone out: it leaves alone, at once (time to first token).
    started: bool,
    /// A frame just went out: before the next one, the server must get the chance to flush it.
    just_sent: bool,
    /// Data gathered while letting the server flush.
    held: Option<Bytes>,
    /// The request on its client connection: in progress until this body is dropped.
    conn: Option<InProgress>,
    /// The client speaks HTTP/1, whose connection can be cut after a failure.
    cut_allowed: bool,
    /// The body failed: this message goes to hyper once the data before it has gone.
    failed: Option<String>,
    /// An HTTP/2 stream's reset waits for this.
    reset_delay: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("streaming", &self.inner.is_some())
            .finish()
    }
}

/// Most bytes gathered into one frame for the client (nginx reads 4 to 8 KiB at a time).
const COALESCE: usize = 16 * 1024;

/// How long an HTTP/2 stream that failed waits before its reset: a reset drops the stream's
/// data still queued in the connection, so the connection's task first gets the chance to send
/// what the body already handed over.
pub(crate) const H2_RESET_DELAY: Duration = Duration::from_millis(20);

impl ResponseBody {
    /// A body the gateway wrote itself.
    pub(crate) fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody {
            inner: None,
            exchange: None,
            pool: None,
            tail: Some(bytes),
            idle: None,
            total: None,
            next: None,
            started: false,
            just_sent: false,
            held: None,
            conn: None,
            cut_allowed: false,
            failed: None,
            reset_delay: None,
        }
    }

    /// The upstream's body, observed; `pool` takes its connection back at the end (HTTP/1.1
    /// upstreams). `conn`: the request's client connection, and whether it speaks HTTP/1.
    pub(crate) fn observed(
        inner: UpstreamBody,
        exchange: Exchange,
        pool: Option<Arc<Pool>>,
        (idle, total_deadline): (Option<Duration>, Option<Instant>),
        (conn, http1): (InProgress, bool),
    ) -> ResponseBody {
        ResponseBody {
            inner: Some(inner),
            exchange: Some(exchange),
            pool,
            tail: None,
            idle: idle.map(|d| (d, Box::pin(tokio::time::sleep(d)), Instant::now())),
            total: total_deadline.map(|t| Box::pin(tokio::time::sleep_until(t))),
            next: None,
            started: false,
            just_sent: false,
            held: None,
            conn: Some(conn),
            cut_allowed: http1,
            failed: None,
            reset_delay: None,
        }
    }

    /// The upstream body ended: the exchange ends (bytes still held go to `tail`) and the
    /// connection returns to the pool.
    fn end(&mut self) {
        let inner = self.inner.take();
        if let Some(mut e) = self.exchange.take() {
            self.tail = e.on_end();
            e.finish(None);
        }
        if let (Some(UpstreamBody::Own(body)), Some(pool)) = (inner, self.pool.take()) {
            pool.put_back(body);
        }
    }

    /// The body cannot be completed: the exchange ends with `failure`, the upstream request is
    /// dropped, and the client's response breaks off once the data before it has gone.
    fn fail(&mut self, failure: Failure) {
        self.failed = Some(failure.message());
        if let Some(mut e) = self.exchange.take() {
            e.finish(Some(failure));
        }
        self.inner = None;
    }

    /// Breaks the response off after a failure (see [`ResponseBody`]).
    fn break_off(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.cut_allowed
            && let Some(conn) = &self.conn
        {
            // hyper writes what it holds, then the connection ends; this body is not polled
            // to an end. The first time, the task is woken: hyper may have just flushed and
            // polled the body once more, and without a wake it would not flush again.
            if !conn.conn().is_cut() {
                conn.conn().cut();
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
        let delay = self
            .reset_delay
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(H2_RESET_DELAY)));
        std::task::ready!(delay.as_mut().poll(cx));
        Poll::Ready(self.failed.take().map(|m| Err(m.into())))
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
        if let Some(tail) = this.tail.take() {
            return Poll::Ready(Some(Ok(Frame::data(tail))));
        }
        if let Some(data) = this.held.take() {
            this.just_sent = true;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(next) = this.next.take() {
            return Poll::Ready(Some(next));
        }
        if this.failed.is_some() {
            return this.break_off(cx);
        }
        let mut gathered = upstream::h1::Pieces::default();
        while let Some(inner) = this.inner.as_mut() {
            match inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // One clock read per frame: the idle timer's and the observer's.
                    let now = Instant::now();
                    if let Some((_, _, last)) = &mut this.idle {
                        *last = now;
                    }
                    match frame.into_data() {
                        Ok(data) => gathered.push(match &mut this.exchange {
                            Some(e) => e.on_chunk(data, now.into_std()),
                            None => data,
                        }),
                        Err(trailers) => {
                            this.next = Some(Ok(trailers));
                            break;
                        }
                    }
                    // A body of known length is over once its last byte arrived: the server
                    // may never poll again, so the exchange ends here.
                    if this.inner.as_ref().is_some_and(UpstreamBody::is_end_stream) {
                        this.end();
                        if let Some(rest) = this.tail.take() {
                            gathered.push(rest);
                        }
                        break;
                    }
                    if gathered.len() >= COALESCE || (!this.started && gathered.len() > 0) {
                        this.started = true;
                        break;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.fail(Failure::UpstreamBroken(describe(&*e)));
                    break;
                }
                Poll::Ready(None) => {
                    this.end();
                    if let Some(rest) = this.tail.take() {
                        gathered.push(rest);
                    }
                    break;
                }
                Poll::Pending => {
                    if gathered.len() > 0 {
                        break;
                    }
                    this.just_sent = false;
                    if let Some(total) = &mut this.total
                        && total.as_mut().poll(cx).is_ready()
                    {
                        this.fail(Failure::TotalTimeout);
                        return this.break_off(cx);
                    }
                    if let Some((d, idle, last)) = &mut this.idle {
                        while idle.as_mut().poll(cx).is_ready() {
                            let due = *last + *d;
                            if due <= Instant::now() {
                                this.fail(Failure::IdleTimeout);
                                return this.break_off(cx);
                            }
                            idle.as_mut().reset(due);
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
        if let Some(data) = gathered.take() {
            // hyper's server keeps buffering while the body returns frames, and writes when it
            // returns Pending: after a frame, yield once before the next so the first token
            // (and every later batch) is written at once instead of with the whole stream.
            if std::mem::take(&mut this.just_sent) {
                this.held = Some(data);
                let _ = std::pin::pin!(tokio::task::yield_now()).poll(cx);
                return Poll::Pending;
            }
            this.just_sent = true;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        this.just_sent = false;
        if this.failed.is_some() {
            return this.break_off(cx);
        }
        Poll::Ready(this.next.take())
    }

    fn is_end_stream(&self) -> bool {
        self.tail.is_none()
            && self.inner.is_none()
            && self.next.is_none()
            && self.held.is_none()
            && self.failed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.inner, &self.tail) {
            (None, Some(t)) if self.next.is_none() => SizeHint::with_exact(t.len() as u64),
            (None, None) if self.next.is_none() => SizeHint::with_exact(0),
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
