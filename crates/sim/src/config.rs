//! The simulator's configuration: the top-level and `[engine]` settings tables (one row per
//! setting: key, flag, type, default, doc), resolved with flag > file > default, every problem
//! reported at once; a file's problems name the file, the key and the line. A [`SimConfig`]
//! made in code is checked by [`SimConfig::validate`] with the same rules.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use inferscope_settings::{
    ConfigErrors, FileLayer, Flag, NoEnv, Report, Resolver, Setting, Value, ok, req, settings,
};

use crate::faults::FaultSpec;

/// The tables a simulator configuration file may have (`""`: top-level keys).
pub const FILE_TABLES: &[&str] = &["", "engine"];

settings! {
    /// The simulator's top-level settings as a person writes them.
    pub struct SimSettings => SimValues, table "", rows sim_rows {
        /// Where to listen (port 0 picks one).
        listen: String => SocketAddr = req(|v: String| v.parse().map_err(|_| "expected an address like 127.0.0.1:8000".to_owned())), {
            default: Some("127.0.0.1:8000"), flag: Flag::Value("listen"),
        },
        /// The served model name (vLLM's `--served-model-name`).
        model: String => String = req(ok), {
            default: Some("tiny-llama"), flag: Flag::Value("model"),
        },
        /// Prompt plus output tokens a request may use (vLLM's `--max-model-len`).
        max_model_len: u32 => u32 = req(ok), {
            default: Some("512"), flag: Flag::Value("max-model-len"),
        },
        /// Seed of the deterministic output (combined with the request's own `seed` and content).
        seed: u64 => u64 = req(ok), {
            default: Some("0"), flag: Flag::Value("seed"),
        },
        /// Answer without any simulated delay (overhead benchmarks).
        zero_delay: bool => bool = req(ok), {
            default: Some("false"), flag: Flag::Switch("zero-delay"),
        },
        /// Pin the `created` field to this Unix time (byte-identical responses in tests).
        created: u64 => Option<u64> = ok, {
            default_doc: Some("now"),
        },
        /// Echo `X-Request-Id` in responses (vLLM's `--enable-request-id-headers`).
        enable_request_id_headers: bool => bool = req(ok), {
            default: Some("false"), flag: Flag::Switch("enable-request-id-headers"),
        },
        /// Where `llm_request` spans go (vLLM's `--otlp-traces-endpoint`; `OTEL_*` variables apply).
        otlp_traces_endpoint: String => Option<String> = ok, {
            flag: Flag::Value("otlp-traces-endpoint"),
        },
        /// Size of the vectors `/v1/embeddings` returns.
        embedding_dimension: usize => usize = req(ok), {
            default: Some("64"),
        },
        /// A fault for every request (a request header can add its own), e.g. `stall_ms=200; split=random`.
        fault: String => Option<String> = ok, {
            flag: Flag::Value("fault"),
        },
    }
}

settings! {
    /// The continuous-batching engine: capacity and the cost of a step.
    ///
    /// A step lasts `step_base_ms + step_per_seq_ms × running sequences + prefill_per_token_ms ×
    /// prompt tokens prefilled in the step`. Each step prefills (in chunks of at most
    /// `max_num_batched_tokens`) and decodes one token for every running sequence.
    pub struct EngineSettings => EngineConfig, table "engine", rows engine_rows {
        /// Most sequences running at once (vLLM's `--max-num-seqs`); more wait in the queue.
        max_num_seqs: usize => usize = req(ok), {
            default: Some("64"), flag: Flag::Value("max-num-seqs"),
        },
        /// Most tokens processed in one step (vLLM's `--max-num-batched-tokens`); long prompts prefill in chunks.
        max_num_batched_tokens: u32 => u32 = req(ok), {
            default: Some("2048"),
        },
        /// KV cache capacity, in tokens; running out preempts the newest sequence (recompute).
        kv_cache_tokens: u32 => u32 = req(ok), {
            default: Some("65536"), flag: Flag::Value("kv-cache-tokens"),
        },
        /// KV cache block size, in tokens.
        block_size: u32 => u32 = req(ok), {
            default: Some("16"),
        },
        /// Fixed cost of a step, ms.
        step_base_ms: f64 => f64 = req(ok), {
            default: Some("4.0"), flag: Flag::Value("step-base-ms"),
        },
        /// Cost per running sequence in a step, ms.
        step_per_seq_ms: f64 => f64 = req(ok), {
            default: Some("0.15"), flag: Flag::Value("step-per-seq-ms"),
        },
        /// Cost per prompt token prefilled in a step, ms.
        prefill_per_token_ms: f64 => f64 = req(ok), {
            default: Some("0.01"), flag: Flag::Value("prefill-per-token-ms"),
        },
        /// Tokenisation and input processing before the request reaches the engine queue, ms.
        preprocess_ms: f64 => f64 = req(ok), {
            default: Some("0.5"),
        },
        /// Chance that a generated token is end-of-sequence (finish reason `stop`).
        eos_probability: f64 => f64 = req(ok), {
            default: Some("0"),
        },
        /// Chance that a token's text is empty, as when a byte-level BPE token holds half a UTF-8 character (vLLM then sends no chunk for it, or `"delta":{}` if it was the last).
        partial_token_probability: f64 => f64 = req(ok), {
            default: Some("0"),
        },
        /// Instead of the batching model, every request on its own clock: first token `ttft_ms` after it arrives, then one every `itl_ms`, however many run (for measuring what a proxy adds).
        fixed_timing: FixedTiming => Option<FixedTiming> = ok, {
            flag: Flag::Parts(&[("fixed-ttft-ms", "ttft_ms"), ("fixed-itl-ms", "itl_ms")]),
        },
    }
}

/// Each sequence's first token `ttft_ms` after it is queued, then one every `itl_ms`, however
/// many run; no queue, no capacity limit, no preprocessing delay. Timers have the kernel's
/// resolution, which affects every client of the simulator alike.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedTiming {
    /// Time to the first token, ms.
    pub ttft_ms: f64,
    /// Time between tokens, ms.
    pub itl_ms: f64,
}

impl Value for FixedTiming {
    const KIND: &'static str = "table";

    fn from_text(_: &str) -> Result<FixedTiming, String> {
        Err(
            "set `[engine.fixed_timing]` in the file, or both --fixed-ttft-ms and --fixed-itl-ms"
                .into(),
        )
    }

    fn from_toml(value: &toml::Value) -> Result<FixedTiming, String> {
        FixedTiming::deserialize_from(value.clone())
    }

    fn show(&self) -> String {
        format!("ttft_ms={},itl_ms={}", self.ttft_ms, self.itl_ms)
    }
}

impl FixedTiming {
    fn deserialize_from(value: toml::Value) -> Result<FixedTiming, String> {
        serde::Deserialize::deserialize(value).map_err(|e: toml::de::Error| {
            let m = e.message();
            // Both halves are needed, whichever way they came.
            m.replace(
                "missing field `itl_ms`",
                "needs itl_ms (--fixed-itl-ms) as well",
            )
            .replace(
                "missing field `ttft_ms`",
                "needs ttft_ms (--fixed-ttft-ms) as well",
            )
        })
    }
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        #[allow(
            clippy::expect_used,
            reason = "the defaults are constants; `engine_rows::defaults_resolve` checks them"
        )]
        EngineConfig::defaults().expect("the engine's defaults resolve")
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

/// Everything the simulator needs.
#[derive(Debug, Clone)]
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
        let v = {
            #[allow(
                clippy::expect_used,
                reason = "the defaults are constants; `sim_rows::defaults_resolve` checks them"
            )]
            SimValues::defaults().expect("the simulator's defaults resolve")
        };
        SimConfig::from_values(v, EngineConfig::default())
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Values that cannot be used (or a file that cannot be read), all of them.
    #[error(transparent)]
    Settings(#[from] ConfigErrors),
    /// Values that cannot be used, all of them.
    #[error("invalid simulator configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl SimConfig {
    fn from_values(v: SimValues, engine: EngineConfig) -> SimConfig {
        SimConfig {
            listen: v.listen,
            model: v.model,
            max_model_len: v.max_model_len,
            seed: v.seed,
            zero_delay: v.zero_delay,
            created: v.created,
            enable_request_id_headers: v.enable_request_id_headers,
            otlp_traces_endpoint: v.otlp_traces_endpoint,
            embedding_dimension: v.embedding_dimension,
            engine,
            fault: v.fault,
        }
    }

    /// Resolves flags (`explicit`, and the errors found reading them) over the file over the
    /// defaults, then checks the result; every problem is reported, with where its value came
    /// from. Returns the configuration and what `--print-config` shows.
    pub fn resolve(
        explicit: (&SimSettings, &EngineSettings),
        mut errors: Vec<inferscope_settings::ConfigError>,
        file: &FileLayer,
    ) -> Result<(SimConfig, Report), ConfigErrors> {
        let mut r = Resolver::new(&NoEnv, Some(file));
        let file_sim: SimSettings = file.table(&mut errors);
        let file_engine: EngineSettings = file.table(&mut errors);
        r.keep(errors);
        let root = SimValues::resolve(explicit.0, &file_sim, &mut r);
        let engine = EngineConfig::resolve(explicit.1, &file_engine, &mut r);
        let config = match (root, engine) {
            (Some(root), Some(engine)) => {
                let c = SimConfig::from_values(root, engine);
                for (setting, part, problem) in c.problems() {
                    r.reject(setting, format!("{}{part} {problem}", setting.key));
                }
                Some(c)
            }
            _ => None,
        };
        let report = r.finish()?;
        config
            .map(|c| (c, report))
            .ok_or_else(|| ConfigErrors(Vec::new()))
    }

    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<SimConfig, ConfigError> {
        let (file, errors) = FileLayer::read(path, FILE_TABLES)?;
        let none = (&SimSettings::default(), &EngineSettings::default());
        let (c, _) = SimConfig::resolve(none, errors, &file)?;
        Ok(c)
    }

    /// Checks every value, reporting all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let errors: Vec<String> = self
            .problems()
            .into_iter()
            .map(|(s, part, problem)| format!("{}{part} {problem}", s.path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// What is wrong, per setting (and part of it): the rules for each value and across
    /// values.
    fn problems(&self) -> Vec<(&'static Setting, &'static str, String)> {
        let mut out: Vec<(&'static Setting, &'static str, String)> = Vec::new();
        let e = &self.engine;
        if self.model.trim().is_empty() {
            out.push((&sim_rows::model, "", "must not be empty".to_owned()));
        }
        for (s, v) in [
            (&sim_rows::max_model_len, u64::from(self.max_model_len)),
            (&engine_rows::max_num_seqs, e.max_num_seqs as u64),
            (&engine_rows::block_size, u64::from(e.block_size)),
            (
                &engine_rows::max_num_batched_tokens,
                u64::from(e.max_num_batched_tokens),
            ),
            (
                &sim_rows::embedding_dimension,
                self.embedding_dimension as u64,
            ),
        ] {
            if v == 0 {
                out.push((s, "", "must be at least 1".to_owned()));
            }
        }
        if e.kv_cache_tokens < self.max_model_len {
            out.push((
                &engine_rows::kv_cache_tokens,
                "",
                format!(
                    "({}) must hold at least one sequence of max_model_len ({})",
                    e.kv_cache_tokens, self.max_model_len
                ),
            ));
        }
        let fixed = e.fixed_timing;
        for (s, v, part) in [
            (&engine_rows::step_base_ms, e.step_base_ms, ""),
            (&engine_rows::step_per_seq_ms, e.step_per_seq_ms, ""),
            (
                &engine_rows::prefill_per_token_ms,
                e.prefill_per_token_ms,
                "",
            ),
            (&engine_rows::preprocess_ms, e.preprocess_ms, ""),
            (
                &engine_rows::fixed_timing,
                fixed.map_or(0.0, |f| f.ttft_ms),
                ".ttft_ms",
            ),
            (
                &engine_rows::fixed_timing,
                fixed.map_or(0.0, |f| f.itl_ms),
                ".itl_ms",
            ),
        ] {
            // An hour at most: beyond it a duration is a typo, and far beyond it one overflows.
            if !(v.is_finite() && (0.0..=3_600_000.0).contains(&v)) {
                out.push((
                    s,
                    part,
                    format!("must be a number of ms from 0 to 3600000, not {v}"),
                ));
            }
        }
        for (s, v) in [
            (
                &engine_rows::partial_token_probability,
                e.partial_token_probability,
            ),
            (&engine_rows::eos_probability, e.eos_probability),
        ] {
            if !(0.0..=1.0).contains(&v) {
                out.push((s, "", format!("must be between 0 and 1, not {v}")));
            }
        }
        if self.zero_delay && fixed.is_some() {
            out.push((
                &sim_rows::zero_delay,
                "",
                "and engine.fixed_timing exclude each other".to_owned(),
            ));
        }
        if let Some(f) = &self.fault
            && let Err(e) = FaultSpec::parse(f)
        {
            out.push((&sim_rows::fault, "", format!("is invalid: {e}")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_str(text: &str) -> Result<SimConfig, ConfigErrors> {
        let (file, errors) = FileLayer::parse("sim.toml", text, FILE_TABLES);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        SimConfig::resolve(
            (&SimSettings::default(), &EngineSettings::default()),
            Vec::new(),
            &file,
        )
        .map(|(c, _)| c)
    }

    #[test]
    fn file_round_trip_and_unknown_keys() {
        let c = from_str(
            "model = \"m\"\nzero_delay = true\n[engine]\nmax_num_seqs = 4\nstep_base_ms = 1.5\n",
        )
        .unwrap();
        assert_eq!(c.model, "m");
        assert!(c.zero_delay);
        assert_eq!(c.engine.max_num_seqs, 4);
        assert_eq!(c.engine.block_size, 16);
        assert!(from_str("modle = \"m\"").is_err());
        assert!(from_str("[engine]\nmax_seqs = 4").is_err());
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
        let fixed = from_str("[engine.fixed_timing]\nttft_ms = 20\nitl_ms = 10\n").unwrap();
        assert!(fixed.validate().is_ok());
        assert_eq!(fixed.engine.fixed_timing.map(|f| f.itl_ms), Some(10.0));
    }

    #[test]
    fn step_time_grows_with_batch_and_prefill() {
        let e = EngineConfig::default();
        assert!(e.step_time(10, 0) > e.step_time(1, 0));
        assert!(e.step_time(1, 500) > e.step_time(1, 0));
    }

    #[test]
    fn file_problems_name_the_line_and_come_together() {
        let err = from_str("model = \"\"\n[engine]\nmax_num_seqs = 0\neos_probability = 2\n[engine.fixed_timing]\nttft_ms = 5\n")
            .unwrap_err()
            .to_string();
        for want in [
            "config file `model`=\"\": model must not be empty (sim.toml, line 1)",
            "config file `max_num_seqs`=\"0\": max_num_seqs must be at least 1 (sim.toml, line 3)",
            "config file `eos_probability`=\"2\": eos_probability must be between 0 and 1, not 2 (sim.toml, line 4)",
            "needs itl_ms",
        ] {
            assert!(err.contains(want), "{want} missing from {err}");
        }
    }
}
