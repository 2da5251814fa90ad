//! The message store: durable storage for persistent messages on durable queues. A pure library with no
//! broker types: queues are string keys (such as "vhost/queue"), a message is a record naming the queues
//! it was published to, each queue's copy is addressed by its [`Location`], and payloads are opaque bytes
//! the broker encodes.
//!
//! # Where it sits
//! A queue that takes a persistent message calls [`MessageStore::publish`], keeps the returned
//! [`Location`] in its in-memory index and may drop the body (it reads it back with
//! [`MessageStore::read`]). The publisher confirm goes out from the `done` callback, which the store's sync
//! thread calls once the record is durable per the [`SyncPolicy`]. `basic.ack` (and purge, expiry, dead
//! lettering) calls [`MessageStore::ack`] with the locations; queue deletion calls
//! [`MessageStore::drop_queue`]. At boot, [`MessageStore::recover`] hands every live message to the
//! caller as its scan finds them, each queue's in publish order.
//!
//! # Design
//! - **Two append-only logs** of segment files in one directory: the *msg log* holds publish records
//!   (bodies), the *ack log* holds ack, delivered and drop records. Every record carries a CRC-32; see
//!   `format.rs` for the byte layout. A publish is named by its position (segment, offset), and ack-log
//!   records name positions, so replay does not depend on how the two logs interleave.
//! - **Group commit**: `publish` appends the encoded record to an in-memory buffer under a short mutex
//!   (the checksum is computed before taking it) and wakes one dedicated sync thread. That thread takes
//!   everything pending, writes it with one positioned write per segment, calls `fdatasync` once per
//!   touched file and then runs every callback of the batch. While it syncs, the next batch accumulates.
//! - **Nothing in memory per message**: a queue's copy of a message is its *slot*, numbered per segment
//!   in append order, and the caller keeps the slot in the [`Location`] it acks with. The store keeps per
//!   segment live counts (total and per queue) and, once something in it is settled, a bitmap of settled
//!   slots (one bit per slot), so a double ack or a stale one after a queue drop changes nothing. Bodies
//!   are on disk and read back with `pread`. Write buffers hold only what is in flight.
//! - **GC rule**: a msg segment is deleted when it is not the active one, none of its publishes is live
//!   (all acked or dropped) and everything in it is durable. An ack segment records which msg segments
//!   its records refer to and is deleted once all of those are gone (and it is not the active one).
//!   Deleting a msg segment never needs an ack segment, so one old unacked message pins only its own msg
//!   segment and the ack segments that mention that segment, never the segments written after it.
//!   Acks need no order: replay applies them by position, and segment ids are never reused (the next id
//!   is above every id on disk and every id an ack record mentions).
//! - **Index files**: a segment sealed for a couple of seconds that still holds live messages gets an index
//!   (`index.rs`): per queue, blocks of its entries and their counts. Recovery reads an indexed segment's
//!   table, not the segment, and hands each queue a [`RecoveredBlock`] per run of its blocks in consecutive
//!   segments, which it reads a part at a time when it gets to it, the store finding the run's next block
//!   in the index tables: a restart reads the ack log, the index tables and the unindexed tail, never a
//!   body, and a queue holds its backlog's first block, not a row per segment.
//! - **Crash recovery**: every record of every unindexed segment is checked; the first torn or corrupt record ends
//!   its segment, which is truncated there with a `warn!` (never a panic, never a refusal to start). The
//!   store never appends to a segment that existed before `open`.
//! - **Errors**: a failed write or sync fails the callbacks of the affected publishes (their records are
//!   acked so they never come back), keeps the bytes and retries them with backoff, and refuses new
//!   publishes with the error until the retry time. Data already synced is never rewritten or lost.
//!
//! The ack log is synced at most every 100 ms (and on [`MessageStore::sync_now`]) with `Always` and
//! `Interval`: an ack lost in a power cut makes the message come back marked redelivered, which
//! at-least-once delivery allows, and keeps acks off the confirm latency path.

mod error;
mod files;
mod format;
mod index;
mod read;
mod recovery;
mod state;
mod sync;
#[cfg(test)]
pub(crate) mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use error::StoreError;
use format::{SegKind, RECORD_HEADER_LEN};
pub use index::{IndexBlock, RecoveredBlock};
use read::ReadJob;
pub use read::{BlockPart, BlockRest};
use state::State;

/// Called exactly once, from the store's sync thread, when a publish is durable (or failed). It must be
/// quick and must not call back into the store synchronously in a way that waits for the sync thread
/// (`sync_now` from inside a callback would deadlock).
pub type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Hears, on the store's sync thread, that publishes it waits for are durable (or failed). After each
/// batch of outcomes every sink told something is flushed once, so that it can pass them on together (a
/// publishing channel: one confirm frame and one wake-up of its writer per batch, not one per message).
pub trait WriteSink: Send + Sync {
    /// Publishes `first..=last` are durable (`ok`) or failed: a publisher's consecutive publishes come
    /// as one run, so the sink takes its lock once per run, not once per message.
    fn written(&self, first: u64, last: u64, ok: bool);
    /// Pass on what `written` was told since the last flush. (A sink told twice in one batch, which happens
    /// past 64 sinks, is flushed twice: harmless.)
    fn flush_written(&self);
}

/// Who waits for a publish to be durable.
pub enum Waiter {
    Nobody,
    Call(Done),
    /// Publishes `first..=last` of this sink.
    Sink {
        sink: Arc<dyn WriteSink>,
        first: u64,
        last: u64,
    },
}

impl Waiter {
    /// The waiter for one publish, `seq`, of `sink`.
    pub fn sink(sink: &Arc<dyn WriteSink>, seq: u64) -> Waiter {
        Waiter::Sink {
            sink: sink.clone(),
            first: seq,
            last: seq,
        }
    }

    /// Takes `next` into this waiter when it continues its run (the same sink's next publish); otherwise
    /// hands it back.
    fn extend(&mut self, next: Waiter) -> Option<Waiter> {
        match (self, next) {
            (
                Waiter::Sink { sink, last, .. },
                Waiter::Sink {
                    sink: s,
                    first,
                    last: l,
                },
            ) if Arc::ptr_eq(sink, &s) && last.checked_add(1) == Some(first) => {
                *last = l;
                None
            }
            (_, next) => Some(next),
        }
    }
}

/// Called once on the store's reader thread with the payloads `read_async` was asked for, in order.
pub type ReadDone = Box<dyn FnOnce(Vec<Result<Bytes, StoreError>>) + Send>;

/// Called once on the store's reader thread with the part of a block `read_block_async` was asked for.
pub type BlockDone = Box<dyn FnOnce(Result<BlockPart, StoreError>) + Send>;

/// When a publish becomes durable, i.e. when its `done` callback runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `fdatasync` before every confirm (group-committed). No confirmed message is lost on power failure.
    #[default]
    Always,
    /// Write at once, `fdatasync` at most once per interval; confirms wait for that sync. Fewer syncs
    /// under light load, the same guarantee as `Always` for confirmed messages, more confirm latency.
    Interval(Duration),
    /// Never sync (except [`MessageStore::sync_now`]): confirm after `write()`. Survives a broker crash,
    /// but a power failure or kernel crash can lose confirmed messages. For those who accept that risk.
    Never,
}

/// Where and how the store keeps its files.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Directory of the segment files (created if missing). One store per directory.
    pub dir: PathBuf,
    /// Size at which a msg segment is closed and a new one started (clamped to 4 KiB ..= 4 GiB - 1).
    /// Ack segments use an eighth of it (at least 64 KiB, at most this).
    pub segment_size: u64,
    pub sync: SyncPolicy,
    /// What a message weighs in a [`RecoveredBlock`]'s `weight`, from its payload's first bytes (`None`:
    /// its payload length).
    pub weigh: Option<fn(&[u8; RECOVERED_HEAD]) -> u64>,
    /// How long a sealed segment with live messages waits before it is indexed (a queue that keeps up has
    /// freed it by then). Tests set it to zero to index while they crash the store.
    pub index_after: std::time::Duration,
}

impl StoreConfig {
    pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

    /// Defaults: 64 MiB segments, [`SyncPolicy::Always`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            segment_size: Self::DEFAULT_SEGMENT_SIZE,
            sync: SyncPolicy::Always,
            weigh: None,
            index_after: index::SEALED_FOR,
        }
    }

    fn msg_segment_size(&self) -> u64 {
        self.segment_size.clamp(4096, u64::from(u32::MAX))
    }

    fn ack_segment_size(&self) -> u64 {
        let msg = self.msg_segment_size();
        (msg / 8).max(64 << 10).min(msg)
    }
}

/// Where a publish record is, and which of its queues' copies: enough to read its payload back and to
/// settle it. `offset` is the record's first byte and `len` its whole length (header included); `slot`
/// numbers the (record, queue) pairs of the segment in append order, so a record published to k queues
/// has k consecutive slots (see [`Location::target`]). A record starts below its segment's size, which is
/// under 4 GiB: its offset is a u32, and a location is 16 bytes (held by every delivery awaiting its ack).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub segment: u32,
    pub offset: u32,
    pub len: u32,
    pub slot: u32,
}

impl Location {
    /// The location of the `i`th queue's copy of a record `publish_many` returned this location for.
    pub fn target(self, i: usize) -> Location {
        Location {
            slot: self.slot.saturating_add(i as u32),
            ..self
        }
    }
}

/// A live message found at `open`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveredMessage {
    pub msg_id: u64,
    pub location: Location,
    /// A `delivered` record was written for it: deliver it with redelivered=true.
    pub delivered: bool,
    /// The payload's first bytes (zero-padded): an owner that keeps a small fixed header at the start of its
    /// payloads can rebuild its index at boot without reading a single body back.
    pub head: [u8; RECOVERED_HEAD],
}

/// How many payload bytes [`RecoveredMessage::head`] carries.
pub const RECOVERED_HEAD: usize = 24;

/// What recovery hands a queue: a message, or a block of them in an indexed segment, to be read with
/// [`MessageStore::read_block`] when the queue gets to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovered {
    Message(RecoveredMessage),
    Block(RecoveredBlock),
}

/// The live messages of one queue found at `open`, in publish order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredQueue {
    pub queue: String,
    pub messages: Vec<RecoveredMessage>,
}

/// The msg log still to be replayed after [`MessageStore::open_recovering`].
pub struct Recovering(recovery::Pending);

impl std::fmt::Debug for Recovering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovering").finish_non_exhaustive()
    }
}

/// A snapshot of the store's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Segment files of the msg log (including the active one once written).
    pub msg_segments: usize,
    /// Segment files of the ack log.
    pub ack_segments: usize,
    /// Bytes written to segment files that still exist.
    pub disk_bytes: u64,
    /// Bytes accepted but not yet written.
    pub pending_bytes: u64,
    /// Live (queue, message) entries.
    pub live_messages: u64,
    /// Queues with live messages.
    pub queues: usize,
    /// Publish records appended since open.
    pub publishes: u64,
    /// `fdatasync` rounds of the msg log since open (one per group commit).
    pub syncs: u64,
    /// The last write or sync failed and has not yet succeeded on retry.
    pub failed: bool,
}

/// Test hooks to inject I/O errors into the sync thread.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Faults {
    pub fail_writes: std::sync::atomic::AtomicU32,
    pub fail_syncs: std::sync::atomic::AtomicU32,
}

/// State shared by the handle and the sync thread.
pub(crate) struct Shared {
    pub cfg: StoreConfig,
    pub state: Mutex<State>,
    /// Wakes the sync thread.
    pub work: Condvar,
    /// Signalled after bytes reach the files (for `read` of a record in flight).
    pub written: Condvar,
    /// Wakes the indexer thread (at shutdown; it looks for work every second anyway).
    pub index_work: Condvar,
    /// Index tables looked up lately, and index files read lately.
    pub tables: read::Recent<index::RawTable>,
    pub index_files: read::Recent<std::fs::File>,
    /// Holders of a [`DeferWakes`].
    pub deferring: std::sync::atomic::AtomicU32,
    /// A publish left the sleeping sync thread to the next `DeferWakes` to be dropped.
    pub wake_deferred: std::sync::atomic::AtomicBool,
    #[cfg(test)]
    pub faults: Faults,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent-enough bookkeeping; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a [`DeferWakes`] holder will wake the sleeping sync thread. The flag is set before the holders
    /// are counted and a holder lets go before it looks at the flag, so one of the two always sees the
    /// other: either this publisher wakes the thread or a holder does (both, at worst).
    fn deferred(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.wake_deferred.store(true, SeqCst);
        self.deferring.load(SeqCst) > 0
    }

    pub(crate) fn path(&self, kind: SegKind, id: u32) -> PathBuf {
        self.cfg.dir.join(format::segment_file_name(kind, id))
    }
}

/// While one is held, publishes leave a sleeping sync thread asleep until a holder lets go: the next guard
/// dropped wakes it. A connection holds one while it handles the frames of one socket read, so the sync
/// thread takes that read's publishes in one pass (one write, one sync, one confirm frame) instead of
/// starting on the first alone and leaving the rest to a second pass. When syncs are quick (tmpfs,
/// `sync = "never"`) that first publish alone is what every pass took, and confirms trickled out one by one.
/// Any guard's drop wakes the thread, not only the last one's, so connections that overlap on other workers
/// delay a wake-up by one read's handling at most. Hold it only across synchronous work.
pub struct DeferWakes {
    shared: Arc<Shared>,
}

impl Drop for DeferWakes {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.shared.deferring.fetch_sub(1, SeqCst);
        // No lock: the publisher set the flag under the store's lock while the sync thread slept in its
        // condvar wait, so this notify finds it waiting (or awake already, and bound to look again).
        if self.shared.wake_deferred.swap(false, SeqCst) {
            self.shared.work.notify_one();
        }
    }
}

/// The message store. `Send + Sync`; share it as `Arc<MessageStore>`. Dropping the last handle flushes,
/// syncs and stops the sync thread.
pub struct MessageStore {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Jobs for the reader thread (`read_async`); None once closing.
    reads: Mutex<Option<std::sync::mpsc::Sender<ReadJob>>>,
    reader: Mutex<Option<JoinHandle<()>>>,
    indexer: Mutex<Option<JoinHandle<()>>>,
    /// The next id `allocate_id` hands out: above every id `recover` found (ids are labels in the records
    /// for their owner; the store addresses messages by location).
    next_id: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for MessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStore").finish_non_exhaustive()
    }
}

impl MessageStore {
    /// Opens the store (creating the directory), scans every segment, truncates a torn tail, drops fully
    /// acked segments, and returns the live (published, not acked) messages, queue by queue, each queue's
    /// messages in publish order. Holds every live message in memory at once: for small stores and tests;
    /// a broker uses [`open_recovering`](Self::open_recovering) and [`recover`](Self::recover).
    pub fn open(cfg: StoreConfig) -> Result<(Arc<MessageStore>, Vec<RecoveredQueue>), StoreError> {
        let (store, pending) = Self::open_recovering(cfg)?;
        let mut queues: Vec<RecoveredQueue> = Vec::new();
        let mut index: crate::FastMap<String, usize> = crate::FastMap::default();
        let mut failed = None;
        store.recover(pending, &mut |_| true, &mut |q, r| {
            let i = *index.entry(q.to_string()).or_insert_with(|| {
                queues.push(RecoveredQueue {
                    queue: q.to_string(),
                    messages: Vec::new(),
                });
                queues.len() - 1
            });
            match r {
                Recovered::Message(m) => queues[i].messages.push(m),
                Recovered::Block(b) => match store.read_block(q, &b.block) {
                    Ok(mut v) => queues[i].messages.append(&mut v),
                    Err(e) => failed = Some(e),
                },
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        Ok((store, queues))
    }

    /// Opens the store and scans its ack log; the msg log is replayed by [`recover`](Self::recover), which
    /// must come next. The store takes publishes at once (into segments after every old one).
    pub fn open_recovering(
        cfg: StoreConfig,
    ) -> Result<(Arc<MessageStore>, Recovering), StoreError> {
        let (state, pending) = recovery::open(&cfg)?;
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            state: Mutex::new(state),
            work: Condvar::new(),
            written: Condvar::new(),
            index_work: Condvar::new(),
            tables: Default::default(),
            index_files: Default::default(),
            deferring: std::sync::atomic::AtomicU32::new(0),
            wake_deferred: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            faults: Faults::default(),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("warren-store-sync".into())
            .spawn(move || sync::run(thread_shared))
            .map_err(|e| StoreError::io("start the sync thread for", &cfg.dir, e))?;
        let (reads, jobs) = std::sync::mpsc::channel::<ReadJob>();
        let reader_shared = shared.clone();
        let reader = std::thread::Builder::new()
            .name("warren-store-read".into())
            .spawn(move || read::serve(&reader_shared, jobs))
            .map_err(|e| StoreError::io("start the reader thread for", &cfg.dir, e))?;
        let index_shared = shared.clone();
        let indexer = std::thread::Builder::new()
            .name("warren-store-index".into())
            .spawn(move || index::run(index_shared))
            .map_err(|e| StoreError::io("start the indexer thread for", &cfg.dir, e))?;
        let store = MessageStore {
            shared,
            thread: Mutex::new(Some(thread)),
            reads: Mutex::new(Some(reads)),
            reader: Mutex::new(Some(reader)),
            indexer: Mutex::new(Some(indexer)),
            next_id: std::sync::atomic::AtomicU64::new(1),
        };
        Ok((Arc::new(store), Recovering(pending)))
    }

    /// Replays the msg log: hands every live message of a queue `keep` accepts to `sink`, as the scan
    /// finds it (each queue's messages in publish order), so recovery holds at most a few thousand at once.
    /// Messages of queues `keep` refuses (asked once per queue) are dropped for good. `sink` runs without
    /// the store's lock and may settle what it is given.
    pub fn recover(
        &self,
        pending: Recovering,
        keep: &mut dyn FnMut(&str) -> bool,
        sink: &mut dyn FnMut(&str, Recovered),
    ) -> Result<(), StoreError> {
        let max_id = recovery::replay(&self.shared, pending.0, keep, sink)?;
        if let Some(m) = max_id {
            self.next_id
                .fetch_max(m.saturating_add(1), std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// A fresh message id (once `recover` has run, above every id it found), for a message that is published
    /// to several queues under one id.
    pub fn allocate_id(&self) -> u64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Appends a publish record for one queue and returns its location at once (the record is buffered).
    /// If this returns `Ok`, `done` is called exactly once from the sync thread when the record is durable
    /// per the policy, or with the error if writing it failed (the message is then forgotten). If this
    /// returns `Err` (store failing, bad argument), `done` is dropped without being called.
    pub fn publish(
        &self,
        queue: &str,
        msg_id: u64,
        payload: &[u8],
        done: Done,
    ) -> Result<Location, StoreError> {
        self.publish_many(&[(queue, msg_id)], payload, done)
    }

    /// Like [`publish`](Self::publish) for a message routed to several durable queues: one record, one
    /// copy of the payload on disk. Queue `i`'s copy is at the returned location's `target(i)` and is acked
    /// separately; the record's space comes back when all are. Queue names must be distinct.
    pub fn publish_many(
        &self,
        targets: &[(&str, u64)],
        payload: &[u8],
        done: Done,
    ) -> Result<Location, StoreError> {
        self.publish_waiting(targets, payload, Waiter::Call(done))
    }

    /// `publish_many` with its outcome told to `done`.
    pub fn publish_waiting(
        &self,
        targets: &[(&str, u64)],
        payload: &[u8],
        done: Waiter,
    ) -> Result<Location, StoreError> {
        if targets.is_empty() || targets.len() > usize::from(u16::MAX) {
            return Err(StoreError::Invalid("a publish needs 1 to 65535 queues"));
        }
        if targets.iter().any(|(q, _)| q.len() > usize::from(u16::MAX)) {
            return Err(StoreError::Invalid("queue name longer than 65535 bytes"));
        }
        if targets.len() > 1 {
            let mut names: Vec<&str> = targets.iter().map(|(q, _)| *q).collect();
            names.sort_unstable();
            if names.windows(2).any(|w| w[0] == w[1]) {
                return Err(StoreError::Invalid("a queue named twice in one publish"));
            }
        }
        let body_len = format::publish_prefix_len(targets) as u64 + payload.len() as u64;
        let rec_len = RECORD_HEADER_LEN as u64 + body_len;
        if rec_len > u64::from(u32::MAX) {
            return Err(StoreError::TooLarge { len: rec_len });
        }
        let crc = format::publish_crc(targets, payload);

        let mut guard = self.shared.lock();
        let st = &mut *guard;
        if st.shutdown {
            return Err(StoreError::Closed);
        }
        if let Some((e, until)) = &st.failed {
            if Instant::now() < *until {
                return Err(e.clone());
            }
        }
        let (pos, buf) = st.msg.reserve(rec_len, &mut st.spare)?;
        format::write_publish(buf, targets, payload, crc, body_len as u32);
        let slot = st.add_slots(pos.seg, targets);
        st.publishes += 1;
        // A publisher's consecutive confirms stay one run: one entry, one sink call per batch.
        let done = match st.dones.last_mut() {
            Some(last) => last.extend(done),
            None => Some(done),
        };
        if let Some(d) = done {
            st.dones.push(d);
        }
        // A busy sync thread looks at the pending bytes before it sleeps again: only a sleeping one needs
        // the wake-up (a futex syscall per publish otherwise).
        let wake = st.sync_idle && !self.shared.deferred();
        drop(guard);
        if wake {
            self.shared.work.notify_one();
        }
        Ok(Location {
            segment: pos.seg,
            offset: pos.off,
            len: rec_len as u32,
            slot,
        })
    }

    /// Defer waking the sync thread until the returned guard is dropped (see [`DeferWakes`]).
    pub fn defer_wakes(&self) -> DeferWakes {
        self.shared
            .deferring
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        DeferWakes {
            shared: self.shared.clone(),
        }
    }

    /// Records acks of `queue`'s copies at these locations: the messages are consumed for good (or purged,
    /// expired, dead-lettered). Locations that are not live copies of this queue (acked already, dropped,
    /// unknown) are ignored. Does not wait for the disk.
    pub fn ack(&self, queue: &str, locs: &[Location]) {
        self.record(|st| st.ack(queue, locs));
    }

    /// Records that a message was delivered, so it comes back with redelivered=true after a restart.
    /// Does not wait for the disk.
    pub fn delivered(&self, queue: &str, loc: Location) {
        self.delivered_many(queue, &[loc]);
    }

    /// [`delivered`](Self::delivered) for several messages, with one lock.
    pub fn delivered_many(&self, queue: &str, locs: &[Location]) {
        if !locs.is_empty() {
            self.record(|st| st.delivered(queue, locs));
        }
    }

    /// Forgets every message of a queue (queue deleted). One small record, whatever the queue's length.
    pub fn drop_queue(&self, queue: &str) {
        self.record(|st| st.drop_queue(queue));
    }

    /// Appends to the ack log; wakes the sync thread when it has a new reason to run (it flushes acks
    /// shortly after the first one arrives, and collects segments that became empty).
    fn record(&self, f: impl FnOnce(&mut State)) {
        let mut st = self.shared.lock();
        let idle = st.ack_since.is_none();
        f(&mut st);
        let wake = st.gc_wanted || st.ack.rolled || (idle && st.ack_since.is_some());
        drop(st);
        if wake {
            self.shared.work.notify_one();
        }
    }

    /// Reads a publish record's payload back, checking its checksum. Safe while appends continue; a
    /// record not yet written is served from the write buffer. Blocking: call it off the async runtime.
    pub fn read(&self, loc: Location) -> Result<Bytes, StoreError> {
        self.shared.read(loc)
    }

    /// Read records back on the store's reader thread, then call `done` there with the payloads, in order.
    /// Callers holding locks or running on an async worker use this instead of `read`.
    pub fn read_async(&self, locs: Vec<Location>, done: ReadDone) {
        self.send_read(ReadJob::Records(locs, done));
    }

    /// The live entries of `queue`'s run of blocks, in order (entries settled since recovery handed it out
    /// are left out), past those its `skip` says were read. All at once: for tests and small stores; a queue
    /// reads a run in parts. Blocking: call it off the async runtime.
    pub fn read_block(
        &self,
        queue: &str,
        block: &IndexBlock,
    ) -> Result<Vec<RecoveredMessage>, StoreError> {
        let (mut out, mut next) = (Vec::new(), Some(*block));
        while let Some(b) = next {
            let part = self.shared.read_block(queue, &b, usize::MAX)?;
            out.extend(part.entries);
            next = part.rest.map(|r| r.block);
        }
        Ok(out)
    }

    /// The next `part` entries of `queue`'s run of blocks (past its block's `skip`; fewer at the end of a
    /// block), the live ones, and what is left of the run. Blocking: call it off the async runtime.
    pub fn read_block_part(
        &self,
        queue: &str,
        block: &IndexBlock,
        part: usize,
    ) -> Result<BlockPart, StoreError> {
        self.shared.read_block(queue, block, part)
    }

    /// [`read_block_part`](Self::read_block_part) on the store's reader thread, then `done` there with
    /// what it read.
    pub fn read_block_async(&self, queue: String, block: IndexBlock, part: usize, done: BlockDone) {
        self.send_read(ReadJob::Block(queue, block, part, done));
    }

    fn send_read(&self, job: ReadJob) {
        let sent = match &*self.reads.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        };
        if let Err(job) = sent {
            // Never on the caller's thread: callers hold their queue's lock, which the callback takes.
            let failed = move || match job {
                ReadJob::Records(locs, done) => {
                    done(locs.into_iter().map(|_| Err(StoreError::Closed)).collect())
                }
                ReadJob::Block(_, _, _, done) => done(Err(StoreError::Closed)),
            };
            if let Err(e) = std::thread::Builder::new()
                .name("store-read-closed".into())
                .spawn(failed)
            {
                tracing::error!(error = %e, "cannot start a thread to fail reads of a closed store");
            }
        }
    }

    /// Indexes every sealed segment that has live messages and no index yet, now (the indexer thread
    /// does it a couple of seconds after a segment is sealed).
    #[doc(hidden)]
    pub fn index_now(&self) {
        index::index_all(&self.shared);
    }

    /// Writes and syncs everything accepted so far (both logs), whatever the policy; returns when done.
    /// Use at shutdown, or to checkpoint with `SyncPolicy::Never`.
    pub fn sync_now(&self) -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let mut st = self.shared.lock();
            if st.shutdown {
                return Err(StoreError::Closed);
            }
            st.dones.push(Waiter::Call(Box::new(move |r| {
                let _ = tx.send(r);
            })));
            st.force_sync = true;
        }
        self.shared.work.notify_one();
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    pub fn stats(&self) -> StoreStats {
        let st = self.shared.lock();
        let exists = |s: &state::Seg| s.written > 0;
        StoreStats {
            msg_segments: st.msg.segs.values().filter(|s| exists(s)).count(),
            ack_segments: st.ack.segs.values().filter(|s| exists(s)).count(),
            disk_bytes: st.msg.segs.values().map(|s| s.written).sum::<u64>()
                + st.ack.segs.values().map(|s| s.written).sum::<u64>(),
            pending_bytes: st.msg.pending_bytes() + st.ack.pending_bytes(),
            live_messages: st.live,
            queues: st.queue_ids.len(),
            publishes: st.publishes,
            syncs: st.syncs,
            failed: st.failed.is_some(),
        }
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

/// A segment file (name, bytes) holding `records` after a valid header: an ack segment or a msg segment, for
/// the fuzz target that runs recovery over arbitrary records.
#[doc(hidden)]
pub fn fuzz_segment(ack: bool, records: &[u8]) -> (String, Vec<u8>) {
    let kind = if ack { SegKind::Ack } else { SegKind::Msg };
    let mut bytes = format::encode_header(kind, 1).to_vec();
    bytes.extend_from_slice(records);
    (format::segment_file_name(kind, 1), bytes)
}

impl Drop for MessageStore {
    fn drop(&mut self) {
        // The reader finishes what it was given, then ends (its channel closes).
        self.reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let reader = self
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = reader {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        self.shared.lock().shutdown = true;
        self.shared.work.notify_one();
        self.shared.index_work.notify_all();
        let indexer = self
            .indexer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = indexer {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // The last handle may be dropped by a callback running on the sync thread itself: it then exits
        // on its own after this pass, and must not join itself.
        if let Some(t) = thread {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
