//! A plain HTTP client and the reply it reads whole, for end-to-end tests.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long a response head, and then each body frame, may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// A new HTTP/1.1 client (its own connection pool).
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body's bytes.
    pub body: Bytes,
    /// How many data frames the body came in.
    pub frames: usize,
    /// The body ended with an error (the connection closed early).
    pub cut: bool,
}

impl Reply {
    /// The body as JSON (panics, showing the body, if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to `base` + `path` (a body without a `content-type` header is sent as
/// JSON) and reads the reply whole; panics if the head or a frame takes over 30 s.
pub async fn send(
    base: &str,
    method: &str,
    path: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> Reply {
    let body: Bytes = body.into();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        PATIENCE,
        client().request(req.body(Full::new(body)).expect("a valid request")),
    )
    .await
    .expect("response within 30 s")
    .expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    let mut frames = 0;
    let mut cut = false;
    loop {
        match tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("body frame within 30 s")
        {
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    frames += 1;
                    bytes.extend_from_slice(&data);
                }
            }
            Some(Err(_)) => {
                cut = true;
                break;
            }
            None => break,
        }
    }
    Reply {
        status,
        headers,
        body: Bytes::from(bytes),
        frames,
        cut,
    }
}

/// `send` with POST.
pub async fn post(base: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    send(base, "POST", path, body.to_owned(), headers).await
}
