//! The ready messages of a queue, in delivery order: one FIFO, or for a priority queue one FIFO per priority
//! level served highest first. Messages keep their publish sequence number so that a requeued message goes back
//! to its original place within its level.

use super::QueuedMessage;
use std::collections::VecDeque;

#[derive(Debug)]
pub struct ReadyList {
    /// One FIFO per priority level (index = level); a plain queue has one.
    levels: Vec<VecDeque<QueuedMessage>>,
    len: usize,
    bytes: u64,
}

impl Default for ReadyList {
    fn default() -> Self {
        ReadyList::new(None)
    }
}

impl ReadyList {
    pub fn new(max_priority: Option<u8>) -> ReadyList {
        let n = max_priority.map_or(1, |p| p as usize + 1);
        ReadyList {
            levels: (0..n).map(|_| VecDeque::new()).collect(),
            len: 0,
            bytes: 0,
        }
    }

    /// The level a message goes to: its priority capped at the maximum; 0 without one.
    fn level(&self, m: &QueuedMessage) -> usize {
        if self.levels.len() == 1 {
            return 0;
        }
        let p = m.msg.properties.priority().unwrap_or(0) as usize;
        p.min(self.levels.len() - 1)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Body bytes of the ready messages (for x-max-length-bytes).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn push_back(&mut self, m: QueuedMessage) {
        let l = self.level(&m);
        self.len += 1;
        self.bytes += m.msg.body.len() as u64;
        self.levels[l].push_back(m);
    }

    fn head_level(&self) -> Option<usize> {
        (0..self.levels.len())
            .rev()
            .find(|&l| !self.levels[l].is_empty())
    }

    pub fn front(&self) -> Option<&QueuedMessage> {
        self.head_level().and_then(|l| self.levels[l].front())
    }

    pub fn pop_front(&mut self) -> Option<QueuedMessage> {
        let l = self.head_level()?;
        let m = self.levels[l].pop_front()?;
        self.len -= 1;
        self.bytes -= m.msg.body.len() as u64;
        Some(m)
    }

    /// Take back the message just pushed (a publish refused by x-overflow=reject-publish).
    pub fn remove_seq(&mut self, seq: u64) -> Option<QueuedMessage> {
        for level in self.levels.iter_mut() {
            if level.back().is_some_and(|m| m.seq == seq) {
                let m = level.pop_back()?;
                self.len -= 1;
                self.bytes -= m.msg.body.len() as u64;
                return Some(m);
            }
        }
        None
    }

    /// Put messages back at their original positions (by sequence number) within their levels.
    pub fn requeue(&mut self, mut msgs: Vec<QueuedMessage>) {
        msgs.sort_by_key(|m| m.seq);
        let mut per_level: Vec<Vec<QueuedMessage>> =
            (0..self.levels.len()).map(|_| Vec::new()).collect();
        for m in msgs {
            self.len += 1;
            self.bytes += m.msg.body.len() as u64;
            let l = self.level(&m);
            per_level[l].push(m);
        }
        for (l, msgs) in per_level.into_iter().enumerate() {
            if msgs.is_empty() {
                continue;
            }
            let level = &mut self.levels[l];
            let head = level.front().map(|m| m.seq);
            match head {
                Some(h) if msgs.last().is_some_and(|m| m.seq > h) => {
                    let old = std::mem::take(level);
                    let mut merged = VecDeque::with_capacity(old.len() + msgs.len());
                    let mut a = old.into_iter().peekable();
                    let mut b = msgs.into_iter().peekable();
                    loop {
                        let take_a = match (a.peek(), b.peek()) {
                            (Some(x), Some(y)) => x.seq < y.seq,
                            (Some(_), None) => true,
                            (None, Some(_)) => false,
                            (None, None) => break,
                        };
                        merged.extend(if take_a { a.next() } else { b.next() });
                    }
                    *level = merged;
                }
                _ => {
                    for m in msgs.into_iter().rev() {
                        level.push_front(m);
                    }
                }
            }
        }
    }

    pub fn clear(&mut self) -> usize {
        let n = self.len;
        for l in self.levels.iter_mut() {
            l.clear();
        }
        self.len = 0;
        self.bytes = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::Message;
    use amq_protocol::protocol::BasicProperties;
    use bytes::Bytes;
    use std::sync::Arc;

    fn qm(seq: u64, prio: Option<u8>) -> QueuedMessage {
        let mut p = BasicProperties::default();
        if let Some(x) = prio {
            p = p.with_priority(x);
        }
        QueuedMessage {
            seq,
            msg: Arc::new(Message {
                exchange: "".into(),
                routing_key: "".into(),
                header: Bytes::new(),
                properties: p,
                body: Bytes::from_static(b"x"),
            }),
            redelivered: false,
            expires: None,
            delivery_count: 0,
        }
    }

    #[test]
    fn priorities_then_fifo() {
        let mut r = ReadyList::new(Some(5));
        r.push_back(qm(0, None));
        r.push_back(qm(1, Some(3)));
        r.push_back(qm(2, Some(9)));
        r.push_back(qm(3, Some(3)));
        let order: Vec<u64> = std::iter::from_fn(|| r.pop_front().map(|m| m.seq)).collect();
        assert_eq!(order, vec![2, 1, 3, 0]);
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn requeue_restores_positions() {
        let mut r = ReadyList::new(None);
        for s in 0..5 {
            r.push_back(qm(s, None));
        }
        let taken: Vec<QueuedMessage> = (0..5).filter_map(|_| r.pop_front()).collect();
        r.requeue(vec![taken[3].clone(), taken[1].clone()]);
        r.requeue(vec![taken[4].clone()]);
        let order: Vec<u64> = std::iter::from_fn(|| r.pop_front().map(|m| m.seq)).collect();
        assert_eq!(order, vec![1, 3, 4]);
    }
}
