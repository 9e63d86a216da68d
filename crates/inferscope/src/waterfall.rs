//! Renders traces as waterfalls in the terminal: the span tree, a time bar per span, and the
//! facts a platform engineer looks for first (TTFT, tokens, finish reasons, errors).

use std::collections::HashMap;
use std::fmt::Write as _;

use inferscope_core::span::{SpanRecord, Status, Value};
use inferscope_core::{SpanId, TraceId};
use inferscope_semconv::{attr, http, inferscope, vllm};

const BAR: usize = 32;

/// Every trace among `spans`, in start order, one waterfall each.
pub(crate) fn render(spans: &[SpanRecord]) -> String {
    let mut traces: Vec<(TraceId, Vec<&SpanRecord>)> = Vec::new();
    for s in spans {
        match traces.iter_mut().find(|(t, _)| *t == s.context.trace_id) {
            Some((_, v)) => v.push(s),
            None => traces.push((s.context.trace_id, vec![s])),
        }
    }
    traces.sort_by_key(|(_, v)| v.iter().map(|s| s.start_unix_nanos).min());
    let mut out = String::new();
    for (trace, spans) in traces {
        render_trace(&mut out, trace, &spans);
    }
    out
}

fn render_trace(out: &mut String, trace: TraceId, spans: &[&SpanRecord]) {
    let start = spans.iter().map(|s| s.start_unix_nanos).min().unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.end_unix_nanos)
        .max()
        .unwrap_or(start)
        .max(start + 1);
    let ids: HashMap<SpanId, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.context.span_id, i))
        .collect();
    let mut children: HashMap<Option<SpanId>, Vec<usize>> = HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        let parent = s.parent_span_id.filter(|p| ids.contains_key(p));
        children.entry(parent).or_default().push(i);
    }
    for v in children.values_mut() {
        v.sort_by_key(|&i| spans[i].start_unix_nanos);
    }
    let _ = writeln!(out, "trace {trace}  ({:.1} ms)", (end - start) as f64 / 1e6);
    let mut stack: Vec<(usize, String, bool)> = children
        .get(&None)
        .map(|roots| {
            roots
                .iter()
                .rev()
                .map(|&i| (i, String::new(), true))
                .collect()
        })
        .unwrap_or_default();
    let mut first = true;
    while let Some((i, prefix, last)) = stack.pop() {
        let s = spans[i];
        let branch = if first {
            ""
        } else if last {
            "└ "
        } else {
            "├ "
        };
        first = false;
        let label = format!("{prefix}{branch}{}", s.name);
        let _ = write!(out, "  {label:<38} {:<8} ", s.kind.as_str());
        bar(out, s, start, end);
        let _ = write!(out, " {:>9.2} ms", s.duration().as_secs_f64() * 1e3);
        facts(out, s);
        out.push('\n');
        let child_prefix = if branch.is_empty() {
            prefix.clone()
        } else {
            format!("{prefix}{}", if last { "  " } else { "│ " })
        };
        if !children.contains_key(&Some(s.context.span_id)) {
            // No phase spans came with it (no engine ingest): draw them from vLLM's latencies.
            phases(out, s, &child_prefix, start, end);
        }
        if let Some(kids) = children.get(&Some(s.context.span_id)) {
            for (n, &k) in kids.iter().enumerate().rev() {
                stack.push((k, child_prefix.clone(), n + 1 == kids.len()));
            }
        }
    }
    out.push('\n');
}

/// vLLM's phases, from the latencies on its `llm_request` span: what happened before
/// queueing (tokenisation), queue, prefill, decode. Drawn as rows under the span.
fn phases(out: &mut String, s: &SpanRecord, prefix: &str, start: u64, end: u64) {
    if s.name.as_str() != vllm::LLM_REQUEST_SPAN {
        return;
    }
    let secs = |k: &str| s.get(k).and_then(Value::as_f64);
    let (Some(ttft), Some(queue), Some(prefill), Some(decode)) = (
        secs(vllm::attr::LATENCY_TIME_TO_FIRST_TOKEN),
        secs(vllm::attr::LATENCY_TIME_IN_QUEUE),
        secs(vllm::attr::LATENCY_TIME_IN_MODEL_PREFILL),
        secs(vllm::attr::LATENCY_TIME_IN_MODEL_DECODE),
    ) else {
        return;
    };
    let pre = (ttft - queue - prefill).max(0.0);
    let mut t = s.start_unix_nanos as f64;
    for (name, d) in [
        ("preprocess", pre),
        ("queue", queue),
        ("prefill", prefill),
        ("decode", decode),
    ] {
        let from = t as u64;
        t += d * 1e9;
        let label = format!("{prefix}  · {name}");
        let _ = write!(out, "  {label:<38} {:<8} ", "phase");
        span_bar(out, from, t as u64, start, end);
        let _ = writeln!(out, " {:>9.2} ms", d * 1e3);
    }
}

fn bar(out: &mut String, s: &SpanRecord, start: u64, end: u64) {
    span_bar(out, s.start_unix_nanos, s.end_unix_nanos, start, end);
}

fn span_bar(out: &mut String, s_start: u64, s_end: u64, start: u64, end: u64) {
    let total = (end - start) as f64;
    let from = ((s_start.saturating_sub(start)) as f64 / total * BAR as f64).floor() as usize;
    let to = ((s_end.saturating_sub(start)) as f64 / total * BAR as f64).ceil() as usize;
    let (from, to) = (from.min(BAR - 1), to.clamp(from + 1, BAR));
    out.push('│');
    for c in 0..BAR {
        out.push(if c >= from && c < to { '█' } else { ' ' });
    }
    out.push('│');
}

fn facts(out: &mut String, s: &SpanRecord) {
    let get = |k: &str| s.get(k);
    let mut parts: Vec<String> = Vec::new();
    if let Some(code) = get(http::RESPONSE_STATUS_CODE) {
        parts.push(format!("HTTP {code}"));
    }
    if let Some(t) = get(attr::RESPONSE_TIME_TO_FIRST_CHUNK).and_then(Value::as_f64) {
        parts.push(format!("ttft {:.1} ms", t * 1e3));
    }
    if let Some(t) = get(vllm::attr::LATENCY_TIME_TO_FIRST_TOKEN)
        .or_else(|| get(vllm::renamed::LATENCY_TIME_TO_FIRST_TOKEN))
        .and_then(Value::as_f64)
    {
        parts.push(format!("engine ttft {:.1} ms", t * 1e3));
    }
    let input = get(attr::USAGE_INPUT_TOKENS).or_else(|| get(vllm::attr::USAGE_PROMPT_TOKENS));
    let output =
        get(attr::USAGE_OUTPUT_TOKENS).or_else(|| get(vllm::attr::USAGE_COMPLETION_TOKENS));
    match (input, output) {
        (Some(i), Some(o)) => parts.push(format!("{i}→{o} tokens")),
        (Some(i), None) => parts.push(format!("{i} tokens in")),
        _ => {}
    }
    if let Some(o) = get(inferscope::TTFT_OUTSIDE_ENGINE).and_then(Value::as_f64) {
        parts.push(format!("ttft outside engine {:.1} ms", o * 1e3));
    }
    if let Some(n) = get(inferscope::STREAM_CHUNK_COUNT) {
        parts.push(format!("{n} chunks"));
    }
    if let Some(g) = get(inferscope::STREAM_CHUNK_GAP_P50).and_then(Value::as_f64) {
        parts.push(format!("gap p50 {:.1} ms", g * 1e3));
    }
    if let Some(d) = get(attr::EMBEDDINGS_DIMENSION_COUNT) {
        parts.push(format!("dim {d}"));
    }
    if let Some(t) = get(inferscope::RESPONSE_TOOL_CALL_NAMES) {
        parts.push(format!(
            "tool call {}",
            t.to_string().trim_matches(['[', ']'])
        ));
    }
    if let Some(f) = get(attr::RESPONSE_FINISH_REASONS) {
        parts.push(format!("finish {}", f.to_string().trim_matches(['[', ']'])));
    }
    if let Some(e) = get(attr::ERROR_TYPE) {
        parts.push(format!("error.type {e}"));
    }
    if let Status::Error(m) = &s.status {
        parts.push(format!("ERROR {m}"));
    }
    if !parts.is_empty() {
        let _ = write!(out, "  {}", parts.join(" · "));
    }
}
