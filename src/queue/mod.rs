//! Queues: what a queue holds and how it hands messages out. A queue is a short critical section behind a
//! mutex, not a task: the publisher's connection task pushes a message and, when a consumer has capacity,
//! the consumer's channel encodes the delivery straight into its connection's outbound buffer, so a message
//! crosses one hand-off between sockets. Acks, requeues and consumer changes run the same dispatch loop from
//! whichever task freed capacity.
//!
//! This module sits in the core, below the channel layer: it reaches channels, confirms and its vhost only
//! through the traits in [`consumer`]. Files: [`enqueue`] (publishing, with one store write per persistent
//! message however many durable queues it reaches), [`dispatch`] (consumers, basic.get, round-robin and
//! prefetch), [`settle`] (ack, requeue, reject, purge), [`timers`] (TTL and x-expires on the broker clock),
//! [`ready`] (the ready list and paging to the store), [`deadletter`] (x-death bookkeeping), [`message`] and
//! [`args`] (the message and the queue arguments).
//!
//! Messages that die (rejected without requeue, expired, dropped by a length limit, past their delivery limit)
//! are collected under the lock and dead-lettered after it is released, so two queues dead-lettering into each
//! other never deadlock.

pub mod args;
pub mod consumer;
pub mod deadletter;
mod dispatch;
pub mod enqueue;
mod load;
pub mod message;
mod notes;
use notes::{DeliveryNotes, Unwoken};
pub mod paging;
pub mod ready;
mod settle;
pub mod spill;
mod timers;

pub use consumer::{ConfirmRef, ConfirmSink, Consumer, ConsumerChannel, QueueHost, Routed};
pub use enqueue::{enqueue, Enqueued};
pub use load::Got;
pub use settle::Held;

use crate::clock::Scheduler;
use crate::error::{AmqpError, AmqpResult};
use crate::store::{Location, MessageStore};
use amq_protocol::types::FieldTable;
use args::{Overflow, QueueConfig, QueueType};
use deadletter::Reason;
use message::MessageRef;
use parking_lot::Mutex;
use ready::ReadyList;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// A message in a queue: its position (for requeue at the original place) and redelivery state.
#[derive(Clone, Debug)]
pub struct QueuedMessage {
    pub seq: u64,
    /// Its id in the message store, when it is stored there (otherwise equal to `seq`).
    pub id: u64,
    pub msg: MessageRef,
    pub redelivered: bool,
    /// Expiry deadline on the broker clock, when the queue or the message has a TTL; `u64::MAX` for none
    /// (not an `Option`: every delivery awaiting its ack holds one of these, and 8 bytes is 0.8 MB over
    /// 100,000 of them). Read it with [`QueuedMessage::expires`].
    pub expires_at: u64,
    /// How many times the message came back to the queue unacknowledged (under RabbitMQ 4.3, by a failed
    /// delivery: a reject or a lost consumer).
    pub delivery_count: u32,
    /// Under RabbitMQ 4.3 (quorum queues): how many times it came back for any reason (`x-acquired-count`).
    pub acquired_count: u32,
    /// Where the store holds it, when `stored` (lets the queue page it out without a write). Not an
    /// `Option`: its tag was the niche a `Held` used for its own, which cost every delivery awaiting its ack
    /// 8 bytes. Read it with [`QueuedMessage::loc`].
    location: crate::store::Location,
    stored: bool,
}

const NO_LOCATION: crate::store::Location = crate::store::Location {
    segment: 0,
    offset: 0,
    len: 0,
    slot: 0,
};

impl QueuedMessage {
    /// Where the store holds it, when it is stored.
    pub fn loc(&self) -> Option<crate::store::Location> {
        self.stored.then_some(self.location)
    }

    pub fn set_loc(&mut self, loc: Option<crate::store::Location>) {
        self.stored = loc.is_some();
        self.location = loc.unwrap_or(NO_LOCATION);
    }

    pub fn expires(&self) -> Option<u64> {
        (self.expires_at != u64::MAX).then_some(self.expires_at)
    }

    /// A message entering a queue for the first time.
    pub fn new(seq: u64, msg: MessageRef) -> QueuedMessage {
        QueuedMessage {
            seq,
            id: seq,
            msg,
            redelivered: false,
            expires_at: u64::MAX,
            delivery_count: 0,
            acquired_count: 0,
            location: NO_LOCATION,
            stored: false,
        }
    }
}

/// A queue's state at one instant, for the management API.
#[derive(Debug, Clone, Default)]
pub struct QueueStatus {
    pub ready: u64,
    pub unacked: u64,
    pub unacked_bytes: u64,
    pub consumers: u64,
    pub ready_bytes: u64,
    pub ready_in_memory: u64,
    /// What the ready messages held in memory cost.
    pub memory: u64,
    /// The active consumer of a single-active-consumer queue.
    pub single_active: Option<Arc<str>>,
    /// The exclusive consumer, if one holds the queue.
    pub exclusive_consumer: Option<Arc<str>>,
}

/// What a publish to a queue came to, for publisher confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Yes,
    /// Refused by x-overflow=reject-publish(-dlx), or the store could not take it: the publisher gets a nack.
    Rejected,
}

/// Where a durable queue keeps its persistent messages.
#[derive(Debug)]
pub struct Durable {
    pub store: Arc<MessageStore>,
    /// The queue's key in the store: vhost and name.
    pub key: String,
    /// The broker's budget for messages in memory (whether deliveries are held whole).
    pub budget: Arc<paging::MemoryBudget>,
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
    /// Body bytes of the unacknowledged deliveries (RabbitMQ's message_bytes_unacknowledged).
    unacked_bytes: u64,
    had_consumer: bool,
    config: QueueConfig,
    /// The deadline a message-expiry timer is armed for, if any.
    timer: Option<u64>,
    /// Last use (declare, get, consume) for x-expires, and whether an expiry timer is armed.
    last_used: u64,
    expiry_armed: bool,
    /// basic.get callers waiting for a paged head to be read back.
    load_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// What a new queue is made of.
pub struct QueueSpec<'a> {
    pub name: &'a str,
    pub vhost: &'a str,
    pub durable: bool,
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// The vhost the queue lives in (dead-lettering, expiry).
    pub host: Weak<dyn QueueHost>,
    /// The broker's clock and timers.
    pub timers: Arc<Scheduler>,
    /// Persistent messages of a durable queue go to the store, and any queue pages bodies out to it.
    pub storage: Option<Storage>,
    /// The broker's journal (expiry, dead-lettering, overflow drops and requeues are recorded here).
    pub journal: Arc<crate::journal::Journal>,
    /// The RabbitMQ line the broker behaves as (4.3's quorum queues have a default delivery limit).
    pub compat: crate::config::Compat,
}

/// The broker's message store and its budget for message bodies held in memory, shared by every queue.
#[derive(Clone, Debug)]
pub struct Storage {
    pub store: Arc<MessageStore>,
    pub budget: Arc<paging::MemoryBudget>,
}

crate::counters! {
    /// What a queue did, for the management API's message_stats (each bumped under the queue lock).
    pub struct QueueStats {
        publish,
        deliver,
        deliver_no_ack,
        get,
        get_no_ack,
        get_empty,
        ack,
        redeliver,
    }
}

/// Messages that died under the lock, dead-lettered once it is released.
type Dead = Vec<(QueuedMessage, Reason)>;

pub struct Queue {
    pub name: Arc<str>,
    pub vhost: Arc<str>,
    pub durable: bool,
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    pub queue_type: QueueType,
    host: Weak<dyn QueueHost>,
    timers: Arc<Scheduler>,
    journal: Arc<crate::journal::Journal>,
    compat: crate::config::Compat,
    durable_store: Option<Durable>,
    state: Mutex<QueueState>,
    deleted: AtomicBool,
    /// `config.consumer_timeout` mirrored for channels, which read it without the queue's lock (they are
    /// called under it); `u64::MAX` when unset.
    consumer_timeout: AtomicU64,
    pub stats: QueueStats,
    /// When the queue was created, in Unix milliseconds on the broker clock.
    pub created_at: u64,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("vhost", &self.vhost)
            .field("name", &self.name)
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

impl QueueState {
    /// Take the head off for `reason`: dead-lettered when in memory, or — when paged and nothing needs its
    /// body (no dead-letter exchange) — forgotten unread. False when it must be read back first.
    fn drop_head(&mut self, reason: Reason, dead: &mut Dead) -> bool {
        match self.ready.head() {
            ready::Head::InMemory => match self.ready.pop_front() {
                Some(m) => {
                    dead.push((m, reason));
                    true
                }
                None => false,
            },
            ready::Head::Paged if self.config.dead_letter_exchange.is_none() => {
                match self.ready.pop_paged_front() {
                    Some(p) => {
                        self.ready.forget_pages(&[p]);
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        }
    }

    /// Drop expired messages at the head (RabbitMQ expires per-message TTLs only at the head). A paged
    /// backlog with no dead-letter exchange expires without reading a body.
    fn expire_head(&mut self, now: u64, dead: &mut Dead) {
        while self.ready.front_expires().is_some_and(|e| e <= now) {
            if !self.drop_head(Reason::Expired, dead) {
                break;
            }
        }
    }

    /// The head is to be dropped (expired, or over a drop-head limit): if it is paged, it must be read
    /// back first (for its index entry, or its body when it is dead-lettered).
    /// `now` is asked only for a head that expires: an idle backlog's every publish comes through here.
    fn head_must_go(&self, now: impl FnOnce() -> u64) -> bool {
        self.ready.front_expires().is_some_and(|e| e <= now())
            || (self.over_limit() && self.config.overflow == Overflow::DropHead)
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

    /// Drop from the head while over a length limit (x-overflow=drop-head).
    fn drop_head_over_limit(&mut self, dead: &mut Dead) {
        while self.over_limit() {
            if !self.drop_head(Reason::Maxlen, dead) {
                break;
            }
        }
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
            host,
            timers,
            storage,
            journal,
            compat,
        } = spec;
        let config = QueueConfig::from_args(&arguments).with_defaults(compat);
        let key = store_key(vhost, name);
        let store = storage
            .as_ref()
            .map(|s| (s.store.clone(), s.budget.clone()));
        let pager = storage.map(|Storage { store, budget }| paging::Pager {
            store,
            durable_key: durable.then(|| key.clone()),
            transient_key: format!("{}{key}", paging::TRANSIENT_PREFIX),
            budget,
            phase: paging::Pager::phase_of(&key),
        });
        let durable_store =
            store
                .filter(|_| durable)
                .map(|(store, budget)| Durable { store, key, budget });
        let now = timers.now_ms();
        let created_at = timers.wall_ms();
        let consumer_timeout = AtomicU64::new(config.consumer_timeout.unwrap_or(u64::MAX));
        Queue {
            name: Arc::from(name),
            vhost: Arc::from(vhost),
            durable,
            exclusive_owner,
            auto_delete,
            queue_type: config.queue_type,
            arguments,
            host,
            timers,
            journal,
            compat,
            durable_store,
            state: Mutex::new(QueueState {
                ready: ReadyList::with_pager(config.max_priority, pager),
                config,
                last_used: now,
                ..Default::default()
            }),
            deleted: AtomicBool::new(false),
            consumer_timeout,
            stats: QueueStats::default(),
            created_at,
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub fn config(&self) -> QueueConfig {
        self.state.lock().config.clone()
    }

    /// The queue's own consumer timeout (argument or policy), in milliseconds.
    pub fn consumer_timeout(&self) -> Option<u64> {
        match self.consumer_timeout.load(Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(ms),
        }
    }

    /// Replace the effective configuration (a policy changed): limits and TTLs apply from now on.
    pub fn set_config(self: &Arc<Self>, config: QueueConfig) {
        let config = config.with_defaults(self.compat);
        let mut dead = Dead::new();
        {
            let mut st = self.state.lock();
            let max_priority = st.config.max_priority;
            st.config = QueueConfig {
                max_priority,
                ..config
            };
            self.consumer_timeout.store(
                st.config.consumer_timeout.unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            if st.config.overflow == Overflow::DropHead {
                st.drop_head_over_limit(&mut dead);
                // A paged head that must be dead-lettered is read back first; dispatch starts that load.
                self.dispatch_locked(&mut st, &mut dead);
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
        st.last_used = self.timers.now_ms();
        self.arm_expiry(&mut st);
    }

    /// Whether a message is written to the store: persistent messages on durable queues, and every message on
    /// a durable quorum queue.
    pub fn stores(&self, m: &message::Message) -> bool {
        self.durable_store.is_some() && (m.persistent() || self.queue_type == QueueType::Quorum)
    }

    /// The queue's store key, when it is durable and the broker has a store.
    pub fn store_key(&self) -> Option<&str> {
        self.durable_store.as_ref().map(|d| d.key.as_str())
    }

    /// The store forgets these messages (acked, dropped, dead-lettered).
    fn forget_stored<'a>(&self, msgs: impl Iterator<Item = &'a QueuedMessage>) {
        let Some(d) = &self.durable_store else { return };
        let locs: smallvec::SmallVec<[Location; 8]> = msgs
            .filter(|m| self.stores(&m.msg))
            .filter_map(|m| m.loc())
            .collect();
        if !locs.is_empty() {
            d.store.ack(&d.key, &locs);
        }
    }

    /// Note a delivery in the store: no-ack deliveries are settled, others marked delivered once so that they
    /// come back redelivered after a restart.
    fn note_delivery(&self, qm: &QueuedMessage, no_ack: bool) {
        let mut notes = DeliveryNotes::default();
        notes.note(self, qm, no_ack);
        notes.flush(self);
    }

    /// Put messages recovered from the store back at start, paged and in the store's order:
    /// `(priority, message)`, their `seq` assigned here.
    pub fn recover(self: &Arc<Self>, msgs: Vec<(u8, paging::Paged)>) {
        let mut st = self.state.lock();
        for (priority, mut m) in msgs {
            m.seq = st.next_seq;
            st.next_seq += 1;
            st.ready.push_paged(priority, m);
        }
        self.arm_timer(&mut st);
    }

    /// Recovery handed this queue all it will: what it holds in memory of its index goes to the store.
    pub fn recovered(&self) {
        self.state.lock().ready.spill_tails();
    }

    /// Append a run of blocks of recovered messages unread (see [`crate::store::RecoveredBlock`]); they
    /// come back marked redelivered when `redelivered`. False when this queue cannot take a run as it is (a
    /// priority queue): the caller reads it and hands its messages to `recover`.
    pub fn recover_block(
        self: &Arc<Self>,
        b: &crate::store::RecoveredBlock,
        redelivered: bool,
    ) -> bool {
        let mut st = self.state.lock();
        let first_expires =
            paging::head_deadline(&b.first_head, st.config.message_ttl, self.timers.clock());
        let s = spill::Spilled::of_block(
            b.block,
            redelivered,
            b.messages,
            st.next_seq,
            first_expires,
            b.weight,
        );
        if st.ready.push_block(s).is_err() {
            return false;
        }
        st.next_seq += u64::from(b.messages);
        self.arm_timer(&mut st);
        true
    }

    /// The message TTL this queue applies, from its arguments and policies.
    pub fn message_ttl(&self) -> Option<u64> {
        self.state.lock().config.message_ttl
    }

    pub fn message_count(&self) -> u32 {
        self.counts().0
    }

    pub fn consumer_count(&self) -> u32 {
        self.counts().1
    }

    pub fn counts(&self) -> (u32, u32) {
        let st = self.state.lock();
        let mut consumers = st.consumers.len() as u32;
        // A quorum queue with a single active consumer counts only that one in declare-ok (RabbitMQ 3.x).
        if self.queue_type == QueueType::Quorum && st.config.single_active_consumer {
            consumers = consumers.min(1);
        }
        // Messages on their way back from a consumer are ready already, as in RabbitMQ, whose queue takes
        // a requeue before whatever the client sends next.
        (st.ready.counted() as u32, consumers)
    }

    /// Whether a ready message waits while a consumer could take it (the queue is not settled yet): the
    /// active consumer under single-active-consumer, any consumer with spare prefetch otherwise.
    pub fn deliverable(&self) -> bool {
        let st = self.state.lock();
        if st.ready.is_empty() {
            return false;
        }
        if st.config.single_active_consumer {
            st.consumers.first().is_some_and(|c| c.may_take())
        } else {
            st.consumers.iter().any(|c| c.may_take())
        }
    }

    /// Body bytes of the ready messages.
    pub fn ready_bytes(&self) -> u64 {
        self.state.lock().ready.bytes()
    }

    /// The consumers, in dispatch order.
    pub fn consumers(&self) -> Vec<Arc<Consumer>> {
        self.state.lock().consumers.clone()
    }

    /// The effective policy and operator-policy names are the vhost's business; this is what the
    /// management API shows of the queue's own state in one lock: (ready, unacked, consumers, ready
    /// bytes, ready in memory).
    pub fn status(&self) -> QueueStatus {
        let st = self.state.lock();
        QueueStatus {
            ready: st.ready.counted() as u64,
            unacked: u64::from(st.unacked),
            unacked_bytes: st.unacked_bytes,
            consumers: st.consumers.len() as u64,
            ready_bytes: st.ready.bytes(),
            ready_in_memory: st.ready.in_memory() as u64,
            memory: st.ready.mem_cost(),
            single_active: st
                .config
                .single_active_consumer
                .then(|| st.consumers.first().map(|c| c.tag.clone()))
                .flatten(),
            exclusive_consumer: st
                .consumers
                .iter()
                .find(|c| c.exclusive)
                .map(|c| c.tag.clone()),
        }
    }

    /// Ready messages whose bodies are in memory (the rest are paged out to the store).
    pub fn ready_in_memory(&self) -> usize {
        self.state.lock().ready.in_memory()
    }

    /// Index entries of paged messages held in memory (at most two chunks per priority level).
    pub fn paged_index_in_memory(&self) -> usize {
        self.state.lock().ready.paged_in_memory()
    }

    pub fn unacked_count(&self) -> u32 {
        self.state.lock().unacked
    }

    /// Stop taking messages and consumers: the first step of deletion, undone by `restore`. Returns the
    /// consumers, which the caller cancels.
    pub fn detach(&self) -> Vec<Arc<Consumer>> {
        let mut st = self.state.lock();
        self.deleted.store(true, Ordering::Release);
        std::mem::take(&mut st.consumers)
    }

    /// Undo `detach` (a deletion that could not be recorded): the queue takes messages again.
    pub fn restore(self: &Arc<Self>) {
        let mut st = self.state.lock();
        self.deleted.store(false, Ordering::Release);
        self.arm_expiry(&mut st);
    }

    /// The last step of deletion: drop every message, here and in the store. Returns how many were ready.
    pub fn discard_all(&self) -> u32 {
        let mut st = self.state.lock();
        if let Some(d) = &self.durable_store {
            d.store.drop_queue(&d.key);
        }
        let n = st.ready.clear() as u32;
        st.ready.forget_transient_pages();
        n
    }

    /// Mark deleted and take what must be cleaned up: the number of ready messages dropped and the consumers
    /// to cancel.
    pub fn take_for_delete(&self) -> (u32, Vec<Arc<Consumer>>) {
        let consumers = self.detach();
        (self.discard_all(), consumers)
    }

    /// A journal event about `msg` in this queue.
    fn journal_event(&self, kind: crate::journal::Kind, msg: &message::Message) {
        self.journal
            .record(msg.journal_event(kind, &self.vhost).in_queue(&self.name));
    }

    /// Republish dead messages to the queue's dead-letter exchange (called without the queue lock).
    #[inline]
    fn dead_letter(self: &Arc<Self>, dead: Dead) {
        // Checked inline: every publish and settle passes here, almost always with nothing.
        if !dead.is_empty() {
            self.dead_letter_now(dead);
        }
    }

    #[inline(never)]
    fn dead_letter_now(self: &Arc<Self>, dead: Dead) {
        use crate::journal::{Detail, Kind};
        self.forget_stored(dead.iter().map(|(m, _)| m));
        let (dlx, dlrk) = {
            let st = self.state.lock();
            (
                st.config.dead_letter_exchange.clone(),
                st.config.dead_letter_routing_key.clone(),
            )
        };
        let journal = self.journal.on(&self.vhost);
        if journal {
            for (qm, reason) in &dead {
                if *reason == Reason::Expired {
                    self.journal_event(Kind::Expired, &qm.msg);
                }
                if dlx.is_none() && matches!(reason, Reason::Maxlen | Reason::DeliveryLimit) {
                    self.journal.record(
                        qm.msg
                            .journal_event(Kind::Dropped, &self.vhost)
                            .in_queue(&self.name)
                            .with(Detail::Dropped {
                                reason: reason.as_str(),
                            }),
                    );
                }
            }
        }
        let (Some(dlx), Some(host)) = (dlx, self.host.upgrade()) else {
            return;
        };
        let now_secs = self.timers.wall_ms() / 1000;
        for (qm, reason) in dead {
            let keys = match &dlrk {
                Some(k) => vec![k.clone()],
                None => deadletter::publish_keys(&qm.msg),
            };
            let death = deadletter::Death {
                queue: &self.name,
                reason,
                only_own_deaths: self.compat.is_4(),
            };
            let dm = deadletter::dead_lettered(&qm.msg, death, &dlx, dlrk.as_deref(), now_secs);
            let (history, rejected) = deadletter::death_history(&dm);
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut routed = Routed::new();
            // A dead-letter exchange that does not exist drops the messages, as in RabbitMQ.
            let exists = host.route(&dlx, &keys, dm.props().headers().as_ref(), &mut routed);
            // A message that would return to a queue it already died in, with no rejection on the way, is in a
            // cycle and is dropped there.
            routed.retain(|q| rejected || !history.iter().any(|h| **h == *q.name));
            if journal {
                let e = qm
                    .msg
                    .journal_event(Kind::DeadLettered, &self.vhost)
                    .in_queue(&self.name);
                self.journal.record(if exists {
                    e.with(Detail::DeadLettered {
                        reason: reason.as_str(),
                        exchange: Arc::from(dlx.as_str()),
                        routing_keys: keys.iter().map(|k| k.to_string()).collect(),
                        queues: crate::journal::kept_names(
                            routed.iter().map(|q| q.name.clone()).collect(),
                        ),
                    })
                } else {
                    crate::journal::Event {
                        kind: Kind::Dropped,
                        ..e
                    }
                    .with(Detail::Dropped {
                        reason: "dead_letter_exchange_missing",
                    })
                });
            }
            if !exists {
                return;
            }
            if enqueue(&routed, &Arc::new(dm), None).rejected {
                // A dead-letter queue refused it (reject-publish overflow; a store failure is logged there).
                tracing::debug!(queue = %self.name, vhost = %self.vhost, dlx = %dlx, reason = reason.as_str(), "a dead-lettered message was refused by its dead-letter queue or the store; it is lost");
            }
        }
    }
}

/// The redelivery counts a quorum queue shows in a message's headers: `x-delivery-count` once it is above
/// zero, and RabbitMQ 4.3's `x-acquired-count` once that is.
pub(crate) fn count_headers(h: &mut amq_protocol::types::FieldTable, delivery: u32, acquired: u32) {
    use amq_protocol::types::AMQPValue;
    if acquired > 0 {
        h.insert(
            "x-acquired-count".into(),
            AMQPValue::LongLongInt(i64::from(acquired)),
        );
    }
    if delivery > 0 {
        h.insert(
            "x-delivery-count".into(),
            AMQPValue::LongLongInt(i64::from(delivery)),
        );
    }
}

/// The per-message TTL from the expiration property (validated at publish).
fn per_message_ttl(msg: &message::Message) -> Option<u64> {
    msg.expiration().and_then(|e| e.parse::<u64>().ok())
}

#[cfg(test)]
pub(crate) mod tests;
