//! Queue state and dispatch. A queue is a short critical section behind a mutex, not a task: the publisher's
//! connection task pushes a message and, when a consumer has capacity, encodes the delivery straight into that
//! consumer's connection outbound buffer, so a message crosses one hand-off between sockets. Acks, requeues and
//! consumer changes run the same dispatch loop from whichever task freed capacity.

use crate::broker::message::MessageRef;
use crate::channel::ChannelShared;
use crate::error::{AmqpError, AmqpResult};
use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// A message in a queue: its position (for requeue at the original place) and redelivery state.
#[derive(Clone, Debug)]
pub struct QueuedMessage {
    pub seq: u64,
    pub msg: MessageRef,
    pub redelivered: bool,
}

/// A consumer registered on a queue by a channel.
#[derive(Debug)]
pub struct Consumer {
    pub tag: Arc<str>,
    pub channel: Arc<ChannelShared>,
    pub queue: Arc<Queue>,
    pub no_ack: bool,
    pub exclusive: bool,
    pub priority: i32,
    /// Per-consumer prefetch (basic.qos global=false at consume time); 0 is unlimited.
    pub prefetch: u32,
    /// Unacknowledged deliveries to this consumer; changed only under the channel's delivery lock.
    pub unacked: AtomicU32,
}

impl Consumer {
    /// A lock-free hint used to skip full consumers; the channel re-checks under its lock.
    fn may_take(&self) -> bool {
        self.no_ack || self.prefetch == 0 || self.unacked.load(Ordering::Relaxed) < self.prefetch
    }
}

#[derive(Debug, Default)]
struct QueueState {
    ready: VecDeque<QueuedMessage>,
    next_seq: u64,
    /// Sorted by priority, highest first; round-robin within a priority by moving the served consumer to the
    /// end of its group.
    consumers: Vec<Arc<Consumer>>,
    unacked: u32,
    had_consumer: bool,
}

#[derive(Debug)]
pub struct Queue {
    pub name: Arc<str>,
    pub vhost: Arc<str>,
    pub durable: bool,
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    state: Mutex<QueueState>,
    deleted: AtomicBool,
}

impl Queue {
    pub fn new(
        name: &str,
        vhost: &str,
        durable: bool,
        exclusive_owner: Option<u64>,
        auto_delete: bool,
        arguments: FieldTable,
    ) -> Queue {
        Queue {
            name: Arc::from(name),
            vhost: Arc::from(vhost),
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            state: Mutex::new(QueueState::default()),
            deleted: AtomicBool::new(false),
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// RabbitMQ's 405 for a queue that belongs to another connection.
    pub fn locked_error(&self) -> AmqpError {
        AmqpError::resource_locked(format!(
            "cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
            self.name, self.vhost
        ))
    }

    /// Check exclusive ownership for an operation by connection `conn_id`.
    pub fn check_access(&self, conn_id: u64) -> AmqpResult<()> {
        match self.exclusive_owner {
            Some(owner) if owner != conn_id => Err(self.locked_error()),
            _ => Ok(()),
        }
    }

    /// Enqueue a message and hand it to a consumer if one has capacity.
    pub fn publish(self: &Arc<Self>, msg: MessageRef) {
        let mut st = self.state.lock();
        if self.is_deleted() {
            return;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.ready.push_back(QueuedMessage { seq, msg, redelivered: false });
        self.dispatch_locked(&mut st);
    }

    pub fn dispatch(self: &Arc<Self>) {
        let mut st = self.state.lock();
        self.dispatch_locked(&mut st);
    }

    fn dispatch_locked(self: &Arc<Self>, st: &mut QueueState) {
        'outer: while let Some(front) = st.ready.front() {
            for i in 0..st.consumers.len() {
                let c = &st.consumers[i];
                if !c.may_take() {
                    continue;
                }
                if c.channel.deliver(c, self, front) {
                    if !c.no_ack {
                        st.unacked += 1;
                    }
                    st.ready.pop_front();
                    Self::rotate(&mut st.consumers, i);
                    continue 'outer;
                }
            }
            break;
        }
    }

    /// Move the consumer at `i` to the end of its priority group.
    fn rotate(consumers: &mut Vec<Arc<Consumer>>, i: usize) {
        let prio = consumers[i].priority;
        let mut end = i;
        while end + 1 < consumers.len() && consumers[end + 1].priority == prio {
            end += 1;
        }
        if end > i {
            consumers[i..=end].rotate_left(1);
        }
    }

    /// basic.get: hand the head message to `channel`. Returns false when the queue is empty.
    pub fn get(self: &Arc<Self>, channel: &Arc<ChannelShared>, no_ack: bool) -> bool {
        let mut st = self.state.lock();
        let Some(qm) = st.ready.pop_front() else {
            return false;
        };
        let remaining = st.ready.len() as u32;
        if !no_ack {
            st.unacked += 1;
        }
        channel.deliver_get(self, qm, no_ack, remaining);
        true
    }

    /// Register a consumer. `announce` runs under the queue lock before the first dispatch, so that
    /// basic.consume-ok reaches the client ahead of any delivery.
    pub fn add_consumer(self: &Arc<Self>, c: Arc<Consumer>, announce: impl FnOnce()) -> AmqpResult<()> {
        let mut st = self.state.lock();
        if self.is_deleted() {
            return Err(AmqpError::not_found(format!("no queue '{}' in vhost '{}'", self.name, self.vhost)));
        }
        if (c.exclusive && !st.consumers.is_empty()) || st.consumers.iter().any(|x| x.exclusive) {
            return Err(AmqpError::access_refused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.name, self.vhost
            )));
        }
        let pos = st.consumers.iter().position(|x| x.priority < c.priority).unwrap_or(st.consumers.len());
        st.consumers.insert(pos, c);
        st.had_consumer = true;
        announce();
        self.dispatch_locked(&mut st);
        Ok(())
    }

    /// Remove a consumer; returns true when the queue is auto-delete and has just lost its last consumer.
    pub fn remove_consumer(&self, c: &Arc<Consumer>) -> bool {
        let mut st = self.state.lock();
        let before = st.consumers.len();
        st.consumers.retain(|x| !Arc::ptr_eq(x, c));
        let removed = st.consumers.len() != before;
        removed && self.auto_delete && st.consumers.is_empty() && st.had_consumer && !self.is_deleted()
    }

    /// Settle `n` acknowledged deliveries and refill consumers.
    pub fn acked(self: &Arc<Self>, n: u32) {
        let mut st = self.state.lock();
        st.unacked = st.unacked.saturating_sub(n);
        self.dispatch_locked(&mut st);
    }

    /// Settle deliveries that were rejected without requeue.
    pub fn discarded(self: &Arc<Self>, n: u32) {
        self.acked(n)
    }

    /// Put unacknowledged messages back at their original positions, marked redelivered.
    pub fn requeue(self: &Arc<Self>, mut msgs: Vec<QueuedMessage>) {
        let mut st = self.state.lock();
        st.unacked = st.unacked.saturating_sub(msgs.len() as u32);
        if self.is_deleted() {
            return;
        }
        for m in msgs.iter_mut() {
            m.redelivered = true;
        }
        msgs.sort_by_key(|m| m.seq);
        let first_ready = st.ready.front().map(|m| m.seq);
        match first_ready {
            Some(head) if msgs.last().is_some_and(|m| m.seq > head) => {
                let old = std::mem::take(&mut st.ready);
                let mut merged = VecDeque::with_capacity(old.len() + msgs.len());
                let mut a = old.into_iter().peekable();
                let mut b = msgs.into_iter().peekable();
                loop {
                    let take_a = match (a.peek(), b.peek()) {
                        (Some(x), Some(y)) => x.seq < y.seq,
                        (Some(_), None) => true,
                        (None, Some(_)) => false,
                        (None, None) => break,
                    };
                    let next = if take_a { a.next() } else { b.next() };
                    merged.extend(next);
                }
                st.ready = merged;
            }
            _ => {
                for m in msgs.into_iter().rev() {
                    st.ready.push_front(m);
                }
            }
        }
        self.dispatch_locked(&mut st);
    }

    /// Drop all ready messages; returns how many.
    pub fn purge(&self) -> u32 {
        let mut st = self.state.lock();
        let n = st.ready.len() as u32;
        st.ready.clear();
        n
    }

    pub fn message_count(&self) -> u32 {
        self.state.lock().ready.len() as u32
    }

    pub fn consumer_count(&self) -> u32 {
        self.state.lock().consumers.len() as u32
    }

    pub fn counts(&self) -> (u32, u32) {
        let st = self.state.lock();
        (st.ready.len() as u32, st.consumers.len() as u32)
    }

    pub fn unacked_count(&self) -> u32 {
        self.state.lock().unacked
    }

    /// Mark deleted and take what must be cleaned up: the number of ready messages dropped and the consumers
    /// to cancel.
    pub fn take_for_delete(&self) -> (u32, Vec<Arc<Consumer>>) {
        let mut st = self.state.lock();
        self.deleted.store(true, Ordering::Release);
        let n = st.ready.len() as u32;
        st.ready.clear();
        (n, std::mem::take(&mut st.consumers))
    }
}
