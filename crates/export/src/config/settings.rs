//! The raw, untyped stage of configuration: every field optional, the same shape for explicit
//! settings (a builder or command-line flags) and for a configuration file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::secret::Secret;

/// Exporter settings as a person writes them. [`crate::config::resolve`] turns the layers of
/// these (explicit, environment, file, defaults) into an [`crate::config::ExporterConfig`].
///
/// In a TOML file (unknown keys are an error):
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
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterSettings {
    /// Where spans go: `otlp`, `console`, `none` (as `OTEL_TRACES_EXPORTER`).
    pub exporters: Option<Vec<String>>,
    /// `grpc`, `http/protobuf` or `http/json`.
    pub protocol: Option<String>,
    /// The traces endpoint, used as given (as `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub endpoint: Option<String>,
    /// Headers sent with every export request; values are secrets.
    pub headers: Option<BTreeMap<String, Secret>>,
    /// `gzip` or `none`.
    pub compression: Option<String>,
    /// Timeout of one export request, milliseconds.
    pub timeout_ms: Option<u64>,
    /// PEM file of the CA that signs the receiver's certificate.
    pub certificate: Option<PathBuf>,
    /// PEM file of a client certificate (mutual TLS).
    pub client_certificate: Option<PathBuf>,
    /// PEM file of the client certificate's key (mutual TLS).
    pub client_key: Option<PathBuf>,
    /// For a gRPC endpoint without a scheme: `true` for plaintext, `false` for TLS.
    pub insecure: Option<bool>,
    /// `service.name`.
    pub service_name: Option<String>,
    /// More resource attributes.
    pub resource_attributes: Option<BTreeMap<String, String>>,
    /// `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`,
    /// `parentbased_always_off`, `parentbased_traceidratio`.
    pub sampler: Option<String>,
    /// The ratio of the ratio samplers.
    pub sampler_arg: Option<f64>,
    /// Spans held while waiting for export; more are dropped and counted.
    pub max_queue_size: Option<usize>,
    /// Most spans in one export request.
    pub max_export_batch_size: Option<usize>,
    /// Longest wait before a partial batch is exported, milliseconds.
    pub schedule_delay_ms: Option<u64>,
    /// Longest time one batch may take, retries included, milliseconds.
    pub export_timeout_ms: Option<u64>,
    /// Turns tracing off entirely (as `OTEL_SDK_DISABLED`).
    pub disabled: Option<bool>,
    /// Also write every span as OTLP-JSON lines to this file.
    pub file: Option<PathBuf>,
}

impl ExporterSettings {
    /// These settings with every field `over` sets replacing this one's.
    pub fn merged(self, over: ExporterSettings) -> ExporterSettings {
        ExporterSettings {
            exporters: over.exporters.or(self.exporters),
            protocol: over.protocol.or(self.protocol),
            endpoint: over.endpoint.or(self.endpoint),
            headers: over.headers.or(self.headers),
            compression: over.compression.or(self.compression),
            timeout_ms: over.timeout_ms.or(self.timeout_ms),
            certificate: over.certificate.or(self.certificate),
            client_certificate: over.client_certificate.or(self.client_certificate),
            client_key: over.client_key.or(self.client_key),
            insecure: over.insecure.or(self.insecure),
            service_name: over.service_name.or(self.service_name),
            resource_attributes: over.resource_attributes.or(self.resource_attributes),
            sampler: over.sampler.or(self.sampler),
            sampler_arg: over.sampler_arg.or(self.sampler_arg),
            max_queue_size: over.max_queue_size.or(self.max_queue_size),
            max_export_batch_size: over.max_export_batch_size.or(self.max_export_batch_size),
            schedule_delay_ms: over.schedule_delay_ms.or(self.schedule_delay_ms),
            export_timeout_ms: over.export_timeout_ms.or(self.export_timeout_ms),
            disabled: over.disabled.or(self.disabled),
            file: over.file.or(self.file),
        }
    }
}
