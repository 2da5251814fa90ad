//! A channel's delivery tags and unacknowledged deliveries. Tags form a contiguous window starting at `base`;
//! acknowledged and no-ack tags leave `None` holes that are trimmed from the front, so the common in-order
//! ack is O(1) and memory follows what is outstanding, not how many tags were ever issued. RabbitMQ's rules
//! for ack / nack / reject live here: tag 0 with `multiple` means everything outstanding, an unknown tag is a
//! 406 and settles nothing.

use crate::error::{AmqpError, AmqpResult};
use crate::queue::{Consumer, Held, Queue};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A delivery waiting for basic.ack / nack / reject, as its channel's window holds it. Its tag is its place
/// in the window, not a field: a thousand consumers at prefetch 100 hold 100,000 of these, and every 8 bytes
/// is 0.8 MB.
#[derive(Debug)]
pub struct Outstanding {
    pub queue: Arc<Queue>,
    pub msg: Held,
    pub consumer: Option<Arc<Consumer>>,
    /// When it went out, on the broker clock (coarse): the consumer timeout counts from here.
    pub at: u64,
}

/// A delivery taken out of the window (to be settled, or held by a transaction), with its tag.
#[derive(Debug)]
pub struct Unacked {
    pub tag: u64,
    pub queue: Arc<Queue>,
    pub msg: Held,
    pub consumer: Option<Arc<Consumer>>,
    pub at: u64,
}

impl Outstanding {
    fn tagged(self, tag: u64) -> Unacked {
        let Outstanding {
            queue,
            msg,
            consumer,
            at,
        } = self;
        Unacked {
            tag,
            queue,
            msg,
            consumer,
            at,
        }
    }
}

impl Unacked {
    fn untagged(self) -> (u64, Outstanding) {
        let Unacked {
            tag,
            queue,
            msg,
            consumer,
            at,
        } = self;
        (
            tag,
            Outstanding {
                queue,
                msg,
                consumer,
                at,
            },
        )
    }
}

/// Settled deliveries grouped by their queue (first-seen order), so each queue is locked once.
pub fn by_queue(entries: Vec<Unacked>) -> Vec<(Arc<Queue>, Vec<Held>)> {
    let Some(first) = entries.first() else {
        return Vec::new();
    };
    if entries.iter().all(|u| Arc::ptr_eq(&u.queue, &first.queue)) {
        // The usual ack of many names one queue: one list, allocated once.
        let q = first.queue.clone();
        return vec![(q, entries.into_iter().map(|u| u.msg).collect())];
    }
    let mut groups: Vec<(Arc<Queue>, Vec<Held>)> = Vec::new();
    for u in entries {
        match groups.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
            Some((_, v)) => v.push(u.msg),
            None => groups.push((u.queue, vec![u.msg])),
        }
    }
    groups
}

#[derive(Debug)]
pub struct Deliveries {
    pub(super) next_tag: u64,
    base: u64,
    window: VecDeque<Option<Outstanding>>,
    pub(super) unacked: u32,
    pub(super) global_prefetch: u32,
    /// The connection's consumer-timeout sweep watches this channel.
    pub(super) timeout_watched: bool,
    /// Tags whose messages a RabbitMQ 4.3 consumer timeout gave back to their queue: the client may still
    /// settle them, which then does nothing (no 406). Bounded by what was outstanding at the timeout.
    returned: std::collections::BTreeSet<u64>,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            next_tag: 1,
            base: 1,
            window: VecDeque::new(),
            unacked: 0,
            global_prefetch: 0,
            timeout_watched: false,
            returned: Default::default(),
        }
    }
}

impl Deliveries {
    /// Issue the next tag, for an unacked delivery (`Some`) or a no-ack one (`None`).
    pub fn push(&mut self, entry: Option<Outstanding>) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        if entry.is_none() && self.window.is_empty() {
            self.base = self.next_tag;
        } else {
            if entry.is_some() {
                self.unacked += 1;
            }
            self.window.push_back(entry);
        }
        tag
    }

    /// Grow the window as pushing would, by doubling, but not past a consumer's prefetch: doubling gave a
    /// consumer at prefetch 100 a window of 128 slots of ~120 bytes, 15 MB over a thousand consumers, a fifth
    /// of it never used. (Not the whole prefetch at once: a consumer at prefetch 1,000 that gets a message
    /// now and then would hold 120 KB.)
    pub fn expect(&mut self, prefetch: u32) {
        let (len, cap) = (self.window.len(), self.window.capacity());
        if len == cap && prefetch > 0 {
            let want = (cap * 2).max(4).min(prefetch as usize);
            if want > len {
                self.window.reserve_exact(want - len);
            }
        }
    }

    fn trim(&mut self) {
        while let Some(None) = self.window.front() {
            self.window.pop_front();
            self.base += 1;
        }
        if self.window.is_empty() {
            self.base = self.next_tag;
        }
    }

    fn settle(&mut self, consumer: Option<&Arc<Consumer>>) {
        self.unacked -= 1;
        if let Some(c) = consumer {
            c.unacked.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Take the deliveries an ack / nack / reject names.
    pub fn take(&mut self, tag: u64, multiple: bool) -> AmqpResult<Vec<Unacked>> {
        let mut out = Vec::new();
        if multiple {
            let returned = self.returned.contains(&tag);
            self.returned.retain(|&t| tag != 0 && t > tag);
            if returned {
                // A returned tag is still a tag the client may name: settle what is outstanding up to it.
                let end = (tag + 1)
                    .saturating_sub(self.base)
                    .min(self.window.len() as u64);
                for i in 0..end as usize {
                    if let Some(u) = self.window[i].take() {
                        self.settle(u.consumer.as_ref());
                        out.push(u.tagged(self.base + i as u64));
                    }
                }
                self.trim();
                return Ok(out);
            }
        } else if self.returned.remove(&tag) {
            return Ok(out);
        }
        if multiple && tag == 0 {
            let window = std::mem::take(&mut self.window);
            for (i, u) in window.into_iter().enumerate() {
                if let Some(u) = u {
                    self.settle(u.consumer.as_ref());
                    out.push(u.tagged(self.base + i as u64));
                }
            }
            self.trim();
            return Ok(out);
        }
        let unknown = || AmqpError::precondition_failed(format!("unknown delivery tag {tag}"));
        if tag < self.base || tag >= self.next_tag {
            return Err(unknown());
        }
        let idx = (tag - self.base) as usize;
        if self.window.get(idx).is_none_or(|e| e.is_none()) {
            return Err(unknown());
        }
        let range = if multiple { 0..=idx } else { idx..=idx };
        for i in range {
            if let Some(u) = self.window[i].take() {
                self.settle(u.consumer.as_ref());
                out.push(u.tagged(self.base + i as u64));
            }
        }
        self.trim();
        Ok(out)
    }

    /// Take out `consumer`'s deliveries that `due` says are overdue, remembering their tags so that settling
    /// them later is harmless (RabbitMQ 4.3's quorum consumer timeout returns them to the queue).
    pub fn take_returned(
        &mut self,
        consumer: &Arc<Consumer>,
        due: impl Fn(u64, &Outstanding) -> bool,
    ) -> Vec<Unacked> {
        let mut out = Vec::new();
        for (i, slot) in self.window.iter_mut().enumerate() {
            let tag = self.base + i as u64;
            let hit = slot.as_ref().is_some_and(|u| {
                u.consumer
                    .as_ref()
                    .is_some_and(|c| Arc::ptr_eq(c, consumer))
                    && due(tag, u)
            });
            if hit {
                if let Some(u) = slot.take() {
                    out.push(u.tagged(tag));
                }
            }
        }
        for u in &out {
            self.settle(u.consumer.as_ref());
            self.returned.insert(u.tag);
        }
        self.trim();
        out
    }

    /// Put deliveries back as outstanding, at their own tags.
    pub fn restore(&mut self, entries: Vec<Unacked>) {
        for u in entries {
            let (tag, u) = u.untagged();
            if tag >= self.next_tag {
                continue;
            }
            while tag < self.base {
                self.window.push_front(None);
                self.base -= 1;
            }
            let idx = (tag - self.base) as usize;
            while self.window.len() <= idx {
                self.window.push_back(None);
            }
            if self.window[idx].is_none() {
                self.unacked += 1;
                if let Some(c) = &u.consumer {
                    c.unacked.fetch_add(1, Ordering::Relaxed);
                }
                self.window[idx] = Some(u);
            }
        }
    }

    /// The oldest outstanding delivery (the front of the window is never a hole).
    pub fn oldest(&self) -> Option<&Outstanding> {
        self.window.front().and_then(Option::as_ref)
    }

    /// The newest outstanding delivery.
    pub fn newest(&self) -> Option<&Outstanding> {
        self.window.back().and_then(Option::as_ref)
    }

    /// The outstanding delivery for which `key` is least (the first of equals), scanning them all.
    pub fn earliest_by(&self, key: impl Fn(&Outstanding) -> u64) -> Option<&Outstanding> {
        let mut best: Option<(&Outstanding, u64)> = None;
        for u in self.window.iter().flatten() {
            let k = key(u);
            if best.is_none_or(|(_, b)| k < b) {
                best = Some((u, k));
            }
        }
        best.map(|(u, _)| u)
    }

    /// How many tag slots are held (outstanding deliveries and the holes between them).
    pub fn window_len(&self) -> usize {
        self.window.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::message::Message;

    #[test]
    fn a_delivery_awaiting_its_ack_stays_small() {
        // A thousand consumers at prefetch 100 hold 100,000 of these: every 8 bytes is 0.8 MB.
        let sizes = (
            size_of::<Option<Outstanding>>(),
            size_of::<Held>(),
            size_of::<crate::queue::QueuedMessage>(),
            size_of::<crate::queue::paging::Paged>(),
        );
        eprintln!("unacked, held, queued, paged: {sizes:?}");
        assert!(sizes.0 <= 88, "{sizes:?}");
    }

    fn queue() -> Arc<Queue> {
        let host: std::sync::Weak<dyn crate::queue::QueueHost> =
            std::sync::Weak::<crate::broker::VHost>::new();
        Arc::new(Queue::new(crate::queue::QueueSpec {
            name: "q",
            vhost: "/",
            durable: false,
            exclusive_owner: None,
            auto_delete: false,
            arguments: Default::default(),
            host,
            timers: crate::clock::Scheduler::new(crate::clock::Clock::manual()),
            storage: None,
            journal: crate::journal::Journal::off(),
            compat: Default::default(),
        }))
    }

    fn unacked(q: &Arc<Queue>, tag: u64) -> Outstanding {
        let msg = Arc::new(Message {
            exchange: "".into(),
            routing_key: "q".into(),
            header: bytes::Bytes::new(),
            properties: crate::queue::message::Props::default(),
            body: bytes::Bytes::new(),
            broker_deaths: false,
        });
        Outstanding {
            queue: q.clone(),
            msg: Held::Whole(crate::queue::QueuedMessage::new(tag, msg)),
            consumer: None,
            at: 0,
        }
    }

    fn fill(d: &mut Deliveries, q: &Arc<Queue>, n: u64) {
        for _ in 0..n {
            let tag = d.next_tag;
            d.push(Some(unacked(q, tag)));
        }
    }

    fn tags(v: &[Unacked]) -> Vec<u64> {
        v.iter().map(|u| u.tag).collect()
    }

    #[test]
    fn a_window_grows_to_the_prefetch_and_past_it_only_when_it_must() {
        let q = queue();
        let mut d = Deliveries::default();
        let grow = |d: &mut Deliveries, n: u64| {
            for _ in 0..n {
                d.expect(100);
                let tag = d.next_tag;
                d.push(Some(unacked(&q, tag)));
            }
        };
        grow(&mut d, 3);
        assert!(d.window.capacity() < 100, "{}", d.window.capacity());
        grow(&mut d, 97);
        assert_eq!(d.window.capacity(), 100);
        // Settled out of order, the window outgrows the prefetch.
        d.take(2, false).unwrap();
        grow(&mut d, 1);
        assert_eq!(d.window_len(), 101);
    }

    #[test]
    fn single_multiple_and_all() {
        let q = queue();
        let mut d = Deliveries::default();
        fill(&mut d, &q, 5);
        assert_eq!(tags(&d.take(2, false).unwrap()), [2]);
        assert_eq!(
            tags(&d.take(3, true).unwrap()),
            [1, 3],
            "multiple skips what was settled"
        );
        assert_eq!(d.unacked, 2);
        assert_eq!(tags(&d.take(0, true).unwrap()), [4, 5]);
        assert_eq!((d.unacked, d.window_len()), (0, 0));
    }

    #[test]
    fn unknown_and_settled_tags_are_406_and_settle_nothing() {
        let q = queue();
        let mut d = Deliveries::default();
        fill(&mut d, &q, 3);
        d.take(2, false).unwrap();
        for bad in [2, 4, 99] {
            let e = d.take(bad, false).unwrap_err();
            assert_eq!(e.text, format!("unknown delivery tag {bad}"));
            assert_eq!(e.code.code(), 406);
        }
        assert_eq!(d.unacked, 2);
    }

    #[test]
    fn no_ack_tags_cost_no_memory_and_in_order_acks_trim() {
        let q = queue();
        let mut d = Deliveries::default();
        for _ in 0..1000 {
            d.push(None);
        }
        assert_eq!(d.window_len(), 0);
        fill(&mut d, &q, 100);
        for t in 1001..=1100 {
            d.take(t, false).unwrap();
        }
        assert_eq!(d.window_len(), 0);
        assert_eq!(d.next_tag, 1101);
    }

    #[test]
    fn restore_puts_entries_back_at_their_tags() {
        let q = queue();
        let mut d = Deliveries::default();
        fill(&mut d, &q, 4);
        let taken = d.take(3, true).unwrap();
        assert_eq!(d.unacked, 1);
        d.restore(taken);
        assert_eq!(d.unacked, 4);
        assert_eq!(tags(&d.take(2, false).unwrap()), [2]);
        assert_eq!(tags(&d.take(0, true).unwrap()), [1, 3, 4]);
    }

    #[test]
    fn returned_tags_settle_to_nothing_once() {
        let q = queue();
        let mut d = Deliveries::default();
        fill(&mut d, &q, 2);
        let c = Arc::new(Consumer {
            tag: "c".into(),
            channel: Arc::new(crate::queue::tests::Recorder::default()),
            queue: q.clone(),
            no_ack: false,
            exclusive: false,
            priority: 0,
            prefetch: 0,
            unacked: std::sync::atomic::AtomicU32::new(2),
            arguments: Default::default(),
            timeout: None,
        });
        for u in d.window.iter_mut().flatten() {
            u.consumer = Some(c.clone());
        }
        let back = d.take_returned(&c, |tag, _| tag == 1);
        assert_eq!(tags(&back), [1]);
        assert_eq!((d.unacked, c.unacked.load(Ordering::Relaxed)), (1, 1));
        assert!(
            d.take(1, false).unwrap().is_empty(),
            "a returned tag is no error"
        );
        assert!(d.take(1, false).is_err(), "but only once");
        assert_eq!(tags(&d.take(2, true).unwrap()), [2]);
        // multiple=true naming a returned tag settles what is outstanding below it.
        fill(&mut d, &q, 3);
        for u in d.window.iter_mut().flatten() {
            u.consumer = Some(c.clone());
        }
        c.unacked.store(3, Ordering::Relaxed);
        assert_eq!(tags(&d.take_returned(&c, |tag, _| tag == 4)), [4]);
        assert_eq!(tags(&d.take(4, true).unwrap()), [3]);
        assert_eq!(tags(&d.take(5, false).unwrap()), [5]);
    }
}
