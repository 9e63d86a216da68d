//! Configuration: one test per precedence level (explicit > signal-specific variable > generic
//! variable > file > default), the OpenTelemetry endpoint rules, and errors reported all at
//! once with the variable and value named (secrets excepted). The environment is a map: the
//! process environment is never touched.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::collections::BTreeMap;
use std::time::Duration;

use inferscope_core::Sampler;
use inferscope_export::config::{
    BatchConfig, Compression, ExporterKind, ExporterSettings, Layers, Origin, Protocol, resolve,
};
use inferscope_export::{ExporterConfig, Secret};

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load(
    explicit: &ExporterSettings,
    env_pairs: &[(&str, &str)],
    file: &ExporterSettings,
) -> ExporterConfig {
    let env = env(env_pairs);
    resolve(Layers {
        explicit,
        env: &env,
        file,
    })
    .unwrap()
}

fn errors(
    explicit: &ExporterSettings,
    env_pairs: &[(&str, &str)],
    file: &ExporterSettings,
) -> Vec<String> {
    let env = env(env_pairs);
    resolve(Layers {
        explicit,
        env: &env,
        file,
    })
    .unwrap_err()
    .0
    .iter()
    .map(ToString::to_string)
    .collect()
}

fn none() -> ExporterSettings {
    ExporterSettings::default()
}

fn origin(c: &ExporterConfig, name: &str) -> Origin {
    c.origins
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, o)| o.clone())
        .unwrap_or(Origin::Default)
}

// ---------- precedence: one test per level, for protocol (the spec's own example) ----------

const ALL_LEVELS_ENV: &[(&str, &str)] = &[
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
];

fn file_with_protocol() -> ExporterSettings {
    ExporterSettings {
        protocol: Some("grpc".into()),
        ..none()
    }
}

#[test]
fn level_1_explicit_setting_beats_everything() {
    let explicit = ExporterSettings {
        protocol: Some("http/protobuf".into()),
        ..none()
    };
    let c = load(
        &explicit,
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
        &file_with_protocol(),
    );
    assert_eq!(c.otlp.protocol, Protocol::HttpProtobuf);
    assert_eq!(origin(&c, "protocol"), Origin::Explicit("protocol"));
}

#[test]
fn level_2_signal_specific_variable_beats_generic_and_file() {
    let c = load(&none(), ALL_LEVELS_ENV, &file_with_protocol());
    assert_eq!(c.otlp.protocol, Protocol::HttpJson);
    assert_eq!(
        origin(&c, "protocol"),
        Origin::Env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
    );
}

#[test]
fn level_3_generic_variable_beats_file() {
    let c = load(&none(), &ALL_LEVELS_ENV[1..], &file_with_protocol());
    assert_eq!(c.otlp.protocol, Protocol::HttpProtobuf);
    assert_eq!(
        origin(&c, "protocol"),
        Origin::Env("OTEL_EXPORTER_OTLP_PROTOCOL")
    );
}

#[test]
fn level_4_file_beats_default() {
    let file = ExporterSettings {
        protocol: Some("http/json".into()),
        ..none()
    };
    let c = load(&none(), &[], &file);
    assert_eq!(c.otlp.protocol, Protocol::HttpJson);
    assert_eq!(origin(&c, "protocol"), Origin::File("protocol"));
}

#[test]
fn level_5_defaults() {
    let c = load(&none(), &[], &none());
    assert!(!c.disabled);
    assert_eq!(c.exporters, vec![ExporterKind::Otlp]);
    assert_eq!(c.otlp.protocol, Protocol::Grpc);
    assert_eq!(c.otlp.endpoint, "http://localhost:4317");
    assert!(!c.otlp.tls_enabled);
    assert_eq!(c.otlp.compression, Compression::None);
    assert_eq!(c.otlp.timeout, Duration::from_secs(10));
    assert!(c.otlp.headers.is_empty());
    assert_eq!(c.sampler, Sampler::default());
    assert_eq!(c.batch, BatchConfig::default());
    assert!(
        c.service_name().starts_with("unknown_service:"),
        "{}",
        c.service_name()
    );
    assert_eq!(origin(&c, "protocol"), Origin::Default);
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let file = ExporterSettings {
        protocol: Some("http/json".into()),
        ..none()
    };
    let c = load(
        &none(),
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", " "),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", ""),
        ],
        &file,
    );
    assert_eq!(c.otlp.protocol, Protocol::HttpJson);
}

// ---------- the same levels hold for the other settings ----------

#[test]
fn timeout_compression_and_bsp_follow_the_levels() {
    let explicit = ExporterSettings {
        timeout_ms: Some(111),
        ..none()
    };
    let file = ExporterSettings {
        timeout_ms: Some(999),
        compression: Some("gzip".into()),
        max_queue_size: Some(64),
        max_export_batch_size: Some(8),
        ..none()
    };
    let c = load(
        &explicit,
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "222"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "1500"),
        ],
        &file,
    );
    assert_eq!(c.otlp.timeout, Duration::from_millis(111));
    assert_eq!(
        c.otlp.compression,
        Compression::None,
        "generic env beats file"
    );
    assert_eq!(c.batch.max_queue_size, 64);
    assert_eq!(c.batch.max_export_batch_size, 8);
    assert_eq!(c.batch.schedule_delay, Duration::from_millis(250));
    assert_eq!(c.batch.export_timeout, Duration::from_millis(1500));

    let c = load(
        &none(),
        &[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "333"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "444"),
        ],
        &file,
    );
    assert_eq!(
        c.otlp.timeout,
        Duration::from_millis(444),
        "signal-specific beats generic"
    );
}

// ---------- endpoint rules ----------

#[test]
fn generic_endpoint_gets_v1_traces_for_http_only() {
    let e = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")];
    let http = load(
        &none(),
        &[e[0], ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
        &none(),
    );
    assert_eq!(http.otlp.endpoint, "http://collector:4318/v1/traces");
    let grpc = load(
        &none(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")],
        &none(),
    );
    assert_eq!(grpc.otlp.endpoint, "http://collector:4317");
}

#[test]
fn traces_endpoint_is_used_as_given() {
    let c = load(
        &none(),
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://collector:9999/custom/path",
            ),
        ],
        &none(),
    );
    assert_eq!(c.otlp.endpoint, "http://collector:9999/custom/path");
    assert_eq!(
        origin(&c, "endpoint"),
        Origin::Env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    );
}

#[test]
fn an_http_endpoint_with_no_path_gets_the_signal_path() {
    // `--otlp-endpoint http://host:4318 --otlp-protocol http/protobuf` would post to `/`,
    // which a Collector answers with 404.
    for given in ["http://collector:4318", "http://collector:4318/"] {
        let c = load(
            &none(),
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", given),
            ],
            &none(),
        );
        assert_eq!(c.otlp.endpoint, "http://collector:4318/v1/traces");
        assert!(c.destinations().contains("http://collector:4318/v1/traces"));
    }
    // gRPC takes no path.
    let c = load(
        &none(),
        &[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4317",
        )],
        &none(),
    );
    assert_eq!(c.otlp.endpoint, "http://collector:4317");
}

#[test]
fn default_endpoint_follows_the_protocol() {
    let c = load(
        &none(),
        &[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")],
        &none(),
    );
    assert_eq!(c.otlp.endpoint, "http://localhost:4318/v1/traces");
}

#[test]
fn tls_follows_the_scheme_and_the_insecure_switch() {
    let c = load(
        &none(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317")],
        &none(),
    );
    assert!(
        c.otlp.tls_enabled,
        "https gRPC uses TLS (vLLM forces insecure)"
    );
    let c = load(
        &none(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")],
        &none(),
    );
    assert!(
        c.otlp.tls_enabled,
        "a schemeless gRPC endpoint is secure by default"
    );
    let c = load(
        &none(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true"),
        ],
        &none(),
    );
    assert!(!c.otlp.tls_enabled);
}

#[test]
fn certificate_files_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let c = load(
        &none(),
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap())],
        &none(),
    );
    assert_eq!(c.otlp.tls.ca_certificate.as_deref(), Some(ca.as_path()));
    let errs = errors(
        &none(),
        &[("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/no/such/ca.pem")],
        &none(),
    );
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE=\"/no/such/ca.pem\""),
        "{errs:?}"
    );
    let errs = errors(
        &none(),
        &[("OTEL_EXPORTER_OTLP_CLIENT_KEY", ca.to_str().unwrap())],
        &none(),
    );
    assert!(errs[0].contains("together"), "{errs:?}");
}

// ---------- headers ----------

#[test]
fn headers_merge_generic_and_traces_values_url_decoded() {
    let c = load(
        &none(),
        &[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=generic,x-tenant=acme%20corp",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "API-Key=traces%3Dsecret",
            ),
        ],
        &none(),
    );
    let h: BTreeMap<_, _> = c
        .otlp
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(h.get("api-key"), Some(&"traces=secret"));
    assert_eq!(h.get("x-tenant"), Some(&"acme corp"));
    let printed = c.to_string();
    assert!(
        !printed.contains("secret"),
        "print-config must hide header values:\n{printed}"
    );
}

#[test]
fn explicit_headers_replace_the_environment() {
    let explicit = ExporterSettings {
        headers: Some([("authorization".to_owned(), Secret::new("Bearer x"))].into()),
        ..none()
    };
    let c = load(&explicit, &[("OTEL_EXPORTER_OTLP_HEADERS", "a=b")], &none());
    assert_eq!(c.otlp.headers.len(), 1);
    assert_eq!(c.otlp.headers[0].0, "authorization");
}

#[test]
fn header_errors_never_echo_values() {
    let errs = errors(
        &none(),
        &[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer sk-live-123,oops",
        )],
        &none(),
    );
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("OTEL_EXPORTER_OTLP_HEADERS"), "{errs:?}");
    assert!(!errs[0].contains("sk-live-123"), "{errs:?}");
    let errs = errors(
        &none(),
        &[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "bad header=1")],
        &none(),
    );
    assert!(errs[0].contains("bad header"), "{errs:?}");
}

// ---------- resource ----------

#[test]
fn service_name_precedence() {
    let file = ExporterSettings {
        service_name: Some("from-file".into()),
        ..none()
    };
    let attrs = [(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=from-attrs,deployment.environment=prod,team=a%2Cb",
    )];
    let c = load(&none(), &attrs, &file);
    assert_eq!(c.service_name(), "from-attrs");
    assert!(
        c.resource
            .contains(&("deployment.environment".into(), "prod".into()))
    );
    assert!(c.resource.contains(&("team".into(), "a,b".into())));
    let c = load(
        &none(),
        &[attrs[0], ("OTEL_SERVICE_NAME", "from-env")],
        &file,
    );
    assert_eq!(c.service_name(), "from-env");
    let explicit = ExporterSettings {
        service_name: Some("explicit".into()),
        ..none()
    };
    assert_eq!(
        load(&explicit, &[("OTEL_SERVICE_NAME", "from-env")], &file).service_name(),
        "explicit"
    );
    assert_eq!(load(&none(), &[], &file).service_name(), "from-file");
    let default = load(&none(), &[], &none());
    assert!(default.service_name().starts_with("unknown_service:"));
    assert_eq!(c.resource[0].0, "service.name");
}

// ---------- sampler, exporters, off switch ----------

#[test]
fn sampler_from_the_environment() {
    let c = load(
        &none(),
        &[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ],
        &none(),
    );
    assert_eq!(
        c.sampler,
        Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(0.25)))
    );
    let file = ExporterSettings {
        sampler: Some("traceidratio".into()),
        sampler_arg: Some(0.5),
        ..none()
    };
    assert_eq!(
        load(&none(), &[], &file).sampler,
        Sampler::TraceIdRatio(0.5)
    );
    assert_eq!(
        load(&none(), &[("OTEL_TRACES_SAMPLER", "always_off")], &file).sampler,
        Sampler::AlwaysOff
    );
}

#[test]
fn exporters_and_off_switch() {
    let c = load(
        &none(),
        &[("OTEL_TRACES_EXPORTER", "console,otlp")],
        &none(),
    );
    assert_eq!(c.exporters, vec![ExporterKind::Console, ExporterKind::Otlp]);
    let c = load(&none(), &[("OTEL_TRACES_EXPORTER", "none")], &none());
    assert!(c.exporters.is_empty());
    let c = load(&none(), &[("OTEL_SDK_DISABLED", "TRUE")], &none());
    assert!(c.disabled);
    // One boolean grammar for every setting: 1/0, yes/no, on/off too.
    for (text, want) in [
        ("yes", true),
        ("1", true),
        ("On", true),
        ("no", false),
        ("0", false),
    ] {
        let c = load(&none(), &[("OTEL_SDK_DISABLED", text)], &none());
        assert_eq!(c.disabled, want, "{text}");
    }
    let explicit = ExporterSettings {
        disabled: Some(false),
        ..none()
    };
    assert!(!load(&explicit, &[("OTEL_SDK_DISABLED", "true")], &none()).disabled);
}

// ---------- every error at once, named ----------

#[test]
fn every_invalid_value_is_reported_at_once_with_its_variable_and_value() {
    let errs = errors(
        &none(),
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpcx"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "brotli"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "-1"),
            ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
            ("OTEL_SDK_DISABLED", "perhaps"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "maybe"),
        ],
        &none(),
    );
    let expected = [
        "OTEL_EXPORTER_OTLP_PROTOCOL=\"grpcx\"",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=\"brotli\"",
        "OTEL_EXPORTER_OTLP_TIMEOUT=\"10s\"",
        "OTEL_TRACES_SAMPLER=\"jaeger_remote\"",
        "OTEL_BSP_MAX_QUEUE_SIZE=\"-1\"",
        "OTEL_BSP_SCHEDULE_DELAY=\"soon\"",
        "OTEL_SDK_DISABLED=\"perhaps\"",
        "OTEL_TRACES_EXPORTER=\"zipkin\"",
        "OTEL_EXPORTER_OTLP_TRACES_INSECURE=\"maybe\"",
    ];
    for want in expected {
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "missing {want} in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), expected.len(), "{errs:#?}");
}

#[test]
fn bad_ratio_batch_larger_than_queue_and_bad_endpoints() {
    let errs = errors(
        &none(),
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "20"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318"),
        ],
        &none(),
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("OTEL_TRACES_SAMPLER_ARG=\"1.5\"")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("OTEL_BSP_MAX_EXPORT_BATCH_SIZE=\"20\"")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=\"collector:4318\"")),
        "{errs:#?}"
    );
    let errs = errors(
        &none(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://user:pw@collector")],
        &none(),
    );
    assert!(
        errs[0].contains("<redacted>@collector") && !errs[0].contains("pw"),
        "{errs:?}"
    );
}

#[test]
fn explicit_and_file_values_are_checked_too() {
    let explicit = ExporterSettings {
        protocol: Some("thrift".into()),
        ..none()
    };
    let file = ExporterSettings {
        compression: Some("zstd".into()),
        max_queue_size: Some(0),
        ..none()
    };
    let errs = errors(&explicit, &[], &file);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("setting `protocol`=\"thrift\"")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("config file `compression`=\"zstd\"")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("config file `max_queue_size`=\"0\"")),
        "{errs:#?}"
    );
}

#[test]
fn file_settings_deny_unknown_keys() {
    let ok: ExporterSettings =
        toml::from_str("protocol = \"grpc\"\nsampler_arg = 0.5\nheaders = { \"x-key\" = \"v\" }")
            .unwrap();
    assert_eq!(ok.protocol.as_deref(), Some("grpc"));
    let err = toml::from_str::<ExporterSettings>("protocl = \"grpc\"").unwrap_err();
    assert!(err.to_string().contains("protocl"), "{err}");
}

#[test]
fn print_config_names_origins() {
    let c = load(
        &none(),
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
        &none(),
    );
    let text = c.to_string();
    assert!(text.contains("protocol"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("protocol") && l.ends_with("# OTEL_EXPORTER_OTLP_PROTOCOL")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("endpoint") && l.contains("http://localhost:4318/v1/traces")),
        "{text}"
    );
}

#[test]
fn builder_layers_merge_instead_of_replacing() {
    let builder = inferscope_export::TracingBuilder::new("t")
        .with_endpoint("http://collector:4317")
        .with_settings(ExporterSettings {
            service_name: Some("svc".into()),
            ..none()
        })
        .with_file_settings(ExporterSettings {
            compression: Some("gzip".into()),
            ..none()
        })
        .with_file_settings(ExporterSettings {
            timeout_ms: Some(5),
            ..none()
        })
        .with_env(env(&[]));
    let c = builder.resolve().unwrap();
    assert_eq!(
        c.otlp.endpoint, "http://collector:4317",
        "with_settings kept the endpoint"
    );
    assert_eq!(c.service_name(), "svc");
    assert_eq!(c.otlp.compression, Compression::Gzip);
    assert_eq!(c.otlp.timeout, Duration::from_millis(5));
}
