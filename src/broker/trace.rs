//! RabbitMQ's firehose: with tracing on in a vhost (`PUT /api/vhosts/{v}` `{"tracing": true}`, or
//! `warrenctl trace_on`), every publish and every delivery is copied to the vhost's `amq.rabbitmq.trace`
//! topic exchange, with RabbitMQ's routing keys (`publish.<exchange>`, `deliver.<queue>`) and headers, so
//! existing tracing tools work unchanged.
//!
//! Deliveries are made under a queue's lock, and a trace copy is itself routed into queues; so copies are
//! not published where they arise but handed to one tracer thread that publishes them in order. The hand-
//! off is bounded: when the tracer falls behind by `QUEUE_LIMIT` copies or `BYTES_LIMIT` bytes, further
//! copies are dropped and counted rather than letting memory grow with the flood being traced. The copies'
//! headers are built on the tracer thread, so the caller's locks are held only for the hand-off.

use super::vhost::VHost;
use crate::protocol;
use crate::queue::message::Message;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};
use bytes::Bytes;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Weak};

/// The exchange every vhost has for the firehose.
pub const TRACE_EXCHANGE: &str = "amq.rabbitmq.trace";

/// Copies waiting for the tracer thread, at most, and the message bytes they may hold.
const QUEUE_LIMIT: usize = 65_536;
const BYTES_LIMIT: usize = 64 * 1024 * 1024;

/// Who published or received a traced message.
pub struct Origin<'a> {
    pub connection: &'a Arc<str>,
    pub channel: u16,
    pub user: &'a Arc<str>,
    /// For the journal's `published` event.
    pub mandatory: bool,
    /// Copy to the firehose (a transaction's publishes were traced when made, not at commit).
    pub trace: bool,
}

struct Copy {
    vhost: Weak<VHost>,
    msg: Arc<Message>,
    event: Event,
    connection: Arc<str>,
    channel: u16,
    user: Arc<str>,
    /// Bytes this copy holds, counted against `BYTES_LIMIT` until the tracer takes it.
    size: usize,
}

/// The broker's tracer: a lazily started thread publishing trace copies.
#[derive(Default)]
pub struct Firehose {
    tx: Mutex<Option<SyncSender<Copy>>>,
    /// Message bytes held by copies waiting for the tracer.
    bytes: Arc<AtomicUsize>,
    /// Copies dropped because the tracer was too far behind.
    pub dropped: AtomicU64,
}

impl std::fmt::Debug for Firehose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firehose")
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

fn ls(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// A field table encoded in the order its entries are added (amq-protocol's tables are sorted by key;
/// RabbitMQ's trace headers are in the order its tracer builds them), kept decoded beside for the broker.
#[derive(Default)]
struct Ordered {
    bytes: Vec<u8>,
    table: FieldTable,
}

impl Ordered {
    fn put(&mut self, name: &str, v: AMQPValue) {
        let mut one = FieldTable::default();
        one.insert(name.into(), v.clone());
        let ctx = amq_protocol::frame::WriteContext::from(Vec::new());
        if let Ok(ctx) = amq_protocol::types::generation::gen_field_table(&one)(ctx) {
            // Skip the one-entry table's length prefix: what remains is the entry itself.
            self.bytes.extend_from_slice(&ctx.into_inner().0[4..]);
        }
        self.table.insert(name.into(), v);
    }

    fn put_table(&mut self, name: &str, t: Ordered) {
        self.put_encoded_table(name, &t.bytes, t.table);
    }

    /// A table entry whose entries are already encoded (`raw`) and decoded (`table`).
    fn put_encoded_table(&mut self, name: &str, raw: &[u8], table: FieldTable) {
        self.bytes.push(name.len() as u8);
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(b'F');
        self.bytes
            .extend_from_slice(&(raw.len() as u32).to_be_bytes());
        self.bytes.extend_from_slice(raw);
        self.table.insert(name.into(), AMQPValue::FieldTable(table));
    }

    fn put_strs<'a>(&mut self, name: &str, items: impl Iterator<Item = &'a str>) {
        let a: Vec<AMQPValue> = items.map(ls).collect();
        self.put(name, AMQPValue::FieldArray(FieldArray::from(a)));
    }
}

/// RabbitMQ's `properties` table: each property that is set, in reverse order of their definition, integers
/// as signed 32-bit ints (a later timestamp wraps, as there), the headers table as it is — as the publisher
/// encoded it, when the broker has not re-encoded it since.
fn properties_table(msg: &Message) -> Ordered {
    let p = msg.props();
    let mut t = Ordered::default();
    let s = |t: &mut Ordered, k: &str, v: &Option<amq_protocol::types::ShortString>| {
        if let Some(v) = v {
            t.put(k, ls(v.as_str()));
        }
    };
    s(&mut t, "cluster_id", p.cluster_id());
    s(&mut t, "app_id", p.app_id());
    s(&mut t, "user_id", p.user_id());
    s(&mut t, "type", p.kind());
    if let Some(ts) = p.timestamp() {
        t.put("timestamp", AMQPValue::LongInt(*ts as i32));
    }
    s(&mut t, "message_id", p.message_id());
    s(&mut t, "expiration", p.expiration());
    s(&mut t, "reply_to", p.reply_to());
    s(&mut t, "correlation_id", p.correlation_id());
    if let Some(v) = p.priority() {
        t.put("priority", AMQPValue::LongInt(i32::from(*v)));
    }
    if let Some(m) = p.delivery_mode() {
        t.put("delivery_mode", AMQPValue::LongInt(i32::from(*m)));
    }
    if let Some(h) = p.headers() {
        match protocol::raw_headers(&msg.header) {
            Some(raw) => t.put_encoded_table("headers", raw, h.clone()),
            None => t.put("headers", AMQPValue::FieldTable(h.clone())),
        }
    }
    s(&mut t, "content_encoding", p.content_encoding());
    s(&mut t, "content_type", p.content_type());
    t
}

/// The headers every trace copy starts with: the message's exchange, its routing keys (routing key, CC,
/// then BCC, as published), its properties and the node.
fn base_headers(msg: &Message, bcc: &[String]) -> Ordered {
    let mut h = Ordered::default();
    h.put("exchange_name", ls(&msg.exchange));
    let keys = crate::queue::deadletter::publish_keys(msg);
    h.put_strs("routing_keys", keys.iter().chain(bcc).map(String::as_str));
    h.put_table("properties", properties_table(msg));
    h.put("node", ls(protocol::NODE_NAME));
    h
}

fn add_origin(h: &mut Ordered, vhost: &str, o: &Origin<'_>) {
    h.put("vhost", ls(vhost));
    h.put("connection", ls(o.connection));
    h.put("channel", AMQPValue::LongInt(i32::from(o.channel)));
    h.put("user", ls(o.user));
}

/// The content header of a trace copy: only the headers property set.
fn content_header(body_len: usize, h: &Ordered) -> Bytes {
    let mut b = Vec::with_capacity(18 + h.bytes.len());
    b.extend_from_slice(&60u16.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&(body_len as u64).to_be_bytes());
    b.extend_from_slice(&0x2000u16.to_be_bytes());
    b.extend_from_slice(&(h.bytes.len() as u32).to_be_bytes());
    b.extend_from_slice(&h.bytes);
    Bytes::from(b)
}

/// What a trace copy is about; its headers are built on the tracer thread, not under the caller's locks.
enum Event {
    Publish {
        bcc: Vec<String>,
        queues: Vec<Arc<str>>,
    },
    Deliver {
        queue: Arc<str>,
        redelivered: bool,
    },
}

impl Firehose {
    /// Trace a publish of `msg` (as queues got it, without its BCC header; `bcc` its BCC keys) that
    /// reached `queues`.
    pub fn published(
        &self,
        vhost: &VHost,
        msg: &Arc<Message>,
        bcc: &[String],
        queues: &[Arc<str>],
        o: &Origin<'_>,
    ) {
        let event = Event::Publish {
            bcc: bcc.to_vec(),
            queues: queues.to_vec(),
        };
        self.send(vhost, msg, event, o);
    }

    /// Trace a delivery (or basic.get) of `msg` from `queue`.
    pub fn delivered(
        &self,
        vhost: &VHost,
        queue: &Arc<str>,
        msg: &Arc<Message>,
        redelivered: bool,
        o: &Origin<'_>,
    ) {
        let event = Event::Deliver {
            queue: queue.clone(),
            redelivered,
        };
        self.send(vhost, msg, event, o);
    }

    fn send(&self, vhost: &VHost, msg: &Arc<Message>, event: Event, o: &Origin<'_>) {
        if &*msg.exchange == TRACE_EXCHANGE {
            return;
        }
        let size = msg.body.len() + msg.header.len();
        if self.bytes.load(Ordering::Relaxed) + size > BYTES_LIMIT {
            self.drop_one(vhost);
            return;
        }
        let copy = Copy {
            vhost: vhost.weak(),
            msg: msg.clone(),
            event,
            connection: o.connection.clone(),
            channel: o.channel,
            user: o.user.clone(),
            size,
        };
        let mut tx = self.tx.lock();
        let sender = tx.get_or_insert_with(|| spawn_tracer(self.bytes.clone()));
        match sender.try_send(copy) {
            Ok(()) => {
                self.bytes.fetch_add(size, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                drop(tx);
                self.drop_one(vhost);
            }
            Err(TrySendError::Disconnected(_)) => {
                // The thread could not be started (logged there); try again on the next copy.
                *tx = None;
            }
        }
    }

    fn drop_one(&self, vhost: &VHost) {
        if self
            .dropped
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(10_000)
        {
            tracing::warn!(
                vhost = %vhost.name,
                dropped = self.dropped.load(Ordering::Relaxed),
                "firehose tracer is behind; trace copies dropped"
            );
        }
    }
}

/// The trace copy's routing key and headers, as RabbitMQ builds them.
fn build(c: &Copy, vhost: &str) -> (String, Ordered) {
    let msg = &c.msg;
    let o = Origin {
        connection: &c.connection,
        channel: c.channel,
        user: &c.user,
        mandatory: false,
        trace: true,
    };
    match &c.event {
        Event::Publish { bcc, queues } => {
            let mut h = base_headers(msg, bcc);
            add_origin(&mut h, vhost, &o);
            // De-duplicated and sorted, as RabbitMQ reports them; for the default exchange its routing
            // keys, whether such queues exist or not.
            let mut names: Vec<String> = if msg.exchange.is_empty() {
                crate::queue::deadletter::publish_keys(msg)
                    .into_iter()
                    .chain(bcc.iter().cloned())
                    .filter(|k| !k.starts_with(super::vhost::REPLY_TO_PREFIX))
                    .collect()
            } else {
                queues.iter().map(|q| q.to_string()).collect()
            };
            names.sort_unstable();
            names.dedup();
            h.put_strs("routed_queues", names.iter().map(String::as_str));
            (format!("publish.{}", msg.exchange), h)
        }
        Event::Deliver { queue, redelivered } => {
            let mut h = base_headers(msg, &[]);
            h.put("redelivered", AMQPValue::LongInt(i32::from(*redelivered)));
            add_origin(&mut h, vhost, &o);
            (format!("deliver.{queue}"), h)
        }
    }
}

fn spawn_tracer(bytes: Arc<AtomicUsize>) -> SyncSender<Copy> {
    let (tx, rx) = sync_channel::<Copy>(QUEUE_LIMIT);
    let started = std::thread::Builder::new()
        .name("warren-firehose".into())
        .spawn(move || {
            // Ends when the broker (and with it the sender) is gone.
            while let Ok(c) = rx.recv() {
                bytes.fetch_sub(c.size, Ordering::Relaxed);
                let Some(vhost) = c.vhost.upgrade() else {
                    continue;
                };
                let Some(x) = vhost.exchange(TRACE_EXCHANGE) else {
                    continue;
                };
                let (routing_key, headers) = build(&c, &vhost.name);
                let body = c.msg.body.clone();
                let header = content_header(body.len(), &headers);
                let props = BasicProperties::default().with_headers(headers.table);
                let msg = Message {
                    exchange: x.name.clone(),
                    routing_key: crate::queue::message::short(&routing_key).into(),
                    header,
                    properties: crate::queue::message::Props::new(props),
                    body,
                    broker_deaths: false,
                };
                vhost.publish(&x, Arc::new(msg), None, None);
            }
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "cannot start the firehose tracer thread");
    }
    tx
}
