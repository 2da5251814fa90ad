//! Publisher confirms. Each publish in confirm mode gets an outcome (ack, or nack when a queue refused it or
//! a disk write failed), either at once or when its durable writes finish on the store's sync thread. Outcomes
//! are sent strictly in sequence order, coalesced into `multiple` acks, so no tag is ever confirmed twice even
//! though disk writes complete out of order.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Confirms {
    /// Sequence numbers still waiting for durable writes, with how many are outstanding.
    waiting: BTreeMap<u64, u32>,
    /// Completed as nack but not yet sent.
    nacked: BTreeSet<u64>,
    /// The highest sequence number registered.
    published: u64,
    /// Every outcome up to here has been sent.
    sent: u64,
}

/// One frame to send: (delivery tag, ack?, multiple?).
pub type Outcome = (u64, bool, bool);

impl Confirms {
    /// Register publish `seq` with the number of durable writes it waits for; `ack` false means a queue
    /// refused it (nack regardless of writes).
    pub fn register(&mut self, seq: u64, writes: u32, ack: bool) {
        self.published = self.published.max(seq);
        if !ack {
            self.nacked.insert(seq);
        }
        if writes > 0 {
            self.waiting.insert(seq, writes);
        }
    }

    /// Publish `seq` is refused (a queue rejected it): it will be nacked whatever its writes do.
    pub fn nack(&mut self, seq: u64) {
        self.nacked.insert(seq);
    }

    /// One durable write of `seq` finished; a failed write turns the outcome into a nack.
    pub fn write_done(&mut self, seq: u64, ok: bool) {
        if !ok {
            self.nacked.insert(seq);
        }
        if let Some(n) = self.waiting.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                self.waiting.remove(&seq);
            }
        }
    }

    /// Publishes waiting for their outcome (RabbitMQ's messages_unconfirmed).
    pub fn unconfirmed(&self) -> u64 {
        self.published.saturating_sub(self.sent)
    }

    /// The frames that can be sent now, in order.
    pub fn drain(&mut self, out: &mut Vec<Outcome>) {
        let limit = match self.waiting.keys().next() {
            Some(&first) => first - 1,
            None => self.published,
        };
        if limit <= self.sent {
            return;
        }
        let nacks: Vec<u64> = self.nacked.range(self.sent + 1..=limit).copied().collect();
        for n in nacks {
            if n > self.sent + 1 {
                out.push((n - 1, true, n - 1 > self.sent + 1));
            }
            // Every lower tag is confirmed by now, and RabbitMQ then sends the nack with multiple=true.
            out.push((n, false, true));
            self.nacked.remove(&n);
            self.sent = n;
        }
        if limit > self.sent {
            out.push((limit, true, limit > self.sent + 1));
            self.sent = limit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(c: &mut Confirms) -> Vec<Outcome> {
        let mut v = Vec::new();
        c.drain(&mut v);
        v
    }

    #[test]
    fn coalesces_in_order() {
        let mut c = Confirms::default();
        for s in 1..=5 {
            c.register(s, 0, true);
        }
        assert_eq!(drain(&mut c), vec![(5, true, true)]);
        c.register(6, 0, true);
        assert_eq!(drain(&mut c), vec![(6, true, false)]);
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn waits_for_disk_and_never_repeats_a_tag() {
        let mut c = Confirms::default();
        c.register(1, 1, true);
        c.register(2, 0, true);
        c.register(3, 2, true);
        assert!(drain(&mut c).is_empty());
        c.write_done(3, true);
        c.write_done(1, true);
        assert_eq!(drain(&mut c), vec![(2, true, true)]);
        c.write_done(3, true);
        assert_eq!(drain(&mut c), vec![(3, true, false)]);
    }

    #[test]
    fn nacks_go_out_singly_between_acks() {
        let mut c = Confirms::default();
        c.register(1, 0, true);
        c.register(2, 0, true);
        c.register(3, 0, false);
        c.register(4, 1, true);
        c.register(5, 0, true);
        assert_eq!(drain(&mut c), vec![(2, true, true), (3, false, true)]);
        c.write_done(4, false);
        assert_eq!(drain(&mut c), vec![(4, false, true), (5, true, false)]);
    }
}
