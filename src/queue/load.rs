//! Reading paged messages back. A queue never reads the store under its lock or on an async worker: when
//! its head is paged — or fewer than 64 in-memory messages (the floor it never pages below) stand before the next paged one
//! (read-ahead, so a draining consumer never waits) — it hands a batch of locations to the store's reader
//! thread and goes on; the reader's callback puts the messages back in place, then dispatches. A basic.get
//! that finds the head paged gets a receiver that fires when the batch is in.

use super::paging::{block_run, decode_loaded, head_deadline};
use super::ready::Load;
use super::spill::{Source, Spilled};
use super::{Dead, Queue, QueueState};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Entries of a recovered index block read back at once: a queue holds a part's entries in memory, not a
/// whole block's (up to 1,024 entries; a few hundred in each of a thousand queues' backlog).
const BLOCK_PART: usize = 256;

/// A load's result, decoded outside the queue lock.
enum Loaded {
    Chunk(Option<super::spill::Run>),
    Messages(Vec<Option<super::QueuedMessage>>),
}

/// What a basic.get came to.
#[derive(Debug)]
pub enum Got {
    /// The head was handed to the channel.
    Delivered,
    Empty,
    /// The head is being read back from the store: try again when this fires.
    Wait(oneshot::Receiver<()>),
}

impl Queue {
    /// Start reading paged messages back, if the list wants it and no load is in flight.
    pub(super) fn start_load(self: &Arc<Self>, st: &mut QueueState) {
        if st.ready.nothing_paged() {
            // Every dispatch round ends here; most find nothing to read.
            return;
        }
        let load = if !st.consumers.is_empty() {
            st.ready.begin_load_consumed()
        } else if !st.load_waiters.is_empty() || st.head_must_go(|| self.timers.now_ms()) {
            st.ready.begin_load()
        } else {
            // Nobody to read for: an idle backlog stays on disk.
            return;
        };
        let Some(load) = load else {
            return;
        };
        let Some(store) = st.ready.pager().map(|p| p.store.clone()) else {
            return;
        };
        if let Some(Spilled {
            source: Source::Index { block, .. },
            ..
        }) = load.chunk
        {
            let Some(key) = st.ready.pager().and_then(|p| p.durable_key.clone()) else {
                // Only durable queues get blocks; were it otherwise, the head must not stay loading.
                st.ready.finish_chunk(load, None, None);
                return;
            };
            let weak = Arc::downgrade(self);
            store.read_block_async(
                key,
                block,
                BLOCK_PART,
                Box::new(move |read| {
                    if let Some(q) = weak.upgrade() {
                        q.finish_block(load, read);
                    }
                }),
            );
            return;
        }
        let locs = match &load.chunk {
            Some(Spilled {
                source: Source::Index { .. },
                ..
            }) => return,
            Some(Spilled {
                source: Source::Chunk { loc, .. },
                ..
            }) => vec![*loc],
            None => load.items.iter().map(|p| p.loc).collect(),
        };
        let weak = Arc::downgrade(self);
        store.read_async(
            locs,
            Box::new(move |read| {
                if let Some(q) = weak.upgrade() {
                    q.finish_load(load, read);
                }
            }),
        );
    }

    /// A batch is back (on the store's reader thread): decode it, then put it in place and serve consumers
    /// and getters. Decoding happens before the queue is locked: a batch is hundreds of messages, and acks
    /// and publishes on the queue must not wait behind it.
    fn finish_load(
        self: &Arc<Self>,
        load: Load,
        read: Vec<Result<bytes::Bytes, crate::store::StoreError>>,
    ) {
        let pager = self.state.lock().ready.pager().cloned();
        let done = match (&load.chunk, pager) {
            // No pager, no load was begun; finishing it only clears the mark.
            (Some(_), None) => Loaded::Chunk(None),
            (None, None) => Loaded::Messages(Vec::new()),
            // A spilled chunk of index entries: dispatch then starts reading the bodies at the new head.
            (Some(chunk), Some(pager)) => {
                // The chunk is read: its record is no longer needed, whatever it held.
                if let Source::Chunk { loc, .. } = chunk.source {
                    pager.store.ack(&pager.transient_key, &[loc]);
                }
                let entries = read
                    .into_iter()
                    .next()
                    .and_then(|r| r.ok())
                    .and_then(|b| super::spill::check(&b, chunk.count));
                if entries.is_none() {
                    tracing::error!(queue = %pager.queue_label(), messages = chunk.count, "a spilled index chunk cannot be read back; its messages leave the queue (stored ones return at the next start)");
                }
                Loaded::Chunk(entries)
            }
            (None, Some(pager)) => {
                let mut names = super::message::LastNames::default();
                Loaded::Messages(
                    load.items
                        .iter()
                        .zip(read)
                        .map(|(p, r)| decode_loaded(&pager, p, r, &mut names))
                        .collect(),
                )
            }
        };
        self.after_load(|st, _| match done {
            Loaded::Chunk(entries) => st.ready.finish_chunk(load, entries, None),
            Loaded::Messages(decoded) => st.ready.finish_load(load, decoded),
        });
    }

    /// Puts what a load read in place (`put`, under the queue lock), then what follows any load: overflow,
    /// dispatch, timers, dead-lettering, and the getters waiting for it woken.
    pub(super) fn after_load(self: &Arc<Self>, put: impl FnOnce(&mut QueueState, &mut Dead)) {
        let mut dead = Dead::new();
        let waiters = {
            let mut st = self.state.lock();
            put(&mut st, &mut dead);
            if st.over_limit() && st.config.overflow == super::Overflow::DropHead {
                st.drop_head_over_limit(&mut dead);
            }
            self.dispatch_batch_locked(&mut st, &mut dead);
            self.arm_timer(&mut st);
            std::mem::take(&mut st.load_waiters)
        };
        self.dead_letter(dead);
        for w in waiters {
            let _ = w.send(());
        }
    }

    /// A part of a run of recovered index blocks is back (on the store's reader thread): its entries become
    /// the paged head, and what is left of the run goes back before the next chunk.
    fn finish_block(
        self: &Arc<Self>,
        load: Load,
        read: Result<crate::store::BlockPart, crate::store::StoreError>,
    ) {
        let (pager, ttl) = {
            let st = self.state.lock();
            (st.ready.pager().cloned(), st.config.message_ttl)
        };
        let (entries, rest) = match (&load.chunk, pager) {
            (
                Some(
                    chunk @ Spilled {
                        source: Source::Index { redelivered, .. },
                        ..
                    },
                ),
                Some(pager),
            ) => match read {
                Ok(part) => {
                    let clock = self.timers.clock();
                    let (run, unreadable) =
                        block_run(chunk.first_seq, &part.entries, ttl, clock, *redelivered);
                    if let (Some(k), false) = (&pager.durable_key, unreadable.is_empty()) {
                        tracing::warn!(queue = %pager.queue_label(), messages = unreadable.len(), "stored messages in an unknown format skipped");
                        pager.store.ack(k, &unreadable);
                    }
                    // The part took the seqs of the entries it went past, read or not: the rest's follow
                    // them (a run's seqs are consecutive).
                    let rest = part.rest.map(|r| {
                        Spilled::of_block(
                            r.block,
                            *redelivered,
                            chunk.count.saturating_sub(r.passed),
                            chunk.first_seq + u64::from(r.passed),
                            head_deadline(&r.first_head, ttl, clock),
                            chunk.body_bytes.saturating_sub(run.body_bytes()),
                        )
                    });
                    (Some(run), rest)
                }
                Err(e) => {
                    tracing::error!(queue = %pager.queue_label(), messages = chunk.count, error = %e, "a block of recovered messages cannot be read; they leave the queue until the next start");
                    (None, None)
                }
            },
            _ => (None, None),
        };
        self.after_load(|st, _| st.ready.finish_chunk(load, entries, rest));
    }

    /// basic.get found the head paged: start reading it back and return a receiver for when it is in.
    pub(super) fn wait_for_load(self: &Arc<Self>, st: &mut QueueState) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        st.load_waiters.push(tx);
        self.start_load(st);
        rx
    }
}
