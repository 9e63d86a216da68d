//! The request path. [`handle`] takes each request through five phases, each a function here:
//!
//! 1. [`inbound`]: the SERVER span, parented by the caller's `traceparent`, and the
//!    [`Exchange`] that ends it;
//! 2. [`read_inference`]: an inference route gets its body read (within the parse limit and
//!    budget) and parsed, `stream_options.include_usage` edited in when the client did not ask
//!    for usage, and the CLIENT span started (`chat {model}`); every other route streams
//!    through untouched;
//! 3. [`upstream_request`]: hop-by-hop fields removed, a new `traceparent` whose parent is the
//!    CLIENT span (or the SERVER span for other routes), the upstream's URL;
//! 4. [`send`]: to the upstream ([`Upstream`]), the head awaited within the first-byte
//!    deadline;
//! 5. [`respond`]: status and headers as the upstream sent them plus `traceresponse`; the
//!    body is observed as it streams ([`ResponseBody`]) and the exchange ends with it
//!    ([`Exchange::finish`]).
//!
//! A failure in phases 2 to 4 becomes the gateway's own answer ([`answer`]) and the span's
//! error; nothing here fails a request because of telemetry.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use inferscope_core::observe::call::{CallTarget, InferenceCall, usage_counted_upstream};
use inferscope_core::observe::request;
use inferscope_core::observe::response::ResponseObserver;
use inferscope_core::observe::route::{self, Route};
use inferscope_core::trace_context::{extract_trace_context, inject};
use inferscope_core::{SpanContext, SpanKind};
use inferscope_semconv::{attr, http as http_attr, inferscope as own, span_name};
use inferscope_server::{ClientBody, ClientConn, InProgress};

use crate::ProxyState;
use crate::config::{Timeouts, Upstream as UpstreamConfig};
use crate::exchange::Exchange;
use crate::failure::Failure;
use crate::headers::remove_hop_by_hop;
use crate::join::JoinInfo;
use crate::request_body::{ReadBody, RequestBody, edited, read_inference_body};
use crate::response_body::{Deadlines, ResponseBody};
use crate::upstream::{Upstream, UpstreamBody};

/// Serves one request. Never fails: every failure becomes a response and a span.
///
/// hyper keeps a slot the size of this future for each connection, for as long as the
/// connection lives, streams included: the large steps (reading an inference body, sending
/// upstream, a tunnel) are boxed, so their memory lives only while they run, and so is the
/// exchange. 6,968 bytes a connection before, 2,008 with the steps boxed, 640 with the exchange
/// too (debug build; guarded by a test below).
pub(crate) async fn handle(
    shared: Arc<ProxyState>,
    req: Request<Incoming>,
    in_progress: InProgress,
) -> Result<Response<ResponseBody>, Infallible> {
    let arrived = (std::time::SystemTime::now(), Instant::now());
    let (mut parts, body) = req.into_parts();
    let body = ClientBody::new(body, in_progress.conn().clone());
    let (mut exchange, caller) = inbound(&shared, &parts, in_progress.conn(), arrived);
    // A protocol switch (a WebSocket) is tunnelled, over a connection of its own.
    if crate::tunnel::is_upgrade(&parts) {
        drop(body);
        return Ok(Box::pin(crate::tunnel::serve(shared, exchange, caller, parts)).await);
    }
    let body = match route::classify(parts.method.as_str(), parts.uri.path()) {
        None => RequestBody::Stream(body),
        Some(route) => {
            match Box::pin(read_inference(
                &shared,
                &mut exchange,
                &mut parts,
                route,
                body,
            ))
            .await
            {
                Ok(body) => body,
                Err(failure) => return Ok(answer(&shared, exchange, failure)),
            }
        }
    };
    let version = parts.version;
    let req = match upstream_request(&shared, &exchange, caller.as_ref(), parts, body) {
        Ok(r) => r,
        Err(failure) => return Ok(answer(&shared, exchange, failure)),
    };
    let deadlines = Deadline::from_now(&shared);
    exchange.hops.sent = Some(Instant::now());
    let (head, body) = match Box::pin(send(&shared.upstream, req, deadlines.first_byte)).await {
        Ok(r) => r,
        Err(failure) => return Ok(answer(&shared, exchange, failure)),
    };
    exchange.hops.head = Some(Instant::now());
    let client = (in_progress, version != http::Version::HTTP_2);
    Ok(respond(&shared, exchange, head, body, deadlines, client))
}

/// Phase 1: the SERVER span and the exchange; also the caller's trace context, if it sent one.
fn inbound(
    shared: &Arc<ProxyState>,
    parts: &http::request::Parts,
    peer: &ClientConn,
    (arrived, arrived_at): (std::time::SystemTime, Instant),
) -> (Box<Exchange>, Option<SpanContext>) {
    let caller = extract_trace_context(&parts.headers);
    let template = route::template(parts.uri.path());
    // Probes and scrapes are forwarded untraced: the caller's context goes upstream as it came.
    if shared.config.is_untraced(parts.uri.path()) {
        let server = inferscope_core::Span::non_recording(SpanContext::INVALID);
        let mut exchange = Exchange::new(shared.clone(), server);
        exchange.hops.arrived = Some(arrived_at);
        return (exchange, caller);
    }
    let mut server = shared.tracer.start_at(
        span_name::http_server(parts.method.as_str(), template),
        SpanKind::Server,
        caller.as_ref(),
        arrived,
    );
    if server.is_recording() {
        server_attributes(&mut server, shared, parts, template, peer);
    }
    let mut exchange = Exchange::new(shared.clone(), server);
    exchange.hops.arrived = Some(arrived_at);
    (exchange, caller)
}

/// Phase 2: reads and parses an inference body, starts the CLIENT span, and returns the body
/// to send upstream (edited when usage is added; `content-length` then removed from `parts`).
async fn read_inference(
    shared: &ProxyState,
    exchange: &mut Exchange,
    parts: &mut http::request::Parts,
    route: &'static Route,
    body: ClientBody,
) -> Result<RequestBody, Failure> {
    let config = &shared.config;
    let read = read_inference_body(
        body,
        config.max_parse_bytes,
        &shared.budget,
        config.header_timeout,
    )
    .await
    .map_err(Failure::RequestBody)?;
    exchange.hops.body_read = Some(Instant::now());
    let (body, facts, usage_requested) = match read {
        ReadBody::Whole(whole, held) => {
            let facts = request::parse(route.api, &whole, &config.capture);
            // Several choices: only over the gateway's own HTTP/1.1 connections, which learn
            // the upstream's fingerprint (see `respond`).
            let edit = if !config.inject_usage {
                None
            } else if request::several_choices(&facts) {
                matches!(shared.upstream, crate::upstream::Upstream::H1(_))
                    .then(|| request::include_usage_edit_any(route.api, &whole, &facts))
                    .flatten()
            } else {
                request::include_usage_edit(route.api, &whole, &facts)
            };
            let usage_requested = edit.is_some();
            (edited(whole, edit.as_ref(), held), facts, usage_requested)
        }
        ReadBody::Partial(read, held, rest, why) => {
            let facts = request::RequestFacts {
                parse_error: Some(why),
                ..request::RequestFacts::default()
            };
            (RequestBody::Chained(read, rest, held), facts, false)
        }
    };
    if usage_requested {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    let target = CallTarget {
        provider: &config.provider,
        server_address: &config.upstream.host,
        server_port: config.upstream.port,
    };
    let mut call = InferenceCall::start(
        &shared.tracer,
        Some(exchange.server.context()),
        SpanKind::Client,
        route,
        facts,
        &target,
        Instant::now(),
    );
    if call.is_recording() {
        call.set_attribute(own::UPSTREAM, config.upstream.base.clone());
        shared.join.start(
            call.context().span_id,
            JoinInfo {
                trace_id: call.context().trace_id,
                operation: route.operation,
                request_model: call.request().model.clone(),
                temperature: call.request().temperature,
                choice_count: call.request().choice_count,
                ..JoinInfo::default()
            },
        );
    }
    if usage_requested {
        call.set_usage_requested();
    }
    if usage_counted_upstream(&exchange.server.context().state) {
        call.set_usage_counted_upstream();
    }
    exchange.inference = Some(call);
    Ok(body)
}

/// Phase 3: the request for the upstream: its URL, the client's headers without hop-by-hop
/// fields and `host`, and a `traceparent` whose parent is the exchange's innermost span (the
/// caller's own context when tracing is off).
fn upstream_request(
    shared: &ProxyState,
    exchange: &Exchange,
    caller: Option<&SpanContext>,
    mut parts: http::request::Parts,
    body: RequestBody,
) -> Result<Request<RequestBody>, Failure> {
    let parent = match &exchange.inference {
        Some(call) => call.context(),
        None => exchange.server.context(),
    };
    let mut headers = std::mem::take(&mut parts.headers);
    upstream_headers(&mut headers, parent, caller);
    let uri = upstream_uri(&shared.config.upstream, &parts.uri).map_err(Failure::UpstreamBroken)?;
    let mut req = Request::new(body);
    *req.method_mut() = parts.method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok(req)
}

/// The client's headers as the upstream gets them: without hop-by-hop fields and `host`, and
/// with `parent` as the trace context (the caller's, unchanged, when tracing is off).
pub(crate) fn upstream_headers(
    headers: &mut http::HeaderMap,
    parent: &SpanContext,
    caller: Option<&SpanContext>,
) {
    remove_hop_by_hop(headers);
    headers.remove(header::HOST);
    headers.remove("traceparent");
    headers.remove("tracestate");
    if parent.is_valid() {
        inject(parent, headers);
    } else if let Some(p) = caller {
        inject(p, headers);
    }
}

/// The deadlines of one exchange, fixed when its request goes upstream.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    /// The response head must have arrived by then (and by the total deadline).
    first_byte: tokio::time::Instant,
    /// The whole response must have arrived by then.
    total: Option<tokio::time::Instant>,
}

impl Deadline {
    fn from_now(shared: &ProxyState) -> Deadline {
        Deadline::new(&shared.config.timeouts, tokio::time::Instant::now())
    }

    fn new(timeouts: &Timeouts, now: tokio::time::Instant) -> Deadline {
        let total = timeouts.total.map(|t| now + t);
        let first_byte = now + timeouts.first_byte;
        Deadline {
            first_byte: total.map_or(first_byte, |t| t.min(first_byte)),
            total,
        }
    }
}

/// Phase 4: sends the request and waits for the response head until `first_byte`.
async fn send(
    upstream: &Upstream,
    req: Request<RequestBody>,
    first_byte: tokio::time::Instant,
) -> Result<(http::response::Parts, UpstreamBody), Failure> {
    match tokio::time::timeout_at(first_byte, upstream.send(req)).await {
        Ok(sent) => sent,
        Err(_) => Err(Failure::FirstByteTimeout),
    }
}

/// Phase 5: the client's response: the upstream's head (without hop-by-hop fields, plus
/// `traceresponse`) and its body, observed. `client`: the request on its connection, and
/// whether that speaks HTTP/1.
fn respond(
    shared: &ProxyState,
    mut exchange: Box<Exchange>,
    mut head: http::response::Parts,
    body: UpstreamBody,
    deadline: Deadline,
    client: (InProgress, bool),
) -> Response<ResponseBody> {
    let config = &shared.config;
    remove_hop_by_hop(&mut head.headers);
    let observer = exchange.inference.as_ref().map(|inf| {
        let stream = head
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let observer = ResponseObserver::new(
            stream,
            inf.usage_requested(),
            &config.capture,
            config.max_parse_bytes,
        )
        .with_budget(shared.budget.clone());
        // Each choice's finishing event gets the fingerprint back: at once when this
        // connection has shown it, else once the usage chunk says it.
        if inf.usage_requested() && request::several_choices(inf.request()) {
            observer.with_several_choices(body.fingerprint())
        } else {
            observer
        }
    });
    // The usage chunk the gateway asked for is taken out of a stream: its length changes.
    if observer.as_ref().is_some_and(ResponseObserver::is_stream)
        && exchange
            .inference
            .as_ref()
            .is_some_and(InferenceCall::usage_requested)
    {
        head.headers.remove(header::CONTENT_LENGTH);
    }
    traceresponse(shared, &exchange, &mut head.headers);
    if let Some(inf) = exchange.inference.as_mut() {
        // What the upstream spoke: it varies per connection for an https:// upstream (ALPN).
        let version = if head.version == http::Version::HTTP_2 {
            "2"
        } else {
            "1.1"
        };
        inf.set_attribute(http_attr::NETWORK_PROTOCOL_VERSION, version);
    }
    exchange.response_started(head.status.as_u16(), observer);
    if body.is_end_stream() {
        exchange.finish(None);
        drop(body);
        return Response::from_parts(head, ResponseBody::full(Bytes::new()));
    }
    let deadlines = Deadlines::new(config.timeouts.idle, deadline.total);
    let body = ResponseBody::observed(body, exchange, deadlines, client);
    Response::from_parts(head, body)
}

/// The gateway's own answer to a failure before the response started.
pub(crate) fn answer(
    shared: &ProxyState,
    mut exchange: Box<Exchange>,
    failure: Failure,
) -> Response<ResponseBody> {
    let status = failure.status();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    traceresponse(shared, &exchange, &mut headers);
    exchange.response_started(status.as_u16(), None);
    let body = failure.body();
    exchange.finish(Some(failure));
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

pub(crate) fn traceresponse(
    shared: &ProxyState,
    exchange: &Exchange,
    headers: &mut http::HeaderMap,
) {
    let Some(name) = &shared.config.traceresponse_header else {
        return;
    };
    if !shared.tracer.is_enabled() {
        return;
    }
    let ctx = exchange.server.context();
    if !ctx.is_valid() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.traceparent()) {
        headers.insert(name.clone(), v);
    }
}

/// The upstream's URL for a request to `uri`: its path and query behind the upstream's base.
fn upstream_uri(up: &UpstreamConfig, uri: &Uri) -> Result<Uri, String> {
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let pq = if up.path_prefix.is_empty() {
        pq.to_owned()
    } else {
        format!("{}{}", up.path_prefix, pq)
    };
    Uri::builder()
        .scheme(if up.tls { "https" } else { "http" })
        .authority(up.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|e| format!("cannot build the upstream URL: {e}"))
}

fn server_attributes(
    span: &mut inferscope_core::Span,
    shared: &ProxyState,
    parts: &http::request::Parts,
    template: Option<&'static str>,
    peer: &ClientConn,
) {
    span.set_attribute(http_attr::REQUEST_METHOD, parts.method.as_str().to_owned());
    span.set_attribute(http_attr::URL_PATH, parts.uri.path().to_owned());
    let scheme = if shared.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    span.set_attribute(http_attr::URL_SCHEME, scheme);
    if let Some(t) = template {
        span.set_attribute(http_attr::ROUTE, t);
    }
    let version = match parts.version {
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_10 => "1.0",
        _ => "1.1",
    };
    span.set_attribute(http_attr::NETWORK_PROTOCOL_VERSION, version);
    span.set_attribute(http_attr::CLIENT_ADDRESS, peer.ip.clone());
    span.set_attribute(http_attr::CLIENT_PORT, i64::from(peer.addr.port()));
    let host = match parts.headers.get(header::HOST) {
        Some(h) => http::uri::Authority::try_from(h.as_bytes()).ok(),
        None => parts.uri.authority().cloned(),
    };
    match host {
        Some(a) => {
            span.set_attribute(attr::SERVER_ADDRESS, a.host().to_owned());
            span.set_attribute(
                attr::SERVER_PORT,
                i64::from(a.port_u16().unwrap_or(shared.local_addr.port())),
            );
        }
        None => {
            span.set_attribute(attr::SERVER_ADDRESS, shared.local_addr.ip().to_string());
            span.set_attribute(attr::SERVER_PORT, i64::from(shared.local_addr.port()));
        }
    }
    if let Some(ua) = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        span.set_attribute(http_attr::USER_AGENT_ORIGINAL, ua.to_owned());
    }
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
    {
        span.set_attribute(http_attr::REQUEST_BODY_SIZE, len);
    }
    for name in &shared.config.captured_headers {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        if !values.is_empty() {
            span.set_attribute(
                format!("{}{}", http_attr::REQUEST_HEADER_PREFIX, name.as_str()),
                values,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn upstream(base: &str) -> UpstreamConfig {
        crate::config::GatewayConfig::local(base)
            .map(|c| c.upstream)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_upstream_url_keeps_path_and_query_behind_the_base() {
        let uri: Uri = "/v1/chat/completions?x=1".parse().unwrap_or_default();
        let plain = upstream_uri(&upstream("http://10.0.0.1:8000"), &uri);
        assert_eq!(
            plain.map(|u| u.to_string()).as_deref(),
            Ok("http://10.0.0.1:8000/v1/chat/completions?x=1")
        );
        let based = upstream_uri(&upstream("http://h:81/serve/"), &uri);
        assert_eq!(
            based.map(|u| u.to_string()).as_deref(),
            Ok("http://h:81/serve/v1/chat/completions?x=1")
        );
    }

    #[test]
    fn the_upstream_gets_our_trace_context_and_no_hop_by_hop_fields() {
        let mut headers = http::HeaderMap::new();
        for (k, v) in [
            ("host", "gw:9000"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", "a=b"),
            ("authorization", "Bearer k"),
        ] {
            headers.insert(k, HeaderValue::from_static(v));
        }
        let caller = extract_trace_context(&headers);
        let (trace_id, span_id) = inferscope_core::ids::new_root_ids();
        let ours = SpanContext {
            trace_id,
            span_id,
            flags: inferscope_core::TraceFlags::SAMPLED,
            ..SpanContext::default()
        };
        let mut sent = headers.clone();
        upstream_headers(&mut sent, &ours, caller.as_ref());
        assert!(sent.get("host").is_none() && sent.get("x-hop").is_none());
        assert!(sent.get("connection").is_none() && sent.get("tracestate").is_none());
        assert_eq!(sent.get("authorization"), headers.get("authorization"));
        assert_eq!(
            sent.get("traceparent").and_then(|v| v.to_str().ok()),
            Some(&*ours.traceparent())
        );
        // Tracing off (no valid context of ours): the caller's goes through unchanged.
        let mut passed = headers.clone();
        upstream_headers(&mut passed, &SpanContext::INVALID, caller.as_ref());
        assert_eq!(passed.get("traceparent"), headers.get("traceparent"));
    }

    #[test]
    fn the_first_byte_deadline_never_outlasts_the_total_one() {
        let now = tokio::time::Instant::now();
        let mut t = Timeouts {
            connect: Duration::from_secs(1),
            first_byte: Duration::from_secs(60),
            idle: None,
            total: None,
        };
        let d = Deadline::new(&t, now);
        assert_eq!(
            (d.first_byte, d.total),
            (now + Duration::from_secs(60), None)
        );
        t.total = Some(Duration::from_secs(5));
        let d = Deadline::new(&t, now);
        assert_eq!(d.first_byte, now + Duration::from_secs(5));
        assert_eq!(d.total, Some(now + Duration::from_secs(5)));
    }

    /// hyper keeps a slot the size of [`handle`]'s future for each connection, for as long as
    /// the connection lives (see there): this guards what a held stream costs (ADR 0017).
    #[test]
    fn the_request_future_and_the_response_body_stay_small() {
        /// The size of the future `f` returns, without calling it.
        fn future_size<A, B, C, Fut, F: FnOnce(A, B, C) -> Fut>(_: &F) -> usize {
            std::mem::size_of::<Fut>()
        }
        // 640 and 408 bytes (debug build) with the exchange boxed; 2,008 and 1,776 before.
        let future = future_size(&handle);
        let body = std::mem::size_of::<ResponseBody>();
        assert!(future <= 1024, "the request future grew to {future} bytes");
        assert!(body <= 512, "the response body grew to {body} bytes");
    }
}
