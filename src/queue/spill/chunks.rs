//! The spilled chunks of a run, in order, held encoded: each as deltas from the one before in LEB128 varints
//! (under 20 bytes for a recovered block instead of an 88-byte [`Spilled`]). A recovered backlog once had a
//! chunk per segment for each queue (100 million messages over a thousand queues, in 216 segments, kept
//! 216,000: 17 MB as structs, 4.3 MB encoded); it now comes as a run of blocks per queue, one chunk, unless
//! acks or deliveries before the restart split it.

use super::{delta, undelta, Source, Spilled};
use crate::store::{IndexBlock, Location};
use crate::varint::{get_varint, put_varint};

/// The most bytes one encoded chunk takes (a tag, four crc bytes and at most 15 varints).
const MAX_CHUNK: usize = 1 + 4 + 15 * 10;
/// The least the buffer grows by.
const GROWTH: usize = 256;

const TAG_CHUNK: u8 = 0;
const TAG_INDEX: u8 = 1;
const TAG_INDEX_REDELIVERED: u8 = 2;
/// With an index tag: the block's `skip` follows (what is left of a block read in part).
const SKIPPED: u8 = 4;

/// The previous chunk's fields the next one is encoded against.
#[derive(Debug, Default, Clone, Copy)]
struct Last {
    seq: u64,
    seg: u64,
    id: u64,
    off: u64,
    exp: u64,
    body: u64,
    // A queue's blocks in successive segments sit at about the same places in their index files and
    // segments, and span about as many slots and records: each is held as a delta from the last block's.
    at: u64,
    blen: u64,
    slot: u64,
    slot_span: u64,
    record: u64,
    record_span: u64,
    count: u64,
}

#[derive(Debug, Default)]
pub struct Chunks {
    bytes: Vec<u8>,
    /// Where the chunk after `front` starts, and the decoding state there.
    pos: usize,
    dec: Last,
    /// The encoding state after the last chunk appended.
    enc: Last,
    front: Option<Spilled>,
    /// Put back before `front`: what is left of a recovered block whose first part was read. Boxed: a level
    /// of every queue holds a `Chunks`, and one rarely has it.
    returned: Option<Box<Spilled>>,
    len: usize,
}

impl Chunks {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn front(&self) -> Option<&Spilled> {
        self.returned.as_deref().or(self.front.as_ref())
    }

    /// The last chunk's last `seq`.
    pub fn back_seq(&self) -> Option<u64> {
        match (&self.front, &self.returned) {
            (Some(_), _) => Some(self.enc.seq),
            (None, r) => r.as_ref().map(|r| r.last_seq),
        }
    }

    /// Bytes held.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity() + self.returned.as_ref().map_or(0, |_| size_of::<Spilled>())
    }

    /// Gives back the room past what is held (and before it: what was taken from the front).
    pub fn shrink_to_fit(&mut self) {
        self.bytes.drain(..self.pos);
        self.pos = 0;
        self.bytes.shrink_to_fit();
    }

    /// Put `s` back in front: it was the front chunk (taken to be read) and is now what is left of it.
    pub fn push_front(&mut self, s: Spilled) {
        if let Some(r) = self.returned.replace(Box::new(s)) {
            // Only what was just taken comes back (a level reads one chunk at a time), so nothing is there.
            // Were it otherwise, `s` is kept, if out of order, rather than lost.
            tracing::error!(
                first_seq = s.first_seq,
                "a spilled chunk put back before another; it goes to the back"
            );
            self.returned = Some(r);
            self.push_back(s);
            return;
        }
        self.len += 1;
    }

    pub fn push_back(&mut self, s: Spilled) {
        // Grown by a quarter, not doubled: a thousand deep queues each hold one.
        if self.bytes.capacity() - self.bytes.len() < MAX_CHUNK {
            self.bytes.reserve_exact((self.bytes.len() / 4).max(GROWTH));
        }
        put(&mut self.bytes, &mut self.enc, &s);
        self.len += 1;
        if self.front.is_none() {
            self.front = get(&self.bytes, &mut self.pos, &mut self.dec);
            debug_assert!(self.front.is_some(), "a chunk just encoded decodes");
        }
    }

    pub fn pop_front(&mut self) -> Option<Spilled> {
        if let Some(r) = self.returned.take() {
            self.len -= 1;
            return Some(*r);
        }
        let out = self.front.take()?;
        self.len -= 1;
        if self.len > 0 {
            self.front = get(&self.bytes, &mut self.pos, &mut self.dec);
            if self.front.is_none() {
                // Only this module encodes these bytes.
                tracing::error!(lost = self.len, "undecodable spilled chunk list");
                self.len = 0;
            }
        }
        if self.len == 0 {
            *self = Chunks::default();
        } else if self.pos >= 4096 && self.pos * 2 >= self.bytes.len() {
            self.bytes.drain(..self.pos);
            self.pos = 0;
        }
        Some(out)
    }

    /// Take them all, in order.
    pub fn drain(&mut self) -> Vec<Spilled> {
        let mut out = Vec::with_capacity(self.len);
        while let Some(s) = self.pop_front() {
            out.push(s);
        }
        out
    }
}

fn put(out: &mut Vec<u8>, last: &mut Last, s: &Spilled) {
    match s.source {
        Source::Chunk { id, loc } => {
            out.push(TAG_CHUNK);
            put_varint(out, delta(last.id, id));
            put_varint(out, delta(last.seg, u64::from(loc.segment)));
            put_varint(out, delta(last.off, u64::from(loc.offset)));
            put_varint(out, u64::from(loc.len));
            put_varint(out, u64::from(loc.slot));
            last.id = id;
            last.seg = u64::from(loc.segment);
            last.off = u64::from(loc.offset);
        }
        Source::Index { block, redelivered } => {
            let tag = if redelivered {
                TAG_INDEX_REDELIVERED
            } else {
                TAG_INDEX
            };
            if block.skip > 0 {
                out.push(tag | SKIPPED);
                put_varint(out, u64::from(block.skip));
            } else {
                out.push(tag);
            }
            let slot_span = delta(u64::from(block.first_slot), u64::from(block.last_slot));
            let record_span = delta(u64::from(block.first_record), u64::from(block.last_record));
            put_varint(out, delta(last.seg, u64::from(block.segment)));
            put_varint(out, delta(u64::from(block.segment), u64::from(block.until)));
            put_varint(out, delta(last.at, u64::from(block.at)));
            put_varint(out, delta(last.blen, u64::from(block.len)));
            put_varint(out, delta(last.count, u64::from(block.count)));
            // The run's from the block's.
            put_varint(out, delta(u64::from(block.count), u64::from(s.count)));
            out.extend_from_slice(&block.crc.to_le_bytes());
            put_varint(out, delta(last.slot, u64::from(block.first_slot)));
            put_varint(out, delta(last.slot_span, slot_span));
            put_varint(out, delta(last.record, u64::from(block.first_record)));
            put_varint(out, delta(last.record_span, record_span));
            last.seg = u64::from(block.segment);
            last.at = u64::from(block.at);
            last.blen = u64::from(block.len);
            last.slot = u64::from(block.first_slot);
            last.slot_span = slot_span;
            last.record = u64::from(block.first_record);
            last.record_span = record_span;
            last.count = u64::from(block.count);
        }
    }
    if let Source::Chunk { .. } = s.source {
        put_varint(out, u64::from(s.count));
    }
    put_varint(out, delta(last.seq, s.first_seq));
    // Consecutive, as a block's always are: zero.
    put_varint(out, delta(contiguous_end(s.first_seq, s.count), s.last_seq));
    put_varint(out, delta(last.exp, s.first_expires));
    put_varint(out, delta(last.body, s.body_bytes));
    last.seq = s.last_seq;
    last.exp = s.first_expires;
    last.body = s.body_bytes;
}

/// The last `seq` of `count` consecutive ones from `first`.
fn contiguous_end(first: u64, count: u32) -> u64 {
    first.wrapping_add(u64::from(count)).wrapping_sub(1)
}

fn get(b: &[u8], pos: &mut usize, last: &mut Last) -> Option<Spilled> {
    let small = |v: u64| u32::try_from(v).ok();
    let tag = *b.get(*pos)?;
    *pos += 1;
    let (source, count) = match tag {
        TAG_CHUNK => {
            let id = undelta(last.id, get_varint(b, pos)?);
            let seg = undelta(last.seg, get_varint(b, pos)?);
            let off = undelta(last.off, get_varint(b, pos)?);
            let loc = Location {
                segment: small(seg)?,
                offset: small(off)?,
                len: small(get_varint(b, pos)?)?,
                slot: small(get_varint(b, pos)?)?,
            };
            last.id = id;
            last.seg = seg;
            last.off = off;
            let count = small(get_varint(b, pos)?)?;
            (Source::Chunk { id, loc }, count)
        }
        t if t & !SKIPPED == TAG_INDEX || t & !SKIPPED == TAG_INDEX_REDELIVERED => {
            let skip = if t & SKIPPED != 0 {
                small(get_varint(b, pos)?)?
            } else {
                0
            };
            let seg = undelta(last.seg, get_varint(b, pos)?);
            let until = undelta(seg, get_varint(b, pos)?);
            let at = undelta(last.at, get_varint(b, pos)?);
            let blen = undelta(last.blen, get_varint(b, pos)?);
            let block_count = undelta(last.count, get_varint(b, pos)?);
            let count = undelta(block_count, get_varint(b, pos)?);
            let crc = u32::from_le_bytes(b.get(*pos..*pos + 4)?.try_into().ok()?);
            *pos += 4;
            let first_slot = undelta(last.slot, get_varint(b, pos)?);
            let slot_span = undelta(last.slot_span, get_varint(b, pos)?);
            let first_record = undelta(last.record, get_varint(b, pos)?);
            let record_span = undelta(last.record_span, get_varint(b, pos)?);
            last.seg = seg;
            last.at = at;
            last.blen = blen;
            last.slot = first_slot;
            last.slot_span = slot_span;
            last.record = first_record;
            last.record_span = record_span;
            last.count = block_count;
            (
                Source::Index {
                    block: IndexBlock {
                        segment: small(seg)?,
                        at: small(at)?,
                        len: small(blen)?,
                        count: small(block_count)?,
                        crc,
                        first_slot: small(first_slot)?,
                        last_slot: small(undelta(first_slot, slot_span))?,
                        first_record: small(first_record)?,
                        last_record: small(undelta(first_record, record_span))?,
                        skip,
                        until: small(until)?,
                    },
                    redelivered: t & !SKIPPED == TAG_INDEX_REDELIVERED,
                },
                small(count)?,
            )
        }
        _ => return None,
    };
    let first_seq = undelta(last.seq, get_varint(b, pos)?);
    let last_seq = undelta(contiguous_end(first_seq, count), get_varint(b, pos)?);
    let first_expires = undelta(last.exp, get_varint(b, pos)?);
    let body_bytes = undelta(last.body, get_varint(b, pos)?);
    last.seq = last_seq;
    last.exp = first_expires;
    last.body = body_bytes;
    Some(Spilled {
        source,
        count,
        first_seq,
        last_seq,
        first_expires,
        body_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(seg: u32, first_seq: u64, redelivered: bool) -> Spilled {
        Spilled {
            source: Source::Index {
                block: IndexBlock {
                    segment: seg,
                    at: 1 << 20 | seg,
                    len: 4000 + seg,
                    count: 463,
                    crc: 0xdead_beef ^ seg,
                    first_slot: 7,
                    last_slot: 3,
                    first_record: 100 * seg,
                    last_record: 100 * seg + 462_000,
                    skip: if seg % 5 == 1 { seg } else { 0 },
                    until: seg + seg % 3,
                },
                redelivered,
            },
            count: 463,
            first_seq,
            last_seq: first_seq + 462,
            first_expires: if seg.is_multiple_of(3) {
                u64::MAX
            } else {
                1_700_000_000_000 + u64::from(seg)
            },
            body_bytes: 463 * 16,
        }
    }

    fn chunk(id: u64, first_seq: u64) -> Spilled {
        Spilled {
            source: Source::Chunk {
                id,
                loc: Location {
                    segment: (id % 5) as u32,
                    offset: u32::MAX - id as u32,
                    len: 12_000,
                    slot: u32::MAX,
                },
            },
            count: 1024,
            first_seq,
            last_seq: first_seq + 5000,
            first_expires: 0,
            body_bytes: u64::MAX / 3,
        }
    }

    #[test]
    fn a_queues_recovered_blocks_cost_a_few_bytes_each() {
        // One queue of a thousand filled side by side: its block in each segment sits at about the same
        // place in the segment's index, with about as many entries, slots and records.
        let (mut c, mut want, mut seq) = (Chunks::default(), Vec::new(), 0);
        for seg in 0..216u32 {
            let count = 463 + seg % 2;
            let s = Spilled {
                source: Source::Index {
                    block: IndexBlock {
                        segment: seg + 1,
                        at: 2_900_000 + (seg % 3) * 8,
                        len: 5_800 + seg % 5,
                        count,
                        crc: 0x9e37_79b9_u32.wrapping_mul(seg),
                        first_slot: 417 + seg % 4,
                        last_slot: 462_417 + seg % 7,
                        first_record: 417 + seg % 4,
                        last_record: 462_417 + seg % 7,
                        skip: 0,
                        until: seg + 1,
                    },
                    redelivered: true,
                },
                count,
                first_seq: seq,
                last_seq: seq + u64::from(count) - 1,
                first_expires: u64::MAX,
                body_bytes: u64::from(count) * 16,
            };
            seq += u64::from(count);
            c.push_back(s);
            want.push(s);
        }
        assert!(c.bytes.len() <= 216 * 20, "{} bytes", c.bytes.len());
        // Recovery done, the slack goes, and what is held reads back the same.
        let first = c.pop_front().unwrap();
        assert!(same(&first, &want.remove(0)));
        c.shrink_to_fit();
        assert_eq!(c.capacity(), c.bytes.len());
        for (a, b) in c.drain().iter().zip(&want) {
            assert!(same(a, b));
        }
    }

    fn same(a: &Spilled, b: &Spilled) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn chunks_come_back_as_they_went_in_and_small() {
        let mut want = Vec::new();
        let mut seq = 0;
        for seg in 0..3000u32 {
            want.push(index(seg, seq, seg % 2 == 0));
            seq += 463;
            if seg % 7 == 0 {
                want.push(chunk(u64::from(seg) + (1 << 63), seq));
                seq += 5001;
            }
        }
        let mut c = Chunks::default();
        for (i, s) in want.iter().enumerate() {
            c.push_back(*s);
            assert_eq!(c.back_seq(), Some(s.last_seq));
            assert!(same(c.front().unwrap(), &want[0]));
            assert_eq!(c.len(), i + 1);
        }
        assert!(
            c.capacity() < want.len() * 48,
            "{} bytes for {} chunks",
            c.capacity(),
            want.len()
        );
        // Taken from the front while more come at the back.
        let before = c.bytes.len();
        for s in &want[..2000] {
            assert!(same(&c.pop_front().unwrap(), s));
        }
        assert!(c.bytes.len() < before, "the taken front was let go");
        c.push_back(index(9999, seq, false));
        let rest = c.drain();
        assert_eq!(rest.len(), want.len() - 2000 + 1);
        for (a, b) in rest.iter().zip(&want[2000..]) {
            assert!(same(a, b));
        }
        assert!(same(rest.last().unwrap(), &index(9999, seq, false)));
        assert!(c.is_empty() && c.front().is_none() && c.pop_front().is_none());
        assert_eq!(c.capacity(), 0, "an emptied list lets its buffer go");
        assert_eq!(c.back_seq(), None);
        // And starts afresh.
        c.push_back(chunk(7, 3));
        assert!(same(&c.pop_front().unwrap(), &chunk(7, 3)));
    }

    #[test]
    fn what_is_left_of_a_chunk_goes_back_in_front() {
        let mut c = Chunks::default();
        c.push_front(index(1, 0, false));
        assert_eq!((c.len(), c.back_seq()), (1, Some(462)));
        assert!(same(c.front().unwrap(), &index(1, 0, false)));
        c.push_back(index(2, 463, false));
        c.push_back(index(3, 926, true));
        let taken = c.pop_front().unwrap();
        assert!(same(&taken, &index(1, 0, false)));
        let taken = c.pop_front().unwrap();
        assert!(same(&taken, &index(2, 463, false)));
        // Its first part was read: the rest goes back before the next.
        let mut rest = taken;
        if let Source::Index { block, .. } = &mut rest.source {
            block.skip = 256;
        }
        c.push_front(rest);
        assert_eq!((c.len(), c.back_seq()), (2, Some(926 + 462)));
        assert!(same(c.front().unwrap(), &rest));
        let all = c.drain();
        assert!(same(&all[0], &rest) && same(&all[1], &index(3, 926, true)));
        assert!(c.is_empty() && c.front().is_none());
    }
}
