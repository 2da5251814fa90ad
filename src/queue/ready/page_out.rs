//! Paging out: moving a queue's in-memory messages to the store when it holds more than the memory budget
//! lets it, and giving back the room of what left.

use super::{cost, ReadyList};
use crate::queue::message::RecordMeta;
use crate::queue::paging::Paged;
use std::sync::atomic::Ordering;

impl ReadyList {
    /// Move messages from the back of memory to the store while the queue holds more in memory than it
    /// should (see the docs of `super`). Messages already stored cost no write.
    pub fn page_out(&mut self) {
        self.page_out_for(true)
    }

    /// `page_out` for a queue that has consumers (`consumed`) or not. (A publish has just trimmed, at the
    /// end of its dispatch round; messages that expired since give their room back at the next round.)
    pub fn page_out_for(&mut self, consumed: bool) {
        if self.page_out_to_floor(consumed) {
            self.trim();
        }
    }

    /// Give back the room of in-memory messages gone: a list that once held thousands (a batch read back,
    /// a burst) keeps it otherwise: it took 37 MB over a thousand drained queues.
    pub fn trim(&mut self) {
        // A level still reading back from the store fills its room again with the next batch.
        for level in self
            .levels
            .iter_mut()
            .filter(|l| l.loading == 0 && l.paged.is_empty())
        {
            // Not smaller: a queue whose consumers keep up empties its list every round, and would regrow it
            // every round.
            let want = level.mem.len().max(64) * 2;
            super::shrink_room(&mut level.mem, want);
        }
    }

    /// Whether it paged anything out.
    fn page_out_to_floor(&mut self, consumed: bool) -> bool {
        let Some(pager) = &self.pager else {
            return false;
        };
        let mut paged_any = false;
        loop {
            let (floor, over) = pager.budget.floor(consumed);
            if self.mem_len <= floor {
                return paged_any;
            }
            // Lowest priority first: it is delivered last.
            let pick = (0..self.levels.len()).find(|&l| {
                let level = &self.levels[l];
                level.mem.back().is_some_and(|m| {
                    level.paged.back_seq().is_none_or(|s| s < m.seq) && (over || m.loc().is_some())
                })
            });
            let Some(l) = pick else { return paged_any };
            let Some(m) = self.levels[l].mem.pop_back() else {
                return paged_any;
            };
            let paged = match m.loc() {
                Some(loc) => Paged::of(&m, loc, false),
                None => {
                    let meta = RecordMeta {
                        priority: m.msg.priority().unwrap_or(0),
                        ..RecordMeta::default()
                    };
                    let rec = m.msg.encode_record(meta);
                    match pager
                        .store
                        .publish(&pager.transient_key, m.id, &rec, Box::new(|_| {}))
                    {
                        Ok(loc) => {
                            self.paged_transient = true;
                            Paged::of(&m, loc, true)
                        }
                        Err(e) => {
                            tracing::warn!(queue = %pager.queue_label(), error = %e, "cannot page a message out; keeping it in memory");
                            self.levels[l].mem.push_back(m);
                            return paged_any;
                        }
                    }
                }
            };
            // `release` inlined: `pager` borrows a field of self.
            let c = cost(&m);
            self.mem_len -= 1;
            self.mem_cost -= c;
            pager.budget.used.fetch_sub(c, Ordering::Relaxed);
            let run = &mut self.levels[l].paged;
            run.push_back(paged, Some(pager), &mut self.next_chunk);
            self.paged_transient |= run.spilled_chunks() > 0;
            paged_any = true;
        }
    }
}
