//! CPU time and memory of a target process and its descendants, read from `/proc`.

use std::collections::HashMap;
use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// `(ppid, utime + stime ticks)` of a process, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// Resident memory of a process, KiB (`VmRSS` of `/proc/<pid>/status`).
fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `root` and every live descendant.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                && let Some((ppid, _)) = stat(pid)
            {
                parent.insert(pid, ppid);
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parent.iter().filter(|(_, pp)| **pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree.sort_unstable();
    tree.dedup();
    tree
}

/// A point-in-time reading of a set of processes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// CPU seconds used so far (user + system) by the live processes of the trees.
    pub cpu_seconds: f64,
    /// Resident memory now, KiB.
    pub rss_kib: u64,
}

/// Reads the processes rooted at `roots`.
#[derive(Debug, Clone)]
pub struct ProcessSet {
    roots: Vec<u32>,
    ticks: f64,
}

impl ProcessSet {
    /// The trees rooted at `roots`.
    pub fn new(roots: Vec<u32>) -> ProcessSet {
        ProcessSet {
            roots,
            ticks: ticks_per_second(),
        }
    }

    /// Whether there is anything to read.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// Reads CPU time and memory now.
    pub fn read(&self) -> Reading {
        let mut r = Reading::default();
        for root in &self.roots {
            for pid in process_tree(*root) {
                if let Some((_, t)) = stat(pid) {
                    r.cpu_seconds += t as f64 / self.ticks;
                }
                r.rss_kib += rss_kib(pid).unwrap_or(0);
            }
        }
        r
    }

    /// Samples memory every `every` until `stop` resolves; returns the peak, KiB.
    pub async fn peak_rss(&self, every: Duration, stop: tokio::sync::oneshot::Receiver<()>) -> u64 {
        let mut peak = self.read().rss_kib;
        let mut stop = stop;
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => peak = peak.max(self.read().rss_kib),
                _ = &mut stop => return peak.max(self.read().rss_kib),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let set = ProcessSet::new(vec![me]);
        let a = set.read();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let b = set.read();
        assert!(b.rss_kib > 0);
        assert!(b.cpu_seconds >= a.cpu_seconds);
        assert!(process_tree(me).contains(&me));
    }
}
