//! Driving load: open loop (requests start on a fixed schedule, latency counted from the
//! scheduled time, so a slow target cannot slow the load down and hide its queueing) or closed
//! loop (a fixed number of requests in flight). Targets are interleaved: the run is cut into
//! rounds, and each round gives every target one segment in turn (A B A B …), so drift of the
//! machine affects them all alike.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use inferscope_core::observe::sse::SseReader;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::procstat::ProcessSet;
use crate::stats::{Dist, Summary};

/// Something to send load to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name in the report.
    pub name: String,
    /// Base URL (`http://127.0.0.1:8000`).
    pub url: String,
    /// Processes whose CPU and memory are charged to it (and their descendants).
    pub pids: Vec<u32>,
}

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Requests per second, on a fixed schedule (or with exponential gaps of that mean).
    Open {
        /// The rate.
        rate: f64,
        /// Poisson arrivals instead of evenly spaced ones (avoids locking onto an engine's
        /// step period).
        poisson: bool,
    },
    /// Requests in flight at all times.
    Closed {
        /// How many.
        concurrency: usize,
    },
}

/// One benchmark.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The targets, in order; the first is the baseline of the "added" figures.
    pub targets: Vec<Target>,
    /// Load.
    pub load: Load,
    /// Streamed chat (SSE) or not.
    pub stream: bool,
    /// Tokens per response (`max_tokens` with `ignore_eos`).
    pub max_tokens: u32,
    /// The model name sent.
    pub model: String,
    /// Measured time per target, split over the rounds.
    pub duration: Duration,
    /// Rounds of interleaving.
    pub rounds: usize,
    /// Unmeasured load per target before the first round.
    pub warmup: Duration,
    /// Longest a request may take.
    pub timeout: Duration,
    /// Draw progress bars (stderr).
    pub progress: bool,
}

/// What one request saw.
#[derive(Debug, Default)]
struct Sample {
    ttft: Option<u64>,
    /// Between stream chunks (SSE events), each timed by the read that completed it.
    gaps: Vec<u64>,
    /// Between body reads.
    frame_gaps: Vec<u64>,
    e2e: u64,
    chunks: u64,
    events: u64,
    error: Option<String>,
}

/// Everything measured for one target.
#[derive(Debug, Default)]
struct Recorder {
    ttft: Dist,
    gap: Dist,
    frame_gap: Dist,
    e2e: Dist,
    ok: u64,
    chunks: u64,
    events: u64,
    errors: BTreeMap<String, u64>,
    measured: Duration,
    cpu_seconds: f64,
    peak_rss_kib: u64,
}

impl Recorder {
    fn add(&mut self, s: Sample) {
        match s.error {
            Some(e) => *self.errors.entry(e).or_default() += 1,
            None => {
                self.ok += 1;
                self.chunks += s.chunks;
                self.events += s.events;
                self.e2e.record(s.e2e);
                if let Some(t) = s.ttft {
                    self.ttft.record(t);
                }
                for g in s.gaps {
                    self.gap.record(g);
                }
                for g in s.frame_gaps {
                    self.frame_gap.record(g);
                }
            }
        }
    }
}

/// The results of one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    /// The target's name.
    pub name: String,
    /// Successful requests measured.
    pub requests: u64,
    /// Failed requests, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Measured seconds.
    pub seconds: f64,
    /// Successful requests per second.
    pub requests_per_second: f64,
    /// Body reads (HTTP chunks as the client's decoder hands them over) per second.
    pub chunks_per_second: f64,
    /// Stream chunks (server-sent events) received per second; 0 for non-streamed.
    pub events_per_second: f64,
    /// Time to the first body chunk (streams) or the whole response (non-streamed).
    pub ttft: Summary,
    /// Gaps between stream chunks (streams): between server-sent events, each counted as
    /// arrived with the body read that completed it, so several events handed over in one
    /// read are 0 apart.
    pub gap: Summary,
    /// Gaps between body reads (streams). These depend on how each hop frames the stream: a
    /// proxy that forwards several events in one write has fewer, longer ones.
    pub frame_gap: Summary,
    /// Whole request.
    pub e2e: Summary,
    /// CPU seconds of the target's processes while measured.
    pub cpu_seconds: f64,
    /// CPU seconds per 1,000 successful requests.
    pub cpu_seconds_per_1000: Option<f64>,
    /// Peak resident memory while measured, MiB.
    pub peak_rss_mib: Option<f64>,
}

/// A finished benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Load.
    pub load: Load,
    /// Streamed or not.
    pub stream: bool,
    /// Tokens per response.
    pub max_tokens: u32,
    /// Rounds.
    pub rounds: usize,
    /// Per target, in plan order.
    pub targets: Vec<TargetResult>,
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(60))
        .build(c)
}

fn body(plan: &Plan) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "model": plan.model,
            "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
            "max_tokens": plan.max_tokens,
            "ignore_eos": true,
            "stream": plan.stream,
        })
        .to_string(),
    )
}

/// The one keep-alive connection of a closed-loop worker, as wrk keeps one per connection
/// slot: N requests in flight hold N connections, and the next request waits for the previous
/// response's end rather than opening another connection (a pooled client opens extra ones
/// when a finished connection has not yet gone back to its pool). Reopened after a failure.
struct OwnConn {
    authority: String,
    path: String,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl OwnConn {
    fn new(url: &str) -> Result<OwnConn, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url}: no host"))?
            .to_string();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(OwnConn {
            authority,
            path,
            sender: None,
        })
    }

    async fn send(&mut self, body: Bytes) -> Result<http::Response<Incoming>, String> {
        let reused = match self.sender.take() {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let mut sender = match reused {
            Some(s) => s,
            None => {
                let tcp = tokio::net::TcpStream::connect(&self.authority)
                    .await
                    .map_err(|_| "connect_or_send".to_owned())?;
                let _ = tcp.set_nodelay(true);
                let (sender, conn) = http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|_| "connect_or_send".to_owned())?;
                tokio::spawn(conn);
                sender
            }
        };
        let req = http::Request::post(self.path.as_str())
            .header(http::header::HOST, self.authority.as_str())
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|_| "connect_or_send".to_owned())?;
        self.sender = Some(sender);
        Ok(resp)
    }
}

/// How a request goes out: through the pooled client (open loop) or a worker's own connection.
enum Via<'a> {
    Pool(&'a Client<HttpConnector, Full<Bytes>>, &'a str),
    Own(&'a mut OwnConn),
}

async fn one(via: Via<'_>, body: Bytes, start: Instant, timeout: Duration, stream: bool) -> Sample {
    let work = async {
        let resp = match via {
            Via::Pool(client, url) => {
                let req = http::Request::post(url)
                    .header("content-type", "application/json")
                    .body(Full::new(body))
                    .map_err(|e| e.to_string())?;
                client
                    .request(req)
                    .await
                    .map_err(|_| "connect_or_send".to_owned())?
            }
            Via::Own(conn) => conn.send(body).await?,
        };
        if !resp.status().is_success() {
            return Err(format!("http_{}", resp.status().as_u16()));
        }
        let mut s = Sample::default();
        let mut body = resp.into_body();
        let mut last: Option<Instant> = None;
        let mut events = SseReader::default();
        let mut last_event: Option<Instant> = None;
        let mut tail: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| "body_cut".to_owned())?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let now = Instant::now();
            match last {
                None => s.ttft = Some(now.saturating_duration_since(start).as_nanos() as u64),
                Some(l) => s
                    .frame_gaps
                    .push(now.saturating_duration_since(l).as_nanos() as u64),
            }
            last = Some(now);
            if stream {
                let mut ended = 0;
                events.feed(&data, |_, _| ended += 1);
                if ended > 0 {
                    s.events += ended as u64;
                    if let Some(l) = last_event {
                        s.gaps
                            .push(now.saturating_duration_since(l).as_nanos() as u64);
                    }
                    // The others completed by this read arrived with it.
                    s.gaps.extend(std::iter::repeat_n(0, ended - 1));
                    last_event = Some(now);
                }
            }
            s.chunks += 1;
            tail.extend_from_slice(&data[data.len().saturating_sub(32)..]);
            if tail.len() > 64 {
                tail.drain(..tail.len() - 32);
            }
        }
        if stream && tail.windows(6).all(|w| w != b"[DONE]") {
            return Err("incomplete_body".to_owned());
        }
        s.e2e = start.elapsed().as_nanos() as u64;
        Ok(s)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => Sample {
            error: Some(e),
            ..Sample::default()
        },
        Err(_) => Sample {
            error: Some("timeout".into()),
            ..Sample::default()
        },
    }
}

/// Runs load against one target for `length`, recording into `rec` when given.
async fn segment(
    plan: &Plan,
    target: &Target,
    length: Duration,
    rec: Option<&mut Recorder>,
    label: &str,
) {
    let url = format!("{}/v1/chat/completions", target.url.trim_end_matches('/'));
    let client = client();
    let body = body(plan);
    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let stop = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicU64::new(0));
    let procs = ProcessSet::new(target.pids.clone());
    let before = procs.read();
    let (stop_rss, stop_rss_rx) = tokio::sync::oneshot::channel();
    let sampler = {
        let procs = procs.clone();
        tokio::spawn(async move {
            procs
                .peak_rss(Duration::from_millis(100), stop_rss_rx)
                .await
        })
    };
    let bar = progress(plan.progress, label, length);
    let began = Instant::now();
    let mut tasks = Vec::new();
    match plan.load {
        Load::Closed { concurrency } => {
            for _ in 0..concurrency {
                let (url, body, tx, stop, timeout, stream) = (
                    url.clone(),
                    body.clone(),
                    tx.clone(),
                    stop.clone(),
                    plan.timeout,
                    plan.stream,
                );
                tasks.push(tokio::spawn(async move {
                    let mut conn = match OwnConn::new(&url) {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = tx.send(Sample {
                                error: Some(e),
                                ..Sample::default()
                            });
                            return;
                        }
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let s = one(
                            Via::Own(&mut conn),
                            body.clone(),
                            Instant::now(),
                            timeout,
                            stream,
                        )
                        .await;
                        if tx.send(s).is_err() {
                            break;
                        }
                    }
                }));
            }
        }
        Load::Open { rate, poisson } => {
            let (client, url, body, tx, stop, in_flight, timeout, stream) = (
                client.clone(),
                url.clone(),
                body.clone(),
                tx.clone(),
                stop.clone(),
                in_flight.clone(),
                plan.timeout,
                plan.stream,
            );
            tasks.push(tokio::spawn(async move {
                let mean = 1.0 / rate.max(0.001);
                let mut rng = fastrand::Rng::with_seed(0x5eed);
                let mut next = Instant::now();
                // Tokio's timer wakes up to 1 ms late, and latency counts from the scheduled
                // time: a timerfd keeps that lateness out of the figures (ADR 0007).
                let mut timer = None;
                while !stop.load(Ordering::Relaxed) {
                    inferscope_sim::precise::sleep_until(&mut timer, next).await;
                    let scheduled = next;
                    let gap = if poisson {
                        -mean * (1.0 - rng.f64()).ln()
                    } else {
                        mean
                    };
                    next += Duration::from_secs_f64(gap);
                    if in_flight.load(Ordering::Relaxed) > 50_000 {
                        let _ = tx.send(Sample {
                            error: Some("client_overloaded".into()),
                            ..Sample::default()
                        });
                        continue;
                    }
                    in_flight.fetch_add(1, Ordering::Relaxed);
                    let (client, url, body, tx, in_flight) = (
                        client.clone(),
                        url.clone(),
                        body.clone(),
                        tx.clone(),
                        in_flight.clone(),
                    );
                    tokio::spawn(async move {
                        let s =
                            one(Via::Pool(&client, &url), body, scheduled, timeout, stream).await;
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                        let _ = tx.send(s);
                    });
                }
            }));
        }
    }
    drop(tx);
    let mut local = Recorder::default();
    let deadline = tokio::time::Instant::from_std(began + length);
    loop {
        tokio::select! {
            s = rx.recv() => match s {
                Some(s) => local.add(s),
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if let Some(b) = &bar {
            b.set_position(began.elapsed().as_millis().min(length.as_millis()) as u64);
            b.set_message(format!(
                "{label}: {} ok, {} errors",
                local.ok,
                local.errors.values().sum::<u64>()
            ));
        }
    }
    // Stop offering load; requests in flight finish and count (they were offered in time).
    stop.store(true, Ordering::Relaxed);
    let measured = began.elapsed();
    let drain = tokio::time::Instant::now() + plan.timeout;
    while let Ok(Some(s)) = tokio::time::timeout_at(drain, rx.recv()).await {
        local.add(s);
    }
    for t in tasks {
        t.abort();
    }
    let after = procs.read();
    let _ = stop_rss.send(());
    let peak = sampler.await.unwrap_or(0);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(rec) = rec {
        rec.ttft.merge(&local.ttft);
        rec.gap.merge(&local.gap);
        rec.frame_gap.merge(&local.frame_gap);
        rec.e2e.merge(&local.e2e);
        rec.ok += local.ok;
        rec.chunks += local.chunks;
        rec.events += local.events;
        for (k, v) in local.errors {
            *rec.errors.entry(k).or_default() += v;
        }
        rec.measured += measured;
        rec.cpu_seconds += (after.cpu_seconds - before.cpu_seconds).max(0.0);
        rec.peak_rss_kib = rec.peak_rss_kib.max(peak);
    }
}

fn progress(on: bool, label: &str, length: Duration) -> Option<indicatif::ProgressBar> {
    if !on {
        return None;
    }
    let bar = indicatif::ProgressBar::new(length.as_millis() as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:30} {elapsed:>4}/{duration:4} {msg}")
    {
        bar.set_style(style);
    }
    bar.set_message(label.to_owned());
    Some(bar)
}

/// Runs the plan: warm-up, then `rounds` rounds of one segment per target.
pub async fn run(plan: &Plan) -> Report {
    let mut recorders: Vec<Recorder> = plan.targets.iter().map(|_| Recorder::default()).collect();
    for t in &plan.targets {
        if !plan.warmup.is_zero() {
            segment(plan, t, plan.warmup, None, &format!("{} warm-up", t.name)).await;
        }
    }
    let rounds = plan.rounds.max(1);
    let each = plan.duration / rounds as u32;
    for r in 0..rounds {
        for (t, rec) in plan.targets.iter().zip(recorders.iter_mut()) {
            segment(
                plan,
                t,
                each,
                Some(rec),
                &format!("{} round {}/{}", t.name, r + 1, rounds),
            )
            .await;
        }
    }
    Report {
        load: plan.load,
        stream: plan.stream,
        max_tokens: plan.max_tokens,
        rounds,
        targets: plan
            .targets
            .iter()
            .zip(recorders)
            .map(|(t, rec)| {
                let secs = rec.measured.as_secs_f64().max(1e-9);
                TargetResult {
                    name: t.name.clone(),
                    requests: rec.ok,
                    errors: rec.errors,
                    seconds: secs,
                    requests_per_second: rec.ok as f64 / secs,
                    chunks_per_second: rec.chunks as f64 / secs,
                    events_per_second: rec.events as f64 / secs,
                    ttft: rec.ttft.summary(),
                    gap: rec.gap.summary(),
                    frame_gap: rec.frame_gap.summary(),
                    e2e: rec.e2e.summary(),
                    cpu_seconds: rec.cpu_seconds,
                    cpu_seconds_per_1000: (!t.pids.is_empty() && rec.ok > 0)
                        .then(|| rec.cpu_seconds / rec.ok as f64 * 1000.0),
                    peak_rss_mib: (!t.pids.is_empty()).then(|| rec.peak_rss_kib as f64 / 1024.0),
                }
            })
            .collect(),
    }
}
