//! The definitions log: every durable topology change, as one JSON [`Command`] per line, group-committed by
//! a thread of its own. `append` (called under the broker's metadata lock, right after the command applied)
//! only queues the encoded lines and returns a [`Ticket`]; the log thread writes everything queued with one
//! write and one `fdatasync`, then runs each entry's deferred steps and resolves its ticket. No async worker
//! ever waits on the disk for topology.
//!
//! When a write or sync fails, the thread takes the metadata lock (so nothing new is applied meanwhile),
//! truncates the file back to its last synced length, undoes every entry not yet on disk — newest first,
//! including those queued after the failed batch, which may build on it — and resolves their tickets with the
//! error. If even the truncation fails, the log refuses further durable changes until a rewrite succeeds.
//!
//! At boot the log is read back: a torn last line (a crash mid-append) is dropped with a warning; a corrupt
//! line elsewhere is skipped after the whole file is copied aside (`definitions.log.corrupt-<ms>`) and an
//! error logged, so compaction never silently erases what it could not read. The broker replays the commands,
//! then [`DefsLog::compact_and_start`] replaces the file with a snapshot and starts the thread. The thread
//! compacts again whenever the file has grown well past its last snapshot.

use super::command::{Command, Effects};
use parking_lot::Mutex as PlMutex;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Compact when the log is this much larger than its last snapshot (and at least `COMPACT_MIN` bytes).
const COMPACT_FACTOR: u64 = 4;
const COMPACT_MIN: u64 = 8 << 20;

/// Resolves once a command's durable effect is on disk (`Ok`), or has been undone because it could not be
/// written (`Err` with the reason).
#[derive(Debug)]
pub enum Ticket {
    /// Nothing to wait for: no durable effect, or the broker keeps nothing on disk.
    Done,
    Pending(oneshot::Receiver<Result<(), String>>),
}

impl Ticket {
    pub fn is_done(&self) -> bool {
        matches!(self, Ticket::Done)
    }

    fn outcome(r: Result<Result<(), String>, oneshot::error::RecvError>) -> Result<(), String> {
        r.unwrap_or_else(|_| Err("the definitions log stopped".into()))
    }

    /// Wait for the change to be durable; 541 INTERNAL_ERROR when it could not be recorded (and was undone).
    pub async fn wait(self) -> crate::error::AmqpResult<()> {
        match self {
            Ticket::Done => Ok(()),
            Ticket::Pending(rx) => Self::outcome(rx.await).map_err(internal),
        }
    }

    /// `wait` for code outside the async runtime (boot, the log's own tests).
    pub fn wait_blocking(self) -> crate::error::AmqpResult<()> {
        match self {
            Ticket::Done => Ok(()),
            Ticket::Pending(rx) => Self::outcome(rx.blocking_recv()).map_err(internal),
        }
    }
}

fn internal(why: String) -> crate::error::AmqpError {
    crate::error::AmqpError::internal_error(format!(
        "cannot record the change in the definitions log: {why}"
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("definitions log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("definitions log: {0}")]
    Encode(#[from] serde_json::Error),
}

struct Entry {
    lines: Vec<u8>,
    effects: Effects,
    ticket: oneshot::Sender<Result<(), String>>,
}

/// Builds the current durable state as commands (called by the log thread under the metadata lock).
pub type Snapshot = Box<dyn Fn() -> Vec<Command> + Send + Sync>;

struct State {
    pending: Vec<Entry>,
    file: Option<File>,
    /// Length of the file up to the last synced write.
    good_len: u64,
    /// Length of the file right after the last compaction.
    snapshot_len: u64,
    /// Set when the file could not be put back in order after a failure: durable changes are refused.
    broken: Option<String>,
    shutdown: bool,
}

struct Shared {
    path: PathBuf,
    state: Mutex<State>,
    work: Condvar,
    /// The broker's metadata lock, taken to undo or snapshot while nothing else applies.
    meta: Arc<PlMutex<()>>,
    snapshot: Mutex<Option<Snapshot>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct DefsLog {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for DefsLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefsLog")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Read the commands in `path`, tolerating a torn last line and keeping a copy of a file with a corrupt one.
fn read_commands(path: &Path) -> Result<Vec<Command>, LogError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let f = File::open(path).map_err(io_err(path))?;
    Ok(parse_lines(BufReader::new(f).lines(), Some(path)))
}

/// The commands of a log's lines: a torn last line is ignored; a corrupt line elsewhere is skipped and, when
/// the log is a file (`path`), a copy of the whole file is kept aside.
pub(crate) fn parse_lines(
    lines: impl Iterator<Item = Result<String, std::io::Error>>,
    path: Option<&Path>,
) -> Vec<Command> {
    let shown = path.map_or_else(|| "(memory)".into(), |p| p.display().to_string());
    let mut lines: Vec<(usize, Result<String, std::io::Error>)> = lines.enumerate().collect();
    // Blank trailing lines carry nothing.
    while lines
        .last()
        .is_some_and(|(_, l)| l.as_ref().is_ok_and(|s| s.trim().is_empty()))
    {
        lines.pop();
    }
    let last = lines.len().saturating_sub(1);
    let mut cmds = Vec::with_capacity(lines.len());
    let mut kept_aside = false;
    for (i, line) in lines {
        let parsed = line
            .map_err(|e| e.to_string())
            .and_then(|l| serde_json::from_str::<Command>(&l).map_err(|e| e.to_string()));
        match parsed {
            Ok(c) => cmds.push(c),
            Err(e) if i == last => {
                tracing::warn!(path = %shown, line = i + 1, error = %e, "torn last line in the definitions log (a crash while writing it); ignoring it");
            }
            Err(e) => {
                if let (false, Some(path)) = (kept_aside, path) {
                    keep_aside(path);
                    kept_aside = true;
                }
                tracing::error!(path = %shown, line = i + 1, error = %e, "corrupt definitions log line skipped");
            }
        }
    }
    cmds
}

/// Copy a log with a corrupt line aside, for whoever investigates.
fn keep_aside(path: &Path) {
    let aside = path.with_extension(format!(
        "log.corrupt-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    ));
    match std::fs::copy(path, &aside) {
        Ok(_) => {
            tracing::error!(path = %path.display(), copy = %aside.display(), "the definitions log has a corrupt line; a copy of the whole file was kept")
        }
        Err(ce) => {
            tracing::error!(path = %path.display(), error = %ce, "the definitions log has a corrupt line and cannot be copied aside")
        }
    }
}

/// Write `cmds` to a new file next to `path` and move it into place, durably.
fn write_snapshot(path: &Path, cmds: &[Command]) -> Result<u64, LogError> {
    let tmp = path.with_extension("log.tmp");
    let mut buf = Vec::new();
    for c in cmds {
        serde_json::to_writer(&mut buf, c)?;
        buf.push(b'\n');
    }
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&buf).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(buf.len() as u64)
}

impl DefsLog {
    /// Open the log in `dir`: the commands it holds, and a log that records nothing until
    /// `compact_and_start`.
    pub fn open(dir: &Path, meta: Arc<PlMutex<()>>) -> Result<(DefsLog, Vec<Command>), LogError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join("definitions.log");
        let cmds = read_commands(&path)?;
        let shared = Arc::new(Shared {
            path,
            state: Mutex::new(State {
                pending: Vec::new(),
                file: None,
                good_len: 0,
                snapshot_len: 0,
                broken: None,
                shutdown: false,
            }),
            work: Condvar::new(),
            meta,
            snapshot: Mutex::new(None),
        });
        Ok((
            DefsLog {
                shared,
                thread: Mutex::new(None),
            },
            cmds,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Replace the log with `snapshot` (the state after replay) and start recording. `snapshot_fn` rebuilds
    /// such a snapshot later, for compaction while running.
    pub fn compact_and_start(
        &self,
        snapshot: &[Command],
        snapshot_fn: Snapshot,
    ) -> Result<(), LogError> {
        let path = &self.shared.path;
        let len = write_snapshot(path, snapshot)?;
        let f = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        {
            let mut st = self.shared.lock();
            st.file = Some(f);
            st.good_len = len;
            st.snapshot_len = len;
        }
        *self
            .shared
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(snapshot_fn);
        let shared = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name("warren-defs-log".into())
            .spawn(move || run(shared))
            .map_err(io_err(path))?;
        *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(())
    }

    /// Whether durable changes can be recorded now (`Err` with the reason when the log is broken).
    pub fn usable(&self) -> Result<(), String> {
        match &self.shared.lock().broken {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// Queue `cmds` (already applied) for the next group commit. Call under the metadata lock, in the order
    /// the commands applied. When the log is not recording yet (boot), the effects commit at once.
    pub fn append(&self, cmds: &[Command], effects: Effects) -> Ticket {
        let mut lines = Vec::new();
        for c in cmds {
            if let Err(e) = serde_json::to_writer(&mut lines, c) {
                // A command is plain data; encoding cannot fail short of a bug. Refuse it rather than lose it.
                tracing::error!(command = c.name(), error = %e, "cannot encode a definitions log entry");
                effects.rollback();
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(Err(format!("cannot encode {}: {e}", c.name())));
                return Ticket::Pending(rx);
            }
            lines.push(b'\n');
        }
        let mut st = self.shared.lock();
        if st.file.is_none() {
            drop(st);
            effects.run_commits();
            return Ticket::Done;
        }
        let (tx, rx) = oneshot::channel();
        st.pending.push(Entry {
            lines,
            effects,
            ticket: tx,
        });
        drop(st);
        self.shared.work.notify_one();
        Ticket::Pending(rx)
    }

    /// Point the log at `/dev/full`, so that every further write fails with ENOSPC (a real failing file, for
    /// the undo tests).
    #[cfg(test)]
    pub(crate) fn fail_writes_for_test(&self) {
        let full = OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        self.shared.lock().file = Some(full);
    }

    /// Write and sync everything queued, and stop the thread (shutdown).
    pub fn close(&self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_one();
        if let Some(h) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = h.join();
        }
    }
}

impl Drop for DefsLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// The log thread: wait for entries, write and sync them as one batch, then commit or undo them.
fn run(shared: Arc<Shared>) {
    loop {
        let (batch, mut file, stop) = {
            let mut st = shared.lock();
            while st.pending.is_empty() && !st.shutdown {
                st = shared.work.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            let batch = std::mem::take(&mut st.pending);
            let file = st.file.as_ref().and_then(|f| f.try_clone().ok());
            (batch, file, st.shutdown)
        };
        if !batch.is_empty() {
            let mut bytes = Vec::with_capacity(batch.iter().map(|e| e.lines.len()).sum());
            for e in &batch {
                bytes.extend_from_slice(&e.lines);
            }
            let written = match file.as_mut() {
                Some(f) => f.write_all(&bytes).and_then(|()| f.sync_data()),
                None => Err(std::io::Error::other("the log file is not open")),
            };
            match written {
                Ok(()) => {
                    let compact = {
                        let mut st = shared.lock();
                        st.good_len += bytes.len() as u64;
                        st.good_len > COMPACT_MIN.max(st.snapshot_len * COMPACT_FACTOR)
                    };
                    for e in batch {
                        e.effects.run_commits();
                        let _ = e.ticket.send(Ok(()));
                    }
                    if compact {
                        compact_now(&shared);
                    }
                }
                Err(e) => fail(&shared, batch, &e),
            }
        }
        if stop && shared.lock().pending.is_empty() {
            return;
        }
    }
}

/// A batch could not be written: undo it and everything queued after it, and put the file back.
fn fail(shared: &Shared, batch: Vec<Entry>, e: &std::io::Error) {
    let why = e.to_string();
    tracing::error!(path = %shared.path.display(), error = %why, entries = batch.len(), "cannot write the definitions log; undoing the changes it could not record");
    let _meta = shared.meta.lock();
    let mut st = shared.lock();
    let later = std::mem::take(&mut st.pending);
    let good = st.good_len;
    let restored = st
        .file
        .as_ref()
        .map(|f| f.set_len(good).and_then(|()| f.sync_data()));
    match restored {
        Some(Ok(())) => st.broken = None,
        Some(Err(te)) => {
            tracing::error!(path = %shared.path.display(), error = %te, "cannot truncate the definitions log after a failed write; refusing durable changes until it can be rewritten");
            st.broken = Some(format!("{why}; and the log could not be repaired: {te}"));
        }
        None => st.broken = Some(why.clone()),
    }
    drop(st);
    for entry in batch
        .into_iter()
        .chain(later)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        entry.effects.rollback();
        let _ = entry.ticket.send(Err(why.clone()));
    }
}

/// Replace the file with a snapshot of the current state (which includes everything queued, already
/// applied), then commit what was queued. On failure the old file stays and is appended to as before.
fn compact_now(shared: &Shared) {
    let snapshot = shared
        .snapshot
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let Some(snapshot_fn) = snapshot.as_ref() else {
        return;
    };
    let _meta = shared.meta.lock();
    let cmds = snapshot_fn();
    let mut st = shared.lock();
    let path = &shared.path;
    let reopened = write_snapshot(path, &cmds).and_then(|len| {
        OpenOptions::new()
            .append(true)
            .open(path)
            .map(|f| (f, len))
            .map_err(io_err(path))
    });
    match reopened {
        Ok((f, len)) => {
            tracing::info!(path = %path.display(), bytes = len, commands = cmds.len(), "definitions log compacted");
            st.file = Some(f);
            st.good_len = len;
            st.snapshot_len = len;
            st.broken = None;
            // The snapshot already holds what was queued: it is durable now.
            let queued = std::mem::take(&mut st.pending);
            drop(st);
            for e in queued {
                e.effects.run_commits();
                let _ = e.ticket.send(Ok(()));
            }
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot compact the definitions log; appending to it as before");
            st.snapshot_len = st.good_len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "warren-deflog-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn vhost(n: &str) -> Command {
        Command::AddVhost {
            name: n.into(),
            description: String::new(),
            tags: vec![],
            default_queue_type: None,
            tracing: false,
        }
    }

    #[test]
    fn entries_commit_in_order_and_replay() {
        let dir = temp_dir("order");
        let meta = Arc::new(PlMutex::new(()));
        let (log, cmds) = DefsLog::open(&dir, meta.clone()).unwrap();
        assert!(cmds.is_empty());
        log.compact_and_start(&[vhost("/")], Box::new(Vec::new))
            .unwrap();
        let commits = Arc::new(AtomicUsize::new(0));
        let tickets: Vec<Ticket> = (0..50)
            .map(|i| {
                let mut fx = Effects::default();
                let c = commits.clone();
                fx.on_commit(move || {
                    assert_eq!(c.fetch_add(1, Ordering::SeqCst), i, "commits run in order");
                });
                log.append(&[vhost(&format!("v{i}"))], fx)
            })
            .collect();
        for t in tickets {
            t.wait_blocking().unwrap();
        }
        assert_eq!(commits.load(Ordering::SeqCst), 50);
        drop(log);
        let (_log, cmds) = DefsLog::open(&dir, meta).unwrap();
        assert_eq!(cmds.len(), 51);
        assert_eq!(cmds[50], vhost("v49"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn torn_tail_is_dropped_and_corrupt_middle_kept_aside() {
        let dir = temp_dir("torn");
        let path = dir.join("definitions.log");
        let good = serde_json::to_string(&vhost("a")).unwrap();
        std::fs::write(
            &path,
            format!("{good}\n{{not json\n{good}\n{{\"op\":\"add_vho"),
        )
        .unwrap();
        let (_log, cmds) = DefsLog::open(&dir, Arc::new(PlMutex::new(()))).unwrap();
        assert_eq!(cmds, vec![vhost("a"), vhost("a")]);
        let aside = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
            .count();
        assert_eq!(aside, 1, "the corrupt file was copied aside");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn old_format_lines_still_read() {
        let dir = temp_dir("old");
        std::fs::write(
            dir.join("definitions.log"),
            "{\"op\":\"vhost\",\"name\":\"/\"}\n{\"op\":\"queue\",\"vhost\":\"/\",\"name\":\"q\",\"auto_delete\":false,\"arguments\":{}}\n{\"op\":\"grant\",\"user\":\"u\",\"vhost\":\"/\"}\n",
        )
        .unwrap();
        let (_log, cmds) = DefsLog::open(&dir, Arc::new(PlMutex::new(()))).unwrap();
        assert_eq!(cmds.len(), 3);
        assert!(matches!(
            &cmds[1],
            Command::DeclareQueue {
                durable: true,
                exclusive: false,
                ..
            }
        ));
        assert!(matches!(&cmds[2], Command::SetPermissions { configure, .. } if configure == ".*"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
