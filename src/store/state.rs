//! The store's in-memory state, shared by the callers (publish, ack, read) and the sync thread under one
//! mutex: the two logs (segments, their pending write buffers, live counts and ack references). Nothing
//! here is per message: a message is addressed by its [`Location`], whose slot names one bit of its
//! segment's settled bitmap (allocated only once something in the segment is settled). Everything here is
//! bookkeeping; the sync thread does the I/O.

use crate::{FastMap as HashMap, FastSet as HashSet};
use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

use super::format::{self, Pos, HEADER_LEN, RECORD_HEADER_LEN};
use super::{Location, StoreError, Waiter};

/// Most positions one ACK/DELIVERED record carries before a new record is started.
const MAX_POSITIONS_PER_RECORD: u32 = 8192;
/// Pending write buffers are recycled shrunk to this: one grows large only while the disk stalls, and a few
/// kept at that size would stay resident for nothing.
const MAX_SPARE_CAPACITY: usize = 1 << 20;
/// Recycled write buffers kept at most.
const MAX_SPARES: usize = 4;

/// Bytes waiting to be written to one segment at `start`. Always starts at a record boundary.
pub(crate) struct Chunk {
    pub seg: u32,
    pub start: u64,
    pub bytes: Vec<u8>,
    /// Records before this byte have already been abandoned after a failed write (msg log only).
    pub scanned: usize,
    /// Msg log: the slot of the first target at `scanned` (slots of one segment are consecutive).
    pub scanned_slot: u32,
    /// Attached by the sync thread when it takes the chunk; `None` until the segment file exists.
    pub file: Option<Arc<File>>,
}

impl Chunk {
    pub(crate) fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

/// One segment file of either log.
pub(crate) struct Seg {
    /// Logical length, including bytes still buffered.
    pub len: u64,
    /// Bytes written to the file (readable with pread).
    pub written: u64,
    /// Bytes synced (or, with `SyncPolicy::Never`, written): the segment never needs rewriting below this.
    pub durable: u64,
    pub file: Option<Arc<File>>,
    /// Msg log: live (queue, message) entries published here and not yet acked.
    pub live: u64,
    /// Msg log: slots handed out, one per (record, target queue), in append order.
    pub slots: u32,
    /// Msg log: one bit per slot, set once it is settled (acked, dropped, abandoned); empty until then.
    pub settled: Vec<u64>,
    /// Msg log: live slots per queue (for `drop_queue`). An ack names its queue's own slot: the store
    /// checks that the queue has live slots here, not which ones are its.
    pub queues: SegQueues,
    /// Msg log: queues dropped while this was the active segment, with its slot count then: their
    /// slots below it are gone, whatever a stale ack says (a queue redeclared under the name may add more).
    pub dropped: Vec<(Arc<str>, u32)>,
    /// Ack log: message segments that records in this segment refer to. The ack segment must outlive them.
    pub refs: HashSet<u32>,
    /// The sync thread is deleting it.
    pub deleting: bool,
    /// Recovery is still counting its slots: it must not be deleted yet.
    pub recovering: bool,
    /// Msg log: it has an index file (or the indexer has tried to write one).
    pub indexed: bool,
    /// Msg log: when it stopped being the active segment (`None`: before this run).
    pub sealed_at: Option<Instant>,
}

/// Queue names the segments' counts refer to, as small ids: a sealed segment's count of one queue then takes
/// 8 bytes instead of 24 (a name pointer and a u64), which over a thousand queues and a few hundred segments
/// was megabytes. An id lives while some segment counts its queue, and is reused after.
#[derive(Default)]
pub(crate) struct QueueIds {
    ids: HashMap<Arc<str>, u32>,
    /// By id: the name and how many segments count it (`None`: free).
    names: Vec<Option<(Arc<str>, u32)>>,
    free: Vec<u32>,
}

impl QueueIds {
    pub(crate) fn get(&self, q: &str) -> Option<u32> {
        self.ids.get(q).copied()
    }

    /// Queues some segment counts.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// One more segment counts `q`.
    fn acquire(&mut self, q: &str) -> u32 {
        if let Some(&id) = self.ids.get(q) {
            if let Some(Some((_, refs))) = self.names.get_mut(id as usize) {
                *refs += 1;
            }
            return id;
        }
        let name: Arc<str> = Arc::from(q);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.names.push(None);
                (self.names.len() - 1) as u32
            }
        };
        self.names[id as usize] = Some((name.clone(), 1));
        self.ids.insert(name, id);
        id
    }

    /// One segment fewer counts queue `id`.
    fn release(&mut self, id: u32) {
        let Some(slot) = self.names.get_mut(id as usize) else {
            return;
        };
        if let Some((name, refs)) = slot {
            *refs -= 1;
            if *refs == 0 {
                self.ids.remove(&**name);
                *slot = None;
                self.free.push(id);
            }
        }
    }
}

/// Live slots per queue (by [`QueueIds`] id) in one msg segment. A map while the segment takes appends;
/// once sealed, a sorted slice of exactly its entries: a thousand queues over hundreds of segments made the
/// maps' empty buckets a large part of the store's memory.
pub(crate) enum SegQueues {
    Active(HashMap<u32, u32>),
    Sealed(Vec<(u32, u32)>),
}

impl Default for SegQueues {
    fn default() -> Self {
        SegQueues::Active(HashMap::default())
    }
}

impl SegQueues {
    pub(crate) fn seal(&mut self) {
        if let SegQueues::Active(m) = self {
            let mut v: Vec<(u32, u32)> = m.drain().collect();
            v.sort_unstable();
            v.shrink_to_fit();
            *self = SegQueues::Sealed(v);
        }
    }

    fn find(v: &[(u32, u32)], q: u32) -> Result<usize, usize> {
        v.binary_search_by_key(&q, |e| e.0)
    }

    pub(crate) fn get_mut(&mut self, q: u32) -> Option<&mut u32> {
        match self {
            SegQueues::Active(m) => m.get_mut(&q),
            SegQueues::Sealed(v) => match Self::find(v, q) {
                Ok(i) => Some(&mut v[i].1),
                Err(_) => None,
            },
        }
    }

    pub(crate) fn contains(&self, q: u32) -> bool {
        match self {
            SegQueues::Active(m) => m.contains_key(&q),
            SegQueues::Sealed(v) => Self::find(v, q).is_ok(),
        }
    }

    /// Forgets queue `q` here, with its count.
    pub(crate) fn remove(&mut self, q: u32, ids: &mut QueueIds) -> Option<u32> {
        let n = match self {
            SegQueues::Active(m) => m.remove(&q),
            SegQueues::Sealed(v) => Self::find(v, q).ok().map(|i| v.remove(i).1),
        }?;
        ids.release(q);
        Some(n)
    }

    /// Adds `n` live slots of `name` (its first ones here: inserted).
    pub(crate) fn add(&mut self, name: &str, n: u32, ids: &mut QueueIds) {
        if let Some(c) = ids.get(name).and_then(|q| self.get_mut(q)) {
            *c += n;
            return;
        }
        let q = ids.acquire(name);
        match self {
            SegQueues::Active(m) => {
                m.insert(q, n);
            }
            SegQueues::Sealed(v) => {
                if let Err(i) = Self::find(v, q) {
                    v.insert(i, (q, n));
                }
            }
        }
    }

    /// Forgets every queue (a segment being deleted: normally none is left by then).
    pub(crate) fn clear(&mut self, ids: &mut QueueIds) {
        match self {
            SegQueues::Active(m) => m.drain().for_each(|(q, _)| ids.release(q)),
            SegQueues::Sealed(v) => v.drain(..).for_each(|(q, _)| ids.release(q)),
        }
    }
}

impl Seg {
    pub(crate) fn new_active() -> Self {
        Seg {
            len: HEADER_LEN,
            written: 0,
            durable: 0,
            file: None,
            live: 0,
            slots: 0,
            settled: Vec::new(),
            queues: SegQueues::default(),
            dropped: Vec::new(),
            refs: HashSet::default(),
            deleting: false,
            recovering: false,
            indexed: false,
            sealed_at: None,
        }
    }

    pub(crate) fn existing(len: u64, file: Option<Arc<File>>) -> Self {
        Seg {
            len,
            written: len,
            durable: len,
            file,
            ..Seg::new_active()
        }
    }
}

/// One append-only log: its segments and its pending (not yet written) bytes.
pub(crate) struct Log {
    pub active: u32,
    /// Logical length of the active segment.
    pub len: u64,
    pub seg_size: u64,
    pub chunks: Vec<Chunk>,
    pub segs: BTreeMap<u32, Seg>,
    /// A segment was closed since the sync thread last looked (it may be deletable already).
    pub rolled: bool,
}

impl Log {
    pub(crate) fn new(active: u32, seg_size: u64, segs: BTreeMap<u32, Seg>) -> Self {
        let mut log = Log {
            active,
            len: HEADER_LEN,
            seg_size,
            chunks: Vec::new(),
            segs,
            rolled: false,
        };
        log.segs.insert(active, Seg::new_active());
        log
    }

    /// Makes room for a record of `rec_len` bytes (rolling to a new segment if the active one is full) and
    /// returns its position and the buffer to append it to. The caller appends exactly `rec_len` bytes.
    pub(crate) fn reserve(
        &mut self,
        rec_len: u64,
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<(Pos, &mut Vec<u8>), StoreError> {
        if self.len > HEADER_LEN && self.len + rec_len > self.seg_size {
            let next = self
                .active
                .checked_add(1)
                .ok_or(StoreError::Invalid("segment ids exhausted"))?;
            if let Some(s) = self.segs.get_mut(&self.active) {
                s.sealed_at = Some(Instant::now());
                s.queues.seal();
            }
            self.active = next;
            self.len = HEADER_LEN;
            self.rolled = true;
            self.segs.insert(next, Seg::new_active());
        }
        // Offsets stay below `seg_size` (at most u32::MAX) because a record that would cross it rolls first.
        let pos = Pos {
            seg: self.active,
            off: u32::try_from(self.len).map_err(|_| StoreError::TooLarge { len: rec_len })?,
        };
        let contiguous =
            matches!(self.chunks.last(), Some(c) if c.seg == self.active && c.end() == self.len);
        if !contiguous {
            let slot = self.segs.get(&self.active).map_or(0, |s| s.slots);
            self.chunks.push(Chunk {
                seg: self.active,
                start: self.len,
                bytes: spare.pop().unwrap_or_default(),
                scanned: 0,
                scanned_slot: slot,
                file: None,
            });
        }
        self.grow(rec_len);
        let chunk = self.chunks.last_mut().ok_or(StoreError::Closed)?;
        Ok((pos, &mut chunk.bytes))
    }

    /// Accounts for `n` more bytes appended to the active segment.
    pub(crate) fn grow(&mut self, n: u64) {
        self.len += n;
        if let Some(s) = self.segs.get_mut(&self.active) {
            s.len = self.len;
        }
    }

    pub(crate) fn pending_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.bytes.len() as u64).sum()
    }
}

/// The ACK/DELIVERED record being filled at the end of the ack log's last chunk, so that consecutive acks
/// of one queue share one record.
pub(crate) struct OpenAck {
    ty: u8,
    queue: Arc<str>,
    /// Index of the record's first byte in the last ack chunk.
    start: usize,
    count: u32,
}

pub(crate) struct State {
    pub msg: Log,
    pub ack: Log,
    pub open_ack: Option<OpenAck>,
    /// Callbacks of publishes (and `sync_now`) not yet taken by the sync thread.
    pub dones: Vec<Waiter>,
    pub force_sync: bool,
    pub shutdown: bool,
    /// The sync thread is waiting on `work` (publishes wake it only then).
    pub sync_idle: bool,
    /// Recovery is replaying the msg log, and the queues dropped meanwhile (their messages in segments
    /// not yet counted die as the replay reaches them).
    pub replaying: bool,
    pub dropped_in_replay: Vec<Arc<str>>,
    /// The ids the segments' counts name queues by.
    pub queue_ids: QueueIds,
    /// A segment may have become deletable.
    pub gc_wanted: bool,
    /// Auto-acks of abandoned publishes are pending: sync the ack log before the msg log next time.
    pub ack_urgent: bool,
    /// When the ack log got pending bytes (it is flushed shortly after, even without publishes).
    pub ack_since: Option<Instant>,
    /// The last write/sync failed: publishes are refused until the instant (then retried).
    pub failed: Option<(StoreError, Instant)>,
    pub live: u64,
    pub publishes: u64,
    pub syncs: u64,
    pub spare: Vec<Vec<u8>>,
    pub scratch: Vec<Pos>,
}

impl State {
    pub(crate) fn new(msg: Log, ack: Log) -> Self {
        let live = msg.segs.values().map(|s| s.live).sum();
        State {
            msg,
            ack,
            open_ack: None,
            dones: Vec::new(),
            force_sync: false,
            shutdown: false,
            sync_idle: false,
            replaying: false,
            dropped_in_replay: Vec::new(),
            queue_ids: QueueIds::default(),
            gc_wanted: true,
            ack_urgent: false,
            ack_since: None,
            failed: None,
            live,
            publishes: 0,
            syncs: 0,
            spare: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Returns a written buffer for reuse.
    pub(crate) fn recycle(&mut self, mut bytes: Vec<u8>) {
        if self.spare.len() < MAX_SPARES {
            bytes.clear();
            bytes.shrink_to(MAX_SPARE_CAPACITY);
            self.spare.push(bytes);
        }
    }

    /// Counts `targets` new live slots of the active segment, from `first` on.
    pub(crate) fn add_slots(&mut self, seg: u32, targets: &[(&str, u64)]) -> u32 {
        let Some(s) = self.msg.segs.get_mut(&seg) else {
            return 0;
        };
        let first = s.slots;
        s.slots = s.slots.saturating_add(targets.len() as u32);
        for (q, _) in targets {
            s.queues.add(q, 1, &mut self.queue_ids);
        }
        s.live += targets.len() as u64;
        self.live += targets.len() as u64;
        first
    }

    /// Whether the slot at `loc` is live and belongs to `queue`.
    /// A sealed msg segment with live messages and no index yet, sealed at least `sealed_for` ago, to index
    /// now; marked as indexed so it is taken once.
    pub(crate) fn next_to_index(
        &mut self,
        sealed_for: Option<std::time::Duration>,
    ) -> Option<(u32, Arc<File>, u64)> {
        let active = self.msg.active;
        let now = Instant::now();
        let (&id, s) = self.msg.segs.iter_mut().find(|(&id, s)| {
            id != active
                && !s.indexed
                && !s.recovering
                && !s.deleting
                && s.live > 0
                && s.file.is_some()
                && s.written >= s.len
                && s.durable >= s.len
                && match (sealed_for, s.sealed_at) {
                    (Some(d), Some(at)) => now.duration_since(at) >= d,
                    _ => true,
                }
        })?;
        s.indexed = true;
        Some((id, s.file.clone()?, s.len))
    }

    pub(crate) fn is_live(&self, queue: &str, loc: Location) -> bool {
        self.queue_ids
            .get(queue)
            .is_some_and(|q| self.is_live_id(q, queue, loc))
    }

    pub(crate) fn is_live_id(&self, q: u32, queue: &str, loc: Location) -> bool {
        let Some(s) = self.msg.segs.get(&loc.segment) else {
            return false;
        };
        loc.slot < s.slots
            && s.queues.contains(q)
            && !s
                .dropped
                .iter()
                .any(|(q, below)| **q == *queue && loc.slot < *below)
            && s.settled
                .get((loc.slot / 64) as usize)
                .is_none_or(|w| w & (1 << (loc.slot % 64)) == 0)
    }

    /// Settles one live slot of `queue`: sets its bit, updates live counts and asks for GC when a full
    /// segment empties. False (and nothing changes) if it is not live: acked twice, dropped, unknown.
    fn settle(&mut self, queue: &str, loc: Location) -> bool {
        let Some(q) = self.queue_ids.get(queue) else {
            return false;
        };
        if !self.is_live_id(q, queue, loc) {
            return false;
        }
        let active = self.msg.active;
        let Some(s) = self.msg.segs.get_mut(&loc.segment) else {
            return false;
        };
        let word = (loc.slot / 64) as usize;
        if s.settled.len() <= word {
            // Sized to the slots handed out so far; the active segment's bitmap grows with it.
            s.settled
                .resize((s.slots as usize).div_ceil(64).max(word + 1), 0);
        }
        s.settled[word] |= 1 << (loc.slot % 64);
        if let Some(n) = s.queues.get_mut(q) {
            *n -= 1;
            if *n == 0 {
                s.queues.remove(q, &mut self.queue_ids);
            }
        }
        s.live = s.live.saturating_sub(1);
        if s.live == 0 && loc.segment != active {
            self.gc_wanted = true;
        }
        self.live = self.live.saturating_sub(1);
        true
    }

    /// Settles acked messages and appends an ACK record for them.
    pub(crate) fn ack(&mut self, queue: &str, locs: &[Location]) {
        let mut positions = std::mem::take(&mut self.scratch);
        positions.clear();
        for &l in locs {
            if self.settle(queue, l) {
                positions.push(pos_of(l));
            }
        }
        self.push_positions(format::ACK, queue, &positions);
        self.scratch = positions;
    }

    /// Appends a DELIVERED record for a message that is live.
    pub(crate) fn delivered(&mut self, queue: &str, locs: &[Location]) {
        let mut positions = std::mem::take(&mut self.scratch);
        positions.clear();
        positions.extend(
            locs.iter()
                .filter(|l| self.is_live(queue, **l))
                .map(|l| pos_of(*l)),
        );
        self.push_positions(format::DELIVERED, queue, &positions);
        self.scratch = positions;
    }

    /// Forgets every message of `queue` with one DROP record marking the current end of the msg log.
    pub(crate) fn drop_queue(&mut self, queue: &str) {
        if self.replaying && !self.dropped_in_replay.iter().any(|q| **q == *queue) {
            self.dropped_in_replay.push(Arc::from(queue));
        }
        let mark = Pos {
            seg: self.msg.active,
            off: u32::try_from(self.msg.len).unwrap_or(u32::MAX),
        };
        let active = self.msg.active;
        let mut segs = Vec::new();
        let mut gone = 0;
        let Some(q) = self.queue_ids.get(queue) else {
            return;
        };
        for (&id, s) in self.msg.segs.iter_mut() {
            let Some(n) = s.queues.remove(q, &mut self.queue_ids) else {
                continue;
            };
            let n = u64::from(n);
            s.live = s.live.saturating_sub(n);
            gone += n;
            segs.push(id);
            if id == active {
                s.dropped.retain(|(q, _)| **q != *queue);
                s.dropped.push((Arc::from(queue), s.slots));
            } else if s.live == 0 {
                self.gc_wanted = true;
            }
        }
        if segs.is_empty() {
            return;
        }
        self.live = self.live.saturating_sub(gone);
        self.push_drop(mark, queue, segs.into_iter());
    }

    /// Appends a DROP record: every publish of `queue` before `mark` is gone; `segs` are the msg segments
    /// it concerns.
    pub(crate) fn push_drop(&mut self, mark: Pos, queue: &str, segs: impl Iterator<Item = u32>) {
        self.finish_open_ack();
        let rec_len = (RECORD_HEADER_LEN + 8 + queue.len()) as u64;
        let Ok((_, buf)) = self.ack.reserve(rec_len, &mut self.spare) else {
            return;
        };
        format::write_drop(buf, mark, queue);
        self.note_refs(segs);
        self.mark_ack_pending();
    }

    fn mark_ack_pending(&mut self) {
        if self.ack_since.is_none() {
            self.ack_since = Some(Instant::now());
        }
    }

    /// Records that the active ack segment refers to these message segments.
    fn note_refs(&mut self, segs: impl Iterator<Item = u32>) {
        let active = self.ack.active;
        let Some(ack_seg) = self.ack.segs.get_mut(&active) else {
            return;
        };
        for s in segs {
            if self.msg.segs.contains_key(&s) {
                ack_seg.refs.insert(s);
            }
        }
    }

    /// Appends positions to the open ACK/DELIVERED record of this queue, starting a new one if needed.
    fn push_positions(&mut self, ty: u8, queue: &str, positions: &[Pos]) {
        for &p in positions {
            let same = matches!(&self.open_ack, Some(o) if o.ty == ty && *o.queue == *queue
                && o.count < MAX_POSITIONS_PER_RECORD);
            if !same {
                self.finish_open_ack();
                let head = (RECORD_HEADER_LEN + 2 + queue.len()) as u64;
                // Reserve header + queue now; positions grow the record in place.
                let Ok((_, buf)) = self.ack.reserve(head, &mut self.spare) else {
                    return;
                };
                let start = buf.len();
                buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
                buf.extend_from_slice(&(queue.len() as u16).to_le_bytes());
                buf.extend_from_slice(queue.as_bytes());
                self.open_ack = Some(OpenAck {
                    ty,
                    queue: Arc::from(queue),
                    start,
                    count: 0,
                });
            }
            let Some(chunk) = self.ack.chunks.last_mut() else {
                return;
            };
            chunk.bytes.extend_from_slice(&p.seg.to_le_bytes());
            chunk.bytes.extend_from_slice(&p.off.to_le_bytes());
            self.ack.grow(8);
            if let Some(o) = self.open_ack.as_mut() {
                o.count += 1;
            }
            self.note_refs(std::iter::once(p.seg));
        }
        if !positions.is_empty() {
            self.mark_ack_pending();
        }
    }

    /// Seals the open ACK/DELIVERED record (length and checksum), so the ack log's chunks can be written.
    pub(crate) fn finish_open_ack(&mut self) {
        if let Some(o) = self.open_ack.take() {
            if let Some(chunk) = self.ack.chunks.last_mut() {
                if let Some(rec) = chunk.bytes.get_mut(o.start..) {
                    format::seal_record(rec, o.ty);
                }
            }
        }
    }

    /// After a failed write or sync, the publishes in these chunks (past their `scanned` mark) are given
    /// up: their callbacks get the error, so they are settled and get an ACK record, which keeps them from
    /// coming back after a restart once the retried write lands. A queue's later ack of one is a no-op.
    pub(crate) fn abandon(&mut self, chunks: &mut [Chunk]) {
        let mut acks: Vec<(Arc<str>, Location)> = Vec::new();
        for c in chunks.iter_mut() {
            let mut at = c.scanned;
            let mut slot = c.scanned_slot;
            while at + RECORD_HEADER_LEN <= c.bytes.len() {
                let (len, _, ty) = format::parse_record_header(&c.bytes[at..]);
                let end = at + RECORD_HEADER_LEN + len as usize;
                let Some(body) = c.bytes.get(at + RECORD_HEADER_LEN..end) else {
                    break;
                };
                // A chunk lies in one segment, below its size (a u32).
                let offset = (c.start + at as u64) as u32;
                if ty == format::PUBLISH {
                    if let Some(p) = format::PublishBody::decode(body) {
                        for (q, _) in p.entries() {
                            acks.push((
                                Arc::from(q),
                                Location {
                                    segment: c.seg,
                                    offset,
                                    len: (end - at) as u32,
                                    slot,
                                },
                            ));
                            slot += 1;
                        }
                    }
                }
                at = end;
            }
            c.scanned = at;
            c.scanned_slot = slot;
        }
        for (q, loc) in acks {
            if self.settle(&q, loc) {
                self.push_positions(format::ACK, &q, &[pos_of(loc)]);
                self.ack_urgent = true;
            }
        }
    }

    /// Puts chunks that must be written again back in front of the pending ones.
    pub(crate) fn put_back(log: &mut Log, mut chunks: Vec<Chunk>) {
        if chunks.is_empty() {
            return;
        }
        chunks.append(&mut log.chunks);
        log.chunks = chunks;
    }
}

fn pos_of(l: Location) -> Pos {
    Pos {
        seg: l.segment,
        off: l.offset,
    }
}

#[cfg(test)]
mod tests {
    use super::{QueueIds, SegQueues};

    #[test]
    fn segments_count_queues_by_ids_that_live_while_counted() {
        let mut ids = QueueIds::default();
        let mut active = SegQueues::default();
        active.add("a", 2, &mut ids);
        active.add("b", 1, &mut ids);
        active.add("a", 1, &mut ids);
        let (a, b) = (ids.get("a").unwrap(), ids.get("b").unwrap());
        assert_ne!(a, b);
        let mut sealed = std::mem::take(&mut active);
        sealed.seal();
        assert_eq!(sealed.get_mut(a).copied(), Some(3));
        // A second segment counting "a" keeps its id alive after the first forgets it.
        active.add("a", 5, &mut ids);
        assert_eq!(ids.get("a"), Some(a));
        assert_eq!(sealed.remove(a, &mut ids), Some(3));
        assert_eq!(sealed.remove(a, &mut ids), None);
        assert_eq!(ids.get("a"), Some(a));
        assert_eq!(ids.len(), 2);
        active.clear(&mut ids);
        assert_eq!(ids.get("a"), None);
        // The freed id is reused; "b" is untouched.
        sealed.add("c", 1, &mut ids);
        assert_eq!(ids.get("c"), Some(a));
        assert!(sealed.contains(b) && sealed.contains(a));
        assert_eq!(sealed.get_mut(b).copied(), Some(1));
        sealed.clear(&mut ids);
        assert_eq!(ids.len(), 0);
    }
}
