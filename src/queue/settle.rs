//! Settling deliveries: acks, rejects without requeue (dead-lettered), requeues to the original position
//! (or the back, for quorum queues, with delivery counting and limits), and purge.

use super::args::QueueType;
use super::{Dead, Queue, QueuedMessage, Reason};
use crate::journal::Kind;
use std::sync::Arc;

fn body_bytes(msgs: &[QueuedMessage]) -> u64 {
    msgs.iter().map(|m| m.msg.body_size() as u64).sum()
}

impl Queue {
    /// Settle acknowledged deliveries and refill consumers.
    pub fn acked(self: &Arc<Self>, msgs: &[QueuedMessage]) {
        self.forget_stored(msgs.iter());
        self.settled(msgs, true);
    }

    fn settled(self: &Arc<Self>, msgs: &[QueuedMessage], ack: bool) {
        let n = msgs.len() as u32;
        let mut dead = Dead::new();
        {
            let mut st = self.state.lock();
            if ack {
                self.stats.ack.bump(u64::from(n));
            }
            st.unacked = st.unacked.saturating_sub(n);
            st.unacked_bytes = st.unacked_bytes.saturating_sub(body_bytes(msgs));
            self.dispatch_locked(&mut st, &mut dead);
        }
        self.dead_letter(dead);
    }

    /// Settle deliveries rejected without requeue: they are dead-lettered when the queue has a DLX (and the
    /// store forgets them either way).
    pub fn discard(self: &Arc<Self>, msgs: Vec<QueuedMessage>) {
        self.settled(&msgs, false);
        self.dead_letter(msgs.into_iter().map(|m| (m, Reason::Rejected)).collect());
    }

    /// Take back unacknowledged messages, marked redelivered: a classic queue puts them at their original
    /// positions, a quorum queue at the back. Counted deliveries past the limit are dead-lettered instead.
    pub fn requeue(self: &Arc<Self>, msgs: Vec<QueuedMessage>) {
        self.put_back(msgs, true)
    }

    /// Take back unacknowledged messages without counting a failed delivery (RabbitMQ 4.3's nack and
    /// recover on quorum queues).
    pub fn requeue_uncounted(self: &Arc<Self>, msgs: Vec<QueuedMessage>) {
        self.put_back(msgs, false)
    }

    fn put_back(self: &Arc<Self>, msgs: Vec<QueuedMessage>, counted: bool) {
        let mut dead = Dead::new();
        {
            let mut st = self.state.lock();
            st.unacked = st.unacked.saturating_sub(msgs.len() as u32);
            st.unacked_bytes = st.unacked_bytes.saturating_sub(body_bytes(&msgs));
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
                st.drop_head_over_limit(&mut dead);
            }
            self.dispatch_locked(&mut st, &mut dead);
            self.arm_timer(&mut st);
        }
        self.dead_letter(dead);
    }

    /// Drop all ready messages; returns how many.
    pub fn purge(&self) -> u32 {
        let mut st = self.state.lock();
        let n = st.ready.len() as u32;
        let (mem, paged) = st.ready.drain(true);
        self.forget_stored(mem.iter());
        if let (Some(d), false) = (&self.durable_store, paged.is_empty()) {
            d.store.ack(&d.key, &paged);
        }
        n
    }
}
