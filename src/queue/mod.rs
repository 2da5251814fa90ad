//! Queue state and dispatch. A queue is a short critical section behind a mutex, not a task: the publisher's
//! connection task pushes a message and, when a consumer has capacity, encodes the delivery straight into that
//! consumer's connection outbound buffer, so a message crosses one hand-off between sockets. Acks, requeues and
//! consumer changes run the same dispatch loop from whichever task freed capacity.
//!
//! Messages that die (rejected without requeue, expired, dropped by a length limit, past their delivery limit)
//! are collected under the lock and dead-lettered after it is released, so two queues dead-lettering into each
//! other never deadlock. Timers (message TTL at the head, queue expiry) are one-shot tokio tasks holding a weak
//! reference; no timer exists while nothing can expire, so TTL costs nothing when unused.

pub mod deadletter;
mod ready;

use crate::broker::message::MessageRef;
use crate::broker::queue_args::{Overflow, QueueConfig, QueueType};
use crate::broker::VHost;
use crate::channel::ChannelShared;
use crate::error::{AmqpError, AmqpResult};
use amq_protocol::types::{AMQPValue, FieldTable};
use deadletter::Reason;
use parking_lot::Mutex;
use ready::ReadyList;
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
    /// How many times the message came back to the queue unacknowledged.
    pub delivery_count: u32,
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
    ready: ReadyList,
    next_seq: u64,
    /// Sorted by priority, highest first; round-robin within a priority by moving the served consumer to the
    /// end of its group. For a single-active-consumer queue, registration order (the first is active).
    consumers: Vec<Arc<Consumer>>,
    unacked: u32,
    had_consumer: bool,
    config: QueueConfig,
    /// The deadline a message-expiry timer is armed for, if any.
    timer: Option<u64>,
    /// Last use (declare, get, consume) for x-expires, and whether an expiry timer is armed.
    last_used: u64,
    expiry_armed: bool,
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
    pub queue_type: QueueType,
    vhost_ref: Weak<VHost>,
    state: Mutex<QueueState>,
    deleted: AtomicBool,
}

impl QueueState {
    /// Drop expired messages at the head (RabbitMQ expires per-message TTLs only at the head).
    fn expire_head(&mut self, now: u64, dead: &mut Dead) {
        while self
            .ready
            .front()
            .and_then(|m| m.expires)
            .is_some_and(|e| e <= now)
        {
            if let Some(m) = self.ready.pop_front() {
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
                .is_some_and(|n| self.ready.bytes() > n)
    }

    /// Whether deliveries are counted (quorum queues always; others with a delivery limit).
    fn counts_deliveries(&self) -> bool {
        self.config.queue_type == QueueType::Quorum || self.config.delivery_limit.is_some()
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
            queue_type: config.queue_type,
            arguments,
            vhost_ref,
            state: Mutex::new(QueueState {
                ready: ReadyList::new(config.max_priority),
                config,
                last_used: now_ms(),
                ..Default::default()
            }),
            deleted: AtomicBool::new(false),
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub fn config(&self) -> QueueConfig {
        self.state.lock().config.clone()
    }

    /// Replace the effective configuration (a policy changed): limits and TTLs apply from now on.
    pub fn set_config(self: &Arc<Self>, config: QueueConfig) {
        let mut dead = Dead::new();
        {
            let mut st = self.state.lock();
            let max_priority = st.config.max_priority;
            st.config = QueueConfig {
                max_priority,
                ..config
            };
            while st.over_limit() && st.config.overflow == Overflow::DropHead {
                match st.ready.pop_front() {
                    Some(m) => dead.push((m, Reason::Maxlen)),
                    None => break,
                }
            }
            self.arm_expiry(&mut st);
        }
        self.dead_letter(dead);
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

    pub fn is_single_active(&self) -> bool {
        self.state.lock().config.single_active_consumer
    }

    /// The queue was used (declare, get, consume): restart its x-expires countdown.
    pub fn touch(self: &Arc<Self>) {
        let mut st = self.state.lock();
        st.last_used = now_ms();
        self.arm_expiry(&mut st);
    }

    /// Enqueue a message and hand it to a consumer if one has capacity.
    pub fn publish(self: &Arc<Self>, msg: MessageRef) -> Accepted {
        let mut dead = Dead::new();
        let accepted = {
            let mut st = self.state.lock();
            if self.is_deleted() {
                return Accepted::Yes;
            }
            let ttl = match (st.config.message_ttl, per_message_ttl(&msg)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let seq = st.next_seq;
            st.next_seq += 1;
            let expires = ttl.map(|t| now_ms().saturating_add(t));
            st.ready.push_back(QueuedMessage {
                seq,
                msg,
                redelivered: false,
                expires,
                delivery_count: 0,
            });
            let mut accepted = Accepted::Yes;
            if st.over_limit() {
                match st.config.overflow {
                    Overflow::DropHead => {
                        while st.over_limit() {
                            match st.ready.pop_front() {
                                Some(m) => dead.push((m, Reason::Maxlen)),
                                None => break,
                            }
                        }
                    }
                    Overflow::RejectPublish | Overflow::RejectPublishDlx => {
                        // Refuse the new message, unless a consumer can take it at once.
                        self.dispatch_locked(&mut st, &mut dead);
                        if st.over_limit() {
                            if let Some(m) = st.ready.remove_seq(seq) {
                                if st.config.overflow == Overflow::RejectPublishDlx {
                                    dead.push((m, Reason::Maxlen));
                                }
                                accepted = Accepted::Rejected;
                            }
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
        let single = st.config.single_active_consumer;
        'outer: loop {
            if st.ready.front().is_some_and(|m| m.expires.is_some()) {
                st.expire_head(now_ms(), dead);
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
                    if !c.no_ack {
                        st.unacked += 1;
                    }
                    st.ready.pop_front();
                    if !single {
                        Self::rotate(&mut st.consumers, i);
                    }
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

    /// Arm the x-expires timer while the queue has no consumers.
    fn arm_expiry(self: &Arc<Self>, st: &mut QueueState) {
        let Some(expires) = st.config.expires else {
            return;
        };
        if st.expiry_armed || !st.consumers.is_empty() || self.is_deleted() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        st.expiry_armed = true;
        let deadline = st.last_used.saturating_add(expires);
        let weak = Arc::downgrade(self);
        rt.spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(
                deadline.saturating_sub(now_ms()),
            ))
            .await;
            if let Some(q) = weak.upgrade() {
                q.on_expiry_timer();
            }
        });
    }

    fn on_expiry_timer(self: &Arc<Self>) {
        let expired = {
            let mut st = self.state.lock();
            st.expiry_armed = false;
            let due = st.config.expires.map(|e| st.last_used.saturating_add(e));
            match due {
                Some(due) if st.consumers.is_empty() && now_ms() >= due => true,
                _ => {
                    // Used since the timer was armed (or a consumer came and went): count again.
                    self.arm_expiry(&mut st);
                    false
                }
            }
        };
        if expired {
            if let Some(v) = self.vhost_ref.upgrade() {
                tracing::info!(vhost = %self.vhost, queue = %self.name, "queue expired (x-expires)");
                v.remove_queue(self);
            }
        }
    }

    /// basic.get: hand the head message to `channel`. Returns false when the queue is empty.
    pub fn get(self: &Arc<Self>, channel: &Arc<ChannelShared>, no_ack: bool) -> bool {
        let mut dead = Dead::new();
        let got = {
            let mut st = self.state.lock();
            st.last_used = now_ms();
            st.expire_head(now_ms(), &mut dead);
            match st.ready.pop_front() {
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
            st.last_used = now_ms();
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
            st.consumers.retain(|x| !Arc::ptr_eq(x, c));
            let removed = st.consumers.len() != before;
            if removed {
                st.last_used = now_ms();
                // A single-active-consumer queue hands over to the next consumer.
                self.dispatch_locked(&mut st, &mut dead);
                self.arm_expiry(&mut st);
            }
            removed
                && self.auto_delete
                && st.consumers.is_empty()
                && st.had_consumer
                && !self.is_deleted()
        };
        self.dead_letter(dead);
        auto_delete
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

    /// Take back unacknowledged messages, marked redelivered: a classic queue puts them at their original
    /// positions, a quorum queue at the back. Counted deliveries past the limit are dead-lettered instead.
    pub fn requeue(self: &Arc<Self>, msgs: Vec<QueuedMessage>) {
        let mut dead = Dead::new();
        {
            let mut st = self.state.lock();
            st.unacked = st.unacked.saturating_sub(msgs.len() as u32);
            if self.is_deleted() {
                return;
            }
            let counting = st.counts_deliveries();
            let mut back = Vec::with_capacity(msgs.len());
            for mut m in msgs {
                m.redelivered = true;
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
                    let count = m.delivery_count as i64;
                    m.msg = Arc::new(m.msg.with_headers(|h| {
                        h.insert("x-delivery-count".into(), AMQPValue::LongLongInt(count));
                    }));
                }
                back.push(m);
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
            self.dispatch_locked(&mut st, &mut dead);
            self.arm_timer(&mut st);
        }
        self.dead_letter(dead);
    }

    /// Drop all ready messages; returns how many.
    pub fn purge(&self) -> u32 {
        self.state.lock().ready.clear() as u32
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
        let n = st.ready.clear() as u32;
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
