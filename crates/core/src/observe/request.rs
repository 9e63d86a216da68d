//! Reading an inference request body: the facts a span records, and the optional rewrite that
//! asks the upstream for token usage on a stream.
//!
//! The body is parsed once, in one pass that keeps the fields tracing reads as borrowed raw
//! values (no value is decoded unless a span attribute needs it), with JSON's
//! last-duplicate-wins rule, as vLLM's own parser reads it.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::capture::{self, CapturePolicy};
use super::route::Api;
use crate::span::Value;

/// A JSON object key, borrowed unless it holds escapes.
#[derive(Debug, Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

/// vLLM's sampling and request extras recorded under `vllm.request.<name>` (scalars typed,
/// lists and objects as compact JSON). Content-bearing extras (`documents`, `chat_template`,
/// `mm_processor_kwargs`), secrets (`cache_salt`) and transport blobs (`kv_transfer_params`)
/// are deliberately not in this list.
pub const VLLM_EXTRAS: &[&str] = &[
    "min_p",
    "repetition_penalty",
    "length_penalty",
    "use_beam_search",
    "stop_token_ids",
    "include_stop_str_in_output",
    "ignore_eos",
    "min_tokens",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "truncate_prompt_tokens",
    "prompt_logprobs",
    "logprobs",
    "top_logprobs",
    "add_generation_prompt",
    "continue_final_message",
    "structured_outputs",
    "priority",
    "request_id",
    "return_token_ids",
    "echo",
    "best_of",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "dimensions",
];

/// Longest JSON text recorded for a list- or object-valued extra.
const MAX_EXTRA_JSON: usize = 512;

/// What a request body says, as far as tracing uses it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestFacts {
    /// `model`.
    pub model: Option<String>,
    /// `stream`.
    pub stream: bool,
    /// Whether the request said `stream` (`true` or `false`) at all.
    pub stream_given: bool,
    /// `n`.
    pub choice_count: Option<i64>,
    /// `seed`.
    pub seed: Option<i64>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<i64>,
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `top_p`.
    pub top_p: Option<f64>,
    /// `top_k`.
    pub top_k: Option<f64>,
    /// `frequency_penalty`.
    pub frequency_penalty: Option<f64>,
    /// `presence_penalty`.
    pub presence_penalty: Option<f64>,
    /// `stop`, as a list.
    pub stop: Vec<String>,
    /// `encoding_format` (embeddings).
    pub encoding_format: Option<String>,
    /// `gen_ai.output.type` from `response_format`.
    pub output_type: Option<&'static str>,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    /// Whether the body has a `stream_options` field at all.
    pub has_stream_options: bool,
    /// Completions: how many prompts (a list of strings or of token-id lists is several).
    pub prompt_count: Option<usize>,
    /// Names of the tools offered.
    pub tool_names: Vec<String>,
    /// vLLM extras: (name without prefix, value).
    pub extras: Vec<(&'static str, Value)>,
    /// Captured content (only when the policy captures).
    pub content: capture::InputContent,
    /// Why the body could not be read, if it could not.
    pub parse_error: Option<String>,
}

/// The top-level fields tracing reads, as raw JSON, found in one pass over the body (JSON's
/// last duplicate wins, as vLLM's parser reads it). Every other field is skipped unread.
#[derive(Default)]
struct Fields<'a> {
    model: Option<&'a RawValue>,
    stream: Option<&'a RawValue>,
    n: Option<&'a RawValue>,
    seed: Option<&'a RawValue>,
    max_completion_tokens: Option<&'a RawValue>,
    max_tokens: Option<&'a RawValue>,
    max_output_tokens: Option<&'a RawValue>,
    temperature: Option<&'a RawValue>,
    top_p: Option<&'a RawValue>,
    top_k: Option<&'a RawValue>,
    frequency_penalty: Option<&'a RawValue>,
    presence_penalty: Option<&'a RawValue>,
    encoding_format: Option<&'a RawValue>,
    stop: Option<&'a RawValue>,
    stop_sequences: Option<&'a RawValue>,
    system: Option<&'a RawValue>,
    prompt: Option<&'a RawValue>,
    stream_options: Option<&'a RawValue>,
    response_format: Option<&'a RawValue>,
    text: Option<&'a RawValue>,
    tools: Option<&'a RawValue>,
    messages: Option<&'a RawValue>,
    input: Option<&'a RawValue>,
    instructions: Option<&'a RawValue>,
    extras: [Option<&'a RawValue>; VLLM_EXTRAS.len()],
}

impl<'a> Fields<'a> {
    fn slot(&mut self, key: &str) -> Option<&mut Option<&'a RawValue>> {
        Some(match key {
            "model" => &mut self.model,
            "stream" => &mut self.stream,
            "n" => &mut self.n,
            "seed" => &mut self.seed,
            "max_completion_tokens" => &mut self.max_completion_tokens,
            "max_tokens" => &mut self.max_tokens,
            "max_output_tokens" => &mut self.max_output_tokens,
            "temperature" => &mut self.temperature,
            "top_p" => &mut self.top_p,
            "top_k" => &mut self.top_k,
            "frequency_penalty" => &mut self.frequency_penalty,
            "presence_penalty" => &mut self.presence_penalty,
            "encoding_format" => &mut self.encoding_format,
            "stop" => &mut self.stop,
            "stop_sequences" => &mut self.stop_sequences,
            "system" => &mut self.system,
            "prompt" => &mut self.prompt,
            "stream_options" => &mut self.stream_options,
            "response_format" => &mut self.response_format,
            "text" => &mut self.text,
            "tools" => &mut self.tools,
            "messages" => &mut self.messages,
            "input" => &mut self.input,
            "instructions" => &mut self.instructions,
            other => {
                let i = VLLM_EXTRAS.iter().position(|n| *n == other)?;
                &mut self.extras[i]
            }
        })
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fields<'de>, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields<'de>, A::Error> {
                let mut fields = Fields::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    if let Some(slot) = fields.slot(&key.0) {
                        *slot = Some(value);
                    }
                }
                Ok(fields)
            }
        }
        d.deserialize_map(Visit)
    }
}

fn decode(raw: Option<&RawValue>) -> Option<serde_json::Value> {
    raw.and_then(|raw| serde_json::from_str(raw.get()).ok())
}

fn string(raw: Option<&RawValue>) -> Option<String> {
    raw.and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
}

fn int(raw: Option<&RawValue>) -> Option<i64> {
    raw.and_then(|raw| serde_json::from_str::<i64>(raw.get()).ok())
}

fn float(raw: Option<&RawValue>) -> Option<f64> {
    raw.and_then(|raw| serde_json::from_str::<f64>(raw.get()).ok())
}

/// Reads `body` as a request of `api`. A body that is not a JSON object gives facts with only
/// `parse_error` set; nothing here fails the request.
pub fn parse(api: Api, body: &[u8], policy: &CapturePolicy) -> RequestFacts {
    let fields: Fields<'_> = match super::json::from_bytes(body) {
        Ok(f) => f,
        Err(e) => {
            return RequestFacts {
                parse_error: Some(format!("request body is not a JSON object: {e}")),
                ..RequestFacts::default()
            };
        }
    };
    let f = &fields;
    let mut facts = RequestFacts {
        model: string(f.model),
        stream: f.stream.is_some_and(|raw| raw.get() == "true"),
        stream_given: f
            .stream
            .is_some_and(|raw| matches!(raw.get(), "true" | "false")),
        choice_count: int(f.n),
        seed: int(f.seed),
        max_tokens: int(f.max_completion_tokens)
            .or_else(|| int(f.max_tokens))
            .or_else(|| int(f.max_output_tokens)),
        temperature: float(f.temperature),
        top_p: float(f.top_p),
        top_k: float(f.top_k),
        frequency_penalty: float(f.frequency_penalty),
        presence_penalty: float(f.presence_penalty),
        encoding_format: string(f.encoding_format),
        has_stream_options: f.stream_options.is_some(),
        ..RequestFacts::default()
    };
    // `stop` (OpenAI), `stop_sequences` (Anthropic Messages).
    if let Some(stop) = decode(f.stop.or(f.stop_sequences)) {
        facts.stop = match stop {
            serde_json::Value::String(s) => vec![s],
            serde_json::Value::Array(items) => items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
    }
    if api == Api::Completions
        && let Some(raw) = f.prompt
    {
        facts.prompt_count = Some(prompt_count(raw));
    }
    // Read as the usage edit reads it (raw values: a number past a double's range elsewhere
    // in the object does not hide the flag).
    if let Some(options) = f
        .stream_options
        .and_then(|raw| serde_json::from_str::<StreamOptions<'_>>(raw.get()).ok())
    {
        facts.include_usage = options
            .include_usage
            .is_some_and(|v| lax_bool(v) == Some(true));
    }
    if let Some(format) = decode(f.response_format).or_else(|| decode(f.text)) {
        let kind = format
            .get("type")
            .or_else(|| format.get("format").and_then(|f| f.get("type")))
            .and_then(serde_json::Value::as_str);
        facts.output_type = match kind {
            Some("json_object" | "json_schema") => Some("json"),
            Some("text") => Some("text"),
            _ => None,
        };
    }
    let tools = decode(f.tools);
    if let Some(serde_json::Value::Array(tools)) = &tools {
        facts.tool_names = tools
            .iter()
            .filter_map(|t| {
                t.get("function")
                    .and_then(|f| f.get("name"))
                    .or_else(|| t.get("name"))
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
    }
    for (&name, raw) in VLLM_EXTRAS.iter().zip(&f.extras) {
        if let Some(value) = raw.and_then(extra_value) {
            facts.extras.push((name, value));
        }
    }
    if policy.enabled {
        facts.content = capture::input_content(
            api,
            policy,
            decode(f.messages).as_ref(),
            decode(f.prompt).as_ref(),
            decode(f.input).as_ref(),
            // The Messages API's `system` is what the Responses API calls `instructions`.
            decode(f.instructions.or(f.system)).as_ref(),
            tools.as_ref(),
        );
    }
    facts
}

/// 1 for a string or one list of token ids; the length of a list of strings or of lists.
fn prompt_count(raw: &RawValue) -> usize {
    let text = raw.get();
    if !text.starts_with('[') {
        return 1;
    }
    match serde_json::from_str::<Vec<&RawValue>>(text) {
        Ok(items)
            if items
                .first()
                .is_some_and(|f| f.get().starts_with(['"', '['])) =>
        {
            items.len()
        }
        _ => 1,
    }
}

fn extra_value(raw: &RawValue) -> Option<Value> {
    let text = raw.get();
    match serde_json::from_str::<serde_json::Value>(text).ok()? {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(b) => Some(Value::Bool(b)),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::I64)
            .or_else(|| n.as_f64().map(Value::F64)),
        serde_json::Value::String(s) => Some(Value::from(capture::truncate(&s, MAX_EXTRA_JSON))),
        other => Some(Value::from(capture::truncate(
            &other.to_string(),
            MAX_EXTRA_JSON,
        ))),
    }
}

/// One change to a request body: the bytes in `range` become `with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The bytes replaced (empty for an insertion).
    pub range: std::ops::Range<usize>,
    /// What takes their place.
    pub with: &'static [u8],
}

/// Changes to a request body, in the order of their places; every other byte stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    first: Change,
    second: Option<Change>,
}

impl Edit {
    fn one(range: std::ops::Range<usize>, with: &'static [u8]) -> Edit {
        Edit {
            first: Change { range, with },
            second: None,
        }
    }

    /// The changes, in order.
    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        std::iter::once(&self.first).chain(self.second.as_ref())
    }

    /// `body` with the edit made.
    pub fn apply(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 64);
        let mut at = 0;
        for c in self.changes() {
            out.extend_from_slice(&body[at..c.range.start]);
            out.extend_from_slice(c.with);
            at = c.range.end;
        }
        out.extend_from_slice(&body[at..]);
        out
    }
}

/// The edit that makes a stream report token usage, or `None` to send the body unchanged:
/// when the route does not stream usage, the request does not stream, or the client already
/// asked for usage. Every byte but the ones the edit names stays as the client sent it.
///
/// - No `stream_options`: `,"stream_options":{"include_usage":true}` goes before the closing
///   brace.
/// - `stream_options` an object without `include_usage`: `"include_usage":true` goes first in
///   it; with `include_usage` false (or null), that value becomes `true`.
/// - `stream_options: null`: it becomes `{"include_usage":true}`.
/// - `continuous_usage_stats: true` also becomes `false`: vLLM honours it only with
///   `include_usage`, so the client saw no usage from it, and left on it would add usage to
///   every chunk the client sees.
/// - Left unchanged: `stream_options` of another type (vLLM refuses it).
///
/// The response then carries one extra chunk (`"choices":[]` with `usage`), which
/// [`super::response::ResponseObserver`] removes from what the client receives. vLLM also
/// moves `system_fingerprint` from every choice's last chunk onto that usage chunk; the
/// observer puts it back on the one finishing chunk of a single-choice stream. Requests with
/// several choices (`n` > 1 or several prompts) are left unchanged here: see
/// [`include_usage_edit_any`], for a caller that knows the upstream's fingerprint.
pub fn include_usage_edit(api: Api, body: &[u8], facts: &RequestFacts) -> Option<Edit> {
    if several_choices(facts) {
        return None;
    }
    include_usage_edit_any(api, body, facts)
}

/// Whether a request asks for several choices (`n` > 1 or several prompts).
pub fn several_choices(facts: &RequestFacts) -> bool {
    facts.choice_count.unwrap_or(1) > 1 || facts.prompt_count.unwrap_or(1) > 1
}

/// [`include_usage_edit`] for any number of choices: for a caller whose observer puts the
/// fingerprint back on every finishing event
/// ([`super::response::ResponseObserver::with_several_choices`]).
pub fn include_usage_edit_any(api: Api, body: &[u8], facts: &RequestFacts) -> Option<Edit> {
    if !matches!(api, Api::Chat | Api::Completions)
        || !facts.stream
        || facts.include_usage
        || facts.parse_error.is_some()
    {
        return None;
    }
    if !facts.has_stream_options {
        let end = body.iter().rposition(|b| !b.is_ascii_whitespace())?;
        if body[end] != b'}' {
            return None;
        }
        return Some(Edit::one(
            end..end,
            br#","stream_options":{"include_usage":true}"#,
        ));
    }
    let fields: Fields<'_> = super::json::from_bytes(body).ok()?;
    let raw = fields.stream_options?;
    let at = span_in(body, raw.get())?;
    if raw.get() == "null" {
        return Some(Edit::one(at, br#"{"include_usage":true}"#));
    }
    let options: StreamOptions<'_> = serde_json::from_str(raw.get()).ok()?;
    let usage = match options.include_usage {
        // A value vLLM would refuse is left for it to refuse.
        Some(value) if lax_bool(value).is_none() && value.get() != "null" => return None,
        Some(value) => Change {
            range: span_in(body, value.get())?,
            with: b"true",
        },
        None => Change {
            range: at.start + 1..at.start + 1,
            with: if options.entries == 0 {
                br#""include_usage":true"#
            } else {
                br#""include_usage":true,"#
            },
        },
    };
    let continuous = match options.continuous_usage_stats {
        Some(c) if lax_bool(c) == Some(true) => Some(Change {
            range: span_in(body, c.get())?,
            with: b"false",
        }),
        Some(c) if lax_bool(c).is_none() && c.get() != "null" => return None,
        _ => None,
    };
    Some(match continuous {
        None => Edit {
            first: usage,
            second: None,
        },
        Some(c) if c.range.start < usage.range.start => Edit {
            first: c,
            second: Some(usage),
        },
        Some(c) => Edit {
            first: usage,
            second: Some(c),
        },
    })
}

/// [`include_usage_edit`], made: the body to send, or `None` to send it unchanged.
pub fn with_include_usage(api: Api, body: &[u8], facts: &RequestFacts) -> Option<Vec<u8>> {
    include_usage_edit(api, body, facts).map(|e| e.apply(body))
}

/// A boolean as vLLM's request models read one (pydantic's lax mode): `true`/`false`, `1`/`0`
/// (also `1.0`/`0.0`), and the strings `1`, `on`, `t`, `true`, `y`, `yes` and `0`, `off`, `f`,
/// `false`, `n`, `no` in any case; anything else is `None` (vLLM refuses the request).
fn lax_bool(raw: &RawValue) -> Option<bool> {
    let text = raw.get();
    match text {
        "true" | "1" | "1.0" => return Some(true),
        "false" | "0" | "0.0" => return Some(false),
        _ => {}
    }
    let word: String = serde_json::from_str::<String>(text)
        .ok()?
        .to_ascii_lowercase();
    match word.as_str() {
        "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
        "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// Where `part` (a slice borrowed from `body`) sits in `body`.
fn span_in(body: &[u8], part: &str) -> Option<std::ops::Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (body.get(start..end)? == part.as_bytes()).then_some(start..end)
}

/// The fields of `stream_options` the usage edit reads (the last duplicate wins).
#[derive(Default)]
struct StreamOptions<'a> {
    include_usage: Option<&'a RawValue>,
    continuous_usage_stats: Option<&'a RawValue>,
    entries: usize,
}

impl<'de> Deserialize<'de> for StreamOptions<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StreamOptions<'de>, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = StreamOptions<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StreamOptions<'de>, A::Error> {
                let mut o = StreamOptions::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    o.entries += 1;
                    match &*key.0 {
                        "include_usage" => o.include_usage = Some(value),
                        "continuous_usage_stats" => o.continuous_usage_stats = Some(value),
                        _ => {}
                    }
                }
                Ok(o)
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Checks the request reader's and the usage edit's invariants on arbitrary bytes (the
/// `request_rewrite` fuzz target and its replay in the test suite): never a panic; an edited
/// body differs from the original only in the bytes the edit names, still parses whenever the
/// original did, reads `include_usage: true`, keeps every other top-level field's value, and
/// needs no second edit.
pub fn fuzz_check(data: &[u8]) {
    let policy = CapturePolicy {
        enabled: true,
        ..CapturePolicy::default()
    };
    for api in [Api::Chat, Api::Completions] {
        let facts = parse(api, data, &policy);
        let Some(edit) = include_usage_edit(api, data, &facts) else {
            continue;
        };
        let out = edit.apply(data);
        let mut at_in = 0;
        let mut at_out = 0;
        for c in edit.changes() {
            let kept = c.range.start - at_in;
            assert_eq!(
                out[at_out..at_out + kept],
                data[at_in..c.range.start],
                "a byte outside the edit changed"
            );
            at_out += kept + c.with.len();
            at_in = c.range.end;
        }
        assert_eq!(
            out[at_out..],
            data[at_in..],
            "a byte after the edit changed"
        );
        // serde_json's `Value` refuses numbers beyond a double (1e400) that the raw reader
        // takes: the two bodies must then be refused alike.
        let before = serde_json::from_slice::<serde_json::Value>(data);
        let after = serde_json::from_slice::<serde_json::Value>(&out);
        assert_eq!(
            before.is_ok(),
            after.is_ok(),
            "the edit changed what parses"
        );
        if let (Ok(before), Ok(after)) = (before, after) {
            assert_eq!(
                after["stream_options"]["include_usage"],
                serde_json::Value::Bool(true)
            );
            assert!(after.is_object(), "an object stays an object");
            if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
                for (k, v) in b {
                    if k != "stream_options" {
                        assert_eq!(a.get(k), Some(v), "field {k} changed");
                    }
                }
            }
        }
        let again = parse(api, &out, &policy);
        assert!(again.include_usage, "the edit was not read back");
        assert!(include_usage_edit(api, &out, &again).is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's invariants over generated variations of real request shapes.
    #[test]
    fn replays_generated_inputs() {
        // What the fuzz target found: a number past a double's range hid include_usage.
        fuzz_check(include_bytes!(
            "../../../../fuzz/seeds/request_rewrite/huge-number-regression"
        ));
        let seeds: [&[u8]; 5] = [
            br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            br#"{"stream":true,"stream_options":{"continuous_usage_stats":true,"x":[1]},"seed":1e400}"#,
            br#"{"stream":true,"stream_options":null,"prompt":"a"}"#,
            br#"{"stream":true,"stream_options":{"include_usage":false},"stream_options":{}}"#,
            br#" {"stream" : true , "model":"\u00e9" } "#,
        ];
        let mut rng = fastrand::Rng::with_seed(11);
        for i in 0..20_000 {
            let mut data = seeds[i % seeds.len()].to_vec();
            for _ in 0..rng.usize(0..4) {
                let at = rng.usize(..data.len());
                match rng.u8(..4) {
                    0 => {
                        const PICK: &[u8] = br#" {}[],:"\0123456789truefalsnl"#;
                        data[at] = PICK[rng.usize(..PICK.len())];
                    }
                    1 => data.truncate(at.max(1)),
                    2 => data.insert(at, rng.u8(..)),
                    _ => {
                        let piece: Vec<u8> = data[at..].iter().take(8).copied().collect();
                        data.splice(at..at, piece);
                    }
                }
            }
            fuzz_check(&data);
        }
    }

    fn facts(body: &str) -> RequestFacts {
        parse(Api::Chat, body.as_bytes(), &CapturePolicy::default())
    }

    #[test]
    fn stream_and_output_type_are_only_what_the_request_said() {
        let f = facts(r#"{"model":"m","messages":[]}"#);
        assert!(!f.stream && !f.stream_given);
        assert_eq!(f.output_type, None);
        let f = facts(r#"{"model":"m","stream":false,"response_format":{"type":"text"}}"#);
        assert!(!f.stream && f.stream_given);
        assert_eq!(f.output_type, Some("text"));
        let f = facts(r#"{"model":"m","stream":"yes"}"#);
        assert!(
            !f.stream_given,
            "not a boolean: vLLM refuses it, nothing to record"
        );
    }

    #[test]
    fn reads_parameters() {
        let f = facts(
            r#"{"model":"m","stream":true,"n":2,"seed":7,"max_tokens":5,"max_completion_tokens":9,
               "temperature":0,"top_p":0.5,"top_k":40,"stop":"x","min_p":0.1,"ignore_eos":true,
               "stop_token_ids":[1,2],"response_format":{"type":"json_object"},
               "tools":[{"type":"function","function":{"name":"get_weather"}}],
               "stream_options":{"include_usage":false}}"#,
        );
        assert_eq!(f.model.as_deref(), Some("m"));
        assert!(f.stream);
        assert_eq!(
            (f.choice_count, f.seed, f.max_tokens),
            (Some(2), Some(7), Some(9))
        );
        assert_eq!(f.temperature, Some(0.0));
        assert_eq!(f.top_k, Some(40.0));
        assert_eq!(f.stop, vec!["x".to_owned()]);
        assert_eq!(f.output_type, Some("json"));
        assert_eq!(f.tool_names, vec!["get_weather".to_owned()]);
        assert!(!f.include_usage);
        assert!(f.extras.contains(&("min_p", Value::F64(0.1))));
        assert!(f.extras.contains(&("ignore_eos", Value::Bool(true))));
        assert!(
            f.extras
                .contains(&("stop_token_ids", Value::from("[1,2]".to_owned())))
        );
    }

    #[test]
    fn last_duplicate_wins_and_bad_bodies_are_reported() {
        assert_eq!(
            facts(r#"{"model":"a","model":"b"}"#).model.as_deref(),
            Some("b")
        );
        let bad = facts("{\"model\": ");
        assert!(bad.parse_error.is_some());
        assert!(facts("[1]").parse_error.is_some());
    }

    #[test]
    fn include_usage_insertion_keeps_every_other_byte() {
        let body = b"{\"model\":\"m\",\"stream\":true}\n";
        let f = facts(std::str::from_utf8(body).unwrap());
        let out = with_include_usage(Api::Chat, body, &f).unwrap();
        assert_eq!(
            out,
            b"{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}\n"
        );
        // Already asked for: unchanged.
        let asked = br#"{"stream":true,"stream_options":{"include_usage":true}}"#;
        assert!(
            with_include_usage(
                Api::Chat,
                asked,
                &facts(std::str::from_utf8(asked).unwrap())
            )
            .is_none()
        );
        // Several choices: unchanged.
        let n2 = br#"{"stream":true,"n":2}"#;
        assert!(
            with_include_usage(Api::Chat, n2, &facts(std::str::from_utf8(n2).unwrap())).is_none()
        );
        let prompts = br#"{"stream":true,"prompt":["a","b"]}"#;
        let f = parse(Api::Completions, prompts, &CapturePolicy::default());
        assert_eq!(f.prompt_count, Some(2));
        assert!(with_include_usage(Api::Completions, prompts, &f).is_none());
        let ids = br#"{"stream":true,"prompt":[1,2,3]}"#;
        let f = parse(Api::Completions, ids, &CapturePolicy::default());
        assert!(with_include_usage(Api::Completions, ids, &f).is_some());
        // Not streaming: unchanged.
        let plain = br#"{"stream":false}"#;
        assert!(
            with_include_usage(
                Api::Chat,
                plain,
                &facts(std::str::from_utf8(plain).unwrap())
            )
            .is_none()
        );
        // Options without include_usage: rewritten, continuous stats off.
        let opts = br#"{"stream":true,"stream_options":{"continuous_usage_stats":true}}"#;
        let out = with_include_usage(
            Api::Completions,
            opts,
            &facts(std::str::from_utf8(opts).unwrap()),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["continuous_usage_stats"], false);
    }

    /// `stream_options` already there: only `include_usage` is added (or set), every other
    /// byte stays, big numbers and key order included.
    #[test]
    fn stream_options_are_edited_in_place() {
        let cases: [(&str, Option<&str>); 13] = [
            (
                r#"{"seed":123456789012345678901234,"stream":true,"stream_options":{"continuous_usage_stats":false},"model":"m"}"#,
                Some(
                    r#"{"seed":123456789012345678901234,"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":false},"model":"m"}"#,
                ),
            ),
            (
                r#"{"stream":true, "stream_options" : { } }"#,
                Some(r#"{"stream":true, "stream_options" : {"include_usage":true } }"#),
            ),
            (
                r#"{"stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
                Some(r#"{"stream":true,"stream_options":{"include_usage":true,"x":1}}"#),
            ),
            (
                r#"{"stream":true,"stream_options":{"include_usage":null}}"#,
                Some(r#"{"stream":true,"stream_options":{"include_usage":true}}"#),
            ),
            (
                r#"{"stream":true,"stream_options":null,"z":"é"}"#,
                Some(r#"{"stream":true,"stream_options":{"include_usage":true},"z":"é"}"#),
            ),
            // The last duplicate is the one vLLM reads.
            (
                r#"{"stream":true,"stream_options":{"include_usage":true},"stream_options":{"include_usage":false}}"#,
                Some(
                    r#"{"stream":true,"stream_options":{"include_usage":true},"stream_options":{"include_usage":true}}"#,
                ),
            ),
            (
                r#"{"stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":true}}"#,
                Some(
                    r#"{"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":false}}"#,
                ),
            ),
            (
                r#"{"stream":true,"stream_options":{"continuous_usage_stats": true , "a":[1,2]}}"#,
                Some(
                    r#"{"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats": false , "a":[1,2]}}"#,
                ),
            ),
            (r#"{"stream":true,"stream_options":"yes"}"#, None),
            // What vLLM reads as true is asking already; what it would refuse is left to it.
            (
                r#"{"stream":true,"stream_options":{"include_usage":1}}"#,
                None,
            ),
            (
                r#"{"stream":true,"stream_options":{"include_usage":"Yes"}}"#,
                None,
            ),
            (
                r#"{"stream":true,"stream_options":{"include_usage":"maybe"}}"#,
                None,
            ),
            (
                r#"{"stream":true,"stream_options":{"include_usage":"off"}}"#,
                Some(r#"{"stream":true,"stream_options":{"include_usage":true}}"#),
            ),
        ];
        for (body, want) in cases {
            let f = facts(body);
            let got = with_include_usage(Api::Chat, body.as_bytes(), &f);
            assert_eq!(
                got.as_deref().map(|b| std::str::from_utf8(b).unwrap()),
                want,
                "{body}"
            );
            if let Some(out) = got {
                let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
                assert_eq!(v["stream_options"]["include_usage"], true, "{body}");
            }
        }
    }
}
