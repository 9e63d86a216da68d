//! The bounded, non-blocking batch processor and the export thread behind it.
//!
//! - The request path only pushes a finished span (a pointer: the span's own allocation) into a
//!   bounded lock-free queue: it never blocks, never waits for the network, never makes a
//!   system call, and when the queue is full the span is dropped and counted (a warning is
//!   logged the first time).
//! - The export thread is woken only when a full batch is waiting, or by its timer: not once
//!   per span. (A channel that wakes the consumer on every send made each recorded span cost a
//!   futex wake, about 1 µs; see docs/adr/0001-lean-exporter.md.)
//! - One thread, named `inferscope-export`, runs its own single-threaded Tokio runtime (so the
//!   async gRPC and HTTP clients always have a reactor, whatever runtime the application uses,
//!   or none). It drains the queue into batches of at most `max_export_batch_size` spans, sent
//!   when full or when `schedule_delay` has passed, one batch at a time, to every exporter.
//! - Flush and shutdown drain everything queued, export it, and answer; the caller bounds the
//!   wait with its own deadline. Shutdown closes the queue first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use crossbeam_queue::ArrayQueue;
use inferscope_core::{SpanProcessor, SpanRecord};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::config::BatchConfig;
use crate::exporter::{ExportError, SpanExporter};

/// Counters of one exporter.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// The exporter's name.
    pub name: &'static str,
    /// Spans the receiver accepted.
    pub exported: AtomicU64,
    /// Spans the receiver rejected (OTLP `partial_success`).
    pub rejected: AtomicU64,
    /// Spans lost because export failed (after retries).
    pub failed: AtomicU64,
    /// Requests sent, retries included.
    pub requests: AtomicU64,
    /// Retries.
    pub retries: AtomicU64,
}

/// Counters of the queue and every exporter; shared with the admin endpoint.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Spans accepted into the queue.
    pub enqueued: AtomicU64,
    /// Spans dropped because the queue was full or closed.
    pub dropped: AtomicU64,
    /// Per exporter.
    pub sinks: Vec<SinkCounters>,
    queue: Option<Arc<Queue>>,
}

/// The queue between the request path and the export thread.
#[derive(Debug)]
struct Queue {
    spans: ArrayQueue<Box<SpanRecord>>,
    /// A full batch is waiting (set by the producer that filled it, cleared by the worker).
    wake_pending: AtomicBool,
    /// No more spans are accepted.
    closed: AtomicBool,
    ready: Notify,
    batch_size: usize,
}

/// A point-in-time copy of [`ExportStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Spans waiting in the queue.
    pub queued: u64,
    /// The queue's capacity.
    pub queue_capacity: u64,
    /// Spans accepted into the queue, ever.
    pub enqueued: u64,
    /// Spans dropped because the queue was full or closed.
    pub dropped: u64,
    /// Per exporter: (name, exported, rejected, failed, requests, retries).
    pub sinks: Vec<SinkSnapshot>,
}

/// A point-in-time copy of [`SinkCounters`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkSnapshot {
    /// The exporter's name.
    pub name: &'static str,
    /// Spans accepted.
    pub exported: u64,
    /// Spans rejected by the receiver.
    pub rejected: u64,
    /// Spans lost to failed exports.
    pub failed: u64,
    /// Requests, retries included.
    pub requests: u64,
    /// Retries.
    pub retries: u64,
}

impl ExportStats {
    /// Spans waiting in the queue now, and its capacity (both 0 without a queue).
    pub fn queue_fill(&self) -> (u64, u64) {
        self.queue.as_ref().map_or((0, 0), |q| {
            (q.spans.len() as u64, q.spans.capacity() as u64)
        })
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let enqueued = self.enqueued.load(Ordering::Relaxed);
        StatsSnapshot {
            queued: self.queue.as_ref().map_or(0, |q| q.spans.len() as u64),
            queue_capacity: self.queue.as_ref().map_or(0, |q| q.spans.capacity() as u64),
            enqueued,
            dropped: self.dropped.load(Ordering::Relaxed),
            sinks: self
                .sinks
                .iter()
                .map(|s| SinkSnapshot {
                    name: s.name,
                    exported: s.exported.load(Ordering::Relaxed),
                    rejected: s.rejected.load(Ordering::Relaxed),
                    failed: s.failed.load(Ordering::Relaxed),
                    requests: s.requests.load(Ordering::Relaxed),
                    retries: s.retries.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

/// The [`SpanProcessor`] the tracer calls: a bounded, non-blocking hand-off.
#[derive(Debug)]
pub struct BatchProcessor {
    queue: Arc<Queue>,
    stats: Arc<ExportStats>,
    warned: AtomicBool,
}

impl BatchProcessor {
    #[cold]
    fn drop_span(&self, why: &str) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                capacity = self.queue.spans.capacity(),
                "span dropped: {why}; further drops are only counted (inferscope_export_spans_dropped)"
            );
        }
    }
}

impl SpanProcessor for BatchProcessor {
    #[inline]
    fn on_end(&self, span: Box<SpanRecord>) {
        let q = &self.queue;
        if q.closed.load(Ordering::Relaxed) {
            return self.drop_span("the exporter has shut down");
        }
        if q.spans.push(span).is_err() {
            return self.drop_span("the export queue is full");
        }
        self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
        if q.spans.len() >= q.batch_size && !q.wake_pending.swap(true, Ordering::AcqRel) {
            q.ready.notify_one();
        }
    }
}

/// How a flush or shutdown ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    /// The deadline passed before the export thread answered.
    #[error("flush did not finish within {0:?}")]
    Timeout(Duration),
    /// Some spans could not be exported.
    #[error("{failed} span(s) could not be exported")]
    Incomplete {
        /// Spans lost.
        failed: u64,
    },
    /// The export thread is gone.
    #[error("the export thread has stopped")]
    Stopped,
}

type Reply = Box<dyn FnOnce(Result<(), FlushError>) + Send>;

/// How long past a flush's or shutdown's deadline its caller waits for the worker's answer.
const REPLY_MARGIN: Duration = Duration::from_secs(2);

enum Control {
    Flush { deadline: Instant, reply: Reply },
    Shutdown { deadline: Instant, reply: Reply },
}

/// Controls the export thread: flush and shut down.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    ctrl: mpsc::UnboundedSender<Control>,
    stats: Arc<ExportStats>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Control::Flush { .. } => "Flush",
            Control::Shutdown { .. } => "Shutdown",
        })
    }
}

impl WorkerHandle {
    /// The counters.
    pub fn stats(&self) -> &Arc<ExportStats> {
        &self.stats
    }

    async fn ask(&self, shutdown: bool, timeout: Duration) -> Result<(), FlushError> {
        let (tx, rx) = oneshot::channel();
        let reply: Reply = Box::new(move |r| {
            let _ = tx.send(r);
        });
        let deadline = Instant::now() + timeout;
        let msg = if shutdown {
            Control::Shutdown { deadline, reply }
        } else {
            Control::Flush { deadline, reply }
        };
        self.ctrl.send(msg).map_err(|_| FlushError::Stopped)?;
        // The worker answers by the deadline, with every span exported or counted as failed;
        // the margin lets its answer (and its counts) arrive.
        match tokio::time::timeout(timeout + REPLY_MARGIN, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(FlushError::Stopped),
            Err(_) => Err(FlushError::Timeout(timeout)),
        }
    }

    /// Exports everything queued now; waits at most `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        self.ask(false, timeout).await
    }

    /// Closes the queue, exports everything in it, and stops the thread; waits at most
    /// `timeout`.
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), FlushError> {
        self.ask(true, timeout).await
    }

    /// [`WorkerHandle::shutdown`] for code without an async runtime (it blocks the calling
    /// thread, so do not call it from inside one).
    pub fn shutdown_blocking(&self, timeout: Duration) -> Result<(), FlushError> {
        self.ask_blocking(true, timeout)
    }

    /// [`WorkerHandle::flush`] for code without an async runtime.
    pub fn flush_blocking(&self, timeout: Duration) -> Result<(), FlushError> {
        self.ask_blocking(false, timeout)
    }

    fn ask_blocking(&self, shutdown: bool, timeout: Duration) -> Result<(), FlushError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let reply: Reply = Box::new(move |r| {
            let _ = tx.send(r);
        });
        let deadline = Instant::now() + timeout;
        let msg = if shutdown {
            Control::Shutdown { deadline, reply }
        } else {
            Control::Flush { deadline, reply }
        };
        self.ctrl.send(msg).map_err(|_| FlushError::Stopped)?;
        match rx.recv_timeout(timeout + REPLY_MARGIN) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(FlushError::Timeout(timeout)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(FlushError::Stopped),
        }
    }
}

/// Builds the exporters inside the export thread's runtime (gRPC channels need one).
pub type ExporterFactory =
    Box<dyn FnOnce() -> Result<Vec<Box<dyn SpanExporter>>, crate::otlp::BuildError> + Send>;

/// Starts the export thread. Returns once the exporters are built (or failed to build).
/// The exporters' counters are named after [`SpanExporter::name`].
pub fn spawn(
    config: BatchConfig,
    factory: ExporterFactory,
) -> Result<(BatchProcessor, WorkerHandle), crate::InitError> {
    let queue = Arc::new(Queue {
        spans: ArrayQueue::new(config.max_queue_size.max(1)),
        wake_pending: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        ready: Notify::new(),
        batch_size: config.max_export_batch_size.max(1),
    });
    let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let worker_queue = queue.clone();
    std::thread::Builder::new()
        .name("inferscope-export".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(crate::InitError::Runtime(e)));
                    return;
                }
            };
            let exporters = match runtime.block_on(async { factory() }) {
                Ok(e) => e,
                Err(e) => {
                    let _ = ready_tx.send(Err(crate::InitError::Build(e)));
                    return;
                }
            };
            let stats = Arc::new(ExportStats {
                sinks: exporters
                    .iter()
                    .map(|e| SinkCounters {
                        name: e.name(),
                        ..SinkCounters::default()
                    })
                    .collect(),
                queue: Some(worker_queue.clone()),
                ..ExportStats::default()
            });
            let _ = ready_tx.send(Ok(stats.clone()));
            runtime.block_on(Worker::new(config, exporters, stats, worker_queue).run(ctrl_rx));
        })
        .map_err(crate::InitError::Runtime)?;
    let stats = match ready_rx.recv() {
        Ok(Ok(stats)) => stats,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(crate::InitError::Runtime(std::io::Error::other(
                "the export thread stopped while starting",
            )));
        }
    };
    Ok((
        BatchProcessor {
            queue,
            stats: stats.clone(),
            warned: AtomicBool::new(false),
        },
        WorkerHandle {
            ctrl: ctrl_tx,
            stats,
        },
    ))
}

struct Worker {
    config: BatchConfig,
    exporters: Vec<Box<dyn SpanExporter>>,
    stats: Arc<ExportStats>,
    queue: Arc<Queue>,
    batch: Vec<SpanRecord>,
    last_warning: Option<Instant>,
}

impl Worker {
    fn new(
        config: BatchConfig,
        exporters: Vec<Box<dyn SpanExporter>>,
        stats: Arc<ExportStats>,
        queue: Arc<Queue>,
    ) -> Worker {
        Worker {
            batch: Vec::with_capacity(config.max_export_batch_size),
            config,
            exporters,
            stats,
            queue,
            last_warning: None,
        }
    }

    async fn run(mut self, mut ctrl: mpsc::UnboundedReceiver<Control>) {
        let queue = self.queue.clone();
        let mut timer = tokio::time::Instant::now() + self.config.schedule_delay;
        // Flushes and shutdowns that arrived while a batch was being exported, in order (`None`:
        // every handle is gone), and the spans that export lost when a shutdown cut it off.
        let mut waiting: VecDeque<Option<Control>> = VecDeque::new();
        let mut cut_off = 0;
        loop {
            let control = match waiting.pop_front() {
                Some(c) => Some(c),
                None => tokio::select! {
                    biased;
                    c = ctrl.recv() => Some(c),
                    () = queue.ready.notified() => None,
                    () = tokio::time::sleep_until(timer) => {
                        // Time for a partial batch.
                        timer = tokio::time::Instant::now();
                        None
                    }
                },
            };
            match control {
                Some(Some(Control::Flush { deadline, reply })) => {
                    let r = self.drain(deadline).await;
                    reply(r);
                    continue;
                }
                Some(Some(Control::Shutdown { deadline, reply })) => {
                    queue.closed.store(true, Ordering::Relaxed);
                    let r = match (self.drain(deadline).await, std::mem::take(&mut cut_off)) {
                        (r, 0) => r,
                        (Ok(()), n) => Err(FlushError::Incomplete { failed: n }),
                        (Err(FlushError::Incomplete { failed }), n) => {
                            Err(FlushError::Incomplete { failed: failed + n })
                        }
                        (r, _) => r,
                    };
                    self.sweep();
                    reply(r);
                    // Flushes that came after the shutdown hear that the thread has stopped.
                    return;
                }
                // Every handle is gone: export what is left and stop.
                Some(None) => {
                    queue.closed.store(true, Ordering::Relaxed);
                    let deadline = Instant::now() + self.config.export_timeout;
                    let _ = self.drain(deadline).await;
                    self.sweep();
                    return;
                }
                None => {}
            }
            queue.wake_pending.store(false, Ordering::Release);
            let timed_out = tokio::time::Instant::now() >= timer;
            // Full batches go now; a partial one waits for the timer.
            while waiting.is_empty() && queue.spans.len() >= self.config.max_export_batch_size {
                self.fill();
                let deadline = Instant::now() + self.config.export_timeout;
                cut_off = self.export(deadline, Some(&mut ctrl), &mut waiting).await;
                timer = tokio::time::Instant::now() + self.config.schedule_delay;
            }
            if waiting.is_empty() && timed_out {
                self.fill();
                let deadline = Instant::now() + self.config.export_timeout;
                cut_off = self.export(deadline, Some(&mut ctrl), &mut waiting).await;
                timer = tokio::time::Instant::now() + self.config.schedule_delay;
            }
            // The count of spans cut off matters only to the shutdown that cut them off.
            if !waiting
                .iter()
                .any(|c| matches!(c, Some(Control::Shutdown { .. })))
            {
                cut_off = 0;
            }
        }
    }

    /// After shutdown: a span whose producer passed the `closed` check just before it was set
    /// can still arrive. It was taken into the queue (counted as enqueued), so every exporter
    /// counts it as failed rather than leaving it uncounted.
    fn sweep(&mut self) {
        let mut n = 0;
        while self.queue.spans.pop().is_some() {
            n += 1;
        }
        if n > 0 {
            for sink in &self.stats.sinks {
                sink.failed.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Moves up to a batch of spans from the queue into the batch.
    fn fill(&mut self) {
        while self.batch.len() < self.config.max_export_batch_size {
            match self.queue.spans.pop() {
                Some(span) => self.batch.push(*span),
                None => break,
            }
        }
    }

    /// Exports the current batch and everything queued, stopping at `deadline`; what is left
    /// then is counted as failed (the exporters give up at once when no time is left).
    async fn drain(&mut self, deadline: Instant) -> Result<(), FlushError> {
        let mut failed = 0;
        loop {
            self.fill();
            if self.batch.is_empty() {
                break;
            }
            let per_batch = deadline.min(Instant::now() + self.config.export_timeout);
            failed += self.export(per_batch, None, &mut VecDeque::new()).await;
        }
        if failed == 0 {
            Ok(())
        } else {
            Err(FlushError::Incomplete { failed })
        }
    }

    /// Sends the batch to every exporter at once and clears it; returns the spans lost by the
    /// exporter that lost the most.
    ///
    /// With `ctrl`, a flush or shutdown that arrives meanwhile is returned, to run next; a
    /// shutdown also cuts this export off at its own deadline, and the exporters that had not
    /// finished by then count the batch as failed (so a span is never left uncounted, nor
    /// written twice by an exporter that had finished).
    async fn export(
        &mut self,
        deadline: Instant,
        mut ctrl: Option<&mut mpsc::UnboundedReceiver<Control>>,
        waiting: &mut VecDeque<Option<Control>>,
    ) -> u64 {
        if self.batch.is_empty() {
            return 0;
        }
        let n = self.batch.len() as u64;
        let batch = &self.batch;
        let mut pending: Vec<_> = self
            .exporters
            .iter()
            .map(|e| Some(e.export(batch, deadline)))
            .collect();
        let mut results: Vec<Option<Result<crate::exporter::Accepted, ExportError>>> =
            pending.iter().map(|_| None).collect();
        let mut cap: Option<Instant> = None;
        {
            let all_done = std::future::poll_fn(|cx| {
                let mut left = false;
                for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
                    if let Some(fut) = slot {
                        match fut.as_mut().poll(cx) {
                            std::task::Poll::Ready(r) => {
                                *result = Some(r);
                                *slot = None;
                            }
                            std::task::Poll::Pending => left = true,
                        }
                    }
                }
                if left {
                    std::task::Poll::Pending
                } else {
                    std::task::Poll::Ready(())
                }
            });
            tokio::pin!(all_done);
            loop {
                let capped = async {
                    match cap {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                };
                // Once every handle is gone the channel only says so again: stop reading.
                let closed = waiting.back().is_some_and(Option::is_none);
                let control = async {
                    match ctrl.as_deref_mut() {
                        Some(c) if !closed => c.recv().await,
                        _ => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = &mut all_done => break,
                    () = capped => break,
                    c = control => {
                        if let Some(Control::Shutdown { deadline, .. }) = &c {
                            cap = Some(cap.map_or(*deadline, |at| at.min(*deadline)));
                        }
                        waiting.push_back(c);
                    }
                }
            }
        }
        drop(pending);
        let results = results.into_iter().map(|r| {
            r.unwrap_or_else(|| {
                Err(ExportError {
                    message: "cut off by the shutdown deadline".into(),
                    retryable: true,
                    retry_after: None,
                    attempts: 1,
                })
            })
        });
        let mut lost = 0;
        for (i, result) in results.into_iter().enumerate() {
            let Some(counters) = self.stats.sinks.get(i) else {
                continue;
            };
            match result {
                Ok(accepted) => {
                    counters
                        .exported
                        .fetch_add(n.saturating_sub(accepted.rejected), Ordering::Relaxed);
                    counters
                        .rejected
                        .fetch_add(accepted.rejected, Ordering::Relaxed);
                    counters
                        .requests
                        .fetch_add(u64::from(accepted.attempts.max(1)), Ordering::Relaxed);
                    counters.retries.fetch_add(
                        u64::from(accepted.attempts.saturating_sub(1)),
                        Ordering::Relaxed,
                    );
                    if accepted.rejected > 0 {
                        tracing::warn!(
                            exporter = counters.name,
                            rejected = accepted.rejected,
                            message = accepted.message.as_deref().unwrap_or(""),
                            "the receiver rejected some spans"
                        );
                    }
                }
                Err(e) => {
                    counters.failed.fetch_add(n, Ordering::Relaxed);
                    counters
                        .requests
                        .fetch_add(u64::from(e.attempts.max(1)), Ordering::Relaxed);
                    counters
                        .retries
                        .fetch_add(u64::from(e.attempts.saturating_sub(1)), Ordering::Relaxed);
                    lost = lost.max(n);
                    let now = Instant::now();
                    if self
                        .last_warning
                        .is_none_or(|t| now.duration_since(t) > Duration::from_secs(10))
                    {
                        self.last_warning = Some(now);
                        tracing::warn!(exporter = counters.name, spans = n, attempts = e.attempts, error = %e.message, "span export failed; spans dropped");
                    } else {
                        tracing::debug!(exporter = counters.name, spans = n, error = %e.message, "span export failed");
                    }
                }
            }
        }
        self.batch.clear();
        lost
    }
}
