//! Where things are: the workspace, `../shared`, the Python venv; and a free port.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `../shared` beside the checkout (`INFERSCOPE_SHARED` overrides): specs, fixtures, the
/// semantic-conventions YAML.
pub fn shared() -> PathBuf {
    std::env::var_os("INFERSCOPE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared"))
}

/// The venv's python, made on first use by `scripts/python-env.sh` (pinned packages into
/// `target/venv`); `INFERSCOPE_PYTHON` overrides. Blocks while the venv is made: call it from
/// `spawn_blocking` in async tests.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("INFERSCOPE_PYTHON") {
                return PathBuf::from(p);
            }
            let out = std::process::Command::new("bash")
                .arg(workspace().join("scripts/python-env.sh"))
                .stderr(Stdio::inherit())
                .output()
                .expect("run scripts/python-env.sh");
            assert!(out.status.success(), "scripts/python-env.sh failed");
            let stdout = String::from_utf8(out.stdout).expect("a path in UTF-8");
            PathBuf::from(stdout.trim().lines().last().expect("the venv's python"))
        })
        .clone()
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
