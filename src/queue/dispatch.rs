//! Handing messages out: the dispatch loop (consumer priorities, round-robin within a priority, prefetch,
//! single active consumer), basic.get, and consumers coming and going.

use super::args::QueueType;
use super::consumer::{Consumer, ConsumerChannel};
use super::ready::Head;
use super::{Dead, Got, Queue, QueueState};
use crate::error::{AmqpError, AmqpResult};
use amq_protocol::types::AMQPValue;
use std::sync::Arc;

impl Queue {
    /// Offer ready messages to consumers that have room.
    pub fn dispatch(self: &Arc<Self>) {
        let mut dead = Dead::new();
        {
            let mut st = self.state.lock();
            self.dispatch_locked(&mut st, &mut dead);
        }
        self.dead_letter(dead);
    }

    pub(super) fn dispatch_locked(self: &Arc<Self>, st: &mut QueueState, dead: &mut Dead) {
        self.dispatch_round(st, dead, super::Unwoken::default());
    }

    /// `dispatch_locked` for a batch just read back from the store: its channels' writers are woken only at
    /// the end, since a writer woken at the first of hundreds of deliveries contends with the rest for the
    /// buffer they go to.
    pub(super) fn dispatch_batch_locked(self: &Arc<Self>, st: &mut QueueState, dead: &mut Dead) {
        self.dispatch_round(st, dead, super::Unwoken::at_end());
    }

    fn dispatch_round(
        self: &Arc<Self>,
        st: &mut QueueState,
        dead: &mut Dead,
        mut unwoken: super::Unwoken,
    ) {
        let single = st.config.single_active_consumer;
        let mut notes = super::DeliveryNotes::default();
        'outer: loop {
            if st.ready.front_expires().is_some() {
                // A message whose TTL ends this very millisecond (TTL 0) may still go to a waiting consumer.
                st.expire_head(self.timers.now_ms().saturating_sub(1), dead);
            }
            let Some(front) = st.ready.front() else { break };
            let eligible = if single {
                st.consumers.len().min(1)
            } else {
                st.consumers.len()
            };
            for i in 0..eligible {
                let c = &st.consumers[i];
                if !c.may_take() {
                    continue;
                }
                if c.channel.deliver(c, self, front) {
                    unwoken.note(&c.channel);
                    if c.no_ack {
                        self.stats.deliver_no_ack.bump(1);
                    } else {
                        self.stats.deliver.bump(1);
                    }
                    if front.redelivered {
                        self.stats.redeliver.bump(1);
                    }
                    notes.note(self, front, c.no_ack);
                    if !c.no_ack {
                        st.unacked += 1;
                        st.unacked_bytes += front.msg.body_size() as u64;
                    }
                    st.ready.pop_front();
                    if !single {
                        rotate(&mut st.consumers, i);
                    }
                    continue 'outer;
                }
            }
            break;
        }
        unwoken.wake(&st.consumers);
        notes.flush(self);
        st.ready.trim();
        self.start_load(st);
    }

    /// basic.get: hand the head message to `channel`, or say the queue is empty, or (the head is paged)
    /// that it is being read back.
    pub fn get(self: &Arc<Self>, channel: &Arc<dyn ConsumerChannel>, no_ack: bool) -> Got {
        let mut dead = Dead::new();
        let got = {
            let mut st = self.state.lock();
            let now = self.timers.now_ms();
            st.last_used = now;
            st.expire_head(now, &mut dead);
            match st.ready.head() {
                Head::Empty => {
                    self.stats.get_empty.bump(1);
                    Got::Empty
                }
                Head::Paged | Head::Loading => Got::Wait(self.wait_for_load(&mut st)),
                Head::InMemory => match st.ready.pop_front() {
                    None => Got::Empty,
                    Some(mut qm) => {
                        self.note_delivery(&qm, no_ack);
                        if self.queue_type == QueueType::Quorum
                            && qm.delivery_count == 0
                            && !self.compat.is_4()
                        {
                            // RabbitMQ 3.x's quorum queues add x-delivery-count 0 on a first basic.get (though not
                            // on a first consumer delivery); 4.3's add nothing before a return.
                            qm.msg = Arc::new(qm.msg.with_headers(|h| {
                                h.insert("x-delivery-count".into(), AMQPValue::LongLongInt(0));
                            }));
                        }
                        // Messages that expired behind the one taken are gone before the count is told, as in
                        // RabbitMQ.
                        st.expire_head(now, &mut dead);
                        let remaining = st.ready.len() as u32;
                        if !no_ack {
                            st.unacked += 1;
                            st.unacked_bytes += qm.msg.body_size() as u64;
                        }
                        channel.deliver_get(self, qm, no_ack, remaining);
                        self.arm_timer(&mut st);
                        self.start_load(&mut st);
                        Got::Delivered
                    }
                },
            }
        };
        self.dead_letter(dead);
        got
    }

    /// Register a consumer. `announce` runs under the queue lock before the first dispatch, so that
    /// basic.consume-ok reaches the client ahead of any delivery.
    pub fn add_consumer(
        self: &Arc<Self>,
        c: Arc<Consumer>,
        announce: impl FnOnce(),
    ) -> AmqpResult<()> {
        let mut dead = Dead::new();
        {
            let mut st = self.state.lock();
            if self.is_deleted() {
                return Err(AmqpError::not_found(format!(
                    "no queue '{}' in vhost '{}'",
                    self.name, self.vhost
                )));
            }
            // RabbitMQ 3.x: quorum queues ignore the exclusive flag, and a classic single-active-consumer
            // queue refuses every exclusive consumer.
            let quorum = self.queue_type == QueueType::Quorum;
            let refused = !quorum
                && ((c.exclusive
                    && (!st.consumers.is_empty() || st.config.single_active_consumer))
                    || st.consumers.iter().any(|x| x.exclusive));
            if refused {
                return Err(AmqpError::access_refused(format!(
                    "queue '{}' in vhost '{}' in exclusive use",
                    self.name, self.vhost
                )));
            }
            let pos = if st.config.single_active_consumer {
                st.consumers.len()
            } else {
                st.consumers
                    .iter()
                    .position(|x| x.priority < c.priority)
                    .unwrap_or(st.consumers.len())
            };
            st.consumers.insert(pos, c);
            st.had_consumer = true;
            st.last_used = self.timers.now_ms();
            announce();
            self.dispatch_locked(&mut st, &mut dead);
        }
        self.dead_letter(dead);
        Ok(())
    }

    /// Remove a consumer; returns true when the queue is auto-delete and has just lost its last consumer.
    pub fn remove_consumer(self: &Arc<Self>, c: &Arc<Consumer>) -> bool {
        let mut dead = Dead::new();
        let auto_delete = {
            let mut st = self.state.lock();
            let before = st.consumers.len();
            let was_active = st.consumers.first().is_some_and(|x| Arc::ptr_eq(x, c));
            st.consumers.retain(|x| !Arc::ptr_eq(x, c));
            let removed = st.consumers.len() != before;
            if removed {
                st.last_used = self.timers.now_ms();
                // A single-active-consumer queue hands over to the next consumer. When the one leaving still
                // holds unacknowledged messages, what waits is handed over at the queue's next event (as in
                // RabbitMQ), so that its messages, once requeued, go first in their places.
                let holding = st.config.single_active_consumer
                    && was_active
                    && c.unacked.load(std::sync::atomic::Ordering::Relaxed) > 0;
                if !holding {
                    self.dispatch_locked(&mut st, &mut dead);
                }
                self.arm_expiry(&mut st);
            }
            removed && self.unused_auto_delete(&st)
        };
        self.dead_letter(dead);
        auto_delete
    }

    fn unused_auto_delete(&self, st: &QueueState) -> bool {
        self.auto_delete && st.consumers.is_empty() && st.had_consumer && !self.is_deleted()
    }

    /// Whether the queue is auto-delete, has had a consumer and has none now (an auto-delete is still due).
    pub fn auto_delete_due(&self) -> bool {
        self.unused_auto_delete(&self.state.lock())
    }
}

/// Move the consumer at `i` to the end of its priority group.
fn rotate(consumers: &mut [Arc<Consumer>], i: usize) {
    let prio = consumers[i].priority;
    let mut end = i;
    while end + 1 < consumers.len() && consumers[end + 1].priority == prio {
        end += 1;
    }
    if end > i {
        consumers[i..=end].rotate_left(1);
    }
}
