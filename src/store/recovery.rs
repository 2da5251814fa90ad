//! Recovery, in two steps. `open` lists the segment files and scans the ack log (checking every record,
//! truncating torn or corrupt tails), which leaves per msg segment a sorted list of the positions its
//! records were acked or delivered at, and the queue drops. `replay` then scans the msg log in publish
//! order, segment by segment, and hands every live message to the caller as it goes, so nothing the size
//! of the backlog is ever held in memory: a segment enters the store's state before its messages are handed
//! out (a message may be settled while recovery goes on) and its counts grow batch by batch.
//!
//! Slots are numbered as at run time, one per (record, queue) in append order, so a recovered location
//! settles the same bit a live one would. Acked and dropped slots of a recovered segment get their bits set.

use crate::FastMap as HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use super::files::{list_segments, open_segment, sync_dir, truncate};
use super::format::{self, Pos, Scan, Scanner, SegKind, HEADER_LEN, RECORD_HEADER_LEN};
use super::index;
use super::state::{Log, Seg, State};
use super::{
    Location, Recovered, RecoveredBlock, RecoveredMessage, Shared, StoreConfig, StoreError,
};

/// A progress line is logged every this many records.
const PROGRESS_EVERY_RECORDS: u64 = 1_000_000;
/// Live messages handed out per batch (the most recovery holds at once).
const BATCH: usize = 4096;
/// Bytes of msg-log writes (queues' spilled index chunks) recovery lets wait for the sync thread.
const REPLAY_PENDING_MAX: u64 = 16 << 20;

/// Queue names seen during recovery, as small ids.
#[derive(Default)]
struct Names {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Names {
    fn id(&mut self, q: &str) -> u32 {
        if let Some(&id) = self.ids.get(q) {
            return id;
        }
        let id = self.names.len() as u32;
        let name: Arc<str> = Arc::from(q);
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }
}

/// Recovery counters and progress logging.
struct Progress {
    started: Instant,
    records: u64,
    bytes: u64,
    total_bytes: u64,
    truncated: usize,
    indexed: usize,
}

impl Progress {
    fn record(&mut self, len: usize) {
        self.records += 1;
        self.bytes += len as u64;
        if self.records.is_multiple_of(PROGRESS_EVERY_RECORDS) {
            let pct = (self.bytes * 100)
                .checked_div(self.total_bytes)
                .unwrap_or(100);
            info!(
                records = self.records,
                bytes = self.bytes,
                total_bytes = self.total_bytes,
                percent = pct,
                elapsed_ms = self.started.elapsed().as_millis() as u64,
                "message store: recovery in progress"
            );
        }
    }
}

/// An ack-log record naming a publish of a msg segment: at `off`, queue `qid`, in ack segment `ack_seg`.
#[derive(Clone, Copy)]
struct Mark {
    off: u32,
    qid: u32,
    ack_seg: u32,
    acked: bool,
}

/// What the ack-log scan leaves for `replay`.
pub(super) struct Pending {
    dir: PathBuf,
    msg_ids: BTreeSet<u32>,
    /// Msg segments with an index file.
    indexed: BTreeSet<u32>,
    /// Per msg segment, sorted by offset.
    marks: HashMap<u32, Vec<Mark>>,
    drops: HashMap<u32, (Pos, u32)>,
    names: Names,
    ack_lens: BTreeMap<u32, u64>,
    /// The first position of the msg log after open: everything before it was written by an earlier run.
    mark: Pos,
    progress: Progress,
}

/// Step one, for `open`: the ack log, and the state to start the store with (new active segments above
/// every id on disk or named by an ack record; the old segments join it during `replay`).
pub(super) fn open(cfg: &StoreConfig) -> Result<(State, Pending), StoreError> {
    let dir = cfg.dir.as_path();
    fs::create_dir_all(dir).map_err(|e| StoreError::io("create directory", dir, e))?;
    let (msg_ids, ack_ids, indexed, total_bytes) = list_segments(dir)?;
    let mut progress = Progress {
        started: Instant::now(),
        records: 0,
        bytes: 0,
        total_bytes,
        truncated: 0,
        indexed: 0,
    };
    info!(
        dir = %dir.display(),
        msg_segments = msg_ids.len(),
        ack_segments = ack_ids.len(),
        bytes = total_bytes,
        "message store: recovering"
    );

    let mut names = Names::default();
    let mut marks: HashMap<u32, Vec<Mark>> = HashMap::default();
    let mut drops: HashMap<u32, (Pos, u32)> = HashMap::default();
    let mut max_ref = 0u32;
    let mut ack_lens: BTreeMap<u32, u64> = BTreeMap::new();
    for &id in &ack_ids {
        let path = dir.join(format::segment_file_name(SegKind::Ack, id));
        let (file, len) = open_segment(&path, SegKind::Ack, id)?;
        let mut sc = Scanner::new(&file, len);
        let mut bad = None;
        loop {
            match sc.next().map_err(|e| StoreError::io("read", &path, e))? {
                Scan::End => break,
                Scan::Bad { offset, reason } => {
                    bad = Some((offset, reason));
                    break;
                }
                Scan::Record { offset, ty, body } => {
                    progress.record(RECORD_HEADER_LEN + body.len());
                    let ok = match ty {
                        format::ACK | format::DELIVERED => match format::decode_positions(body) {
                            Some((q, positions)) => {
                                let qid = names.id(q);
                                for p in positions {
                                    max_ref = max_ref.max(p.seg);
                                    if msg_ids.contains(&p.seg) {
                                        marks.entry(p.seg).or_default().push(Mark {
                                            off: p.off,
                                            qid,
                                            ack_seg: id,
                                            acked: ty == format::ACK,
                                        });
                                    }
                                }
                                true
                            }
                            None => false,
                        },
                        format::DROP => match format::decode_drop(body) {
                            Some((mark, q)) => {
                                max_ref = max_ref.max(mark.seg);
                                let qid = names.id(q);
                                let e = drops.entry(qid).or_insert((mark, id));
                                if mark > e.0 {
                                    *e = (mark, id);
                                }
                                true
                            }
                            None => false,
                        },
                        _ => false,
                    };
                    if !ok {
                        bad = Some((offset, "undecodable or misplaced record"));
                        break;
                    }
                }
            }
        }
        let good = match bad {
            Some((offset, reason)) => {
                truncate(&file, &path, offset, len, reason);
                progress.truncated += 1;
                offset
            }
            None => len,
        };
        ack_lens.insert(id, good);
    }
    for v in marks.values_mut() {
        v.sort_unstable_by_key(|m| m.off);
    }

    // Segment ids are never reused: ack records may still name deleted segments.
    let next_msg = msg_ids
        .last()
        .copied()
        .unwrap_or(0)
        .max(max_ref)
        .checked_add(1)
        .ok_or(StoreError::Invalid("segment ids exhausted"))?;
    let next_ack = ack_ids
        .last()
        .copied()
        .unwrap_or(0)
        .checked_add(1)
        .ok_or(StoreError::Invalid("segment ids exhausted"))?;
    let msg = Log::new(next_msg, cfg.msg_segment_size(), BTreeMap::new());
    let ack = Log::new(next_ack, cfg.ack_segment_size(), BTreeMap::new());
    let pending = Pending {
        dir: dir.to_path_buf(),
        msg_ids,
        indexed,
        marks,
        drops,
        names,
        ack_lens,
        mark: Pos {
            seg: next_msg,
            off: HEADER_LEN as u32,
        },
        progress,
    };
    Ok((State::new(msg, ack), pending))
}

/// One msg segment's scan: its slots so far, the bits of its dead ones, and the batch not yet handed out.
#[derive(Default)]
struct SegScan {
    slots: u32,
    dead: Vec<u64>,
    /// Slots counted into the store's state so far.
    merged: u32,
    live: u64,
    queues: HashMap<u32, u64>,
    batch: Vec<(u32, Recovered)>,
    /// Slots are killed in any order (an indexed segment's queue by queue): merge every dead word.
    unordered: bool,
}

impl SegScan {
    fn kill(&mut self, slot: u32) {
        let w = (slot / 64) as usize;
        if self.dead.len() <= w {
            self.dead.resize(w + 1, 0);
        }
        self.dead[w] |= 1 << (slot % 64);
    }

    /// Counts the batch into the store's state, then hands its messages out (without the lock, so the
    /// sink may settle them).
    fn flush(
        &mut self,
        shared: &Shared,
        id: u32,
        names: &Names,
        r: &mut Replay,
        sink: &mut dyn FnMut(&str, Recovered),
    ) {
        let dropped = &mut r.dropped;
        {
            let mut st = shared.lock();
            // Queues spill their indexes as they fill: those writes must not pile up in memory faster than
            // the sync thread writes them.
            while st.msg.pending_bytes() > REPLAY_PENDING_MAX && !st.shutdown && st.failed.is_none()
            {
                st = shared
                    .written
                    .wait_timeout(st, std::time::Duration::from_millis(50))
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            // A queue deleted while recovery runs: what is left of it dies here instead of being counted.
            if !st.dropped_in_replay.is_empty() {
                let gone: Vec<u32> = self
                    .queues
                    .keys()
                    .copied()
                    .filter(|&q| {
                        st.dropped_in_replay
                            .iter()
                            .any(|d| **d == *names.names[q as usize])
                    })
                    .collect();
                for q in gone {
                    if let Some(n) = self.queues.remove(&q) {
                        self.live -= n;
                    }
                    dropped.entry(q).or_default().insert(id);
                    let mut kill = Vec::new();
                    self.batch.retain(|(qid, m)| {
                        let keep = *qid != q;
                        // A block's slots need no bits: the segment no longer counts the queue.
                        if let (false, Recovered::Message(m)) = (keep, m) {
                            kill.push(m.location.slot);
                        }
                        keep
                    });
                    for slot in kill {
                        self.kill(slot);
                    }
                }
            }
            let st = &mut *st;
            let Some(s) = st.msg.segs.get_mut(&id) else {
                return;
            };
            s.slots = self.slots;
            let from = if self.unordered {
                0
            } else {
                (self.merged / 64) as usize
            };
            if self.dead.len() > from {
                if s.settled.len() < self.dead.len() {
                    s.settled.resize(self.dead.len(), 0);
                }
                for (w, d) in s.settled[from..].iter_mut().zip(&self.dead[from..]) {
                    *w |= *d;
                }
            }
            for (&qid, &n) in &self.queues {
                // A segment's slots are counted in a u32.
                let n = u32::try_from(n).unwrap_or(u32::MAX);
                s.queues
                    .add(&names.names[qid as usize], n, &mut st.queue_ids);
            }
            s.live += self.live;
            st.live += self.live;
        }
        self.merged = self.slots;
        self.queues.clear();
        self.live = 0;
        for (qid, m) in self.batch.drain(..) {
            r.runs.hand(qid, m, names, sink);
        }
    }
}

/// Each queue's run of blocks not handed out yet: a queue's blocks in consecutive indexed segments go out
/// as one [`RecoveredBlock`], its first with the run's `until`, `messages` and `weight`, and the store finds
/// the others as the queue reads on. A run ends where the queue gets a message (recovered from a scanned
/// segment, or from a segment of its where something was acked or delivered) and at the end of replay; the
/// segments it spans that hold none of its messages any more (acked or dropped ones) are skipped by the
/// reader, which looks only in segments that still count the queue.
#[derive(Default)]
struct Runs(HashMap<u32, RecoveredBlock>);

/// Entries past which a run ends at the next segment.
const RUN_MAX: u32 = u32::MAX / 2;

impl Runs {
    fn hand(
        &mut self,
        qid: u32,
        m: Recovered,
        names: &Names,
        sink: &mut dyn FnMut(&str, Recovered),
    ) {
        let q = &names.names[qid as usize];
        match m {
            Recovered::Block(b) => {
                if let Some(run) = self.0.get_mut(&qid) {
                    // A run's count is a u32. A run ends between segments, never inside one (the reader
                    // goes on through the group of the segment it is in): past half of that, it ends at
                    // the next segment, and one segment's group (under 4 GiB of records of 30 bytes and
                    // more) cannot take it over.
                    if b.block.segment == run.block.until || run.messages < RUN_MAX {
                        run.messages = run.messages.saturating_add(b.block.count);
                        run.weight = run.weight.saturating_add(b.weight);
                        run.block.until = b.block.segment;
                        return;
                    }
                    if let Some(run) = self.0.remove(&qid) {
                        sink(q, Recovered::Block(run));
                    }
                }
                self.0.insert(qid, b);
            }
            Recovered::Message(_) => {
                if let Some(run) = self.0.remove(&qid) {
                    sink(q, Recovered::Block(run));
                }
                sink(q, m);
            }
        }
    }

    /// Hands out every run but those of queues deleted while recovery ran (possibly by `sink` itself),
    /// which go with them as their messages do in `flush`.
    fn finish(&mut self, shared: &Shared, names: &Names, sink: &mut dyn FnMut(&str, Recovered)) {
        let mut runs: Vec<(u32, RecoveredBlock)> = self.0.drain().collect();
        runs.sort_unstable_by_key(|(qid, _)| *qid);
        for (qid, run) in runs {
            let q = &names.names[qid as usize];
            let gone = shared.lock().dropped_in_replay.iter().any(|d| **d == **q);
            if !gone {
                sink(q, Recovered::Block(run));
            }
        }
    }
}

/// What `replay` carries from segment to segment.
#[derive(Default)]
struct Replay {
    /// Per queue id, whether `keep` accepted it (asked once).
    kept: Vec<Option<bool>>,
    /// Queues dropped now, with the segments that held their messages.
    dropped: BTreeMap<u32, BTreeSet<u32>>,
    /// Per ack segment, the msg segments its records refer to.
    refs: HashMap<u32, BTreeSet<u32>>,
    max_id: Option<u64>,
    deleted: Vec<u32>,
    /// The queue of the last entry (consecutive records usually name the same queue).
    last: Option<u32>,
    runs: Runs,
}

impl Replay {
    fn keep(&mut self, qid: u32, q: &str, keep: &mut dyn FnMut(&str) -> bool) -> bool {
        if self.kept.len() <= qid as usize {
            self.kept.resize(qid as usize + 1, None);
        }
        *self.kept[qid as usize].get_or_insert_with(|| keep(q))
    }
}

/// Step two: the msg log, in publish order. Every live message of a queue `keep` accepts goes to `sink`,
/// each queue's in publish order (an indexed segment's as blocks where nothing of the queue's there was
/// acked or delivered); the others are dropped (one DROP record per queue). Returns the highest message id
/// found.
pub(super) fn replay(
    shared: &Shared,
    mut p: Pending,
    keep: &mut dyn FnMut(&str) -> bool,
    sink: &mut dyn FnMut(&str, Recovered),
) -> Result<Option<u64>, StoreError> {
    let mut r = Replay::default();
    let msg_ids = std::mem::take(&mut p.msg_ids);
    shared.lock().replaying = true;
    for id in msg_ids {
        let path = p.dir.join(format::segment_file_name(SegKind::Msg, id));
        let (file, len) = open_segment(&path, SegKind::Msg, id)?;
        let file = Arc::new(file);
        let mut seg = Seg::existing(len, Some(file.clone()));
        seg.recovering = true;
        let table = p
            .indexed
            .contains(&id)
            .then(|| index::read_table(&p.dir, id, len))
            .flatten();
        seg.indexed = table.is_some();
        shared.lock().msg.segs.insert(id, seg);
        let good = match table {
            Some(t) => {
                replay_indexed(shared, &mut p, &mut r, id, &file, t, keep, sink)?;
                len
            }
            None => replay_scan(shared, &mut p, &mut r, id, &file, len, keep, sink)?,
        };
        let empty = {
            let mut st = shared.lock();
            let Some(s) = st.msg.segs.get_mut(&id) else {
                continue;
            };
            s.len = good;
            s.written = good;
            s.durable = good;
            // An empty one stays `recovering` (out of GC's way) until it is deleted here.
            s.recovering = s.live == 0;
            // Replayed segments are never the active one (appends go to a new segment after recovery).
            s.queues.seal();
            s.live == 0
        };
        if empty {
            let removed = fs::remove_file(&path);
            let mut st = shared.lock();
            match removed {
                Ok(()) => {
                    let _ = fs::remove_file(index::path(&p.dir, id));
                    let st = &mut *st;
                    if let Some(mut s) = st.msg.segs.remove(&id) {
                        s.queues.clear(&mut st.queue_ids);
                    }
                    r.deleted.push(id);
                }
                Err(e) => {
                    // Kept, so that the ack records about it stay too; GC tries again.
                    warn!(segment = %path.display(), error = %e, "message store: cannot delete fully acked segment");
                    if let Some(s) = st.msg.segs.get_mut(&id) {
                        s.recovering = false;
                    }
                    st.gc_wanted = true;
                }
            }
        }
    }
    r.runs.finish(shared, &p.names, sink);
    let Replay {
        dropped,
        mut refs,
        max_id,
        deleted,
        ..
    } = r;
    // Ack records about deleted segments may go once the deletions are durable.
    let dir_ok = deleted.is_empty() || sync_dir(&p.dir);

    // The ack segments join once every msg segment is counted; those that refer to none left go.
    {
        let mut st = shared.lock();
        if dir_ok {
            for s in st.ack.segs.values_mut() {
                s.refs.retain(|r| !deleted.contains(r));
            }
        }
        for (&id, &len) in &p.ack_lens {
            let r: crate::FastSet<u32> = refs
                .remove(&id)
                .unwrap_or_default()
                .into_iter()
                .filter(|s| st.msg.segs.contains_key(s) || (!dir_ok && deleted.contains(s)))
                .collect();
            if r.is_empty() {
                let path = p.dir.join(format::segment_file_name(SegKind::Ack, id));
                match fs::remove_file(&path) {
                    Ok(()) => continue,
                    Err(e) => {
                        warn!(segment = %path.display(), error = %e, "message store: cannot delete ack segment")
                    }
                }
            }
            let mut seg = Seg::existing(len, None);
            seg.refs = r;
            st.ack.segs.insert(id, seg);
        }
        st.replaying = false;
        st.dropped_in_replay.clear();
        for (qid, segs) in &dropped {
            st.push_drop(p.mark, &p.names.names[*qid as usize], segs.iter().copied());
        }
        st.gc_wanted = true;
        info!(
            live_messages = st.live,
            msg_segments = st.msg.segs.len() - 1,
            indexed_segments = p.progress.indexed,
            ack_segments = st.ack.segs.len() - 1,
            records = p.progress.records,
            bytes = p.progress.bytes,
            truncated_segments = p.progress.truncated,
            deleted_segments = deleted.len(),
            dropped_queues = dropped.len(),
            elapsed_ms = p.progress.started.elapsed().as_millis() as u64,
            "message store: recovered"
        );
    }
    shared.work.notify_one();
    Ok(max_id)
}

/// An indexed segment: each queue's entries come from the index table. A queue with nothing acked,
/// delivered or dropped here gets its blocks as they are, unread; the others' blocks are read and their
/// entries checked against the marks one by one, as a scan would.
#[allow(clippy::too_many_arguments)]
fn replay_indexed(
    shared: &Shared,
    p: &mut Pending,
    r: &mut Replay,
    id: u32,
    file: &File,
    t: index::Table,
    keep: &mut dyn FnMut(&str) -> bool,
    sink: &mut dyn FnMut(&str, Recovered),
) -> Result<(), StoreError> {
    p.progress.indexed += 1;
    let idx = index::open(&p.dir, id);
    let mut by_queue: HashMap<u32, Vec<Mark>> = HashMap::default();
    for m in p.marks.remove(&id).unwrap_or_default() {
        by_queue.entry(m.qid).or_default().push(m);
    }
    let mut scan = SegScan {
        slots: t.slots,
        unordered: true,
        ..SegScan::default()
    };
    if t.slots > 0 {
        r.max_id = r.max_id.max(Some(t.max_id));
    }
    for (q, blocks) in t.groups {
        let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
            continue;
        };
        let (first, last) = (first.block.first_record, last.block.last_record);
        let qid = p.names.id(&q);
        let drop = p.drops.get(&qid).copied();
        if let Some((mark, a)) = drop {
            if (Pos { seg: id, off: last }) < mark {
                // All of it went with the queue.
                r.refs.entry(a).or_default().insert(id);
                continue;
            }
        }
        if !r.keep(qid, &q, keep) {
            r.dropped.entry(qid).or_default().insert(id);
            continue;
        }
        let marks = by_queue.remove(&qid).unwrap_or_default();
        let split = drop.is_some_and(|(mark, _)| {
            (Pos {
                seg: id,
                off: first,
            }) < mark
        });
        if marks.is_empty() && !split {
            let n: u64 = blocks.iter().map(|b| u64::from(b.block.count)).sum();
            *scan.queues.entry(qid).or_default() += n;
            scan.live += n;
            scan.batch
                .extend(blocks.into_iter().map(|b| (qid, Recovered::Block(b))));
            if scan.batch.len() >= BATCH {
                scan.flush(shared, id, &p.names, r, sink);
            }
            continue;
        }
        let mut cursor = 0usize;
        for b in blocks {
            for e in index::read_entries(&p.dir, file, idx.as_ref(), &b.block, &q, usize::MAX)? {
                p.progress.record(e.len as usize);
                if let Some((mark, a)) = drop {
                    if (Pos {
                        seg: id,
                        off: e.offset,
                    }) < mark
                    {
                        r.refs.entry(a).or_default().insert(id);
                        scan.kill(e.slot);
                        continue;
                    }
                }
                while marks.get(cursor).is_some_and(|m| m.off < e.offset) {
                    cursor += 1;
                }
                let (mut acked, mut delivered) = (false, false);
                for m in marks[cursor..].iter().take_while(|m| m.off == e.offset) {
                    r.refs.entry(m.ack_seg).or_default().insert(id);
                    acked |= m.acked;
                    delivered |= !m.acked;
                }
                if acked {
                    scan.kill(e.slot);
                    continue;
                }
                *scan.queues.entry(qid).or_default() += 1;
                scan.live += 1;
                scan.batch.push((
                    qid,
                    Recovered::Message(RecoveredMessage {
                        msg_id: e.msg_id,
                        location: Location {
                            segment: id,
                            offset: e.offset,
                            len: e.len,
                            slot: e.slot,
                        },
                        delivered,
                        head: e.head,
                    }),
                ));
                if scan.batch.len() >= BATCH {
                    scan.flush(shared, id, &p.names, r, sink);
                }
            }
        }
    }
    scan.flush(shared, id, &p.names, r, sink);
    Ok(())
}

/// An unindexed segment: every record is read and checked; a torn or corrupt tail is cut off. Returns the
/// length of what is good.
#[allow(clippy::too_many_arguments)]
fn replay_scan(
    shared: &Shared,
    p: &mut Pending,
    r: &mut Replay,
    id: u32,
    file: &File,
    len: u64,
    keep: &mut dyn FnMut(&str) -> bool,
    sink: &mut dyn FnMut(&str, Recovered),
) -> Result<u64, StoreError> {
    let path = p.dir.join(format::segment_file_name(SegKind::Msg, id));
    let marks = p.marks.remove(&id).unwrap_or_default();
    let mut cursor = 0usize;
    let mut scan = SegScan::default();
    let mut sc = Scanner::new(file, len);
    let mut bad = None;
    loop {
        match sc.next().map_err(|e| StoreError::io("read", &path, e))? {
            Scan::End => break,
            Scan::Bad { offset, reason } => {
                bad = Some((offset, reason));
                break;
            }
            Scan::Record { offset, ty, body } => {
                p.progress.record(RECORD_HEADER_LEN + body.len());
                let parsed = (ty == format::PUBLISH)
                    .then(|| format::PublishBody::decode(body))
                    .flatten();
                let (Some(pb), Ok(off)) = (parsed, u32::try_from(offset)) else {
                    bad = Some((offset, "undecodable or misplaced record"));
                    break;
                };
                let pos = Pos { seg: id, off };
                while marks.get(cursor).is_some_and(|m| m.off < off) {
                    cursor += 1;
                }
                let here =
                    &marks[cursor..marks[cursor..].partition_point(|m| m.off == off) + cursor];
                let location = Location {
                    segment: id,
                    offset: off,
                    len: (RECORD_HEADER_LEN + body.len()) as u32,
                    slot: 0,
                };
                let head = index::head_of(&body[pb.payload_start..]);
                for (q, msg_id) in pb.entries() {
                    let slot = scan.slots;
                    scan.slots += 1;
                    let qid = match r.last {
                        Some(qid) if *p.names.names[qid as usize] == *q => qid,
                        _ => p.names.id(q),
                    };
                    r.last = Some(qid);
                    if let Some(&(mark, a)) = p.drops.get(&qid) {
                        if pos < mark {
                            r.refs.entry(a).or_default().insert(id);
                            scan.kill(slot);
                            continue;
                        }
                    }
                    let mut acked = false;
                    let mut delivered = false;
                    for m in here.iter().filter(|m| m.qid == qid) {
                        r.refs.entry(m.ack_seg).or_default().insert(id);
                        acked |= m.acked;
                        delivered |= !m.acked;
                    }
                    if acked {
                        scan.kill(slot);
                        continue;
                    }
                    if !r.keep(qid, q, keep) {
                        r.dropped.entry(qid).or_default().insert(id);
                        scan.kill(slot);
                        continue;
                    }
                    r.max_id = r.max_id.max(Some(msg_id));
                    *scan.queues.entry(qid).or_default() += 1;
                    scan.live += 1;
                    scan.batch.push((
                        qid,
                        Recovered::Message(RecoveredMessage {
                            msg_id,
                            location: Location { slot, ..location },
                            delivered,
                            head,
                        }),
                    ));
                }
                if scan.batch.len() >= BATCH {
                    scan.flush(shared, id, &p.names, r, sink);
                }
            }
        }
    }
    let good = match bad {
        Some((offset, reason)) => {
            truncate(file, &path, offset, len, reason);
            p.progress.truncated += 1;
            offset
        }
        None => len,
    };
    scan.flush(shared, id, &p.names, r, sink);
    Ok(good)
}
