//! A queue's deadlines on the broker clock: the head message's TTL and the queue's own x-expires. Each is
//! one entry in the broker's scheduler, armed only while something can expire; a stale entry (the head
//! changed, the queue was used meanwhile) re-checks the queue's state and re-arms if needed.

use super::{Dead, Queue, QueueState};
use crate::clock::Timer;
use std::sync::{Arc, Weak};

const HEAD_TTL: u8 = 0;
const QUEUE_EXPIRY: u8 = 1;

impl Queue {
    fn weak_timer(self: &Arc<Self>) -> Weak<dyn Timer> {
        Arc::downgrade(self) as Weak<dyn Timer>
    }

    /// Make sure a timer fires when the head message expires.
    pub(super) fn arm_timer(self: &Arc<Self>, st: &mut QueueState) {
        let Some(deadline) = st.ready.front_expires() else {
            return;
        };
        if st.timer.is_some_and(|t| t <= deadline) {
            return;
        }
        st.timer = Some(deadline);
        self.timers.at(deadline, self.weak_timer(), HEAD_TTL);
    }

    fn on_head_timer(self: &Arc<Self>, deadline: u64) {
        let mut dead = Dead::new();
        {
            let mut st = self.state.lock();
            if st.timer == Some(deadline) {
                st.timer = None;
            }
            st.expire_head(self.timers.now_ms(), &mut dead);
            self.dispatch_locked(&mut st, &mut dead);
            self.arm_timer(&mut st);
        }
        self.dead_letter(dead);
    }

    /// Arm the x-expires timer while the queue has no consumers.
    pub(super) fn arm_expiry(self: &Arc<Self>, st: &mut QueueState) {
        let Some(expires) = st.config.expires else {
            return;
        };
        if st.expiry_armed || !st.consumers.is_empty() || self.is_deleted() {
            return;
        }
        st.expiry_armed = true;
        self.timers.at(
            st.last_used.saturating_add(expires),
            self.weak_timer(),
            QUEUE_EXPIRY,
        );
    }

    fn on_expiry_timer(self: &Arc<Self>) {
        let expired = {
            let mut st = self.state.lock();
            st.expiry_armed = false;
            let due = st.config.expires.map(|e| st.last_used.saturating_add(e));
            match due {
                Some(due) if st.consumers.is_empty() && self.timers.now_ms() >= due => true,
                _ => {
                    // Used since the timer was armed (or a consumer came and went): count again.
                    self.arm_expiry(&mut st);
                    false
                }
            }
        };
        if expired && !self.is_deleted() {
            if let Some(host) = self.host.upgrade() {
                tracing::info!(vhost = %self.vhost, queue = %self.name, "queue expired (x-expires)");
                host.expire(self);
            }
        }
    }

    /// Whether the queue's x-expires has passed (for a deletion that re-checks before it applies).
    pub fn expiry_due(&self) -> bool {
        let st = self.state.lock();
        st.consumers.is_empty()
            && st
                .config
                .expires
                .is_some_and(|e| self.timers.now_ms() >= st.last_used.saturating_add(e))
    }
}

impl Timer for Queue {
    fn fire(self: Arc<Self>, kind: u8, deadline: u64) {
        match kind {
            HEAD_TTL => self.on_head_timer(deadline),
            _ => self.on_expiry_timer(),
        }
    }
}
