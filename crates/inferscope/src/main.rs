//! `inferscope`: the command-line entry point. Parsing, logging and dispatch only; the work
//! lives in the library crates.

mod bench;
mod demo;
mod run;
mod serve;
mod sim;
mod waterfall;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: measured on the gateway's request path (ADR 0008).
/// The feature `system-allocator` keeps glibc's, for heap profilers that hook malloc
/// (heaptrack, `bench/scale.sh` with `GATEWAY_WRAP`).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Traces requests to LLM inference servers as OpenTelemetry traces.
#[derive(Debug, Parser)]
#[command(
    name = "inferscope",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("INFERSCOPE_COMMIT"), ")"),
    about,
    long_about = None
)]
struct Cli {
    /// Log filter for inferscope's own logs (stderr), e.g. `info` or `inferscope_export=debug`.
    #[arg(long, global = true, env = "INFERSCOPE_LOG", default_value = "info")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the simulator and the gateway in one process, send a varied workload through them,
    /// print every trace as a waterfall, and write the spans as OTLP-JSON lines.
    Demo(demo::DemoArgs),
    /// Drive load at OpenAI-compatible targets and report latency, throughput and process cost.
    Bench(Box<bench::BenchArgs>),
    /// Run the tracing gateway in front of vLLM or any OpenAI-compatible server.
    Serve(Box<serve::ServeArgs>),
    /// Start an engine (`-- vllm serve MODEL …`) behind the gateway, on its own address, traced
    /// with no configuration; exits with the engine's status.
    Run(Box<run::RunArgs>),
    /// Serve a simulated vLLM-compatible engine (for demos, tests and benchmarks).
    Sim(Box<sim::SimArgs>),
}

fn main() {
    let code = match run_command(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            // The causes, one per line; never a backtrace (`RUST_BACKTRACE` is for panics).
            let mut text = format!("error: {e}");
            for cause in e.chain().skip(1) {
                text.push_str(&format!("\n  caused by: {cause}"));
            }
            #[allow(clippy::print_stderr, reason = "the error a user reads")]
            {
                eprintln!("{text}");
            }
            2
        }
    };
    std::process::exit(code)
}

/// Runs the command; its exit code.
fn run_command(cli: Cli) -> anyhow::Result<i32> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log collectors read plain `key=value` fields.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await.map(|()| 0),
            Command::Serve(args) => serve::run(*args).await.map(|()| 0),
            Command::Run(args) => run::run(*args).await,
            Command::Bench(args) => bench::run(*args).await.map(|()| 0),
            Command::Sim(args) => sim::run(*args).await.map(|()| 0),
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
