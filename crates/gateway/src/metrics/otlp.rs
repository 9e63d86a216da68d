//! The gateway's metrics pushed over OTLP (`OTEL_METRICS_EXPORTER=otlp`): every interval, the
//! registry's OpenMetrics exposition is read back into an `ExportMetricsServiceRequest` and sent
//! with the exporter crate's transports.
//!
//! Why from the exposition: prometheus-client, which records the metrics, has no public way to
//! read a histogram's buckets back, and its protobuf output needs `protoc` and an older prost.
//! Its text is the one complete, stable view of every series (ADR 0014). Reading it back costs
//! one parse per interval, nothing on the request path.
//!
//! Names: the conventions' metrics keep their OpenTelemetry names and units
//! (`gen_ai.client.operation.duration`, `s`); the gateway's own are `inferscope.` and the rest
//! of their Prometheus name (`inferscope.requests`, `inferscope.gateway_processing`). Labels
//! become the conventions' attribute keys (`gen_ai_request_model` → `gen_ai.request.model`),
//! ports and status codes as integers. Exemplars keep their trace and span ids.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use inferscope_export::config::Temporality;
use inferscope_export::otlp::metrics::MetricsExporter;
use inferscope_semconv::{attr, http as http_attr};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1 as pb;
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::watch;

use super::Metrics;
use crate::config::MetricsPush;

/// One metric family of the exposition.
#[derive(Debug, Default)]
struct Family {
    name: String,
    kind: String,
    help: String,
    unit: String,
    samples: Vec<Sample>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    /// What follows the family name: `_bucket`, `_sum`, `_count`, `_total`, or nothing.
    suffix: String,
    labels: Vec<(String, String)>,
    value: f64,
    exemplar: Option<Exemplar>,
}

#[derive(Debug, Clone, PartialEq)]
struct Exemplar {
    labels: Vec<(String, String)>,
    value: f64,
    seconds: Option<f64>,
}

/// Reads the OpenMetrics text prometheus-client writes. A line that cannot be read is skipped
/// (the exposition is the gateway's own, so that would be a bug, not input).
fn parse(text: &str) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (Some(what), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            let value = parts.next().unwrap_or_default();
            if families.last().is_none_or(|f| f.name != name) {
                families.push(Family {
                    name: name.to_owned(),
                    ..Family::default()
                });
            }
            let Some(f) = families.last_mut() else {
                continue;
            };
            match what {
                "HELP" => f.help = value.to_owned(),
                "TYPE" => f.kind = value.to_owned(),
                "UNIT" => f.unit = value.to_owned(),
                _ => {}
            }
            continue;
        }
        let Some(f) = families.last_mut() else {
            continue;
        };
        if let Some(sample) = sample(line, &f.name) {
            f.samples.push(sample);
        }
    }
    families
}

fn sample(line: &str, family: &str) -> Option<Sample> {
    let rest = line.strip_prefix(family)?;
    let name_end = rest.find(['{', ' ']).unwrap_or(rest.len());
    let suffix = rest[..name_end].to_owned();
    let mut rest = &rest[name_end..];
    let labels = if rest.starts_with('{') {
        let (labels, after) = label_set(rest)?;
        rest = after;
        labels
    } else {
        Vec::new()
    };
    let rest = rest.trim_start();
    let (value, exemplar) = match rest.split_once(" # ") {
        Some((v, e)) => (v, Some(e)),
        None => (rest, None),
    };
    let value = number(value.split(' ').next()?)?;
    let exemplar = exemplar.and_then(|e| {
        let (labels, after) = label_set(e)?;
        let mut parts = after.split_whitespace();
        let value = number(parts.next()?)?;
        let seconds = parts.next().and_then(number);
        Some(Exemplar {
            labels,
            value,
            seconds,
        })
    });
    Some(Sample {
        suffix,
        labels,
        value,
        exemplar,
    })
}

fn number(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// `{k="v",…}` with OpenMetrics escapes (`\\`, `\"`, `\n`); returns the labels and the rest.
pub(super) fn label_set(s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = s.strip_prefix('{')?;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = rest.find("=\"")?;
        let key = rest[..eq].to_owned();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break eq + 2 + i + 1,
                c => value.push(c),
            }
        };
        labels.push((key, value));
        rest = &rest[end..];
    }
}

/// A label's attribute key, as the conventions name it.
fn attribute_key(label: &str) -> &str {
    match label {
        "gen_ai_operation_name" => attr::OPERATION_NAME,
        "gen_ai_provider_name" => attr::PROVIDER_NAME,
        "gen_ai_request_model" => attr::REQUEST_MODEL,
        "gen_ai_response_model" => attr::RESPONSE_MODEL,
        "gen_ai_token_type" => attr::TOKEN_TYPE,
        "server_address" => attr::SERVER_ADDRESS,
        "server_port" => attr::SERVER_PORT,
        "error_type" => attr::ERROR_TYPE,
        "http_response_status_code" => http_attr::RESPONSE_STATUS_CODE,
        "route_kind" => "inferscope.route.kind",
        other => other,
    }
}

fn attributes(labels: &[(String, String)]) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(k, v)| {
            let key = attribute_key(k);
            let value = match (key, v.parse::<i64>()) {
                (attr::SERVER_PORT | http_attr::RESPONSE_STATUS_CODE, Ok(n)) => {
                    any_value::Value::IntValue(n)
                }
                _ => any_value::Value::StringValue(v.clone()),
            };
            KeyValue {
                key: key.to_owned(),
                value: Some(AnyValue { value: Some(value) }),
                ..KeyValue::default()
            }
        })
        .collect()
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn exemplar(e: &Exemplar, now: u64) -> pb::Exemplar {
    let id = |k: &str| {
        e.labels
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| hex_bytes(v))
            .unwrap_or_default()
    };
    pb::Exemplar {
        filtered_attributes: Vec::new(),
        time_unix_nano: e.seconds.map_or(now, |s| (s * 1e9) as u64),
        span_id: id("span_id"),
        trace_id: id("trace_id"),
        value: Some(pb::exemplar::Value::AsDouble(e.value)),
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A histogram point as the exposition gives it: cumulative bucket counts.
#[derive(Debug, Default, Clone)]
struct Point {
    bounds: Vec<f64>,
    cumulative: Vec<u64>,
    count: u64,
    sum: f64,
    exemplars: Vec<Exemplar>,
}

/// The last values pushed, for delta temporality, by metric name and label set.
type Previous = HashMap<(String, Vec<(String, String)>), Vec<f64>>;

/// Builds export requests from expositions.
#[derive(Debug)]
pub(crate) struct Converter {
    resource: Resource,
    temporality: Temporality,
    /// Where the cumulative series start: the gateway's start.
    started: SystemTime,
    /// When the previous request was built (the start of delta points).
    last: SystemTime,
    previous: Previous,
}

impl Converter {
    pub(crate) fn new(resource: &[(String, String)], temporality: Temporality) -> Converter {
        let now = SystemTime::now();
        Converter {
            resource: Resource {
                attributes: resource
                    .iter()
                    .map(|(k, v)| KeyValue {
                        key: k.clone(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(v.clone())),
                        }),
                        ..KeyValue::default()
                    })
                    .collect(),
                ..Resource::default()
            },
            temporality,
            started: now,
            last: now,
            previous: Previous::new(),
        }
    }

    /// The request for `text` (an OpenMetrics exposition of `metrics`) at `now`.
    pub(crate) fn request(
        &mut self,
        metrics: &Metrics,
        text: &str,
        now: SystemTime,
    ) -> ExportMetricsServiceRequest {
        let delta = self.temporality == Temporality::Delta;
        let start = nanos(if delta { self.last } else { self.started });
        let time = nanos(now);
        self.last = now;
        let temporality = if delta {
            pb::AggregationTemporality::Delta
        } else {
            pb::AggregationTemporality::Cumulative
        } as i32;
        let mut out = Vec::new();
        for f in parse(text) {
            let (name, unit, description) = match metrics.semconv(&f.name) {
                Some(h) => (
                    h.name.to_owned(),
                    h.unit.to_owned(),
                    h.description.to_owned(),
                ),
                None => (
                    own_name(&f.name),
                    match f.unit.as_str() {
                        "seconds" => "s".to_owned(),
                        other => other.to_owned(),
                    },
                    f.help.clone(),
                ),
            };
            let data = match f.kind.as_str() {
                "counter" => {
                    let points = f
                        .samples
                        .iter()
                        .filter(|s| s.suffix == "_total")
                        .map(|s| {
                            let v = if delta {
                                self.delta(&name, &s.labels, &[s.value])[0]
                            } else {
                                s.value
                            };
                            number_point(&s.labels, start, time, v)
                        })
                        .collect();
                    pb::metric::Data::Sum(pb::Sum {
                        data_points: points,
                        aggregation_temporality: temporality,
                        is_monotonic: true,
                    })
                }
                "gauge" => pb::metric::Data::Gauge(pb::Gauge {
                    data_points: f
                        .samples
                        .iter()
                        .filter(|s| s.suffix.is_empty())
                        .map(|s| number_point(&s.labels, start, time, s.value))
                        .collect(),
                }),
                "histogram" => {
                    let mut points = Vec::new();
                    for (labels, p) in histogram_points(&f.samples) {
                        points.push(self.histogram_point(&name, labels, p, start, time, delta));
                    }
                    pb::metric::Data::Histogram(pb::Histogram {
                        data_points: points,
                        aggregation_temporality: temporality,
                    })
                }
                _ => continue,
            };
            out.push(pb::Metric {
                name,
                description,
                unit,
                metadata: Vec::new(),
                data: Some(data),
            });
        }
        ExportMetricsServiceRequest {
            resource_metrics: vec![pb::ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![pb::ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "inferscope.gateway".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..InstrumentationScope::default()
                    }),
                    metrics: out,
                    schema_url: inferscope_semconv::SCHEMA_URL.into(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    /// `now` minus what was pushed last for this series (all of `now` after a reset).
    fn delta(&mut self, name: &str, labels: &[(String, String)], now: &[f64]) -> Vec<f64> {
        let key = (name.to_owned(), labels.to_vec());
        let before = self.previous.insert(key, now.to_vec());
        match before {
            Some(b) if b.len() == now.len() && b.iter().zip(now).all(|(b, n)| b <= n) => {
                b.iter().zip(now).map(|(b, n)| n - b).collect()
            }
            _ => now.to_vec(),
        }
    }

    fn histogram_point(
        &mut self,
        name: &str,
        labels: Vec<(String, String)>,
        p: Point,
        start: u64,
        time: u64,
        delta: bool,
    ) -> pb::HistogramDataPoint {
        // Per-bucket counts from the cumulative ones; the last bucket is +Inf.
        let mut buckets: Vec<f64> = Vec::with_capacity(p.cumulative.len() + 2);
        let mut below = 0;
        for c in &p.cumulative {
            buckets.push(c.saturating_sub(below) as f64);
            below = *c;
        }
        buckets.push(p.count.saturating_sub(below) as f64);
        buckets.push(p.count as f64);
        buckets.push(p.sum);
        if delta {
            buckets = self.delta(name, &labels, &buckets);
        }
        let sum = buckets.pop().unwrap_or(0.0);
        let count = buckets.pop().unwrap_or(0.0) as u64;
        let bounds: Vec<f64> = p.bounds.into_iter().filter(|b| b.is_finite()).collect();
        pb::HistogramDataPoint {
            attributes: attributes(&labels),
            start_time_unix_nano: start,
            time_unix_nano: time,
            count,
            sum: Some(sum),
            bucket_counts: buckets.into_iter().map(|b| b as u64).collect(),
            explicit_bounds: bounds,
            // A delta point's exemplars are from its own window (a bucket keeps its latest
            // exemplar until a newer observation replaces it).
            exemplars: p
                .exemplars
                .iter()
                .filter(|e| !delta || e.seconds.is_none_or(|s| (s * 1e9) as u64 >= start))
                .map(|e| exemplar(e, time))
                .collect(),
            flags: 0,
            min: None,
            max: None,
        }
    }
}

/// The OTLP name of one of the gateway's own metrics: `inferscope_requests` →
/// `inferscope.requests`; a unit suffix the exposition added is dropped.
fn own_name(prometheus: &str) -> String {
    let base = prometheus.strip_suffix("_seconds").unwrap_or(prometheus);
    match base.strip_prefix("inferscope_") {
        Some(rest) => format!("inferscope.{rest}"),
        None => base.to_owned(),
    }
}

fn number_point(labels: &[(String, String)], start: u64, time: u64, v: f64) -> pb::NumberDataPoint {
    let value = if v.fract() == 0.0 && v.abs() < 9.0e15 {
        pb::number_data_point::Value::AsInt(v as i64)
    } else {
        pb::number_data_point::Value::AsDouble(v)
    };
    pb::NumberDataPoint {
        attributes: attributes(labels),
        start_time_unix_nano: start,
        time_unix_nano: time,
        exemplars: Vec::new(),
        flags: 0,
        value: Some(value),
    }
}

/// Groups a histogram's `_bucket`, `_sum` and `_count` samples by label set (without `le`).
fn histogram_points(samples: &[Sample]) -> Vec<(Vec<(String, String)>, Point)> {
    let mut points: Vec<(Vec<(String, String)>, Point)> = Vec::new();
    for s in samples {
        let mut labels = s.labels.clone();
        let le = labels
            .iter()
            .position(|(k, _)| k == "le")
            .map(|i| labels.remove(i).1);
        let i = match points.iter().position(|(l, _)| *l == labels) {
            Some(i) => i,
            None => {
                points.push((labels, Point::default()));
                points.len() - 1
            }
        };
        let p = &mut points[i].1;
        match s.suffix.as_str() {
            "_bucket" => {
                if let Some(bound) = le.as_deref().and_then(number) {
                    p.bounds.push(bound);
                    p.cumulative.push(s.value as u64);
                }
                if let Some(e) = &s.exemplar {
                    p.exemplars.push(e.clone());
                }
            }
            "_sum" => p.sum = s.value,
            "_count" => p.count = s.value as u64,
            _ => {}
        }
    }
    // The +Inf bucket is the count: the per-bucket list ends with it.
    for (_, p) in &mut points {
        if p.bounds.last().is_some_and(|b| b.is_infinite()) {
            p.bounds.pop();
            p.cumulative.pop();
        }
    }
    points
}

/// What the push task needs: where and how, the resource, and the shutdown grace that bounds
/// the last push.
#[derive(Debug, Clone)]
pub(crate) struct Push {
    pub(crate) config: inferscope_export::config::MetricsConfig,
    pub(crate) resource: Vec<(String, String)>,
    pub(crate) grace: Duration,
}

impl Push {
    pub(crate) fn new(p: &MetricsPush, grace: Duration) -> Push {
        Push {
            config: p.config.clone(),
            resource: p.resource.clone(),
            grace,
        }
    }
}

/// Pushes every `interval` until `stop` says so, then once more, so the last interval's
/// observations are not lost. Failures are logged and counted, never retried past a push's
/// deadline.
pub(crate) async fn push(
    metrics: Arc<Metrics>,
    push: Push,
    exporter: MetricsExporter,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!(
        endpoint = %inferscope_export::config::redact_userinfo(&push.config.otlp.endpoint),
        protocol = push.config.otlp.protocol.as_str(),
        interval_ms = push.config.interval.as_millis() as u64,
        "pushing metrics over OTLP"
    );
    let mut converter = Converter::new(&push.resource, push.config.temporality);
    // At least a second for the last push, however short the grace.
    let push = Push {
        grace: push.grace.max(Duration::from_secs(1)),
        ..push
    };
    let mut tick = tokio::time::interval(push.config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let request = converter.request(&metrics, &metrics.encode(), SystemTime::now());
        // A push ends before the next one is due, and the last one within the shutdown grace:
        // a receiver that is down neither stretches the interval nor holds up the exit.
        let timeout = push.config.export_timeout.min(if last {
            push.grace
        } else {
            push.config.interval
        });
        let deadline = Instant::now() + timeout;
        match tokio::time::timeout(
            timeout + Duration::from_millis(100),
            exporter.export(&request, deadline),
        )
        .await
        {
            Ok(Ok(accepted)) => {
                metrics.pushes.inc_exported();
                if accepted.rejected > 0 {
                    tracing::warn!(
                        rejected = accepted.rejected,
                        message = accepted.message.as_deref().unwrap_or(""),
                        "the metrics receiver rejected data points"
                    );
                }
            }
            Ok(Err(e)) => {
                metrics.pushes.inc_failed();
                tracing::warn!(error = %e.message, attempts = e.attempts, "metrics push failed");
            }
            Err(_) => {
                metrics.pushes.inc_failed();
                tracing::warn!("metrics push timed out");
            }
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Label, SeriesKey, TraceExemplar};
    use inferscope_semconv::latest::Conventions;

    #[test]
    fn labels_with_every_escape_and_exemplars_are_read_back() {
        let line = r#"x_bucket{le="0.5",model="a\"b,c}\\d\n#",k="v"} 3 # {trace_id="ab",span_id="cd"} 0.25 1700000000.5"#;
        let s = sample(line, "x").unwrap();
        assert_eq!(s.suffix, "_bucket");
        assert_eq!(
            s.labels,
            vec![
                ("le".into(), "0.5".into()),
                ("model".into(), "a\"b,c}\\d\n#".into()),
                ("k".into(), "v".into())
            ]
        );
        assert_eq!(s.value, 3.0);
        let e = s.exemplar.unwrap();
        assert_eq!((e.value, e.seconds), (0.25, Some(1_700_000_000.5)));
        assert_eq!(sample("x_total 7", "x").unwrap().value, 7.0);
        assert_eq!(
            sample(r#"x_bucket{le="+Inf"} 2"#, "x").unwrap().labels[0].1,
            "+Inf"
        );
    }

    fn observed() -> Metrics {
        let m = Metrics::new(Conventions::default(), None, None);
        let own = [
            ("gen_ai_provider_name", Label::Static("vllm")),
            ("server_address", Label::Static("h")),
            ("server_port", Label::Static("8000")),
        ];
        let key = SeriesKey {
            operation: "chat",
            request_model: Some("m \"x\""),
            response_model: Some("m"),
            error_type: None,
        };
        let s = m.series(&key, own);
        let ctx = inferscope_core::SpanContext {
            trace_id: inferscope_core::TraceId([1; 16]),
            span_id: inferscope_core::SpanId([2; 8]),
            flags: inferscope_core::TraceFlags::with_sampled(true),
            ..inferscope_core::SpanContext::INVALID
        };
        s.duration.observe(0.015, TraceExemplar::of(&ctx));
        s.duration.observe(0.5, None);
        s.duration.observe(100.0, None);
        s.input_tokens.observe(12.0);
        m.count_request("inference", "200");
        m.count_request("inference", "200");
        m
    }

    fn find<'a>(r: &'a ExportMetricsServiceRequest, name: &str) -> &'a pb::Metric {
        r.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn histograms_counters_and_gauges_as_otlp_with_convention_names() {
        let m = observed();
        let mut c = Converter::new(
            &[("service.name".into(), "gw".into())],
            Temporality::Cumulative,
        );
        let r = c.request(&m, &m.encode(), SystemTime::now());
        let d = find(&r, "gen_ai.client.operation.duration");
        assert_eq!(d.unit, "s");
        let Some(pb::metric::Data::Histogram(h)) = &d.data else {
            panic!("{d:?}")
        };
        assert_eq!(
            h.aggregation_temporality,
            pb::AggregationTemporality::Cumulative as i32
        );
        let p = &h.data_points[0];
        assert_eq!(p.count, 3);
        assert!((p.sum.unwrap() - 100.515).abs() < 1e-9);
        assert_eq!(
            p.explicit_bounds,
            inferscope_semconv::metric::DURATION_BUCKETS
        );
        assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), 3);
        assert_eq!(p.bucket_counts[0], 0, "0.015 is above 0.01");
        assert_eq!(p.bucket_counts[1], 1);
        assert_eq!(
            *p.bucket_counts.last().unwrap(),
            1,
            "100 s is past the last bound"
        );
        assert_eq!(
            attr(&p.attributes, "gen_ai.request.model"),
            Some(&any_value::Value::StringValue("m \"x\"".into()))
        );
        assert_eq!(
            attr(&p.attributes, "server.port"),
            Some(&any_value::Value::IntValue(8000))
        );
        assert_eq!(p.exemplars.len(), 1);
        assert_eq!(p.exemplars[0].trace_id, vec![1; 16]);
        assert_eq!(p.exemplars[0].span_id, vec![2; 8]);
        let t = find(&r, "gen_ai.client.token.usage");
        assert_eq!(t.unit, "{token}");
        let req = find(&r, "inferscope.requests");
        let Some(pb::metric::Data::Sum(sum)) = &req.data else {
            panic!("{req:?}")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.data_points[0].value,
            Some(pb::number_data_point::Value::AsInt(2))
        );
        assert_eq!(
            attr(&sum.data_points[0].attributes, "http.response.status_code"),
            Some(&any_value::Value::IntValue(200))
        );
        let g = find(&r, "inferscope.requests_in_flight");
        assert!(matches!(g.data, Some(pb::metric::Data::Gauge(_))));
        let p = find(&r, "inferscope.gateway_processing");
        assert_eq!(p.unit, "s");
    }

    #[test]
    fn delta_temporality_pushes_changes_since_the_last_push() {
        let mut c = Converter::new(&[], Temporality::Delta);
        let m = observed();
        let first = c.request(&m, &m.encode(), SystemTime::now());
        let Some(pb::metric::Data::Histogram(h)) =
            &find(&first, "gen_ai.client.operation.duration").data
        else {
            panic!()
        };
        assert_eq!(
            h.data_points[0].exemplars.len(),
            1,
            "observed in this window"
        );
        m.count_request("inference", "200");
        let second = c.request(&m, &m.encode(), SystemTime::now());
        let value = |r: &ExportMetricsServiceRequest| {
            let Some(pb::metric::Data::Sum(s)) = &find(r, "inferscope.requests").data else {
                panic!()
            };
            assert_eq!(
                s.aggregation_temporality,
                pb::AggregationTemporality::Delta as i32
            );
            s.data_points[0].value
        };
        assert_eq!(value(&first), Some(pb::number_data_point::Value::AsInt(2)));
        assert_eq!(value(&second), Some(pb::number_data_point::Value::AsInt(1)));
        let Some(pb::metric::Data::Histogram(h)) =
            &find(&second, "gen_ai.client.operation.duration").data
        else {
            panic!()
        };
        assert_eq!(h.data_points[0].count, 0, "nothing observed since");
        assert_eq!(h.data_points[0].bucket_counts.iter().sum::<u64>(), 0);
        assert!(
            h.data_points[0].exemplars.is_empty(),
            "no exemplar from an earlier window"
        );
    }
}
