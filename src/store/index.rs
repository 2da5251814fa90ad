//! Index files: what recovery needs of a sealed msg segment without reading it.
//!
//! Once a msg segment has been sealed for a while, the indexer thread scans it once and writes
//! `msg-N.idx`: for each queue with records in the segment, that queue's entries (slot, record position,
//! message id, the payload's first bytes) in checksummed blocks of up to [`BLOCK`], and a table of the
//! blocks. Recovery reads the table instead of the segment and hands each queue the first of a run of its
//! blocks as a placeholder; a queue reads a block's entries when its head reaches it, and the reader finds
//! the run's next block in the tables again. So a restart reads no message and a queue holds nothing per
//! message or per segment, only per run. An index is a cache of its segment: a missing, stale or damaged table means
//! the segment is scanned as before, and a damaged block is rebuilt by scanning the part of the segment it
//! covers.
//!
//! All integers are little-endian.
//!
//! ```text
//! file    msg-0000000007.idx (written as .idx.tmp, synced, renamed)
//! header  56 bytes: magic "WRNINDEX" | u16 version (1) | u16 0 | u32 segment id | u64 segment length |
//!         u32 slots | u32 table length | u64 table offset | u32 crc | u32 0 | u64 highest msg id
//!         (crc: of the header without its magic and crc field, then the table)
//! blocks  entries, block after block
//! table   u32 groups | per group: u16 qlen | queue | u32 blocks | per block: u32 offset | u32 length |
//!         u32 count | u32 crc | u32 first slot | u32 last slot | u32 first record | u32 last record |
//!         u64 weight | 24 bytes: the first entry's head
//! entry   varint slot - previous slot | varint zigzag(record offset - previous record's end) |
//!         varint record length | varint zigzag(msg id - previous id) |
//!         3-byte mask of the head bytes that differ from the previous head's, then those bytes
//! ```

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::format::{self, get_varint, put_varint, Scan, Scanner, RECORD_HEADER_LEN};
use super::{Shared, StoreError, RECOVERED_HEAD};
use crate::varint::{unzigzag, zigzag};
use crate::FastMap as HashMap;

/// Entries per block at most (a queue reads one back in parts, see `BlockPart`).
pub(crate) const BLOCK: usize = 1024;
/// A sealed segment is indexed once it has been sealed this long: in a queue that keeps up, it is gone by
/// then and never costs a scan.
pub(crate) const SEALED_FOR: Duration = Duration::from_secs(2);
/// An index is written in pieces of about this size as it is built.
const WRITE_CHUNK: usize = 256 << 10;
const MAGIC: [u8; 8] = *b"WRNINDEX";
const VERSION: u16 = 1;
const FILE_HEADER: usize = 56;
/// The most bytes one encoded entry takes: four varints, the head's mask and all its bytes.
const MAX_ENTRY: usize = 4 * 10 + 3 + RECOVERED_HEAD;
/// A block's row in the table, after its queue.
const BLOCK_ROW: usize = 4 * 8 + 8 + RECOVERED_HEAD;

type Head = [u8; RECOVERED_HEAD];

/// A block of one queue's entries in one segment's index: what a queue keeps for messages it has not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexBlock {
    pub segment: u32,
    pub(crate) at: u32,
    pub(crate) len: u32,
    /// Entries in the block (all live when recovery handed it out).
    pub count: u32,
    pub(crate) crc: u32,
    pub(crate) first_slot: u32,
    pub(crate) last_slot: u32,
    pub(crate) first_record: u32,
    pub(crate) last_record: u32,
    /// Entries at its front already read back (a block read in parts, see [`super::BlockPart`]).
    pub skip: u32,
    /// The last segment of the run this block belongs to (see [`RecoveredBlock::messages`]): the queue's
    /// blocks in this segment after this one, then in later segments up to this one, follow it.
    pub until: u32,
}

/// A run of blocks as recovery hands it out: one queue's blocks in consecutive indexed segments, its first
/// block here and the rest found by the store as the queue reads on (a queue holds a run, not a row per
/// block: 100 million messages over a thousand queues made 216,000 rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveredBlock {
    pub block: IndexBlock,
    /// Entries in the run from `block` on (`block.count` for a block alone), all live when it was handed out.
    pub messages: u32,
    /// The sum of the store's `weigh` over the run's entries (payload bytes by default).
    pub weight: u64,
    /// The first entry's payload head (see [`super::RecoveredMessage::head`]).
    pub first_head: Head,
}

/// One entry of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub slot: u32,
    pub offset: u32,
    pub len: u32,
    pub msg_id: u64,
    pub head: Head,
}

pub(crate) fn path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("msg-{id:010}.idx"))
}

fn tmp_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("msg-{id:010}.idx.tmp"))
}

/// The segment id of an index file name; `Some((id, true))` for a leftover temporary one.
pub(crate) fn parse_name(name: &str) -> Option<(u32, bool)> {
    let (stem, tmp) = match name.strip_suffix(".idx.tmp") {
        Some(s) => (s, true),
        None => (name.strip_suffix(".idx")?, false),
    };
    let digits = stem.strip_prefix("msg-")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(|id| (id, tmp))
}

/// The encoding state between entries of one block.
#[derive(Default, Clone, Copy)]
struct Prev {
    slot: u32,
    end: u64,
    msg_id: u64,
    head: Head,
}

impl Prev {
    /// The state after entry `e`.
    fn after(e: &Entry) -> Prev {
        Prev {
            slot: e.slot,
            end: u64::from(e.offset) + u64::from(e.len),
            msg_id: e.msg_id,
            head: e.head,
        }
    }
}

fn put_entry(out: &mut Vec<u8>, prev: &mut Prev, e: &Entry) {
    put_varint(out, u64::from(e.slot.wrapping_sub(prev.slot)));
    put_varint(
        out,
        zigzag(i64::from(e.offset).wrapping_sub(prev.end as i64)),
    );
    put_varint(out, u64::from(e.len));
    put_varint(out, zigzag(e.msg_id.wrapping_sub(prev.msg_id) as i64));
    let mut mask = 0u32;
    for i in 0..RECOVERED_HEAD {
        if e.head[i] != prev.head[i] {
            mask |= 1 << i;
        }
    }
    out.extend_from_slice(&mask.to_le_bytes()[..3]);
    for i in 0..RECOVERED_HEAD {
        if mask & (1 << i) != 0 {
            out.push(e.head[i]);
        }
    }
    *prev = Prev::after(e);
}

fn get_entry(b: &[u8], pos: &mut usize, prev: &mut Prev) -> Option<Entry> {
    let slot = prev
        .slot
        .checked_add(u32::try_from(get_varint(b, pos)?).ok()?)?;
    let offset =
        u32::try_from((prev.end as i64).checked_add(unzigzag(get_varint(b, pos)?))?).ok()?;
    let len = u32::try_from(get_varint(b, pos)?).ok()?;
    let msg_id = prev
        .msg_id
        .wrapping_add(unzigzag(get_varint(b, pos)?) as u64);
    let m = b.get(*pos..*pos + 3)?;
    let mask = u32::from_le_bytes([m[0], m[1], m[2], 0]);
    *pos += 3;
    let mut head = prev.head;
    for (i, h) in head.iter_mut().enumerate() {
        if mask & (1 << i) != 0 {
            *h = *b.get(*pos)?;
            *pos += 1;
        }
    }
    let e = Entry {
        slot,
        offset,
        len,
        msg_id,
        head,
    };
    *prev = Prev::after(&e);
    Some(e)
}

fn crc(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

/// The payload's first bytes, zero-padded.
pub(crate) fn head_of(payload: &[u8]) -> Head {
    let mut head = [0u8; RECOVERED_HEAD];
    let n = payload.len().min(RECOVERED_HEAD);
    head[..n].copy_from_slice(&payload[..n]);
    head
}

/// One queue's block being filled.
struct Building {
    bytes: Vec<u8>,
    prev: Prev,
    count: u32,
    first: Option<Entry>,
    pub(crate) last_slot: u32,
    pub(crate) last_record: u32,
    weight: u64,
}

impl Building {
    fn new() -> Self {
        Building {
            bytes: Vec::new(),
            prev: Prev::default(),
            count: 0,
            first: None,
            last_slot: 0,
            last_record: 0,
            weight: 0,
        }
    }
}

/// Builds an index from a segment's records, in order.
pub(crate) struct Builder {
    weigh: Option<fn(&Head) -> u64>,
    /// The file's bytes from `base` on, not yet written.
    out: Vec<u8>,
    base: u64,
    groups: Vec<(String, Vec<RecoveredBlock>, Building)>,
    by_name: HashMap<String, usize>,
    last: Option<usize>,
    slots: u32,
    max_id: u64,
}

impl Builder {
    pub(crate) fn new(weigh: Option<fn(&Head) -> u64>) -> Self {
        Builder {
            weigh,
            out: vec![0u8; FILE_HEADER],
            base: 0,
            groups: Vec::new(),
            by_name: HashMap::default(),
            last: None,
            slots: 0,
            max_id: 0,
        }
    }

    /// Adds a publish record at `offset` of `len` bytes (header included).
    pub(crate) fn record(
        &mut self,
        offset: u32,
        len: u32,
        targets: impl Iterator<Item = (impl AsRef<str>, u64)>,
        payload: &[u8],
    ) {
        let head = head_of(payload);
        let weight = match self.weigh {
            Some(w) => w(&head),
            None => payload.len() as u64,
        };
        for (q, msg_id) in targets {
            let q = q.as_ref();
            let slot = self.slots;
            self.slots = self.slots.saturating_add(1);
            self.max_id = self.max_id.max(msg_id);
            let g = match self.last {
                Some(g) if self.groups[g].0 == q => g,
                _ => match self.by_name.get(q) {
                    Some(&g) => g,
                    None => {
                        self.groups
                            .push((q.to_string(), Vec::new(), Building::new()));
                        self.by_name.insert(q.to_string(), self.groups.len() - 1);
                        self.groups.len() - 1
                    }
                },
            };
            self.last = Some(g);
            let e = Entry {
                slot,
                offset,
                len,
                msg_id,
                head,
            };
            let (_, blocks, b) = &mut self.groups[g];
            // Grown by a quarter: a segment shared by a thousand queues holds a few hundred entries of each
            // until it is closed, and doubling left half of each buffer unused.
            if b.bytes.capacity() - b.bytes.len() < MAX_ENTRY {
                b.bytes.reserve_exact((b.bytes.len() / 4).max(256));
            }
            put_entry(&mut b.bytes, &mut b.prev, &e);
            b.first.get_or_insert(e);
            b.count += 1;
            b.last_slot = slot;
            b.last_record = offset;
            b.weight += weight;
            if b.count as usize >= BLOCK {
                flush(&mut self.out, self.base, blocks, b);
            }
        }
    }

    /// Writes the bytes built so far (at their offset in the file) once there are at least `min` of them:
    /// a segment's index is written as it is built, not held whole in memory. The buffer is kept for the next
    /// piece.
    pub(crate) fn put_bytes<E>(
        &mut self,
        min: usize,
        put: &mut impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.out.len() < min {
            return Ok(());
        }
        put(self.base, &self.out)?;
        self.base += self.out.len() as u64;
        self.out.clear();
        Ok(())
    }

    /// Writes the rest of the file for segment `id` of `seg_len` bytes, then its header (at 0; the first
    /// bytes written left room for it). Returns the file's length.
    pub(crate) fn finish<E>(
        mut self,
        id: u32,
        seg_len: u64,
        put: &mut impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<usize, E> {
        for g in 0..self.groups.len() {
            let (_, blocks, b) = &mut self.groups[g];
            flush(&mut self.out, self.base, blocks, b);
            self.put_bytes(WRITE_CHUNK, put)?;
        }
        let mut table = Vec::new();
        table.extend_from_slice(&(self.groups.len() as u32).to_le_bytes());
        for (q, blocks, _) in &self.groups {
            table.extend_from_slice(&(q.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
            table.extend_from_slice(&q.as_bytes()[..q.len().min(usize::from(u16::MAX))]);
            table.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
            for rb in blocks.iter() {
                let k = &rb.block;
                for v in [
                    k.at,
                    k.len,
                    k.count,
                    k.crc,
                    k.first_slot,
                    k.last_slot,
                    k.first_record,
                    k.last_record,
                ] {
                    table.extend_from_slice(&v.to_le_bytes());
                }
                table.extend_from_slice(&rb.weight.to_le_bytes());
                table.extend_from_slice(&rb.first_head);
            }
        }
        let table_off = self.base + self.out.len() as u64;
        let mut h = [0u8; FILE_HEADER];
        h[..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&id.to_le_bytes());
        h[16..24].copy_from_slice(&seg_len.to_le_bytes());
        h[24..28].copy_from_slice(&self.slots.to_le_bytes());
        h[28..32].copy_from_slice(&(table.len() as u32).to_le_bytes());
        h[32..40].copy_from_slice(&table_off.to_le_bytes());
        h[48..56].copy_from_slice(&self.max_id.to_le_bytes());
        let sum = table_crc(&h, &table);
        h[40..44].copy_from_slice(&sum.to_le_bytes());
        self.out.extend_from_slice(&table);
        let end = self.base as usize + self.out.len();
        self.put_bytes(0, put)?;
        put(0, &h)?;
        Ok(end)
    }
}

/// Closes a queue's block being built (if it has entries) and appends its bytes to `out`.
fn flush(out: &mut Vec<u8>, base: u64, blocks: &mut Vec<RecoveredBlock>, b: &mut Building) {
    let Some(first) = b.first else { return };
    // An index is far smaller than its segment, whose offsets are u32.
    let at = (base + out.len() as u64) as u32;
    out.extend_from_slice(&b.bytes);
    blocks.push(RecoveredBlock {
        block: IndexBlock {
            segment: 0,
            at,
            len: b.bytes.len() as u32,
            count: b.count,
            crc: crc(&b.bytes),
            first_slot: first.slot,
            last_slot: b.last_slot,
            first_record: first.offset,
            last_record: b.last_record,
            skip: 0,
            until: 0,
        },
        messages: b.count,
        weight: b.weight,
        first_head: first.head,
    });
    *b = Building::new();
}

/// Scans sealed segment `id` (`len` bytes) and writes its index next to it. A segment that does not scan
/// clean is not indexed.
pub(crate) fn write(
    dir: &Path,
    id: u32,
    file: &File,
    len: u64,
    weigh: Option<fn(&Head) -> u64>,
) -> Result<usize, StoreError> {
    let seg_path = dir.join(format::segment_file_name(format::SegKind::Msg, id));
    let tmp = tmp_path(dir, id);
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| StoreError::io("write index", &tmp, e))?;
    let written = build(&seg_path, &tmp, &out, id, file, len, weigh).and_then(|n| {
        out.sync_data()
            .and_then(|()| fs::rename(&tmp, path(dir, id)))
            .map_err(|e| StoreError::io("write index", &tmp, e))?;
        Ok(n)
    });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Scans the segment into `out` (the index's temporary file); returns the index's length.
fn build(
    seg_path: &Path,
    tmp: &Path,
    out: &File,
    id: u32,
    file: &File,
    len: u64,
    weigh: Option<fn(&Head) -> u64>,
) -> Result<usize, StoreError> {
    let mut put = |at: u64, bytes: &[u8]| {
        out.write_all_at(bytes, at)
            .map_err(|e| StoreError::io("write index", tmp, e))
    };
    let mut b = Builder::new(weigh);
    let mut sc = Scanner::new(file, len);
    loop {
        match sc.next().map_err(|e| StoreError::io("read", seg_path, e))? {
            Scan::End => break,
            Scan::Bad { .. } => return Err(StoreError::Invalid("segment does not scan clean")),
            Scan::Record { offset, ty, body } => {
                let pb = (ty == format::PUBLISH)
                    .then(|| format::PublishBody::decode(body))
                    .flatten()
                    .ok_or(StoreError::Invalid("segment does not scan clean"))?;
                let off = u32::try_from(offset).map_err(|_| StoreError::Invalid("offset"))?;
                b.record(
                    off,
                    (RECORD_HEADER_LEN + body.len()) as u32,
                    pb.entries(),
                    &body[pb.payload_start..],
                );
            }
        }
        b.put_bytes(WRITE_CHUNK, &mut put)?;
    }
    b.finish(id, len, &mut put)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The checksum of an index's header fields (all but the magic and the checksum itself) and table.
fn table_crc(h: &[u8; FILE_HEADER], table: &[u8]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(&h[8..40]);
    c.update(&h[44..]);
    c.update(table);
    c.finalize()
}

/// The first `limit` entries of a block (all, if it has fewer; its `skip` is the caller's), from the index
/// file, or when that cannot be read or does not check, by scanning the part of the segment the block covers
/// (`queue`'s records there).
pub(crate) fn read_entries(
    dir: &Path,
    seg: &File,
    idx: Option<&File>,
    b: &IndexBlock,
    queue: &str,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    // Without the file (`open` said so, once) the segment is scanned.
    if let Some(idx) = idx {
        match read_from_index(idx, b, limit) {
            Ok(v) => return Ok(v),
            Err(reason) => {
                warn!(index = %path(dir, b.segment).display(), at = b.at, reason, "message store: index block unreadable; scanning its part of the segment")
            }
        }
    }
    let mut v = scan_entries(dir, seg, b, queue)?;
    v.truncate(limit);
    Ok(v)
}

/// Segment `id`'s index file, opened for reading (`None`, logged: its blocks are read by scanning).
pub(crate) fn open(dir: &Path, id: u32) -> Option<File> {
    let p = path(dir, id);
    File::open(&p)
        .map_err(|e| warn!(index = %p.display(), error = %e, "message store: index file cannot be opened; its blocks are read by scanning the segment"))
        .ok()
}

fn read_from_index(file: &File, b: &IndexBlock, limit: usize) -> Result<Vec<Entry>, &'static str> {
    let mut buf = vec![0u8; b.len as usize];
    file.read_exact_at(&mut buf, u64::from(b.at))
        .map_err(|_| "cannot read")?;
    if crc(&buf) != b.crc {
        return Err("checksum mismatch");
    }
    // The checksum covers the whole block: what follows the part asked for need not be decoded.
    let n = (b.count as usize).min(limit);
    let mut out = Vec::with_capacity(n);
    let (mut pos, mut prev) = (0, Prev::default());
    for _ in 0..n {
        let e = get_entry(&buf, &mut pos, &mut prev).ok_or("undecodable entry")?;
        if e.slot < b.first_slot || e.slot > b.last_slot {
            return Err("entry outside its block");
        }
        out.push(e);
    }
    if n == b.count as usize && pos != buf.len() {
        return Err("trailing bytes");
    }
    Ok(out)
}

fn scan_entries(
    dir: &Path,
    seg: &File,
    b: &IndexBlock,
    queue: &str,
) -> Result<Vec<Entry>, StoreError> {
    let seg_path = dir.join(format::segment_file_name(format::SegKind::Msg, b.segment));
    let len = seg
        .metadata()
        .map_err(|e| StoreError::io("stat", &seg_path, e))?
        .len();
    let mut sc = Scanner::starting_at(seg, len, u64::from(b.first_record));
    let mut out = Vec::with_capacity(b.count as usize);
    // The slot of the first target of the record at hand: found from the block's first entry.
    let mut base: Option<u32> = None;
    loop {
        let (offset, body) = match sc
            .next()
            .map_err(|e| StoreError::io("read", &seg_path, e))?
        {
            Scan::Record { offset, body, .. } if offset <= u64::from(b.last_record) => {
                (offset as u32, body)
            }
            _ => break,
        };
        let Some(pb) = format::PublishBody::decode(body) else {
            break;
        };
        let targets: Vec<(&str, u64)> = pb.entries().collect();
        let first = *base.get_or_insert_with(|| {
            let j = targets.iter().position(|(q, _)| *q == queue).unwrap_or(0) as u32;
            b.first_slot.saturating_sub(j)
        });
        base = Some(first.saturating_add(targets.len() as u32));
        let head = head_of(&body[pb.payload_start..]);
        for (i, (q, msg_id)) in targets.iter().enumerate() {
            let slot = first.saturating_add(i as u32);
            if *q == queue && (b.first_slot..=b.last_slot).contains(&slot) {
                out.push(Entry {
                    slot,
                    offset,
                    len: (RECORD_HEADER_LEN + body.len()) as u32,
                    msg_id: *msg_id,
                    head,
                });
            }
        }
    }
    if out.len() != b.count as usize {
        warn!(segment = %seg_path.display(), expected = b.count, found = out.len(), "message store: index block and segment disagree");
        // Never more than the queue counted for the block.
        out.truncate(b.count as usize);
    }
    Ok(out)
}

/// The indexer thread: indexes segments sealed for `index_after` ([`SEALED_FOR`] by default) that still hold
/// live messages.
pub(super) fn run(shared: Arc<Shared>) {
    let after = shared.cfg.index_after;
    let poll = after.clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        let job = {
            let mut st = shared.lock();
            loop {
                if st.shutdown {
                    return;
                }
                if let Some(job) = st.next_to_index(Some(after)) {
                    break job;
                }
                st = shared
                    .index_work
                    .wait_timeout(st, poll)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        };
        index_one(&shared, job);
    }
}

/// Indexes every sealed segment not indexed yet, now (tests, tools).
pub(super) fn index_all(shared: &Shared) {
    loop {
        let job = shared.lock().next_to_index(None);
        let Some(job) = job else { return };
        index_one(shared, job);
    }
}

fn index_one(shared: &Shared, (id, file, len): (u32, Arc<File>, u64)) {
    let dir = &shared.cfg.dir;
    let started = Instant::now();
    match write(dir, id, &file, len, shared.cfg.weigh) {
        Ok(bytes) => {
            debug!(
                segment = id,
                bytes,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "message store: segment indexed"
            );
            // Deleted meanwhile: its index must not outlive it.
            let gone = shared.lock().msg.segs.get(&id).is_none_or(|s| s.deleting);
            if gone {
                let _ = fs::remove_file(path(dir, id));
            }
        }
        Err(e) => {
            warn!(segment = id, error = %e, "message store: cannot index segment; recovery will scan it")
        }
    }
}

mod table;
pub(crate) use table::{read_raw_table, read_table, RawTable, Table};

#[cfg(test)]
mod tests;
