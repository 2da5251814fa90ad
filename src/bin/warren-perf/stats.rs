//! Measurement: per-task counters, a log-linear latency histogram, and process CPU/RSS from /proc (the tool's own
//! and the broker's, whose pid is given or found from the listening port).

use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Nanoseconds since the first call in this process: the clock publishers stamp into bodies and consumers read.
/// Publishers and consumers live in the same process, so a monotonic clock is enough.
#[inline]
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Counters of one publisher connection, written by its tasks with relaxed stores, summed by the reporter.
#[derive(Default)]
pub struct PubCounters {
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub returned: AtomicU64,
    pub blocked: AtomicBool,
    /// The writer loop has finished (count reached and confirmed, stopped, or failed).
    pub done: AtomicBool,
    /// The confirm reader has finished (close-ok or error).
    pub reader_done: AtomicBool,
    /// Wakes the writer when confirms arrive or the reader ends.
    pub notify: tokio::sync::Notify,
}

/// Counters of one consumer connection.
#[derive(Default)]
pub struct ConCounters {
    pub consumed: AtomicU64,
    pub bytes: AtomicU64,
    pub latency: Mutex<LatencyPair>,
}

/// The whole-run histogram and the one the reporter drains every second.
#[derive(Default)]
pub struct LatencyPair {
    pub total: Histogram,
    pub interval: Histogram,
}

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = ((64 - SUB_BITS as usize) << SUB_BITS) + SUB as usize;

/// Log-linear histogram of nanosecond values: 64 linear sub-buckets per power of two (≤1.6 % error).
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    pub n: u64,
    pub max: u64,
    pub min: u64,
    pub sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            n: 0,
            max: 0,
            min: u64::MAX,
            sum: 0,
        }
    }
}

#[inline]
fn bucket(v: u64) -> usize {
    if v < SUB {
        v as usize
    } else {
        let msb = 63 - v.leading_zeros();
        let shift = msb - SUB_BITS;
        (((shift + 1) as usize) << SUB_BITS) + ((v >> shift) & (SUB - 1)) as usize
    }
}

/// Midpoint of a bucket's range.
fn bucket_value(i: usize) -> u64 {
    if i < SUB as usize {
        i as u64
    } else {
        let shift = (i >> SUB_BITS) as u32 - 1;
        let low = (SUB + (i as u64 & (SUB - 1))) << shift;
        low + ((1u64 << shift) >> 1)
    }
}

impl Histogram {
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.n += 1;
        self.sum += v as u128;
        self.max = self.max.max(v);
        self.min = self.min.min(v);
    }

    pub fn merge(&mut self, o: &Histogram) {
        if o.n == 0 {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.n += o.n;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
        self.min = self.min.min(o.min);
    }

    pub fn clear(&mut self) {
        if self.n > 0 {
            *self = Histogram::default();
        }
    }

    /// Value at quantile `q` (0..=1), or 0 when empty. The maximum is exact.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_value(i).clamp(self.min, self.max);
            }
        }
        self.max
    }

    pub fn summary(&self) -> LatencySummary {
        let us = |ns: u64| ns as f64 / 1000.0;
        LatencySummary {
            samples: self.n,
            min_us: if self.n == 0 { 0.0 } else { us(self.min) },
            mean_us: if self.n == 0 {
                0.0
            } else {
                (self.sum / self.n as u128) as f64 / 1000.0
            },
            p50_us: us(self.quantile(0.50)),
            p95_us: us(self.quantile(0.95)),
            p99_us: us(self.quantile(0.99)),
            p999_us: us(self.quantile(0.999)),
            max_us: us(self.max),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct LatencySummary {
    pub samples: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// CPU time and resident memory of a process, read from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// user + system CPU seconds.
    pub cpu_s: f64,
    pub rss_bytes: u64,
}

fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// `pid` is `None` for this process.
pub fn proc_sample(pid: Option<u32>) -> Option<ProcSample> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_string(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (state); utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(ProcSample {
        cpu_s: (utime + stime) / clock_ticks(),
        rss_bytes: rss_kb * 1024,
    })
}

/// The pid of the process listening on TCP `port` on this machine, via /proc/net/tcp{,6} and /proc/*/fd.
pub fn find_listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let local_port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| target.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// Resource use of the tool and the broker between two instants.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct CpuUse {
    /// Percent of one core over the interval.
    pub tool_cpu_pct: f64,
    pub broker_cpu_pct: Option<f64>,
    pub broker_rss_bytes: Option<u64>,
}

/// Tool and broker process samples taken together.
#[derive(Debug, Clone, Copy)]
pub struct ResourceSnapshot {
    pub at: Instant,
    pub tool: Option<ProcSample>,
    pub broker: Option<ProcSample>,
}

impl ResourceSnapshot {
    pub fn take(broker_pid: Option<u32>) -> ResourceSnapshot {
        ResourceSnapshot {
            at: Instant::now(),
            tool: proc_sample(None),
            broker: broker_pid.and_then(|p| proc_sample(Some(p))),
        }
    }

    /// CPU use from `earlier` to `self`.
    pub fn since(&self, earlier: &ResourceSnapshot) -> CpuUse {
        let secs = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        let pct = |a: Option<ProcSample>, b: Option<ProcSample>| match (a, b) {
            (Some(a), Some(b)) => Some((a.cpu_s - b.cpu_s) * 100.0 / secs),
            _ => None,
        };
        CpuUse {
            tool_cpu_pct: pct(self.tool, earlier.tool).unwrap_or(0.0),
            broker_cpu_pct: pct(self.broker, earlier.broker),
            broker_rss_bytes: self.broker.map(|b| b.rss_bytes),
        }
    }
}

/// Sum a counter over a set of tasks.
pub fn sum<T>(items: &[std::sync::Arc<T>], f: impl Fn(&T) -> &AtomicU64) -> u64 {
    items.iter().map(|i| f(i).load(Ordering::Relaxed)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in (0..2_000_000u64)
            .step_by(97)
            .chain([u64::MAX / 2, u64::MAX])
        {
            let b = bucket(v);
            assert!(b >= last && b < BUCKETS, "{v}");
            last = b;
            let mid = bucket_value(b) as f64;
            assert!(
                (mid - v as f64).abs() <= (v as f64 / 60.0).max(1.0),
                "{v} {mid}"
            );
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 5_000_000.0).abs() < 5_000_000.0 * 0.02, "{p50}");
        assert_eq!(h.quantile(1.0), 10_000_000);
        let mut g = Histogram::default();
        g.merge(&h);
        assert_eq!(g.n, h.n);
        assert_eq!(g.quantile(0.99), h.quantile(0.99));
    }

    #[test]
    fn self_sample() {
        let s = proc_sample(None).expect("/proc/self");
        assert!(s.rss_bytes > 0);
    }
}
