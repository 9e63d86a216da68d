//! Checks every OpenTelemetry constant of this crate against the YAML model of semantic
//! conventions v1.41.0 in `../shared/semconv-v1.41.0/` (override with `INFERSCOPE_SHARED`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use inferscope_semconv::{attr, legacy, metric, value, vllm};
use yaml_rust2::{Yaml, YamlLoader};

#[derive(Default)]
struct Model {
    /// attribute id → (deprecated?, renamed_to)
    defined: BTreeMap<String, (bool, Option<String>)>,
    /// attribute ids referenced by groups
    referenced: BTreeSet<String>,
    /// attribute id → member value → deprecated?
    members: BTreeMap<String, BTreeMap<String, bool>>,
    /// metric name → (unit, instrument)
    metrics: BTreeMap<String, (String, String)>,
}

fn shared_dir() -> PathBuf {
    std::env::var_os("INFERSCOPE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn load() -> Model {
    let dir = shared_dir().join("semconv-v1.41.0");
    let mut model = Model::default();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in YamlLoader::load_from_str(&text).unwrap() {
            for group in doc["groups"].as_vec().into_iter().flatten() {
                read_group(group, &mut model);
            }
        }
    }
    assert_eq!(
        files,
        5,
        "expected the five YAML files of the release in {}",
        dir.display()
    );
    model
}

fn read_group(group: &Yaml, model: &mut Model) {
    if let (Some(name), Some(unit), Some(instrument)) = (
        group["metric_name"].as_str(),
        group["unit"].as_str(),
        group["instrument"].as_str(),
    ) {
        model
            .metrics
            .insert(name.to_owned(), (unit.to_owned(), instrument.to_owned()));
    }
    for a in group["attributes"].as_vec().into_iter().flatten() {
        if let Some(r) = a["ref"].as_str() {
            model.referenced.insert(r.to_owned());
        }
        let Some(id) = a["id"].as_str() else { continue };
        let deprecated = !a["deprecated"].is_badvalue();
        let renamed_to = a["deprecated"]["renamed_to"].as_str().map(str::to_owned);
        model
            .defined
            .insert(id.to_owned(), (deprecated, renamed_to));
        for m in a["type"]["members"].as_vec().into_iter().flatten() {
            if let Some(v) = m["value"].as_str() {
                model
                    .members
                    .entry(id.to_owned())
                    .or_default()
                    .insert(v.to_owned(), !m["deprecated"].is_badvalue());
            }
        }
    }
}

#[test]
fn every_current_attribute_exists_and_is_not_deprecated() {
    let model = load();
    for key in attr::ALL {
        match model.defined.get(*key) {
            Some((false, _)) => {}
            Some((true, _)) => panic!("{key} is deprecated in v1.41.0 but not marked legacy"),
            None => assert!(
                model.referenced.contains(*key),
                "{key} is neither defined nor referenced in v1.41.0"
            ),
        }
    }
}

#[test]
fn every_well_known_value_is_a_current_member() {
    let model = load();
    let cases: [(&str, &[&str]); 4] = [
        (attr::OPERATION_NAME, value::operation::ALL),
        (attr::PROVIDER_NAME, value::provider::ALL),
        (attr::TOKEN_TYPE, value::token_type::ALL),
        (attr::OUTPUT_TYPE, value::output_type::ALL),
    ];
    for (key, values) in cases {
        let members = model
            .members
            .get(key)
            .unwrap_or_else(|| panic!("{key} has no members"));
        for v in values {
            assert_eq!(
                members.get(*v),
                Some(&false),
                "{key}={v} is missing or deprecated in v1.41.0"
            );
        }
    }
    // vLLM is a custom provider value, which the conventions allow.
    assert!(!model.members[attr::PROVIDER_NAME].contains_key(value::provider::VLLM));
}

#[test]
fn every_metric_matches_name_unit_and_instrument() {
    let model = load();
    for h in metric::ALL {
        let (unit, instrument) = model
            .metrics
            .get(h.name)
            .unwrap_or_else(|| panic!("metric {} missing from v1.41.0", h.name));
        assert_eq!(unit, h.unit, "unit of {}", h.name);
        assert_eq!(instrument, "histogram", "instrument of {}", h.name);
    }
    assert_eq!(
        model.metrics.len(),
        metric::ALL.len(),
        "a v1.41.0 GenAI metric is missing here"
    );
}

#[test]
fn legacy_names_are_deprecated_with_the_right_replacement() {
    let model = load();
    for key in legacy::ALL {
        let (deprecated, _) = model
            .defined
            .get(*key)
            .unwrap_or_else(|| panic!("{key} missing from v1.41.0"));
        assert!(
            deprecated,
            "{key} is marked legacy but v1.41.0 does not deprecate it"
        );
    }
    for (old, new) in legacy::RENAMES {
        if let Some(renamed_to) = &model.defined[*old].1 {
            assert_eq!(renamed_to, new, "replacement of {old}");
        }
    }
}

#[test]
fn vllm_keys_are_either_deprecated_otel_names_or_never_were_otel_names() {
    let model = load();
    for key in vllm::attr::ALL {
        match model.defined.get(*key) {
            None => {}
            Some((true, _)) => assert!(legacy::ALL.contains(key), "{key}"),
            // keys vLLM shares with the current conventions
            Some((false, _)) => assert!(attr::ALL.contains(key), "{key}"),
        }
    }
    for made_up in [
        vllm::attr::LATENCY_E2E,
        vllm::attr::LATENCY_TIME_IN_QUEUE,
        vllm::attr::REQUEST_ID,
        vllm::attr::REQUEST_N,
        vllm::attr::USAGE_NUM_SEQUENCES,
    ] {
        assert!(!model.defined.contains_key(made_up), "{made_up}");
    }
}

/// docs/trace-model.md lists every `inferscope.*` key, as written, and no key that is gone.
#[test]
fn every_own_key_is_documented() {
    let doc_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/trace-model.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let table: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `inferscope."))
        .filter_map(|l| l.split('`').next())
        .collect();
    for key in inferscope_semconv::inferscope::ALL {
        let short = key.trim_start_matches("inferscope.");
        assert!(
            table.contains(&short),
            "{key} is missing from docs/trace-model.md"
        );
    }
    for short in table {
        assert!(
            inferscope_semconv::inferscope::ALL.contains(&format!("inferscope.{short}").as_str()),
            "inferscope.{short} is documented but not defined"
        );
    }
}
