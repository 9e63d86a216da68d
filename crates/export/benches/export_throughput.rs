//! Sustained export throughput over OTLP/gRPC to a local receiver.
//!
//! A producer thread records 25-attribute inference spans as fast as the queue takes them
//! (it backs off when the queue is nearly full, so no CPU is wasted on drops); the export
//! thread batches, encodes and sends them over gRPC to the in-process receiver, which decodes
//! every request. Reported: spans delivered per wall second, and spans per CPU-second of the
//! export thread alone (read from /proc/self/task/*/stat), i.e. throughput on one core.
//!
//! `cargo bench -p inferscope-export --bench export_throughput [-- SECONDS [PROTOCOL]]`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use inferscope_core::Tracer;
use inferscope_export::TracingBuilder;
use inferscope_testkit::receiver::Receiver;

fn record(tracer: &Tracer, i: u64) {
    inferscope_testkit::sample::record_inference_span(tracer, None, format!("chatcmpl-{i:016x}"));
}

/// CPU seconds (user + system) of the thread whose name starts with `prefix`.
fn thread_cpu_seconds(prefix: &str) -> Option<f64> {
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = entry.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let after = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        return Some((utime + stime) / ticks_per_sec);
    }
    None
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let protocol = args.get(1).cloned().unwrap_or_else(|| "grpc".to_owned());

    let receiver_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("receiver")
        .enable_all()
        .build()
        .unwrap();
    let receiver = receiver_rt.block_on(Receiver::start()).unwrap();
    receiver.count_only();
    let endpoint = if protocol == "grpc" {
        receiver.grpc_endpoint()
    } else {
        receiver.http_endpoint()
    };

    let env: BTreeMap<String, String> = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.as_str()),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "65536"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let tracing = TracingBuilder::new("bench")
        .with_endpoint(endpoint)
        .with_env(env)
        .build()
        .unwrap();
    let tracer = tracing.tracer();
    let stats = tracing.stats_handle().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = stop.clone();
        let stats = stats.clone();
        std::thread::Builder::new()
            .name("producer".into())
            .spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if stats.snapshot().queued > 60_000 {
                        std::thread::sleep(Duration::from_micros(200));
                        continue;
                    }
                    for _ in 0..256 {
                        record(&tracer, i);
                        i += 1;
                    }
                }
            })
            .unwrap()
    };

    // Warm up, then measure.
    std::thread::sleep(Duration::from_secs(1));
    let cpu0 = thread_cpu_seconds("inferscope-expo").unwrap_or(0.0);
    let others0: Vec<f64> = ["producer", "receiver"]
        .iter()
        .map(|t| thread_cpu_seconds(t).unwrap_or(0.0))
        .collect();
    let delivered0 = receiver.span_count();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let wall = t0.elapsed().as_secs_f64();
    let delivered = receiver.span_count() - delivered0;
    let cpu = thread_cpu_seconds("inferscope-expo").unwrap_or(0.0) - cpu0;
    let others: Vec<f64> = ["producer", "receiver"]
        .iter()
        .zip(&others0)
        .map(|(t, c0)| thread_cpu_seconds(t).unwrap_or(0.0) - c0)
        .collect();
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    tracing.shutdown_blocking(Duration::from_secs(30)).ok();
    let s = tracing.stats();

    println!("protocol            {protocol}");
    println!("measured            {wall:.1} s");
    println!("spans delivered     {delivered}");
    println!("throughput (wall)   {:.0} spans/s", delivered as f64 / wall);
    println!(
        "export thread CPU   {cpu:.2} s ({:.0}% of one core)",
        100.0 * cpu / wall
    );
    println!(
        "other threads CPU   producer {:.0}%, receiver {:.0}% of one core",
        100.0 * others[0] / wall,
        100.0 * others[1] / wall
    );
    if cpu > 0.0 {
        println!(
            "per export-core     {:.0} spans per CPU-second",
            delivered as f64 / cpu
        );
    }
    println!(
        "queue drops         {} (producer backs off; should be 0)",
        s.dropped
    );
    println!(
        "export failures     {}",
        s.sinks.iter().map(|k| k.failed).sum::<u64>()
    );
    println!(
        "requests            {}",
        s.sinks.iter().map(|k| k.requests).sum::<u64>()
    );
    drop(receiver);
}
