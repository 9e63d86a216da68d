//! The OTLP/HTTP receiver: `POST /v1/traces` with `application/x-protobuf` or
//! `application/json`, optionally `Content-Encoding: gzip`; answers in the request's encoding.

use std::convert::Infallible;
use std::sync::Arc;

use super::decode::{self, Format};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message as _;
use tokio::sync::watch;

use super::{Refusal, accept};
use crate::IngestState;
use crate::response_body::ResponseBody;
use inferscope_server::{Listener, Phase};

/// `google.rpc.Status`, the error body OTLP/HTTP specifies.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

pub(crate) async fn serve(
    listener: Listener,
    shared: Arc<IngestState>,
    phase: watch::Receiver<Phase>,
) -> bool {
    listener
        .serve_plain(move |req| handle(shared.clone(), req), phase)
        .await
}

fn reply(status: StatusCode, format: Format, body: Vec<u8>) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(Bytes::from(body)));
    *r.status_mut() = status;
    let ct = match format {
        Format::Protobuf => "application/x-protobuf",
        Format::Json => "application/json",
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

fn error(status: StatusCode, format: Format, code: i32, message: String) -> Response<ResponseBody> {
    let body = match format {
        Format::Protobuf => RpcStatus { code, message }.encode_to_vec(),
        Format::Json => serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes(),
    };
    reply(status, format, body)
}

async fn handle(
    shared: Arc<IngestState>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    const INVALID_ARGUMENT: i32 = 3;
    const RESOURCE_EXHAUSTED: i32 = 8;
    const UNIMPLEMENTED: i32 = 12;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = if content_type.starts_with("application/json") {
        Format::Json
    } else {
        Format::Protobuf
    };
    if req.uri().path() != "/v1/traces" {
        return Ok(error(
            StatusCode::NOT_FOUND,
            format,
            UNIMPLEMENTED,
            "only /v1/traces is served".into(),
        ));
    }
    if req.method() != Method::POST {
        return Ok(error(
            StatusCode::METHOD_NOT_ALLOWED,
            format,
            UNIMPLEMENTED,
            "use POST".into(),
        ));
    }
    if !(content_type.starts_with("application/x-protobuf")
        || content_type.starts_with("application/json"))
    {
        return Ok(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format,
            INVALID_ARGUMENT,
            "content type must be application/x-protobuf or application/json".into(),
        ));
    }
    let gzip = match req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        None | Some("identity") => false,
        Some("gzip") => true,
        Some(_) => {
            return Ok(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format,
                INVALID_ARGUMENT,
                "content encoding must be gzip or identity".into(),
            ));
        }
    };
    let limit = shared.config.ingest.max_bytes;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format,
            INVALID_ARGUMENT,
            format!("payload over {limit} bytes"),
        )
    };
    if req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        return Ok(too_large());
    }
    let body = match http_body_util::Limited::new(req.into_body(), limit)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Ok(too_large()),
        Err(e) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                format,
                INVALID_ARGUMENT,
                format!("cannot read the body: {e}"),
            ));
        }
    };
    let request = match decode::decode_body(&body, format, gzip, limit) {
        Ok(r) => r,
        Err(decode::DecodeError::TooLarge { .. }) => return Ok(too_large()),
        Err(e) => {
            shared
                .stats
                .refused_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(error(
                StatusCode::BAD_REQUEST,
                format,
                INVALID_ARGUMENT,
                e.to_string(),
            ));
        }
    };
    Ok(match accept(&shared, request).await {
        Ok(a) => {
            let response = ExportTraceServiceResponse {
                partial_success: (a.rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: i64::try_from(a.rejected).unwrap_or(i64::MAX),
                    error_message: a.message.unwrap_or_default(),
                }),
            };
            let body = match format {
                Format::Protobuf => response.encode_to_vec(),
                Format::Json => serde_json::to_vec(&response).unwrap_or_default(),
            };
            reply(StatusCode::OK, format, body)
        }
        Err(Refusal::Busy(after)) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                format,
                RESOURCE_EXHAUSTED,
                "the gateway's export queue is full; retry later".into(),
            );
            if let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    })
}
