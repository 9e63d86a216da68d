//! inferscope's load generator (`inferscope bench`): streamed and non-streamed chat against
//! one or more OpenAI-compatible targets, open loop at a fixed rate or closed loop at a fixed
//! concurrency, targets interleaved round by round.
//!
//! Per request it records the time to the first body chunk, every gap between stream chunks
//! (server-sent events, however the hops frame them, read with inferscope-core's SSE reader) and
//! between body reads, the
//! whole latency and errors, in HDR histograms (p50, p90, p99, p99.9); per target, throughput
//! and the CPU seconds and peak memory of the target's processes from `/proc`. The report is
//! JSON and a markdown table that shows the latency each target adds over the first one as a
//! shift of the distribution.
//!
//! ```no_run
//! # async fn example() {
//! use std::time::Duration;
//! use inferscope_bench::run::{run, Load, Plan, Target};
//! let plan = Plan {
//!     targets: vec![Target { name: "direct".into(), url: "http://127.0.0.1:8000".into(), pids: vec![] }],
//!     load: Load::Closed { concurrency: 64 },
//!     stream: true,
//!     max_tokens: 256,
//!     model: "tiny-llama".into(),
//!     duration: Duration::from_secs(20),
//!     rounds: 4,
//!     warmup: Duration::from_secs(2),
//!     timeout: Duration::from_secs(60),
//!     progress: true,
//! };
//! let report = run(&plan).await;
//! println!("{}", inferscope_bench::report::markdown(&report, "example"));
//! # }
//! ```

pub mod procstat;
pub mod report;
pub mod run;
pub mod stats;
