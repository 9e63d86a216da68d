//! The newest GenAI names, from the main branch of the GenAI conventions' own repository
//! (open-telemetry/semantic-conventions-genai, no tagged release yet), which a user asks for
//! with `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`, as the official
//! instrumentations do. The pinned v1.41.0 names ([`crate::attr`], [`crate::metric`]) stay the
//! default.
//!
//! What changes with the opt-in:
//!
//! | v1.41.0 (default) | latest experimental |
//! |---|---|
//! | `gen_ai.client.operation.duration` (chat, text completion) | `gen_ai.client.inference.duration` |
//! | `gen_ai.client.operation.duration` (embeddings) | `gen_ai.client.embeddings.duration` |
//! | `gen_ai.client.operation.time_to_first_chunk` | `gen_ai.client.inference.time_to_first_chunk` |
//! | `gen_ai.client.operation.time_per_output_chunk` | `gen_ai.client.inference.time_per_output_chunk` |
//! | `gen_ai.usage.cache_creation.input_tokens` | `gen_ai.usage.cache_write.input_tokens` |
//!
//! Unchanged: `gen_ai.client.token.usage`, the `gen_ai.server.*` metrics, every other span key.
//! Other operations (retrieval) keep `gen_ai.client.operation.duration` in both.
//!
//! ```
//! use inferscope_semconv::latest::Conventions;
//! use inferscope_semconv::value::operation;
//!
//! let latest = Conventions::from_opt_in("http,gen_ai_latest_experimental");
//! assert_eq!(latest, Conventions::LatestExperimental);
//! assert_eq!(latest.duration(operation::CHAT).name, "gen_ai.client.inference.duration");
//! assert_eq!(Conventions::default().duration(operation::CHAT).name, "gen_ai.client.operation.duration");
//! ```

use crate::metric::{self, Histogram};
use crate::value::operation;

/// The value of `OTEL_SEMCONV_STABILITY_OPT_IN` that selects these names.
pub const OPT_IN: &str = "gen_ai_latest_experimental";

/// Prompt tokens written to a cache (renamed from `cache_creation`).
pub const USAGE_CACHE_WRITE_INPUT_TOKENS: &str = "gen_ai.usage.cache_write.input_tokens";

/// `gen_ai.client.inference.duration`: a chat or text-completion call.
pub const CLIENT_INFERENCE_DURATION: Histogram = Histogram {
    name: "gen_ai.client.inference.duration",
    description: "Duration of a GenAI inference call.",
    ..metric::CLIENT_OPERATION_DURATION
};

/// `gen_ai.client.embeddings.duration`.
pub const CLIENT_EMBEDDINGS_DURATION: Histogram = Histogram {
    name: "gen_ai.client.embeddings.duration",
    description: "Duration of a GenAI embeddings call.",
    ..metric::CLIENT_OPERATION_DURATION
};

/// `gen_ai.client.inference.time_to_first_chunk` (streaming only).
pub const CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK: Histogram = Histogram {
    name: "gen_ai.client.inference.time_to_first_chunk",
    ..metric::CLIENT_TIME_TO_FIRST_CHUNK
};

/// `gen_ai.client.inference.time_per_output_chunk` (streaming only; one observation per chunk
/// after the first).
pub const CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK: Histogram = Histogram {
    name: "gen_ai.client.inference.time_per_output_chunk",
    ..metric::CLIENT_TIME_PER_OUTPUT_CHUNK
};

/// Which names the GenAI keys and metrics take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Conventions {
    /// The pinned release, [`crate::SEMCONV_VERSION`].
    #[default]
    V1_41_0,
    /// The GenAI repository's newest names.
    LatestExperimental,
}

impl Conventions {
    /// Reads `OTEL_SEMCONV_STABILITY_OPT_IN`: a comma-separated list in which only
    /// [`OPT_IN`] concerns GenAI (other values, such as `http`, belong to other domains and are
    /// ignored, as the specification asks).
    pub fn from_opt_in(list: &str) -> Conventions {
        if list.split(',').any(|v| v.trim() == OPT_IN) {
            Conventions::LatestExperimental
        } else {
            Conventions::V1_41_0
        }
    }

    /// The duration histogram of an operation.
    pub fn duration(self, op: &str) -> &'static Histogram {
        match (self, op) {
            (Conventions::LatestExperimental, operation::CHAT | operation::TEXT_COMPLETION) => {
                &CLIENT_INFERENCE_DURATION
            }
            (Conventions::LatestExperimental, operation::EMBEDDINGS) => &CLIENT_EMBEDDINGS_DURATION,
            _ => &metric::CLIENT_OPERATION_DURATION,
        }
    }

    /// Every duration histogram these conventions use, for registration.
    pub fn durations(self) -> &'static [Histogram] {
        match self {
            Conventions::V1_41_0 => &[metric::CLIENT_OPERATION_DURATION],
            Conventions::LatestExperimental => &[
                CLIENT_INFERENCE_DURATION,
                CLIENT_EMBEDDINGS_DURATION,
                metric::CLIENT_OPERATION_DURATION,
            ],
        }
    }

    /// The time-to-first-chunk histogram.
    pub fn time_to_first_chunk(self) -> &'static Histogram {
        match self {
            Conventions::V1_41_0 => &metric::CLIENT_TIME_TO_FIRST_CHUNK,
            Conventions::LatestExperimental => &CLIENT_INFERENCE_TIME_TO_FIRST_CHUNK,
        }
    }

    /// The time-per-output-chunk histogram.
    pub fn time_per_output_chunk(self) -> &'static Histogram {
        match self {
            Conventions::V1_41_0 => &metric::CLIENT_TIME_PER_OUTPUT_CHUNK,
            Conventions::LatestExperimental => &CLIENT_INFERENCE_TIME_PER_OUTPUT_CHUNK,
        }
    }

    /// The key of prompt tokens written to a cache.
    pub fn usage_cache_write_input_tokens(self) -> &'static str {
        match self {
            Conventions::V1_41_0 => crate::attr::USAGE_CACHE_CREATION_INPUT_TOKENS,
            Conventions::LatestExperimental => USAGE_CACHE_WRITE_INPUT_TOKENS,
        }
    }

    /// How the setting spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Conventions::V1_41_0 => "v1.41.0",
            Conventions::LatestExperimental => OPT_IN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opt_in_is_one_value_of_a_list() {
        assert_eq!(Conventions::from_opt_in(""), Conventions::V1_41_0);
        assert_eq!(Conventions::from_opt_in("http"), Conventions::V1_41_0);
        assert_eq!(
            Conventions::from_opt_in("database, gen_ai_latest_experimental"),
            Conventions::LatestExperimental
        );
        assert_eq!(
            Conventions::from_opt_in("gen_ai_latest"),
            Conventions::V1_41_0
        );
    }

    #[test]
    fn names_by_operation() {
        let l = Conventions::LatestExperimental;
        assert_eq!(
            l.duration(operation::EMBEDDINGS).prometheus_name(),
            "gen_ai_client_embeddings_duration_seconds"
        );
        assert_eq!(
            l.duration(operation::RETRIEVAL).name,
            "gen_ai.client.operation.duration"
        );
        assert_eq!(
            l.time_per_output_chunk().prometheus_name(),
            "gen_ai_client_inference_time_per_output_chunk_seconds"
        );
        for d in l.durations() {
            assert!(d.buckets.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(
            l.usage_cache_write_input_tokens(),
            "gen_ai.usage.cache_write.input_tokens"
        );
        assert_eq!(
            Conventions::V1_41_0.usage_cache_write_input_tokens(),
            "gen_ai.usage.cache_creation.input_tokens"
        );
    }
}
