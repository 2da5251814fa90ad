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
use crate::store::{IndexBlock, Location};
use crate::varint::{delta, get_varint, put_varint, undelta};

mod chunks;

/// Index entries per spilled chunk, and what the head or the tail holds in memory at most (unless a spill
/// failed: the tail then waits for the next multiple, and is written whole).
pub const CHUNK: usize = 1024;
/// Entries a run gathers at its head before it starts a tail (a chunk read back may hold more): what an idle
/// backlog keeps in memory per level is this and a tail of fewer than `CHUNK`. Small, because a thousand
/// idle deep queues each keep one.
pub const HEAD: usize = 64;
/// The most bytes one encoded index entry takes (a flags byte and ten varints).
const MAX_ENTRY: usize = 10 * 10 + 1;
/// The least an in-memory run's buffer grows by.
const RUN_GROWTH: usize = 512;
/// Chunk ids live above every message id the transient key uses (queue sequence numbers).
const CHUNK_ID_BASE: u64 = 1 << 63;
const FORMAT: u8 = 3;

/// Where a spilled chunk's entries are.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// Written by this run under the queue's transient key, with this id.
    Chunk { id: u64, loc: Location },
    /// A run of blocks of the store's indexes of segments written before the last start (a recovered
    /// backlog), from this block on, whose messages come back marked redelivered when `redelivered`.
    Index {
        block: IndexBlock,
        redelivered: bool,
    },
}

/// A chunk of index entries in the store.
#[derive(Debug, Clone, Copy)]
pub struct Spilled {
    pub source: Source,
    pub count: u32,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The first entry's expiry deadline (`u64::MAX` for none): a TTL'd head is seen without a read.
    pub first_expires: u64,
    /// Body bytes of the messages it indexes.
    pub body_bytes: u64,
}

/// Index entries held in memory in their encoded form, as in a chunk (about 12 bytes each instead of a
/// 64-byte `Paged`): appended at the back, taken from the front, the front one kept decoded.
#[derive(Debug, Default)]
pub struct Run {
    bytes: Vec<u8>,
    /// Where the entry after `front` starts, and the decoding state there.
    pos: usize,
    dec: Prev,
    /// The encoding state after the last entry appended.
    enc: Prev,
    front: Option<Paged>,
    /// Entries not yet taken, `front` included.
    len: usize,
    back_seq: u64,
    /// Body bytes of those entries.
    body_bytes: u64,
}

impl Spilled {
    /// A run of index blocks not read yet (`count` entries from its block's `skip` on), whose first entry
    /// gets `first_seq`.
    pub fn of_block(
        block: IndexBlock,
        redelivered: bool,
        count: u32,
        first_seq: u64,
        first_expires: u64,
        body_bytes: u64,
    ) -> Spilled {
        Spilled {
            source: Source::Index { block, redelivered },
            count,
            first_seq,
            last_seq: first_seq + u64::from(count).saturating_sub(1),
            first_expires,
            body_bytes,
        }
    }
}

impl Run {
    /// A run of these entries, in order.
    pub fn of(entries: impl IntoIterator<Item = Paged>) -> Run {
        let mut run = Run::default();
        for p in entries {
            run.push(p);
        }
        run
    }

    /// Body bytes of the entries.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, p: Paged) {
        // Grown by a quarter, not doubled: a thousand idle queues each hold a head and a tail, and doubling
        // left up to half of each unused.
        if self.bytes.capacity() - self.bytes.len() < MAX_ENTRY {
            self.bytes
                .reserve_exact((self.bytes.len() / 4).max(RUN_GROWTH));
        }
        put_entry(&mut self.bytes, &mut self.enc, &p);
        self.len += 1;
        self.back_seq = p.seq;
        self.body_bytes += u64::from(p.body_len);
        if self.front.is_none() {
            self.front = get_entry(&self.bytes, &mut self.pos, &mut self.dec);
        }
    }

    /// Take the front entry.
    pub fn pop_entry(&mut self) -> Option<Paged> {
        self.pop()
    }

    fn pop(&mut self) -> Option<Paged> {
        let out = self.front.take()?;
        self.len -= 1;
        self.body_bytes -= u64::from(out.body_len);
        if self.len > 0 {
            self.front = get_entry(&self.bytes, &mut self.pos, &mut self.dec);
            if self.front.is_none() {
                // Only this module encodes these bytes, and chunks read back are checked whole first.
                tracing::error!(lost = self.len, "undecodable in-memory index entries");
                self.len = 0;
                self.body_bytes = 0;
            }
        }
        if self.len == 0 {
            // An emptied run lets a grown buffer go: a thousand drained queues each kept a chunk's worth.
            if self.bytes.capacity() > RUN_GROWTH {
                self.bytes = Vec::new();
            } else {
                self.bytes.clear();
            }
            self.pos = 0;
        } else if self.pos >= 1024 && self.pos * 2 >= self.bytes.len() {
            self.bytes.drain(..self.pos);
            self.pos = 0;
            // A chunk read back is a head of 1,024 entries, taken a batch at a time: each queue of a
            // thousand draining from disk held its whole chunk's room (13 MB in all) until the last entry.
            self.bytes.shrink_to_fit();
        }
        Some(out)
    }

    /// The whole run as a chunk to write (only for a run nothing was taken from: see `push_back`).
    fn to_chunk(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.bytes.len());
        out.push(FORMAT);
        out.extend_from_slice(&(self.len as u32).to_be_bytes());
        out.extend_from_slice(&self.bytes);
        out
    }
}

#[derive(Debug, Default)]
pub struct PagedRun {
    head: Run,
    spilled: chunks::Chunks,
    /// Never taken from: it becomes the head first (see `front_run`), so it can be written as a chunk.
    tail: Run,
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

    /// Bytes those entries and the list of spilled chunks take.
    pub fn in_memory_bytes(&self) -> usize {
        self.head.bytes.capacity() + self.tail.bytes.capacity() + self.spilled.capacity()
    }

    /// Chunks in the store.
    pub fn spilled_chunks(&self) -> usize {
        self.spilled.len()
    }

    fn front(&self) -> Option<&Paged> {
        self.head.front.as_ref().or_else(|| {
            (self.spilled.is_empty() && self.reading.is_none())
                .then_some(self.tail.front.as_ref())
                .flatten()
        })
    }

    /// `seq` of the first entry (while a chunk is being read back, of what follows it).
    pub fn front_seq(&self) -> Option<u64> {
        match (&self.head.front, self.spilled.front()) {
            (Some(p), _) => Some(p.seq),
            (None, Some(s)) => Some(s.first_seq),
            (None, None) => self.tail.front.map(|p| p.seq),
        }
    }

    /// The first entry's expiry deadline.
    pub fn front_expires(&self) -> Option<u64> {
        let e = match (&self.head.front, self.spilled.front()) {
            (Some(p), _) => p.expires,
            (None, Some(s)) => s.first_expires,
            (None, None) => self.tail.front?.expires,
        };
        (e != u64::MAX).then_some(e)
    }

    pub fn back_seq(&self) -> Option<u64> {
        if !self.tail.is_empty() {
            return Some(self.tail.back_seq);
        }
        match self.spilled.back_seq() {
            Some(s) => Some(s),
            None => self
                .reading
                .or_else(|| (!self.head.is_empty()).then_some(self.head.back_seq)),
        }
    }

    /// Whether the front entry must be read back from a chunk before it can be taken.
    pub fn front_spilled(&self) -> bool {
        self.head.is_empty() && !self.spilled.is_empty()
    }

    /// The run the front entries are taken from: the head, which the tail becomes once nothing is spilled
    /// before it.
    fn front_run(&mut self) -> &mut Run {
        if self.head.is_empty() && self.spilled.is_empty() && self.reading.is_none() {
            // A fresh tail, so that what it gathers next encodes from the start of a chunk.
            self.head = std::mem::take(&mut self.tail);
        }
        &mut self.head
    }

    pub fn pop_front(&mut self) -> Option<Paged> {
        self.front()?;
        self.front_run().pop()
    }

    /// Up to `n` entries from the front, when they are in memory.
    pub fn take_front(&mut self, n: usize) -> Vec<Paged> {
        if self.front().is_none() {
            return Vec::new();
        }
        let run = self.front_run();
        let n = run.len().min(n);
        (0..n).map_while(|_| run.pop()).collect()
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

    /// The chunk read back (checked by [`check`]): its entries are the new head (`None`: it could not be
    /// read, they are gone), and what is left of it (an index block read in part) the next chunk.
    pub fn finish_chunk(&mut self, entries: Option<Run>, rest: Option<Spilled>) {
        self.reading = None;
        if let Some(run) = entries {
            // The head was empty when the chunk was taken, and nothing joins it while a chunk is read.
            self.head = run;
        }
        if let Some(r) = rest {
            self.spilled.push_front(r);
        }
    }

    /// Append an entry; a full tail is spilled to the store when there is one, as chunk `*next_chunk` (a
    /// counter shared by every run that spills under the same key).
    pub fn push_back(&mut self, p: Paged, pager: Option<&Pager>, next_chunk: &mut u64) {
        if self.spilled.is_empty()
            && self.reading.is_none()
            && self.tail.is_empty()
            && self.head.len() < HEAD
        {
            self.head.push(p);
            return;
        }
        self.tail.push(p);
        let Some(pager) = pager else {
            return;
        };
        // A chunk spilled while none is (a run's first) is cut short by the queue's phase. Queues filled in
        // step (a publisher round-robining over a thousand) would otherwise fill their tails together and
        // spill them together, so that memory swung by all of them at once; out of step, their tails add up
        // to half as much, evenly.
        let due = if self.spilled.is_empty() {
            CHUNK - pager.phase.min(CHUNK - 1)
        } else {
            CHUNK
        };
        // A tail already past `due` (the last chunk was read back meanwhile) or whose spill failed spills at
        // the next multiple of a chunk.
        let n = self.tail.len();
        if n == due || (n > due && n.is_multiple_of(CHUNK)) {
            self.spill(pager, next_chunk);
        }
    }

    /// Write the tail to the store as one chunk. On failure it stays in memory.
    fn spill(&mut self, pager: &Pager, next_chunk: &mut u64) -> bool {
        let id = CHUNK_ID_BASE + *next_chunk;
        let Some(first) = self.tail.front else {
            return false;
        };
        match pager.store.publish(
            &pager.transient_key,
            id,
            &self.tail.to_chunk(),
            Box::new(|_| {}),
        ) {
            Ok(loc) => {
                *next_chunk += 1;
                let tail = std::mem::take(&mut self.tail);
                self.keep(Spilled {
                    source: Source::Chunk { id, loc },
                    count: tail.len as u32,
                    first_seq: first.seq,
                    last_seq: tail.back_seq,
                    first_expires: first.expires,
                    body_bytes: tail.body_bytes,
                });
                true
            }
            Err(e) => {
                tracing::warn!(queue = %pager.queue_label(), error = %e, "cannot spill paged index entries; keeping them in memory");
                false
            }
        }
    }

    /// Append a chunk that is already in the store (a recovered index block). What the tail holds is
    /// spilled first, to stay ahead of it; if that fails the chunk is handed back.
    pub fn push_spilled(
        &mut self,
        s: Spilled,
        pager: Option<&Pager>,
        next_chunk: &mut u64,
    ) -> Result<(), Spilled> {
        if !self.tail.is_empty() && !pager.is_some_and(|p| self.spill(p, next_chunk)) {
            return Err(s);
        }
        self.keep(s);
        Ok(())
    }

    /// Write the tail as a chunk now, if it holds at least a head's length (see
    /// [`super::ready::ReadyList::spill_tails`]); shorter, it costs less in memory than a write and a read.
    /// The list of chunks, grown a quarter at a time while recovery handed them out, gives back its slack:
    /// nothing joins it before the drain.
    pub fn spill_tail(&mut self, pager: &Pager, next_chunk: &mut u64) {
        if self.tail.len() >= HEAD {
            self.spill(pager, next_chunk);
        }
        self.spilled.shrink_to_fit();
    }

    /// Entries in the tail.
    pub fn tail_len(&self) -> usize {
        self.tail.len()
    }

    /// Note a chunk in the store.
    fn keep(&mut self, s: Spilled) {
        self.spilled.push_back(s);
    }

    /// Empty the run: the entries in memory and the chunks in the store.
    pub fn drain(&mut self) -> (Vec<Paged>, Vec<Spilled>) {
        let mut entries = Vec::with_capacity(self.in_memory());
        while let Some(p) = self.head.pop() {
            entries.push(p);
        }
        while let Some(p) = self.tail.pop() {
            entries.push(p);
        }
        self.head = Run::default();
        self.tail = Run::default();
        self.reading = None;
        (entries, self.spilled.drain())
    }
}

// Entries are stored as deltas from the previous one, in LEB128 varints after a flags byte: in a backlog
// consecutive entries differ by one in seq, id and slot and by a record's length in offset, and have the
// same expiry and no deliveries yet, so most take 8 to 12 bytes instead of 64.
/// The previous entry's fields the next one is encoded against.
#[derive(Debug, Default, Clone, Copy)]
struct Prev {
    seq: u64,
    id: u64,
    seg: u64,
    off: u64,
    slot: u64,
    exp: u64,
}

// The flags byte leads an entry; the fields a backlog's entries rarely have follow only when set.
const REDELIVERED: u8 = 1;
const TRANSIENT: u8 = 2;
/// Delivery and acquire counts follow (a message that has been delivered before).
const COUNTS: u8 = 4;
/// The expiry differs from the previous entry's.
const EXPIRES: u8 = 8;

fn put_entry(out: &mut Vec<u8>, prev: &mut Prev, p: &Paged) {
    let counts = p.delivery_count != 0 || p.acquired_count != 0;
    let expires = p.expires != prev.exp;
    let flag = |on: bool, bit: u8| if on { bit } else { 0 };
    out.push(
        flag(p.redelivered, REDELIVERED)
            | flag(p.transient, TRANSIENT)
            | flag(counts, COUNTS)
            | flag(expires, EXPIRES),
    );
    put_varint(out, delta(prev.seq, p.seq));
    put_varint(out, delta(prev.id, p.id));
    put_varint(out, delta(prev.seg, u64::from(p.loc.segment)));
    put_varint(out, delta(prev.off, u64::from(p.loc.offset)));
    put_varint(out, u64::from(p.loc.len));
    put_varint(out, delta(prev.slot, u64::from(p.loc.slot)));
    put_varint(out, u64::from(p.body_len));
    if expires {
        put_varint(out, delta(prev.exp, p.expires));
    }
    if counts {
        put_varint(out, u64::from(p.delivery_count));
        put_varint(out, u64::from(p.acquired_count));
    }
    *prev = Prev {
        seq: p.seq,
        id: p.id,
        seg: u64::from(p.loc.segment),
        off: u64::from(p.loc.offset),
        slot: u64::from(p.loc.slot),
        exp: p.expires,
    };
}

fn get_entry(b: &[u8], pos: &mut usize, prev: &mut Prev) -> Option<Paged> {
    let small = |v: u64| u32::try_from(v).ok();
    let flags = *b.get(*pos)?;
    if flags & !(REDELIVERED | TRANSIENT | COUNTS | EXPIRES) != 0 {
        return None;
    }
    *pos += 1;
    let mut next = || get_varint(b, pos);
    let seq = undelta(prev.seq, next()?);
    let id = undelta(prev.id, next()?);
    let seg = undelta(prev.seg, next()?);
    let off = undelta(prev.off, next()?);
    let len = small(next()?)?;
    let slot = undelta(prev.slot, next()?);
    let body_len = small(next()?)?;
    let exp = match flags & EXPIRES {
        0 => prev.exp,
        _ => undelta(prev.exp, next()?),
    };
    let (delivery_count, acquired_count) = match flags & COUNTS {
        0 => (0, 0),
        _ => (small(next()?)?, small(next()?)?),
    };
    let p = Paged {
        seq,
        id,
        loc: Location {
            segment: small(seg)?,
            offset: small(off)?,
            len,
            slot: small(slot)?,
        },
        expires: exp,
        body_len,
        delivery_count,
        acquired_count,
        redelivered: flags & REDELIVERED != 0,
        transient: flags & TRANSIENT != 0,
    };
    *prev = Prev {
        seq,
        id,
        seg,
        off,
        slot,
        exp,
    };
    Some(p)
}

#[cfg(test)]
fn encode<'a>(entries: impl ExactSizeIterator<Item = &'a Paged>) -> Vec<u8> {
    Run::of(entries.copied()).to_chunk()
}

/// Check a chunk written by `spill` whole and make it a run; `None` if it is not one (corrupt, or not
/// what was expected).
pub fn check(b: &[u8], expected: u32) -> Option<Run> {
    let count = u32::from_be_bytes(b.get(1..5)?.try_into().ok()?);
    if b.first() != Some(&FORMAT) || count != expected {
        return None;
    }
    // Every entry takes at least 8 bytes: a count that the bytes cannot hold is corrupt.
    if (count as usize).saturating_mul(8) > b.len() {
        return None;
    }
    let body = &b[5..];
    let (mut pos, mut enc) = (0, Prev::default());
    let mut body_bytes = 0u64;
    let mut back_seq = 0;
    for _ in 0..count {
        let p = get_entry(body, &mut pos, &mut enc)?;
        body_bytes += u64::from(p.body_len);
        back_seq = p.seq;
    }
    if pos != body.len() {
        return None;
    }
    let mut run = Run {
        bytes: body.to_vec(),
        enc,
        len: count as usize,
        back_seq,
        body_bytes,
        ..Run::default()
    };
    if count > 0 {
        run.front = get_entry(&run.bytes, &mut run.pos, &mut run.dec);
    }
    Some(run)
}

/// Decode a chunk written by `spill`; `None` if it is not one.
pub fn decode(b: &[u8], expected: u32) -> Option<Vec<Paged>> {
    let mut run = check(b, expected)?;
    let mut out = Vec::with_capacity(run.len());
    while let Some(p) = run.pop() {
        out.push(p);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn entry(seq: u64) -> Paged {
        Paged {
            seq,
            id: seq * 10,
            loc: Location {
                segment: 3,
                offset: (seq * 100) as u32,
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
    fn a_tail_past_its_due_when_the_last_chunk_is_taken_spills_at_a_chunk() {
        use crate::queue::paging::{MemoryBudget, TRANSIENT_PREFIX};
        let dir = crate::store::tests::TempDir::new("spill-due");
        let (store, _) =
            crate::store::MessageStore::open(crate::store::StoreConfig::new(&dir.0)).unwrap();
        let pager = Pager {
            store,
            durable_key: None,
            transient_key: format!("{TRANSIENT_PREFIX}q"),
            budget: MemoryBudget::new(0),
            phase: 300,
        };
        let (mut run, mut chunks, mut seq) = (PagedRun::default(), 0, 0);
        let mut push = |run: &mut PagedRun, n: usize| {
            for _ in 0..n {
                run.push_back(entry(seq), Some(&pager), &mut chunks);
                seq += 1;
            }
        };
        push(&mut run, HEAD + CHUNK - 300);
        assert_eq!((run.spilled_chunks(), run.tail.len()), (1, 0));
        push(&mut run, 900);
        assert_eq!((run.spilled_chunks(), run.tail.len()), (1, 900));
        // The head is taken, then the chunk: nothing is spilled, and the tail is past a first chunk's due.
        assert_eq!(run.take_front(HEAD).len(), HEAD);
        let chunk = run.take_chunk().expect("the spilled chunk");
        run.finish_chunk(Some(Run::of((0..chunk.count as u64).map(entry))), None);
        assert_eq!(run.spilled_chunks(), 0);
        for _ in 0..2 * CHUNK {
            push(&mut run, 1);
            assert!(run.tail.len() < CHUNK, "{}", run.tail.len());
        }
        assert_eq!(run.spilled_chunks(), 2);
    }

    #[test]
    fn a_run_taken_from_gives_back_the_room_of_what_was_taken() {
        let mut run = Run::of((0..CHUNK as u64).map(entry));
        let full = run.bytes.capacity();
        for s in 0..(3 * CHUNK / 4) as u64 {
            assert_eq!(run.pop().map(|p| p.seq), Some(s));
        }
        assert!(
            run.bytes.capacity() * 2 <= full,
            "{} of {full}",
            run.bytes.capacity()
        );
        let rest: Vec<u64> = std::iter::from_fn(|| run.pop().map(|p| p.seq)).collect();
        assert_eq!(
            rest,
            ((3 * CHUNK / 4) as u64..CHUNK as u64).collect::<Vec<_>>()
        );
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
        // A backlog's entries (never delivered, no expiry) cost about nine bytes each.
        let run: VecDeque<Paged> = (0..1000)
            .map(|s| Paged {
                expires: u64::MAX,
                transient: false,
                redelivered: false,
                delivery_count: 0,
                acquired_count: 0,
                ..entry(1_000_000 + s)
            })
            .collect();
        let b = encode(run.iter());
        assert!(b.len() < 10 * 1000, "{} bytes", b.len());
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

    #[test]
    fn in_memory_runs_stay_encoded_and_in_order() {
        let mut r = PagedRun::default();
        let mut chunks = 0;
        let mut next = 0u64;
        let mut want = 0u64;
        let entry = |s| Paged {
            expires: u64::MAX,
            ..entry(s)
        };
        // Pushes and pops interleaved: the tail becomes the head when the head runs dry.
        for round in 0..20 {
            for _ in 0..(CHUNK as u64 + round * 37) {
                r.push_back(entry(next), None, &mut chunks);
                next += 1;
            }
            // About 12 bytes an entry, with room to grow (not the 64 of a decoded one).
            let n = r.in_memory();
            assert!(
                r.in_memory_bytes() < 32 * n.max(64),
                "{} bytes for {n} entries",
                r.in_memory_bytes()
            );
            for _ in 0..(CHUNK as u64 / 2 + round * 41) {
                let Some(p) = r.pop_front() else { break };
                assert_eq!(format!("{p:?}"), format!("{:?}", entry(want)));
                want += 1;
            }
        }
        let (rest, spilled) = r.drain();
        assert!(spilled.is_empty());
        for p in rest {
            assert_eq!(p.seq, want);
            want += 1;
        }
        assert_eq!(want, next);
        assert!(r.is_empty());
    }
}
