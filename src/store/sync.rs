//! The sync thread: the only writer of segment files. It takes everything pending in one go (group
//! commit), writes it, syncs per the policy, runs the callbacks, retries after I/O errors, and deletes
//! segments that no longer hold anything live. A std thread, not a task: `fdatasync` blocks.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::format::{self, SegKind, HEADER_LEN};
use super::state::{Chunk, Log, State};
use super::{Shared, StoreError, SyncPolicy, Waiter, WriteSink};

/// Acks are written at most this long after they arrive, even with no publishes to carry them.
const ACK_FLUSH: Duration = Duration::from_millis(20);
/// The ack log is synced at most this often (except by `sync_now`).
const ACK_SYNC: Duration = Duration::from_millis(100);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What one pass takes from the shared state.
struct Batch {
    msg: Vec<Chunk>,
    ack: Vec<Chunk>,
    dones: Vec<Waiter>,
    force: bool,
    shutdown: bool,
    gc: bool,
    ack_urgent: bool,
}

/// Files written since their last sync, with the end of what was written.
type Dirty = BTreeMap<u32, (Arc<File>, u64)>;

pub(super) fn run(shared: Arc<Shared>) {
    let mut t = SyncThread {
        shared: shared.clone(),
        awaiting: Vec::new(),
        unsynced_msg: Vec::new(),
        unsynced_ack: Vec::new(),
        dirty_msg: Dirty::new(),
        dirty_ack: Dirty::new(),
        dir_dirty: false,
        last_sync: Instant::now(),
        last_ack_sync: Instant::now(),
        backoff: BACKOFF_MIN,
        gc_retry: false,
    };
    if catch_unwind(AssertUnwindSafe(|| t.run())).is_err() {
        error!("message store: sync thread panicked; the store is closed");
        let mut dones = std::mem::take(&mut t.awaiting);
        {
            let mut st = shared.lock();
            st.shutdown = true;
            dones.append(&mut st.dones);
        }
        shared.written.notify_all();
        run_dones(dones, &Err(StoreError::Closed));
    }
}

fn run_dones(dones: Vec<Waiter>, result: &Result<(), StoreError>) {
    let mut sinks: Vec<Arc<dyn WriteSink>> = Vec::new();
    let mut calls = Vec::new();
    for d in dones {
        match d {
            Waiter::Nobody => {}
            Waiter::Call(f) => calls.push(f),
            Waiter::Sink { sink, first, last } => {
                if catch_unwind(AssertUnwindSafe(|| {
                    sink.written(first, last, result.is_ok())
                }))
                .is_err()
                {
                    error!("message store: a publish sink panicked");
                }
                // Outcomes come in runs per publisher: the last one is checked first, and the list stays
                // short unless many channels publish at once.
                let known = sinks.last().is_some_and(|s| Arc::ptr_eq(s, &sink))
                    || (sinks.len() <= 64 && sinks.iter().any(|s| Arc::ptr_eq(s, &sink)));
                if !known {
                    sinks.push(sink);
                }
            }
        }
    }
    // Sinks first: whoever waits on a callback (`sync_now`) finds every earlier outcome passed on.
    for s in sinks {
        if catch_unwind(AssertUnwindSafe(|| s.flush_written())).is_err() {
            error!("message store: a publish sink panicked");
        }
    }
    for f in calls {
        let r = result.clone();
        if catch_unwind(AssertUnwindSafe(move || f(r))).is_err() {
            error!("message store: a publish callback panicked");
        }
    }
}

/// Whether `at` has come; otherwise lowers `timeout` to it.
fn due(now: Instant, at: Instant, timeout: &mut Option<Duration>) -> bool {
    if now >= at {
        return true;
    }
    let d = at - now;
    *timeout = Some(timeout.map_or(d, |t| t.min(d)));
    false
}

struct SyncThread {
    shared: Arc<Shared>,
    /// Callbacks whose records are written but not yet synced (`Interval`).
    awaiting: Vec<Waiter>,
    /// Chunks written but not yet synced, kept to write again if the sync fails (not with `Never`).
    unsynced_msg: Vec<Chunk>,
    unsynced_ack: Vec<Chunk>,
    dirty_msg: Dirty,
    dirty_ack: Dirty,
    /// A segment file was created since the directory was last synced.
    dir_dirty: bool,
    last_sync: Instant,
    last_ack_sync: Instant,
    backoff: Duration,
    /// GC found empty segments not yet durable; look again after the next pass.
    gc_retry: bool,
}

impl SyncThread {
    fn run(&mut self) {
        loop {
            let batch = self.wait();
            let shutdown = batch.shutdown;
            self.pass(batch);
            if shutdown {
                let mut dones = std::mem::take(&mut self.awaiting);
                dones.append(&mut self.shared.lock().dones);
                run_dones(dones, &Err(StoreError::Closed));
                self.shared.written.notify_all();
                return;
            }
        }
    }

    /// Sleeps until there is something to do, then takes it.
    fn wait(&mut self) -> Batch {
        let policy = self.shared.cfg.sync;
        let mut st = self.shared.lock();
        loop {
            let now = Instant::now();
            let mut timeout = None;
            let pending = !st.msg.chunks.is_empty()
                || !st.ack.chunks.is_empty()
                || !st.dones.is_empty()
                || !self.awaiting.is_empty();
            let go = if st.shutdown || st.force_sync {
                true
            } else if let Some((_, until)) = &st.failed {
                // Backing off after an error: only the retry time (or force/shutdown) wakes us.
                let until = *until;
                due(now, until, &mut timeout) && pending
            } else {
                let mut go = !st.msg.chunks.is_empty()
                    || !st.dones.is_empty()
                    || st.gc_wanted
                    || st.msg.rolled
                    || st.ack.rolled;
                if let Some(since) = st.ack_since {
                    go |= due(now, since + ACK_FLUSH, &mut timeout);
                }
                if let SyncPolicy::Interval(d) = policy {
                    if !self.awaiting.is_empty() || !self.dirty_msg.is_empty() {
                        go |= due(now, self.last_sync + d, &mut timeout);
                    }
                }
                if policy != SyncPolicy::Never && !self.dirty_ack.is_empty() {
                    go |= due(now, self.last_ack_sync + ACK_SYNC, &mut timeout);
                }
                go
            };
            if go {
                break;
            }
            st.sync_idle = true;
            st = match timeout {
                Some(t) => {
                    self.shared
                        .work
                        .wait_timeout(st, t)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .shared
                    .work
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner),
            };
            st.sync_idle = false;
        }
        st.finish_open_ack();
        st.ack_since = None;
        let mut msg = std::mem::take(&mut st.msg.chunks);
        let mut ack = std::mem::take(&mut st.ack.chunks);
        attach_files(&st.msg, &mut msg);
        attach_files(&st.ack, &mut ack);
        Batch {
            msg,
            ack,
            dones: std::mem::take(&mut st.dones),
            force: std::mem::take(&mut st.force_sync) || st.shutdown,
            shutdown: st.shutdown,
            gc: std::mem::take(&mut st.gc_wanted)
                | std::mem::take(&mut st.msg.rolled)
                | std::mem::take(&mut st.ack.rolled),
            ack_urgent: std::mem::take(&mut st.ack_urgent),
        }
    }

    /// Writes, syncs, settles callbacks and collects garbage for one batch.
    fn pass(&mut self, mut b: Batch) {
        let policy = self.shared.cfg.sync;
        let mut created: Vec<(SegKind, u32, Arc<File>)> = Vec::new();
        let mut progress: Vec<(SegKind, u32, u64)> = Vec::new();

        // The ack log first: acks of abandoned publishes must be durable before those publishes are.
        let mut ack_err = self
            .write_chunks(SegKind::Ack, &mut b.ack, &mut created, &mut progress)
            .err();
        let mut ack_synced = None;
        if ack_err.is_none() && b.ack_urgent {
            match self.sync_files(SegKind::Ack) {
                Ok(s) => ack_synced = Some(s),
                Err(e) => ack_err = Some(e),
            }
        }
        let mut msg_err = self
            .write_chunks(SegKind::Msg, &mut b.msg, &mut created, &mut progress)
            .err();
        let wrote = !progress.is_empty();
        {
            let mut st = self.shared.lock();
            for (kind, id, f) in created {
                if let Some(s) = log_mut(&mut st, kind).segs.get_mut(&id) {
                    s.file.get_or_insert(f);
                    s.written = s.written.max(HEADER_LEN);
                }
            }
            for (kind, id, end) in progress {
                if let Some(s) = log_mut(&mut st, kind).segs.get_mut(&id) {
                    s.written = s.written.max(end);
                    if policy == SyncPolicy::Never {
                        s.durable = s.durable.max(end);
                    }
                }
            }
        }
        self.shared.written.notify_all();

        let now = Instant::now();
        let sync_msg = msg_err.is_none()
            && match policy {
                SyncPolicy::Always => true,
                SyncPolicy::Interval(d) => b.force || now >= self.last_sync + d,
                SyncPolicy::Never => b.force,
            };
        let mut msg_synced = None;
        if sync_msg {
            match self.sync_files(SegKind::Msg) {
                Ok(s) => msg_synced = Some(s),
                Err(e) => msg_err = Some(e),
            }
            self.last_sync = now;
        }
        let sync_ack = ack_err.is_none()
            && !self.dirty_ack.is_empty()
            && match policy {
                SyncPolicy::Never => b.force,
                _ => b.force || now >= self.last_ack_sync + ACK_SYNC,
            };
        if sync_ack {
            match self.sync_files(SegKind::Ack) {
                Ok(mut s) => ack_synced.get_or_insert_with(Vec::new).append(&mut s),
                Err(e) => ack_err = Some(e),
            }
            self.last_ack_sync = now;
        }

        let mut ok_dones = Vec::new();
        let mut err_dones = Vec::new();
        let mut st = self.shared.lock();
        // Msg log: settle callbacks.
        if let Some(e) = &msg_err {
            let mut back = std::mem::take(&mut self.unsynced_msg);
            back.append(&mut b.msg);
            st.abandon(&mut back);
            State::put_back(&mut st.msg, back);
            self.dirty_msg.clear();
            err_dones.append(&mut self.awaiting);
            err_dones.append(&mut b.dones);
            debug!(error = %e, "message store: msg log write failed; callbacks failed, bytes kept for retry");
        } else if let Some(synced) = msg_synced {
            if !synced.is_empty() {
                st.syncs += 1;
            }
            for (id, end) in synced {
                if let Some(s) = st.msg.segs.get_mut(&id) {
                    s.durable = s.durable.max(end);
                }
            }
            for c in self.unsynced_msg.drain(..).chain(b.msg.drain(..)) {
                st.recycle(c.bytes);
            }
            ok_dones.append(&mut self.awaiting);
            ok_dones.append(&mut b.dones);
        } else if policy == SyncPolicy::Never {
            for c in b.msg.drain(..) {
                st.recycle(c.bytes);
            }
            ok_dones.append(&mut b.dones);
        } else {
            self.unsynced_msg.append(&mut b.msg);
            self.awaiting.append(&mut b.dones);
        }
        // Ack log: no callbacks, but the same keep-and-retry rule.
        if let Some(e) = &ack_err {
            let mut back = std::mem::take(&mut self.unsynced_ack);
            back.append(&mut b.ack);
            State::put_back(&mut st.ack, back);
            self.dirty_ack.clear();
            st.ack_since.get_or_insert(now);
            if b.force {
                // sync_now promised both logs.
                err_dones.append(&mut ok_dones);
            }
            debug!(error = %e, "message store: ack log write failed; bytes kept for retry");
        } else {
            // Any ack sync this pass covered every dirty ack file, including this batch's.
            let synced = ack_synced.is_some();
            for (id, end) in ack_synced.unwrap_or_default() {
                if let Some(s) = st.ack.segs.get_mut(&id) {
                    s.durable = s.durable.max(end);
                }
            }
            if synced || policy == SyncPolicy::Never {
                for c in self.unsynced_ack.drain(..).chain(b.ack.drain(..)) {
                    st.recycle(c.bytes);
                }
            } else {
                self.unsynced_ack.append(&mut b.ack);
            }
        }
        let err = msg_err.or(ack_err);
        match &err {
            Some(e) => {
                if st.failed.is_none() {
                    error!(error = %e, "message store: write failed; refusing publishes and retrying");
                }
                st.failed = Some((e.clone(), now + self.backoff));
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
            None => {
                if wrote && st.failed.take().is_some() {
                    info!("message store: writes succeed again; accepting publishes");
                    self.backoff = BACKOFF_MIN;
                }
            }
        }
        drop(st);
        run_dones(ok_dones, &Ok(()));
        if let Some(e) = err.clone() {
            run_dones(err_dones, &Err(e));
        }
        if err.is_none() && (b.gc || self.gc_retry) {
            self.gc();
        }
    }

    fn dirty(&mut self, kind: SegKind) -> &mut Dirty {
        match kind {
            SegKind::Msg => &mut self.dirty_msg,
            SegKind::Ack => &mut self.dirty_ack,
        }
    }

    /// Writes chunks at their offsets (positioned writes, so a retry rewrites the same bytes in place),
    /// creating segment files on first use.
    fn write_chunks(
        &mut self,
        kind: SegKind,
        chunks: &mut [Chunk],
        created: &mut Vec<(SegKind, u32, Arc<File>)>,
        progress: &mut Vec<(SegKind, u32, u64)>,
    ) -> Result<(), StoreError> {
        for c in chunks.iter_mut() {
            let file = match &c.file {
                Some(f) => f.clone(),
                None => match created.iter().find(|(k, id, _)| *k == kind && *id == c.seg) {
                    Some((_, _, f)) => f.clone(),
                    None => {
                        let f = Arc::new(self.create_segment(kind, c.seg)?);
                        created.push((kind, c.seg, f.clone()));
                        f
                    }
                },
            };
            c.file = Some(file.clone());
            self.fault_write()
                .and_then(|()| file.write_all_at(&c.bytes, c.start))
                .map_err(|e| StoreError::io("write", &self.shared.path(kind, c.seg), e))?;
            progress.push((kind, c.seg, c.end()));
            let end = c.end();
            let entry = self.dirty(kind).entry(c.seg).or_insert((file, end));
            entry.1 = entry.1.max(end);
        }
        Ok(())
    }

    fn create_segment(&mut self, kind: SegKind, id: u32) -> Result<File, StoreError> {
        let path = self.shared.path(kind, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io("create", &path, e))?;
        self.fault_write()
            .and_then(|()| file.write_all_at(&format::encode_header(kind, id), 0))
            .map_err(|e| StoreError::io("write header of", &path, e))?;
        self.dir_dirty = true;
        Ok(file)
    }

    /// Syncs the directory (if a file was created) and every dirty file of one log; returns what is now
    /// durable. On error nothing is marked durable and the caller rewrites the kept bytes.
    fn sync_files(&mut self, kind: SegKind) -> Result<Vec<(u32, u64)>, StoreError> {
        if self.dir_dirty {
            let dir = &self.shared.cfg.dir;
            self.fault_sync()
                .and_then(|()| File::open(dir)?.sync_all())
                .map_err(|e| StoreError::io("sync directory", dir, e))?;
            self.dir_dirty = false;
        }
        let mut synced = Vec::new();
        let dirty = match kind {
            SegKind::Msg => &self.dirty_msg,
            SegKind::Ack => &self.dirty_ack,
        };
        for (id, (file, end)) in dirty {
            self.fault_sync()
                .and_then(|()| file.sync_data())
                .map_err(|e| StoreError::io("sync", &self.shared.path(kind, *id), e))?;
            synced.push((*id, *end));
        }
        self.dirty(kind).clear();
        Ok(synced)
    }

    /// Deletes msg segments with nothing live, then ack segments that refer to no remaining msg segment.
    fn gc(&mut self) {
        let mut victims = Vec::new();
        let mut blocked = false;
        {
            let mut st = self.shared.lock();
            let active = st.msg.active;
            for (&id, s) in st.msg.segs.iter_mut() {
                if id == active || s.live != 0 || s.deleting || s.recovering {
                    continue;
                }
                if s.durable >= s.len && s.written >= s.len {
                    s.deleting = true;
                    victims.push(id);
                } else {
                    blocked = true;
                }
            }
        }
        let mut deleted = Vec::new();
        for id in victims {
            let path = self.shared.path(SegKind::Msg, id);
            let gone = match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                // Already gone (removed by hand): its index and what is kept of it go all the same.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            };
            match gone {
                Ok(()) => {
                    // An index without its segment is deleted at the next start if this fails.
                    let _ = std::fs::remove_file(super::index::path(&self.shared.cfg.dir, id));
                    self.shared.index_files.forget(id);
                    self.shared.tables.forget(id);
                    deleted.push(id)
                }
                Err(e) => {
                    warn!(segment = %path.display(), error = %e, "message store: cannot delete segment");
                    blocked = true;
                    if let Some(s) = self.shared.lock().msg.segs.get_mut(&id) {
                        s.deleting = false;
                    }
                }
            }
        }
        // The msg deletions must be durable before the ack records about them may go.
        let dir = &self.shared.cfg.dir;
        let dir_ok = deleted.is_empty()
            || match File::open(dir).and_then(|d| d.sync_all()) {
                Ok(()) => true,
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "message store: cannot sync directory after deleting segments; keeping their ack segments");
                    false
                }
            };
        let mut ack_victims = Vec::new();
        {
            let mut st = self.shared.lock();
            let st = &mut *st;
            for id in &deleted {
                if let Some(mut s) = st.msg.segs.remove(id) {
                    s.queues.clear(&mut st.queue_ids);
                }
            }
            if dir_ok {
                for s in st.ack.segs.values_mut() {
                    for id in &deleted {
                        s.refs.remove(id);
                    }
                }
            }
            let active = st.ack.active;
            st.ack.segs.retain(|&id, s| {
                if id == active || !s.refs.is_empty() {
                    return true;
                }
                if s.durable < s.len {
                    blocked = true;
                    return true;
                }
                ack_victims.push(id);
                false
            });
        }
        for &id in &ack_victims {
            let path = self.shared.path(SegKind::Ack, id);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(segment = %path.display(), error = %e, "message store: cannot delete ack segment");
                }
            }
        }
        if !deleted.is_empty() || !ack_victims.is_empty() {
            debug!(msg_segments = ?deleted, ack_segments = ?ack_victims, "message store: deleted fully acked segments");
        }
        self.gc_retry = blocked;
    }

    #[cfg(test)]
    fn fault_write(&self) -> std::io::Result<()> {
        take_fault(&self.shared.faults.fail_writes, 28) // ENOSPC
    }

    #[cfg(not(test))]
    fn fault_write(&self) -> std::io::Result<()> {
        Ok(())
    }

    #[cfg(test)]
    fn fault_sync(&self) -> std::io::Result<()> {
        take_fault(&self.shared.faults.fail_syncs, 5) // EIO
    }

    #[cfg(not(test))]
    fn fault_sync(&self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
fn take_fault(counter: &std::sync::atomic::AtomicU32, errno: i32) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    match counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
        Ok(_) => Err(std::io::Error::from_raw_os_error(errno)),
        Err(_) => Ok(()),
    }
}

fn log_mut(st: &mut State, kind: SegKind) -> &mut Log {
    match kind {
        SegKind::Msg => &mut st.msg,
        SegKind::Ack => &mut st.ack,
    }
}

fn attach_files(log: &Log, chunks: &mut [Chunk]) {
    for c in chunks {
        if c.file.is_none() {
            c.file = log.segs.get(&c.seg).and_then(|s| s.file.clone());
        }
    }
}
