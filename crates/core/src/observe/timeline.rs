//! When a stream's chunks arrived: time to the first, the gaps between them, and their
//! statistics.

use std::time::{Duration, Instant};

/// Gaps kept for exact percentiles; beyond this (a stream of over a million chunks) later gaps
/// still count towards the mean and maximum but not the percentiles.
const MAX_GAPS: usize = 1 << 20;

/// The arrival times of a stream's content chunks.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    first: Option<Instant>,
    last: Option<Instant>,
    chunks: u64,
    /// Gaps in microseconds (4 bytes a chunk).
    gaps_us: Vec<u32>,
    gap_sum_us: u64,
    gap_max_us: u32,
}

/// Summary statistics of the gaps between chunks, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GapStats {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Timeline {
    /// Notes a content chunk that arrived at `at`.
    pub fn chunk(&mut self, at: Instant) {
        self.chunks += 1;
        if let Some(last) = self.last {
            let gap =
                u32::try_from(at.saturating_duration_since(last).as_micros()).unwrap_or(u32::MAX);
            self.gap_sum_us += u64::from(gap);
            self.gap_max_us = self.gap_max_us.max(gap);
            if self.gaps_us.len() < MAX_GAPS {
                self.gaps_us.push(gap);
            }
        } else {
            self.first = Some(at);
        }
        self.last = Some(at);
    }

    /// Content chunks seen.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// When the first content chunk arrived.
    pub fn first(&self) -> Option<Instant> {
        self.first
    }

    /// When the last content chunk arrived.
    pub fn last(&self) -> Option<Instant> {
        self.last
    }

    /// From the first chunk to the last.
    pub fn span(&self) -> Option<Duration> {
        Some(self.last?.saturating_duration_since(self.first?))
    }

    /// Each gap between consecutive chunks, seconds (the first million; in no set order once
    /// [`Timeline::gap_stats`] has sorted them): one observation per chunk after the first, as
    /// `gen_ai.client.operation.time_per_output_chunk` is defined.
    pub fn gaps(&self) -> impl Iterator<Item = f64> + '_ {
        self.gaps_us.iter().map(|g| f64::from(*g) / 1e6)
    }

    /// Gap statistics, when there were at least two chunks. Percentiles are nearest-rank over
    /// the exact gaps.
    pub fn gap_stats(&mut self) -> Option<GapStats> {
        if self.chunks < 2 {
            return None;
        }
        self.gaps_us.sort_unstable();
        let n = self.gaps_us.len();
        let rank = |q: f64| -> f64 {
            let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            f64::from(self.gaps_us[i]) / 1e6
        };
        Some(GapStats {
            mean: self.gap_sum_us as f64 / (self.chunks - 1) as f64 / 1e6,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: f64::from(self.gap_max_us) / 1e6,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        let t0 = Instant::now();
        let mut t = Timeline::default();
        assert!(t.gap_stats().is_none());
        let mut at = t0;
        for ms in [0u64, 10, 10, 10, 10, 10, 10, 10, 10, 10, 100] {
            at += Duration::from_millis(ms);
            t.chunk(at);
        }
        let s = t.gap_stats().unwrap();
        assert_eq!(t.chunks(), 11);
        assert!((s.mean - 0.019).abs() < 1e-9, "{s:?}");
        assert!((s.p50 - 0.010).abs() < 1e-9);
        assert!((s.p90 - 0.010).abs() < 1e-9);
        assert!((s.p99 - 0.100).abs() < 1e-9);
        assert!((s.max - 0.100).abs() < 1e-9);
        assert_eq!(t.span(), Some(Duration::from_millis(190)));
    }
}
