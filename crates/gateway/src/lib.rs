//! inferscope's tracing gateway: a streaming reverse proxy in front of vLLM (or any
//! OpenAI-compatible server) that forwards every route byte for byte and turns every request
//! into a trace.
//!
//! - Every request gets a SERVER span (HTTP conventions), parented by the caller's
//!   `traceparent`; inference routes also get a CLIENT span named per the GenAI conventions
//!   (`chat tiny-llama`) with the request's parameters, the response's id, model, finish
//!   reasons and usage, time to first chunk and the gaps between chunks.
//! - The upstream receives a new `traceparent` whose parent is the CLIENT span, so vLLM's own
//!   `llm_request` span nests under it.
//! - Streams are never buffered: chunks are observed as they pass ([`response_body`]). Telemetry never
//!   fails a request.
//! - An admin listener serves Prometheus metrics, `/healthz` and `/readyz` ([`admin`]).
//! - vLLM's own spans come in over OTLP ([`ingest`]): normalised, joined with the gateway's
//!   CLIENT span ([`join`]), split into queue/prefill/decode child spans, and forwarded.
//!
//! The request path is [`proxy`] → [`upstream`] → [`response_body`], each exchange's spans in [`exchange`]; failures are classified once in
//! [`failure`]; configuration layers resolve in [`config`].
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use inferscope_gateway::{Gateway, config::GatewayConfig};
//! let config = GatewayConfig::local("http://127.0.0.1:8000")?;
//! let gateway = Gateway::start(config, inferscope_core::Tracer::disabled(), None).await?;
//! println!("proxy at {}", gateway.url());
//! gateway.shutdown().await;
//! # Ok(()) }
//! ```
// The crate docs are a map of its private modules, for the people who work on it.
#![allow(rustdoc::private_intra_doc_links)]

mod admin;
pub mod config;
mod exchange;
mod failure;
mod headers;
mod ingest;
mod join;
mod metrics;
mod proxy;
mod request_body;
mod response_body;
mod tls;
mod tunnel;
mod upstream;

pub use inferscope_server::raise_open_file_limit;
pub use ingest::{IngestConfig, IngestStats};

/// Hooks for the fuzz targets in `fuzz/` (feature `fuzz`).
#[cfg(feature = "fuzz")]
pub use ingest::decode::fuzz_check as fuzz_otlp_decode;
/// Hooks for the fuzz targets in `fuzz/` (feature `fuzz`).
#[cfg(feature = "fuzz")]
pub use ingest::fuzz_check_json as fuzz_ingest_json;
/// Hooks for the fuzz targets in `fuzz/` (feature `fuzz`).
#[cfg(feature = "fuzz")]
pub use upstream::h1::fuzz_check as fuzz_upstream_h1;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use inferscope_core::Tracer;
use inferscope_export::ExportStats;
use tokio::sync::watch;

use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use inferscope_server::{Limits, Listener, Phase};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// An address cannot be bound.
    #[error("the {listener} listener cannot listen on {addr} (set it with --{flag}): {error}{hint}",
        listener = listener_name(listener), flag = listener_flag(listener),
        hint = bind_hint(listener, error))]
    Bind {
        /// Which listener: `proxy`, `admin`, `ingest-grpc` or `ingest-http`.
        listener: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        error: std::io::Error,
    },
    /// The listener's certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The `https://` upstream's CA or client identity files cannot be used.
    #[error("upstream TLS: {0}")]
    UpstreamTls(inferscope_export::otlp::BuildError),
    /// The metrics push cannot be set up (its endpoint, TLS files or headers).
    #[error("metrics push: {0}")]
    MetricsPush(#[from] inferscope_export::otlp::BuildError),
}

/// The request path's state (the proxy and each exchange): it reads the configuration and
/// writes spans, metrics, and the join table.
pub(crate) struct ProxyState {
    pub(crate) config: Arc<GatewayConfig>,
    pub(crate) tracer: Tracer,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) upstream: upstream::Upstream,
    pub(crate) local_addr: SocketAddr,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) join: join::JoinWriter,
    pub(crate) labels: ConstLabels,
    /// Bytes held for parsing across all exchanges.
    pub(crate) budget: Arc<inferscope_core::observe::budget::ParseBudget>,
}

/// The ingest path's state: it reads the join table and the export queue's fill, and writes
/// engine spans to the exporter.
pub(crate) struct IngestState {
    pub(crate) config: Arc<GatewayConfig>,
    pub(crate) tracer: Tracer,
    pub(crate) stats: Arc<ingest::IngestStats>,
    pub(crate) export_stats: Option<Arc<ExportStats>>,
    pub(crate) join: join::JoinReader,
    /// Where the engine's own timings become `gen_ai.server.*` metrics.
    pub(crate) metrics: Arc<Metrics>,
}

/// The admin endpoint's state: it only reads (and asks the upstream's `/health`).
pub(crate) struct AdminState {
    pub(crate) config: Arc<GatewayConfig>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) upstream: upstream::Upstream,
    pub(crate) lifecycle: Arc<Lifecycle>,
}

/// Where the gateway is in its life; written by [`Gateway::shutdown`] and the proxy
/// listener's cut, read by the admin endpoint and by exchanges as they end.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    pub(crate) stopping: AtomicBool,
    /// The grace period is over: connections still open are being cut.
    pub(crate) cutting: AtomicBool,
    /// Tunnels (upgraded connections, which the listener no longer tracks) still open when the
    /// grace period is over are cut when this turns true.
    pub(crate) cut_tunnels: watch::Sender<bool>,
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        Lifecycle {
            stopping: AtomicBool::new(false),
            cutting: AtomicBool::new(false),
            cut_tunnels: watch::Sender::new(false),
        }
    }
}

/// Metric label values fixed at start.
pub(crate) struct ConstLabels {
    pub(crate) provider: metrics::Label,
    pub(crate) server_address: metrics::Label,
    pub(crate) server_port: metrics::Label,
}

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    ingest_grpc_addr: Option<SocketAddr>,
    ingest_http_addr: Option<SocketAddr>,
    ingest_tasks: Vec<tokio::task::JoinHandle<bool>>,
    proxy: Arc<ProxyState>,
    ingest_stats: Arc<ingest::IngestStats>,
    join: join::JoinReader,
    /// Tells the proxy listener to drain.
    stop: watch::Sender<Phase>,
    /// Tells the admin and ingest listeners to drain (after the proxy).
    stop_side: watch::Sender<Phase>,
    task: Option<tokio::task::JoinHandle<bool>>,
    admin_task: Option<tokio::task::JoinHandle<bool>>,
    /// Pushing metrics over OTLP, and what tells it to push once more and stop.
    push: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    /// The proxy listener's certificate, when it serves TLS.
    certificates: Option<Arc<tls::Certificates>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("addr", &self.addr)
            .field("admin", &self.admin_addr)
            .finish()
    }
}

async fn bind(
    name: &'static str,
    addr: SocketAddr,
    limits: Limits,
) -> Result<Listener, StartError> {
    Listener::bind(name, addr, limits)
        .await
        .map_err(|error| StartError::Bind {
            listener: name,
            addr,
            error,
        })
}

fn bound(l: &Listener, name: &'static str, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    l.local_addr().map_err(|error| StartError::Bind {
        listener: name,
        addr,
        error,
    })
}

fn listener_name(listener: &str) -> &'static str {
    match listener {
        "admin" => "admin (/metrics, /healthz, /readyz)",
        "ingest-grpc" => "OTLP/gRPC ingest",
        "ingest-http" => "OTLP/HTTP ingest",
        _ => "proxy",
    }
}

fn listener_flag(listener: &str) -> &'static str {
    match listener {
        "admin" => "admin",
        "ingest-grpc" => "otlp-ingest-grpc",
        "ingest-http" => "otlp-ingest-http",
        _ => "listen",
    }
}

/// What to do about an address in use: another gateway on the host holds the default ports.
fn bind_hint(listener: &str, error: &std::io::Error) -> &'static str {
    match (listener, error.kind()) {
        ("proxy", std::io::ErrorKind::AddrInUse) => {
            ". Is another gateway or the engine itself on this port?"
        }
        (_, std::io::ErrorKind::AddrInUse) => {
            ". Is another gateway running on this host? Give each its own ports (--admin, --otlp-ingest-grpc, --otlp-ingest-http), or `off`, or port 0 for any free one"
        }
        _ => "",
    }
}

impl Gateway {
    /// Binds the proxy and admin listeners and serves on the current Tokio runtime.
    /// `export` adds the exporter's counters to the metrics.
    pub async fn start(
        config: GatewayConfig,
        tracer: Tracer,
        export: Option<Arc<ExportStats>>,
    ) -> Result<Gateway, StartError> {
        let proxy_limits = Limits {
            max_connections: config.connection_limit(),
            header_timeout: config.header_timeout,
            grace: config.shutdown_grace,
        };
        // The admin and ingest listeners have their own small caps, so a flood of proxy
        // connections leaves them reachable; they stop after the proxy, with a short grace
        // (vLLM exports its last spans after its requests end).
        let side_limits = Limits {
            max_connections: config::SIDE_LISTENER_CONNECTIONS,
            header_timeout: config.header_timeout,
            grace: Duration::from_secs(5),
        };
        let certificates = match &config.tls {
            Some((cert, key)) => Some(Arc::new(
                tls::Certificates::load(cert, key).map_err(StartError::Tls)?,
            )),
            None => None,
        };
        let mut listener = bind("proxy", config.listen, proxy_limits).await?;
        if let Some(c) = &certificates {
            listener = listener.with_tls(c.acceptor().map_err(StartError::Tls)?);
        }
        let addr = bound(&listener, "proxy", config.listen)?;
        let admin_listener = match config.admin {
            Some(a) => Some(bind("admin", a, side_limits).await?),
            None => None,
        };
        let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
        let ingest_grpc = match config.ingest.grpc {
            Some(a) => Some(bind("ingest-grpc", a, side_limits).await?),
            None => None,
        };
        let ingest_http = match config.ingest.http {
            Some(a) => Some(bind("ingest-http", a, side_limits).await?),
            None => None,
        };
        let ingest_grpc_addr = ingest_grpc.as_ref().and_then(|l| l.local_addr().ok());
        let ingest_http_addr = ingest_http.as_ref().and_then(|l| l.local_addr().ok());

        let config = Arc::new(config);
        let ingest_stats = Arc::new(ingest::IngestStats::default());
        let upstream = upstream::Upstream::new(&config).map_err(StartError::UpstreamTls)?;
        // CLIENT spans are remembered for joining only when engine spans can come in.
        let (join_writer, join) = join::table(
            config.ingest.grpc.is_some() || config.ingest.http.is_some(),
            config.ingest.join_capacity,
            config.ingest.join_ttl,
        );
        let labels = ConstLabels {
            provider: metrics::Label::Shared(Arc::from(config.provider.as_str())),
            server_address: metrics::Label::Shared(Arc::from(config.upstream.host.as_str())),
            server_port: metrics::Label::Shared(Arc::from(config.upstream.port.to_string())),
        };
        let metrics = Arc::new(Metrics::new(
            config.conventions,
            export.clone(),
            Some(ingest_stats.clone()),
        ));
        let lifecycle = Arc::new(Lifecycle::default());
        let proxy = Arc::new(ProxyState {
            config: config.clone(),
            tracer: tracer.clone(),
            metrics: metrics.clone(),
            upstream: upstream.clone(),
            local_addr: addr,
            lifecycle: lifecycle.clone(),
            join: join_writer,
            labels,
            budget: Arc::new(inferscope_core::observe::budget::ParseBudget::new(
                config.max_parse_bytes_total,
            )),
        });
        let push = match &config.metrics_push {
            Some(p) => {
                let exporter =
                    inferscope_export::otlp::metrics::MetricsExporter::new(&p.config.otlp)?;
                let (tell, told) = watch::channel(false);
                let task = tokio::spawn(metrics::otlp::push(
                    metrics.clone(),
                    metrics::otlp::Push::new(p, config.shutdown_grace),
                    exporter,
                    told,
                ));
                Some((tell, task))
            }
            None => None,
        };
        let (stop, stopped) = watch::channel(Phase::Serving);
        let (stop_side, side_stopped) = watch::channel(Phase::Serving);
        let task = tokio::spawn(serve(listener, proxy.clone(), stopped));
        let admin_task = admin_listener.map(|l| {
            let admin = Arc::new(AdminState {
                config: config.clone(),
                metrics: metrics.clone(),
                upstream,
                lifecycle,
            });
            tokio::spawn(admin::serve(l, admin, side_stopped.clone()))
        });
        let ingest = Arc::new(IngestState {
            config: config.clone(),
            tracer,
            stats: ingest_stats.clone(),
            export_stats: export,
            join: join.clone(),
            metrics: metrics.clone(),
        });
        let mut ingest_tasks = Vec::new();
        if let Some(l) = ingest_grpc {
            ingest_tasks.push(tokio::spawn(ingest::grpc::serve(
                l,
                ingest.clone(),
                side_stopped.clone(),
            )));
        }
        if let Some(l) = ingest_http {
            ingest_tasks.push(tokio::spawn(ingest::http::serve(l, ingest, side_stopped)));
        }
        let shown = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
        tracing::info!(
            listen = %addr,
            admin = %shown(admin_addr),
            otlp_ingest_grpc = %shown(ingest_grpc_addr),
            otlp_ingest_http = %shown(ingest_http_addr),
            upstream = %config.upstream.base,
            max_connections = proxy_limits.max_connections,
            "gateway serving"
        );
        Ok(Gateway {
            addr,
            admin_addr,
            ingest_grpc_addr,
            ingest_http_addr,
            ingest_tasks,
            proxy,
            ingest_stats,
            join,
            stop,
            stop_side,
            task: Some(task),
            admin_task,
            push,
            certificates,
        })
    }

    /// The proxy's bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<proxy address>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The admin listener's address, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The OTLP/gRPC ingest listener's address, if it runs.
    pub fn ingest_grpc_addr(&self) -> Option<SocketAddr> {
        self.ingest_grpc_addr
    }

    /// The OTLP/HTTP ingest listener's address, if it runs.
    pub fn ingest_http_addr(&self) -> Option<SocketAddr> {
        self.ingest_http_addr
    }

    /// The ingest counters.
    pub fn ingest_stats(&self) -> &ingest::IngestStats {
        &self.ingest_stats
    }

    /// CLIENT spans remembered for joining engine spans.
    pub fn join_entries(&self) -> usize {
        self.join.len()
    }

    /// The metrics in Prometheus text format (what `/metrics` serves).
    pub fn metrics_text(&self) -> String {
        self.proxy.metrics.encode()
    }

    /// Reads the TLS certificate and key files again (on SIGHUP): new connections get the new
    /// pair. `Ok(false)` without TLS; on an error the pair in use stays.
    pub fn reload_tls(&self) -> Result<bool, String> {
        match &self.certificates {
            Some(c) => c.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> i64 {
        self.proxy.metrics.in_flight.get()
    }

    /// Stops accepting, lets requests in flight finish up to the configured grace period, cuts
    /// the ones still running, and returns whether they all finished in time. Every exchange
    /// has ended its spans when this returns (a cut one with `error.type=gateway_shutdown`), so
    /// the caller can flush span export afterwards and lose nothing.
    pub async fn shutdown(mut self) -> bool {
        let grace_end = tokio::time::Instant::now() + self.proxy.config.shutdown_grace;
        self.proxy.lifecycle.stopping.store(true, Ordering::Relaxed);
        let _ = self.stop.send(Phase::Draining);
        let mut clean = true;
        if let Some(task) = self.task.take() {
            clean = task.await.unwrap_or(false);
        }
        let in_flight = || self.proxy.metrics.in_flight.get() > 0;
        // Tunnels (WebSocket sessions) may run to the end of the grace period, then are cut.
        while in_flight() && tokio::time::Instant::now() < grace_end {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if in_flight() {
            let _ = self.proxy.lifecycle.cut_tunnels.send(true);
        }
        // HTTP/2 streams and cut tunnels run in tasks of their own, which end (and end their
        // exchanges) just after their connection is dropped: wait for the last, briefly.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while in_flight() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The admin endpoint answers (`/readyz`: 503) until the proxy has drained, and vLLM
        // exports its last spans after its requests end: the other listeners stop last.
        let _ = self.stop_side.send(Phase::Draining);
        if let Some(task) = self.admin_task.take() {
            let _ = task.await;
        }
        for task in self.ingest_tasks.drain(..) {
            let _ = task.await;
        }
        // The last push, with everything the proxy and ingest recorded.
        if let Some((tell, task)) = self.push.take() {
            let _ = tell.send(true);
            let _ = task.await;
        }
        clean
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop.send(Phase::Draining);
        let _ = self.stop_side.send(Phase::Draining);
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(t) = self.admin_task.take() {
            t.abort();
        }
        for t in self.ingest_tasks.drain(..) {
            t.abort();
        }
        if let Some((_, t)) = self.push.take() {
            t.abort();
        }
    }
}

/// The proxy listener: HTTP/1.1 and h2c (prior knowledge) on one port. Returns whether every
/// connection finished within the grace period after the stop signal.
async fn serve(listener: Listener, shared: Arc<ProxyState>, phase: watch::Receiver<Phase>) -> bool {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20)
        .timer(TokioTimer::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_timeout)
        // The read buffer's limit, and so each connection's idle read buffer: hyper grows it
        // past the limit's 8 KiB otherwise (ADR 0017).
        .max_buf_size(shared.config.max_request_head_bytes)
        .writev(false);
    let handle_shared = shared.clone();
    let handle = move |req, in_progress| proxy::handle(handle_shared.clone(), req, in_progress);
    // Exchanges dropped by the cut are recorded as cut by the shutdown, not as clients that
    // went away.
    let on_cut = move || shared.lifecycle.cutting.store(true, Ordering::Relaxed);
    listener.serve(builder, handle, phase, on_cut).await
}
