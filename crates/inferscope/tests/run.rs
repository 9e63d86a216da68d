//! `inferscope run -- COMMAND`: the built binary starting `inferscope sim` (which speaks vLLM's
//! `--host`, `--port` and `--otlp-traces-endpoint`) as its engine. Port rewriting, readiness,
//! signals passed on, exit codes, the engine dying, and the gateway killed with SIGKILL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::disallowed_methods,
    missing_docs
)]

use inferscope_testkit::paths::free_port;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_inferscope");

fn bin() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") || k.starts_with("INFERSCOPE_") {
            c.env_remove(k);
        }
    }
    c
}

/// A running `inferscope run`, its stderr lines arriving on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(args: &[&str], engine: &[&str]) -> Running {
        Running::start_with(args, engine, &[])
    }

    fn start_with(args: &[&str], engine: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = bin()
            .envs(env.iter().copied())
            .arg("run")
            .args(args)
            .arg("--")
            .args(engine)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line containing `needle`, within 30 s.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line with {needle:?}; saw:\n{}", self.seen.join("\n"));
    }

    /// The exit code within 30 s.
    fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                // The rest of its lines, until its stderr closes.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(line);
                }
                return s.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("`inferscope run` did not exit");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` from a log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line.find(&format!("{key}=")).unwrap() + key.len() + 1;
    line[at..].split_whitespace().next().unwrap()
}

fn chat(port: u16) -> String {
    let body =
        r#"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Whether process `pid` is gone (or a zombie no one has reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn the_engine_moves_aside_the_gateway_takes_its_port_and_a_signal_stops_both() {
    let dir = tempfile::tempdir().unwrap();
    let spans = dir.path().join("spans.jsonl");
    let port = free_port();
    // An OTLP/HTTP protocol meant for the gateway's own export must not send the engine's
    // spans to the gRPC ingest in the wrong protocol.
    let mut run = Running::start_with(
        &[
            "--admin",
            "127.0.0.1:0",
            "--exporter",
            "none",
            "--spans-file",
            spans.to_str().unwrap(),
        ],
        &[BIN, "sim", "--port", &port.to_string()],
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
    );
    let started = run.wait_for("engine started");
    // The engine's --port was rewritten to a private one, and the ingest was added.
    let engine: std::net::SocketAddr = field(&started, "engine").parse().unwrap();
    assert_ne!(engine.port(), port);
    assert!(started.contains("--host 127.0.0.1"), "{started}");
    assert!(
        started.contains("--otlp-traces-endpoint http://127.0.0.1:"),
        "{started}"
    );
    let ready = run.wait_for("inferscope: ready");
    assert!(
        ready.contains(&format!("http://127.0.0.1:{port}")),
        "{ready}"
    );
    assert!(ready.contains("the file"), "{ready}");

    // Requests to the engine's own address now go through the gateway.
    let reply = chat(port);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("traceresponse"), "{reply}");

    // SIGINT is passed on: the engine stops, then the gateway, with the engine's status.
    std::thread::sleep(Duration::from_millis(300));
    run.signal("-INT");
    assert_eq!(run.exit_code(), 0, "{}", run.seen.join("\n"));
    assert!(wait_gone(field(&started, "pid").parse().unwrap()));
    // The engine's span came in through the gateway's ingest and nests under its CLIENT span.
    let text = std::fs::read_to_string(&spans).unwrap();
    let spans: Vec<serde_json::Value> = text
        .lines()
        .flat_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let mut out = Vec::new();
            for rs in v["resourceSpans"].as_array().unwrap() {
                for ss in rs["scopeSpans"].as_array().unwrap() {
                    out.extend(ss["spans"].as_array().unwrap().iter().cloned());
                }
            }
            out
        })
        .collect();
    let client = spans
        .iter()
        .find(|s| s["kind"] == 3 || s["kind"] == "SPAN_KIND_CLIENT")
        .unwrap_or_else(|| panic!("{text}"));
    let engine_span = spans
        .iter()
        .find(|s| s["name"] == "llm_request")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(engine_span["parentSpanId"], client["spanId"]);
    assert_eq!(engine_span["traceId"], client["traceId"]);
}

#[test]
fn an_engine_that_dies_stops_the_gateway_with_its_status() {
    let port = free_port();
    let mut run = Running::start(
        &["--admin", "off", "--exporter", "none"],
        &[BIN, "sim", "--port", &port.to_string()],
    );
    let started = run.wait_for("engine started");
    run.wait_for("inferscope: ready");
    let pid = field(&started, "pid");
    assert!(
        Command::new("kill")
            .args(["-KILL", pid])
            .status()
            .unwrap()
            .success()
    );
    // Killed by SIGKILL: 128 + 9.
    assert_eq!(run.exit_code(), 137, "{}", run.seen.join("\n"));
    assert!(run.seen.iter().any(|l| l.contains("exited on its own")));
    // The gateway no longer listens.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

    // An engine that fails at once: its code, and no wait for readiness.
    let mut run = Running::start(
        &[
            "--admin",
            "off",
            "--exporter",
            "none",
            "--listen",
            "127.0.0.1:0",
            "--engine-port",
            "1",
        ],
        &["sh", "-c", "exit 3"],
    );
    assert_eq!(run.exit_code(), 3);
}

#[test]
fn the_engine_is_stopped_when_the_gateway_is_killed() {
    let port = free_port();
    let mut run = Running::start(
        &["--admin", "off", "--exporter", "none"],
        &[BIN, "sim", "--port", &port.to_string()],
    );
    let started = run.wait_for("engine started");
    run.wait_for("inferscope: ready");
    let pid: u32 = field(&started, "pid").parse().unwrap();
    run.signal("-KILL");
    let _ = run.child.wait();
    assert!(wait_gone(pid), "the engine outlived the gateway");
}

#[test]
fn mistakes_are_refused_before_anything_starts() {
    let out = bin()
        .args(["run", "--upstream", "http://127.0.0.1:1", "--", BIN, "sim"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("drop --upstream"), "{err}");
    let out = bin()
        .args(["run", "--", "llama-server", "-m", "x.gguf"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--engine-port"), "{err}");
    let out = bin().args(["run", "--"]).output().unwrap();
    assert!(!out.status.success());
}
