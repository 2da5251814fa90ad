//! Reading back: a record by its location (from the file, or from the write buffer while it is in flight),
//! runs of nearby records with one `pread`, and a block of an index file; and the reader thread, which serves
//! `read_async` and `read_block_async`. Every payload is checked against its record's checksum.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::format::{self, SegKind, HEADER_LEN, RECORD_HEADER_LEN};
use super::{
    index, BlockDone, IndexBlock, Location, ReadDone, RecoveredBlock, RecoveredMessage, Shared,
    StoreError, RECOVERED_HEAD,
};

/// How long a `read` of a record that is being written waits for the write before giving up.
const READ_WAIT: Duration = Duration::from_secs(30);
/// `read_async` reads records this close together with one `pread`, through the bytes between them.
const READ_GAP: u64 = 16 << 10;
/// The most one such read spans.
const READ_RUN: u64 = 256 << 10;
/// The most bytes of one reader's records copied out of shared runs into one allocation (see [`Gather`]).
const GATHER_PIECE: usize = 2 << 10;

/// A part of a block read back: its live entries, in order, and what is left of the block. A queue reads a
/// block in parts so that it holds a part's entries, not a whole block's: a thousand queues each reading a
/// block of several hundred messages held 6 MB of them.
#[derive(Debug)]
pub struct BlockPart {
    pub entries: Vec<RecoveredMessage>,
    pub rest: Option<BlockRest>,
}

/// What is left of a run after a part was read: its block with `skip` past the part, or the run's next block,
/// and the payload head of its first entry (see [`RecoveredMessage::head`]).
#[derive(Debug, Clone, Copy)]
pub struct BlockRest {
    pub block: IndexBlock,
    pub first_head: [u8; RECOVERED_HEAD],
    /// Entries of the run the part went past, live or not: the run's messages left are its own less these.
    pub passed: u32,
}

/// Index tables and files kept open (see [`Recent`]).
const RECENT: usize = 4;

/// The few values per segment used last: index tables for [`Shared::next_block`] (under 100 KB each) and
/// index files for block reads. A thousand queues draining side by side reach a segment at about the same
/// time: each table is read and each file opened once, not once per queue or per block.
/// A failed load is kept too, as `None`: a lost table is read and logged once, not once per queue.
pub(crate) struct Recent<T>(std::sync::Mutex<std::collections::VecDeque<(u32, Option<Arc<T>>)>>);

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Recent(Default::default())
    }
}

impl<T> Recent<T> {
    fn kept(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(u32, Option<Arc<T>>)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Segment `id`'s value, loaded (without the lock held) if it is not kept.
    fn get_or(&self, id: u32, load: impl FnOnce() -> Option<T>) -> Option<Arc<T>> {
        if let Some((_, v)) = self.kept().iter().find(|(k, _)| *k == id) {
            return v.clone();
        }
        let v = load().map(Arc::new);
        let mut kept = self.kept();
        if kept.len() >= RECENT {
            kept.pop_front();
        }
        kept.push_back((id, v.clone()));
        v
    }

    /// Lets segment `id`'s value go (the segment was deleted: an open file would keep its disk space).
    pub(crate) fn forget(&self, id: u32) {
        self.kept().retain(|(k, _)| *k != id);
    }
}

/// A request to the reader thread, answered through its callback.
pub(super) enum ReadJob {
    Records(Vec<Location>, ReadDone),
    Block(String, IndexBlock, usize, BlockDone),
}

/// The most jobs the reader thread takes in one pass (see [`run_reads`]).
const READ_JOBS_AT_ONCE: usize = 256;

/// Reads the records of every `Records` job in `batch` together (one pass over the files in order, see
/// [`Shared::read_jobs`]), then answers the jobs in the order they came, reading blocks in their turn.
fn run_reads(shared: &Shared, batch: Vec<ReadJob>, scratch: &mut ReadScratch) {
    let locs: Vec<&[Location]> = batch
        .iter()
        .filter_map(|j| match j {
            ReadJob::Records(locs, _) => Some(locs.as_slice()),
            ReadJob::Block(..) => None,
        })
        .collect();
    let read = shared.read_jobs(&locs, scratch);
    debug_assert!(read.iter().zip(&locs).all(|(r, l)| r.len() == l.len()));
    let mut read = read.into_iter();
    for job in batch {
        match job {
            ReadJob::Records(_, done) => done(read.next().unwrap_or_default()),
            ReadJob::Block(queue, b, part, done) => done(shared.read_block(&queue, &b, part)),
        }
    }
}

/// The reader thread: jobs until the store closes its end of the channel. What else is waiting goes with
/// each job, so many queues' loads are read in one pass.
pub(super) fn serve(shared: &Shared, jobs: std::sync::mpsc::Receiver<ReadJob>) {
    let mut scratch = ReadScratch::default();
    while let Ok(job) = jobs.recv() {
        let mut batch = vec![job];
        while batch.len() < READ_JOBS_AT_ONCE {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        run_reads(shared, batch, &mut scratch);
        scratch.trim();
    }
}

impl Shared {
    pub(super) fn read(&self, loc: Location) -> Result<Bytes, StoreError> {
        let start = u64::from(loc.offset);
        let end = start + u64::from(loc.len);
        let waited = Instant::now();
        let mut st = self.lock();
        loop {
            let Some(seg) = st.msg.segs.get(&loc.segment) else {
                return Err(StoreError::NotFound(loc));
            };
            if start < HEADER_LEN || (loc.len as usize) < RECORD_HEADER_LEN || end > seg.len {
                return Err(StoreError::NotFound(loc));
            }
            if end <= seg.written {
                if let Some(file) = seg.file.clone() {
                    drop(st);
                    return self.read_at(&file, loc);
                }
            }
            let pending = st
                .msg
                .chunks
                .iter()
                .find(|c| c.seg == loc.segment && c.start <= start && end <= c.end());
            if let Some(c) = pending {
                let from = (start - c.start) as usize;
                let buf = c.bytes[from..from + loc.len as usize].to_vec();
                drop(st);
                return decode_read(loc, Bytes::from(buf));
            }
            // The sync thread is writing it right now.
            if st.shutdown || waited.elapsed() > READ_WAIT {
                return Err(StoreError::NotFound(loc));
            }
            st = self
                .written
                .wait_timeout(st, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn read_at(&self, file: &File, loc: Location) -> Result<Bytes, StoreError> {
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, u64::from(loc.offset))
            .map_err(|e| StoreError::io("read", &self.path(SegKind::Msg, loc.segment), e))?;
        decode_read(loc, Bytes::from(buf))
    }

    pub(super) fn read_block(
        &self,
        queue: &str,
        b: &IndexBlock,
        part: usize,
    ) -> Result<BlockPart, StoreError> {
        let file = match self.lock().msg.segs.get(&b.segment).filter(|s| !s.deleting) {
            // Deleted, or being deleted, because nothing in it is live any more: the block (what is left of
            // a block read in part, when its queue was deleted meanwhile) has no live entry.
            None => {
                return Ok(BlockPart {
                    entries: Vec::new(),
                    rest: None,
                })
            }
            Some(s) => s
                .file
                .clone()
                .ok_or(StoreError::Invalid("the block's segment is not open"))?,
        };
        let skip = b.skip as usize;
        let end = skip.saturating_add(part);
        // One entry past the part, for the head of what is left.
        let idx = self
            .index_files
            .get_or(b.segment, || index::open(&self.cfg.dir, b.segment));
        // A block that cannot be read is passed over, not the rest of its run with it (a run may be the
        // queue's whole recovered backlog): its messages stay stored and come back at the next start.
        let entries = index::read_entries(
            &self.cfg.dir,
            &file,
            idx.as_deref(),
            b,
            queue,
            end.saturating_add(1),
        )
        .unwrap_or_else(|e| {
            tracing::error!(queue = %queue.replace('\u{1}', "/"), segment = b.segment, messages = b.count - b.skip.min(b.count), error = %e, "message store: a block of recovered messages cannot be read; they leave the queue until the next start");
            Vec::new()
        });
        let rest = match entries.get(end).filter(|_| end < b.count as usize) {
            Some(e) => Some(BlockRest {
                block: IndexBlock {
                    skip: end as u32,
                    ..*b
                },
                first_head: e.head,
                passed: (end - skip) as u32,
            }),
            None => self.next_block(queue, b).map(|n| BlockRest {
                block: n.block,
                first_head: n.first_head,
                passed: b.count.saturating_sub(b.skip),
            }),
        };
        let st = self.lock();
        // Looked up once, not by name for every entry.
        let qid = st.queue_ids.get(queue);
        let entries = entries
            .into_iter()
            .take(end)
            .skip(skip)
            .map(|e| RecoveredMessage {
                msg_id: e.msg_id,
                location: Location {
                    segment: b.segment,
                    offset: e.offset,
                    len: e.len,
                    slot: e.slot,
                },
                delivered: false,
                head: e.head,
            })
            .filter(|m| qid.is_some_and(|q| st.is_live_id(q, queue, m.location)))
            .collect();
        Ok(BlockPart { entries, rest })
    }

    /// The block of `queue`'s run after `b`: the next of the queue's blocks in `b`'s segment, or its first in
    /// the next segment up to the run's last that still counts the queue (segments between may hold only
    /// other queues' messages, or none left of this one's).
    fn next_block(&self, queue: &str, b: &IndexBlock) -> Option<RecoveredBlock> {
        let (mut seg, mut after) = (b.segment, Some(b.at));
        let mut seg_len = self
            .lock()
            .msg
            .segs
            .get(&seg)
            .filter(|s| !s.deleting)
            .map(|s| s.len);
        loop {
            // An unreadable table (logged) passes over its segment, not the rest of the run.
            let table = seg_len.and_then(|len| self.table(seg, len));
            if let Some(mut n) = table.and_then(|t| t.next_block(queue, after)) {
                n.block.until = b.until;
                return Some(n);
            }
            let from = seg.checked_add(1).filter(|&f| f <= b.until)?;
            let st = self.lock();
            let qid = st.queue_ids.get(queue)?;
            let (&id, s) = st
                .msg
                .segs
                .range(from..=b.until)
                .find(|(_, s)| !s.deleting && s.queues.contains(qid))?;
            (seg, seg_len, after) = (id, Some(s.len), None);
        }
    }

    /// Segment `id`'s index table, from the few the reader read last or from its file.
    fn table(&self, id: u32, seg_len: u64) -> Option<Arc<index::RawTable>> {
        self.tables.get_or(id, || {
            index::read_raw_table(&self.cfg.dir, id, seg_len)
                .map_err(|reason| {
                    // Recovery read this table: it was there and valid then.
                    tracing::error!(index = %index::path(&self.cfg.dir, id).display(), reason = reason.unwrap_or("unreadable"), "message store: an index table read at recovery cannot be read again; the recovered messages in its segment leave their queues until the next start");
                })
                .ok()
        })
    }

    /// Reads the records of several readers (the loads of the queues that reached the reader thread
    /// together), answering each in its own order, with one `pread` per run of records that lie close
    /// together in one segment. A queue draining from disk costs a syscall per run and an allocation per
    /// run (or per [`Gather`] piece of its own records), not per message; and since the runs are taken over
    /// all the readers' records in file order, queues filled side by side, whose records alternate in the
    /// segments, share their reads: a thousand queues draining together read as one.
    ///
    /// `scratch` holds the buffers of a pass, kept by the caller from one call to the next (see
    /// [`ReadScratch`]).
    pub(super) fn read_jobs(
        &self,
        jobs: &[&[Location]],
        scratch: &mut ReadScratch,
    ) -> Vec<Vec<Result<Bytes, StoreError>>> {
        // Every answer is filled in below; one left as it starts says its record was not found.
        let mut out: Vec<Vec<Result<Bytes, StoreError>>> = jobs
            .iter()
            .map(|locs| locs.iter().map(|l| Err(StoreError::NotFound(*l))).collect())
            .collect();
        let ReadScratch {
            bytes: scratch,
            order,
            copied,
        } = scratch;
        // (location, job, index in the job), in file order.
        order.clear();
        order.reserve(jobs.iter().map(|l| l.len()).sum());
        order.extend(jobs.iter().enumerate().flat_map(|(j, locs)| {
            locs.iter()
                .enumerate()
                .map(move |(i, l)| (*l, j as u32, i as u32))
        }));
        order.sort_unstable_by_key(|(l, j, i)| (l.segment, l.offset, *j, *i));
        let mut put = |j: u32, i: u32, r: Result<Bytes, StoreError>| {
            out[j as usize][i as usize] = r;
        };
        let mut gather = Gather::new(jobs.len(), copied);
        let mut i = 0;
        while i < order.len() {
            let (first, first_job, _) = order[i];
            let start = u64::from(first.offset);
            let mut end = start + u64::from(first.len);
            let mut used = u64::from(first.len);
            let mut one_job = true;
            let mut last = first;
            let mut j = i + 1;
            while let Some((l, job, _)) = order.get(j) {
                // The same record again, for another queue (one record serves every queue a fan-out
                // reached, at locations that differ only in their slot): it shares the run.
                if (l.segment, l.offset, l.len) == (last.segment, last.offset, last.len) {
                    one_job &= *job == first_job;
                    j += 1;
                    continue;
                }
                let (l_start, next_end) =
                    (u64::from(l.offset), u64::from(l.offset) + u64::from(l.len));
                if l.segment != first.segment
                    || l_start < end
                    || l_start - end > READ_GAP
                    || next_end - start > READ_RUN
                    || (l.len as usize) < RECORD_HEADER_LEN
                {
                    break;
                }
                end = next_end;
                used += u64::from(l.len);
                one_job &= *job == first_job;
                last = *l;
                j += 1;
            }
            let run = &order[i..j];
            i = j;
            let file = (run.len() > 1 && (first.len as usize) >= RECORD_HEADER_LEN)
                .then(|| {
                    let st = self.lock();
                    st.msg
                        .segs
                        .get(&first.segment)
                        .filter(|s| start >= HEADER_LEN && end <= s.written)
                        .and_then(|s| s.file.clone())
                })
                .flatten();
            let Some(file) = file else {
                // Not written yet, gone, or alone: one at a time.
                for (l, job, k) in run {
                    put(*job, *k, self.read(*l));
                }
                continue;
            };
            let span = (end - start) as usize;
            // Payloads share a dense run's buffer when one reader asked for all of it; otherwise (other
            // queues' records between, or in it) they are copied out, so that a kept message pins neither
            // the bytes it skipped nor another queue's messages.
            let share = one_job && used * 4 >= (end - start) * 3;
            let mut owned = Vec::new();
            let buf = if share {
                owned.resize(span, 0);
                &mut owned
            } else {
                scratch.resize(span, 0);
                &mut *scratch
            };
            match file.read_exact_at(buf, start) {
                Ok(()) => {
                    let shared = share.then(|| Bytes::from(std::mem::take(&mut owned)));
                    for (l, job, k) in run {
                        let from = (l.offset - first.offset) as usize;
                        let to = from + l.len as usize;
                        match &shared {
                            Some(b) => put(*job, *k, decode_read(*l, b.slice(from..to))),
                            None => gather.copy(jobs, *job, *k, *l, &scratch[from..to]),
                        }
                    }
                }
                Err(e) => {
                    let err = StoreError::io("read", &self.path(SegKind::Msg, first.segment), e);
                    for (_, job, k) in run {
                        put(*job, *k, Err(err.clone()));
                    }
                }
            }
        }
        for (job, k, l, rec) in gather.finish() {
            out[job as usize][k as usize] = decode_read(l, rec);
        }
        out
    }
}

/// The reader thread's buffers for [`Shared::read_jobs`], kept from one pass to the next. A pass over a
/// thousand queues' loads sorts and gathers thousands of records: allocated afresh, each pass's lists were
/// faulted in, zeroed and handed back to the OS (the allocator purges freed memory within a millisecond),
/// and a thousand-queue drain took 4% more CPU.
#[derive(Default)]
pub(super) struct ReadScratch {
    /// Runs whose records are copied out: up to `READ_RUN` bytes.
    pub(super) bytes: Vec<u8>,
    order: Vec<(Location, u32, u32)>,
    copied: Vec<Copied>,
}

/// Records a pass's lists keep room for between passes (1 MB). The queues' read-ahead budget usually keeps
/// passes below it; a larger one (many queues with room to read far ahead) allocates its own.
const SCRATCH_KEPT: usize = 1 << 14;

impl ReadScratch {
    fn trim(&mut self) {
        if self.order.capacity() > SCRATCH_KEPT {
            self.order = Vec::new();
        }
        if self.copied.capacity() > SCRATCH_KEPT {
            self.copied = Vec::new();
        }
    }
}

/// A record copied by [`Gather`]: (reader, index in its job, location, piece, offset in the piece).
type Copied = (u32, u32, Location, u32, usize);

/// Each reader's records copied out of runs shared with other readers, gathered into pieces of its own of
/// up to `GATHER_PIECE` bytes: an allocation per piece instead of one (and a refcount header) per message,
/// while a message kept pins at most a piece of its own queue's records. One buffer per reader's whole load
/// pinned it all until its last message went: 2-3 MiB more at the peak of a 1,000-queue drain.
struct Gather<'a> {
    pieces: Vec<Vec<u8>>,
    /// Per reader: its open piece, and its record bytes not copied yet (an upper bound on what a new piece
    /// needs: some of them come from runs it has alone, or are read one at a time).
    open: Vec<Option<(usize, usize)>>,
    copied: &'a mut Vec<Copied>,
}

impl<'a> Gather<'a> {
    fn new(readers: usize, copied: &'a mut Vec<Copied>) -> Gather<'a> {
        copied.clear();
        Gather {
            pieces: Vec::new(),
            open: vec![None; readers],
            copied,
        }
    }

    /// Copies `rec`, the record at `loc` that reader `job` asked for as its `k`th.
    fn copy(&mut self, jobs: &[&[Location]], job: u32, k: u32, loc: Location, rec: &[u8]) {
        let slot = &mut self.open[job as usize];
        let left = slot.map_or_else(
            || jobs[job as usize].iter().map(|l| l.len as usize).sum(),
            |(_, left)| left,
        );
        let piece = match *slot {
            Some((p, _)) if self.pieces[p].len() + rec.len() <= self.pieces[p].capacity() => p,
            _ => {
                let cap = left.min(GATHER_PIECE).max(rec.len());
                self.pieces.push(Vec::with_capacity(cap));
                self.pieces.len() - 1
            }
        };
        self.copied
            .push((job, k, loc, piece as u32, self.pieces[piece].len()));
        self.pieces[piece].extend_from_slice(rec);
        *slot = Some((piece, left.saturating_sub(rec.len())));
    }

    /// Each copied record, as a slice of its frozen piece.
    fn finish(self) -> impl Iterator<Item = (u32, u32, Location, Bytes)> + 'a {
        let pieces: Vec<Bytes> = self
            .pieces
            .into_iter()
            .map(|mut p| {
                // Only where it is worth a call: most pieces are full to within a record.
                if p.capacity() - p.len() > p.capacity() / 4 {
                    p.shrink_to_fit();
                }
                Bytes::from(p)
            })
            .collect();
        self.copied.drain(..).map(move |(job, k, l, piece, at)| {
            let rec = pieces[piece as usize].slice(at..at + l.len as usize);
            (job, k, l, rec)
        })
    }
}

/// Checks a publish record read back and returns its payload (sharing the read buffer).
fn decode_read(loc: Location, buf: Bytes) -> Result<Bytes, StoreError> {
    let corrupt = |reason| StoreError::Corrupt {
        segment: loc.segment,
        offset: u64::from(loc.offset),
        reason,
    };
    let (len, crc, ty) = format::parse_record_header(&buf);
    if len as usize != buf.len() - RECORD_HEADER_LEN {
        return Err(corrupt("record length does not match the location"));
    }
    if ty != format::PUBLISH {
        return Err(corrupt("not a publish record"));
    }
    let body = &buf[RECORD_HEADER_LEN..];
    if format::record_crc(ty, body) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let start = RECORD_HEADER_LEN
        + format::PublishBody::decode(body)
            .ok_or_else(|| corrupt("undecodable publish record"))?
            .payload_start;
    Ok(buf.slice(start..))
}
