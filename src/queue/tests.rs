//! Queue behaviour without sockets: a recording channel stands in for the channel layer, a recording host
//! for the vhost, and a manual clock for time.

use super::*;
use crate::clock::{Clock, Scheduler};
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::Bytes;
use message::Message;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A channel that takes what its consumers have room for (per-consumer prefetch only) and records it.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    /// (consumer tag, body, redelivered)
    got: Mutex<Vec<(String, String, bool)>>,
    /// Deliveries taken per consumer, not yet acked, in order.
    held: Mutex<Vec<(String, Held)>>,
    cancelled: Mutex<Vec<String>>,
    /// Wake-ups of the channel's writer (`flush`) so far.
    flushes: AtomicU32,
}

impl ConsumerChannel for Recorder {
    fn flush(&self) {
        self.flushes.fetch_add(1, Ordering::Relaxed);
    }
    fn deliver(&self, c: &Arc<Consumer>, q: &Arc<Queue>, qm: &QueuedMessage) -> bool {
        if !c.no_ack && c.prefetch != 0 && c.unacked.load(Ordering::Relaxed) >= c.prefetch {
            return false;
        }
        if !c.no_ack {
            c.unacked.fetch_add(1, Ordering::Relaxed);
            self.held.lock().push((c.tag.to_string(), q.hold(qm)));
        }
        self.got.lock().push((
            c.tag.to_string(),
            String::from_utf8_lossy(&qm.msg.body).into_owned(),
            qm.redelivered,
        ));
        true
    }
    fn deliver_get(&self, _q: &Arc<Queue>, qm: QueuedMessage, _no_ack: bool, _remaining: u32) {
        self.got.lock().push((
            "get".into(),
            String::from_utf8_lossy(&qm.msg.body).into_owned(),
            qm.redelivered,
        ));
    }
    fn cancelled(&self, c: &Arc<Consumer>) {
        self.cancelled.lock().push(c.tag.to_string());
    }
    fn key(&self) -> (u64, u16) {
        (1, 1)
    }
}

impl Recorder {
    fn bodies_of(&self, tag: &str) -> Vec<String> {
        self.got
            .lock()
            .iter()
            .filter(|(t, _, _)| t == tag)
            .map(|(_, b, _)| b.clone())
            .collect()
    }

    /// Take back the held deliveries of `tag` (for ack or requeue).
    fn take(&self, tag: &str, consumers: &[Arc<Consumer>]) -> Vec<Held> {
        let mut held = self.held.lock();
        let (mine, rest): (Vec<_>, Vec<_>) = held.drain(..).partition(|(t, _)| t == tag);
        *held = rest;
        if let Some(c) = consumers.iter().find(|c| &*c.tag == tag) {
            c.unacked.fetch_sub(mine.len() as u32, Ordering::Relaxed);
        }
        mine.into_iter().map(|(_, m)| m).collect()
    }
}

/// A vhost that routes every dead-lettered message to one queue and records expiry requests.
#[derive(Default)]
struct Host {
    target: Mutex<Option<Arc<Queue>>>,
    expired: Mutex<Vec<String>>,
}

impl QueueHost for Host {
    fn route(&self, _x: &str, _keys: &[&str], _h: Option<&FieldTable>, out: &mut Routed) -> bool {
        match self.target.lock().clone() {
            Some(q) => {
                out.push(q);
                true
            }
            None => false,
        }
    }
    fn expire(&self, queue: &Arc<Queue>) {
        self.expired.lock().push(queue.name.to_string());
    }
}

struct Fixture {
    timers: Arc<Scheduler>,
    host: Arc<Host>,
    ch: Arc<Recorder>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            timers: Scheduler::new(Clock::manual()),
            host: Arc::new(Host::default()),
            ch: Arc::new(Recorder::default()),
        }
    }

    fn queue(&self, name: &str, args: &[(&str, AMQPValue)]) -> Arc<Queue> {
        let mut t = FieldTable::default();
        for (k, v) in args {
            t.insert((*k).into(), v.clone());
        }
        let host: Weak<dyn QueueHost> = Arc::downgrade(&self.host) as Weak<dyn QueueHost>;
        Arc::new(Queue::new(QueueSpec {
            name,
            vhost: "/",
            durable: false,
            exclusive_owner: None,
            auto_delete: false,
            arguments: t,
            host,
            timers: self.timers.clone(),
            storage: None,
            journal: crate::journal::Journal::off(),
            compat: Default::default(),
        }))
    }

    /// A durable queue on a store in `dir`, crowded from the start: it keeps 8 stored messages in memory.
    fn stored_queue(
        &self,
        dir: &crate::store::tests::TempDir,
        name: &str,
        args: &[(&str, AMQPValue)],
    ) -> Arc<Queue> {
        let mut t = FieldTable::default();
        for (k, v) in args {
            t.insert((*k).into(), v.clone());
        }
        let (store, _) =
            crate::store::MessageStore::open(crate::store::StoreConfig::new(&dir.0)).unwrap();
        let budget = paging::MemoryBudget::with_keep_stored(u64::MAX, 8, paging::KEEP_STORED_TOTAL);
        let host: Weak<dyn QueueHost> = Arc::downgrade(&self.host) as Weak<dyn QueueHost>;
        Arc::new(Queue::new(QueueSpec {
            name,
            vhost: "/",
            durable: true,
            exclusive_owner: None,
            auto_delete: false,
            arguments: t,
            host,
            timers: self.timers.clone(),
            storage: Some(Storage { store, budget }),
            journal: crate::journal::Journal::off(),
            compat: Default::default(),
        }))
    }

    fn consumer(&self, q: &Arc<Queue>, tag: &str, priority: i32, prefetch: u32) -> Arc<Consumer> {
        let c = Arc::new(Consumer {
            tag: tag.into(),
            channel: self.ch.clone(),
            queue: q.clone(),
            no_ack: false,
            exclusive: false,
            priority,
            prefetch,
            unacked: AtomicU32::new(0),
            arguments: FieldTable::default(),
            timeout: None,
        });
        q.add_consumer(c.clone(), || {}).unwrap();
        c
    }
}

fn msg(body: &str, props: BasicProperties) -> MessageRef {
    Arc::new(Message {
        exchange: "".into(),
        routing_key: "q".into(),
        header: crate::protocol::encode_content_header(body.len() as u64, &props),
        properties: crate::queue::message::Props::new(props),
        body: Bytes::copy_from_slice(body.as_bytes()),
        broker_deaths: false,
    })
}

fn publish_all(q: &Arc<Queue>, bodies: &[&str]) {
    for b in bodies {
        q.publish(msg(b, BasicProperties::default()));
    }
}

fn int(n: i64) -> AMQPValue {
    AMQPValue::LongLongInt(n)
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

#[test]
fn round_robin_within_a_priority() {
    let f = Fixture::new();
    let q = f.queue("q", &[]);
    f.consumer(&q, "a", 0, 0);
    f.consumer(&q, "b", 0, 0);
    publish_all(&q, &["1", "2", "3", "4"]);
    assert_eq!(f.ch.bodies_of("a"), ["1", "3"]);
    assert_eq!(f.ch.bodies_of("b"), ["2", "4"]);
}

#[test]
fn higher_priority_consumers_first_until_full() {
    let f = Fixture::new();
    let q = f.queue("q", &[]);
    let lo = f.consumer(&q, "lo", 0, 0);
    let hi = f.consumer(&q, "hi", 5, 2);
    publish_all(&q, &["1", "2", "3", "4"]);
    assert_eq!(f.ch.bodies_of("hi"), ["1", "2"]);
    assert_eq!(f.ch.bodies_of("lo"), ["3", "4"]);
    // Once the high-priority consumer has room again it is served first.
    let acked = f.ch.take("hi", &[lo, hi.clone()]);
    q.acked(&acked);
    publish_all(&q, &["5"]);
    assert_eq!(f.ch.bodies_of("hi"), ["1", "2", "5"]);
}

#[test]
fn prefetch_holds_messages_until_acks() {
    let f = Fixture::new();
    let q = f.queue("q", &[]);
    let c = f.consumer(&q, "c", 0, 2);
    publish_all(&q, &["1", "2", "3", "4", "5"]);
    assert_eq!(f.ch.bodies_of("c"), ["1", "2"]);
    assert_eq!((q.message_count(), q.unacked_count()), (3, 2));
    let held = f.ch.take("c", std::slice::from_ref(&c));
    q.acked(&held);
    assert_eq!(f.ch.bodies_of("c"), ["1", "2", "3", "4"]);
    assert_eq!((q.message_count(), q.unacked_count()), (1, 2));
}

/// A round wakes a channel's writer at its first delivery and once more at the end if it sent more since,
/// once per channel however many of its consumers were served.
#[test]
fn a_dispatch_round_wakes_each_channel_once_at_first_and_once_at_the_end() {
    let f = Fixture::new();
    let q = f.queue("q", &[]);
    let a = f.consumer(&q, "a", 0, 3);
    let b = f.consumer(&q, "b", 0, 3);
    let flushes = || f.ch.flushes.load(Ordering::Relaxed);
    // Each publish is a round of one delivery: one wake-up.
    publish_all(&q, &["1", "2"]);
    assert_eq!(flushes(), 2);
    publish_all(&q, &["3", "4", "5", "6", "7", "8", "9", "10"]);
    assert_eq!(
        flushes(),
        6,
        "four more rounds of one, then the consumers are full"
    );
    // Acks of both consumers' deliveries in one go free six places: one round delivers the last four to
    // both consumers, on the one channel.
    let mut held = f.ch.take("a", &[a.clone(), b.clone()]);
    held.extend(f.ch.take("b", &[a.clone(), b.clone()]));
    q.acked(&held);
    assert_eq!(f.ch.bodies_of("a").len() + f.ch.bodies_of("b").len(), 10);
    assert_eq!(q.message_count(), 0);
    assert_eq!(
        flushes(),
        8,
        "woken at the round's first delivery and once at its end"
    );
    // A round that delivers nothing wakes nobody.
    q.dispatch();
    assert_eq!(flushes(), 8);
}

#[test]
fn requeued_messages_return_to_their_places_marked_redelivered() {
    let f = Fixture::new();
    let q = f.queue("q", &[]);
    let c = f.consumer(&q, "c", 0, 2);
    publish_all(&q, &["1", "2", "3", "4"]);
    let taken = f.ch.take("c", std::slice::from_ref(&c));
    // Stop consuming so the requeued messages stay ready to be looked at.
    q.remove_consumer(&c);
    q.requeue(taken.into_iter().rev().collect());
    let ch: Arc<dyn ConsumerChannel> = f.ch.clone();
    for _ in 0..4 {
        assert!(matches!(q.get(&ch, true), Got::Delivered));
    }
    let got: Vec<(String, bool)> = f.ch.got.lock()[2..]
        .iter()
        .map(|(_, b, r)| (b.clone(), *r))
        .collect();
    assert_eq!(
        got,
        [
            ("1".into(), true),
            ("2".into(), true),
            ("3".into(), false),
            ("4".into(), false)
        ]
    );
}

#[test]
fn single_active_consumer_serves_only_the_first_then_hands_over() {
    let f = Fixture::new();
    let q = f.queue(
        "q",
        &[("x-single-active-consumer", AMQPValue::Boolean(true))],
    );
    let a = f.consumer(&q, "a", 0, 1);
    f.consumer(&q, "b", 0, 1);
    publish_all(&q, &["1", "2"]);
    assert_eq!(f.ch.bodies_of("a"), ["1"]);
    assert!(f.ch.bodies_of("b").is_empty());
    q.remove_consumer(&a);
    // a left holding "1": b is active, and what waits goes to it at the queue's next event, as in RabbitMQ.
    assert!(f.ch.bodies_of("b").is_empty());
    a.unacked.store(0, std::sync::atomic::Ordering::Relaxed);
    q.dispatch();
    assert_eq!(f.ch.bodies_of("b"), ["2"]);
}

#[test]
fn overflow_drop_head_dead_letters_the_oldest() {
    let f = Fixture::new();
    let dlq = f.queue("dlq", &[]);
    *f.host.target.lock() = Some(dlq.clone());
    let q = f.queue(
        "q",
        &[
            ("x-max-length", int(2)),
            ("x-dead-letter-exchange", text("dlx")),
        ],
    );
    publish_all(&q, &["1", "2", "3"]);
    assert_eq!((q.message_count(), dlq.message_count()), (2, 1));
    let ch: Arc<dyn ConsumerChannel> = f.ch.clone();
    dlq.get(&ch, true);
    assert_eq!(f.ch.bodies_of("get"), ["1"]);
}

#[test]
fn overflow_reject_publish_refuses_the_newest() {
    let f = Fixture::new();
    let q = f.queue(
        "q",
        &[
            ("x-max-length", int(1)),
            ("x-overflow", text("reject-publish")),
        ],
    );
    assert_eq!(
        q.publish(msg("1", BasicProperties::default())),
        Accepted::Yes
    );
    assert_eq!(
        q.publish(msg("2", BasicProperties::default())),
        Accepted::Rejected
    );
    assert_eq!(q.message_count(), 1);
}

#[test]
fn message_ttl_expires_on_the_broker_clock_and_dead_letters() {
    let f = Fixture::new();
    let dlq = f.queue("dlq", &[]);
    *f.host.target.lock() = Some(dlq.clone());
    let q = f.queue(
        "q",
        &[
            ("x-message-ttl", int(60_000)),
            ("x-dead-letter-exchange", text("dlx")),
        ],
    );
    publish_all(&q, &["old"]);
    q.publish(msg(
        "short",
        BasicProperties::default().with_expiration("1000".into()),
    ));
    f.timers.advance(Duration::from_millis(59_999));
    assert_eq!(q.message_count(), 2, "nothing is due before the minute");
    f.timers.advance(Duration::from_millis(1));
    // Per-message TTLs expire at the head only (RabbitMQ's rule): both go once the head does.
    assert_eq!((q.message_count(), dlq.message_count()), (0, 2));
    let ch: Arc<dyn ConsumerChannel> = f.ch.clone();
    dlq.get(&ch, true);
    let got = f.ch.got.lock().clone();
    assert_eq!(got[0].1, "old");
}

#[test]
fn x_expires_asks_the_host_after_the_idle_period_only() {
    let f = Fixture::new();
    let q = f.queue("q", &[("x-expires", int(3_600_000))]);
    f.timers.advance(Duration::from_secs(1800));
    q.touch();
    f.timers.advance(Duration::from_secs(3599));
    assert!(
        f.host.expired.lock().is_empty(),
        "used half-way: the hour restarts"
    );
    f.timers.advance(Duration::from_secs(1));
    assert_eq!(*f.host.expired.lock(), ["q"]);
    assert!(q.expiry_due());
}

#[test]
fn delivery_limit_dead_letters_after_the_last_allowed_requeue() {
    let f = Fixture::new();
    let dlq = f.queue("dlq", &[]);
    *f.host.target.lock() = Some(dlq.clone());
    let q = f.queue(
        "q",
        &[
            ("x-warren-delivery-limit", int(1)),
            ("x-dead-letter-exchange", text("dlx")),
        ],
    );
    let c = f.consumer(&q, "c", 0, 1);
    publish_all(&q, &["m"]);
    q.requeue(f.ch.take("c", std::slice::from_ref(&c)));
    assert_eq!(f.ch.bodies_of("c"), ["m", "m"], "one redelivery allowed");
    q.requeue(f.ch.take("c", std::slice::from_ref(&c)));
    assert_eq!((q.message_count(), dlq.message_count()), (0, 1));
}

#[test]
fn detach_and_restore_undo_a_deletion() {
    let f = Fixture::new();
    let q = f.queue("q", &[]);
    publish_all(&q, &["1"]);
    f.consumer(&q, "c", 0, 0);
    let consumers = q.detach();
    assert_eq!(consumers.len(), 1);
    assert!(q.is_deleted());
    q.restore();
    assert!(!q.is_deleted());
    publish_all(&q, &["2"]);
    assert_eq!(
        q.message_count(),
        1,
        "a restored queue takes messages again"
    );
    assert_eq!(q.discard_all(), 1);
}

fn publish_stored(q: &Arc<Queue>, bodies: &[&str]) {
    let routed: Routed = std::iter::once(q.clone()).collect();
    for b in bodies {
        enqueue(
            &routed,
            &msg(b, BasicProperties::default().with_delivery_mode(2)),
            None,
        );
    }
}

/// Wait (for the store's reader thread) until `done`, for at most ten seconds.
fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn crowded_deliveries_are_held_by_place_and_read_back_when_they_return() {
    let f = Fixture::new();
    let dir = crate::store::tests::TempDir::new("queue-held");
    let dlq = f.queue("dlq", &[]);
    *f.host.target.lock() = Some(dlq.clone());
    let q = f.stored_queue(&dir, "q", &[("x-dead-letter-exchange", text("dlx"))]);
    let c = f.consumer(&q, "c", 0, 3);
    publish_stored(&q, &["1", "2", "3", "4", "5"]);
    assert_eq!(f.ch.bodies_of("c"), ["1", "2", "3"]);
    let mut held = f.ch.take("c", std::slice::from_ref(&c));
    assert!(
        held.iter().all(|h| matches!(h, Held::Stored(_))),
        "a crowded queue's stored deliveries are held by their place"
    );
    assert_eq!(q.unacked_count(), 3);

    // Rejected: read back, then dead-lettered whole.
    q.remove_consumer(&c);
    q.discard(vec![held.remove(1)]);
    until("the rejected message reaches the dead-letter queue", || {
        dlq.message_count() == 1
    });
    assert_eq!(q.unacked_count(), 2);
    let ch: Arc<dyn ConsumerChannel> = f.ch.clone();
    assert!(matches!(dlq.get(&ch, true), Got::Delivered));
    let dead = f.ch.got.lock().last().cloned().unwrap();
    assert_eq!(dead.1, "2");

    // Requeued: the head waits for them, and they go first, in their places, marked redelivered.
    q.requeue(held.into_iter().rev().collect());
    assert_eq!(
        (q.message_count(), q.unacked_count()),
        (4, 0),
        "on their way back, they count as ready"
    );
    let mut got = Vec::new();
    while got.len() < 4 {
        match q.get(&ch, true) {
            Got::Delivered => got.push(f.ch.got.lock().last().cloned().unwrap()),
            Got::Wait(rx) => {
                let _ = rx.blocking_recv();
            }
            Got::Empty => panic!("empty with {got:?} taken"),
        }
    }
    let got: Vec<(String, bool)> = got.into_iter().map(|(_, b, r)| (b, r)).collect();
    let want = [("1", true), ("3", true), ("4", false), ("5", false)];
    assert_eq!(got, want.map(|(b, r)| (b.to_string(), r)));
    assert_eq!((q.message_count(), q.unacked_count()), (0, 0));

    // Purged on their way back: counted by the purge, and gone with the rest.
    let c = f.consumer(&q, "c2", 0, 2);
    publish_stored(&q, &["6", "7"]);
    let held = f.ch.take("c2", std::slice::from_ref(&c));
    assert_eq!(held.len(), 2);
    q.remove_consumer(&c);
    q.requeue(held);
    assert_eq!(q.purge(), 2);
    assert_eq!((q.message_count(), q.unacked_count()), (0, 0));
    // A later return, read after theirs, comes back alone: theirs did not come back after the purge (they
    // would go first, in their places).
    let c = f.consumer(&q, "c3", 0, 1);
    publish_stored(&q, &["8"]);
    let held = f.ch.take("c3", std::slice::from_ref(&c));
    q.remove_consumer(&c);
    q.requeue(held);
    loop {
        match q.get(&ch, true) {
            Got::Delivered => break,
            Got::Wait(rx) => {
                let _ = rx.blocking_recv();
            }
            Got::Empty => panic!("the requeued message is gone"),
        }
    }
    assert_eq!(f.ch.got.lock().last().unwrap().1, "8");
    assert_eq!(q.message_count(), 0);
}
