//! The load generator against the simulator: both loops, streamed and not, two interleaved
//! targets, and the report's shape (no timing is asserted).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use inferscope_bench::run::{Load, Plan, Target, run};

async fn sim() -> inferscope_sim::Sim {
    inferscope_sim::Sim::start(inferscope_sim::SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        zero_delay: true,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn plan(url: &str, load: Load, stream: bool) -> Plan {
    Plan {
        targets: vec![
            Target {
                name: "a".into(),
                url: url.into(),
                pids: vec![std::process::id()],
            },
            Target {
                name: "b".into(),
                url: url.into(),
                pids: vec![],
            },
        ],
        load,
        stream,
        max_tokens: 8,
        model: "tiny-llama".into(),
        duration: Duration::from_millis(600),
        rounds: 2,
        warmup: Duration::from_millis(100),
        timeout: Duration::from_secs(10),
        progress: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_and_open_loops_measure_every_target() {
    let s = sim().await;
    let r = run(&plan(&s.url(), Load::Closed { concurrency: 4 }, true)).await;
    assert_eq!(r.targets.len(), 2);
    for t in &r.targets {
        assert!(t.requests > 0, "{t:?}");
        assert!(t.errors.is_empty(), "{t:?}");
        assert_eq!(t.ttft.count, t.requests);
        // 8 tokens: role chunk, 8 content chunks, [DONE], however many arrive in one read.
        let events = (t.events_per_second * t.seconds).round() as u64;
        assert_eq!(events % t.requests, 0, "{t:?}");
        let per_request = events / t.requests;
        assert!(per_request >= 10, "{t:?}");
        assert_eq!(t.gap.count, t.requests * (per_request - 1), "{t:?}");
        assert!(t.frame_gap.count > 0 && t.frame_gap.count <= t.gap.count);
        assert!(t.ttft.p50_us <= t.e2e.p50_us);
    }
    assert!(
        r.targets[0].cpu_seconds_per_1000.is_some() && r.targets[0].peak_rss_mib.unwrap() > 0.0
    );
    assert!(r.targets[1].cpu_seconds_per_1000.is_none());
    let md = inferscope_bench::report::markdown(&r, "test");
    assert!(md.contains("| a |") && md.contains("Added over `a`"));
    let json: serde_json::Value =
        serde_json::from_str(&inferscope_bench::report::json(&r)).unwrap();
    assert_eq!(json["targets"][1]["name"], "b");

    let r = run(&plan(
        &s.url(),
        Load::Open {
            rate: 200.0,
            poisson: true,
        },
        false,
    ))
    .await;
    for t in &r.targets {
        assert!(t.requests > 20, "{t:?}");
        assert!(t.errors.is_empty());
    }
    // A target that is down is counted as errors, not a hang.
    let mut p = plan("http://127.0.0.1:9", Load::Closed { concurrency: 2 }, false);
    p.targets.truncate(1);
    let r = run(&p).await;
    assert!(
        r.targets[0].errors.contains_key("connect_or_send"),
        "{:?}",
        r.targets[0].errors
    );
}
