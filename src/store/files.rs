//! The files recovery finds in the store's directory: listing them, opening a segment and checking its
//! header, cutting a torn tail, syncing the directory after deletions.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use tracing::warn;

use super::format::{self, SegKind, HEADER_LEN};
use super::{index, StoreError};

/// Segment ids of each log, the msg segments with an index file, and the logs' total size. Index files
/// of segments that are gone, and half-written ones, are deleted; other files are left alone.
#[allow(clippy::type_complexity)]
pub(super) fn list_segments(
    dir: &Path,
) -> Result<(BTreeSet<u32>, BTreeSet<u32>, BTreeSet<u32>, u64), StoreError> {
    let mut msg = BTreeSet::new();
    let mut ack = BTreeSet::new();
    let mut idx = Vec::new();
    let mut bytes = 0;
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("list directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list directory", dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some((id, tmp)) = index::parse_name(&name) {
            idx.push((id, tmp, entry.path()));
            continue;
        }
        let Some((kind, id)) = format::parse_segment_file_name(&name) else {
            continue;
        };
        if let Ok(m) = entry.metadata() {
            bytes += m.len();
        }
        match kind {
            SegKind::Msg => msg.insert(id),
            SegKind::Ack => ack.insert(id),
        };
    }
    let mut indexed = BTreeSet::new();
    for (id, tmp, path) in idx {
        if !tmp && msg.contains(&id) {
            indexed.insert(id);
        } else if let Err(e) = fs::remove_file(&path) {
            warn!(file = %path.display(), error = %e, "message store: cannot delete stale index file");
        }
    }
    Ok((msg, ack, indexed, bytes))
}

/// Opens an existing segment and checks its header. A missing or damaged header (a crash while the file
/// was being created) makes it an empty segment, rewritten as such so that its id stays taken.
pub(super) fn open_segment(path: &Path, kind: SegKind, id: u32) -> Result<(File, u64), StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| StoreError::io("stat", path, e))?
        .len();
    let mut header = [0u8; HEADER_LEN as usize];
    let checked = if len >= HEADER_LEN {
        file.read_exact_at(&mut header, 0)
            .map_err(|e| StoreError::io("read", path, e))?;
        format::check_header(&header, kind, id)
    } else {
        Err("segment shorter than its header")
    };
    if let Err(reason) = checked {
        warn!(segment = %path.display(), bytes = len, reason, "message store: damaged segment header; treating the segment as empty");
        let rewritten = file
            .set_len(0)
            .and_then(|()| file.write_all_at(&format::encode_header(kind, id), 0))
            .and_then(|()| file.sync_all());
        if let Err(e) = rewritten {
            warn!(segment = %path.display(), error = %e, "message store: cannot rewrite damaged segment header");
        }
        return Ok((file, HEADER_LEN));
    }
    Ok((file, len))
}

/// Cuts a segment at its first bad record. Failing to cut is not fatal: the store never appends to a
/// segment from before `open`, and the next recovery stops at the same place.
pub(super) fn truncate(file: &File, path: &Path, offset: u64, len: u64, reason: &str) {
    warn!(
        segment = %path.display(),
        offset,
        dropped_bytes = len - offset,
        reason,
        "message store: torn or corrupt tail; truncating to the last good record"
    );
    if let Err(e) = file.set_len(offset).and_then(|()| file.sync_all()) {
        warn!(segment = %path.display(), error = %e, "message store: cannot truncate segment");
    }
}

pub(super) fn sync_dir(dir: &Path) -> bool {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => true,
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "message store: cannot sync directory");
            false
        }
    }
}
