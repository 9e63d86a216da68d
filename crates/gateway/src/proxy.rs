//! The request path, in the order a request takes it:
//!
//! 1. **inbound**: the SERVER span, parented by the caller's `traceparent`;
//! 2. **classify**: an inference route gets its body read (up to a limit) and parsed, and the
//!    CLIENT span starts (`chat {model}`); every other route streams through untouched;
//! 3. **upstream request**: hop-by-hop fields removed, a new `traceparent` whose parent is the
//!    CLIENT span (or the SERVER span for other routes), `stream_options.include_usage` added
//!    when the client did not ask for usage;
//! 4. **response**: status and headers as the upstream sent them plus `traceresponse`; the
//!    body is observed as it streams ([`crate::body::ResponseBody`]) and the exchange ends with
//!    it ([`crate::exchange::Exchange::finish`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use inferscope_core::observe::record;
use inferscope_core::observe::request;
use inferscope_core::observe::response::ResponseObserver;
use inferscope_core::observe::route;
use inferscope_core::trace_context::{extract_trace_context, inject};
use inferscope_core::{SpanContext, SpanKind};
use inferscope_semconv::{attr, http as http_attr, inferscope as own, span_name};

use crate::Shared;
use crate::body::{ReadBody, RequestBody, ResponseBody, UpstreamBody, edited, read_inference_body};
use crate::exchange::{Exchange, Inference};
use crate::failure::{Failure, describe};
use crate::headers::remove_hop_by_hop;
use crate::join::JoinInfo;
use inferscope_server::{ClientBody, ClientConn, InProgress};

/// Serves one request. Never fails: every failure becomes a response and a span.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    in_progress: InProgress,
) -> Result<Response<ResponseBody>, Infallible> {
    let arrived = std::time::SystemTime::now();
    let (mut parts, body) = req.into_parts();
    let body = ClientBody::new(body, in_progress.conn().clone());
    let config = &shared.config;
    let version = parts.version;

    // 1. inbound
    let parent = extract_trace_context(&parts.headers);
    let path = parts.uri.path().to_owned();
    let template = route::template(&path);
    let method = parts.method.as_str().to_owned();
    let mut server = shared.tracer.start_at(
        span_name::http_server(&method, template),
        SpanKind::Server,
        parent.as_ref(),
        arrived,
    );
    if server.is_recording() {
        server_attributes(&mut server, &shared, &parts, template, in_progress.conn());
    }
    let mut exchange = Exchange::new(shared.clone(), server);

    // 2. classify, and read an inference body
    let upstream_body = match route::classify(&method, &path) {
        None => RequestBody::Stream(body),
        Some(route) => {
            let read = match read_inference_body(
                body,
                config.max_parse_bytes,
                &shared.budget,
                config.header_timeout,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    return Ok(answer(&shared, exchange, Failure::RequestBody(e)));
                }
            };
            let (body_for_upstream, facts, usage_requested) = match read {
                ReadBody::Whole(whole, held) => {
                    let facts = request::parse(route.api, &whole, &config.capture);
                    let edit = if config.inject_usage {
                        request::include_usage_edit(route.api, &whole, &facts)
                    } else {
                        None
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
            let mut span = shared.tracer.start(
                span_name::inference(route.operation, facts.model.as_deref()),
                SpanKind::Client,
                Some(exchange.server.context()),
            );
            if let Some(r) = span.record_mut() {
                for kv in record::start_attributes(
                    route,
                    &config.provider,
                    facts.model.as_deref(),
                    &config.upstream.host,
                    config.upstream.port,
                )
                .into_iter()
                .flatten()
                {
                    r.push(kv.key, kv.value);
                }
                record::request(r, route, &facts);
                r.push(own::UPSTREAM, config.upstream.base.clone());
            }
            if span.is_recording() {
                shared.join.start(
                    span.context().span_id,
                    JoinInfo {
                        trace_id: span.context().trace_id,
                        operation: route.operation,
                        request_model: facts.model.clone(),
                        temperature: facts.temperature,
                        choice_count: facts.choice_count,
                        ..JoinInfo::default()
                    },
                );
            }
            exchange.inference = Some(Inference {
                route,
                span,
                request: facts,
                observer: None,
                sent: Instant::now(),
                usage_requested,
            });
            body_for_upstream
        }
    };

    // 3. the upstream request
    let upstream_ctx: SpanContext = match &exchange.inference {
        Some(inf) => inf.span.context().clone(),
        None => exchange.server.context().clone(),
    };
    let mut headers = std::mem::take(&mut parts.headers);
    remove_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove("traceparent");
    headers.remove("tracestate");
    if upstream_ctx.is_valid() {
        inject(&upstream_ctx, &mut headers);
    } else if let Some(p) = &parent {
        // Tracing is off: pass the caller's context through unchanged.
        inject(p, &mut headers);
    }
    let uri = match upstream_uri(&shared, &parts.uri) {
        Ok(u) => u,
        Err(e) => return Ok(answer(&shared, exchange, Failure::UpstreamBroken(e))),
    };
    let mut upstream_req = Request::new(upstream_body);
    *upstream_req.method_mut() = parts.method.clone();
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = headers;
    if config.upstream_h2c {
        *upstream_req.version_mut() = http::Version::HTTP_2;
    }
    let total_deadline = config
        .timeouts
        .total
        .map(|t| tokio::time::Instant::now() + t);
    let first_byte = match total_deadline {
        Some(d) => d.min(tokio::time::Instant::now() + config.timeouts.first_byte),
        None => tokio::time::Instant::now() + config.timeouts.first_byte,
    };
    let sent = if config.upstream_h2c {
        // h2c: hyper's pooled client (HTTP/2 streams buffer their data frames anyway).
        let request = async {
            match shared.client.request(upstream_req).await {
                Ok(r) => {
                    let (parts, body) = r.into_parts();
                    Ok((parts, UpstreamBody::Hyper(body), None))
                }
                Err(e) if e.is_connect() => Err(Failure::Connect(describe(&e))),
                Err(e) => Err(Failure::UpstreamBroken(describe(&e))),
            }
        };
        tokio::time::timeout_at(first_byte, request).await
    } else {
        let request = async {
            let (parts, body) = shared.pool.send(upstream_req).await?;
            Ok((parts, UpstreamBody::Own(body), Some(shared.pool.clone())))
        };
        tokio::time::timeout_at(first_byte, request).await
    };
    let (mut rparts, rbody, pool) = match sent {
        Ok(Ok(r)) => r,
        Ok(Err(failure)) => return Ok(answer(&shared, exchange, failure)),
        Err(_) => return Ok(answer(&shared, exchange, Failure::FirstByteTimeout)),
    };

    // 4. the response
    remove_hop_by_hop(&mut rparts.headers);
    let observer = exchange.inference.as_ref().map(|inf| {
        let stream = rparts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        ResponseObserver::new(
            stream,
            inf.usage_requested,
            &config.capture,
            config.max_parse_bytes,
        )
        .with_budget(shared.budget.clone())
    });
    if observer.as_ref().is_some_and(|o| o.is_stream())
        && exchange
            .inference
            .as_ref()
            .is_some_and(|i| i.usage_requested)
    {
        rparts.headers.remove(header::CONTENT_LENGTH);
    }
    traceresponse(&shared, &exchange, &mut rparts.headers);
    exchange.response_started(rparts.status.as_u16(), observer);
    if rbody.is_end_stream() {
        exchange.finish(None);
        if let (UpstreamBody::Own(body), Some(pool)) = (rbody, pool) {
            pool.put_back(body);
        }
        return Ok(Response::from_parts(
            rparts,
            ResponseBody::full(Bytes::new()),
        ));
    }
    let http1 = version != http::Version::HTTP_2;
    let body = ResponseBody::observed(
        rbody,
        exchange,
        pool,
        (config.timeouts.idle, total_deadline),
        (in_progress, http1),
    );
    Ok(Response::from_parts(rparts, body))
}

/// The gateway's own answer to a failure before the response started.
fn answer(shared: &Shared, mut exchange: Exchange, failure: Failure) -> Response<ResponseBody> {
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

fn traceresponse(shared: &Shared, exchange: &Exchange, headers: &mut http::HeaderMap) {
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

fn upstream_uri(shared: &Shared, uri: &Uri) -> Result<Uri, String> {
    let up = &shared.config.upstream;
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let pq = if up.path_prefix.is_empty() {
        pq.to_owned()
    } else {
        format!("{}{}", up.path_prefix, pq)
    };
    Uri::builder()
        .scheme("http")
        .authority(up.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|e| format!("cannot build the upstream URL: {e}"))
}

fn server_attributes(
    span: &mut inferscope_core::Span,
    shared: &Shared,
    parts: &http::request::Parts,
    template: Option<&'static str>,
    peer: &ClientConn,
) {
    span.set_attribute(http_attr::REQUEST_METHOD, parts.method.as_str().to_owned());
    span.set_attribute(http_attr::URL_PATH, parts.uri.path().to_owned());
    span.set_attribute(http_attr::URL_SCHEME, "http");
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
