//! Publisher confirms. Each publish in confirm mode gets an outcome (ack, or nack when a queue refused it or
//! a disk write failed), either at once or when its durable writes finish on the store's sync thread. Outcomes
//! are sent strictly in sequence order, coalesced into `multiple` acks, so no tag is ever confirmed twice even
//! though disk writes complete out of order.

use std::collections::{BTreeSet, VecDeque};

#[derive(Debug, Default)]
pub struct Confirms {
    /// Sequence numbers still waiting for durable writes, in order, with how many are outstanding (0: done,
    /// behind one that is not). Publishes register in sequence order, so this is a queue, not a map.
    waiting: VecDeque<(u64, u32)>,
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
            match self.waiting.back() {
                Some(&(last, _)) if last >= seq => {
                    let at = self.waiting.partition_point(|&(s, _)| s < seq);
                    self.waiting.insert(at, (seq, writes));
                }
                _ => self.waiting.push_back((seq, writes)),
            }
        }
    }

    /// Publish `seq` is refused (a queue rejected it): it will be nacked whatever its writes do.
    pub fn nack(&mut self, seq: u64) {
        self.nacked.insert(seq);
    }

    /// One durable write of `seq` finished; a failed write turns the outcome into a nack.
    pub fn write_done(&mut self, seq: u64, ok: bool) {
        self.writes_done(seq, seq, ok);
    }

    /// One durable write of each of `first..=last` finished.
    pub fn writes_done(&mut self, first: u64, last: u64, ok: bool) {
        // A publish settling its own routing is the last one registered.
        let mut at = match self.waiting.back() {
            Some(&(s, _)) if s == first => self.waiting.len() - 1,
            _ => self.waiting.partition_point(|&(s, _)| s < first),
        };
        while let Some((seq, n)) = self.waiting.get_mut(at) {
            if *seq > last {
                break;
            }
            if !ok {
                self.nacked.insert(*seq);
            }
            *n = n.saturating_sub(1);
            at += 1;
        }
        while self.waiting.front().is_some_and(|&(_, n)| n == 0) {
            self.waiting.pop_front();
        }
        // A burst of unconfirmed publishes leaves its room behind otherwise, for the channel's life.
        if self.waiting.is_empty() && self.waiting.capacity() > 1024 {
            self.waiting.shrink_to(1024);
        }
    }

    /// Publishes waiting for their outcome (RabbitMQ's messages_unconfirmed).
    pub fn unconfirmed(&self) -> u64 {
        self.published.saturating_sub(self.sent)
    }

    /// The frames that can be sent now, in order.
    pub fn drain(&mut self, out: &mut Vec<Outcome>) {
        let limit = match self.waiting.front() {
            Some(&(first, _)) => first - 1,
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

    #[test]
    fn runs_of_writes_settle_together_in_any_order() {
        let mut c = Confirms::default();
        for s in 1..=10 {
            // 4 and 8 are settled at once; the rest wait for two writes (store and routing).
            c.register(s, if s % 4 == 0 { 0 } else { 2 }, true);
        }
        c.writes_done(1, 10, true);
        assert!(drain(&mut c).is_empty());
        c.writes_done(6, 10, true);
        c.write_done(9, true);
        assert!(drain(&mut c).is_empty());
        c.writes_done(2, 5, false);
        c.write_done(1, true);
        assert_eq!(
            drain(&mut c),
            vec![
                (1, true, false),
                (2, false, true),
                (3, false, true),
                (4, true, false),
                (5, false, true),
                (10, true, true)
            ]
        );
        // A late registration below the last still goes in order.
        c.register(12, 1, true);
        c.register(11, 1, true);
        c.write_done(12, true);
        assert!(drain(&mut c).is_empty());
        c.write_done(11, true);
        assert_eq!(drain(&mut c), vec![(12, true, true)]);
    }
}
