//! `inferscope bench`: the load generator (see `inferscope-bench`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use inferscope_bench::run::{Load, Plan, Target};

/// Options of `inferscope bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// A target as `NAME=URL` (repeatable; the first is the baseline of the "added" figures).
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// A process charged to a target, as `NAME=PID` (repeatable; its descendants count too).
    #[arg(long = "pid")]
    pids: Vec<String>,
    /// Open loop: requests per second, on a fixed schedule.
    #[arg(long, conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// With --rate: Poisson arrivals (exponential gaps) instead of evenly spaced ones.
    #[arg(long, requires = "rate")]
    poisson: bool,
    /// Closed loop: requests in flight [default: 64].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Streamed chat (SSE); non-streamed otherwise.
    #[arg(long)]
    stream: bool,
    /// Tokens per response.
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    /// The model name sent.
    #[arg(long, default_value = "tiny-llama")]
    model: String,
    /// Measured seconds per target.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Interleaved rounds.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Warm-up seconds per target.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Longest a request may take, seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the markdown table here too.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// A heading for the markdown.
    #[arg(long, default_value = "benchmark")]
    title: String,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut targets = Vec::new();
    for t in &args.targets {
        let (name, url) = t
            .split_once('=')
            .with_context(|| format!("--target {t}: expected NAME=URL"))?;
        targets.push(Target {
            name: name.to_owned(),
            url: url.to_owned(),
            pids: Vec::new(),
        });
    }
    for p in &args.pids {
        let (name, pid) = p
            .split_once('=')
            .with_context(|| format!("--pid {p}: expected NAME=PID"))?;
        let pid: u32 = pid
            .parse()
            .with_context(|| format!("--pid {p}: not a process id"))?;
        let target = targets
            .iter_mut()
            .find(|t| t.name == name)
            .with_context(|| format!("--pid {p}: no target named {name}"))?;
        target.pids.push(pid);
    }
    let load = match args.rate {
        Some(rate) if rate > 0.0 => Load::Open {
            rate,
            poisson: args.poisson,
        },
        Some(_) => anyhow::bail!("--rate must be above 0"),
        None => Load::Closed {
            concurrency: args.concurrency.unwrap_or(64).max(1),
        },
    };
    let secs = |s: f64, what: &str| -> anyhow::Result<Duration> {
        Duration::try_from_secs_f64(s).with_context(|| format!("--{what} {s}: not a duration"))
    };
    let plan = Plan {
        targets,
        load,
        stream: args.stream,
        max_tokens: args.max_tokens,
        model: args.model,
        duration: secs(args.duration, "duration")?,
        rounds: args.rounds.max(1),
        warmup: secs(args.warmup, "warmup")?,
        timeout: secs(args.timeout, "timeout")?,
        progress: !args.no_progress,
    };
    let report = inferscope_bench::run::run(&plan).await;
    let md = inferscope_bench::report::markdown(&report, &args.title);
    #[allow(clippy::print_stdout, reason = "the report is the command's output")]
    {
        println!("{md}");
    }
    if let Some(p) = &args.json {
        std::fs::write(p, inferscope_bench::report::json(&report))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.markdown {
        std::fs::write(p, &md).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
