//! The ready messages of a queue, in delivery order: one FIFO, or for a priority queue one FIFO per priority
//! level served highest first. Messages keep their publish sequence number so that a requeued message goes back
//! to its original place within its level.
//!
//! # Paging
//! With a message store, a level is two sorted runs: messages in memory and *paged* messages, whose bodies sit
//! in the store and whose index entries stay in memory only near the run's ends ([`super::spill`] writes the
//! middle to the store). The level's head is whichever run has
//! the lower sequence number, so moving any message from the back of the memory run to the back of the paged
//! run keeps delivery order. Bodies come back in small batches when a paged message reaches the head.
//!
//! What gets paged, and how a page comes back, is [`super::paging`]'s; [`page_out`] moves messages to the
//! store and [`read_back`] reads them back.

use super::paging::{Paged, Pager};
use super::spill::{PagedRun, Source, Spilled};
use super::QueuedMessage;
use crate::store::{IndexBlock, Location, MessageStore};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Index entries per chunk that recovery spills (see `push_paged`).
const RECOVERED_CHUNK: usize = super::spill::CHUNK / 4;
/// What an in-memory message is charged beyond its body and header: the `Message` (128 bytes), its parsed
/// properties (about 320), routing key and queue entry (72), as allocated.
const MESSAGE_OVERHEAD: u64 = 560;

#[derive(Debug, Default)]
struct Level {
    mem: VecDeque<QueuedMessage>,
    paged: PagedRun,
    /// Paged messages being read back (taken from the front of `paged`), and the lowest `seq` among them.
    loading: usize,
    loading_min: u64,
}

/// Where a level's (or the list's) head is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    Empty,
    /// In memory: `front` and `pop_front` serve it.
    InMemory,
    /// In the store: `begin_load` starts reading it back.
    Paged,
    /// Being read back: wait for `finish_load`.
    Loading,
}

impl Level {
    #[inline]
    fn head(&self) -> Head {
        if self.loading == 0 && self.paged.is_empty() {
            // The usual case, on every publish and delivery: nothing of this level is on disk.
            return if self.mem.is_empty() {
                Head::Empty
            } else {
                Head::InMemory
            };
        }
        let mem = self.mem.front().map_or(u64::MAX, |m| m.seq);
        let paged = self.paged.front_seq().unwrap_or(u64::MAX);
        let loading = if self.loading > 0 {
            self.loading_min
        } else {
            u64::MAX
        };
        let min = mem.min(paged).min(loading);
        if min == u64::MAX {
            Head::Empty
        } else if loading == min {
            Head::Loading
        } else if mem == min {
            Head::InMemory
        } else {
            Head::Paged
        }
    }

    fn is_empty(&self) -> bool {
        self.mem.is_empty() && self.paged.is_empty() && self.loading == 0
    }

    /// How many in-memory messages can be served before a paged one is due.
    fn runway(&self) -> usize {
        match self.paged.front_seq() {
            None => usize::MAX,
            Some(s) => self.mem.partition_point(|m| m.seq < s),
        }
    }
}

#[derive(Debug)]
pub struct ReadyList {
    levels: Vec<Level>,
    len: usize,
    /// Body bytes of every ready message, paged or not (for x-max-length-bytes).
    bytes: u64,
    mem_len: usize,
    /// What the in-memory messages are charged against the budget.
    mem_cost: u64,
    pager: Option<Arc<Pager>>,
    /// Something was written under the transient key.
    paged_transient: bool,
    /// Bumped whenever the list is emptied, so that a load begun before is recognised as stale.
    generation: u64,
    /// Spilled chunks written so far: their store ids under the transient key, shared by all levels.
    next_chunk: u64,
    /// Messages on their way back from consumers while some are read from the store (see
    /// [`super::Held`]): counted as ready. Forgotten when the list is emptied (they go with the rest).
    returning: usize,
    /// Of those, the ones that go back to their places: the head waits for them, as they go before it.
    holding: usize,
}

impl Default for ReadyList {
    fn default() -> Self {
        ReadyList::new(None)
    }
}

fn cost(m: &QueuedMessage) -> u64 {
    (m.msg.body.len() + m.msg.header.len()) as u64 + MESSAGE_OVERHEAD
}

impl ReadyList {
    pub fn new(max_priority: Option<u8>) -> ReadyList {
        ReadyList::with_pager(max_priority, None)
    }

    pub fn with_pager(max_priority: Option<u8>, pager: Option<Pager>) -> ReadyList {
        let n = max_priority.map_or(1, |p| p as usize + 1);
        ReadyList {
            levels: (0..n).map(|_| Level::default()).collect(),
            len: 0,
            bytes: 0,
            mem_len: 0,
            mem_cost: 0,
            pager: pager.map(Arc::new),
            paged_transient: false,
            generation: 0,
            next_chunk: 0,
            returning: 0,
            holding: 0,
        }
    }

    /// The level for a priority: capped at the maximum; 0 without one.
    fn level_of(&self, priority: u8) -> usize {
        (priority as usize).min(self.levels.len() - 1)
    }

    fn level(&self, m: &QueuedMessage) -> usize {
        if self.levels.len() == 1 {
            return 0;
        }
        self.level_of(m.msg.priority().unwrap_or(0))
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

    /// What the in-memory messages cost (bodies, headers and bookkeeping).
    pub fn mem_cost(&self) -> u64 {
        self.mem_cost
    }

    /// Ready messages whose bodies are in memory.
    /// Index entries of paged messages held in memory (the rest are spilled to the store).
    pub fn paged_in_memory(&self) -> usize {
        self.levels.iter().map(|l| l.paged.in_memory()).sum()
    }

    pub fn in_memory(&self) -> usize {
        self.mem_len
    }

    fn charge(&mut self, m: &QueuedMessage) {
        let c = cost(m);
        self.mem_len += 1;
        self.mem_cost += c;
        if let Some(p) = &self.pager {
            p.budget.used.fetch_add(c, Ordering::Relaxed);
        }
    }

    fn release(&mut self, m: &QueuedMessage) {
        let c = cost(m);
        self.mem_len -= 1;
        self.mem_cost -= c;
        if let Some(p) = &self.pager {
            p.budget.used.fetch_sub(c, Ordering::Relaxed);
        }
    }

    pub fn push_back(&mut self, m: QueuedMessage) {
        let l = self.level(&m);
        self.len += 1;
        self.bytes += m.msg.body.len() as u64;
        self.charge(&m);
        self.levels[l].mem.push_back(m);
    }

    /// Append a message recovered from the store, paged (in publish order).
    pub fn push_paged(&mut self, priority: u8, p: Paged) {
        let l = self.level_of(priority);
        self.len += 1;
        self.bytes += u64::from(p.body_len);
        let single = self.levels.len() == 1;
        let run = &mut self.levels[l].paged;
        run.push_back(p, self.pager.as_deref(), &mut self.next_chunk);
        // Shorter chunks than a run spills: what a single-level queue gets here is its recovered backlog's
        // unindexed last segments (the rest comes as blocks), and a thousand queues that drain together
        // read these chunks back together at the end, each holding one whole (12.8 MB in all at 1,024
        // entries). A priority queue gets its whole backlog here: it keeps full chunks. At multiples, so
        // that a spill that failed (a full disk) is not retried at every message.
        let n = run.tail_len();
        if single && n > 0 && n.is_multiple_of(RECOVERED_CHUNK) {
            if let Some(pager) = self.pager.as_deref() {
                run.spill_tail(pager, &mut self.next_chunk);
            }
        }
        self.paged_transient |= run.spilled_chunks() > 0;
    }

    /// Append a block of recovered messages, unread (a single-level list only). Handed back when it
    /// cannot be: the caller then reads it and pushes its messages one by one.
    pub fn push_block(&mut self, s: Spilled) -> Result<(), Spilled> {
        if self.levels.len() != 1 {
            return Err(s);
        }
        self.levels[0]
            .paged
            .push_spilled(s, self.pager.as_deref(), &mut self.next_chunk)?;
        self.len += s.count as usize;
        self.bytes += s.body_bytes;
        self.paged_transient |= self.levels[0].paged.spilled_chunks() > 0;
        Ok(())
    }

    /// Write every level's tail to the store (if at least a head long), at the end of recovery. A recovered
    /// backlog's last segments (not yet indexed when the broker stopped) come back message by message, and
    /// left each queue a tail of up to a chunk's entries, ~12 KB: 12 MB held over a thousand idle queues,
    /// for nothing until the drain reaches them.
    pub fn spill_tails(&mut self) {
        let Some(pager) = self.pager.as_deref() else {
            return;
        };
        for level in &mut self.levels {
            level.paged.spill_tail(pager, &mut self.next_chunk);
            self.paged_transient |= level.paged.spilled_chunks() > 0;
        }
    }

    #[inline]
    fn head_level(&self) -> Option<usize> {
        (0..self.levels.len())
            .rev()
            .find(|&l| !self.levels[l].is_empty())
    }

    /// Where the next message to deliver is.
    pub fn head(&self) -> Head {
        if self.holding > 0 {
            return Head::Loading;
        }
        self.head_level()
            .map_or(Head::Empty, |l| self.levels[l].head())
    }

    /// The only level, when every ready message is in memory in it: then its memory run's front is the
    /// head. The usual case on every publish and delivery, checked first to spare the general walk.
    #[inline]
    fn simple(&self) -> Option<&Level> {
        match &self.levels[..] {
            [l] if self.holding == 0 && l.loading == 0 && l.paged.is_empty() => Some(l),
            _ => None,
        }
    }

    /// Nothing is on disk or on its way back from it: there is nothing to load.
    #[inline]
    pub fn nothing_paged(&self) -> bool {
        self.levels
            .iter()
            .all(|l| l.loading == 0 && l.paged.is_empty())
    }

    /// The head message, when it is in memory (see `head`).
    #[inline]
    pub fn front(&self) -> Option<&QueuedMessage> {
        if let Some(l) = self.simple() {
            return l.mem.front();
        }
        if self.holding > 0 {
            return None;
        }
        let level = &self.levels[self.head_level()?];
        match level.head() {
            Head::InMemory => level.mem.front(),
            _ => None,
        }
    }

    /// `n` messages are on their way back while some are read from the store, to their places (`hold`:
    /// the head waits for them) or to the back. Returns the list's generation, for `end_return`.
    pub fn begin_return(&mut self, n: usize, hold: bool) -> u64 {
        self.returning += n;
        if hold {
            self.holding += n;
        }
        self.generation
    }

    /// They are in (or could not be read). False when the list was emptied since `begin_return`: they
    /// went with the rest.
    pub fn end_return(&mut self, n: usize, hold: bool, generation: u64) -> bool {
        if generation != self.generation {
            return false;
        }
        self.returning = self.returning.saturating_sub(n);
        if hold {
            self.holding = self.holding.saturating_sub(n);
        }
        true
    }

    /// Messages ready, with those on their way back from a consumer (see `begin_return`): what declare-ok,
    /// a purge and the management API count.
    pub fn counted(&self) -> usize {
        self.len + self.returning
    }

    /// The head's expiry deadline, whether it is in memory or paged (not while it is being read back).
    pub fn front_expires(&self) -> Option<u64> {
        if let Some(l) = self.simple() {
            return l.mem.front().and_then(|m| m.expires());
        }
        if self.holding > 0 {
            return None;
        }
        let level = &self.levels[self.head_level()?];
        match level.head() {
            Head::InMemory => level.mem.front().and_then(|m| m.expires()),
            Head::Paged => level.paged.front_expires(),
            Head::Empty | Head::Loading => None,
        }
    }

    /// Take the head message, when it is in memory.
    pub fn pop_front(&mut self) -> Option<QueuedMessage> {
        let l = if self.simple().is_some() {
            0
        } else {
            if self.holding > 0 {
                return None;
            }
            let l = self.head_level()?;
            if self.levels[l].head() != Head::InMemory {
                return None;
            }
            l
        };
        let m = self.levels[l].mem.pop_front()?;
        self.len -= 1;
        self.bytes -= m.msg.body.len() as u64;
        self.release(&m);
        Some(m)
    }

    /// Take the head when it is paged, without reading it (it expired and nothing needs its body); the
    /// caller tells the store to forget it.
    pub fn pop_paged_front(&mut self) -> Option<Paged> {
        let l = self.head_level()?;
        if self.head() != Head::Paged {
            return None;
        }
        let p = self.levels[l].paged.pop_front()?;
        self.len -= 1;
        self.bytes -= u64::from(p.body_len);
        Some(p)
    }

    /// Forget the messages spilled chunks index (a purge): read on the store's reader thread, then acked.
    fn forget_chunks(&self, chunks: Vec<Spilled>) {
        let Some(pager) = &self.pager else { return };
        let mut written = Vec::new();
        for s in chunks {
            match s.source {
                Source::Chunk { loc, .. } => written.push((s, loc)),
                Source::Index { block, .. } => {
                    if let Some(key) = pager.durable_key.clone() {
                        forget_run(pager.store.clone(), key, block);
                    }
                }
            }
        }
        if written.is_empty() {
            return;
        }
        let store = pager.store.clone();
        let durable_key = pager.durable_key.clone();
        let transient_key = pager.transient_key.clone();
        let locs = written.iter().map(|(_, loc)| *loc).collect();
        pager.store.read_async(
            locs,
            Box::new(move |read| {
                let (mut durable, mut transient) = (Vec::new(), Vec::new());
                for ((s, loc), r) in written.iter().zip(read) {
                    transient.push(*loc);
                    let entries = r
                        .ok()
                        .and_then(|b| super::spill::decode(&b, s.count))
                        .unwrap_or_default();
                    for p in entries {
                        if p.transient {
                            transient.push(p.loc);
                        } else {
                            durable.push(p.loc);
                        }
                    }
                }
                if let Some(k) = durable_key {
                    store.ack(&k, &durable);
                }
                store.ack(&transient_key, &transient);
            }),
        );
    }

    /// Tell the store to forget paged messages that leave the list unread.
    pub fn forget_pages(&self, pages: &[Paged]) {
        let Some(pager) = &self.pager else { return };
        let (mut durable, mut transient) = (Vec::new(), Vec::new());
        for p in pages {
            if p.transient {
                transient.push(p.loc);
            } else {
                durable.push(p.loc);
            }
        }
        if let (Some(k), false) = (&pager.durable_key, durable.is_empty()) {
            pager.store.ack(k, &durable);
        }
        if !transient.is_empty() {
            pager.store.ack(&pager.transient_key, &transient);
        }
    }

    /// The store, for reading a load back.
    pub fn pager(&self) -> Option<&Arc<Pager>> {
        self.pager.as_ref()
    }

    /// Take back the message just pushed (a publish refused by x-overflow=reject-publish).
    pub fn remove_seq(&mut self, seq: u64) -> Option<QueuedMessage> {
        let l = (0..self.levels.len())
            .find(|&l| self.levels[l].mem.back().is_some_and(|m| m.seq == seq))?;
        let m = self.levels[l].mem.pop_back()?;
        self.len -= 1;
        self.bytes -= m.msg.body.len() as u64;
        self.release(&m);
        Some(m)
    }

    /// Put messages back at their original positions (by sequence number) within their levels.
    pub fn requeue(&mut self, mut msgs: Vec<QueuedMessage>) {
        msgs.sort_by_key(|m| m.seq);
        let mut per_level: Vec<Vec<QueuedMessage>> =
            (0..self.levels.len()).map(|_| Vec::new()).collect();
        for m in msgs {
            self.len += 1;
            self.bytes += m.msg.body.len() as u64;
            self.charge(&m);
            let l = self.level(&m);
            per_level[l].push(m);
        }
        for (l, msgs) in per_level.into_iter().enumerate() {
            merge_into(&mut self.levels[l].mem, msgs);
        }
    }

    /// Empty the list. Returns the in-memory messages (for the caller to settle with the store) and the
    /// store locations of paged persistent messages; transient pages are forgotten here unless `forget` is
    /// false (the caller drops the whole transient key).
    pub fn drain(&mut self, forget: bool) -> (Vec<QueuedMessage>, Vec<Location>) {
        let mut mem = Vec::with_capacity(self.mem_len);
        let mut stored = Vec::new();
        let mut transient = Vec::new();
        let mut chunks = Vec::new();
        for level in self.levels.iter_mut() {
            mem.extend(level.mem.drain(..));
            let (entries, spilled) = level.paged.drain();
            chunks.extend(spilled);
            for p in entries {
                if p.transient {
                    transient.push(p.loc);
                } else {
                    stored.push(p.loc);
                }
            }
        }
        if let Some(p) = &self.pager {
            p.budget.used.fetch_sub(self.mem_cost, Ordering::Relaxed);
            if forget && !transient.is_empty() {
                p.store.ack(&p.transient_key, &transient);
            }
        }
        if forget {
            self.forget_chunks(chunks);
        }
        for level in self.levels.iter_mut() {
            level.loading = 0;
        }
        self.generation += 1;
        self.returning = 0;
        self.holding = 0;
        self.len = 0;
        self.bytes = 0;
        self.mem_len = 0;
        self.mem_cost = 0;
        (mem, stored)
    }

    /// Empty the list without settling anything with the store (queue deleted, or no store).
    pub fn clear(&mut self) -> usize {
        let n = self.len;
        self.drain(false);
        n
    }

    /// The queue is gone: forget every transient page with one record.
    pub fn forget_transient_pages(&mut self) {
        if let (Some(p), true) = (&self.pager, self.paged_transient) {
            p.store.drop_queue(&p.transient_key);
            self.paged_transient = false;
        }
    }
}

impl Drop for ReadyList {
    fn drop(&mut self) {
        if let Some(p) = &self.pager {
            p.budget.used.fetch_sub(self.mem_cost, Ordering::Relaxed);
        }
    }
}

/// Merge `msgs` (any order) into `run` (sorted by `seq`), keeping it sorted.
fn merge_into(run: &mut VecDeque<QueuedMessage>, mut msgs: Vec<QueuedMessage>) {
    if msgs.is_empty() {
        return;
    }
    msgs.sort_by_key(|m| m.seq);
    if run.back().is_some_and(|b| msgs[0].seq > b.seq) {
        // All behind what is in memory, as the loads of a drain are: no merge, no new deque.
        run.extend(msgs);
        return;
    }
    match run.front().map(|m| m.seq) {
        Some(h) if msgs.last().is_some_and(|m| m.seq > h) => {
            let old = std::mem::take(run);
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
            *run = merged;
        }
        _ => {
            for m in msgs.into_iter().rev() {
                run.push_front(m);
            }
        }
    }
}

/// Reads a run of recovered blocks a part at a time on the store's reader thread and acks what it finds
/// (a purge): a run may span a queue's whole recovered backlog.
fn forget_run(store: Arc<MessageStore>, key: String, block: IndexBlock) {
    let s = store.clone();
    store.read_block_async(
        key.clone(),
        block,
        FORGET_PART,
        Box::new(move |read| match read {
            Ok(part) => {
                let locs: Vec<Location> = part.entries.iter().map(|m| m.location).collect();
                s.ack(&key, &locs);
                if let Some(rest) = part.rest {
                    forget_run(s, key, rest.block);
                }
            }
            Err(e) => {
                tracing::error!(queue = %key.replace('\u{1}', "/"), segment = block.segment, error = %e, "purged messages cannot be read to be forgotten; they come back at the next start")
            }
        }),
    );
}

/// Entries of a purged run read at a time (at most a block's).
const FORGET_PART: usize = 1024;

/// Gives back a level's room down to `want` once it has more than twice that (not at every message: a room
/// shrunk to fit regrows at the next push).
fn shrink_room(mem: &mut VecDeque<QueuedMessage>, want: usize) {
    if mem.capacity() > 2 * want {
        mem.shrink_to(want);
    }
}

mod page_out;
mod read_back;
#[cfg(test)]
pub use read_back::load_now;
pub use read_back::Load;
#[cfg(test)]
mod tests;
