//! Reading an inference request body: the facts a span records, and the optional rewrite that
//! asks the upstream for token usage on a stream.
//!
//! The body is parsed once into a map of borrowed raw values (no value is decoded unless a
//! span attribute needs it), with JSON's last-duplicate-wins rule, as vLLM's own parser reads it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::capture::{self, CapturePolicy};
use super::route::Api;
use crate::span::Value;

/// A JSON object key, borrowed unless it holds escapes.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

type Fields<'a> = BTreeMap<Key<'a>, &'a RawValue>;

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

/// Reads `body` as a request of `api`. A body that is not a JSON object gives facts with only
/// `parse_error` set; nothing here fails the request.
pub fn parse(api: Api, body: &[u8], policy: &CapturePolicy) -> RequestFacts {
    let fields: Fields<'_> = match serde_json::from_slice(body) {
        Ok(f) => f,
        Err(e) => {
            return RequestFacts {
                parse_error: Some(format!("request body is not a JSON object: {e}")),
                ..RequestFacts::default()
            };
        }
    };
    let get = |k: &str| fields.get(&Key(Cow::Borrowed(k))).copied();
    let decode = |k: &str| -> Option<serde_json::Value> {
        get(k).and_then(|raw| serde_json::from_str(raw.get()).ok())
    };
    let string = |k: &str| get(k).and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
    let int = |k: &str| get(k).and_then(|raw| serde_json::from_str::<i64>(raw.get()).ok());
    let float = |k: &str| get(k).and_then(|raw| serde_json::from_str::<f64>(raw.get()).ok());

    let mut facts = RequestFacts {
        model: string("model"),
        stream: get("stream").is_some_and(|raw| raw.get() == "true"),
        choice_count: int("n"),
        seed: int("seed"),
        max_tokens: int("max_completion_tokens")
            .or_else(|| int("max_tokens"))
            .or_else(|| int("max_output_tokens")),
        temperature: float("temperature"),
        top_p: float("top_p"),
        top_k: float("top_k"),
        frequency_penalty: float("frequency_penalty"),
        presence_penalty: float("presence_penalty"),
        encoding_format: string("encoding_format"),
        ..RequestFacts::default()
    };
    if let Some(stop) = decode("stop") {
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
        && let Some(raw) = get("prompt")
    {
        facts.prompt_count = Some(prompt_count(raw));
    }
    if let Some(options) = decode("stream_options") {
        facts.include_usage = options
            .get("include_usage")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
    }
    if let Some(format) = decode("response_format").or_else(|| decode("text")) {
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
    let tools = decode("tools");
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
    for &name in VLLM_EXTRAS {
        if facts.extras.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let Some(raw) = get(name) else { continue };
        if let Some(value) = extra_value(raw) {
            facts.extras.push((name, value));
        }
    }
    if policy.enabled {
        facts.content = capture::input_content(
            api,
            policy,
            decode("messages").as_ref(),
            decode("prompt").as_ref(),
            decode("input").as_ref(),
            decode("instructions").as_ref(),
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

/// The request body to send upstream so that a stream reports token usage, or `None` to send
/// the body unchanged: when the route does not stream usage, the request does not stream, or
/// the client already asked for usage.
///
/// - No `stream_options`: `,"stream_options":{"include_usage":true}` is inserted before the
///   closing brace; every other byte is kept.
/// - `stream_options` present: it gets `include_usage: true` and `continuous_usage_stats:
///   false` (vLLM honours continuous stats only with `include_usage`, so the client saw none),
///   and the body is re-serialised.
///
/// The response then carries one extra chunk (`"choices":[]` with `usage`), which
/// [`super::response::ResponseObserver`] removes from what the client receives. vLLM also
/// moves `system_fingerprint` from every choice's last chunk onto that usage chunk; the
/// observer puts it back on the one finishing chunk of a single-choice stream. With several
/// choices (`n` > 1 or several prompts) it would have to hold back finished choices until the
/// last one ends, changing the stream's timing, so such requests are left unchanged.
pub fn with_include_usage(api: Api, body: &[u8], facts: &RequestFacts) -> Option<Vec<u8>> {
    if !matches!(api, Api::Chat | Api::Completions)
        || !facts.stream
        || facts.include_usage
        || facts.parse_error.is_some()
        || facts.choice_count.unwrap_or(1) > 1
        || facts.prompt_count.unwrap_or(1) > 1
    {
        return None;
    }
    let fields: Fields<'_> = serde_json::from_slice(body).ok()?;
    let options = fields.get(&Key(Cow::Borrowed("stream_options")));
    if options.is_none() {
        let end = body.iter().rposition(|b| !b.is_ascii_whitespace())?;
        if body[end] != b'}' {
            return None;
        }
        const INSERT: &[u8] = br#","stream_options":{"include_usage":true}"#;
        let mut out = Vec::with_capacity(body.len() + INSERT.len());
        out.extend_from_slice(&body[..end]);
        out.extend_from_slice(INSERT);
        out.extend_from_slice(&body[end..]);
        return Some(out);
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object_mut()?;
    let mut options = match object.remove("stream_options") {
        Some(serde_json::Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    options.insert("include_usage".into(), serde_json::Value::Bool(true));
    options.insert(
        "continuous_usage_stats".into(),
        serde_json::Value::Bool(false),
    );
    object.insert("stream_options".into(), serde_json::Value::Object(options));
    serde_json::to_vec(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(body: &str) -> RequestFacts {
        parse(Api::Chat, body.as_bytes(), &CapturePolicy::default())
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
}
