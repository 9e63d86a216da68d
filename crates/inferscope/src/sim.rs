//! `inferscope sim`: the simulated vLLM-compatible engine as a server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use inferscope_sim::{FixedTiming, Sim, SimConfig};

/// Options of `inferscope sim`; each overrides the same key of `--config`.
#[derive(Debug, clap::Args)]
pub(crate) struct SimArgs {
    /// A TOML file with any of the settings below (and the `[engine]` table).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where to listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The served model name.
    #[arg(long)]
    model: Option<String>,
    /// Prompt plus output tokens a request may use.
    #[arg(long)]
    max_model_len: Option<u32>,
    /// Seed of the deterministic output.
    #[arg(long)]
    seed: Option<u64>,
    /// Answer without simulated delay (overhead benchmarks).
    #[arg(long)]
    zero_delay: bool,
    /// Send `llm_request` spans here, like vLLM's `--otlp-traces-endpoint`.
    #[arg(long)]
    otlp_traces_endpoint: Option<String>,
    /// Echo `X-Request-Id` (vLLM's `--enable-request-id-headers`).
    #[arg(long)]
    enable_request_id_headers: bool,
    /// Most sequences running at once.
    #[arg(long)]
    max_num_seqs: Option<usize>,
    /// KV cache capacity in tokens.
    #[arg(long)]
    kv_cache_tokens: Option<u32>,
    /// Fixed cost of an engine step, ms.
    #[arg(long)]
    step_base_ms: Option<f64>,
    /// Cost per running sequence in a step, ms.
    #[arg(long)]
    step_per_seq_ms: Option<f64>,
    /// Cost per prompt token prefilled, ms.
    #[arg(long)]
    prefill_per_token_ms: Option<f64>,
    /// Fixed timing: every request's first token this many ms after it arrives, however many
    /// run (no batching model); needs `--fixed-itl-ms`.
    #[arg(long, requires = "fixed_itl_ms")]
    fixed_ttft_ms: Option<f64>,
    /// Fixed timing: ms between a request's tokens; needs `--fixed-ttft-ms`.
    #[arg(long, requires = "fixed_ttft_ms")]
    fixed_itl_ms: Option<f64>,
    /// A fault for every request, e.g. `stall_ms=200; split=random`.
    #[arg(long)]
    fault: Option<String>,
    /// Print the resolved configuration and exit.
    #[arg(long)]
    print_config: bool,
}

fn resolve(args: &SimArgs) -> anyhow::Result<SimConfig> {
    let mut c = match &args.config {
        Some(path) => SimConfig::from_file(path)?,
        None => SimConfig::default(),
    };
    if let Some(v) = args.listen {
        c.listen = v;
    }
    if let Some(v) = &args.model {
        c.model = v.clone();
    }
    if let Some(v) = args.max_model_len {
        c.max_model_len = v;
    }
    if let Some(v) = args.seed {
        c.seed = v;
    }
    c.zero_delay |= args.zero_delay;
    c.enable_request_id_headers |= args.enable_request_id_headers;
    if let Some(v) = &args.otlp_traces_endpoint {
        c.otlp_traces_endpoint = Some(v.clone());
    }
    if let Some(v) = args.max_num_seqs {
        c.engine.max_num_seqs = v;
    }
    if let Some(v) = args.kv_cache_tokens {
        c.engine.kv_cache_tokens = v;
    }
    if let Some(v) = args.step_base_ms {
        c.engine.step_base_ms = v;
    }
    if let Some(v) = args.step_per_seq_ms {
        c.engine.step_per_seq_ms = v;
    }
    if let Some(v) = args.prefill_per_token_ms {
        c.engine.prefill_per_token_ms = v;
    }
    if let (Some(ttft_ms), Some(itl_ms)) = (args.fixed_ttft_ms, args.fixed_itl_ms) {
        c.engine.fixed_timing = Some(FixedTiming { ttft_ms, itl_ms });
    }
    if let Some(v) = &args.fault {
        c.fault = Some(v.clone());
    }
    c.validate()?;
    Ok(c)
}

pub(crate) async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = resolve(&args)?;
    if args.print_config {
        #[allow(clippy::print_stdout, reason = "the requested output")]
        {
            println!("{config:#?}");
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
