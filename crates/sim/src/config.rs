//! The simulator's configuration: a TOML file (unknown keys are errors), overridden by flags.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::faults::FaultSpec;

/// Everything the simulator needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Where to listen (port 0 picks one).
    pub listen: SocketAddr,
    /// The served model name (vLLM's `--served-model-name`).
    pub model: String,
    /// vLLM's `--max-model-len`: prompt plus output tokens.
    pub max_model_len: u32,
    /// Seed of the deterministic output (combined with the request's own `seed`).
    pub seed: u64,
    /// Answer without any simulated delay (for overhead benchmarks).
    pub zero_delay: bool,
    /// Pin the `created` field to this Unix time (byte-identical responses in tests).
    pub created: Option<u64>,
    /// Echo `X-Request-Id` in responses (vLLM's `--enable-request-id-headers`).
    pub enable_request_id_headers: bool,
    /// Where `llm_request` spans go (vLLM's `--otlp-traces-endpoint`); none: no tracing.
    pub otlp_traces_endpoint: Option<String>,
    /// Dimensions of the vectors `/v1/embeddings` returns.
    pub embedding_dimension: usize,
    /// The engine's capacity and timing model.
    pub engine: EngineConfig,
    /// A fault applied to every request (a request header can add its own).
    pub fault: Option<String>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            model: "tiny-llama".into(),
            max_model_len: 512,
            seed: 0,
            zero_delay: false,
            created: None,
            enable_request_id_headers: false,
            otlp_traces_endpoint: None,
            embedding_dimension: 64,
            engine: EngineConfig::default(),
            fault: None,
        }
    }
}

/// The continuous-batching engine: capacity and the cost of a step.
///
/// A step lasts `step_base_ms + step_per_seq_ms × running sequences + prefill_per_token_ms ×
/// prompt tokens prefilled in the step`. Each step prefills (in chunks of at most
/// `max_num_batched_tokens`) and decodes one token for every running sequence.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Most sequences running at once (vLLM's `--max-num-seqs`).
    pub max_num_seqs: usize,
    /// Most tokens processed in one step (vLLM's `--max-num-batched-tokens`).
    pub max_num_batched_tokens: u32,
    /// KV cache capacity, in tokens.
    pub kv_cache_tokens: u32,
    /// KV cache block size, in tokens.
    pub block_size: u32,
    /// Fixed cost of a step, ms.
    pub step_base_ms: f64,
    /// Cost per running sequence in a step, ms.
    pub step_per_seq_ms: f64,
    /// Cost per prompt token prefilled in a step, ms.
    pub prefill_per_token_ms: f64,
    /// Tokenisation and input processing before the request reaches the engine queue, ms.
    pub preprocess_ms: f64,
    /// Chance that a generated token is end-of-sequence (finish reason `stop`).
    pub eos_probability: f64,
    /// Chance that a token's text is empty, as when a byte-level BPE token holds half a UTF-8
    /// character: vLLM then sends no chunk for it, or `"delta":{}` if it was the last.
    pub partial_token_probability: f64,
    /// Instead of the batching model, every sequence runs on its own clock (see
    /// [`FixedTiming`]). For measuring what a proxy adds to TTFT and gaps: the timing of one
    /// request then depends neither on the others nor on the phase of a shared engine step.
    pub fixed_timing: Option<FixedTiming>,
}

/// Each sequence's first token `ttft_ms` after it is queued, then one every `itl_ms`, however
/// many run; no queue, no capacity limit, no preprocessing delay. Timers have Tokio's 1 ms
/// resolution, which affects every client of the simulator alike.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedTiming {
    /// Time to the first token, ms.
    pub ttft_ms: f64,
    /// Time between tokens, ms.
    pub itl_ms: f64,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            max_num_seqs: 64,
            max_num_batched_tokens: 2048,
            kv_cache_tokens: 65536,
            block_size: 16,
            step_base_ms: 4.0,
            step_per_seq_ms: 0.15,
            prefill_per_token_ms: 0.01,
            preprocess_ms: 0.5,
            eos_probability: 0.0,
            partial_token_probability: 0.0,
            fixed_timing: None,
        }
    }
}

impl EngineConfig {
    /// The duration of a step with `running` sequences and `prefill` prompt tokens.
    pub fn step_time(&self, running: usize, prefill: u32) -> Duration {
        let ms = self.step_base_ms
            + self.step_per_seq_ms * running as f64
            + self.prefill_per_token_ms * f64::from(prefill);
        Duration::from_secs_f64(ms.max(0.0) / 1e3)
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The TOML error.
        source: toml::de::Error,
    },
    /// Values that cannot be used, all of them.
    #[error("invalid simulator configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl SimConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<SimConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// Checks every value, reporting all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let e = &self.engine;
        if self.model.trim().is_empty() {
            errors.push("model must not be empty".to_owned());
        }
        if self.max_model_len == 0 {
            errors.push("max_model_len must be at least 1".to_owned());
        }
        if e.max_num_seqs == 0 {
            errors.push("engine.max_num_seqs must be at least 1".to_owned());
        }
        if e.block_size == 0 {
            errors.push("engine.block_size must be at least 1".to_owned());
        }
        if e.kv_cache_tokens < self.max_model_len {
            errors.push(format!(
                "engine.kv_cache_tokens ({}) must hold at least one sequence of max_model_len ({})",
                e.kv_cache_tokens, self.max_model_len
            ));
        }
        if e.max_num_batched_tokens == 0 {
            errors.push("engine.max_num_batched_tokens must be at least 1".to_owned());
        }
        for (name, v) in [
            ("engine.step_base_ms", e.step_base_ms),
            ("engine.step_per_seq_ms", e.step_per_seq_ms),
            ("engine.prefill_per_token_ms", e.prefill_per_token_ms),
            ("engine.preprocess_ms", e.preprocess_ms),
            (
                "engine.fixed_timing.ttft_ms",
                e.fixed_timing.map_or(0.0, |f| f.ttft_ms),
            ),
            (
                "engine.fixed_timing.itl_ms",
                e.fixed_timing.map_or(0.0, |f| f.itl_ms),
            ),
        ] {
            // An hour at most: beyond it a duration is a typo, and far beyond it one overflows.
            if !(v.is_finite() && (0.0..=3_600_000.0).contains(&v)) {
                errors.push(format!(
                    "{name} must be a number of ms from 0 to 3600000, not {v}"
                ));
            }
        }
        if !(0.0..=1.0).contains(&e.partial_token_probability) {
            errors.push(format!(
                "engine.partial_token_probability must be between 0 and 1, not {}",
                e.partial_token_probability
            ));
        }
        if !(0.0..=1.0).contains(&e.eos_probability) {
            errors.push(format!(
                "engine.eos_probability must be between 0 and 1, not {}",
                e.eos_probability
            ));
        }
        if self.zero_delay && e.fixed_timing.is_some() {
            errors.push("zero_delay and engine.fixed_timing exclude each other".to_owned());
        }
        if self.embedding_dimension == 0 {
            errors.push("embedding_dimension must be at least 1".to_owned());
        }
        if let Some(f) = &self.fault
            && let Err(e) = FaultSpec::parse(f)
        {
            errors.push(format!("fault: {e}"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_and_unknown_keys() {
        let c: SimConfig = toml::from_str(
            "model = \"m\"\nzero_delay = true\n[engine]\nmax_num_seqs = 4\nstep_base_ms = 1.5\n",
        )
        .unwrap();
        assert_eq!(c.model, "m");
        assert!(c.zero_delay);
        assert_eq!(c.engine.max_num_seqs, 4);
        assert_eq!(c.engine.block_size, 16);
        assert!(toml::from_str::<SimConfig>("modle = \"m\"").is_err());
        assert!(toml::from_str::<SimConfig>("[engine]\nmax_seqs = 4").is_err());
    }

    #[test]
    fn validation_reports_everything() {
        let mut c = SimConfig::default();
        c.engine.max_num_seqs = 0;
        c.engine.step_base_ms = -1.0;
        c.engine.eos_probability = 2.0;
        c.engine.step_per_seq_ms = 1e300; // would overflow a Duration
        c.fault = Some("bogus=1".into());
        c.zero_delay = true;
        c.engine.fixed_timing = Some(FixedTiming {
            ttft_ms: f64::NAN,
            itl_ms: 10.0,
        });
        let err = c.validate().unwrap_err().to_string();
        for want in [
            "max_num_seqs",
            "step_base_ms",
            "step_per_seq_ms",
            "eos_probability",
            "fault",
            "fixed_timing.ttft_ms",
            "exclude each other",
        ] {
            assert!(err.contains(want), "{want} missing from {err}");
        }
        let fixed: SimConfig =
            toml::from_str("[engine.fixed_timing]\nttft_ms = 20\nitl_ms = 10\n").unwrap();
        assert!(fixed.validate().is_ok());
        assert_eq!(fixed.engine.fixed_timing.map(|f| f.itl_ms), Some(10.0));
    }

    #[test]
    fn step_time_grows_with_batch_and_prefill() {
        let e = EngineConfig::default();
        assert!(e.step_time(10, 0) > e.step_time(1, 0));
        assert!(e.step_time(1, 500) > e.step_time(1, 0));
    }
}
