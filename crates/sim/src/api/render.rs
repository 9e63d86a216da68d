//! Response bodies and SSE chunks, byte for byte in vLLM 0.32's field order
//! (../shared/fixtures/vllm-0.32-cpu/http/ and probes of the real server).

use base64::Engine as _;
use bytes::Bytes;

use super::json::Json;
use super::request::Endpoint;

/// What every chunk of one response repeats.
#[derive(Debug, Clone)]
pub struct Meta {
    /// `chatcmpl-…` or `cmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The served model name.
    pub model: String,
    /// `vllm-0.32.0-…`.
    pub fingerprint: String,
    /// Which API.
    pub endpoint: Endpoint,
}

/// Why a choice ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// `length`, `stop` or `tool_calls`.
    pub reason: &'static str,
    /// The stop string that ended it, if any (vLLM's `stop_reason`).
    pub stop_reason: Option<String>,
}

/// Token counts for usage objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt: u64,
    /// Generated tokens.
    pub completion: u64,
}

/// A finished choice of a non-streamed response.
#[derive(Debug, Clone)]
pub struct ChoiceOut {
    /// The choice index.
    pub index: u32,
    /// The text (empty for a tool call).
    pub text: String,
    /// Why it ended.
    pub finish: Finish,
    /// `(id, name, arguments)` of a tool call.
    pub tool_call: Option<(String, String, String)>,
}

impl Meta {
    fn object(&self) -> &'static str {
        match self.endpoint {
            Endpoint::Chat | Endpoint::Messages | Endpoint::Responses => "chat.completion.chunk",
            Endpoint::Completion => "text_completion",
        }
    }

    fn head(&self, j: &mut Json, object: &str) {
        j.raw("{\"id\":")
            .str(&self.id)
            .raw(",\"object\":")
            .str(object)
            .raw(",\"created\":")
            .num(self.created)
            .raw(",\"model\":")
            .str(&self.model);
    }
}

/// A buffer that already holds `data: `: chunks are written in place, with no second copy.
fn sse_event(capacity: usize) -> Json {
    let mut j = Json::with_capacity(capacity + 8);
    j.raw("data: ");
    j
}

/// Ends an event begun with [`sse_event`].
fn sse(mut j: Json) -> Bytes {
    j.raw("\n\n");
    j.into_bytes()
}

/// `data: [DONE]`.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

fn usage_inline(j: &mut Json, u: Usage, details: bool) {
    j.raw(",\"usage\":{\"prompt_tokens\":")
        .num(u.prompt)
        .raw(",\"total_tokens\":")
        .num(u.prompt + u.completion)
        .raw(",\"completion_tokens\":")
        .num(u.completion);
    if details {
        j.raw(",\"completion_tokens_details\":null");
    }
    j.raw("}");
}

fn finish_fields(j: &mut Json, finish: Option<&Finish>) {
    match finish {
        None => {
            j.raw(",\"finish_reason\":null");
        }
        Some(f) => {
            j.raw(",\"finish_reason\":")
                .str(f.reason)
                .raw(",\"stop_reason\":")
                .opt_str(f.stop_reason.as_deref());
        }
    }
}

/// The first chunk of a chat choice: the role only.
pub fn chat_role_chunk(m: &Meta, index: u32, usage: Option<Usage>) -> Bytes {
    let mut j = sse_event(256);
    m.head(&mut j, "chat.completion.chunk");
    j.raw(",\"choices\":[{\"index\":")
        .num(u64::from(index))
        .raw(",\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]");
    if let Some(u) = usage {
        usage_inline(&mut j, u, true);
    }
    j.raw(",\"prompt_token_ids\":null,\"prompt_text\":null}");
    sse(j)
}

/// A chunk of generated text; the last one of a choice carries its finish reason.
/// `fingerprint` is set on a finish chunk when no usage chunk follows.
pub fn text_chunk(
    m: &Meta,
    index: u32,
    text: &str,
    finish: Option<&Finish>,
    usage: Option<Usage>,
    fingerprint: bool,
) -> Bytes {
    let mut j = sse_event(256 + text.len());
    m.head(&mut j, m.object());
    j.raw(",\"choices\":[{\"index\":").num(u64::from(index));
    match m.endpoint {
        Endpoint::Chat | Endpoint::Messages | Endpoint::Responses => {
            j.raw(",\"delta\":{\"content\":")
                .str(text)
                .raw("},\"logprobs\":null");
            finish_fields(&mut j, finish);
            j.raw(",\"token_ids\":null}]");
        }
        Endpoint::Completion => {
            j.raw(",\"text\":").str(text).raw(",\"logprobs\":null");
            match finish {
                None => j.raw(",\"finish_reason\":null,\"stop_reason\":null"),
                Some(_) => {
                    finish_fields(&mut j, finish);
                    &mut j
                }
            };
            j.raw(",\"prompt_token_ids\":null,\"token_ids\":null}]");
        }
    }
    if let Some(u) = usage {
        usage_inline(&mut j, u, m.endpoint == Endpoint::Chat);
    }
    if fingerprint {
        j.raw(",\"system_fingerprint\":").str(&m.fingerprint);
    }
    j.raw("}");
    sse(j)
}

/// The chunk that opens a streamed tool call: id, type, index and name.
pub fn tool_start_chunk(
    m: &Meta,
    index: u32,
    call_id: &str,
    name: &str,
    usage: Option<Usage>,
) -> Bytes {
    let mut j = sse_event(320);
    m.head(&mut j, "chat.completion.chunk");
    j.raw(",\"choices\":[{\"index\":")
        .num(u64::from(index))
        .raw(",\"delta\":{\"content\":null,\"tool_calls\":[{\"id\":")
        .str(call_id)
        .raw(",\"type\":\"function\",\"index\":0,\"function\":{\"name\":")
        .str(name)
        .raw("}}]},\"logprobs\":null,\"finish_reason\":null,\"token_ids\":null}]");
    if let Some(u) = usage {
        usage_inline(&mut j, u, true);
    }
    j.raw("}");
    sse(j)
}

/// A fragment of a streamed tool call's arguments.
pub fn tool_args_chunk(m: &Meta, index: u32, fragment: &str, usage: Option<Usage>) -> Bytes {
    let mut j = sse_event(256 + fragment.len());
    m.head(&mut j, "chat.completion.chunk");
    j.raw(",\"choices\":[{\"index\":")
        .num(u64::from(index))
        .raw(",\"delta\":{\"content\":null,\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":")
        .str(fragment)
        .raw("}}]},\"logprobs\":null,\"finish_reason\":null,\"token_ids\":null}]");
    if let Some(u) = usage {
        usage_inline(&mut j, u, true);
    }
    j.raw("}");
    sse(j)
}

/// The closing chunk of a tool call: an empty delta with the finish reason.
pub fn empty_finish_chunk(
    m: &Meta,
    index: u32,
    finish: &Finish,
    usage: Option<Usage>,
    fingerprint: bool,
) -> Bytes {
    let mut j = sse_event(256);
    m.head(&mut j, "chat.completion.chunk");
    j.raw(",\"choices\":[{\"index\":")
        .num(u64::from(index))
        .raw(",\"delta\":{},\"logprobs\":null");
    finish_fields(&mut j, Some(finish));
    j.raw(",\"token_ids\":null}]");
    if let Some(u) = usage {
        usage_inline(&mut j, u, true);
    }
    if fingerprint {
        j.raw(",\"system_fingerprint\":").str(&m.fingerprint);
    }
    j.raw("}");
    sse(j)
}

/// The `include_usage` chunk: no choices, the totals, the fingerprint.
pub fn usage_chunk(m: &Meta, u: Usage) -> Bytes {
    let mut j = sse_event(256);
    m.head(&mut j, m.object());
    j.raw(",\"choices\":[]");
    usage_inline(&mut j, u, false);
    j.raw(",\"system_fingerprint\":")
        .str(&m.fingerprint)
        .raw("}");
    sse(j)
}

fn usage_full(j: &mut Json, u: Usage) {
    j.raw(",\"usage\":{\"prompt_tokens\":")
        .num(u.prompt)
        .raw(",\"total_tokens\":")
        .num(u.prompt + u.completion)
        .raw(",\"completion_tokens\":")
        .num(u.completion)
        .raw(",\"prompt_tokens_details\":null,\"completion_tokens_details\":null}");
}

/// A non-streamed chat or completions response.
pub fn full_response(m: &Meta, choices: &[ChoiceOut], usage: Usage) -> Bytes {
    let mut j =
        Json::with_capacity(512 + choices.iter().map(|c| c.text.len() + 256).sum::<usize>());
    let object = match m.endpoint {
        Endpoint::Chat | Endpoint::Messages | Endpoint::Responses => "chat.completion",
        Endpoint::Completion => "text_completion",
    };
    m.head(&mut j, object);
    j.raw(",\"choices\":[");
    for (i, c) in choices.iter().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        j.raw("{\"index\":").num(u64::from(c.index));
        match m.endpoint {
            Endpoint::Chat | Endpoint::Messages | Endpoint::Responses => {
                j.raw(",\"message\":{\"role\":\"assistant\",\"content\":")
                    .str(&c.text)
                    .raw(",\"refusal\":null,\"annotations\":null,\"audio\":null,\"function_call\":null");
                if let Some((id, name, args)) = &c.tool_call {
                    j.raw(",\"tool_calls\":[{\"id\":")
                        .str(id)
                        .raw(",\"type\":\"function\",\"function\":{\"name\":")
                        .str(name)
                        .raw(",\"arguments\":")
                        .str(args)
                        .raw("}}]");
                }
                j.raw(",\"reasoning\":null},\"logprobs\":null");
                finish_fields(&mut j, Some(&c.finish));
                j.raw(",\"token_ids\":null,\"routed_experts\":null}");
            }
            Endpoint::Completion => {
                j.raw(",\"text\":").str(&c.text).raw(",\"logprobs\":null");
                finish_fields(&mut j, Some(&c.finish));
                j.raw(",\"token_ids\":null,\"prompt_logprobs\":null,\"prompt_token_ids\":null,\"routed_experts\":null}");
            }
        }
    }
    j.raw("],\"service_tier\":null,\"system_fingerprint\":")
        .str(&m.fingerprint);
    usage_full(&mut j, usage);
    if m.endpoint == Endpoint::Chat {
        j.raw(",\"prompt_logprobs\":null,\"prompt_token_ids\":null,\"prompt_text\":null");
    }
    j.raw(",\"kv_transfer_params\":null,\"ec_transfer_params\":null,\"metrics\":null}");
    j.into_bytes()
}

/// The Messages API's stop reason for a finish: `max_tokens`, `tool_use`, or `end_turn`.
pub fn stop_reason(f: &Finish) -> &'static str {
    match f.reason {
        "length" => "max_tokens",
        "tool_calls" => "tool_use",
        _ => "end_turn",
    }
}

/// One Messages API stream event: `event: <type>` then its data.
fn anthropic_event(kind: &str, capacity: usize) -> Json {
    let mut j = Json::with_capacity(capacity + 32);
    j.raw("event: ").raw(kind).raw("\ndata: ");
    j
}

/// A non-streamed Messages API response (vLLM 0.32's field order).
pub fn messages_body(m: &Meta, c: &ChoiceOut, usage: Usage) -> Bytes {
    let mut j = Json::with_capacity(256 + c.text.len());
    j.raw("{\"id\":")
        .str(&m.id)
        .raw(",\"type\":\"message\",\"role\":\"assistant\",\"content\":[");
    let mut first = true;
    if !c.text.is_empty() || c.tool_call.is_none() {
        j.raw("{\"type\":\"text\",\"text\":").str(&c.text).raw("}");
        first = false;
    }
    if let Some((id, name, args)) = &c.tool_call {
        if !first {
            j.raw(",");
        }
        let input = serde_json::from_str::<serde_json::Value>(args)
            .unwrap_or_else(|_| serde_json::json!({}));
        j.raw("{\"type\":\"tool_use\",\"id\":")
            .str(id)
            .raw(",\"name\":")
            .str(name)
            .raw(",\"input\":")
            .value(&input)
            .raw("}");
    }
    j.raw("],\"model\":")
        .str(&m.model)
        .raw(",\"stop_reason\":")
        .str(stop_reason(&c.finish))
        .raw(",\"usage\":{\"input_tokens\":")
        .num(usage.prompt)
        .raw(",\"output_tokens\":")
        .num(usage.completion)
        .raw("}}");
    j.into_bytes()
}

/// `message_start`: the message's id, model and input tokens, no content yet.
pub fn messages_start(m: &Meta, input_tokens: u64) -> Bytes {
    let mut j = anthropic_event("message_start", 256);
    j.raw("{\"type\":\"message_start\",\"message\":{\"id\":")
        .str(&m.id)
        .raw(",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":")
        .str(&m.model)
        .raw(",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":")
        .num(input_tokens)
        .raw(",\"output_tokens\":0}}}");
    sse(j)
}

/// `content_block_start` of a text block.
pub fn messages_text_start(index: u32) -> Bytes {
    let mut j = anthropic_event("content_block_start", 96);
    j.raw("{\"type\":\"content_block_start\",\"content_block\":{\"type\":\"text\",\"text\":\"\"},\"index\":")
        .num(u64::from(index))
        .raw("}");
    sse(j)
}

/// `content_block_start` of a tool call: its id and name, an empty input.
pub fn messages_tool_start(index: u32, id: &str, name: &str) -> Bytes {
    let mut j = anthropic_event("content_block_start", 160);
    j.raw("{\"type\":\"content_block_start\",\"content_block\":{\"type\":\"tool_use\",\"id\":")
        .str(id)
        .raw(",\"name\":")
        .str(name)
        .raw(",\"input\":{}},\"index\":")
        .num(u64::from(index))
        .raw("}");
    sse(j)
}

/// `content_block_delta` with text.
pub fn messages_text_delta(index: u32, text: &str) -> Bytes {
    let mut j = anthropic_event("content_block_delta", 96 + text.len());
    j.raw("{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":")
        .str(text)
        .raw("},\"index\":")
        .num(u64::from(index))
        .raw("}");
    sse(j)
}

/// `content_block_delta` with a fragment of a tool call's input.
pub fn messages_json_delta(index: u32, fragment: &str) -> Bytes {
    let mut j = anthropic_event("content_block_delta", 96 + fragment.len());
    j.raw("{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":")
        .str(fragment)
        .raw("},\"index\":")
        .num(u64::from(index))
        .raw("}");
    sse(j)
}

/// `content_block_stop`.
pub fn messages_block_stop(index: u32) -> Bytes {
    let mut j = anthropic_event("content_block_stop", 64);
    j.raw("{\"type\":\"content_block_stop\",\"index\":")
        .num(u64::from(index))
        .raw("}");
    sse(j)
}

/// `message_delta` with the stop reason and the usage, then `message_stop`.
pub fn messages_end(finish: &Finish, usage: Usage) -> Bytes {
    let mut j = anthropic_event("message_delta", 192);
    j.raw("{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":")
        .str(stop_reason(finish))
        .raw(",\"stop_sequence\":null},\"usage\":{\"input_tokens\":")
        .num(usage.prompt)
        .raw(",\"output_tokens\":")
        .num(usage.completion)
        .raw("}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}");
    sse(j)
}

/// A float as Python's `repr` writes it (`1.0`, `0.7`): what vLLM's JSON has.
fn py_float(j: &mut Json, f: f64) {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
        j.raw(&format!("{f:.1}"));
    } else {
        j.raw(&format!("{f}"));
    }
}

/// What a Responses API response object echoes of its request.
#[derive(Debug, Clone)]
pub struct ResponsesEcho {
    /// `instructions`.
    pub instructions: Option<String>,
    /// `max_output_tokens`.
    pub max_output_tokens: Option<u64>,
    /// `temperature`.
    pub temperature: f64,
    /// `top_p`.
    pub top_p: f64,
    /// The output message's id (`msg_…`).
    pub message_id: String,
}

/// Where a Responses API response object stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseState<'a> {
    /// Just created, or being generated: no output, no usage.
    InProgress,
    /// Finished: its text, why it ended, and the usage.
    Done(&'a str, &'a Finish, Usage),
}

/// The response object (vLLM 0.32's field order), as a body or inside an event.
fn response_object(j: &mut Json, m: &Meta, echo: &ResponsesEcho, state: ResponseState<'_>) {
    j.raw("{\"id\":")
        .str(&m.id)
        .raw(",\"created_at\":")
        .num(m.created)
        .raw(",\"incomplete_details\":");
    match state {
        ResponseState::Done(_, f, _) if f.reason == "length" => {
            j.raw("{\"reason\":\"max_output_tokens\"}");
        }
        _ => {
            j.raw("null");
        }
    }
    j.raw(",\"instructions\":")
        .opt_str(echo.instructions.as_deref())
        .raw(",\"metadata\":null,\"model\":")
        .str(&m.model)
        .raw(",\"object\":\"response\",\"output\":[");
    if let ResponseState::Done(text, _, _) = state {
        output_message(j, &echo.message_id, Some(text), "completed", "null");
    }
    j.raw("],\"parallel_tool_calls\":true,\"temperature\":");
    py_float(j, echo.temperature);
    j.raw(",\"tool_choice\":\"none\",\"tools\":[],\"top_p\":");
    py_float(j, echo.top_p);
    j.raw(",\"background\":false,\"max_output_tokens\":");
    match echo.max_output_tokens {
        Some(n) => j.num(n),
        None => j.raw("null"),
    };
    j.raw(",\"max_tool_calls\":null,\"previous_response_id\":null,\"prompt\":null,\"reasoning\":null,\"service_tier\":\"auto\",\"status\":");
    match state {
        ResponseState::InProgress => j.raw("\"in_progress\""),
        ResponseState::Done(_, f, _) if f.reason == "length" => j.raw("\"incomplete\""),
        ResponseState::Done(..) => j.raw("\"completed\""),
    };
    j.raw(",\"text\":null,\"top_logprobs\":null,\"truncation\":\"disabled\",\"usage\":");
    match state {
        ResponseState::InProgress => {
            j.raw("null");
        }
        ResponseState::Done(_, _, u) => {
            j.raw("{\"input_tokens\":")
                .num(u.prompt)
                .raw(",\"input_tokens_details\":{\"cached_tokens\":0,\"cache_write_tokens\":0,\"input_tokens_per_turn\":[],\"cached_tokens_per_turn\":[]},\"output_tokens\":")
                .num(u.completion)
                .raw(",\"output_tokens_details\":{\"reasoning_tokens\":0,\"tool_output_tokens\":0,\"output_tokens_per_turn\":[],\"tool_output_tokens_per_turn\":[]},\"total_tokens\":")
                .num(u.prompt + u.completion)
                .raw("}");
        }
    }
    j.raw(",\"user\":null,\"presence_penalty\":0.0,\"frequency_penalty\":0.0,\"kv_transfer_params\":null,\"ec_transfer_params\":null,\"input_messages\":null,\"output_messages\":null}");
}

/// An output message item: its content (none yet, or the text), status and logprobs.
fn output_message(j: &mut Json, id: &str, text: Option<&str>, status: &str, logprobs: &str) {
    j.raw("{\"id\":").str(id).raw(",\"content\":[");
    if let Some(t) = text {
        j.raw("{\"annotations\":[],\"text\":")
            .str(t)
            .raw(",\"type\":\"output_text\",\"logprobs\":")
            .raw(logprobs)
            .raw("}");
    }
    j.raw("],\"role\":\"assistant\",\"status\":")
        .str(status)
        .raw(",\"type\":\"message\",\"phase\":null}");
}

/// A non-streamed Responses API response.
pub fn responses_body(
    m: &Meta,
    echo: &ResponsesEcho,
    text: &str,
    finish: &Finish,
    usage: Usage,
) -> Bytes {
    let mut j = Json::with_capacity(1024 + text.len());
    response_object(&mut j, m, echo, ResponseState::Done(text, finish, usage));
    j.into_bytes()
}

/// One Responses API stream event of `kind` with sequence number `seq`, its fields written by
/// `fields` (each starting with a comma-free key; the event's `sequence_number` and `type`
/// follow them).
fn responses_event(kind: &str, seq: u64, capacity: usize, fields: impl FnOnce(&mut Json)) -> Bytes {
    let mut j = anthropic_event(kind, capacity);
    j.raw("{");
    fields(&mut j);
    j.raw(",\"sequence_number\":")
        .num(seq)
        .raw(",\"type\":")
        .str(kind)
        .raw("}");
    sse(j)
}

/// `response.created` and `response.in_progress` (sequence numbers 0 and 1), the message item
/// and its content part added (2 and 3).
pub fn responses_start(m: &Meta, echo: &ResponsesEcho) -> Vec<Bytes> {
    let object = |j: &mut Json| {
        j.raw("\"response\":");
        response_object(j, m, echo, ResponseState::InProgress);
    };
    vec![
        responses_event("response.created", 0, 1024, object),
        responses_event("response.in_progress", 1, 1024, object),
        responses_event("response.output_item.added", 2, 256, |j| {
            j.raw("\"item\":");
            output_message(j, &echo.message_id, None, "in_progress", "null");
            j.raw(",\"output_index\":0");
        }),
        responses_event("response.content_part.added", 3, 256, |j| {
            j.raw("\"content_index\":0,\"item_id\":")
                .str(&echo.message_id)
                .raw(",\"output_index\":0,\"part\":{\"annotations\":[],\"text\":\"\",\"type\":\"output_text\",\"logprobs\":[]}");
        }),
    ]
}

/// `response.output_text.delta`.
pub fn responses_delta(echo: &ResponsesEcho, seq: u64, text: &str) -> Bytes {
    responses_event("response.output_text.delta", seq, 192 + text.len(), |j| {
        j.raw("\"content_index\":0,\"delta\":")
            .str(text)
            .raw(",\"item_id\":")
            .str(&echo.message_id)
            .raw(",\"logprobs\":[],\"output_index\":0");
    })
}

/// The closing events from sequence number `seq`: the text done, the part done, the item done,
/// and `response.completed` with the whole response.
pub fn responses_end(
    m: &Meta,
    echo: &ResponsesEcho,
    seq: u64,
    text: &str,
    finish: &Finish,
    usage: Usage,
) -> Vec<Bytes> {
    vec![
        {
            // Here vLLM writes `text` after `sequence_number`.
            let mut j = anthropic_event("response.output_text.done", 192 + text.len());
            j.raw("{\"content_index\":0,\"item_id\":")
                .str(&echo.message_id)
                .raw(",\"logprobs\":[],\"output_index\":0,\"sequence_number\":")
                .num(seq)
                .raw(",\"text\":")
                .str(text)
                .raw(",\"type\":\"response.output_text.done\"}");
            sse(j)
        },
        responses_event(
            "response.content_part.done",
            seq + 1,
            192 + text.len(),
            |j| {
                j.raw("\"content_index\":0,\"item_id\":")
                    .str(&echo.message_id)
                    .raw(",\"output_index\":0,\"part\":{\"annotations\":[],\"text\":")
                    .str(text)
                    .raw(",\"type\":\"output_text\",\"logprobs\":null}");
            },
        ),
        responses_event(
            "response.output_item.done",
            seq + 2,
            256 + text.len(),
            |j| {
                j.raw("\"item\":");
                output_message(j, &echo.message_id, Some(text), "completed", "null");
                j.raw(",\"output_index\":0");
            },
        ),
        responses_event("response.completed", seq + 3, 1536 + text.len(), |j| {
            j.raw("\"response\":");
            response_object(j, m, echo, ResponseState::Done(text, finish, usage));
        }),
    ]
}

/// An embeddings response; vectors as float arrays or base64 of little-endian f32.
pub fn embeddings(
    id: &str,
    created: u64,
    model: &str,
    vectors: &[Vec<f32>],
    base64: bool,
    prompt_tokens: u64,
) -> Bytes {
    let dim = vectors.first().map_or(0, Vec::len);
    let mut j = Json::with_capacity(256 + vectors.len() * dim * 12);
    j.raw("{\"id\":")
        .str(id)
        .raw(",\"object\":\"list\",\"created\":")
        .num(created)
        .raw(",\"model\":")
        .str(model)
        .raw(",\"data\":[");
    for (i, v) in vectors.iter().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        j.raw("{\"index\":")
            .num(i as u64)
            .raw(",\"object\":\"embedding\",\"embedding\":");
        if base64 {
            let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
            j.str(&base64::engine::general_purpose::STANDARD.encode(bytes));
        } else {
            j.raw("[");
            for (k, f) in v.iter().enumerate() {
                if k > 0 {
                    j.raw(",");
                }
                j.float(*f);
            }
            j.raw("]");
        }
        j.raw("}");
    }
    j.raw("],\"usage\":{\"prompt_tokens\":")
        .num(prompt_tokens)
        .raw(",\"total_tokens\":")
        .num(prompt_tokens)
        .raw(",\"completion_tokens\":0,\"prompt_tokens_details\":null,\"completion_tokens_details\":null}}");
    j.into_bytes()
}

/// `/v1/models`.
pub fn models(model: &str, created: u64, max_model_len: u32, permission_id: &str) -> Bytes {
    let mut j = Json::with_capacity(512);
    j.raw("{\"object\":\"list\",\"data\":[{\"id\":")
        .str(model)
        .raw(",\"object\":\"model\",\"created\":")
        .num(created)
        .raw(",\"owned_by\":\"vllm\",\"root\":")
        .str(model)
        .raw(",\"parent\":null,\"max_model_len\":")
        .num(u64::from(max_model_len))
        .raw(",\"permission\":[{\"id\":")
        .str(permission_id)
        .raw(",\"object\":\"model_permission\",\"created\":")
        .num(created)
        .raw(",\"allow_create_engine\":false,\"allow_sampling\":true,\"allow_logprobs\":true,\"allow_search_indices\":false,\"allow_view\":true,\"allow_fine_tuning\":false,\"organization\":\"*\",\"group\":null,\"is_blocking\":false}]}]}");
    j.into_bytes()
}

/// `/tokenize`.
pub fn tokenize(tokens: &[u32], max_model_len: u32) -> Bytes {
    let mut j = Json::with_capacity(64 + tokens.len() * 6);
    j.raw("{\"count\":")
        .num(tokens.len() as u64)
        .raw(",\"max_model_len\":")
        .num(u64::from(max_model_len))
        .raw(",\"tokens\":[");
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        j.num(u64::from(*t));
    }
    j.raw("],\"token_strs\":null}");
    j.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(endpoint: Endpoint, id: &str) -> Meta {
        Meta {
            id: id.into(),
            created: 1795355464,
            model: "tiny-llama".into(),
            fingerprint: "vllm-0.32.0-0de498b6".into(),
            endpoint,
        }
    }

    fn fixture(name: &str) -> String {
        let dir = std::env::var_os("INFERSCOPE_SHARED")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
            });
        std::fs::read_to_string(dir.join("fixtures/vllm-0.32-cpu/http").join(name)).unwrap()
    }

    /// A one-choice chat stream as the server assembles it: the role chunk, one chunk per
    /// text with the finish reason on the last, then the usage chunk (or, without one, the
    /// fingerprint on the finish chunk) and `[DONE]`.
    fn chat_stream(m: &Meta, texts: &[&str], usage: Option<Usage>) -> String {
        let mut out = String::from_utf8(chat_role_chunk(m, 0, None).to_vec()).unwrap();
        for (i, t) in texts.iter().enumerate() {
            let last = i == texts.len() - 1;
            let finish = last.then_some(Finish {
                reason: "length",
                stop_reason: None,
            });
            let chunk = text_chunk(m, 0, t, finish.as_ref(), None, last && usage.is_none());
            out.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        if let Some(u) = usage {
            out.push_str(std::str::from_utf8(&usage_chunk(m, u)).unwrap());
        }
        out.push_str(std::str::from_utf8(DONE).unwrap());
        out
    }

    /// Rebuilds `chat-stream-usage.sse` from its own ids, texts and counts, and compares bytes.
    #[test]
    fn chat_stream_with_usage_is_byte_identical_to_vllm() {
        let m = meta(Endpoint::Chat, "chatcmpl-b435dee124bc431d");
        let texts = [
            "linen", "\u{1f}", " str", "ser", "OD", "lease", " start", "zip",
        ];
        let usage = Usage {
            prompt: 26,
            completion: 8,
        };
        assert_eq!(
            chat_stream(&m, &texts, Some(usage)),
            fixture("chat-stream-usage.sse")
        );
    }

    #[test]
    fn chat_stream_without_usage_puts_the_fingerprint_on_the_finish_chunk() {
        let m = meta(Endpoint::Chat, "chatcmpl-b41be70712e38134");
        let texts = ["ca", "module", "lections", " specified", "stat"];
        assert_eq!(
            chat_stream(&m, &texts, None),
            fixture("chat-stream-no-usage.sse")
        );
    }

    #[test]
    fn continuous_usage_matches_vllm() {
        let m = meta(Endpoint::Chat, "chatcmpl-bc073494b1c9aa68");
        let expected = fixture("chat-stream-continuous-usage.sse");
        let first = chat_role_chunk(
            &m,
            0,
            Some(Usage {
                prompt: 13,
                completion: 0,
            }),
        );
        assert!(expected.starts_with(std::str::from_utf8(&first).unwrap()));
        let second = text_chunk(
            &m,
            0,
            "='",
            None,
            Some(Usage {
                prompt: 13,
                completion: 1,
            }),
            false,
        );
        assert!(expected.contains(std::str::from_utf8(&second).unwrap()));
    }

    #[test]
    fn completions_chunks_and_bodies_match_vllm() {
        let m = meta(Endpoint::Completion, "cmpl-85f61ecbcdca0ee7");
        let expected = fixture("completions-stream-n2.sse");
        let c = text_chunk(&m, 1, " env", None, None, false);
        assert!(expected.contains(std::str::from_utf8(&c).unwrap()));
        let f = text_chunk(
            &m,
            1,
            " raw",
            Some(&Finish {
                reason: "length",
                stop_reason: None,
            }),
            None,
            false,
        );
        assert!(expected.contains(std::str::from_utf8(&f).unwrap()));
        let u = usage_chunk(
            &m,
            Usage {
                prompt: 3,
                completion: 12,
            },
        );
        assert!(expected.contains(std::str::from_utf8(&u).unwrap()));

        let m = Meta {
            id: "cmpl-974687a982dbc46b".into(),
            ..meta(Endpoint::Completion, "")
        };
        let choices = [
            ChoiceOut {
                index: 0,
                text: "alueARex path".into(),
                finish: Finish {
                    reason: "length",
                    stop_reason: None,
                },
                tool_call: None,
            },
            ChoiceOut {
                index: 1,
                text: ":'\\\u{fffd}raiseip".into(),
                finish: Finish {
                    reason: "length",
                    stop_reason: None,
                },
                tool_call: None,
            },
        ];
        let body = full_response(
            &m,
            &choices,
            Usage {
                prompt: 4,
                completion: 8,
            },
        );
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            fixture("completions-batch.json").trim_end()
        );
    }

    #[test]
    fn chat_body_matches_vllm() {
        let m = meta(Endpoint::Chat, "chatcmpl-abf2fb9a08d4af67");
        let choices = [ChoiceOut {
            index: 0,
            text: "8 llobalvari8 llobalvari".into(),
            finish: Finish {
                reason: "length",
                stop_reason: None,
            },
            tool_call: None,
        }];
        let body = full_response(
            &m,
            &choices,
            Usage {
                prompt: 13,
                completion: 8,
            },
        );
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            fixture("chat.json").trim_end()
        );
    }

    /// A capture of `scripts/real-vllm/capture-fixtures.sh messages`, without the status
    /// line it appends.
    fn captured(name: &str) -> String {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/vllm-0.32-cpu")
            .join(name);
        let text = std::fs::read_to_string(path).unwrap();
        let body = text.trim_end().rsplit_once('\n').unwrap().0;
        format!("{body}\n")
    }

    #[test]
    fn messages_stream_and_body_are_byte_identical_to_vllm() {
        let m = meta(Endpoint::Messages, "chatcmpl-8ea9ccc1e7228ae1");
        let mut out = messages_start(&m, 26).to_vec();
        out.extend_from_slice(&messages_text_start(0));
        for t in ["help", "ake", "io", " back", " re"] {
            out.extend_from_slice(&messages_text_delta(0, t));
        }
        out.extend_from_slice(&messages_block_stop(0));
        let finish = Finish {
            reason: "length",
            stop_reason: None,
        };
        out.extend_from_slice(&messages_end(
            &finish,
            Usage {
                prompt: 26,
                completion: 5,
            },
        ));
        // The capture ends with the body's last blank line and curl's newline.
        let want = captured("messages-stream.sse");
        assert_eq!(format!("{}\n", String::from_utf8(out).unwrap()), want);

        let m = meta(Endpoint::Messages, "chatcmpl-ac5a92782a393e6b");
        let c = ChoiceOut {
            index: 0,
            text: "lyoo Nowostem\u{fffd}viax".into(),
            finish,
            tool_call: None,
        };
        let body = messages_body(
            &m,
            &c,
            Usage {
                prompt: 26,
                completion: 8,
            },
        );
        assert_eq!(
            format!("{}\n", String::from_utf8(body.to_vec()).unwrap()),
            captured("messages.json")
        );
        // A tool call streams in a block of its own, as vLLM's tool stream did.
        let tool = String::from_utf8(
            messages_tool_start(0, "chatcmpl-tool-9a66d931378c3cea", "get_weather").to_vec(),
        )
        .unwrap();
        assert!(
            captured("messages-tools-stream.sse").contains(&tool),
            "{tool}"
        );
        let args = String::from_utf8(messages_json_delta(0, "\"\"").to_vec()).unwrap();
        assert!(
            captured("messages-tools-stream.sse").contains(&args),
            "{args}"
        );
    }

    #[test]
    fn responses_stream_and_body_are_byte_identical_to_vllm() {
        let finish = Finish {
            reason: "length",
            stop_reason: None,
        };
        let m = Meta {
            created: 1796481214,
            ..meta(Endpoint::Responses, "resp_bebf4131b85e9d95")
        };
        let echo = ResponsesEcho {
            instructions: Some("Be brief.".into()),
            max_output_tokens: Some(8),
            temperature: 1.0,
            top_p: 1.0,
            message_id: "msg_992f78644f70780f".into(),
        };
        let body = responses_body(
            &m,
            &echo,
            "interdownib\u{fffd}ange modbystate",
            &finish,
            Usage {
                prompt: 26,
                completion: 8,
            },
        );
        assert_eq!(
            format!("{}\n", String::from_utf8(body.to_vec()).unwrap()),
            captured("responses.json")
        );

        let m = Meta {
            created: 1796481214,
            ..meta(Endpoint::Responses, "resp_a1dff04af7680a72")
        };
        let echo = ResponsesEcho {
            instructions: None,
            max_output_tokens: Some(5),
            temperature: 1.0,
            top_p: 1.0,
            message_id: "msg_8383a72ef8f621f1".into(),
        };
        let mut out = Vec::new();
        for e in responses_start(&m, &echo) {
            out.extend_from_slice(&e);
        }
        let texts = [" ImportError", " given error\u{fffd} option"];
        for (i, t) in texts.iter().enumerate() {
            out.extend_from_slice(&responses_delta(&echo, 4 + i as u64, t));
        }
        for e in responses_end(
            &m,
            &echo,
            6,
            &texts.concat(),
            &finish,
            Usage {
                prompt: 13,
                completion: 5,
            },
        ) {
            out.extend_from_slice(&e);
        }
        assert_eq!(
            format!("{}\n", String::from_utf8(out).unwrap()),
            captured("responses-stream.sse")
        );
    }
}
