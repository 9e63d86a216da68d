//! An in-process OTLP receiver (gRPC and HTTP, protobuf and JSON, gzip) on 127.0.0.1, for
//! tests and benchmarks. It records every request and can be scripted to fail, throttle or
//! partially reject, so retry and loss behaviour can be tested without a collector.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use inferscope_server::{Limits, Listener, Phase};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::sync::{Notify, watch};
use tonic::codegen::Service as _;

/// How the receiver answers one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Accept everything.
    Accept,
    /// Accept, but report `rejected` spans in `partial_success`.
    Partial {
        /// Spans reported rejected.
        rejected: i64,
        /// The message.
        message: String,
    },
    /// gRPC: fail with this code, optionally with `RetryInfo`.
    GrpcStatus(tonic::Code, Option<Duration>),
    /// HTTP: fail with this status, optionally with a `Retry-After` value.
    HttpStatus(u16, Option<String>),
    /// Wait this long, then accept.
    Delay(Duration),
}

/// The transport a request came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with a protobuf body.
    HttpProtobuf,
    /// OTLP/HTTP with a JSON body.
    HttpJson,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The transport.
    pub transport: Transport,
    /// Request headers (gRPC metadata as headers).
    pub headers: HeaderMap,
    /// Whether the body was gzip-compressed.
    pub gzip: bool,
    /// The decoded request.
    pub request: ExportTraceServiceRequest,
    /// Whether it was accepted (and its spans count as delivered).
    pub accepted: bool,
}

/// A span with the resource and scope it arrived under.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The span.
    pub span: Span,
    /// Resource attributes.
    pub resource: Vec<KeyValue>,
    /// Scope name.
    pub scope: String,
}

impl ReceivedSpan {
    /// A span attribute as a display string (`None` if absent).
    pub fn attr(&self, key: &str) -> Option<String> {
        find(&self.span.attributes, key)
    }

    /// A resource attribute as a display string.
    pub fn resource_attr(&self, key: &str) -> Option<String> {
        find(&self.resource, key)
    }
}

fn find(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(display)
}

/// A value as text: strings bare, numbers and booleans as written, arrays as `[a,b]`.
pub fn display(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::ArrayValue(a)) => {
            format!(
                "[{}]",
                a.values.iter().map(display).collect::<Vec<_>>().join(",")
            )
        }
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[derive(Default)]
struct State {
    /// Only count spans; keep no request (for long benchmarks).
    count_only: std::sync::atomic::AtomicBool,
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    spans: AtomicU64,
    notify: Notify,
}

impl State {
    fn next_reply(&self) -> Reply {
        self.script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .unwrap_or(Reply::Accept)
    }

    fn record(&self, r: Received) {
        if r.accepted {
            let n: usize = r
                .request
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum();
            self.spans.fetch_add(n as u64, Ordering::Relaxed);
        }
        if self.count_only.load(Ordering::Relaxed) {
            self.notify.notify_waiters();
            return;
        }
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(r);
        self.notify.notify_waiters();
    }
}

/// A running receiver. Stops when dropped.
pub struct Receiver {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<Phase>,
    tls: bool,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("grpc", &self.grpc_addr)
            .field("http", &self.http_addr)
            .finish()
    }
}

impl Receiver {
    /// Starts both servers on 127.0.0.1, on ports the system picks.
    pub async fn start() -> std::io::Result<Receiver> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Receiver::start_on(loopback, loopback).await
    }

    /// Starts both servers on the given addresses.
    pub async fn start_on(grpc: SocketAddr, http: SocketAddr) -> std::io::Result<Receiver> {
        Receiver::start_with(grpc, http, None).await
    }

    /// Starts both servers on 127.0.0.1 with TLS, presenting this PEM certificate chain and key.
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> std::io::Result<Receiver> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Receiver::start_with(
            loopback,
            loopback,
            Some((cert_pem.to_owned(), key_pem.to_owned())),
        )
        .await
    }

    async fn start_with(
        grpc: SocketAddr,
        http: SocketAddr,
        tls: Option<(String, String)>,
    ) -> std::io::Result<Receiver> {
        let state = Arc::new(State::default());
        let (stop, phase) = watch::channel(Phase::Serving);
        let acceptor = match &tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None => None,
        };
        let listen = |name, addr| {
            let acceptor = acceptor.clone();
            async move {
                let listener = Listener::bind(name, addr, LIMITS).await?;
                Ok::<_, std::io::Error>(match acceptor {
                    Some(a) => listener.with_tls(a),
                    None => listener,
                })
            }
        };

        let grpc_listener = listen("receiver-grpc", grpc).await?;
        let grpc_addr = grpc_listener.local_addr()?;
        let service = TraceServiceServer::new(GrpcService {
            state: state.clone(),
        })
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(64 * 1024 * 1024);
        let mut builder = Builder::new(TokioExecutor::new()).http2_only();
        builder
            .http2()
            .timer(TokioTimer::new())
            .initial_stream_window_size(4 * 1024 * 1024)
            .initial_connection_window_size(8 * 1024 * 1024);
        let handle = move |req: Request<Incoming>, _in_progress| {
            let mut service = service.clone();
            async move { service.call(req).await }
        };
        tokio::spawn(grpc_listener.serve(builder, handle, phase.clone(), || {}));

        let http_listener = listen("receiver-http", http).await?;
        let http_addr = http_listener.local_addr()?;
        let http_state = state.clone();
        let handle = move |req| handle_http(req, http_state.clone());
        tokio::spawn(http_listener.serve_plain(handle, phase));

        Ok(Receiver {
            grpc_addr,
            http_addr,
            state,
            stop,
            tls: tls.is_some(),
        })
    }

    /// `http://127.0.0.1:<port>` of the gRPC server (`https://localhost:<port>` with TLS).
    pub fn grpc_endpoint(&self) -> String {
        match self.tls {
            false => format!("http://{}", self.grpc_addr),
            true => format!("https://localhost:{}", self.grpc_addr.port()),
        }
    }

    /// `http://127.0.0.1:<port>/v1/traces` of the HTTP server (`https://localhost:…` with TLS).
    pub fn http_endpoint(&self) -> String {
        match self.tls {
            false => format!("http://{}/v1/traces", self.http_addr),
            true => format!("https://localhost:{}/v1/traces", self.http_addr.port()),
        }
    }

    /// The gRPC server's address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The HTTP server's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Keeps only the span count from now on, not the requests (for long benchmarks).
    pub fn count_only(&self) {
        self.state.count_only.store(true, Ordering::Relaxed);
    }

    /// The next requests get these replies, in order; then requests are accepted again.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(replies);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Spans delivered (in accepted requests) so far.
    pub fn span_count(&self) -> u64 {
        self.state.spans.load(Ordering::Relaxed)
    }

    /// Every delivered span, with its resource and scope.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let mut out = Vec::new();
        for r in self.requests().into_iter().filter(|r| r.accepted) {
            for rs in r.request.resource_spans {
                let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
                for ss in rs.scope_spans {
                    let scope = ss.scope.map(|s| s.name).unwrap_or_default();
                    for span in ss.spans {
                        out.push(ReceivedSpan {
                            span,
                            resource: resource.clone(),
                            scope: scope.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Waits until at least `n` spans were delivered, or `timeout` passed; returns the spans.
    pub async fn wait_for_spans(&self, n: u64, timeout: Duration) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.notify.notified();
            if self.span_count() >= n {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        self.spans()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.stop.send(Phase::Draining);
    }
}

/// The receiver's connections: no cap worth the name, quiet ones closed after a minute, none
/// left to finish at a stop (a test that drops its receiver is done with it).
const LIMITS: Limits = Limits {
    max_connections: 1 << 16,
    header_timeout: Some(Duration::from_secs(60)),
    grace: Duration::ZERO,
};

fn tls_acceptor(cert_pem: &str, key_pem: &str) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| invalid(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| invalid(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

struct GrpcService {
    state: Arc<State>,
}

#[tonic::async_trait]
impl TraceService for GrpcService {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request.metadata().clone().into_headers();
        let gzip = headers
            .get("grpc-encoding")
            .is_some_and(|v| v.as_bytes() == b"gzip");
        let request = request.into_inner();
        let reply = self.state.next_reply();
        if let Reply::Delay(d) = &reply {
            tokio::time::sleep(*d).await;
        }
        let (result, accepted) = match reply {
            Reply::GrpcStatus(code, retry) => {
                let status = match retry {
                    Some(d) => <tonic::Status as tonic_types::StatusExt>::with_error_details(
                        code,
                        "scripted failure",
                        tonic_types::ErrorDetails::with_retry_info(Some(d)),
                    ),
                    None => tonic::Status::new(code, "scripted failure"),
                };
                (Err(status), false)
            }
            Reply::Partial { rejected, message } => (
                Ok(tonic::Response::new(ExportTraceServiceResponse {
                    partial_success: Some(ExportTracePartialSuccess {
                        rejected_spans: rejected,
                        error_message: message,
                    }),
                })),
                true,
            ),
            _ => (
                Ok(tonic::Response::new(ExportTraceServiceResponse::default())),
                true,
            ),
        };
        self.state.record(Received {
            transport: Transport::Grpc,
            headers,
            gzip,
            request,
            accepted,
        });
        result
    }
}

async fn handle_http(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let respond = |status: StatusCode, body: Bytes, content_type: &'static str| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        r
    };
    if req.method() != http::Method::POST || req.uri().path() != "/v1/traces" {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"not found"),
            "text/plain",
        ));
    }
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(respond(StatusCode::BAD_REQUEST, Bytes::new(), "text/plain")),
    };
    let gzip = headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let body = if gzip {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return Ok(respond(
                StatusCode::BAD_REQUEST,
                Bytes::from_static(b"bad gzip"),
                "text/plain",
            ));
        }
        Bytes::from(out)
    } else {
        body
    };
    let json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let request = if json {
        serde_json::from_slice::<ExportTraceServiceRequest>(&body).map_err(|e| e.to_string())
    } else {
        ExportTraceServiceRequest::decode(&body[..]).map_err(|e| e.to_string())
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            return Ok(respond(
                StatusCode::BAD_REQUEST,
                Bytes::from(e),
                "text/plain",
            ));
        }
    };
    let reply = state.next_reply();
    if let Reply::Delay(d) = &reply {
        tokio::time::sleep(*d).await;
    }
    let encode = |r: ExportTraceServiceResponse| -> (Bytes, &'static str) {
        if json {
            (
                Bytes::from(serde_json::to_vec(&r).unwrap_or_default()),
                "application/json",
            )
        } else {
            (Bytes::from(r.encode_to_vec()), "application/x-protobuf")
        }
    };
    let (response, accepted) = match reply {
        Reply::HttpStatus(code, retry_after) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = respond(
                status,
                Bytes::from_static(b"scripted failure"),
                "text/plain",
            );
            if let Some(v) = retry_after.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
                r.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
            (r, false)
        }
        Reply::Partial { rejected, message } => {
            let (b, ct) = encode(ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message,
                }),
            });
            (respond(StatusCode::OK, b, ct), true)
        }
        _ => {
            let (b, ct) = encode(ExportTraceServiceResponse::default());
            (respond(StatusCode::OK, b, ct), true)
        }
    };
    state.record(Received {
        transport: if json {
            Transport::HttpJson
        } else {
            Transport::HttpProtobuf
        },
        headers,
        gzip,
        request,
        accepted,
    });
    Ok(response)
}
