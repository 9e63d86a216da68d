//! Well-known values of the GenAI attributes in [`crate::attr`] (semantic conventions v1.41.0).

/// Values of [`crate::attr::OPERATION_NAME`].
pub mod operation {
    consts! {
        /// Chat completion (`/v1/chat/completions`, `/v1/responses`).
        CHAT = "chat";
        /// Multimodal content generation.
        GENERATE_CONTENT = "generate_content";
        /// Legacy text completion (`/v1/completions`).
        TEXT_COMPLETION = "text_completion";
        /// Embeddings (`/v1/embeddings`).
        EMBEDDINGS = "embeddings";
        /// Retrieval (rerank, score).
        RETRIEVAL = "retrieval";
        /// Creating an agent.
        CREATE_AGENT = "create_agent";
        /// Invoking an agent.
        INVOKE_AGENT = "invoke_agent";
        /// Executing a tool.
        EXECUTE_TOOL = "execute_tool";
        /// Invoking a workflow.
        INVOKE_WORKFLOW = "invoke_workflow";
    }
}

/// Well-known values of [`crate::attr::PROVIDER_NAME`] that inferscope uses.
pub mod provider {
    consts! {
        /// OpenAI's own API.
        OPENAI = "openai";
    }

    /// vLLM. A custom value: the conventions allow any provider name, and list none for vLLM.
    pub const VLLM: &str = "vllm";
}

/// Values of [`crate::attr::TOKEN_TYPE`].
pub mod token_type {
    consts! {
        /// Prompt tokens.
        INPUT = "input";
        /// Generated tokens.
        OUTPUT = "output";
    }
}

/// Values of [`crate::attr::OUTPUT_TYPE`].
pub mod output_type {
    consts! {
        /// Plain text.
        TEXT = "text";
        /// Structured output (`response_format` json_object / json_schema).
        JSON = "json";
        /// Images.
        IMAGE = "image";
        /// Speech.
        SPEECH = "speech";
    }
}

/// Values of [`crate::attr::ERROR_TYPE`] defined by the general conventions.
pub mod error_type {
    /// Any error without a better low-cardinality name.
    pub const OTHER: &str = "_OTHER";
}
