//! The response body on its way to the client: the upstream's body as it arrives, observed
//! chunk by chunk, gathered into frames ([`Pace`]), under idle and total deadlines
//! ([`Deadlines`]); or a body the gateway wrote itself.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use inferscope_server::InProgress;
use tokio::time::{Instant, Sleep};

use crate::exchange::Exchange;
use crate::failure::{Failure, describe};
use crate::request_body::BoxError;
use crate::upstream::{UpstreamBody, h1};

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
    exchange: Option<Box<Exchange>>,
    /// Bytes to send before (or instead of) the upstream's.
    tail: Option<Bytes>,
    deadlines: Deadlines,
    /// A frame (trailers) to return after the data gathered with it.
    next: Option<Result<Frame<Bytes>, BoxError>>,
    pace: Pace,
    /// The request on its client connection: in progress until this body is dropped.
    conn: Option<InProgress>,
    /// The client speaks HTTP/1, whose connection can be cut after a failure.
    cut_allowed: bool,
    /// The body failed: this message goes to hyper once the data before it has gone.
    failed: Option<String>,
    /// An HTTP/2 stream's reset waits for this.
    reset_delay: Option<Pin<Box<Sleep>>>,
}

/// The idle and total deadlines of a response body. The idle timer is not reset per chunk (a
/// timer-wheel update per token): the body notes when it last moved, and a timer that fires
/// early is re-armed from then.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    /// The idle timeout: its length, a timer, and when the body last moved.
    idle: Option<(Duration, Pin<Box<Sleep>>, Instant)>,
    total: Option<Pin<Box<Sleep>>>,
}

impl Deadlines {
    /// At most `idle` between two chunks, and the whole body over by `total`.
    pub(crate) fn new(idle: Option<Duration>, total: Option<Instant>) -> Deadlines {
        Deadlines {
            idle: idle.map(|d| (d, Box::pin(tokio::time::sleep(d)), Instant::now())),
            total: total.map(|t| Box::pin(tokio::time::sleep_until(t))),
        }
    }

    /// The body moved at `now`.
    pub(crate) fn moved(&mut self, now: Instant) {
        if let Some((_, _, last)) = &mut self.idle {
            *last = now;
        }
    }

    /// Asked while the body waits: the deadline that has passed (the total one first), or
    /// `None` with the task woken when the next one is due.
    pub(crate) fn poll_passed(&mut self, cx: &mut Context<'_>) -> Option<Failure> {
        if let Some(total) = &mut self.total
            && total.as_mut().poll(cx).is_ready()
        {
            return Some(Failure::TotalTimeout);
        }
        if let Some((d, idle, last)) = &mut self.idle {
            while idle.as_mut().poll(cx).is_ready() {
                let due = *last + *d;
                if due <= Instant::now() {
                    return Some(Failure::IdleTimeout);
                }
                idle.as_mut().reset(due);
            }
        }
        None
    }
}

/// How chunks leave as frames. The first leaves alone, at once (time to first token); later
/// ones available together are gathered, up to [`COALESCE`] bytes. hyper's server keeps
/// buffering while a body returns frames and writes when it returns `Pending`: so after a
/// frame the body yields once before the next, and each batch is written when it arrives
/// instead of with the whole stream.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// The first chunk has gone out.
    started: bool,
    /// A frame just went out: before the next one, the server must get the chance to flush.
    just_sent: bool,
    /// Data gathered while letting the server flush.
    held: Option<Bytes>,
}

impl Pace {
    /// Data held back by the last poll, to go now.
    pub(crate) fn take_held(&mut self) -> Option<Bytes> {
        let data = self.held.take()?;
        self.just_sent = true;
        Some(data)
    }

    /// Whether `gathered` bytes make a frame now.
    pub(crate) fn enough(&mut self, gathered: usize) -> bool {
        if gathered >= COALESCE || (!self.started && gathered > 0) {
            self.started = true;
            return true;
        }
        false
    }

    /// The upstream has nothing more now: the server has had its chance to flush.
    pub(crate) fn waited(&mut self) {
        self.just_sent = false;
    }

    /// Gathered data: the frame to return now, or `None` when it is held for the next poll
    /// (the caller then yields once).
    pub(crate) fn release(&mut self, data: Bytes) -> Option<Bytes> {
        if std::mem::take(&mut self.just_sent) {
            self.held = Some(data);
            return None;
        }
        self.just_sent = true;
        Some(data)
    }

    /// Whether data is held.
    pub(crate) fn holds(&self) -> bool {
        self.held.is_some()
    }
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
            tail: Some(bytes),
            deadlines: Deadlines::default(),
            next: None,
            pace: Pace::default(),
            conn: None,
            cut_allowed: false,
            failed: None,
            reset_delay: None,
        }
    }

    /// The upstream's body, observed, under `deadlines`. `conn`: the request's client
    /// connection, and whether it speaks HTTP/1.
    pub(crate) fn observed(
        inner: UpstreamBody,
        exchange: Box<Exchange>,
        deadlines: Deadlines,
        (conn, http1): (InProgress, bool),
    ) -> ResponseBody {
        ResponseBody {
            inner: Some(inner),
            exchange: Some(exchange),
            tail: None,
            deadlines,
            next: None,
            pace: Pace::default(),
            conn: Some(conn),
            cut_allowed: http1,
            failed: None,
            reset_delay: None,
        }
    }

    /// The upstream body ended: the exchange ends (bytes still held go to `tail`), then the
    /// upstream body goes (its connection back to the pool).
    fn end(&mut self) {
        let mut inner = self.inner.take();
        if let Some(mut e) = self.exchange.take() {
            self.tail = e.on_end();
            // The connection remembers the upstream's fingerprint for its next streams.
            if let Some(inner) = &mut inner {
                inner.learn_fingerprint(e.fingerprint_seen());
            }
            e.finish(None);
        }
        drop(inner);
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
        if let Some(data) = this.pace.take_held() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(next) = this.next.take() {
            return Poll::Ready(Some(next));
        }
        if this.failed.is_some() {
            return this.break_off(cx);
        }
        let mut gathered = h1::Pieces::default();
        while let Some(inner) = this.inner.as_mut() {
            match inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // One clock read per frame: the idle deadline's and the observer's.
                    let now = Instant::now();
                    this.deadlines.moved(now);
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
                    if this.pace.enough(gathered.len()) {
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
                    this.pace.waited();
                    if let Some(failure) = this.deadlines.poll_passed(cx) {
                        this.fail(failure);
                        return this.break_off(cx);
                    }
                    return Poll::Pending;
                }
            }
        }
        if let Some(data) = gathered.take() {
            return match this.pace.release(data) {
                Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                None => {
                    let _ = std::pin::pin!(tokio::task::yield_now()).poll(cx);
                    Poll::Pending
                }
            };
        }
        this.pace.waited();
        if this.failed.is_some() {
            return this.break_off(cx);
        }
        Poll::Ready(this.next.take())
    }

    fn is_end_stream(&self) -> bool {
        self.tail.is_none()
            && self.inner.is_none()
            && self.next.is_none()
            && !self.pace.holds()
            && self.failed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.inner, &self.tail) {
            (None, Some(t)) if self.next.is_none() => SizeHint::with_exact(t.len() as u64),
            (None, None) if self.next.is_none() => SizeHint::with_exact(0),
            (Some(inner), None)
                if self
                    .exchange
                    .as_deref()
                    .is_none_or(Exchange::passes_bytes_unchanged) =>
            {
                inner.size_hint()
            }
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    #[test]
    fn the_first_chunk_leaves_alone_and_later_ones_gather_up_to_the_limit() {
        let mut pace = Pace::default();
        assert!(!pace.enough(0));
        assert!(pace.enough(1), "the first chunk goes at once");
        assert!(!pace.enough(1), "later ones gather");
        assert!(!pace.enough(COALESCE - 1));
        assert!(pace.enough(COALESCE));
    }

    #[test]
    fn after_a_frame_the_next_is_held_once_so_the_server_can_flush() {
        let mut pace = Pace::default();
        let a = Bytes::from_static(b"a");
        let b = Bytes::from_static(b"b");
        assert_eq!(pace.release(a.clone()), Some(a));
        // Straight after a frame: held, and the body yields.
        assert_eq!(pace.release(b.clone()), None);
        assert!(pace.holds());
        assert_eq!(pace.take_held(), Some(b.clone()));
        assert!(!pace.holds());
        // The held frame counts as just sent; once the upstream made the body wait, the server
        // has flushed and the next frame goes at once.
        assert_eq!(pace.release(b.clone()), None);
        assert_eq!(pace.take_held(), Some(b.clone()));
        pace.waited();
        assert_eq!(pace.release(b.clone()), Some(b));
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_never_passes() {
        let mut d = Deadlines::default();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(d.poll_passed(&mut cx()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_deadline_counts_from_the_last_movement() {
        let mut d = Deadlines::new(Some(Duration::from_millis(100)), None);
        tokio::time::advance(Duration::from_millis(60)).await;
        d.moved(Instant::now());
        assert!(d.poll_passed(&mut cx()).is_none());
        // The timer fires at 100 ms, but the body moved at 60 ms: re-armed for 160 ms.
        tokio::time::advance(Duration::from_millis(50)).await;
        assert!(d.poll_passed(&mut cx()).is_none());
        tokio::time::advance(Duration::from_millis(49)).await;
        assert!(d.poll_passed(&mut cx()).is_none());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(matches!(
            d.poll_passed(&mut cx()),
            Some(Failure::IdleTimeout)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_deadline_wins_over_the_idle_one() {
        let start = Instant::now();
        let mut d = Deadlines::new(
            Some(Duration::from_millis(100)),
            Some(start + Duration::from_millis(100)),
        );
        assert!(d.poll_passed(&mut cx()).is_none());
        tokio::time::advance(Duration::from_millis(150)).await;
        assert!(matches!(
            d.poll_passed(&mut cx()),
            Some(Failure::TotalTimeout)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_moving_never_idles_out() {
        let mut d = Deadlines::new(Some(Duration::from_millis(100)), None);
        for _ in 0..50 {
            tokio::time::advance(Duration::from_millis(30)).await;
            d.moved(Instant::now());
            assert!(d.poll_passed(&mut cx()).is_none());
        }
    }
}
