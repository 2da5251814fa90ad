//! The publish/consume engine behind the throughput, latency, fanout and backlog modes: topology setup on a
//! control connection, one connection per publisher and per consumer, and the hot loops.
//! The hot loops live in `publisher` and `consumer`.

use crate::amqp::{Conn, Error, Result, Url};
use crate::consumer::{consume, ConPlan};
use crate::publisher::{publish, PubPlan};
use crate::stats::{self, ConCounters, PubCounters};
use crate::wire::{MessageSpec, PublishTemplate};
use amq_protocol::types::{AMQPValue, FieldTable};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Where fatal errors from any task go; the monitor stops the run on the first one.
pub type Fatal = mpsc::UnboundedSender<Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeType {
    pub fn name(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
            ExchangeType::Headers => "headers",
        }
    }
}

/// A fully resolved publish/consume workload.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub publishers: usize,
    pub consumers: usize,
    pub queues: usize,
    pub size: usize,
    pub persistent: bool,
    pub durable: bool,
    /// Outstanding unconfirmed messages per publisher; 0 = no confirms.
    pub confirm: u64,
    pub autoack: bool,
    /// 0 = no basic.qos (unlimited).
    pub prefetch: u16,
    /// Ack every K deliveries with multiple=true (1 = every delivery, multiple=false).
    pub multiple_ack: u64,
    pub exchange_type: ExchangeType,
    /// "" = the default exchange (direct only).
    pub exchange: String,
    /// Messages per second per publisher; 0 = as fast as possible.
    pub rate: f64,
    pub duration: Option<f64>,
    /// Messages per publisher.
    pub count: Option<u64>,
    pub warmup: f64,
    pub queue_prefix: String,
    pub keep_queues: bool,
    /// Backlog drain: stop once consumers have received this many messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_target: Option<u64>,
}

impl Workload {
    pub fn queue_name(&self, i: usize) -> String {
        format!("{}-{}", self.queue_prefix, i)
    }

    /// How many queues each published message lands in.
    pub fn fan(&self) -> u64 {
        if self.exchange_type == ExchangeType::Fanout {
            self.queues as u64
        } else {
            1
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |s: &str| Err(Error::Usage(s.to_string()));
        if self.queues == 0 {
            return bad("--queues must be at least 1");
        }
        if self.exchange.is_empty() && self.exchange_type != ExchangeType::Direct {
            return bad(
                "the default exchange (--exchange '') is direct; name an exchange for other types",
            );
        }
        if !self.autoack && self.prefetch > 0 && self.multiple_ack > self.prefetch as u64 {
            return bad("--multiple-ack larger than --prefetch would stall: the broker stops delivering before the ack is due");
        }
        if self.multiple_ack == 0 {
            return bad("--multiple-ack must be at least 1");
        }
        if self.rate < 0.0 || !self.rate.is_finite() {
            return bad("--rate must be >= 0");
        }
        if self.duration.is_none() && self.count.is_none() {
            return bad("give --duration or --count");
        }
        Ok(())
    }
}

/// Everything the monitor needs to watch and stop a running workload.
pub struct Engine {
    pub url: Url,
    pub w: Workload,
    pub pubs: Vec<Arc<PubCounters>>,
    pub cons: Vec<Arc<ConCounters>>,
    stop_pub: watch::Sender<bool>,
    stop_con: watch::Sender<bool>,
    go: watch::Sender<bool>,
    pub fatal_tx: Fatal,
    pub fatal_rx: mpsc::UnboundedReceiver<Error>,
    tasks: Vec<JoinHandle<()>>,
    con_tasks: Vec<JoinHandle<()>>,
    /// Whether consumers read timestamps (false when messages may predate the run, as in backlog).
    pub timestamps: bool,
}

impl Engine {
    pub fn new(url: Url, w: Workload) -> Engine {
        let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
        Engine {
            url,
            w,
            pubs: Vec::new(),
            cons: Vec::new(),
            stop_pub: watch::channel(false).0,
            stop_con: watch::channel(false).0,
            go: watch::channel(false).0,
            fatal_tx,
            fatal_rx,
            tasks: Vec::new(),
            con_tasks: Vec::new(),
            timestamps: true,
        }
    }

    /// Declare the exchange and queues and bind them, on a short-lived control connection.
    pub async fn setup_topology(&self) -> Result<()> {
        let w = &self.w;
        let mut c = Conn::open(&self.url, "warren-perf control").await?;
        c.channel_open(1).await?;
        if !w.exchange.is_empty() {
            c.exchange_declare(1, &w.exchange, w.exchange_type.name(), w.durable)
                .await?;
        }
        for i in 0..w.queues {
            let q = w.queue_name(i);
            c.queue_declare(1, &q, w.durable, false).await?;
            if w.exchange.is_empty() {
                continue;
            }
            let (key, args) = binding(w.exchange_type, &q);
            c.queue_bind(1, &q, &w.exchange, &key, args).await?;
        }
        c.close().await
    }

    /// Delete the workload's queues (unless asked to keep them).
    pub async fn teardown_topology(&self) -> Result<()> {
        if self.w.keep_queues {
            return Ok(());
        }
        let mut c = Conn::open(&self.url, "warren-perf cleanup").await?;
        c.channel_open(1).await?;
        for i in 0..self.w.queues {
            c.queue_delete(1, &self.w.queue_name(i)).await?;
        }
        c.close().await
    }

    /// Open the consumer connections and start consuming: at once, or for a drain at [`Engine::go`], so that
    /// the drain is timed from its first delivery (a thousand consumers take a while to connect, and the
    /// first of them would otherwise drain their queues before the clock starts).
    pub async fn start_consumers(&mut self) -> Result<()> {
        for k in 0..self.w.consumers {
            let label = format!("warren-perf consumer {k}");
            let mut c = Conn::open(&self.url, &label).await?;
            c.channel_open(1).await?;
            if !self.w.autoack && self.w.prefetch > 0 {
                c.qos(1, self.w.prefetch).await?;
            }
            let queue = self.w.queue_name(k % self.w.queues);
            let autoack = self.w.autoack;
            let mut go = self.w.drain_target.map(|_| self.go.subscribe());
            if go.is_none() {
                c.consume(1, &queue, autoack).await?;
            }
            let counters = Arc::new(ConCounters::default());
            self.cons.push(counters.clone());
            let plan = ConPlan {
                autoack: self.w.autoack,
                multiple_ack: self.w.multiple_ack,
                timestamps: self.timestamps,
            };
            let stop = self.stop_con.subscribe();
            let fatal = self.fatal_tx.clone();
            self.con_tasks.push(tokio::spawn(async move {
                let r = async {
                    if let Some(go) = go.as_mut() {
                        if go.wait_for(|g| *g).await.is_err() {
                            return Ok(());
                        }
                        c.consume(1, &queue, autoack).await?;
                    }
                    consume(c, plan, counters, stop).await
                };
                if let Err(e) = r.await {
                    let _ = fatal.send(e);
                }
            }));
        }
        Ok(())
    }

    /// Open the publisher connections; they wait for [`Engine::go`].
    pub async fn start_publishers(&mut self) -> Result<()> {
        let w = &self.w;
        for j in 0..w.publishers {
            let label = format!("warren-perf publisher {j}");
            let mut c = Conn::open(&self.url, &label).await?;
            c.channel_open(1).await?;
            if w.confirm > 0 {
                c.confirm_select(1).await?;
            }
            let targets: Vec<usize> = if w.exchange_type == ExchangeType::Fanout {
                vec![0]
            } else if w.publishers >= w.queues {
                vec![j % w.queues]
            } else {
                (0..w.queues).filter(|i| i % w.publishers == j).collect()
            };
            let templates = targets
                .iter()
                .map(|&i| {
                    let q = w.queue_name(i);
                    let (key, header) = match w.exchange_type {
                        ExchangeType::Fanout => (String::new(), None),
                        ExchangeType::Headers => (String::new(), Some(q.clone())),
                        _ => (q.clone(), None),
                    };
                    PublishTemplate::new(&MessageSpec {
                        channel: 1,
                        exchange: &w.exchange,
                        routing_key: &key,
                        size: w.size,
                        persistent: w.persistent,
                        header: header.as_deref().map(|h| ("warren-perf-queue", h)),
                        frame_max: c.frame_max,
                    })
                })
                .collect();
            let plan = PubPlan {
                templates,
                confirm_window: w.confirm,
                rate: w.rate,
                count: w.count,
            };
            let counters = Arc::new(PubCounters::default());
            self.pubs.push(counters.clone());
            let (go, stop, fatal) = (
                self.go.subscribe(),
                self.stop_pub.subscribe(),
                self.fatal_tx.clone(),
            );
            self.tasks.push(tokio::spawn(async move {
                if let Err(e) = publish(c, plan, counters.clone(), go, stop, fatal.clone()).await {
                    let _ = fatal.send(e);
                }
                counters.done.store(true, Ordering::Release);
                counters.notify.notify_one();
            }));
        }
        Ok(())
    }

    /// Release the publishers.
    pub fn go(&self) {
        let _ = self.go.send(true);
    }

    /// Stop everything and wait (bounded) for the connections to close.
    pub async fn stop_all(&mut self) {
        let _ = self.stop_pub.send(true);
        let _ = self.stop_con.send(true);
        let all: Vec<JoinHandle<()>> = self
            .tasks
            .drain(..)
            .chain(self.con_tasks.drain(..))
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for mut t in all {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
            }
        }
    }

    pub fn publishers_done(&self) -> bool {
        self.pubs.iter().all(|p| p.done.load(Ordering::Acquire))
    }

    /// Current totals.
    pub fn totals(&self) -> Totals {
        Totals {
            published: stats::sum(&self.pubs, |p| &p.published),
            confirmed: stats::sum(&self.pubs, |p| &p.confirmed),
            nacked: stats::sum(&self.pubs, |p| &p.nacked),
            returned: stats::sum(&self.pubs, |p| &p.returned),
            consumed: stats::sum(&self.cons, |c| &c.consumed),
            consumed_bytes: stats::sum(&self.cons, |c| &c.bytes),
            blocked: self.pubs.iter().any(|p| p.blocked.load(Ordering::Relaxed)),
        }
    }

    /// Drain every consumer's per-interval latency histogram into one.
    pub fn take_interval_latency(&self) -> stats::Histogram {
        let mut h = stats::Histogram::default();
        for c in &self.cons {
            if let Ok(mut l) = c.latency.lock() {
                h.merge(&l.interval);
                l.interval.clear();
            }
        }
        h
    }

    pub fn total_latency(&self) -> stats::Histogram {
        let mut h = stats::Histogram::default();
        for c in &self.cons {
            if let Ok(l) = c.latency.lock() {
                h.merge(&l.total);
            }
        }
        h
    }

    pub fn reset_total_latency(&self) {
        for c in &self.cons {
            if let Ok(mut l) = c.latency.lock() {
                l.total.clear();
            }
        }
    }
}

/// Counter totals at one instant.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    pub published: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub returned: u64,
    pub consumed: u64,
    pub consumed_bytes: u64,
    #[serde(skip)]
    pub blocked: bool,
}

impl Totals {
    pub fn minus(&self, o: &Totals) -> Totals {
        Totals {
            published: self.published - o.published,
            confirmed: self.confirmed - o.confirmed,
            nacked: self.nacked - o.nacked,
            returned: self.returned - o.returned,
            consumed: self.consumed - o.consumed,
            consumed_bytes: self.consumed_bytes - o.consumed_bytes,
            blocked: self.blocked,
        }
    }
}

/// The binding key and arguments for queue `q` on an exchange of type `t`.
fn binding(t: ExchangeType, q: &str) -> (String, FieldTable) {
    let mut args = FieldTable::default();
    match t {
        ExchangeType::Direct | ExchangeType::Topic => (q.to_string(), args),
        ExchangeType::Fanout => (String::new(), args),
        ExchangeType::Headers => {
            args.insert("x-match".into(), AMQPValue::LongString("all".into()));
            args.insert("warren-perf-queue".into(), AMQPValue::LongString(q.into()));
            (String::new(), args)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{self, Options};

    fn workload(prefix: &str) -> Workload {
        Workload {
            publishers: 2,
            consumers: 2,
            queues: 2,
            size: 100,
            persistent: false,
            durable: false,
            confirm: 50,
            autoack: false,
            prefetch: 20,
            multiple_ack: 5,
            exchange_type: ExchangeType::Direct,
            exchange: "warren-perf.test".into(),
            rate: 0.0,
            duration: Some(30.0),
            count: Some(1000),
            warmup: 0.0,
            queue_prefix: prefix.into(),
            keep_queues: false,
            drain_target: None,
        }
    }

    /// An in-process Warren on a free port, nothing on disk, and its URL.
    async fn start_warren() -> (warren::Server, Url) {
        let server = warren::Server::start(warren::Config {
            port: 0,
            ephemeral: true,
            ..Default::default()
        })
        .await
        .expect("start warren");
        let url = Url::parse(&server.amqp_url()).expect("url");
        (server, url)
    }

    /// A counted run against an in-process Warren: every message published is confirmed and consumed once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counted_runs_end_to_end() {
        let (server, url) = start_warren().await;
        let opts = Options::new(false, true, None);
        for (i, t) in [
            ExchangeType::Direct,
            ExchangeType::Fanout,
            ExchangeType::Topic,
            ExchangeType::Headers,
        ]
        .into_iter()
        .enumerate()
        {
            let mut w = workload(&format!("t{i}"));
            w.exchange_type = t;
            w.exchange = format!("warren-perf.test.{}", t.name());
            let mut e = Engine::new(url.clone(), w.clone());
            e.setup_topology().await.expect("topology");
            e.start_consumers().await.expect("consumers");
            e.start_publishers().await.expect("publishers");
            let m = run::measure(&mut e, &opts, "test").await.expect("run");
            e.teardown_topology().await.expect("teardown");
            assert_eq!(m.totals.published, 2000, "{t:?}");
            assert_eq!(m.totals.confirmed, 2000, "{t:?}");
            assert_eq!(m.totals.consumed, 2000 * w.fan(), "{t:?}");
            assert_eq!(m.end, "count", "{t:?}");
            assert!(m.latency.is_some_and(|l| l.samples == m.totals.consumed));
        }
        server.shutdown().await;
    }

    /// A broker-side failure (publishing to a missing exchange) ends the run with that error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broker_errors_end_the_run() {
        let (server, url) = start_warren().await;
        let mut w = workload("err");
        w.exchange = "warren-perf.missing".into();
        let mut e = Engine::new(url, w);
        // No topology: the publishers' exchange does not exist.
        e.start_publishers().await.expect("publishers");
        let r = run::measure(&mut e, &Options::new(false, true, None), "test").await;
        match r {
            Err(Error::ChannelClosed { code: 404, .. }) => {}
            other => panic!("expected a 404 channel close, got {other:?}"),
        }
        server.shutdown().await;
    }
}
