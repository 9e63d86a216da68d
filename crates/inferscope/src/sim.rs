//! `inferscope sim`: the simulated vLLM-compatible engine as a server.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use inferscope_settings::cli::{FlagSet, Flags};
use inferscope_settings::{FileLayer, Setting, Table};
use inferscope_sim::config::{EngineSettings, FILE_TABLES, SimSettings};
use inferscope_sim::{Sim, SimConfig};

/// The settings `inferscope sim` offers as flags.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SimFlags;

impl FlagSet for SimFlags {
    fn settings() -> Vec<&'static Setting> {
        [SimSettings::settings(), EngineSettings::settings()].concat()
    }
}

/// Options of `inferscope sim`; each flag overrides the same key of `--config`.
#[derive(Debug, clap::Args)]
pub(crate) struct SimArgs {
    /// A TOML file with any of the settings (top-level keys and the `[engine]` table).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the resolved configuration and exit.
    #[arg(long)]
    print_config: bool,
    /// The address part of `listen`, spelled as vLLM spells it (`inferscope run` rewrites it).
    #[arg(long)]
    host: Option<std::net::IpAddr>,
    /// The port part of `listen`, spelled as vLLM spells it (`inferscope run` rewrites it).
    #[arg(long)]
    port: Option<u16>,
    #[command(flatten)]
    settings: Flags<SimFlags>,
}

fn resolve(args: &SimArgs) -> anyhow::Result<(SimConfig, inferscope_settings::Report)> {
    // The file's problems are reported with every other error, at once.
    let (file, mut errors) = match &args.config {
        Some(path) => FileLayer::read(path, FILE_TABLES)?,
        None => (FileLayer::empty(), Vec::new()),
    };
    let sim: SimSettings = args.settings.table(&mut errors);
    let engine: EngineSettings = args.settings.table(&mut errors);
    Ok(SimConfig::resolve((&sim, &engine), errors, &file)?)
}

pub(crate) async fn run(args: SimArgs) -> anyhow::Result<()> {
    let (mut config, report) = resolve(&args)?;
    if let Some(host) = args.host {
        config.listen.set_ip(host);
    }
    if let Some(port) = args.port {
        config.listen.set_port(port);
    }
    if args.print_config {
        #[allow(clippy::print_stdout, reason = "the requested output")]
        {
            print!("{}", report.render(""));
        }
        return Ok(());
    }
    let sim = Sim::start(config.clone())
        .await
        .context("starting the simulator")?;
    tracing::info!(
        url = %sim.url(),
        model = %config.model,
        zero_delay = config.zero_delay,
        "simulated vLLM engine listening"
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(15), sim.shutdown()).await;
    Ok(())
}

/// SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
