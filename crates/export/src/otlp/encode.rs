//! [`SpanRecord`]s → OTLP protobuf messages (`opentelemetry-proto`), grouped by resource and
//! scope. Runs on the export thread, never on the request path.

use inferscope_core::span::{
    Event, KeyValue, Link, Resource as CoreResource, Scope, SpanKind, SpanRecord, Status, Value,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue as PKeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as PSpan, Status as PStatus, span, status,
};

/// `SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`.
pub(crate) const HAS_IS_REMOTE: u32 = 0x100;
/// `SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
pub(crate) const IS_REMOTE: u32 = 0x200;

/// Encodes batches of spans under one resource.
#[derive(Debug, Clone)]
pub struct Encoder {
    attributes: Vec<KeyValue>,
}

/// A batch grouped for encoding: per resource (`None`: the pipeline's own), per scope, the
/// spans in batch order.
pub(crate) type Groups<'a> = Vec<(
    Option<&'a CoreResource>,
    Vec<(&'a Scope, Vec<&'a SpanRecord>)>,
)>;

/// Groups a batch: one group per resource (the pipeline's own, and those of forwarded spans),
/// one per distinct scope within it, in order of first appearance.
pub(crate) fn group(batch: &[SpanRecord]) -> Groups<'_> {
    let mut resources: Groups<'_> = Vec::new();
    for record in batch {
        let key = record.resource.as_deref();
        let same = |r: &Option<&CoreResource>| match (r, key) {
            (None, None) => true,
            (Some(a), Some(b)) => std::ptr::eq(*a, b) || **a == *b,
            _ => false,
        };
        let scopes = match resources.iter_mut().position(|(r, _)| same(r)) {
            Some(i) => &mut resources[i].1,
            None => {
                resources.push((key, Vec::new()));
                let last = resources.len() - 1;
                &mut resources[last].1
            }
        };
        match scopes.iter_mut().find(|(s, _)| **s == record.scope) {
            Some((_, spans)) => spans.push(record),
            None => scopes.push((&record.scope, vec![record])),
        }
    }
    resources
}

impl Encoder {
    /// An encoder for a resource made of `attributes` (`service.name` first) plus the
    /// `telemetry.sdk.*` attributes.
    pub fn new(attributes: &[(String, String)]) -> Encoder {
        let mut attrs: Vec<KeyValue> = attributes
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        for (k, v) in [
            ("telemetry.sdk.name", "inferscope"),
            ("telemetry.sdk.language", "rust"),
            ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
        ] {
            if !attributes.iter().any(|(key, _)| key == k) {
                attrs.push(KeyValue::new(k, v));
            }
        }
        Encoder { attributes: attrs }
    }

    /// The attributes of the resource spans are exported under.
    pub fn resource_attributes(&self) -> &[KeyValue] {
        &self.attributes
    }

    /// The resource spans are exported under.
    pub fn resource(&self) -> Resource {
        Resource {
            attributes: attributes(&self.attributes),
            dropped_attributes_count: 0,
            entity_refs: Vec::new(),
        }
    }

    /// The protobuf bytes of the export request holding `batch`, appended to `out`: the
    /// bytes prost writes for [`Encoder::request`], without building its structs.
    pub fn write_protobuf(&self, batch: &[SpanRecord], out: &mut Vec<u8>) {
        super::wire::write_request(self, batch, out);
    }

    /// One export request holding `batch`: one `ResourceSpans` per resource (the pipeline's
    /// own, and those of forwarded spans), one `ScopeSpans` per distinct scope within it.
    pub fn request(&self, batch: &[SpanRecord]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: group(batch)
                .into_iter()
                .map(|(resource, scopes)| {
                    let (resource, schema_url) = match resource {
                        None => (self.resource(), inferscope_semconv::SCHEMA_URL.to_owned()),
                        Some(r) => (
                            Resource {
                                attributes: attributes(&r.attributes),
                                dropped_attributes_count: r.dropped_attributes,
                                entity_refs: Vec::new(),
                            },
                            r.schema_url
                                .as_ref()
                                .map(|s| s.as_str().to_owned())
                                .unwrap_or_default(),
                        ),
                    };
                    ResourceSpans {
                        resource: Some(resource),
                        scope_spans: scopes
                            .into_iter()
                            .map(|(scope, spans)| {
                                scope_spans(scope, spans.into_iter().map(encode_span).collect())
                            })
                            .collect(),
                        schema_url,
                    }
                })
                .collect(),
        }
    }
}

fn scope_spans(scope: &Scope, spans: Vec<PSpan>) -> ScopeSpans {
    ScopeSpans {
        schema_url: scope
            .schema_url
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        scope: Some(InstrumentationScope {
            name: scope.name.as_str().to_owned(),
            version: scope
                .version
                .as_ref()
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
        }),
        spans,
    }
}

fn kv(key: String, value: AnyValue) -> PKeyValue {
    PKeyValue {
        key,
        value: Some(value),
        key_strindex: 0,
    }
}

fn any_string(s: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    }
}

/// Converts one value.
pub fn any_value(v: &Value) -> AnyValue {
    let value = match v {
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::I64(i) => any_value::Value::IntValue(*i),
        Value::F64(f) => any_value::Value::DoubleValue(*f),
        Value::Str(s) => any_value::Value::StringValue(s.as_str().to_owned()),
        Value::StrArray(a) => any_value::Value::ArrayValue(ArrayValue {
            values: a
                .iter()
                .map(|s| any_string(s.as_str().to_owned()))
                .collect(),
        }),
    };
    AnyValue { value: Some(value) }
}

/// Converts attributes, keeping only the last value of a repeated key (in first-set order).
pub fn attributes(attrs: &[KeyValue]) -> Vec<PKeyValue> {
    inferscope_core::span::latest(attrs)
        .map(|a| kv(a.key.as_str().to_owned(), any_value(&a.value)))
        .collect()
}

/// The `SpanKind` enum's number.
pub(crate) fn kind_number(k: SpanKind) -> u64 {
    kind(k) as u64
}

fn kind(k: SpanKind) -> span::SpanKind {
    match k {
        SpanKind::Internal => span::SpanKind::Internal,
        SpanKind::Server => span::SpanKind::Server,
        SpanKind::Client => span::SpanKind::Client,
        SpanKind::Producer => span::SpanKind::Producer,
        SpanKind::Consumer => span::SpanKind::Consumer,
    }
}

fn event(e: &Event) -> span::Event {
    span::Event {
        time_unix_nano: e.time_unix_nanos,
        name: e.name.as_str().to_owned(),
        attributes: attributes(&e.attributes),
        dropped_attributes_count: 0,
    }
}

fn link(l: &Link) -> span::Link {
    span::Link {
        trace_id: l.context.trace_id.0.to_vec(),
        span_id: l.context.span_id.0.to_vec(),
        trace_state: l
            .context
            .state
            .header_value()
            .unwrap_or_default()
            .to_owned(),
        attributes: attributes(&l.attributes),
        dropped_attributes_count: 0,
        flags: u32::from(l.context.flags.0)
            | HAS_IS_REMOTE
            | if l.context.remote { IS_REMOTE } else { 0 },
    }
}

/// Converts one span.
pub fn encode_span(r: &SpanRecord) -> PSpan {
    let (code, message) = match &r.status {
        Status::Unset => (status::StatusCode::Unset, String::new()),
        Status::Ok => (status::StatusCode::Ok, String::new()),
        Status::Error(m) => (status::StatusCode::Error, m.as_str().to_owned()),
    };
    PSpan {
        trace_id: r.context.trace_id.0.to_vec(),
        span_id: r.context.span_id.0.to_vec(),
        trace_state: r
            .context
            .state
            .header_value()
            .unwrap_or_default()
            .to_owned(),
        parent_span_id: r.parent_span_id.map(|p| p.0.to_vec()).unwrap_or_default(),
        flags: u32::from(r.context.flags.0)
            | HAS_IS_REMOTE
            | if r.parent_is_remote { IS_REMOTE } else { 0 },
        name: r.name.as_str().to_owned(),
        kind: kind(r.kind) as i32,
        start_time_unix_nano: r.start_unix_nanos,
        end_time_unix_nano: r.end_unix_nanos,
        attributes: attributes(&r.attributes),
        dropped_attributes_count: r.dropped_attributes,
        events: r.events.iter().map(event).collect(),
        dropped_events_count: r.dropped_events,
        links: r.links.iter().map(link).collect(),
        dropped_links_count: 0,
        status: Some(PStatus {
            message,
            code: code as i32,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferscope_core::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use std::time::{Duration, UNIX_EPOCH};

    fn record() -> SpanRecord {
        let parent = SpanContext {
            trace_id: TraceId([7; 16]),
            span_id: SpanId([1; 8]),
            flags: TraceFlags::SAMPLED,
            state: TraceState::parse(["a=1"]),
            remote: true,
        };
        let ctx = SpanContext {
            span_id: SpanId([2; 8]),
            remote: false,
            ..parent.clone()
        };
        let mut r = SpanRecord::new(
            ctx,
            Some(&parent),
            "chat m",
            SpanKind::Client,
            UNIX_EPOCH + Duration::from_secs(1),
            Scope::new("test"),
        );
        r.end_unix_nanos = 2_000_000_000;
        r.push("x", 1i64);
        r.push("y", "s");
        r.push("x", 2i64);
        r.push("arr", vec!["stop".to_owned(), "length".to_owned()]);
        r.status = Status::Error("boom".into());
        r
    }

    #[test]
    fn span_fields() {
        let s = encode_span(&record());
        assert_eq!(s.trace_id, vec![7; 16]);
        assert_eq!(s.parent_span_id, vec![1; 8]);
        assert_eq!(s.trace_state, "a=1");
        assert_eq!(s.flags, 0x1 | HAS_IS_REMOTE | IS_REMOTE);
        assert_eq!(s.kind, span::SpanKind::Client as i32);
        assert_eq!(s.start_time_unix_nano, 1_000_000_000);
        let keys: Vec<_> = s.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["x", "y", "arr"]);
        assert_eq!(
            s.attributes[0].value,
            Some(AnyValue {
                value: Some(any_value::Value::IntValue(2))
            })
        );
        assert_eq!(s.status.unwrap().code, status::StatusCode::Error as i32);
    }

    #[test]
    fn request_groups_by_scope_and_carries_the_resource() {
        let a = record();
        let mut b = record();
        b.scope = Scope::new("other");
        let c = record();
        let enc = Encoder::new(&[("service.name".into(), "svc".into())]);
        let req = enc.request(&[a, b, c]);
        let rs = &req.resource_spans[0];
        assert_eq!(rs.schema_url, inferscope_semconv::SCHEMA_URL);
        let res = rs.resource.as_ref().unwrap();
        assert_eq!(res.attributes[0].key, "service.name");
        assert!(
            res.attributes
                .iter()
                .any(|a| a.key == "telemetry.sdk.language")
        );
        assert_eq!(rs.scope_spans.len(), 2);
        assert_eq!(rs.scope_spans[0].spans.len(), 2);
        assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "test");
    }

    #[test]
    fn json_is_otlp_json() {
        let enc = Encoder::new(&[("service.name".into(), "svc".into())]);
        let json = serde_json::to_value(enc.request(&[record()])).unwrap();
        let span = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "07070707070707070707070707070707");
        assert_eq!(span["spanId"], "0202020202020202");
        assert_eq!(span["kind"], 3);
        assert_eq!(span["attributes"][0]["value"]["intValue"], "2");
    }
}
