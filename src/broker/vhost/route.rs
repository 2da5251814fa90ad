//! Routing a message through a vhost: the exchange's own bindings, exchange-to-exchange bindings (each
//! exchange visited once, so cycles end), the alternate exchange of an exchange that matched nothing, and
//! every extra CC/BCC routing key. Each queue appears once in the result; de-duplication stays linear
//! however many queues a message reaches.

use super::VHost;
use crate::broker::exchange::{Destination, Exchange};
use crate::broker::trace::Origin;
use crate::journal::{Actor, Detail, Event, Kind};
use crate::protocol::{self, fields};
use crate::queue::message::Message;
use crate::queue::{enqueue, ConfirmRef, Enqueued, Queue, Routed};
use amq_protocol::types::{AMQPValue, FieldTable};
use smallvec::SmallVec;
use std::sync::Arc;

/// Above this many entries, membership is checked in a hash set instead of by scanning.
const SCAN_LIMIT: usize = 16;

/// A set of queues in insertion order, built up by routing.
#[derive(Default)]
pub struct RouteSet<'a> {
    out: Option<&'a mut Routed>,
    seen: Option<crate::FastSet<usize>>,
}

impl<'a> RouteSet<'a> {
    fn new(out: &'a mut Routed) -> Self {
        let seen =
            (out.len() > SCAN_LIMIT).then(|| out.iter().map(|q| Arc::as_ptr(q) as usize).collect());
        RouteSet {
            out: Some(out),
            seen,
        }
    }

    fn insert(&mut self, q: &Arc<Queue>) {
        let Some(out) = self.out.as_deref_mut() else {
            return;
        };
        let addr = Arc::as_ptr(q) as usize;
        match &mut self.seen {
            Some(seen) => {
                if seen.insert(addr) {
                    out.push(q.clone());
                }
            }
            None => {
                if out.iter().any(|o| Arc::as_ptr(o) as usize == addr) {
                    return;
                }
                out.push(q.clone());
                if out.len() > SCAN_LIMIT {
                    self.seen = Some(out.iter().map(|q| Arc::as_ptr(q) as usize).collect());
                }
            }
        }
    }
}

/// What publishing a message came to.
#[derive(Debug)]
pub struct Published {
    /// It reached at least one queue.
    pub routed: bool,
    pub enqueued: Enqueued,
    /// The message as queues got it (without its BCC header), for a basic.return.
    pub msg: Arc<Message>,
}

/// The extra routing keys in a CC or BCC header (validated at publish).
fn routing_list(h: &FieldTable, key: &str) -> Vec<String> {
    match fields::get(h, key) {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .filter_map(fields::as_str)
            .map(|s| s.into_owned())
            .collect(),
        _ => Vec::new(),
    }
}

/// BCC is never delivered: rebuild the header without it.
fn strip_bcc(msg: &Arc<Message>) -> Arc<Message> {
    let mut props = msg.props().clone();
    if let Some(h) = props.headers().clone() {
        let mut t = FieldTable::default();
        for (k, v) in h.inner() {
            if k.as_str() != "BCC" {
                t.insert(k.clone(), v.clone());
            }
        }
        props = props.with_headers(t);
    }
    let header = protocol::encode_content_header(msg.body.len() as u64, &props);
    Arc::new(Message {
        exchange: msg.exchange.clone(),
        routing_key: msg.routing_key.clone(),
        header,
        properties: crate::queue::message::Props::new(props),
        body: msg.body.clone(),
        broker_deaths: msg.broker_deaths,
    })
}

impl VHost {
    /// Publish a message to `x`: route it with its routing key and any CC and BCC keys, count it on the
    /// exchange, and enqueue it (a stored message tells `confirm` when it is durable). `origin` (a client's
    /// publish, not the broker's own) is what the firehose and the journal record.
    pub fn publish(
        &self,
        x: &Arc<Exchange>,
        msg: Arc<Message>,
        confirm: Option<&ConfirmRef>,
        origin: Option<&Origin<'_>>,
    ) -> Published {
        let journal = origin.is_some() && self.journal.on(&self.name);
        let trace = origin.is_some_and(|o| o.trace) && self.tracing();
        if journal {
            if let Some(o) = origin {
                self.journal
                    .record(msg.journal_event(Kind::Published, &self.name).with(
                        Detail::Published {
                            by: Actor {
                                connection: o.connection.clone(),
                                channel: o.channel,
                                user: o.user.clone(),
                            },
                            mandatory: o.mandatory,
                            header: crate::journal::keep_header(&msg.header),
                        },
                    ));
            }
        }
        let mut routed = Routed::new();
        let mut alternates = Vec::new();
        let alts = journal.then_some(&mut alternates);
        let headers = msg.headers();
        let cc = headers.map(|h| (routing_list(h, "CC"), routing_list(h, "BCC")));
        match &cc {
            Some((cc, bcc)) if !cc.is_empty() || !bcc.is_empty() => {
                let mut keys: Vec<&str> = vec![&msg.routing_key];
                keys.extend(cc.iter().map(String::as_str));
                keys.extend(bcc.iter().map(String::as_str));
                self.route_via(x, &keys, headers, &mut routed, alts);
            }
            _ => self.route_via(x, &[&msg.routing_key], headers, &mut routed, alts),
        }
        let msg = match &cc {
            Some((_, bcc)) if !bcc.is_empty() => strip_bcc(&msg),
            _ => msg,
        };
        x.stats.publish_in.add(1);
        if routed.is_empty() {
            x.stats.unroutable.add(1);
        }
        if journal || trace {
            let names: Vec<Arc<str>> = routed.iter().map(|q| q.name.clone()).collect();
            if let (true, Some(o)) = (trace, origin) {
                let bcc = cc.as_ref().map(|(_, b)| b.as_slice()).unwrap_or(&[]);
                self.firehose.published(self, &msg, bcc, &names, o);
            }
            if journal {
                let e = msg.journal_event(Kind::Routed, &self.name);
                self.journal.record(if names.is_empty() {
                    Event {
                        kind: Kind::Unroutable,
                        ..e
                    }
                    .with(Detail::Unroutable {
                        mandatory: origin.is_some_and(|o| o.mandatory),
                    })
                } else {
                    e.with(Detail::Routed {
                        queues: crate::journal::kept_names(names),
                        alternate: alternates,
                    })
                });
            }
        }
        let enqueued = enqueue(&routed, &msg, confirm);
        Published {
            routed: !routed.is_empty(),
            enqueued,
            msg,
        }
    }

    /// Copy a publish to the firehose without enqueueing it: routed only to name the queues it would reach
    /// (a transactional publish, traced when it is made).
    pub fn trace_publish(&self, x: &Arc<Exchange>, msg: &Arc<Message>, origin: &Origin<'_>) {
        let mut routed = Routed::new();
        let headers = msg.headers();
        let (cc, bcc) = headers
            .map(|h| (routing_list(h, "CC"), routing_list(h, "BCC")))
            .unwrap_or_default();
        let mut keys: Vec<&str> = vec![&msg.routing_key];
        keys.extend(cc.iter().map(String::as_str));
        keys.extend(bcc.iter().map(String::as_str));
        self.route(x, &keys, headers, &mut routed);
        let names: Vec<Arc<str>> = routed.iter().map(|q| q.name.clone()).collect();
        let msg = if bcc.is_empty() {
            msg.clone()
        } else {
            strip_bcc(msg)
        };
        self.firehose.published(self, &msg, &bcc, &names, origin);
    }

    /// Route a message published to `x` with `keys` (its routing key, then any CC and BCC keys) into `out`.
    pub fn route(
        &self,
        x: &Arc<Exchange>,
        keys: &[&str],
        headers: Option<&FieldTable>,
        out: &mut Routed,
    ) {
        self.route_via(x, keys, headers, out, None)
    }

    /// `route`, noting in `alternates` each alternate exchange the message went through.
    fn route_via(
        &self,
        x: &Arc<Exchange>,
        keys: &[&str],
        headers: Option<&FieldTable>,
        out: &mut Routed,
        mut alternates: Option<&mut Vec<Arc<str>>>,
    ) {
        let mut set = RouteSet::new(out);
        if x.name.is_empty() {
            for k in keys {
                if let Some(q) = self.queue(k) {
                    set.insert(&q);
                }
            }
            return;
        }
        let mut visited: SmallVec<[Arc<str>; 4]> = SmallVec::new();
        let mut work: SmallVec<[Arc<Exchange>; 4]> = SmallVec::new();
        work.push(x.clone());
        visited.push(x.name.clone());
        while let Some(ex) = work.pop() {
            let mut matched = false;
            for key in keys {
                ex.route(key, headers, &mut |d: &Destination| {
                    matched = true;
                    match d {
                        Destination::Queue(q) => {
                            if !q.is_deleted() {
                                set.insert(q);
                            }
                        }
                        Destination::Exchange(name) => {
                            if !visited.iter().any(|v| v == name) {
                                visited.push(name.clone());
                                if let Some(next) = self.exchange(name) {
                                    work.push(next);
                                }
                            }
                        }
                    }
                });
            }
            if !matched {
                if let Some(ae) = ex.alternate() {
                    if !visited.iter().any(|v| &**v == ae.as_str()) {
                        visited.push(Arc::from(ae.as_str()));
                        if let Some(a) = alternates.as_deref_mut() {
                            a.push(Arc::from(ae.as_str()));
                        }
                        if let Some(next) = self.exchange(&ae) {
                            work.push(next);
                        }
                    }
                }
            }
        }
    }
}
