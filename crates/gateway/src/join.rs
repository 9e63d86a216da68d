//! What the gateway remembers of its CLIENT spans until vLLM's `llm_request` for the same call
//! arrives over OTLP: bounded in entries and in age, so nothing grows when engine spans never
//! come (tracing off in vLLM, aborted requests, a failed upstream).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use inferscope_core::{SpanId, TraceId};
use tokio::sync::Notify;

/// The gateway's view of one inference call, for the engine span that nests under it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct JoinInfo {
    /// The trace (a span id alone could collide across traces).
    pub(crate) trace_id: TraceId,
    /// `gen_ai.operation.name`.
    pub(crate) operation: &'static str,
    /// The model the client asked for.
    pub(crate) request_model: Option<String>,
    /// The model the response named.
    pub(crate) response_model: Option<String>,
    /// Finish reasons of all choices.
    pub(crate) finish_reasons: Vec<String>,
    /// The gateway's time to first chunk, seconds.
    pub(crate) time_to_first_chunk: Option<f64>,
    /// The request's temperature (vLLM drops it from its span when it is 0).
    pub(crate) temperature: Option<f64>,
    /// The request's `n`.
    pub(crate) choice_count: Option<i64>,
    /// Each choice's time to first chunk, seconds (streams): (choice index, time).
    pub(crate) choice_first_chunks: Vec<(u32, f64)>,
    /// Choices already paired with one of vLLM's sequence spans.
    pub(crate) claimed: Vec<u32>,
    /// The choice this engine span was paired with (set on the ingest side's copy).
    pub(crate) matched_choice: Option<(u32, f64)>,
    /// The exchange has ended (the facts above are final).
    pub(crate) done: bool,
}

struct Inner {
    map: HashMap<SpanId, JoinInfo>,
    /// Insertion order, for eviction by age and by count.
    order: VecDeque<(Instant, SpanId)>,
}

/// A bounded table of [`JoinInfo`] by CLIENT span id.
struct JoinTable {
    inner: Mutex<Inner>,
    finished: Notify,
    capacity: usize,
    ttl: Duration,
}

impl std::fmt::Debug for JoinTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinTable")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl JoinTable {
    /// A table of at most `capacity` entries, each kept at most `ttl`.
    fn new(capacity: usize, ttl: Duration) -> JoinTable {
        JoinTable {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            finished: Notify::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// A table that remembers nothing: the gateway takes in no engine spans to join.
    fn off() -> JoinTable {
        JoinTable {
            capacity: 0,
            ..JoinTable::new(1, Duration::ZERO)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Entries held now.
    fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Remembers a CLIENT span as it starts, evicting what is too old or too many.
    fn start(&self, span: SpanId, info: JoinInfo) {
        if self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        while let Some(&(at, id)) = inner.order.front() {
            if now.saturating_duration_since(at) > self.ttl || inner.map.len() >= self.capacity {
                inner.order.pop_front();
                inner.map.remove(&id);
            } else {
                break;
            }
        }
        if inner.map.insert(span, info).is_none() {
            inner.order.push_back((now, span));
        }
    }

    /// Completes an entry when its exchange ends.
    fn finish(&self, span: SpanId, update: impl FnOnce(&mut JoinInfo)) {
        if self.capacity == 0 {
            return;
        }
        {
            let mut inner = self.lock();
            if let Some(info) = inner.map.get_mut(&span) {
                update(info);
                info.done = true;
            }
        }
        self.finished.notify_waiters();
    }

    /// The gateway's view of `span` in `trace`. If the exchange is still running (vLLM can
    /// export its span before the gateway has sent the last byte), waits up to `wait` for it
    /// to end. `None` when the span is not one of ours (or was evicted).
    async fn lookup(&self, trace: TraceId, span: SpanId, wait: Duration) -> Option<JoinInfo> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.finished.notified();
            let current = self
                .lock()
                .map
                .get(&span)
                .filter(|i| i.trace_id == trace)
                .cloned();
            match current {
                None => return None,
                Some(info) if info.done => return Some(info),
                Some(info) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Some(info);
                    }
                }
            }
        }
    }
}

impl JoinTable {
    /// Pairs one of vLLM's sequence spans of a call with `n` > 1 (which do not say which choice
    /// they are) with a choice: the earliest first chunk not yet paired that came no sooner than
    /// the sequence's own first token (`engine`, seconds after its arrival). Sequences taken in
    /// order of their first token pair by rank, and a choice's chunk cannot reach the gateway
    /// before its token was made, so the difference is never negative. `None` when no choice
    /// fits (or the call is unknown).
    fn claim_choice(&self, trace: TraceId, span: SpanId, engine: f64) -> Option<(u32, f64)> {
        let mut inner = self.lock();
        let info = inner.map.get_mut(&span).filter(|i| i.trace_id == trace)?;
        let (index, client) = info
            .choice_first_chunks
            .iter()
            .filter(|(i, c)| *c >= engine && !info.claimed.contains(i))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .copied()?;
        info.claimed.push(index);
        Some((index, client))
    }
}

/// The request path's handle on the join table: it writes (an entry per CLIENT span).
#[derive(Debug, Clone)]
pub(crate) struct JoinWriter(Arc<JoinTable>);

/// The ingest path's (and the metrics') handle on the join table: it only reads.
#[derive(Debug, Clone)]
pub(crate) struct JoinReader(Arc<JoinTable>);

/// The two handles on one table: remembering CLIENT spans only when engine spans can come in
/// (`enabled`), else a table that remembers nothing.
pub(crate) fn table(enabled: bool, capacity: usize, ttl: Duration) -> (JoinWriter, JoinReader) {
    let table = Arc::new(match enabled {
        true => JoinTable::new(capacity, ttl),
        false => JoinTable::off(),
    });
    (JoinWriter(table.clone()), JoinReader(table))
}

impl JoinWriter {
    /// See [`JoinTable::start`].
    pub(crate) fn start(&self, span: SpanId, info: JoinInfo) {
        self.0.start(span, info);
    }

    /// See [`JoinTable::finish`].
    pub(crate) fn finish(&self, span: SpanId, update: impl FnOnce(&mut JoinInfo)) {
        self.0.finish(span, update);
    }
}

impl JoinReader {
    /// See [`JoinTable::lookup`].
    pub(crate) async fn lookup(
        &self,
        trace: TraceId,
        span: SpanId,
        wait: Duration,
    ) -> Option<JoinInfo> {
        self.0.lookup(trace, span, wait).await
    }

    /// See [`JoinTable::len`].
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// See [`JoinTable::claim_choice`].
    pub(crate) fn claim_choice(
        &self,
        trace: TraceId,
        span: SpanId,
        engine_ttft: f64,
    ) -> Option<(u32, f64)> {
        self.0.claim_choice(trace, span, engine_ttft)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(trace: u8) -> JoinInfo {
        JoinInfo {
            trace_id: TraceId([trace; 16]),
            operation: "chat",
            ..JoinInfo::default()
        }
    }

    #[tokio::test]
    async fn bounded_by_count_and_age() {
        let t = JoinTable::new(3, Duration::from_secs(60));
        for i in 1..=10u8 {
            t.start(SpanId([i; 8]), info(1));
        }
        assert_eq!(t.len(), 3);
        assert!(
            t.lookup(TraceId([1; 16]), SpanId([1; 8]), Duration::ZERO)
                .await
                .is_none()
        );
        assert!(
            t.lookup(TraceId([1; 16]), SpanId([10; 8]), Duration::ZERO)
                .await
                .is_some()
        );
        // Wrong trace: not ours.
        assert!(
            t.lookup(TraceId([2; 16]), SpanId([10; 8]), Duration::ZERO)
                .await
                .is_none()
        );

        let t = JoinTable::new(100, Duration::from_millis(1));
        t.start(SpanId([1; 8]), info(1));
        std::thread::park_timeout(Duration::from_millis(5));
        t.start(SpanId([2; 8]), info(1));
        assert_eq!(t.len(), 1);
    }

    #[tokio::test]
    async fn waits_for_a_running_exchange() {
        let t = std::sync::Arc::new(JoinTable::new(10, Duration::from_secs(60)));
        t.start(SpanId([1; 8]), info(1));
        let t2 = t.clone();
        let waiter = tokio::spawn(async move {
            t2.lookup(TraceId([1; 16]), SpanId([1; 8]), Duration::from_secs(5))
                .await
        });
        tokio::task::yield_now().await;
        t.finish(SpanId([1; 8]), |i| i.finish_reasons = vec!["stop".into()]);
        let got = waiter.await.unwrap().unwrap();
        assert!(got.done);
        assert_eq!(got.finish_reasons, vec!["stop".to_owned()]);
        // Not finished in time: what is known so far.
        t.start(SpanId([2; 8]), info(1));
        let got = t
            .lookup(TraceId([1; 16]), SpanId([2; 8]), Duration::from_millis(20))
            .await
            .unwrap();
        assert!(!got.done);
    }

    #[test]
    fn sequences_pair_with_choices_by_rank_and_never_below_their_own_first_token() {
        let t = JoinTable::new(4, Duration::from_secs(60));
        let span = SpanId([7; 8]);
        t.start(
            span,
            JoinInfo {
                choice_count: Some(3),
                choice_first_chunks: vec![(0, 0.30), (1, 0.10), (2, 0.20)],
                ..info(1)
            },
        );
        let trace = TraceId([1; 16]);
        assert_eq!(t.claim_choice(trace, span, 0.05), Some((1, 0.10)));
        assert_eq!(t.claim_choice(trace, span, 0.06), Some((2, 0.20)));
        // Nothing left at or after 0.35.
        assert_eq!(t.claim_choice(trace, span, 0.35), None);
        assert_eq!(t.claim_choice(trace, span, 0.25), Some((0, 0.30)));
        assert_eq!(t.claim_choice(trace, span, 0.0), None, "all taken");
        assert_eq!(t.claim_choice(TraceId([2; 16]), span, 0.0), None);
    }
}
