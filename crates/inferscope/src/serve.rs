//! `inferscope serve`: the tracing gateway. Flags override the environment, which overrides
//! the `--config` file, which overrides the defaults.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use inferscope_export::TracingBuilder;
use inferscope_gateway::Gateway;
use inferscope_gateway::config::{self, CaptureSettings, Explicit, GatewaySettings};
use inferscope_settings::cli::{FlagSet, Flags};
use inferscope_settings::{FileLayer, ProcessEnv, Setting, Table};

/// The gateway's default export queue (`OTEL_BSP_MAX_QUEUE_SIZE`), in spans: room for three
/// of vLLM's span batches with their phases (512 spans are 2,560 records) beside its own
/// spans, instead of the SDK default of 2,048.
const GATEWAY_QUEUE: &str = "8192";

/// The settings `inferscope serve` offers as flags: every row of the gateway's tables that
/// has one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServeFlags;

impl FlagSet for ServeFlags {
    fn settings() -> Vec<&'static Setting> {
        [
            GatewaySettings::settings(),
            CaptureSettings::settings(),
            inferscope_export::ExporterSettings::settings(),
            inferscope_export::config::MetricsSettings::settings(),
        ]
        .concat()
    }
}

/// Options of `inferscope serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// A TOML file with `[gateway]`, `[capture]`, `[exporter]` and `[metrics]` tables.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the resolved configuration (secrets hidden) and exit.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    settings: Flags<ServeFlags>,
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let loaded = load(args.config.as_deref(), &args.settings, |_| Ok(()))?;
    if args.print_config {
        print_config(&loaded);
        return Ok(());
    }
    let (gateway, tracing) = start(loaded).await?;
    wait_for_shutdown(&gateway).await;
    tracing::info!("signal received; shutting down");
    stop(gateway, tracing).await;
    Ok(())
}

/// Resolves the gateway's and the exporter's settings: flags (after `adjust` has seen the
/// gateway's), then the environment, then the `config` file, then the defaults.
pub(crate) fn load(
    config_file: Option<&std::path::Path>,
    settings: &Flags<ServeFlags>,
    adjust: impl FnOnce(&mut GatewaySettings) -> anyhow::Result<()>,
) -> anyhow::Result<config::Loaded> {
    // Each stream holds two connections; the default connection cap follows this limit.
    inferscope_gateway::raise_open_file_limit();
    // The file's problems are reported with every other error, at once.
    let (file, mut errors) = match config_file {
        Some(path) => FileLayer::read(path, config::FILE_TABLES)?,
        None => (FileLayer::empty(), Vec::new()),
    };
    let mut gateway: GatewaySettings = settings.table(&mut errors);
    adjust(&mut gateway)?;
    let explicit = Explicit {
        gateway,
        capture: settings.table(&mut errors),
        exporter: settings.table(&mut errors),
        metrics: settings.table(&mut errors),
        errors,
    };
    // The gateway's own defaults for the exporter: its service name, and a larger queue.
    let defaults = [
        (
            &inferscope_export::config::rows::service_name,
            "inferscope-gateway",
        ),
        (
            &inferscope_export::config::rows::max_queue_size,
            GATEWAY_QUEUE,
        ),
    ];
    Ok(config::load(&explicit, &ProcessEnv, &file, &defaults)?)
}

pub(crate) fn print_config(loaded: &config::Loaded) {
    #[allow(clippy::print_stdout, reason = "the requested output")]
    {
        println!(
            "# gateway\n{}\n# exporter\n{}",
            loaded.gateway, loaded.exporter
        );
    }
}

/// Starts span export and the gateway; says where spans go.
pub(crate) async fn start(
    loaded: config::Loaded,
) -> anyhow::Result<(Gateway, inferscope_export::Tracing)> {
    let destinations = loaded.exporter.destinations();
    let tracing = TracingBuilder::new("inferscope.gateway")
        .build_with(loaded.exporter)
        .context("starting span export")?;
    let gateway = Gateway::start(loaded.gateway, tracing.tracer(), tracing.stats_handle())
        .await
        .context("starting the gateway")?;
    tracing::info!(spans_to = %destinations, "exporting spans");
    Ok((gateway, tracing))
}

/// Drains the gateway, flushes the spans, and reports what became of every span.
pub(crate) async fn stop(gateway: Gateway, tracing: inferscope_export::Tracing) {
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
    let lost = stats.dropped
        + stats.queued
        + stats
            .sinks
            .iter()
            .map(|s| s.failed + s.rejected)
            .sum::<u64>();
    if lost > 0 {
        tracing::warn!(
            clean,
            spans_ended = stats.enqueued + stats.dropped,
            spans_dropped_queue_full = stats.dropped,
            exporters = %sinks.join("; "),
            "stopped; some spans were not exported"
        );
    } else {
        tracing::info!(
            clean,
            spans_ended = stats.enqueued + stats.dropped,
            spans_dropped_queue_full = stats.dropped,
            exporters = %sinks.join("; "),
            "stopped"
        );
    }
}

/// Waits for SIGINT or SIGTERM; meanwhile, each SIGHUP reads the TLS certificate and key again.
async fn wait_for_shutdown(gateway: &Gateway) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            let stop = crate::sim::shutdown_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => return,
                    _ = hup.recv() => match gateway.reload_tls() {
                        Ok(true) => tracing::info!("SIGHUP: TLS certificate and key read again"),
                        Ok(false) => tracing::info!("SIGHUP: no TLS to reload"),
                        Err(e) => tracing::warn!(error = %e, "SIGHUP: the TLS certificate or key cannot be used; the one in use stays"),
                    },
                }
            }
        }
    }
    crate::sim::shutdown_signal().await;
}
