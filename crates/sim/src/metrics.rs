//! A few of vLLM's Prometheus series (`vllm:*`, labels `engine` and `model_name`), plus the
//! simulator's abort counter.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::EngineStats;

/// vLLM's buckets for `time_to_first_token_seconds`.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// vLLM's buckets for `e2e_request_latency_seconds`.
const E2E_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
];

/// A histogram of fixed buckets, updated with atomics.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum, in nanoseconds (integer, so it can be atomic).
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records a value in seconds.
    pub fn observe(&self, seconds: f64) {
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b)
            && let Some(c) = self.counts.get(i)
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add((seconds.max(0.0) * 1e9) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b:?}\"}} {cumulative}.0");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}.0");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}.0");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    }
}

/// Counters the server updates.
#[derive(Debug)]
pub struct Metrics {
    /// Requests finished, by reason: stop, length, tool_calls (counted as stop by vLLM), abort.
    pub finished_stop: AtomicU64,
    /// Finished by length.
    pub finished_length: AtomicU64,
    /// Aborted by the client.
    pub aborted: AtomicU64,
    /// Failed with an error response.
    pub errors: AtomicU64,
    /// Prompt tokens of finished sequences.
    pub prompt_tokens: AtomicU64,
    /// Generated tokens.
    pub generation_tokens: AtomicU64,
    /// Time to first token.
    pub ttft: Histogram,
    /// End-to-end latency.
    pub e2e: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            finished_stop: AtomicU64::new(0),
            finished_length: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BUCKETS),
            e2e: Histogram::new(E2E_BUCKETS),
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self, model: &str, engine: &EngineStats) -> String {
        let labels = format!("engine=\"0\",model_name=\"{model}\"");
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {v:?}"
            );
        };
        gauge(
            &mut out,
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            g(&engine.running) as f64,
        );
        gauge(
            &mut out,
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            g(&engine.waiting) as f64,
        );
        let total = g(&engine.kv_blocks_total).max(1) as f64;
        gauge(
            &mut out,
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            g(&engine.kv_blocks_used) as f64 / total,
        );
        let _ = writeln!(
            out,
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{{{labels}}} {:?}",
            g(&self.prompt_tokens) as f64
        );
        let _ = writeln!(
            out,
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total{{{labels}}} {:?}",
            g(&self.generation_tokens) as f64
        );
        let _ = writeln!(
            out,
            "# HELP vllm:request_success_total Count of successfully processed requests.\n# TYPE vllm:request_success_total counter"
        );
        for (reason, v) in [
            ("stop", g(&self.finished_stop)),
            ("length", g(&self.finished_length)),
            ("abort", g(&self.aborted)),
            ("error", g(&self.errors)),
        ] {
            let _ = writeln!(
                out,
                "vllm:request_success_total{{engine=\"0\",finished_reason=\"{reason}\",model_name=\"{model}\"}} {:?}",
                v as f64
            );
        }
        self.ttft.render(
            &mut out,
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            &labels,
        );
        self.e2e.render(
            &mut out,
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            &labels,
        );
        let _ = writeln!(
            out,
            "# HELP inferscope_sim_aborted_requests_total Requests the client abandoned before they finished.\n# TYPE inferscope_sim_aborted_requests_total counter\ninferscope_sim_aborted_requests_total {}",
            g(&self.aborted)
        );
        let _ = writeln!(
            out,
            "# HELP inferscope_sim_preemptions_total Sequences preempted for KV cache space.\n# TYPE inferscope_sim_preemptions_total counter\ninferscope_sim_preemptions_total {}",
            g(&engine.preemptions)
        );
        out
    }
}
