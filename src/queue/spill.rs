//! A level's run of paged messages, of which only a bounded window stays in memory: the index entries at its
//! head (next to be read back) and at its tail (just paged out). Everything between is *spilled*: written to
//! the store in chunks of [`CHUNK`] index entries, under the queue's transient key, so a backlog of any length
//! costs memory per chunk (a few dozen bytes per thousand messages), not per message.
//!
//! The run is a FIFO in `seq` order: head, then the spilled chunks in order, then the tail. When the head
//! runs dry and chunks remain, the front chunk is read back on the store's reader thread (never under the
//! queue's lock) and becomes the new head; messages paged out meanwhile keep going to the tail. Chunks are
//! only a cache of what the queue holds: transient keys are dropped at boot, and recovery rebuilds the index
//! from the store's own records.

use super::paging::{Paged, Pager};
use crate::store::Location;
use std::collections::VecDeque;

/// Index entries per spilled chunk, and the most the head or the tail holds in memory.
pub const CHUNK: usize = 1024;
/// Chunk ids live above every message id the transient key uses (queue sequence numbers).
const CHUNK_ID_BASE: u64 = 1 << 63;
const FORMAT: u8 = 2;

/// A chunk of index entries in the store.
#[derive(Debug, Clone, Copy)]
pub struct Spilled {
    /// Its id under the queue's transient key.
    pub id: u64,
    pub loc: Location,
    pub count: u32,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The first entry's expiry deadline (`u64::MAX` for none): a TTL'd head is seen without a read.
    pub first_expires: u64,
    /// Body bytes of the messages it indexes.
    pub body_bytes: u64,
}

#[derive(Debug, Default)]
pub struct PagedRun {
    head: VecDeque<Paged>,
    spilled: VecDeque<Spilled>,
    tail: VecDeque<Paged>,
    /// The front chunk is being read back (its last `seq`): new entries must still go behind it.
    reading: Option<u64>,
}

impl PagedRun {
    pub fn is_empty(&self) -> bool {
        self.head.is_empty()
            && self.spilled.is_empty()
            && self.tail.is_empty()
            && self.reading.is_none()
    }

    /// Index entries held in memory.
    pub fn in_memory(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// Chunks in the store.
    pub fn spilled_chunks(&self) -> usize {
        self.spilled.len()
    }

    /// `seq` of the first entry (while a chunk is being read back, of what follows it).
    pub fn front_seq(&self) -> Option<u64> {
        match (self.head.front(), self.spilled.front()) {
            (Some(p), _) => Some(p.seq),
            (None, Some(s)) => Some(s.first_seq),
            (None, None) => self.tail.front().map(|p| p.seq),
        }
    }

    /// The first entry's expiry deadline.
    pub fn front_expires(&self) -> Option<u64> {
        let e = match (self.head.front(), self.spilled.front()) {
            (Some(p), _) => p.expires,
            (None, Some(s)) => s.first_expires,
            (None, None) => self.tail.front()?.expires,
        };
        (e != u64::MAX).then_some(e)
    }

    pub fn back_seq(&self) -> Option<u64> {
        match (self.tail.back(), self.spilled.back()) {
            (Some(p), _) => Some(p.seq),
            (None, Some(s)) => Some(s.last_seq),
            (None, None) => self.reading.or_else(|| self.head.back().map(|p| p.seq)),
        }
    }

    /// Whether the front entry must be read back from a chunk before it can be taken.
    pub fn front_spilled(&self) -> bool {
        self.head.is_empty() && !self.spilled.is_empty()
    }

    /// The run the front entries are taken from: the head, or the tail once nothing is spilled before it.
    fn front_run(&mut self) -> &mut VecDeque<Paged> {
        if self.head.is_empty() && self.spilled.is_empty() && self.reading.is_none() {
            &mut self.tail
        } else {
            &mut self.head
        }
    }

    pub fn pop_front(&mut self) -> Option<Paged> {
        self.front_run().pop_front()
    }

    /// Up to `n` entries from the front, when they are in memory.
    pub fn take_front(&mut self, n: usize) -> Vec<Paged> {
        let run = self.front_run();
        let n = run.len().min(n);
        run.drain(..n).collect()
    }

    /// Start reading the front chunk back (see `front_spilled`).
    pub fn take_chunk(&mut self) -> Option<Spilled> {
        if !self.head.is_empty() || self.reading.is_some() {
            return None;
        }
        let s = self.spilled.pop_front()?;
        self.reading = Some(s.last_seq);
        Some(s)
    }

    /// The chunk read back: its entries are the new head (`None`: it could not be read, they are gone).
    pub fn finish_chunk(&mut self, entries: Option<Vec<Paged>>) {
        self.reading = None;
        if let Some(v) = entries {
            for p in v.into_iter().rev() {
                self.head.push_front(p);
            }
        }
    }

    /// Append an entry; a full tail is spilled to the store when there is one, as chunk `*next_chunk` (a
    /// counter shared by every run that spills under the same key).
    pub fn push_back(&mut self, p: Paged, pager: Option<&Pager>, next_chunk: &mut u64) {
        if self.spilled.is_empty()
            && self.reading.is_none()
            && self.tail.is_empty()
            && self.head.len() < CHUNK
        {
            self.head.push_back(p);
            return;
        }
        self.tail.push_back(p);
        // After a failed spill the next try waits for another chunk's worth; each try writes one chunk.
        if self.tail.len().is_multiple_of(CHUNK) {
            if let Some(pager) = pager {
                while self.tail.len() >= CHUNK && self.spill(pager, next_chunk) {}
            }
        }
    }

    /// Write the tail's first `CHUNK` entries to the store as one chunk. On failure they stay in memory.
    fn spill(&mut self, pager: &Pager, next_chunk: &mut u64) -> bool {
        let id = CHUNK_ID_BASE + *next_chunk;
        let bytes = encode(self.tail.range(..CHUNK));
        match pager
            .store
            .publish(&pager.transient_key, id, &bytes, Box::new(|_| {}))
        {
            Ok(loc) => {
                *next_chunk += 1;
                let chunk: Vec<Paged> = self.tail.drain(..CHUNK).collect();
                let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
                    return false;
                };
                self.spilled.push_back(Spilled {
                    id,
                    loc,
                    count: chunk.len() as u32,
                    first_seq: first.seq,
                    last_seq: last.seq,
                    first_expires: first.expires,
                    body_bytes: chunk.iter().map(|p| u64::from(p.body_len)).sum(),
                });
                true
            }
            Err(e) => {
                tracing::warn!(queue = %pager.queue_label(), error = %e, "cannot spill paged index entries; keeping them in memory");
                false
            }
        }
    }

    /// Empty the run: the entries in memory and the chunks in the store.
    pub fn drain(&mut self) -> (Vec<Paged>, Vec<Spilled>) {
        let mut entries: Vec<Paged> = self.head.drain(..).collect();
        entries.extend(self.tail.drain(..));
        self.reading = None;
        (entries, self.spilled.drain(..).collect())
    }
}

// Entries are stored as deltas from the previous one, in LEB128 varints: in a backlog consecutive entries
// differ by one in seq, id and slot and by a record's length in offset, so most take 11 to 13 bytes instead of
// 57.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The difference `b - a` as a zigzag-mapped unsigned number (small either way).
fn delta(a: u64, b: u64) -> u64 {
    let d = b.wrapping_sub(a) as i64;
    ((d << 1) ^ (d >> 63)) as u64
}

fn undelta(a: u64, z: u64) -> u64 {
    let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
    a.wrapping_add(d as u64)
}

fn encode<'a>(entries: impl ExactSizeIterator<Item = &'a Paged>) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + entries.len() * 12);
    out.push(FORMAT);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    let (mut seq, mut id, mut seg, mut off, mut exp) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut slot = 0u64;
    for p in entries {
        put_varint(&mut out, delta(seq, p.seq));
        put_varint(&mut out, delta(id, p.id));
        put_varint(&mut out, delta(seg, u64::from(p.loc.segment)));
        put_varint(&mut out, delta(off, p.loc.offset));
        put_varint(&mut out, u64::from(p.loc.len));
        put_varint(&mut out, delta(slot, u64::from(p.loc.slot)));
        slot = u64::from(p.loc.slot);
        put_varint(&mut out, delta(exp, p.expires));
        put_varint(&mut out, u64::from(p.body_len));
        put_varint(&mut out, u64::from(p.delivery_count));
        put_varint(&mut out, u64::from(p.acquired_count));
        out.push(u8::from(p.redelivered) | (u8::from(p.transient) << 1));
        (seq, id, seg, off, exp) = (
            p.seq,
            p.id,
            u64::from(p.loc.segment),
            p.loc.offset,
            p.expires,
        );
    }
    out
}

/// Decode a chunk written by `encode`; `None` if it is not one (corrupt, or not what was expected).
pub fn decode(b: &[u8], expected: u32) -> Option<Vec<Paged>> {
    let count = u32::from_be_bytes(b.get(1..5)?.try_into().ok()?);
    if b.first() != Some(&FORMAT) || count != expected {
        return None;
    }
    // Every entry takes at least 11 bytes: a count that the bytes cannot hold is corrupt, not an allocation.
    if (count as usize).saturating_mul(11) > b.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut pos = 5;
    let (mut seq, mut id, mut seg, mut off, mut exp) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut slot = 0u64;
    let small = |v: u64| u32::try_from(v).ok();
    for _ in 0..count {
        let mut next = || get_varint(b, &mut pos);
        seq = undelta(seq, next()?);
        id = undelta(id, next()?);
        seg = undelta(seg, next()?);
        off = undelta(off, next()?);
        let len = small(next()?)?;
        slot = undelta(slot, next()?);
        exp = undelta(exp, next()?);
        let body_len = small(next()?)?;
        let delivery_count = small(next()?)?;
        let acquired_count = small(next()?)?;
        let flags = *b.get(pos)?;
        pos += 1;
        out.push(Paged {
            seq,
            id,
            loc: Location {
                segment: small(seg)?,
                offset: off,
                len,
                slot: small(slot)?,
            },
            expires: exp,
            body_len,
            delivery_count,
            acquired_count,
            redelivered: flags & 1 != 0,
            transient: flags & 2 != 0,
        });
    }
    (pos == b.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> Paged {
        Paged {
            seq,
            id: seq * 10,
            loc: Location {
                segment: 3,
                offset: seq * 100,
                len: 77,
                slot: seq as u32,
            },
            expires: if seq.is_multiple_of(2) { u64::MAX } else { seq },
            body_len: 16,
            delivery_count: 2,
            acquired_count: 5,
            redelivered: seq.is_multiple_of(3),
            transient: seq.is_multiple_of(5),
        }
    }

    #[test]
    fn chunks_round_trip() {
        let v: VecDeque<Paged> = (0..40).map(entry).collect();
        let b = encode(v.iter());
        let back = decode(&b, 40).expect("decodes");
        for (a, b) in v.iter().zip(&back) {
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
        assert!(decode(&b, 41).is_none());
        assert!(decode(&b[..b.len() - 1], 40).is_none());
        assert!(decode(&[], 0).is_none());
        // A backlog's entries cost about ten bytes each.
        let run: VecDeque<Paged> = (0..1000)
            .map(|s| Paged {
                expires: u64::MAX,
                transient: false,
                ..entry(1_000_000 + s)
            })
            .collect();
        let b = encode(run.iter());
        assert!(b.len() < 13 * 1000, "{} bytes", b.len());
        assert_eq!(decode(&b, 1000).map(|v| v.len()), Some(1000));
        // Damaged chunks decode to something or nothing, never a panic.
        let small = encode(v.iter().take(5));
        for i in 0..small.len() {
            for bit in 0..8 {
                let mut d = small.clone();
                d[i] ^= 1 << bit;
                let _ = decode(&d, 5);
                let _ = decode(&d[..i], 5);
            }
        }
    }

    #[test]
    fn without_a_store_the_run_is_a_plain_fifo() {
        let mut r = PagedRun::default();
        let mut chunks = 0;
        for s in 0..(3 * CHUNK as u64) {
            r.push_back(entry(s), None, &mut chunks);
        }
        assert_eq!(
            (r.front_seq(), r.back_seq()),
            (Some(0), Some(3 * CHUNK as u64 - 1))
        );
        let mut seen = Vec::new();
        while let Some(p) = r.pop_front() {
            seen.push(p.seq);
        }
        assert_eq!(seen, (0..3 * CHUNK as u64).collect::<Vec<_>>());
        assert!(r.is_empty());
    }
}
