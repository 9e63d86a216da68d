//! `inferscope run [gateway flags] -- COMMAND…`: an engine traced with no configuration.
//!
//! The engine (COMMAND) is started as a child on a private loopback port, and the gateway
//! takes the address the engine would have used. For vLLM (and `inferscope sim`, which speaks
//! its flags) the engine's `--otlp-traces-endpoint` is pointed at the gateway's ingest unless
//! the user set one. The child runs in its own process group and is told to stop when this
//! process dies (`PR_SET_PDEATHSIG`), so no engine is left holding the GPU.
//!
//! Lifecycle: the gateway starts first (its ingest must listen before the engine's first
//! export), then the engine; "ready" is printed once the engine's health path answers 200.
//! SIGINT or SIGTERM is passed to the engine, which drains; once it exits the gateway drains
//! and flushes, and this process exits with the engine's status. An engine that exits on its
//! own stops the gateway the same way. A second signal kills the engine's process group.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use inferscope_settings::cli::Flags;
use rustix::process::{Pid, Signal};

use crate::serve::ServeFlags;

/// vLLM's default port, and its default host (every interface).
const VLLM_PORT: u16 = 8000;

/// Options of `inferscope run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// A TOML file with `[gateway]`, `[capture]`, `[exporter]` and `[metrics]` tables.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The port COMMAND listens on, for an engine whose `--host`/`--port` cannot be read or
    /// rewritten: COMMAND is left as it is, and the gateway listens on `--listen`.
    #[arg(long, value_name = "PORT")]
    engine_port: Option<u16>,
    /// The engine's health path: "ready" once it answers 200.
    #[arg(long, default_value = "/health")]
    health_path: String,
    #[command(flatten)]
    settings: Flags<ServeFlags>,
    /// The engine's command line, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// How the engine's command is run, worked out from its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The command line to start.
    pub(crate) argv: Vec<String>,
    /// Where the engine listens (loopback).
    pub(crate) engine: SocketAddr,
    /// Where the gateway listens, when the engine's flags said (else `--listen` or its default).
    pub(crate) listen: Option<SocketAddr>,
    /// The engine speaks vLLM's flags (`--otlp-traces-endpoint`).
    pub(crate) vllm_like: bool,
    /// The user's own `--otlp-traces-endpoint`, kept.
    pub(crate) own_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME` for the engine, when the environment has none.
    pub(crate) service_name: String,
    /// The engine exports to the gateway's gRPC ingest: its OTLP protocol is set to gRPC.
    pub(crate) grpc_to_ingest: bool,
}

/// The value of `--name V` or `--name=V` in `args`, and where it is (the flag's index, and
/// whether the value is in the same argument).
fn find_flag(args: &[String], name: &str) -> Option<(usize, bool, String)> {
    let eq = format!("{name}=");
    for (i, a) in args.iter().enumerate() {
        if a == "--" {
            break;
        }
        if a == name {
            return args.get(i + 1).map(|v| (i, false, v.clone()));
        }
        if let Some(v) = a.strip_prefix(&eq) {
            return Some((i, true, v.to_owned()));
        }
    }
    None
}

/// Sets `--name value`, in place when present, else at the end.
fn set_flag(args: &mut Vec<String>, name: &str, value: &str) {
    match find_flag(args, name) {
        Some((i, true, _)) => args[i] = format!("{name}={value}"),
        Some((i, false, _)) => args[i + 1] = value.to_owned(),
        None => {
            args.push(name.to_owned());
            args.push(value.to_owned());
        }
    }
}

fn basename(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// Whether `argv` starts vLLM's server (`vllm serve`, `python -m vllm.entrypoints…`) or the
/// simulator, which speaks vLLM's flags; and the name its spans should carry.
fn engine_kind(argv: &[String]) -> (bool, String) {
    let program = basename(&argv[0]);
    let module = argv
        .iter()
        .position(|a| a == "-m")
        .and_then(|i| argv.get(i + 1));
    // `python vllm_cli.py serve …`: a script of vLLM's own, run by an interpreter.
    let script = argv
        .get(1)
        .map(|a| basename(a))
        .is_some_and(|s| s.starts_with("vllm") && s.ends_with(".py"));
    if program == "vllm" || script || module.is_some_and(|m| m == "vllm" || m.starts_with("vllm."))
    {
        return (true, "vllm".to_owned());
    }
    if program == "inferscope" && argv.get(1).is_some_and(|a| a == "sim") {
        return (true, "inferscope-sim".to_owned());
    }
    let name = module.map_or(program, |m| m.split('.').next().unwrap_or(m));
    (false, name.to_owned())
}

/// Works out how to run `command`: the engine moves to `private_port` on loopback (its
/// `--host`/`--port` rewritten or added) unless `engine_port` says where it listens as it is.
pub(crate) fn plan(
    command: &[String],
    engine_port: Option<u16>,
    private_port: u16,
) -> anyhow::Result<Plan> {
    let Some(program) = command.first() else {
        bail!("no command after `--`");
    };
    if program.is_empty() {
        bail!("the command after `--` is empty");
    }
    let (vllm_like, service_name) = engine_kind(command);
    let mut argv = command.to_vec();
    let own_endpoint = find_flag(&argv, "--otlp-traces-endpoint").map(|(_, _, v)| v);
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    if let Some(port) = engine_port {
        return Ok(Plan {
            argv,
            engine: SocketAddr::new(loopback, port),
            listen: None,
            vllm_like,
            own_endpoint,
            service_name,
            grpc_to_ingest: false,
        });
    }
    let port = find_flag(&argv, "--port");
    if port.is_none() && !vllm_like {
        bail!(
            "cannot tell which port `{}` listens on: it has no --port flag. Give --engine-port PORT (and --listen ADDR for the gateway)",
            basename(program)
        );
    }
    let port = match port {
        Some((_, _, p)) => p
            .parse::<u16>()
            .map_err(|_| anyhow::anyhow!("the command's --port `{p}` is not a port"))?,
        None => VLLM_PORT,
    };
    let host = match find_flag(&argv, "--host") {
        Some((_, _, h)) if h.is_empty() => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some((_, _, h)) if h == "localhost" => loopback,
        Some((_, _, h)) => h.parse::<IpAddr>().map_err(|_| {
            anyhow::anyhow!("the command's --host `{h}` is not an IP address; give --listen ADDR")
        })?,
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    set_flag(&mut argv, "--host", "127.0.0.1");
    set_flag(&mut argv, "--port", &private_port.to_string());
    Ok(Plan {
        argv,
        engine: SocketAddr::new(loopback, private_port),
        listen: Some(SocketAddr::new(host, port)),
        vllm_like,
        own_endpoint,
        service_name,
        grpc_to_ingest: false,
    })
}

/// A loopback port free a moment ago (the engine binds it shortly after).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("finding a free loopback port for the engine")?;
    Ok(l.local_addr()?.port())
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let mut plan = plan(&args.command, args.engine_port, free_port()?)?;
    let upstream = format!("http://{}", plan.engine);
    let loaded = crate::serve::load(args.config.as_deref(), &args.settings, |g| {
        if g.upstream.is_some() {
            bail!(
                "`inferscope run` sets the upstream itself (the engine it starts); drop --upstream"
            );
        }
        g.upstream = Some(upstream.clone());
        if let (None, Some(listen)) = (&g.listen, plan.listen) {
            g.listen = Some(listen.to_string());
        }
        if g.listen.is_none() && args.engine_port.is_some() {
            bail!("with --engine-port, say where the gateway listens: --listen ADDR");
        }
        // Ports of their own, so two `inferscope run` on one host do not clash.
        g.otlp_ingest_grpc
            .get_or_insert_with(|| "127.0.0.1:0".to_owned());
        g.otlp_ingest_http.get_or_insert_with(|| "off".to_owned());
        Ok(())
    })?;
    let listen = loaded.gateway.listen;
    let destinations = loaded.exporter.destinations();
    let (gateway, tracing) = crate::serve::start(loaded).await?;

    let ingest = gateway.ingest_grpc_addr();
    if plan.vllm_like {
        match (&plan.own_endpoint, ingest) {
            (Some(own), _) => tracing::info!(
                endpoint = %own,
                "the engine's own --otlp-traces-endpoint is kept: its spans do not go through the gateway's ingest"
            ),
            (None, Some(addr)) => {
                set_flag(
                    &mut plan.argv,
                    "--otlp-traces-endpoint",
                    &format!("http://{addr}"),
                );
                // The ingest it points at takes gRPC: an OTLP/HTTP protocol meant for the
                // gateway's own export must not reach the engine.
                plan.grpc_to_ingest = true;
            }
            (None, None) => tracing::info!(
                "the gateway's OTLP/gRPC ingest is off: the engine's spans are not joined"
            ),
        }
    }
    let mut child = match spawn(&plan) {
        Ok(c) => c,
        Err(e) => {
            crate::serve::stop(gateway, tracing).await;
            return Err(e);
        }
    };
    let pid = child.id().and_then(|p| Pid::from_raw(p as i32));
    tracing::info!(
        command = %plan.argv.join(" "),
        engine = %plan.engine,
        pid = child.id().unwrap_or(0),
        "engine started"
    );

    let health = format!("http://{}{}", plan.engine, args.health_path);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut ready = false;
    let mut signals = Signals::new()?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let started = tokio::time::Instant::now();
    let mut next_note = Duration::from_secs(30);
    let mut stopping = false;
    // The status of the health path's last answer that was not 200.
    let mut last_status: Option<u16> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for the engine")?,
            sig = signals.recv() => {
                if stopping {
                    tracing::warn!("second signal: killing the engine's process group");
                    if let Some(pid) = pid {
                        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
                    }
                } else {
                    stopping = true;
                    tracing::info!(signal = if sig == Signal::INT { "SIGINT" } else { "SIGTERM" }, "passing the signal to the engine; it drains, then the gateway does");
                    if let Some(pid) = pid {
                        let _ = rustix::process::kill_process(pid, sig);
                    }
                }
            }
            _ = tick.tick(), if !ready && !stopping => {
                match health_status(&client, &health).await {
                    Some(200..=299) => {
                        ready = true;
                        announce(listen, &plan, &destinations, ingest);
                    }
                    Some(code) => last_status = Some(code),
                    None => {}
                }
                if !ready && started.elapsed() >= next_note {
                    next_note += Duration::from_secs(30);
                    match last_status {
                        Some(code) => tracing::warn!(waited_s = started.elapsed().as_secs(), health = %health, status = code, "the engine answers its health path, but not with 200; if it is ready, give --health-path"),
                        None => tracing::info!(waited_s = started.elapsed().as_secs(), health = %health, "waiting for the engine to answer"),
                    }
                }
                // Often at first (engines that start fast), then once a second.
                if started.elapsed() > Duration::from_secs(5) && tick.period() < Duration::from_secs(1) {
                    tick = tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
                }
            }
        }
    };
    let code = exit_code(status);
    if stopping {
        tracing::info!(code, "the engine stopped; stopping the gateway");
    } else {
        tracing::warn!(code, "the engine exited on its own; stopping the gateway");
    }
    crate::serve::stop(gateway, tracing).await;
    Ok(code)
}

/// Starts the engine in its own process group (the terminal's Ctrl-C reaches only this
/// process, which passes it on once), to be sent SIGTERM if this process dies.
fn spawn(plan: &Plan) -> anyhow::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(&plan.argv[0]);
    cmd.args(&plan.argv[1..]).process_group(0);
    match std::env::var("OTEL_SERVICE_NAME") {
        Err(_) => {
            cmd.env("OTEL_SERVICE_NAME", &plan.service_name);
        }
        Ok(name) => tracing::info!(
            service_name = %name,
            "OTEL_SERVICE_NAME is set: the engine's spans carry it too (unset it to name them `{}`)",
            plan.service_name
        ),
    }
    if plan.grpc_to_ingest {
        cmd.env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc");
    }
    let parent = rustix::process::getpid();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec; it makes two system calls
    // (async-signal-safe) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::TERM))?;
            // The parent may have died before the line above: then nobody would tell us.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(libc_esrch()));
            }
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("starting `{}`", plan.argv[0]))
}

/// ESRCH: "no such process" (the parent is gone).
fn libc_esrch() -> i32 {
    rustix::io::Errno::SRCH.raw_os_error()
}

/// The status the engine's health path answers with, `None` when nothing answers.
async fn health_status(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Empty<bytes::Bytes>,
    >,
    url: &str,
) -> Option<u16> {
    let uri = url.parse::<http::Uri>().ok()?;
    match tokio::time::timeout(Duration::from_secs(2), client.get(uri)).await {
        Ok(Ok(r)) => Some(r.status().as_u16()),
        _ => None,
    }
}

/// The one line that says where to send requests and where spans go.
fn announce(listen: SocketAddr, plan: &Plan, destinations: &str, ingest: Option<SocketAddr>) {
    let shown = if listen.ip().is_unspecified() {
        format!("http://127.0.0.1:{} (listening on {listen})", listen.port())
    } else {
        format!("http://{listen}")
    };
    let engine_spans = match (&plan.own_endpoint, ingest, plan.vllm_like) {
        (Some(own), _, _) => format!("; the engine's spans go to {own}"),
        (None, Some(addr), true) => {
            format!("; the engine's spans come in at {addr} and join the gateway's")
        }
        _ => String::new(),
    };
    #[allow(clippy::print_stderr, reason = "the one line a user waits for")]
    {
        eprintln!(
            "inferscope: ready. Send requests to {shown}; the engine ({}) serves on {}. Spans go to {destinations}{engine_spans}.",
            plan.service_name, plan.engine
        );
    }
}

/// The engine's exit status as a process exit code (128 + the signal when it was killed).
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// SIGINT and SIGTERM, as the signal to pass on.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::INT,
            _ = self.term.recv() => Signal::TERM,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn vllm_serve_moves_to_the_private_port_and_the_gateway_takes_its_address() {
        let p = plan(
            &argv("vllm serve facebook/opt-125m --port 8001"),
            None,
            41000,
        )
        .unwrap();
        assert_eq!(
            p.argv,
            argv("vllm serve facebook/opt-125m --port 41000 --host 127.0.0.1")
        );
        assert_eq!(p.listen, Some("0.0.0.0:8001".parse().unwrap()));
        assert_eq!(p.engine, "127.0.0.1:41000".parse().unwrap());
        assert!(p.vllm_like);
        assert_eq!(p.service_name, "vllm");

        // vLLM's defaults: every interface, port 8000.
        let p = plan(&argv("vllm serve m"), None, 41000).unwrap();
        assert_eq!(p.listen, Some("0.0.0.0:8000".parse().unwrap()));
        assert_eq!(p.argv, argv("vllm serve m --host 127.0.0.1 --port 41000"));

        let p = plan(
            &argv("/usr/bin/python3 -m vllm.entrypoints.openai.api_server --model m --host=10.0.0.5 --port=9000 --otlp-traces-endpoint http://collector:4317"),
            None,
            41000,
        )
        .unwrap();
        assert!(p.vllm_like);
        assert_eq!(p.listen, Some("10.0.0.5:9000".parse().unwrap()));
        assert!(p.argv.contains(&"--host=127.0.0.1".to_owned()));
        assert!(p.argv.contains(&"--port=41000".to_owned()));
        assert_eq!(p.own_endpoint.as_deref(), Some("http://collector:4317"));
    }

    #[test]
    fn other_engines_need_a_port_flag_or_engine_port() {
        let e = plan(&argv("llama-server -m model.gguf"), None, 41000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--engine-port"), "{e}");
        let p = plan(&argv("llama-server -m model.gguf"), Some(8080), 41000).unwrap();
        assert_eq!(p.argv, argv("llama-server -m model.gguf"));
        assert_eq!(p.engine, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(p.listen, None);
        assert!(!p.vllm_like);
        let p = plan(
            &argv("python -m sglang.launch_server --port 30000"),
            None,
            41000,
        )
        .unwrap();
        assert_eq!(p.service_name, "sglang");
        assert!(!p.vllm_like);
        assert_eq!(p.listen, Some("0.0.0.0:30000".parse().unwrap()));
        let p = plan(
            &argv("/venv/bin/python /opt/vllm_cli.py serve m"),
            None,
            41000,
        )
        .unwrap();
        assert!(p.vllm_like);
        assert_eq!(p.listen, Some("0.0.0.0:8000".parse().unwrap()));
        let p = plan(&argv("inferscope sim --port 8123"), None, 41000).unwrap();
        assert!(p.vllm_like);
        let e = plan(&argv("vllm serve m --port eighty"), None, 1).unwrap_err();
        assert!(e.to_string().contains("not a port"), "{e}");
        let e = plan(&argv("vllm serve m --host my-host"), None, 1).unwrap_err();
        assert!(e.to_string().contains("--listen"), "{e}");
    }
}
