//! The part of a channel that other tasks touch: delivery tags and unacknowledged deliveries (queues register
//! them when they dispatch from any task), prefetch limits, and the consumer registry (a queue deletion elsewhere
//! cancels consumers here). Everything else about a channel is owned by its connection task.

use super::ack_timeout::{AckSweep, Check};
use super::deliveries::{Deliveries, Outstanding, Unacked};
use super::link::ConnShared;
use crate::broker::vhost::ReplySink;
use crate::error::AmqpResult;
use crate::journal::{Actor, Detail, Event, Kind};
use crate::protocol;
use crate::queue::message::Message;
use crate::queue::{ConfirmSink, Consumer, ConsumerChannel, Held, Queue, QueuedMessage};
use crate::FastMap as HashMap;
use amq_protocol::protocol::{basic, AMQPClass};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

#[derive(Debug)]
pub struct ChannelShared {
    pub id: u16,
    pub conn: Arc<ConnShared>,
    deliveries: Mutex<Deliveries>,
    consumers: Mutex<HashMap<Arc<str>, Arc<Consumer>>>,
    /// Set when the channel starts closing: no further deliveries are made to it.
    closed: AtomicBool,
    /// Publisher-confirm outcomes waiting to be sent.
    pub confirms: Mutex<super::confirms::Confirms>,
    /// Journal events for publishes awaiting their confirm, by sequence number (only while journalling).
    journal_confirms: Mutex<std::collections::VecDeque<(u64, Event)>>,
    pub stats: ChannelStats,
    /// What the owning connection task decides, mirrored for the management API.
    pub mode: ChannelMode,
    /// The connection's consumer-timeout watch (none in unit tests without a broker).
    ack_sweep: Option<Arc<AckSweep>>,
    /// What the sweep holds of this channel.
    self_ref: Weak<ChannelShared>,
}

/// What a channel did, for message_stats. Publish-side counts are bumped by the owning connection task;
/// delivery counts under the channel's delivery lock; confirms under its confirms lock.
pub type ChannelStats = crate::metrics::MessageStats;

/// A channel's modes and settings as the management API shows them.
#[derive(Debug, Default)]
pub struct ChannelMode {
    pub confirm: AtomicBool,
    pub transactional: AtomicBool,
    /// basic.qos prefetch for new consumers.
    pub prefetch: std::sync::atomic::AtomicU32,
    /// Messages and acks buffered in an open transaction.
    pub uncommitted_messages: std::sync::atomic::AtomicU32,
    pub uncommitted_acks: std::sync::atomic::AtomicU32,
}

impl ChannelShared {
    pub fn new(
        id: u16,
        conn: Arc<ConnShared>,
        ack_sweep: Option<Arc<AckSweep>>,
    ) -> Arc<ChannelShared> {
        Arc::new_cyclic(|self_ref| ChannelShared {
            ack_sweep,
            self_ref: self_ref.clone(),
            id,
            conn,
            deliveries: Mutex::new(Deliveries::default()),
            consumers: Mutex::new(HashMap::default()),
            closed: AtomicBool::new(false),
            confirms: Mutex::new(Default::default()),
            journal_confirms: Mutex::new(Default::default()),
            stats: ChannelStats::default(),
            mode: ChannelMode::default(),
        })
    }

    /// When a delivery goes out, for its consumer timeout.
    fn stamp(&self) -> u64 {
        self.ack_sweep
            .as_ref()
            .map_or(0, |t| t.timers.clock().now_coarse_ms())
    }

    /// The timeout for a delivery: (under RabbitMQ 4.3) its consumer's own, else its queue's, else the
    /// broker's.
    fn timeout_for(&self, u: &Outstanding) -> Option<u64> {
        let t = self.ack_sweep.as_ref()?;
        let own = if self.compat4() {
            // RabbitMQ 4.3's classic queues have no consumer timeout.
            if u.queue.queue_type == crate::queue::args::QueueType::Classic {
                return None;
            }
            u.consumer.as_ref().and_then(|c| c.timeout)
        } else {
            None
        };
        match own
            .or_else(|| u.queue.consumer_timeout())
            .unwrap_or(t.default_ms)
        {
            0 => None,
            ms => Some(ms),
        }
    }

    /// Keep the connection's sweep informed after deliveries came or went: watch this channel while it has
    /// any outstanding, and make sure a sweep runs by its oldest one's deadline. Called under the delivery
    /// lock, possibly under a queue's lock: it reads only the queue's atomic setting.
    fn arm_timeout(&self, d: &mut Deliveries) {
        let Some(sweep) = &self.ack_sweep else { return };
        let Some(u) = d.oldest() else { return };
        let deadline = self.timeout_for(u).map(|ms| u.at.saturating_add(ms));
        if !d.timeout_watched {
            d.timeout_watched = true;
            sweep.watch(self, &self.self_ref);
        }
        if let Some(deadline) = deadline {
            sweep.arm(deadline);
        }
        // Under RabbitMQ 4.3 timeouts differ per queue type and consumer, so the oldest delivery may not be
        // the first due: the newest one's deadline is armed too (the sweep then looks at every delivery).
        if self.compat4() {
            if let Some(u) = d.newest() {
                if let Some(ms) = self.timeout_for(u) {
                    sweep.arm(u.at.saturating_add(ms));
                }
            }
        }
    }

    /// The sweep's look at this channel: its oldest delivery, or under RabbitMQ 4.3 the first one due.
    pub(super) fn check_timeout(&self, sweep: &AckSweep, now: u64) -> Check {
        let mut d = self.deliveries.lock();
        let due = |u: &Outstanding| {
            self.timeout_for(u)
                .map(|ms| u.at.saturating_add(ms))
                .unwrap_or(u64::MAX)
        };
        let pick = if self.compat4() {
            d.earliest_by(due)
        } else {
            d.oldest()
        };
        let oldest = pick
            .filter(|_| !self.is_closed())
            .map(|u| (u.at, self.timeout_for(u), u.consumer.clone()));
        match oldest {
            None => {
                d.timeout_watched = false;
                sweep.forget(self);
                Check::Idle
            }
            Some((at, Some(ms), consumer)) if now.saturating_sub(at) >= ms => {
                // RabbitMQ 4.3 cancels a quorum queue's timed-out consumer when the client can be told;
                // otherwise (or for basic.get) it closes the channel without naming the timeout.
                let shown = match consumer {
                    _ if !self.compat4() => ms as i64,
                    Some(c) if self.conn.cancel_notify() => return Check::Cancel(c),
                    _ => -1,
                };
                d.timeout_watched = false;
                sweep.forget(self);
                Check::Due(shown)
            }
            Some((at, ms, _)) => Check::Later(ms.map(|ms| at.saturating_add(ms))),
        }
    }

    fn compat4(&self) -> bool {
        self.conn.open_vhost().is_some_and(|v| v.compat.is_4())
    }

    /// RabbitMQ 4.3's quorum consumer timeout: the consumer's overdue deliveries go back to their queue (not
    /// counted toward its delivery limit), the consumer stops receiving and the client gets basic.cancel; the
    /// channel stays open and settling the returned tags later does nothing.
    pub(super) fn timeout_cancel(&self, consumer: &Arc<Consumer>, now: u64) {
        // Off the queue first: the credit the returned deliveries free must not let new ones reach it.
        // Still registered as far as auto-delete goes, as in RabbitMQ (the consumer is only suspended there),
        // so its removal deletes nothing.
        let _ = consumer.queue.remove_consumer(consumer);
        let back = {
            let mut d = self.deliveries.lock();
            let back = d.take_returned(consumer, |_, u| {
                self.timeout_for(u)
                    .is_some_and(|ms| now.saturating_sub(u.at) >= ms)
            });
            self.arm_timeout(&mut d);
            back
        };
        tracing::warn!(
            conn = self.conn.id,
            channel = self.id,
            consumer = %consumer.tag,
            queue = %consumer.queue.name,
            returned = back.len(),
            "consumer timeout: cancelling the consumer"
        );
        self.cancelled(consumer);
        for (q, msgs) in super::deliveries::by_queue(back) {
            q.requeue_uncounted(msgs);
        }
    }

    /// The channel is closing: the sweep stops watching it.
    fn stop_watching(&self) {
        if let Some(sweep) = &self.ack_sweep {
            let mut d = self.deliveries.lock();
            d.timeout_watched = false;
            sweep.forget(self);
        }
    }

    /// Unacknowledged deliveries, and publishes awaiting confirms.
    pub fn pending_counts(&self) -> (u64, u64) {
        let unacked = u64::from(self.deliveries.lock().unacked);
        (unacked, self.confirms.lock().unconfirmed())
    }

    /// The consumers registered on this channel.
    pub fn consumers(&self) -> Vec<Arc<Consumer>> {
        self.consumers.lock().values().cloned().collect()
    }

    /// Send every confirm outcome that is ready, in order.
    pub fn flush_confirms(&self) {
        let mut out = Vec::new();
        // Sent under the lock: the store's sync thread flushes too, and frames must not overtake each other.
        let mut confirms = self.confirms.lock();
        let before = confirms.unconfirmed();
        confirms.drain(&mut out);
        self.stats
            .confirm
            .bump(before.saturating_sub(confirms.unconfirmed()));
        if out.is_empty() || self.is_closed() {
            return;
        }
        self.journal_confirmed(&out);
        self.conn.outbound.send_quiet(|b| {
            for (tag, ack, multiple) in out {
                protocol::write_confirm(b, self.id, ack, tag, multiple);
            }
        });
        // The wake-up (a syscall when the writer's worker sleeps) outside the lock the publishing
        // connection takes for every publish.
        drop(confirms);
        self.conn.outbound.wake();
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.stop_watching();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn global_prefetch(&self) -> u32 {
        self.deliveries.lock().global_prefetch
    }

    pub fn set_global_prefetch(&self, n: u32) {
        self.deliveries.lock().global_prefetch = n;
    }

    /// A no-ack delivery that no queue tracks (direct reply-to).
    pub fn deliver_untracked(&self, consumer_tag: &str, m: &Message) {
        let mut d = self.deliveries.lock();
        let tag = d.push(None);
        let frame_max = self.conn.frame_max();
        self.conn.outbound.send(|buf| {
            protocol::write_deliver(
                buf,
                self.id,
                consumer_tag,
                tag,
                false,
                &m.exchange,
                &m.routing_key,
            );
            protocol::write_content(buf, self.id, &m.header, &m.body, frame_max);
        });
    }

    /// Take the deliveries a basic.ack / nack / reject names (see `Deliveries::take`).
    pub fn take(&self, tag: u64, multiple: bool) -> AmqpResult<Vec<Unacked>> {
        let mut d = self.deliveries.lock();
        let taken = d.take(tag, multiple)?;
        // The new oldest delivery may come from a queue with a shorter timeout than the one acked.
        self.arm_timeout(&mut d);
        Ok(taken)
    }

    /// Put deliveries back as outstanding (a rolled-back transaction's acks), at their own tags.
    pub fn restore(&self, entries: Vec<Unacked>) {
        let mut d = self.deliveries.lock();
        d.restore(entries);
        self.arm_timeout(&mut d);
    }

    /// Take every outstanding delivery (recover, channel close).
    pub fn take_all(&self) -> Vec<Unacked> {
        self.take(0, true).unwrap_or_default()
    }

    pub fn add_consumer(&self, c: Arc<Consumer>) {
        self.consumers.lock().insert(c.tag.clone(), c);
    }

    pub fn has_consumer(&self, tag: &str) -> bool {
        self.consumers.lock().contains_key(tag)
    }

    pub fn remove_consumer(&self, tag: &str) -> Option<Arc<Consumer>> {
        self.consumers.lock().remove(tag)
    }

    pub fn take_consumers(&self) -> Vec<Arc<Consumer>> {
        self.consumers.lock().drain().map(|(_, c)| c).collect()
    }

    /// Queues this channel consumes from (to re-dispatch when channel-wide capacity frees up).
    pub fn consumed_queues(&self) -> Vec<Arc<Queue>> {
        let mut qs: Vec<Arc<Queue>> = Vec::new();
        for c in self.consumers.lock().values() {
            if !qs.iter().any(|q| Arc::ptr_eq(q, &c.queue)) {
                qs.push(c.queue.clone());
            }
        }
        qs
    }
}

impl ChannelShared {
    /// Copy a delivery to the firehose and the journal when either watches the vhost.
    #[inline(always)]
    fn observe_delivery(
        &self,
        queue: &Arc<Queue>,
        qm: &QueuedMessage,
        consumer_tag: Option<&Arc<str>>,
        delivery_tag: u64,
    ) {
        // Checked here, inline, at every delivery; the copying is out of line.
        if self.conn.open_vhost().is_some_and(|v| v.observed()) {
            self.observed_delivery(queue, qm, consumer_tag, delivery_tag);
        }
    }

    #[inline(never)]
    fn observed_delivery(
        &self,
        queue: &Arc<Queue>,
        qm: &QueuedMessage,
        consumer_tag: Option<&Arc<str>>,
        delivery_tag: u64,
    ) {
        let Some(v) = self.conn.open_vhost() else {
            return;
        };
        let Some(user) = self.conn.user_arc() else {
            return;
        };
        let connection = self.conn.label();
        if v.tracing() {
            let origin = crate::broker::trace::Origin {
                connection,
                channel: self.id,
                user,
                mandatory: false,
                trace: true,
            };
            v.firehose
                .delivered(v, &queue.name, &qm.msg, qm.redelivered, &origin);
        }
        if v.journal.on(&v.name) {
            let m = &qm.msg;
            v.journal.record(
                m.journal_event(Kind::Delivered, &v.name)
                    .in_queue(&queue.name)
                    .with(Detail::Delivered {
                        by: Actor {
                            connection: connection.clone(),
                            channel: self.id,
                            user: user.clone(),
                        },
                        consumer_tag: consumer_tag.cloned(),
                        delivery_tag,
                        redelivered: qm.redelivered,
                    }),
            );
        }
    }

    /// Remember the journal event to record when publish `seq` is confirmed.
    pub fn journal_confirm_later(&self, seq: u64, e: Event) {
        self.journal_confirms.lock().push_back((seq, e));
    }

    fn journal_confirmed(&self, out: &[super::confirms::Outcome]) {
        let mut pending = self.journal_confirms.lock();
        if pending.is_empty() {
            return;
        }
        let Some(v) = self.conn.open_vhost() else {
            return;
        };
        for &(tag, ack, _) in out {
            while pending.front().is_some_and(|(seq, _)| *seq <= tag) {
                if let Some((_, e)) = pending.pop_front() {
                    v.journal.record(e.with(Detail::Confirmed { ack }));
                }
            }
        }
    }

    /// Record client settlements (ack, nack, reject) in the journal.
    pub fn journal_settled(&self, entries: &[Unacked], kind: Kind, requeue: bool) {
        let Some(v) = self.conn.open_vhost() else {
            return;
        };
        if !v.journal.on(&v.name) {
            return;
        }
        // A delivery held by its place in the store was made while the journal was off.
        for u in entries {
            let Some(qm) = u.msg.whole() else { continue };
            let m = &qm.msg;
            v.journal
                .record(m.journal_event(kind, &v.name).in_queue(&u.queue.name).with(
                    Detail::Settled {
                        delivery_tag: u.tag,
                        requeue,
                    },
                ));
        }
    }
}

impl ConsumerChannel for ChannelShared {
    /// Deliver `qm` from `queue` to `consumer` if the consumer and channel have capacity. Called under the
    /// queue's lock; the delivery is encoded under the channel's lock so tags go out in order.
    fn deliver(&self, consumer: &Arc<Consumer>, queue: &Arc<Queue>, qm: &QueuedMessage) -> bool {
        if self.is_closed() {
            return false;
        }
        let out = &self.conn.outbound;
        if out.congested() {
            out.add_waiter(queue);
            // The writer may have drained between the check and the registration.
            if out.congested() {
                return false;
            }
        }
        let mut d = self.deliveries.lock();
        // Checked again under the lock: a close that began since the check above has taken (or is about to
        // take) every delivery to requeue, and one registered now would be stranded.
        if self.is_closed() {
            return false;
        }
        if !consumer.no_ack {
            if consumer.prefetch != 0
                && consumer.unacked.load(Ordering::Relaxed) >= consumer.prefetch
            {
                return false;
            }
            if d.global_prefetch != 0 && d.unacked >= d.global_prefetch {
                return false;
            }
        }
        if consumer.no_ack {
            self.stats.deliver_no_ack.bump(1);
        } else {
            self.stats.deliver.bump(1);
        }
        if qm.redelivered {
            self.stats.redeliver.bump(1);
        }
        let tag = if consumer.no_ack {
            d.push(None)
        } else {
            consumer.unacked.fetch_add(1, Ordering::Relaxed);
            {
                d.expect(consumer.prefetch);
                let tag = d.push(Some(Outstanding {
                    queue: queue.clone(),
                    msg: queue.hold(qm),
                    consumer: Some(consumer.clone()),
                    at: self.stamp(),
                }));
                self.arm_timeout(&mut d);
                tag
            }
        };
        let frame_max = self.conn.frame_max();
        let m = &qm.msg;
        out.send_quiet(|buf| {
            protocol::write_deliver(
                buf,
                self.id,
                &consumer.tag,
                tag,
                qm.redelivered,
                &m.exchange,
                &m.routing_key,
            );
            protocol::write_content(buf, self.id, &m.header, &m.body, frame_max);
        });
        self.observe_delivery(queue, qm, Some(&consumer.tag), tag);
        true
    }

    fn flush(&self) {
        self.conn.outbound.wake();
    }

    /// Answer basic.get with get-ok and the message.
    fn deliver_get(&self, queue: &Arc<Queue>, qm: QueuedMessage, no_ack: bool, remaining: u32) {
        let observed = self.conn.open_vhost().is_some_and(|v| v.observed());
        let seen = observed.then(|| qm.clone());
        let mut d = self.deliveries.lock();
        let msg = qm.msg.clone();
        let redelivered = qm.redelivered;
        if no_ack {
            self.stats.get_no_ack.bump(1);
        } else {
            self.stats.get.bump(1);
        }
        if redelivered {
            self.stats.redeliver.bump(1);
        }
        let tag = if no_ack {
            d.push(None)
        } else {
            let tag = d.push(Some(Outstanding {
                queue: queue.clone(),
                msg: Held::Whole(qm),
                consumer: None,
                at: self.stamp(),
            }));
            self.arm_timeout(&mut d);
            tag
        };
        let frame_max = self.conn.frame_max();
        self.conn.outbound.send(|buf| {
            protocol::write_get_ok(
                buf,
                self.id,
                tag,
                redelivered,
                &msg.exchange,
                &msg.routing_key,
                remaining,
            );
            protocol::write_content(buf, self.id, &msg.header, &msg.body, frame_max);
        });
        if let Some(qm) = seen {
            self.observe_delivery(queue, &qm, None, tag);
        }
    }

    /// The queue this consumer was on is gone: forget the consumer and tell the client if it asked to know.
    fn cancelled(&self, c: &Arc<Consumer>) {
        let removed = {
            let mut m = self.consumers.lock();
            match m.get(&c.tag) {
                Some(x) if Arc::ptr_eq(x, c) => m.remove(&c.tag).is_some(),
                _ => false,
            }
        };
        if removed && self.conn.cancel_notify() && !self.is_closed() {
            let tag = c.tag.to_string();
            self.conn.outbound.send(|buf| {
                protocol::write_method(
                    buf,
                    self.id,
                    AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                        consumer_tag: tag.as_str().into(),
                        nowait: true,
                    })),
                )
            });
        }
    }

    fn key(&self) -> (u64, u16) {
        (self.conn.id, self.id)
    }
}

impl ConfirmSink for ChannelShared {
    fn written(&self, first: u64, last: u64, ok: bool) {
        self.confirms.lock().writes_done(first, last, ok);
    }

    fn flush_written(&self) {
        self.flush_confirms();
    }
}

impl ReplySink for ChannelShared {
    fn deliver_reply(&self, consumer_tag: &str, msg: &Message) {
        if self.is_closed() {
            return;
        }
        self.deliver_untracked(consumer_tag, msg);
    }

    fn is_closed(&self) -> bool {
        ChannelShared::is_closed(self)
    }
}
