//! Which requests are inference calls, and what kind.

use inferscope_semconv::value::operation;

/// The API shape of an inference route: decides how bodies are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/chat/completions`: `messages` in, `choices[].message` / `delta` out.
    Chat,
    /// `/v1/completions`: `prompt` in, `choices[].text` out.
    Completions,
    /// `/v1/embeddings`, `/v2/embed`, `/pooling`: `input` in, `data[].embedding` out.
    Embeddings,
    /// `/v1/responses`: `input` / `instructions` in, `output[]` out.
    Responses,
    /// `/v1/messages` (the Anthropic Messages API): `system` and `messages` with content
    /// blocks in, `content[]` blocks out; streams of typed events (`message_start`,
    /// `content_block_delta`, `message_delta`, …) that always carry usage.
    Messages,
    /// `/classify`, `/score`, `/rerank` and their versioned forms.
    Pooling,
}

/// A known inference route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The route template (`http.route`).
    pub template: &'static str,
    /// The GenAI operation (`gen_ai.operation.name`).
    pub operation: &'static str,
    /// How its bodies are read.
    pub api: Api,
}

const ROUTES: &[Route] = &[
    route("/v1/chat/completions", operation::CHAT, Api::Chat),
    route(
        "/v1/completions",
        operation::TEXT_COMPLETION,
        Api::Completions,
    ),
    route("/v1/embeddings", operation::EMBEDDINGS, Api::Embeddings),
    route("/v2/embed", operation::EMBEDDINGS, Api::Embeddings),
    route("/pooling", operation::EMBEDDINGS, Api::Embeddings),
    route("/v1/responses", operation::CHAT, Api::Responses),
    route("/v1/messages", operation::CHAT, Api::Messages),
    route("/classify", "classify", Api::Pooling),
    route("/score", operation::RETRIEVAL, Api::Pooling),
    route("/v1/score", operation::RETRIEVAL, Api::Pooling),
    route("/rerank", operation::RETRIEVAL, Api::Pooling),
    route("/v1/rerank", operation::RETRIEVAL, Api::Pooling),
    route("/v2/rerank", operation::RETRIEVAL, Api::Pooling),
];

const fn route(template: &'static str, operation: &'static str, api: Api) -> Route {
    Route {
        template,
        operation,
        api,
    }
}

/// The inference route a `POST` to `path` is, if any. Other methods, sub-paths
/// (`/v1/responses/{id}`) and unknown paths are not inference calls; the gateway forwards them
/// with an HTTP span only. A trailing slash is tolerated, as vLLM's router does.
///
/// ```
/// use inferscope_core::observe::route::{classify, Api};
/// assert_eq!(classify("POST", "/v1/chat/completions").unwrap().api, Api::Chat);
/// assert!(classify("GET", "/v1/models").is_none());
/// ```
pub fn classify(method: &str, path: &str) -> Option<&'static Route> {
    if method != "POST" {
        return None;
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    ROUTES.iter().find(|r| r.template == path)
}

/// The route template of any path vLLM serves, for `http.route` on the SERVER span; `None` for
/// paths with variable parts or unknown ones (the span name is then the method alone, as the
/// HTTP conventions ask, to keep names low-cardinality).
pub fn template(path: &str) -> Option<&'static str> {
    const STATIC: &[&str] = &[
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/models",
        "/v1/chat/completions/batch",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/realtime",
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
        "/v1/score",
        "/v1/rerank",
        "/v2/rerank",
        "/v2/embed",
        "/inference/v1/generate",
        "/pooling",
        "/classify",
        "/score",
        "/rerank",
        "/tokenize",
        "/detokenize",
        "/invocations",
        "/health",
        "/ping",
        "/ready",
        "/load",
        "/version",
        "/server_info",
        "/metrics",
    ];
    let trimmed = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    if let Some(t) = STATIC.iter().find(|t| **t == trimmed) {
        return Some(t);
    }
    if let Some(rest) = trimmed.strip_prefix("/v1/responses/") {
        return Some(if rest.ends_with("/cancel") {
            "/v1/responses/{id}/cancel"
        } else {
            "/v1/responses/{id}"
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            classify("POST", "/v1/completions/").map(|r| r.operation),
            Some("text_completion")
        );
        assert_eq!(
            classify("POST", "/v1/embeddings").map(|r| r.api),
            Some(Api::Embeddings)
        );
        assert!(classify("POST", "/v1/responses/abc").is_none());
        assert_eq!(
            classify("POST", "/v1/messages").map(|r| (r.operation, r.api)),
            Some(("chat", Api::Messages))
        );
        // Counting tokens is not a model call: an HTTP span only.
        assert!(classify("POST", "/v1/messages/count_tokens").is_none());
        assert!(classify("PUT", "/v1/chat/completions").is_none());
        assert_eq!(
            template("/v1/responses/r1/cancel"),
            Some("/v1/responses/{id}/cancel")
        );
        assert_eq!(template("/v1/models"), Some("/v1/models"));
        assert_eq!(template("/anything"), None);
    }
}
