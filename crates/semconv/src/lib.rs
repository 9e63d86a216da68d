//! The vocabulary inferscope speaks: attribute keys, span names, metric definitions and the
//! maps between the tracing dialects found around LLM inference servers.
//!
//! Every key the other crates put on a span is a constant from here, so a later version of the
//! conventions is a change to this crate only.
//!
//! | module | what it holds |
//! |---|---|
//! | [`attr`] | OpenTelemetry GenAI attribute keys, pinned at v1.41.0 ([`SCHEMA_URL`]) |
//! | [`value`] | well-known values of those attributes (operation names, providers, token types) |
//! | [`metric`] | the GenAI histograms with their units and bucket boundaries |
//! | [`span_name`] | how GenAI and HTTP span names are formed |
//! | [`latest`] | the GenAI repository's newest names, behind `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental` |
//! | [`legacy`] | OpenTelemetry names deprecated since, kept only to translate from them |
//! | [`http`] | the (stable) HTTP and network keys used on the gateway's SERVER span |
//! | [`vllm`] | vLLM's own span, scope and resource names and its legacy `gen_ai.latency.*` keys |
//! | [`openinference`] | the OpenInference keys Arize Phoenix reads |
//! | [`inferscope`] | inferscope's own keys, for facts no convention has a name for |
//! | [`dialect`] | which key means what in each dialect, and translation between them |
//!
//! ```
//! use inferscope_semconv::{attr, dialect::{self, Dialect}, span_name, value};
//!
//! assert_eq!(span_name::inference(value::operation::CHAT, Some("tiny-llama")), "chat tiny-llama");
//! assert_eq!(
//!     dialect::translate(attr::USAGE_INPUT_TOKENS, Dialect::OpenInference),
//!     Some("llm.token_count.prompt"),
//! );
//! assert_eq!(
//!     dialect::translate("gen_ai.usage.prompt_tokens", Dialect::OTel),
//!     Some(attr::USAGE_INPUT_TOKENS),
//! );
//! ```
//!
//! This crate has no dependencies.

/// Defines `pub const NAME: &str = "value";` items and an `ALL` slice that lists them, so
/// tests can check every constant of a module against the pinned conventions.
macro_rules! consts {
    ($( $(#[$meta:meta])* $name:ident = $value:literal; )+) => {
        $( $(#[$meta])* pub const $name: &str = $value; )+
        /// Every constant of this module, in declaration order.
        pub const ALL: &[&str] = &[ $( $name ),+ ];
    };
}

/// The OpenTelemetry semantic-conventions release the [`attr`], [`value`] and [`metric`]
/// modules follow.
pub const SEMCONV_VERSION: &str = "1.41.0";

/// The schema URL of [`SEMCONV_VERSION`]; exported on every resource/scope span group.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.41.0";

pub mod attr;
pub mod dialect;
pub mod http;
pub mod inferscope;
pub mod latest;
pub mod legacy;
pub mod metric;
pub mod openinference;
pub mod span_name;
pub mod value;
pub mod vllm;
