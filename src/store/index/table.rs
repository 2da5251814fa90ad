//! A segment's index table: read and checked at recovery, and read again by the reader thread, which looks
//! a queue's next block up in it long after (an index file never changes once written).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use tracing::warn;

use super::{
    path, table_crc, u32_at, u64_at, IndexBlock, RecoveredBlock, BLOCK, BLOCK_ROW, FILE_HEADER,
    MAGIC, RECOVERED_HEAD, VERSION,
};

/// A segment's index table, read at recovery.
pub(crate) struct Table {
    pub slots: u32,
    pub max_id: u64,
    pub groups: Vec<(String, Vec<RecoveredBlock>)>,
}

/// A segment's index table as it is on disk, checked: what the reader thread looks a queue's next blocks up
/// in, long after recovery read it (an index file never changes once written).
pub(crate) struct RawTable {
    id: u32,
    slots: u32,
    max_id: u64,
    table_off: u64,
    bytes: Vec<u8>,
    /// Each group's queue name hashed, with where the group starts, by hash: a lookup of one queue among
    /// a thousand groups is a binary search, not a walk past every name.
    by_queue: Vec<(u64, u32)>,
}

fn queue_hash(q: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::default().hash_one(q)
}

/// Reads segment `id`'s index table, if it has a valid one for the segment as it is (`seg_len` bytes).
pub(crate) fn read_table(dir: &Path, id: u32, seg_len: u64) -> Option<Table> {
    let p = path(dir, id);
    let raw = match read_raw_table(dir, id, seg_len) {
        Ok(raw) => raw,
        Err(Some(reason)) => {
            warn!(index = %p.display(), reason, "message store: ignoring index file; scanning its segment");
            return None;
        }
        Err(None) => return None,
    };
    let table = parse_table(&raw);
    if table.is_none() {
        warn!(index = %p.display(), "message store: undecodable index table; scanning its segment");
    }
    table
}

/// Segment `id`'s index table, checked against its header and the segment (`Err(None)`: there is no index,
/// or it cannot be read; `Err(Some(why))`: it is not valid).
pub(crate) fn read_raw_table(
    dir: &Path,
    id: u32,
    seg_len: u64,
) -> Result<RawTable, Option<&'static str>> {
    let file = File::open(path(dir, id)).map_err(|_| None)?;
    let file_len = file.metadata().map_err(|_| None)?.len();
    let mut h = [0u8; FILE_HEADER];
    file.read_exact_at(&mut h, 0).map_err(|_| None)?;
    if h[..8] != MAGIC || u16::from_le_bytes([h[8], h[9]]) != VERSION {
        return Err(Some("not an index of this version"));
    }
    if u32_at(&h, 12) != Some(id) || u64_at(&h, 16) != Some(seg_len) {
        return Err(Some(
            "index of another segment, or of the segment as it was",
        ));
    }
    let field = |v: Option<u64>| v.ok_or(Some("short header"));
    let slots = field(u32_at(&h, 24).map(u64::from))? as u32;
    let table_len = field(u32_at(&h, 28).map(u64::from))?;
    let table_off = field(u64_at(&h, 32))?;
    let table_crc = field(u32_at(&h, 40).map(u64::from))? as u32;
    let max_id = field(u64_at(&h, 48))?;
    if table_off < FILE_HEADER as u64 || table_off.checked_add(table_len) != Some(file_len) {
        return Err(Some("index file of the wrong length"));
    }
    let mut bytes = vec![0u8; table_len as usize];
    file.read_exact_at(&mut bytes, table_off)
        .map_err(|_| None)?;
    if self::table_crc(&h, &bytes) != table_crc {
        return Err(Some("index table checksum mismatch"));
    }
    let mut t = RawTable {
        id,
        slots,
        max_id,
        table_off,
        bytes,
        by_queue: Vec::new(),
    };
    t.by_queue = t.group_starts();
    Ok(t)
}

fn parse_table(raw: &RawTable) -> Option<Table> {
    let t = &raw.bytes;
    let n = u32_at(t, 0)? as usize;
    let mut at = 4;
    let mut groups = Vec::with_capacity(n.min(t.len() / 8));
    let mut total = 0u64;
    let mut seen = crate::FastSet::default();
    for _ in 0..n {
        let (q, rows) = raw.group_at(&mut at)?;
        // One group per queue: a second would be handed out past the marks the first used up.
        if !seen.insert(q) {
            return None;
        }
        let mut blocks: Vec<RecoveredBlock> = Vec::with_capacity(rows.len() / BLOCK_ROW);
        for r in rows.chunks_exact(BLOCK_ROW) {
            let b = raw.row(r)?;
            if blocks.last().is_some_and(|p| {
                p.block.last_slot >= b.block.first_slot
                    || p.block.last_record > b.block.first_record
            }) {
                return None;
            }
            total += u64::from(b.block.count);
            blocks.push(b);
        }
        groups.push((q.to_string(), blocks));
    }
    // Every slot is one queue's entry: the counts must add up.
    (at == t.len() && total == u64::from(raw.slots)).then_some(Table {
        slots: raw.slots,
        max_id: raw.max_id,
        groups,
    })
}

impl RawTable {
    /// The group at `at` (its queue and its rows), `at` moved past it.
    fn group_at(&self, at: &mut usize) -> Option<(&str, &[u8])> {
        let t = &self.bytes;
        let qlen = usize::from(u16::from_le_bytes(t.get(*at..*at + 2)?.try_into().ok()?));
        let q = std::str::from_utf8(t.get(*at + 2..*at + 2 + qlen)?).ok()?;
        *at += 2 + qlen;
        let nb = u32_at(t, *at)? as usize;
        *at += 4;
        let rows = t.get(*at..at.checked_add(nb.checked_mul(BLOCK_ROW)?)?)?;
        *at += rows.len();
        Some((q, rows))
    }

    /// A block's row, checked against the file.
    fn row(&self, r: &[u8]) -> Option<RecoveredBlock> {
        let v = |i: usize| u32_at(r, i * 4);
        let block = IndexBlock {
            segment: self.id,
            at: v(0)?,
            len: v(1)?,
            count: v(2)?,
            crc: v(3)?,
            first_slot: v(4)?,
            last_slot: v(5)?,
            first_record: v(6)?,
            last_record: v(7)?,
            skip: 0,
            until: self.id,
        };
        if u64::from(block.at) < FILE_HEADER as u64
            || u64::from(block.at) + u64::from(block.len) > self.table_off
            || block.count == 0
            || block.count as usize > BLOCK
            || block.first_slot > block.last_slot
            || block.count - 1 > block.last_slot - block.first_slot
            || block.last_slot >= self.slots
            || block.first_record > block.last_record
        {
            return None;
        }
        let mut first_head = [0u8; RECOVERED_HEAD];
        first_head.copy_from_slice(r.get(40..40 + RECOVERED_HEAD)?);
        Some(RecoveredBlock {
            block,
            messages: block.count,
            weight: u64_at(r, 32)?,
            first_head,
        })
    }

    /// Where each group starts, with its queue's hash, sorted by hash (as far as the table decodes).
    fn group_starts(&self) -> Vec<(u64, u32)> {
        let n = u32_at(&self.bytes, 0).unwrap_or(0) as usize;
        let mut v = Vec::with_capacity(n.min(self.bytes.len() / 8));
        let mut at = 4;
        for _ in 0..n {
            let start = at as u32;
            let Some((q, _)) = self.group_at(&mut at) else {
                break;
            };
            v.push((queue_hash(q), start));
        }
        v.sort_unstable();
        v
    }

    /// `queue`'s block after the one at `after` in this segment (its first with `None`), if any.
    pub(crate) fn next_block(&self, queue: &str, after: Option<u32>) -> Option<RecoveredBlock> {
        let h = queue_hash(queue);
        let from = self.by_queue.partition_point(|(k, _)| *k < h);
        for &(_, start) in self.by_queue[from..].iter().take_while(|(k, _)| *k == h) {
            let mut at = start as usize;
            let Some((q, rows)) = self.group_at(&mut at) else {
                continue;
            };
            if q != queue {
                continue;
            }
            let mut rows = rows.chunks_exact(BLOCK_ROW);
            if let Some(after) = after {
                rows.position(|r| u32_at(r, 0) == Some(after))?;
            }
            return self.row(rows.next()?);
        }
        None
    }
}
