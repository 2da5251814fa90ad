//! Index files: recovery of an indexed segment hands out blocks unread, or entries checked against the
//! ack log where a queue has marks there; a damaged index falls back to the segment; stale index files go.

use super::*;
use std::collections::BTreeMap;

/// Everything recovery hands out, as (queue, message or block).
fn recover_all(cfg: &StoreConfig) -> (Arc<MessageStore>, Vec<(String, Recovered)>) {
    let (store, pending) = MessageStore::open_recovering(cfg.clone()).unwrap();
    let mut out = Vec::new();
    store
        .recover(pending, &mut |_| true, &mut |q, r| {
            out.push((q.to_string(), r))
        })
        .unwrap();
    (store, out)
}

/// The runs recovery handed `queue`, in order.
fn runs_of(out: &[(String, Recovered)], queue: &str) -> Vec<RecoveredBlock> {
    out.iter()
        .filter_map(|(q, r)| match r {
            Recovered::Block(b) if q == queue => Some(*b),
            _ => None,
        })
        .collect()
}

/// Reads the run from block `b` of `q` part by part on the reader thread, as a queue does: each part at most
/// `part` live entries, each rest past the part or at the run's next block, with the head of its first entry
/// and the entries it went past (checked when `all_live`, against the run's `messages`).
fn read_in_parts(
    store: &MessageStore,
    q: &str,
    b: IndexBlock,
    part: usize,
    all_live: Option<u32>,
) -> Vec<RecoveredMessage> {
    let (mut out, mut next, mut head, mut passed) = (Vec::new(), Some(b), None, 0u32);
    while let Some(b) = next {
        let (tx, rx) = std::sync::mpsc::channel();
        store.read_block_async(
            q.to_string(),
            b,
            part,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        let p = rx.recv().unwrap().unwrap();
        assert!(p.entries.len() <= part);
        if let (Some(h), Some(first), Some(_)) = (head, p.entries.first(), all_live) {
            assert_eq!(first.head, h);
        }
        if let Some(r) = &p.rest {
            assert_eq!(r.block.until, b.until);
            if (r.block.segment, r.block.at) == (b.segment, b.at) {
                assert_eq!(r.block.skip, b.skip + part as u32);
                assert!(r.block.skip < r.block.count);
                assert_eq!(r.passed, part as u32);
            } else {
                assert!(r.block.segment > b.segment || r.block.at > b.at);
                assert!(r.block.segment <= b.until);
                assert_eq!(r.block.skip, 0);
                assert_eq!(r.passed, b.count - b.skip);
            }
            passed += r.passed;
        } else if let Some(messages) = all_live {
            assert_eq!(passed + p.entries.len() as u32, messages);
        }
        head = p.rest.map(|r| r.first_head);
        next = p.rest.map(|r| r.block);
        out.extend(p.entries);
    }
    out
}

fn index_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".idx"))
        .collect();
    v.sort();
    v
}

/// Fills two queues (and some records for both) over many small segments, acks every third message of
/// `v/b` and marks one of `v/c` delivered; returns each queue's live ids.
fn fill(cfg: &StoreConfig) -> BTreeMap<String, Vec<u64>> {
    let (store, _) = open(cfg);
    let mut live: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut b_locs = Vec::new();
    for i in 0..3000u64 {
        match i % 5 {
            0 | 1 => {
                store.publish("v/a", i, &payload(i, 40), noop()).unwrap();
                live.entry("v/a".into()).or_default().push(i);
            }
            2 | 3 => {
                let loc = store.publish("v/b", i, &payload(i, 40), noop()).unwrap();
                b_locs.push((i, loc));
            }
            _ => {
                let loc = store
                    .publish_many(&[("v/a", i), ("v/c", i)], &payload(i, 40), noop())
                    .unwrap();
                live.entry("v/a".into()).or_default().push(i);
                live.entry("v/c".into()).or_default().push(i);
                if i == 1004 {
                    store.delivered("v/c", loc.target(1));
                }
            }
        }
    }
    for (n, (i, loc)) in b_locs.iter().enumerate() {
        if n % 3 == 0 {
            store.ack("v/b", &[*loc]);
        } else {
            live.entry("v/b".into()).or_default().push(*i);
        }
    }
    store.sync_now().unwrap();
    store.index_now();
    live
}

#[test]
fn indexed_segments_come_back_as_blocks_read_on_demand() {
    let d = TempDir::new("idx-blocks");
    let cfg = config(&d.0, 16 << 10, SyncPolicy::Never);
    let live = fill(&cfg);
    assert!(index_files(&d.0).len() > 5, "{:?}", index_files(&d.0));
    let (store, out) = recover_all(&cfg);
    let mut got: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut blocks = BTreeMap::<String, usize>::new();
    let mut delivered = Vec::new();
    for (q, r) in &out {
        match r {
            Recovered::Message(m) => {
                if m.delivered {
                    delivered.push((q.clone(), m.msg_id));
                }
                got.entry(q.clone()).or_default().push(m.msg_id);
            }
            Recovered::Block(b) => {
                *blocks.entry(q.clone()).or_default() += 1;
                let v = store.read_block(q, &b.block).unwrap();
                assert_eq!(v.len(), b.messages as usize);
                assert_eq!(read_in_parts(&store, q, b.block, 7, Some(b.messages)), v);
                assert_eq!(b.first_head, v[0].head);
                assert_eq!(b.weight, 40 * v.len() as u64);
                for m in v {
                    assert_eq!(
                        &store.read(m.location).unwrap()[..],
                        &payload(m.msg_id, 40)[..]
                    );
                    got.entry(q.clone()).or_default().push(m.msg_id);
                }
            }
        }
    }
    assert_eq!(got, live);
    // v/a and v/c have nothing acked: blocks in every sealed segment, one run each, but for the segment
    // where v/c has a delivered mark, which splits v/c's. v/b has acks everywhere: entries.
    assert_eq!((blocks["v/a"], blocks["v/c"]), (1, 2), "{blocks:?}");
    let a_run = runs_of(&out, "v/a")[0].block;
    assert!(a_run.until > a_run.segment + 5, "{a_run:?}");
    assert!(!blocks.contains_key("v/b"));
    // The segment where v/c has a delivered mark gives v/c's entries there one by one.
    assert_eq!(delivered, vec![("v/c".to_string(), 1004)]);
    let n: u64 = live.values().map(|v| v.len() as u64).sum();
    assert_eq!(store.stats().live_messages, n);

    // Settled entries leave a block; an ack after recovery sticks across the next restart.
    let (q, b) = out
        .iter()
        .find_map(|(q, r)| match r {
            Recovered::Block(b) if q == "v/a" && b.block.count > 2 => Some((q.clone(), *b)),
            _ => None,
        })
        .unwrap();
    let before = store.read_block(&q, &b.block).unwrap();
    store.ack(&q, &[before[0].location, before[2].location]);
    store.ack(&q, &[before[0].location]);
    let after = store.read_block(&q, &b.block).unwrap();
    assert_eq!(after.len(), before.len() - 2);
    // Read in parts, settled entries are left out of theirs.
    assert_eq!(read_in_parts(&store, &q, b.block, 2, None), after);
    assert_eq!(after[0], before[1]);
    assert_eq!(store.stats().live_messages, n - 2);
    store.sync_now().unwrap();
    drop(store);
    let (store, rec) = open(&cfg);
    assert_eq!(store.stats().live_messages, n - 2);
    let a = ids(&rec, "v/a");
    assert!(!a.contains(&before[0].msg_id) && !a.contains(&before[2].msg_id));
    assert_eq!(a.len(), live["v/a"].len() - 2);
}

#[test]
fn a_damaged_index_falls_back_to_the_segment() {
    let d = TempDir::new("idx-damaged");
    let cfg = config(&d.0, 16 << 10, SyncPolicy::Never);
    let live = fill(&cfg);
    let files = index_files(&d.0);
    // One index with a damaged block (the byte after its header), one with a damaged table (its last
    // byte), one of the wrong length, and leftovers: a temporary file and an index whose segment is gone.
    let flip = |name: &str, at: Option<u64>| {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(d.0.join(name))
            .unwrap();
        let len = f.metadata().unwrap().len();
        let at = at.unwrap_or(len - 1);
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x55], at).unwrap();
    };
    flip(&files[0], Some(60));
    flip(&files[1], None);
    fs::OpenOptions::new()
        .append(true)
        .open(d.0.join(&files[2]))
        .unwrap()
        .write_all_at(b"x", 1 << 20)
        .unwrap();
    fs::write(d.0.join("msg-0000009999.idx"), b"orphan").unwrap();
    fs::write(d.0.join(format!("{}.tmp", files[3])), b"torn").unwrap();
    let (store, rec) = open(&cfg);
    let mut got: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for q in &rec {
        got.insert(
            q.queue.clone(),
            q.messages.iter().map(|m| m.msg_id).collect(),
        );
    }
    assert_eq!(got, live);
    // The leftovers are gone. (The indexer may be rewriting a damaged index right now, as a .tmp of its
    // own: only the torn one must not be there.)
    let files_after = index_files(&d.0);
    assert!(
        !files_after.iter().any(|f| f.contains("9999")),
        "{files_after:?}"
    );
    let torn = d.0.join(format!("{}.tmp", files[3]));
    assert!(
        fs::read(&torn).map_or(true, |b| b != b"torn"),
        "{files_after:?}"
    );
    drop(store);
}

#[test]
fn dropped_and_refused_queues_die_with_their_blocks_and_gc_takes_the_index() {
    let d = TempDir::new("idx-drop");
    let cfg = config(&d.0, 16 << 10, SyncPolicy::Never);
    let live = fill(&cfg);
    {
        let (store, _) = open(&cfg);
        store.drop_queue("v/c");
        store.sync_now().unwrap();
    }
    let (store, pending) = MessageStore::open_recovering(cfg.clone()).unwrap();
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    store
        .recover(pending, &mut |q| q != "v/b", &mut |q, r| {
            *got.entry(q.to_string()).or_default() += match r {
                Recovered::Message(_) => 1,
                Recovered::Block(b) => b.messages as usize,
            };
        })
        .unwrap();
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["v/a"]);
    assert_eq!(got["v/a"], live["v/a"].len());
    assert_eq!(store.stats().live_messages, live["v/a"].len() as u64);
    store.sync_now().unwrap();
    drop(store);
    // Ack everything: segments and their indexes go.
    let (store, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/a"), live["v/a"]);
    assert_eq!(rec.len(), 1);
    let locs: Vec<Location> = rec[0].messages.iter().map(|m| m.location).collect();
    store.ack("v/a", &locs);
    store.sync_now().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().msg_segments > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(store.stats().msg_segments <= 1, "{:?}", store.stats());
    assert!(index_files(&d.0).is_empty(), "{:?}", index_files(&d.0));
}

#[test]
fn a_block_whose_segment_is_gone_reads_as_empty() {
    // What is left of a block read in part, once its queue is deleted: the queue sends it to be read and
    // forgotten, and by then the segment may be collected. Nothing in it is live, which is no error.
    let d = TempDir::new("idx-gone");
    let cfg = config(&d.0, 16 << 10, SyncPolicy::Never);
    fill(&cfg);
    let (store, out) = recover_all(&cfg);
    let run = runs_of(&out, "v/a")[0].block;
    // Every block of the run, as its queue would hold it between parts.
    let mut blocks = Vec::new();
    let mut next = Some(run);
    while let Some(b) = next {
        blocks.push(b);
        next = store
            .read_block_part("v/a", &b, 5)
            .unwrap()
            .rest
            .map(|r| r.block);
    }
    assert!(
        blocks.iter().filter(|b| b.skip == 0).count() > 5,
        "{}",
        blocks.len()
    );
    for q in ["v/a", "v/b", "v/c"] {
        store.drop_queue(q);
    }
    store.sync_now().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().msg_segments > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(store.stats().msg_segments <= 1, "{:?}", store.stats());
    for b in blocks {
        assert!(read_in_parts(&store, "v/a", b, 7, None).is_empty());
    }
}

#[test]
fn a_run_skips_the_segments_that_hold_nothing_left_of_its_queue() {
    // Segment by segment (each holds 255 of these records): v/a, v/a, v/x alone, v/a and v/x with every
    // v/a message there acked, v/a, v/a. One run for v/a, read across the segment where it has no group and
    // the one where its group is all acked, in order and without an acked message coming back.
    const PER_SEGMENT: u64 = 255;
    let d = TempDir::new("idx-run-skips");
    let cfg = config(&d.0, 16 << 10, SyncPolicy::Never);
    let mut live = Vec::new();
    {
        let (store, _) = open(&cfg);
        for i in 0..6 * PER_SEGMENT + 1 {
            let (seg, n) = (i / PER_SEGMENT, i % PER_SEGMENT);
            let a = match seg {
                2 | 6 => false,
                3 => n % 2 == 0,
                _ => true,
            };
            if !a {
                store.publish("v/x", i, &payload(i, 40), noop()).unwrap();
                continue;
            }
            let loc = store.publish("v/a", i, &payload(i, 40), noop()).unwrap();
            if seg == 3 {
                store.ack("v/a", &[loc]);
            } else {
                live.push(i);
            }
        }
        store.sync_now().unwrap();
        store.index_now();
    }
    let (store, out) = recover_all(&cfg);
    let runs = runs_of(&out, "v/a");
    let messages: Vec<u64> = out
        .iter()
        .filter_map(|(q, r)| match r {
            Recovered::Message(m) if q == "v/a" => Some(m.msg_id),
            _ => None,
        })
        .collect();
    assert_eq!((runs.len(), messages.len()), (1, 0), "{runs:?}");
    let run = runs[0];
    assert_eq!(run.block.count as u64, PER_SEGMENT, "one block per segment");
    assert_eq!(run.block.until, run.block.segment + 5, "{run:?}");
    assert_eq!(run.messages as usize, live.len());
    let got = read_in_parts(&store, "v/a", run.block, 100, Some(run.messages));
    let ids: Vec<u64> = got.iter().map(|m| m.msg_id).chain(messages).collect();
    assert_eq!(ids, live);
    assert_eq!(run.weight, 40 * u64::from(run.messages));
}

#[test]
fn an_index_table_that_cannot_be_read_again_passes_over_its_segment_only() {
    let d = TempDir::new("idx-run-lost-table");
    let cfg = config(&d.0, 16 << 10, SyncPolicy::Never);
    fill(&cfg);
    let (store, out) = recover_all(&cfg);
    let run = runs_of(&out, "v/a")[0].block;
    let all = read_in_parts(&store, "v/a", run, 50, None);
    let segments: std::collections::BTreeSet<u32> =
        all.iter().map(|m| m.location.segment).collect();
    assert!(segments.len() > 6, "{segments:?}");
    // Long gone from the few tables kept: its table must be read again, and is not there.
    let lost = *segments.iter().nth(1).unwrap();
    fs::remove_file(d.0.join(format!("msg-{lost:010}.idx"))).unwrap();
    let want: Vec<RecoveredMessage> = all
        .iter()
        .filter(|m| m.location.segment != lost)
        .copied()
        .collect();
    assert_eq!(read_in_parts(&store, "v/a", run, 50, None), want);
}

#[test]
fn a_queue_deleted_while_recovery_runs_gets_no_run() {
    // Runs are handed out at the end of replay: one whose queue was deleted meanwhile (here by the sink,
    // as an x-expires timer might) goes with the queue.
    let d = TempDir::new("idx-run-dropped");
    let cfg = config(&d.0, 16 << 10, SyncPolicy::Never);
    {
        let (store, _) = open(&cfg);
        for i in 0..3000u64 {
            let q = if i % 2 == 0 { "v/a" } else { "v/b" };
            store.publish(q, i, &payload(i, 40), noop()).unwrap();
        }
        store.sync_now().unwrap();
    }
    {
        // Reopened, the last segment is sealed too and gets its index: nothing breaks the runs.
        let (store, _) = open(&cfg);
        store.index_now();
    }
    {
        let (store, pending) = MessageStore::open_recovering(cfg.clone()).unwrap();
        let s = store.clone();
        let (mut dropped, mut after, mut messages) = (false, Vec::new(), 0);
        store
            .recover(pending, &mut |_| true, &mut |q, r| {
                messages += usize::from(matches!(r, Recovered::Message(_)));
                // (Messages of the batch being handed out when it went may still follow.)
                if let (true, "v/b", Recovered::Block(b)) = (dropped, q, &r) {
                    after.push(*b);
                }
                if q == "v/a" && !dropped {
                    dropped = true;
                    s.drop_queue("v/b");
                }
            })
            .unwrap();
        assert!(dropped);
        assert_eq!(messages, 0, "every segment indexed: runs only");
        assert!(after.is_empty(), "{after:?}");
        assert_eq!(store.stats().live_messages, 1500);
        store.sync_now().unwrap();
    }
    let (_store, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/b"), Vec::<u64>::new());
    assert_eq!(ids(&rec, "v/a"), (0..3000).step_by(2).collect::<Vec<_>>());
}

#[test]
fn a_segment_removed_by_hand_still_takes_its_index_when_collected() {
    let d = TempDir::new("idx-by-hand");
    let cfg = config(&d.0, 16 << 10, SyncPolicy::Never);
    fill(&cfg);
    let (store, rec) = open(&cfg);
    let indexed = index_files(&d.0);
    assert!(indexed.len() > 5, "{indexed:?}");
    // Someone deletes the indexed segments behind the store's back; then everything is acked.
    for f in &indexed {
        let segment = f.replace(".idx", ".seg");
        fs::remove_file(d.0.join(segment)).unwrap();
    }
    for q in &rec {
        let locs: Vec<Location> = q.messages.iter().map(|m| m.location).collect();
        store.ack(&q.queue, &locs);
    }
    store.sync_now().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !index_files(&d.0).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // GC found each segment already gone and let its index go as it would have with the segment.
    assert!(index_files(&d.0).is_empty(), "{:?}", index_files(&d.0));
}
