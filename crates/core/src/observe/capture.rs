//! Content capture: what of the prompts and outputs reaches a span, in the semantic
//! conventions' JSON shape, after hiding, redaction and truncation.
//!
//! Off by default. Hide switches follow traceAI's set (inputs, outputs, input messages,
//! output messages, input text, output text, tool definitions, system instructions); redaction
//! rules are regular expressions whose matches become a replacement (`__REDACTED__` by
//! default); every text part is truncated at a configurable size with a marker saying how
//! much was cut, so the attribute stays valid JSON.

use regex::Regex;
use serde_json::{Value as Json, json};

use super::route::Api;

/// Replaces a hidden or redacted value.
pub const REDACTED: &str = "__REDACTED__";

/// A redaction rule: every match of `pattern` is replaced.
#[derive(Debug, Clone)]
pub struct Redaction {
    /// The pattern.
    pub pattern: Regex,
    /// What a match becomes.
    pub replacement: String,
}

/// What content capture records.
#[derive(Debug, Clone)]
pub struct CapturePolicy {
    /// Capture anything at all.
    pub enabled: bool,
    /// Longest text part kept, in bytes; longer parts are cut and marked.
    pub max_length: usize,
    /// No input messages or system instructions.
    pub hide_inputs: bool,
    /// No output messages.
    pub hide_outputs: bool,
    /// No input messages (system instructions are still recorded).
    pub hide_input_messages: bool,
    /// No output messages.
    pub hide_output_messages: bool,
    /// Input messages keep their shape, but their text becomes [`REDACTED`].
    pub hide_input_text: bool,
    /// Output messages keep their shape, but their text becomes [`REDACTED`].
    pub hide_output_text: bool,
    /// No tool definitions.
    pub hide_tool_definitions: bool,
    /// No system instructions.
    pub hide_system_instructions: bool,
    /// Applied to every text part and tool argument, in order.
    pub redactions: Vec<Redaction>,
}

impl Default for CapturePolicy {
    fn default() -> CapturePolicy {
        CapturePolicy {
            enabled: false,
            max_length: 8192,
            hide_inputs: false,
            hide_outputs: false,
            hide_input_messages: false,
            hide_output_messages: false,
            hide_input_text: false,
            hide_output_text: false,
            hide_tool_definitions: false,
            hide_system_instructions: false,
            redactions: Vec::new(),
        }
    }
}

impl CapturePolicy {
    /// Whether output text is worth accumulating from a stream.
    pub fn captures_output(&self) -> bool {
        self.enabled && !self.hide_outputs && !self.hide_output_messages
    }

    /// `text` after redaction and truncation.
    pub fn clean(&self, text: &str) -> String {
        let mut owned: Option<String> = None;
        for rule in &self.redactions {
            let current = owned.as_deref().unwrap_or(text);
            if rule.pattern.is_match(current) {
                owned = Some(
                    rule.pattern
                        .replace_all(current, rule.replacement.as_str())
                        .into_owned(),
                );
            }
        }
        truncate(owned.as_deref().unwrap_or(text), self.max_length)
    }

    fn input_text(&self, text: &str) -> String {
        if self.hide_input_text {
            REDACTED.to_owned()
        } else {
            self.clean(text)
        }
    }

    /// Output text as recorded.
    pub fn output_text(&self, text: &str) -> String {
        if self.hide_output_text {
            REDACTED.to_owned()
        } else {
            self.clean(text)
        }
    }
}

/// `text` cut to at most `max` bytes (on a character boundary) with a marker naming how many
/// bytes were cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated {} bytes]", &text[..end], text.len() - end)
}

/// Captured request content, each a JSON string ready for its attribute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputContent {
    /// `gen_ai.input.messages`.
    pub input_messages: Option<String>,
    /// `gen_ai.system_instructions`.
    pub system_instructions: Option<String>,
    /// `gen_ai.tool.definitions`.
    pub tool_definitions: Option<String>,
    /// The messages as (role, text) pairs, for OpenInference's flattened keys.
    pub flat: Vec<(String, String)>,
}

/// Builds the captured input of a request from its decoded fields.
/// A message's content as text: a string, or the `text` of its parts joined.
fn content_text(content: Option<&Json>) -> String {
    match content {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Json::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// The text of conventions-shaped parts (their `content` or `result`), joined.
fn parts_text(parts: &[Json]) -> String {
    parts
        .iter()
        .filter_map(|p| {
            p.get("content")
                .or_else(|| p.get("result"))
                .and_then(Json::as_str)
        })
        .collect()
}

/// One content block of a Messages API message, in the conventions' part shape: text, a tool
/// call (`tool_use`, its `input` as the arguments), a tool result (`tool_result`), or only the
/// type of anything else (images and documents are never copied onto a span).
fn message_block(b: &Json, policy: &CapturePolicy) -> Json {
    let text = |t: &str| json!({"type": "text", "content": policy.input_text(t)});
    match b.get("type").and_then(Json::as_str) {
        Some("text") => text(b.get("text").and_then(Json::as_str).unwrap_or("")),
        Some("tool_use") => json!({
            "type": "tool_call",
            "id": b.get("id"),
            "name": b.get("name"),
            "arguments": b.get("input").map(|i| policy.input_text(&i.to_string())),
        }),
        Some("tool_result") => {
            let result = content_text(b.get("content"));
            json!({
                "type": "tool_call_response",
                "id": b.get("tool_use_id"),
                "result": policy.input_text(&result),
            })
        }
        Some(other) => json!({"type": other}),
        None => json!({"type": "unknown"}),
    }
}

pub(crate) fn input_content(
    api: Api,
    policy: &CapturePolicy,
    messages: Option<&Json>,
    prompt: Option<&Json>,
    input: Option<&Json>,
    instructions: Option<&Json>,
    tools: Option<&Json>,
) -> InputContent {
    let mut out = InputContent::default();
    let mut system_parts = Vec::new();
    let mut input_messages = Vec::new();
    let text_part = |t: &str| json!({"type": "text", "content": policy.input_text(t)});
    match api {
        Api::Chat => {
            for m in messages.and_then(Json::as_array).into_iter().flatten() {
                let role = m.get("role").and_then(Json::as_str).unwrap_or("user");
                let mut parts = Vec::new();
                match m.get("content") {
                    Some(Json::String(s)) => parts.push(text_part(s)),
                    Some(Json::Array(items)) => {
                        for item in items {
                            match item.get("type").and_then(Json::as_str) {
                                Some("text") => parts.push(text_part(
                                    item.get("text").and_then(Json::as_str).unwrap_or(""),
                                )),
                                // Images, audio and files are never copied onto a span.
                                Some(other) => parts.push(json!({"type": other})),
                                None => {}
                            }
                        }
                    }
                    _ => {}
                }
                for call in m
                    .get("tool_calls")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                {
                    let f = call.get("function");
                    parts.push(json!({
                        "type": "tool_call",
                        "id": call.get("id"),
                        "name": f.and_then(|f| f.get("name")),
                        "arguments": f.and_then(|f| f.get("arguments")).and_then(Json::as_str)
                            .map(|a| policy.input_text(a)),
                    }));
                }
                if role == "tool" {
                    let result = parts_text(&parts);
                    parts = vec![json!({
                        "type": "tool_call_response",
                        "id": m.get("tool_call_id"),
                        "result": result,
                    })];
                }
                let flat_text = parts_text(&parts);
                if matches!(role, "system" | "developer") {
                    system_parts.extend(parts);
                } else {
                    input_messages.push(json!({"role": role, "parts": parts}));
                }
                out.flat.push((role.to_owned(), flat_text));
            }
        }
        Api::Completions => {
            let prompts: Vec<&str> = match prompt {
                Some(Json::String(s)) => vec![s.as_str()],
                Some(Json::Array(items)) => items.iter().filter_map(Json::as_str).collect(),
                _ => Vec::new(),
            };
            for p in prompts {
                input_messages.push(json!({"role": "user", "parts": [text_part(p)]}));
                out.flat.push(("user".to_owned(), policy.input_text(p)));
            }
        }
        Api::Responses => {
            if let Some(Json::String(s)) = instructions {
                system_parts.push(text_part(s));
            }
            match input {
                Some(Json::String(s)) => {
                    input_messages.push(json!({"role": "user", "parts": [text_part(s)]}));
                    out.flat.push(("user".to_owned(), policy.input_text(s)));
                }
                Some(Json::Array(items)) => {
                    for m in items {
                        let role = m.get("role").and_then(Json::as_str).unwrap_or("user");
                        let text = content_text(m.get("content"));
                        input_messages.push(json!({"role": role, "parts": [text_part(&text)]}));
                        out.flat.push((role.to_owned(), policy.input_text(&text)));
                    }
                }
                _ => {}
            }
        }
        Api::Messages => {
            match instructions {
                Some(Json::String(s)) => system_parts.push(text_part(s)),
                Some(Json::Array(blocks)) => {
                    for b in blocks {
                        if let Some(t) = b.get("text").and_then(Json::as_str) {
                            system_parts.push(text_part(t));
                        }
                    }
                }
                _ => {}
            }
            for m in messages.and_then(Json::as_array).into_iter().flatten() {
                let role = m.get("role").and_then(Json::as_str).unwrap_or("user");
                let mut parts = Vec::new();
                match m.get("content") {
                    Some(Json::String(s)) => parts.push(text_part(s)),
                    Some(Json::Array(blocks)) => {
                        for b in blocks {
                            parts.push(message_block(b, policy));
                        }
                    }
                    _ => {}
                }
                let flat_text = parts_text(&parts);
                input_messages.push(json!({"role": role, "parts": parts}));
                out.flat.push((role.to_owned(), flat_text));
            }
        }
        Api::Embeddings | Api::Pooling => {}
    }
    if !(policy.hide_inputs || policy.hide_input_messages || input_messages.is_empty()) {
        out.input_messages = Some(Json::Array(input_messages).to_string());
    } else {
        out.flat.clear();
    }
    if !(policy.hide_inputs || policy.hide_system_instructions || system_parts.is_empty()) {
        out.system_instructions = Some(Json::Array(system_parts).to_string());
    }
    if !policy.hide_tool_definitions
        && let Some(tools) = tools.filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
    {
        out.tool_definitions = Some(truncate(
            &tools.to_string(),
            policy.max_length.saturating_mul(4),
        ));
    }
    out
}

/// One output choice as assembled from a response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputChoice {
    /// The choice index.
    pub index: u32,
    /// The text (already bounded by the capture size while accumulating).
    pub text: String,
    /// Whether text was cut while accumulating.
    pub text_truncated: bool,
    /// Tool calls: (id, name, arguments).
    pub tool_calls: Vec<ToolCall>,
    /// Why it finished.
    pub finish_reason: Option<String>,
    /// When its first chunk arrived (streams).
    pub first_chunk: Option<std::time::Instant>,
}

/// A tool call assembled from a response (streamed fragments concatenated).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCall {
    /// The tool call's position within its choice.
    pub index: u32,
    /// `id`.
    pub id: Option<String>,
    /// `function.name`.
    pub name: Option<String>,
    /// `function.arguments`, concatenated (only kept when content is captured).
    pub arguments: String,
}

/// `gen_ai.output.messages` for `choices`, or `None` when outputs are hidden.
pub fn output_messages(policy: &CapturePolicy, choices: &[OutputChoice]) -> Option<String> {
    if !policy.captures_output() || choices.is_empty() {
        return None;
    }
    let messages: Vec<Json> = choices
        .iter()
        .map(|c| {
            let mut parts = Vec::new();
            if !c.text.is_empty() || c.tool_calls.is_empty() {
                let mut text = policy.output_text(&c.text);
                if c.text_truncated && !policy.hide_output_text && !text.contains("…[truncated") {
                    text.push_str("…[truncated]");
                }
                parts.push(json!({"type": "text", "content": text}));
            }
            for t in &c.tool_calls {
                parts.push(json!({
                    "type": "tool_call",
                    "id": t.id,
                    "name": t.name,
                    "arguments": policy.output_text(&t.arguments),
                }));
            }
            json!({
                "role": "assistant",
                "parts": parts,
                "finish_reason": c.finish_reason.as_deref().unwrap_or(""),
            })
        })
        .collect();
    Some(Json::Array(messages).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CapturePolicy {
        CapturePolicy {
            enabled: true,
            max_length: 10,
            redactions: vec![Redaction {
                pattern: Regex::new(r"\d{3}-\d{4}").unwrap(),
                replacement: REDACTED.into(),
            }],
            ..CapturePolicy::default()
        }
    }

    #[test]
    fn redacts_then_truncates() {
        let p = policy();
        assert_eq!(p.clean("call 555-1234"), "call __RED…[truncated 7 bytes]");
        assert_eq!(p.clean("short"), "short");
        assert_eq!(truncate("héllo", 2), "h…[truncated 5 bytes]");
    }

    #[test]
    fn chat_messages_in_semconv_shape() {
        let messages = json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:..."}}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}
        ]);
        let c = input_content(
            Api::Chat,
            &policy(),
            Some(&messages),
            None,
            None,
            None,
            None,
        );
        let input: Json = serde_json::from_str(c.input_messages.as_deref().unwrap()).unwrap();
        assert_eq!(
            input[0]["parts"][0],
            json!({"type": "text", "content": "hi"})
        );
        assert_eq!(input[0]["parts"][1], json!({"type": "image_url"}));
        assert_eq!(input[1]["parts"][0]["type"], "tool_call");
        assert_eq!(
            input[2]["parts"][0],
            json!({"type": "tool_call_response", "id": "c1", "result": "42"})
        );
        let system: Json = serde_json::from_str(c.system_instructions.as_deref().unwrap()).unwrap();
        assert_eq!(system, json!([{"type": "text", "content": "be brief"}]));

        let hidden = CapturePolicy {
            hide_input_text: true,
            ..policy()
        };
        let c = input_content(Api::Chat, &hidden, Some(&messages), None, None, None, None);
        assert!(!c.input_messages.unwrap().contains("hi\""));
    }
}
