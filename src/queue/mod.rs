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
pub mod ready;

use crate::broker::message::{MessageRef, RecordMeta};
use crate::broker::queue_args::{Overflow, QueueConfig, QueueType};
use crate::broker::VHost;
use crate::channel::ChannelShared;
use crate::error::{AmqpError, AmqpResult};
use crate::store::MessageStore;
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

/// Milliseconds since the Unix epoch (for expiry deadlines kept across restarts).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A message in a queue: its position (for requeue at the original place) and redelivery state.
#[derive(Clone, Debug)]
pub struct QueuedMessage {
    pub seq: u64,
    /// Its id in the message store: the `seq` it was first published with (a quorum queue renumbers
    /// requeued messages, the store id stays).
    pub id: u64,
    pub msg: MessageRef,
    pub redelivered: bool,
    /// Expiry deadline on the `now_ms` clock, when the queue or the message has a TTL.
    pub expires: Option<u64>,
    /// How many times the message came back to the queue unacknowledged.
    pub delivery_count: u32,
    /// Where the store holds it, when it is stored (lets the queue page it out without a write).
    pub loc: Option<crate::store::Location>,
}

impl QueuedMessage {
    /// A message entering a queue for the first time.
    pub fn new(seq: u64, msg: MessageRef) -> QueuedMessage {
        QueuedMessage {
            seq,
            id: seq,
            msg,
            redelivered: false,
            expires: None,
            delivery_count: 0,
            loc: None,
        }
    }
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
    /// Refused by x-overflow=reject-publish(-dlx), or the store could not take it: the publisher gets a nack.
    Rejected,
    /// Written to the message store; the confirm follows when the write is durable.
    Pending,
}

/// Who to tell when a stored publish is durable: the publishing channel and the publish's sequence number.
#[derive(Debug, Clone)]
pub struct ConfirmRef {
    pub channel: Arc<ChannelShared>,
    pub seq: u64,
}

/// Where a durable queue keeps its persistent messages.
#[derive(Debug)]
pub struct Durable {
    pub store: Arc<MessageStore>,
    /// The queue's key in the store: vhost and name.
    pub key: String,
}

/// The store key of a queue.
pub fn store_key(vhost: &str, name: &str) -> String {
    format!("{vhost}\u{1}{name}")
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

/// What a new queue is made of.
pub struct QueueSpec<'a> {
    pub name: &'a str,
    pub vhost: &'a str,
    pub durable: bool,
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    pub vhost_ref: Weak<VHost>,
    /// Persistent messages of a durable queue go to the store, and any queue pages bodies out to it.
    pub storage: Option<Storage>,
}

/// The broker's message store and its budget for message bodies held in memory, shared by every queue.
#[derive(Clone, Debug)]
pub struct Storage {
    pub store: Arc<MessageStore>,
    pub budget: Arc<ready::MemoryBudget>,
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
    durable_store: Option<Durable>,
    state: Mutex<QueueState>,
    deleted: AtomicBool,
}

impl QueueState {
    /// Drop expired messages at the head (RabbitMQ expires per-message TTLs only at the head).
    fn expire_head(&mut self, now: u64, dead: &mut Dead) {
        while self.ready.front_expires().is_some_and(|e| e <= now) {
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
    pub fn new(spec: QueueSpec) -> Queue {
        let QueueSpec {
            name,
            vhost,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            vhost_ref,
            storage,
        } = spec;
        let config = QueueConfig::from_args(&arguments);
        let key = store_key(vhost, name);
        let store = storage.as_ref().map(|s| s.store.clone());
        let pager = storage.map(|Storage { store, budget }| ready::Pager {
            store,
            durable_key: durable.then(|| key.clone()),
            transient_key: format!("{}{key}", ready::TRANSIENT_PREFIX),
            budget,
        });
        let durable_store = store
            .filter(|_| durable)
            .map(|store| Durable { store, key });
        Queue {
            name: Arc::from(name),
            vhost: Arc::from(vhost),
            durable,
            exclusive_owner,
            auto_delete,
            queue_type: config.queue_type,
            arguments,
            vhost_ref,
            durable_store,
            state: Mutex::new(QueueState {
                ready: ReadyList::with_pager(config.max_priority, pager),
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

    /// Whether a message is written to the store: persistent messages on durable queues, and every message on
    /// a durable quorum queue.
    fn stores(&self, m: &crate::broker::message::Message) -> bool {
        self.durable_store.is_some() && (m.persistent() || self.queue_type == QueueType::Quorum)
    }

    /// The store forgets these messages (acked, dropped, dead-lettered).
    fn forget_stored<'a>(&self, msgs: impl Iterator<Item = &'a QueuedMessage>) {
        let Some(d) = &self.durable_store else { return };
        let ids: smallvec::SmallVec<[u64; 8]> =
            msgs.filter(|m| self.stores(&m.msg)).map(|m| m.id).collect();
        if !ids.is_empty() {
            d.store.ack(&d.key, &ids);
        }
    }

    /// Note a delivery in the store: no-ack deliveries are settled, others marked delivered once so that they
    /// come back redelivered after a restart.
    fn note_delivery(&self, qm: &QueuedMessage, no_ack: bool) {
        let Some(d) = &self.durable_store else { return };
        if !self.stores(&qm.msg) {
            return;
        }
        if no_ack {
            d.store.ack(&d.key, &[qm.id]);
        } else if !qm.redelivered {
            d.store.delivered(&d.key, qm.id);
        }
    }

    /// Put messages recovered from the store back, paged and in order, at start: `(priority, message)`.
    pub fn recover(self: &Arc<Self>, msgs: Vec<(u8, ready::Paged)>) {
        let mut st = self.state.lock();
        for (priority, m) in msgs {
            st.next_seq = st.next_seq.max(m.seq + 1);
            st.ready.push_paged(priority, m);
        }
        self.arm_timer(&mut st);
    }

    /// Enqueue a message and hand it to a consumer if one has capacity.
    pub fn publish(self: &Arc<Self>, msg: MessageRef) -> Accepted {
        self.publish_confirmed(msg, None)
    }

    /// Enqueue a message; a stored one reports its durability to `confirm`.
    pub fn publish_confirmed(
        self: &Arc<Self>,
        msg: MessageRef,
        confirm: Option<&ConfirmRef>,
    ) -> Accepted {
        let stores = self.stores(&msg);
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
            let payload = stores.then(|| {
                msg.encode_record(RecordMeta {
                    priority: msg.properties.priority().unwrap_or(0),
                    expires_at: ttl.map_or(0, |t| unix_ms().saturating_add(t).max(1)),
                    body_len: 0,
                })
            });
            let seq = st.next_seq;
            st.next_seq += 1;
            let expires = ttl.map(|t| now_ms().saturating_add(t));
            st.ready.push_back(QueuedMessage {
                expires,
                ..QueuedMessage::new(seq, msg)
            });
            let mut accepted = Accepted::Yes;
            let mut refused = false;
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
                                refused = true;
                                if st.config.overflow == Overflow::RejectPublishDlx {
                                    dead.push((m, Reason::Maxlen));
                                }
                                accepted = Accepted::Rejected;
                            }
                        }
                    }
                }
            }
            if let (Some(payload), Some(d), false) = (payload, &self.durable_store, refused) {
                // Written under the queue lock so that the store sees this queue's messages in order.
                let done: crate::store::Done = match confirm {
                    Some(c) => {
                        let c = c.clone();
                        Box::new(move |r: Result<(), crate::store::StoreError>| {
                            c.channel.confirms.lock().write_done(c.seq, r.is_ok());
                            c.channel.flush_confirms();
                        })
                    }
                    None => Box::new(|_| {}),
                };
                match d.store.publish(&d.key, seq, &payload, done) {
                    Ok(loc) => {
                        st.ready.set_location(seq, loc);
                        if confirm.is_some() {
                            accepted = Accepted::Pending;
                        }
                    }
                    Err(e) => {
                        tracing::error!(vhost = %self.vhost, queue = %self.name, error = %e, "cannot store a persistent message; refusing it");
                        st.ready.remove_seq(seq);
                        return Accepted::Rejected;
                    }
                }
            }
            self.dispatch_locked(&mut st, &mut dead);
            if ttl.is_some() {
                st.expire_head(now_ms(), &mut dead);
                self.arm_timer(&mut st);
            }
            st.ready.page_out();
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
            if st.ready.front_expires().is_some() {
                // A message whose TTL ends this very millisecond (TTL 0) may still go to a waiting consumer.
                st.expire_head(now_ms().saturating_sub(1), dead);
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
                    self.note_delivery(front, c.no_ack);
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
        let Some(deadline) = st.ready.front_expires() else {
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
                Some(mut qm) => {
                    self.note_delivery(&qm, no_ack);
                    if self.queue_type == QueueType::Quorum && qm.delivery_count == 0 {
                        // RabbitMQ's quorum queues add x-delivery-count 0 on a first basic.get (though not on a
                        // first consumer delivery).
                        qm.msg = Arc::new(qm.msg.with_headers(|h| {
                            h.insert("x-delivery-count".into(), AMQPValue::LongLongInt(0));
                        }));
                    }
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

    /// Settle acknowledged deliveries and refill consumers.
    pub fn acked(self: &Arc<Self>, msgs: &[QueuedMessage]) {
        self.forget_stored(msgs.iter());
        self.settled(msgs.len() as u32);
    }

    fn settled(self: &Arc<Self>, n: u32) {
        let mut dead = Dead::new();
        {
            let mut st = self.state.lock();
            st.unacked = st.unacked.saturating_sub(n);
            self.dispatch_locked(&mut st, &mut dead);
        }
        self.dead_letter(dead);
    }

    /// Settle deliveries rejected without requeue: they are dead-lettered when the queue has a DLX (and the
    /// store forgets them either way).
    pub fn discard(self: &Arc<Self>, msgs: Vec<QueuedMessage>) {
        self.settled(msgs.len() as u32);
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
        let mut st = self.state.lock();
        let n = st.ready.len() as u32;
        let (mem, paged) = st.ready.drain(true);
        self.forget_stored(mem.iter());
        if let (Some(d), false) = (&self.durable_store, paged.is_empty()) {
            d.store.ack(&d.key, &paged);
        }
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

    /// Ready messages whose bodies are in memory (the rest are paged out to the store).
    pub fn ready_in_memory(&self) -> usize {
        self.state.lock().ready.in_memory()
    }

    pub fn unacked_count(&self) -> u32 {
        self.state.lock().unacked
    }

    /// Mark deleted and take what must be cleaned up: the number of ready messages dropped and the consumers
    /// to cancel.
    pub fn take_for_delete(&self) -> (u32, Vec<Arc<Consumer>>) {
        let mut st = self.state.lock();
        self.deleted.store(true, Ordering::Release);
        if let Some(d) = &self.durable_store {
            d.store.drop_queue(&d.key);
        }
        let n = st.ready.clear() as u32;
        st.ready.forget_transient_pages();
        (n, std::mem::take(&mut st.consumers))
    }

    /// Republish dead messages to the queue's dead-letter exchange (called without the queue lock).
    fn dead_letter(self: &Arc<Self>, dead: Dead) {
        if dead.is_empty() {
            return;
        }
        self.forget_stored(dead.iter().map(|(m, _)| m));
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
