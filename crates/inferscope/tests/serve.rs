//! `inferscope serve` as an operator runs it: the built binary in front of a simulator,
//! configuration layers and errors, `--print-config` without secrets, SIGTERM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use inferscope_testkit::paths::free_port;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A simulator with its defaults on a free port.
fn start_sim(rt: &tokio::runtime::Runtime) -> inferscope_sim::Sim {
    rt.block_on(inferscope_sim::Sim::start(inferscope_sim::SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    }))
    .unwrap()
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_inferscope"));
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") || k.starts_with("INFERSCOPE_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn print_config_shows_origins_and_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.toml");
    std::fs::write(&file, "[gateway]\nprovider = \"from-file\"\nupstream = \"http://file:1\"\n[exporter]\nheaders = { \"x-api-key\" = \"file-secret\" }\n").unwrap();
    let out = bin()
        .args(["serve", "--print-config", "--config"])
        .arg(&file)
        .args(["--upstream", "http://flag:2", "--dialect", "openinference"])
        .env("INFERSCOPE_LISTEN", "127.0.0.1:7777")
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20env-secret",
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("http://flag:2") && stdout.contains("# setting `upstream`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("127.0.0.1:7777") && stdout.contains("# INFERSCOPE_LISTEN"),
        "{stdout}"
    );
    assert!(
        stdout.contains("from-file") && stdout.contains("# config file `provider`"),
        "{stdout}"
    );
    assert!(stdout.contains("otel,openinference"), "{stdout}");
    assert!(
        !stdout.contains("env-secret") && !stdout.contains("file-secret"),
        "a secret was printed:\n{stdout}"
    );
}

#[test]
fn every_configuration_error_is_reported_at_once() {
    let out = bin()
        .args(["serve", "--upstream", "ftp://nope", "--dialect", "klingon"])
        .env("INFERSCOPE_IDLE_TIMEOUT_MS", "soon")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
        .env("OTEL_EXPORTER_OTLP_HEADERS", "authorization=hunter2,broken")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "ftp://nope",
        "klingon",
        "INFERSCOPE_IDLE_TIMEOUT_MS",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_HEADERS",
    ] {
        assert!(stderr.contains(needle), "missing {needle}:\n{stderr}");
    }
    assert!(
        !stderr.contains("hunter2"),
        "a secret reached the error:\n{stderr}"
    );
}

#[test]
fn a_configuration_error_is_a_short_message_even_with_rust_backtrace_set() {
    let out = bin()
        .args(["serve", "--upstream", "not-a-url"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: invalid configuration"),
        "{stderr}"
    );
    assert!(stderr.contains("`upstream`=\"not-a-url\""), "{stderr}");
    assert!(!stderr.contains("\\\""), "quoted twice:\n{stderr}");
    assert!(!stderr.contains("tracing"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
    assert!(stderr.lines().count() <= 4, "{stderr}");
    // --help shows each default, and nothing is required.
    let help = bin().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Usage: inferscope serve [OPTIONS]"), "{help}");
    assert!(help.contains("[default: http://127.0.0.1:8000"), "{help}");
}

#[test]
fn a_port_in_use_names_the_listener_and_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for (flag, name) in [
        ("--admin", "admin (/metrics, /healthz, /readyz) listener"),
        ("--otlp-ingest-grpc", "OTLP/gRPC ingest listener"),
    ] {
        let mut cmd = bin();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--exporter", "none"])
            .args(["--otlp-ingest-http", "off"]);
        for other in ["--admin", "--otlp-ingest-grpc"] {
            let addr = if other == flag {
                format!("127.0.0.1:{port}")
            } else {
                "127.0.0.1:0".to_owned()
            };
            cmd.args([other, &addr]);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(name), "{stderr}");
        assert!(stderr.contains(&format!("set it with {flag}")), "{stderr}");
        assert!(stderr.contains("another gateway"), "{stderr}");
    }
}

#[test]
fn spans_that_could_not_be_exported_are_reported_at_stop() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(&rt);
    let port = free_port();
    let dead = free_port();
    let mut child = bin()
        .args(["serve", "--upstream", &sim.url()])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--admin", "off"])
        .args(["--otlp-ingest-grpc", "off", "--otlp-ingest-http", "off"])
        .args(["--otlp-protocol", "http/protobuf"])
        // No path: the gateway adds /v1/traces (and says where spans go).
        .args(["--otlp-endpoint", &format!("http://127.0.0.1:{dead}")])
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "300")
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stream = connect_when_listening(port);
    write!(
        stream,
        "GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    std::thread::park_timeout(Duration::from_millis(500));
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let (code, stderr) = wait_exit(&mut child);
    assert!(code.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "spans_to=OTLP (http/protobuf) to http://127.0.0.1:{dead}/v1/traces"
        )),
        "{stderr}"
    );
    let last = stderr
        .lines()
        .rev()
        .find(|l| l.contains("stopped"))
        .unwrap_or("");
    assert!(
        last.contains("WARN") && last.contains("some spans were not exported"),
        "{stderr}"
    );
    assert!(!last.contains("0 failed"), "{last}");
    rt.block_on(sim.shutdown());
}

#[test]
fn serves_then_drains_and_exits_zero_on_sigterm() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(&rt);
    let dir = tempfile::tempdir().unwrap();
    let spans = dir.path().join("spans.jsonl");
    let port = free_port();
    let mut child = bin()
        .args([
            "serve",
            "--upstream",
            &sim.url(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin",
            "off",
            "--exporter",
            "none",
        ])
        .arg("--spans-file")
        .arg(&spans)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stream = connect_when_listening(port);
    let body = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true}"#;
    write!(stream, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.contains("[DONE]"),
        "{reply}"
    );
    assert!(reply.contains("traceresponse: 00-"), "{reply}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, stderr) = wait_exit(&mut child);
    assert!(code.success(), "exit {code:?}\n{stderr}");
    // Logs say where spans go, in plain values: no Rust debug forms, no colour codes.
    assert!(stderr.contains("spans_to=the file"), "{stderr}");
    assert!(stderr.contains("admin=off"), "{stderr}");
    for bad in ["Some(", "None", "\u{1b}["] {
        assert!(!stderr.contains(bad), "{bad:?} in logs:\n{stderr}");
    }
    let written = std::fs::read_to_string(&spans).unwrap();
    assert!(
        written.contains("chat tiny-llama") && written.contains("POST /v1/chat/completions"),
        "spans not flushed:\n{written}\n{stderr}"
    );
    assert!(
        written.contains("inferscope-gateway"),
        "default service name"
    );
    rt.block_on(sim.shutdown());
}

/// A connection to 127.0.0.1:`port` once the gateway listens there (within 20 s).
fn connect_when_listening(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => {
                std::thread::park_timeout(Duration::from_millis(50))
            }
            Err(e) => panic!("the gateway never listened on {port}: {e}"),
        }
    }
}

/// Waits for the child to exit (at most 30 s) and returns its status and standard error.
fn wait_exit(child: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::park_timeout(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (code, stderr)
}

/// Every span in an OTLP-JSON lines file.
fn spans_in(file: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for rs in v["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                out.extend(ss["spans"].as_array().into_iter().flatten().cloned());
            }
        }
    }
    out
}

fn attr_of(span: &serde_json::Value, key: &str) -> Option<String> {
    span["attributes"].as_array()?.iter().find_map(|kv| {
        (kv["key"] == key).then(|| {
            let v = &kv["value"];
            v["stringValue"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| v["intValue"].as_str().map(str::to_owned))
                .unwrap_or_else(|| v.to_string())
        })
    })
}

/// Streams still running when the shutdown grace period ends are cut, and still every one of
/// them has its two spans exported, marked as cut by the shutdown; the last log line counts
/// them truthfully.
#[test]
fn requests_cut_by_the_shutdown_keep_their_spans() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut config = inferscope_sim::SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    // 400 tokens at 25 ms a step: each stream would run for 10 s.
    config.engine.step_base_ms = 25.0;
    let sim = rt.block_on(inferscope_sim::Sim::start(config)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spans = dir.path().join("spans.jsonl");
    let port = free_port();
    let mut child = bin()
        .args([
            "serve",
            "--upstream",
            &sim.url(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin",
            "off",
            "--otlp-ingest-grpc",
            "off",
            "--otlp-ingest-http",
            "off",
            "--exporter",
            "none",
            "--shutdown-grace-ms",
            "1000",
            "--log",
            "info",
        ])
        .arg("--spans-file")
        .arg(&spans)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(connect_when_listening(port));
    const STREAMS: usize = 20;
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let clients: Vec<_> = (0..STREAMS)
        .map(|_| {
            let started = started_tx.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let body = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":400,"ignore_eos":true,"stream":true}"#;
                write!(s, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()).unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let mut told = false;
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    got.extend_from_slice(&buf[..n]);
                    if !told && got.windows(6).any(|w| w == b"data: ") {
                        told = true;
                        started.send(()).unwrap();
                    }
                }
                String::from_utf8_lossy(&got).into_owned()
            })
        })
        .collect();
    for _ in 0..STREAMS {
        started_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    }
    let signalled = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let (code, stderr) = wait_exit(&mut child);
    assert!(code.success(), "exit {code:?}\n{stderr}");
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "the grace period was not kept: {:?}",
        signalled.elapsed()
    );
    for c in clients {
        let reply = c.join().unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 200") && !reply.contains("[DONE]"),
            "{reply}"
        );
    }
    let all = spans_in(&spans);
    assert_eq!(all.len(), 2 * STREAMS, "{stderr}");
    let cut: Vec<_> = all
        .iter()
        .filter(|s| attr_of(s, "error.type").as_deref() == Some("gateway_shutdown"))
        .collect();
    assert_eq!(cut.len(), 2 * STREAMS, "{all:?}");
    let last = stderr
        .lines()
        .rfind(|l| l.contains("stopped"))
        .unwrap_or_default();
    assert!(
        last.contains("clean=false")
            && last.contains(&format!("spans_ended={}", 2 * STREAMS))
            && last.contains("spans_dropped_queue_full=0")
            && last.contains(&format!("file: {} exported, 0 failed", 2 * STREAMS)),
        "{last}\n{stderr}"
    );
    assert!(
        !stderr.contains("span dropped"),
        "a span was dropped:\n{stderr}"
    );
    rt.block_on(sim.shutdown());
}

/// Starts `inferscope serve` in front of `upstream` with at most `nofile` open files (soft and
/// hard, as `ulimit -n` sets them) and `extra` flags; returns the child, its proxy and admin
/// ports.
fn serve_with_file_limit(
    upstream: &str,
    nofile: u32,
    extra: &[&str],
) -> (std::process::Child, u16, u16) {
    let (port, admin) = (free_port(), free_port());
    let mut c = Command::new("bash");
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") || k.starts_with("INFERSCOPE_") {
            c.env_remove(k);
        }
    }
    let child = c
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_inferscope"))
        .args([
            "serve",
            "--upstream",
            upstream,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--otlp-ingest-grpc",
            "off",
            "--otlp-ingest-http",
            "off",
            "--exporter",
            "none",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(connect_when_listening(admin));
    (child, port, admin)
}

/// One HTTP/1.1 request on a new connection; the status, or `None` when the connection
/// failed or closed without an answer.
fn status_of(port: u16, request: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.get(9..12)?.parse().ok()
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
const MODELS: &str = "GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

/// CPU seconds the process has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Connections that send nothing are closed at the header timeout, and 300 of them against
/// 256 open files starve nothing: past the connection cap new ones are closed at once (one
/// throttled log line), the admin endpoint answers throughout, and the proxy serves again as
/// soon as they are gone.
#[test]
fn silent_connections_are_closed_and_cannot_starve_the_gateway() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(&rt);
    let (mut child, port, admin) = serve_with_file_limit(
        &sim.url(),
        256,
        &["--log", "info", "--header-timeout-ms", "1000"],
    );
    assert_eq!(status_of(port, MODELS), Some(200));
    let opened = Instant::now();
    let mut silent: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for _ in 0..5 {
        assert_eq!(status_of(admin, HEALTHZ), Some(200), "admin starved");
        std::thread::park_timeout(Duration::from_millis(100));
    }
    // Every silent connection is closed by the gateway: at once past the cap, the others at
    // the header timeout (one to two periods).
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 16];
        assert!(
            matches!(s.read(&mut b), Ok(0) | Err(_)),
            "a silent connection was kept open"
        );
    }
    let closed_after = opened.elapsed();
    assert!(closed_after < Duration::from_secs(4), "{closed_after:?}");
    assert_eq!(
        status_of(port, MODELS),
        Some(200),
        "the proxy did not recover"
    );
    drop(silent);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let (code, stderr) = wait_exit(&mut child);
    assert!(code.success(), "{stderr}");
    let limit_lines = stderr
        .lines()
        .filter(|l| l.contains("connection limit reached"))
        .count();
    assert_eq!(limit_lines, 1, "{stderr}");
    assert!(!stderr.contains("accept failed"), "{stderr}");
    rt.block_on(sim.shutdown());
}

/// With the cap set above the open-file limit, accepting fails with "too many open files":
/// the loop backs off instead of spinning a core, logs it once, and serves again once the
/// silent connections have been closed.
#[test]
fn running_out_of_file_descriptors_does_not_spin() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(&rt);
    let (mut child, port, _admin) = serve_with_file_limit(
        &sim.url(),
        256,
        &[
            "--max-connections",
            "10000",
            "--log",
            "info",
            "--header-timeout-ms",
            "3000",
        ],
    );
    // Connect until the gateway holds every descriptor it may have.
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", child.id())).map_or(0, Iterator::count);
    let mut silent = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while fds() < 256 {
        assert!(Instant::now() < deadline, "only {} descriptors open", fds());
        for _ in 0..20 {
            silent.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
        }
        std::thread::park_timeout(Duration::from_millis(5));
    }
    // More wait in the listen queue; accepting them fails for the next seconds.
    for _ in 0..50 {
        silent.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    let before = cpu_seconds(child.id());
    std::thread::park_timeout(Duration::from_millis(1000));
    let used = cpu_seconds(child.id()) - before;
    assert!(
        used < 0.3,
        "{used} CPU seconds in 1 s: the accept loop spins"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of(port, MODELS) != Some(200) {
        assert!(Instant::now() < deadline, "the proxy did not recover");
        std::thread::park_timeout(Duration::from_millis(100));
    }
    drop(silent);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let (code, stderr) = wait_exit(&mut child);
    assert!(code.success(), "{stderr}");
    let accept_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("accept failed"))
        .collect();
    assert!(
        (1..=2).contains(&accept_lines.len()) && accept_lines[0].contains("Too many open files"),
        "{stderr}"
    );
    rt.block_on(sim.shutdown());
}

/// A password in the upstream URL never reaches the start-up error (from a flag or the
/// environment), and an endpoint or upstream whose port is not a number is refused at start
/// instead of failing later.
#[test]
fn start_up_errors_hide_passwords_and_refuse_bad_ports() {
    let out = bin()
        .args([
            "serve",
            "--upstream",
            "http://bob:hunter2@127.0.0.1:8000",
            "--otlp-endpoint",
            "http://127.0.0.1:notaport",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(
        stderr.contains("upstream") && stderr.contains("<redacted>@127.0.0.1:8000"),
        "{stderr}"
    );
    assert!(
        stderr.contains("endpoint") && stderr.contains("the port is not a number"),
        "{stderr}"
    );
    // A password holding a `/` ends the URL's authority early; it is still hidden.
    let out = bin()
        .args([
            "serve",
            "--upstream",
            "http://bob:ab/cd@127.0.0.1:8000",
            "--otlp-endpoint",
            "https://user:xy/zw@collector:4318",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for secret in ["ab/cd", "xy/zw", "bob:", "user:"] {
        assert!(!stderr.contains(secret), "{secret}:\n{stderr}");
    }
    let out = bin()
        .args(["serve"])
        .env("INFERSCOPE_UPSTREAM", "http://alice:s3cr3t@127.0.0.1:x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
    assert!(stderr.contains("INFERSCOPE_UPSTREAM"), "{stderr}");
}

/// A configuration file's problems are reported with every other error at once, each naming
/// the file and the line: an unknown table does not hide an unknown key, a wrong type, a bad
/// address, or bad environment variables.
#[test]
fn every_configuration_error_at_once_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[gateway]\nlisten = \"0.0.0.0:notaport\"\nbogus = 1\nconnect_timeout_ms = \"soon\"\n\n[nope]\nx = 1\n",
    )
    .unwrap();
    for command in ["serve", "sim"] {
        let mut c = bin();
        c.arg(command)
            .arg("--config")
            .arg(&path)
            .env("RUST_BACKTRACE", "0");
        if command == "serve" {
            c.env("INFERSCOPE_INJECT_USAGE", "perhaps")
                .env("OTEL_SDK_DISABLED", "maybe");
        }
        let out = c.output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        let file = path.display().to_string();
        if command == "serve" {
            assert!(err.contains("6 errors"), "{err}");
            for (needle, line) in [
                ("`nope`", 6),
                ("bogus", 3),
                ("`connect_timeout_ms`=\"soon\"", 4),
                ("`listen`=\"0.0.0.0:notaport\"", 2),
            ] {
                let found = err
                    .lines()
                    .find(|l| l.contains(needle))
                    .unwrap_or_else(|| panic!("{needle} missing:\n{err}"));
                assert!(found.contains(&format!("{file}, line {line}")), "{found}");
            }
            assert!(err.contains("INFERSCOPE_INJECT_USAGE=\"perhaps\""), "{err}");
            assert!(err.contains("OTEL_SDK_DISABLED=\"maybe\""), "{err}");
        } else {
            // The simulator's file has top-level keys and [engine]: every table here is unknown.
            assert!(err.contains("`gateway`") && err.contains("`nope`"), "{err}");
        }
    }
}

/// A real OTLP receiver from PyPI (`oteltest`'s sink) printing each export as a JSON line.
struct OtelSink {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl OtelSink {
    fn start(flag: &str, port: u16) -> OtelSink {
        let script = inferscope_testkit::paths::workspace()
            .join("crates/export/tests/python/oteltest_sink.py");
        let mut child = Command::new(inferscope_testkit::paths::python())
            .arg(script)
            .args([flag, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0 {
            if line.contains("READY") {
                break;
            }
            line.clear();
        }
        assert!(line.contains("READY"), "the oteltest sink did not start");
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufRead::lines(out).map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        OtelSink { child, lines }
    }

    /// The next metrics export within `wait`.
    fn metrics(&self, wait: Duration) -> Option<serde_json::Value> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let v = self.lines.recv_timeout(left).ok()?;
            if v["signal"] == "metrics" {
                return Some(v);
            }
        }
    }
}

impl Drop for OtelSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The data points of metric `name` in a metrics export (protobuf JSON).
fn points<'a>(export: &'a serde_json::Value, name: &str) -> Vec<&'a serde_json::Value> {
    let mut out = Vec::new();
    for rm in export["request"]["resourceMetrics"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
            for m in sm["metrics"].as_array().into_iter().flatten() {
                if m["name"] == name {
                    for kind in ["histogram", "sum", "gauge"] {
                        out.extend(m[kind]["dataPoints"].as_array().into_iter().flatten());
                    }
                }
            }
        }
    }
    out
}

fn point_attr(point: &serde_json::Value, key: &str) -> Option<serde_json::Value> {
    point["attributes"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| kv["value"].clone())
}

fn post_chat(port: u16, body: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

/// `OTEL_METRICS_EXPORTER=otlp` pushes the gateway's metrics, with the conventions' names,
/// to a real receiver over gRPC and over HTTP, every interval and once more at shutdown.
#[test]
fn metrics_are_pushed_over_otlp_to_a_real_receiver() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(&rt);
    for (flag, protocol, path) in [
        ("--grpc", "grpc", ""),
        ("--http", "http/protobuf", "/v1/metrics"),
    ] {
        let sink_port = free_port();
        let sink = OtelSink::start(flag, sink_port);
        let port = free_port();
        // Spans are exported (to a file), so requests are sampled and carry exemplars.
        let dir = tempfile::tempdir().unwrap();
        let mut child = bin()
            .args(["serve", "--upstream", &sim.url(), "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--admin", "off", "--exporter", "none"])
            .args(["--otlp-ingest-grpc", "off", "--otlp-ingest-http", "off"])
            .arg("--spans-file")
            .arg(dir.path().join("spans.jsonl"))
            .env("OTEL_METRICS_EXPORTER", "otlp")
            .env("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", protocol)
            .env(
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                format!("http://127.0.0.1:{sink_port}{path}"),
            )
            .env(
                "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
                "x-api-key=push-secret",
            )
            .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
            .env("OTEL_SERVICE_NAME", "gw-under-test")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the gateway never listened");
            std::thread::park_timeout(Duration::from_millis(50));
        }
        let stream = r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"ignore_eos":true,"stream":true}"#;
        for _ in 0..2 {
            assert!(post_chat(port, stream).contains("[DONE]"));
        }
        // A push after the requests has them all.
        let mut export = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let e = sink
                .metrics(Duration::from_secs(5))
                .expect("no metrics push");
            let counts: u64 = points(&e, "gen_ai.client.operation.duration")
                .iter()
                .map(|p| p["count"].as_str().unwrap_or("0").parse::<u64>().unwrap())
                .sum();
            if counts == 2 {
                export = Some(e);
                break;
            }
        }
        let export = export.expect("no push counted both requests");
        assert_eq!(export["headers"]["x-api-key"], "push-secret", "{protocol}");
        let resource = &export["request"]["resourceMetrics"][0]["resource"]["attributes"];
        assert!(resource.to_string().contains("gw-under-test"), "{resource}");
        let d = points(&export, "gen_ai.client.operation.duration");
        assert_eq!(
            point_attr(d[0], "gen_ai.request.model").unwrap()["stringValue"],
            "tiny-llama"
        );
        assert_eq!(
            point_attr(d[0], "gen_ai.operation.name").unwrap()["stringValue"],
            "chat"
        );
        let buckets: u64 = d[0]["bucketCounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_str().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(buckets, 2);
        assert_eq!(
            d[0]["exemplars"][0]["traceId"].as_str().map(str::len),
            Some(24),
            "a 16-byte trace id (base64) on the exemplar: {}",
            d[0]
        );
        let gaps: u64 = points(&export, "gen_ai.client.operation.time_per_output_chunk")
            .iter()
            .map(|p| p["count"].as_str().unwrap().parse::<u64>().unwrap())
            .sum();
        assert!(gaps >= 2 * 4, "one gap per chunk after the first: {gaps}");
        let requests = points(&export, "inferscope.requests");
        assert_eq!(requests[0]["asInt"], "2", "{}", requests[0]);
        assert_eq!(
            point_attr(requests[0], "http.response.status_code").unwrap()["intValue"],
            "200"
        );
        // One more request, then SIGTERM: the last push has it.
        assert!(post_chat(port, stream).contains("[DONE]"));
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let (code, stderr) = wait_exit(&mut child);
        assert!(code.success(), "{stderr}");
        assert!(!stderr.contains("push-secret"), "{stderr}");
        let mut last = None;
        while let Some(e) = sink.metrics(Duration::from_secs(2)) {
            last = Some(e);
        }
        let last = last.expect("no push at shutdown");
        let counts: u64 = points(&last, "gen_ai.client.operation.duration")
            .iter()
            .map(|p| p["count"].as_str().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(counts, 3, "{protocol}: the last push has the last request");
    }
    rt.block_on(sim.shutdown());
}
