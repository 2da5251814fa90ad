//! Publishing into queues. [`enqueue`] takes a routed message to every queue it reached: a persistent message
//! bound for durable queues is written to the store once, as one record that all of them name, before any
//! queue takes it, so its publisher confirm waits for exactly one durable write however far it fans out.
//! Each queue then appends it, applies its length limit and TTL, and dispatches.

use super::consumer::ConfirmRef;
use super::message::{MessageRef, RecordMeta};
use super::{per_message_ttl, Accepted, Dead, Queue, QueuedMessage, Routed};
use crate::queue::args::Overflow;
use crate::store::Location;
use smallvec::SmallVec;
use std::sync::Arc;

/// A message already written to the store for this queue.
#[derive(Clone, Copy, Debug)]
pub struct Stored {
    pub id: u64,
    pub loc: Location,
}

/// What enqueueing a message came to, for its publisher confirm.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// Some queue refused it (x-overflow=reject-publish), or the store could not take it: nack.
    pub rejected: bool,
    /// It was written to the store; `confirm` is told when the write is durable.
    pub pending: bool,
}

/// Enqueue `msg` on every queue in `routed`. A persistent message bound for durable queues is written to
/// the store once; `confirm`, if given, hears when that write is durable (`Enqueued::pending`).
pub fn enqueue(routed: &Routed, msg: &MessageRef, confirm: Option<&ConfirmRef>) -> Enqueued {
    let mut out = Enqueued::default();
    let storing: SmallVec<[&Arc<Queue>; 4]> = routed.iter().filter(|q| q.stores(msg)).collect();
    let stored = match storing.first().and_then(|q| q.durable_store.as_ref()) {
        None => None,
        Some(d) => {
            let first = storing[0];
            let id = d.store.allocate_id();
            let payload = msg.encode_record(RecordMeta {
                priority: msg.priority().unwrap_or(0),
                published_at: first.timers.wall_ms(),
                expires_at: per_message_ttl(msg)
                    .map_or(0, |t| first.timers.wall_ms().saturating_add(t).max(1)),
                body_len: 0,
            });
            // Every storing queue has a key (they all have the store): target i is storing[i].
            let targets: SmallVec<[(&str, u64); 4]> = storing
                .iter()
                .map(|q| (q.store_key().unwrap_or_default(), id))
                .collect();
            let done = match confirm {
                Some(c) => crate::store::Waiter::sink(&c.sink, c.seq),
                None => crate::store::Waiter::Nobody,
            };
            match d.store.publish_waiting(&targets, &payload, done) {
                Ok(loc) => {
                    out.pending = confirm.is_some();
                    Some(Stored { id, loc })
                }
                Err(e) => {
                    tracing::error!(vhost = %first.vhost, queue = %first.name, error = %e, "cannot store a persistent message; refusing it");
                    out.rejected = true;
                    None
                }
            }
        }
    };
    let mut target = 0;
    for q in routed {
        let s = if q.stores(msg) {
            target += 1;
            match stored {
                // Each queue settles its own slot of the one record.
                Some(s) => Some(Stored {
                    loc: s.loc.target(target - 1),
                    ..s
                }),
                // The store refused it: durable queues do not take it.
                None => continue,
            }
        } else {
            None
        };
        if q.push(msg.clone(), s) == Accepted::Rejected {
            out.rejected = true;
        }
    }
    out
}

impl Queue {
    /// Enqueue a message on this queue alone (no confirm).
    pub fn publish(self: &Arc<Self>, msg: MessageRef) -> Accepted {
        let mut routed = Routed::new();
        routed.push(self.clone());
        if enqueue(&routed, &msg, None).rejected {
            Accepted::Rejected
        } else {
            Accepted::Yes
        }
    }

    /// Append a message (already in the store when `stored` is given) and hand it to a consumer if one has
    /// capacity.
    pub(crate) fn push(self: &Arc<Self>, msg: MessageRef, stored: Option<Stored>) -> Accepted {
        let mut dead = Dead::new();
        let accepted = {
            let mut st = self.state.lock();
            if self.is_deleted() {
                drop(st);
                self.forget_unqueued(stored);
                return Accepted::Yes;
            }
            let ttl = match (st.config.message_ttl, per_message_ttl(&msg)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.stats.publish.bump(1);
            let seq = st.next_seq;
            st.next_seq += 1;
            // The clock is read only for a message that can expire: most never do.
            let now = ttl.map(|_| self.timers.now_ms());
            let mut qm = QueuedMessage {
                expires_at: ttl
                    .zip(now)
                    .map_or(u64::MAX, |(t, now)| now.saturating_add(t)),
                id: stored.map_or(seq, |s| s.id),
                ..QueuedMessage::new(seq, msg)
            };
            qm.set_loc(stored.map(|s| s.loc));
            st.ready.push_back(qm);
            let mut accepted = Accepted::Yes;
            if st.over_limit() {
                match st.config.overflow {
                    Overflow::DropHead => st.drop_head_over_limit(&mut dead),
                    Overflow::RejectPublish | Overflow::RejectPublishDlx => {
                        // Refuse the new message, unless a consumer can take it at once.
                        self.dispatch_locked(&mut st, &mut dead);
                        if st.over_limit() {
                            if let Some(m) = st.ready.remove_seq(seq) {
                                accepted = Accepted::Rejected;
                                if st.config.overflow == Overflow::RejectPublishDlx {
                                    dead.push((m, super::Reason::Maxlen));
                                } else {
                                    self.forget_stored(std::iter::once(&m));
                                }
                            }
                        }
                    }
                }
            }
            self.dispatch_locked(&mut st, &mut dead);
            if let Some(now) = now {
                st.expire_head(now, &mut dead);
                self.arm_timer(&mut st);
            }
            let consumed = !st.consumers.is_empty();
            st.ready.page_out_for(consumed);
            accepted
        };
        self.dead_letter(dead);
        accepted
    }

    /// A stored message that this queue did not take after all: the store forgets it for this queue.
    fn forget_unqueued(&self, stored: Option<Stored>) {
        if let (Some(s), Some(d)) = (stored, &self.durable_store) {
            d.store.ack(&d.key, &[s.loc]);
        }
    }
}
