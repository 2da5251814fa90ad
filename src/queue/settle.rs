//! Settling deliveries: acks, rejects without requeue (dead-lettered), requeues to the original position
//! (or the back, for quorum queues, with delivery counting and limits), and purge.
//!
//! A delivery is held by its channel until it is settled ([`Held`]). Under memory pressure a stored message
//! is held as its place in the store only, and a requeue or dead-lettering reads it back first: the queue's
//! head waits meanwhile (as for a load), so it comes back in its place before anything behind it goes out.

use super::args::QueueType;
use super::paging::{decode_loaded, Paged};
use super::{Dead, Queue, QueueState, QueuedMessage, Reason};
use crate::journal::Kind;
use crate::store::Location;
use std::sync::Arc;

/// A delivery as its channel holds it until the client settles it.
#[derive(Debug)]
pub enum Held {
    Whole(QueuedMessage),
    /// Only where the store holds it. Once queues are crowded, a thousand consumers at prefetch 100 held
    /// 100,000 delivered messages whole (~300 bytes each for a 16-byte body) only to drop them at the ack.
    Stored(Paged),
}

impl Held {
    pub fn body_len(&self) -> u64 {
        match self {
            Held::Whole(m) => m.msg.body_size() as u64,
            Held::Stored(p) => u64::from(p.body_len),
        }
    }

    /// The whole message, when it is held whole.
    pub fn whole(&self) -> Option<&QueuedMessage> {
        match self {
            Held::Whole(m) => Some(m),
            Held::Stored(_) => None,
        }
    }
}

/// What settling a group of deliveries does once every message in it is whole again.
type Then = Box<dyn FnOnce(&Arc<Queue>, &mut QueueState, Vec<QueuedMessage>, &mut Dead) + Send>;

impl Queue {
    /// How a channel should hold `qm`, just delivered: by its place in the store while queues are crowded
    /// (a stored message only, and not while the journal records what happens to messages).
    pub fn hold(&self, qm: &QueuedMessage) -> Held {
        match (&self.durable_store, qm.loc()) {
            (Some(d), Some(loc))
                if d.budget.crowded() && self.stores(&qm.msg) && !self.journal.on(&self.vhost) =>
            {
                Held::Stored(Paged::of(qm, loc, false))
            }
            _ => Held::Whole(qm.clone()),
        }
    }

    /// Settle acknowledged deliveries and refill consumers.
    pub fn acked(self: &Arc<Self>, msgs: &[Held]) {
        self.forget_held(msgs);
        let mut dead = Dead::new();
        {
            let mut st = self.state.lock();
            self.stats.ack.bump(msgs.len() as u64);
            self.unheld(&mut st, msgs.len(), msgs.iter().map(Held::body_len).sum());
            self.dispatch_locked(&mut st, &mut dead);
        }
        self.dead_letter(dead);
    }

    /// The store forgets held messages (acked).
    fn forget_held(&self, msgs: &[Held]) {
        let Some(d) = &self.durable_store else { return };
        let locs: smallvec::SmallVec<[Location; 8]> = msgs
            .iter()
            .filter_map(|h| match h {
                Held::Whole(m) => m.loc().filter(|_| self.stores(&m.msg)),
                Held::Stored(p) => Some(p.loc),
            })
            .collect();
        if !locs.is_empty() {
            d.store.ack(&d.key, &locs);
        }
    }

    /// `n` deliveries of `bytes` body bytes are no longer unacknowledged.
    fn unheld(&self, st: &mut QueueState, n: usize, bytes: u64) {
        st.unacked = st.unacked.saturating_sub(n as u32);
        st.unacked_bytes = st.unacked_bytes.saturating_sub(bytes);
    }

    /// Settle deliveries rejected without requeue: they are dead-lettered when the queue has a DLX (and the
    /// store forgets them either way).
    pub fn discard(self: &Arc<Self>, msgs: Vec<Held>) {
        self.made_whole(
            msgs,
            false,
            Box::new(|q, st, msgs, dead| {
                q.dispatch_locked(st, dead);
                dead.extend(msgs.into_iter().map(|m| (m, Reason::Rejected)));
            }),
        );
    }

    /// Take back unacknowledged messages, marked redelivered: a classic queue puts them at their original
    /// positions, a quorum queue at the back. Counted deliveries past the limit are dead-lettered instead.
    pub fn requeue(self: &Arc<Self>, msgs: Vec<Held>) {
        self.made_whole(
            msgs,
            true,
            Box::new(|q, st, msgs, dead| q.put_back(st, msgs, true, dead)),
        );
    }

    /// Take back unacknowledged messages without counting a failed delivery (RabbitMQ 4.3's nack and
    /// recover on quorum queues).
    pub fn requeue_uncounted(self: &Arc<Self>, msgs: Vec<Held>) {
        self.made_whole(
            msgs,
            true,
            Box::new(|q, st, msgs, dead| q.put_back(st, msgs, false, dead)),
        );
    }

    /// Settle `msgs` (no longer unacknowledged) with `then`, under the queue lock, once they are whole: at
    /// once, or on the store's reader thread when some are held by their place only. Messages `returning`
    /// to the queue count as ready meanwhile, hold its head until they are in when they go back to their
    /// places, and go with the rest if it is purged. A message that cannot be read back leaves the queue
    /// until the next start (it stays in the store).
    fn made_whole(self: &Arc<Self>, msgs: Vec<Held>, returning: bool, then: Then) {
        let n = msgs.len();
        // A quorum queue puts what returns at its back: nothing waits for it.
        let hold = self.queue_type != QueueType::Quorum;
        let bytes = msgs.iter().map(Held::body_len).sum();
        let mut whole = Vec::with_capacity(n);
        let mut stored = Vec::new();
        for h in msgs {
            match h {
                Held::Whole(m) => whole.push(m),
                Held::Stored(p) => stored.push(p),
            }
        }
        let (pager, generation) = {
            let mut st = self.state.lock();
            self.unheld(&mut st, n, bytes);
            match st.ready.pager().cloned() {
                Some(p) if !stored.is_empty() => {
                    let generation = returning.then(|| st.ready.begin_return(n, hold));
                    (p, generation)
                }
                _ => {
                    if !stored.is_empty() {
                        tracing::error!(queue = %self.name, messages = stored.len(), "messages held by their place in a store the queue no longer has");
                    }
                    let mut dead = Dead::new();
                    then(self, &mut st, whole, &mut dead);
                    drop(st);
                    self.dead_letter(dead);
                    return;
                }
            }
        };
        let locs = stored.iter().map(|p| p.loc).collect();
        let weak = Arc::downgrade(self);
        let store = pager.store.clone();
        store.read_async(
            locs,
            Box::new(move |read| {
                let Some(q) = weak.upgrade() else { return };
                let mut names = super::message::LastNames::default();
                for (p, r) in stored.iter().zip(read) {
                    whole.extend(decode_loaded(&pager, p, r, &mut names));
                }
                // In the order they were delivered, as when they are all held whole.
                whole.sort_by_key(|m| m.seq);
                // Whatever follows a load follows this too: dispatch, timers, getters waiting for the head.
                q.after_load(|st, dead| {
                    let current = generation.is_none_or(|g| st.ready.end_return(n, hold, g));
                    if current {
                        then(&q, st, whole, dead);
                    } else {
                        // The queue was purged while they were read: they went with the rest.
                        q.forget_stored(whole.iter());
                    }
                });
            }),
        );
    }

    fn put_back(
        self: &Arc<Self>,
        st: &mut QueueState,
        msgs: Vec<QueuedMessage>,
        counted: bool,
        dead: &mut Dead,
    ) {
        if self.is_deleted() {
            return;
        }
        let counting = counted && st.counts_deliveries();
        // RabbitMQ 4.3's quorum queues count every return apart, in x-acquired-count.
        let acquiring = self.compat.is_4() && st.config.queue_type == QueueType::Quorum;
        let mut back = Vec::with_capacity(msgs.len());
        for mut m in msgs {
            m.redelivered = true;
            if acquiring {
                m.acquired_count = m.acquired_count.saturating_add(1);
            }
            if counting {
                m.delivery_count += 1;
                if st
                    .config
                    .delivery_limit
                    .is_some_and(|l| m.delivery_count as u64 > l)
                {
                    dead.push((m, Reason::DeliveryLimit));
                    continue;
                }
            }
            if counting || acquiring {
                let (delivery, acquired) = (m.delivery_count, m.acquired_count);
                m.msg = Arc::new(
                    m.msg
                        .with_headers(|h| super::count_headers(h, delivery, acquired)),
                );
            }
            back.push(m);
        }
        if self.journal.on(&self.vhost) {
            for m in &back {
                self.journal_event(Kind::Requeued, &m.msg);
            }
        }
        if st.config.queue_type == QueueType::Quorum {
            for mut m in back {
                m.seq = st.next_seq;
                st.next_seq += 1;
                st.ready.push_back(m);
            }
        } else {
            st.ready.requeue(back);
        }
        // A requeue that takes the queue over its length limit drops from the head at once, as in RabbitMQ.
        if st.config.overflow == super::args::Overflow::DropHead {
            st.drop_head_over_limit(dead);
        }
        self.dispatch_locked(st, dead);
        self.arm_timer(st);
    }

    /// Drop all ready messages; returns how many (with those on their way back from a consumer).
    pub fn purge(&self) -> u32 {
        let mut st = self.state.lock();
        let n = st.ready.counted() as u32;
        let (mem, paged) = st.ready.drain(true);
        self.forget_stored(mem.iter());
        if let (Some(d), false) = (&self.durable_store, paged.is_empty()) {
            d.store.ack(&d.key, &paged);
        }
        n
    }
}
