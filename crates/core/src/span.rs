//! The finished-span record every exporter consumes, and its attribute values.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ids::SpanId;
use crate::trace_context::SpanContext;

/// A string that is static, owned or shared; cloning a static or shared one does not allocate.
/// Equality, ordering and hashing are those of the string, whatever the variant.
#[derive(Clone)]
pub enum Str {
    /// A `&'static str`, e.g. an attribute key constant.
    Static(&'static str),
    /// An owned string.
    Owned(String),
    /// A shared string, e.g. a model name repeated on many spans.
    Shared(Arc<str>),
}

impl Str {
    /// The string.
    pub fn as_str(&self) -> &str {
        match self {
            Str::Static(s) => s,
            Str::Owned(s) => s,
            Str::Shared(s) => s,
        }
    }
}

impl PartialEq for Str {
    fn eq(&self, other: &Str) -> bool {
        match (self, other) {
            (Str::Static(a), Str::Static(b)) if std::ptr::eq(*a, *b) => true,
            _ => self.as_str() == other.as_str(),
        }
    }
}

impl Eq for Str {}

impl PartialOrd for Str {
    fn partial_cmp(&self, other: &Str) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Str {
    fn cmp(&self, other: &Str) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for Str {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::ops::Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Str {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for Str {
    fn from(s: &'static str) -> Str {
        Str::Static(s)
    }
}

impl From<String> for Str {
    fn from(s: String) -> Str {
        Str::Owned(s)
    }
}

impl From<Arc<str>> for Str {
    fn from(s: Arc<str>) -> Str {
        Str::Shared(s)
    }
}

impl From<Cow<'static, str>> for Str {
    fn from(s: Cow<'static, str>) -> Str {
        match s {
            Cow::Borrowed(s) => Str::Static(s),
            Cow::Owned(s) => Str::Owned(s),
        }
    }
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// A double.
    F64(f64),
    /// A string.
    Str(Str),
    /// An array of strings.
    StrArray(Vec<Str>),
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::I64(i) => Some(*i),
            _ => None,
        }
    }

    /// The number, if this is an integer or a double.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::F64(f) => Some(*f),
            Value::I64(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::I64(i) => write!(f, "{i}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Str(s) => f.write_str(s),
            Value::StrArray(a) => {
                f.write_str("[")?;
                for (i, s) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(s)?;
                }
                f.write_str("]")
            }
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident $(as $cast:ty)?),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(v $(as $cast)?)
            }
        }
    )*};
}

value_from!(bool => Bool, i64 => I64, i32 => I64 as i64, u32 => I64 as i64, u16 => I64 as i64, f64 => F64, f32 => F64 as f64);

impl From<u64> for Value {
    /// Saturates at `i64::MAX`.
    fn from(v: u64) -> Value {
        Value::I64(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<usize> for Value {
    /// Saturates at `i64::MAX`.
    fn from(v: usize) -> Value {
        Value::I64(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<&'static str> for Value {
    fn from(v: &'static str) -> Value {
        Value::Str(Str::Static(v))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(Str::Owned(v))
    }
}

impl From<Arc<str>> for Value {
    fn from(v: Arc<str>) -> Value {
        Value::Str(Str::Shared(v))
    }
}

impl From<Str> for Value {
    fn from(v: Str) -> Value {
        Value::Str(v)
    }
}

impl From<Vec<Str>> for Value {
    fn from(v: Vec<Str>) -> Value {
        Value::StrArray(v)
    }
}

impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Value {
        Value::StrArray(v.into_iter().map(Str::Owned).collect())
    }
}

/// A key and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    /// The key, usually a constant from `inferscope_semconv`.
    pub key: Str,
    /// The value.
    pub value: Value,
}

impl KeyValue {
    /// A key-value pair.
    pub fn new(key: impl Into<Str>, value: impl Into<Value>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Each key once, in the order keys were first set, with the value set last: how a list of
/// attributes that may repeat a key (see [`SpanRecord::push`]) reads.
pub fn latest(attributes: &[KeyValue]) -> impl Iterator<Item = &KeyValue> {
    let repeats = has_repeated_keys(attributes);
    attributes.iter().enumerate().filter_map(move |(i, a)| {
        if !repeats {
            return Some(a);
        }
        let first = !attributes[..i].iter().any(|b| b.key == a.key);
        first.then(|| {
            attributes[i..]
                .iter()
                .rev()
                .find(|b| b.key == a.key)
                .unwrap_or(a)
        })
    })
}

/// Whether any key appears twice. Keys are compared by a cheap fingerprint (length and last
/// eight bytes, in one word) in a small open-addressing table on the stack, and by their text
/// only when fingerprints match: a span's usual 20 to 40 keys cost a few instructions each
/// (a quadratic scan cost 1.5k instructions a span in callgrind).
pub fn has_repeated_keys(attributes: &[KeyValue]) -> bool {
    fn fingerprint(key: &str) -> u64 {
        let b = key.as_bytes();
        let mut tail = [0u8; 8];
        let n = b.len().min(8);
        tail[..n].copy_from_slice(&b[b.len() - n..]);
        u64::from_le_bytes(tail) ^ (b.len() as u64).rotate_right(8)
    }
    const SLOTS: usize = 128;
    if attributes.len() > SLOTS / 2 {
        return attributes
            .iter()
            .enumerate()
            .any(|(i, a)| attributes[..i].iter().any(|b| b.key == a.key));
    }
    // Slot: attribute index + 1 (0 = empty).
    let mut slots = [0u8; SLOTS];
    let mut prints = [0u64; SLOTS];
    for (i, a) in attributes.iter().enumerate() {
        let fp = fingerprint(&a.key);
        let mut at = (fp.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57) as usize;
        loop {
            match slots[at] {
                0 => {
                    slots[at] = (i + 1) as u8;
                    prints[at] = fp;
                    break;
                }
                j if prints[at] == fp && attributes[usize::from(j) - 1].key == a.key => {
                    return true;
                }
                _ => at = (at + 1) % SLOTS,
            }
        }
    }
    false
}

/// Finds the value of `key` in a list of attributes (the last one set wins).
pub fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .rev()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// The span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SpanKind {
    /// An operation inside a process.
    #[default]
    Internal,
    /// The handling of an incoming request.
    Server,
    /// An outgoing request.
    Client,
    /// Sending a message.
    Producer,
    /// Receiving a message.
    Consumer,
}

impl SpanKind {
    /// `INTERNAL`, `SERVER`, …
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Internal => "INTERNAL",
            SpanKind::Server => "SERVER",
            SpanKind::Client => "CLIENT",
            SpanKind::Producer => "PRODUCER",
            SpanKind::Consumer => "CONSUMER",
        }
    }
}

/// The span status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Status {
    /// Not set: the default.
    #[default]
    Unset,
    /// Explicitly successful.
    Ok,
    /// Failed, with a description.
    Error(Str),
}

/// An event at a point in a span's life.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The name.
    pub name: Str,
    /// When, in nanoseconds since the Unix epoch.
    pub time_unix_nanos: u64,
    /// Its attributes.
    pub attributes: Vec<KeyValue>,
}

/// A link to another span.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// The linked span.
    pub context: SpanContext,
    /// Its attributes.
    pub attributes: Vec<KeyValue>,
}

/// The instrumentation scope that produced a span.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The scope name, e.g. `inferscope.gateway` (vLLM's `instrumenting_module_name`).
    pub name: Str,
    /// Its version.
    pub version: Option<Str>,
    /// Its schema URL.
    pub schema_url: Option<Str>,
}

impl Scope {
    /// A scope with this crate's version and the pinned semantic-conventions schema URL.
    ///
    /// Every span carries a copy of its scope, which is free for a `&'static str` name; an owned
    /// name is converted to a shared one so copies never allocate.
    pub fn new(name: impl Into<Str>) -> Scope {
        let name = match name.into() {
            Str::Owned(s) => Str::Shared(Arc::from(s)),
            other => other,
        };
        Scope {
            name,
            version: Some(Str::Static(env!("CARGO_PKG_VERSION"))),
            schema_url: Some(Str::Static(inferscope_semconv::SCHEMA_URL)),
        }
    }
}

/// Most attributes a span keeps; more are counted in [`SpanRecord::dropped_attributes`].
pub const MAX_ATTRIBUTES: usize = 256;
/// Most events a span keeps; more are counted in [`SpanRecord::dropped_events`].
pub const MAX_EVENTS: usize = 128;

/// A finished span: what the tracer hands to a processor and exporters encode.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    /// Trace id, span id, flags and trace state.
    pub context: SpanContext,
    /// The parent span, if any.
    pub parent_span_id: Option<SpanId>,
    /// Whether the parent is in another process.
    pub parent_is_remote: bool,
    /// The span name.
    pub name: Str,
    /// The kind.
    pub kind: SpanKind,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// End, nanoseconds since the Unix epoch.
    pub end_unix_nanos: u64,
    /// Attributes, in the order they were set.
    pub attributes: Vec<KeyValue>,
    /// Attributes dropped over [`MAX_ATTRIBUTES`].
    pub dropped_attributes: u32,
    /// Events.
    pub events: Vec<Event>,
    /// Events dropped over [`MAX_EVENTS`].
    pub dropped_events: u32,
    /// Links.
    pub links: Vec<Link>,
    /// The status.
    pub status: Status,
    /// The producing scope.
    pub scope: Scope,
    /// The resource, when it is not the exporting pipeline's own: spans received from another
    /// process (vLLM's) and forwarded keep theirs.
    pub resource: Option<Arc<Resource>>,
}

/// The entity that produced spans (OTLP `Resource`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resource {
    /// Its attributes.
    pub attributes: Vec<KeyValue>,
    /// Attributes the producer dropped.
    pub dropped_attributes: u32,
    /// The schema URL of its `ResourceSpans`.
    pub schema_url: Option<Str>,
}

impl SpanRecord {
    /// A record with no attributes, starting and ending at `start`.
    pub fn new(
        context: SpanContext,
        parent: Option<&SpanContext>,
        name: impl Into<Str>,
        kind: SpanKind,
        start: SystemTime,
        scope: Scope,
    ) -> SpanRecord {
        let start = unix_nanos(start);
        SpanRecord {
            context,
            parent_span_id: parent.filter(|p| p.is_valid()).map(|p| p.span_id),
            parent_is_remote: parent.is_some_and(|p| p.remote),
            name: name.into(),
            kind,
            start_unix_nanos: start,
            end_unix_nanos: start,
            attributes: Vec::new(),
            dropped_attributes: 0,
            events: Vec::new(),
            dropped_events: 0,
            links: Vec::new(),
            status: Status::Unset,
            scope,
            resource: None,
        }
    }

    /// Sets an attribute, replacing an earlier value of the same key.
    pub fn set(&mut self, key: impl Into<Str>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        if let Some(kv) = self.attributes.iter_mut().find(|kv| kv.key == key) {
            kv.value = value;
        } else if self.attributes.len() < MAX_ATTRIBUTES {
            self.attributes.push(KeyValue { key, value });
        } else {
            self.dropped_attributes = self.dropped_attributes.saturating_add(1);
        }
    }

    /// Appends an attribute without looking for an earlier value of the same key: the fast
    /// path the tracer uses. A repeated key is resolved (last wins) by [`SpanRecord::get`] and
    /// by [`latest`], which exporters use off the request path.
    pub fn push(&mut self, key: impl Into<Str>, value: impl Into<Value>) {
        if self.attributes.len() < MAX_ATTRIBUTES {
            self.attributes.push(KeyValue {
                key: key.into(),
                value: value.into(),
            });
        } else {
            self.dropped_attributes = self.dropped_attributes.saturating_add(1);
        }
    }

    /// Removes earlier values of repeated keys, keeping the last one set, in first-set order.
    pub fn dedup_attributes(&mut self) {
        if latest(&self.attributes).count() < self.attributes.len() {
            self.attributes = latest(&self.attributes).cloned().collect();
        }
    }

    /// The value of attribute `key` (the last one set).
    pub fn get(&self, key: &str) -> Option<&Value> {
        find(&self.attributes, key)
    }

    /// Adds an event.
    pub fn add_event(&mut self, event: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(event);
        } else {
            self.dropped_events = self.dropped_events.saturating_add(1);
        }
    }

    /// The duration, zero if the end precedes the start.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_unix_nanos.saturating_sub(self.start_unix_nanos))
    }
}

/// Nanoseconds since the Unix epoch (0 before it; saturating far after it).
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(keys: &[String]) -> Vec<KeyValue> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| KeyValue::new(k.clone(), i as i64))
            .collect()
    }

    #[test]
    fn repeated_keys_are_found_by_text() {
        let distinct: Vec<String> = (0..40).map(|i| format!("gen_ai.key.{i}")).collect();
        assert!(!has_repeated_keys(&attrs(&distinct)));
        let mut repeated = distinct.clone();
        repeated.push("gen_ai.key.17".into());
        assert!(has_repeated_keys(&attrs(&repeated)));
        // Same length and last eight bytes: the same fingerprint, different keys.
        let twins = vec!["a.request.model".to_owned(), "b.request.model".to_owned()];
        assert!(!has_repeated_keys(&attrs(&twins)));
        // Past the table's size, and empty.
        let many: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
        assert!(!has_repeated_keys(&attrs(&many)));
        let mut many_repeated = many.clone();
        many_repeated.push("k250".into());
        assert!(has_repeated_keys(&attrs(&many_repeated)));
        assert!(!has_repeated_keys(&[]));
        // latest(): each key once, first-set order, last value.
        let keys: Vec<String> = ["a", "b", "a", "c", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got: Vec<(String, i64)> = latest(&attrs(&keys))
            .map(|kv| (kv.key.to_string(), kv.value.as_i64().unwrap_or(-1)))
            .collect();
        assert_eq!(got, [("a".into(), 2), ("b".into(), 4), ("c".into(), 3)]);
    }
}
