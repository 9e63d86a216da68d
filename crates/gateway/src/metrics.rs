//! Prometheus metrics of the admin endpoint: the GenAI client histograms of the semantic
//! conventions, requests in flight, upstream errors, and the span exporter's counters.

use std::sync::Arc;

use inferscope_export::ExportStats;

use crate::ingest::IngestStats;
use inferscope_semconv::metric::{self, Histogram as Semconv};
use prometheus_client::collector::Collector;
use std::fmt::Write as _;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A label value that is cheap to clone: a constant or a shared string.
#[derive(Debug, Clone)]
pub enum Label {
    /// A constant.
    Static(&'static str),
    /// A shared string.
    Shared(Arc<str>),
}

impl Label {
    fn as_str(&self) -> &str {
        match self {
            Label::Static(s) => s,
            Label::Shared(s) => s,
        }
    }
}

impl PartialEq for Label {
    fn eq(&self, other: &Label) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Label {}

impl std::hash::Hash for Label {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// A metric's labels: semantic-convention attribute names with dots as underscores.
pub type Labels = Vec<(&'static str, Label)>;

/// Distinct values one label may take before further ones are reported as `_OTHER`: model
/// names and error types come from clients and upstreams, and every new value is a new series.
const MAX_LABEL_VALUES: usize = 128;

/// Shares label strings and bounds their cardinality.
#[derive(Debug, Default)]
struct Interner(std::sync::Mutex<std::collections::HashMap<Box<str>, Arc<str>>>);

impl Interner {
    fn get(&self, value: &str) -> Label {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = map.get(value) {
            return Label::Shared(v.clone());
        }
        if map.len() >= MAX_LABEL_VALUES {
            return Label::Static("_OTHER");
        }
        let shared: Arc<str> = Arc::from(value);
        map.insert(value.into(), shared.clone());
        Label::Shared(shared)
    }
}

/// Builds a histogram with a convention's bucket boundaries.
#[derive(Debug, Clone, Copy)]
pub struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type Histograms = Family<Labels, Histogram, Buckets>;

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `gen_ai.client.operation.duration`.
    pub duration: Histograms,
    /// `gen_ai.client.operation.time_to_first_chunk`.
    pub time_to_first_chunk: Histograms,
    /// `gen_ai.client.operation.time_per_output_chunk`.
    pub time_per_output_chunk: Histograms,
    /// `gen_ai.client.token.usage`.
    pub token_usage: Histograms,
    /// Requests being served now.
    pub in_flight: Gauge,
    /// Upstream failures by `error.type`.
    pub upstream_errors: Family<Labels, Counter>,
    /// Requests by route kind and status code.
    pub requests: Family<Labels, Counter>,
    models: Interner,
    errors: Interner,
}

fn histograms(registry: &mut Registry, h: &Semconv) -> Histograms {
    let family = Family::new_with_constructor(Buckets(h.buckets));
    registry.register(h.prometheus_name(), h.description, family.clone());
    family
}

impl Metrics {
    /// Registers every metric; `export` adds the exporter's counters when tracing is on.
    pub fn new(export: Option<Arc<ExportStats>>, ingest: Option<Arc<IngestStats>>) -> Metrics {
        let mut registry = Registry::default();
        let duration = histograms(&mut registry, &metric::CLIENT_OPERATION_DURATION);
        let time_to_first_chunk = histograms(&mut registry, &metric::CLIENT_TIME_TO_FIRST_CHUNK);
        let time_per_output_chunk =
            histograms(&mut registry, &metric::CLIENT_TIME_PER_OUTPUT_CHUNK);
        let token_usage = histograms(&mut registry, &metric::CLIENT_TOKEN_USAGE);
        let in_flight = Gauge::default();
        registry.register(
            "inferscope_requests_in_flight",
            "Requests the gateway is serving now.",
            in_flight.clone(),
        );
        let upstream_errors = Family::<Labels, Counter>::default();
        registry.register(
            "inferscope_upstream_errors",
            "Exchanges that failed because of the upstream, by error.type.",
            upstream_errors.clone(),
        );
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "inferscope_requests",
            "Requests served, by route kind (inference or other) and HTTP status code.",
            requests.clone(),
        );
        if let Some(stats) = export {
            registry.register_collector(Box::new(ExportCollector(stats)));
        }
        if let Some(stats) = ingest {
            registry.register_collector(Box::new(IngestCollector(stats)));
        }
        Metrics {
            registry,
            duration,
            time_to_first_chunk,
            time_per_output_chunk,
            token_usage,
            in_flight,
            upstream_errors,
            requests,
            models: Interner::default(),
            errors: Interner::default(),
        }
    }

    /// A model name as a label (bounded cardinality).
    pub fn model(&self, name: Option<&str>) -> Label {
        match name {
            None | Some("") => Label::Static(""),
            Some(n) => self.models.get(n),
        }
    }

    /// An `error.type` as a label (bounded cardinality).
    pub fn error_type(&self, e: &str) -> Label {
        self.errors.get(e)
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Reads the ingest counters at scrape time.
#[derive(Debug)]
struct IngestCollector(Arc<IngestStats>);

impl Collector for IngestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.0;
        for (name, help, v) in [
            (
                "inferscope_ingest_forwarded_spans",
                "Spans received over OTLP and forwarded (phases included).",
                &s.forwarded,
            ),
            (
                "inferscope_ingest_filtered_spans",
                "Received spans a filter dropped.",
                &s.filtered,
            ),
            (
                "inferscope_ingest_rejected_spans",
                "Received spans refused for invalid ids.",
                &s.rejected,
            ),
            (
                "inferscope_ingest_refused_requests",
                "OTLP requests refused (malformed, too large, queue full).",
                &s.refused_requests,
            ),
            (
                "inferscope_ingest_joined_spans",
                "vLLM llm_request spans joined with a gateway CLIENT span.",
                &s.joined,
            ),
            (
                "inferscope_ingest_phase_spans",
                "Phase spans derived from llm_request.",
                &s.phases,
            ),
        ] {
            let c = ConstCounter::new(v.load(Relaxed));
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

/// Reads the exporter's counters at scrape time.
#[derive(Debug)]
struct ExportCollector(Arc<ExportStats>);

impl Collector for ExportCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.0.snapshot();
        let gauge = |encoder: &mut DescriptorEncoder<'_>,
                     name: &str,
                     help: &str,
                     v: u64|
         -> Result<(), std::fmt::Error> {
            let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        };
        let counter = |encoder: &mut DescriptorEncoder<'_>,
                       name: &str,
                       help: &str,
                       v: u64|
         -> Result<(), std::fmt::Error> {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
        };
        gauge(
            &mut encoder,
            "inferscope_exporter_queued_spans",
            "Spans waiting in the export queue.",
            s.queued,
        )?;
        gauge(
            &mut encoder,
            "inferscope_exporter_queue_capacity_spans",
            "Capacity of the export queue.",
            s.queue_capacity,
        )?;
        counter(
            &mut encoder,
            "inferscope_exporter_dropped_spans",
            "Spans dropped because the export queue was full.",
            s.dropped,
        )?;
        let sum = |f: fn(&inferscope_export::batch::SinkSnapshot) -> u64| {
            s.sinks.iter().map(f).sum::<u64>()
        };
        counter(
            &mut encoder,
            "inferscope_exporter_exported_spans",
            "Spans the exporters delivered.",
            sum(|x| x.exported),
        )?;
        counter(
            &mut encoder,
            "inferscope_exporter_failed_spans",
            "Spans lost to failed exports.",
            sum(|x| x.failed),
        )?;
        counter(
            &mut encoder,
            "inferscope_exporter_rejected_spans",
            "Spans the receiver rejected.",
            sum(|x| x.rejected),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_and_buckets() {
        let m = Metrics::new(
            Some(Arc::new(ExportStats::default())),
            Some(Arc::new(IngestStats::default())),
        );
        m.duration
            .get_or_create(&vec![("gen_ai_operation_name", Label::Static("chat"))])
            .observe(0.05);
        for i in 0..500 {
            let _ = m.model(Some(&format!("model-{i}")));
        }
        assert_eq!(m.model(Some("model-499")), Label::Static("_OTHER"));
        assert_eq!(m.model(Some("model-1")), Label::Static("model-1"));
        m.in_flight.inc();
        let text = m.encode();
        assert!(text.contains("gen_ai_client_operation_duration_seconds_bucket{le=\"0.08\",gen_ai_operation_name=\"chat\"} 1"), "{text}");
        assert!(text.contains("inferscope_requests_in_flight 1"));
        assert!(text.contains("inferscope_exporter_dropped_spans_total 0"));
    }
}
