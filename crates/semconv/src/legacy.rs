//! OpenTelemetry GenAI names that v1.41.0 marks deprecated. inferscope never emits them as
//! current names; they exist so the [`crate::dialect`] maps can recognise and translate them
//! (vLLM still emits the token-usage pair).

consts! {
    /// Replaced by [`crate::attr::USAGE_INPUT_TOKENS`] in 1.28.
    USAGE_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens";
    /// Replaced by [`crate::attr::USAGE_OUTPUT_TOKENS`] in 1.28.
    USAGE_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens";
    /// Replaced by [`crate::attr::PROVIDER_NAME`] in 1.37.
    SYSTEM = "gen_ai.system";
    /// Obsolete; replaced by [`crate::attr::INPUT_MESSAGES`].
    PROMPT = "gen_ai.prompt";
    /// Obsolete; replaced by [`crate::attr::OUTPUT_MESSAGES`].
    COMPLETION = "gen_ai.completion";
}

/// `(deprecated key, current key)` for the renames above that have a current equivalent.
pub const RENAMES: &[(&str, &str)] = &[
    (USAGE_PROMPT_TOKENS, crate::attr::USAGE_INPUT_TOKENS),
    (USAGE_COMPLETION_TOKENS, crate::attr::USAGE_OUTPUT_TOKENS),
    (SYSTEM, crate::attr::PROVIDER_NAME),
    (PROMPT, crate::attr::INPUT_MESSAGES),
    (COMPLETION, crate::attr::OUTPUT_MESSAGES),
];
