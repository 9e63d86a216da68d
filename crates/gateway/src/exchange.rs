//! One request's life in the gateway: its spans, what the observer read, and the single place
//! where it ends (end of body, failure, or the client going away) and becomes spans, metrics
//! and a log line.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use inferscope_core::observe::record::{self, RecordOptions, Timing};
use inferscope_core::observe::request::RequestFacts;
use inferscope_core::observe::response::{ResponseFacts, ResponseObserver};
use inferscope_core::observe::route::Route;
use inferscope_core::{Span, Status};
use inferscope_semconv::{attr, http as http_attr, inferscope as own, value::token_type};

use crate::Shared;
use crate::failure::Failure;
use crate::metrics::Labels;

/// The inference part of an exchange: the CLIENT span and the observer.
pub(crate) struct Inference {
    pub(crate) route: &'static Route,
    pub(crate) span: Span,
    pub(crate) request: RequestFacts,
    pub(crate) observer: Option<ResponseObserver>,
    /// When the request went upstream (the CLIENT span's start).
    pub(crate) sent: Instant,
    pub(crate) usage_requested: bool,
}

/// A request being served. Dropping it before [`Exchange::finish`] means the client went away.
pub(crate) struct Exchange {
    shared: Arc<Shared>,
    pub(crate) server: Span,
    pub(crate) inference: Option<Inference>,
    pub(crate) status: Option<u16>,
    response_bytes: u64,
    done: bool,
}

impl Exchange {
    pub(crate) fn new(shared: Arc<Shared>, server: Span) -> Exchange {
        shared.metrics.in_flight.inc();
        Exchange {
            shared,
            server,
            inference: None,
            status: None,
            response_bytes: 0,
            done: false,
        }
    }

    /// Response headers arrived (or the gateway answered itself).
    pub(crate) fn response_started(&mut self, status: u16, observer: Option<ResponseObserver>) {
        self.status = Some(status);
        if let Some(inf) = &mut self.inference {
            inf.observer = observer;
        }
    }

    /// A chunk of the response body; returns the bytes for the client.
    pub(crate) fn on_chunk(&mut self, data: Bytes) -> Bytes {
        self.response_bytes += data.len() as u64;
        match self.inference.as_mut().and_then(|i| i.observer.as_mut()) {
            Some(o) => o.on_chunk(data, Instant::now()),
            None => data,
        }
    }

    /// The body ended; returns bytes still held back for the client.
    pub(crate) fn on_end(&mut self) -> Option<Bytes> {
        self.inference
            .as_mut()
            .and_then(|i| i.observer.as_mut())
            .and_then(ResponseObserver::on_end)
    }

    /// Whether the body passes through unchanged (so its size hint holds).
    pub(crate) fn passes_bytes_unchanged(&self) -> bool {
        !self.inference.as_ref().is_some_and(|i| i.usage_requested)
    }

    /// Ends the exchange: records the spans and metrics, once.
    pub(crate) fn finish(&mut self, failure: Option<Failure>) {
        if self.done {
            return;
        }
        self.done = true;
        let shared = self.shared.clone();
        shared.metrics.in_flight.dec();
        if let Some(f) = &failure {
            if f.is_warning() {
                tracing::warn!(error.type = f.error_type(), status = ?self.status, "{}", f.message());
            } else {
                tracing::debug!(error.type = f.error_type(), status = ?self.status, "{}", f.message());
            }
            if f.side() == crate::failure::Side::Upstream {
                shared
                    .metrics
                    .upstream_errors
                    .get_or_create(&vec![("error_type", f.error_type().to_owned())])
                    .inc();
            }
        }
        let status = self.status;
        let kind = if let Some(inf) = self.inference.take() {
            self.finish_inference(inf, failure.as_ref());
            "inference"
        } else {
            "other"
        };
        let code = status.or_else(|| failure.as_ref().map(|f| f.status().as_u16()));
        shared
            .metrics
            .requests
            .get_or_create(&vec![
                ("route_kind", kind.to_owned()),
                (
                    "http_response_status_code",
                    code.map_or_else(String::new, |c| c.to_string()),
                ),
            ])
            .inc();

        let server = &mut self.server;
        if let Some(code) = code {
            server.set_attribute(http_attr::RESPONSE_STATUS_CODE, i64::from(code));
        }
        server.set_attribute(
            http_attr::RESPONSE_BODY_SIZE,
            i64::try_from(self.response_bytes).unwrap_or(i64::MAX),
        );
        if let Some(f) = &failure {
            server.set_attribute(attr::ERROR_TYPE, f.error_type());
            server.set_status(Status::Error(f.message().into()));
        } else if let Some(code) = status.filter(|c| *c >= 500) {
            server.set_attribute(attr::ERROR_TYPE, code.to_string());
            server.set_status(Status::Error(format!("HTTP {code}").into()));
        }
        let span = std::mem::replace(
            &mut self.server,
            Span::non_recording(inferscope_core::SpanContext::INVALID),
        );
        span.end();
    }

    fn finish_inference(&mut self, mut inf: Inference, failure: Option<&Failure>) {
        let now = Instant::now();
        let shared = &self.shared;
        let config = &shared.config;
        let mut facts = match inf.observer.take() {
            Some(o) => o.into_facts(),
            None => ResponseFacts::default(),
        };
        let timing = Timing::of(&mut facts, inf.sent);
        let error_type: Option<String> = failure
            .map(|f| f.error_type().to_owned())
            .or_else(|| facts.error_type.clone())
            .or_else(|| self.status.filter(|s| *s >= 400).map(|s| s.to_string()));

        // Metrics, for every request, sampled or not.
        let mut labels: Labels = vec![
            ("gen_ai_operation_name", inf.route.operation.to_owned()),
            ("gen_ai_provider_name", config.provider.clone()),
            (
                "gen_ai_request_model",
                inf.request.model.clone().unwrap_or_default(),
            ),
            (
                "gen_ai_response_model",
                facts.model.clone().unwrap_or_default(),
            ),
            ("server_address", config.upstream.host.clone()),
            ("server_port", config.upstream.port.to_string()),
        ];
        if let Some(e) = &error_type {
            labels.push(("error_type", e.clone()));
        }
        let m = &shared.metrics;
        m.duration
            .get_or_create(&labels)
            .observe(now.saturating_duration_since(inf.sent).as_secs_f64());
        if let Some(t) = timing.time_to_first_chunk {
            m.time_to_first_chunk.get_or_create(&labels).observe(t);
        }
        if let Some(g) = timing.gaps {
            m.time_per_output_chunk
                .get_or_create(&labels)
                .observe(g.mean);
        }
        if let Some(u) = facts.usage {
            for (kind, n) in [
                (token_type::INPUT, u.input_tokens),
                (token_type::OUTPUT, u.output_tokens),
            ] {
                if let Some(n) = n {
                    let mut l = labels.clone();
                    l.push(("gen_ai_token_type", kind.to_owned()));
                    m.token_usage.get_or_create(&l).observe(n as f64);
                }
            }
        }

        // The CLIENT span.
        let opts = RecordOptions {
            dialects: &config.dialects,
            capture: &config.capture,
        };
        if let Some(r) = inf.span.record_mut() {
            record::response(r, &facts, &timing, opts);
            if inf.usage_requested {
                r.push(own::STREAM_USAGE_REQUESTED, true);
            }
            if let Some(code) = self.status {
                r.push(http_attr::RESPONSE_STATUS_CODE, i64::from(code));
            }
            r.push(
                own::RESPONSE_BYTES,
                i64::try_from(self.response_bytes).unwrap_or(i64::MAX),
            );
            if let Some(e) = &error_type {
                r.push(attr::ERROR_TYPE, e.clone());
            }
            record::dialects(r, inf.route, &inf.request, Some(&facts), opts);
        }
        if inf.span.is_recording() {
            shared.join.finish(inf.span.context().span_id, |j| {
                j.response_model = facts.model.clone();
                j.finish_reasons = facts.finish_reasons();
                j.time_to_first_chunk = timing.time_to_first_chunk;
            });
        }
        if let Some(f) = failure {
            inf.span.set_status(Status::Error(f.message().into()));
        } else if let Some(e) = &error_type {
            inf.span.set_status(Status::Error(e.clone().into()));
        }
        inf.span.end();
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Some(Failure::ClientAborted));
        }
    }
}
