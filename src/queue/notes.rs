//! What a dispatch round gathers and tells once at its end: deliveries the store must hear about (settled
//! no-ack ones, first deliveries to mark), and the connections whose writers must be woken.

use super::{Consumer, ConsumerChannel, Queue, QueuedMessage};
use crate::store::Location;
use std::sync::Arc;

/// Deliveries to tell the store about, gathered over a dispatch round and told with one lock each.
#[derive(Default)]
pub(super) struct DeliveryNotes {
    settled: Vec<Location>,
    delivered: Vec<Location>,
}

impl DeliveryNotes {
    /// No-ack deliveries are settled, others marked delivered once so that they come back redelivered
    /// after a restart.
    pub(super) fn note(&mut self, q: &Queue, qm: &QueuedMessage, no_ack: bool) {
        let (true, Some(loc)) = (q.stores(&qm.msg), qm.loc()) else {
            return;
        };
        if no_ack {
            self.settled.push(loc);
        } else if !qm.redelivered {
            self.delivered.push(loc);
        }
    }

    pub(super) fn flush(&mut self, q: &Queue) {
        let Some(d) = &q.durable_store else { return };
        if !self.settled.is_empty() {
            d.store.ack(&d.key, &self.settled);
            self.settled.clear();
        }
        d.store.delivered_many(&d.key, &self.delivered);
        self.delivered.clear();
    }
}

/// Channels a dispatch round delivered to. Each is woken (`ConsumerChannel::flush`) at its first delivery
/// (unless `at_end`), so that its writer starts sending while the round goes on, and once more at the end
/// for the rest: a round of hundreds costs one or two wake-ups, not hundreds. Kept as addresses, not
/// clones: an `Arc` clone per round cost a no-ack consumer 8% of its rate.
pub(super) struct Unwoken {
    /// Each channel, and whether it was sent something since it was last woken: `noted[..len]`. A plain
    /// array: a round is usually one delivery, and a small vector's bookkeeping cost as much as the rest.
    noted: [(*const (), bool); Unwoken::MAX],
    len: usize,
    at_end: bool,
}

impl Default for Unwoken {
    fn default() -> Unwoken {
        Unwoken {
            noted: [(std::ptr::null(), false); Unwoken::MAX],
            len: 0,
            at_end: false,
        }
    }
}

impl Unwoken {
    pub(super) fn at_end() -> Unwoken {
        Unwoken {
            at_end: true,
            ..Unwoken::default()
        }
    }

    /// Most channels remembered; past that, each is woken after each delivery.
    const MAX: usize = 8;

    #[inline]
    pub(super) fn note(&mut self, ch: &Arc<dyn ConsumerChannel>) {
        let p = Arc::as_ptr(ch) as *const ();
        if let Some(n) = self.noted[..self.len].iter_mut().find(|(x, _)| *x == p) {
            n.1 = true;
            return;
        }
        if self.len < Self::MAX {
            self.noted[self.len] = (p, self.at_end);
            self.len += 1;
            if self.at_end {
                return;
            }
        }
        ch.flush();
    }

    /// At the end of the round: wake the channels noted that were sent something since they were woken;
    /// all of them belong to `consumers` (the round does not remove any).
    #[inline]
    pub(super) fn wake(mut self, consumers: &[Arc<Consumer>]) {
        let noted = &mut self.noted[..self.len];
        let mut left = noted.iter().filter(|(_, sent)| *sent).count();
        if left == 0 {
            // Each was woken at its first delivery and sent nothing since (a round of one).
            return;
        }
        for c in consumers {
            let p = Arc::as_ptr(&c.channel) as *const ();
            // Once each: a channel with several consumers on the queue is noted once.
            if let Some(n) = noted.iter_mut().find(|(x, sent)| *sent && *x == p) {
                n.1 = false;
                c.channel.flush();
                left -= 1;
                if left == 0 {
                    return;
                }
            }
        }
        // A channel noted but not found would never be woken and its consumer would stall.
        debug_assert!(left == 0, "a round's consumer left during it");
    }
}
