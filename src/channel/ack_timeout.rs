//! The consumer timeout: a delivery left unacknowledged longer than its timeout (the delivering queue's
//! `x-consumer-timeout` / `consumer-timeout` policy, else the broker's `consumer_timeout`) closes its channel
//! with RabbitMQ's 406, and the channel's deliveries go back to their queues.
//!
//! One [`AckSweep`] per connection watches the channels that have deliveries outstanding. It keeps a single
//! deadline on the broker scheduler — the earliest among its channels' oldest deliveries — and when that
//! fires it looks at each watched channel's oldest delivery (only the oldest, as RabbitMQ does), closes the
//! overdue ones and arms the next deadline. A channel's oldest deadline only moves later (acks remove older
//! deliveries, new ones are younger), so the armed deadline is never late. The scheduler cannot cancel an
//! entry; the entry names this small struct, not a channel, so channels opened and closed by the thousand
//! leave nothing behind, and a connection that goes leaves one small allocation until its deadline passes.

use super::shared::ChannelShared;
use crate::clock::{Scheduler, Timer};
use crate::error::AmqpError;
use crate::FastMap as HashMap;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

pub struct AckSweep {
    pub timers: Arc<Scheduler>,
    /// The broker's consumer_timeout in ms; 0 means none.
    pub default_ms: u64,
    /// The earliest deadline armed on the scheduler, `u64::MAX` when none.
    armed: AtomicU64,
    /// Channels with deliveries outstanding. Locked after a channel's delivery lock, never before.
    watched: Mutex<HashMap<u16, Weak<ChannelShared>>>,
    self_ref: Weak<AckSweep>,
}

impl std::fmt::Debug for AckSweep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckSweep")
            .field("default_ms", &self.default_ms)
            .field("armed", &self.armed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What a channel's oldest delivery says at a sweep.
pub(super) enum Check {
    /// Overdue: close the channel (the timeout in ms, for the message; RabbitMQ 4.3 says -1).
    Due(i64),
    /// Overdue under RabbitMQ 4.3: cancel this consumer and look at the channel again.
    Cancel(Arc<crate::queue::Consumer>),
    /// Not yet: its deadline, if its queue has a timeout at all.
    Later(Option<u64>),
    /// Nothing outstanding (or closed): stop watching it.
    Idle,
}

impl AckSweep {
    pub fn new(timers: Arc<Scheduler>, default_ms: u64) -> Arc<AckSweep> {
        Arc::new_cyclic(|self_ref| AckSweep {
            timers,
            default_ms,
            armed: AtomicU64::new(u64::MAX),
            watched: Mutex::new(HashMap::default()),
            self_ref: self_ref.clone(),
        })
    }

    /// Make sure a sweep runs no later than `deadline`.
    pub(super) fn arm(&self, deadline: u64) {
        // Called per delivery: the common case (already armed as early) costs one shared load.
        if deadline >= self.armed.load(Ordering::Acquire) {
            return;
        }
        let before = self.armed.fetch_min(deadline, Ordering::AcqRel);
        if deadline < before {
            let target: Weak<dyn Timer> = self.self_ref.clone();
            self.timers.at(deadline, target, 0);
        }
    }

    /// Watch `ch` (called under its delivery lock when it first has a delivery outstanding).
    pub(super) fn watch(&self, ch: &ChannelShared, self_ref: &Weak<ChannelShared>) {
        self.watched.lock().insert(ch.id, self_ref.clone());
    }

    /// Stop watching `ch` (under its delivery lock), unless the number now belongs to another channel.
    pub(super) fn forget(&self, ch: &ChannelShared) {
        let mut w = self.watched.lock();
        if w.get(&ch.id)
            .is_some_and(|c| std::ptr::eq(c.as_ptr(), ch as *const ChannelShared))
        {
            w.remove(&ch.id);
        }
    }
}

impl Timer for AckSweep {
    fn fire(self: Arc<Self>, _kind: u8, deadline: u64) {
        // This entry is spent; when it was the one armed, nothing is armed until the sweep arms again.
        let _ =
            self.armed
                .compare_exchange(deadline, u64::MAX, Ordering::AcqRel, Ordering::Relaxed);
        let now = self.timers.now_ms();
        // A snapshot, so that no channel's delivery lock is taken under `watched`.
        let channels: Vec<Weak<ChannelShared>> = self.watched.lock().values().cloned().collect();
        let mut next = u64::MAX;
        for w in channels {
            let Some(ch) = w.upgrade() else { continue };
            let mut check = ch.check_timeout(&self, now);
            while let Check::Cancel(c) = check {
                ch.timeout_cancel(&c, now);
                check = ch.check_timeout(&self, now);
            }
            match check {
                Check::Due(ms) => {
                    tracing::warn!(
                        conn = ch.conn.id,
                        channel = ch.id,
                        timeout_ms = ms,
                        "consumer timeout: closing channel"
                    );
                    ch.conn.close_channel(
                        w,
                        AmqpError::precondition_failed(format!(
                            "delivery acknowledgement on channel {} timed out. Timeout value used: {ms} ms. This timeout value can be configured, see consumers doc guide to learn more",
                            ch.id
                        )),
                    );
                }
                Check::Later(Some(d)) => next = next.min(d),
                Check::Later(None) | Check::Idle | Check::Cancel(_) => {}
            }
        }
        if next != u64::MAX {
            self.arm(next);
        }
    }
}
