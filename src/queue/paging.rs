//! Paging: where a queue's message bodies go when they leave memory, and what comes back.
//!
//! What gets paged: a message already in the store (persistent, durable queue) once the queue holds more than
//! [`KEEP_STORED`] messages in memory (configurable), which costs nothing but a read later; any message, written
//! to the store under the queue's transient key only for this, while the broker's [`MemoryBudget`] is exceeded.
//! Transient pages are forgotten when read back, and all of them are dropped at boot. The ready list
//! ([`super::ready`]) decides when; this module holds the budget, the per-queue pager, the index entry that
//! stands for a paged message and the decoding of a record read back.

use super::QueuedMessage;
use crate::clock::Clock;
use crate::queue::message::{Message, RecordMeta};
use crate::store::{Location, MessageStore, RecoveredMessage};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Messages a queue keeps in memory when their bodies are on disk anyway, by default
/// (`queue_in_memory_messages`).
pub const KEEP_STORED: usize = crate::config::DEFAULT_QUEUE_IN_MEMORY_MESSAGES;
/// Messages a queue with consumers always keeps in memory, whatever the pressure, so delivery never waits
/// on a read (one without keeps none once queues are crowded).
pub const KEEP_MIN: usize = 64;

/// Bytes of ready messages (all queues) up to which queues keep `keep_stored` of the messages whose bodies
/// are on disk anyway, by default (`queue_in_memory_total_bytes`): past it they keep [`KEEP_MIN`], so a
/// thousand queues with backlogs keep 64 messages each in memory, not 2,048.
pub const KEEP_STORED_TOTAL: u64 = crate::config::DEFAULT_QUEUE_IN_MEMORY_TOTAL_BYTES;

/// The broker-wide bytes of ready messages held in memory, the level above which queues page out, and how
/// many stored messages a queue keeps in memory regardless.
#[derive(Debug)]
pub struct MemoryBudget {
    pub(super) used: AtomicU64,
    /// Bytes of messages being read back (see [`Reservation`]): not in memory yet, but on their way.
    loading: AtomicU64,
    limit: u64,
    pub(super) keep_stored: usize,
    /// Above this many bytes in memory, stored messages page out down to `KEEP_MIN` per queue.
    keep_stored_total: u64,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> Arc<MemoryBudget> {
        Self::with_keep_stored(limit, KEEP_STORED, KEEP_STORED_TOTAL)
    }

    pub fn with_keep_stored(
        limit: u64,
        keep_stored: usize,
        keep_stored_total: u64,
    ) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            used: AtomicU64::new(0),
            loading: AtomicU64::new(0),
            limit,
            keep_stored,
            keep_stored_total,
        })
    }

    /// How many of its stored messages a queue keeps in memory now, and whether transient ones page too.
    /// Once queues are crowded, one nobody consumes from keeps none: a thousand idle backlogs cost their
    /// index windows, not 64 messages each.
    pub(super) fn floor(&self, consumed: bool) -> (usize, bool) {
        let used = self.used();
        let over = used > self.limit;
        if over || used > self.keep_stored_total {
            let keep = if consumed { KEEP_MIN } else { 0 };
            (keep.min(self.keep_stored), over)
        } else {
            (self.keep_stored, false)
        }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether a consumed queue should read back in small batches: queues are crowded, or will be once the
    /// reads under way land. A thousand queues whose consumers started together each began a full batch
    /// before any of it was counted.
    pub(super) fn crowded(&self) -> bool {
        self.floor(true).0 <= KEEP_MIN
            || self.used() + self.loading.load(Ordering::Relaxed) > self.keep_stored_total
    }

    /// How many messages a consumed queue reads back at once while queues are crowded: `max` until the
    /// messages in memory and on their way reach the total queues keep, then fewer, down to `min` at twice
    /// that. What a drain must hold ahead is what it consumes while a read is under way, which depends on the
    /// broker's drain rate, not on how many queues share it. A fixed batch per queue made it grow with their
    /// number (1,000 queues whose consumers took 10 at a time held 128-256 messages each: +150 MiB); a batch
    /// in inverse proportion to what is held still let it grow with the square root (~75 each: +90 MiB).
    pub(super) fn crowded_batch(&self, max: usize, min: usize) -> usize {
        let held = self.used() + self.loading.load(Ordering::Relaxed);
        let total = self.keep_stored_total.max(1);
        if held <= total {
            return max;
        }
        let past = u128::from((held - total).min(total));
        let cut = (max.saturating_sub(min) as u128 * past / u128::from(total)) as usize;
        max.saturating_sub(cut).max(min)
    }

    /// Counts `bytes` of messages being read back until the reservation is dropped.
    pub(super) fn reserve(self: &Arc<Self>, bytes: u64) -> Reservation {
        self.loading.fetch_add(bytes, Ordering::Relaxed);
        Reservation {
            budget: self.clone(),
            bytes,
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn over(&self) -> bool {
        self.used() > self.limit
    }
}

/// Messages being read back, counted in [`MemoryBudget::crowded`] until dropped (when they have landed and
/// been charged, or the read was given up).
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.loading.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Where a queue pages message bodies to.
#[derive(Debug)]
pub struct Pager {
    pub store: Arc<MessageStore>,
    /// The queue's key for its persistent messages (durable queues only).
    pub durable_key: Option<String>,
    /// The key under which messages are written only to free memory.
    pub transient_key: String,
    pub budget: Arc<MemoryBudget>,
    /// Entries (below `spill::CHUNK`) by which a run's first spilled chunk is cut short, so that queues
    /// filled in step spill out of step: see [`Pager::phase_of`].
    pub phase: usize,
}

impl Pager {
    /// A phase spread evenly over the queues by a hash of their key.
    pub fn phase_of(key: &str) -> usize {
        // FNV-1a: stable, and spreads keys that differ in a digit or two.
        let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        (h % super::spill::CHUNK as u64) as usize
    }

    /// "vhost/queue", for log lines.
    pub(super) fn queue_label(&self) -> String {
        self.transient_key
            .trim_start_matches(TRANSIENT_PREFIX)
            .replace('\u{1}', "/")
    }
}

/// Prefix of every transient page key: such keys are dropped at boot.
pub const TRANSIENT_PREFIX: char = '\u{2}';

/// A ready message whose body is in the store.
#[derive(Clone, Copy, Debug)]
pub struct Paged {
    pub seq: u64,
    /// Its id in the store.
    pub id: u64,
    pub loc: Location,
    /// Expiry deadline on the broker clock; `u64::MAX` for none.
    pub expires: u64,
    pub body_len: u32,
    pub delivery_count: u32,
    pub acquired_count: u32,
    pub redelivered: bool,
    /// Written under the transient key (forgotten once read back).
    pub transient: bool,
}

impl Paged {
    pub(super) fn of(m: &QueuedMessage, loc: Location, transient: bool) -> Paged {
        Paged {
            seq: m.seq,
            id: m.id,
            loc,
            expires: m.expires_at,
            body_len: m.msg.body.len().min(u32::MAX as usize) as u32,
            delivery_count: m.delivery_count,
            acquired_count: m.acquired_count,
            redelivered: m.redelivered,
            transient,
        }
    }

    pub fn expires(&self) -> Option<u64> {
        (self.expires != u64::MAX).then_some(self.expires)
    }
}

/// The index entry of a message found in the store at boot, from its record's fixed header (see
/// [`RecordMeta`]): no body is read. `None` for a record in a format this version does not know.
pub fn paged_from_recovered(
    m: &RecoveredMessage,
    ttl: Option<u64>,
    clock: &Clock,
    redelivered: bool,
) -> Option<(u8, Paged)> {
    let meta = RecordMeta::decode(&m.head)?;
    Some((
        meta.priority,
        Paged {
            seq: 0,
            id: m.msg_id,
            loc: m.location,
            expires: wall_deadline(&meta, ttl, clock),
            body_len: meta.body_len,
            delivery_count: 0,
            acquired_count: 0,
            redelivered: m.delivered || redelivered,
            transient: false,
        },
    ))
}

/// A recovered index block's live entries as a run whose seqs start at `first_seq`, and the locations of
/// entries in a format this version cannot read (for the caller to forget).
pub fn block_run(
    first_seq: u64,
    entries: &[RecoveredMessage],
    ttl: Option<u64>,
    clock: &Clock,
    redelivered: bool,
) -> (super::spill::Run, Vec<Location>) {
    let mut unreadable = Vec::new();
    let mut seq = first_seq;
    let run = super::spill::Run::of(entries.iter().filter_map(|m| {
        let Some((_, p)) = paged_from_recovered(m, ttl, clock, redelivered) else {
            unreadable.push(m.location);
            return None;
        };
        seq += 1;
        Some(Paged { seq: seq - 1, ..p })
    }));
    (run, unreadable)
}

/// A stored message's expiry deadline on the broker clock (`u64::MAX` for none): records keep wall-clock
/// times.
pub fn wall_deadline(meta: &RecordMeta, ttl: Option<u64>, clock: &Clock) -> u64 {
    match meta.deadline(ttl) {
        0 => u64::MAX,
        at => clock.deadline_from_wall(at),
    }
}

/// The expiry deadline (`u64::MAX` for none) of the message whose payload starts with `head` (a recovered
/// block's first, before the block is read).
pub fn head_deadline(
    head: &[u8; crate::store::RECOVERED_HEAD],
    ttl: Option<u64>,
    clock: &Clock,
) -> u64 {
    RecordMeta::decode(head).map_or(u64::MAX, |meta| wall_deadline(&meta, ttl, clock))
}

/// What a recovered block weighs: its messages' body lengths, from their records' fixed headers.
pub fn body_len_of_head(head: &[u8; crate::store::RECOVERED_HEAD]) -> u64 {
    RecordMeta::decode(head).map_or(0, |m| u64::from(m.body_len))
}

/// Turn a record read back into the queued message it was. A transient page is forgotten in the store at
/// once; a corrupt record is forgotten and logged; a durable one whose read failed stays in the store.
pub fn decode_loaded(
    pager: &Pager,
    p: &Paged,
    read: Result<bytes::Bytes, crate::store::StoreError>,
    last: &mut super::message::LastNames,
) -> Option<QueuedMessage> {
    let key = if p.transient {
        Some(pager.transient_key.as_str())
    } else {
        pager.durable_key.as_deref()
    };
    // A read that failed (an I/O error, the store closing at shutdown) says nothing about the record: a
    // durable one stays in the store and comes back at the next start. A record that reads but does not
    // decode is corrupt and is forgotten.
    let read_failed = read.is_err();
    let read = read
        .map_err(|e| e.to_string())
        .and_then(|rec| Message::decode_record_sharing(rec, last).map_err(|e| e.to_string()));
    if p.transient || (read.is_err() && !read_failed) {
        if let Some(k) = key {
            pager.store.ack(k, &[p.loc]);
        }
    }
    let mut msg = match read {
        Ok(m) => m,
        Err(e) if read_failed && !p.transient => {
            tracing::error!(queue = %pager.queue_label(), error = %e, "a stored message cannot be read back now; it stays on disk and returns at the next start");
            return None;
        }
        Err(e) => {
            tracing::error!(queue = %pager.queue_label(), error = %e, "a stored message cannot be read back; dropping it");
            return None;
        }
    };
    if p.delivery_count > 0 || p.acquired_count > 0 {
        msg = msg.with_headers(|h| super::count_headers(h, p.delivery_count, p.acquired_count));
    }
    Some(QueuedMessage {
        seq: p.seq,
        id: p.id,
        msg: Arc::new(msg),
        redelivered: p.redelivered,
        expires_at: p.expires,
        delivery_count: p.delivery_count,
        acquired_count: p.acquired_count,
        location: p.loc,
        stored: !p.transient,
    })
}
