//! The console sink: one readable line per request.
//!
//! A request is a span whose parent is absent or not in the same batch; the spans under it in
//! the batch (the CLIENT span of a gateway request, vLLM's engine span) are folded into its line:
//!
//! ```text
//! 2026-11-23T05:50:00.123Z POST /v1/chat/completions › chat tiny-llama  153.2ms ok  ttft=23.1ms tokens=5→16 finish=stop spans=2 trace=4bf92f3577b34da6a3ce929d0e0e4736
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use futures_util::future::BoxFuture;
use inferscope_core::SpanId;
use inferscope_core::span::{SpanRecord, Status, Value};
use inferscope_semconv::{attr, http};

use crate::exporter::{Accepted, ExportError, SpanExporter};

/// Prints one line per request to a writer (standard output by default).
pub struct ConsoleExporter {
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for ConsoleExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleExporter")
    }
}

impl Default for ConsoleExporter {
    fn default() -> ConsoleExporter {
        ConsoleExporter::new(Box::new(std::io::stdout()))
    }
}

impl ConsoleExporter {
    /// Prints to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> ConsoleExporter {
        ConsoleExporter {
            out: Mutex::new(out),
        }
    }
}

impl SpanExporter for ConsoleExporter {
    fn name(&self) -> &'static str {
        "console"
    }

    fn export<'a>(
        &'a self,
        batch: &'a [SpanRecord],
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Accepted, ExportError>> {
        let text = format_batch(batch);
        let result = match self.out.lock() {
            Ok(mut out) => out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| ExportError::permanent(format!("console: {e}"))),
            Err(_) => Err(ExportError::permanent("console: writer poisoned")),
        };
        Box::pin(async move { result.map(|()| Accepted::default()) })
    }
}

/// The lines for a batch, one per request.
pub fn format_batch(batch: &[SpanRecord]) -> String {
    let by_id: HashMap<SpanId, usize> = batch
        .iter()
        .enumerate()
        .map(|(i, s)| (s.context.span_id, i))
        .collect();
    let root_of = |mut i: usize| -> usize {
        for _ in 0..batch.len() {
            let s = &batch[i];
            // A parent in the batch is followed even when remote (the gateway's CLIENT span
            // and vLLM's llm_request under it are one request).
            match s.parent_span_id.and_then(|p| by_id.get(&p)) {
                Some(&p) if batch[p].context.trace_id == s.context.trace_id => i = p,
                _ => break,
            }
        }
        i
    };
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for i in 0..batch.len() {
        let root = root_of(i);
        match groups.iter_mut().find(|(r, _)| *r == root) {
            Some((_, members)) => members.push(i),
            None => groups.push((root, vec![i])),
        }
    }
    let mut out = String::new();
    for (root, members) in groups {
        let spans: Vec<&SpanRecord> = members.iter().map(|&i| &batch[i]).collect();
        line(&mut out, &batch[root], &spans);
    }
    out
}

fn line(out: &mut String, root: &SpanRecord, spans: &[&SpanRecord]) {
    let find = |key: &str| spans.iter().find_map(|s| s.get(key));
    let inference = spans.iter().find(|s| {
        s.get(attr::OPERATION_NAME).is_some() && s.context.span_id != root.context.span_id
    });
    let _ = write!(out, "{} {}", iso8601(root.start_unix_nanos), root.name);
    if let Some(inf) = inference {
        let _ = write!(out, " › {}", inf.name);
    }
    let _ = write!(out, "  {:.1}ms ", root.duration().as_secs_f64() * 1e3);
    let error = spans.iter().find_map(|s| match &s.status {
        Status::Error(m) => Some(m.clone()),
        _ => None,
    });
    match (&error, find(http::RESPONSE_STATUS_CODE)) {
        (Some(m), _) => {
            let _ = write!(out, "error({m})");
        }
        (None, Some(code)) => {
            let _ = write!(out, "{code}");
        }
        (None, None) => out.push_str("ok"),
    }
    if let Some(t) = find(attr::RESPONSE_TIME_TO_FIRST_CHUNK).and_then(Value::as_f64) {
        let _ = write!(out, "  ttft={:.1}ms", t * 1e3);
    }
    match (
        find(attr::USAGE_INPUT_TOKENS),
        find(attr::USAGE_OUTPUT_TOKENS),
    ) {
        (Some(i), Some(o)) => {
            let _ = write!(out, " tokens={i}→{o}");
        }
        (Some(i), None) => {
            let _ = write!(out, " tokens={i}");
        }
        _ => {}
    }
    if let Some(f) = find(attr::RESPONSE_FINISH_REASONS) {
        let _ = write!(out, " finish={}", f.to_string().trim_matches(['[', ']']));
    }
    if let Some(e) = find(attr::ERROR_TYPE) {
        let _ = write!(out, " error.type={e}");
    }
    if spans.len() > 1 {
        let _ = write!(out, " spans={}", spans.len());
    }
    let _ = writeln!(out, " trace={}", root.context.trace_id);
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for nanoseconds since the Unix epoch.
pub fn iso8601(unix_nanos: u64) -> String {
    let secs = unix_nanos / 1_000_000_000;
    let millis = (unix_nanos % 1_000_000_000) / 1_000_000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferscope_core::span::{Scope, SpanKind};
    use inferscope_core::{SpanContext, TraceFlags, TraceId};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123_000_000), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            iso8601(1_795_355_065_518_691_840),
            "2026-11-22T13:44:25.518Z"
        );
    }

    #[test]
    fn a_gateway_request_is_one_line() {
        let scope = Scope::new("t");
        let trace = TraceId([9; 16]);
        let server_ctx = SpanContext {
            trace_id: trace,
            span_id: SpanId([1; 8]),
            flags: TraceFlags::SAMPLED,
            ..SpanContext::default()
        };
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut server = SpanRecord::new(
            server_ctx.clone(),
            None,
            "POST /v1/chat/completions",
            SpanKind::Server,
            t0,
            scope.clone(),
        );
        server.end_unix_nanos = server.start_unix_nanos + 150_000_000;
        server.push(http::RESPONSE_STATUS_CODE, 200i64);
        let client_ctx = SpanContext {
            span_id: SpanId([2; 8]),
            ..server_ctx.clone()
        };
        let mut client = SpanRecord::new(
            client_ctx,
            Some(&server_ctx),
            "chat tiny-llama",
            SpanKind::Client,
            t0,
            scope,
        );
        client.push(attr::OPERATION_NAME, "chat");
        client.push(attr::RESPONSE_TIME_TO_FIRST_CHUNK, 0.0231);
        client.push(attr::USAGE_INPUT_TOKENS, 5i64);
        client.push(attr::USAGE_OUTPUT_TOKENS, 16i64);
        client.push(attr::RESPONSE_FINISH_REASONS, vec!["stop".to_owned()]);
        let text = format_batch(&[client, server]);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.starts_with("2027-01-15T08:00:00.000Z POST /v1/chat/completions › chat tiny-llama  150.0ms 200  ttft=23.1ms tokens=5→16 finish=stop spans=2 trace=0909"),
            "{text}"
        );
    }
}
