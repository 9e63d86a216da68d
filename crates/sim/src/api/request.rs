//! Request bodies → what the engine needs, with vLLM's validation and error messages.
//! Unknown fields are accepted and ignored, as vLLM does.

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::tokenizer::{self, CHAT_GENERATION_PROMPT, CHAT_TOKENS_PER_MESSAGE};

/// Which generation API a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completion,
    /// `/v1/messages` (the Anthropic Messages API; vLLM runs it as a chat request).
    Messages,
    /// `/v1/responses` (the Responses API; vLLM runs it as a chat request).
    Responses,
}

/// One prompt of a request (completions can batch several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// Prompt length in tokens.
    pub tokens: u32,
    /// A hash of its content, which seeds the output.
    pub content_hash: u64,
}

/// A tool call the request asks for (`tool_choice` `required` or a named function).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallPlan {
    /// The function's name.
    pub name: String,
    /// Its JSON-schema parameters.
    pub parameters: Value,
}

/// A parsed generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenRequest {
    /// The API used.
    pub endpoint: Endpoint,
    /// The model asked for (`None`: the served one).
    pub model: Option<String>,
    /// The prompts (one for chat).
    pub prompts: Vec<Prompt>,
    /// Choices per prompt.
    pub n: u32,
    /// `max_tokens` / `max_completion_tokens` as sent.
    pub max_tokens: Option<u64>,
    /// `temperature` (default 1.0).
    pub temperature: f64,
    /// `top_p` (default 1.0).
    pub top_p: f64,
    /// `stream`.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `stream_options.continuous_usage_stats`.
    pub continuous_usage: bool,
    /// Stop strings.
    pub stop: Vec<String>,
    /// `seed`.
    pub seed: Option<i64>,
    /// `ignore_eos`.
    pub ignore_eos: bool,
    /// A tool call to make instead of text.
    pub tool: Option<ToolCallPlan>,
    /// Responses API: `instructions`, echoed in the response object.
    pub instructions: Option<String>,
}

/// An embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRequest {
    /// The model asked for.
    pub model: Option<String>,
    /// The inputs.
    pub inputs: Vec<Prompt>,
    /// `encoding_format` is `base64`.
    pub base64: bool,
    /// `dimensions`, if set.
    pub dimensions: Option<usize>,
}

/// A `/tokenize` request.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizeRequest {
    /// The model asked for.
    pub model: Option<String>,
    /// The token ids.
    pub tokens: Vec<u32>,
}

/// Parses a body as a JSON object, with vLLM's errors for an empty or malformed body.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation(
            "missing",
            "body",
            "Field required",
            "'None'",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::validation(
            "model_attributes_type",
            "body",
            "Input should be a valid dictionary or object to extract fields from",
            &py_repr(&other),
        )),
        Err(e) => Err(ApiError::json_invalid(
            byte_offset(body, e.line(), e.column()),
            &python_reason(&e),
        )),
    }
}

/// The byte offset of a 1-based line and column.
fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = body
        .split(|b| *b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(body.len())
}

/// Python's `json` module's wording for the common syntax errors.
fn python_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.contains("expected `,` or `}`") || text.contains("expected `,` or `]`") {
        "Expecting ',' delimiter".into()
    } else if text.contains("key must be a string") {
        "Expecting property name enclosed in double quotes".into()
    } else if text.contains("expected `:`") {
        "Expecting ':' delimiter".into()
    } else if text.contains("trailing characters") {
        "Extra data".into()
    } else {
        "Expecting value".into()
    }
}

/// A Python-ish `repr` of a JSON value, for validation messages.
fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{s}'"),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!("'<dict of {} items>'", o.len()),
    }
}

fn loc(field: &str) -> String {
    format!("body.{field}")
}

fn type_error(field: &str, kind: &str, msg: &str, v: &Value) -> ApiError {
    ApiError::validation(kind, &loc(field), msg, &py_repr(v))
}

fn opt_string(body: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(type_error(
            field,
            "string_type",
            "Input should be a valid string",
            v,
        )),
    }
}

fn opt_bool(body: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if matches!(s.as_str(), "true" | "True" | "1") => Ok(Some(true)),
        Some(Value::String(s)) if matches!(s.as_str(), "false" | "False" | "0") => Ok(Some(false)),
        Some(v) => Err(type_error(
            field,
            "bool_type",
            "Input should be a valid boolean",
            v,
        )),
    }
}

fn opt_int(body: &Map<String, Value>, field: &str) -> Result<Option<i64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            None => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(Some(f as i64)),
                _ => Err(type_error(
                    field,
                    "int_from_float",
                    "Input should be a valid integer, got a number with a fractional part",
                    &Value::Number(n.clone()),
                )),
            },
        },
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| {
            type_error(
                field,
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
                &Value::String(s.clone()),
            )
        }),
        Some(v) => Err(type_error(
            field,
            "int_type",
            "Input should be a valid integer",
            v,
        )),
    }
}

fn opt_float(body: &Map<String, Value>, field: &str) -> Result<Option<f64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s.trim().parse::<f64>().map(Some).map_err(|_| {
            type_error(
                field,
                "float_parsing",
                "Input should be a valid number, unable to parse string as a number",
                &Value::String(s.clone()),
            )
        }),
        Some(v) => Err(type_error(
            field,
            "float_type",
            "Input should be a valid number",
            v,
        )),
    }
}

fn content_tokens(content: &Value) -> u32 {
    match content {
        Value::String(s) => tokenizer::count(s),
        Value::Array(parts) => parts
            .iter()
            .map(|p| {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (_, Some(text)) => tokenizer::count(text),
                    // images, audio and other media stand for a fixed number of tokens
                    _ => 16,
                }
            })
            .sum(),
        _ => 0,
    }
}

/// Chat messages → prompt tokens and content hash.
fn chat_prompt(body: &Map<String, Value>) -> Result<Prompt, ApiError> {
    let messages = match body.get("messages") {
        None => return Err(ApiError::missing("body.messages", body.len())),
        Some(Value::Array(m)) => m,
        Some(v) => {
            return Err(type_error(
                "messages",
                "list_type",
                "Input should be a valid list",
                v,
            ));
        }
    };
    let mut tokens = CHAT_GENERATION_PROMPT;
    for (i, m) in messages.iter().enumerate() {
        let Some(obj) = m.as_object() else {
            return Err(type_error(
                &format!("messages.{i}"),
                "model_type",
                "Input should be a valid dictionary or instance of Message",
                m,
            ));
        };
        if !obj.contains_key("role") {
            return Err(ApiError::missing(
                &format!("body.messages.{i}.role"),
                obj.len(),
            ));
        }
        tokens += CHAT_TOKENS_PER_MESSAGE + obj.get("content").map_or(0, content_tokens);
    }
    Ok(Prompt {
        tokens,
        content_hash: tokenizer::stable_hash(&[
            &serde_json::to_string(messages).unwrap_or_default()
        ]),
    })
}

/// A completions/embeddings/tokenize input: string, strings, token ids, or lists of them.
fn text_prompts(
    field: &str,
    v: Option<&Value>,
    body_len: usize,
    bos: bool,
) -> Result<Vec<Prompt>, ApiError> {
    let bos = u32::from(bos);
    let prompt_of_text = |s: &str| Prompt {
        tokens: tokenizer::count(s) + bos,
        content_hash: tokenizer::stable_hash(&[s]),
    };
    let prompt_of_ids = |ids: &[Value]| Prompt {
        tokens: u32::try_from(ids.len()).unwrap_or(u32::MAX),
        content_hash: tokenizer::stable_hash(&[&serde_json::to_string(ids).unwrap_or_default()]),
    };
    let invalid = |v: &Value| type_error(field, "string_type", "Input should be a valid string", v);
    match v {
        None => Err(ApiError::missing(&loc(field), body_len)),
        Some(Value::String(s)) => Ok(vec![prompt_of_text(s)]),
        Some(Value::Array(items)) if items.is_empty() => Err(ApiError::bad_request(
            format!("{field} must not be empty"),
            Some(field),
        )),
        Some(Value::Array(items)) => {
            if items.iter().all(Value::is_u64) {
                return Ok(vec![prompt_of_ids(items)]);
            }
            items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(prompt_of_text(s)),
                    Value::Array(ids) if !ids.is_empty() && ids.iter().all(Value::is_u64) => {
                        Ok(prompt_of_ids(ids))
                    }
                    other => Err(invalid(other)),
                })
                .collect()
        }
        Some(other) => Err(invalid(other)),
    }
}

fn tool_plan(body: &Map<String, Value>) -> Result<Option<ToolCallPlan>, ApiError> {
    let tools: Vec<&Value> = match body.get("tools") {
        Some(Value::Array(t)) => t.iter().collect(),
        _ => return Ok(None),
    };
    let function = |t: &Value| t.get("function").cloned();
    let chosen = match body.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => tools.first().and_then(|t| function(t)),
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let found = tools.iter().find_map(|t| {
                function(t).filter(|f| f.get("name").and_then(Value::as_str) == Some(name))
            });
            match found {
                Some(f) => Some(f),
                None => {
                    return Err(ApiError::bad_request(
                        format!("Tool '{name}' has not been passed in `tools`."),
                        Some("tool_choice"),
                    ));
                }
            }
        }
        // `auto` and `none`: the simulated model answers in text.
        _ => None,
    };
    Ok(chosen.map(|f| ToolCallPlan {
        name: f
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("tool")
            .to_owned(),
        parameters: f.get("parameters").cloned().unwrap_or(Value::Null),
    }))
}

/// A Messages API body as the chat request vLLM turns it into: `system` (a string or text
/// blocks) as the first message, `stop_sequences` as `stop`, `max_tokens` required, one choice.
fn messages_as_chat(mut map: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    if !map.contains_key("max_tokens") {
        return Err(ApiError::missing("body.max_tokens", map.len()));
    }
    if let Some(system) = map.remove("system") {
        let mut messages = vec![serde_json::json!({"role": "system", "content": system})];
        if let Some(Value::Array(rest)) = map.remove("messages") {
            messages.extend(rest);
        }
        map.insert("messages".into(), Value::Array(messages));
    }
    if let Some(stop) = map.remove("stop_sequences") {
        map.insert("stop".into(), stop);
    }
    map.remove("n");
    map.remove("stream_options");
    // `tool_choice` `{"type":"any"}` or `{"type":"tool","name":…}`; tools with `input_schema`.
    let tools: Vec<Value> = match map.remove("tools") {
        Some(Value::Array(t)) => t
            .into_iter()
            .map(|t| {
                serde_json::json!({"type": "function", "function": {
                    "name": t.get("name").cloned().unwrap_or(Value::Null),
                    "parameters": t.get("input_schema").cloned().unwrap_or(Value::Null),
                }})
            })
            .collect(),
        _ => Vec::new(),
    };
    let choice = match map.remove("tool_choice") {
        Some(c) if c.get("type").and_then(Value::as_str) == Some("any") => {
            Some(Value::String("required".into()))
        }
        Some(c) if c.get("type").and_then(Value::as_str) == Some("tool") => Some(
            serde_json::json!({"type": "function", "function": {"name": c.get("name").cloned().unwrap_or(Value::Null)}}),
        ),
        _ => None,
    };
    if !tools.is_empty() {
        map.insert("tools".into(), Value::Array(tools));
    }
    if let Some(c) = choice {
        map.insert("tool_choice".into(), c);
    }
    Ok(map)
}

/// A Responses API body as the chat request vLLM turns it into: `instructions` as a system
/// message, `input` (a string, or messages whose content is a string or `input_text` parts) as
/// the messages, `max_output_tokens` as `max_tokens`.
fn responses_as_chat(mut map: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let mut messages = Vec::new();
    if let Some(Value::String(i)) = map.get("instructions") {
        messages.push(serde_json::json!({"role": "system", "content": i}));
    }
    match map.remove("input") {
        Some(Value::String(s)) => messages.push(serde_json::json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for m in items {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
                let text = match m.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join(""),
                    _ => String::new(),
                };
                messages.push(serde_json::json!({"role": role, "content": text}));
            }
        }
        None => return Err(ApiError::missing("body.input", map.len())),
        Some(_) => {}
    }
    map.insert("messages".into(), Value::Array(messages));
    if let Some(max) = map.remove("max_output_tokens") {
        map.insert("max_tokens".into(), max);
    }
    for key in ["n", "stream_options", "tools", "tool_choice"] {
        map.remove(key);
    }
    Ok(map)
}

/// Parses a chat, completions, Messages or Responses request body.
pub fn parse_generation(endpoint: Endpoint, body: &[u8]) -> Result<GenRequest, ApiError> {
    let mut map = parse_object(body)?;
    match endpoint {
        Endpoint::Messages => map = messages_as_chat(map)?,
        Endpoint::Responses => map = responses_as_chat(map)?,
        Endpoint::Chat | Endpoint::Completion => {}
    }
    let prompts = match endpoint {
        Endpoint::Chat | Endpoint::Messages | Endpoint::Responses => vec![chat_prompt(&map)?],
        Endpoint::Completion => text_prompts("prompt", map.get("prompt"), map.len(), true)?,
    };
    let max_tokens = match opt_int(&map, "max_completion_tokens")? {
        Some(v) => Some(v),
        None => opt_int(&map, "max_tokens")?,
    };
    let max_tokens = match max_tokens {
        Some(v) if v < 1 => {
            return Err(ApiError::bad_request(
                format!(
                    "max_tokens must be at least 1, got {v}. (parameter=max_tokens, value={v})"
                ),
                Some("max_tokens"),
            ));
        }
        other => other.map(|v| v.unsigned_abs()),
    };
    let n = opt_int(&map, "n")?.unwrap_or(1);
    if n < 1 {
        return Err(ApiError::bad_request(
            format!("n must be at least 1, got {n}."),
            None,
        ));
    }
    let stream = opt_bool(&map, "stream")?.unwrap_or(false);
    let options = map.get("stream_options").and_then(Value::as_object);
    let flag = |k: &str| {
        options
            .and_then(|o| o.get(k))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let stop = match map.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    Ok(GenRequest {
        endpoint,
        model: opt_string(&map, "model")?,
        prompts,
        n: u32::try_from(n).unwrap_or(u32::MAX),
        max_tokens,
        temperature: opt_float(&map, "temperature")?.unwrap_or(1.0),
        top_p: opt_float(&map, "top_p")?.unwrap_or(1.0),
        stream,
        include_usage: stream && flag("include_usage"),
        continuous_usage: stream && flag("include_usage") && flag("continuous_usage_stats"),
        stop,
        seed: opt_int(&map, "seed")?,
        ignore_eos: opt_bool(&map, "ignore_eos")?.unwrap_or(false),
        tool: if endpoint != Endpoint::Completion {
            tool_plan(&map)?
        } else {
            None
        },
        instructions: opt_string(&map, "instructions")?,
    })
}

/// Parses an embeddings request body.
pub fn parse_embeddings(body: &[u8]) -> Result<EmbeddingRequest, ApiError> {
    let map = parse_object(body)?;
    let base64 = match opt_string(&map, "encoding_format")?.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::validation(
                "literal_error",
                "body.encoding_format",
                "Input should be 'float', 'base64' or 'bytes'",
                &format!("'{other}'"),
            ));
        }
    };
    let dimensions = match opt_int(&map, "dimensions")? {
        Some(d) if d < 1 => {
            return Err(ApiError::bad_request(
                "dimensions must be at least 1".into(),
                Some("dimensions"),
            ));
        }
        Some(d) => Some(usize::try_from(d).unwrap_or(usize::MAX)),
        None => None,
    };
    Ok(EmbeddingRequest {
        model: opt_string(&map, "model")?,
        inputs: text_prompts("input", map.get("input"), map.len(), false)?,
        base64,
        dimensions,
    })
}

/// Parses a `/tokenize` request body (`prompt` or chat `messages`).
pub fn parse_tokenize(body: &[u8]) -> Result<TokenizeRequest, ApiError> {
    let map = parse_object(body)?;
    let tokens = if let Some(Value::String(p)) = map.get("prompt") {
        let mut ids = vec![1];
        ids.extend(tokenizer::ids(p));
        ids
    } else if map.contains_key("messages") {
        let prompt = chat_prompt(&map)?;
        (0..prompt.tokens)
            .map(|i| {
                (tokenizer::stable_hash(&[&prompt.content_hash, &u64::from(i)]) % 30000) as u32 + 3
            })
            .collect()
    } else {
        return Err(ApiError::missing("body.prompt", map.len()));
    };
    Ok(TokenizeRequest {
        model: opt_string(&map, "model")?,
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_reports_the_byte_offset() {
        let body = br#"{"model": "tiny-llama", "messages": [}"#;
        let err = parse_generation(Endpoint::Chat, body).unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.kind, "Bad Request");
        assert!(
            err.param.as_deref().unwrap().starts_with("body."),
            "{err:?}"
        );
        assert!(err.message.contains("json_invalid"), "{err:?}");
    }

    #[test]
    fn validation_errors_read_like_pydantic() {
        let err = parse_generation(Endpoint::Chat, br#"{"model":"tiny-llama"}"#).unwrap_err();
        assert_eq!(
            err.message,
            "1 validation error:\n  {'type': 'missing', 'loc': 'body.messages', 'msg': 'Field required', 'input': '<dict of 1 items>'}"
        );
        let err = parse_generation(
            Endpoint::Completion,
            br#"{"model":"tiny-llama","prompt":"x","max_tokens":"five"}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "1 validation error:\n  {'type': 'int_parsing', 'loc': 'body.max_tokens', 'msg': 'Input should be a valid integer, unable to parse string as an integer', 'input': 'five'}"
        );
        let err = parse_generation(Endpoint::Chat, b"").unwrap_err();
        assert_eq!(err.param.as_deref(), Some("body"));
        let err = parse_generation(Endpoint::Completion, br#"{"prompt":"hi","max_tokens":0}"#)
            .unwrap_err();
        assert_eq!(
            err.message,
            "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)"
        );
        let err = parse_generation(Endpoint::Completion, br#"{"prompt":"hi","n":0}"#).unwrap_err();
        assert_eq!(err.message, "n must be at least 1, got 0.");
    }

    #[test]
    fn prompt_forms() {
        let r = parse_generation(Endpoint::Completion, br#"{"prompt":["a b","c"],"n":2}"#).unwrap();
        assert_eq!(r.prompts.len(), 2);
        assert_eq!(r.n, 2);
        let r = parse_generation(Endpoint::Completion, br#"{"prompt":[1,2,3]}"#).unwrap();
        assert_eq!(r.prompts.len(), 1);
        assert_eq!(r.prompts[0].tokens, 3);
        let r = parse_generation(Endpoint::Completion, br#"{"prompt":[[1,2,3],[4,5]]}"#).unwrap();
        assert_eq!(
            r.prompts.iter().map(|p| p.tokens).collect::<Vec<_>>(),
            [3, 2]
        );
        assert!(parse_generation(Endpoint::Completion, br#"{"prompt":[1,"x",{}]}"#).is_err());
    }

    #[test]
    fn stream_options_and_tools() {
        let r = parse_generation(
            Endpoint::Chat,
            br#"{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true},
                "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"tool_choice":"required"}"#,
        )
        .unwrap();
        assert!(r.include_usage && r.continuous_usage);
        assert_eq!(r.tool.unwrap().name, "get_weather");
        assert_eq!(r.prompts[0].tokens, 6 + 5 + 1);
        let err = parse_generation(
            Endpoint::Chat,
            br#"{"messages":[],"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function","function":{"name":"b"}}}"#,
        )
        .unwrap_err();
        assert_eq!(err.status, 400);
    }
}
