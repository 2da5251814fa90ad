//! Reading back: which paged messages a level reads from the store next and when (at its head, or ahead of
//! a consumed queue's drain), and taking them in when the store's reader answers.

use super::{merge_into, shrink_room, Head, ReadyList, MESSAGE_OVERHEAD};
use crate::queue::paging::Paged;
#[cfg(test)]
use crate::queue::spill::Source;
use crate::queue::spill::{Run, Spilled};
use crate::queue::QueuedMessage;

/// Paged messages read back at once when the head reaches them.
const LOAD_BATCH: usize = 512;
/// What a consumed queue reads at once (and ahead) once queues are crowded: twice what it may keep, and
/// fewer once more is held ([`crate::queue::paging::MemoryBudget::crowded_batch`]), down to a quarter of that.
const CROWDED_BATCH: usize = 2 * crate::queue::paging::KEEP_MIN;
const CROWDED_BATCH_MIN: usize = crate::queue::paging::KEEP_MIN / 4;
/// A level starts reading back once fewer than this many messages stand before its paged run.
const READ_AHEAD: usize = crate::queue::paging::KEEP_MIN;

/// Paged messages being read back from the store, to be handed to `finish_load`.
#[derive(Debug)]
pub struct Load {
    level: usize,
    pub items: Vec<Paged>,
    /// A chunk of spilled index entries to read back first (then `items` is empty).
    pub chunk: Option<Spilled>,
    generation: u64,
    /// The messages' share of the memory budget while they are read.
    _reserved: Option<crate::queue::paging::Reservation>,
}

impl ReadyList {
    /// Start reading paged messages back: when the head is paged, or (read-ahead) when fewer than
    /// `READ_AHEAD` in-memory messages stand before the next paged one. At most one load is in flight per list.
    pub fn begin_load(&mut self) -> Option<Load> {
        self.begin_load_ahead(READ_AHEAD, LOAD_BATCH)
    }

    /// `begin_load` for a queue whose consumers take messages as they come: it reads the next batch while
    /// fewer than two batches stand before it, so a drain does not wait for each read (once queues are
    /// crowded, batches of `CROWDED_BATCH` or fewer, read while fewer than one stands before it).
    pub fn begin_load_consumed(&mut self) -> Option<Load> {
        if self.levels.iter().all(|l| l.paged.is_empty()) {
            // Nothing on disk, as on every publish to a queue whose consumers keep up.
            return None;
        }
        let crowded = self
            .pager
            .as_ref()
            .filter(|p| p.budget.crowded())
            .map(|p| p.budget.crowded_batch(CROWDED_BATCH, CROWDED_BATCH_MIN));
        // Crowded, a queue reads its share of what the queues may hold in memory, not a full batch: a
        // thousand consumed queues each reading 512 ahead held half a million messages.
        match crowded {
            Some(batch) => self.begin_load_ahead(batch, batch),
            None => self.begin_load_ahead(2 * LOAD_BATCH, LOAD_BATCH),
        }
    }

    fn begin_load_ahead(&mut self, ahead: usize, batch: usize) -> Option<Load> {
        let l = self.head_level()?;
        let level = &mut self.levels[l];
        if level.loading > 0 || level.paged.is_empty() {
            return None;
        }
        // Read ahead only below the in-memory floor: a paged queue with no consumer keeps what it paged out.
        let due = level.head() == Head::Paged || level.runway() < ahead;
        if !due {
            return None;
        }
        if level.paged.front_spilled() {
            let chunk = level.paged.take_chunk()?;
            level.loading = chunk.count as usize;
            level.loading_min = chunk.first_seq;
            return Some(Load {
                level: l,
                items: Vec::new(),
                chunk: Some(chunk),
                generation: self.generation,
                _reserved: None,
            });
        }
        let items = level.paged.take_front(batch);
        level.loading = items.len();
        level.loading_min = items.first().map_or(u64::MAX, |p| p.seq);
        let reserved = self.pager.as_ref().map(|p| {
            p.budget.reserve(
                items
                    .iter()
                    .map(|m| u64::from(m.body_len) + MESSAGE_OVERHEAD)
                    .sum(),
            )
        });
        Some(Load {
            level: l,
            items,
            chunk: None,
            generation: self.generation,
            _reserved: reserved,
        })
    }

    /// A spilled chunk's index entries are back (`None`: it could not be read, and its messages are gone
    /// from the list; durable ones come back at the next start). They become the level's paged head, and
    /// `rest` (what is left of an index block read in part) goes back before the next chunk.
    pub fn finish_chunk(&mut self, load: Load, entries: Option<Run>, rest: Option<Spilled>) {
        if load.generation != self.generation {
            if let Some(mut run) = entries {
                let v: Vec<Paged> = std::iter::from_fn(|| run.pop_entry()).collect();
                self.forget_pages(&v);
            }
            self.forget_chunks(rest.into_iter().collect());
            return;
        }
        if let Some(s) = &load.chunk {
            // Fewer than promised: unreadable, or (an index block) settled since it was handed out.
            let (n, bytes) = entries
                .as_ref()
                .map_or((0, 0), |r| (r.len(), r.body_bytes()));
            let (left, left_bytes) = rest.map_or((0, 0), |r| (r.count as usize, r.body_bytes));
            self.len = (self.len + n + left).saturating_sub(s.count as usize);
            self.bytes = (self.bytes + bytes + left_bytes).saturating_sub(s.body_bytes);
        }
        let level = &mut self.levels[load.level];
        level.loading = 0;
        level.paged.finish_chunk(entries, rest);
    }

    /// The store's reader read `load` back (`read[i]` for `load.items[i]`; `None` when it could not be
    /// read, which drops that message). Messages go to their places in memory by `seq`.
    pub fn finish_load(&mut self, load: Load, read: Vec<Option<QueuedMessage>>) {
        if load.generation != self.generation {
            // The list was emptied meanwhile (purge, delete): these messages are gone with it.
            self.forget_pages(&load.items);
            return;
        }
        self.levels[load.level].loading = 0;
        let mut loaded: Vec<QueuedMessage> = Vec::with_capacity(read.len());
        for (p, m) in load.items.iter().zip(read) {
            match m {
                Some(m) => loaded.push(m),
                None => {
                    self.len -= 1;
                    self.bytes -= u64::from(p.body_len);
                }
            }
        }
        for m in &loaded {
            self.charge(m);
        }
        let mem = &mut self.levels[load.level].mem;
        merge_into(mem, loaded);
        // Room for what it holds and one more batch like this one. `trim` leaves a level that is reading
        // back alone, and such a level's room only grew: a thousand queues drained from disk after a
        // restart kept the room of their first, uncrowded batches (8.6 MB) while holding a few dozen each.
        let want = (mem.len() + load.items.len()).max(CROWDED_BATCH_MIN);
        shrink_room(mem, want);
    }
}

/// Read `load` back synchronously (tests; the queue uses the store's reader thread).
#[cfg(test)]
pub fn load_now(list: &mut ReadyList, load: Load) {
    let pager = list.pager.as_ref().expect("paged lists have a pager");
    if let Some(chunk) = load.chunk {
        let entries = match chunk.source {
            Source::Chunk { loc, .. } => {
                pager.store.ack(&pager.transient_key, &[loc]);
                pager
                    .store
                    .read(loc)
                    .ok()
                    .and_then(|b| crate::queue::spill::check(&b, chunk.count))
            }
            Source::Index { block, .. } => {
                let key = pager.durable_key.as_deref().expect("a durable queue");
                let clock = crate::clock::Clock::real();
                pager.store.read_block(key, &block).ok().map(|v| {
                    crate::queue::paging::block_run(chunk.first_seq, &v, None, &clock, false).0
                })
            }
        };
        list.finish_chunk(load, entries, None);
        return;
    }
    let read: Vec<Option<QueuedMessage>> = load
        .items
        .iter()
        .map(|p| {
            crate::queue::paging::decode_loaded(
                pager,
                p,
                pager.store.read(p.loc),
                &mut Default::default(),
            )
        })
        .collect();
    list.finish_load(load, read);
}
