//! The modes that are not a steady publish/consume stream: backlog (fill with no consumer, measure memory,
//! drain), connection-count and queue-count (time to create N, and the broker's RSS per idle one).

use crate::amqp::{Conn, Error, Result, Url};
use crate::run::{self, fmt_bytes, fmt_rate, Measured, Options};
use crate::stats::{proc_sample, ProcSample};
use crate::workload::{Engine, Workload};
use amq_protocol::protocol::{queue, AMQPClass};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Broker RSS after letting it settle for `settle` (lets freed memory and timers catch up).
async fn settled_rss(pid: Option<u32>, settle: f64) -> Option<u64> {
    tokio::time::sleep(Duration::from_secs_f64(settle)).await;
    pid.and_then(|p| proc_sample(Some(p))).map(|s| s.rss_bytes)
}

fn rss_text(r: Option<u64>) -> String {
    r.map_or("n/a".into(), fmt_bytes)
}

fn per_item_kib(before: Option<u64>, after: Option<u64>, n: usize) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some((a as f64 - b as f64) / 1024.0 / n as f64),
        _ => None,
    }
}

/// Fill a queue with `messages` messages and no consumer, report the broker's RSS, then drain it.
pub async fn backlog(
    url: &Url,
    mut w: Workload,
    messages: u64,
    settle: f64,
    phase: BacklogPhase,
    opts: &Options,
) -> Result<(serde_json::Value, String)> {
    let pid = opts.broker_pid;
    let publishers = w.publishers.max(1) as u64;
    let per_pub = messages.div_ceil(publishers);
    w.publishers = publishers as usize;
    // Publishers spread the backlog over the queues; the depth is their sum.
    w.queues = w.queues.max(1);
    w.count = Some(per_pub);
    w.duration = None;
    w.warmup = 0.0;
    // A fill-only run leaves its queue for a later drain-only run (possibly after a broker restart).
    if phase == BacklogPhase::Fill {
        w.keep_queues = true;
    }
    let consumers = w.consumers.max(1);
    let rss_empty = pid.and_then(|p| proc_sample(Some(p))).map(|s| s.rss_bytes);

    let mut fill_w = w.clone();
    fill_w.consumers = 0;
    let mut fill = Engine::new(url.clone(), fill_w);
    fill.timestamps = false;
    fill.setup_topology().await?;
    let result = async {
        let mut filled = None;
        let mut total = 0;
        if phase != BacklogPhase::Drain {
            fill.start_publishers().await?;
            let m = run::measure(&mut fill, opts, "backlog fill").await?;
            total = m.totals.published;
            filled = Some(m);
        }
        // Wait until the broker reports the whole backlog (confirms may precede the count by a little).
        let mut c = Conn::open(url, "warren-perf backlog check").await?;
        c.channel_open(1).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut depth;
        loop {
            depth = 0;
            for q in 0..w.queues {
                depth += c
                    .queue_declare(1, &w.queue_name(q), w.durable, true)
                    .await? as u64;
            }
            if depth >= total || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.close().await?;
        let rss_full = settled_rss(pid, settle).await;

        let mut drained = None;
        let mut rss_drained = None;
        if phase != BacklogPhase::Fill {
            let mut drain_w = w.clone();
            drain_w.publishers = 0;
            drain_w.consumers = consumers;
            drain_w.count = None;
            drain_w.drain_target = Some(depth);
            let mut drain = Engine::new(url.clone(), drain_w);
            drain.timestamps = false;
            drain.start_consumers().await?;
            drained = Some(run::measure(&mut drain, opts, "backlog drain").await?);
            rss_drained = settled_rss(pid, settle).await;
        }
        Ok::<_, Error>((filled, depth, rss_full, drained, rss_drained))
    }
    .await;
    let cleanup = fill.teardown_topology().await;
    let (filled, depth, rss_full, drained, rss_drained) = result?;
    cleanup?;

    let per_msg = match (rss_empty, rss_full) {
        (Some(a), Some(b)) if depth > 0 && phase != BacklogPhase::Drain => {
            Some((b as f64 - a as f64) / depth as f64)
        }
        _ => None,
    };
    let json = json!({
        "mode": "backlog",
        "workload": w,
        "messages": depth,
        "fill": filled.as_ref().map(fill_json),
        "drain": drained.as_ref().map(fill_json),
        "broker_pid": pid,
        "broker_rss_empty_bytes": rss_empty,
        "broker_rss_full_bytes": rss_full,
        "broker_rss_drained_bytes": rss_drained,
        "broker_rss_per_message_bytes": per_msg,
    });
    let line = |label: &str, m: &Option<Measured>, rate: fn(&Measured) -> f64| match m {
        Some(m) => format!(
            "  {label:<10} {:.2} s  {} msg/s  (tool cpu {:.0}%, broker {})\n",
            m.elapsed_s,
            fmt_rate(rate(m)),
            m.cpu.tool_cpu_pct,
            m.cpu
                .broker_cpu_pct
                .map_or("n/a".into(), |b| format!("{b:.0}%")),
        ),
        None => format!("  {label:<10} skipped\n"),
    };
    let human = format!(
        "warren-perf backlog: {} messages of {} B, {}, {} queue, {} publisher(s) with confirm window {}, {} consumer(s)\n\
         {}\
         \x20 queue      {} messages reported by queue.declare\n\
         \x20 broker rss empty {}  full {}  drained {}{}\n\
         {}",
        messages,
        w.size,
        if w.persistent { "persistent" } else { "transient" },
        if w.durable { "durable" } else { "transient" },
        w.publishers,
        w.confirm,
        consumers,
        line("fill", &filled, |m| m.confirmed_per_s.max(m.published_per_s)),
        depth,
        rss_text(rss_empty),
        rss_text(rss_full),
        rss_text(rss_drained),
        per_msg.map_or(String::new(), |b| format!("  ({b:.0} B per queued message)")),
        line("drain", &drained, |m| m.consumed_per_s),
    );
    Ok((json, human))
}

/// Which half of a backlog run to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BacklogPhase {
    /// Fill, then drain.
    Both,
    /// Fill and keep the queue (implies --keep-queues).
    Fill,
    /// Drain whatever the queue holds (from an earlier fill-only run).
    Drain,
}

fn fill_json(m: &Measured) -> serde_json::Value {
    json!({
        "elapsed_s": m.elapsed_s,
        "published": m.totals.published,
        "confirmed": m.totals.confirmed,
        "consumed": m.totals.consumed,
        "published_per_s": m.published_per_s,
        "confirmed_per_s": m.confirmed_per_s,
        "consumed_per_s": m.consumed_per_s,
        "tool_cpu_pct": m.cpu.tool_cpu_pct,
        "broker_cpu_pct": m.cpu.broker_cpu_pct,
        "end": m.end,
    })
}

/// Soft limit on open files for this process.
fn fd_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Progress of a create-N phase, shown once per second.
async fn with_progress<T>(
    opts: &Options,
    label: &str,
    total: usize,
    done: &AtomicUsize,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let start = Instant::now();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    loop {
        tokio::select! {
            r = &mut work => { opts.progress_done(); return r; }
            _ = tick.tick() => {
                let n = done.load(Ordering::Relaxed);
                let broker = opts.broker_pid.and_then(|p| proc_sample(Some(p)));
                opts.progress_line(&format!(
                    "[{label} {:>5.1}s] {n}/{total}  broker rss {}",
                    start.elapsed().as_secs_f64(),
                    rss_text(broker.map(|b| b.rss_bytes))
                ));
            }
        }
    }
}

/// Open `n` idle connections (each with `channels` channels): time to open, broker RSS per connection.
pub async fn connections(
    url: &Url,
    n: usize,
    channels: u16,
    concurrency: usize,
    hold: f64,
    settle: f64,
    opts: &Options,
) -> Result<(serde_json::Value, String)> {
    if let Some(limit) = fd_limit() {
        if (n as u64) + 64 > limit {
            return Err(Error::Usage(format!(
                "{n} connections need more file descriptors than the limit of {limit}; raise it (ulimit -n {})",
                n + 1024
            )));
        }
    }
    let pid = opts.broker_pid;
    let before: Option<ProcSample> = pid.and_then(|p| proc_sample(Some(p)));
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let opened = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let conns = {
        let mut set = JoinSet::new();
        for i in 0..n {
            let (sem, opened, url) = (sem.clone(), opened.clone(), url.clone());
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let mut c = Conn::open(&url, &format!("warren-perf idle {i}")).await?;
                for ch in 1..=channels {
                    c.channel_open(ch).await?;
                }
                opened.fetch_add(1, Ordering::Relaxed);
                Ok::<_, Error>(c)
            });
        }
        with_progress(opts, "connections", n, &opened, async {
            let mut conns = Vec::with_capacity(n);
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Ok(c)) => conns.push(c),
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(Error::Usage(format!("task failed: {e}"))),
                }
            }
            Ok(conns)
        })
        .await?
    };
    let open_s = t0.elapsed().as_secs_f64();
    let after = settled_rss(pid, settle).await;
    let broker_cpu_open = match (before, pid.and_then(|p| proc_sample(Some(p)))) {
        (Some(b), Some(a)) => Some(a.cpu_s - b.cpu_s),
        _ => None,
    };
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let held_rss = pid.and_then(|p| proc_sample(Some(p))).map(|s| s.rss_bytes);

    let t1 = Instant::now();
    let mut set = JoinSet::new();
    for c in conns {
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            c.close().await
        });
    }
    let mut close_errors = 0;
    while let Some(r) = set.join_next().await {
        if !matches!(r, Ok(Ok(()))) {
            close_errors += 1;
        }
    }
    let close_s = t1.elapsed().as_secs_f64();
    let closed_rss = settled_rss(pid, settle).await;
    let rss_before = before.map(|b| b.rss_bytes);
    let per_conn = per_item_kib(rss_before, after, n);

    let json = json!({
        "mode": "connections",
        "connections": n,
        "channels_per_connection": channels,
        "concurrency": concurrency,
        "open_s": open_s,
        "open_per_s": n as f64 / open_s.max(1e-9),
        "broker_cpu_s_opening": broker_cpu_open,
        "close_s": close_s,
        "close_errors": close_errors,
        "broker_pid": pid,
        "broker_rss_before_bytes": rss_before,
        "broker_rss_open_bytes": after,
        "broker_rss_after_hold_bytes": held_rss,
        "broker_rss_closed_bytes": closed_rss,
        "broker_rss_per_connection_kib": per_conn,
    });
    let human = format!(
        "warren-perf connections: {n} idle connections, {channels} channel(s) each, {concurrency} opening at a time\n\
         \x20 open       {open_s:.2} s  ({} conn/s){}\n\
         \x20 broker rss before {}  open {}  after {hold:.0} s {}  closed {}\n\
         \x20 per conn   {}\n\
         \x20 close      {close_s:.2} s{}\n",
        fmt_rate(n as f64 / open_s.max(1e-9)),
        broker_cpu_open.map_or(String::new(), |c| format!(", broker cpu {c:.2} s")),
        rss_text(rss_before),
        rss_text(after),
        rss_text(held_rss),
        rss_text(closed_rss),
        per_conn.map_or("n/a".into(), |k| format!("{k:.1} KiB")),
        if close_errors > 0 {
            format!(" ({close_errors} did not close cleanly)")
        } else {
            String::new()
        },
    );
    Ok((json, human))
}

/// Send `methods` in batches of `pipeline` and wait for one reply each; returns the replies' count.
async fn pipelined(
    c: &mut Conn,
    methods: Vec<AMQPClass>,
    pipeline: usize,
    done: &AtomicUsize,
) -> Result<()> {
    for chunk in methods.chunks(pipeline.max(1)) {
        let mut buf = Vec::with_capacity(chunk.len() * 64);
        for m in chunk {
            crate::wire::put_method(&mut buf, 1, m.clone());
        }
        c.write(&buf).await?;
        for _ in chunk {
            match c.recv_method().await? {
                (
                    1,
                    AMQPClass::Queue(
                        queue::AMQPMethod::DeclareOk(_) | queue::AMQPMethod::DeleteOk(_),
                    ),
                ) => {}
                (ch, m) => {
                    return Err(Error::Protocol {
                        conn: c.label.clone(),
                        what: format!("unexpected reply on channel {ch}: {m:?}"),
                    })
                }
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Declare `n` queues (pipelined), report time and broker RSS per queue, then delete them.
#[allow(clippy::too_many_arguments)]
pub async fn queues(
    url: &Url,
    n: usize,
    durable: bool,
    pipeline: usize,
    prefix: &str,
    hold: f64,
    settle: f64,
    opts: &Options,
) -> Result<(serde_json::Value, String)> {
    let pid = opts.broker_pid;
    let mut c = Conn::open(url, "warren-perf queues").await?;
    c.channel_open(1).await?;
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let before = pid.and_then(|p| proc_sample(Some(p)));
    let declared = AtomicUsize::new(0);
    let t0 = Instant::now();
    let methods = names
        .iter()
        .map(|q| Conn::queue_declare_method(q, durable, false))
        .collect();
    with_progress(
        opts,
        "queues",
        n,
        &declared,
        pipelined(&mut c, methods, pipeline, &declared),
    )
    .await?;
    let declare_s = t0.elapsed().as_secs_f64();
    let after = settled_rss(pid, settle).await;
    let broker_cpu_declare = match (before, pid.and_then(|p| proc_sample(Some(p)))) {
        (Some(b), Some(a)) => Some(a.cpu_s - b.cpu_s),
        _ => None,
    };
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let deleted = AtomicUsize::new(0);
    let t1 = Instant::now();
    let methods = names.iter().map(|q| Conn::queue_delete_method(q)).collect();
    with_progress(
        opts,
        "delete",
        n,
        &deleted,
        pipelined(&mut c, methods, pipeline, &deleted),
    )
    .await?;
    let delete_s = t1.elapsed().as_secs_f64();
    c.close().await?;
    let deleted_rss = settled_rss(pid, settle).await;
    let rss_before = before.map(|b| b.rss_bytes);
    let per_queue = per_item_kib(rss_before, after, n);
    let json = json!({
        "mode": "queues",
        "queues": n,
        "durable": durable,
        "pipeline": pipeline,
        "declare_s": declare_s,
        "declare_per_s": n as f64 / declare_s.max(1e-9),
        "broker_cpu_s_declaring": broker_cpu_declare,
        "delete_s": delete_s,
        "delete_per_s": n as f64 / delete_s.max(1e-9),
        "broker_pid": pid,
        "broker_rss_before_bytes": rss_before,
        "broker_rss_declared_bytes": after,
        "broker_rss_deleted_bytes": deleted_rss,
        "broker_rss_per_queue_kib": per_queue,
    });
    let human = format!(
        "warren-perf queues: {n} {} queues, {pipeline} declares in flight\n\
         \x20 declare    {declare_s:.2} s  ({} queues/s){}\n\
         \x20 broker rss before {}  declared {}  deleted {}\n\
         \x20 per queue  {}\n\
         \x20 delete     {delete_s:.2} s  ({} queues/s)\n",
        if durable { "durable" } else { "transient" },
        fmt_rate(n as f64 / declare_s.max(1e-9)),
        broker_cpu_declare.map_or(String::new(), |c| format!(", broker cpu {c:.2} s")),
        rss_text(rss_before),
        rss_text(after),
        rss_text(deleted_rss),
        per_queue.map_or("n/a".into(), |k| format!("{k:.2} KiB")),
        fmt_rate(n as f64 / delete_s.max(1e-9)),
    );
    Ok((json, human))
}
