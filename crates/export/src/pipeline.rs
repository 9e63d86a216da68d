//! The Rust equivalent of vLLM's `init_tracer(instrumenting_module_name, otlp_traces_endpoint)`:
//! resolve configuration, build the exporters, start the export thread, return a tracer.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use inferscope_core::{Scope, Str, Tracer};

use crate::InitError;
use crate::batch::{self, ExportStats, FlushError, StatsSnapshot, WorkerHandle};
use crate::config::{
    self, ConfigErrors, Env, ExporterConfig, ExporterKind, ExporterSettings, Layers, ProcessEnv,
    Protocol,
};
use crate::exporter::SpanExporter;
use crate::otlp::{Encoder, OtlpExporter};
use crate::sink::{ConsoleExporter, FileExporter};

/// Configures and starts a tracing pipeline.
///
/// ```no_run
/// # async fn example() -> Result<(), inferscope_export::InitError> {
/// use inferscope_export::TracingBuilder;
/// let tracing = TracingBuilder::new("my.service")
///     .with_endpoint("http://127.0.0.1:4317") // beats OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
///     .build()?;
/// let tracer = tracing.tracer();
/// // … tracer.start(…) …
/// tracing.shutdown(std::time::Duration::from_secs(5)).await.ok();
/// # Ok(()) }
/// ```
pub struct TracingBuilder {
    scope: Str,
    explicit: ExporterSettings,
    file: ExporterSettings,
    env: Arc<dyn Env>,
    extra: Vec<Box<dyn SpanExporter>>,
    console: Option<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for TracingBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingBuilder")
            .field("scope", &self.scope)
            .field("explicit", &self.explicit)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl TracingBuilder {
    /// A builder whose spans carry the instrumentation scope `instrumenting_module_name`.
    /// A `&'static str` name costs nothing per span; an owned one is shared.
    pub fn new(instrumenting_module_name: impl Into<Str>) -> TracingBuilder {
        TracingBuilder {
            scope: instrumenting_module_name.into(),
            explicit: ExporterSettings::default(),
            file: ExporterSettings::default(),
            env: Arc::new(ProcessEnv),
            extra: Vec::new(),
            console: None,
        }
    }

    /// The traces endpoint, used as given (highest precedence).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> TracingBuilder {
        self.explicit.endpoint = Some(endpoint.into());
        self
    }

    /// The OTLP protocol (highest precedence).
    pub fn with_protocol(mut self, protocol: Protocol) -> TracingBuilder {
        self.explicit.protocol = Some(protocol.as_str().to_owned());
        self
    }

    /// Explicit settings, e.g. from command-line flags (highest precedence). Fields it sets
    /// replace earlier explicit ones (`with_endpoint` included); the others are kept.
    pub fn with_settings(mut self, settings: ExporterSettings) -> TracingBuilder {
        self.explicit = std::mem::take(&mut self.explicit).merged(settings);
        self
    }

    /// Settings from a configuration file (below the environment). Fields it sets replace
    /// earlier file settings; the others are kept.
    pub fn with_file_settings(mut self, settings: ExporterSettings) -> TracingBuilder {
        self.file = std::mem::take(&mut self.file).merged(settings);
        self
    }

    /// Where environment variables are read (the process environment by default).
    pub fn with_env(mut self, env: impl Env + 'static) -> TracingBuilder {
        self.env = Arc::new(env);
        self
    }

    /// An additional exporter that receives every batch.
    pub fn with_exporter(mut self, exporter: Box<dyn SpanExporter>) -> TracingBuilder {
        self.extra.push(exporter);
        self
    }

    /// Where the console exporter writes (standard output by default).
    pub fn with_console_writer(mut self, out: Box<dyn Write + Send>) -> TracingBuilder {
        self.console = Some(out);
        self
    }

    /// The configuration the layers resolve to, or every error in them.
    pub fn resolve(&self) -> Result<ExporterConfig, ConfigErrors> {
        config::resolve(Layers {
            explicit: &self.explicit,
            env: self.env.as_ref(),
            file: &self.file,
        })
    }

    /// Resolves the configuration, builds the exporters and starts the export thread.
    /// With `OTEL_SDK_DISABLED=true`, or no exporter at all, the tracer is disabled and costs
    /// nothing.
    pub fn build(self) -> Result<Tracing, InitError> {
        let config = self.resolve().map_err(InitError::Config)?;
        self.build_with(config)
    }

    /// Starts a pipeline for an already resolved configuration.
    pub fn build_with(self, config: ExporterConfig) -> Result<Tracing, InitError> {
        let any_exporter = !config.disabled
            && (!config.exporters.is_empty() || config.file.is_some() || !self.extra.is_empty());
        if !any_exporter {
            return Ok(Tracing {
                tracer: Tracer::disabled(),
                config,
                worker: None,
            });
        }
        let encoder = Encoder::new(&config.resource);
        let factory_config = config.clone();
        let mut console = self.console;
        let extra = self.extra;
        let factory: batch::ExporterFactory = Box::new(move || {
            let mut exporters: Vec<Box<dyn SpanExporter>> = Vec::new();
            for kind in &factory_config.exporters {
                match kind {
                    ExporterKind::Otlp => exporters.push(Box::new(OtlpExporter::new(
                        &factory_config.otlp,
                        encoder.clone(),
                    )?)),
                    ExporterKind::Console => exporters.push(Box::new(match console.take() {
                        Some(out) => ConsoleExporter::new(out),
                        None => ConsoleExporter::default(),
                    })),
                }
            }
            if let Some(path) = &factory_config.file {
                exporters.push(Box::new(FileExporter::open(path, encoder.clone())?));
            }
            exporters.extend(extra);
            Ok(exporters)
        });
        let (processor, worker) = batch::spawn(config.batch, factory)?;
        let tracer = Tracer::new(
            Scope::new(self.scope),
            config.sampler.clone(),
            Arc::new(processor),
        );
        Ok(Tracing {
            tracer,
            config,
            worker: Some(worker),
        })
    }
}

/// vLLM's `init_tracer(instrumenting_module_name, otlp_traces_endpoint)`: a pipeline configured
/// from the `OTEL_*` environment, with `otlp_traces_endpoint` (when given) taking precedence
/// over `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`. Unlike vLLM, every protocol and TLS are honoured.
pub fn init_tracer(
    instrumenting_module_name: impl Into<Str>,
    otlp_traces_endpoint: Option<&str>,
) -> Result<Tracing, InitError> {
    let mut builder = TracingBuilder::new(instrumenting_module_name);
    if let Some(endpoint) = otlp_traces_endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    builder.build()
}

/// A running pipeline: the tracer, its configuration, and control of the export thread.
#[derive(Debug)]
pub struct Tracing {
    tracer: Tracer,
    config: ExporterConfig,
    worker: Option<WorkerHandle>,
}

impl Tracing {
    /// The tracer (cheap to clone).
    pub fn tracer(&self) -> Tracer {
        self.tracer.clone()
    }

    /// The resolved configuration.
    pub fn config(&self) -> &ExporterConfig {
        &self.config
    }

    /// The counters, shared (for metrics endpoints).
    pub fn stats_handle(&self) -> Option<Arc<ExportStats>> {
        self.worker.as_ref().map(|w| w.stats().clone())
    }

    /// A copy of the counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.worker
            .as_ref()
            .map(|w| w.stats().snapshot())
            .unwrap_or_default()
    }

    /// Exports everything queued; waits at most `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        match &self.worker {
            Some(w) => w.flush(timeout).await,
            None => Ok(()),
        }
    }

    /// Exports everything queued and stops the export thread; waits at most `timeout`. Spans
    /// ended afterwards are dropped and counted.
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), FlushError> {
        match &self.worker {
            Some(w) => w.shutdown(timeout).await,
            None => Ok(()),
        }
    }

    /// [`Tracing::flush`] for synchronous code (blocks; not for use inside an async task).
    pub fn flush_blocking(&self, timeout: Duration) -> Result<(), FlushError> {
        match &self.worker {
            Some(w) => w.flush_blocking(timeout),
            None => Ok(()),
        }
    }

    /// [`Tracing::shutdown`] for synchronous code (blocks; not for use inside an async task).
    pub fn shutdown_blocking(&self, timeout: Duration) -> Result<(), FlushError> {
        match &self.worker {
            Some(w) => w.shutdown_blocking(timeout),
            None => Ok(()),
        }
    }
}
