//! vLLM's `llm_request` span, made whole: current semantic-convention keys, the model, the
//! gateway's own view of the call joined in, and the engine's phases as child spans.
//!
//! ## The phase arithmetic
//!
//! vLLM records, per request: arrival `A` (wall clock; the span's start), the span's end `E`,
//! and four durations taken on the engine's monotonic clock: `ttft` (first token − arrival),
//! `queue` (scheduled − queued), `prefill` (first token − scheduled), `decode` (last token −
//! first token). What happens between arrival and queueing (tokenisation, input processing) is
//! `pre = ttft − queue − prefill`. The children are laid end to end from `A`:
//!
//! ```text
//! preprocess [A, A+pre]            only when pre > 0
//! queue      [A+pre, A+pre+queue]
//! prefill    [.., +prefill]        ends at A+ttft when pre ≥ 0
//! decode     [.., +decode]
//! ```
//!
//! Every bound is clamped to `[A, E]`, so the children are ordered, never overlap and stay
//! inside the parent even when the two clocks disagree by a few microseconds (a negative `pre`
//! is treated as 0). Preemption time lands inside prefill or decode, as in vLLM's own numbers.

use inferscope_core::span::{KeyValue, Resource, Scope, SpanKind, SpanRecord, Value};
use inferscope_core::{SpanContext, SpanId};
use inferscope_semconv::dialect::Dialect;
use inferscope_semconv::openinference as oi;
use inferscope_semconv::value::operation;
use inferscope_semconv::{attr, inferscope as own, vllm};

use crate::join::JoinInfo;

/// Whether `span` is one of vLLM's start-up spans (`Load weights`, `Init device`, `Warmup
/// (GPU)`, kernel warm-ups …): vLLM marks them with the code location that made them
/// (`code.function`, or the current `code.function.name`), which its request spans never carry;
/// the names it used in 0.32 count too. A rule rather than a list: vLLM 0.33 and 0.34 added a
/// dozen names the list did not know.
pub(crate) fn is_startup(span: &SpanRecord) -> bool {
    let name = span.name.as_str();
    if name == vllm::LLM_REQUEST_SPAN {
        return false;
    }
    vllm::STARTUP_SPANS.contains(&name)
        || span.attributes.iter().any(|kv| {
            let k = kv.key.as_str();
            k == legacy_code::FUNCTION || k == code::FUNCTION_NAME
        })
}

/// The `code.*` keys deprecated since semantic conventions v1.30, as vLLM still writes them.
mod legacy_code {
    pub(super) const FUNCTION: &str = "code.function";
    pub(super) const NAMESPACE: &str = "code.namespace";
    pub(super) const FILEPATH: &str = "code.filepath";
    pub(super) const LINENO: &str = "code.lineno";
    pub(super) const COLUMN: &str = "code.column";
}

/// Their current replacements.
mod code {
    pub(super) const FUNCTION_NAME: &str = "code.function.name";
    pub(super) const FILE_PATH: &str = "code.file.path";
    pub(super) const LINE_NUMBER: &str = "code.line.number";
    pub(super) const COLUMN_NUMBER: &str = "code.column.number";
}

/// Rewrites the deprecated `code.*` keys as the current ones: `code.function.name` is the
/// fully qualified name (`code.namespace` + `.` + `code.function`), `code.file.path` the path,
/// and `code.line.number` / `code.column.number` integers (vLLM writes the line as a string).
/// With `keep_legacy` (the `vllm` dialect) the old keys stay beside the new ones.
pub(crate) fn current_code_keys(span: &mut SpanRecord, keep_legacy: bool) {
    let text = |span: &SpanRecord, key: &str| span.get(key).map(|v| v.to_string());
    let function = text(span, legacy_code::FUNCTION);
    let namespace = text(span, legacy_code::NAMESPACE);
    let file = text(span, legacy_code::FILEPATH);
    let number = |span: &SpanRecord, key: &str| match span.get(key) {
        Some(Value::I64(n)) => Some(*n),
        Some(Value::Str(s)) => s.as_str().trim().parse::<i64>().ok(),
        _ => None,
    };
    let line = number(span, legacy_code::LINENO);
    let column = number(span, legacy_code::COLUMN);
    if function.is_none()
        && namespace.is_none()
        && file.is_none()
        && line.is_none()
        && column.is_none()
    {
        return;
    }
    if span.get(code::FUNCTION_NAME).is_none()
        && let Some(f) = function
    {
        let qualified = match namespace.filter(|n| !n.is_empty()) {
            Some(n) => format!("{n}.{f}"),
            None => f,
        };
        span.set(code::FUNCTION_NAME, qualified);
    }
    if span.get(code::FILE_PATH).is_none()
        && let Some(f) = file
    {
        span.set(code::FILE_PATH, f);
    }
    if span.get(code::LINE_NUMBER).is_none()
        && let Some(n) = line
    {
        span.set(code::LINE_NUMBER, n);
    }
    if span.get(code::COLUMN_NUMBER).is_none()
        && let Some(n) = column
    {
        span.set(code::COLUMN_NUMBER, n);
    }
    if !keep_legacy {
        let legacy = [
            legacy_code::FUNCTION,
            legacy_code::NAMESPACE,
            legacy_code::FILEPATH,
            legacy_code::LINENO,
            legacy_code::COLUMN,
        ];
        span.attributes
            .retain(|kv| !legacy.contains(&kv.key.as_str()));
    }
}

/// A copy of `resource` with `service.name` set to `name`, when it has none or only the SDKs'
/// fallback (`unknown_service`, `unknown_service:python`); `None` when it names its service.
pub(crate) fn with_service_name(resource: &Resource, name: &str) -> Option<Resource> {
    let current = resource
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == SERVICE_NAME);
    match current.map(|kv| &kv.value) {
        Some(Value::Str(s)) if !s.as_str().starts_with("unknown_service") && !s.is_empty() => {
            return None;
        }
        _ => {}
    }
    let mut attributes: Vec<KeyValue> = resource
        .attributes
        .iter()
        .filter(|kv| kv.key.as_str() != SERVICE_NAME)
        .cloned()
        .collect();
    attributes.push(KeyValue {
        key: SERVICE_NAME.into(),
        value: Value::Str(name.to_owned().into()),
    });
    Some(Resource {
        attributes,
        ..resource.clone()
    })
}

/// The resource attribute naming a service.
const SERVICE_NAME: &str = "service.name";

/// What normalisation needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineOptions<'a> {
    /// `gen_ai.provider.name`.
    pub(crate) provider: &'a str,
    /// The model, when the gateway has no record of the call.
    pub(crate) engine_model: Option<&'a str>,
    /// Dialects: with [`Dialect::Vllm`] vLLM's own keys stay as they are.
    pub(crate) dialects: &'a [Dialect],
}

/// What the engine reports of a call, for OpenInference's `output.value` on its span: request
/// id, token counts, finish reasons and its timings, whichever dialect named them.
fn engine_output(r: &SpanRecord) -> String {
    let first = |keys: &[&str]| keys.iter().find_map(|k| r.get(k));
    let mut out = serde_json::Map::new();
    let mut put = |name: &str, v: Option<&Value>| {
        let json = match v {
            Some(Value::Str(s)) => serde_json::Value::from(s.as_str()),
            Some(Value::I64(n)) => serde_json::Value::from(*n),
            Some(Value::F64(f)) => serde_json::Value::from(*f),
            Some(Value::Bool(b)) => serde_json::Value::from(*b),
            Some(Value::StrArray(a)) => a.iter().map(|s| s.as_str()).collect(),
            None => return,
        };
        out.insert(name.to_owned(), json);
    };
    put(
        "request_id",
        first(&[vllm::renamed::REQUEST_ID, vllm::attr::REQUEST_ID]),
    );
    put(
        "input_tokens",
        first(&[vllm::renamed::USAGE_INPUT_TOKENS, attr::USAGE_INPUT_TOKENS]),
    );
    put(
        "output_tokens",
        first(&[
            vllm::renamed::USAGE_OUTPUT_TOKENS,
            attr::USAGE_OUTPUT_TOKENS,
        ]),
    );
    put("finish_reasons", r.get(attr::RESPONSE_FINISH_REASONS));
    put(
        "time_to_first_token_s",
        first(&[
            vllm::renamed::LATENCY_TIME_TO_FIRST_TOKEN,
            vllm::attr::LATENCY_TIME_TO_FIRST_TOKEN,
        ]),
    );
    put(
        "e2e_s",
        first(&[vllm::renamed::LATENCY_E2E, vllm::attr::LATENCY_E2E]),
    );
    serde_json::Value::Object(out).to_string()
}

/// vLLM's own timings of one finished request, as the conventions' server metrics want them
/// (`gen_ai.server.*`): read from `llm_request` before its keys are renamed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ServerTimings {
    /// Arrival to the last token, seconds.
    pub(crate) request_duration: Option<f64>,
    /// Arrival to the first token, seconds.
    pub(crate) time_to_first_token: Option<f64>,
    /// Decode time per output token after the first, seconds.
    pub(crate) time_per_output_token: Option<f64>,
}

/// The server timings of an `llm_request` span (vLLM records only requests that finished).
pub(crate) fn server_timings(r: &SpanRecord) -> ServerTimings {
    let output = r
        .get(vllm::attr::USAGE_COMPLETION_TOKENS)
        .or_else(|| r.get(attr::USAGE_OUTPUT_TOKENS))
        .and_then(Value::as_i64);
    let decode = f64_attr(r, vllm::attr::LATENCY_TIME_IN_MODEL_DECODE);
    ServerTimings {
        request_duration: f64_attr(r, vllm::attr::LATENCY_E2E).filter(|v| *v >= 0.0),
        time_to_first_token: f64_attr(r, vllm::attr::LATENCY_TIME_TO_FIRST_TOKEN)
            .filter(|v| *v >= 0.0),
        time_per_output_token: match (decode, output) {
            (Some(d), Some(n)) if n > 1 && d >= 0.0 => Some(d / (n - 1) as f64),
            _ => None,
        },
    }
}

/// vLLM's time to first token of an `llm_request`, seconds (legacy or current key).
pub(crate) fn engine_ttft(r: &SpanRecord) -> Option<f64> {
    f64_attr(r, vllm::attr::LATENCY_TIME_TO_FIRST_TOKEN)
}

fn f64_attr(r: &SpanRecord, key: &str) -> Option<f64> {
    r.get(key).and_then(Value::as_f64)
}

/// The operation a vLLM request id implies (`chatcmpl-…` chat, `cmpl-…` completions).
fn operation_of(request_id: Option<&str>) -> Option<&'static str> {
    let id = request_id?;
    if id.starts_with("chatcmpl-") {
        Some(operation::CHAT)
    } else if id.starts_with("cmpl-") {
        Some(operation::TEXT_COMPLETION)
    } else if id.starts_with("resp") {
        Some(operation::CHAT)
    } else {
        None
    }
}

/// Adds the current keys to an `llm_request` span, joins the gateway's view, and handles the
/// legacy keys per the dialects.
pub(crate) fn normalise(r: &mut SpanRecord, join: Option<&JoinInfo>, opts: EngineOptions<'_>) {
    r.dedup_attributes();
    let keep_legacy = opts.dialects.contains(&Dialect::Vllm);
    let request_id = r
        .get(vllm::attr::REQUEST_ID)
        .and_then(Value::as_str)
        .map(str::to_owned);
    let op = join
        .map(|j| j.operation)
        .or_else(|| operation_of(request_id.as_deref()));
    if let Some(op) = op {
        r.set(attr::OPERATION_NAME, op);
    }
    r.set(attr::PROVIDER_NAME, opts.provider.to_owned());
    let request_model = join
        .and_then(|j| j.request_model.clone())
        .or_else(|| opts.engine_model.map(str::to_owned));
    let response_model = join
        .and_then(|j| j.response_model.clone())
        .or_else(|| opts.engine_model.map(str::to_owned));
    if let Some(m) = request_model {
        r.set(attr::REQUEST_MODEL, m);
    }
    if let Some(m) = response_model {
        r.set(attr::RESPONSE_MODEL, m);
    }
    let input = r
        .get(attr::USAGE_INPUT_TOKENS)
        .or_else(|| r.get(vllm::attr::USAGE_PROMPT_TOKENS))
        .cloned();
    let output = r
        .get(attr::USAGE_OUTPUT_TOKENS)
        .or_else(|| r.get(vllm::attr::USAGE_COMPLETION_TOKENS))
        .cloned();
    // The trace state an inferscope client layer sets when its own span records the usage
    // (vLLM's span inherits it from the request's `tracestate`).
    let counted_upstream = inferscope_core::observe::call::usage_counted_upstream(&r.context.state);
    if join.is_some() || counted_upstream {
        // Nested under the gateway's CLIENT span (or an application's), which carries the
        // request's usage: a backend that sums usage over a trace (Phoenix does) must find it
        // once, not once more per engine span (for `n` = 2, the prompt three times). The
        // engine's counts stay, under `vllm.usage.*`, in every dialect.
        if let Some(v) = input {
            r.set(vllm::renamed::USAGE_INPUT_TOKENS, v);
        }
        if let Some(v) = output {
            r.set(vllm::renamed::USAGE_OUTPUT_TOKENS, v);
        }
        let usage = [
            attr::USAGE_INPUT_TOKENS,
            attr::USAGE_OUTPUT_TOKENS,
            vllm::attr::USAGE_PROMPT_TOKENS,
            vllm::attr::USAGE_COMPLETION_TOKENS,
        ];
        r.attributes.retain(|kv| !usage.contains(&kv.key.as_str()));
    } else {
        // No gateway span above it: the engine span is the only one with the counts.
        if let Some(v) = input {
            r.set(attr::USAGE_INPUT_TOKENS, v);
        }
        if let Some(v) = output {
            r.set(attr::USAGE_OUTPUT_TOKENS, v);
        }
    }
    // vLLM splits `n` > 1 into sequences whose spans each say n=1; the client's `n` is the
    // request's choice count.
    let n = join
        .and_then(|j| j.choice_count)
        .or_else(|| r.get(vllm::attr::REQUEST_N).and_then(Value::as_i64));
    if let Some(n) = n.filter(|n| *n != 1) {
        r.set(attr::REQUEST_CHOICE_COUNT, n);
    }
    // vLLM drops a temperature of 0 from its span; the gateway saw the request.
    if r.get(attr::REQUEST_TEMPERATURE).is_none()
        && let Some(t) = join.and_then(|j| j.temperature)
    {
        r.set(attr::REQUEST_TEMPERATURE, t);
    }
    r.set(own::GATEWAY_JOINED, join.is_some());
    let mut engine_summary = false;
    if join.is_some() && opts.dialects.contains(&Dialect::OpenInference) {
        // The model call is the gateway's CLIENT span (kind LLM, with the input, output and
        // tokens); the engine's span under it is a step of that call. Without a kind, Phoenix
        // would read its gen_ai.* keys as a second LLM call with a made-up output.
        r.set(oi::SPAN_KIND, oi::span_kind::CHAIN);
        engine_summary = true;
    }
    if let Some(j) = join {
        if !j.finish_reasons.is_empty() {
            r.set(attr::RESPONSE_FINISH_REASONS, j.finish_reasons.clone());
        }
        // With several choices each sequence is compared with the choice it was paired with
        // (`JoinReader::claim_choice`), never with the stream's first chunk, which belongs to
        // one of them only.
        let single = j.choice_count.is_none_or(|n| n <= 1);
        let client = match j.matched_choice {
            Some((index, client)) => {
                r.set(own::TTFT_CHOICE_INDEX, i64::from(index));
                Some(client)
            }
            None if single => j.time_to_first_chunk,
            None => None,
        };
        if let Some(client) = client {
            r.set(own::GATEWAY_TIME_TO_FIRST_CHUNK, client);
            if let Some(engine) = engine_ttft(r) {
                r.set(own::TTFT_OUTSIDE_ENGINE, client - engine);
            }
        }
    }
    if !keep_legacy {
        let legacy = [
            vllm::attr::USAGE_PROMPT_TOKENS,
            vllm::attr::USAGE_COMPLETION_TOKENS,
            vllm::attr::REQUEST_N,
            vllm::attr::USAGE_NUM_SEQUENCES,
        ];
        r.attributes.retain(|kv| !legacy.contains(&kv.key.as_str()));
        for kv in &mut r.attributes {
            if let Some((_, to)) = vllm::renamed::MAP
                .iter()
                .find(|(from, _)| *from == kv.key.as_str())
            {
                kv.key = (*to).into();
            }
        }
    }
    if engine_summary {
        // Phoenix makes an output up from gen_ai.response.* when a span has none ({"model":
        // …}); the engine's own account of the call is better.
        let summary = engine_output(r);
        r.set(oi::OUTPUT_VALUE, summary);
        r.set(oi::OUTPUT_MIME_TYPE, "application/json");
    }
}

/// The phases of an `llm_request` span as INTERNAL child spans (see the module docs), or none
/// when its latencies are missing. Call before [`normalise`], which may rename them.
pub(crate) fn phases(r: &SpanRecord) -> Vec<SpanRecord> {
    let (Some(ttft), Some(queue), Some(prefill), Some(decode)) = (
        f64_attr(r, vllm::attr::LATENCY_TIME_TO_FIRST_TOKEN),
        f64_attr(r, vllm::attr::LATENCY_TIME_IN_QUEUE),
        f64_attr(r, vllm::attr::LATENCY_TIME_IN_MODEL_PREFILL),
        f64_attr(r, vllm::attr::LATENCY_TIME_IN_MODEL_DECODE),
    ) else {
        return Vec::new();
    };
    let ns = |s: f64| {
        if s.is_finite() && s > 0.0 {
            (s * 1e9).round() as u64
        } else {
            0
        }
    };
    let (a, e) = (r.start_unix_nanos, r.end_unix_nanos.max(r.start_unix_nanos));
    let pre = ns(ttft - queue - prefill);
    let scope = Scope::new(vllm::phase::SCOPE);
    let mut out = Vec::with_capacity(4);
    let mut t = a;
    for (name, d) in [
        (vllm::phase::PREPROCESS, pre),
        (vllm::phase::QUEUE, ns(queue)),
        (vllm::phase::PREFILL, ns(prefill)),
        (vllm::phase::DECODE, ns(decode)),
    ] {
        let (start, end) = (t.min(e), t.saturating_add(d).min(e));
        t = t.saturating_add(d);
        if name == vllm::phase::PREPROCESS && d == 0 {
            continue;
        }
        let ctx = SpanContext {
            span_id: SpanId::random(),
            remote: false,
            ..r.context.clone()
        };
        let mut child = SpanRecord::new(
            ctx,
            Some(&r.context),
            name,
            SpanKind::Internal,
            std::time::UNIX_EPOCH,
            scope.clone(),
        );
        child.start_unix_nanos = start;
        child.end_unix_nanos = end;
        child.resource = r.resource.clone();
        child
            .attributes
            .push(KeyValue::new(own::ENGINE_PHASE_SECONDS, d as f64 / 1e9));
        out.push(child);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferscope_core::{Scope, TraceFlags, TraceId, TraceState};

    fn resource(attrs: &[(&'static str, &'static str)]) -> Resource {
        Resource {
            attributes: attrs
                .iter()
                .map(|(k, v)| KeyValue {
                    key: (*k).into(),
                    value: Value::Str((*v).into()),
                })
                .collect(),
            dropped_attributes: 0,
            schema_url: None,
        }
    }

    fn service(r: &Resource) -> Vec<String> {
        r.attributes
            .iter()
            .filter(|kv| kv.key.as_str() == SERVICE_NAME)
            .map(|kv| kv.value.to_string())
            .collect()
    }

    fn startup_span(name: &'static str, attrs: &[(&'static str, Value)]) -> SpanRecord {
        let mut r = llm_request(0, 0.1, 0.03, 0.001, 0.01, 0.05);
        r.name = name.into();
        r.attributes = attrs
            .iter()
            .map(|(k, v)| KeyValue {
                key: (*k).into(),
                value: v.clone(),
            })
            .collect();
        r
    }

    fn vllm_code(function: &'static str) -> Vec<(&'static str, Value)> {
        vec![
            ("code.function", Value::Str(function.into())),
            (
                "code.namespace",
                Value::Str("vllm.v1.worker.gpu_worker".into()),
            ),
            (
                "code.filepath",
                Value::Str("/srv/vllm/v1/worker/gpu_worker.py".into()),
            ),
            ("code.lineno", Value::Str("852".into())),
        ]
    }

    #[test]
    fn startup_spans_are_known_by_their_code_location_not_their_name() {
        // vLLM 0.33/0.34 names the 0.32 list never had.
        for name in [
            "API server setup",
            "SyncMPClient init",
            "Init device",
            "Warmup (GPU)",
            "Download weights - HF",
            "Compile graph",
            "Inductor compilation",
            "Warmup kernels",
        ] {
            assert!(
                is_startup(&startup_span(name, &vllm_code("Worker.init_device"))),
                "{name}"
            );
            assert!(
                !is_startup(&startup_span(name, &[])),
                "{name} without a code location"
            );
        }
        assert!(is_startup(&startup_span(
            "Anything",
            &[("code.function.name", Value::Str("a.b".into()))]
        )));
        assert!(
            is_startup(&startup_span("Load weights", &[])),
            "0.32's names still count"
        );
        let mut request = startup_span("llm_request", &vllm_code("f"));
        assert!(!is_startup(&request));
        request.name = "some request span".into();
        assert!(is_startup(&request));
    }

    #[test]
    fn legacy_code_keys_become_the_current_ones_with_their_types() {
        let mut r = startup_span(
            "Allocate KV cache",
            &vllm_code("Worker.initialize_from_config"),
        );
        r.attributes.push(KeyValue {
            key: "code.column".into(),
            value: Value::I64(5),
        });
        current_code_keys(&mut r, false);
        assert_eq!(
            r.get("code.function.name").and_then(Value::as_str),
            Some("vllm.v1.worker.gpu_worker.Worker.initialize_from_config")
        );
        assert_eq!(
            r.get("code.file.path").and_then(Value::as_str),
            Some("/srv/vllm/v1/worker/gpu_worker.py")
        );
        assert_eq!(r.get("code.line.number"), Some(&Value::I64(852)));
        assert_eq!(r.get("code.column.number"), Some(&Value::I64(5)));
        for old in [
            "code.function",
            "code.namespace",
            "code.filepath",
            "code.lineno",
            "code.column",
        ] {
            assert!(r.get(old).is_none(), "{old} removed");
        }
        let mut kept = startup_span("Load model", &vllm_code("load_model"));
        current_code_keys(&mut kept, true);
        assert!(kept.get("code.lineno").is_some() && kept.get("code.line.number").is_some());
        // A line that is not a number is dropped from the new key, not guessed.
        let mut odd = startup_span("x", &[("code.lineno", Value::Str("n/a".into()))]);
        current_code_keys(&mut odd, false);
        assert!(odd.get("code.line.number").is_none());
        // Nothing to do: nothing changes.
        let mut plain = llm_request(0, 0.1, 0.03, 0.001, 0.01, 0.05);
        let before = plain.attributes.len();
        current_code_keys(&mut plain, false);
        assert_eq!(plain.attributes.len(), before);
    }

    #[test]
    fn server_timings_come_from_vllms_latencies() {
        let r = llm_request(0, 0.1, 0.03, 0.001, 0.01, 0.05);
        let t = server_timings(&r);
        assert_eq!(t.request_duration, Some(0.1));
        assert_eq!(t.time_to_first_token, Some(0.03));
        let n = r
            .get(vllm::attr::USAGE_COMPLETION_TOKENS)
            .and_then(Value::as_i64)
            .unwrap_or(0);
        assert!(n > 1);
        let tpot = t.time_per_output_token.unwrap_or(f64::NAN);
        assert!((tpot - 0.05 / (n - 1) as f64).abs() < 1e-12, "{tpot}");
    }

    #[test]
    fn engine_spans_without_a_service_get_the_configured_one() {
        for unnamed in [
            resource(&[("vllm.process_id", "7")]),
            resource(&[
                ("service.name", "unknown_service:python"),
                ("vllm.process_id", "7"),
            ]),
            resource(&[("service.name", "unknown_service")]),
            resource(&[("service.name", "")]),
        ] {
            let named =
                with_service_name(&unnamed, "vllm").unwrap_or_else(|| panic!("{unnamed:?}"));
            assert_eq!(service(&named), ["vllm"]);
            let others = |r: &Resource| {
                r.attributes
                    .iter()
                    .filter(|kv| kv.key.as_str() != SERVICE_NAME)
                    .count()
            };
            assert_eq!(others(&named), others(&unnamed));
        }
        let named = resource(&[("service.name", "llama-70b"), ("vllm.process_id", "7")]);
        assert!(
            with_service_name(&named, "vllm").is_none(),
            "a name the user set stays"
        );
    }

    fn llm_request(
        start: u64,
        e2e: f64,
        ttft: f64,
        queue: f64,
        prefill: f64,
        decode: f64,
    ) -> SpanRecord {
        let ctx = SpanContext {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            flags: TraceFlags(1),
            state: TraceState::default(),
            remote: false,
        };
        let mut r = SpanRecord::new(
            ctx,
            None,
            vllm::LLM_REQUEST_SPAN,
            SpanKind::Server,
            std::time::UNIX_EPOCH,
            Scope::new(vllm::TRACING_SCOPE),
        );
        r.start_unix_nanos = start;
        r.end_unix_nanos = start + (e2e * 1e9) as u64;
        r.push(vllm::attr::REQUEST_ID, "chatcmpl-abc");
        r.push(vllm::attr::USAGE_PROMPT_TOKENS, 26i64);
        r.push(vllm::attr::USAGE_COMPLETION_TOKENS, 8i64);
        r.push(vllm::attr::REQUEST_N, 1i64);
        r.push(vllm::attr::LATENCY_TIME_TO_FIRST_TOKEN, ttft);
        r.push(vllm::attr::LATENCY_E2E, e2e);
        r.push(vllm::attr::LATENCY_TIME_IN_QUEUE, queue);
        r.push(vllm::attr::LATENCY_TIME_IN_MODEL_PREFILL, prefill);
        r.push(vllm::attr::LATENCY_TIME_IN_MODEL_DECODE, decode);
        r
    }

    #[test]
    fn an_engine_span_whose_usage_an_application_span_counted_keeps_it_off_gen_ai_usage() {
        let opts = EngineOptions {
            provider: "vllm",
            engine_model: None,
            dialects: &[Dialect::OTel],
        };
        let mut r = llm_request(0, 0.1, 0.03, 0.001, 0.01, 0.05);
        r.context.state = TraceState::parse(["inferscope=u,other=1"]);
        normalise(&mut r, None, opts);
        assert!(r.get(attr::USAGE_INPUT_TOKENS).is_none());
        assert!(r.get(attr::USAGE_OUTPUT_TOKENS).is_none());
        assert_eq!(
            r.get(vllm::renamed::USAGE_OUTPUT_TOKENS)
                .and_then(Value::as_i64),
            Some(8)
        );
    }

    fn check_layout(parent: &SpanRecord, kids: &[SpanRecord]) {
        let mut t = parent.start_unix_nanos;
        for k in kids {
            assert_eq!(k.parent_span_id, Some(parent.context.span_id));
            assert_eq!(k.context.trace_id, parent.context.trace_id);
            assert!(
                k.start_unix_nanos >= t,
                "{} overlaps its predecessor",
                k.name
            );
            assert!(k.end_unix_nanos >= k.start_unix_nanos);
            assert!(
                k.end_unix_nanos <= parent.end_unix_nanos,
                "{} ends after the parent",
                k.name
            );
            t = k.end_unix_nanos;
        }
    }

    #[test]
    fn phases_add_up_from_the_real_fixture_numbers() {
        // Span 57e58a5fcbee905d of ../shared/fixtures/vllm-0.32-cpu/spans-for-http-fixtures.jsonl.
        let r = llm_request(
            1_000_000_000,
            0.032194629,
            0.011130809783935547,
            4.805100002158724e-05,
            0.007926183000108722,
            0.02109351199987941,
        );
        let kids = phases(&r);
        let names: Vec<&str> = kids.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["preprocess", "queue", "prefill", "decode"]);
        check_layout(&r, &kids);
        // prefill ends at arrival + ttft. ttft + decode overshoots the span by 30 µs (two
        // clocks), so decode is clamped to end with its parent.
        assert_eq!(kids[2].end_unix_nanos, 1_000_000_000 + 11_130_810);
        assert_eq!(kids[3].end_unix_nanos, r.end_unix_nanos);
        assert_eq!(
            kids[3].end_unix_nanos - kids[3].start_unix_nanos,
            21_063_819
        );
    }

    #[test]
    fn clocks_that_disagree_still_give_a_consistent_layout() {
        // queue + prefill > ttft (no preprocess), decode runs past the end.
        let r = llm_request(5, 0.010, 0.004, 0.003, 0.002, 0.009);
        let kids = phases(&r);
        assert_eq!(kids.len(), 3);
        check_layout(&r, &kids);
        assert_eq!(kids[2].end_unix_nanos, r.end_unix_nanos);
        // Garbage numbers: no panic, still inside.
        let r = llm_request(5, 0.001, f64::NAN, -1.0, f64::INFINITY, 1e300);
        check_layout(&r, &phases(&r));
    }

    #[test]
    fn normalise_current_keys_join_and_dialects() {
        let opts = EngineOptions {
            provider: "vllm",
            engine_model: Some("cfg-model"),
            dialects: &[Dialect::OTel],
        };
        let mut r = llm_request(0, 0.1, 0.03, 0.001, 0.01, 0.05);
        normalise(&mut r, None, opts);
        assert_eq!(
            r.get(attr::OPERATION_NAME).and_then(Value::as_str),
            Some("chat")
        );
        assert_eq!(
            r.get(attr::REQUEST_MODEL).and_then(Value::as_str),
            Some("cfg-model")
        );
        assert_eq!(
            r.get(attr::USAGE_INPUT_TOKENS).and_then(Value::as_i64),
            Some(26)
        );
        assert_eq!(
            r.get(attr::USAGE_OUTPUT_TOKENS).and_then(Value::as_i64),
            Some(8)
        );
        assert!(r.get(vllm::attr::USAGE_PROMPT_TOKENS).is_none());
        assert!(r.get(vllm::attr::LATENCY_E2E).is_none());
        assert_eq!(
            r.get(vllm::renamed::LATENCY_E2E).and_then(Value::as_f64),
            Some(0.1)
        );
        assert_eq!(
            r.get(vllm::renamed::REQUEST_ID).and_then(Value::as_str),
            Some("chatcmpl-abc")
        );
        assert_eq!(r.get(own::GATEWAY_JOINED), Some(&Value::Bool(false)));

        let join = JoinInfo {
            operation: "chat",
            request_model: Some("asked".into()),
            response_model: Some("served".into()),
            finish_reasons: vec!["length".into()],
            time_to_first_chunk: Some(0.035),
            temperature: Some(0.0),
            done: true,
            ..JoinInfo::default()
        };
        let mut r = llm_request(0, 0.1, 0.03, 0.001, 0.01, 0.05);
        normalise(
            &mut r,
            Some(&join),
            EngineOptions {
                dialects: &[Dialect::OTel, Dialect::Vllm],
                ..opts
            },
        );
        assert_eq!(
            r.get(attr::REQUEST_MODEL).and_then(Value::as_str),
            Some("asked")
        );
        assert_eq!(
            r.get(attr::RESPONSE_MODEL).and_then(Value::as_str),
            Some("served")
        );
        assert_eq!(
            r.get(attr::REQUEST_TEMPERATURE).and_then(Value::as_f64),
            Some(0.0)
        );
        assert!(
            (r.get(own::TTFT_OUTSIDE_ENGINE)
                .and_then(Value::as_f64)
                .unwrap()
                - 0.005)
                .abs()
                < 1e-12
        );
        // Joined under the gateway's CLIENT span, which carries the request's usage: the
        // engine's counts move to vllm.usage.*, in every dialect, so a trace sums them once.
        for key in [
            attr::USAGE_INPUT_TOKENS,
            attr::USAGE_OUTPUT_TOKENS,
            vllm::attr::USAGE_PROMPT_TOKENS,
            vllm::attr::USAGE_COMPLETION_TOKENS,
        ] {
            assert!(r.get(key).is_none(), "{key}");
        }
        assert_eq!(
            r.get(vllm::renamed::USAGE_INPUT_TOKENS)
                .and_then(Value::as_i64),
            Some(26)
        );
        assert!(r.get(vllm::renamed::USAGE_OUTPUT_TOKENS).is_some());
        // Without the openinference dialect, no OpenInference keys.
        assert!(r.get(oi::SPAN_KIND).is_none() && r.get(oi::OUTPUT_VALUE).is_none());
        let mut phoenix = llm_request(0, 0.1, 0.03, 0.001, 0.01, 0.05);
        normalise(
            &mut phoenix,
            Some(&join),
            EngineOptions {
                dialects: &[Dialect::OTel, Dialect::OpenInference],
                ..opts
            },
        );
        // A step of the gateway's LLM call, with the engine's own account as its output.
        assert_eq!(
            phoenix.get(oi::SPAN_KIND).and_then(Value::as_str),
            Some("CHAIN")
        );
        let output: serde_json::Value = serde_json::from_str(
            phoenix
                .get(oi::OUTPUT_VALUE)
                .and_then(Value::as_str)
                .unwrap_or(""),
        )
        .unwrap_or_default();
        assert_eq!(output["input_tokens"], 26);
        assert_eq!(output["finish_reasons"][0], "length");
        assert_eq!(output["e2e_s"], 0.1);
        // The vllm dialect keeps the other legacy keys beside the new ones.
        assert_eq!(
            r.get(vllm::attr::LATENCY_E2E).and_then(Value::as_f64),
            Some(0.1)
        );
    }
}
