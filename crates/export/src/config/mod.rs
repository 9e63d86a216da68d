//! Exporter configuration: explicit settings > signal-specific variable > generic variable >
//! configuration file > default, with every error reported at once. Each setting is one row
//! of the table below ([`ExporterSettings`]); the rules that span settings (the endpoint and
//! its protocol, TLS, `service.name` and the resource, the sampler and its argument, the batch
//! and the queue) are the named functions after it.
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
//! | off switch | `OTEL_SDK_DISABLED` (`true`/`false`, or `1/0`, `yes/no`, `on/off`) | `false` |
//!
//! An empty variable counts as unset. A value that cannot be used is an error naming the
//! variable (or setting) and the value — except secrets, such as header values, which are
//! never echoed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use inferscope_settings::{
    ConfigError, ConfigErrors, Env, Origin, ProcessEnv, Report, check_port, redact_userinfo,
};

use inferscope_core::Sampler;
use inferscope_settings::{Flag, Merge, Resolver, Secret, Value, ok, opt, req, settings};

mod metrics;
pub use metrics::{MetricsConfig, MetricsSettings, Temporality, metric_vars};

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

use vars::*;

settings! {
    /// Exporter settings as a person writes them: every field optional, the same shape for
    /// explicit settings (a builder or command-line flags) and for a configuration file's
    /// `[exporter]` table (unknown keys are an error). [`resolve`] turns the layers into an
    /// [`ExporterConfig`].
    ///
    /// ```toml
    /// exporters = ["otlp", "console"]
    /// protocol = "http/protobuf"
    /// endpoint = "https://collector.example:4318/v1/traces"
    /// headers = { "x-api-key" = "…" }
    /// compression = "gzip"
    /// timeout_ms = 10000
    /// service_name = "inferscope"
    /// sampler = "parentbased_traceidratio"
    /// sampler_arg = 0.25
    /// ```
    pub struct ExporterSettings => ExporterValues, table "exporter", rows rows {
        /// Where spans go: `otlp`, `console`, `none` (comma-separated or repeated).
        exporters: Vec<String> => Vec<ExporterKind> = req(exporter_kinds), {
            default: Some("otlp"), flag: Flag::Repeat("exporter"), env: &[TRACES_EXPORTER],
        },
        /// The OTLP transport: `grpc`, `http/protobuf` or `http/json`.
        protocol: String => Protocol = req(|s: String| Protocol::parse(&s)), {
            default: Some("grpc"), flag: Flag::Value("otlp-protocol"),
            env: &[TRACES_PROTOCOL, PROTOCOL],
        },
        /// The traces endpoint; for HTTP, `/v1/traces` is appended to `OTEL_EXPORTER_OTLP_ENDPOINT` and to a URL with no path (no OTLP receiver serves `/`).
        endpoint: String => Option<String> = ok, {
            flag: Flag::Value("otlp-endpoint"), env: &[TRACES_ENDPOINT, ENDPOINT],
            default_doc: Some("http://localhost:4317 (HTTP: http://localhost:4318/v1/traces)"),
        },
        /// Headers sent with every export request (`k=v,k2=v2`, values URL-decoded); values are secrets.
        headers: Headers => Headers = req(ok), {
            default: Some(""), default_doc: Some("none"), env: &[TRACES_HEADERS, HEADERS],
            merge: Merge::EnvVars,
        },
        /// Body compression of export requests: `gzip` or `none`.
        compression: String => Compression = req(|s: String| Compression::parse(&s)), {
            default: Some("none"), env: &[TRACES_COMPRESSION, COMPRESSION],
        },
        /// Timeout of one export request, milliseconds.
        timeout_ms: u64 => Duration = req(millis), {
            default: Some("10000"), env: &[TRACES_TIMEOUT, TIMEOUT],
        },
        /// PEM file of a CA trusted besides the system roots.
        certificate: PathBuf => Option<PathBuf> = opt(readable_file), {
            env: &[TRACES_CERTIFICATE, CERTIFICATE],
        },
        /// PEM file of a client certificate (mutual TLS).
        client_certificate: PathBuf => Option<PathBuf> = opt(readable_file), {
            env: &[TRACES_CLIENT_CERTIFICATE, CLIENT_CERTIFICATE],
        },
        /// PEM file of the client certificate's key (mutual TLS).
        client_key: PathBuf => Option<PathBuf> = opt(readable_file), {
            env: &[TRACES_CLIENT_KEY, CLIENT_KEY],
        },
        /// For a gRPC endpoint without a scheme: plaintext instead of TLS.
        insecure: bool => bool = req(ok), {
            default: Some("false"), env: &[TRACES_INSECURE, INSECURE],
        },
        /// `service.name` (beats one in the resource attributes, except from the file).
        service_name: String => Option<String> = ok, {
            flag: Flag::Value("service-name"), env: &[SERVICE_NAME],
            default_doc: Some("unknown_service:<executable>"),
        },
        /// More resource attributes (`k=v,…`, URL-decoded); every layer merges, the higher winning per key.
        resource_attributes: BTreeMap<String, String> => BTreeMap<String, String> = req(ok), {
            default: Some(""), default_doc: Some("telemetry.sdk.*"), env: &[RESOURCE_ATTRIBUTES],
            merge: Merge::AllLayers,
        },
        /// `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio`.
        sampler: String => Option<String> = ok, {
            flag: Flag::Value("sampler"), env: &[TRACES_SAMPLER],
            default_doc: Some("parentbased_always_on"),
        },
        /// The ratio of the ratio samplers, from 0 to 1.
        sampler_arg: f64 => Option<f64> = ok, {
            flag: Flag::Value("sampler-arg"), env: &[TRACES_SAMPLER_ARG],
        },
        /// Spans held while waiting for export; more are dropped and counted.
        max_queue_size: usize => usize = req(at_least_one), {
            default: Some("2048"), env: &[BSP_MAX_QUEUE_SIZE],
        },
        /// Most spans in one export request (at most the queue size).
        max_export_batch_size: usize => Option<usize> = opt(at_least_one), {
            env: &[BSP_MAX_EXPORT_BATCH_SIZE], default_doc: Some("512"),
        },
        /// Longest wait before a partial batch is exported, milliseconds.
        schedule_delay_ms: u64 => Duration = req(millis), {
            default: Some("5000"), env: &[BSP_SCHEDULE_DELAY],
        },
        /// Longest time one batch may take, retries included, milliseconds.
        export_timeout_ms: u64 => Duration = req(millis), {
            default: Some("30000"), env: &[BSP_EXPORT_TIMEOUT],
        },
        /// Turns tracing off entirely.
        disabled: bool => bool = req(ok), {
            default: Some("false"), env: &[SDK_DISABLED],
        },
        /// Also write every span as OTLP-JSON lines to this file.
        file: PathBuf => Option<PathBuf> = ok, {
            flag: Flag::Value("spans-file"),
        },
    }
}

/// Export request headers: names as given in a file, lower-cased from the environment (so
/// the traces variable wins over the generic one whatever the case); values are secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Headers(pub BTreeMap<String, Secret>);

impl<const N: usize> From<[(String, Secret); N]> for Headers {
    fn from(pairs: [(String, Secret); N]) -> Headers {
        Headers(pairs.into())
    }
}

impl Value for Headers {
    const KIND: &'static str = "key=value list";
    const TEXT_IS_SECRET: bool = true;

    fn from_text(text: &str) -> Result<Headers, String> {
        let map = BTreeMap::<String, Secret>::from_text(text)?;
        Ok(Headers(
            map.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        ))
    }

    fn from_toml(value: &toml::Value) -> Result<Headers, String> {
        BTreeMap::<String, Secret>::from_toml(value).map(Headers)
    }

    fn show(&self) -> String {
        self.0.show()
    }

    fn merge(self, over: Headers) -> Headers {
        Headers(self.0.merge(over.0))
    }
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

impl Compression {
    fn parse(s: &str) -> Result<Compression, String> {
        match s.to_ascii_lowercase().as_str() {
            "gzip" => Ok(Compression::Gzip),
            "none" => Ok(Compression::None),
            _ => Err("expected gzip or none".to_owned()),
        }
    }
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
    /// Where each setting not at its default came from.
    pub origins: Vec<(&'static str, Origin)>,
    /// Every setting, its value as shown (secrets hidden) and its origin: `--print-config`.
    pub report: Report,
}

impl ExporterConfig {
    /// Where spans go, in words for a log line: `OTLP/gRPC to http://…` (credentials
    /// hidden), `the console`, a file, or `nowhere (tracing is off)`.
    pub fn destinations(&self) -> String {
        if self.disabled {
            return "nowhere (tracing is off)".to_owned();
        }
        let mut to: Vec<String> = self
            .exporters
            .iter()
            .map(|e| match e {
                ExporterKind::Otlp => format!(
                    "OTLP ({}) to {}",
                    self.otlp.protocol.as_str(),
                    redact_userinfo(&self.otlp.endpoint)
                ),
                ExporterKind::Console => "the console".to_owned(),
            })
            .collect();
        if let Some(f) = &self.file {
            to.push(format!("the file {}", f.display()));
        }
        if to.is_empty() {
            "nowhere (no exporter)".to_owned()
        } else {
            to.join(" and ")
        }
    }

    /// The `service.name` resource attribute.
    pub fn service_name(&self) -> &str {
        self.resource
            .iter()
            .find(|(k, _)| k == "service.name")
            .map_or("unknown_service", |(_, v)| v.as_str())
    }
}

impl fmt::Display for ExporterConfig {
    /// Every setting with its origin; secrets are hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report.render("exporter"))
    }
}

fn millis(v: u64) -> Result<Duration, String> {
    Ok(Duration::from_millis(v))
}

fn at_least_one(v: usize) -> Result<usize, String> {
    if v == 0 {
        Err("must be at least 1".to_owned())
    } else {
        Ok(v)
    }
}

fn exporter_kinds(names: Vec<String>) -> Result<Vec<ExporterKind>, String> {
    let mut kinds = Vec::new();
    for name in &names {
        match name.to_ascii_lowercase().as_str() {
            "otlp" => kinds.push(ExporterKind::Otlp),
            "console" | "logging" => kinds.push(ExporterKind::Console),
            "none" => {}
            _ => {
                return Err(format!(
                    "unknown exporter `{name}` (expected otlp, console or none)"
                ));
            }
        }
    }
    kinds.dedup();
    Ok(kinds)
}

fn readable_file(p: PathBuf) -> Result<PathBuf, String> {
    match std::fs::metadata(&p) {
        Ok(m) if m.is_file() => Ok(p),
        Ok(_) => Err("not a file".to_owned()),
        Err(e) => Err(format!("cannot read the file: {e}")),
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

/// Resolves the layers into a typed configuration, or every error found.
pub fn resolve(layers: Layers<'_>) -> Result<ExporterConfig, ConfigErrors> {
    let mut r = Resolver::new(layers.env, None);
    let config = resolve_with(layers.explicit, layers.file, &mut r);
    let report = r.finish()?;
    finished(config, &report).ok_or_else(|| ConfigErrors(Vec::new()))
}

/// Resolves the exporter's settings with a resolver shared with other tables (a program's
/// own defaults, one file, every error together). Call [`finished`] with its report.
pub fn resolve_with(
    explicit: &ExporterSettings,
    file: &ExporterSettings,
    r: &mut Resolver<'_>,
) -> Option<ExporterConfig> {
    let v = ExporterValues::resolve(explicit, file, r)?;
    let protocol = v.protocol;
    let endpoint = endpoint(r, v.endpoint, protocol);
    let tls_enabled = tls_enabled(&endpoint, v.insecure);
    client_identity_pair(
        r,
        &rows::client_certificate,
        &v.client_certificate,
        &v.client_key,
    );
    let headers = headers(r, v.headers);
    let resource = resource(r, v.service_name, v.resource_attributes);
    let sampler = sampler(r, v.sampler.as_deref(), v.sampler_arg);
    let max_export_batch_size = batch_size(r, v.max_export_batch_size, v.max_queue_size);
    Some(ExporterConfig {
        disabled: v.disabled,
        exporters: v.exporters,
        otlp: OtlpConfig {
            protocol,
            endpoint,
            tls_enabled,
            tls: TlsConfig {
                ca_certificate: v.certificate,
                client_certificate: v.client_certificate,
                client_key: v.client_key,
            },
            headers,
            compression: v.compression,
            timeout: v.timeout_ms,
        },
        file: v.file,
        resource,
        sampler,
        batch: BatchConfig {
            max_queue_size: v.max_queue_size,
            max_export_batch_size,
            schedule_delay: v.schedule_delay_ms,
            export_timeout: v.export_timeout_ms,
        },
        origins: Vec::new(),
        report: Report::default(),
    })
}

/// `config` with its origins and report filled in from the resolver's `report`.
pub fn finished(config: Option<ExporterConfig>, report: &Report) -> Option<ExporterConfig> {
    let mut c = config?;
    c.report = report.only(&["exporter"]);
    c.origins = c.report.origins();
    Some(c)
}

/// The endpoint: as given, except that the generic variable gets `/v1/traces` for HTTP; the
/// default follows the protocol. Checked against the protocol (refused: the default stands in).
fn endpoint(r: &mut Resolver<'_>, given: Option<String>, protocol: Protocol) -> String {
    signal_endpoint(r, &rows::endpoint, given, protocol, "v1/traces")
}

/// A signal's endpoint from its `row`: the generic `OTEL_EXPORTER_OTLP_ENDPOINT` gets `path`
/// appended for HTTP; the default is the collector's on this host.
fn signal_endpoint(
    r: &mut Resolver<'_>,
    row: &inferscope_settings::Setting,
    given: Option<String>,
    protocol: Protocol,
    path: &str,
) -> String {
    let default = if protocol.is_http() {
        format!("http://localhost:4318/{path}")
    } else {
        "http://localhost:4317".to_owned()
    };
    let Some(given) = given else {
        r.report_mut().set_shown(row, default.clone());
        return default;
    };
    // The generic variable is a base URL. A signal's own URL is used as given, but over
    // HTTP one with no path would post to `/`, which no OTLP receiver serves (a Collector
    // answers 404): it gets the signal's path too.
    let pathless = || {
        given
            .parse::<http::Uri>()
            .is_ok_and(|u| u.scheme().is_some() && (u.path() == "/" || u.path().is_empty()))
            && !given.contains('?')
    };
    let url = if protocol.is_http() && (r.origin(row) == Origin::Env(ENDPOINT) || pathless()) {
        append_path(&given, path)
    } else {
        given
    };
    r.report_mut().set_shown(row, redact_userinfo(&url));
    match check_endpoint(&url, protocol) {
        Ok(()) => url,
        Err(reason) => {
            r.reject(row, reason);
            default
        }
    }
}

/// Whether an endpoint is reached over TLS: `https://`, or gRPC without a scheme unless the
/// insecure switch says otherwise.
fn tls_enabled(endpoint: &str, insecure: bool) -> bool {
    match endpoint.split_once("://") {
        Some(("https", _)) => true,
        Some(_) => false,
        None => !insecure,
    }
}

/// A client certificate and its key come together or not at all.
fn client_identity_pair(
    r: &mut Resolver<'_>,
    row: &inferscope_settings::Setting,
    certificate: &Option<PathBuf>,
    key: &Option<PathBuf>,
) {
    if certificate.is_some() != key.is_some() {
        r.reject(
            row,
            "a client certificate and a client key must be given together",
        );
    }
}

fn check_endpoint(endpoint: &str, protocol: Protocol) -> Result<(), String> {
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
        check_port(authority.as_str())?;
    }
    Ok(())
}

/// Appends `v1/traces` to a generic base endpoint, as the specification says for HTTP.
#[cfg(test)]
fn append_traces_path(base: &str) -> String {
    append_path(base, "v1/traces")
}

/// Appends a signal's path to a generic base endpoint, as the specification says for HTTP.
fn append_path(base: &str, path: &str) -> String {
    let (base, query) = match base.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (base, None),
    };
    let mut url = base.trim_end_matches('/').to_owned();
    url.push('/');
    url.push_str(path);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// Header names and values must be valid HTTP (refused: no headers).
fn headers(r: &mut Resolver<'_>, given: Headers) -> Vec<(String, Secret)> {
    checked_headers(r, &rows::headers, given)
}

fn checked_headers(
    r: &mut Resolver<'_>,
    row: &inferscope_settings::Setting,
    given: Headers,
) -> Vec<(String, Secret)> {
    for (k, v) in &given.0 {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            r.reject(row, format!("`{k}` is not a valid header name"));
            return Vec::new();
        }
        if http::HeaderValue::from_str(v.expose()).is_err() {
            r.reject(
                row,
                format!("the value of `{k}` is not a valid header value"),
            );
            return Vec::new();
        }
    }
    given.0.into_iter().collect()
}

/// The resource, `service.name` first: explicit or `OTEL_SERVICE_NAME` > `service.name` in the
/// resource attributes > the file's `service_name` > the default.
fn resource(
    r: &Resolver<'_>,
    service_name: Option<String>,
    mut attributes: BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let strong = matches!(
        r.origin(&rows::service_name),
        Origin::Explicit(_) | Origin::Env(_)
    );
    let name = match service_name {
        Some(n) if strong || !attributes.contains_key("service.name") => Some(n),
        _ => None,
    };
    if let Some(n) = name {
        attributes.insert("service.name".into(), n);
    }
    let service = attributes
        .remove("service.name")
        .unwrap_or_else(unknown_service);
    let mut list = vec![("service.name".to_owned(), service)];
    list.extend(attributes);
    list
}

/// OpenTelemetry's default `service.name`: `unknown_service:` and the executable's name.
fn unknown_service() -> String {
    let exe = std::env::current_exe().ok();
    match exe.as_deref().and_then(std::path::Path::file_name) {
        Some(name) => format!("unknown_service:{}", name.to_string_lossy()),
        None => "unknown_service".to_owned(),
    }
}

/// The sampler from its name and argument; a bad ratio is the argument's error (refused: the
/// default sampler stands in).
fn sampler(r: &mut Resolver<'_>, name: Option<&str>, arg: Option<f64>) -> Sampler {
    let Some(name) = name else {
        return Sampler::default();
    };
    let arg_text = arg.map(|a| a.to_string());
    match Sampler::from_name(name, arg_text.as_deref()) {
        Ok(s) => s,
        Err(inferscope_core::sampling::SamplerError::BadRatio(_)) => {
            let which = if arg.is_some() {
                &rows::sampler_arg
            } else {
                &rows::sampler
            };
            r.reject(which, "expected a number between 0 and 1");
            Sampler::default()
        }
        Err(e) => {
            r.reject(&rows::sampler, e.to_string());
            Sampler::default()
        }
    }
}

/// The batch size: at most the queue; by default 512 or the queue, whichever is smaller
/// (refused: the default stands in).
fn batch_size(r: &mut Resolver<'_>, given: Option<usize>, queue: usize) -> usize {
    let default = BatchConfig::default().max_export_batch_size.min(queue);
    match given {
        None => default,
        Some(n) if n > queue => {
            r.reject(
                &rows::max_export_batch_size,
                format!("must not exceed the max queue size ({queue})"),
            );
            default
        }
        Some(n) => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
