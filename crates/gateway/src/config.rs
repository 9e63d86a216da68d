//! The gateway's configuration: the `[gateway]` and `[capture]` settings tables (one row per
//! setting: key, flag, environment variable, type, check, default, doc), resolved with flag >
//! environment > file > default into a typed [`GatewayConfig`], every unusable value reported
//! at once. The exporter's own table (`[exporter]` and the `OTEL_*` variables) resolves through
//! `inferscope-export` in the same pass. Rules across settings are the named functions at the
//! end: [`listeners_clash`], [`parse_budget`], [`export_loop`].
//!
//! ```toml
//! [gateway]
//! upstream = "http://127.0.0.1:8000"
//! listen = "0.0.0.0:9000"
//! admin = "127.0.0.1:9464"
//! dialects = ["otel", "openinference"]
//!
//! [capture]
//! enabled = true
//! max_length = 4096
//! redact = ['\b\d{3}-\d{2}-\d{4}\b']
//!
//! [exporter]
//! endpoint = "http://collector:4317"
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderName;
use inferscope_core::observe::capture::{CapturePolicy, Redaction};
use inferscope_export::config::{ExporterSettings, MetricsConfig, MetricsSettings, resolve_with};
use inferscope_export::{ConfigErrors, ExporterConfig};
use inferscope_semconv::dialect::Dialect;
use inferscope_semconv::latest::Conventions;
use inferscope_settings::{
    ConfigError, Env, FileLayer, Flag, Origin, Report, Resolver, Value, check_port, ok, opt,
    redact_userinfo, req, settings,
};

use crate::ingest::IngestConfig;

/// The tables a gateway configuration file may have.
pub const FILE_TABLES: &[&str] = &["gateway", "capture", "exporter", "metrics"];

/// Most connections each of the admin and ingest listeners keeps open.
pub(crate) const SIDE_LISTENER_CONNECTIONS: usize = 64;
/// Open files the process needs besides connections (listeners, the export thread's
/// connections, the span file, the runtime's own).
const OWN_FILES: u64 = 32;

/// Headers that carry credentials: never recorded, even when listed.
pub const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "openai-api-key",
    "x-auth-token",
];

settings! {
    /// Gateway settings as a person writes them (flags, `[gateway]` in a file).
    pub struct GatewaySettings => GatewayValues, table "gateway", rows gateway_rows {
        /// The server to front, `http://host[:port][/base]` or `https://…` (an optional base path is kept).
        upstream: String => Upstream = req(|v: String| parse_upstream(&v)), {
            default: Some("http://127.0.0.1:8000"), flag: Flag::Value("upstream"),
            env: &["INFERSCOPE_UPSTREAM"],
        },
        /// Where the proxy listens (HTTP/1.1 and h2c).
        listen: String => SocketAddr = req(|v: String| socket(&v)), {
            default: Some("0.0.0.0:9000"), flag: Flag::Value("listen"),
            env: &["INFERSCOPE_LISTEN"],
        },
        /// PEM certificate chain: serve the proxy listener over TLS (with `tls_key`; read again on SIGHUP).
        tls_cert: PathBuf => Option<PathBuf> = ok, {
            flag: Flag::Value("tls-cert"), env: &["INFERSCOPE_TLS_CERT"],
        },
        /// PEM private key of `tls_cert`.
        tls_key: PathBuf => Option<PathBuf> = ok, {
            flag: Flag::Value("tls-key"), env: &["INFERSCOPE_TLS_KEY"],
        },
        /// Where `/metrics`, `/healthz` and `/readyz` listen, or `off`.
        admin: String => Option<SocketAddr> = req(|v: String| optional_socket(&v)), {
            default: Some("127.0.0.1:9464"), flag: Flag::Value("admin"),
            env: &["INFERSCOPE_ADMIN"],
        },
        /// Speak HTTP/2 with prior knowledge (h2c) to an `http://` upstream instead of HTTP/1.1 (`https://` upstreams get HTTP/2 when they offer it through ALPN).
        upstream_h2c: bool => bool = req(ok), {
            default: Some("false"), flag: Flag::Switch("upstream-h2c"),
            env: &["INFERSCOPE_UPSTREAM_H2C"],
        },
        /// PEM CA certificate(s) trusted for an `https://` upstream, besides the system's roots.
        upstream_ca_cert: PathBuf => Option<PathBuf> = ok, {
            flag: Flag::Value("upstream-ca-cert"), env: &["INFERSCOPE_UPSTREAM_CA_CERT"],
        },
        /// PEM client certificate chain presented to an `https://` upstream that asks for one (mutual TLS; with `upstream_client_key`).
        upstream_client_cert: PathBuf => Option<PathBuf> = ok, {
            flag: Flag::Value("upstream-client-cert"), env: &["INFERSCOPE_UPSTREAM_CLIENT_CERT"],
        },
        /// PEM private key of `upstream_client_cert`.
        upstream_client_key: PathBuf => Option<PathBuf> = ok, {
            flag: Flag::Value("upstream-client-key"), env: &["INFERSCOPE_UPSTREAM_CLIENT_KEY"],
        },
        /// `gen_ai.provider.name` on inference spans.
        provider: String => String = req(non_empty), {
            default: Some("vllm"), flag: Flag::Value("provider"), env: &["INFERSCOPE_PROVIDER"],
        },
        /// Connecting to the upstream (TCP, and the TLS handshake for `https://`), milliseconds (then 502).
        connect_timeout_ms: u64 => Duration = req(millis), {
            default: Some("5000"), flag: Flag::Value("connect-timeout-ms"),
            env: &["INFERSCOPE_CONNECT_TIMEOUT_MS"],
        },
        /// From sending the request to the upstream's response headers, milliseconds (then 504).
        first_byte_timeout_ms: u64 => Duration = req(millis), {
            default: Some("600000"), flag: Flag::Value("first-byte-timeout-ms"),
            env: &["INFERSCOPE_FIRST_BYTE_TIMEOUT_MS"],
        },
        /// Longest silence inside a response body, milliseconds; 0 for none.
        idle_timeout_ms: u64 => Option<Duration> = req(optional_millis), {
            default: Some("300000"), flag: Flag::Value("idle-timeout-ms"),
            env: &["INFERSCOPE_IDLE_TIMEOUT_MS"],
        },
        /// Longest whole exchange, milliseconds; 0 for none (streams may run as long as they run).
        total_timeout_ms: u64 => Option<Duration> = req(optional_millis), {
            default: Some("0"), flag: Flag::Value("total-timeout-ms"),
            env: &["INFERSCOPE_TOTAL_TIMEOUT_MS"],
        },
        /// Ask the upstream for `stream_options.include_usage` and hide the extra chunk from the client.
        inject_usage: bool => bool = req(ok), {
            default: Some("true"), flag: Flag::Negated("no-inject-usage"),
            env: &["INFERSCOPE_INJECT_USAGE"],
        },
        /// The response header that names the trace; empty for none.
        traceresponse_header: String => Option<HeaderName> = req(|v: String| header_or_none(&v)), {
            default: Some("traceresponse"), flag: Flag::Value("traceresponse-header"),
            env: &["INFERSCOPE_TRACERESPONSE_HEADER"],
        },
        /// Attribute dialects besides `otel` (always on): `vllm`, `openinference`.
        dialects: Vec<String> => Vec<Dialect> = req(dialects), {
            default: Some("otel"), flag: Flag::Repeat("dialect"), env: &["INFERSCOPE_DIALECTS"],
        },
        /// GenAI names: `gen_ai_latest_experimental` for the GenAI repository's newest (`gen_ai.client.inference.*` metrics, `cache_write`), else the pinned v1.41.0; other values concern other domains and are ignored.
        semconv_stability_opt_in: Vec<String> => Conventions = req(|v: Vec<String>| Ok(Conventions::from_opt_in(&v.join(",")))), {
            default: Some(""), default_doc: Some("none (v1.41.0 names)"), flag: Flag::Repeat("semconv-opt-in"),
            env: &["OTEL_SEMCONV_STABILITY_OPT_IN"],
        },
        /// How long requests in flight may finish after SIGTERM, milliseconds.
        shutdown_grace_ms: u64 => Duration = req(millis), {
            default: Some("30000"), flag: Flag::Value("shutdown-grace-ms"),
            env: &["INFERSCOPE_SHUTDOWN_GRACE_MS"],
        },
        /// Most bytes of a request or non-streamed response body read for tracing; larger bodies stream through unparsed.
        max_parse_bytes: usize => usize = req(at_least_1024), {
            default: Some("33554432"), default_doc: Some("33554432 (32 MiB)"),
            env: &["INFERSCOPE_MAX_PARSE_BYTES"],
        },
        /// Most bytes held for parsing across all requests at once; a body that does not fit streams through unparsed, and its span says so.
        max_parse_bytes_total: usize => Option<usize> = ok, {
            default_doc: Some("67108864 (64 MiB), at least max_parse_bytes"),
            env: &["INFERSCOPE_MAX_PARSE_BYTES_TOTAL"],
        },
        /// A client connection with no request in progress this long is closed (one that sends nothing included), milliseconds; 0 for none.
        header_timeout_ms: u64 => Option<Duration> = req(optional_millis), {
            default: Some("30000"), flag: Flag::Value("header-timeout-ms"),
            env: &["INFERSCOPE_HEADER_TIMEOUT_MS"],
        },
        /// Most bytes of a client's request head (request line and headers); a larger head gets 431. Also each client connection's read and write buffer limit: the default keeps 8,000 streams in 256 MiB (BENCHMARKS.md).
        max_request_head_bytes: usize => usize = req(at_least_8192), {
            default: Some("8192"), flag: Flag::Value("max-request-head-bytes"),
            env: &["INFERSCOPE_MAX_REQUEST_HEAD_BYTES"],
        },
        /// Most client connections open at once; past it new connections are closed at once.
        max_connections: usize => Option<usize> = opt(above_zero), {
            default_doc: Some("auto: half of what the open-file limit leaves (raised to its hard limit at start)"),
            flag: Flag::Value("max-connections"), env: &["INFERSCOPE_MAX_CONNECTIONS"],
        },
        /// Request headers recorded on the SERVER span (an allowlist; credential headers are refused).
        captured_headers: Vec<String> => Vec<HeaderName> = req(captured_headers), {
            default: Some("x-request-id,content-type,openai-organization"),
            flag: Flag::Repeat("capture-header"), env: &["INFERSCOPE_CAPTURED_HEADERS"],
        },
        /// Paths forwarded without a trace (probes and scrapes); exact match, query ignored.
        untraced_paths: Vec<String> => Vec<String> = req(untraced_paths), {
            default: Some("/health,/ping,/metrics,/load,/version,/is_sleeping,/healthz,/readyz,/livez"),
            flag: Flag::Repeat("untraced-path"), env: &["INFERSCOPE_UNTRACED_PATHS"],
        },
        /// Where OTLP/gRPC from vLLM is accepted (vLLM's `--otlp-traces-endpoint`), or `off`.
        otlp_ingest_grpc: String => Option<SocketAddr> = req(|v: String| optional_socket(&v)), {
            default: Some("127.0.0.1:4327"), flag: Flag::Value("otlp-ingest-grpc"),
            env: &["INFERSCOPE_OTLP_INGEST_GRPC"],
        },
        /// Where OTLP/HTTP (`POST /v1/traces`, protobuf or JSON, gzip) is accepted, or `off`.
        otlp_ingest_http: String => Option<SocketAddr> = req(|v: String| optional_socket(&v)), {
            default: Some("127.0.0.1:4328"), flag: Flag::Value("otlp-ingest-http"),
            env: &["INFERSCOPE_OTLP_INGEST_HTTP"],
        },
        /// Largest OTLP request accepted, bytes.
        ingest_max_bytes: usize => usize = req(at_least_1024), {
            default: Some("8388608"), default_doc: Some("8388608 (8 MiB)"),
            env: &["INFERSCOPE_INGEST_MAX_BYTES"],
        },
        /// Drop vLLM's start-up spans (any but `llm_request` with a code location) instead of forwarding them.
        ingest_drop_startup_spans: bool => bool = req(ok), {
            default: Some("false"), flag: Flag::Switch("ingest-drop-startup-spans"),
            env: &["INFERSCOPE_INGEST_DROP_STARTUP_SPANS"],
        },
        /// Drop received spans with these names.
        ingest_drop_span_names: Vec<String> => Vec<String> = req(ok), {
            default: Some(""), default_doc: Some("none"), flag: Flag::Repeat("ingest-drop-span"),
            env: &["INFERSCOPE_INGEST_DROP_SPAN_NAMES"],
        },
        /// The model named on engine spans the gateway has no record of.
        engine_model: String => Option<String> = ok, {
            flag: Flag::Value("engine-model"), env: &["INFERSCOPE_ENGINE_MODEL"],
        },
        /// `service.name` for ingested spans whose resource has none (or `unknown_service:…`).
        engine_service_name: String => String = req(non_empty), {
            default: Some("vllm"), flag: Flag::Value("engine-service-name"),
            env: &["INFERSCOPE_ENGINE_SERVICE_NAME"],
        },
        /// Most CLIENT spans remembered for joining engine spans.
        join_capacity: usize => usize = req(above_zero), {
            default: Some("16384"), env: &["INFERSCOPE_JOIN_CAPACITY"],
        },
        /// How long one is remembered, milliseconds.
        join_ttl_ms: u64 => Duration = req(millis), {
            default: Some("30000"), env: &["INFERSCOPE_JOIN_TTL_MS"],
        },
        /// How long an engine span waits for its exchange to end, milliseconds (vLLM exports every 5 s by default).
        join_wait_ms: u64 => Duration = req(millis), {
            default: Some("2000"), env: &["INFERSCOPE_JOIN_WAIT_MS"],
        },
    }
}

settings! {
    /// Content capture settings (`[capture]`).
    pub struct CaptureSettings => CaptureValues, table "capture", rows capture_rows {
        /// Record prompts and outputs at all.
        enabled: bool => bool = req(ok), {
            default: Some("false"), flag: Flag::Switch("capture-content"),
            env: &["INFERSCOPE_CAPTURE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"],
        },
        /// Longest text part kept, bytes, then `…[truncated N bytes]`.
        max_length: usize => usize = req(above_zero), {
            default: Some("8192"), flag: Flag::Value("capture-max-length"),
            env: &["INFERSCOPE_CAPTURE_MAX_LENGTH"],
        },
        /// Hide the request side (messages, text, tools, system instructions).
        hide_inputs: bool => bool = req(ok), {
            default: Some("false"), flag: Flag::Choice("hide", "inputs"), env: &["INFERSCOPE_HIDE_INPUTS"],
        },
        /// Hide the response side.
        hide_outputs: bool => bool = req(ok), {
            default: Some("false"), flag: Flag::Choice("hide", "outputs"), env: &["INFERSCOPE_HIDE_OUTPUTS"],
        },
        /// Hide the input messages.
        hide_input_messages: bool => bool = req(ok), {
            default: Some("false"), flag: Flag::Choice("hide", "input-messages"),
            env: &["INFERSCOPE_HIDE_INPUT_MESSAGES"],
        },
        /// Hide the output messages.
        hide_output_messages: bool => bool = req(ok), {
            default: Some("false"), flag: Flag::Choice("hide", "output-messages"),
            env: &["INFERSCOPE_HIDE_OUTPUT_MESSAGES"],
        },
        /// Hide the text of inputs (structure kept).
        hide_input_text: bool => bool = req(ok), {
            default: Some("false"), flag: Flag::Choice("hide", "input-text"),
            env: &["INFERSCOPE_HIDE_INPUT_TEXT"],
        },
        /// Hide the text of outputs (structure kept).
        hide_output_text: bool => bool = req(ok), {
            default: Some("false"), flag: Flag::Choice("hide", "output-text"),
            env: &["INFERSCOPE_HIDE_OUTPUT_TEXT"],
        },
        /// Hide tool definitions.
        hide_tool_definitions: bool => bool = req(ok), {
            default: Some("false"), flag: Flag::Choice("hide", "tool-definitions"),
            env: &["INFERSCOPE_HIDE_TOOL_DEFINITIONS"],
        },
        /// Hide system instructions.
        hide_system_instructions: bool => bool = req(ok), {
            default: Some("false"), flag: Flag::Choice("hide", "system-instructions"),
            env: &["INFERSCOPE_HIDE_SYSTEM_INSTRUCTIONS"],
        },
        /// Regular expressions whose matches are replaced in captured text (the variable holds one).
        redact: Patterns => Vec<regex::Regex> = req(patterns), {
            default: Some(""), default_doc: Some("none"), flag: Flag::Repeat("redact"),
            env: &["INFERSCOPE_REDACT"],
        },
        /// What a match becomes.
        redact_replacement: String => String = req(ok), {
            default: Some("__REDACTED__"),
        },
    }
}

/// Regular expressions for `capture.redact`: an array in a file, repeated flags, one pattern
/// per environment variable (a pattern may hold commas).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Patterns(pub Vec<String>);

impl Value for Patterns {
    const KIND: &'static str = "regular expressions";

    fn from_text(text: &str) -> Result<Patterns, String> {
        Ok(Patterns(if text.is_empty() {
            Vec::new()
        } else {
            vec![text.to_owned()]
        }))
    }

    fn from_toml(value: &toml::Value) -> Result<Patterns, String> {
        match value {
            toml::Value::String(s) => Patterns::from_text(s),
            v => Vec::<String>::from_toml(v).map(Patterns),
        }
    }

    fn show(&self) -> String {
        format!("{} rule(s)", self.0.len())
    }
}

/// Timeouts towards the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting.
    pub connect: Duration,
    /// Request sent → response headers.
    pub first_byte: Duration,
    /// Longest silence within the response body.
    pub idle: Option<Duration>,
    /// Longest whole exchange.
    pub total: Option<Duration>,
}

/// The upstream, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `http://host:port` plus an optional base path, without a trailing slash.
    pub base: String,
    /// The authority (`host:port`).
    pub authority: http::uri::Authority,
    /// A path prefix every request gets (often empty).
    pub path_prefix: String,
    /// `server.address`.
    pub host: String,
    /// `server.port`.
    pub port: u16,
    /// `https://`: TLS to the upstream.
    pub tls: bool,
}

/// The typed gateway configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The upstream.
    pub upstream: Upstream,
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// Where the admin endpoints listen, if anywhere.
    pub admin: Option<SocketAddr>,
    /// h2c to the upstream.
    pub upstream_h2c: bool,
    /// An `https://` upstream's extra CA and client identity.
    pub upstream_tls: inferscope_export::config::TlsConfig,
    /// `gen_ai.provider.name`.
    pub provider: String,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Ask for usage on streams.
    pub inject_usage: bool,
    /// The traceresponse header, if any.
    pub traceresponse_header: Option<HeaderName>,
    /// Dialects (OTel first).
    pub dialects: Vec<Dialect>,
    /// Which GenAI names: the pinned release or the newest experimental ones.
    pub conventions: Conventions,
    /// TLS on the proxy listener: the certificate chain and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Metrics pushed over OTLP, when `OTEL_METRICS_EXPORTER` names `otlp`.
    pub metrics_push: Option<MetricsPush>,
    /// Grace period after SIGTERM.
    pub shutdown_grace: Duration,
    /// Most bytes read for tracing from a body.
    pub max_parse_bytes: usize,
    /// Most bytes held for parsing across all requests at once.
    pub max_parse_bytes_total: usize,
    /// A client connection with no request in progress for this long is closed.
    pub header_timeout: Option<Duration>,
    /// Most bytes of a client's request head; also the connection's buffer limit.
    pub max_request_head_bytes: usize,
    /// Most client connections open at once; `None`: worked out from the open-file limit at
    /// start ([`GatewayConfig::connection_limit`]).
    pub max_connections: Option<usize>,
    /// Request headers recorded.
    pub captured_headers: Vec<HeaderName>,
    /// Paths forwarded without a trace.
    pub untraced_paths: Vec<String>,
    /// Content capture.
    pub capture: CapturePolicy,
    /// Engine-span ingest.
    pub ingest: IngestConfig,
    /// Every setting, its value as shown and its origin: `--print-config`.
    pub report: Report,
}

impl GatewayConfig {
    /// Defaults with `upstream`, listening on ephemeral local ports: for tests and the demo.
    pub fn local(upstream: &str) -> Result<GatewayConfig, ConfigErrors> {
        let explicit = GatewaySettings {
            upstream: Some(upstream.to_owned()),
            listen: Some("127.0.0.1:0".into()),
            admin: Some("127.0.0.1:0".into()),
            otlp_ingest_grpc: Some("127.0.0.1:0".into()),
            otlp_ingest_http: Some("127.0.0.1:0".into()),
            ..GatewaySettings::default()
        };
        let mut r = Resolver::new(&inferscope_settings::NoEnv, None);
        let config = resolve_gateway(
            &explicit,
            &CaptureSettings::default(),
            &FileLayer::empty(),
            &mut r,
        );
        finished(config, r.finish()?)
    }

    /// The most client connections the proxy keeps open: `max_connections` if set, else
    /// what the open-file limit leaves once the other listeners, the upstream connection each
    /// client connection may hold, and the process's own files are counted.
    pub fn connection_limit(&self) -> usize {
        if let Some(n) = self.max_connections {
            return n;
        }
        let limit = inferscope_server::open_file_limit().unwrap_or(1024);
        let reserved = OWN_FILES + 3 * SIDE_LISTENER_CONNECTIONS as u64;
        usize::try_from(limit.saturating_sub(reserved) / 2)
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// Where the setting `key` (of `[gateway]`, or `capture.key`) came from.
    pub fn origin(&self, key: &str) -> Origin {
        let (table, key) = key.split_once('.').unwrap_or(("gateway", key));
        self.report
            .origin(table, key)
            .cloned()
            .unwrap_or(Origin::Default)
    }
}

impl fmt::Display for GatewayConfig {
    /// Every setting with its origin; secrets and the upstream's userinfo are hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut report = self.report.clone();
        if self.max_connections.is_none() {
            report.set_shown(
                &gateway_rows::max_connections,
                format!("auto ({})", self.connection_limit()),
            );
        }
        f.write_str(&report.render("gateway"))
    }
}

/// Pushing metrics over OTLP.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsPush {
    /// Where, how often, and how.
    pub config: MetricsConfig,
    /// The resource pushed with them (the exporter's: `service.name` first).
    pub resource: Vec<(String, String)>,
}

/// Both halves of a loaded configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The gateway's.
    pub gateway: GatewayConfig,
    /// The exporter's.
    pub exporter: ExporterConfig,
}

/// The explicit layer: flags (or a program's own settings), highest precedence.
#[derive(Debug, Clone, Default)]
pub struct Explicit {
    /// `[gateway]` settings.
    pub gateway: GatewaySettings,
    /// `[capture]` settings.
    pub capture: CaptureSettings,
    /// `[exporter]` settings.
    pub exporter: ExporterSettings,
    /// `[metrics]` settings (pushing metrics over OTLP).
    pub metrics: MetricsSettings,
    /// Errors found reading these (a flag's value that cannot be read).
    pub errors: Vec<ConfigError>,
}

/// Resolves the explicit settings, the environment and the file into both configurations,
/// or every error in any layer (`errors`: those already found reading flags or the file).
/// `defaults` replace the tables' own defaults (the gateway's `service_name`, say).
pub fn load(
    explicit: &Explicit,
    env: &dyn Env,
    file: &FileLayer,
    defaults: &[(&'static inferscope_settings::Setting, &'static str)],
) -> Result<Loaded, ConfigErrors> {
    let mut r = Resolver::new(env, Some(file));
    r.keep(explicit.errors.iter().cloned());
    for (s, text) in defaults {
        r.set_default(s, text);
    }
    let mut errors = Vec::new();
    let file_exporter: ExporterSettings = file.table(&mut errors);
    let file_metrics: MetricsSettings = file.table(&mut errors);
    r.keep(errors);
    let gateway = resolve_gateway(&explicit.gateway, &explicit.capture, file, &mut r);
    let exporter = resolve_with(&explicit.exporter, &file_exporter, &mut r);
    let metrics = MetricsSettings::resolve(&explicit.metrics, &file_metrics, &mut r);
    if let (Some(g), Some(e)) = (&gateway, &exporter)
        && let Some(error) = export_loop(g, e)
    {
        r.keep([error]);
    }
    let report = r.finish()?;
    let exporter = inferscope_export::config::finished(exporter, &report);
    match (finished(gateway, report), exporter, metrics) {
        (Ok(mut gateway), Some(exporter), Some(metrics)) => {
            // Pushed metrics describe the same service as the spans.
            gateway.metrics_push = metrics.push.then(|| MetricsPush {
                resource: exporter.resource.clone(),
                config: metrics,
            });
            Ok(Loaded { gateway, exporter })
        }
        (Err(e), _, _) => Err(e),
        _ => Err(ConfigErrors(Vec::new())),
    }
}

fn finished(config: Option<GatewayConfig>, report: Report) -> Result<GatewayConfig, ConfigErrors> {
    let mut c = config.ok_or_else(|| ConfigErrors(Vec::new()))?;
    c.report = report.only(&["gateway", "capture", "metrics"]);
    Ok(c)
}

/// The gateway's and capture's settings from the layers, with the rules across them.
fn resolve_gateway(
    explicit: &GatewaySettings,
    explicit_capture: &CaptureSettings,
    file: &FileLayer,
    r: &mut Resolver<'_>,
) -> Option<GatewayConfig> {
    let mut errors = Vec::new();
    let file_gateway: GatewaySettings = file.table(&mut errors);
    let file_capture: CaptureSettings = file.table(&mut errors);
    r.keep(errors);
    let g = GatewayValues::resolve(explicit, &file_gateway, r);
    let c = CaptureValues::resolve(explicit_capture, &file_capture, r);
    let (g, c) = (g?, c?);
    // `otel` is always on: show the dialects in force.
    let dialects: Vec<&str> = g.dialects.iter().map(|d| d.as_str()).collect();
    r.report_mut()
        .set_shown(&gateway_rows::dialects, dialects.join(","));
    listeners_clash(&g, r);
    let max_parse_bytes_total = parse_budget(&g, r);
    let tls = tls_pair(&g, r);
    let upstream_tls = upstream_tls(&g, r);
    let capture = CapturePolicy {
        enabled: c.enabled,
        max_length: c.max_length,
        hide_inputs: c.hide_inputs,
        hide_outputs: c.hide_outputs,
        hide_input_messages: c.hide_input_messages,
        hide_output_messages: c.hide_output_messages,
        hide_input_text: c.hide_input_text,
        hide_output_text: c.hide_output_text,
        hide_tool_definitions: c.hide_tool_definitions,
        hide_system_instructions: c.hide_system_instructions,
        redactions: c
            .redact
            .into_iter()
            .map(|pattern| Redaction {
                pattern,
                replacement: c.redact_replacement.clone(),
            })
            .collect(),
    };
    Some(GatewayConfig {
        upstream: g.upstream,
        listen: g.listen,
        admin: g.admin,
        upstream_h2c: g.upstream_h2c,
        upstream_tls,
        provider: g.provider,
        timeouts: Timeouts {
            connect: g.connect_timeout_ms,
            first_byte: g.first_byte_timeout_ms,
            idle: g.idle_timeout_ms,
            total: g.total_timeout_ms,
        },
        inject_usage: g.inject_usage,
        traceresponse_header: g.traceresponse_header,
        dialects: g.dialects,
        conventions: g.semconv_stability_opt_in,
        tls,
        metrics_push: None,
        shutdown_grace: g.shutdown_grace_ms,
        max_parse_bytes: g.max_parse_bytes,
        max_parse_bytes_total,
        header_timeout: g.header_timeout_ms,
        max_request_head_bytes: g.max_request_head_bytes,
        max_connections: g.max_connections,
        captured_headers: g.captured_headers,
        untraced_paths: g.untraced_paths,
        capture,
        ingest: IngestConfig {
            grpc: g.otlp_ingest_grpc,
            http: g.otlp_ingest_http,
            max_bytes: g.ingest_max_bytes,
            drop_startup_spans: g.ingest_drop_startup_spans,
            drop_span_names: g.ingest_drop_span_names,
            engine_model: g.engine_model,
            engine_service_name: g.engine_service_name,
            join_capacity: g.join_capacity,
            join_ttl: g.join_ttl_ms,
            join_wait: g.join_wait_ms,
        },
        report: Report::default(),
    })
}

// ---- rules across settings ----

/// The TLS certificate and key come together or not at all.
fn tls_pair(g: &GatewayValues, r: &mut Resolver<'_>) -> Option<(PathBuf, PathBuf)> {
    match (&g.tls_cert, &g.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        (Some(_), None) => {
            r.reject(&gateway_rows::tls_cert, "needs `tls_key` too");
            None
        }
        (None, Some(_)) => {
            r.reject(&gateway_rows::tls_key, "needs `tls_cert` too");
            None
        }
    }
}

/// The TLS material for an `https://` upstream; refused for an `http://` one, where it would
/// silently do nothing.
fn upstream_tls(g: &GatewayValues, r: &mut Resolver<'_>) -> inferscope_export::config::TlsConfig {
    let tls = inferscope_export::config::TlsConfig {
        ca_certificate: g.upstream_ca_cert.clone(),
        client_certificate: g.upstream_client_cert.clone(),
        client_key: g.upstream_client_key.clone(),
    };
    if g.upstream.tls && g.upstream_h2c {
        r.reject(
            &gateway_rows::upstream_h2c,
            "is for http:// upstreams; an https:// upstream gets HTTP/2 when it offers it (ALPN)",
        );
    }
    if !g.upstream.tls {
        for (row, set) in [
            (
                &gateway_rows::upstream_ca_cert,
                tls.ca_certificate.is_some(),
            ),
            (
                &gateway_rows::upstream_client_cert,
                tls.client_certificate.is_some(),
            ),
            (&gateway_rows::upstream_client_key, tls.client_key.is_some()),
        ] {
            if set {
                r.reject(row, "applies to an https:// upstream only");
            }
        }
    }
    match (&tls.client_certificate, &tls.client_key) {
        (Some(_), None) => r.reject(
            &gateway_rows::upstream_client_cert,
            "needs `upstream_client_key` too",
        ),
        (None, Some(_)) => r.reject(
            &gateway_rows::upstream_client_key,
            "needs `upstream_client_cert` too",
        ),
        _ => {}
    }
    tls
}

/// Two of the gateway's listeners on one port.
fn listeners_clash(g: &GatewayValues, r: &mut Resolver<'_>) {
    let mut ports = std::collections::HashSet::new();
    for (row, a) in [
        (&gateway_rows::listen, Some(g.listen)),
        (&gateway_rows::admin, g.admin),
        (&gateway_rows::otlp_ingest_grpc, g.otlp_ingest_grpc),
        (&gateway_rows::otlp_ingest_http, g.otlp_ingest_http),
    ] {
        if let Some(a) = a.filter(|a| a.port() != 0)
            && !ports.insert(a.port())
        {
            r.reject(
                row,
                "this port is already used by another of the gateway's listeners",
            );
        }
    }
}

/// The bytes held for parsing across requests: at least one body's worth; by default 64 MiB,
/// or one body's worth if that is more.
fn parse_budget(g: &GatewayValues, r: &mut Resolver<'_>) -> usize {
    let one = g.max_parse_bytes;
    match g.max_parse_bytes_total {
        None => (64 << 20).max(one),
        Some(total) if total < one => {
            r.reject(
                &gateway_rows::max_parse_bytes_total,
                format!("must be at least max_parse_bytes ({one})"),
            );
            (64 << 20).max(one)
        }
        Some(total) => total,
    }
}

/// An exporter endpoint that is one of the gateway's own ingest listeners would send every
/// span round in a loop.
fn export_loop(gateway: &GatewayConfig, exporter: &ExporterConfig) -> Option<ConfigError> {
    if !exporter
        .exporters
        .contains(&inferscope_export::config::ExporterKind::Otlp)
    {
        return None;
    }
    let endpoint = &exporter.otlp.endpoint;
    let uri: http::Uri = endpoint.parse().ok()?;
    let port = uri.port_u16()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let local = matches!(host, "localhost" | "127.0.0.1" | "::1" | "0.0.0.0");
    for (name, a) in [
        ("otlp_ingest_grpc", gateway.ingest.grpc),
        ("otlp_ingest_http", gateway.ingest.http),
    ] {
        if let Some(a) = a
            && a.port() == port
            && (local || a.ip().to_string() == host)
        {
            return Some(ConfigError::new(
                Origin::Explicit(name),
                a.to_string(),
                format!(
                    "the exporter endpoint {} is this ingest listener: spans would loop",
                    redact_userinfo(endpoint)
                ),
            ));
        }
    }
    None
}

// ---- checks of one setting ----

fn non_empty(v: String) -> Result<String, String> {
    if v.is_empty() {
        Err("cannot be empty".into())
    } else {
        Ok(v)
    }
}

fn millis(v: u64) -> Result<Duration, String> {
    Ok(Duration::from_millis(v))
}

fn optional_millis(v: u64) -> Result<Option<Duration>, String> {
    Ok((v > 0).then(|| Duration::from_millis(v)))
}

fn at_least_1024(v: usize) -> Result<usize, String> {
    if v < 1024 {
        Err("must be at least 1024".into())
    } else {
        Ok(v)
    }
}

/// hyper's least buffer limit.
fn at_least_8192(v: usize) -> Result<usize, String> {
    if v < 8192 {
        Err("must be at least 8192".into())
    } else {
        Ok(v)
    }
}

fn above_zero(v: usize) -> Result<usize, String> {
    if v == 0 {
        Err("must be above 0".to_owned())
    } else {
        Ok(v)
    }
}

fn socket(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| "expected an address like 127.0.0.1:9000".to_owned())
}

fn optional_socket(v: &str) -> Result<Option<SocketAddr>, String> {
    if v == "off" {
        Ok(None)
    } else {
        socket(v).map(Some)
    }
}

fn header_or_none(v: &str) -> Result<Option<HeaderName>, String> {
    if v.is_empty() {
        Ok(None)
    } else {
        HeaderName::from_str(v)
            .map(Some)
            .map_err(|_| "not a valid header name".to_owned())
    }
}

fn dialects(names: Vec<String>) -> Result<Vec<Dialect>, String> {
    let mut out = vec![Dialect::OTel];
    for n in &names {
        let d = Dialect::parse(n)
            .ok_or_else(|| format!("unknown dialect `{n}` (otel, vllm, openinference)"))?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

fn untraced_paths(paths: Vec<String>) -> Result<Vec<String>, String> {
    match paths.iter().find(|p| !p.starts_with('/')) {
        Some(p) => Err(format!("`{p}` is not a path (it must start with `/`)")),
        None => Ok(paths),
    }
}

impl GatewayConfig {
    /// Whether requests to `path` are forwarded without a trace.
    pub fn is_untraced(&self, path: &str) -> bool {
        self.untraced_paths.iter().any(|p| p == path)
    }
}

fn captured_headers(names: Vec<String>) -> Result<Vec<HeaderName>, String> {
    names
        .iter()
        .map(|n| {
            let h = HeaderName::from_str(n).map_err(|_| format!("`{n}` is not a header name"))?;
            if SECRET_HEADERS.contains(&h.as_str()) {
                return Err(format!("`{n}` carries credentials and is never recorded"));
            }
            Ok(h)
        })
        .collect()
}

fn patterns(p: Patterns) -> Result<Vec<regex::Regex>, String> {
    p.0.iter()
        .enumerate()
        .map(|(i, p)| {
            regex::Regex::new(p).map_err(|e| {
                format!(
                    "pattern {} is not a regular expression: {}",
                    i + 1,
                    e.to_string().lines().last().unwrap_or("")
                )
            })
        })
        .collect()
}

/// Parses an upstream base URL: `http[s]://host[:port][/prefix]`.
pub fn parse_upstream(url: &str) -> Result<Upstream, String> {
    let uri: http::Uri = url.parse().map_err(|_| "not a URL".to_owned())?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err("expected an http:// or https:// URL".into()),
    };
    let authority = uri.authority().cloned().ok_or("the URL has no host")?;
    // Anywhere, not only in the authority: a password holding `/` ends the authority early.
    if url.contains('@') {
        return Err("credentials in the upstream URL are not supported".into());
    }
    check_port(authority.as_str())?;
    if uri.query().is_some() {
        return Err("the upstream URL cannot have a query".into());
    }
    let path_prefix = uri.path().trim_end_matches('/').to_owned();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let scheme = if tls { "https" } else { "http" };
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok(Upstream {
        base: format!("{scheme}://{authority}{path_prefix}"),
        authority,
        path_prefix,
        host,
        port,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        flags: GatewaySettings,
        env: &[(&str, &str)],
        file: &str,
    ) -> Result<GatewayConfig, ConfigErrors> {
        let (file, errors) = FileLayer::parse("test.toml", file, FILE_TABLES);
        assert!(errors.is_empty(), "{errors:?}");
        let explicit = Explicit {
            gateway: flags,
            ..Explicit::default()
        };
        load(&explicit, &env.to_vec(), &file, &[]).map(|l| l.gateway)
    }

    #[test]
    fn https_upstreams_and_their_tls_settings() {
        let c = resolve(
            GatewaySettings {
                upstream: Some("https://vllm.internal/v1base/".into()),
                upstream_ca_cert: Some("ca.pem".into()),
                ..GatewaySettings::default()
            },
            &[
                ("INFERSCOPE_UPSTREAM_CLIENT_CERT", "c.pem"),
                ("INFERSCOPE_UPSTREAM_CLIENT_KEY", "k.pem"),
            ],
            "",
        )
        .unwrap();
        assert_eq!(c.upstream.base, "https://vllm.internal/v1base");
        assert_eq!((c.upstream.port, c.upstream.tls), (443, true));
        assert_eq!(c.upstream_tls.ca_certificate, Some("ca.pem".into()));
        assert_eq!(c.upstream_tls.client_key, Some("k.pem".into()));

        let refused = |flags: GatewaySettings| resolve(flags, &[], "").unwrap_err().to_string();
        // TLS files with a plain upstream would do nothing: refused.
        let e = refused(GatewaySettings {
            upstream: Some("http://vllm:8000".into()),
            upstream_ca_cert: Some("ca.pem".into()),
            ..GatewaySettings::default()
        });
        assert!(
            e.contains("upstream_ca_cert") && e.contains("https:// upstream only"),
            "{e}"
        );
        let e = refused(GatewaySettings {
            upstream: Some("https://vllm:8000".into()),
            upstream_h2c: Some(true),
            ..GatewaySettings::default()
        });
        assert!(e.contains("ALPN"), "{e}");
        let e = refused(GatewaySettings {
            upstream: Some("https://vllm:8000".into()),
            upstream_client_cert: Some("c.pem".into()),
            ..GatewaySettings::default()
        });
        assert!(e.contains("needs `upstream_client_key`"), "{e}");
        let e = refused(GatewaySettings {
            upstream: Some("ftp://vllm".into()),
            ..GatewaySettings::default()
        });
        assert!(e.contains("http:// or https://"), "{e}");
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let file = "[gateway]\nupstream = \"http://file:1\"\nprovider = \"from-file\"\nlisten = \"127.0.0.1:1\"\n";
        let env = [
            ("INFERSCOPE_UPSTREAM", "http://env:2"),
            ("INFERSCOPE_LISTEN", "127.0.0.1:2"),
        ];
        let flags = GatewaySettings {
            upstream: Some("http://flag:3/base/".into()),
            ..GatewaySettings::default()
        };
        let c = resolve(flags, &env, file).unwrap();
        assert_eq!(c.upstream.base, "http://flag:3/base");
        assert_eq!((c.upstream.host.as_str(), c.upstream.port), ("flag", 3));
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.provider, "from-file");
        assert_eq!(c.admin, Some(SocketAddr::from(([127, 0, 0, 1], 9464))));
        assert!(c.to_string().contains("# setting `upstream`"));
        assert!(c.to_string().contains("# INFERSCOPE_LISTEN"));
        assert!(c.to_string().contains("# config file `provider`"));
    }

    #[test]
    fn every_error_at_once_and_no_secret_headers() {
        let env = [
            ("INFERSCOPE_UPSTREAM", "ftp://x"),
            ("INFERSCOPE_INJECT_USAGE", "maybe"),
            ("INFERSCOPE_DIALECTS", "otel,klingon"),
            ("INFERSCOPE_CAPTURED_HEADERS", "x-request-id,Authorization"),
            ("INFERSCOPE_REDACT", "(unclosed"),
        ];
        let errors = resolve(GatewaySettings::default(), &env, "").unwrap_err();
        assert_eq!(errors.0.len(), 5, "{errors}");
        let text = errors.to_string();
        assert!(text.contains("never recorded"));
        assert!(text.contains("klingon"));
    }

    #[test]
    fn the_standard_opt_in_variable_picks_the_newest_genai_names() {
        let c = resolve(GatewaySettings::default(), &[], "").unwrap();
        assert_eq!(c.conventions, Conventions::V1_41_0);
        let env = [(
            "OTEL_SEMCONV_STABILITY_OPT_IN",
            "http/dup,gen_ai_latest_experimental",
        )];
        let c = resolve(GatewaySettings::default(), &env, "").unwrap();
        assert_eq!(c.conventions, Conventions::LatestExperimental);
        let file = "[gateway]\nsemconv_stability_opt_in = [\"gen_ai_latest_experimental\"]\n";
        let c = resolve(GatewaySettings::default(), &[], file).unwrap();
        assert_eq!(c.conventions, Conventions::LatestExperimental);
    }

    #[test]
    fn untraced_paths_are_paths_and_can_be_emptied() {
        let env = [("INFERSCOPE_UNTRACED_PATHS", "/health,metrics")];
        let errors = resolve(GatewaySettings::default(), &env, "").unwrap_err();
        assert!(
            errors.to_string().contains("`metrics` is not a path"),
            "{errors}"
        );
        let c = resolve(GatewaySettings::default(), &[], "").unwrap();
        assert!(c.is_untraced("/health") && c.is_untraced("/metrics"));
        assert!(!c.is_untraced("/v1/models") && !c.is_untraced("/health/x"));
        let file = "[gateway]\nuntraced_paths = []\n";
        let c = resolve(GatewaySettings::default(), &[], file).unwrap();
        assert!(!c.is_untraced("/health"));
        let c = resolve(GatewaySettings::default(), &[], "").unwrap();
        assert_eq!(c.ingest.engine_service_name, "vllm");
    }

    #[test]
    fn an_exporter_pointed_at_our_own_ingest_is_refused() {
        let file = "[gateway]\notlp_ingest_grpc = \"127.0.0.1:4327\"\n";
        let (file, _) = FileLayer::parse("test.toml", file, FILE_TABLES);
        let exporter = ExporterSettings {
            endpoint: Some("http://localhost:4327".into()),
            ..ExporterSettings::default()
        };
        let explicit = Explicit {
            exporter,
            ..Explicit::default()
        };
        let errors = load(&explicit, &[("", "")], &file, &[]).unwrap_err();
        assert!(errors.to_string().contains("loop"), "{errors}");
        let fine = Explicit {
            exporter: ExporterSettings {
                endpoint: Some("http://collector:4317".into()),
                ..ExporterSettings::default()
            },
            ..Explicit::default()
        };
        assert!(load(&fine, &[("", "")], &file, &[]).is_ok());
        // Two listeners on one port.
        let clash = Explicit {
            gateway: GatewaySettings {
                admin: Some("127.0.0.1:4327".into()),
                ..GatewaySettings::default()
            },
            ..fine
        };
        assert!(load(&clash, &[("", "")], &file, &[]).is_err());
    }

    #[test]
    fn capture_switches_and_otel_alias() {
        let c = resolve(
            GatewaySettings::default(),
            &[("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")],
            "",
        )
        .unwrap();
        assert!(c.capture.enabled);
        let c = resolve(
            GatewaySettings::default(),
            &[],
            "[capture]\nenabled = true\nhide_output_text = true\nredact = ['\\d+']\n",
        )
        .unwrap();
        assert!(c.capture.hide_output_text);
        assert_eq!(c.capture.redactions.len(), 1);
        let (file, _) = FileLayer::parse("test.toml", "[gateway]\nbogus = 1\n", FILE_TABLES);
        let mut errors = Vec::new();
        let _: GatewaySettings = file.table(&mut errors);
        assert!(errors[0].to_string().contains("bogus"), "{errors:?}");
    }

    #[test]
    fn file_errors_name_the_file_the_key_and_the_line_all_at_once() {
        let text = "[gateway]\nlisten = \"nowhere\"\nbogus = 1\n\n[capture]\nmax_length = \"many\"\n[exporter]\ncompression = \"zstd\"\n";
        let (file, errors) = FileLayer::parse("gw.toml", text, FILE_TABLES);
        assert!(errors.is_empty());
        let errors = load(&Explicit::default(), &[("", "")], &file, &[])
            .unwrap_err()
            .to_string();
        for want in [
            "config file `listen`=\"nowhere\": expected an address like 127.0.0.1:9000 (gw.toml, line 2)",
            "config file `[gateway] bogus`: unknown key",
            "(gw.toml, line 3)",
            "config file `max_length`=\"many\": expected a whole number (gw.toml, line 6)",
            "config file `compression`=\"zstd\": expected gzip or none (gw.toml, line 8)",
        ] {
            assert!(errors.contains(want), "{want} missing from {errors}");
        }
    }
}
