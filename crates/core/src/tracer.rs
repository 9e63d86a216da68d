//! The tracer: starts spans, decides sampling, and hands finished spans to a processor.
//!
//! The disabled and unsampled paths allocate nothing and do not read the clock: a span that is
//! not recorded is a context (for propagation) and nothing else.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::ids::{SpanId, TraceFlags};
use crate::sampling::Sampler;
use crate::span::{Event, KeyValue, Scope, SpanKind, SpanRecord, Status, Str, Value, unix_nanos};
use crate::trace_context::SpanContext;

/// Receives every finished, sampled span. Implementations must not block: the exporter's
/// batch processor only pushes into a bounded queue. The span arrives in the allocation it was
/// recorded in, so handing it on costs no copy.
pub trait SpanProcessor: Send + Sync {
    /// Called once per finished span.
    fn on_end(&self, span: Box<SpanRecord>);
}

struct TracerInner {
    sampler: Sampler,
    scope: Scope,
    processor: Arc<dyn SpanProcessor>,
}

/// Starts spans. Cheap to clone. A disabled tracer ([`Tracer::disabled`], also the default)
/// records nothing and passes the parent's context through unchanged.
#[derive(Clone, Default)]
pub struct Tracer {
    inner: Option<Arc<TracerInner>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            None => f.write_str("Tracer(disabled)"),
            Some(i) => write!(f, "Tracer({}, {})", i.scope.name, i.sampler.describe()),
        }
    }
}

impl Tracer {
    /// A tracer for `scope` that samples with `sampler` and hands spans to `processor`.
    pub fn new(scope: Scope, sampler: Sampler, processor: Arc<dyn SpanProcessor>) -> Tracer {
        Tracer {
            inner: Some(Arc::new(TracerInner {
                sampler,
                scope,
                processor,
            })),
        }
    }

    /// A tracer that records nothing.
    pub fn disabled() -> Tracer {
        Tracer { inner: None }
    }

    /// Whether spans can be recorded at all.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The scope spans are recorded under.
    pub fn scope(&self) -> Option<&Scope> {
        self.inner.as_ref().map(|i| &i.scope)
    }

    /// Starts a span now. See [`Tracer::start_at`].
    pub fn start(
        &self,
        name: impl Into<Str>,
        kind: SpanKind,
        parent: Option<&SpanContext>,
    ) -> Span {
        self.start_with(name, kind, parent, SystemTime::now)
    }

    /// Starts a span at `start`, a child of `parent` (or a new trace's root if `parent` is
    /// `None` or invalid).
    ///
    /// - Disabled tracer: a non-recording span whose context is the parent's, so injecting it
    ///   forwards the caller's `traceparent` unchanged.
    /// - Not sampled: a non-recording span with a fresh span id and `sampled` cleared, so the
    ///   decision propagates downstream.
    /// - Sampled: a recording span.
    pub fn start_at(
        &self,
        name: impl Into<Str>,
        kind: SpanKind,
        parent: Option<&SpanContext>,
        start: SystemTime,
    ) -> Span {
        self.start_with(name, kind, parent, || start)
    }

    fn start_with(
        &self,
        name: impl Into<Str>,
        kind: SpanKind,
        parent: Option<&SpanContext>,
        start: impl FnOnce() -> SystemTime,
    ) -> Span {
        let parent = parent.filter(|p| p.is_valid());
        let Some(inner) = &self.inner else {
            return Span {
                context: parent.cloned().unwrap_or(SpanContext::INVALID),
                recording: None,
            };
        };
        let (trace_id, span_id) = match parent {
            Some(p) => (p.trace_id, SpanId::random()),
            None => crate::ids::new_root_ids(),
        };
        let sampled = inner.sampler.should_sample(parent, trace_id);
        let context = SpanContext {
            trace_id,
            span_id,
            flags: TraceFlags::with_sampled(sampled),
            state: parent.map(|p| p.state.clone()).unwrap_or_default(),
            remote: false,
        };
        if !sampled {
            return Span {
                context,
                recording: None,
            };
        }
        let mut record = SpanRecord::new(
            context.clone(),
            parent,
            name,
            kind,
            start(),
            inner.scope.clone(),
        );
        // One allocation for a typical inference span's attributes.
        record.attributes.reserve(32);
        Span {
            context,
            recording: Some((Box::new(record), inner.processor.clone())),
        }
    }

    /// Hands an already finished record to the processor, bypassing sampling (for spans built
    /// elsewhere, e.g. derived child spans). Nothing happens when the tracer is disabled.
    pub fn export(&self, record: SpanRecord) {
        if let Some(inner) = &self.inner {
            inner.processor.on_end(Box::new(record));
        }
    }
}

/// A started span. It ends when [`Span::end`] is called or when it is dropped, so a request
/// future that is cancelled still produces its span.
pub struct Span {
    context: SpanContext,
    recording: Option<(Box<SpanRecord>, Arc<dyn SpanProcessor>)>,
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("context", &self.context)
            .field("recording", &self.is_recording())
            .finish()
    }
}

impl Span {
    /// A span that records nothing, with `context` for propagation.
    pub fn non_recording(context: SpanContext) -> Span {
        Span {
            context,
            recording: None,
        }
    }

    /// The context to propagate to children and downstream services.
    pub fn context(&self) -> &SpanContext {
        &self.context
    }

    /// Whether attributes set on this span are kept.
    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// Sets an attribute (a later value of the same key wins). A no-op when not recording.
    #[inline]
    pub fn set_attribute(&mut self, key: impl Into<Str>, value: impl Into<Value>) {
        if let Some(r) = &mut self.recording {
            r.0.push(key, value);
        }
    }

    /// Sets the attribute only if `value` is `Some`.
    #[inline]
    pub fn set_attribute_opt<V: Into<Value>>(&mut self, key: impl Into<Str>, value: Option<V>) {
        if let (Some(r), Some(v)) = (&mut self.recording, value) {
            r.0.push(key, v);
        }
    }

    /// Adds an event now.
    pub fn add_event(&mut self, name: impl Into<Str>, attributes: Vec<KeyValue>) {
        if let Some(r) = &mut self.recording {
            r.0.add_event(Event {
                name: name.into(),
                time_unix_nanos: unix_nanos(SystemTime::now()),
                attributes,
            });
        }
    }

    /// Sets the status.
    pub fn set_status(&mut self, status: Status) {
        if let Some(r) = &mut self.recording {
            r.0.status = status;
        }
    }

    /// Renames the span (e.g. once the model name is known).
    pub fn update_name(&mut self, name: impl Into<Str>) {
        if let Some(r) = &mut self.recording {
            r.0.name = name.into();
        }
    }

    /// The record being built, when recording.
    pub fn record_mut(&mut self) -> Option<&mut SpanRecord> {
        self.recording.as_mut().map(|r| &mut *r.0)
    }

    /// Ends the span now.
    pub fn end(mut self) {
        self.finish(SystemTime::now);
    }

    /// Ends the span at `end`.
    pub fn end_at(mut self, end: SystemTime) {
        self.finish(|| end);
    }

    fn finish(&mut self, end: impl FnOnce() -> SystemTime) {
        if let Some((mut record, processor)) = self.recording.take() {
            record.end_unix_nanos = unix_nanos(end()).max(record.start_unix_nanos);
            processor.on_end(record);
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.finish(SystemTime::now);
    }
}

/// A processor that keeps every span in memory: for tests, the demo and local tools.
#[derive(Debug, Default)]
pub struct InMemoryProcessor {
    spans: Mutex<Vec<SpanRecord>>,
}

impl InMemoryProcessor {
    /// An empty collector.
    pub fn new() -> Arc<InMemoryProcessor> {
        Arc::new(InMemoryProcessor::default())
    }

    /// Takes every span collected so far.
    pub fn take(&self) -> Vec<SpanRecord> {
        std::mem::take(&mut *self.spans.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// How many spans are held.
    pub fn len(&self) -> usize {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no span is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SpanProcessor for InMemoryProcessor {
    fn on_end(&self, span: Box<SpanRecord>) {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(*span);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TraceId;
    use crate::trace_context::TraceState;

    fn remote_parent(sampled: bool) -> SpanContext {
        SpanContext {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            flags: TraceFlags::with_sampled(sampled),
            state: TraceState::parse(["vendor=x"]),
            remote: true,
        }
    }

    #[test]
    fn sampled_span_is_a_child_of_its_parent_and_reaches_the_processor() {
        let p = InMemoryProcessor::new();
        let tracer = Tracer::new(Scope::new("test"), Sampler::default(), p.clone());
        let parent = remote_parent(true);
        let mut span = tracer.start("chat m", SpanKind::Client, Some(&parent));
        span.set_attribute("a", 1i64);
        span.set_attribute("a", 2i64);
        let ctx = span.context().clone();
        span.end();
        let spans = p.take();
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.context.trace_id, parent.trace_id);
        assert_ne!(s.context.span_id, parent.span_id);
        assert_eq!(s.parent_span_id, Some(parent.span_id));
        assert!(s.parent_is_remote);
        assert_eq!(s.context, ctx);
        assert_eq!(ctx.state.get("vendor"), Some("x"));
        assert_eq!(s.get("a"), Some(&Value::I64(2)));
        assert!(s.end_unix_nanos >= s.start_unix_nanos);
    }

    #[test]
    fn unsampled_parent_gives_a_non_recording_child_with_a_new_id() {
        let p = InMemoryProcessor::new();
        let tracer = Tracer::new(Scope::new("test"), Sampler::default(), p.clone());
        let parent = remote_parent(false);
        let span = tracer.start("x", SpanKind::Client, Some(&parent));
        assert!(!span.is_recording());
        assert_eq!(span.context().trace_id, parent.trace_id);
        assert_ne!(span.context().span_id, parent.span_id);
        assert!(!span.context().is_sampled());
        drop(span);
        assert!(p.is_empty());
    }

    #[test]
    fn disabled_tracer_passes_the_parent_through() {
        let parent = remote_parent(true);
        let span = Tracer::disabled().start("x", SpanKind::Client, Some(&parent));
        assert!(!span.is_recording());
        assert_eq!(span.context(), &parent);
        let root = Tracer::disabled().start("x", SpanKind::Client, None);
        assert!(!root.context().is_valid());
    }

    #[test]
    fn dropping_a_span_ends_it() {
        let p = InMemoryProcessor::new();
        let tracer = Tracer::new(Scope::new("test"), Sampler::AlwaysOn, p.clone());
        {
            let _span = tracer.start("dropped", SpanKind::Server, None);
        }
        assert_eq!(p.take()[0].name.as_str(), "dropped");
    }

    #[test]
    fn dedup_keeps_the_last_value_in_first_order() {
        let mut r = SpanRecord::new(
            SpanContext::INVALID,
            None,
            "x",
            SpanKind::Internal,
            SystemTime::now(),
            Scope::new("t"),
        );
        r.push("a", 1i64);
        r.push("b", 1i64);
        r.push(String::from("a"), 3i64);
        r.dedup_attributes();
        assert_eq!(
            r.attributes,
            vec![KeyValue::new("a", 3i64), KeyValue::new("b", 1i64)]
        );
    }
}
