//! [`SpanRecord`]s → OTLP protobuf bytes, written straight from the records.
//!
//! The same bytes as building the `opentelemetry-proto` structs ([`super::encode`]) and
//! encoding them with prost (fields in tag order, proto3 defaults left out, oneof values always
//! written), without allocating a struct, a `String` and a `Vec` per attribute first. On the
//! gateway's non-streamed path that copy took half of the export thread's time (ADR 0009).
//! The tests, and the `otlp_decode` fuzz target, check that the bytes are identical.
//!
//! Two passes over a batch: the first works out every span's length (nested messages are
//! length-prefixed), the second writes.

use std::borrow::Cow;

use inferscope_core::span::{Event, KeyValue, Link, Resource, Scope, SpanRecord, Status, Value};

use super::encode::{Encoder, Groups, HAS_IS_REMOTE, IS_REMOTE, kind_number};

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least 1.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key_len(tag: u32) -> usize {
    varint_len(u64::from(tag) << 3)
}

fn put_key(out: &mut Vec<u8>, tag: u32, wire: u32) {
    put_varint(out, u64::from((tag << 3) | wire));
}

/// A length-delimited field holding `len` bytes: its whole size.
fn len_field(tag: u32, len: usize) -> usize {
    key_len(tag) + varint_len(len as u64) + len
}

/// A bytes or string field, left out when empty (proto3).
fn bytes_field(tag: u32, b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        len_field(tag, b.len())
    }
}

fn put_bytes(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    if !b.is_empty() {
        put_key(out, tag, LEN);
        put_varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

fn put_header(out: &mut Vec<u8>, tag: u32, len: usize) {
    put_key(out, tag, LEN);
    put_varint(out, len as u64);
}

fn uint_field(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + varint_len(v)
    }
}

fn put_uint(out: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        put_key(out, tag, VARINT);
        put_varint(out, v);
    }
}

fn fixed64_field(tag: u32, v: u64) -> usize {
    if v == 0 { 0 } else { key_len(tag) + 8 }
}

fn put_fixed64(out: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        put_key(out, tag, FIXED64);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed32_field(tag: u32, v: u32) -> usize {
    if v == 0 { 0 } else { key_len(tag) + 4 }
}

fn put_fixed32(out: &mut Vec<u8>, tag: u32, v: u32) {
    if v != 0 {
        put_key(out, tag, FIXED32);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

// AnyValue: string_value = 1, bool_value = 2, int_value = 3, double_value = 4,
// array_value = 5 (ArrayValue { repeated AnyValue values = 1 }). A oneof is always written.

fn string_any_len(s: &str) -> usize {
    len_field(1, s.len())
}

fn any_len(v: &Value) -> usize {
    match v {
        Value::Str(s) => string_any_len(s),
        Value::Bool(_) => key_len(2) + 1,
        Value::I64(i) => key_len(3) + varint_len(*i as u64),
        Value::F64(_) => key_len(4) + 8,
        Value::StrArray(a) => len_field(5, array_len(a)),
    }
}

fn array_len(a: &[inferscope_core::span::Str]) -> usize {
    a.iter().map(|s| len_field(1, string_any_len(s))).sum()
}

fn put_any(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => {
            put_header(out, 1, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bool(b) => {
            put_key(out, 2, VARINT);
            out.push(u8::from(*b));
        }
        Value::I64(i) => {
            put_key(out, 3, VARINT);
            put_varint(out, *i as u64);
        }
        Value::F64(f) => {
            put_key(out, 4, FIXED64);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::StrArray(a) => {
            put_header(out, 5, array_len(a));
            for s in a {
                put_header(out, 1, string_any_len(s));
                put_header(out, 1, s.len());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

/// KeyValue { key = 1, value = 2 }: the message's length, given the value's.
fn kv_len_with(kv: &KeyValue, value_len: usize) -> usize {
    bytes_field(1, kv.key.as_bytes()) + len_field(2, value_len)
}

fn kv_len(kv: &KeyValue) -> usize {
    kv_len_with(kv, any_len(&kv.value))
}

fn put_kv(out: &mut Vec<u8>, tag: u32, kv: &KeyValue) {
    let value_len = any_len(&kv.value);
    put_header(out, tag, kv_len_with(kv, value_len));
    put_bytes(out, 1, kv.key.as_bytes());
    put_header(out, 2, value_len);
    put_any(out, &kv.value);
}

/// Attributes as written: each key once (the last value), in first-set order.
fn attributes(attrs: &[KeyValue]) -> Cow<'_, [KeyValue]> {
    if inferscope_core::span::has_repeated_keys(attrs) {
        Cow::Owned(inferscope_core::span::latest(attrs).cloned().collect())
    } else {
        Cow::Borrowed(attrs)
    }
}

fn attributes_len(tag: u32, attrs: &[KeyValue]) -> usize {
    attrs.iter().map(|kv| len_field(tag, kv_len(kv))).sum()
}

fn put_attributes(out: &mut Vec<u8>, tag: u32, attrs: &[KeyValue]) {
    for kv in attrs {
        put_kv(out, tag, kv);
    }
}

// Span.Event { time_unix_nano = 1 (fixed64), name = 2, attributes = 3 }.
fn event_len(e: &Event, attrs: &[KeyValue]) -> usize {
    fixed64_field(1, e.time_unix_nanos)
        + bytes_field(2, e.name.as_bytes())
        + attributes_len(3, attrs)
}

fn put_event(out: &mut Vec<u8>, e: &Event) {
    let attrs = attributes(&e.attributes);
    put_header(out, 11, event_len(e, &attrs));
    put_fixed64(out, 1, e.time_unix_nanos);
    put_bytes(out, 2, e.name.as_bytes());
    put_attributes(out, 3, &attrs);
}

fn link_flags(l: &Link) -> u32 {
    u32::from(l.context.flags.0) | HAS_IS_REMOTE | if l.context.remote { IS_REMOTE } else { 0 }
}

// Span.Link { trace_id = 1, span_id = 2, trace_state = 3, attributes = 4, flags = 6 (fixed32) }.
fn link_len(l: &Link, attrs: &[KeyValue]) -> usize {
    bytes_field(1, &l.context.trace_id.0)
        + bytes_field(2, &l.context.span_id.0)
        + bytes_field(
            3,
            l.context
                .state
                .header_value()
                .unwrap_or_default()
                .as_bytes(),
        )
        + attributes_len(4, attrs)
        + fixed32_field(6, link_flags(l))
}

fn put_link(out: &mut Vec<u8>, l: &Link) {
    let attrs = attributes(&l.attributes);
    put_header(out, 13, link_len(l, &attrs));
    put_bytes(out, 1, &l.context.trace_id.0);
    put_bytes(out, 2, &l.context.span_id.0);
    put_bytes(
        out,
        3,
        l.context
            .state
            .header_value()
            .unwrap_or_default()
            .as_bytes(),
    );
    put_attributes(out, 4, &attrs);
    put_fixed32(out, 6, link_flags(l));
}

/// Status { message = 2, code = 3 }.
fn status_parts(s: &Status) -> (&str, u64) {
    match s {
        Status::Unset => ("", 0),
        Status::Ok => ("", 1),
        Status::Error(m) => (m, 2),
    }
}

fn status_len(s: &Status) -> usize {
    let (message, code) = status_parts(s);
    bytes_field(2, message.as_bytes()) + uint_field(3, code)
}

fn span_flags(r: &SpanRecord) -> u32 {
    u32::from(r.context.flags.0) | HAS_IS_REMOTE | if r.parent_is_remote { IS_REMOTE } else { 0 }
}

/// One span, planned: its attributes as written and its message length.
struct Planned<'a> {
    record: &'a SpanRecord,
    attributes: Cow<'a, [KeyValue]>,
    len: usize,
}

fn plan(record: &SpanRecord) -> Planned<'_> {
    let r = record;
    let attributes = attributes(&r.attributes);
    let parent = r.parent_span_id.map(|p| p.0);
    let len = bytes_field(1, &r.context.trace_id.0)
        + bytes_field(2, &r.context.span_id.0)
        + bytes_field(
            3,
            r.context
                .state
                .header_value()
                .unwrap_or_default()
                .as_bytes(),
        )
        + bytes_field(4, parent.as_ref().map_or(&[][..], |p| &p[..]))
        + bytes_field(5, r.name.as_bytes())
        + uint_field(6, kind_number(r.kind))
        + fixed64_field(7, r.start_unix_nanos)
        + fixed64_field(8, r.end_unix_nanos)
        + attributes_len(9, &attributes)
        + uint_field(10, u64::from(r.dropped_attributes))
        + r.events
            .iter()
            .map(|e| len_field(11, event_len(e, &self::attributes(&e.attributes))))
            .sum::<usize>()
        + uint_field(12, u64::from(r.dropped_events))
        + r.links
            .iter()
            .map(|l| len_field(13, link_len(l, &self::attributes(&l.attributes))))
            .sum::<usize>()
        + len_field(15, status_len(&r.status))
        + fixed32_field(16, span_flags(r));
    Planned {
        record,
        attributes,
        len,
    }
}

fn put_span(out: &mut Vec<u8>, p: &Planned<'_>) {
    let r = p.record;
    put_header(out, 2, p.len);
    put_bytes(out, 1, &r.context.trace_id.0);
    put_bytes(out, 2, &r.context.span_id.0);
    put_bytes(
        out,
        3,
        r.context
            .state
            .header_value()
            .unwrap_or_default()
            .as_bytes(),
    );
    if let Some(parent) = r.parent_span_id {
        put_bytes(out, 4, &parent.0);
    }
    put_bytes(out, 5, r.name.as_bytes());
    put_uint(out, 6, kind_number(r.kind));
    put_fixed64(out, 7, r.start_unix_nanos);
    put_fixed64(out, 8, r.end_unix_nanos);
    put_attributes(out, 9, &p.attributes);
    put_uint(out, 10, u64::from(r.dropped_attributes));
    for e in &r.events {
        put_event(out, e);
    }
    put_uint(out, 12, u64::from(r.dropped_events));
    for l in &r.links {
        put_link(out, l);
    }
    put_header(out, 15, status_len(&r.status));
    let (message, code) = status_parts(&r.status);
    put_bytes(out, 2, message.as_bytes());
    put_uint(out, 3, code);
    put_fixed32(out, 16, span_flags(r));
}

// InstrumentationScope { name = 1, version = 2 }; ScopeSpans { scope = 1, spans = 2,
// schema_url = 3 }.
fn scope_len(s: &Scope) -> usize {
    bytes_field(1, s.name.as_bytes())
        + bytes_field(2, s.version.as_deref().unwrap_or_default().as_bytes())
}

fn scope_spans_len(s: &Scope, spans: &[Planned<'_>]) -> usize {
    len_field(1, scope_len(s))
        + spans.iter().map(|p| len_field(2, p.len)).sum::<usize>()
        + bytes_field(3, s.schema_url.as_deref().unwrap_or_default().as_bytes())
}

/// The resource a group of spans is written under: the pipeline's own (`None`) or a
/// forwarded span's.
enum ResourceRef<'a> {
    Own(&'a Encoder),
    Forwarded(&'a Resource),
}

impl ResourceRef<'_> {
    fn attributes(&self) -> Cow<'_, [KeyValue]> {
        match self {
            ResourceRef::Own(e) => Cow::Borrowed(e.resource_attributes()),
            ResourceRef::Forwarded(r) => attributes(&r.attributes),
        }
    }

    fn dropped(&self) -> u32 {
        match self {
            ResourceRef::Own(_) => 0,
            ResourceRef::Forwarded(r) => r.dropped_attributes,
        }
    }

    fn schema_url(&self) -> &str {
        match self {
            ResourceRef::Own(_) => inferscope_semconv::SCHEMA_URL,
            ResourceRef::Forwarded(r) => r.schema_url.as_deref().unwrap_or_default(),
        }
    }
}

/// A resource's spans, planned, by scope.
type PlannedResource<'a> = (ResourceRef<'a>, Vec<(&'a Scope, Vec<Planned<'a>>)>);

/// Writes the `ExportTraceServiceRequest` for `batch` into `out` (appending), grouped as
/// [`Encoder::request`] groups it.
pub(crate) fn write_request(encoder: &Encoder, batch: &[SpanRecord], out: &mut Vec<u8>) {
    let groups: Groups<'_> = super::encode::group(batch);
    let planned: Vec<PlannedResource<'_>> = groups
        .into_iter()
        .map(|(resource, scopes)| {
            let resource = match resource {
                None => ResourceRef::Own(encoder),
                Some(r) => ResourceRef::Forwarded(r),
            };
            let scopes = scopes
                .into_iter()
                .map(|(scope, spans)| (scope, spans.into_iter().map(plan).collect()))
                .collect();
            (resource, scopes)
        })
        .collect();
    out.reserve(
        planned
            .iter()
            .flat_map(|(_, s)| s.iter().flat_map(|(_, p)| p.iter().map(|p| p.len + 4)))
            .sum::<usize>()
            + 256,
    );
    // ExportTraceServiceRequest { resource_spans = 1 };
    // ResourceSpans { resource = 1, scope_spans = 2, schema_url = 3 };
    // Resource { attributes = 1, dropped_attributes_count = 2 }.
    for (resource, scopes) in &planned {
        let attrs = resource.attributes();
        let resource_len = attributes_len(1, &attrs) + uint_field(2, u64::from(resource.dropped()));
        let scopes_len: usize = scopes
            .iter()
            .map(|(s, spans)| len_field(2, scope_spans_len(s, spans)))
            .sum();
        let schema = resource.schema_url().as_bytes();
        put_header(
            out,
            1,
            len_field(1, resource_len) + scopes_len + bytes_field(3, schema),
        );
        put_header(out, 1, resource_len);
        put_attributes(out, 1, &attrs);
        put_uint(out, 2, u64::from(resource.dropped()));
        for (scope, spans) in scopes {
            put_header(out, 2, scope_spans_len(scope, spans));
            put_header(out, 1, scope_len(scope));
            put_bytes(out, 1, scope.name.as_bytes());
            put_bytes(
                out,
                2,
                scope.version.as_deref().unwrap_or_default().as_bytes(),
            );
            for p in spans {
                put_span(out, p);
            }
            put_bytes(
                out,
                3,
                scope.schema_url.as_deref().unwrap_or_default().as_bytes(),
            );
        }
        put_bytes(out, 3, schema);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferscope_core::span::Str;
    use inferscope_core::{SpanContext, SpanId, SpanKind, TraceFlags, TraceId, TraceState};
    use prost::Message as _;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    /// Spans that exercise every field: each value kind (negative, zero and empty ones too),
    /// repeated keys, events and links with and without attributes, every status, a remote
    /// parent, no parent, trace state, dropped counts, two scopes and a forwarded resource.
    fn varied_records() -> Vec<SpanRecord> {
        let ctx = |n: u8, state: &str| SpanContext {
            trace_id: TraceId([n; 16]),
            span_id: SpanId([n.wrapping_add(1); 8]),
            flags: TraceFlags(1),
            state: TraceState::parse([state]),
            remote: n.is_multiple_of(2),
        };
        let mut out = Vec::new();
        for n in 1..=6u8 {
            let parent = ctx(n + 100, "");
            let mut r = SpanRecord::new(
                ctx(n, if n % 2 == 0 { "vendor=abc,other=1" } else { "" }),
                (n != 3).then_some(&parent),
                if n == 4 {
                    Str::Static("")
                } else {
                    Str::Owned(format!("span {n}"))
                },
                [
                    SpanKind::Internal,
                    SpanKind::Server,
                    SpanKind::Client,
                    SpanKind::Producer,
                    SpanKind::Consumer,
                ][usize::from(n) % 5],
                UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + u64::from(n)),
                if n == 5 {
                    Scope::new("other.scope")
                } else {
                    Scope::new("inferscope.gateway")
                },
            );
            r.end_unix_nanos = if n == 6 {
                0
            } else {
                r.start_unix_nanos + 1_234_567
            };
            r.push("gen_ai.request.model", "tiny-llama");
            r.push("count", i64::from(n) * 1_000_000_007);
            r.push("negative", -42i64);
            r.push("zero", 0i64);
            r.push("ratio", 0.5f64);
            r.push("nan_free_neg", -1.25e-9f64);
            r.push("flag", n % 2 == 0);
            r.push("off", false);
            r.push("empty", "");
            r.push("é unicode ✓", "ünïcödé");
            r.push(
                "gen_ai.response.finish_reasons",
                vec![
                    Str::Static("stop"),
                    Str::Static(""),
                    Str::Owned("length".into()),
                ],
            );
            r.push("empty_array", Vec::<Str>::new());
            if n % 2 == 1 {
                r.push("count", 7i64);
                r.push("gen_ai.request.model", Str::Shared(Arc::from("again")));
            }
            r.push("long", "x".repeat(300));
            if n == 2 {
                r.dropped_attributes = 3;
                r.dropped_events = 1;
            }
            r.add_event(inferscope_core::span::Event {
                name: "gen_ai.content.prompt".into(),
                time_unix_nanos: r.start_unix_nanos + 10,
                attributes: vec![KeyValue::new("a", 1i64), KeyValue::new("a", 2i64)],
            });
            r.add_event(inferscope_core::span::Event {
                name: "".into(),
                time_unix_nanos: 0,
                attributes: Vec::new(),
            });
            if n % 3 == 0 {
                r.links.push(inferscope_core::span::Link {
                    context: ctx(n + 50, "k=v"),
                    attributes: vec![KeyValue::new("link.kind", "follows")],
                });
                r.links.push(inferscope_core::span::Link {
                    context: ctx(n + 51, ""),
                    attributes: Vec::new(),
                });
            }
            r.status = match n % 3 {
                0 => Status::Unset,
                1 => Status::Ok,
                _ => Status::Error(Str::Owned(format!("failed {n}"))),
            };
            if n >= 5 {
                r.resource = Some(Arc::new(Resource {
                    attributes: vec![
                        KeyValue::new("service.name", "vllm"),
                        KeyValue::new("vllm.process_id", 1234i64),
                        KeyValue::new("service.name", "vllm-2"),
                    ],
                    dropped_attributes: u32::from(n == 6),
                    schema_url: (n == 6).then_some(Str::Static("https://example.com/schema")),
                }));
            }
            out.push(r);
        }
        out
    }

    #[test]
    fn varints_match_prost() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
            (-1i64) as u64,
        ] {
            let mut ours = Vec::new();
            put_varint(&mut ours, v);
            assert_eq!(ours.len(), varint_len(v), "{v}");
            let mut theirs = Vec::new();
            prost::encode_length_delimiter(v as usize, &mut theirs).unwrap();
            assert_eq!(ours, theirs, "{v}");
        }
    }

    #[test]
    fn bytes_equal_prost_for_the_struct_encoder() {
        let enc = Encoder::new(&[("service.name".into(), "svc".into())]);
        let batch = varied_records();
        let mut ours = Vec::new();
        write_request(&enc, &batch, &mut ours);
        assert_eq!(ours, enc.request(&batch).encode_to_vec());
        let mut empty = Vec::new();
        write_request(&enc, &[], &mut empty);
        assert_eq!(empty, enc.request(&[]).encode_to_vec());
    }
}
