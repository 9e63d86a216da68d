//! Every way an exchange can fail, classified once: who is at fault, which status the client
//! gets (when it still can), the log level, and the span's `error.type`.

use bytes::Bytes;
use http::StatusCode;

/// Whose fault a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The upstream server or the network to it.
    Upstream,
    /// The client (went away, sent a broken body).
    Downstream,
    /// The gateway itself (it was stopping).
    Gateway,
}

/// A failure of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The upstream refused or could not be reached.
    Connect(String),
    /// No response headers within the first-byte timeout.
    FirstByteTimeout,
    /// The response body fell silent for longer than the idle timeout.
    IdleTimeout,
    /// The exchange ran over the total timeout.
    TotalTimeout,
    /// The upstream broke the connection or sent something that is not HTTP.
    UpstreamBroken(String),
    /// The client went away before the response ended.
    ClientAborted,
    /// The client's request body could not be read.
    RequestBody(String),
    /// The gateway's shutdown grace period ran out while the exchange was in progress.
    Shutdown,
}

impl Failure {
    /// Whose fault it is.
    pub(crate) fn side(&self) -> Side {
        match self {
            Failure::ClientAborted | Failure::RequestBody(_) => Side::Downstream,
            Failure::Shutdown => Side::Gateway,
            _ => Side::Upstream,
        }
    }

    /// The span's `error.type` (low cardinality).
    pub(crate) fn error_type(&self) -> &'static str {
        match self {
            Failure::Connect(_) => "upstream_unreachable",
            Failure::FirstByteTimeout | Failure::IdleTimeout | Failure::TotalTimeout => "timeout",
            Failure::UpstreamBroken(_) => "upstream_broken",
            Failure::ClientAborted => "client_aborted",
            Failure::RequestBody(_) => "request_body",
            Failure::Shutdown => "gateway_shutdown",
        }
    }

    /// The status the client gets when the response has not started.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Failure::Connect(_) | Failure::UpstreamBroken(_) => StatusCode::BAD_GATEWAY,
            Failure::FirstByteTimeout | Failure::IdleTimeout | Failure::TotalTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Failure::RequestBody(_) => StatusCode::BAD_REQUEST,
            Failure::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
            // Nobody is listening; recorded as nginx does.
            Failure::ClientAborted => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        }
    }

    /// Whether the SERVER span's status is Error: not for the client's own doing (it went
    /// away, or sent a body that could not be read), which the HTTP conventions leave unset on
    /// a server span as they do a 4xx. `error.type` still says what happened. The CLIENT span,
    /// the gateway's call to the upstream, is Error for every failure: that call did not
    /// complete (as gRPC records a cancelled call on its client side but not its server side).
    pub(crate) fn is_server_error(&self) -> bool {
        self.side() != Side::Downstream
    }

    /// Whether it deserves a warning (upstream trouble) or only a debug line (clients leave;
    /// the shutdown logs its cut once, for all).
    pub(crate) fn is_warning(&self) -> bool {
        self.side() == Side::Upstream
    }

    /// A sentence for the log and the error body. Never holds request data or headers.
    pub(crate) fn message(&self) -> String {
        match self {
            Failure::Connect(e) => format!("upstream unreachable: {e}"),
            Failure::FirstByteTimeout => "upstream sent no response headers in time".into(),
            Failure::IdleTimeout => "upstream response stalled past the idle timeout".into(),
            Failure::TotalTimeout => "exchange ran past the total timeout".into(),
            Failure::UpstreamBroken(e) => format!("upstream connection failed: {e}"),
            Failure::ClientAborted => "client closed the connection".into(),
            Failure::RequestBody(e) => format!("request body could not be read: {e}"),
            Failure::Shutdown => "the gateway stopped before the exchange ended".into(),
        }
    }

    /// An OpenAI-style error body, as vLLM shapes its own.
    pub(crate) fn body(&self) -> Bytes {
        let status = self.status();
        let kind = match status {
            StatusCode::GATEWAY_TIMEOUT => "GatewayTimeout",
            StatusCode::BAD_REQUEST => "BadRequestError",
            StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
            _ => "BadGateway",
        };
        let body = serde_json::json!({
            "error": {
                "message": self.message(),
                "type": kind,
                "param": null,
                "code": status.as_u16(),
            }
        });
        Bytes::from(body.to_string())
    }
}

/// Describes a client error without the URL (which may carry a query with secrets).
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let f = Failure::Connect("connection refused".into());
        assert_eq!(
            (f.status(), f.error_type(), f.side()),
            (
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                Side::Upstream
            )
        );
        let body: serde_json::Value = serde_json::from_slice(&f.body()).unwrap();
        assert_eq!(body["error"]["code"], 502);
        assert_eq!(Failure::IdleTimeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(!Failure::ClientAborted.is_warning());
        assert!(!Failure::ClientAborted.is_server_error());
        assert!(!Failure::RequestBody("cut".into()).is_server_error());
        assert!(Failure::Shutdown.is_server_error());
        assert!(Failure::IdleTimeout.is_server_error());
    }
}
