//! `warren-perf`: the project's load tool, for Warren or any AMQP 0-9-1 broker.
//!
//! Dependencies: only the crate's own (tokio, bytes, amq-protocol, clap, serde, serde_json, thiserror);
//! `serde_json` is used for `--json`.
//!
//! Modes: `throughput` (P publishers, C consumers, Q queues, size, persistence, confirms window, autoack or
//! manual ack with prefetch and multiple-ack, exchange type, duration or count), `latency` (fixed rate,
//! percentiles from a timestamp in the body), `fanout` (one exchange, Q bound queues, a consumer each),
//! `backlog` (fill with no consumer, broker RSS, drain), `connections` and `queues` (time to create N idle ones,
//! broker RSS per item), `loopback` (raw TCP, no broker: the ceiling for large messages). Every publisher and consumer has its own connection; everything runs on one
//! multi-thread tokio runtime. The data path uses a small hand-written client (see `wire` and `workload`), so
//! the tool stays cheaper than the broker it measures: its CPU is shown next to the broker's.

mod amqp;
mod consumer;
mod loopback;
mod modes;
mod publisher;
mod run;
mod stats;
mod wire;
mod workload;

use amqp::{Error, Url};
use clap::{Args, Parser, Subcommand};
use run::Options;
use std::io::Write;
use std::process::ExitCode;
use workload::{Engine, ExchangeType, Workload};

const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(Parser, Debug)]
#[command(
    name = "warren-perf",
    version,
    about = "Load generator for AMQP 0-9-1 brokers (Warren, RabbitMQ, ...)",
    after_help = "Examples:\n  \
      warren-perf throughput -d 10 --autoack\n  \
      warren-perf throughput --prefetch 1000 --multiple-ack 100\n  \
      warren-perf throughput -s 1024 --persistent --durable --confirm 1000 --prefetch 1000 --multiple-ack 100\n  \
      warren-perf latency --rate 10000\n  \
      warren-perf fanout -Q 10 --autoack\n  \
      warren-perf backlog --messages 1000000 -s 1024\n  \
      warren-perf connections -n 1000\n  \
      warren-perf queues -n 10000\n  \
      warren-perf loopback -s 65536"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Args, Debug)]
struct Common {
    /// Broker URL.
    #[arg(long, short = 'u', global = true, env = "WARREN_PERF_URL", default_value = DEFAULT_URL)]
    url: String,
    /// Print the result as one JSON object on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Broker process id for CPU/RSS; by default the process listening on the URL's port (local brokers).
    #[arg(long, global = true)]
    broker_pid: Option<u32>,
    /// Print a progress line every second even when stderr is not a terminal.
    #[arg(long, global = true)]
    progress: bool,
    /// No progress output.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Publish and consume as fast as possible (or at --rate) and report rates.
    Throughput(WorkloadArgs),
    /// Publish at a fixed rate (default 10000 msg/s) and report end-to-end latency percentiles.
    Latency(WorkloadArgs),
    /// One fanout exchange with Q bound queues (default 10), one consumer each.
    Fanout(WorkloadArgs),
    /// Fill a queue with M messages and no consumer, report the broker's RSS, then drain it.
    Backlog(BacklogArgs),
    /// Open N idle connections; report the time taken and the broker's RSS per connection.
    #[command(alias = "connection-count")]
    Connections(ConnArgs),
    /// Declare N queues; report the time taken and the broker's RSS per queue.
    #[command(alias = "queue-count")]
    Queues(QueueArgs),
    /// Raw TCP over 127.0.0.1 (no broker, no protocol): writer -> reader and writer -> relay -> reader.
    /// The ceiling for large-message throughput on this machine.
    Loopback(LoopbackArgs),
}

#[derive(Args, Debug)]
struct LoopbackArgs {
    /// Bytes per write (the message size it stands in for).
    #[arg(long, short = 's', default_value_t = 65536)]
    size: usize,
    /// Seconds per pass (direct, then relay).
    #[arg(long, short = 'd', default_value_t = 5.0)]
    duration: f64,
}

#[derive(Args, Debug, Clone)]
struct WorkloadArgs {
    /// Publisher connections [default 1].
    #[arg(long, short = 'P')]
    publishers: Option<usize>,
    /// Consumer connections; consumer k reads queue k mod Q [default 1; fanout: one per queue].
    #[arg(long, short = 'C')]
    consumers: Option<usize>,
    /// Queues; publishers spread messages over them [default 1; fanout: 10].
    #[arg(long, short = 'Q')]
    queues: Option<usize>,
    /// Message body size in bytes (bodies of 8+ bytes carry a send timestamp) [default 16].
    #[arg(long, short = 's')]
    size: Option<usize>,
    /// Publish with delivery-mode 2.
    #[arg(long)]
    persistent: bool,
    /// Declare durable queues (and exchange).
    #[arg(long)]
    durable: bool,
    /// Publisher confirms with at most N unconfirmed messages per publisher (0 = no confirms) [default 0].
    #[arg(long, value_name = "WINDOW")]
    confirm: Option<u64>,
    /// Consume with no-ack.
    #[arg(long)]
    autoack: bool,
    /// basic.qos prefetch count per consumer (0 = unlimited) [default 0].
    #[arg(long)]
    prefetch: Option<u16>,
    /// Ack with multiple=true every K deliveries (1 = ack each one) [default 1].
    #[arg(long, value_name = "K")]
    multiple_ack: Option<u64>,
    /// Exchange type [default direct; fanout mode: fanout].
    #[arg(long, value_enum)]
    exchange_type: Option<ExchangeType>,
    /// Exchange name; '' publishes to the default exchange [default warren-perf.<type>[.durable]].
    #[arg(long)]
    exchange: Option<String>,
    /// Messages per second per publisher, 0 = unlimited [default 0; latency: 10000].
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds to measure, after the warm-up [default 10, unless --count is given].
    #[arg(long, short = 'd')]
    duration: Option<f64>,
    /// Messages per publisher; the run ends once they are consumed (or --duration passes).
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Seconds to run before measuring [default 0; latency: 1].
    #[arg(long)]
    warmup: Option<f64>,
    /// Queue name prefix [default warren-perf-<pid>].
    #[arg(long)]
    queue_prefix: Option<String>,
    /// Leave the queues on the broker afterwards.
    #[arg(long)]
    keep_queues: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Throughput,
    Latency,
    Fanout,
    Backlog,
}

impl WorkloadArgs {
    fn resolve(&self, kind: Kind) -> Result<Workload, Error> {
        let fanout = kind == Kind::Fanout;
        let queues = self.queues.unwrap_or(if fanout { 10 } else { 1 });
        let exchange_type = if fanout {
            if self
                .exchange_type
                .is_some_and(|t| t != ExchangeType::Fanout)
            {
                return Err(Error::Usage("fanout mode uses a fanout exchange".into()));
            }
            ExchangeType::Fanout
        } else {
            self.exchange_type.unwrap_or(ExchangeType::Direct)
        };
        let latency = kind == Kind::Latency;
        let size = self
            .size
            .unwrap_or(if kind == Kind::Backlog { 1024 } else { 16 });
        if latency && size < 8 {
            return Err(Error::Usage(
                "latency mode needs --size of at least 8 (the timestamp)".into(),
            ));
        }
        let duration = match (self.duration, self.count) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(10.0),
        };
        let w = Workload {
            publishers: self.publishers.unwrap_or(1),
            consumers: self.consumers.unwrap_or(if fanout { queues } else { 1 }),
            queues,
            size,
            persistent: self.persistent,
            durable: self.durable,
            confirm: self
                .confirm
                .unwrap_or(if kind == Kind::Backlog { 1000 } else { 0 }),
            autoack: self.autoack,
            prefetch: self
                .prefetch
                .unwrap_or(if kind == Kind::Backlog { 1000 } else { 0 }),
            multiple_ack: self
                .multiple_ack
                .unwrap_or(if kind == Kind::Backlog { 100 } else { 1 }),
            exchange_type,
            exchange: self
                .exchange
                .clone()
                // Durability is part of the name: redeclaring an exchange with the other durability fails.
                .unwrap_or_else(|| {
                    let d = if self.durable { ".durable" } else { "" };
                    format!("warren-perf.{}{d}", exchange_type.name())
                }),
            rate: self.rate.unwrap_or(if latency { 10000.0 } else { 0.0 }),
            duration,
            count: self.count,
            warmup: self.warmup.unwrap_or(if latency { 1.0 } else { 0.0 }),
            queue_prefix: self
                .queue_prefix
                .clone()
                .unwrap_or_else(|| format!("warren-perf-{}", std::process::id())),
            keep_queues: self.keep_queues,
            drain_target: None,
        };
        w.validate()?;
        Ok(w)
    }
}

#[derive(Args, Debug)]
struct BacklogArgs {
    /// Messages to fill the queue with.
    #[arg(long, short = 'm', default_value_t = 1_000_000)]
    messages: u64,
    /// Seconds to let the broker settle before reading its RSS.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Fill and drain, only fill (the queue is kept), or only drain what an earlier fill left.
    #[arg(long, value_enum, default_value_t = modes::BacklogPhase::Both)]
    phase: modes::BacklogPhase,
    /// Publisher, consumer and message options (--queues, --duration, --count, --rate are ignored;
    /// defaults: 1 KiB bodies, confirm window 1000, prefetch 1000, multiple-ack 100).
    #[command(flatten)]
    w: WorkloadArgs,
}

#[derive(Args, Debug)]
struct ConnArgs {
    /// Connections to open.
    #[arg(long, short = 'n', default_value_t = 1000)]
    count: usize,
    /// Channels to open on each connection.
    #[arg(long, default_value_t = 1)]
    channels: u16,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to keep them open (idle) before closing.
    #[arg(long, default_value_t = 2.0)]
    hold: f64,
    /// Seconds to let the broker settle before reading its RSS.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
}

#[derive(Args, Debug)]
struct QueueArgs {
    /// Queues to declare.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    count: usize,
    /// Declare durable queues.
    #[arg(long)]
    durable: bool,
    /// queue.declare methods in flight at once.
    #[arg(long, default_value_t = 100)]
    pipeline: usize,
    /// Queue name prefix [default warren-perf-<pid>].
    #[arg(long)]
    queue_prefix: Option<String>,
    /// Seconds to keep them before deleting.
    #[arg(long, default_value_t = 1.0)]
    hold: f64,
    /// Seconds to let the broker settle before reading its RSS.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
}

fn describe(mode: &str, w: &Workload) -> String {
    let plural = |n: usize, s: &str| format!("{n} {s}{}", if n == 1 { "" } else { "s" });
    let ack = if w.autoack {
        "autoack".to_string()
    } else {
        format!(
            "manual ack (prefetch {}, {})",
            if w.prefetch == 0 {
                "unlimited".to_string()
            } else {
                w.prefetch.to_string()
            },
            if w.multiple_ack > 1 {
                format!("multiple every {}", w.multiple_ack)
            } else {
                "each".to_string()
            }
        )
    };
    format!(
        "warren-perf {mode}: {}, {}, {}; {} B {} messages, {} queues; {}; {}; exchange {} '{}'{}\n",
        plural(w.publishers, "publisher"),
        plural(w.consumers, "consumer"),
        plural(w.queues, "queue"),
        w.size,
        if w.persistent {
            "persistent"
        } else {
            "transient"
        },
        if w.durable { "durable" } else { "transient" },
        if w.confirm > 0 {
            format!("confirm window {}", w.confirm)
        } else {
            "no confirms".to_string()
        },
        ack,
        w.exchange_type.name(),
        w.exchange,
        if w.rate > 0.0 {
            format!("; {} msg/s per publisher", run::fmt_rate(w.rate))
        } else {
            String::new()
        }
    )
}

/// Run a publish/consume workload and format its result.
async fn stream_mode(
    url: &Url,
    w: Workload,
    mode: &str,
    opts: &Options,
) -> Result<(serde_json::Value, String), Error> {
    let mut engine = Engine::new(url.clone(), w.clone());
    engine.setup_topology().await?;
    let result = async {
        engine.start_consumers().await?;
        engine.start_publishers().await?;
        run::measure(&mut engine, opts, mode).await
    }
    .await;
    if result.is_err() {
        engine.stop_all().await;
    }
    let cleanup = engine.teardown_topology().await;
    let m = result?;
    cleanup?;
    let mut json = serde_json::json!({ "mode": mode, "workload": w });
    if let (Some(obj), Ok(serde_json::Value::Object(m))) =
        (json.as_object_mut(), serde_json::to_value(&m))
    {
        obj.extend(m);
    }
    Ok((json, describe(mode, &w) + &run::human(&m)))
}

async fn run_cli(cli: Cli) -> Result<(serde_json::Value, String), Error> {
    let url = Url::parse(&cli.common.url)?;
    let broker_pid = cli
        .common
        .broker_pid
        .or_else(|| stats::find_listener_pid(url.port));
    let opts = Options::new(cli.common.progress, cli.common.quiet, broker_pid);
    match cli.mode {
        Mode::Throughput(a) => {
            stream_mode(&url, a.resolve(Kind::Throughput)?, "throughput", &opts).await
        }
        Mode::Latency(a) => {
            let w = a.resolve(Kind::Latency)?;
            if w.consumers == 0 {
                return Err(Error::Usage("latency mode needs a consumer".into()));
            }
            stream_mode(&url, w, "latency", &opts).await
        }
        Mode::Fanout(a) => stream_mode(&url, a.resolve(Kind::Fanout)?, "fanout", &opts).await,
        Mode::Backlog(b) => {
            let mut w = b.w.clone();
            w.count = Some(1);
            let w = w.resolve(Kind::Backlog)?;
            modes::backlog(&url, w, b.messages, b.settle, b.phase, &opts).await
        }
        Mode::Connections(c) => {
            modes::connections(
                &url,
                c.count,
                c.channels,
                c.concurrency,
                c.hold,
                c.settle,
                &opts,
            )
            .await
        }
        Mode::Loopback(l) => {
            // Blocking threads; keep them off the runtime's workers.
            tokio::task::spawn_blocking(move || loopback::loopback(l.size, l.duration))
                .await
                .map_err(|e| Error::Usage(format!("loopback: {e}")))?
        }
        Mode::Queues(q) => {
            let prefix = q
                .queue_prefix
                .clone()
                .unwrap_or_else(|| format!("warren-perf-{}", std::process::id()));
            modes::queues(
                &url, q.count, q.durable, q.pipeline, &prefix, q.hold, q.settle, &opts,
            )
            .await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.common.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warren-perf: cannot start the tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run_cli(cli)) {
        Ok((value, human)) => {
            let text = if json { format!("{value}\n") } else { human };
            // A closed pipe (e.g. `| head`) is not worth a panic.
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warren-perf: error: {e}");
            if json {
                let _ = writeln!(
                    std::io::stdout(),
                    "{}",
                    serde_json::json!({ "error": e.to_string() })
                );
            }
            ExitCode::from(match e {
                Error::Usage(_) => 2,
                _ => 1,
            })
        }
    }
}
