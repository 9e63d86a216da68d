//! OTLP trace requests → [`SpanRecord`]s: the inverse of `inferscope_export::otlp::encode`, for spans received
//! from another process (vLLM's) and forwarded with their resource and scope.
//!
//! Bounded and total: a body over the limit (compressed or not) is refused before it is
//! decoded, gzip is inflated at most to the limit, nothing here panics on any input (the
//! `otlp_decode` fuzz target checks it), and a span with invalid ids is rejected and counted
//! rather than failing its whole request, as OTLP's partial success allows.
//!
//! Attribute values that [`Value`] cannot hold (arrays of numbers or booleans, key-value lists,
//! bytes) are kept as their JSON text.

use std::io::Read as _;
use std::sync::Arc;

use inferscope_core::span::{
    Event, KeyValue, Link, Resource, Scope, SpanKind, SpanRecord, Status, Str, Value,
};
use inferscope_core::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as PKeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span as PSpan, span, status};
use prost::Message as _;

/// `SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`.
const HAS_IS_REMOTE: u32 = 0x100;
/// `SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
const IS_REMOTE: u32 = 0x200;

/// An OTLP body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `application/x-protobuf` (and gRPC).
    Protobuf,
    /// `application/json`.
    Json,
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum DecodeError {
    /// Over the size limit (before or after inflating).
    #[error("payload over {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not valid gzip.
    #[error("invalid gzip body: {0}")]
    Gzip(String),
    /// Not a valid `ExportTraceServiceRequest`.
    #[error("invalid OTLP {format} body: {reason}")]
    Invalid {
        /// `protobuf` or `JSON`.
        format: &'static str,
        /// What the parser said.
        reason: String,
    },
}

/// Reads a body: inflates it if `gzip` (to at most `limit` bytes), then decodes it.
pub(crate) fn decode_body(
    body: &[u8],
    format: Format,
    gzip: bool,
    limit: usize,
) -> Result<ExportTraceServiceRequest, DecodeError> {
    if body.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    let inflated;
    let bytes = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| DecodeError::Gzip(e.to_string()))?;
        if out.len() > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        inflated = out;
        &inflated[..]
    } else {
        body
    };
    match format {
        Format::Protobuf => {
            ExportTraceServiceRequest::decode(bytes).map_err(|e| DecodeError::Invalid {
                format: "protobuf",
                reason: e.to_string(),
            })
        }
        Format::Json => serde_json::from_slice(bytes).map_err(|e| DecodeError::Invalid {
            format: "JSON",
            reason: e.to_string(),
        }),
    }
}

/// The spans of a request, and what was refused.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    /// The spans, each with its resource and scope.
    pub(crate) spans: Vec<SpanRecord>,
    /// Spans refused (invalid trace or span id).
    pub(crate) rejected: u64,
    /// Why, for the first refused span.
    pub(crate) error: Option<String>,
}

/// Converts a request into records. Spans keep their resource (shared by every span of a
/// `ResourceSpans`) and scope.
pub(crate) fn spans(request: ExportTraceServiceRequest) -> Decoded {
    let mut out = Decoded::default();
    for rs in request.resource_spans {
        let resource = Arc::new(Resource {
            attributes: rs
                .resource
                .as_ref()
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default(),
            dropped_attributes: rs
                .resource
                .as_ref()
                .map_or(0, |r| r.dropped_attributes_count),
            schema_url: non_empty(rs.schema_url),
        });
        for ss in rs.scope_spans {
            let scope = Scope {
                name: ss
                    .scope
                    .as_ref()
                    .map(|s| Str::from(s.name.clone()))
                    .unwrap_or(Str::Static("")),
                version: ss.scope.as_ref().and_then(|s| non_empty(s.version.clone())),
                schema_url: non_empty(ss.schema_url),
            };
            for s in ss.spans {
                match span(s, &scope, &resource) {
                    Ok(record) => out.spans.push(record),
                    Err(reason) => {
                        out.rejected += 1;
                        out.error.get_or_insert(reason);
                    }
                }
            }
        }
    }
    out
}

fn non_empty(s: String) -> Option<Str> {
    (!s.is_empty()).then(|| Str::from(s))
}

fn ids(trace: &[u8], span: &[u8]) -> Option<(TraceId, SpanId)> {
    let t = TraceId(trace.try_into().ok()?);
    let s = SpanId(span.try_into().ok()?);
    (t.is_valid() && s.is_valid()).then_some((t, s))
}

fn span(s: PSpan, scope: &Scope, resource: &Arc<Resource>) -> Result<SpanRecord, String> {
    let (trace_id, span_id) = ids(&s.trace_id, &s.span_id)
        .ok_or_else(|| "a span has an invalid trace or span id".to_owned())?;
    let parent_span_id = match s.parent_span_id.len() {
        0 => None,
        _ => {
            Some(SpanId(s.parent_span_id.as_slice().try_into().map_err(
                |_| "a span has an invalid parent span id".to_owned(),
            )?))
        }
    }
    .filter(SpanId::is_valid);
    let kind = match span::SpanKind::try_from(s.kind).unwrap_or(span::SpanKind::Unspecified) {
        span::SpanKind::Server => SpanKind::Server,
        span::SpanKind::Client => SpanKind::Client,
        span::SpanKind::Producer => SpanKind::Producer,
        span::SpanKind::Consumer => SpanKind::Consumer,
        _ => SpanKind::Internal,
    };
    let status = match s.status {
        Some(st) => {
            match status::StatusCode::try_from(st.code).unwrap_or(status::StatusCode::Unset) {
                status::StatusCode::Ok => Status::Ok,
                status::StatusCode::Error => Status::Error(Str::from(st.message)),
                status::StatusCode::Unset => Status::Unset,
            }
        }
        None => Status::Unset,
    };
    Ok(SpanRecord {
        context: SpanContext {
            trace_id,
            span_id,
            flags: TraceFlags((s.flags & 0xff) as u8),
            state: TraceState::parse([s.trace_state.as_str()]),
            remote: false,
        },
        parent_span_id,
        parent_is_remote: s.flags & HAS_IS_REMOTE != 0 && s.flags & IS_REMOTE != 0,
        name: Str::from(s.name),
        kind,
        start_unix_nanos: s.start_time_unix_nano,
        end_unix_nanos: s.end_time_unix_nano.max(s.start_time_unix_nano),
        attributes: attributes(&s.attributes),
        dropped_attributes: s.dropped_attributes_count,
        events: s
            .events
            .iter()
            .map(|e| Event {
                name: Str::from(e.name.clone()),
                time_unix_nanos: e.time_unix_nano,
                attributes: attributes(&e.attributes),
            })
            .collect(),
        dropped_events: s.dropped_events_count,
        links: s
            .links
            .iter()
            .filter_map(|l| {
                let (trace_id, span_id) = ids(&l.trace_id, &l.span_id)?;
                Some(Link {
                    context: SpanContext {
                        trace_id,
                        span_id,
                        flags: TraceFlags((l.flags & 0xff) as u8),
                        state: TraceState::parse([l.trace_state.as_str()]),
                        remote: l.flags & IS_REMOTE != 0,
                    },
                    attributes: attributes(&l.attributes),
                })
            })
            .collect(),
        status,
        scope: scope.clone(),
        resource: Some(resource.clone()),
    })
}

fn attributes(kvs: &[PKeyValue]) -> Vec<KeyValue> {
    kvs.iter()
        .filter_map(|kv| {
            let value = kv.value.as_ref().and_then(value)?;
            Some(KeyValue::new(kv.key.clone(), value))
        })
        .collect()
}

fn value(v: &AnyValue) -> Option<Value> {
    Some(match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Value::from(s.clone()),
        any_value::Value::BoolValue(b) => Value::Bool(*b),
        any_value::Value::IntValue(i) => Value::I64(*i),
        any_value::Value::DoubleValue(d) => Value::F64(*d),
        any_value::Value::ArrayValue(a)
            if a.values
                .iter()
                .all(|v| matches!(v.value, Some(any_value::Value::StringValue(_)))) =>
        {
            Value::from(
                a.values
                    .iter()
                    .filter_map(|v| match &v.value {
                        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .collect::<Vec<String>>(),
            )
        }
        _ => Value::from(json_text(v).to_string()),
    })
}

/// A value as plain JSON (numbers, booleans, strings, arrays, objects; bytes as hex).
fn json_text(v: &AnyValue) -> serde_json::Value {
    match &v.value {
        None => serde_json::Value::Null,
        Some(any_value::Value::StringValue(s)) => s.clone().into(),
        Some(any_value::Value::BoolValue(b)) => (*b).into(),
        Some(any_value::Value::IntValue(i)) => (*i).into(),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(serde_json::Value::Null, Into::into)
        }
        Some(any_value::Value::ArrayValue(a)) => a.values.iter().map(json_text).collect(),
        Some(any_value::Value::KvlistValue(l)) => l
            .values
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    kv.value.as_ref().map_or(serde_json::Value::Null, json_text),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Some(any_value::Value::BytesValue(b)) => b
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
            .into(),
        #[allow(unreachable_patterns, reason = "newer OTLP versions add value kinds")]
        Some(_) => serde_json::Value::Null,
    }
}

/// Checks the decoder's invariants on arbitrary bytes (the `otlp_decode` fuzz target and its
/// replay in the test suite): never a panic, a bounded result, and a protobuf round trip of
/// whatever decodes, written identically by the struct encoder with prost and by the direct
/// protobuf writer.
#[cfg(any(test, feature = "fuzz"))]
#[allow(
    unreachable_pub,
    reason = "re-exported for the fuzz targets (feature `fuzz`)"
)]
pub fn fuzz_check(data: &[u8]) {
    let limit = 1 << 16;
    for (format, gzip) in [
        (Format::Protobuf, false),
        (Format::Json, false),
        (Format::Protobuf, true),
    ] {
        if let Ok(req) = decode_body(data, format, gzip, limit) {
            let decoded = spans(req);
            if !decoded.spans.is_empty() {
                let encoder = inferscope_export::otlp::Encoder::new(&[(
                    "service.name".into(),
                    "fuzz".into(),
                )]);
                let again = encoder.request(&decoded.spans);
                let mut written = Vec::new();
                encoder.write_protobuf(&decoded.spans, &mut written);
                assert!(
                    written == again.encode_to_vec(),
                    "the direct protobuf writer and prost disagree"
                );
                let _ = spans(again);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferscope_core::span::unix_nanos;
    use inferscope_export::otlp::Encoder;

    fn record(name: &'static str) -> SpanRecord {
        let ctx = SpanContext {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            flags: TraceFlags(1),
            state: TraceState::parse(["a=b"]),
            remote: false,
        };
        let parent = SpanContext {
            span_id: SpanId([3; 8]),
            remote: true,
            ..ctx.clone()
        };
        let mut r = SpanRecord::new(
            ctx,
            Some(&parent),
            name,
            SpanKind::Server,
            std::time::SystemTime::now(),
            Scope::new("vllm.tracing.otel"),
        );
        r.end_unix_nanos = unix_nanos(std::time::SystemTime::now()) + 5;
        r.push("gen_ai.usage.prompt_tokens", 7i64);
        r.push("gen_ai.latency.e2e", 0.25);
        r.push("code.lineno", "259");
        r.push("tags", vec!["x".to_owned()]);
        r.status = Status::Error("boom".into());
        r
    }

    #[test]
    fn round_trips_through_protobuf_json_and_gzip() {
        let encoder = Encoder::new(&[("service.name".into(), "vllm".into())]);
        let req = encoder.request(&[record("llm_request")]);
        let proto = req.encode_to_vec();
        let json = serde_json::to_vec(&req).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &proto).unwrap();
        let gz = gz.finish().unwrap();
        for (body, format, gzip) in [
            (&proto, Format::Protobuf, false),
            (&json, Format::Json, false),
            (&gz, Format::Protobuf, true),
        ] {
            let d = spans(decode_body(body, format, gzip, 1 << 20).unwrap());
            assert_eq!(d.rejected, 0);
            let s = &d.spans[0];
            let want = record("llm_request");
            assert_eq!(
                (s.context.trace_id, s.context.span_id, s.parent_span_id),
                (
                    want.context.trace_id,
                    want.context.span_id,
                    want.parent_span_id
                )
            );
            assert!(s.parent_is_remote);
            assert_eq!(s.context.state.header_value(), Some("a=b"));
            assert_eq!(s.attributes, want.attributes);
            assert_eq!(s.status, want.status);
            assert_eq!(s.scope.name.as_str(), "vllm.tracing.otel");
            let resource = s.resource.as_ref().unwrap();
            assert!(
                resource.attributes.iter().any(
                    |kv| kv.key.as_str() == "service.name" && kv.value.as_str() == Some("vllm")
                )
            );
        }
    }

    #[test]
    fn refuses_what_it_must() {
        assert_eq!(
            decode_body(&[0; 100], Format::Protobuf, false, 10),
            Err(DecodeError::TooLarge { limit: 10 })
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &vec![0u8; 1 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert_eq!(
            decode_body(&bomb, Format::Protobuf, true, 1 << 16),
            Err(DecodeError::TooLarge { limit: 1 << 16 })
        );
        assert!(matches!(
            decode_body(b"\xff\xff", Format::Protobuf, false, 100),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            decode_body(b"{", Format::Json, false, 100),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            decode_body(b"nope", Format::Protobuf, true, 100),
            Err(DecodeError::Gzip(_))
        ));
        // A span with a short id is rejected alone.
        let encoder = Encoder::new(&[]);
        let mut req = encoder.request(&[record("a"), record("b")]);
        req.resource_spans[0].scope_spans[0].spans[0].span_id = vec![1, 2];
        let d = spans(req);
        assert_eq!((d.spans.len(), d.rejected), (1, 1));
        assert!(d.error.unwrap().contains("invalid"));
    }

    #[test]
    fn replays_generated_inputs() {
        let encoder = Encoder::new(&[("service.name".into(), "vllm".into())]);
        let seed = encoder
            .request(&[record("llm_request"), record("Worker init")])
            .encode_to_vec();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let mut data = seed.clone();
            for _ in 0..rng.usize(1..8) {
                let i = rng.usize(..data.len());
                match rng.u8(..3) {
                    0 => data[i] = rng.u8(..),
                    1 => {
                        data.truncate(i);
                    }
                    _ => data.insert(i, rng.u8(..)),
                }
                if data.is_empty() {
                    break;
                }
            }
            fuzz_check(&data);
        }
    }
}
