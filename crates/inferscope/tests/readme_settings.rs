//! The README's configuration tables are made from the settings tables themselves: this test
//! fails when they disagree. `INFERSCOPE_BLESS=1 cargo test -p inferscope --test
//! readme_settings` rewrites them.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use inferscope_export::ExporterSettings;
use inferscope_gateway::config::{CaptureSettings, GatewaySettings};
use inferscope_settings::{Table, doc};
use inferscope_sim::config::{EngineSettings, SimSettings};

#[test]
fn readme_tables_match_the_settings() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let tables = [
        (
            "gateway",
            doc::markdown(GatewaySettings::settings(), "gateway"),
        ),
        (
            "capture",
            doc::markdown(CaptureSettings::settings(), "capture"),
        ),
        (
            "exporter",
            doc::markdown(ExporterSettings::settings(), "exporter"),
        ),
        (
            "metrics",
            doc::markdown(
                inferscope_export::config::MetricsSettings::settings(),
                "metrics",
            ),
        ),
        (
            "sim",
            doc::markdown(
                &[SimSettings::settings(), EngineSettings::settings()].concat(),
                "",
            ),
        ),
    ];
    let mut want = readme.clone();
    for (name, table) in &tables {
        want = doc::splice(&want, name, table)
            .unwrap_or_else(|| panic!("README.md has no <!-- settings:{name} --> markers"));
    }
    if want != readme {
        if std::env::var_os("INFERSCOPE_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        panic!(
            "README.md's settings tables differ from the settings; rerun with INFERSCOPE_BLESS=1 to rewrite them"
        );
    }
}
