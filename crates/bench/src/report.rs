//! The report as a markdown table (with the latency each target adds over the first, as a shift
//! of the distribution at each quantile) and as JSON.

use std::fmt::Write as _;

use crate::run::{Load, Report};
use crate::stats::QUANTILES;

fn ms(us: f64) -> String {
    if us.abs() < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1e3)
    }
}

/// The report as markdown: one table of absolute figures, one of the shift from the baseline.
pub fn markdown(r: &Report, title: &str) -> String {
    let mut out = String::new();
    let load = match r.load {
        Load::Open {
            rate,
            poisson: false,
        } => format!("open loop at {rate} req/s"),
        Load::Open {
            rate,
            poisson: true,
        } => format!("open loop, Poisson arrivals at {rate} req/s"),
        Load::Closed { concurrency } => format!("closed loop, {concurrency} in flight"),
    };
    let kind = if r.stream {
        format!("streamed chat, {} tokens", r.max_tokens)
    } else {
        format!("non-streamed chat, {} tokens", r.max_tokens)
    };
    let _ = writeln!(
        out,
        "#### {title}: {kind}, {load}, {} interleaved rounds\n",
        r.rounds
    );
    let first = if r.stream { "TTFT" } else { "latency" };
    let _ = writeln!(
        out,
        "| target | ok | errors | req/s | {first} p50 | p90 | p99 | p99.9 |{} e2e p50 | e2e p99 | CPU s / 1k req | peak RSS |",
        if r.stream {
            " gap p50 | gap p99 | reads / req |"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|{}---|---|---|---|",
        if r.stream { "---|---|---|" } else { "" }
    );
    for t in &r.targets {
        let errors: u64 = t.errors.values().sum();
        let gaps = if r.stream {
            let reads = t.chunks_per_second / t.requests_per_second.max(1e-9);
            format!(
                " {} | {} | {reads:.1} |",
                ms(t.gap.p50_us),
                ms(t.gap.p99_us)
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} |{gaps} {} | {} | {} | {} |",
            t.name,
            t.requests,
            errors,
            t.requests_per_second,
            ms(t.ttft.p50_us),
            ms(t.ttft.p90_us),
            ms(t.ttft.p99_us),
            ms(t.ttft.p999_us),
            ms(t.e2e.p50_us),
            ms(t.e2e.p99_us),
            t.cpu_seconds_per_1000
                .map_or("–".into(), |c| format!("{c:.3}")),
            t.peak_rss_mib.map_or("–".into(), |m| format!("{m:.1} MiB")),
        );
    }
    if let Some(base) = r.targets.first()
        && r.targets.len() > 1
    {
        let _ = writeln!(
            out,
            "\nAdded over `{}`, as the shift of each distribution at each quantile (target's quantile − baseline's; not a per-request difference):\n",
            base.name
        );
        let _ = writeln!(
            out,
            "| target | {first} +p50 | +p90 | +p99 | +p99.9 |{} req/s ratio |",
            if r.stream {
                " gap +p50 | gap +p99 |"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "|---|---|---|---|---|{}---|",
            if r.stream { "---|---|" } else { "" }
        );
        for t in &r.targets[1..] {
            let d = t.ttft.shift_from(&base.ttft);
            let g = t.gap.shift_from(&base.gap);
            let cells: Vec<String> = QUANTILES.iter().map(|(q, _)| ms(d.at(q))).collect();
            let gaps = if r.stream {
                format!(" {} | {} |", ms(g.p50_us), ms(g.p99_us))
            } else {
                String::new()
            };
            let ratio = if base.requests_per_second > 0.0 {
                t.requests_per_second / base.requests_per_second
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "| {} | {} |{gaps} {ratio:.2} |",
                t.name,
                cells.join(" | ")
            );
        }
    }
    let errors: Vec<String> = r
        .targets
        .iter()
        .filter(|t| !t.errors.is_empty())
        .map(|t| {
            format!(
                "{}: {}",
                t.name,
                t.errors
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "\nErrors: {}", errors.join("; "));
    }
    out
}

/// The report as pretty JSON.
pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}
