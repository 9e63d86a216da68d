//! Exporter configuration: explicit settings > signal-specific variable > generic variable >
//! configuration file > default, with every error reported at once.
//!
//! The environment variables are those of the OpenTelemetry specification:
//!
//! | setting | variables (first wins) | default |
//! |---|---|---|
//! | exporters | `OTEL_TRACES_EXPORTER` (`otlp`, `console`, `none`, comma-separated) | `otlp` |
//! | protocol | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` | `grpc` |
//! | endpoint | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as given), `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/traces` for HTTP) | `http://localhost:4317`, or `http://localhost:4318/v1/traces` for HTTP |
//! | headers | `OTEL_EXPORTER_OTLP_HEADERS` merged with `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (which wins per key); values URL-decoded | none |
//! | compression | `…_TRACES_COMPRESSION`, `…_COMPRESSION` (`gzip`, `none`) | none |
//! | timeout | `…_TRACES_TIMEOUT`, `…_TIMEOUT` (ms) | 10000 |
//! | TLS | `…_TRACES_CERTIFICATE`, `…_CERTIFICATE`; `…_CLIENT_CERTIFICATE`, `…_CLIENT_KEY`; `…_INSECURE` | system roots |
//! | resource | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | `service.name=inferscope` |
//! | sampler | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | `parentbased_always_on` |
//! | batching | `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_EXPORT_TIMEOUT` | 2048, 512, 5000 ms, 30000 ms |
//! | off switch | `OTEL_SDK_DISABLED` (`true`/`false`) | `false` |
//!
//! An empty variable counts as unset. A value that cannot be used is an error naming the
//! variable (or setting) and the value — except secrets, such as header values, which are
//! never echoed.

mod env;
mod settings;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use env::{Env, ProcessEnv};
pub use settings::ExporterSettings;

use inferscope_core::Sampler;

use crate::secret::Secret;

/// Names of the environment variables read.
pub mod vars {
    /// `otlp`, `console`, `none`.
    pub const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
    /// Traces protocol.
    pub const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
    /// Generic protocol.
    pub const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    /// Traces endpoint, used as given.
    pub const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    /// Generic endpoint; `/v1/traces` is appended for HTTP.
    pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    /// Traces headers.
    pub const TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
    /// Generic headers.
    pub const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
    /// Traces compression.
    pub const TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
    /// Generic compression.
    pub const COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
    /// Traces timeout (ms).
    pub const TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
    /// Generic timeout (ms).
    pub const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
    /// Traces CA certificate.
    pub const TRACES_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
    /// Generic CA certificate.
    pub const CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
    /// Traces client certificate.
    pub const TRACES_CLIENT_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE";
    /// Generic client certificate.
    pub const CLIENT_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
    /// Traces client key.
    pub const TRACES_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY";
    /// Generic client key.
    pub const CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";
    /// Traces insecure switch.
    pub const TRACES_INSECURE: &str = "OTEL_EXPORTER_OTLP_TRACES_INSECURE";
    /// Generic insecure switch.
    pub const INSECURE: &str = "OTEL_EXPORTER_OTLP_INSECURE";
    /// `service.name`.
    pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
    /// Resource attributes.
    pub const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
    /// Sampler name.
    pub const TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
    /// Sampler argument.
    pub const TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
    /// Queue size.
    pub const BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
    /// Batch size.
    pub const BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
    /// Schedule delay (ms).
    pub const BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
    /// Export timeout (ms).
    pub const BSP_EXPORT_TIMEOUT: &str = "OTEL_BSP_EXPORT_TIMEOUT";
    /// Off switch.
    pub const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
}

impl Protocol {
    /// The name used in `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::HttpJson => "http/json",
        }
    }

    fn parse(s: &str) -> Result<Protocol, String> {
        match s.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => Ok(Protocol::HttpJson),
            _ => Err("expected grpc, http/protobuf or http/json".into()),
        }
    }

    /// Whether this is one of the HTTP protocols.
    pub fn is_http(self) -> bool {
        !matches!(self, Protocol::Grpc)
    }
}

/// Body compression of export requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// None.
    None,
    /// gzip.
    Gzip,
}

/// Where spans go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExporterKind {
    /// OTLP to the configured endpoint.
    Otlp,
    /// One readable line per request on standard output.
    Console,
}

/// TLS settings of the OTLP connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    /// Extra CA certificate (PEM file) trusted besides the system roots.
    pub ca_certificate: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    pub client_certificate: Option<PathBuf>,
    /// Client key for mutual TLS.
    pub client_key: Option<PathBuf>,
}

/// The OTLP exporter's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The transport.
    pub protocol: Protocol,
    /// The full URL requests go to (for gRPC, the server's base URL).
    pub endpoint: String,
    /// Whether the connection uses TLS.
    pub tls_enabled: bool,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Extra request headers; values are secrets.
    pub headers: Vec<(String, Secret)>,
    /// Body compression.
    pub compression: Compression,
    /// Timeout of one request.
    pub timeout: Duration,
}

/// Batching of the span queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Spans held while waiting; more are dropped and counted.
    pub max_queue_size: usize,
    /// Most spans per export request.
    pub max_export_batch_size: usize,
    /// Longest wait before a partial batch goes out.
    pub schedule_delay: Duration,
    /// Longest time for one batch, retries included.
    pub export_timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> BatchConfig {
        BatchConfig {
            max_queue_size: 2048,
            max_export_batch_size: 512,
            schedule_delay: Duration::from_millis(5000),
            export_timeout: Duration::from_millis(30000),
        }
    }
}

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An explicit setting (builder or command-line flag) of this name.
    Explicit(&'static str),
    /// This environment variable.
    Env(&'static str),
    /// The configuration file key of this name.
    File(&'static str),
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Explicit(name) => write!(f, "setting `{name}`"),
            Origin::Env(var) => f.write_str(var),
            Origin::File(name) => write!(f, "config file `{name}`"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// One unusable value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the value came from.
    pub origin: Origin,
    /// The value, or `<redacted>` for a secret.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}: {}", self.origin, self.value, self.reason)
    }
}

/// Every unusable value found, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} error", self.0.len())?;
        if self.0.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str("):")?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

/// The typed configuration of an export pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterConfig {
    /// Tracing is off entirely.
    pub disabled: bool,
    /// Where spans go.
    pub exporters: Vec<ExporterKind>,
    /// OTLP settings, used when [`ExporterKind::Otlp`] is among the exporters.
    pub otlp: OtlpConfig,
    /// Also write OTLP-JSON lines to this file.
    pub file: Option<PathBuf>,
    /// Resource attributes, `service.name` first.
    pub resource: Vec<(String, String)>,
    /// The sampler.
    pub sampler: Sampler,
    /// Queue and batching.
    pub batch: BatchConfig,
    /// Where each setting came from, for `--print-config`.
    pub origins: Vec<(&'static str, Origin)>,
}

impl ExporterConfig {
    /// The `service.name` resource attribute.
    pub fn service_name(&self) -> &str {
        self.resource
            .iter()
            .find(|(k, _)| k == "service.name")
            .map_or("inferscope", |(_, v)| v.as_str())
    }

    fn origin(&self, name: &str) -> String {
        self.origins
            .iter()
            .find(|(n, _)| *n == name)
            .map_or_else(|| "default".to_owned(), |(_, o)| o.to_string())
    }
}

impl fmt::Display for ExporterConfig {
    /// Prints every setting with its origin; secrets are hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<&str> = self
            .exporters
            .iter()
            .map(|k| match k {
                ExporterKind::Otlp => "otlp",
                ExporterKind::Console => "console",
            })
            .collect();
        let o = &self.otlp;
        let b = &self.batch;
        let headers: Vec<String> = o.headers.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let resource: Vec<String> = self
            .resource
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("-".to_owned(), |p| p.display().to_string())
        };
        let rows: [(&str, String); 18] = [
            ("disabled", self.disabled.to_string()),
            ("exporters", kinds.join(",")),
            ("protocol", o.protocol.as_str().to_owned()),
            ("endpoint", redact_userinfo(&o.endpoint)),
            ("tls", o.tls_enabled.to_string()),
            ("certificate", path(&o.tls.ca_certificate)),
            ("client_certificate", path(&o.tls.client_certificate)),
            ("client_key", path(&o.tls.client_key)),
            ("headers", headers.join(",")),
            ("compression", format!("{:?}", o.compression).to_lowercase()),
            ("timeout_ms", o.timeout.as_millis().to_string()),
            ("resource", resource.join(",")),
            ("sampler", self.sampler.describe()),
            ("max_queue_size", b.max_queue_size.to_string()),
            ("max_export_batch_size", b.max_export_batch_size.to_string()),
            (
                "schedule_delay_ms",
                b.schedule_delay.as_millis().to_string(),
            ),
            (
                "export_timeout_ms",
                b.export_timeout.as_millis().to_string(),
            ),
            ("file", path(&self.file)),
        ];
        for (name, value) in rows {
            writeln!(f, "{name:<22} = {value:<40} # {}", self.origin(name))?;
        }
        Ok(())
    }
}

/// `scheme://user:pass@host/…` → `scheme://<redacted>@host/…`, for logs and errors.
pub fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    // A password may hold an unescaped `/`, which ends the authority early: everything up to
    // the last `@` before the query goes (an `@` in a path is rare enough to hide too much).
    let query = rest.find(['?', '#']).unwrap_or(rest.len());
    let cut = rest[..query].rfind('@');
    match cut {
        Some(at) => {
            let sep = if scheme.is_empty() { "" } else { "://" };
            format!("{scheme}{sep}<redacted>@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

/// The layers [`resolve`] reads.
pub struct Layers<'a> {
    /// Explicit settings (builder or flags): the highest precedence.
    pub explicit: &'a ExporterSettings,
    /// The environment.
    pub env: &'a dyn Env,
    /// The configuration file's settings.
    pub file: &'a ExporterSettings,
}

struct Resolver<'a> {
    layers: Layers<'a>,
    errors: Vec<ConfigError>,
    origins: Vec<(&'static str, Origin)>,
}

impl Resolver<'_> {
    fn env(&self, var: &'static str) -> Option<String> {
        self.layers
            .env
            .var(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn error(&mut self, origin: Origin, value: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            origin,
            value: value.into(),
            reason: reason.into(),
        });
    }

    /// explicit > each of `vars` in order > file; records the origin under `name`.
    /// An environment value that `from_env` rejects is an error, and the field falls back to
    /// its default so the remaining fields are still checked.
    fn pick<T>(
        &mut self,
        name: &'static str,
        explicit: Option<T>,
        vars: &[&'static str],
        from_env: impl Fn(&str) -> Result<T, String>,
        file: Option<T>,
    ) -> Option<(T, Origin)> {
        let found = if let Some(v) = explicit {
            Some((v, Origin::Explicit(name)))
        } else if let Some((var, raw)) =
            vars.iter().find_map(|var| self.env(var).map(|v| (*var, v)))
        {
            match from_env(&raw) {
                Ok(v) => Some((v, Origin::Env(var))),
                Err(reason) => {
                    self.error(Origin::Env(var), raw, reason);
                    None
                }
            }
        } else {
            file.map(|v| (v, Origin::File(name)))
        };
        if let Some((_, origin)) = &found {
            self.origins.push((name, origin.clone()));
        }
        found
    }

    /// Checks a value that came from any layer; an error names its origin.
    fn check<T>(&mut self, origin: &Origin, shown: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(reason) => {
                self.error(origin.clone(), shown, reason);
                None
            }
        }
    }
}

fn parse_u64(s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| "expected a whole number of milliseconds".to_owned())
}

fn parse_usize(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .map_err(|_| "expected a positive whole number".to_owned())
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Parses a W3C-baggage-like `key=value,key2=value2` list; values are percent-decoded.
/// The error never contains a value (header values are often secrets).
fn parse_kv_list(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, entry) in s.split(',').enumerate() {
        if entry.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = entry.split_once('=') else {
            return Err(format!("entry {} is not key=value", i + 1));
        };
        let key = k.trim();
        if key.is_empty() {
            return Err(format!("entry {} has an empty key", i + 1));
        }
        let value = percent_encoding::percent_decode_str(v.trim())
            .decode_utf8()
            .map_err(|_| format!("the value of `{key}` is not valid UTF-8 once decoded"))?;
        out.push((key.to_owned(), value.into_owned()));
    }
    Ok(out)
}

fn check_headers(headers: Vec<(String, Secret)>) -> Result<Vec<(String, Secret)>, String> {
    for (k, v) in &headers {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(format!("`{k}` is not a valid header name"));
        }
        if http::HeaderValue::from_str(v.expose()).is_err() {
            return Err(format!("the value of `{k}` is not a valid header value"));
        }
    }
    Ok(headers)
}

fn check_endpoint(endpoint: &str, protocol: Protocol) -> Result<String, String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("not a valid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(other) => {
            return Err(format!(
                "unsupported scheme `{other}` (expected http or https)"
            ));
        }
        None if protocol == Protocol::Grpc => {}
        None => return Err("an HTTP endpoint needs an http:// or https:// scheme".into()),
    }
    if uri.host().is_none() {
        return Err("the URL has no host".into());
    }
    if let Some(authority) = uri.authority() {
        check_port(authority)?;
    }
    Ok(endpoint.to_owned())
}

/// Checks the port of a URL's authority, when it names one: a number from 1 to 65535. (The
/// `http` crate accepts `host:notaport` and reports no port, which a client would then replace
/// with the scheme's default.)
pub fn check_port(authority: &http::uri::Authority) -> Result<(), String> {
    let text = authority.as_str();
    let host_port = text.rsplit_once('@').map_or(text, |(_, h)| h);
    let after_host = match host_port.rfind(']') {
        Some(end) => &host_port[end + 1..],
        None => host_port,
    };
    let Some((_, port)) = after_host.rsplit_once(':') else {
        return Ok(());
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        // The text is not repeated: with a password that holds a `/`, it may be part of it.
        _ => Err("the port is not a number from 1 to 65535".to_owned()),
    }
}

/// Appends `v1/traces` to a generic base endpoint, as the specification says for HTTP.
fn append_traces_path(base: &str) -> String {
    let (base, query) = match base.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (base, None),
    };
    let mut url = base.trim_end_matches('/').to_owned();
    url.push_str("/v1/traces");
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// Resolves the layers into a typed configuration, or every error found.
pub fn resolve(layers: Layers<'_>) -> Result<ExporterConfig, ConfigErrors> {
    let explicit = layers.explicit.clone();
    let file = layers.file.clone();
    let mut r = Resolver {
        layers,
        errors: Vec::new(),
        origins: Vec::new(),
    };
    use vars::*;

    // --- off switch and exporters ---
    let disabled = r
        .pick(
            "disabled",
            explicit.disabled,
            &[SDK_DISABLED],
            parse_bool,
            file.disabled,
        )
        .is_some_and(|(v, _)| v);

    let exporters = match r.pick(
        "exporters",
        explicit.exporters.clone(),
        &[TRACES_EXPORTER],
        |s| Ok(split_list(s)),
        file.exporters.clone(),
    ) {
        None => vec![ExporterKind::Otlp],
        Some((names, origin)) => {
            let mut kinds = Vec::new();
            for name in &names {
                match name.to_ascii_lowercase().as_str() {
                    "otlp" => kinds.push(ExporterKind::Otlp),
                    "console" | "logging" => kinds.push(ExporterKind::Console),
                    "none" => {}
                    _ => r.error(
                        origin.clone(),
                        names.join(","),
                        format!("unknown exporter `{name}` (expected otlp, console or none)"),
                    ),
                }
            }
            kinds.dedup();
            kinds
        }
    };

    // --- protocol and endpoint ---
    let protocol = match r.pick(
        "protocol",
        explicit.protocol.clone(),
        &[TRACES_PROTOCOL, PROTOCOL],
        |s| Ok(s.to_owned()),
        file.protocol.clone(),
    ) {
        None => Protocol::Grpc,
        Some((raw, origin)) => {
            let parsed = Protocol::parse(&raw);
            r.check(&origin, &raw, parsed).unwrap_or(Protocol::Grpc)
        }
    };

    let endpoint = {
        let traces = r.pick(
            "endpoint",
            explicit.endpoint.clone(),
            &[TRACES_ENDPOINT],
            |s| Ok(s.to_owned()),
            None,
        );
        let chosen = match traces {
            Some(found) => Some(found),
            None => match r.env(ENDPOINT) {
                Some(base) => {
                    r.origins.push(("endpoint", Origin::Env(ENDPOINT)));
                    let url = if protocol.is_http() {
                        append_traces_path(&base)
                    } else {
                        base
                    };
                    Some((url, Origin::Env(ENDPOINT)))
                }
                None => file.endpoint.clone().map(|e| {
                    r.origins.push(("endpoint", Origin::File("endpoint")));
                    (e, Origin::File("endpoint"))
                }),
            },
        };
        let default = if protocol.is_http() {
            "http://localhost:4318/v1/traces"
        } else {
            "http://localhost:4317"
        };
        match chosen {
            None => default.to_owned(),
            Some((url, origin)) => {
                let checked = check_endpoint(&url, protocol);
                r.check(&origin, &redact_userinfo(&url), checked)
                    .unwrap_or_else(|| default.to_owned())
            }
        }
    };

    let insecure = r
        .pick(
            "insecure",
            explicit.insecure,
            &[TRACES_INSECURE, INSECURE],
            parse_bool,
            file.insecure,
        )
        .is_some_and(|(v, _)| v);
    let tls_enabled = match endpoint.split_once("://") {
        Some(("https", _)) => true,
        Some(_) => false,
        // gRPC without a scheme: TLS unless the insecure switch says otherwise.
        None => !insecure,
    };

    let path_setting = |r: &mut Resolver<'_>,
                        name: &'static str,
                        e: Option<PathBuf>,
                        vars: &[&'static str],
                        f: Option<PathBuf>| {
        let picked = r.pick(name, e, vars, |s| Ok(PathBuf::from(s)), f);
        picked.and_then(|(p, origin)| {
            let readable = std::fs::metadata(&p)
                .map(|m| m.is_file())
                .map_err(|e| format!("cannot read the file: {e}"))
                .and_then(|is_file| {
                    if is_file {
                        Ok(p.clone())
                    } else {
                        Err("not a file".to_owned())
                    }
                });
            r.check(&origin, &p.display().to_string(), readable)
        })
    };
    let tls = TlsConfig {
        ca_certificate: path_setting(
            &mut r,
            "certificate",
            explicit.certificate.clone(),
            &[TRACES_CERTIFICATE, CERTIFICATE],
            file.certificate.clone(),
        ),
        client_certificate: path_setting(
            &mut r,
            "client_certificate",
            explicit.client_certificate.clone(),
            &[TRACES_CLIENT_CERTIFICATE, CLIENT_CERTIFICATE],
            file.client_certificate.clone(),
        ),
        client_key: path_setting(
            &mut r,
            "client_key",
            explicit.client_key.clone(),
            &[TRACES_CLIENT_KEY, CLIENT_KEY],
            file.client_key.clone(),
        ),
    };
    if tls.client_certificate.is_some() != tls.client_key.is_some() {
        r.error(
            Origin::Explicit("client_certificate"),
            "",
            "a client certificate and a client key must be given together",
        );
    }

    // --- headers: generic and traces variables merge, the traces one winning per key ---
    let headers: Vec<(String, Secret)> = if let Some(h) = explicit.headers.clone() {
        r.origins.push(("headers", Origin::Explicit("headers")));
        h.into_iter().collect()
    } else {
        let mut merged: BTreeMap<String, Secret> = BTreeMap::new();
        let mut from_env = None;
        for var in [HEADERS, TRACES_HEADERS] {
            if let Some(raw) = r.env(var) {
                match parse_kv_list(&raw) {
                    Ok(list) => {
                        for (k, v) in list {
                            merged.insert(k.to_ascii_lowercase(), Secret::new(v));
                        }
                        from_env = Some(var);
                    }
                    Err(reason) => r.error(Origin::Env(var), "<redacted>", reason),
                }
            }
        }
        if let Some(var) = from_env {
            r.origins.push(("headers", Origin::Env(var)));
            merged.into_iter().collect()
        } else if let Some(h) = file.headers.clone() {
            r.origins.push(("headers", Origin::File("headers")));
            h.into_iter().collect()
        } else {
            Vec::new()
        }
    };
    let headers = match check_headers(headers) {
        Ok(h) => h,
        Err(reason) => {
            let origin = r
                .origins
                .iter()
                .rev()
                .find(|(n, _)| *n == "headers")
                .map_or(Origin::Default, |(_, o)| o.clone());
            r.error(origin, "<redacted>", reason);
            Vec::new()
        }
    };

    let compression = match r.pick(
        "compression",
        explicit.compression.clone(),
        &[TRACES_COMPRESSION, COMPRESSION],
        |s| Ok(s.to_owned()),
        file.compression.clone(),
    ) {
        None => Compression::None,
        Some((raw, origin)) => {
            let parsed = match raw.to_ascii_lowercase().as_str() {
                "gzip" => Ok(Compression::Gzip),
                "none" => Ok(Compression::None),
                _ => Err("expected gzip or none".to_owned()),
            };
            r.check(&origin, &raw, parsed).unwrap_or(Compression::None)
        }
    };

    let timeout = r
        .pick(
            "timeout_ms",
            explicit.timeout_ms,
            &[TRACES_TIMEOUT, TIMEOUT],
            parse_u64,
            file.timeout_ms,
        )
        .map_or(Duration::from_millis(10_000), |(ms, _)| {
            Duration::from_millis(ms)
        });

    // --- resource ---
    let mut resource: BTreeMap<String, String> = BTreeMap::new();
    let mut resource_origin = None;
    if let Some(attrs) = file.resource_attributes.clone() {
        resource.extend(attrs);
        resource_origin = Some(Origin::File("resource_attributes"));
    }
    if let Some(raw) = r.env(RESOURCE_ATTRIBUTES) {
        match parse_kv_list(&raw) {
            Ok(list) => {
                resource.extend(list);
                resource_origin = Some(Origin::Env(RESOURCE_ATTRIBUTES));
            }
            Err(reason) => r.error(Origin::Env(RESOURCE_ATTRIBUTES), raw, reason),
        }
    }
    if let Some(attrs) = explicit.resource_attributes.clone() {
        resource.extend(attrs);
        resource_origin = Some(Origin::Explicit("resource_attributes"));
    }
    if let Some(origin) = resource_origin {
        r.origins.push(("resource", origin));
    }
    // service.name: explicit > OTEL_SERVICE_NAME > OTEL_RESOURCE_ATTRIBUTES > file > default.
    let service_name = if let Some(name) = explicit.service_name.clone() {
        Some(name)
    } else if let Some(name) = r.env(SERVICE_NAME) {
        Some(name)
    } else if resource.contains_key("service.name") {
        None
    } else {
        file.service_name.clone()
    };
    if let Some(name) = service_name {
        resource.insert("service.name".into(), name);
    }
    let service = resource
        .remove("service.name")
        .unwrap_or_else(|| "inferscope".to_owned());
    let mut resource_list = vec![("service.name".to_owned(), service)];
    resource_list.extend(resource);

    // --- sampler ---
    let sampler_arg = r.pick(
        "sampler_arg",
        explicit.sampler_arg.map(|a| a.to_string()),
        &[TRACES_SAMPLER_ARG],
        |s| Ok(s.to_owned()),
        file.sampler_arg.map(|a| a.to_string()),
    );
    let sampler = match r.pick(
        "sampler",
        explicit.sampler.clone(),
        &[TRACES_SAMPLER],
        |s| Ok(s.to_owned()),
        file.sampler.clone(),
    ) {
        None => Sampler::default(),
        Some((name, origin)) => {
            let arg = sampler_arg.as_ref().map(|(a, _)| a.as_str());
            match Sampler::from_name(&name, arg) {
                Ok(s) => s,
                Err(inferscope_core::sampling::SamplerError::BadRatio(a)) => {
                    let arg_origin = sampler_arg.as_ref().map_or(origin, |(_, o)| o.clone());
                    r.error(arg_origin, a, "expected a number between 0 and 1");
                    Sampler::default()
                }
                Err(e) => {
                    r.error(origin, name, e.to_string());
                    Sampler::default()
                }
            }
        }
    };

    // --- batching ---
    let defaults = BatchConfig::default();
    let max_queue_size = r
        .pick(
            "max_queue_size",
            explicit.max_queue_size,
            &[BSP_MAX_QUEUE_SIZE],
            parse_usize,
            file.max_queue_size,
        )
        .and_then(|(v, origin)| {
            let checked = if v == 0 {
                Err("must be at least 1".to_owned())
            } else {
                Ok(v)
            };
            r.check(&origin, &v.to_string(), checked)
        })
        .unwrap_or(defaults.max_queue_size);
    let max_export_batch_size = r
        .pick(
            "max_export_batch_size",
            explicit.max_export_batch_size,
            &[BSP_MAX_EXPORT_BATCH_SIZE],
            parse_usize,
            file.max_export_batch_size,
        )
        .and_then(|(v, origin)| {
            let checked = if v == 0 {
                Err("must be at least 1".to_owned())
            } else if v > max_queue_size {
                Err(format!(
                    "must not exceed the max queue size ({max_queue_size})"
                ))
            } else {
                Ok(v)
            };
            r.check(&origin, &v.to_string(), checked)
        })
        .unwrap_or(defaults.max_export_batch_size.min(max_queue_size));
    let schedule_delay = r
        .pick(
            "schedule_delay_ms",
            explicit.schedule_delay_ms,
            &[BSP_SCHEDULE_DELAY],
            parse_u64,
            file.schedule_delay_ms,
        )
        .map_or(defaults.schedule_delay, |(ms, _)| Duration::from_millis(ms));
    let export_timeout = r
        .pick(
            "export_timeout_ms",
            explicit.export_timeout_ms,
            &[BSP_EXPORT_TIMEOUT],
            parse_u64,
            file.export_timeout_ms,
        )
        .map_or(defaults.export_timeout, |(ms, _)| Duration::from_millis(ms));

    let file_sink = if let Some(p) = explicit.file.clone() {
        r.origins.push(("file", Origin::Explicit("file")));
        Some(p)
    } else if let Some(p) = file.file.clone() {
        r.origins.push(("file", Origin::File("file")));
        Some(p)
    } else {
        None
    };

    if !r.errors.is_empty() {
        return Err(ConfigErrors(r.errors));
    }
    Ok(ExporterConfig {
        disabled,
        exporters,
        otlp: OtlpConfig {
            protocol,
            endpoint,
            tls_enabled,
            tls,
            headers,
            compression,
            timeout,
        },
        file: file_sink,
        resource: resource_list,
        sampler,
        batch: BatchConfig {
            max_queue_size,
            max_export_batch_size,
            schedule_delay,
            export_timeout,
        },
        origins: r.origins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            redact_userinfo("https://user:pw@collector:4318/v1/traces"),
            "https://<redacted>@collector:4318/v1/traces"
        );
        assert_eq!(
            redact_userinfo("http://collector:4317"),
            "http://collector:4317"
        );
        assert_eq!(
            redact_userinfo("u:p@collector:4317"),
            "<redacted>@collector:4317"
        );
        assert_eq!(redact_userinfo("http://c/x?a=b@c"), "http://c/x?a=b@c");
        // A password holding `/` ends the authority early; it is hidden all the same.
        assert_eq!(
            redact_userinfo("https://user:ab/cd@collector:4318/v1/traces"),
            "https://<redacted>@collector:4318/v1/traces"
        );
    }

    #[test]
    fn traces_path_is_appended_once() {
        assert_eq!(
            append_traces_path("http://c:4318"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            append_traces_path("http://c:4318/"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            append_traces_path("http://c:4318/base/"),
            "http://c:4318/base/v1/traces"
        );
        assert_eq!(
            append_traces_path("http://c:4318?x=1"),
            "http://c:4318/v1/traces?x=1"
        );
    }

    #[test]
    fn kv_lists_decode_and_never_echo_values() {
        assert_eq!(
            parse_kv_list("a=1, b = x%20y ,,c=%2C").unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), ",".into())
            ]
        );
        let err = parse_kv_list("api-key=sk-secret,broken").unwrap_err();
        assert!(!err.contains("sk-secret"), "{err}");
        assert!(parse_kv_list("=1").is_err());
        assert!(parse_kv_list("a=%ff").is_err());
    }
}
