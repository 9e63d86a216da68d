//! Pushing metrics over OTLP: the `[metrics]` table and the specification's variables.
//!
//! | setting | variables (first wins) | default |
//! |---|---|---|
//! | exporters | `OTEL_METRICS_EXPORTER` (`otlp`, `prometheus`, `none`) | `prometheus` (the admin port's `/metrics` only) |
//! | protocol | `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` | `grpc` |
//! | endpoint | `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (as given), `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/metrics` for HTTP) | `http://localhost:4317`, or `http://localhost:4318/v1/metrics` for HTTP |
//! | headers, compression, timeout, TLS | `…_METRICS_…` then the generic `OTEL_EXPORTER_OTLP_…` | as for traces |
//! | interval | `OTEL_METRIC_EXPORT_INTERVAL` (ms) | 60000 |
//! | export timeout | `OTEL_METRIC_EXPORT_TIMEOUT` (ms) | 30000 |
//! | temporality | `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` (`cumulative`, `delta`) | `cumulative` |
//!
//! The specification's default for `OTEL_METRICS_EXPORTER` is `otlp`; here it is `prometheus`,
//! because the gateway serves its metrics on the admin port and a Collector that takes only
//! traces would refuse every push. `otlp` and `prometheus` together do both.

use std::path::PathBuf;
use std::time::Duration;

use inferscope_settings::{Flag, Merge, Resolver, ok, opt, req, settings};

use super::{
    Compression, Headers, OtlpConfig, Protocol, TlsConfig, checked_headers, client_identity_pair,
    millis, readable_file, signal_endpoint, tls_enabled, vars,
};

/// Names of the metrics variables.
pub mod metric_vars {
    /// `otlp`, `prometheus`, `none`.
    pub const METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
    /// Metrics protocol.
    pub const METRICS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL";
    /// Metrics endpoint, used as given.
    pub const METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
    /// Metrics headers.
    pub const METRICS_HEADERS: &str = "OTEL_EXPORTER_OTLP_METRICS_HEADERS";
    /// Metrics compression.
    pub const METRICS_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION";
    /// Metrics timeout (ms).
    pub const METRICS_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT";
    /// Metrics CA certificate.
    pub const METRICS_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE";
    /// Metrics client certificate.
    pub const METRICS_CLIENT_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE";
    /// Metrics client key.
    pub const METRICS_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY";
    /// Metrics insecure switch.
    pub const METRICS_INSECURE: &str = "OTEL_EXPORTER_OTLP_METRICS_INSECURE";
    /// Interval between pushes (ms).
    pub const METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
    /// Longest time one push may take (ms).
    pub const METRIC_EXPORT_TIMEOUT: &str = "OTEL_METRIC_EXPORT_TIMEOUT";
    /// `cumulative` or `delta`.
    pub const METRICS_TEMPORALITY: &str = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
}

use metric_vars::*;
use vars::{
    CERTIFICATE, CLIENT_CERTIFICATE, CLIENT_KEY, COMPRESSION, ENDPOINT, HEADERS, INSECURE,
    PROTOCOL, TIMEOUT,
};

settings! {
    /// Metrics push settings as a person writes them (`[metrics]` in a file).
    pub struct MetricsSettings => MetricsValues, table "metrics", rows metrics_rows {
        /// Where metrics go: `prometheus` (the admin port's `/metrics`), `otlp` (pushed), `none`; comma-separated.
        exporters: Vec<String> => bool = req(push_otlp), {
            default: Some("prometheus"), flag: Flag::Repeat("metrics-exporter"),
            env: &[METRICS_EXPORTER],
        },
        /// The OTLP transport of metrics: `grpc`, `http/protobuf` or `http/json`.
        protocol: String => Protocol = req(|s: String| Protocol::parse(&s)), {
            default: Some("grpc"), env: &[METRICS_PROTOCOL, PROTOCOL],
        },
        /// The metrics endpoint; from `OTEL_EXPORTER_OTLP_ENDPOINT`, `/v1/metrics` is appended for HTTP.
        endpoint: String => Option<String> = ok, {
            flag: Flag::Value("otlp-metrics-endpoint"), env: &[METRICS_ENDPOINT, ENDPOINT],
            default_doc: Some("http://localhost:4317 (HTTP: http://localhost:4318/v1/metrics)"),
        },
        /// Headers sent with every metrics push (`k=v,…`, URL-decoded); values are secrets.
        headers: Headers => Headers = req(ok), {
            default: Some(""), default_doc: Some("none"), env: &[METRICS_HEADERS, HEADERS],
            merge: Merge::EnvVars,
        },
        /// Body compression of pushes: `gzip` or `none`.
        compression: String => Compression = req(|s: String| Compression::parse(&s)), {
            default: Some("none"), env: &[METRICS_COMPRESSION, COMPRESSION],
        },
        /// Timeout of one push request, milliseconds.
        timeout_ms: u64 => Duration = req(millis), {
            default: Some("10000"), env: &[METRICS_TIMEOUT, TIMEOUT],
        },
        /// PEM file of a CA trusted besides the system roots.
        certificate: PathBuf => Option<PathBuf> = opt(readable_file), {
            env: &[METRICS_CERTIFICATE, CERTIFICATE],
        },
        /// PEM file of a client certificate (mutual TLS).
        client_certificate: PathBuf => Option<PathBuf> = opt(readable_file), {
            env: &[METRICS_CLIENT_CERTIFICATE, CLIENT_CERTIFICATE],
        },
        /// PEM file of the client certificate's key (mutual TLS).
        client_key: PathBuf => Option<PathBuf> = opt(readable_file), {
            env: &[METRICS_CLIENT_KEY, CLIENT_KEY],
        },
        /// For a gRPC endpoint without a scheme: plaintext instead of TLS.
        insecure: bool => bool = req(ok), {
            default: Some("false"), env: &[METRICS_INSECURE, INSECURE],
        },
        /// Interval between pushes, milliseconds.
        interval_ms: u64 => Duration = req(positive_millis), {
            default: Some("60000"), env: &[METRIC_EXPORT_INTERVAL],
        },
        /// Longest time one push may take, retries included, milliseconds.
        export_timeout_ms: u64 => Duration = req(positive_millis), {
            default: Some("30000"), env: &[METRIC_EXPORT_TIMEOUT],
        },
        /// `cumulative` (totals since start) or `delta` (changes since the last push).
        temporality: String => Temporality = req(|s: String| Temporality::parse(&s)), {
            default: Some("cumulative"), env: &[METRICS_TEMPORALITY],
        },
    }
}

/// How pushed sums and histograms count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    /// Totals since the process started.
    Cumulative,
    /// Changes since the previous push.
    Delta,
}

impl Temporality {
    fn parse(s: &str) -> Result<Temporality, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cumulative" => Ok(Temporality::Cumulative),
            "delta" => Ok(Temporality::Delta),
            "lowmemory" => Err("`lowmemory` is not supported; use cumulative or delta".into()),
            _ => Err("expected cumulative or delta".into()),
        }
    }
}

fn push_otlp(names: Vec<String>) -> Result<bool, String> {
    let mut otlp = false;
    for name in &names {
        match name.trim().to_ascii_lowercase().as_str() {
            "otlp" => otlp = true,
            "prometheus" | "none" => {}
            _ => {
                return Err(format!(
                    "unknown metrics exporter `{name}` (expected otlp, prometheus or none)"
                ));
            }
        }
    }
    Ok(otlp)
}

fn positive_millis(v: u64) -> Result<Duration, String> {
    if v == 0 {
        Err("must be at least 1".into())
    } else {
        Ok(Duration::from_millis(v))
    }
}

/// How metrics are pushed, when they are.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// Push over OTLP (`OTEL_METRICS_EXPORTER` names `otlp`).
    pub push: bool,
    /// Where and how.
    pub otlp: OtlpConfig,
    /// Between pushes.
    pub interval: Duration,
    /// Longest time one push may take, retries included.
    pub export_timeout: Duration,
    /// Cumulative or delta.
    pub temporality: Temporality,
}

impl MetricsSettings {
    /// Resolves the metrics table with a resolver shared with the other tables.
    pub fn resolve(
        explicit: &MetricsSettings,
        file: &MetricsSettings,
        r: &mut Resolver<'_>,
    ) -> Option<MetricsConfig> {
        let v = MetricsValues::resolve(explicit, file, r)?;
        let endpoint = signal_endpoint(
            r,
            &metrics_rows::endpoint,
            v.endpoint,
            v.protocol,
            "v1/metrics",
        );
        let tls_enabled = tls_enabled(&endpoint, v.insecure);
        client_identity_pair(
            r,
            &metrics_rows::client_certificate,
            &v.client_certificate,
            &v.client_key,
        );
        let headers = checked_headers(r, &metrics_rows::headers, v.headers);
        Some(MetricsConfig {
            push: v.exporters,
            otlp: OtlpConfig {
                protocol: v.protocol,
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
            interval: v.interval_ms,
            export_timeout: v.export_timeout_ms,
            temporality: v.temporality,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(env: &[(&str, &str)]) -> Result<MetricsConfig, inferscope_settings::ConfigErrors> {
        let env = env.to_vec();
        let mut r = Resolver::new(&env, None);
        let c = MetricsSettings::resolve(
            &MetricsSettings::default(),
            &MetricsSettings::default(),
            &mut r,
        );
        r.finish()?;
        Ok(c.unwrap())
    }

    #[test]
    fn off_unless_asked_and_the_standard_variables_otherwise() {
        let c = resolve(&[]).unwrap();
        assert!(!c.push);
        assert_eq!(c.interval, Duration::from_secs(60));
        let c = resolve(&[
            ("OTEL_METRICS_EXPORTER", "otlp,prometheus"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=generic"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-api-key=metrics"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ])
        .unwrap();
        assert!(c.push);
        assert_eq!(c.otlp.endpoint, "http://collector:4318/v1/metrics");
        assert_eq!(c.otlp.headers[0].1.expose(), "metrics");
        assert_eq!(c.interval, Duration::from_secs(1));
        let c = resolve(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:9999"),
        ])
        .unwrap();
        assert_eq!(c.otlp.endpoint, "http://m:9999");
        assert_eq!(c.otlp.protocol, Protocol::Grpc);
    }

    #[test]
    fn unusable_values_are_each_an_error() {
        let e = resolve(&[
            ("OTEL_METRICS_EXPORTER", "otlp,statsd"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "0"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "lowmemory",
            ),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "bad name=s3cret"),
        ])
        .unwrap_err();
        let text = e.to_string();
        assert_eq!(e.0.len(), 4, "{text}");
        assert!(
            text.contains("statsd") && text.contains("lowmemory"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
    }
}
