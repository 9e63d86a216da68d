//! Reading an inference response: a stream of SSE chunks as they arrive, or a whole JSON body.
//!
//! Each event is parsed into borrowed structs that name only the fields tracing uses; text is
//! copied only when content capture wants it.

use std::borrow::Cow;
use std::time::Instant;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::budget::{Held, ParseBudget};
use super::capture::{CapturePolicy, OutputChoice, ToolCall};
use super::sse::SseReader;
use super::timeline::Timeline;

/// Token usage as a response reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: Option<i64>,
    /// Generated tokens.
    pub output_tokens: Option<i64>,
    /// Prompt tokens served from the prefix cache.
    pub cached_input_tokens: Option<i64>,
    /// Reasoning tokens among the generated ones.
    pub reasoning_output_tokens: Option<i64>,
    /// Prompt tokens written to the cache (the Messages API's `cache_creation_input_tokens`).
    pub cache_creation_input_tokens: Option<i64>,
}

impl Usage {
    /// `self` with every count `later` reports (a Messages stream reports input tokens in
    /// `message_start` and the output count in `message_delta`).
    fn merged(self, later: Usage) -> Usage {
        Usage {
            input_tokens: later.input_tokens.or(self.input_tokens),
            output_tokens: later.output_tokens.or(self.output_tokens),
            cached_input_tokens: later.cached_input_tokens.or(self.cached_input_tokens),
            reasoning_output_tokens: later
                .reasoning_output_tokens
                .or(self.reasoning_output_tokens),
            cache_creation_input_tokens: later
                .cache_creation_input_tokens
                .or(self.cache_creation_input_tokens),
        }
    }
}

/// What a response says, as far as tracing uses it.
#[derive(Debug, Default)]
pub struct ResponseFacts {
    /// `id`.
    pub id: Option<String>,
    /// `model`.
    pub model: Option<String>,
    /// The choices, by index, with finish reasons, tool calls and (when captured) text.
    pub choices: Vec<OutputChoice>,
    /// Usage, when reported.
    pub usage: Option<Usage>,
    /// The error's type, from an error body or an error event in a stream.
    pub error_type: Option<String>,
    /// Embeddings: how many vectors came back.
    pub embedding_count: Option<i64>,
    /// Embeddings: the length of a vector.
    pub embedding_dimension: Option<i64>,
    /// Pooling routes: how many results came back.
    pub result_count: Option<i64>,
    /// Arrival of content chunks (streams).
    pub timeline: Timeline,
    /// The stream ended with `data: [DONE]`.
    pub done: bool,
    /// Events or bodies that were not understood.
    pub parse_errors: u32,
    /// The first reason a body or event was not understood.
    pub parse_error: Option<String>,
    /// The upstream's `system_fingerprint` (raw JSON), from any event or body that had one.
    pub system_fingerprint: Option<String>,
}

impl ResponseFacts {
    /// Finish reasons of all choices, in index order; empty strings for unfinished choices.
    pub fn finish_reasons(&self) -> Vec<String> {
        self.choices
            .iter()
            .filter_map(|c| c.finish_reason.clone())
            .collect()
    }

    /// Tool calls' names across choices.
    pub fn tool_call_names(&self) -> Vec<String> {
        self.choices
            .iter()
            .flat_map(|c| c.tool_calls.iter().filter_map(|t| t.name.clone()))
            .collect()
    }

    fn note_parse_error(&mut self, what: impl FnOnce() -> String) {
        self.parse_errors = self.parse_errors.saturating_add(1);
        if self.parse_error.is_none() {
            self.parse_error = Some(what());
        }
    }
}

#[derive(Deserialize)]
struct UsageJson {
    prompt_tokens: Option<i64>,
    input_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    output_tokens: Option<i64>,
    prompt_tokens_details: Option<Details>,
    input_tokens_details: Option<Details>,
    completion_tokens_details: Option<Details>,
    output_tokens_details: Option<Details>,
    /// Messages API: prompt tokens read from the cache (not in `input_tokens`).
    cache_read_input_tokens: Option<i64>,
    /// Messages API: prompt tokens written to the cache (not in `input_tokens`).
    cache_creation_input_tokens: Option<i64>,
}

#[derive(Deserialize)]
struct Details {
    cached_tokens: Option<i64>,
    reasoning_tokens: Option<i64>,
    /// Responses API: prompt tokens written to the cache.
    cache_write_tokens: Option<i64>,
}

impl From<UsageJson> for Usage {
    fn from(u: UsageJson) -> Usage {
        let input_details = u.prompt_tokens_details.or(u.input_tokens_details);
        let output_details = u.completion_tokens_details.or(u.output_tokens_details);
        let cache_write = input_details
            .as_ref()
            .and_then(|d| d.cache_write_tokens)
            .filter(|n| *n > 0);
        // The Messages API counts cache reads and writes apart from `input_tokens`; the
        // conventions' input tokens are all of them.
        let input = u.prompt_tokens.or(u.input_tokens).map(|n| {
            n + u.cache_read_input_tokens.unwrap_or(0) + u.cache_creation_input_tokens.unwrap_or(0)
        });
        Usage {
            input_tokens: input,
            output_tokens: u.completion_tokens.or(u.output_tokens),
            cached_input_tokens: input_details
                .and_then(|d| d.cached_tokens)
                .or(u.cache_read_input_tokens),
            reasoning_output_tokens: output_details.and_then(|d| d.reasoning_tokens),
            cache_creation_input_tokens: u.cache_creation_input_tokens.or(cache_write),
        }
    }
}

#[derive(Deserialize)]
struct ErrorJson<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    code: Option<serde_json::Value>,
}

/// One SSE event's data or a whole body: every field any of the shapes uses.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    object: Option<Cow<'a, str>>,
    /// Error type (old-style error bodies) or event type (Responses API).
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    choices: Option<Vec<ChoiceJson<'a>>>,
    usage: Option<UsageJson>,
    #[serde(borrow)]
    error: Option<ErrorJson<'a>>,
    #[serde(borrow)]
    data: Option<Vec<DataItem<'a>>>,
    results: Option<Vec<IgnoredAny>>,
    /// Responses API: the response inside `response.completed` events.
    #[serde(borrow)]
    response: Option<Box<Message<'a>>>,
    #[serde(borrow)]
    output: Option<Vec<OutputItem<'a>>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    delta: Option<&'a RawValue>,
    #[serde(borrow)]
    system_fingerprint: Option<&'a RawValue>,
    /// Messages API: the message inside `message_start` (raw: in error bodies `message` is
    /// a string).
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    /// Messages API: the block a `content_block_*` event is about.
    index: Option<u32>,
    #[serde(borrow)]
    content_block: Option<BlockJson<'a>>,
    /// Messages API: a whole message's content blocks (raw: read only for that shape).
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    stop_reason: Option<Cow<'a, str>>,
    /// Responses API `error` events: the error's code, at the top level.
    code: Option<serde_json::Value>,
    /// Responses API: why a response is incomplete.
    #[serde(borrow)]
    incomplete_details: Option<IncompleteJson<'a>>,
}

#[derive(Deserialize)]
struct IncompleteJson<'a> {
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
}

/// A Messages API content block: text, or a tool call with its input.
#[derive(Deserialize)]
struct BlockJson<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
}

/// The `delta` of a Messages API `content_block_delta` or `message_delta` event.
#[derive(Deserialize)]
struct BlockDelta<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DataItem<'a> {
    #[serde(borrow)]
    embedding: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OutputItem<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    call_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    arguments: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Vec<OutputContent<'a>>>,
}

#[derive(Deserialize)]
struct OutputContent<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChoiceJson<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow)]
    delta: Option<DeltaJson<'a>>,
    #[serde(borrow)]
    message: Option<DeltaJson<'a>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaJson<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<ToolCallJson<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallJson<'a> {
    index: Option<u32>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    function: Option<FunctionJson<'a>>,
}

#[derive(Deserialize)]
struct FunctionJson<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    arguments: Option<Cow<'a, str>>,
}

/// What to do with an event's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Keep,
    /// An event that finishes a choice: in strip mode it waits for the next event, because if
    /// that is the usage chunk, vLLM would have put `system_fingerprint` here instead.
    KeepFinish,
    /// The usage chunk the gateway asked for and the client did not, with its
    /// `system_fingerprint` (raw JSON), if any.
    Drop(Option<String>),
}

/// A whole (non-streamed) body kept for parsing: shared, not copied, while it is one chunk.
#[derive(Debug)]
enum WholeBody {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl WholeBody {
    fn len(&self) -> usize {
        match self {
            WholeBody::Empty => 0,
            WholeBody::One(b) => b.len(),
            WholeBody::Many(b) => b.len(),
        }
    }

    fn push(&mut self, chunk: &Bytes) {
        *self = match std::mem::replace(self, WholeBody::Empty) {
            WholeBody::Empty => WholeBody::One(chunk.clone()),
            WholeBody::One(first) => {
                let mut all = BytesMut::with_capacity(first.len() + chunk.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(chunk);
                WholeBody::Many(all)
            }
            WholeBody::Many(mut all) => {
                all.extend_from_slice(chunk);
                WholeBody::Many(all)
            }
        };
    }

    fn bytes(&self) -> &[u8] {
        match self {
            WholeBody::Empty => &[],
            WholeBody::One(b) => b,
            WholeBody::Many(b) => b,
        }
    }
}

/// Reads a response body as it passes, and (when asked) removes the usage chunk the gateway
/// added to a stream.
#[derive(Debug)]
pub struct ResponseObserver {
    stream: bool,
    strip_usage: bool,
    capture_output: bool,
    max_text: usize,
    max_body: usize,
    sse: SseReader,
    /// Whole-body mode: the body so far (up to `max_body`).
    body: WholeBody,
    body_over: bool,
    /// Whole-body mode: the shared budget the body's bytes are taken from, and what it holds.
    budget: Option<Arc<ParseBudget>>,
    held_budget: Option<Held>,
    over_budget: bool,
    /// Strip mode: bytes of the event in progress, from earlier chunks.
    held: BytesMut,
    /// Strip mode: a complete event that finished a choice, waiting to see what follows.
    pending_finish: Option<BytesMut>,
    /// Strip mode with several choices: the upstream's `system_fingerprint` (raw JSON), when
    /// known from an earlier response on the same connection.
    known_fingerprint: Option<String>,
    /// Strip mode with several choices and no known fingerprint: every event from the first
    /// finishing one, held until the usage chunk gives the fingerprint (`true`: it finishes a
    /// choice and gets it).
    holding: Option<Vec<(BytesMut, bool)>>,
    /// Several choices (`n` > 1 or several prompts).
    several: bool,
    /// Plain text deltas skip the full parse (see [`is_plain_delta`]); off only in tests that
    /// compare the two.
    shortcut: bool,
    /// The last plain delta, to recognise the next ones by comparison.
    template: PlainTemplate,
    facts: ResponseFacts,
}

impl ResponseObserver {
    /// An observer for a response whose `Content-Type` says whether it is a stream.
    ///
    /// - `strip_usage`: the gateway asked for usage the client did not; remove that chunk.
    /// - `max_body`: most bytes of a non-streamed body kept for parsing.
    pub fn new(
        stream: bool,
        strip_usage: bool,
        policy: &CapturePolicy,
        max_body: usize,
    ) -> ResponseObserver {
        ResponseObserver {
            stream,
            strip_usage: strip_usage && stream,
            capture_output: policy.captures_output(),
            max_text: policy.max_length,
            max_body,
            sse: SseReader::default(),
            body: WholeBody::Empty,
            body_over: false,
            budget: None,
            held_budget: None,
            over_budget: false,
            held: BytesMut::new(),
            pending_finish: None,
            known_fingerprint: None,
            holding: None,
            several: false,
            shortcut: true,
            template: PlainTemplate::default(),
            facts: ResponseFacts::default(),
        }
    }

    /// Takes the bytes of a whole body from `budget` while it holds them; a body that does not
    /// fit is not parsed (its facts say so).
    pub fn with_budget(mut self, budget: Arc<ParseBudget>) -> ResponseObserver {
        self.budget = Some(budget);
        self
    }

    /// The stream has several choices (`n` > 1 or several prompts): in strip mode each
    /// choice's finishing event gets the upstream's `system_fingerprint` back, as vLLM writes
    /// it without `include_usage`. `fingerprint`: the upstream's, raw JSON, when known from an
    /// earlier response on the same connection (same process): the events go out at once.
    /// Without it, the events from the first finishing one are held until the usage chunk
    /// says it.
    pub fn with_several_choices(mut self, fingerprint: Option<String>) -> ResponseObserver {
        self.several = true;
        self.known_fingerprint = fingerprint;
        self
    }

    /// Whether this is a stream.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// Observes a chunk of the body that arrived at `at`. Returns the bytes to send on to the
    /// client: the chunk itself (no copy) unless a usage chunk is being removed.
    pub fn on_chunk(&mut self, chunk: Bytes, at: Instant) -> Bytes {
        if !self.stream {
            if !self.body_over {
                if self.body.len() + chunk.len() <= self.max_body && self.budget_for(chunk.len()) {
                    self.body.push(&chunk);
                } else {
                    self.body_over = true;
                    self.body = WholeBody::Empty;
                    self.held_budget = None;
                }
            }
            return chunk;
        }
        if !self.strip_usage {
            let mut sse = std::mem::take(&mut self.sse);
            sse.feed(&chunk, |data, _| {
                self.event(data, at);
            });
            self.sse = sse;
            return chunk;
        }
        // Strip mode: forward whole events only, minus the added usage chunk. vLLM puts
        // `system_fingerprint` on the last chunk of a stream; with the usage chunk removed,
        // the last chunk left must carry it, as it would have without `include_usage`.
        //
        // `out` stays `None` while what goes out is exactly `chunk[..boundary]` (nothing held
        // from before, nothing changed): then the chunk itself, or a slice of it, is sent, and
        // nothing is copied.
        let mut out: Option<BytesMut> =
            (!self.held.is_empty() || self.pending_finish.is_some() || self.holding.is_some())
                .then(BytesMut::new);
        let mut boundary = 0;
        let mut sse = std::mem::take(&mut self.sse);
        sse.feed(&chunk, |data, end| {
            let verdict = self.event(data, at);
            let start = boundary;
            boundary = end;
            if verdict == Verdict::Keep && out.is_none() && self.holding.is_none() {
                return;
            }
            let out = out.get_or_insert_with(|| BytesMut::from(&chunk[..start]));
            let mut event = std::mem::take(&mut self.held);
            event.extend_from_slice(&chunk[start..end]);
            if self.several {
                self.several_choices(out, event, verdict);
                return;
            }
            match verdict {
                Verdict::Keep => {
                    if let Some(p) = self.pending_finish.take() {
                        out.extend_from_slice(&p);
                    }
                    out.extend_from_slice(&event);
                }
                Verdict::KeepFinish => {
                    if let Some(p) = self.pending_finish.take() {
                        out.extend_from_slice(&p);
                    }
                    self.pending_finish = Some(event);
                }
                Verdict::Drop(fingerprint) => {
                    if let Some(mut p) = self.pending_finish.take() {
                        if let Some(fp) = fingerprint {
                            insert_fingerprint(&mut p, &fp);
                        }
                        out.extend_from_slice(&p);
                    }
                }
            }
        });
        self.sse = sse;
        self.held.extend_from_slice(&chunk[boundary..]);
        match out {
            None if boundary == chunk.len() => chunk,
            None => chunk.slice(..boundary),
            Some(out) => out.freeze(),
        }
    }

    /// Strip mode with several choices: one whole event and what to do with it.
    fn several_choices(&mut self, out: &mut BytesMut, mut event: BytesMut, verdict: Verdict) {
        match verdict {
            Verdict::Drop(fingerprint) => {
                // The usage chunk: it goes, and the held events get its fingerprint.
                for (mut e, finishes) in self.holding.take().into_iter().flatten() {
                    if finishes && let Some(fp) = &fingerprint {
                        insert_fingerprint(&mut e, fp);
                    }
                    out.extend_from_slice(&e);
                }
            }
            Verdict::KeepFinish => match (&self.known_fingerprint, &mut self.holding) {
                (Some(fp), None) => {
                    insert_fingerprint(&mut event, fp);
                    out.extend_from_slice(&event);
                }
                (_, Some(held)) => held.push((event, true)),
                (None, None) => self.holding = Some(vec![(event, true)]),
            },
            Verdict::Keep => match &mut self.holding {
                Some(held) => held.push((event, false)),
                None => out.extend_from_slice(&event),
            },
        }
    }

    /// Takes `n` more bytes from the budget, if there is one.
    fn budget_for(&mut self, n: usize) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        let ok = match &mut self.held_budget {
            Some(held) => held.grow(n),
            None => match budget.take(n) {
                Some(held) => {
                    self.held_budget = Some(held);
                    true
                }
                None => false,
            },
        };
        self.over_budget |= !ok;
        ok
    }

    /// The end of the body: bytes still held (an unfinished last event) to send on, if any.
    pub fn on_end(&mut self) -> Option<Bytes> {
        if !self.stream {
            if self.over_budget {
                let limit = self.budget.as_ref().map_or(0, |b| b.limit());
                self.facts.note_parse_error(|| {
                    format!(
                        "response body not parsed: the gateway already holds its limit of {limit} bytes for parsing"
                    )
                });
            } else if self.body_over {
                self.facts.note_parse_error(|| {
                    format!("response body over {} bytes, not parsed", self.max_body)
                });
            } else {
                let body = std::mem::replace(&mut self.body, WholeBody::Empty);
                let bytes = body.bytes();
                if !bytes.is_empty() {
                    self.whole_body(bytes);
                }
            }
            self.held_budget = None;
            return None;
        }
        let mut rest = self.pending_finish.take().unwrap_or_default();
        // A stream that ended before its usage chunk: what was held goes out as it came.
        for (event, _) in self.holding.take().into_iter().flatten() {
            rest.extend_from_slice(&event);
        }
        rest.extend_from_slice(&self.held);
        self.held.clear();
        (!rest.is_empty()).then(|| rest.freeze())
    }

    /// The facts read so far (complete once the body ended).
    pub fn facts(&self) -> &ResponseFacts {
        &self.facts
    }

    /// Takes the facts.
    pub fn into_facts(self) -> ResponseFacts {
        self.facts
    }

    fn whole_body(&mut self, body: &[u8]) {
        match super::json::from_bytes::<Message<'_>>(body) {
            Ok(m) => {
                self.message(m, None);
            }
            Err(e) => self
                .facts
                .note_parse_error(|| format!("response body is not the expected JSON: {e}")),
        }
    }

    fn event(&mut self, data: &[u8], at: Instant) -> Verdict {
        if data == b"[DONE]" {
            self.facts.done = true;
            return Verdict::Keep;
        }
        // Most events of a stream carry one more piece of text and nothing else tracing
        // uses: once the stream's id and model are known and no text is captured, such an
        // event only marks the time. See [`is_plain_delta`].
        if self.shortcut
            && !self.capture_output
            && self.facts.id.is_some()
            && self.facts.model.is_some()
        {
            let plain = self.template.matches(data)
                || (is_plain_delta(data) && {
                    self.template.set(data);
                    true
                });
            if plain {
                self.facts.timeline.chunk(at);
                return Verdict::Keep;
            }
        }
        match super::json::from_bytes::<Message<'_>>(data) {
            Ok(m) => self.message(m, Some(at)),
            Err(e) => {
                self.facts
                    .note_parse_error(|| format!("stream event is not the expected JSON: {e}"));
                Verdict::Keep
            }
        }
    }

    fn message(&mut self, m: Message<'_>, at: Option<Instant>) -> Verdict {
        let facts = &mut self.facts;
        if let Some(error) = &m.error {
            facts.error_type =
                error_type(error.kind.as_deref(), error.code.as_ref()).or(facts.error_type.take());
            return Verdict::Keep;
        }
        // A Responses API `error` event: `{"type":"error","code":…,"message":…}`.
        if m.kind.as_deref() == Some("error") {
            facts.error_type = error_type(None, m.code.as_ref()).or(Some("error".into()));
            return Verdict::Keep;
        }
        if m.object.as_deref() == Some("error") {
            facts.error_type = m
                .kind
                .as_deref()
                .map(str::to_owned)
                .or(Some("error".into()));
            return Verdict::Keep;
        }
        if let Some(fp) = m.system_fingerprint
            && fp.get() != "null"
        {
            facts.system_fingerprint = Some(fp.get().to_owned());
        }
        if facts.id.is_none()
            && let Some(id) = &m.id
        {
            facts.id = Some(id.clone().into_owned());
        }
        if facts.model.is_none()
            && let Some(model) = &m.model
        {
            facts.model = Some(model.clone().into_owned());
        }
        // The Messages API: typed events, or a whole message.
        if let Some(kind) = m
            .kind
            .as_deref()
            .and_then(|k| MESSAGES_EVENTS.iter().find(|e| **e == k))
        {
            return self.messages_event(kind, m, at);
        }
        // The Responses API: typed events, or a whole response object.
        if let Some(kind) = m.kind.as_deref().filter(|k| k.starts_with("response.")) {
            if kind.ends_with(".delta") {
                if let Some(at) = at {
                    facts.timeline.chunk(at);
                }
                if self.capture_output
                    && kind == "response.output_text.delta"
                    && let Some(delta) = m
                        .delta
                        .and_then(|d| serde_json::from_str::<Cow<'_, str>>(d.get()).ok())
                {
                    let choice = choice_mut(&mut facts.choices, 0);
                    push_text(choice, &delta, self.max_text);
                }
            }
            if let Some(response) = m.response {
                return self.message(*response, None);
            }
            return Verdict::Keep;
        }
        if let Some(output) = m.output {
            let choice = choice_mut(&mut facts.choices, 0);
            // A stream's final response repeats the text its deltas already gave.
            let had_text = !choice.text.is_empty();
            for item in output {
                match item.kind.as_deref() {
                    Some("function_call") => choice.tool_calls.push(ToolCall {
                        index: u32::try_from(choice.tool_calls.len()).unwrap_or(u32::MAX),
                        id: item.call_id.map(Cow::into_owned),
                        name: item.name.map(Cow::into_owned),
                        arguments: if self.capture_output {
                            item.arguments.map(Cow::into_owned).unwrap_or_default()
                        } else {
                            String::new()
                        },
                    }),
                    Some("message") if self.capture_output && !had_text => {
                        for c in item.content.into_iter().flatten() {
                            if let Some(t) = c.text {
                                push_text(choice, &t, self.max_text);
                            }
                        }
                    }
                    _ => {}
                }
            }
            // Why it stopped short (`max_output_tokens`) says more than `incomplete`.
            let reason = m.incomplete_details.and_then(|d| d.reason).or(m.status);
            if let Some(reason) = reason {
                choice.finish_reason = Some(reason.into_owned());
            }
        }
        if let Some(data) = &m.data {
            facts.embedding_count = Some(i64::try_from(data.len()).unwrap_or(i64::MAX));
            if let Some(first) = data.iter().find_map(|d| d.embedding) {
                facts.embedding_dimension = dimension(first);
            }
        }
        if let Some(results) = &m.results {
            facts.result_count = Some(i64::try_from(results.len()).unwrap_or(i64::MAX));
        }
        let has_choices = m.choices.as_ref().is_some_and(|c| !c.is_empty());
        if let Some(usage) = m.usage {
            facts.usage = Some(usage.into());
            if !has_choices && at.is_some() && self.strip_usage {
                return Verdict::Drop(facts.system_fingerprint.clone());
            }
        }
        if !has_choices {
            return Verdict::Keep;
        }
        if let Some(at) = at {
            facts.timeline.chunk(at);
        }
        let mut verdict = Verdict::Keep;
        for c in m.choices.into_iter().flatten() {
            let choice = choice_mut(&mut facts.choices, c.index);
            if choice.first_chunk.is_none() {
                choice.first_chunk = at;
            }
            if let Some(reason) = c.finish_reason {
                choice.finish_reason = Some(reason.into_owned());
                verdict = Verdict::KeepFinish;
            }
            if let Some(text) = &c.text
                && self.capture_output
            {
                push_text(choice, text, self.max_text);
            }
            let Some(delta) = c.delta.or(c.message) else {
                continue;
            };
            if let Some(text) = &delta.content
                && self.capture_output
            {
                push_text(choice, text, self.max_text);
            }
            for call in delta.tool_calls.into_iter().flatten() {
                let index = call
                    .index
                    .unwrap_or(u32::try_from(choice.tool_calls.len()).unwrap_or(u32::MAX));
                let slot = match choice.tool_calls.iter().position(|t| t.index == index) {
                    Some(i) => i,
                    None => {
                        choice.tool_calls.push(ToolCall {
                            index,
                            ..ToolCall::default()
                        });
                        choice.tool_calls.len() - 1
                    }
                };
                let tool = &mut choice.tool_calls[slot];
                if let Some(id) = call.id {
                    tool.id = Some(id.into_owned());
                }
                if let Some(f) = call.function {
                    if let Some(name) = f.name {
                        tool.name.get_or_insert_with(String::new).push_str(&name);
                    }
                    if let Some(args) = f.arguments
                        && self.capture_output
                        && tool.arguments.len() < self.max_text
                    {
                        tool.arguments.push_str(&args);
                    }
                }
            }
        }
        verdict
    }
}

/// Substring searchers for what decides whether an event needs the full parse. The needles
/// are bare words where they can be: memchr picks its SIMD prefilter from a needle's rarest
/// bytes, and in JSON the quote is anything but rare. A bare word that turns up in generated
/// text only sends that event to the full parse.
struct DeltaTokens {
    choices: memchr::memmem::Finder<'static>,
    finish_reason: memchr::memmem::Finder<'static>,
    others: [memchr::memmem::Finder<'static>; 3],
}

static DELTA_TOKENS: std::sync::LazyLock<DeltaTokens> = std::sync::LazyLock::new(|| DeltaTokens {
    choices: memchr::memmem::Finder::new(r#""choices":[{"#),
    finish_reason: memchr::memmem::Finder::new("finish_reason"),
    others: [
        memchr::memmem::Finder::new("usage"),
        memchr::memmem::Finder::new("tool_calls"),
        memchr::memmem::Finder::new("error"),
    ],
});

/// The `type`s of the Messages API's events and of a whole message.
const MESSAGES_EVENTS: &[&str] = &[
    "message",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
];

impl ResponseObserver {
    /// A Messages API event (or a whole message, `type: message`): one choice, its content in
    /// blocks; a tool call's arguments arrive as `input_json_delta` fragments of its block.
    fn messages_event(&mut self, kind: &str, m: Message<'_>, at: Option<Instant>) -> Verdict {
        let capture = self.capture_output;
        let max = self.max_text;
        let facts = &mut self.facts;
        if let Some(u) = m.usage {
            facts.usage = Some(facts.usage.unwrap_or_default().merged(u.into()));
        }
        match kind {
            "message_start" => {
                if let Some(inner) = m.message.and_then(|raw| {
                    super::json::from_bytes::<Message<'_>>(raw.get().as_bytes()).ok()
                }) {
                    // Its id, model and usage; no content yet.
                    let _ = self.message(inner, None);
                }
            }
            "message" => {
                let choice = choice_mut(&mut facts.choices, 0);
                let blocks = m.content.and_then(|raw| {
                    super::json::from_bytes::<Vec<BlockJson<'_>>>(raw.get().as_bytes()).ok()
                });
                for (i, block) in blocks.into_iter().flatten().enumerate() {
                    message_block(
                        choice,
                        u32::try_from(i).unwrap_or(u32::MAX),
                        block,
                        capture,
                        max,
                    );
                }
                if let Some(reason) = m.stop_reason {
                    choice.finish_reason = Some(reason.into_owned());
                }
            }
            "content_block_start" => {
                if let Some(block) = m.content_block {
                    let choice = choice_mut(&mut facts.choices, 0);
                    message_block(choice, m.index.unwrap_or(0), block, capture, max);
                }
            }
            "content_block_delta" => {
                let choice = choice_mut(&mut facts.choices, 0);
                if let Some(at) = at {
                    facts.timeline.chunk(at);
                    if choice.first_chunk.is_none() {
                        choice.first_chunk = Some(at);
                    }
                }
                let delta = m
                    .delta
                    .and_then(|d| serde_json::from_str::<BlockDelta<'_>>(d.get()).ok());
                if let Some(d) = delta {
                    if capture && let Some(text) = &d.text {
                        push_text(choice, text, max);
                    }
                    if capture
                        && let Some(fragment) = &d.partial_json
                        && let Some(call) = choice
                            .tool_calls
                            .iter_mut()
                            .find(|c| Some(c.index) == m.index)
                    {
                        call.arguments.push_str(fragment);
                    }
                }
            }
            "message_delta" => {
                let reason = m
                    .delta
                    .and_then(|d| serde_json::from_str::<BlockDelta<'_>>(d.get()).ok())
                    .and_then(|d| d.stop_reason);
                if let Some(reason) = reason {
                    choice_mut(&mut facts.choices, 0).finish_reason = Some(reason.into_owned());
                }
            }
            // The Messages API has no `[DONE]`: its last event is `message_stop`.
            "message_stop" => facts.done = true,
            _ => {}
        }
        Verdict::Keep
    }
}

/// A content block of a message: its text (when captured), or a tool call (its input as the
/// arguments, when captured; streamed tool calls start with an empty input and grow by
/// fragments).
fn message_block(
    choice: &mut OutputChoice,
    index: u32,
    b: BlockJson<'_>,
    capture: bool,
    max: usize,
) {
    match b.kind.as_deref() {
        Some("text") => {
            if capture && let Some(t) = &b.text {
                push_text(choice, t, max);
            }
        }
        Some("tool_use") => {
            // A streamed block starts with `input: {}`, which is no argument yet.
            let arguments = match b.input.map(RawValue::get) {
                Some(raw) if capture && raw != "{}" => raw.to_owned(),
                _ => String::new(),
            };
            choice.tool_calls.push(ToolCall {
                index,
                id: b.id.map(Cow::into_owned),
                name: b.name.map(Cow::into_owned),
                arguments,
            });
        }
        _ => {}
    }
}

/// Whether an event is a chat or completions chunk with at least one choice, every choice's
/// `finish_reason` null, and no usage, tool calls or error: the full parse of such an event
/// would only note its arrival (events of the Responses API have no `choices`). Inside a JSON
/// string a quote is always escaped, so `"finish_reason":null` in an event's bytes can only be
/// that key and value. Compact JSON as vLLM writes it is recognised; anything else (spaces
/// after colons, say) takes the full parse, which is always right, only slower.
fn is_plain_delta(data: &[u8]) -> bool {
    let t = &*DELTA_TOKENS;
    if data.first() != Some(&b'{') || data.last() != Some(&b'}') {
        return false;
    }
    if t.choices.find(data).is_none() {
        return false;
    }
    let word = t.finish_reason.needle().len();
    let mut reasons = 0;
    for at in t.finish_reason.find_iter(data) {
        if at == 0 || data[at - 1] != b'"' || !data[at + word..].starts_with(b"\":null") {
            return false;
        }
        reasons += 1;
    }
    reasons > 0 && t.others.iter().all(|f| f.find(data).is_none())
}

/// The last event [`is_plain_delta`] accepted. The next event of a stream is usually the same
/// bytes with only the generated text changed; checking that takes two comparisons of a few
/// hundred bytes instead of a search for each token.
#[derive(Debug, Default)]
struct PlainTemplate {
    bytes: Vec<u8>,
    /// Offsets of its unescaped quotes.
    quotes: Vec<usize>,
}

/// How many leading bytes `a` and `b` share, compared eight at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let (a8, _) = a.as_chunks::<8>();
    let (b8, _) = b.as_chunks::<8>();
    let whole = a8.iter().zip(b8).take_while(|(x, y)| x == y).count() * 8;
    whole
        + a[whole..]
            .iter()
            .zip(&b[whole..])
            .take_while(|(x, y)| x == y)
            .count()
}

/// How many trailing bytes `a` and `b` share, compared eight at a time.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let (_, a8) = a.as_rchunks::<8>();
    let (_, b8) = b.as_rchunks::<8>();
    let whole = a8
        .iter()
        .rev()
        .zip(b8.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
        * 8;
    whole
        + a[..a.len() - whole]
            .iter()
            .rev()
            .zip(b[..b.len() - whole].iter().rev())
            .take_while(|(x, y)| x == y)
            .count()
}

/// The keys whose string value may differ from the template's: the generated text.
const TEXT_KEYS: [&[u8]; 4] = [b"content", b"text", b"reasoning_content", b"reasoning"];

impl PlainTemplate {
    fn set(&mut self, data: &[u8]) {
        self.bytes.clear();
        self.bytes.extend_from_slice(data);
        self.quotes.clear();
        let mut i = 0;
        while i < data.len() {
            let Some(off) = memchr::memchr2(b'"', b'\\', &data[i..]) else {
                break;
            };
            let at = i + off;
            if data[at] == b'\\' {
                i = at + 2;
            } else {
                self.quotes.push(at);
                i = at + 1;
            }
        }
    }

    /// Whether `data` is the template with the text of one `content`, `text` or `reasoning`
    /// value changed, the old and the new text holding no quote and no backslash: then `data`
    /// has the template's structure, so it is a plain delta too.
    fn matches(&self, data: &[u8]) -> bool {
        let t = &self.bytes;
        if t.is_empty() {
            return false;
        }
        let max = t.len().min(data.len());
        let prefix = common_prefix(t, data);
        if prefix == t.len() && prefix == data.len() {
            return true;
        }
        let suffix = common_suffix(&t[prefix..], &data[prefix..]).min(max - prefix);
        if prefix == 0 || t[prefix - 1] == b'\\' {
            return false;
        }
        let old = &t[prefix..t.len() - suffix];
        let new = &data[prefix..data.len() - suffix];
        if memchr::memchr2(b'"', b'\\', old).is_some()
            || memchr::memchr2(b'"', b'\\', new).is_some()
        {
            return false;
        }
        // The change lies inside a string (an odd number of quotes before it) that is the
        // value of a text key: `"content":"…`, compact.
        let before = self.quotes.partition_point(|&q| q < prefix);
        if before % 2 == 0 || before < 3 {
            return false;
        }
        let (key_open, key_close, value_open) = (
            self.quotes[before - 3],
            self.quotes[before - 2],
            self.quotes[before - 1],
        );
        value_open == key_close + 2
            && t[key_close + 1] == b':'
            && TEXT_KEYS.contains(&&t[key_open + 1..key_close])
    }
}

fn choice_mut(choices: &mut Vec<OutputChoice>, index: u32) -> &mut OutputChoice {
    let i = match choices.binary_search_by_key(&index, |c| c.index) {
        Ok(i) => i,
        Err(i) => {
            choices.insert(
                i,
                OutputChoice {
                    index,
                    ..OutputChoice::default()
                },
            );
            i
        }
    };
    &mut choices[i]
}

/// Adds `,"system_fingerprint":<fp>` before the closing brace of an event's JSON.
fn insert_fingerprint(event: &mut BytesMut, fp: &str) {
    let Some(brace) = event.iter().rposition(|&b| b == b'}') else {
        return;
    };
    let tail = event.split_off(brace);
    event.extend_from_slice(b",\"system_fingerprint\":");
    event.extend_from_slice(fp.as_bytes());
    event.extend_from_slice(&tail);
}

fn push_text(choice: &mut OutputChoice, text: &str, max: usize) {
    let room = max.saturating_sub(choice.text.len());
    if text.len() <= room {
        choice.text.push_str(text);
    } else {
        let mut end = room;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        choice.text.push_str(&text[..end]);
        choice.text_truncated = true;
    }
}

/// The low-cardinality error type of an error object: its `type`, else its `code`.
fn error_type(kind: Option<&str>, code: Option<&serde_json::Value>) -> Option<String> {
    kind.filter(|k| !k.is_empty())
        .map(str::to_owned)
        .or_else(|| code.map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned)))
}

/// The length of an embedding: a JSON array's elements, or float32s in a base64 string.
fn dimension(raw: &RawValue) -> Option<i64> {
    let text = raw.get();
    if text.starts_with('[') {
        let items: Vec<IgnoredAny> = serde_json::from_str(text).ok()?;
        return i64::try_from(items.len()).ok();
    }
    let b64: Cow<'_, str> = serde_json::from_str(text).ok()?;
    let padding = b64.bytes().rev().take_while(|&b| b == b'=').count();
    let bytes = (b64.len() / 4) * 3 - padding.min(2);
    i64::try_from(bytes / 4).ok()
}

/// Checks the stream reader's invariants on arbitrary bytes (the `sse_stream` fuzz target and
/// its replay in the test suite): never a panic; the SSE reader finds the same events whether
/// the bytes come whole or cut at any size; an observer that strips nothing forwards every
/// byte unchanged; one that strips the added usage chunk forwards the same bytes and reads the
/// same facts whatever the cuts, and never more bytes than arrived plus a moved fingerprint.
pub fn fuzz_check(data: &[u8]) {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut % 64) + 1;
    let events = |step: usize| {
        let mut reader = SseReader::default();
        let mut events = Vec::new();
        for piece in data.chunks(step) {
            reader.feed(piece, |event, _| events.push(event.to_vec()));
        }
        events
    };
    assert_eq!(
        events(data.len().max(1)),
        events(step),
        "the cuts changed the events"
    );
    let policy = CapturePolicy {
        enabled: true,
        ..CapturePolicy::default()
    };
    type Facts = (
        Vec<String>,
        Option<String>,
        Option<String>,
        Option<(Option<i64>, Option<i64>)>,
        Option<String>,
        bool,
    );
    // `several`: a stream of several choices, with the fingerprint unknown (held until the
    // usage chunk) or known.
    fn observe(
        data: &[u8],
        policy: &CapturePolicy,
        step: usize,
        strip: bool,
        several: Option<Option<String>>,
    ) -> (Vec<u8>, Facts) {
        let mut o = ResponseObserver::new(true, strip, policy, 1 << 20);
        if let Some(known) = several {
            o = o.with_several_choices(known);
        }
        let at = Instant::now();
        let mut out = Vec::new();
        for piece in data.chunks(step) {
            out.extend_from_slice(&o.on_chunk(Bytes::copy_from_slice(piece), at));
        }
        if let Some(rest) = o.on_end() {
            out.extend_from_slice(&rest);
        }
        let f = o.into_facts();
        let facts = (
            f.finish_reasons(),
            f.id,
            f.model,
            f.usage.map(|u| (u.input_tokens, u.output_tokens)),
            f.error_type,
            f.done,
        );
        (out, facts)
    }
    let run = |step: usize, strip: bool| observe(data, &policy, step, strip, None);
    assert_eq!(
        run(step, false).0,
        data,
        "an observer that strips nothing changed bytes"
    );
    let (whole, whole_facts) = run(data.len().max(1), true);
    let (pieces, pieces_facts) = run(step, true);
    assert_eq!(whole, pieces, "the cuts changed the stripped stream");
    assert_eq!(whole_facts, pieces_facts, "the cuts changed the facts");
    assert!(
        whole.len() <= data.len() + 256,
        "the stripped stream grew: {} from {}",
        whole.len(),
        data.len()
    );
    for known in [None, Some("\"fp\"".to_owned())] {
        let whole = observe(data, &policy, data.len().max(1), true, Some(known.clone()));
        let pieces = observe(data, &policy, step, true, Some(known));
        assert_eq!(
            whole, pieces,
            "the cuts changed a stream of several choices"
        );
    }
    // A whole body is read without a panic, too.
    let mut o = ResponseObserver::new(false, false, &policy, 1 << 20);
    let _ = o.on_chunk(Bytes::copy_from_slice(data), Instant::now());
    let _ = o.on_end();
}

#[cfg(test)]
mod tests {
    /// The fuzz target's invariants over generated variations of real vLLM streams.
    #[test]
    fn replays_generated_streams() {
        // What the fuzz target found: data lines ending in CR CR LF.
        super::fuzz_check(include_bytes!(
            "../../../../fuzz/seeds/sse_stream/cr-cr-lf-regression"
        ));
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/vllm-0.32-cpu/http"
        );
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".sse"))
            .filter_map(|p| std::fs::read(p).ok())
            .collect();
        seeds.push(format!("data: {{\"id\":\"c\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"hi\"}},\"finish_reason\":\"stop\"}}]}}\r\n\r\n{USAGE}data: [DONE]\n\n").into_bytes());
        let mut rng = fastrand::Rng::with_seed(5);
        for i in 0..3_000 {
            let seed = &seeds[i % seeds.len()];
            let mut data = vec![rng.u8(..)];
            data.extend_from_slice(&seed[..seed.len().min(4096)]);
            for _ in 0..rng.usize(0..4) {
                if data.len() < 2 {
                    break;
                }
                let at = rng.usize(1..data.len());
                match rng.u8(..3) {
                    0 => {
                        const PICK: &[u8] = b"\r\n:{}\",datax";
                        data[at] = PICK[rng.usize(..PICK.len())];
                    }
                    1 => data.truncate(at),
                    _ => data.insert(at, b'\n'),
                }
            }
            super::fuzz_check(&data);
        }
    }

    use super::*;

    fn stream(chunks: &[&str], strip: bool, policy: &CapturePolicy) -> (String, ResponseFacts) {
        let mut o = ResponseObserver::new(true, strip, policy, 1 << 20);
        let mut out = Vec::new();
        let t0 = Instant::now();
        for (i, c) in chunks.iter().enumerate() {
            let at = t0 + std::time::Duration::from_millis(10 * i as u64);
            out.extend_from_slice(&o.on_chunk(Bytes::copy_from_slice(c.as_bytes()), at));
        }
        if let Some(rest) = o.on_end() {
            out.extend_from_slice(&rest);
        }
        (String::from_utf8(out).unwrap(), o.into_facts())
    }

    const USAGE: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":1}}}\n\n";

    #[test]
    fn strips_only_the_usage_chunk_at_any_split() {
        let a = "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
        let b = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\n";
        let done = "data: [DONE]\n\n";
        let full = format!("{a}{b}{USAGE}{done}");
        let want = format!("{a}{b}{done}");
        for i in 0..full.len() {
            for j in (i..full.len()).step_by(7) {
                let (out, facts) = stream(
                    &[&full[..i], &full[i..j], &full[j..]],
                    true,
                    &CapturePolicy::default(),
                );
                assert_eq!(out, want, "split {i} {j}");
                assert_eq!(facts.usage.unwrap().output_tokens, Some(2));
                assert_eq!(facts.usage.unwrap().cached_input_tokens, Some(1));
                assert_eq!(facts.finish_reasons(), vec!["stop".to_owned()]);
                assert!(facts.done);
            }
        }
        // Without stripping the bytes pass untouched.
        let (out, _) = stream(&[&full], false, &CapturePolicy::default());
        assert_eq!(out, full);
        // vLLM's fingerprint moves from the removed usage chunk to the last chunk left.
        let usage_fp = USAGE.replace("}}}", "}},\"system_fingerprint\":\"vllm-0.32.0-x\"}");
        let full = format!("{a}{b}{usage_fp}{done}");
        let b_fp = b.replace("]}\n\n", "],\"system_fingerprint\":\"vllm-0.32.0-x\"}\n\n");
        for i in (0..full.len()).step_by(3) {
            let (out, _) = stream(&[&full[..i], &full[i..]], true, &CapturePolicy::default());
            assert_eq!(out, format!("{a}{b_fp}{done}"), "split {i}");
        }
    }

    #[test]
    fn plain_deltas_are_recognised_conservatively() {
        let plain = [
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" by"},"logprobs":null,"finish_reason":null,"token_ids":null}]}"#,
            r#"{"id":"c","object":"text_completion","created":1,"model":"m","choices":[{"index":1,"text":" x","logprobs":null,"finish_reason":null,"stop_reason":null}]}"#,
            // Text with quotes and JSON in it, escaped as JSON escapes it.
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"say \"hi\": {\"choices\":[{\"x\":1}]}"},"finish_reason":null}]}"#,
        ];
        for e in plain {
            assert!(is_plain_delta(e.as_bytes()), "{e}");
        }
        let full = [
            // Text that spells out the words: the full parse (which finds it plain).
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"\"usage\" \"error\" \"finish_reason\":\"stop\""},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason": null}]}"#,
            r#"{"id":"c","choices":[],"usage":{"prompt_tokens":1}}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],"usage":{"prompt_tokens":1}}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]},"finish_reason":null}]}"#,
            r#"{"error":{"message":"x","type":"BadRequestError"}}"#,
            r#"{"object":"error","message":"x","type":"x"}"#,
            r#"{"type":"response.output_text.delta","delta":"x"}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"null"}]}"#,
            r#"{"id":"c","choices": [{"index":0,"delta":{"content":"x"},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"finish_reason":null},{"index":1,"finish_reason":"length"}]}"#,
            r#"{"id":"c","choices":[{"index":0,"finish_reason":null}]"#,
            "[DONE]",
            "",
        ];
        for e in full {
            assert!(!is_plain_delta(e.as_bytes()), "{e}");
        }
    }

    #[test]
    fn common_prefix_and_suffix() {
        let cases: [(&[u8], &[u8], usize, usize); 6] = [
            (b"", b"", 0, 0),
            (b"abc", b"abc", 3, 3),
            (b"0123456789abcdefXY", b"0123456789abcdefZY", 16, 1),
            (b"0123456789abcdefghij", b"0123456789abcdefghijkl", 20, 0),
            (b"xx0123456789abcdefgh", b"y0123456789abcdefgh", 0, 18),
            (b"a", b"b", 0, 0),
        ];
        for (a, b, p, s) in cases {
            assert_eq!(common_prefix(a, b), p, "{a:?} {b:?}");
            assert_eq!(common_suffix(a, b), s, "{a:?} {b:?}");
        }
    }

    #[test]
    fn the_template_accepts_only_a_changed_text() {
        let base = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" by"},"logprobs":null,"finish_reason":null,"token_ids":null}]}"#;
        let mut t = PlainTemplate::default();
        t.set(base.as_bytes());
        for same in [
            base.to_owned(),
            base.replace(" by", " kernel"),
            base.replace(" by", ""),
            base.replace(" by", " b"),
            base.replace(" by", " é∂"),
        ] {
            assert!(t.matches(same.as_bytes()), "{same}");
        }
        for changed in [
            base.replace("chat.completion.chunk", "error"),
            base.replace("\"content\"", "\"tool_calls\""),
            base.replace(" by", "x\"},\"usage\":{\"a\":\"1"),
            base.replace(" by", " b\\"),
            base.replace(" by", " \\\"b"),
            base.replace(
                ":null,\"finish_reason\":null",
                ":null,\"finish_reason\":\"stop\"",
            ),
            base.replace("\"m\"", "\"other\""),
            base.replace("\"c\"", "\"d\""),
            base.replace("]}", "],\"usage\":null}"),
            String::new(),
        ] {
            assert!(!t.matches(changed.as_bytes()), "{changed}");
        }
        // A template whose text ends in an escape: nothing next to it is trusted.
        let escaped = base.replace(" by", " a\\n");
        t.set(escaped.as_bytes());
        assert!(!t.matches(base.replace(" by", " a\\t").as_bytes()));
        assert!(t.matches(escaped.replace(" a\\n", " a\\nbc").as_bytes()));
    }

    /// The shortcut changes nothing a span or the client sees: every real vLLM stream in the
    /// fixtures, whole and cut at every 11th byte, strip mode on and off, gives the same bytes
    /// and facts with and without it.
    #[test]
    fn the_plain_delta_shortcut_changes_no_fact_and_no_byte() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/vllm-0.32-cpu/http");
        let (mut streams, mut plain) = (0, 0);
        let t0 = Instant::now();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "sse") {
                continue;
            }
            streams += 1;
            let body = std::fs::read(&path).unwrap();
            // Continuous usage statistics put usage on every event: no shortcut there.
            plain += body
                .split(|&b| b == b'\n')
                .filter_map(|l| l.strip_prefix(b"data: "))
                .filter(|d| is_plain_delta(d))
                .count();
            for strip in [false, true] {
                for step in [body.len(), 11] {
                    let run = |shortcut: bool| {
                        let mut o =
                            ResponseObserver::new(true, strip, &CapturePolicy::default(), 1 << 20);
                        o.shortcut = shortcut;
                        let mut out = Vec::new();
                        for (i, c) in body.chunks(step.max(1)).enumerate() {
                            let at = t0 + std::time::Duration::from_micros(i as u64);
                            out.extend_from_slice(&o.on_chunk(Bytes::copy_from_slice(c), at));
                        }
                        out.extend_from_slice(&o.on_end().unwrap_or_default());
                        let f = o.into_facts();
                        let summary = format!(
                            "{:?} {:?} {:?} {:?} {:?} {} {} {:?} {}",
                            f.id,
                            f.model,
                            f.usage,
                            f.finish_reasons(),
                            f.error_type,
                            f.done,
                            f.parse_errors,
                            f.timeline.first(),
                            f.timeline.chunks()
                        );
                        (out, summary)
                    };
                    let (fast, slow) = (run(true), run(false));
                    assert_eq!(
                        fast.1,
                        slow.1,
                        "{} strip={strip} step={step}",
                        path.display()
                    );
                    assert!(
                        fast.0 == slow.0,
                        "bytes differ: {} strip={strip} step={step}",
                        path.display()
                    );
                }
            }
        }
        assert!(streams >= 4, "fixture streams found: {streams}");
        assert!(plain >= 10, "plain deltas in the fixtures: {plain}");
    }

    #[test]
    fn assembles_streamed_tool_calls_and_text() {
        let policy = CapturePolicy {
            enabled: true,
            ..CapturePolicy::default()
        };
        let chunks = [
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"x\"},\"finish_reason\":\"length\"}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        ];
        let (_, facts) = stream(&chunks, false, &policy);
        let call = &facts.choices[0].tool_calls[0];
        assert_eq!(call.id.as_deref(), Some("call_1"));
        assert_eq!(call.name.as_deref(), Some("get_weather"));
        assert_eq!(call.arguments, "{\"city\":\"Paris\"}");
        assert_eq!(
            facts.finish_reasons(),
            vec!["tool_calls".to_owned(), "length".to_owned()]
        );
        assert_eq!(facts.choices[1].text, "x");
        assert_eq!(facts.timeline.chunks(), 5);
    }

    #[test]
    fn error_event_and_garbage() {
        let (_, facts) = stream(
            &[
                "data: {\"error\":{\"message\":\"boom\",\"type\":\"InternalServerError\",\"code\":500}}\n\n",
                "data: {not json\n\n",
            ],
            false,
            &CapturePolicy::default(),
        );
        assert_eq!(facts.error_type.as_deref(), Some("InternalServerError"));
        assert_eq!(facts.parse_errors, 1);
    }

    #[test]
    fn whole_bodies() {
        let mut o = ResponseObserver::new(false, false, &CapturePolicy::default(), 1 << 20);
        o.on_chunk(Bytes::from_static(br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]},"#), Instant::now());
        o.on_chunk(Bytes::from_static(br#"{"object":"embedding","index":1,"embedding":[0.1,0.2,0.3]}],"model":"e","usage":{"prompt_tokens":4,"total_tokens":4}}"#), Instant::now());
        o.on_end();
        let f = o.into_facts();
        assert_eq!(
            (f.embedding_count, f.embedding_dimension),
            (Some(2), Some(3))
        );
        assert_eq!(f.usage.unwrap().input_tokens, Some(4));

        let mut o = ResponseObserver::new(false, false, &CapturePolicy::default(), 1 << 20);
        o.on_chunk(
            Bytes::from_static(br#"{"data":[{"embedding":"AACAPwAAAEA="}]}"#),
            Instant::now(),
        );
        o.on_end();
        assert_eq!(o.into_facts().embedding_dimension, Some(2));

        let mut o = ResponseObserver::new(false, false, &CapturePolicy::default(), 1 << 20);
        o.on_chunk(Bytes::from_static(br#"{"object":"error","message":"m","type":"NotFoundError","param":null,"code":404}"#), Instant::now());
        o.on_end();
        assert_eq!(o.into_facts().error_type.as_deref(), Some("NotFoundError"));

        let mut o = ResponseObserver::new(false, false, &CapturePolicy::default(), 8);
        o.on_chunk(Bytes::from_static(b"0123456789"), Instant::now());
        o.on_end();
        assert!(o.into_facts().parse_error.unwrap().contains("over 8 bytes"));
    }

    /// A fixture the real vLLM 0.32 wrote (`scripts/real-vllm/capture-fixtures.sh`), without the
    /// status line the capture appends.
    fn vllm_fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../sim/tests/fixtures/vllm-0.32-cpu")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let body = text.trim_end().rsplit_once('\n').unwrap().0;
        format!("{body}\n")
    }

    #[test]
    fn anthropic_messages_streams_and_bodies_from_the_real_vllm() {
        let captured = CapturePolicy {
            enabled: true,
            ..CapturePolicy::default()
        };
        let sse = vllm_fixture("messages-stream.sse");
        // Every split of the stream gives the same facts and the same bytes.
        for split in [1, 7, 64, sse.len()] {
            let chunks: Vec<&str> = sse
                .as_bytes()
                .chunks(split)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            let (out, f) = stream(&chunks, false, &captured);
            assert_eq!(out, sse);
            assert_eq!(f.id.as_deref(), Some("chatcmpl-8ea9ccc1e7228ae1"));
            assert_eq!(f.model.as_deref(), Some("tiny-llama"));
            let u = f.usage.unwrap();
            assert_eq!((u.input_tokens, u.output_tokens), (Some(26), Some(5)));
            assert_eq!(f.finish_reasons(), vec!["max_tokens".to_owned()]);
            assert_eq!(f.choices[0].text, "helpakeio back re");
            assert_eq!(f.timeline.chunks(), 5, "one chunk per content delta");
            assert!(f.choices[0].first_chunk.is_some());
            assert!(f.done, "message_stop ends the stream");
            assert_eq!(f.parse_errors, 0);
        }
        // A tool call: its block starts with the name, its input grows by fragments.
        let (_, f) = stream(
            &[&vllm_fixture("messages-tools-stream.sse")],
            false,
            &captured,
        );
        let call = &f.choices[0].tool_calls[0];
        assert_eq!(call.name.as_deref(), Some("get_weather"));
        assert_eq!(call.id.as_deref(), Some("chatcmpl-tool-9a66d931378c3cea"));
        assert_eq!(call.arguments, "\"\"");
        assert_eq!(f.tool_call_names(), vec!["get_weather".to_owned()]);
        // Made-up, as the Anthropic API sends them: cache counts, fragments, an error event.
        let events = [
            r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"m","usage":{"input_tokens":10,"cache_read_input_tokens":30,"cache_creation_input_tokens":5,"output_tokens":1}}}

"#,
            "event: ping\ndata: {\"type\": \"ping\"}\n\n",
            r#"event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}

"#,
            r#"event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}

"#,
            r#"event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}

"#,
            r#"event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":12}}

"#,
            r#"event: error
data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}

"#,
        ];
        let (_, f) = stream(&events, false, &captured);
        let u = f.usage.unwrap();
        assert_eq!(
            u.input_tokens,
            Some(45),
            "input, cache reads and cache writes"
        );
        assert_eq!(u.cached_input_tokens, Some(30));
        assert_eq!(u.cache_creation_input_tokens, Some(5));
        assert_eq!(u.output_tokens, Some(12));
        assert_eq!(
            f.choices[0].tool_calls[0].arguments,
            "{\"city\": \"Paris\"}"
        );
        assert_eq!(f.finish_reasons(), vec!["tool_use".to_owned()]);
        assert_eq!(f.error_type.as_deref(), Some("overloaded_error"));
        assert!(!f.done);
        // Without capture, no text and no arguments, but the same facts otherwise.
        let (_, f) = stream(&events, false, &CapturePolicy::default());
        assert_eq!(f.choices[0].tool_calls[0].arguments, "");
        assert_eq!(f.tool_call_names(), vec!["get_weather".to_owned()]);

        // Whole bodies.
        for (name, id, text, input) in [
            (
                "messages.json",
                "chatcmpl-ac5a92782a393e6b",
                "lyoo Nowostem\u{fffd}viax",
                26,
            ),
            (
                "messages-tool-result.json",
                "chatcmpl-b489c2580a814cfa",
                "nce                   mb over",
                33,
            ),
        ] {
            let mut o = ResponseObserver::new(false, false, &captured, 1 << 20);
            o.on_chunk(Bytes::from(vllm_fixture(name)), Instant::now());
            o.on_end();
            let f = o.into_facts();
            assert_eq!(f.id.as_deref(), Some(id));
            assert_eq!(f.choices[0].text, text);
            assert_eq!(f.finish_reasons(), vec!["max_tokens".to_owned()]);
            assert_eq!(f.usage.unwrap().input_tokens, Some(input));
            assert_eq!(f.timeline.chunks(), 0);
        }
        let mut o = ResponseObserver::new(false, false, &captured, 1 << 20);
        o.on_chunk(
            Bytes::from_static(br#"{"id":"msg_2","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_2","name":"get_weather","input":{"city":"Paris"}}],"stop_reason":"tool_use","usage":{"input_tokens":3,"output_tokens":9}}"#),
            Instant::now(),
        );
        o.on_end();
        let f = o.into_facts();
        assert_eq!(f.choices[0].text, "Let me check.");
        assert_eq!(f.choices[0].tool_calls[0].arguments, r#"{"city":"Paris"}"#);
        assert_eq!(f.choices[0].tool_calls[0].index, 1);
        for (name, kind) in [
            ("messages-error-404-model.json", "NotFoundError"),
            ("messages-error-400-no-max-tokens.json", "Bad Request"),
        ] {
            let mut o = ResponseObserver::new(false, false, &captured, 1 << 20);
            o.on_chunk(Bytes::from(vllm_fixture(name)), Instant::now());
            o.on_end();
            assert_eq!(o.into_facts().error_type.as_deref(), Some(kind), "{name}");
        }
    }

    #[test]
    fn responses_api_streams_and_bodies_from_the_real_vllm() {
        let captured = CapturePolicy {
            enabled: true,
            ..CapturePolicy::default()
        };
        let sse = vllm_fixture("responses-stream.sse");
        for split in [1, 13, sse.len()] {
            // Pieces of about `split` bytes, cut at character boundaries (the text is UTF-8).
            let mut chunks: Vec<&str> = Vec::new();
            let mut at = 0;
            while at < sse.len() {
                let mut end = (at + split).min(sse.len());
                while !sse.is_char_boundary(end) {
                    end += 1;
                }
                chunks.push(&sse[at..end]);
                at = end;
            }
            let (out, f) = stream(&chunks, false, &captured);
            assert_eq!(out, sse);
            assert_eq!(f.id.as_deref(), Some("resp_a1dff04af7680a72"));
            assert_eq!(f.model.as_deref(), Some("tiny-llama"));
            let u = f.usage.unwrap();
            assert_eq!((u.input_tokens, u.output_tokens), (Some(13), Some(5)));
            assert_eq!(u.cached_input_tokens, Some(0));
            assert_eq!(u.cache_creation_input_tokens, None, "0 writes is none");
            assert_eq!(f.finish_reasons(), vec!["max_output_tokens".to_owned()]);
            assert_eq!(f.choices[0].text, " ImportError given error\u{fffd} option");
            assert_eq!(f.timeline.chunks(), 2, "one chunk per output_text.delta");
            assert_eq!(f.parse_errors, 0);
        }
        let mut o = ResponseObserver::new(false, false, &captured, 1 << 20);
        o.on_chunk(Bytes::from(vllm_fixture("responses.json")), Instant::now());
        o.on_end();
        let f = o.into_facts();
        assert_eq!(f.id.as_deref(), Some("resp_bebf4131b85e9d95"));
        assert_eq!(f.finish_reasons(), vec!["max_output_tokens".to_owned()]);
        assert!(f.usage.unwrap().output_tokens.unwrap() > 0);
        assert!(!f.choices[0].text.is_empty());
        // An `error` event of the Responses API.
        let (_, f) = stream(
            &[
                "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"boom\",\"param\":null,\"sequence_number\":3}\n\n",
            ],
            false,
            &captured,
        );
        assert_eq!(f.error_type.as_deref(), Some("server_error"));
    }

    /// vLLM's `n=2` chat stream without usage (each finishing chunk has the fingerprint), and
    /// the same stream as vLLM sends it with `include_usage`: the gateway must turn the second
    /// into the first, whether it knows the fingerprint beforehand or learns it at the end.
    #[test]
    fn several_choices_get_their_fingerprints_back_at_any_split() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../sim/tests/fixtures/vllm-0.32-cpu/chat-stream-n2.sse");
        let text = std::fs::read_to_string(path).unwrap();
        let want = format!("{}\n", text.trim_end().rsplit_once('\n').unwrap().0);
        let fp = r#","system_fingerprint":"vllm-0.32.0-cc9110a3""#;
        assert_eq!(want.matches(fp).count(), 2);
        let usage = r#"data: {"id":"chatcmpl-bcf0692359bde5fd","object":"chat.completion.chunk","created":1795417719,"model":"tiny-llama","choices":[],"usage":{"prompt_tokens":13,"total_tokens":19,"completion_tokens":6},"system_fingerprint":"vllm-0.32.0-cc9110a3"}"#;
        let sent = want
            .replace(fp, "")
            .replace("data: [DONE]", &format!("{usage}\n\ndata: [DONE]"));
        for known in [None, Some("\"vllm-0.32.0-cc9110a3\"".to_owned())] {
            for split in [1, 5, 100, sent.len()] {
                let mut o = ResponseObserver::new(true, true, &CapturePolicy::default(), 1 << 20)
                    .with_several_choices(known.clone());
                let mut out = Vec::new();
                let t0 = Instant::now();
                // With the fingerprint known, each event goes out as it completes: the first
                // choice's finishing chunk before the second choice's.
                let finish_0 = want.find("\"finish_reason\":\"length\"").unwrap();
                let mut first_finish_out_before_last_event = false;
                for (i, piece) in sent.as_bytes().chunks(split).enumerate() {
                    let got = o.on_chunk(
                        Bytes::copy_from_slice(piece),
                        t0 + std::time::Duration::from_millis(i as u64),
                    );
                    out.extend_from_slice(&got);
                    let sent_so_far = (i + 1) * split;
                    if out.len() > finish_0 && sent_so_far < sent.len() - 200 {
                        first_finish_out_before_last_event = true;
                    }
                }
                if let Some(rest) = o.on_end() {
                    out.extend_from_slice(&rest);
                }
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    want,
                    "known {known:?}, split {split}"
                );
                if split < 100 {
                    assert_eq!(
                        first_finish_out_before_last_event,
                        known.is_some(),
                        "known {known:?}: held only while the fingerprint is unknown"
                    );
                }
                let f = o.into_facts();
                assert_eq!(f.usage.unwrap().output_tokens, Some(6));
                assert_eq!(f.finish_reasons().len(), 2);
                assert_eq!(
                    f.system_fingerprint.as_deref(),
                    Some("\"vllm-0.32.0-cc9110a3\"")
                );
            }
        }
        // A stream cut before its usage chunk: what was held goes out unchanged.
        let cut = sent.split("data: {\"id\":\"chatcmpl-bcf0692359bde5fd\",\"object\":\"chat.completion.chunk\",\"created\":1795417719,\"model\":\"tiny-llama\",\"choices\":[],").next().unwrap();
        let mut o = ResponseObserver::new(true, true, &CapturePolicy::default(), 1 << 20)
            .with_several_choices(None);
        let mut out = o
            .on_chunk(Bytes::copy_from_slice(cut.as_bytes()), Instant::now())
            .to_vec();
        out.extend_from_slice(&o.on_end().unwrap_or_default());
        assert_eq!(String::from_utf8(out).unwrap(), cut);
    }
}
