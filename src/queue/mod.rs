//! Queue state and dispatch. A queue is a short critical section behind a mutex, not a task: the publisher's
//! connection task pushes a message and, when a consumer has capacity, encodes the delivery straight into that
//! consumer's connection outbound buffer, so a message crosses one hand-off between sockets. Acks, requeues and
//! consumer changes run the same dispatch loop from whichever task freed capacity.
//!
//! Messages that die (rejected without requeue, expired, dropped by a length limit) are collected under the
//! lock and dead-lettered after it is released, so two queues dead-lettering into each other never deadlock.

pub mod deadletter;

use crate::broker::message::MessageRef;
use crate::broker::queue_args::{Overflow, QueueConfig};
use crate::broker::VHost;
use crate::channel::ChannelShared;
use crate::error::{AmqpError, AmqpResult};
use amq_protocol::types::FieldTable;
use deadletter::Reason;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// Milliseconds on a monotonic clock private to this process (for expiry deadlines).
pub fn now_ms() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// A message in a queue: its position (for requeue at the original place) and redelivery state.
#[derive(Clone, Debug)]
pub struct QueuedMessage {
    pub seq: u64,
    pub msg: MessageRef,
    pub redelivered: bool,
    /// Expiry deadline on the `now_ms` clock, when the queue or the message has a TTL.
    pub expires: Option<u64>,
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

/// What a publish to a queue came to, for publisher confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Yes,
    /// Refused by x-overflow=reject-publish(-dlx): the publisher gets a nack.
    Rejected,
}

#[derive(Debug, Default)]
struct QueueState {
    ready: VecDeque<QueuedMessage>,
    ready_bytes: u64,
    next_seq: u64,
    /// Sorted by priority, highest first; round-robin within a priority by moving the served consumer to the
    /// end of its group.
    consumers: Vec<Arc<Consumer>>,
    unacked: u32,
    had_consumer: bool,
    config: QueueConfig,
    /// The deadline a timer task is armed for, if any.
    timer: Option<u64>,
}

/// Messages that died under the lock, dead-lettered once it is released.
type Dead = Vec<(QueuedMessage, Reason)>;

#[derive(Debug)]
pub struct Queue {
    pub name: Arc<str>,
    pub vhost: Arc<str>,
    pub durable: bool,
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    vhost_ref: Weak<VHost>,
    state: Mutex<QueueState>,
    deleted: AtomicBool,
}

impl QueueState {
    fn pop_front(&mut self) -> Option<QueuedMessage> {
        let m = self.ready.pop_front()?;
        self.ready_bytes -= m.msg.body.len() as u64;
        Some(m)
    }

    fn push_back(&mut self, m: QueuedMessage) {
        self.ready_bytes += m.msg.body.len() as u64;
        self.ready.push_back(m);
    }

    /// Drop expired messages at the head (RabbitMQ expires per-message TTLs only at the head).
    fn expire_head(&mut self, now: u64, dead: &mut Dead) {
        while self
            .ready
            .front()
            .and_then(|m| m.expires)
            .is_some_and(|e| e <= now)
        {
            if let Some(m) = self.pop_front() {
                dead.push((m, Reason::Expired));
            }
        }
    }

    fn over_limit(&self) -> bool {
        self.config
            .max_length
            .is_some_and(|n| self.ready.len() as u64 > n)
            || self
                .config
                .max_length_bytes
                .is_some_and(|n| self.ready_bytes > n)
    }
}

impl Queue {
    pub fn new(
        name: &str,
        vhost: &str,
        durable: bool,
        exclusive_owner: Option<u64>,
        auto_delete: bool,
        arguments: FieldTable,
        vhost_ref: Weak<VHost>,
    ) -> Queue {
        let config = QueueConfig::from_args(&arguments);
        Queue {
            name: Arc::from(name),
            vhost: Arc::from(vhost),
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            vhost_ref,
            state: Mutex::new(QueueState {
                config,
                ..Default::default()
            }),
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
    pub fn publish(self: &Arc<Self>, msg: MessageRef) -> Accepted {
        let mut dead = Dead::new();
        let accepted = {
            let mut st = self.state.lock();
            if self.is_deleted() {
                return Accepted::Yes;
            }
            let now = if st.config.message_ttl.is_some() || msg.properties.expiration().is_some() {
                now_ms()
            } else {
                0
            };
            let ttl = match (st.config.message_ttl, per_message_ttl(&msg)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let seq = st.next_seq;
            st.next_seq += 1;
            let qm = QueuedMessage {
                seq,
                msg,
                redelivered: false,
                expires: ttl.map(|t| now.saturating_add(t)),
            };
            let mut accepted = Accepted::Yes;
            st.push_back(qm);
            if st.over_limit() {
                match st.config.overflow {
                    Overflow::DropHead => {
                        while st.over_limit() {
                            match st.pop_front() {
                                Some(m) => dead.push((m, Reason::Maxlen)),
                                None => break,
                            }
                        }
                    }
                    Overflow::RejectPublish | Overflow::RejectPublishDlx => {
                        // Refuse the new message, unless a consumer can take it at once.
                        self.dispatch_locked(&mut st, &mut dead);
                        if st.over_limit() && st.ready.back().is_some_and(|m| m.seq == seq) {
                            if let Some(m) = st.ready.pop_back() {
                                st.ready_bytes -= m.msg.body.len() as u64;
                                if st.config.overflow == Overflow::RejectPublishDlx {
                                    dead.push((m, Reason::Maxlen));
                                }
                            }
                            st.next_seq -= 1;
                            accepted = Accepted::Rejected;
                        }
                    }
                }
            }
            self.dispatch_locked(&mut st, &mut dead);
            if ttl.is_some() {
                st.expire_head(now_ms(), &mut dead);
                self.arm_timer(&mut st);
            }
            accepted
        };
        self.dead_letter(dead);
        accepted
    }

    pub fn dispatch(self: &Arc<Self>) {
        let mut dead = Dead::new();
        {
            let mut st = self.state.lock();
            self.dispatch_locked(&mut st, &mut dead);
        }
        self.dead_letter(dead);
    }

    fn dispatch_locked(self: &Arc<Self>, st: &mut QueueState, dead: &mut Dead) {
        'outer: loop {
            if st.ready.front().is_some_and(|m| m.expires.is_some()) {
                st.expire_head(now_ms(), dead);
            }
            let Some(front) = st.ready.front() else { break };
            for i in 0..st.consumers.len() {
                let c = &st.consumers[i];
                if !c.may_take() {
                    continue;
                }
                if c.channel.deliver(c, self, front) {
                    if !c.no_ack {
                        st.unacked += 1;
                    }
                    st.pop_front();
                    Self::rotate(&mut st.consumers, i);
                    continue 'outer;
                }
            }
            break;
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

    /// Make sure a timer fires when the head message expires.
    fn arm_timer(self: &Arc<Self>, st: &mut QueueState) {
        let Some(deadline) = st.ready.front().and_then(|m| m.expires) else {
            return;
        };
        if st.timer.is_some_and(|t| t <= deadline) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        st.timer = Some(deadline);
        let weak = Arc::downgrade(self);
        rt.spawn(async move {
            let wait = deadline.saturating_sub(now_ms());
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            if let Some(q) = weak.upgrade() {
                q.on_timer(deadline);
            }
        });
    }

    fn on_timer(self: &Arc<Self>, deadline: u64) {
        let mut dead = Dead::new();
        {
            let mut st = self.state.lock();
            if st.timer == Some(deadline) {
                st.timer = None;
            }
            st.expire_head(now_ms(), &mut dead);
            self.dispatch_locked(&mut st, &mut dead);
            self.arm_timer(&mut st);
        }
        self.dead_letter(dead);
    }

    /// basic.get: hand the head message to `channel`. Returns false when the queue is empty.
    pub fn get(self: &Arc<Self>, channel: &Arc<ChannelShared>, no_ack: bool) -> bool {
        let mut dead = Dead::new();
        let got = {
            let mut st = self.state.lock();
            st.expire_head(now_ms(), &mut dead);
            match st.pop_front() {
                None => false,
                Some(qm) => {
                    let remaining = st.ready.len() as u32;
                    if !no_ack {
                        st.unacked += 1;
                    }
                    channel.deliver_get(self, qm, no_ack, remaining);
                    self.arm_timer(&mut st);
                    true
                }
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
            if (c.exclusive && !st.consumers.is_empty()) || st.consumers.iter().any(|x| x.exclusive)
            {
                return Err(AmqpError::access_refused(format!(
                    "queue '{}' in vhost '{}' in exclusive use",
                    self.name, self.vhost
                )));
            }
            let pos = st
                .consumers
                .iter()
                .position(|x| x.priority < c.priority)
                .unwrap_or(st.consumers.len());
            st.consumers.insert(pos, c);
            st.had_consumer = true;
            announce();
            self.dispatch_locked(&mut st, &mut dead);
        }
        self.dead_letter(dead);
        Ok(())
    }

    /// Remove a consumer; returns true when the queue is auto-delete and has just lost its last consumer.
    pub fn remove_consumer(&self, c: &Arc<Consumer>) -> bool {
        let mut st = self.state.lock();
        let before = st.consumers.len();
        st.consumers.retain(|x| !Arc::ptr_eq(x, c));
        let removed = st.consumers.len() != before;
        removed
            && self.auto_delete
            && st.consumers.is_empty()
            && st.had_consumer
            && !self.is_deleted()
    }

    /// Settle `n` acknowledged deliveries and refill consumers.
    pub fn acked(self: &Arc<Self>, n: u32) {
        let mut dead = Dead::new();
        {
            let mut st = self.state.lock();
            st.unacked = st.unacked.saturating_sub(n);
            self.dispatch_locked(&mut st, &mut dead);
        }
        self.dead_letter(dead);
    }

    /// Settle deliveries rejected without requeue: they are dead-lettered when the queue has a DLX.
    pub fn discard(self: &Arc<Self>, msgs: Vec<QueuedMessage>) {
        self.acked(msgs.len() as u32);
        self.dead_letter(msgs.into_iter().map(|m| (m, Reason::Rejected)).collect());
    }

    /// Put unacknowledged messages back at their original positions, marked redelivered.
    pub fn requeue(self: &Arc<Self>, mut msgs: Vec<QueuedMessage>) {
        let mut dead = Dead::new();
        {
            let mut st = self.state.lock();
            st.unacked = st.unacked.saturating_sub(msgs.len() as u32);
            if self.is_deleted() {
                return;
            }
            for m in msgs.iter_mut() {
                m.redelivered = true;
                st.ready_bytes += m.msg.body.len() as u64;
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
            self.dispatch_locked(&mut st, &mut dead);
            self.arm_timer(&mut st);
        }
        self.dead_letter(dead);
    }

    /// Drop all ready messages; returns how many.
    pub fn purge(&self) -> u32 {
        let mut st = self.state.lock();
        let n = st.ready.len() as u32;
        st.ready.clear();
        st.ready_bytes = 0;
        n
    }

    pub fn message_count(&self) -> u32 {
        self.counts().0
    }

    pub fn consumer_count(&self) -> u32 {
        self.counts().1
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
        st.ready_bytes = 0;
        (n, std::mem::take(&mut st.consumers))
    }

    /// Republish dead messages to the queue's dead-letter exchange (called without the queue lock).
    fn dead_letter(self: &Arc<Self>, dead: Dead) {
        if dead.is_empty() {
            return;
        }
        let (dlx, dlrk) = {
            let st = self.state.lock();
            (
                st.config.dead_letter_exchange.clone(),
                st.config.dead_letter_routing_key.clone(),
            )
        };
        let (Some(dlx), Some(vhost)) = (dlx, self.vhost_ref.upgrade()) else {
            return;
        };
        // A dead-letter exchange that does not exist drops the messages, as in RabbitMQ.
        let Some(x) = vhost.exchange(&dlx) else {
            return;
        };
        let now_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for (qm, reason) in dead {
            let keys = match &dlrk {
                Some(k) => vec![k.clone()],
                None => deadletter::publish_keys(&qm.msg),
            };
            let dm = deadletter::dead_lettered(
                &qm.msg,
                &self.name,
                reason,
                &dlx,
                dlrk.as_deref(),
                now_secs,
            );
            let (history, rejected) = deadletter::death_history(&dm);
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut routed = crate::broker::vhost::Routed::new();
            vhost.route(&x, &keys, dm.properties.headers().as_ref(), &mut routed);
            let dm = Arc::new(dm);
            for q in routed {
                // A message that would return to a queue it already died in, with no rejection on the way, is in
                // a cycle and is dropped.
                if !rejected && history.iter().any(|h| **h == *q.name) {
                    continue;
                }
                q.publish(dm.clone());
            }
        }
    }
}

/// The per-message TTL from the expiration property (validated at publish).
fn per_message_ttl(msg: &crate::broker::message::Message) -> Option<u64> {
    msg.properties
        .expiration()
        .as_ref()
        .and_then(|e| e.as_str().parse::<u64>().ok())
}
