//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the process serves) and
//! `/readyz` (not shutting down, and the upstream answers its `/health`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::AdminState;
use crate::request_body::RequestBody;
use crate::response_body::ResponseBody;
use inferscope_server::{Listener, Phase};

pub(crate) async fn serve(
    listener: Listener,
    shared: Arc<AdminState>,
    phase: watch::Receiver<Phase>,
) -> bool {
    listener
        .serve_plain(move |req| handle(shared.clone(), req), phase)
        .await
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

async fn handle(
    shared: Arc<AdminState>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    Ok(match req.uri().path() {
        "/metrics" => {
            let accept = req
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let (text, content_type) = shared.metrics.encode_for(accept);
            reply(StatusCode::OK, content_type, text)
        }
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            if shared.lifecycle.stopping.load(Ordering::Relaxed) {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "shutting down\n",
                )
            } else {
                match upstream_health(&shared).await {
                    Ok(()) => reply(StatusCode::OK, "text/plain", "ready\n"),
                    Err(why) => reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        format!("upstream not ready: {why}\n"),
                    ),
                }
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics, /healthz, /readyz\n",
        ),
    })
}

async fn upstream_health(shared: &AdminState) -> Result<(), String> {
    let up = &shared.config.upstream;
    let uri = format!("{}/health", up.base);
    let mut req = Request::new(RequestBody::empty());
    *req.uri_mut() = uri.parse().map_err(|_| "bad upstream URL".to_owned())?;
    match tokio::time::timeout(Duration::from_secs(2), shared.upstream.send(req)).await {
        Ok(Ok((head, _))) if head.status.is_success() => Ok(()),
        Ok(Ok((head, _))) => Err(format!("/health answered {}", head.status)),
        Ok(Err(failure)) => Err(failure.message()),
        Err(_) => Err("/health did not answer within 2 s".into()),
    }
}
