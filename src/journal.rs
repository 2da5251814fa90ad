//! The message journal: a bounded in-memory record of what happened to each message — published, routed
//! (or unroutable, returned), confirmed, delivered, settled, requeued, expired, dead-lettered, dropped —
//! stamped with broker time, so a test can ask "where did my message go, and why?".
//!
//! Off, it costs one or two relaxed atomic loads per event site. On, each event is a small struct pushed
//! into a ring under a short lock (a leaf lock: nothing is called while it is held, so any layer may record
//! from under its own locks). The ring holds at most `capacity` events; the oldest go first, counted in
//! `evicted`. Waiters (the HTTP `wait_ms` query) poll: waking them on every append would cost every
//! message a trip through a notifier whether anyone waits or not.
//!
//! Layer: bottom, beside the clock; it knows messages only by the properties and names it is given.

use crate::clock::Clock;
use amq_protocol::protocol::BasicProperties;
use parking_lot::{Mutex, RwLock};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What happened to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Published,
    Routed,
    Unroutable,
    Returned,
    Confirmed,
    Delivered,
    Acked,
    Nacked,
    Rejected,
    Requeued,
    Expired,
    DeadLettered,
    Dropped,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Published,
        Kind::Routed,
        Kind::Unroutable,
        Kind::Returned,
        Kind::Confirmed,
        Kind::Delivered,
        Kind::Acked,
        Kind::Nacked,
        Kind::Rejected,
        Kind::Requeued,
        Kind::Expired,
        Kind::DeadLettered,
        Kind::Dropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Published => "published",
            Kind::Routed => "routed",
            Kind::Unroutable => "unroutable",
            Kind::Returned => "returned",
            Kind::Confirmed => "confirmed",
            Kind::Delivered => "delivered",
            Kind::Acked => "acked",
            Kind::Nacked => "nacked",
            Kind::Rejected => "rejected",
            Kind::Requeued => "requeued",
            Kind::Expired => "expired",
            Kind::DeadLettered => "dead-lettered",
            Kind::Dropped => "dropped",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Who did something: a connection's name, a channel number and a user.
#[derive(Debug, Clone)]
pub struct Actor {
    pub connection: Arc<str>,
    pub channel: u16,
    pub user: Arc<str>,
}

/// The event-specific part.
#[derive(Debug, Clone)]
pub enum Detail {
    None,
    Published {
        by: Actor,
        mandatory: bool,
        /// The content header as published (a copy: decoding the properties waits for a query).
        header: bytes::Bytes,
    },
    Routed {
        queues: Vec<Arc<str>>,
        /// Alternate exchanges the message went through (an exchange that matched nothing).
        alternate: Vec<Arc<str>>,
    },
    Unroutable {
        mandatory: bool,
    },
    Returned {
        reply_code: u16,
        reply_text: &'static str,
    },
    Confirmed {
        ack: bool,
    },
    Delivered {
        by: Actor,
        /// None for basic.get.
        consumer_tag: Option<Arc<str>>,
        delivery_tag: u64,
        redelivered: bool,
    },
    Settled {
        delivery_tag: u64,
        requeue: bool,
    },
    DeadLettered {
        reason: &'static str,
        exchange: Arc<str>,
        routing_keys: Vec<String>,
        queues: Vec<Arc<str>>,
    },
    Dropped {
        reason: &'static str,
    },
}

/// One journal entry.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: u64,
    /// Broker time, Unix milliseconds.
    pub time: u64,
    pub kind: Kind,
    pub vhost: Arc<str>,
    pub message_id: Option<Arc<str>>,
    pub correlation_id: Option<Arc<str>>,
    pub exchange: Option<Arc<str>>,
    pub routing_key: Option<Arc<str>>,
    pub queue: Option<Arc<str>>,
    pub detail: Detail,
}

impl Event {
    /// An event about a message with these properties, published to `exchange` with `routing_key`.
    pub fn about(
        kind: Kind,
        vhost: &Arc<str>,
        props: &BasicProperties,
        exchange: &Arc<str>,
        routing_key: &str,
    ) -> Event {
        let id = |v: &Option<amq_protocol::types::ShortString>| {
            v.as_ref().map(|s| Arc::<str>::from(s.as_str()))
        };
        Event {
            seq: 0,
            time: 0,
            kind,
            vhost: vhost.clone(),
            message_id: id(props.message_id()),
            correlation_id: id(props.correlation_id()),
            exchange: Some(exchange.clone()),
            routing_key: Some(Arc::from(routing_key)),
            queue: None,
            detail: Detail::None,
        }
    }

    pub fn in_queue(mut self, queue: &Arc<str>) -> Event {
        self.queue = Some(queue.clone());
        self
    }

    pub fn with(mut self, detail: Detail) -> Event {
        self.detail = detail;
        self
    }
}

/// The largest content header a journal event keeps (its properties); a larger one (a huge headers table)
/// is not kept, so the journal's size stays near `capacity` times a small event.
const MAX_KEPT_HEADER: usize = 4096;

/// The most queue names an event keeps (a fanout to thousands of queues keeps the first ones).
const MAX_KEPT_NAMES: usize = 256;

/// What an event keeps of a list of queue names.
pub fn kept_names(mut names: Vec<Arc<str>>) -> Vec<Arc<str>> {
    names.truncate(MAX_KEPT_NAMES);
    names
}

/// What a `published` event keeps of a content header.
pub fn keep_header(header: &[u8]) -> bytes::Bytes {
    if header.len() <= MAX_KEPT_HEADER {
        bytes::Bytes::copy_from_slice(header)
    } else {
        bytes::Bytes::new()
    }
}

/// Which events a query wants; every set field must match.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub vhost: Option<String>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub queue: Option<String>,
    pub exchange: Option<String>,
    pub kind: Option<Kind>,
    pub since: Option<u64>,
    pub until: Option<u64>,
}

impl Filter {
    pub fn matches(&self, e: &Event) -> bool {
        fn eq(want: &Option<String>, have: &Option<Arc<str>>) -> bool {
            want.as_deref()
                .is_none_or(|w| have.as_deref().is_some_and(|h| h == w))
        }
        self.vhost.as_deref().is_none_or(|v| *e.vhost == *v)
            && eq(&self.message_id, &e.message_id)
            && eq(&self.correlation_id, &e.correlation_id)
            && (self.queue.is_none() || eq(&self.queue, &e.queue) || self.routed_to(e))
            && eq(&self.exchange, &e.exchange)
            && self.kind.is_none_or(|k| k == e.kind)
            && self.since.is_none_or(|s| e.time >= s)
            && self.until.is_none_or(|u| e.time <= u)
    }

    /// A queue filter also finds the routing events that sent messages to that queue.
    fn routed_to(&self, e: &Event) -> bool {
        let Some(q) = self.queue.as_deref() else {
            return false;
        };
        match &e.detail {
            Detail::Routed { queues, .. } | Detail::DeadLettered { queues, .. } => {
                queues.iter().any(|n| **n == *q)
            }
            _ => false,
        }
    }
}

struct Ring {
    events: VecDeque<Event>,
    next_seq: u64,
    evicted: u64,
}

/// The broker's journal.
pub struct Journal {
    /// On for every vhost.
    all: AtomicBool,
    /// On for the vhosts in `vhosts` (a hint that the set is non-empty, read without its lock).
    some: AtomicBool,
    vhosts: RwLock<Vec<Arc<str>>>,
    capacity: usize,
    ring: Mutex<Ring>,
    clock: Arc<Clock>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("all", &self.all)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Journal {
    pub fn new(clock: Arc<Clock>, capacity: usize, on: bool) -> Journal {
        Journal {
            all: AtomicBool::new(on),
            some: AtomicBool::new(false),
            vhosts: RwLock::new(Vec::new()),
            capacity: capacity.max(1),
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                next_seq: 1,
                evicted: 0,
            }),
            clock,
        }
    }

    /// Whether events in `vhost` are recorded: the check every event site makes first.
    #[inline]
    pub fn on(&self, vhost: &str) -> bool {
        self.all.load(Ordering::Relaxed)
            || (self.some.load(Ordering::Relaxed)
                && self.vhosts.read().iter().any(|v| **v == *vhost))
    }

    pub fn enabled_everywhere(&self) -> bool {
        self.all.load(Ordering::Relaxed)
    }

    pub fn enabled_vhosts(&self) -> Vec<Arc<str>> {
        self.vhosts.read().clone()
    }

    /// Switch recording on or off, for every vhost (`None`) or one.
    pub fn set(&self, vhost: Option<&str>, on: bool) {
        match vhost {
            None => {
                self.all.store(on, Ordering::Relaxed);
                if !on {
                    self.vhosts.write().clear();
                    self.some.store(false, Ordering::Relaxed);
                }
            }
            Some(v) => {
                let mut set = self.vhosts.write();
                set.retain(|x| **x != *v);
                if on {
                    set.push(Arc::from(v));
                }
                self.some.store(!set.is_empty(), Ordering::Relaxed);
            }
        }
    }

    /// A journal that records nothing (queues built outside a broker, in unit tests).
    pub fn off() -> Arc<Journal> {
        Arc::new(Journal::new(Arc::new(Clock::manual()), 1, false))
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Append an event, stamped now.
    pub fn record(&self, mut e: Event) {
        e.time = self.clock.wall_ms();
        {
            let mut r = self.ring.lock();
            e.seq = r.next_seq;
            r.next_seq += 1;
            if r.events.len() >= self.capacity {
                r.events.pop_front();
                r.evicted += 1;
            }
            r.events.push_back(e);
        }
    }

    pub fn clear(&self) {
        let mut r = self.ring.lock();
        r.evicted += r.events.len() as u64;
        r.events.clear();
    }

    /// The newest `limit` events matching `f`, oldest first, and how many were evicted so far.
    pub fn query(&self, f: &Filter, limit: usize) -> (Vec<Event>, u64) {
        let r = self.ring.lock();
        let mut out: Vec<Event> = r
            .events
            .iter()
            .rev()
            .filter(|e| f.matches(e))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        (out, r.evicted)
    }

    /// The first event matching `f` (oldest first), waiting up to `timeout` for one to be recorded.
    pub async fn wait(&self, f: &Filter, timeout: std::time::Duration) -> Option<Event> {
        /// How often a waiter looks again: well under what a test's message takes to go anywhere.
        const POLL: std::time::Duration = std::time::Duration::from_millis(2);
        let deadline = tokio::time::Instant::now() + timeout;
        // Each look scans only what was appended since the last one: the ring lock is one that message
        // paths take, so a waiter must not hold it for a whole-ring scan every poll.
        let mut seen = 0u64;
        loop {
            let found = {
                let r = self.ring.lock();
                let fresh = r.events.iter().rev().take_while(|e| e.seq > seen);
                let found = fresh.filter(|e| f.matches(e)).last().cloned();
                seen = r.next_seq - 1;
                found
            };
            if found.is_some() || tokio::time::Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl std::fmt::Display for Event {
    /// One line: time of day (UTC), event, where, and what the event adds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.time / 1000;
        write!(
            f,
            "{:02}:{:02}:{:02}.{:03} {}",
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60,
            self.time % 1000,
            self.kind.as_str()
        )?;
        if let Some(q) = &self.queue {
            write!(f, " queue={q}")?;
        }
        if let Some(x) = &self.exchange {
            write!(f, " exchange={x:?}")?;
        }
        if let Some(k) = &self.routing_key {
            write!(f, " rk={k:?}")?;
        }
        match &self.detail {
            Detail::Routed { queues, .. } => write!(f, " to {queues:?}"),
            Detail::Delivered {
                consumer_tag,
                redelivered,
                ..
            } => write!(
                f,
                " consumer={} redelivered={redelivered}",
                consumer_tag.as_deref().unwrap_or("(basic.get)")
            ),
            Detail::Settled { requeue, .. } => write!(f, " requeue={requeue}"),
            Detail::DeadLettered {
                reason,
                exchange,
                queues,
                ..
            } => write!(f, " reason={reason} dlx={exchange:?} to {queues:?}"),
            Detail::Dropped { reason } => write!(f, " reason={reason}"),
            Detail::Confirmed { ack } => write!(f, " ack={ack}"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(j: &Journal, kind: Kind, id: &str, queue: Option<&str>) {
        let vh: Arc<str> = Arc::from("/");
        let props = BasicProperties::default().with_message_id(id.into());
        let mut e = Event::about(kind, &vh, &props, &Arc::from("x"), "k");
        e.queue = queue.map(Arc::from);
        j.record(e);
    }

    #[test]
    fn ring_is_bounded_and_filters() {
        let j = Journal::new(Arc::new(Clock::manual()), 3, true);
        ev(&j, Kind::Published, "a", None);
        ev(&j, Kind::Published, "b", None);
        ev(&j, Kind::Delivered, "b", Some("q"));
        ev(&j, Kind::Acked, "b", Some("q"));
        let (all, evicted) = j.query(&Filter::default(), 100);
        assert_eq!(evicted, 1);
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3, 4]);
        let f = Filter {
            message_id: Some("b".into()),
            kind: Some(Kind::Acked),
            ..Filter::default()
        };
        assert_eq!(j.query(&f, 100).0.len(), 1);
        let f = Filter {
            queue: Some("q".into()),
            ..Filter::default()
        };
        assert_eq!(j.query(&f, 1).0[0].kind, Kind::Acked);
    }

    #[test]
    fn per_vhost_switch() {
        let j = Journal::new(Arc::new(Clock::manual()), 10, false);
        assert!(!j.on("/"));
        j.set(Some("a"), true);
        assert!(j.on("a") && !j.on("/"));
        j.set(Some("a"), false);
        assert!(!j.on("a"));
        j.set(None, true);
        assert!(j.on("/"));
        assert_eq!(Kind::parse("dead-lettered"), Some(Kind::DeadLettered));
    }
}
