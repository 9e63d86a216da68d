//! The request body on its way upstream: the client's body streamed, or read for tracing
//! (whole, within the parse limit and the budget shared by every exchange) and sent on as it
//! was read, perhaps with `include_usage` edited in.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use inferscope_core::observe::budget::{Held, ParseBudget};
use inferscope_core::observe::request::Edit;
use inferscope_server::ClientBody;
use tokio::time::{Instant, Sleep};

use crate::failure::describe;

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
