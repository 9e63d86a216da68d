//! The gateway's configuration: raw layers (flags, environment, a TOML file), resolved with the
//! precedence flag > environment > file > default into a typed [`GatewayConfig`], every
//! unusable value reported at once. The exporter's own settings (the `[exporter]` table and the
//! `OTEL_*` variables) resolve through `inferscope-export` in the same pass.
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
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderName;
use inferscope_core::observe::capture::{CapturePolicy, REDACTED, Redaction};
use inferscope_export::config::{ConfigError, Env, Layers, Origin, redact_userinfo};
use inferscope_export::{ConfigErrors, ExporterConfig, ExporterSettings};
use inferscope_semconv::dialect::Dialect;
use serde::Deserialize;

use crate::ingest::IngestConfig;

/// Gateway settings as a person writes them (flags, `[gateway]` in a file, the environment).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// The upstream base URL, e.g. `http://127.0.0.1:8000`.
    pub upstream: Option<String>,
    /// Where the proxy listens.
    pub listen: Option<String>,
    /// Where the admin endpoints listen, or `off`.
    pub admin: Option<String>,
    /// Speak HTTP/2 with prior knowledge (h2c) to the upstream.
    pub upstream_h2c: Option<bool>,
    /// `gen_ai.provider.name`.
    pub provider: Option<String>,
    /// Connecting to the upstream, milliseconds.
    pub connect_timeout_ms: Option<u64>,
    /// From sending the request to the upstream's response headers, milliseconds.
    pub first_byte_timeout_ms: Option<u64>,
    /// Longest silence within a response body, milliseconds (0: none).
    pub idle_timeout_ms: Option<u64>,
    /// Longest whole exchange, milliseconds (0, the default: none; streams may run long).
    pub total_timeout_ms: Option<u64>,
    /// Ask the upstream for stream usage and hide the extra chunk from the client.
    pub inject_usage: Option<bool>,
    /// The response header that names the trace (empty: none).
    pub traceresponse_header: Option<String>,
    /// Attribute dialects: `otel` (always), `vllm`, `openinference`.
    pub dialects: Option<Vec<String>>,
    /// How long in-flight requests may finish after SIGTERM, milliseconds.
    pub shutdown_grace_ms: Option<u64>,
    /// Most bytes of a request or non-streamed response body read for tracing.
    pub max_parse_bytes: Option<usize>,
    /// Most bytes held for parsing across all requests at once.
    pub max_parse_bytes_total: Option<usize>,
    /// Time a client connection has to send a request head, from connect or from the end of
    /// its previous request; a connection quiet that long is closed. Milliseconds, 0: none.
    pub header_timeout_ms: Option<u64>,
    /// Most client connections open at once (default: from the open-file limit).
    pub max_connections: Option<usize>,
    /// Request headers recorded on the SERVER span (an allowlist; secrets are refused).
    pub captured_headers: Option<Vec<String>>,
    /// Where OTLP/gRPC from vLLM is accepted, or `off`.
    pub otlp_ingest_grpc: Option<String>,
    /// Where OTLP/HTTP (`/v1/traces`) from vLLM is accepted, or `off`.
    pub otlp_ingest_http: Option<String>,
    /// Largest OTLP request accepted, bytes.
    pub ingest_max_bytes: Option<usize>,
    /// Drop vLLM's start-up spans instead of forwarding them.
    pub ingest_drop_startup_spans: Option<bool>,
    /// Drop received spans with these names.
    pub ingest_drop_span_names: Option<Vec<String>>,
    /// The model named on engine spans the gateway has no record of.
    pub engine_model: Option<String>,
    /// Most CLIENT spans remembered for joining engine spans.
    pub join_capacity: Option<usize>,
    /// How long one is remembered, milliseconds.
    pub join_ttl_ms: Option<u64>,
    /// How long an engine span waits for its exchange to end, milliseconds.
    pub join_wait_ms: Option<u64>,
}

/// Content capture settings (`[capture]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSettings {
    /// Capture prompts and outputs at all (off by default).
    pub enabled: Option<bool>,
    /// Longest text part kept, bytes.
    pub max_length: Option<usize>,
    /// See [`CapturePolicy`].
    pub hide_inputs: Option<bool>,
    /// See [`CapturePolicy`].
    pub hide_outputs: Option<bool>,
    /// See [`CapturePolicy`].
    pub hide_input_messages: Option<bool>,
    /// See [`CapturePolicy`].
    pub hide_output_messages: Option<bool>,
    /// See [`CapturePolicy`].
    pub hide_input_text: Option<bool>,
    /// See [`CapturePolicy`].
    pub hide_output_text: Option<bool>,
    /// See [`CapturePolicy`].
    pub hide_tool_definitions: Option<bool>,
    /// See [`CapturePolicy`].
    pub hide_system_instructions: Option<bool>,
    /// Regular expressions whose matches are replaced.
    pub redact: Option<Vec<String>>,
    /// What a match becomes (default `__REDACTED__`).
    pub redact_replacement: Option<String>,
}

/// A configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[gateway]`.
    #[serde(default)]
    pub gateway: GatewaySettings,
    /// `[capture]`.
    #[serde(default)]
    pub capture: CaptureSettings,
    /// `[exporter]`.
    #[serde(default)]
    pub exporter: ExporterSettings,
}

impl FileConfig {
    /// Reads a TOML file. The error names the file and the TOML problem, never its contents.
    pub fn read(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            format!(
                "config file {}: {}",
                path.display(),
                e.message().lines().next().unwrap_or("invalid TOML")
            )
        })
    }
}

/// Environment variables of the gateway (the exporter reads the `OTEL_*` ones).
pub mod vars {
    /// `upstream`.
    pub const UPSTREAM: &str = "INFERSCOPE_UPSTREAM";
    /// `listen`.
    pub const LISTEN: &str = "INFERSCOPE_LISTEN";
    /// `admin`.
    pub const ADMIN: &str = "INFERSCOPE_ADMIN";
    /// `upstream_h2c`.
    pub const UPSTREAM_H2C: &str = "INFERSCOPE_UPSTREAM_H2C";
    /// `provider`.
    pub const PROVIDER: &str = "INFERSCOPE_PROVIDER";
    /// `connect_timeout_ms`.
    pub const CONNECT_TIMEOUT_MS: &str = "INFERSCOPE_CONNECT_TIMEOUT_MS";
    /// `first_byte_timeout_ms`.
    pub const FIRST_BYTE_TIMEOUT_MS: &str = "INFERSCOPE_FIRST_BYTE_TIMEOUT_MS";
    /// `idle_timeout_ms`.
    pub const IDLE_TIMEOUT_MS: &str = "INFERSCOPE_IDLE_TIMEOUT_MS";
    /// `total_timeout_ms`.
    pub const TOTAL_TIMEOUT_MS: &str = "INFERSCOPE_TOTAL_TIMEOUT_MS";
    /// `inject_usage`.
    pub const INJECT_USAGE: &str = "INFERSCOPE_INJECT_USAGE";
    /// `traceresponse_header`.
    pub const TRACERESPONSE_HEADER: &str = "INFERSCOPE_TRACERESPONSE_HEADER";
    /// `dialects`, comma-separated.
    pub const DIALECTS: &str = "INFERSCOPE_DIALECTS";
    /// `shutdown_grace_ms`.
    pub const SHUTDOWN_GRACE_MS: &str = "INFERSCOPE_SHUTDOWN_GRACE_MS";
    /// `max_parse_bytes`.
    pub const MAX_PARSE_BYTES: &str = "INFERSCOPE_MAX_PARSE_BYTES";
    /// `max_parse_bytes_total`.
    pub const MAX_PARSE_BYTES_TOTAL: &str = "INFERSCOPE_MAX_PARSE_BYTES_TOTAL";
    /// `header_timeout_ms`.
    pub const HEADER_TIMEOUT_MS: &str = "INFERSCOPE_HEADER_TIMEOUT_MS";
    /// `max_connections`.
    pub const MAX_CONNECTIONS: &str = "INFERSCOPE_MAX_CONNECTIONS";
    /// `captured_headers`, comma-separated.
    pub const CAPTURED_HEADERS: &str = "INFERSCOPE_CAPTURED_HEADERS";
    /// `otlp_ingest_grpc`.
    pub const OTLP_INGEST_GRPC: &str = "INFERSCOPE_OTLP_INGEST_GRPC";
    /// `otlp_ingest_http`.
    pub const OTLP_INGEST_HTTP: &str = "INFERSCOPE_OTLP_INGEST_HTTP";
    /// `ingest_max_bytes`.
    pub const INGEST_MAX_BYTES: &str = "INFERSCOPE_INGEST_MAX_BYTES";
    /// `ingest_drop_startup_spans`.
    pub const INGEST_DROP_STARTUP_SPANS: &str = "INFERSCOPE_INGEST_DROP_STARTUP_SPANS";
    /// `ingest_drop_span_names`, comma-separated.
    pub const INGEST_DROP_SPAN_NAMES: &str = "INFERSCOPE_INGEST_DROP_SPAN_NAMES";
    /// `engine_model`.
    pub const ENGINE_MODEL: &str = "INFERSCOPE_ENGINE_MODEL";
    /// `join_capacity`.
    pub const JOIN_CAPACITY: &str = "INFERSCOPE_JOIN_CAPACITY";
    /// `join_ttl_ms`.
    pub const JOIN_TTL_MS: &str = "INFERSCOPE_JOIN_TTL_MS";
    /// `join_wait_ms`.
    pub const JOIN_WAIT_MS: &str = "INFERSCOPE_JOIN_WAIT_MS";
    /// `capture.enabled`.
    pub const CAPTURE_CONTENT: &str = "INFERSCOPE_CAPTURE_CONTENT";
    /// `capture.enabled`, the name OpenTelemetry's GenAI instrumentations read.
    pub const OTEL_CAPTURE_CONTENT: &str = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";
    /// `capture.max_length`.
    pub const CAPTURE_MAX_LENGTH: &str = "INFERSCOPE_CAPTURE_MAX_LENGTH";
    /// `capture.hide_inputs`.
    pub const HIDE_INPUTS: &str = "INFERSCOPE_HIDE_INPUTS";
    /// `capture.hide_outputs`.
    pub const HIDE_OUTPUTS: &str = "INFERSCOPE_HIDE_OUTPUTS";
    /// `capture.hide_input_messages`.
    pub const HIDE_INPUT_MESSAGES: &str = "INFERSCOPE_HIDE_INPUT_MESSAGES";
    /// `capture.hide_output_messages`.
    pub const HIDE_OUTPUT_MESSAGES: &str = "INFERSCOPE_HIDE_OUTPUT_MESSAGES";
    /// `capture.hide_input_text`.
    pub const HIDE_INPUT_TEXT: &str = "INFERSCOPE_HIDE_INPUT_TEXT";
    /// `capture.hide_output_text`.
    pub const HIDE_OUTPUT_TEXT: &str = "INFERSCOPE_HIDE_OUTPUT_TEXT";
    /// `capture.hide_tool_definitions`.
    pub const HIDE_TOOL_DEFINITIONS: &str = "INFERSCOPE_HIDE_TOOL_DEFINITIONS";
    /// `capture.hide_system_instructions`.
    pub const HIDE_SYSTEM_INSTRUCTIONS: &str = "INFERSCOPE_HIDE_SYSTEM_INSTRUCTIONS";
    /// `capture.redact`, one pattern.
    pub const REDACT: &str = "INFERSCOPE_REDACT";
}

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

/// Request headers recorded by default.
pub const DEFAULT_CAPTURED_HEADERS: &[&str] =
    &["x-request-id", "content-type", "openai-organization"];

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
    /// Grace period after SIGTERM.
    pub shutdown_grace: Duration,
    /// Most bytes read for tracing from a body.
    pub max_parse_bytes: usize,
    /// Most bytes held for parsing across all requests at once.
    pub max_parse_bytes_total: usize,
    /// A client connection with no request in progress for this long is closed.
    pub header_timeout: Option<Duration>,
    /// Most client connections open at once; `None`: worked out from the open-file limit at
    /// start ([`GatewayConfig::connection_limit`]).
    pub max_connections: Option<usize>,
    /// Request headers recorded.
    pub captured_headers: Vec<HeaderName>,
    /// Content capture.
    pub capture: CapturePolicy,
    /// Engine-span ingest.
    pub ingest: IngestConfig,
    /// Where each setting came from.
    pub origins: Vec<(&'static str, Origin)>,
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
        resolve_gateway(
            &explicit,
            &CaptureSettings::default(),
            &[("", "")],
            &FileConfig::default(),
        )
    }

    /// The most client connections the proxy keeps open: `max_connections` if set, else
    /// what the open-file limit leaves once the other listeners, the upstream connection each
    /// client connection may hold, and the process's own files are counted.
    pub fn connection_limit(&self) -> usize {
        if let Some(n) = self.max_connections {
            return n;
        }
        let limit = crate::server::open_file_limit().unwrap_or(1024);
        let reserved = OWN_FILES + 3 * SIDE_LISTENER_CONNECTIONS as u64;
        usize::try_from(limit.saturating_sub(reserved) / 2)
            .unwrap_or(usize::MAX)
            .max(1)
    }

    fn origin(&self, name: &str) -> String {
        self.origins
            .iter()
            .find(|(n, _)| *n == name)
            .map_or_else(|| "default".to_owned(), |(_, o)| o.to_string())
    }
}

impl fmt::Display for GatewayConfig {
    /// Every setting with its origin; the upstream's userinfo is hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Option<Duration>| {
            d.map_or_else(|| "none".to_owned(), |d| d.as_millis().to_string())
        };
        let addr = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
        let c = &self.capture;
        let rows: Vec<(&str, String)> = vec![
            ("upstream", redact_userinfo(&self.upstream.base)),
            ("listen", self.listen.to_string()),
            (
                "admin",
                self.admin
                    .map_or_else(|| "off".to_owned(), |a| a.to_string()),
            ),
            ("upstream_h2c", self.upstream_h2c.to_string()),
            ("provider", self.provider.clone()),
            ("connect_timeout_ms", ms(Some(self.timeouts.connect))),
            ("first_byte_timeout_ms", ms(Some(self.timeouts.first_byte))),
            ("idle_timeout_ms", ms(self.timeouts.idle)),
            ("total_timeout_ms", ms(self.timeouts.total)),
            ("inject_usage", self.inject_usage.to_string()),
            (
                "traceresponse_header",
                self.traceresponse_header
                    .as_ref()
                    .map_or("-", |h| h.as_str())
                    .to_owned(),
            ),
            (
                "dialects",
                self.dialects
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("shutdown_grace_ms", ms(Some(self.shutdown_grace))),
            ("max_parse_bytes", self.max_parse_bytes.to_string()),
            (
                "max_parse_bytes_total",
                self.max_parse_bytes_total.to_string(),
            ),
            ("header_timeout_ms", ms(self.header_timeout)),
            (
                "max_connections",
                match self.max_connections {
                    Some(n) => n.to_string(),
                    None => format!("auto ({})", self.connection_limit()),
                },
            ),
            (
                "captured_headers",
                self.captured_headers
                    .iter()
                    .map(HeaderName::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("capture.enabled", c.enabled.to_string()),
            ("capture.max_length", c.max_length.to_string()),
            ("capture.hide_inputs", c.hide_inputs.to_string()),
            ("capture.hide_outputs", c.hide_outputs.to_string()),
            (
                "capture.hide_input_messages",
                c.hide_input_messages.to_string(),
            ),
            (
                "capture.hide_output_messages",
                c.hide_output_messages.to_string(),
            ),
            ("capture.hide_input_text", c.hide_input_text.to_string()),
            ("capture.hide_output_text", c.hide_output_text.to_string()),
            (
                "capture.hide_tool_definitions",
                c.hide_tool_definitions.to_string(),
            ),
            (
                "capture.hide_system_instructions",
                c.hide_system_instructions.to_string(),
            ),
            ("capture.redact", format!("{} rule(s)", c.redactions.len())),
            ("otlp_ingest_grpc", addr(self.ingest.grpc)),
            ("otlp_ingest_http", addr(self.ingest.http)),
            ("ingest_max_bytes", self.ingest.max_bytes.to_string()),
            (
                "ingest_drop_startup_spans",
                self.ingest.drop_startup_spans.to_string(),
            ),
            (
                "ingest_drop_span_names",
                self.ingest.drop_span_names.join(","),
            ),
            (
                "engine_model",
                self.ingest
                    .engine_model
                    .clone()
                    .unwrap_or_else(|| "-".into()),
            ),
            ("join_capacity", self.ingest.join_capacity.to_string()),
            ("join_ttl_ms", ms(Some(self.ingest.join_ttl))),
            ("join_wait_ms", ms(Some(self.ingest.join_wait))),
        ];
        for (name, value) in rows {
            writeln!(f, "{name:<32} = {value:<30} # {}", self.origin(name))?;
        }
        Ok(())
    }
}

/// Both halves of a loaded configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The gateway's.
    pub gateway: GatewayConfig,
    /// The exporter's.
    pub exporter: ExporterConfig,
}

/// Resolves flags (`explicit`, `explicit_capture`, `explicit_exporter`), the environment and
/// the file into both configurations, or every error in any layer.
pub fn load(
    explicit: &GatewaySettings,
    explicit_capture: &CaptureSettings,
    explicit_exporter: &ExporterSettings,
    env: &dyn Env,
    file: &FileConfig,
) -> Result<Loaded, ConfigErrors> {
    let gateway = resolve_gateway(explicit, explicit_capture, env, file);
    let exporter = inferscope_export::config::resolve(Layers {
        explicit: explicit_exporter,
        env,
        file: &file.exporter,
    });
    match (gateway, exporter) {
        (Ok(gateway), Ok(exporter)) => {
            if let Some(e) = export_loop(&gateway, &exporter) {
                return Err(ConfigErrors(vec![e]));
            }
            Ok(Loaded { gateway, exporter })
        }
        (g, e) => {
            let mut errors = Vec::new();
            if let Err(ConfigErrors(es)) = g {
                errors.extend(es);
            }
            if let Err(ConfigErrors(es)) = e {
                errors.extend(es);
            }
            Err(ConfigErrors(errors))
        }
    }
}

/// An exporter endpoint that is one of the gateway's own ingest listeners would send every span
/// round in a loop.
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
            return Some(ConfigError {
                origin: Origin::Explicit(name),
                value: a.to_string(),
                reason: format!(
                    "the exporter endpoint {} is this ingest listener: spans would loop",
                    redact_userinfo(endpoint)
                ),
            });
        }
    }
    None
}

/// One layer's value of a setting, with where it came from.
struct Candidate<T> {
    value: T,
    origin: Origin,
    shown: String,
}

struct Resolver<'a> {
    env: &'a dyn Env,
    errors: Vec<ConfigError>,
    origins: Vec<(&'static str, Origin)>,
}

impl Resolver<'_> {
    fn env_value(&self, var: &'static str) -> Option<String> {
        self.env
            .var(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The first of flag, environment variable, file that is set; the environment's string is
    /// parsed with `parse_env`.
    fn pick<T: Clone + fmt::Debug>(
        &mut self,
        name: &'static str,
        flag: Option<&T>,
        var: &'static str,
        parse_env: impl Fn(&str) -> Result<T, String>,
        file: Option<&T>,
    ) -> Option<Candidate<T>> {
        let found = if let Some(v) = flag {
            Some(Candidate {
                value: v.clone(),
                origin: Origin::Explicit(name),
                shown: format!("{v:?}"),
            })
        } else if let Some(raw) = self.env_value(var) {
            match parse_env(&raw) {
                Ok(value) => Some(Candidate {
                    value,
                    origin: Origin::Env(var),
                    shown: raw,
                }),
                Err(reason) => {
                    self.errors.push(ConfigError {
                        origin: Origin::Env(var),
                        value: redact_userinfo(&raw),
                        reason,
                    });
                    return None;
                }
            }
        } else {
            file.map(|v| Candidate {
                value: v.clone(),
                origin: Origin::File(name),
                shown: format!("{v:?}"),
            })
        };
        if let Some(c) = &found {
            self.origins.push((name, c.origin.clone()));
        }
        found
    }

    /// [`Resolver::pick`], then a check that turns the value into its typed form.
    #[allow(
        clippy::too_many_arguments,
        reason = "one setting's layers, parsers and default, each call reads as a table row"
    )]
    fn typed<T: Clone + fmt::Debug, U>(
        &mut self,
        name: &'static str,
        flag: Option<&T>,
        var: &'static str,
        parse_env: impl Fn(&str) -> Result<T, String>,
        file: Option<&T>,
        check: impl Fn(&T) -> Result<U, String>,
        default: U,
    ) -> U {
        let Some(c) = self.pick(name, flag, var, parse_env, file) else {
            return default;
        };
        match check(&c.value) {
            Ok(u) => u,
            Err(reason) => {
                // A URL's userinfo (a password) never reaches an error message.
                self.errors.push(ConfigError {
                    origin: c.origin,
                    value: redact_userinfo(&c.shown),
                    reason,
                });
                default
            }
        }
    }
}

/// One gateway setting from its three layers: `layer!(resolver, flags, file, field, VAR,
/// parse_env, check, default)`; the field's name is its name in the file and in `--print-config`.
macro_rules! layer {
    ($r:ident, $flags:ident, $file:ident, $field:ident, $var:expr, $parse:expr, $check:expr, $default:expr) => {
        $r.typed(
            stringify!($field),
            $flags.$field.as_ref(),
            $var,
            $parse,
            $file.$field.as_ref(),
            $check,
            $default,
        )
    };
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_num<T: FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| "expected a whole number".to_owned())
}

fn parse_list(s: &str) -> Result<Vec<String>, String> {
    Ok(s.split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect())
}

fn parse_string(s: &str) -> Result<String, String> {
    Ok(s.to_owned())
}

fn ok<T: Clone>(v: &T) -> Result<T, String> {
    Ok(v.clone())
}

fn millis(v: &u64) -> Result<Duration, String> {
    Ok(Duration::from_millis(*v))
}

fn optional_millis(v: &u64) -> Result<Option<Duration>, String> {
    Ok((*v > 0).then(|| Duration::from_millis(*v)))
}

fn socket(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| "expected an address like 127.0.0.1:9000".to_owned())
}

/// Parses an upstream base URL: `http://host[:port][/prefix]`.
pub fn parse_upstream(url: &str) -> Result<Upstream, String> {
    let uri: http::Uri = url.parse().map_err(|_| "not a URL".to_owned())?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err("https upstreams are not supported yet; put the gateway beside the server it fronts".into());
        }
        _ => return Err("expected an http:// URL".into()),
    }
    let authority = uri.authority().cloned().ok_or("the URL has no host")?;
    // Anywhere, not only in the authority: a password holding `/` ends the authority early.
    if url.contains('@') {
        return Err("credentials in the upstream URL are not supported".into());
    }
    inferscope_export::config::check_port(&authority)?;
    if uri.query().is_some() {
        return Err("the upstream URL cannot have a query".into());
    }
    let path_prefix = uri.path().trim_end_matches('/').to_owned();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(80);
    Ok(Upstream {
        base: format!("http://{authority}{path_prefix}"),
        authority,
        path_prefix,
        host,
        port,
    })
}

fn resolve_gateway(
    flags: &GatewaySettings,
    cflags: &CaptureSettings,
    env: &dyn Env,
    file: &FileConfig,
) -> Result<GatewayConfig, ConfigErrors> {
    use vars::*;
    let f = &file.gateway;
    let cf = &file.capture;
    let mut r = Resolver {
        env,
        errors: Vec::new(),
        origins: Vec::new(),
    };

    let upstream_default =
        parse_upstream("http://127.0.0.1:8000").map_err(|_| ConfigErrors(Vec::new()))?;
    let upstream = r.typed(
        "upstream",
        flags.upstream.as_ref(),
        UPSTREAM,
        parse_string,
        f.upstream.as_ref(),
        |v| parse_upstream(v),
        upstream_default,
    );
    let listen = r.typed(
        "listen",
        flags.listen.as_ref(),
        LISTEN,
        parse_string,
        f.listen.as_ref(),
        |v: &String| socket(v),
        SocketAddr::from(([0, 0, 0, 0], 9000)),
    );
    let admin = r.typed(
        "admin",
        flags.admin.as_ref(),
        ADMIN,
        parse_string,
        f.admin.as_ref(),
        |v| {
            if v == "off" {
                Ok(None)
            } else {
                socket(v).map(Some)
            }
        },
        Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
    );
    let upstream_h2c = layer!(
        r,
        flags,
        f,
        upstream_h2c,
        UPSTREAM_H2C,
        parse_bool,
        ok,
        false
    );
    let provider = r.typed(
        "provider",
        flags.provider.as_ref(),
        PROVIDER,
        parse_string,
        f.provider.as_ref(),
        |v| {
            if v.is_empty() {
                Err("cannot be empty".into())
            } else {
                Ok(v.clone())
            }
        },
        inferscope_semconv::value::provider::VLLM.to_owned(),
    );
    let connect = layer!(
        r,
        flags,
        f,
        connect_timeout_ms,
        CONNECT_TIMEOUT_MS,
        parse_num,
        millis,
        Duration::from_secs(5)
    );
    let first_byte = layer!(
        r,
        flags,
        f,
        first_byte_timeout_ms,
        FIRST_BYTE_TIMEOUT_MS,
        parse_num,
        millis,
        Duration::from_secs(600)
    );
    let idle = layer!(
        r,
        flags,
        f,
        idle_timeout_ms,
        IDLE_TIMEOUT_MS,
        parse_num,
        optional_millis,
        Some(Duration::from_secs(300))
    );
    let total = layer!(
        r,
        flags,
        f,
        total_timeout_ms,
        TOTAL_TIMEOUT_MS,
        parse_num,
        optional_millis,
        None
    );
    let inject_usage = layer!(
        r,
        flags,
        f,
        inject_usage,
        INJECT_USAGE,
        parse_bool,
        ok,
        true
    );
    let traceresponse_header = r.typed(
        "traceresponse_header",
        flags.traceresponse_header.as_ref(),
        TRACERESPONSE_HEADER,
        parse_string,
        f.traceresponse_header.as_ref(),
        |v| {
            if v.is_empty() {
                Ok(None)
            } else {
                HeaderName::from_str(v)
                    .map(Some)
                    .map_err(|_| "not a valid header name".to_owned())
            }
        },
        Some(HeaderName::from_static("traceresponse")),
    );
    let dialects = r.typed(
        "dialects",
        flags.dialects.as_ref(),
        DIALECTS,
        parse_list,
        f.dialects.as_ref(),
        |names| {
            let mut out = vec![Dialect::OTel];
            for n in names {
                let d = Dialect::parse(n)
                    .ok_or_else(|| format!("unknown dialect `{n}` (otel, vllm, openinference)"))?;
                if !out.contains(&d) {
                    out.push(d);
                }
            }
            Ok(out)
        },
        vec![Dialect::OTel],
    );
    let shutdown_grace = layer!(
        r,
        flags,
        f,
        shutdown_grace_ms,
        SHUTDOWN_GRACE_MS,
        parse_num,
        millis,
        Duration::from_secs(30)
    );
    let max_parse_bytes = r.typed(
        "max_parse_bytes",
        flags.max_parse_bytes.as_ref(),
        MAX_PARSE_BYTES,
        parse_num,
        f.max_parse_bytes.as_ref(),
        |v| {
            if *v < 1024 {
                Err("must be at least 1024".into())
            } else {
                Ok(*v)
            }
        },
        32 << 20,
    );
    let max_parse_bytes_total = layer!(
        r,
        flags,
        f,
        max_parse_bytes_total,
        MAX_PARSE_BYTES_TOTAL,
        parse_num,
        |v: &usize| if *v < max_parse_bytes {
            Err(format!(
                "must be at least max_parse_bytes ({max_parse_bytes})"
            ))
        } else {
            Ok(*v)
        },
        (64 << 20).max(max_parse_bytes)
    );
    let header_timeout = layer!(
        r,
        flags,
        f,
        header_timeout_ms,
        HEADER_TIMEOUT_MS,
        parse_num,
        optional_millis,
        Some(Duration::from_secs(30))
    );
    let max_connections = layer!(
        r,
        flags,
        f,
        max_connections,
        MAX_CONNECTIONS,
        parse_num,
        |v: &usize| if *v == 0 {
            Err("must be above 0".to_owned())
        } else {
            Ok(Some(*v))
        },
        None
    );
    let default_headers: Vec<HeaderName> = DEFAULT_CAPTURED_HEADERS
        .iter()
        .map(|h| HeaderName::from_static(h))
        .collect();
    let captured_headers = r.typed(
        "captured_headers",
        flags.captured_headers.as_ref(),
        CAPTURED_HEADERS,
        parse_list,
        f.captured_headers.as_ref(),
        |names| {
            names
                .iter()
                .map(|n| {
                    let h = HeaderName::from_str(n)
                        .map_err(|_| format!("`{n}` is not a header name"))?;
                    if SECRET_HEADERS.contains(&h.as_str()) {
                        return Err(format!("`{n}` carries credentials and is never recorded"));
                    }
                    Ok(h)
                })
                .collect()
        },
        default_headers,
    );

    // Engine-span ingest.
    let di = IngestConfig::default();
    let optional_addr = |v: &String| {
        if v == "off" {
            Ok(None)
        } else {
            socket(v).map(Some)
        }
    };
    let ingest_grpc = layer!(
        r,
        flags,
        f,
        otlp_ingest_grpc,
        OTLP_INGEST_GRPC,
        parse_string,
        optional_addr,
        di.grpc
    );
    let ingest_http = layer!(
        r,
        flags,
        f,
        otlp_ingest_http,
        OTLP_INGEST_HTTP,
        parse_string,
        optional_addr,
        di.http
    );
    let ingest_max_bytes = layer!(
        r,
        flags,
        f,
        ingest_max_bytes,
        INGEST_MAX_BYTES,
        parse_num,
        |v: &usize| if *v < 1024 {
            Err("must be at least 1024".to_owned())
        } else {
            Ok(*v)
        },
        di.max_bytes
    );
    let drop_startup_spans = layer!(
        r,
        flags,
        f,
        ingest_drop_startup_spans,
        INGEST_DROP_STARTUP_SPANS,
        parse_bool,
        ok,
        false
    );
    let drop_span_names = layer!(
        r,
        flags,
        f,
        ingest_drop_span_names,
        INGEST_DROP_SPAN_NAMES,
        parse_list,
        ok,
        Vec::new()
    );
    let engine_model = layer!(
        r,
        flags,
        f,
        engine_model,
        ENGINE_MODEL,
        parse_string,
        |v: &String| Ok(Some(v.clone())),
        None
    );
    let join_capacity = layer!(
        r,
        flags,
        f,
        join_capacity,
        JOIN_CAPACITY,
        parse_num,
        |v: &usize| if *v == 0 {
            Err("must be above 0".to_owned())
        } else {
            Ok(*v)
        },
        di.join_capacity
    );
    let join_ttl = layer!(
        r,
        flags,
        f,
        join_ttl_ms,
        JOIN_TTL_MS,
        parse_num,
        millis,
        di.join_ttl
    );
    let join_wait = layer!(
        r,
        flags,
        f,
        join_wait_ms,
        JOIN_WAIT_MS,
        parse_num,
        millis,
        di.join_wait
    );
    let mut ports = std::collections::HashSet::new();
    for (name, a) in [
        ("listen", Some(listen)),
        ("admin", admin),
        ("otlp_ingest_grpc", ingest_grpc),
        ("otlp_ingest_http", ingest_http),
    ] {
        if let Some(a) = a.filter(|a| a.port() != 0)
            && !ports.insert(a.port())
        {
            r.errors.push(ConfigError {
                origin: Origin::Explicit(name),
                value: a.to_string(),
                reason: "this port is already used by another of the gateway's listeners".into(),
            });
        }
    }

    // Content capture. OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT is read when
    // INFERSCOPE_CAPTURE_CONTENT is not set.
    let d = CapturePolicy::default();
    let enabled_var = if env
        .var(CAPTURE_CONTENT)
        .is_some_and(|v| !v.trim().is_empty())
    {
        CAPTURE_CONTENT
    } else {
        OTEL_CAPTURE_CONTENT
    };
    let enabled = r.typed(
        "capture.enabled",
        cflags.enabled.as_ref(),
        enabled_var,
        parse_bool,
        cf.enabled.as_ref(),
        ok,
        d.enabled,
    );
    let max_length = r.typed(
        "capture.max_length",
        cflags.max_length.as_ref(),
        CAPTURE_MAX_LENGTH,
        parse_num,
        cf.max_length.as_ref(),
        |v| {
            if *v == 0 {
                Err("must be above 0".into())
            } else {
                Ok(*v)
            }
        },
        d.max_length,
    );
    let mut switch =
        |name: &'static str, flag: Option<bool>, var: &'static str, file: Option<bool>| {
            r.typed(
                name,
                flag.as_ref(),
                var,
                parse_bool,
                file.as_ref(),
                ok,
                false,
            )
        };
    let hide_inputs = switch(
        "capture.hide_inputs",
        cflags.hide_inputs,
        HIDE_INPUTS,
        cf.hide_inputs,
    );
    let hide_outputs = switch(
        "capture.hide_outputs",
        cflags.hide_outputs,
        HIDE_OUTPUTS,
        cf.hide_outputs,
    );
    let hide_input_messages = switch(
        "capture.hide_input_messages",
        cflags.hide_input_messages,
        HIDE_INPUT_MESSAGES,
        cf.hide_input_messages,
    );
    let hide_output_messages = switch(
        "capture.hide_output_messages",
        cflags.hide_output_messages,
        HIDE_OUTPUT_MESSAGES,
        cf.hide_output_messages,
    );
    let hide_input_text = switch(
        "capture.hide_input_text",
        cflags.hide_input_text,
        HIDE_INPUT_TEXT,
        cf.hide_input_text,
    );
    let hide_output_text = switch(
        "capture.hide_output_text",
        cflags.hide_output_text,
        HIDE_OUTPUT_TEXT,
        cf.hide_output_text,
    );
    let hide_tool_definitions = switch(
        "capture.hide_tool_definitions",
        cflags.hide_tool_definitions,
        HIDE_TOOL_DEFINITIONS,
        cf.hide_tool_definitions,
    );
    let hide_system_instructions = switch(
        "capture.hide_system_instructions",
        cflags.hide_system_instructions,
        HIDE_SYSTEM_INSTRUCTIONS,
        cf.hide_system_instructions,
    );
    let replacement = cflags
        .redact_replacement
        .clone()
        .or_else(|| cf.redact_replacement.clone())
        .unwrap_or_else(|| REDACTED.to_owned());
    let redactions = r.typed(
        "capture.redact",
        cflags.redact.as_ref(),
        REDACT,
        |s| Ok(vec![s.to_owned()]),
        cf.redact.as_ref(),
        |patterns| {
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    regex::Regex::new(p)
                        .map(|pattern| Redaction {
                            pattern,
                            replacement: replacement.clone(),
                        })
                        .map_err(|e| {
                            format!(
                                "pattern {} is not a regular expression: {}",
                                i + 1,
                                e.to_string().lines().last().unwrap_or("")
                            )
                        })
                })
                .collect()
        },
        Vec::new(),
    );

    if !r.errors.is_empty() {
        return Err(ConfigErrors(r.errors));
    }
    Ok(GatewayConfig {
        upstream,
        listen,
        admin,
        upstream_h2c,
        provider,
        timeouts: Timeouts {
            connect,
            first_byte,
            idle,
            total,
        },
        inject_usage,
        traceresponse_header,
        dialects,
        shutdown_grace,
        max_parse_bytes,
        max_parse_bytes_total,
        header_timeout,
        max_connections,
        captured_headers,
        capture: CapturePolicy {
            enabled,
            max_length,
            hide_inputs,
            hide_outputs,
            hide_input_messages,
            hide_output_messages,
            hide_input_text,
            hide_output_text,
            hide_tool_definitions,
            hide_system_instructions,
            redactions,
        },
        ingest: IngestConfig {
            grpc: ingest_grpc,
            http: ingest_http,
            max_bytes: ingest_max_bytes,
            drop_startup_spans,
            drop_span_names,
            engine_model,
            join_capacity,
            join_ttl,
            join_wait,
        },
        origins: r.origins,
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
        let file: FileConfig = toml::from_str(file).unwrap();
        resolve_gateway(&flags, &CaptureSettings::default(), &env.to_vec(), &file)
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
    fn an_exporter_pointed_at_our_own_ingest_is_refused() {
        let file = FileConfig {
            gateway: GatewaySettings {
                otlp_ingest_grpc: Some("127.0.0.1:4327".into()),
                ..GatewaySettings::default()
            },
            ..FileConfig::default()
        };
        let exporter = ExporterSettings {
            endpoint: Some("http://localhost:4327".into()),
            ..ExporterSettings::default()
        };
        let errors = load(
            &GatewaySettings::default(),
            &CaptureSettings::default(),
            &exporter,
            &[("", "")],
            &file,
        )
        .unwrap_err();
        assert!(errors.to_string().contains("loop"), "{errors}");
        let fine = ExporterSettings {
            endpoint: Some("http://collector:4317".into()),
            ..ExporterSettings::default()
        };
        assert!(
            load(
                &GatewaySettings::default(),
                &CaptureSettings::default(),
                &fine,
                &[("", "")],
                &file
            )
            .is_ok()
        );
        // Two listeners on one port.
        let clash = GatewaySettings {
            admin: Some("127.0.0.1:4327".into()),
            ..GatewaySettings::default()
        };
        assert!(resolve_gateway(&clash, &CaptureSettings::default(), &[("", "")], &file).is_err());
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
        let unknown = toml::from_str::<FileConfig>("[gateway]\nbogus = 1\n").unwrap_err();
        assert!(unknown.message().contains("bogus"), "{unknown}");
    }
}
