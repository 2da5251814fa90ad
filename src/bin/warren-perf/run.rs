//! Watching a running workload: a sample every second (rates, interval latency, CPU of tool and broker, broker
//! RSS) shown as one live line on a terminal, end conditions (duration, message count), and the measured result
//! over the window after warm-up.

use crate::amqp::{Error, Result};
use crate::stats::{CpuUse, LatencySummary, ResourceSnapshot};
use crate::workload::{Engine, Totals};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Output options shared by every mode.
#[derive(Debug, Clone)]
pub struct Options {
    /// Live progress: `Some(true)` overwrite one line (terminal), `Some(false)` one line per second, `None` off.
    pub progress: Option<bool>,
    pub broker_pid: Option<u32>,
}

impl Options {
    pub fn new(force_progress: bool, quiet: bool, broker_pid: Option<u32>) -> Options {
        let tty = std::io::stderr().is_terminal();
        let progress = if quiet {
            None
        } else if tty {
            Some(true)
        } else if force_progress {
            Some(false)
        } else {
            None
        };
        Options {
            progress,
            broker_pid,
        }
    }

    /// Print a progress line (stderr).
    pub fn progress_line(&self, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = match self.progress {
            Some(true) => write!(err, "\r\x1b[2K{line}"),
            Some(false) => writeln!(err, "{line}"),
            None => Ok(()),
        };
        let _ = err.flush();
    }

    /// End the live line before the summary.
    pub fn progress_done(&self) {
        if self.progress == Some(true) {
            eprintln!();
        }
    }
}

/// One second of a run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub published_per_s: f64,
    pub confirmed_per_s: f64,
    pub consumed_per_s: f64,
    pub consumed_mb_per_s: f64,
    pub latency_p50_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
    #[serde(flatten)]
    pub cpu: CpuUse,
    pub blocked: bool,
}

/// The measured result of a publish/consume run.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub warmup_s: f64,
    pub elapsed_s: f64,
    pub totals: Totals,
    pub published_per_s: f64,
    pub confirmed_per_s: f64,
    pub consumed_per_s: f64,
    pub consumed_mb_per_s: f64,
    pub latency: Option<LatencySummary>,
    #[serde(flatten)]
    pub cpu: CpuUse,
    pub broker_pid: Option<u32>,
    pub end: &'static str,
    pub samples: Vec<Sample>,
}

pub fn fmt_rate(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

pub fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

pub fn fmt_cpu(c: &CpuUse) -> String {
    let broker = c
        .broker_cpu_pct
        .map_or("n/a".to_string(), |b| format!("{b:.0}%"));
    let rss = c
        .broker_rss_bytes
        .map_or(String::new(), |r| format!(" rss {}", fmt_bytes(r)));
    format!("cpu tool {:.0}% broker {broker}{rss}", c.tool_cpu_pct)
}

/// How often end conditions are checked; progress is printed every second.
const POLL: Duration = Duration::from_millis(10);

/// Release the publishers and watch until the duration or count is reached (or a task fails). The engine's
/// workload supplies duration, count and warm-up; `label` prefixes the progress line.
pub async fn measure(engine: &mut Engine, opts: &Options, label: &str) -> Result<Measured> {
    let w = engine.w.clone();
    let pid = opts.broker_pid;
    // The first /proc read also finds the clock tick rate (by running getconf): keep it before the start.
    let snap0 = ResourceSnapshot::take(pid);
    let start = Instant::now();
    engine.go();
    let zero = Totals::default();
    let mut base: Option<(Instant, Totals, ResourceSnapshot)> =
        (w.warmup <= 0.0).then_some((start, zero, snap0));
    let mut last = (start, zero, snap0);
    let mut samples = Vec::new();
    let mut idle = (0u64, Instant::now());
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end: &'static str;
    loop {
        tokio::select! {
            e = engine.fatal_rx.recv() => {
                opts.progress_done();
                engine.stop_all().await;
                return Err(e.unwrap_or(Error::Usage("all tasks ended".into())));
            }
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        let elapsed = now.duration_since(start).as_secs_f64();
        if base.is_none() && elapsed >= w.warmup {
            base = Some((now, engine.totals(), ResourceSnapshot::take(pid)));
            engine.reset_total_latency();
        }
        if now.duration_since(last.0) >= Duration::from_secs(1) {
            let t = engine.totals();
            let snap = ResourceSnapshot::take(pid);
            let s = sample(elapsed, &last, &t, &snap, engine);
            opts.progress_line(&progress_text(label, &s, base.is_none()));
            if base.is_some() {
                samples.push(s);
            }
            last = (now, t, snap);
        }
        let Some(b) = &base else { continue };
        if let Some(d) = w.duration {
            if now.duration_since(b.0).as_secs_f64() >= d {
                end = "duration";
                break;
            }
        }
        if let Some(target) = w.drain_target {
            let t = engine.totals();
            if t.consumed >= target {
                end = "drained";
                break;
            }
            if t.consumed != idle.0 {
                idle = (t.consumed, now);
            } else if now.duration_since(idle.1) >= Duration::from_secs(10) {
                end = "drain stalled (no delivery for 10 s)";
                break;
            }
        } else if w.count.is_some() && engine.publishers_done() {
            let t = engine.totals();
            if w.consumers == 0 {
                end = "count";
                break;
            }
            let expected = (t.published - t.nacked) * w.fan();
            if t.consumed >= expected {
                end = "count";
                break;
            }
            if t.consumed != idle.0 {
                idle = (t.consumed, now);
            } else if now.duration_since(idle.1) >= Duration::from_secs(3) {
                end = "count (consumers idle 3 s; fewer messages arrived than published)";
                break;
            }
        }
    }
    let t_end = Instant::now();
    let totals = engine.totals();
    let snap_end = ResourceSnapshot::take(pid);
    let lat = engine.total_latency();
    opts.progress_done();
    engine.stop_all().await;
    let (t0, tot0, snap0) = base.unwrap_or((start, zero, snap0));
    let secs = t_end.duration_since(t0).as_secs_f64().max(1e-9);
    let d = totals.minus(&tot0);
    Ok(Measured {
        warmup_s: w.warmup,
        elapsed_s: secs,
        totals: d,
        published_per_s: d.published as f64 / secs,
        confirmed_per_s: d.confirmed as f64 / secs,
        consumed_per_s: d.consumed as f64 / secs,
        consumed_mb_per_s: d.consumed_bytes as f64 / secs / 1e6,
        latency: (lat.n > 0).then(|| lat.summary()),
        cpu: snap_end.since(&snap0),
        broker_pid: pid,
        end,
        samples,
    })
}

fn sample(
    elapsed: f64,
    last: &(Instant, Totals, ResourceSnapshot),
    t: &Totals,
    snap: &ResourceSnapshot,
    engine: &Engine,
) -> Sample {
    let dt = snap.at.duration_since(last.0).as_secs_f64().max(1e-9);
    let d = t.minus(&last.1);
    let lat = engine.take_interval_latency();
    Sample {
        t_s: (elapsed * 10.0).round() / 10.0,
        published_per_s: d.published as f64 / dt,
        confirmed_per_s: d.confirmed as f64 / dt,
        consumed_per_s: d.consumed as f64 / dt,
        consumed_mb_per_s: d.consumed_bytes as f64 / dt / 1e6,
        latency_p50_us: (lat.n > 0).then(|| lat.quantile(0.5) as f64 / 1000.0),
        latency_p99_us: (lat.n > 0).then(|| lat.quantile(0.99) as f64 / 1000.0),
        cpu: snap.since(&last.2),
        blocked: t.blocked,
    }
}

fn progress_text(label: &str, s: &Sample, warming: bool) -> String {
    let mut line = format!(
        "[{label} {:>5.1}s{}] pub {}/s",
        s.t_s,
        if warming { " warmup" } else { "" },
        fmt_rate(s.published_per_s)
    );
    if s.confirmed_per_s > 0.0 {
        line += &format!(" conf {}/s", fmt_rate(s.confirmed_per_s));
    }
    line += &format!(
        " con {}/s {:.1} MB/s",
        fmt_rate(s.consumed_per_s),
        s.consumed_mb_per_s
    );
    if let (Some(p50), Some(p99)) = (s.latency_p50_us, s.latency_p99_us) {
        line += &format!(" | lat p50 {} p99 {}", fmt_us(p50), fmt_us(p99));
    }
    line += &format!(" | {}", fmt_cpu(&s.cpu));
    if s.blocked {
        line += " | BLOCKED";
    }
    line
}

/// The human summary of a measured run.
pub fn human(m: &Measured) -> String {
    let mut s = String::new();
    let t = &m.totals;
    s += &format!(
        "  measured   {:.2} s (after {:.1} s warm-up; ended by {})\n",
        m.elapsed_s, m.warmup_s, m.end
    );
    s += &format!(
        "  published  {:>12} msg/s  ({} msgs)\n",
        fmt_rate(m.published_per_s),
        t.published
    );
    if t.confirmed > 0 {
        s += &format!(
            "  confirmed  {:>12} msg/s  ({} msgs, {} nacked)\n",
            fmt_rate(m.confirmed_per_s),
            t.confirmed,
            t.nacked
        );
    }
    s += &format!(
        "  consumed   {:>12} msg/s  ({} msgs, {:.1} MB/s)\n",
        fmt_rate(m.consumed_per_s),
        t.consumed,
        m.consumed_mb_per_s
    );
    if t.returned > 0 {
        s += &format!("  returned   {} msgs\n", t.returned);
    }
    if let Some(l) = &m.latency {
        s += &format!(
            "  latency    p50 {}  p95 {}  p99 {}  p99.9 {}  max {}  ({} samples)\n",
            fmt_us(l.p50_us),
            fmt_us(l.p95_us),
            fmt_us(l.p99_us),
            fmt_us(l.p999_us),
            fmt_us(l.max_us),
            l.samples
        );
    }
    let broker = match (m.cpu.broker_cpu_pct, m.broker_pid) {
        (Some(b), Some(pid)) => format!(
            "broker {b:.0}% (pid {pid}); tool/broker {:.2}",
            m.cpu.tool_cpu_pct / b.max(1e-9)
        ),
        _ => "broker n/a (give --broker-pid, or run on the broker's host)".to_string(),
    };
    s += &format!(
        "  cpu        tool {:.0}% of a core, {broker}\n",
        m.cpu.tool_cpu_pct
    );
    if let Some(r) = m.cpu.broker_rss_bytes {
        s += &format!("  broker rss {}\n", fmt_bytes(r));
    }
    s
}
