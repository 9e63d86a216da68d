//! Prometheus metrics of the admin endpoint: the GenAI client histograms of the semantic
//! conventions, requests in flight, upstream errors, and the span exporter's counters.

pub(crate) mod otlp;

use std::sync::Arc;

use inferscope_export::ExportStats;

use crate::ingest::IngestStats;
use inferscope_semconv::latest::Conventions;
use inferscope_semconv::metric::{self, Histogram as Semconv};
use prometheus_client::collector::Collector;
use std::fmt::Write as _;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A label value that is cheap to clone: a constant or a shared string.
#[derive(Debug, Clone)]
pub(crate) enum Label {
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
    /// Writes the value with the exposition's escapes (`\\`, `\"`, `\n`): prometheus-client
    /// writes label values as given, and a model name a client sent with a quote in it would
    /// otherwise break the whole scrape.
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let value = self.as_str();
        if !value.contains(['\\', '"', '\n']) {
            return encoder.write_str(value);
        }
        for c in value.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A metric's labels: semantic-convention attribute names with dots as underscores.
pub(crate) type Labels = Vec<(&'static str, Label)>;

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
pub(crate) struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

impl MetricConstructor<Exemplary> for Buckets {
    fn new_metric(&self) -> Exemplary {
        HistogramWithExemplars::new(self.0.iter().copied())
    }
}

type Histograms = Family<Labels, Histogram, Buckets>;

/// A histogram that keeps, per bucket, the trace of its latest sampled observation.
pub(crate) type Exemplary = HistogramWithExemplars<TraceExemplar>;

/// The histograms a slow bucket should link to a trace from.
type ExemplaryHistograms = Family<Labels, Exemplary, Buckets>;

/// An exemplar's labels: the trace and span ids of the observation (OpenMetrics exemplars,
/// which Prometheus stores with `--enable-feature=exemplar-storage` and Grafana links from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TraceExemplar {
    /// The trace.
    pub(crate) trace_id: inferscope_core::TraceId,
    /// The span whose duration was observed.
    pub(crate) span_id: inferscope_core::SpanId,
    /// When (one clock read for every histogram of the exchange).
    pub(crate) at: std::time::SystemTime,
}

impl TraceExemplar {
    /// The exemplar of a span, if it is sampled (an unsampled trace is exported nowhere, so a
    /// link to it would lead nowhere).
    pub(crate) fn of(context: &inferscope_core::SpanContext) -> Option<TraceExemplar> {
        context.is_sampled().then(|| TraceExemplar {
            trace_id: context.trace_id,
            span_id: context.span_id,
            at: std::time::SystemTime::now(),
        })
    }
}

impl prometheus_client::encoding::EncodeLabelSet for TraceExemplar {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        let mut label = encoder.encode_label();
        let mut key = label.encode_label_key()?;
        key.write_str("trace_id")?;
        let mut value = key.encode_label_value()?;
        write!(value, "{}", self.trace_id)?;
        value.finish()?;
        let mut label = encoder.encode_label();
        let mut key = label.encode_label_key()?;
        key.write_str("span_id")?;
        let mut value = key.encode_label_value()?;
        write!(value, "{}", self.span_id)?;
        value.finish()?;
        Ok(())
    }
}

/// The GenAI histograms of one series (one set of label values). prometheus-client's handles
/// share their state, so a series found once is recorded into directly afterwards.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// `gen_ai.client.operation.duration`.
    pub(crate) duration: Lazy<Exemplary>,
    /// `gen_ai.client.operation.time_to_first_chunk`.
    pub(crate) time_to_first_chunk: Lazy<Exemplary>,
    /// `gen_ai.client.operation.time_per_output_chunk`.
    pub(crate) time_per_output_chunk: LazyHistogram,
    /// `gen_ai.client.token.usage`, input tokens.
    pub(crate) input_tokens: LazyHistogram,
    /// `gen_ai.client.token.usage`, output tokens.
    pub(crate) output_tokens: LazyHistogram,
}

/// One histogram of a series, made in its family at its first observation: a series that never
/// records a time to first chunk (a non-streamed call) or output tokens (embeddings) exports no
/// empty histogram for it. Clones share the histogram once made.
#[derive(Debug, Clone)]
pub(crate) struct Lazy<M> {
    family: Family<Labels, M, Buckets>,
    labels: Arc<Labels>,
    made: Arc<std::sync::OnceLock<M>>,
}

/// A histogram without exemplars.
pub(crate) type LazyHistogram = Lazy<Histogram>;

impl<M: Clone> Lazy<M>
where
    Buckets: MetricConstructor<M>,
{
    fn new(family: &Family<Labels, M, Buckets>, labels: Arc<Labels>) -> Lazy<M> {
        Lazy {
            family: family.clone(),
            labels,
            made: Arc::default(),
        }
    }

    fn get(&self) -> &M {
        self.made
            .get_or_init(|| self.family.get_or_create(&self.labels).clone())
    }
}

impl Lazy<Histogram> {
    /// Records `value`.
    pub(crate) fn observe(&self, value: f64) {
        self.get().observe(value);
    }
}

impl Lazy<Exemplary> {
    /// Records `value`, with the trace it came from as its bucket's exemplar when sampled.
    pub(crate) fn observe(&self, value: f64, exemplar: Option<TraceExemplar>) {
        let at = exemplar.map(|e| e.at);
        self.get().observe(value, exemplar, at);
    }
}

/// Counts metrics pushes; the series appear at the first push.
#[derive(Debug)]
pub(crate) struct PushStats(Family<Labels, Counter>);

impl PushStats {
    fn inc(&self, result: &'static str) {
        self.0
            .get_or_create(&vec![("result", Label::Static(result))])
            .inc();
    }

    /// A push the receiver took.
    pub(crate) fn inc_exported(&self) {
        self.inc("exported");
    }

    /// A push that failed.
    pub(crate) fn inc_failed(&self) {
        self.inc("failed");
    }
}

/// What tells one exchange's series from another's; the gateway's own labels (provider,
/// server) are the same for all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesKey<'a> {
    /// `gen_ai.operation.name`.
    pub(crate) operation: &'static str,
    /// `gen_ai.request.model`.
    pub(crate) request_model: Option<&'a str>,
    /// `gen_ai.response.model`.
    pub(crate) response_model: Option<&'a str>,
    /// `error.type`.
    pub(crate) error_type: Option<&'a str>,
}

/// Series found recently, newest first. Looking one up in the families hashes every label
/// value with SipHash, five times an exchange (8,500 instructions an exchange in callgrind);
/// a hit here compares a few short strings.
#[derive(Debug, Default)]
struct SeriesCache(std::sync::Mutex<Vec<(OwnedKey, Series)>>);

#[derive(Debug, PartialEq, Eq)]
struct OwnedKey {
    operation: &'static str,
    request_model: Option<Box<str>>,
    response_model: Option<Box<str>>,
    error_type: Option<Box<str>>,
}

impl OwnedKey {
    fn is(&self, k: &SeriesKey<'_>) -> bool {
        self.operation == k.operation
            && self.request_model.as_deref() == k.request_model
            && self.response_model.as_deref() == k.response_model
            && self.error_type.as_deref() == k.error_type
    }
}

/// Bucket bounds of `inferscope_gateway_processing_seconds`: 5 µs to 100 ms.
const PROCESSING_BUCKETS: [f64; 14] = [
    5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1,
];

/// Series kept in the cache; past it the families answer (every series stays recorded).
const CACHED_SERIES: usize = 16;

/// The gateway's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Which GenAI names.
    conventions: Conventions,
    /// The duration histograms: `gen_ai.client.operation.duration`, or with the newest names
    /// also `gen_ai.client.inference.duration` and `gen_ai.client.embeddings.duration`.
    durations: Vec<(&'static str, ExemplaryHistograms)>,
    /// `gen_ai.client.operation.time_to_first_chunk` (or `….inference.…`).
    pub(crate) time_to_first_chunk: ExemplaryHistograms,
    /// `gen_ai.client.operation.time_per_output_chunk` (or `….inference.…`).
    pub(crate) time_per_output_chunk: Histograms,
    /// `gen_ai.client.token.usage`.
    pub(crate) token_usage: Histograms,
    /// Requests being served now.
    pub(crate) in_flight: Gauge,
    /// The gateway's own processing per request (in and out), seconds.
    pub(crate) processing: Histogram,
    /// `gen_ai.server.request.duration`, from ingested engine spans.
    server_duration: Histograms,
    /// `gen_ai.server.time_to_first_token`, likewise.
    server_ttft: Histograms,
    /// `gen_ai.server.time_per_output_token`, likewise.
    server_tpot: Histograms,
    /// Upstream failures by `error.type`.
    pub(crate) upstream_errors: Family<Labels, Counter>,
    /// Requests by route kind and status code.
    pub(crate) requests: Family<Labels, Counter>,
    /// Metrics pushes over OTLP, by result.
    pub(crate) pushes: PushStats,
    /// The conventions' histograms, by Prometheus name (for the OTLP push).
    semconv: Vec<(String, &'static Semconv)>,
    models: Interner,
    errors: Interner,
    series: SeriesCache,
    /// `inferscope_requests` handles by (route kind, status label).
    request_counters: std::sync::Mutex<Vec<((&'static str, &'static str), Counter)>>,
}

fn histograms<M>(
    registry: &mut Registry,
    semconv: &mut Vec<(String, &'static Semconv)>,
    h: &'static Semconv,
) -> Family<Labels, M, Buckets>
where
    M: prometheus_client::encoding::EncodeMetric
        + prometheus_client::metrics::TypedMetric
        + Clone
        + Send
        + Sync
        + std::fmt::Debug
        + 'static,
    Buckets: MetricConstructor<M>,
{
    let family = Family::new_with_constructor(Buckets(h.buckets));
    registry.register(h.prometheus_name(), help(h.description), family.clone());
    semconv.push((h.prometheus_name(), h));
    family
}

/// A help text as prometheus-client wants it: it adds the closing period itself.
fn help(text: &str) -> &str {
    text.strip_suffix('.').unwrap_or(text)
}

impl Metrics {
    /// Registers every metric; `export` adds the exporter's counters when tracing is on.
    pub(crate) fn new(
        conventions: Conventions,
        export: Option<Arc<ExportStats>>,
        ingest: Option<Arc<IngestStats>>,
    ) -> Metrics {
        let mut registry = Registry::default();
        let mut semconv = Vec::new();
        let r = &mut registry;
        let durations = conventions
            .durations()
            .iter()
            .map(|h| (h.name, histograms(r, &mut semconv, h)))
            .collect();
        let time_to_first_chunk = histograms(r, &mut semconv, conventions.time_to_first_chunk());
        let time_per_output_chunk =
            histograms(r, &mut semconv, conventions.time_per_output_chunk());
        let token_usage = histograms(r, &mut semconv, &metric::CLIENT_TOKEN_USAGE);
        let server_duration = histograms(r, &mut semconv, &metric::SERVER_REQUEST_DURATION);
        let server_ttft = histograms(r, &mut semconv, &metric::SERVER_TIME_TO_FIRST_TOKEN);
        let server_tpot = histograms(r, &mut semconv, &metric::SERVER_TIME_PER_OUTPUT_TOKEN);
        let processing = Histogram::new(PROCESSING_BUCKETS.iter().copied());
        registry.register_with_unit(
            "inferscope_gateway_processing",
            "The gateway's own processing per request: arrival (or the end of the client's body) to the request handed upstream, plus the first response chunk read from the upstream to handed to the client's connection",
            prometheus_client::registry::Unit::Seconds,
            processing.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "inferscope_requests_in_flight",
            "Requests the gateway is serving now",
            in_flight.clone(),
        );
        let upstream_errors = Family::<Labels, Counter>::default();
        registry.register(
            "inferscope_upstream_errors",
            "Exchanges that failed because of the upstream, by error.type",
            upstream_errors.clone(),
        );
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "inferscope_requests",
            "Requests served, by route kind (inference or other) and HTTP status code",
            requests.clone(),
        );
        let pushes = Family::<Labels, Counter>::default();
        registry.register(
            "inferscope_metrics_pushes",
            "Metrics pushes over OTLP, by result (exported or failed)",
            pushes.clone(),
        );
        if let Some(stats) = export {
            registry.register_collector(Box::new(ExportCollector(stats)));
        }
        if let Some(stats) = ingest {
            registry.register_collector(Box::new(IngestCollector(stats)));
        }
        Metrics {
            registry,
            conventions,
            durations,
            time_to_first_chunk,
            time_per_output_chunk,
            token_usage,
            in_flight,
            processing,
            server_duration,
            server_ttft,
            server_tpot,
            upstream_errors,
            requests,
            pushes: PushStats(pushes),
            semconv,
            models: Interner::default(),
            errors: Interner::default(),
            series: SeriesCache::default(),
            request_counters: std::sync::Mutex::default(),
        }
    }

    /// The histograms of `key`'s series; `own` are the gateway's constant labels (provider,
    /// server address and port).
    pub(crate) fn series(&self, key: &SeriesKey<'_>, own: [(&'static str, Label); 3]) -> Series {
        let mut cache = self
            .series
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = cache.iter().position(|(k, _)| k.is(key)) {
            let hit = cache.remove(i);
            let series = hit.1.clone();
            cache.insert(0, hit);
            return series;
        }
        let [provider, address, port] = own;
        // A label whose value is unknown is left out, as the conventions leave the attribute
        // out, rather than exported empty.
        let mut labels: Labels = Vec::with_capacity(8);
        labels.extend([
            ("gen_ai_operation_name", Label::Static(key.operation)),
            provider,
        ]);
        if let Some(m) = key.request_model.filter(|m| !m.is_empty()) {
            labels.push(("gen_ai_request_model", self.model(Some(m))));
        }
        if let Some(m) = key.response_model.filter(|m| !m.is_empty()) {
            labels.push(("gen_ai_response_model", self.model(Some(m))));
        }
        labels.extend([address, port]);
        if let Some(e) = key.error_type.filter(|e| !e.is_empty()) {
            labels.push(("error_type", self.error_type(e)));
        }
        let tokens = |kind: &'static str| {
            let mut l = labels.clone();
            l.push(("gen_ai_token_type", Label::Static(kind)));
            LazyHistogram::new(&self.token_usage, Arc::new(l))
        };
        let input_tokens = tokens(inferscope_semconv::value::token_type::INPUT);
        let output_tokens = tokens(inferscope_semconv::value::token_type::OUTPUT);
        let labels = Arc::new(labels);
        let series = Series {
            input_tokens,
            output_tokens,
            duration: Lazy::new(self.duration(key.operation), labels.clone()),
            time_to_first_chunk: Lazy::new(&self.time_to_first_chunk, labels.clone()),
            time_per_output_chunk: LazyHistogram::new(&self.time_per_output_chunk, labels),
        };
        cache.truncate(CACHED_SERIES - 1);
        cache.insert(
            0,
            (
                OwnedKey {
                    operation: key.operation,
                    request_model: key.request_model.map(Box::from),
                    response_model: key.response_model.map(Box::from),
                    error_type: key.error_type.map(Box::from),
                },
                series.clone(),
            ),
        );
        series
    }

    /// The convention histogram a Prometheus family name stands for.
    pub(crate) fn semconv(&self, prometheus_name: &str) -> Option<&'static Semconv> {
        self.semconv
            .iter()
            .find(|(n, _)| n == prometheus_name)
            .map(|(_, h)| *h)
    }

    /// The duration histograms of an operation.
    pub(crate) fn duration(&self, operation: &str) -> &ExemplaryHistograms {
        let name = self.conventions.duration(operation).name;
        let found = self.durations.iter().find(|(n, _)| *n == name);
        // Every name `duration` gives is registered; the first is the fallback all the same.
        &found.unwrap_or(&self.durations[0]).1
    }

    /// Records the engine's own timings of one finished request (an ingested `llm_request`)
    /// as the conventions' server metrics, under `labels` (operation, provider, models,
    /// server address and port, as known).
    pub(crate) fn observe_server(
        &self,
        labels: &Labels,
        timings: &crate::ingest::engine::ServerTimings,
    ) {
        for (family, value) in [
            (&self.server_duration, timings.request_duration),
            (&self.server_ttft, timings.time_to_first_token),
            (&self.server_tpot, timings.time_per_output_token),
        ] {
            if let Some(v) = value {
                family.get_or_create(labels).observe(v);
            }
        }
    }

    /// Counts a request by route kind and status label.
    pub(crate) fn count_request(&self, kind: &'static str, status: &'static str) {
        let mut counters = self
            .request_counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, c)) = counters.iter().find(|(k, _)| *k == (kind, status)) {
            c.inc();
            return;
        }
        let c = self
            .requests
            .get_or_create(&vec![
                ("route_kind", Label::Static(kind)),
                ("http_response_status_code", Label::Static(status)),
            ])
            .clone();
        c.inc();
        counters.push(((kind, status), c));
    }

    /// A model name as a label (bounded cardinality).
    pub(crate) fn model(&self, name: Option<&str>) -> Label {
        match name {
            None | Some("") => Label::Static(""),
            Some(n) => self.models.get(n),
        }
    }

    /// An `error.type` as a label (bounded cardinality).
    pub(crate) fn error_type(&self, e: &str) -> Label {
        self.errors.get(e)
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The exposition in the format `accept` asks for: OpenMetrics when it names
    /// `application/openmetrics-text` (Prometheus does), else Prometheus' classic text format
    /// 0.0.4, which older parsers read (one read as OpenMetrics splits each counter in two).
    /// Returns the body and its content type.
    pub(crate) fn encode_for(&self, accept: Option<&str>) -> (String, &'static str) {
        let text = self.encode();
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            (text, OPENMETRICS_TYPE)
        } else {
            (classic_text(&text), CLASSIC_TYPE)
        }
    }
}

/// The OpenMetrics content type prometheus-client writes.
pub(crate) const OPENMETRICS_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus' classic text format.
pub(crate) const CLASSIC_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text as the classic format: no `# EOF` or `# UNIT` lines, a counter family
/// named by its `_total` samples in `# HELP` and `# TYPE`, `unknown` as `untyped`, and no
/// exemplars.
fn classic_text(open: &str) -> String {
    let mut out = String::with_capacity(open.len());
    let mut help: Option<(&str, &str)> = None;
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), kind),
                "unknown" => (name.to_owned(), "untyped"),
                _ => (name.to_owned(), kind),
            };
            if let Some((_, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if let Some((name, text)) = help.take() {
            out.push_str(&format!("# HELP {name} {text}\n"));
        }
        // A sample; an exemplar (` # {...} value`) has no place in the classic format.
        let sample = match exemplar_start(line) {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(sample);
        out.push('\n');
    }
    out
}

/// Where a sample line's exemplar (` # {…}`) begins: after its label set, whose quoted values
/// may hold anything a client sent as a model name (` # {` included), read by the same parser
/// as the OTLP push's.
fn exemplar_start(line: &str) -> Option<usize> {
    let i = line.find(['{', ' '])?;
    let after = match otlp::label_set(&line[i..]) {
        Some((_, rest)) => rest,
        None => &line[i..],
    };
    let at = line.len() - after.len();
    after.find(" # {").map(|x| at + x)
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
        // One series per exporter (`exporter="otlp"`, `"console"`, `"file"`): summed, the
        // same span exported twice would count twice.
        let per_sink = |encoder: &mut DescriptorEncoder<'_>,
                        name: &str,
                        help: &str,
                        f: fn(&inferscope_export::batch::SinkSnapshot) -> u64|
         -> Result<(), std::fmt::Error> {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for sink in &s.sinks {
                let c = ConstCounter::new(f(sink));
                c.encode(family.encode_family(&[("exporter", sink.name)])?)?;
            }
            Ok(())
        };
        per_sink(
            &mut encoder,
            "inferscope_exporter_exported_spans",
            "Spans the exporters delivered, per exporter.",
            |x| x.exported,
        )?;
        per_sink(
            &mut encoder,
            "inferscope_exporter_failed_spans",
            "Spans lost to failed exports, per exporter.",
            |x| x.failed,
        )?;
        per_sink(
            &mut encoder,
            "inferscope_exporter_rejected_spans",
            "Spans the receiver rejected, per exporter.",
            |x| x.rejected,
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
            Conventions::default(),
            Some(Arc::new(ExportStats::default())),
            Some(Arc::new(IngestStats::default())),
        );
        m.duration("chat")
            .get_or_create(&vec![("gen_ai_operation_name", Label::Static("chat"))])
            .observe(0.05, None, None);
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

    #[test]
    fn the_classic_format_names_counters_by_their_samples_and_has_no_eof() {
        let open = "# HELP inferscope_requests Requests served.\n# TYPE inferscope_requests counter\ninferscope_requests_total{route_kind=\"other\"} 3\n# HELP gen_ai_client_operation_duration_seconds GenAI operation duration.\n# TYPE gen_ai_client_operation_duration_seconds histogram\n# UNIT gen_ai_client_operation_duration_seconds seconds\ngen_ai_client_operation_duration_seconds_count 1 # {trace_id=\"ab\"} 0.5\n# HELP x Something.\n# TYPE x unknown\nx 1\n# EOF\n";
        let classic = classic_text(open);
        assert_eq!(
            classic,
            "# HELP inferscope_requests_total Requests served.\n# TYPE inferscope_requests_total counter\ninferscope_requests_total{route_kind=\"other\"} 3\n# HELP gen_ai_client_operation_duration_seconds GenAI operation duration.\n# TYPE gen_ai_client_operation_duration_seconds histogram\ngen_ai_client_operation_duration_seconds_count 1\n# HELP x Something.\n# TYPE x untyped\nx 1\n"
        );
        let m = Metrics::new(Conventions::default(), None, None);
        m.count_request("other", "200");
        assert_eq!(
            classic_text("x_count{m=\"a # {b\\\" # {c\"} 1 # {trace_id=\"ab\"} 0.5\n"),
            "x_count{m=\"a # {b\\\" # {c\"} 1\n",
            "a label value with the exemplar marker in it is kept whole"
        );
        let (text, kind) = m.encode_for(Some("text/plain;version=0.0.4"));
        assert_eq!(kind, CLASSIC_TYPE);
        assert!(
            text.contains("# TYPE inferscope_requests_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF") && !text.contains(".."), "{text}");
        let (text, kind) = m.encode_for(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        ));
        assert_eq!(kind, OPENMETRICS_TYPE);
        assert!(text.ends_with("# EOF\n") && !text.contains(".."), "{text}");
    }

    #[test]
    fn series_record_only_what_was_observed_and_leave_unknown_labels_out() {
        let m = Metrics::new(Conventions::default(), None, None);
        let own = [
            ("gen_ai_provider_name", Label::Static("vllm")),
            ("server_address", Label::Static("h")),
            ("server_port", Label::Static("1")),
        ];
        let failed = SeriesKey {
            operation: "chat",
            request_model: Some("m"),
            response_model: None,
            error_type: Some("timeout"),
        };
        m.series(&failed, own.clone()).duration.observe(1.0, None);
        // A client's model name with the exposition's special characters is escaped.
        let odd = SeriesKey {
            request_model: Some("a\"b\\c\nd"),
            ..failed.clone()
        };
        m.series(&odd, own).duration.observe(1.0, None);
        let text = m.encode();
        assert!(
            text.contains(r#"gen_ai_request_model="a\"b\\c\nd""#),
            "{text}"
        );
        assert!(
            !text.contains("gen_ai_response_model"),
            "no empty label: {text}"
        );
        assert!(text.contains("gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"vllm\",gen_ai_request_model=\"m\",server_address=\"h\",server_port=\"1\",error_type=\"timeout\"} 1"), "{text}");
        for never in [
            "gen_ai_client_operation_time_to_first_chunk_seconds_count",
            "gen_ai_client_operation_time_per_output_chunk_seconds_count",
            "gen_ai_client_token_usage_count",
        ] {
            assert!(!text.contains(never), "{never} was never observed: {text}");
        }
    }

    #[test]
    fn series_are_cached_and_every_one_is_recorded() {
        let m = Metrics::new(Conventions::default(), None, None);
        let own = || {
            [
                ("gen_ai_provider_name", Label::Static("vllm")),
                ("server_address", Label::Static("h")),
                ("server_port", Label::Static("1")),
            ]
        };
        let key = |model: &'static str, error: Option<&'static str>| SeriesKey {
            operation: "chat",
            request_model: Some(model),
            response_model: Some(model),
            error_type: error,
        };
        // More distinct series than the cache holds, each recorded twice, in two passes.
        for _ in 0..2 {
            for i in 0..(CACHED_SERIES + 4) {
                let model: &'static str = Box::leak(format!("m{i}").into_boxed_str());
                m.series(&key(model, None), own())
                    .duration
                    .observe(0.01, None);
            }
        }
        m.series(&key("m0", Some("timeout")), own())
            .output_tokens
            .observe(3.0);
        for _ in 0..3 {
            m.count_request("inference", "200");
        }
        let text = m.encode();
        for i in 0..(CACHED_SERIES + 4) {
            let line = format!(
                "gen_ai_client_operation_duration_seconds_count{{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"vllm\",gen_ai_request_model=\"m{i}\",gen_ai_response_model=\"m{i}\",server_address=\"h\",server_port=\"1\"}} 2"
            );
            assert!(text.contains(&line), "{line}\n{text}");
        }
        assert!(
            text.contains("error_type=\"timeout\",gen_ai_token_type=\"output\"} 1"),
            "{text}"
        );
        assert!(text.contains("inferscope_requests_total{route_kind=\"inference\",http_response_status_code=\"200\"} 3"), "{text}");
    }

    #[test]
    fn duration_and_ttft_buckets_link_to_their_sampled_trace_in_openmetrics_only() {
        let m = Metrics::new(Conventions::default(), None, None);
        let own = [
            ("gen_ai_provider_name", Label::Static("vllm")),
            ("server_address", Label::Static("h")),
            ("server_port", Label::Static("1")),
        ];
        let key = SeriesKey {
            operation: "chat",
            request_model: Some("m"),
            response_model: Some("m"),
            error_type: None,
        };
        let series = m.series(&key, own);
        let sampled = inferscope_core::SpanContext {
            trace_id: inferscope_core::TraceId([0xab; 16]),
            span_id: inferscope_core::SpanId([0xcd; 8]),
            flags: inferscope_core::TraceFlags::with_sampled(true),
            ..inferscope_core::SpanContext::INVALID
        };
        let unsampled = inferscope_core::SpanContext {
            flags: inferscope_core::TraceFlags::with_sampled(false),
            ..sampled.clone()
        };
        assert_eq!(TraceExemplar::of(&unsampled), None);
        series.duration.observe(1.5, TraceExemplar::of(&sampled));
        series
            .duration
            .observe(0.001, TraceExemplar::of(&unsampled));
        series
            .time_to_first_chunk
            .observe(0.03, TraceExemplar::of(&sampled));
        let (open, _) = m.encode_for(Some("application/openmetrics-text"));
        let trace = "ab".repeat(16);
        let span = "cd".repeat(8);
        let bucket_with = |name: &str, le: &str, value: &str| {
            open.lines().any(|l| {
                l.starts_with(&format!("{name}_bucket{{le=\"{le}\""))
                    && l.contains(&format!(
                        " # {{trace_id=\"{trace}\",span_id=\"{span}\"}} {value} "
                    ))
            })
        };
        assert!(
            bucket_with("gen_ai_client_operation_duration_seconds", "2.56", "1.5"),
            "{open}"
        );
        assert!(
            bucket_with(
                "gen_ai_client_operation_time_to_first_chunk_seconds",
                "0.04",
                "0.03"
            ),
            "{open}"
        );
        assert_eq!(
            open.matches(" # {").count(),
            2,
            "the unsampled observation has no exemplar: {open}"
        );
        let (classic, _) = m.encode_for(None);
        assert!(!classic.contains(" # {"), "{classic}");
    }
}
