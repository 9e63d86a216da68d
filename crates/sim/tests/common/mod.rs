//! Helpers for the simulator's tests: a real HTTP client, SSE parsing, JSON shapes.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::PathBuf;

use inferscope_sim::{Sim, SimConfig};
use serde_json::Value;

/// A simulator on a free port with fast steps.
pub async fn sim(tune: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut c = SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SimConfig::default()
    };
    c.engine.step_base_ms = 1.0;
    c.engine.step_per_seq_ms = 0.0;
    c.engine.preprocess_ms = 0.0;
    tune(&mut c);
    Sim::start(c).await.unwrap()
}

pub use inferscope_testkit::http::{Reply, client};

/// Sends one request to the simulator and reads the reply whole.
pub async fn send(
    sim: &Sim,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    inferscope_testkit::http::send(&sim.url(), method, path, body.to_owned(), headers).await
}

pub async fn post(sim: &Sim, path: &str, body: &str) -> Reply {
    send(sim, "POST", path, body, &[]).await
}

/// The `data:` payloads of an SSE body: JSON values, and `"[DONE]"` as a string.
pub fn sse(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let data = e
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data event: {e:?}"));
            if data == "[DONE]" {
                Value::String("[DONE]".into())
            } else {
                serde_json::from_str(data).unwrap_or_else(|err| panic!("{err}: {data}"))
            }
        })
        .collect()
}

/// Keys and types, not values: what a client or a parser depends on.
pub fn shape(v: &Value) -> Value {
    match v {
        Value::Null => Value::from("null"),
        Value::Bool(_) => Value::from("bool"),
        Value::Number(n) if n.is_f64() => Value::from("float"),
        Value::Number(_) => Value::from("int"),
        Value::String(s) if s == "[DONE]" => Value::from("[DONE]"),
        Value::String(_) => Value::from("string"),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

pub use inferscope_testkit::paths::shared;

/// A file of `../shared/fixtures/vllm-0.32-cpu/http/`, or of this crate's own captures of the
/// real server (`tests/fixtures/vllm-0.32-cpu/`); a trailing status line is split off.
pub fn fixture(name: &str) -> (String, Option<u16>) {
    let shared_path = shared().join("fixtures/vllm-0.32-cpu/http").join(name);
    let own = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vllm-0.32-cpu")
        .join(name);
    let text = std::fs::read_to_string(&shared_path)
        .or_else(|_| std::fs::read_to_string(&own))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    let trimmed = text.trim_end();
    match trimmed.rsplit_once('\n') {
        Some((body, status)) if status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()) => {
            (body.to_owned(), status.parse().ok())
        }
        _ => (text, None),
    }
}
