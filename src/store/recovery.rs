//! Recovery at `open`: list the segment files, scan the ack log then the msg log (checking every record),
//! truncate torn or corrupt tails, replay acks, delivered marks and queue drops against the publishes by
//! position, delete segments with nothing live, and rebuild the in-memory state.
//!
//! The ack log is read first so that only live messages are ever held in memory: the set of acked
//! positions is filtered to msg segments that still exist, and shrinks as publishes consume it.

use crate::{FastMap as HashMap, FastSet as HashSet};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use super::format::{self, Pos, Scan, Scanner, SegKind, HEADER_LEN, RECORD_HEADER_LEN};
use super::state::{Log, Seg, State};
use super::{Location, RecoveredMessage, RecoveredQueue, StoreConfig, StoreError, RECOVERED_HEAD};

/// A progress line is logged every this many records.
const PROGRESS_EVERY_RECORDS: u64 = 1_000_000;

pub(super) struct Recovery {
    pub state: State,
    pub queues: Vec<RecoveredQueue>,
}

/// Queue names seen during recovery, as small ids.
#[derive(Default)]
struct Names {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Names {
    fn id(&mut self, q: &str) -> u32 {
        if let Some(&id) = self.ids.get(q) {
            return id;
        }
        let id = self.names.len() as u32;
        let name: Arc<str> = Arc::from(q);
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }
}

/// Recovery counters and progress logging.
struct Progress {
    started: Instant,
    records: u64,
    bytes: u64,
    total_bytes: u64,
    truncated: usize,
}

impl Progress {
    fn record(&mut self, len: usize) {
        self.records += 1;
        self.bytes += len as u64;
        if self.records.is_multiple_of(PROGRESS_EVERY_RECORDS) {
            let pct = (self.bytes * 100)
                .checked_div(self.total_bytes)
                .unwrap_or(100);
            info!(
                records = self.records,
                bytes = self.bytes,
                total_bytes = self.total_bytes,
                percent = pct,
                elapsed_ms = self.started.elapsed().as_millis() as u64,
                "message store: recovery in progress"
            );
        }
    }
}

/// The live messages of one queue while the msg log is replayed.
#[derive(Default)]
struct RecQueue {
    msgs: Vec<(RecoveredMessage, bool)>,
    index: HashMap<u64, Pos>,
}

pub(super) fn recover(cfg: &StoreConfig) -> Result<Recovery, StoreError> {
    let dir = cfg.dir.as_path();
    fs::create_dir_all(dir).map_err(|e| StoreError::io("create directory", dir, e))?;
    let (msg_ids, ack_ids, total_bytes) = list_segments(dir)?;
    let mut progress = Progress {
        started: Instant::now(),
        records: 0,
        bytes: 0,
        total_bytes,
        truncated: 0,
    };
    info!(
        dir = %dir.display(),
        msg_segments = msg_ids.len(),
        ack_segments = ack_ids.len(),
        bytes = total_bytes,
        "message store: recovering"
    );

    // Phase 1: the ack log.
    let mut names = Names::default();
    let mut acked: HashMap<(u32, Pos), u32> = HashMap::default();
    let mut delivered: HashMap<(u32, Pos), u32> = HashMap::default();
    let mut drops: HashMap<u32, (Pos, u32)> = HashMap::default();
    let mut max_ref = 0u32;
    let mut ack_lens: BTreeMap<u32, u64> = BTreeMap::new();
    for &id in &ack_ids {
        let path = dir.join(format::segment_file_name(SegKind::Ack, id));
        let (file, len) = open_segment(&path, SegKind::Ack, id)?;
        let mut sc = Scanner::new(&file, len);
        let mut bad = None;
        loop {
            match sc.next().map_err(|e| StoreError::io("read", &path, e))? {
                Scan::End => break,
                Scan::Bad { offset, reason } => {
                    bad = Some((offset, reason));
                    break;
                }
                Scan::Record { offset, ty, body } => {
                    progress.record(RECORD_HEADER_LEN + body.len());
                    let ok = match ty {
                        format::ACK | format::DELIVERED => match format::decode_positions(body) {
                            Some((q, positions)) => {
                                let qid = names.id(q);
                                let map = if ty == format::ACK {
                                    &mut acked
                                } else {
                                    &mut delivered
                                };
                                for p in positions {
                                    max_ref = max_ref.max(p.seg);
                                    if msg_ids.contains(&p.seg) {
                                        map.insert((qid, p), id);
                                    }
                                }
                                true
                            }
                            None => false,
                        },
                        format::DROP => match format::decode_drop(body) {
                            Some((mark, q)) => {
                                max_ref = max_ref.max(mark.seg);
                                let qid = names.id(q);
                                let e = drops.entry(qid).or_insert((mark, id));
                                if mark > e.0 {
                                    *e = (mark, id);
                                }
                                true
                            }
                            None => false,
                        },
                        _ => false,
                    };
                    if !ok {
                        bad = Some((offset, "undecodable or misplaced record"));
                        break;
                    }
                }
            }
        }
        let good = match bad {
            Some((offset, reason)) => {
                truncate(&file, &path, offset, len, reason);
                progress.truncated += 1;
                offset
            }
            None => len,
        };
        ack_lens.insert(id, good);
    }

    // Phase 2: the msg log, in publish order.
    let mut queues: Vec<RecQueue> = Vec::new();
    let mut refs: HashMap<u32, HashSet<u32>> = HashMap::default();
    let mut msg_segs: BTreeMap<u32, Seg> = BTreeMap::new();
    for &id in &msg_ids {
        let path = dir.join(format::segment_file_name(SegKind::Msg, id));
        let (file, len) = open_segment(&path, SegKind::Msg, id)?;
        let mut live = 0u64;
        let mut sc = Scanner::new(&file, len);
        let mut bad = None;
        loop {
            match sc.next().map_err(|e| StoreError::io("read", &path, e))? {
                Scan::End => break,
                Scan::Bad { offset, reason } => {
                    bad = Some((offset, reason));
                    break;
                }
                Scan::Record { offset, ty, body } => {
                    progress.record(RECORD_HEADER_LEN + body.len());
                    let parsed = (ty == format::PUBLISH)
                        .then(|| format::PublishBody::decode(body))
                        .flatten();
                    let (Some(p), Ok(off)) = (parsed, u32::try_from(offset)) else {
                        bad = Some((offset, "undecodable or misplaced record"));
                        break;
                    };
                    let pos = Pos { seg: id, off };
                    let location = Location {
                        segment: id,
                        offset,
                        len: (RECORD_HEADER_LEN + body.len()) as u32,
                    };
                    let mut head = [0u8; RECOVERED_HEAD];
                    let payload = &body[p.payload_start..];
                    let n = payload.len().min(RECOVERED_HEAD);
                    head[..n].copy_from_slice(&payload[..n]);
                    for (q, msg_id) in p.entries() {
                        let qid = names.id(q);
                        if let Some(&(mark, a)) = drops.get(&qid) {
                            if pos < mark {
                                refs.entry(a).or_default().insert(id);
                                continue;
                            }
                        }
                        if let Some(a) = acked.remove(&(qid, pos)) {
                            refs.entry(a).or_default().insert(id);
                            continue;
                        }
                        let dlv = delivered.remove(&(qid, pos));
                        if let Some(a) = dlv {
                            refs.entry(a).or_default().insert(id);
                        }
                        if queues.len() <= qid as usize {
                            queues.resize_with(qid as usize + 1, RecQueue::default);
                        }
                        let rq = &mut queues[qid as usize];
                        if let Some(old) = rq.index.insert(msg_id, pos) {
                            warn!(
                                queue = q,
                                msg_id,
                                "message store: message id stored twice; keeping the newer copy"
                            );
                            if let Some(m) = rq.msgs.iter_mut().rev().find(|(m, alive)| {
                                *alive
                                    && m.msg_id == msg_id
                                    && m.location.segment == old.seg
                                    && m.location.offset == u64::from(old.off)
                            }) {
                                m.1 = false;
                            }
                            if old.seg == id {
                                live -= 1;
                            } else if let Some(s) = msg_segs.get_mut(&old.seg) {
                                s.live -= 1;
                            }
                        }
                        rq.msgs.push((
                            RecoveredMessage {
                                msg_id,
                                location,
                                delivered: dlv.is_some(),
                                head,
                            },
                            true,
                        ));
                        live += 1;
                    }
                }
            }
        }
        let good = match bad {
            Some((offset, reason)) => {
                truncate(&file, &path, offset, len, reason);
                progress.truncated += 1;
                offset
            }
            None => len,
        };
        let mut seg = Seg::existing(good, Some(Arc::new(file)));
        seg.live = live;
        msg_segs.insert(id, seg);
    }
    drop(acked);
    drop(delivered);

    // Segment ids are never reused: ack records may still name deleted segments.
    let next_msg = msg_ids
        .last()
        .copied()
        .unwrap_or(0)
        .max(max_ref)
        .checked_add(1)
        .ok_or(StoreError::Invalid("segment ids exhausted"))?;
    let next_ack = ack_ids
        .last()
        .copied()
        .unwrap_or(0)
        .checked_add(1)
        .ok_or(StoreError::Invalid("segment ids exhausted"))?;

    // Delete msg segments with nothing live, then ack segments that refer to none left.
    let mut deleted = 0usize;
    let empty: Vec<u32> = msg_segs
        .iter()
        .filter(|(_, s)| s.live == 0)
        .map(|(id, _)| *id)
        .collect();
    for id in empty {
        let path = dir.join(format::segment_file_name(SegKind::Msg, id));
        match fs::remove_file(&path) {
            Ok(()) => {
                msg_segs.remove(&id);
                deleted += 1;
            }
            Err(e) => {
                warn!(segment = %path.display(), error = %e, "message store: cannot delete fully acked segment")
            }
        }
    }
    let dir_ok = deleted == 0 || sync_dir(dir);
    let mut ack_segs: BTreeMap<u32, Seg> = BTreeMap::new();
    for (&id, &len) in &ack_lens {
        let mut r = refs.remove(&id).unwrap_or_default();
        r.retain(|s| msg_segs.contains_key(s));
        if r.is_empty() && dir_ok {
            let path = dir.join(format::segment_file_name(SegKind::Ack, id));
            match fs::remove_file(&path) {
                Ok(()) => {
                    deleted += 1;
                    continue;
                }
                Err(e) => {
                    warn!(segment = %path.display(), error = %e, "message store: cannot delete ack segment")
                }
            }
        }
        let mut seg = Seg::existing(len, None);
        seg.refs = r;
        ack_segs.insert(id, seg);
    }

    // The in-memory index and the caller's view.
    let mut index = HashMap::default();
    let mut recovered = Vec::new();
    for (qid, rq) in queues.into_iter().enumerate() {
        if rq.index.is_empty() {
            continue;
        }
        let name = names.names[qid].clone();
        recovered.push(RecoveredQueue {
            queue: name.to_string(),
            messages: rq
                .msgs
                .into_iter()
                .filter(|(_, alive)| *alive)
                .map(|(m, _)| m)
                .collect(),
        });
        index.insert(name, rq.index);
    }
    let msg = Log::new(next_msg, cfg.msg_segment_size(), msg_segs);
    let ack = Log::new(next_ack, cfg.ack_segment_size(), ack_segs);
    let state = State::new(msg, ack, index);
    info!(
        live_messages = state.live,
        queues = recovered.len(),
        msg_segments = state.msg.segs.len() - 1,
        ack_segments = state.ack.segs.len() - 1,
        records = progress.records,
        bytes = progress.bytes,
        truncated_segments = progress.truncated,
        deleted_segments = deleted,
        elapsed_ms = progress.started.elapsed().as_millis() as u64,
        "message store: recovered"
    );
    Ok(Recovery {
        state,
        queues: recovered,
    })
}

/// Segment ids of each log and their total size. Other files are left alone.
fn list_segments(dir: &Path) -> Result<(BTreeSet<u32>, BTreeSet<u32>, u64), StoreError> {
    let mut msg = BTreeSet::new();
    let mut ack = BTreeSet::new();
    let mut bytes = 0;
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("list directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list directory", dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
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
    Ok((msg, ack, bytes))
}

/// Opens an existing segment and checks its header. A missing or damaged header (a crash while the file
/// was being created) makes it an empty segment, rewritten as such so that its id stays taken.
fn open_segment(path: &Path, kind: SegKind, id: u32) -> Result<(File, u64), StoreError> {
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
fn truncate(file: &File, path: &Path, offset: u64, len: u64, reason: &str) {
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

fn sync_dir(dir: &Path) -> bool {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => true,
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "message store: cannot sync directory");
            false
        }
    }
}
