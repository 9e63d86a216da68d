//! `inferscope serve`: the tracing gateway. Flags override the environment, which overrides
//! the `--config` file, which overrides the defaults.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use inferscope_export::config::ProcessEnv;
use inferscope_export::{ExporterSettings, TracingBuilder};
use inferscope_gateway::Gateway;
use inferscope_gateway::config::{self, CaptureSettings, FileConfig, GatewaySettings};

/// The gateway's default export queue (`OTEL_BSP_MAX_QUEUE_SIZE`), in spans.
const GATEWAY_QUEUE: usize = 8192;

/// What `--hide` can hide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Hide {
    Inputs,
    Outputs,
    InputMessages,
    OutputMessages,
    InputText,
    OutputText,
    ToolDefinitions,
    SystemInstructions,
}

/// Options of `inferscope serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// A TOML file with `[gateway]`, `[capture]` and `[exporter]` tables.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The server to front, e.g. `http://127.0.0.1:8000` [env: INFERSCOPE_UPSTREAM].
    #[arg(long)]
    upstream: Option<String>,
    /// Where to listen [default: 0.0.0.0:9000; env: INFERSCOPE_LISTEN].
    #[arg(long)]
    listen: Option<String>,
    /// Where the admin endpoints listen, or `off` [default: 127.0.0.1:9464; env: INFERSCOPE_ADMIN].
    #[arg(long)]
    admin: Option<String>,
    /// Speak HTTP/2 with prior knowledge (h2c) to the upstream.
    #[arg(long)]
    upstream_h2c: bool,
    /// `gen_ai.provider.name` [default: vllm].
    #[arg(long)]
    provider: Option<String>,
    /// Connect timeout towards the upstream, ms [default: 5000].
    #[arg(long)]
    connect_timeout_ms: Option<u64>,
    /// Time allowed for the upstream's response headers, ms [default: 600000].
    #[arg(long)]
    first_byte_timeout_ms: Option<u64>,
    /// Longest silence inside a response body, ms; 0 for none [default: 300000].
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
    /// Longest whole exchange, ms; 0 for none [default: none].
    #[arg(long)]
    total_timeout_ms: Option<u64>,
    /// Do not ask the upstream for token usage on streams.
    #[arg(long)]
    no_inject_usage: bool,
    /// The response header naming the trace; empty for none [default: traceresponse].
    #[arg(long)]
    traceresponse_header: Option<String>,
    /// Also write attributes in these dialects: `vllm`, `openinference` (repeatable).
    #[arg(long = "dialect")]
    dialects: Vec<String>,
    /// Grace period for requests in flight after SIGTERM, ms [default: 30000].
    #[arg(long)]
    shutdown_grace_ms: Option<u64>,
    /// Time a client connection has to send a request head (from connect or from its last
    /// request); quiet connections are closed after it, ms; 0 for none [default: 30000].
    #[arg(long)]
    header_timeout_ms: Option<u64>,
    /// Most client connections open at once [default: from the open-file limit].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Request headers to record (repeatable; credentials are refused).
    #[arg(long = "capture-header")]
    captured_headers: Vec<String>,
    /// Record prompts and outputs (off by default).
    #[arg(long)]
    capture_content: bool,
    /// Longest captured text part, bytes [default: 8192].
    #[arg(long)]
    capture_max_length: Option<usize>,
    /// Hide part of the captured content (repeatable).
    #[arg(long, value_enum)]
    hide: Vec<Hide>,
    /// A regular expression whose matches are replaced by `__REDACTED__` (repeatable).
    #[arg(long)]
    redact: Vec<String>,
    /// Accept vLLM's spans over OTLP/gRPC here, or `off` [default: 127.0.0.1:4327].
    #[arg(long)]
    otlp_ingest_grpc: Option<String>,
    /// Accept vLLM's spans over OTLP/HTTP (`/v1/traces`) here, or `off` [default: 127.0.0.1:4328].
    #[arg(long)]
    otlp_ingest_http: Option<String>,
    /// Drop vLLM's start-up spans instead of forwarding them.
    #[arg(long)]
    ingest_drop_startup_spans: bool,
    /// Drop received spans with this name (repeatable).
    #[arg(long = "ingest-drop-span")]
    ingest_drop_span_names: Vec<String>,
    /// The model named on engine spans the gateway has no record of.
    #[arg(long)]
    engine_model: Option<String>,
    /// The OTLP traces endpoint [env: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT].
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// `grpc`, `http/protobuf` or `http/json` [env: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL].
    #[arg(long)]
    otlp_protocol: Option<String>,
    /// Where spans go: `otlp`, `console`, `none` (repeatable) [env: OTEL_TRACES_EXPORTER].
    #[arg(long = "exporter")]
    exporters: Vec<String>,
    /// `service.name` [env: OTEL_SERVICE_NAME].
    #[arg(long)]
    service_name: Option<String>,
    /// The sampler, as `OTEL_TRACES_SAMPLER`.
    #[arg(long)]
    sampler: Option<String>,
    /// The sampler's argument, as `OTEL_TRACES_SAMPLER_ARG`.
    #[arg(long)]
    sampler_arg: Option<f64>,
    /// Also write every span as OTLP-JSON lines to this file.
    #[arg(long)]
    spans_file: Option<PathBuf>,
    /// Print the resolved configuration (secrets hidden) and exit.
    #[arg(long)]
    print_config: bool,
}

impl ServeArgs {
    fn layers(&self) -> (GatewaySettings, CaptureSettings, ExporterSettings) {
        let some = |b: bool| b.then_some(true);
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let gateway = GatewaySettings {
            upstream: self.upstream.clone(),
            listen: self.listen.clone(),
            admin: self.admin.clone(),
            upstream_h2c: some(self.upstream_h2c),
            provider: self.provider.clone(),
            connect_timeout_ms: self.connect_timeout_ms,
            first_byte_timeout_ms: self.first_byte_timeout_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            total_timeout_ms: self.total_timeout_ms,
            inject_usage: self.no_inject_usage.then_some(false),
            traceresponse_header: self.traceresponse_header.clone(),
            dialects: list(&self.dialects),
            shutdown_grace_ms: self.shutdown_grace_ms,
            max_parse_bytes: None,
            max_parse_bytes_total: None,
            header_timeout_ms: self.header_timeout_ms,
            max_connections: self.max_connections,
            captured_headers: list(&self.captured_headers),
            otlp_ingest_grpc: self.otlp_ingest_grpc.clone(),
            otlp_ingest_http: self.otlp_ingest_http.clone(),
            ingest_max_bytes: None,
            ingest_drop_startup_spans: some(self.ingest_drop_startup_spans),
            ingest_drop_span_names: list(&self.ingest_drop_span_names),
            engine_model: self.engine_model.clone(),
            join_capacity: None,
            join_ttl_ms: None,
            join_wait_ms: None,
        };
        let hidden = |h: Hide| self.hide.contains(&h).then_some(true);
        let capture = CaptureSettings {
            enabled: some(self.capture_content),
            max_length: self.capture_max_length,
            hide_inputs: hidden(Hide::Inputs),
            hide_outputs: hidden(Hide::Outputs),
            hide_input_messages: hidden(Hide::InputMessages),
            hide_output_messages: hidden(Hide::OutputMessages),
            hide_input_text: hidden(Hide::InputText),
            hide_output_text: hidden(Hide::OutputText),
            hide_tool_definitions: hidden(Hide::ToolDefinitions),
            hide_system_instructions: hidden(Hide::SystemInstructions),
            redact: list(&self.redact),
            redact_replacement: None,
        };
        let exporter = ExporterSettings {
            exporters: list(&self.exporters),
            protocol: self.otlp_protocol.clone(),
            endpoint: self.otlp_endpoint.clone(),
            service_name: self.service_name.clone(),
            sampler: self.sampler.clone(),
            sampler_arg: self.sampler_arg,
            file: self.spans_file.clone(),
            ..ExporterSettings::default()
        };
        (gateway, capture, exporter)
    }
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Each stream holds two connections; the default connection cap follows this limit.
    inferscope_gateway::raise_open_file_limit();
    let file = match &args.config {
        Some(path) => FileConfig::read(path).map_err(anyhow::Error::msg)?,
        None => FileConfig::default(),
    };
    let (gateway, capture, exporter) = args.layers();
    // The exporter's file layer names the gateway's service unless the user says otherwise,
    // and gives it a queue that holds three of vLLM's span batches with their phases (512
    // spans are 2,560 records) beside its own spans, instead of the SDK default of 2,048.
    let mut file_layer = file.clone();
    file_layer
        .exporter
        .service_name
        .get_or_insert_with(|| "inferscope-gateway".to_owned());
    file_layer
        .exporter
        .max_queue_size
        .get_or_insert(GATEWAY_QUEUE);
    let loaded = config::load(&gateway, &capture, &exporter, &ProcessEnv, &file_layer)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.print_config {
        #[allow(clippy::print_stdout, reason = "the requested output")]
        {
            println!(
                "# gateway\n{}\n# exporter\n{}",
                loaded.gateway, loaded.exporter
            );
        }
        return Ok(());
    }
    let tracing = TracingBuilder::new("inferscope.gateway")
        .build_with(loaded.exporter)
        .context("starting span export")?;
    let gateway = Gateway::start(loaded.gateway, tracing.tracer(), tracing.stats_handle())
        .await
        .context("starting the gateway")?;
    crate::sim::shutdown_signal().await;
    tracing::info!("signal received; shutting down");
    let clean = gateway.shutdown().await;
    if let Err(e) = tracing.shutdown(Duration::from_secs(10)).await {
        tracing::warn!(error = %e, "not every span was exported before exit");
    }
    let stats = tracing.stats();
    // Every span ended is in exactly one of these counts, per exporter.
    let sinks: Vec<String> = stats
        .sinks
        .iter()
        .map(|s| {
            format!(
                "{}: {} exported, {} failed, {} rejected",
                s.name, s.exported, s.failed, s.rejected
            )
        })
        .collect();
    tracing::info!(
        clean,
        spans_ended = stats.enqueued + stats.dropped,
        spans_dropped = stats.dropped,
        spans_queued = stats.queued,
        exporters = %sinks.join("; "),
        "stopped"
    );
    Ok(())
}
