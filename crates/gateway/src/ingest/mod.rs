//! Engine-span ingest: the gateway accepts OTLP (gRPC, and HTTP with protobuf or JSON bodies,
//! gzip included), so `vllm serve --otlp-traces-endpoint` can point at it. Everything received
//! is forwarded to the gateway's exporter with its resource and scope intact (unless a filter
//! drops it); vLLM's `llm_request` spans are normalised, joined with the gateway's view of the
//! same call ([`crate::join`]) and given their phases as child spans ([`engine`]).
//!
//! - [`grpc`] and [`http`]: the two receivers; both hand decoded requests to [`accept`].
//! - [`decode`]: OTLP request bodies (protobuf, JSON, gzip) into span records.
//! - Refusals follow OTLP: too large → gRPC `OUT_OF_RANGE` / HTTP 413; malformed →
//!   `INVALID_ARGUMENT` / 400; the export queue is full → `RESOURCE_EXHAUSTED` with a retry
//!   delay / 429 with `Retry-After`, so the sender retries instead of losing spans. Spans with
//!   invalid ids are refused alone, as a partial success.

pub(crate) mod decode;
pub(crate) mod engine;
pub(crate) mod grpc;
pub(crate) mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use decode::Decoded;
use inferscope_core::span::{Resource, SpanRecord};
use inferscope_semconv::dialect::Dialect;
use inferscope_semconv::vllm;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::IngestState;

/// Ingest settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// The OTLP/gRPC listener, if any.
    pub grpc: Option<SocketAddr>,
    /// The OTLP/HTTP listener (`POST /v1/traces`), if any.
    pub http: Option<SocketAddr>,
    /// Largest request accepted, compressed or not.
    pub max_bytes: usize,
    /// Drop vLLM's start-up spans instead of forwarding them.
    pub drop_startup_spans: bool,
    /// Drop spans with these names.
    pub drop_span_names: Vec<String>,
    /// The model named on engine spans the gateway has no record of.
    pub engine_model: Option<String>,
    /// `service.name` for ingested spans whose resource has none.
    pub engine_service_name: String,
    /// Most CLIENT spans remembered for joining.
    pub join_capacity: usize,
    /// How long one is remembered.
    pub join_ttl: Duration,
    /// How long an engine span waits for its exchange to end before it is forwarded anyway.
    pub join_wait: Duration,
}

/// Counters of the ingest path.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Spans received and forwarded.
    pub forwarded: AtomicU64,
    /// Spans dropped by a filter.
    pub filtered: AtomicU64,
    /// Spans refused (invalid ids).
    pub rejected: AtomicU64,
    /// Requests refused (malformed, too large, or the queue full).
    pub refused_requests: AtomicU64,
    /// `llm_request` spans joined with a gateway CLIENT span.
    pub joined: AtomicU64,
    /// Phase spans derived.
    pub phases: AtomicU64,
}

/// Why a request was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The export queue cannot take the spans now; retry after the delay.
    Busy(Duration),
}

/// The outcome of one accepted request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// Spans refused within it.
    pub(crate) rejected: u64,
    /// Why (first refusal).
    pub(crate) message: Option<String>,
}

/// Takes one decoded request: filters, normalises, joins, derives phases, and hands every span
/// to the exporter.
pub(crate) async fn accept(
    shared: &IngestState,
    request: ExportTraceServiceRequest,
) -> Result<Accepted, Refusal> {
    let stats = &shared.stats;
    let Decoded {
        mut spans,
        rejected,
        error,
    } = decode::spans(request);
    // Sequences of one call (`n` > 1) pair with its choices in the order of their first
    // token (see `claim_choice`); every other span keeps its place before them.
    spans.sort_by(|a, b| {
        let key = |s: &SpanRecord| {
            (s.name.as_str() == vllm::LLM_REQUEST_SPAN)
                .then(|| engine::engine_ttft(s))
                .flatten()
                .unwrap_or(f64::NEG_INFINITY)
        };
        key(a).total_cmp(&key(b))
    });
    if let Some(export) = &shared.export_stats {
        let (queued, capacity) = export.queue_fill();
        // Room for the spans and the phases of each llm_request (at most four). A request
        // larger than half the queue (vLLM sends up to 512 spans at once, 2,560 records with
        // their phases, against a default queue of 2,048) is taken whenever the queue is at
        // most half full, and fed in as the exporter drains it (`forward`): never refused for
        // good while the gateway's own spans keep the queue from ever being empty.
        let needed: u64 = spans
            .iter()
            .map(|s| {
                if s.name.as_str() == vllm::LLM_REQUEST_SPAN {
                    5
                } else {
                    1
                }
            })
            .sum();
        if capacity > 0 && queued + needed.min(capacity / 2) > capacity {
            stats.refused_requests.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Busy(Duration::from_secs(1)));
        }
    }
    stats.rejected.fetch_add(rejected, Ordering::Relaxed);
    let config = &shared.config;
    // One bound for the whole request: the sender (vLLM's exporter, 10 s by default) must get
    // its answer before it gives up and sends the batch again.
    let room_until = tokio::time::Instant::now() + ROOM_WAIT;
    let keep_legacy = config.dialects.contains(&Dialect::Vllm);
    let opts = engine::EngineOptions {
        provider: &config.provider,
        engine_model: config.ingest.engine_model.as_deref(),
        dialects: &config.dialects,
    };
    // The last resource given a service name, and its renamed copy (a request's spans share
    // their resource).
    let mut renamed: Option<(Arc<Resource>, Arc<Resource>)> = None;
    for mut span in spans {
        if let Some(resource) = &span.resource {
            match &renamed {
                Some((from, to)) if Arc::ptr_eq(from, resource) => span.resource = Some(to.clone()),
                _ => {
                    if let Some(named) =
                        engine::with_service_name(resource, &config.ingest.engine_service_name)
                    {
                        let named = Arc::new(named);
                        renamed = Some((resource.clone(), named.clone()));
                        span.resource = Some(named);
                    }
                }
            }
        }
        if dropped(&config.ingest, &span) {
            stats.filtered.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if span.name.as_str() == vllm::LLM_REQUEST_SPAN {
            let mut join = match span.parent_span_id {
                Some(parent) => {
                    shared
                        .join
                        .lookup(span.context.trace_id, parent, config.ingest.join_wait)
                        .await
                }
                None => None,
            };
            // With `n` > 1, vLLM sends a span per sequence without its choice index: pair it
            // with a choice so its TTFT is compared with that choice's first chunk.
            if let (Some(j), Some(parent), Some(engine)) = (
                join.as_mut(),
                span.parent_span_id,
                engine::engine_ttft(&span),
            ) && j.choice_count.is_some_and(|n| n > 1)
            {
                j.matched_choice = shared
                    .join
                    .claim_choice(span.context.trace_id, parent, engine);
            }
            if join.is_some() {
                stats.joined.fetch_add(1, Ordering::Relaxed);
            }
            let children = engine::phases(&span);
            let timings = engine::server_timings(&span);
            engine::normalise(&mut span, join.as_ref(), opts);
            shared
                .metrics
                .observe_server(&server_labels(shared, &span), &timings);
            stats
                .phases
                .fetch_add(children.len() as u64, Ordering::Relaxed);
            let kind = span
                .get(inferscope_semconv::openinference::SPAN_KIND)
                .cloned();
            forward(shared, span, room_until).await;
            for mut child in children {
                if let Some(kind) = &kind {
                    child.set(inferscope_semconv::openinference::SPAN_KIND, kind.clone());
                }
                forward(shared, child, room_until).await;
            }
        } else {
            engine::current_code_keys(&mut span, keep_legacy);
            forward(shared, span, room_until).await;
        }
    }
    Ok(Accepted {
        rejected,
        message: error,
    })
}

/// Longest one ingest request waits, in all, for room in the export queue before its spans go
/// in anyway (and the queue drops and counts what does not fit).
const ROOM_WAIT: Duration = Duration::from_secs(5);

/// Hands a span to the exporter. While the export queue is three quarters full, waits (5 ms at
/// a time, until `room_until`) for the exporter to drain it, so that a large request is fed in
/// at the exporter's pace and the last quarter stays free for the gateway's own spans, which
/// cannot wait. The sender waits for the answer meanwhile: that is the back-pressure.
async fn forward(shared: &IngestState, span: SpanRecord, room_until: tokio::time::Instant) {
    if let Some(export) = &shared.export_stats {
        loop {
            let (queued, capacity) = export.queue_fill();
            if capacity == 0
                || queued < capacity - capacity / 4
                || tokio::time::Instant::now() >= room_until
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    shared.stats.forwarded.fetch_add(1, Ordering::Relaxed);
    shared.tracer.export(span);
}

/// The labels of the server metrics for a normalised `llm_request`: what it says, and the
/// upstream the gateway fronts (the engine's address as the gateway reaches it).
fn server_labels(shared: &IngestState, span: &SpanRecord) -> crate::metrics::Labels {
    use crate::metrics::Label;
    use inferscope_semconv::attr;

    // Through the metrics' interner: bounded cardinality, shared strings.
    let text = |key: &str| {
        span.get(key)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(|v| shared.metrics.model(Some(v)))
    };
    let up = &shared.config.upstream;
    let mut labels: crate::metrics::Labels = Vec::with_capacity(6);
    for (name, key) in [
        ("gen_ai_operation_name", attr::OPERATION_NAME),
        ("gen_ai_provider_name", attr::PROVIDER_NAME),
        ("gen_ai_request_model", attr::REQUEST_MODEL),
        ("gen_ai_response_model", attr::RESPONSE_MODEL),
    ] {
        if let Some(v) = text(key) {
            labels.push((name, v));
        }
    }
    labels.push(("server_address", Label::Shared(Arc::from(up.host.as_str()))));
    labels.push(("server_port", Label::Shared(Arc::from(up.port.to_string()))));
    labels
}

fn dropped(config: &IngestConfig, span: &SpanRecord) -> bool {
    let name = span.name.as_str();
    (config.drop_startup_spans && engine::is_startup(span))
        || config.drop_span_names.iter().any(|n| n == name)
}

/// Checks the ingest path's invariants on arbitrary bytes read as an OTLP/JSON request (the
/// `ingest_json` fuzz target and its replay in the test suite): never a panic; every span that
/// decodes is normalised, and its phases are at most four, ordered, inside their parent's
/// time, and children of it; the result encodes as OTLP.
#[cfg(any(test, feature = "fuzz"))]
#[allow(
    unreachable_pub,
    reason = "re-exported for the fuzz targets (feature `fuzz`)"
)]
pub fn fuzz_check_json(data: &[u8]) {
    let Ok(request) = decode::decode_body(data, decode::Format::Json, false, 1 << 20) else {
        return;
    };
    let decoded = decode::spans(request);
    let dialects = [
        inferscope_semconv::dialect::Dialect::OTel,
        inferscope_semconv::dialect::Dialect::Vllm,
        inferscope_semconv::dialect::Dialect::OpenInference,
    ];
    let opts = engine::EngineOptions {
        provider: "vllm",
        engine_model: Some("fuzz-model"),
        dialects: &dialects,
    };
    let mut out = Vec::new();
    for mut span in decoded.spans {
        let children = engine::phases(&span);
        assert!(children.len() <= 4, "{} phases", children.len());
        let (a, e) = (
            span.start_unix_nanos,
            span.end_unix_nanos.max(span.start_unix_nanos),
        );
        let mut t = a;
        for c in &children {
            assert!(
                t <= c.start_unix_nanos && c.start_unix_nanos <= c.end_unix_nanos,
                "phases out of order"
            );
            assert!(c.end_unix_nanos <= e, "a phase ends after its parent");
            assert_eq!(c.parent_span_id, Some(span.context.span_id));
            assert_eq!(c.context.trace_id, span.context.trace_id);
            t = c.end_unix_nanos;
        }
        let join = crate::join::JoinInfo::default();
        engine::normalise(&mut span, Some(&join), opts);
        out.push(span);
        out.extend(children);
    }
    let encoder = inferscope_export::otlp::Encoder::new(&[("service.name".into(), "fuzz".into())]);
    let mut written = Vec::new();
    encoder.write_protobuf(&out, &mut written);
}

#[cfg(test)]
mod tests {
    /// The fuzz target's invariants over generated variations of real vLLM OTLP/JSON exports
    /// (the fuzz seeds, made from the fixtures' spans).
    #[test]
    fn replays_generated_inputs() {
        let seeds: [&[u8]; 3] = [
            include_bytes!("../../../../fuzz/seeds/ingest_json/llm_request.json"),
            include_bytes!("../../../../fuzz/seeds/ingest_json/three_llm_requests.json"),
            include_bytes!("../../../../fuzz/seeds/ingest_json/startup.json"),
        ];
        // The seeds are what vLLM sends: they decode and give phases.
        let request =
            super::decode::decode_body(seeds[0], super::decode::Format::Json, false, 1 << 20)
                .unwrap();
        let spans = super::decode::spans(request).spans;
        assert_eq!(spans.len(), 1);
        assert_eq!(super::engine::phases(&spans[0]).len(), 4);
        let mut rng = fastrand::Rng::with_seed(3);
        for i in 0..3_000 {
            let mut data = seeds[i % seeds.len()].to_vec();
            for _ in 0..rng.usize(0..3) {
                if data.is_empty() {
                    break;
                }
                let at = rng.usize(..data.len());
                match rng.u8(..3) {
                    0 => {
                        const PICK: &[u8] = b"-09e.\"{}[],";
                        data[at] = PICK[rng.usize(..PICK.len())];
                    }
                    1 => data.insert(at, b'9'),
                    _ => data.truncate(at),
                }
            }
            super::fuzz_check_json(&data);
        }
    }
}
