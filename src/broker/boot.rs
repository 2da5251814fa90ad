//! Opening a broker on its data directory: lock the directory, read the definitions log and replay it
//! through the same apply the live commands use, open the message store and put every stored message back
//! in its queue (from the records' fixed headers: no body is read), then compact the log into a snapshot and
//! start recording. Also the clean-shutdown marker that tells the next start whether delivery marks can be
//! trusted.

use super::command::{Actor, Effects, Mode};
use super::deflog::{DefsLog, LogError};
use super::Broker;
use crate::clock::Clock;
use crate::config::Config;
use crate::queue::paging::{body_len_of_head, paged_from_recovered, Paged, TRANSIENT_PREFIX};
use crate::store::{Location, MessageStore, Recovered, Recovering, StoreConfig, SyncPolicy};
use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Present in the data directory only between a clean shutdown and the next start.
const CLEAN_SHUTDOWN: &str = "clean-shutdown";

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("data directory {0} is in use by another Warren (its lock file is held)")]
    Locked(PathBuf),
    #[error("message store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("data directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a broker is built from.
pub(super) struct Parts {
    pub config: Config,
    pub clock: Clock,
    pub meta: Arc<Mutex<()>>,
    pub log: Option<Arc<DefsLog>>,
    pub store: Option<Arc<MessageStore>>,
    pub dir_lock: Option<File>,
}

/// Hold the data directory's lock file for as long as the value lives: two brokers on one directory would
/// corrupt each other's files.
pub fn lock_data_dir(dir: &Path) -> Result<File, BootError> {
    let io = |source| BootError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(io)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(BootError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

impl Broker {
    /// A broker backed by its data directory (or `new` when the configuration is ephemeral).
    pub fn open(config: Config) -> Result<Arc<Broker>, BootError> {
        let clock = config.make_clock();
        Self::open_with_clock(config, clock)
    }

    pub fn open_with_clock(config: Config, clock: Clock) -> Result<Arc<Broker>, BootError> {
        if config.ephemeral {
            return Ok(Self::with_clock(config, clock));
        }
        let dir_lock = lock_data_dir(&config.data_dir)?;
        let meta = Arc::new(Mutex::new(()));
        let (log, cmds) = DefsLog::open(&config.data_dir, meta.clone())?;
        let log = Arc::new(log);
        let mut store_cfg = StoreConfig::new(config.data_dir.join("messages"));
        store_cfg.sync = match config.sync.as_str() {
            "never" => SyncPolicy::Never,
            "interval" => {
                SyncPolicy::Interval(std::time::Duration::from_millis(config.sync_interval_ms))
            }
            _ => SyncPolicy::Always,
        };
        store_cfg.weigh = Some(body_len_of_head);
        store_cfg.segment_size = config.store_segment_bytes;
        let (store, pending) = MessageStore::open_recovering(store_cfg)?;
        // Delivery marks are written lazily; after a crash a message may have been delivered without its mark
        // reaching the disk, so every recovered message counts as possibly redelivered, as the spec allows.
        let marker = config.data_dir.join(CLEAN_SHUTDOWN);
        let clean = marker.exists();
        let _ = std::fs::remove_file(&marker);
        if !clean {
            tracing::info!(dir = %config.data_dir.display(), "last shutdown was not clean; recovered messages will be marked redelivered");
        }
        let b = Self::build(Parts {
            config,
            clock,
            meta,
            log: Some(log.clone()),
            store: Some(store.clone()),
            dir_lock: Some(dir_lock),
        });
        let replayed = cmds.len();
        b.replay(cmds);
        b.recover_messages(&store, pending, clean)?;
        b.create_defaults();
        let snapshot = {
            let _serial = b.meta.lock();
            b.snapshot()
        };
        let weak = Arc::downgrade(&b);
        log.compact_and_start(
            &snapshot,
            Box::new(move || weak.upgrade().map(|b| b.snapshot()).unwrap_or_default()),
        )?;
        tracing::info!(commands = replayed, kept = snapshot.len(), dir = %b.config.data_dir.display(), "definitions recovered");
        Ok(b)
    }

    /// Replay `cmds` as boot does (the definitions-log fuzz target).
    #[doc(hidden)]
    pub fn replay_for_fuzz(&self, cmds: Vec<super::Command>) {
        self.replay(cmds)
    }

    /// Apply recorded commands in order; one that no longer applies is logged and skipped.
    fn replay(&self, cmds: Vec<super::Command>) {
        let _serial = self.meta.lock();
        let actor = Actor::internal();
        for mut cmd in cmds {
            // Tracing does not survive a restart, as in RabbitMQ (it keeps it in memory only).
            if let super::Command::AddVhost { tracing, .. } = &mut cmd {
                *tracing = false;
            }
            let name = cmd.name();
            let mut fx = Effects::default();
            match self.apply(cmd, &actor, Mode::Replay, &mut fx) {
                Ok(_) => fx.run_commits(),
                Err(e) => {
                    tracing::warn!(command = name, error = %e, "definitions log entry could not be applied; skipped")
                }
            }
        }
    }

    /// Put the store's live messages back into their queues as the store's replay finds them, a batch at a
    /// time (nothing the size of the backlog is held: queues spill their indexes as they fill); messages of
    /// queues that are gone, and transient pages and spilled chunks of the last run, are dropped.
    fn recover_messages(
        &self,
        store: &Arc<MessageStore>,
        pending: Recovering,
        clean: bool,
    ) -> Result<(), crate::store::StoreError> {
        let queues: std::collections::HashMap<String, Arc<crate::queue::Queue>> = self
            .vhosts
            .iter()
            .flat_map(|v| v.queues())
            .filter_map(|q| q.store_key().map(|k| (k.to_string(), q.clone())))
            .collect();
        let started = std::time::Instant::now();
        let clock = self.timers.clock().clone();
        let mut total = 0u64;
        // The queue being filled, its TTL and the batch not yet handed to it.
        // Per queue: the queue, its TTL and the batch not yet handed to it (queues' messages interleave
        // in the log; each gets them in its own order, a batch at a time).
        let mut filling: std::collections::HashMap<String, RecoveringQueue> =
            std::collections::HashMap::new();
        let mut unreadable: Vec<(String, Location)> = Vec::new();
        let mut failed = None;
        store.recover(
            pending,
            &mut |key| {
                // Pages and spilled chunks, written only to save memory, die with the process.
                if key.starts_with(TRANSIENT_PREFIX) {
                    return false;
                }
                let known = queues.contains_key(key);
                if !known {
                    tracing::info!(queue = %key.replace('\u{1}', "/"), "dropping stored messages of a queue that no longer exists");
                }
                known
            },
            &mut |key, r| {
                if !filling.contains_key(key) {
                    let Some(q) = queues.get(key) else { return };
                    filling.insert(
                        key.to_string(),
                        RecoveringQueue {
                            ttl: q.message_ttl(),
                            queue: q.clone(),
                            batch: Vec::new(),
                        },
                    );
                }
                let Some(RecoveringQueue { queue: q, ttl, batch }) = filling.get_mut(key) else {
                    return;
                };
                let (mut msgs, mut next) = match r {
                    Recovered::Message(m) => (vec![m], None),
                    Recovered::Block(b) => {
                        // Behind what the queue has been handed so far.
                        if !batch.is_empty() {
                            q.recover(std::mem::take(batch));
                        }
                        if q.recover_block(&b, !clean) {
                            total += u64::from(b.messages);
                            return;
                        }
                        // A queue that takes messages one by one reads the run a part at a time: it may
                        // be the queue's whole backlog.
                        (Vec::new(), Some(b.block))
                    }
                };
                loop {
                    for m in msgs.drain(..) {
                        let Some(p) = paged_from_recovered(&m, *ttl, &clock, !clean) else {
                            tracing::warn!(vhost = %q.vhost, queue = %q.name, msg_id = m.msg_id, "stored message in an unknown format skipped");
                            unreadable.push((key.to_string(), m.location));
                            continue;
                        };
                        batch.push(p);
                        if batch.len() >= RECOVERY_BATCH {
                            q.recover(std::mem::replace(batch, Vec::with_capacity(RECOVERY_BATCH)));
                        }
                        total += 1;
                    }
                    let Some(block) = next.take() else { break };
                    match store.read_block_part(key, &block, RECOVERY_BATCH) {
                        Ok(part) => {
                            msgs = part.entries;
                            next = part.rest.map(|r| r.block);
                        }
                        Err(e) => {
                            failed.get_or_insert(e);
                            return;
                        }
                    }
                }
            },
        )?;
        if let Some(e) = failed {
            return Err(e);
        }
        for (_, r) in filling {
            if !r.batch.is_empty() {
                r.queue.recover(r.batch);
            }
            r.queue.recovered();
        }
        for (key, loc) in unreadable {
            store.ack(&key, &[loc]);
        }
        tracing::info!(
            messages = total,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "messages recovered"
        );
        Ok(())
    }
}

/// Recovered messages handed to a queue at a time.
const RECOVERY_BATCH: usize = 256;

/// A queue being refilled at boot.
struct RecoveringQueue {
    queue: Arc<crate::queue::Queue>,
    ttl: Option<u64>,
    batch: Vec<(u8, Paged)>,
}

/// Sync the message store and note a clean shutdown.
pub(super) fn shutdown_store(b: &Broker) {
    let Some(store) = &b.store else { return };
    match store.sync_now() {
        Ok(()) => {
            if let Err(e) = std::fs::write(b.config.data_dir.join(CLEAN_SHUTDOWN), b"") {
                tracing::warn!(error = %e, "cannot write the clean-shutdown marker");
            }
            // The next start reads these segments' index tables instead of scanning them. After the
            // marker: an index is a cache, and a shutdown cut short here was still clean.
            store.index_now();
        }
        Err(e) => tracing::error!(error = %e, "final sync of the message store failed"),
    }
}
