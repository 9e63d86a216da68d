//! Errors with vLLM's bodies and statuses (checked against vLLM 0.32):
//! `{"error":{"message","type","param","code"}}`, pydantic-style validation messages, and
//! FastAPI's `{"detail":"Not Found"}` for unknown routes.

use bytes::Bytes;
use http::StatusCode;

use super::json::Json;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// `error.message`.
    pub message: String,
    /// `error.type`.
    pub kind: &'static str,
    /// `error.param`.
    pub param: Option<String>,
    /// Answer FastAPI's `{"detail": …}` instead (unknown route, wrong method).
    pub detail_only: bool,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        message: String,
        param: Option<String>,
    ) -> ApiError {
        ApiError {
            status,
            message,
            kind,
            param,
            detail_only: false,
        }
    }

    /// 400 `BadRequestError`.
    pub fn bad_request(message: String, param: Option<&str>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "BadRequestError",
            message,
            param.map(str::to_owned),
        )
    }

    /// 404 for a model the server does not serve.
    pub fn unknown_model(model: &str, served: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            format!("The model `{model}` does not exist. Valid aliases: {served}."),
            Some("model".into()),
        )
    }

    /// 404 for an unknown model on the pooling routes (`/v1/embeddings`), worded as vLLM does
    /// there: no aliases, no `param`.
    pub fn unknown_pooling_model(model: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            format!("The model `{model}` does not exist."),
            None,
        )
    }

    /// 400 when `max_tokens` alone exceeds the context.
    pub fn max_tokens_over_context(max_tokens: u64, max_model_len: u32) -> ApiError {
        ApiError::bad_request(
            format!(
                "max_tokens={max_tokens} cannot be greater than max_model_len={max_model_len}. Please request fewer output tokens. (parameter=max_tokens, value={max_tokens})"
            ),
            Some("max_tokens"),
        )
    }

    /// 400 when the prompt leaves no room for output.
    pub fn prompt_over_context(prompt_tokens: u32, max_model_len: u32) -> ApiError {
        ApiError::bad_request(
            format!(
                "This model's maximum context length is {max_model_len} tokens. However, your prompt contains at least {prompt_tokens} input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value={prompt_tokens})"
            ),
            Some("input_tokens"),
        )
    }

    /// A pydantic validation error, as vLLM's request validation reports it.
    pub fn validation(kind: &str, loc: &str, msg: &str, input: &str) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!(
                "1 validation error:\n  {{'type': '{kind}', 'loc': '{loc}', 'msg': '{msg}', 'input': {input}}}"
            ),
            Some(loc.to_owned()),
        )
    }

    /// A required field is missing; `fields` is how many the body had.
    pub fn missing(loc: &str, fields: usize) -> ApiError {
        ApiError::validation(
            "missing",
            loc,
            "Field required",
            &format!("'<dict of {fields} items>'"),
        )
    }

    /// The body is not valid JSON; `offset` is the byte where parsing failed.
    pub fn json_invalid(offset: usize, reason: &str) -> ApiError {
        let loc = format!("body.{offset}");
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!(
                "1 validation error:\n  {{'type': 'json_invalid', 'loc': '{loc}', 'msg': 'JSON decode error', 'input': '<dict of 0 items>', 'ctx': {{'error': \"{reason}\"}}}}"
            ),
            Some(loc),
        )
    }

    /// An error with a chosen status (fault injection, engine failures).
    pub fn status(status: StatusCode, message: &str) -> ApiError {
        let kind = match status.as_u16() {
            400 => "BadRequestError",
            401 => "AuthenticationError",
            403 => "PermissionDeniedError",
            404 => "NotFoundError",
            408 => "RequestTimeoutError",
            429 => "RateLimitError",
            503 => "ServiceUnavailableError",
            500..=599 => "InternalServerError",
            _ => "Error",
        };
        ApiError::new(status, kind, message.to_owned(), None)
    }

    /// FastAPI's 404 for a path no route matches.
    pub fn route_not_found() -> ApiError {
        ApiError {
            detail_only: true,
            ..ApiError::status(StatusCode::NOT_FOUND, "Not Found")
        }
    }

    /// FastAPI's 405.
    pub fn method_not_allowed() -> ApiError {
        ApiError {
            detail_only: true,
            ..ApiError::status(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        }
    }

    /// The Messages API's error body, as vLLM writes it for errors raised while serving a
    /// request (`{"type":"error","error":{"type","message"}}`); validation errors keep the
    /// OpenAI shape there too.
    pub fn anthropic_body(&self) -> Bytes {
        if self.kind == "Bad Request" || self.detail_only {
            return self.body();
        }
        let mut j = Json::with_capacity(192);
        j.raw("{\"type\":\"error\",\"error\":{\"type\":")
            .str(self.kind)
            .raw(",\"message\":")
            .str(&self.message)
            .raw("}}");
        j.into_bytes()
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        let mut j = Json::with_capacity(256);
        if self.detail_only {
            j.raw("{\"detail\":").str(&self.message).raw("}");
            return j.into_bytes();
        }
        j.raw("{\"error\":{\"message\":")
            .str(&self.message)
            .raw(",\"type\":")
            .str(self.kind)
            .raw(",\"param\":");
        match &self.param {
            Some(p) => j.str(p),
            None => j.raw("null"),
        };
        j.raw(",\"code\":")
            .num(u64::from(self.status.as_u16()))
            .raw("}}");
        j.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bodies the real vLLM 0.32 server sent (../shared/fixtures/vllm-0.32-cpu/http/).
    #[test]
    fn bodies_match_the_fixtures() {
        assert_eq!(
            ApiError::unknown_model("nope", "tiny-llama").body(),
            Bytes::from_static(br#"{"error":{"message":"The model `nope` does not exist. Valid aliases: tiny-llama.","type":"NotFoundError","param":"model","code":404}}"#)
        );
        assert_eq!(
            ApiError::max_tokens_over_context(100000, 512).body(),
            Bytes::from_static(br#"{"error":{"message":"max_tokens=100000 cannot be greater than max_model_len=512. Please request fewer output tokens. (parameter=max_tokens, value=100000)","type":"BadRequestError","param":"max_tokens","code":400}}"#)
        );
        assert_eq!(
            ApiError::json_invalid(39, "Expecting ',' delimiter").body(),
            Bytes::from_static(br#"{"error":{"message":"1 validation error:\n  {'type': 'json_invalid', 'loc': 'body.39', 'msg': 'JSON decode error', 'input': '<dict of 0 items>', 'ctx': {'error': \"Expecting ',' delimiter\"}}","type":"Bad Request","param":"body.39","code":400}}"#)
        );
        assert_eq!(
            ApiError::route_not_found().body(),
            Bytes::from_static(br#"{"detail":"Not Found"}"#)
        );
    }
}
