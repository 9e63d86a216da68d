//! A simulated vLLM-compatible inference server, for inferscope's demo, tests and benchmarks.
//!
//! It serves the OpenAI-compatible API as vLLM 0.32 shapes it (`/v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`, `/v1/models`, `/health`, `/tokenize`, `/metrics`):
//! the same JSON bodies and SSE chunks byte for byte (checked against the real server's
//! fixtures), the same errors and statuses, `X-Request-Id`, and vLLM's own `llm_request` spans
//! exported to an OTLP endpoint. Timing comes from a model of a continuous-batching engine
//! ([`engine`]); a zero-delay mode serves overhead benchmarks. Output is deterministic for a
//! seed and a request. Faults can be injected per request ([`faults`]).
//!
//! It is never a substitute for checking against the real vLLM (`scripts/sim-vs-vllm.py`).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = inferscope_sim::Sim::start(inferscope_sim::SimConfig {
//!     listen: "127.0.0.1:0".parse()?,
//!     ..Default::default()
//! })
//! .await?;
//! println!("vLLM-compatible API at {}", sim.url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod config;
pub mod engine;
pub mod faults;
pub mod generate;
pub mod metrics;
pub mod precise;
pub mod server;
pub mod spans;
pub mod tokenizer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use config::{EngineConfig, FixedTiming, SimConfig};
pub use faults::FAULT_HEADER;

use inferscope_server::{Limits, Listener, Phase};
use tokio::sync::watch;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Span export cannot start.
    #[error("span export: {0}")]
    Tracing(#[from] inferscope_export::InitError),
}

/// A running simulator. Stops when dropped (in-flight requests are cut).
#[derive(Debug)]
pub struct Sim {
    addr: SocketAddr,
    state: Arc<server::State>,
    stop: watch::Sender<Phase>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Sim {
    /// Validates `config`, binds, and serves in the background on the current Tokio runtime.
    pub async fn start(config: SimConfig) -> Result<Sim, StartError> {
        let spans = match &config.otlp_traces_endpoint {
            Some(endpoint) => Some(spans::EngineSpans::start(endpoint)?),
            None => None,
        };
        Sim::start_with_spans(config, spans).await
    }

    async fn start_with_spans(
        config: SimConfig,
        spans: Option<spans::EngineSpans>,
    ) -> Result<Sim, StartError> {
        config.validate()?;
        let listener = Listener::bind("simulator", config.listen, LIMITS)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let state = Arc::new(server::State::new(config, spans));
        let (stop, stopped) = watch::channel(Phase::Serving);
        let task = tokio::spawn(serve(listener, state.clone(), stopped));
        Ok(Sim {
            addr,
            state,
            stop,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests the client abandoned before they finished (their slots were freed).
    pub fn aborts(&self) -> u64 {
        self.state.metrics.aborted.load(Ordering::Relaxed)
    }

    /// Sequences running in the engine now.
    pub fn running(&self) -> u64 {
        self.state.engine.stats().running.load(Ordering::Relaxed)
    }

    /// The counters.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.state.metrics
    }

    /// The engine's gauges.
    pub fn engine_stats(&self) -> &engine::EngineStats {
        self.state.engine.stats()
    }

    /// Exports the `llm_request` spans recorded so far.
    pub async fn flush_spans(
        &self,
        timeout: Duration,
    ) -> Result<(), inferscope_export::FlushError> {
        match &self.state.spans {
            Some(s) => s.tracing().flush(timeout).await,
            None => Ok(()),
        }
    }

    /// Stops accepting, lets requests in flight finish (up to 10 s), exports the spans.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(Phase::Draining);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        if let Some(s) = &self.state.spans {
            let _ = s.tracing().shutdown(Duration::from_secs(10)).await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.stop.send(Phase::Draining);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// How the simulator's listener treats connections: no cap worth the name (benchmarks hold
/// thousands of streams), no quiet-connection timeout, 10 s for requests in flight at a stop.
const LIMITS: Limits = Limits {
    max_connections: 1 << 20,
    header_timeout: None,
    grace: Duration::from_secs(10),
};

async fn serve(listener: Listener, state: Arc<server::State>, phase: watch::Receiver<Phase>) {
    let handle = move |req| server::handle(req, state.clone());
    listener.serve_plain(handle, phase).await;
}
