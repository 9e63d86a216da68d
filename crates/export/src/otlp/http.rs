//! OTLP/HTTP (protobuf or JSON bodies) over hyper, with rustls for `https://`.

use std::io::Write;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;

use super::{BuildError, ExportResponse, clip, tls};
use crate::config::{Compression, OtlpConfig, Protocol, redact_userinfo};
use crate::exporter::{Accepted, ExportError};

/// Largest response body read (a partial-success message or an error status).
const MAX_RESPONSE: usize = 64 * 1024;

pub(super) struct HttpTransport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    headers: HeaderMap,
    gzip: bool,
}

impl HttpTransport {
    pub(super) fn new(config: &OtlpConfig) -> Result<HttpTransport, BuildError> {
        let uri: Uri = config
            .endpoint
            .parse()
            .map_err(|e: http::uri::InvalidUri| BuildError::Endpoint {
                endpoint: redact_userinfo(&config.endpoint),
                reason: e.to_string(),
            })?;
        let tls = tls::client_config(&config.tls)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let json = config.protocol == Protocol::HttpJson;
        let gzip = config.compression == Compression::Gzip;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(if json {
                "application/json"
            } else {
                "application/x-protobuf"
            }),
        );
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("inferscope/", env!("CARGO_PKG_VERSION"))),
        );
        if gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        for (name, value) in &config.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| BuildError::Header(name.clone()))?;
            let mut v = HeaderValue::from_str(value.expose())
                .map_err(|_| BuildError::Header(name.clone()))?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        Ok(HttpTransport {
            client,
            uri,
            headers,
            gzip,
        })
    }

    pub(super) async fn send(
        &self,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Accepted, ExportError> {
        let body = if self.gzip { gzip(&body)? } else { body };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .body(Full::new(body))
            .map_err(|e| ExportError::permanent(format!("cannot build the request: {e}")))?;
        *request.headers_mut() = self.headers.clone();
        let call = async {
            let response = self.client.request(request).await.map_err(|e| {
                ExportError::retryable(format!("HTTP request failed: {}", error_chain(&e)), None)
            })?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, ExportError>((status, headers, body))
        };
        let (status, headers, body) =
            tokio::time::timeout(timeout, call).await.map_err(|_| {
                ExportError::retryable(format!("HTTP export timed out after {timeout:?}"), None)
            })??;
        if status.is_success() {
            return Ok(self.accepted(&headers, &body));
        }
        let message = format!("HTTP {status}: {}", error_message(&headers, &body));
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
        ) {
            Err(ExportError::retryable(
                message,
                retry_after(&headers, SystemTime::now()),
            ))
        } else {
            Err(ExportError::permanent(message))
        }
    }

    fn accepted(&self, headers: &HeaderMap, body: &[u8]) -> Accepted {
        let response = if body.is_empty() {
            None
        } else if is_json(headers) {
            ExportResponse::from_json(body)
        } else {
            ExportResponse::decode(body).ok()
        };
        response.unwrap_or_default().accepted()
    }
}

fn gzip(body: &[u8]) -> Result<Bytes, ExportError> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(body)
        .and_then(|()| enc.finish())
        .map(Bytes::from)
        .map_err(|e| ExportError::permanent(format!("gzip failed: {e}")))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"))
}

/// The message of an error response: a `google.rpc.Status` (protobuf or JSON) or text.
fn error_message(headers: &HeaderMap, body: &[u8]) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    if body.is_empty() {
        return "(no body)".into();
    }
    let protobuf = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("protobuf"));
    let message = if is_json(headers) {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(clip))
    } else if protobuf {
        RpcStatus::decode(body).ok().map(|s| clip(&s.message))
    } else {
        None
    };
    if let Some(m) = message {
        return m;
    }
    clip(&String::from_utf8_lossy(body))
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    clip(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn error_bodies() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert_eq!(
            error_message(&h, br#"{"code":3,"message":"bad span"}"#),
            "bad span"
        );
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(error_message(&h, b"nope"), "nope");
        assert_eq!(error_message(&h, b""), "(no body)");
    }
}
