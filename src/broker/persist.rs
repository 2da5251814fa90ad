//! The definitions log: every change to durable topology (vhosts, users and permissions, durable exchanges and
//! queues, bindings between durable ends, policies) is appended as one JSON line and synced before the method
//! that made it is answered. At start the log is replayed through the same broker functions the AMQP methods
//! use, then compacted into a snapshot of what survived. A torn last line (a crash mid-append) is dropped with
//! a warning.

use super::policy::PolicyDef;
use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DefOp {
    Vhost {
        name: String,
    },
    DeleteVhost {
        name: String,
    },
    User {
        name: String,
        password: StoredPassword,
        tags: Vec<String>,
    },
    DeleteUser {
        name: String,
    },
    Grant {
        user: String,
        vhost: String,
    },
    Exchange {
        vhost: String,
        name: String,
        kind: String,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    },
    DeleteExchange {
        vhost: String,
        name: String,
    },
    Queue {
        vhost: String,
        name: String,
        auto_delete: bool,
        arguments: FieldTable,
    },
    DeleteQueue {
        vhost: String,
        name: String,
    },
    Bind {
        vhost: String,
        source: String,
        destination: String,
        to_exchange: bool,
        routing_key: String,
        arguments: FieldTable,
    },
    Unbind {
        vhost: String,
        source: String,
        destination: String,
        to_exchange: bool,
        routing_key: String,
        arguments: FieldTable,
    },
    Policy {
        def: PolicyDef,
        operator: bool,
    },
    ClearPolicy {
        vhost: String,
        name: String,
        operator: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum StoredPassword {
    Plain(String),
    Sha256(String),
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("data directory {0} is in use by another Warren (its lock file is held)")]
    Locked(PathBuf),
    #[error("message store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("definitions log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Hold the data directory's lock file for as long as the value lives: two brokers on one directory would
/// corrupt each other's files.
pub fn lock_data_dir(dir: &Path) -> Result<File, PersistError> {
    let io = |source| PersistError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let path = dir.join("lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(PersistError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

#[derive(Debug)]
pub struct DefsLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
    /// Off while the log is being replayed, so replay does not log again.
    enabled: AtomicBool,
}

impl DefsLog {
    /// Open the log in `dir`, returning it (disabled until `enable`) and the operations it holds.
    pub fn open(dir: &Path) -> Result<(DefsLog, Vec<DefOp>), PersistError> {
        let io = |source| PersistError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join("definitions.log");
        let mut ops = Vec::new();
        if path.exists() {
            let f = File::open(&path).map_err(|source| PersistError::Io {
                path: path.clone(),
                source,
            })?;
            for (i, line) in BufReader::new(f).lines().enumerate() {
                let Ok(line) = line else {
                    tracing::warn!(path = %path.display(), line = i + 1, "unreadable definitions log line; ignoring the rest");
                    break;
                };
                match serde_json::from_str::<DefOp>(&line) {
                    Ok(op) => ops.push(op),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), line = i + 1, error = %e, "torn or corrupt definitions log line; ignoring the rest");
                        break;
                    }
                }
            }
        }
        Ok((
            DefsLog {
                path,
                file: Mutex::new(None),
                enabled: AtomicBool::new(false),
            },
            ops,
        ))
    }

    /// Replace the log with a snapshot and start appending to it.
    pub fn compact_and_enable(&self, snapshot: &[DefOp]) -> Result<(), PersistError> {
        let io = |source| PersistError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("log.tmp");
        {
            let mut f = File::create(&tmp).map_err(io)?;
            let mut buf = Vec::new();
            for op in snapshot {
                serde_json::to_writer(&mut buf, op).map_err(|e| io(std::io::Error::other(e)))?;
                buf.push(b'\n');
            }
            f.write_all(&buf).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        let f = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        *self.file.lock() = Some(f);
        self.enabled.store(true, Ordering::Release);
        Ok(())
    }

    /// Append one operation and sync it. A failure is logged: the change stays in memory but may not survive
    /// a restart.
    pub fn append(&self, op: DefOp) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        let mut line = match serde_json::to_vec(&op) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode definitions log entry");
                return;
            }
        };
        line.push(b'\n');
        let mut guard = self.file.lock();
        let Some(f) = guard.as_mut() else { return };
        if let Err(e) = f.write_all(&line).and_then(|_| f.sync_data()) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write the definitions log; this change may not survive a restart");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_can_be_locked_once() {
        let dir = std::env::temp_dir().join(format!(
            "warren-lock-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let held = lock_data_dir(&dir).unwrap();
        assert!(matches!(lock_data_dir(&dir), Err(PersistError::Locked(_))));
        drop(held);
        assert!(lock_data_dir(&dir).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ops_round_trip_and_torn_tail_is_dropped() {
        let dir = std::env::temp_dir().join(format!(
            "warren-defs-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let (log, ops) = DefsLog::open(&dir).unwrap();
        assert!(ops.is_empty());
        let mut args = FieldTable::default();
        args.insert(
            "x-message-ttl".into(),
            amq_protocol::types::AMQPValue::LongInt(5),
        );
        let q = DefOp::Queue {
            vhost: "/".into(),
            name: "q".into(),
            auto_delete: false,
            arguments: args,
        };
        log.compact_and_enable(&[DefOp::Vhost { name: "/".into() }])
            .unwrap();
        log.append(q.clone());
        drop(log);
        // A crash in the middle of the next append.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join("definitions.log"))
            .unwrap();
        f.write_all(b"{\"op\":\"queue\",\"vho").unwrap();
        let (_log, ops) = DefsLog::open(&dir).unwrap();
        assert_eq!(ops, vec![DefOp::Vhost { name: "/".into() }, q]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
