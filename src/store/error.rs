//! The store's error type. It is `Clone` because one I/O failure answers every publish of a batch.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Location;

/// What went wrong in the message store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A system call on a store file or directory failed (disk full, I/O error, permissions, ...).
    /// Publishers should be nacked or blocked; the store retries and keeps working once the cause is gone.
    #[error("message store: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    /// A record read back from disk failed its checksum or does not parse.
    #[error("message store: corrupt record in segment {segment} at offset {offset}: {reason}")]
    Corrupt {
        segment: u32,
        offset: u64,
        reason: &'static str,
    },
    /// The location names a segment that is gone (all its messages were acked) or bytes never written.
    #[error("message store: no record at {0:?}")]
    NotFound(Location),
    /// The record would not fit the format's 32-bit length.
    #[error("message store: record of {len} bytes is too large")]
    TooLarge { len: u64 },
    /// A caller-side mistake: empty target list, a queue name over 65535 bytes, a queue named twice.
    #[error("message store: invalid argument: {0}")]
    Invalid(&'static str),
    /// The store is shutting down.
    #[error("message store: closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }

    /// The underlying OS error kind, for an I/O error.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            StoreError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}
