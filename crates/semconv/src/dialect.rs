//! Which key means what in each dialect, and translation between dialects.
//!
//! The gateway emits OpenTelemetry names and, when asked, duplicates them in the vLLM and
//! OpenInference dialects; the engine-span ingest path reads vLLM's names and adds the current
//! ones. Both use the one table here, [`MAPPINGS`].
//!
//! Some pairs look alike but are deliberately **not** mapped:
//! - vLLM's `gen_ai.latency.time_to_first_token` is the engine's view (arrival in the API
//!   server to the first token), while `gen_ai.response.time_to_first_chunk` is a client's
//!   view (request sent to first chunk received). They are different concepts,
//!   [`Concept::EngineTimeToFirstToken`] and [`Concept::ClientTimeToFirstChunk`].
//! - vLLM's `gen_ai.request.id` is the response id, plus `-<index>` for completions; it is
//!   [`Concept::EngineRequestId`], not `gen_ai.response.id`.

use crate::{attr, legacy, openinference, vllm};

/// A tracing dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenTelemetry GenAI semantic conventions v1.41.0.
    OTel,
    /// vLLM's legacy keys (`vllm.tracing.SpanAttributes`).
    Vllm,
    /// OpenInference (Arize Phoenix).
    OpenInference,
}

impl Dialect {
    /// Every dialect.
    pub const ALL: [Dialect; 3] = [Dialect::OTel, Dialect::Vllm, Dialect::OpenInference];

    /// The name used in configuration: `otel`, `vllm`, `openinference`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OTel => "otel",
            Dialect::Vllm => "vllm",
            Dialect::OpenInference => "openinference",
        }
    }

    /// Parses a configuration name (case-insensitive).
    pub fn parse(name: &str) -> Option<Dialect> {
        Dialect::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(name.trim()))
    }
}

/// A fact that more than one dialect has a key for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Concept {
    /// Prompt tokens.
    InputTokens,
    /// Generated tokens.
    OutputTokens,
    /// Prompt tokens read from a cache.
    CacheReadInputTokens,
    /// Prompt tokens written to a cache.
    CacheWriteInputTokens,
    /// Reasoning tokens.
    ReasoningOutputTokens,
    /// The model the request asked for.
    RequestModel,
    /// The model that answered.
    ResponseModel,
    /// The provider.
    Provider,
    /// `max_tokens`.
    MaxTokens,
    /// `temperature`.
    Temperature,
    /// `top_p`.
    TopP,
    /// `n`.
    ChoiceCount,
    /// Seconds to the first chunk, seen by a client.
    ClientTimeToFirstChunk,
    /// Seconds to the first token, seen by the engine.
    EngineTimeToFirstToken,
    /// The engine's request id.
    EngineRequestId,
}

/// One row of [`MAPPINGS`]: the key of a concept in each dialect, where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// What the keys mean.
    pub concept: Concept,
    /// The OpenTelemetry key.
    pub otel: Option<&'static str>,
    /// vLLM's key.
    pub vllm: Option<&'static str>,
    /// The OpenInference key.
    pub openinference: Option<&'static str>,
}

impl Mapping {
    /// The key of this concept in `dialect`.
    pub fn key(&self, dialect: Dialect) -> Option<&'static str> {
        match dialect {
            Dialect::OTel => self.otel,
            Dialect::Vllm => self.vllm,
            Dialect::OpenInference => self.openinference,
        }
    }
}

const fn row(
    concept: Concept,
    otel: Option<&'static str>,
    vllm: Option<&'static str>,
    openinference: Option<&'static str>,
) -> Mapping {
    Mapping {
        concept,
        otel,
        vllm,
        openinference,
    }
}

/// The table of equivalent keys.
pub const MAPPINGS: &[Mapping] = &[
    row(
        Concept::InputTokens,
        Some(attr::USAGE_INPUT_TOKENS),
        Some(vllm::attr::USAGE_PROMPT_TOKENS),
        Some(openinference::LLM_TOKEN_COUNT_PROMPT),
    ),
    row(
        Concept::OutputTokens,
        Some(attr::USAGE_OUTPUT_TOKENS),
        Some(vllm::attr::USAGE_COMPLETION_TOKENS),
        Some(openinference::LLM_TOKEN_COUNT_COMPLETION),
    ),
    row(
        Concept::CacheReadInputTokens,
        Some(attr::USAGE_CACHE_READ_INPUT_TOKENS),
        None,
        Some(openinference::LLM_TOKEN_COUNT_PROMPT_CACHE_READ),
    ),
    row(
        Concept::CacheWriteInputTokens,
        Some(attr::USAGE_CACHE_CREATION_INPUT_TOKENS),
        None,
        Some(openinference::LLM_TOKEN_COUNT_PROMPT_CACHE_WRITE),
    ),
    row(
        Concept::ReasoningOutputTokens,
        Some(attr::USAGE_REASONING_OUTPUT_TOKENS),
        None,
        Some(openinference::LLM_TOKEN_COUNT_COMPLETION_REASONING),
    ),
    row(Concept::RequestModel, Some(attr::REQUEST_MODEL), None, None),
    row(
        Concept::ResponseModel,
        Some(attr::RESPONSE_MODEL),
        Some(vllm::attr::RESPONSE_MODEL),
        Some(openinference::LLM_MODEL_NAME),
    ),
    row(
        Concept::Provider,
        Some(attr::PROVIDER_NAME),
        None,
        Some(openinference::LLM_PROVIDER),
    ),
    row(
        Concept::MaxTokens,
        Some(attr::REQUEST_MAX_TOKENS),
        Some(vllm::attr::REQUEST_MAX_TOKENS),
        None,
    ),
    row(
        Concept::Temperature,
        Some(attr::REQUEST_TEMPERATURE),
        Some(vllm::attr::REQUEST_TEMPERATURE),
        None,
    ),
    row(
        Concept::TopP,
        Some(attr::REQUEST_TOP_P),
        Some(vllm::attr::REQUEST_TOP_P),
        None,
    ),
    row(
        Concept::ChoiceCount,
        Some(attr::REQUEST_CHOICE_COUNT),
        Some(vllm::attr::REQUEST_N),
        None,
    ),
    row(
        Concept::ClientTimeToFirstChunk,
        Some(attr::RESPONSE_TIME_TO_FIRST_CHUNK),
        None,
        None,
    ),
    row(
        Concept::EngineTimeToFirstToken,
        None,
        Some(vllm::attr::LATENCY_TIME_TO_FIRST_TOKEN),
        None,
    ),
    row(
        Concept::EngineRequestId,
        None,
        Some(vllm::attr::REQUEST_ID),
        None,
    ),
];

/// The row for `concept`.
pub fn mapping(concept: Concept) -> Option<&'static Mapping> {
    MAPPINGS.iter().find(|m| m.concept == concept)
}

/// The key of `concept` in `dialect`, if that dialect has one.
pub fn key(concept: Concept, dialect: Dialect) -> Option<&'static str> {
    mapping(concept).and_then(|m| m.key(dialect))
}

/// What `key` means, looked up in every dialect (and among the deprecated OpenTelemetry names,
/// which are the vLLM ones for token usage).
pub fn concept_of(key: &str) -> Option<Concept> {
    MAPPINGS
        .iter()
        .find(|m| Dialect::ALL.iter().any(|d| m.key(*d) == Some(key)))
        .map(|m| m.concept)
}

/// The key in `to` that means what `key` means in whichever dialect it comes from.
/// Deprecated OpenTelemetry names translate to their replacements.
///
/// Returns `None` when `to` has no such key, and `Some(key)` unchanged when the dialects share it.
pub fn translate(key: &str, to: Dialect) -> Option<&'static str> {
    if let Some(concept) = concept_of(key) {
        return self::key(concept, to);
    }
    if to == Dialect::OTel {
        return legacy::RENAMES
            .iter()
            .find(|(old, _)| *old == key)
            .map(|(_, new)| *new);
    }
    None
}

/// The keys that duplicate an OpenTelemetry `otel_key` in the extra `dialects`, skipping a
/// dialect without an equivalent and a key identical to `otel_key`.
pub fn duplicates(otel_key: &str, dialects: &[Dialect]) -> impl Iterator<Item = &'static str> {
    let concept = MAPPINGS
        .iter()
        .find(|m| m.otel == Some(otel_key))
        .map(|m| m.concept)
        // The newest name of the same count (`OTEL_SEMCONV_STABILITY_OPT_IN`).
        .or((otel_key == crate::latest::USAGE_CACHE_WRITE_INPUT_TOKENS)
            .then_some(Concept::CacheWriteInputTokens));
    dialects
        .iter()
        .filter_map(move |d| concept.and_then(|c| key(c, *d)))
        .filter(move |k| *k != otel_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_concept_has_one_row() {
        for (i, m) in MAPPINGS.iter().enumerate() {
            assert_eq!(
                MAPPINGS.iter().position(|n| n.concept == m.concept),
                Some(i),
                "{:?} appears twice",
                m.concept
            );
        }
    }

    #[test]
    fn no_key_means_two_things() {
        let mut seen: Vec<(&str, Concept)> = Vec::new();
        for m in MAPPINGS {
            for d in Dialect::ALL {
                if let Some(k) = m.key(d) {
                    if let Some((_, other)) = seen.iter().find(|(s, _)| *s == k) {
                        assert_eq!(*other, m.concept, "{k} maps to two concepts");
                    }
                    seen.push((k, m.concept));
                }
            }
        }
    }

    #[test]
    fn translations() {
        assert_eq!(
            translate(vllm::attr::USAGE_PROMPT_TOKENS, Dialect::OTel),
            Some(attr::USAGE_INPUT_TOKENS)
        );
        assert_eq!(
            translate(vllm::attr::REQUEST_N, Dialect::OTel),
            Some(attr::REQUEST_CHOICE_COUNT)
        );
        assert_eq!(
            translate(attr::USAGE_OUTPUT_TOKENS, Dialect::Vllm),
            Some(vllm::attr::USAGE_COMPLETION_TOKENS)
        );
        assert_eq!(
            translate(legacy::SYSTEM, Dialect::OTel),
            Some(attr::PROVIDER_NAME)
        );
        // Engine TTFT is not the client's time to first chunk.
        assert_eq!(
            translate(vllm::attr::LATENCY_TIME_TO_FIRST_TOKEN, Dialect::OTel),
            None
        );
        assert_eq!(translate("no.such.key", Dialect::OTel), None);
    }

    #[test]
    fn duplicates_skip_identical_keys() {
        let d: Vec<_> = duplicates(
            attr::REQUEST_TEMPERATURE,
            &[Dialect::Vllm, Dialect::OpenInference],
        )
        .collect();
        assert!(d.is_empty(), "vLLM shares the temperature key: {d:?}");
        let d: Vec<_> = duplicates(
            attr::USAGE_INPUT_TOKENS,
            &[Dialect::Vllm, Dialect::OpenInference],
        )
        .collect();
        assert_eq!(d, ["gen_ai.usage.prompt_tokens", "llm.token_count.prompt"]);
    }

    #[test]
    fn dialect_names_round_trip() {
        for d in Dialect::ALL {
            assert_eq!(Dialect::parse(d.as_str()), Some(d));
        }
        assert_eq!(
            Dialect::parse(" OpenInference "),
            Some(Dialect::OpenInference)
        );
        assert_eq!(Dialect::parse("datadog"), None);
    }
}
