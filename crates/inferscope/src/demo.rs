//! `inferscope demo`: the whole system in one process, no outside services. It starts the
//! simulated vLLM engine and the gateway in front of it, sends a short, varied workload through
//! the gateway (streamed and non-streamed chat, completions, embeddings, a tool call, a failing
//! request, a client that leaves mid-stream), prints every trace as a waterfall, and writes
//! every span as OTLP-JSON lines to a file it names. `OTEL_TRACES_EXPORTER=otlp,console` also
//! sends the spans to an OTLP receiver.
//!
//! The simulator exports its own `llm_request` spans over OTLP to the gateway's ingest listener,
//! as `vllm serve --otlp-traces-endpoint` would, so each trace shows the gateway's spans, vLLM's
//! nested under them, and the engine's phases as child spans.

#![allow(
    clippy::print_stdout,
    reason = "the demo's terminal output is its product"
)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use inferscope_core::span::SpanRecord;
use inferscope_export::{Accepted, ExportError, ExporterSettings, SpanExporter, TracingBuilder};
use inferscope_gateway::Gateway;
use inferscope_gateway::config::GatewayConfig;
use inferscope_sim::{Sim, SimConfig};

/// Options of `inferscope demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Where to write the spans as OTLP-JSON lines (default: a new file in the temp directory).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Keeps a copy of every exported span, to draw the waterfall.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<SpanRecord>>>);

impl SpanExporter for Capture {
    fn name(&self) -> &'static str {
        "demo-capture"
    }
    fn export<'a>(
        &'a self,
        batch: &'a [SpanRecord],
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Accepted, ExportError>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(batch);
        Box::pin(async { Ok(Accepted::default()) })
    }
}

/// One request of the workload.
struct Step {
    what: &'static str,
    path: &'static str,
    body: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// Read this many body chunks, then hang up.
    leave_after: Option<usize>,
}

const WORKLOAD: &[Step] = &[
    Step {
        what: "streamed chat",
        path: "/v1/chat/completions",
        body: r#"{"model":"tiny-llama","messages":[{"role":"user","content":"Explain continuous batching in one line."}],"max_tokens":24,"temperature":0.7,"stream":true}"#,
        headers: &[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
        leave_after: None,
    },
    Step {
        what: "chat",
        path: "/v1/chat/completions",
        body: r#"{"model":"tiny-llama","messages":[{"role":"user","content":"Name a prime."}],"max_tokens":8,"seed":7}"#,
        headers: &[],
        leave_after: None,
    },
    Step {
        what: "streamed completion",
        path: "/v1/completions",
        body: r#"{"model":"tiny-llama","prompt":"Once upon a time","max_tokens":16,"stream":true}"#,
        headers: &[],
        leave_after: None,
    },
    Step {
        what: "embeddings",
        path: "/v1/embeddings",
        body: r#"{"model":"tiny-llama","input":["first passage","second passage"]}"#,
        headers: &[],
        leave_after: None,
    },
    Step {
        what: "tool call (streamed)",
        path: "/v1/chat/completions",
        body: r#"{"model":"tiny-llama","messages":[{"role":"user","content":"Weather in Paris?"}],"max_tokens":40,"stream":true,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],"tool_choice":"required"}"#,
        headers: &[],
        leave_after: None,
    },
    Step {
        what: "failing request (unknown model)",
        path: "/v1/chat/completions",
        body: r#"{"model":"gpt-unknown","messages":[{"role":"user","content":"hi"}]}"#,
        headers: &[],
        leave_after: None,
    },
    Step {
        what: "client leaves mid-stream",
        path: "/v1/chat/completions",
        body: r#"{"model":"tiny-llama","messages":[{"role":"user","content":"Tell a long story."}],"max_tokens":200,"ignore_eos":true,"stream":true}"#,
        headers: &[],
        leave_after: Some(6),
    },
];

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let out = args.out.unwrap_or_else(|| {
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        std::env::temp_dir().join(format!(
            "inferscope-demo-{stamp}-{}.jsonl",
            std::process::id()
        ))
    });
    let capture = Capture::default();
    let tracing = TracingBuilder::new("inferscope.gateway")
        // Embedded defaults: the console only. OTEL_TRACES_EXPORTER=otlp,console adds OTLP.
        .with_file_settings(ExporterSettings {
            exporters: Some(vec!["console".into()]),
            service_name: Some("inferscope-demo".into()),
            schedule_delay_ms: Some(100),
            ..ExporterSettings::default()
        })
        .with_settings(ExporterSettings {
            file: Some(out.clone()),
            ..ExporterSettings::default()
        })
        .with_exporter(Box::new(capture.clone()))
        .build()
        .context("starting the trace pipeline")?;

    // The gateway first (its ingest address goes to the simulator), upstream of it a port the
    // simulator then takes.
    let sim_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let gateway_config = GatewayConfig::local(&format!("http://127.0.0.1:{sim_port}"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let gateway = Gateway::start(gateway_config, tracing.tracer(), tracing.stats_handle())
        .await
        .context("starting the gateway")?;
    let ingest = gateway
        .ingest_grpc_addr()
        .context("the gateway's OTLP ingest is off")?;
    let mut sim_config = SimConfig {
        listen: format!("127.0.0.1:{sim_port}").parse()?,
        otlp_traces_endpoint: Some(format!("http://{ingest}")),
        ..SimConfig::default()
    };
    sim_config.engine.step_base_ms = 4.0;
    sim_config.engine.step_per_seq_ms = 0.2;
    let sim = Sim::start(sim_config)
        .await
        .context("starting the simulated engine")?;

    println!(
        "inferscope demo: simulated vLLM at {}, gateway at {}\n",
        sim.url(),
        gateway.url()
    );
    println!(
        "workload (lines starting with a time are the console sink, one per finished request):"
    );
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    for step in WORKLOAD {
        let result = send(&client, &gateway.url(), step).await;
        match result {
            Ok(summary) => println!("  {:<32} {summary}", step.what),
            Err(e) => println!("  {:<32} failed: {e:#}", step.what),
        }
    }
    // Let the abandoned request's abort reach the engine before stopping it.
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The engine exports its last spans as it stops; the gateway takes them in, then stops.
    sim.shutdown().await;
    gateway.shutdown().await;
    // A collector that is down loses its copy; the waterfall and the file still show all.
    let exported = tracing.shutdown(Duration::from_secs(10)).await;

    let spans = capture
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    println!("\nwaterfall (one trace per request):\n");
    print!("{}", crate::waterfall::render(&spans));
    let stats = tracing.stats();
    println!(
        "{} spans written as OTLP-JSON lines to {}",
        spans.len(),
        out.display()
    );
    println!(
        "
How to read it:
  22→24 tokens   input → output tokens of the call (gen_ai.usage.*), as the engine counted them
  ttft           time to first token as the client saw it: request sent → first content chunk
  engine ttft    the same inside vLLM (from its own span); the rest is network and HTTP
  llm_request    vLLM's own span, nested under the gateway's CLIENT span, split into phases

Next:
  inferscope run -- vllm serve MODEL      vLLM traced, no configuration (gateway on vLLM's port)
  inferscope serve --upstream URL         the gateway in front of a server already running
  OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317 sends the spans to your backend (docs/backends.md)"
    );
    if let Err(e) = exported {
        let per_sink: Vec<String> = stats
            .sinks
            .iter()
            .map(|s| format!("{}: {} exported, {} failed", s.name, s.exported, s.failed))
            .collect();
        anyhow::bail!(
            "not every span reached every exporter ({e}; {}); the waterfall above and {} have them all",
            per_sink.join("; "),
            out.display()
        );
    }
    if stats.dropped > 0 {
        anyhow::bail!(
            "{} spans were dropped (the export queue was full)",
            stats.dropped
        );
    }
    Ok(())
}

/// Sends one step; returns a one-line summary of what came back.
async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    base: &str,
    step: &Step,
) -> anyhow::Result<String> {
    let mut req = http::Request::post(format!("{base}{}", step.path))
        .header("content-type", "application/json");
    for (k, v) in step.headers {
        if *k == "traceparent" {
            // A caller's trace, continued: a fresh one each run, so runs sent to a real
            // backend do not pile into one trace.
            let trace = inferscope_core::TraceId::random();
            let parent = inferscope_core::SpanId::random();
            req = req.header(*k, format!("00-{}-{}-01", trace.to_hex(), parent.to_hex()));
        } else {
            req = req.header(*k, *v);
        }
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from_static(step.body.as_bytes())))?)
        .await?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut frames = 0usize;
    let mut bytes = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            frames += 1;
            bytes += data.len();
        }
        if step.leave_after.is_some_and(|n| frames >= n) {
            return Ok(format!("HTTP {status}, hung up after {frames} chunks"));
        }
    }
    Ok(format!("HTTP {status}, {bytes} bytes"))
}
