//! One request's life in the gateway: its spans, what the observer read, and the single place
//! where it ends (end of body, failure, or the client going away) and becomes spans, metrics
//! and a log line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use inferscope_core::observe::call::{InferenceCall, Outcome};
use inferscope_core::observe::record::RecordOptions;
use inferscope_core::observe::response::ResponseObserver;
use inferscope_core::{Span, Status};
use inferscope_semconv::dialect::Dialect;
use inferscope_semconv::openinference as oi;
use inferscope_semconv::{attr, http as http_attr, inferscope as own};

use crate::ProxyState;
use crate::failure::Failure;
use crate::metrics::{Label, SeriesKey, TraceExemplar};

/// The status-code label: constants for the common codes, no allocation.
fn status_label(code: Option<u16>) -> &'static str {
    match code {
        None => "",
        Some(200) => "200",
        Some(400) => "400",
        Some(404) => "404",
        Some(429) => "429",
        Some(499) => "499",
        Some(500) => "500",
        Some(502) => "502",
        Some(503) => "503",
        Some(504) => "504",
        Some(c) if c < 200 => "1xx",
        Some(c) if c < 300 => "2xx",
        Some(c) if c < 400 => "3xx",
        Some(c) if c < 500 => "4xx",
        Some(_) => "5xx",
    }
}

/// A request being served. Dropping it before [`Exchange::finish`] means the client went away.
pub(crate) struct Exchange {
    shared: Arc<ProxyState>,
    pub(crate) server: Span,
    /// The inference call (its CLIENT span), for inference routes.
    pub(crate) inference: Option<InferenceCall>,
    pub(crate) status: Option<u16>,
    pub(crate) hops: Hops,
    response_bytes: u64,
    done: bool,
}

/// Where one exchange's time goes, as the gateway sees it (monotonic clock): what is its own
/// (in and out) and what is the upstream's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hops {
    /// The request arrived (its head parsed).
    pub(crate) arrived: Option<Instant>,
    /// The client's body was read (inference bodies read for tracing): the wait for it is the
    /// client's upload, not the gateway's work.
    pub(crate) body_read: Option<Instant>,
    /// The request was handed to the upstream client.
    pub(crate) sent: Option<Instant>,
    /// The upstream's response head arrived.
    pub(crate) head: Option<Instant>,
    /// The first response chunk: read from the upstream, and handed on to the client's
    /// connection.
    pub(crate) first_out: Option<(Instant, Instant)>,
}

impl Hops {
    /// The gateway's own time on the way in.
    pub(crate) fn inbound(&self) -> Option<Duration> {
        let from = self.body_read.or(self.arrived)?;
        Some(self.sent?.saturating_duration_since(from))
    }

    /// From the request handed upstream to the response head.
    pub(crate) fn upstream_first_byte(&self) -> Option<Duration> {
        Some(self.head?.saturating_duration_since(self.sent?))
    }

    /// The gateway's own time on the way out (the first chunk).
    pub(crate) fn outbound(&self) -> Option<Duration> {
        let (read, out) = self.first_out?;
        Some(out.saturating_duration_since(read))
    }
}

impl Exchange {
    /// Boxed: an exchange (about 1.4 KiB, most of it the inference call) moves from the
    /// request future into the response body and through hyper as a pointer.
    pub(crate) fn new(shared: Arc<ProxyState>, server: Span) -> Box<Exchange> {
        shared.metrics.in_flight.inc();
        Box::new(Exchange {
            shared,
            server,
            inference: None,
            status: None,
            hops: Hops::default(),
            response_bytes: 0,
            done: false,
        })
    }

    /// Response headers arrived (or the gateway answered itself).
    pub(crate) fn response_started(&mut self, status: u16, observer: Option<ResponseObserver>) {
        self.status = Some(status);
        if let Some(call) = &mut self.inference {
            call.response_head(status, observer);
        }
    }

    /// A chunk of the response body that arrived `at`; returns the bytes for the client.
    pub(crate) fn on_chunk(&mut self, data: Bytes, at: Instant) -> Bytes {
        self.response_bytes += data.len() as u64;
        let out = match self.inference.as_mut() {
            Some(call) => call.on_chunk(data, at),
            None => data,
        };
        if self.hops.first_out.is_none() {
            self.hops.first_out = Some((at, Instant::now()));
        }
        out
    }

    /// The upstream's `system_fingerprint` the response showed, if any.
    pub(crate) fn fingerprint_seen(&self) -> Option<String> {
        self.inference
            .as_ref()
            .and_then(InferenceCall::observer)
            .and_then(|o| o.facts().system_fingerprint.clone())
    }

    /// Bytes sent to the client outside the response body path (a tunnel's).
    pub(crate) fn add_response_bytes(&mut self, n: u64) {
        self.response_bytes += n;
    }

    /// The body ended; returns bytes still held back for the client.
    pub(crate) fn on_end(&mut self) -> Option<Bytes> {
        self.inference.as_mut().and_then(InferenceCall::on_end)
    }

    /// Whether the body passes through unchanged (so its size hint holds).
    pub(crate) fn passes_bytes_unchanged(&self) -> bool {
        !self
            .inference
            .as_ref()
            .is_some_and(InferenceCall::usage_requested)
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
                tracing::warn!(error.type = f.error_type(), status = %self.status.map_or_else(|| "none".to_owned(), |s| s.to_string()), "{}", f.message());
            } else {
                tracing::debug!(error.type = f.error_type(), status = %self.status.map_or_else(|| "none".to_owned(), |s| s.to_string()), "{}", f.message());
            }
            if f.side() == crate::failure::Side::Upstream {
                shared
                    .metrics
                    .upstream_errors
                    .get_or_create(&vec![("error_type", Label::Static(f.error_type()))])
                    .inc();
            }
        }
        let status = self.status;
        let mut root_io = Vec::new();
        let kind = if let Some(inf) = self.inference.take() {
            root_io = self.finish_inference(inf, failure.as_ref());
            "inference"
        } else {
            "other"
        };
        let code = status.or_else(|| failure.as_ref().map(|f| f.status().as_u16()));
        shared.metrics.count_request(kind, status_label(code));

        let hops = self.hops;
        let inbound = hops.inbound();
        if let Some(own_time) = inbound.map(|i| i + hops.outbound().unwrap_or_default()) {
            shared.metrics.processing.observe(own_time.as_secs_f64());
        }
        let server = &mut self.server;
        if server.is_recording() && shared.config.dialects.contains(&Dialect::OpenInference) {
            // Phoenix shows the trace's root: a kind, and the call's input and output.
            server.set_attribute(oi::SPAN_KIND, oi::span_kind::CHAIN);
            for kv in root_io {
                server.set_attribute(kv.key, kv.value);
            }
        }
        if server.is_recording() {
            for (key, d) in [
                (own::GATEWAY_INBOUND, inbound),
                (own::GATEWAY_OUTBOUND, hops.outbound()),
                (own::UPSTREAM_TIME_TO_FIRST_BYTE, hops.upstream_first_byte()),
            ] {
                if let Some(d) = d {
                    server.set_attribute(key, d.as_secs_f64());
                }
            }
        }
        if let Some(code) = code {
            server.set_attribute(http_attr::RESPONSE_STATUS_CODE, i64::from(code));
        }
        server.set_attribute(
            http_attr::RESPONSE_BODY_SIZE,
            i64::try_from(self.response_bytes).unwrap_or(i64::MAX),
        );
        if let Some(f) = &failure {
            server.set_attribute(attr::ERROR_TYPE, f.error_type());
            if f.is_server_error() {
                server.set_status(Status::Error(f.message().into()));
            }
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

    /// Ends the CLIENT span and records the call's metrics and join; returns its OpenInference
    /// input and output attributes for the root span (empty without that dialect or content
    /// capture).
    fn finish_inference(
        &mut self,
        call: InferenceCall,
        failure: Option<&Failure>,
    ) -> Vec<inferscope_core::KeyValue> {
        let shared = &self.shared;
        let config = &shared.config;
        let opts = RecordOptions {
            conventions: config.conventions,
            dialects: &config.dialects,
            capture: &config.capture,
        };
        let message = failure.map(Failure::message);
        let outcome = Outcome {
            failure: failure
                .zip(message.as_deref())
                .map(|(f, m)| (f.error_type(), m)),
        };
        let summary = call.finish(outcome, opts);
        let facts = &summary.facts;
        let timing = &summary.timing;

        // Metrics, for every request, sampled or not.
        let series = shared.metrics.series(
            &SeriesKey {
                operation: summary.operation,
                request_model: summary.request.model.as_deref(),
                response_model: facts.model.as_deref(),
                error_type: summary.error_type.as_deref(),
            },
            [
                ("gen_ai_provider_name", shared.labels.provider.clone()),
                ("server_address", shared.labels.server_address.clone()),
                ("server_port", shared.labels.server_port.clone()),
            ],
        );
        let exemplar = TraceExemplar::of(&summary.context);
        series
            .duration
            .observe(summary.duration.as_secs_f64(), exemplar);
        if let Some(t) = timing.time_to_first_chunk {
            series.time_to_first_chunk.observe(t, exemplar);
        }
        // One observation per chunk after the first, as the conventions define it.
        for gap in facts.timeline.gaps() {
            series.time_per_output_chunk.observe(gap);
        }
        if let Some(u) = facts.usage {
            if let Some(n) = u.input_tokens {
                series.input_tokens.observe(n as f64);
            }
            // None for embeddings (see `InferenceCall::finish`).
            if let Some(n) = u.output_tokens {
                series.output_tokens.observe(n as f64);
            }
        }
        if summary.recorded {
            let started = summary.started;
            shared.join.finish(summary.context.span_id, |j| {
                j.response_model = facts.model.clone();
                j.finish_reasons = facts.finish_reasons();
                j.time_to_first_chunk = timing.time_to_first_chunk;
                j.choice_first_chunks = facts
                    .choices
                    .iter()
                    .filter_map(|c| {
                        let at = c.first_chunk?;
                        Some((c.index, at.saturating_duration_since(started).as_secs_f64()))
                    })
                    .collect();
            });
        }
        summary.root_io
    }
}

impl Drop for Exchange {
    /// Dropped unfinished: the client went away, or the shutdown cut the connection.
    fn drop(&mut self) {
        if !self.done {
            let why = if self
                .shared
                .lifecycle
                .cutting
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                Failure::Shutdown
            } else {
                Failure::ClientAborted
            };
            self.finish(Some(why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_own_time_leaves_out_the_client_and_the_upstream() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut h = Hops {
            arrived: Some(t0),
            sent: Some(ms(1)),
            head: Some(ms(40)),
            first_out: Some((ms(41), ms(42))),
            ..Hops::default()
        };
        assert_eq!(h.inbound(), Some(Duration::from_millis(1)));
        assert_eq!(h.upstream_first_byte(), Some(Duration::from_millis(39)));
        assert_eq!(h.outbound(), Some(Duration::from_millis(1)));
        // A body read for tracing: waiting for the client's upload is not the gateway's time.
        h.body_read = Some(ms(30));
        h.sent = Some(ms(31));
        assert_eq!(h.inbound(), Some(Duration::from_millis(1)));
        // Failed before it went upstream: no inbound, no upstream time.
        let failed = Hops {
            arrived: Some(t0),
            ..Hops::default()
        };
        assert_eq!(
            (failed.inbound(), failed.upstream_first_byte()),
            (None, None)
        );
    }
}
