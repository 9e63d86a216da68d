//! The HTTP side: routes, generation (streamed and not), embeddings, tokenize, models,
//! health, metrics; fault injection; abort accounting when a client goes away.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Incoming;
use inferscope_core::SpanContext;
use inferscope_core::trace_context::extract_trace_context;

use crate::api::render::{self, ChoiceOut, Finish, Meta, Usage};
use crate::api::request::{self, Endpoint, ToolCallPlan};
use crate::api::{ApiError, GenRequest};
use crate::config::SimConfig;
use crate::engine::Engine;
use crate::faults::{FAULT_HEADER, FaultSpec, Split};
use crate::generate::{ChoiceDone, ChoicePlan, ChoiceRunner, Delta, Step};
use crate::metrics::Metrics;
use crate::spans::{Arrival, EngineSpans, SpanParams};
use crate::tokenizer::{self, Generator};

/// The response body type.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Largest request body read.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Shared by every request.
#[derive(Debug)]
pub struct State {
    /// The configuration.
    pub config: SimConfig,
    /// The engine.
    pub engine: Engine,
    /// Counters.
    pub metrics: Metrics,
    /// `llm_request` export, when an endpoint is configured.
    pub spans: Option<EngineSpans>,
    /// Faults applied to every request.
    pub base_fault: FaultSpec,
    /// `system_fingerprint`.
    pub fingerprint: String,
    /// When the server started (Unix seconds), for `/v1/models`.
    pub started: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl State {
    /// State for `config`, starting the engine (needs a Tokio runtime).
    pub fn new(config: SimConfig, spans: Option<EngineSpans>) -> State {
        let base_fault = config
            .fault
            .as_deref()
            .and_then(|f| FaultSpec::parse(f).ok())
            .unwrap_or_default();
        let fingerprint = format!(
            "vllm-0.32.0-{:08x}",
            tokenizer::stable_hash(&[config.model.as_str(), &config.seed.to_string()]) as u32
        );
        State {
            engine: Engine::start(config.engine.clone(), config.zero_delay),
            metrics: Metrics::default(),
            spans,
            base_fault,
            fingerprint,
            started: unix_now(),
            config,
        }
    }

    fn created(&self) -> u64 {
        self.config.created.unwrap_or_else(unix_now)
    }
}

fn full(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    if !content_type.is_empty() {
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    r
}

fn error(e: &ApiError) -> Response<Body> {
    full(e.status, "application/json", e.body())
}

/// The service: never fails; every problem is a response.
pub async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Body>, Infallible> {
    let arrival_wall = SystemTime::now();
    let arrival = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let api = matches!(
        path,
        "/v1/chat/completions"
            | "/v1/completions"
            | "/v1/messages"
            | "/v1/responses"
            | "/v1/embeddings"
            | "/tokenize"
            | "/v1/models"
    );
    let fault = if api {
        match parts
            .headers
            .get(FAULT_HEADER)
            .map(|v| v.to_str().map(FaultSpec::parse))
        {
            None => state.base_fault.clone(),
            Some(Ok(Ok(f))) => state.base_fault.merged(&f),
            Some(_) => {
                let e = ApiError::bad_request(format!("invalid {FAULT_HEADER} header"), None);
                return Ok(error(&e));
            }
        }
    } else {
        FaultSpec::default()
    };
    if let Some(stall) = fault.stall {
        tokio::time::sleep(stall).await;
    }
    if let Some(code) = fault.status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        state.metrics.errors.fetch_add(1, Ordering::Relaxed);
        let e = ApiError::status(status, &format!("Injected fault: status {code}"));
        return Ok(with_body_faults(error(&e), &fault));
    }
    let response = match (&parts.method, path) {
        (&Method::GET | &Method::HEAD, "/health") => full(StatusCode::OK, "", Bytes::new()),
        (&Method::GET, "/v1/models") => {
            let id = format!(
                "modelperm-{:016x}",
                tokenizer::stable_hash(&[state.config.model.as_str()])
            );
            let body = render::models(
                &state.config.model,
                state.started,
                state.config.max_model_len,
                &id,
            );
            full(StatusCode::OK, "application/json", body)
        }
        (&Method::GET, "/metrics") => {
            let text = state
                .metrics
                .render(&state.config.model, state.engine.stats());
            full(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(text),
            )
        }
        (
            &Method::POST,
            "/v1/chat/completions"
            | "/v1/completions"
            | "/v1/messages"
            | "/v1/responses"
            | "/v1/embeddings"
            | "/tokenize",
        ) => {
            let body = match Limited::new(body, MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    let e =
                        ApiError::status(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
                    return Ok(error(&e));
                }
            };
            let response = match path {
                "/v1/chat/completions" => {
                    generation(
                        state.clone(),
                        Endpoint::Chat,
                        &parts.headers,
                        &body,
                        &fault,
                        arrival_wall,
                        arrival,
                    )
                    .await
                }
                "/v1/completions" => {
                    generation(
                        state.clone(),
                        Endpoint::Completion,
                        &parts.headers,
                        &body,
                        &fault,
                        arrival_wall,
                        arrival,
                    )
                    .await
                }
                "/v1/messages" => {
                    generation(
                        state.clone(),
                        Endpoint::Messages,
                        &parts.headers,
                        &body,
                        &fault,
                        arrival_wall,
                        arrival,
                    )
                    .await
                }
                "/v1/responses" => {
                    generation(
                        state.clone(),
                        Endpoint::Responses,
                        &parts.headers,
                        &body,
                        &fault,
                        arrival_wall,
                        arrival,
                    )
                    .await
                }
                "/v1/embeddings" => embeddings(&state, &parts.headers, &body),
                _ => tokenize(&state, &body),
            };
            match response {
                Ok(r) => r,
                Err(e) => {
                    state.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    if path == "/v1/messages" {
                        full(e.status, "application/json", e.anthropic_body())
                    } else {
                        error(&e)
                    }
                }
            }
        }
        (
            _,
            "/health"
            | "/v1/models"
            | "/metrics"
            | "/v1/chat/completions"
            | "/v1/completions"
            | "/v1/messages"
            | "/v1/responses"
            | "/v1/embeddings"
            | "/tokenize",
        ) => error(&ApiError::method_not_allowed()),
        _ => error(&ApiError::route_not_found()),
    };
    let mut response = if api {
        with_body_faults(response, &fault)
    } else {
        response
    };
    if state.config.enable_request_id_headers
        && let Some(id) = parts.headers.get("x-request-id")
    {
        response.headers_mut().insert("x-request-id", id.clone());
    }
    Ok(response)
}

/// The request id: `X-Request-Id` when usable, else random.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 256)
        .map_or_else(|| format!("{:016x}", fastrand::u64(..)), str::to_owned)
}

/// Per-request context shared by its choices.
struct RequestCtx {
    state: Arc<State>,
    meta: Meta,
    parent: Option<SpanContext>,
    arrival: Arrival,
    endpoint: Endpoint,
    prompt_tokens: Vec<u32>,
    top_p: f64,
    temperature: f64,
    include_usage: bool,
    continuous: bool,
}

impl RequestCtx {
    /// Spans and metrics for one finished choice.
    fn finished(&self, plan: &ChoicePlan, done: &ChoiceDone) {
        let m = &self.state.metrics;
        match done.finish.reason {
            "length" => m.finished_length.fetch_add(1, Ordering::Relaxed),
            _ => m.finished_stop.fetch_add(1, Ordering::Relaxed),
        };
        m.prompt_tokens
            .fetch_add(u64::from(plan.prompt_tokens), Ordering::Relaxed);
        m.generation_tokens
            .fetch_add(u64::from(done.completion_tokens), Ordering::Relaxed);
        m.ttft.observe(
            done.first_token
                .saturating_duration_since(self.arrival.at)
                .as_secs_f64(),
        );
        m.e2e.observe(
            done.last_token
                .saturating_duration_since(self.arrival.at)
                .as_secs_f64(),
        );
        if let Some(spans) = &self.state.spans {
            let id = match self.endpoint {
                Endpoint::Chat | Endpoint::Messages | Endpoint::Responses => self.meta.id.clone(),
                Endpoint::Completion => format!("{}-{}", self.meta.id, plan.prompt_index),
            };
            spans.record(
                self.parent.as_ref(),
                self.arrival,
                done,
                plan.prompt_tokens,
                id,
                SpanParams {
                    top_p: self.top_p,
                    max_tokens: plan.max_tokens,
                    temperature: self.temperature,
                },
            );
        }
    }
}

/// Counts the request as aborted if it is dropped before it completes.
struct AbortGuard {
    state: Arc<State>,
    completed: bool,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.completed {
            self.state.metrics.aborted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn generation(
    state: Arc<State>,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: &[u8],
    fault: &FaultSpec,
    arrival_wall: SystemTime,
    arrival: Instant,
) -> Result<Response<Body>, ApiError> {
    let req: GenRequest = request::parse_generation(endpoint, body)?;
    let config = &state.config;
    if let Some(model) = &req.model
        && *model != config.model
    {
        return Err(ApiError::unknown_model(model, &config.model));
    }
    if let Some(max) = req.max_tokens
        && max > u64::from(config.max_model_len)
    {
        return Err(ApiError::max_tokens_over_context(max, config.max_model_len));
    }
    if let Some(p) = req
        .prompts
        .iter()
        .find(|p| p.tokens >= config.max_model_len)
    {
        return Err(ApiError::prompt_over_context(
            p.tokens,
            config.max_model_len,
        ));
    }
    let rid = request_id(headers);
    let meta = Meta {
        id: match endpoint {
            // vLLM serves the Messages API as a chat request, with a chat id.
            Endpoint::Chat | Endpoint::Messages => format!("chatcmpl-{rid}"),
            Endpoint::Responses => format!("resp_{rid}"),
            Endpoint::Completion => format!("cmpl-{rid}"),
        },
        created: state.created(),
        model: config.model.clone(),
        fingerprint: state.fingerprint.clone(),
        endpoint,
    };
    // Fixed timing measures from arrival: no preprocessing delay before the queue.
    if !config.zero_delay
        && config.engine.fixed_timing.is_none()
        && config.engine.preprocess_ms > 0.0
    {
        tokio::time::sleep(Duration::from_secs_f64(config.engine.preprocess_ms / 1e3)).await;
    }
    let queued = Instant::now();
    let stop: Arc<[String]> = req.stop.clone().into();
    let tool: Option<Arc<ToolCallPlan>> = req.tool.clone().map(Arc::new);
    let eos = if req.ignore_eos {
        0.0
    } else {
        config.engine.eos_probability
    };
    let mut runners = Vec::new();
    for (pi, prompt) in req.prompts.iter().enumerate() {
        for j in 0..req.n {
            let max_tokens = req
                .max_tokens
                .map_or(u32::MAX, |m| u32::try_from(m).unwrap_or(u32::MAX))
                .min(config.max_model_len - prompt.tokens);
            let plan = ChoicePlan {
                index: u32::try_from(pi).unwrap_or(u32::MAX).saturating_mul(req.n) + j,
                prompt_index: pi,
                prompt_tokens: prompt.tokens,
                max_tokens,
                seed: tokenizer::stable_hash(&[
                    &config.seed,
                    &(req.seed.unwrap_or(0) as u64),
                    &prompt.content_hash,
                    &u64::from(j),
                ]),
                stop: stop.clone(),
                tool: tool.clone(),
                eos_probability: eos,
                partial_token_probability: config.engine.partial_token_probability,
            };
            let handle = state.engine.submit(prompt.tokens, max_tokens, queued);
            runners.push(ChoiceRunner::new(plan, handle));
        }
    }
    let ctx = Arc::new(RequestCtx {
        state: state.clone(),
        meta,
        parent: extract_trace_context(headers),
        arrival: Arrival {
            wall: arrival_wall,
            at: arrival,
            queued,
        },
        endpoint,
        prompt_tokens: req.prompts.iter().map(|p| p.tokens).collect(),
        top_p: req.top_p,
        temperature: req.temperature,
        include_usage: req.include_usage,
        continuous: req.continuous_usage,
    });
    let guard = AbortGuard {
        state: state.clone(),
        completed: false,
    };
    let echo = (endpoint == Endpoint::Responses).then(|| render::ResponsesEcho {
        instructions: req.instructions.clone(),
        max_output_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        message_id: format!(
            "msg_{:016x}",
            tokenizer::stable_hash(&[&format!("msg-{rid}")])
        ),
    });
    if !req.stream {
        let (choices, usage) = run_to_end(ctx.clone(), runners, guard).await;
        let (m, first) = (&ctx.meta, choices.first());
        let body = match (endpoint, first, &echo) {
            (Endpoint::Messages, Some(c), _) => render::messages_body(m, c, usage),
            (Endpoint::Responses, Some(c), Some(echo)) => {
                render::responses_body(m, echo, &c.text, &c.finish, usage)
            }
            (Endpoint::Messages | Endpoint::Responses, ..) => Bytes::new(),
            (Endpoint::Chat | Endpoint::Completion, ..) => {
                render::full_response(m, &choices, usage)
            }
        };
        return Ok(full(StatusCode::OK, "application/json", body));
    }
    let events: std::pin::Pin<Box<dyn Stream<Item = Bytes> + Send + Sync>> = match echo {
        Some(echo) => Box::pin(responses_events(ctx, runners, guard, echo)),
        None if endpoint == Endpoint::Messages => Box::pin(messages_events(ctx, runners, guard)),
        None => Box::pin(sse_events(ctx, runners, guard)),
    };
    let seed = tokenizer::stable_hash(&[&rid]);
    let body = StreamBody::new(
        apply_stream_faults(events, fault.clone(), seed, endpoint).map(|r| r.map(Frame::data)),
    );
    let mut response = Response::new(BodyExt::boxed(body));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    Ok(response)
}

/// Runs every choice to the end: the choices and the usage.
async fn run_to_end(
    ctx: Arc<RequestCtx>,
    runners: Vec<ChoiceRunner>,
    mut guard: AbortGuard,
) -> (Vec<ChoiceOut>, Usage) {
    let results = futures_util::future::join_all(runners.into_iter().map(|mut r| {
        let ctx = ctx.clone();
        async move {
            let mut out = ChoiceOut {
                index: r.plan().index,
                text: String::new(),
                finish: Finish {
                    reason: "length",
                    stop_reason: None,
                },
                tool_call: None,
            };
            let mut tool: Option<(String, String, String)> = None;
            let mut completion = 0;
            while let Some(step) = r.next().await {
                match step.delta {
                    Delta::Text(t) => out.text.push_str(&t),
                    Delta::ToolStart { id, name } => tool = Some((id, name, String::new())),
                    Delta::ToolArgs(a) => {
                        if let Some(t) = &mut tool {
                            t.2.push_str(&a);
                        }
                    }
                    Delta::Empty => {}
                }
                if let Some(done) = step.done {
                    ctx.finished(r.plan(), &done);
                    completion = done.completion_tokens;
                    out.finish = done.finish;
                    break;
                }
            }
            out.tool_call = tool;
            (out, completion)
        }
    }))
    .await;
    guard.completed = true;
    let usage = Usage {
        prompt: ctx.prompt_tokens.iter().map(|&t| u64::from(t)).sum(),
        completion: results.iter().map(|(_, c)| u64::from(*c)).sum(),
    };
    let choices: Vec<ChoiceOut> = results.into_iter().map(|(c, _)| c).collect();
    (choices, usage)
}

/// A Responses API stream (one choice): created, in progress, the item and part added, a delta
/// per token, then the text, part and item done and `response.completed`.
fn responses_events(
    ctx: Arc<RequestCtx>,
    mut runners: Vec<ChoiceRunner>,
    mut guard: AbortGuard,
    echo: render::ResponsesEcho,
) -> impl Stream<Item = Bytes> + Send {
    struct S {
        ctx: Arc<RequestCtx>,
        runner: Option<ChoiceRunner>,
        guard: AbortGuard,
        pending: VecDeque<Bytes>,
        echo: render::ResponsesEcho,
        seq: u64,
        text: String,
    }
    let runner = if runners.is_empty() {
        guard.completed = true;
        None
    } else {
        Some(runners.swap_remove(0))
    };
    let pending: VecDeque<Bytes> = render::responses_start(&ctx.meta, &echo).into();
    let s = S {
        ctx,
        runner,
        guard,
        pending,
        echo,
        seq: 4,
        text: String::new(),
    };
    futures_util::stream::unfold(s, |mut s| async move {
        loop {
            if let Some(b) = s.pending.pop_front() {
                return Some((b, s));
            }
            let runner = s.runner.as_mut()?;
            let Some(step) = runner.next().await else {
                s.runner = None;
                continue;
            };
            if let Delta::Text(t) = &step.delta
                && !t.is_empty()
            {
                s.pending
                    .push_back(render::responses_delta(&s.echo, s.seq, t));
                s.seq += 1;
                s.text.push_str(t);
            }
            if let Some(done) = &step.done {
                let usage = Usage {
                    prompt: s.ctx.prompt_tokens.iter().map(|&t| u64::from(t)).sum(),
                    completion: u64::from(done.completion_tokens),
                };
                s.pending.extend(render::responses_end(
                    &s.ctx.meta,
                    &s.echo,
                    s.seq,
                    &s.text,
                    &done.finish,
                    usage,
                ));
                if let Some(r) = &s.runner {
                    s.ctx.finished(r.plan(), done);
                }
                s.guard.completed = true;
                s.runner = None;
            }
        }
    })
}

/// A Messages API stream (one choice): `message_start`, then per content block a start, its
/// deltas and a stop (text first; a tool call in a block of its own), then `message_delta`
/// with the stop reason and usage, and `message_stop`. No `[DONE]`.
fn messages_events(
    ctx: Arc<RequestCtx>,
    mut runners: Vec<ChoiceRunner>,
    mut guard: AbortGuard,
) -> impl Stream<Item = Bytes> + Send {
    struct S {
        ctx: Arc<RequestCtx>,
        runner: Option<ChoiceRunner>,
        guard: AbortGuard,
        pending: VecDeque<Bytes>,
        /// The open block's index, and whether one is open.
        block: u32,
        open: bool,
    }
    let runner = if runners.is_empty() {
        guard.completed = true;
        None
    } else {
        Some(runners.swap_remove(0))
    };
    let prompt: u64 = ctx.prompt_tokens.iter().map(|&t| u64::from(t)).sum();
    let mut pending = VecDeque::new();
    pending.push_back(render::messages_start(&ctx.meta, prompt));
    let s = S {
        ctx,
        runner,
        guard,
        pending,
        block: 0,
        open: false,
    };
    futures_util::stream::unfold(s, |mut s| async move {
        loop {
            if let Some(b) = s.pending.pop_front() {
                return Some((b, s));
            }
            let runner = s.runner.as_mut()?;
            let Some(step) = runner.next().await else {
                s.runner = None;
                continue;
            };
            match &step.delta {
                Delta::Text(t) if !t.is_empty() => {
                    if !s.open {
                        s.pending.push_back(render::messages_text_start(s.block));
                        s.open = true;
                    }
                    s.pending.push_back(render::messages_text_delta(s.block, t));
                }
                Delta::ToolStart { id, name } => {
                    if s.open {
                        s.pending.push_back(render::messages_block_stop(s.block));
                        s.block += 1;
                    }
                    s.pending
                        .push_back(render::messages_tool_start(s.block, id, name));
                    s.open = true;
                }
                Delta::ToolArgs(a) => {
                    s.pending.push_back(render::messages_json_delta(s.block, a));
                }
                _ => {}
            }
            if let Some(done) = &step.done {
                if s.open {
                    s.pending.push_back(render::messages_block_stop(s.block));
                    s.open = false;
                }
                let usage = Usage {
                    prompt: s.ctx.prompt_tokens.iter().map(|&t| u64::from(t)).sum(),
                    completion: u64::from(done.completion_tokens),
                };
                s.pending
                    .push_back(render::messages_end(&done.finish, usage));
                if let Some(r) = &s.runner {
                    s.ctx.finished(r.plan(), done);
                }
                s.guard.completed = true;
                s.runner = None;
            }
        }
    })
}

/// Streamed chunks: role chunks once the first token exists (chat), one chunk per token,
/// interleaved across choices, then usage (if asked) and `[DONE]`.
fn sse_events(
    ctx: Arc<RequestCtx>,
    runners: Vec<ChoiceRunner>,
    guard: AbortGuard,
) -> impl Stream<Item = Bytes> + Send {
    let total_choices = runners.len();
    let plans: Vec<ChoicePlan> = runners.iter().map(|r| r.plan().clone()).collect();
    let choices = futures_util::stream::select_all(runners.into_iter().map(|r| {
        Box::pin(futures_util::stream::unfold(r, |mut r| async move {
            let step = r.next().await?;
            Some((step, r))
        }))
    }));
    struct S {
        ctx: Arc<RequestCtx>,
        plans: Vec<ChoicePlan>,
        pending: VecDeque<Bytes>,
        started: bool,
        generated: Vec<u64>,
        finished: usize,
        total: usize,
        over: bool,
        guard: AbortGuard,
    }
    let state = S {
        ctx,
        generated: vec![0; plans.len()],
        plans,
        pending: VecDeque::new(),
        started: false,
        finished: 0,
        total: total_choices,
        over: false,
        guard,
    };
    futures_util::stream::unfold((state, choices), |(mut s, mut choices)| async move {
        loop {
            if let Some(b) = s.pending.pop_front() {
                return Some((b, (s, choices)));
            }
            if s.over {
                return None;
            }
            match choices.next().await {
                Some(step) => render_step(
                    &mut s.pending,
                    &s.ctx,
                    &s.plans,
                    &mut s.started,
                    &mut s.generated,
                    &mut s.finished,
                    step,
                ),
                None => {
                    let ctx = &s.ctx;
                    if s.finished == s.total && ctx.include_usage {
                        let usage = Usage {
                            prompt: ctx.prompt_tokens.iter().map(|&t| u64::from(t)).sum(),
                            completion: s.generated.iter().sum(),
                        };
                        s.pending.push_back(render::usage_chunk(&ctx.meta, usage));
                    }
                    s.pending.push_back(Bytes::from_static(render::DONE));
                    s.guard.completed = s.finished == s.total;
                    s.over = true;
                }
            }
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn render_step(
    out: &mut VecDeque<Bytes>,
    ctx: &RequestCtx,
    plans: &[ChoicePlan],
    started: &mut bool,
    generated: &mut [u64],
    finished: &mut usize,
    step: Step,
) {
    let m = &ctx.meta;
    let slot = plans
        .iter()
        .position(|p| p.index == step.index)
        .unwrap_or(0);
    let plan = &plans[slot.min(plans.len().saturating_sub(1))];
    if !*started && ctx.endpoint == Endpoint::Chat {
        for p in plans {
            let usage = ctx.continuous.then_some(Usage {
                prompt: u64::from(p.prompt_tokens),
                completion: 0,
            });
            out.push_back(render::chat_role_chunk(m, p.index, usage));
        }
    }
    *started = true;
    if let Some(g) = generated.get_mut(slot) {
        *g += 1;
    }
    let usage = ctx.continuous.then(|| Usage {
        prompt: u64::from(plan.prompt_tokens),
        completion: generated.get(slot).copied().unwrap_or(0),
    });
    let fingerprint = step.done.is_some() && !ctx.include_usage;
    let finish = step.done.as_ref().map(|d| &d.finish);
    match &step.delta {
        // vLLM sends no chunk for a token without text, and ends a chat choice whose last
        // token had none with an empty delta.
        Delta::Text(t) if t.is_empty() && ctx.endpoint == Endpoint::Chat => {}
        Delta::Text(t) => {
            if !t.is_empty() || finish.is_some() {
                out.push_back(render::text_chunk(
                    m,
                    step.index,
                    t,
                    finish,
                    usage,
                    fingerprint,
                ));
            }
        }
        Delta::ToolStart { id, name } => {
            out.push_back(render::tool_start_chunk(m, step.index, id, name, usage))
        }
        Delta::ToolArgs(a) => out.push_back(render::tool_args_chunk(m, step.index, a, usage)),
        Delta::Empty => {}
    }
    if let Some(done) = &step.done {
        let empty_chat_text =
            matches!(&step.delta, Delta::Text(t) if t.is_empty()) && ctx.endpoint == Endpoint::Chat;
        if empty_chat_text || !matches!(step.delta, Delta::Text(_)) {
            out.push_back(render::empty_finish_chunk(
                m,
                step.index,
                &done.finish,
                usage,
                fingerprint,
            ));
        }
        ctx.finished(plan, done);
        *finished += 1;
    }
}

/// Stream faults: close the connection, insert a malformed event, split events into writes.
/// What vLLM sends when its engine fails during a stream: the error as an event, then (for
/// the OpenAI routes) `[DONE]`.
fn engine_error_events(endpoint: Endpoint) -> Bytes {
    let message = "Injected fault: the engine failed during generation";
    if endpoint == Endpoint::Messages {
        return Bytes::from(format!(
            "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"InternalServerError\",\"message\":\"{message}\"}}}}\n\n"
        ));
    }
    if endpoint == Endpoint::Responses {
        return Bytes::from(format!(
            "event: error\ndata: {{\"type\":\"error\",\"code\":\"InternalServerError\",\"message\":\"{message}\",\"param\":null}}\n\n"
        ));
    }
    Bytes::from(format!(
        "data: {{\"error\":{{\"message\":\"{message}\",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}}}\n\ndata: [DONE]\n\n"
    ))
}

fn apply_stream_faults(
    events: impl Stream<Item = Bytes> + Send + 'static,
    fault: FaultSpec,
    seed: u64,
    endpoint: Endpoint,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    struct F<S> {
        events: std::pin::Pin<Box<S>>,
        fault: FaultSpec,
        sent: usize,
        pieces: VecDeque<Bytes>,
        rng: Generator,
        closed: bool,
        /// The stream ends after the pieces left (an engine error was sent).
        ended: bool,
        endpoint: Endpoint,
    }
    let state = F {
        events: Box::pin(events),
        fault,
        sent: 0,
        pieces: VecDeque::new(),
        rng: Generator::new(seed, 0.0),
        closed: false,
        ended: false,
        endpoint,
    };
    futures_util::stream::unfold(state, |mut f| async move {
        if f.closed {
            return None;
        }
        if f.ended && f.pieces.is_empty() {
            return None;
        }
        if let Some(piece) = f.pieces.pop_front() {
            // Let the previous piece reach the socket before this one.
            tokio::task::yield_now().await;
            return Some((Ok(piece), f));
        }
        if f.fault.close_after == Some(f.sent) {
            f.closed = true;
            // Let hyper flush what was sent before the connection goes down.
            tokio::task::yield_now().await;
            return Some((
                Err(std::io::Error::other(
                    "injected fault: connection closed mid-stream",
                )),
                f,
            ));
        }
        let event = if f.fault.error_after == Some(f.sent) {
            f.ended = true;
            engine_error_events(f.endpoint)
        } else if f.fault.malformed_after == Some(f.sent) {
            f.fault.malformed_after = None;
            Bytes::from_static(
                b"data: {\"id\":\"chatcmpl-malformed\",\"object\":\"chat.completion.chu\n\n",
            )
        } else {
            f.events.next().await?
        };
        f.sent += 1;
        match f.fault.split {
            None => Some((Ok(event), f)),
            Some(split) => {
                let mut rest = event;
                while !rest.is_empty() {
                    let n = match split {
                        Split::Fixed(n) => n,
                        Split::Random => f.rng.usize(1..=16),
                    }
                    .min(rest.len());
                    f.pieces.push_back(rest.split_to(n));
                }
                let first = f.pieces.pop_front().unwrap_or_default();
                Some((Ok(first), f))
            }
        }
    })
}

/// Body faults for non-streamed responses: `close_after` bytes, then the connection closes.
fn with_body_faults(response: Response<Body>, fault: &FaultSpec) -> Response<Body> {
    let Some(limit) = fault.close_after else {
        return response;
    };
    if response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    {
        return response; // streams count events instead
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let cut = async move {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        bytes.slice(..limit.min(bytes.len()))
    };
    let stream = futures_util::stream::once(cut)
        .map(Ok)
        .chain(futures_util::stream::once(async {
            tokio::task::yield_now().await;
            Err(std::io::Error::other(
                "injected fault: connection closed mid-body",
            ))
        }));
    Response::from_parts(
        parts,
        BodyExt::boxed(StreamBody::new(
            stream.map(|r: Result<Bytes, std::io::Error>| r.map(Frame::data)),
        )),
    )
}

fn embeddings(state: &State, headers: &HeaderMap, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let req = request::parse_embeddings(body)?;
    if let Some(model) = &req.model
        && *model != state.config.model
    {
        return Err(ApiError::unknown_pooling_model(model));
    }
    if let Some(p) = req
        .inputs
        .iter()
        .find(|p| p.tokens > state.config.max_model_len)
    {
        return Err(ApiError::prompt_over_context(
            p.tokens,
            state.config.max_model_len,
        ));
    }
    let dim = req.dimensions.unwrap_or(state.config.embedding_dimension);
    let vectors: Vec<Vec<f32>> = req
        .inputs
        .iter()
        .map(|p| {
            let mut g = Generator::new(
                tokenizer::stable_hash(&[&state.config.seed, &p.content_hash]),
                0.0,
            );
            let v: Vec<f32> = (0..dim).map(|_| g.unit()).collect();
            let norm = v
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt()
                .max(f32::MIN_POSITIVE);
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect();
    let prompt_tokens: u64 = req.inputs.iter().map(|p| u64::from(p.tokens)).sum();
    let id = format!("embd-{}", request_id(headers));
    let body = render::embeddings(
        &id,
        state.created(),
        &state.config.model,
        &vectors,
        req.base64,
        prompt_tokens,
    );
    Ok(full(StatusCode::OK, "application/json", body))
}

fn tokenize(state: &State, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let req = request::parse_tokenize(body)?;
    if let Some(model) = &req.model
        && *model != state.config.model
    {
        return Err(ApiError::unknown_model(model, &state.config.model));
    }
    Ok(full(
        StatusCode::OK,
        "application/json",
        render::tokenize(&req.tokens, state.config.max_model_len),
    ))
}
