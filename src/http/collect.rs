//! Reading the broker's counters into the value vectors the sampler keeps and the API shows: per queue,
//! exchange, channel, connection, vhost and for the whole broker, each in a fixed order named below.

use super::stats::{Key, Reading};
use crate::broker::{Broker, Session, VHost};
use crate::channel::ChannelShared;
use crate::connection::ConnShared;
use crate::queue::Queue;
use std::sync::Arc;

/// message_stats of channels, vhosts and the broker (the last is derived: deliver + get, with and without
/// acks).
pub const MSG: &[&str] = &[
    "publish",
    "confirm",
    "return_unroutable",
    "drop_unroutable",
    "deliver",
    "deliver_no_ack",
    "get",
    "get_no_ack",
    "get_empty",
    "ack",
    "redeliver",
    "deliver_get",
];

/// message_stats of a queue, then its lengths.
pub const QUEUE_MSG: &[&str] = &[
    "publish",
    "deliver",
    "deliver_no_ack",
    "get",
    "get_no_ack",
    "get_empty",
    "ack",
    "redeliver",
    "deliver_get",
];
pub const LENGTHS: &[&str] = &["messages", "messages_ready", "messages_unacknowledged"];
pub const EXCHANGE_MSG: &[&str] = &["publish_in", "publish_out"];
pub const OCTETS: &[&str] = &["recv_oct", "send_oct"];
pub const CHURN: &[&str] = &[
    "connection_created",
    "connection_closed",
    "channel_created",
    "channel_closed",
    "queue_declared",
    "queue_created",
    "queue_deleted",
];

/// The connection behind a session.
pub fn conn(s: &Arc<dyn Session>) -> Option<&ConnShared> {
    s.as_any().downcast_ref::<ConnShared>()
}

/// message_stats values of a set of counters, with deliver_get appended.
fn msg_values(v: Vec<u64>) -> Vec<u64> {
    let dg = v[4] + v[5] + v[6] + v[7];
    let mut v = v;
    v.push(dg);
    v
}

pub fn channel_values(ch: &ChannelShared) -> Vec<u64> {
    msg_values(ch.stats.snapshot())
}

/// A queue's message_stats (QUEUE_MSG order), then LENGTHS.
pub fn queue_values(q: &Queue) -> Vec<u64> {
    let mut v = q.stats.snapshot();
    let dg = v[1] + v[2] + v[3] + v[4];
    v.push(dg);
    let st = q.status();
    v.extend([st.ready + st.unacked, st.ready, st.unacked]);
    v
}

pub fn exchange_values(x: &crate::broker::exchange::Exchange) -> Vec<u64> {
    let (publish_in, unroutable) = (x.stats.publish_in.get(), x.stats.unroutable.get());
    vec![publish_in, publish_in.saturating_sub(unroutable)]
}

pub fn conn_values(c: &ConnShared) -> Vec<u64> {
    vec![c.recv.recv_oct.get(), c.outbound.sent.send_oct.get()]
}

/// Sums for one vhost: MSG, then LENGTHS, then OCTETS.
#[derive(Debug, Clone)]
pub struct Totals {
    pub msg: Vec<u64>,
    pub lengths: Vec<u64>,
    pub octets: Vec<u64>,
}

impl Totals {
    pub fn values(&self) -> Vec<u64> {
        let mut v = self.msg.clone();
        v.extend(&self.lengths);
        v.extend(&self.octets);
        v
    }
}

fn add(into: &mut [u64], from: &[u64]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// The totals of `v`: its closed channels and connections, and the live ones in `sessions`.
pub fn vhost_totals(v: &VHost, sessions: &[Arc<dyn Session>]) -> Totals {
    let mut msg = msg_values(v.totals.channels.snapshot());
    let mut octets = vec![v.totals.recv_oct.get(), v.totals.send_oct.get()];
    for s in sessions {
        let Some(c) = conn(s).filter(|c| c.vhost() == Some(&*v.name)) else {
            continue;
        };
        add(&mut octets, &conn_values(c));
        for ch in c.channels.lock().values() {
            add(&mut msg, &channel_values(ch));
        }
    }
    let mut lengths = vec![0u64; 3];
    for q in v.queues() {
        let st = q.status();
        add(&mut lengths, &[st.ready + st.unacked, st.ready, st.unacked]);
    }
    Totals {
        msg,
        lengths,
        octets,
    }
}

/// The broker's totals: MSG, LENGTHS, OCTETS summed over vhosts, then CHURN.
pub fn broker_values(b: &Broker, vhost_totals: &[Totals]) -> Vec<u64> {
    let mut sum = vec![0u64; MSG.len() + LENGTHS.len() + OCTETS.len()];
    for t in vhost_totals {
        add(&mut sum, &t.values());
    }
    sum.extend(b.churn.snapshot());
    sum
}

/// Everything the sampler records in one round.
pub fn read_all(b: &Broker) -> Vec<Reading> {
    let sessions = b.connections();
    let mut out = Vec::new();
    let mut totals = Vec::new();
    for v in b.vhosts() {
        for q in v.queues() {
            out.push(Reading {
                key: Key::of(&q),
                values: queue_values(&q),
            });
        }
        for x in v.exchanges() {
            out.push(Reading {
                key: Key::of(&x),
                values: exchange_values(&x),
            });
        }
        let t = vhost_totals(&v, &sessions);
        out.push(Reading {
            key: Key::Vhost(v.name.to_string()),
            values: t.values(),
        });
        totals.push(t);
    }
    for s in &sessions {
        let Some(c) = conn(s) else { continue };
        out.push(Reading {
            key: Key::Object(c as *const ConnShared as usize),
            values: conn_values(c),
        });
        for ch in c.channels.lock().values() {
            out.push(Reading {
                key: Key::of(ch),
                values: channel_values(ch),
            });
        }
    }
    out.push(Reading {
        key: Key::Broker,
        values: broker_values(b, &totals),
    });
    out
}
