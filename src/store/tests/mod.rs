//! Unit tests of the message store: round trips, recovery, torn tails, GC, group commit, sync policies and
//! I/O errors. `model.rs` holds the model-based and crash tests, `bench.rs` the throughput measurements
//! (ignored unless asked for).

mod bench;
mod index;
mod model;
mod slots;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        // Show the store's log lines in a failing test's output (and with --nocapture).
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_max_level(tracing::Level::DEBUG)
            .try_init();
        let p = std::env::temp_dir().join(format!(
            "warren-store-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(super) fn config(dir: &Path, segment_size: u64, sync: SyncPolicy) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        segment_size,
        sync,
        weigh: None,
        index_after: super::index::SEALED_FOR,
    }
}

pub(super) fn open(cfg: &StoreConfig) -> (Arc<MessageStore>, Vec<RecoveredQueue>) {
    match MessageStore::open(cfg.clone()) {
        Ok(r) => r,
        Err(e) => panic!("open failed: {e}"),
    }
}

/// Deterministic payload bytes for a message id.
pub(super) fn payload(id: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (id as usize).wrapping_mul(31).wrapping_add(i * 7) as u8)
        .collect()
}

pub(super) fn noop() -> Done {
    Box::new(|_| {})
}

/// Publishes and waits for the confirm.
pub(super) fn publish_wait(store: &MessageStore, q: &str, id: u64, body: &[u8]) -> Location {
    let (tx, rx) = mpsc::channel();
    let loc = store
        .publish(
            q,
            id,
            body,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        )
        .unwrap();
    rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    loc
}

/// Publishes and returns a receiver for the confirm.
fn publish_rx(
    store: &MessageStore,
    q: &str,
    id: u64,
    body: &[u8],
) -> (
    Result<Location, StoreError>,
    mpsc::Receiver<Result<(), StoreError>>,
) {
    let (tx, rx) = mpsc::channel();
    let r = store.publish(
        q,
        id,
        body,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    (r, rx)
}

/// Where each (queue, id) a test published is, for acks by location.
#[derive(Default)]
pub(super) struct Book(std::collections::HashMap<(String, u64), Location>);

impl Book {
    pub(super) fn put(&mut self, q: &str, id: u64, loc: Location) -> Location {
        self.0.insert((q.to_string(), id), loc);
        loc
    }

    /// Publishes and records where.
    pub(super) fn publish(&mut self, store: &MessageStore, q: &str, id: u64, body: &[u8]) {
        let loc = store.publish(q, id, body, noop()).unwrap();
        self.put(q, id, loc);
    }

    /// Records what recovery found.
    pub(super) fn recovered(&mut self, rec: &[RecoveredQueue]) {
        for q in rec {
            for m in &q.messages {
                self.put(&q.queue, m.msg_id, m.location);
            }
        }
    }

    /// The locations of these ids (a bogus one for an id never published).
    pub(super) fn locs(&self, q: &str, ids: &[u64]) -> Vec<Location> {
        ids.iter()
            .map(|id| {
                self.0
                    .get(&(q.to_string(), *id))
                    .copied()
                    .unwrap_or(Location {
                        segment: u32::MAX,
                        offset: 16,
                        len: 20,
                        slot: 0,
                    })
            })
            .collect()
    }

    pub(super) fn ack(&self, store: &MessageStore, q: &str, ids: &[u64]) {
        store.ack(q, &self.locs(q, ids));
    }

    pub(super) fn delivered(&self, store: &MessageStore, q: &str, id: u64) {
        store.delivered(q, self.locs(q, &[id])[0]);
    }
}

pub(super) fn ids(rec: &[RecoveredQueue], q: &str) -> Vec<u64> {
    rec.iter()
        .find(|r| r.queue == q)
        .map(|r| r.messages.iter().map(|m| m.msg_id).collect())
        .unwrap_or_default()
}

fn segment_files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".seg"))
        })
        .collect();
    v.sort();
    v
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Polls until `f` holds (GC runs on the sync thread).
pub(super) fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A publisher's view of the store's outcomes: what it was told, and whether each was flushed.
#[derive(Default)]
struct Sink {
    log: std::sync::Mutex<SinkLog>,
}

/// Outcomes told, flushes, how many outcomes the last flush covered, and calls of `written`.
type SinkLog = (Vec<(u64, bool)>, usize, usize, usize);

impl WriteSink for Sink {
    fn written(&self, first: u64, last: u64, ok: bool) {
        let mut l = self.log.lock().unwrap();
        l.0.extend((first..=last).map(|seq| (seq, ok)));
        l.3 += 1;
    }

    fn flush_written(&self) {
        let mut l = self.log.lock().unwrap();
        l.1 += 1;
        l.2 = l.0.len();
    }
}

#[test]
fn a_sink_hears_every_outcome_and_is_flushed_once_per_group_commit() {
    let dir = TempDir::new("sink");
    let cfg = config(&dir.0, 1 << 20, SyncPolicy::Always);
    let (store, _) = open(&cfg);
    let sink = Arc::new(Sink::default());
    let s: Arc<dyn WriteSink> = sink.clone();
    // Publish 500 goes without a waiter: the runs on either side of it stay apart.
    for i in 0..1000 {
        let w = if i == 500 {
            Waiter::Nobody
        } else {
            Waiter::sink(&s, i)
        };
        store
            .publish_waiting(&[("v/q", i)], &payload(i, 16), w)
            .unwrap();
    }
    store.sync_now().unwrap();
    let (told, flushes, flushed, calls) = {
        let l = sink.log.lock().unwrap();
        (l.0.clone(), l.1, l.2, l.3)
    };
    let want: Vec<_> = (0..1000).filter(|&i| i != 500).map(|i| (i, true)).collect();
    assert_eq!(told, want);
    // Consecutive publishes of one sink are told as runs: at most a run per pass on each side of the gap.
    assert!(
        calls as u64 <= store.stats().syncs + 1,
        "{calls} calls of written"
    );
    assert_eq!(flushed, 999, "outcomes told but never flushed");
    // One flush per pass that had outcomes, never one per publish.
    assert!(
        flushes >= 1 && flushes as u64 <= store.stats().syncs,
        "{flushes} flushes"
    );
}

#[test]
fn publishes_under_defer_wakes_reach_the_sync_thread_together() {
    let dir = TempDir::new("defer");
    let cfg = config(&dir.0, 1 << 20, SyncPolicy::Always);
    let (store, _) = open(&cfg);
    let sink = Arc::new(Sink::default());
    let s: Arc<dyn WriteSink> = sink.clone();
    // A condvar may wake spuriously (and a loaded machine shows it): most rounds, not all, must be one run.
    let mut single = 0;
    for round in 0..10u64 {
        eventually("sync thread asleep", || store.shared.lock().sync_idle);
        let calls_before = sink.log.lock().unwrap().3;
        let defer = store.defer_wakes();
        for i in 0..100 {
            let seq = round * 100 + i;
            store
                .publish_waiting(&[("v/q", seq)], &payload(seq, 16), Waiter::sink(&s, seq))
                .unwrap();
        }
        drop(defer);
        // The guard's wake-up alone brings the sync thread: every outcome arrives, as one run.
        eventually("outcomes told", || {
            sink.log.lock().unwrap().0.len() as u64 == (round + 1) * 100
        });
        let calls = sink.log.lock().unwrap().3 - calls_before;
        assert!(calls >= 1);
        single += usize::from(calls == 1);
    }
    assert!(single >= 8, "{single} of 10 rounds were one run");
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<MessageStore>();
    check::<Arc<MessageStore>>();
    check::<StoreError>();
}

#[test]
fn last_handle_dropped_inside_a_callback() {
    let d = TempDir::new("selfdrop");
    let (store, _) = open(&config(&d.0, 4096, SyncPolicy::Always));
    let (tx, rx) = mpsc::channel();
    let held = store.clone();
    store
        .publish(
            "v/q",
            1,
            b"x",
            Box::new(move |r| {
                let _ = tx.send(r.is_ok());
                std::thread::sleep(Duration::from_millis(50));
                drop(held); // by now the test has dropped its handle: this is the last one
            }),
        )
        .unwrap();
    drop(store);
    assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap());
    std::thread::sleep(Duration::from_millis(200));
    let (_store, rec) = open(&config(&d.0, 4096, SyncPolicy::Always));
    assert_eq!(ids(&rec, "v/q"), vec![1]);
}

#[test]
fn round_trip_publish_read() {
    let d = TempDir::new("roundtrip");
    let (store, rec) = open(&config(&d.0, 1 << 20, SyncPolicy::Always));
    assert!(rec.is_empty());
    let sizes = [0usize, 1, 100, 1024, 100_000];
    let mut locs = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let body = payload(i as u64, n);
        let (loc, rx) = publish_rx(&store, "v/q", i as u64, &body);
        let loc = loc.unwrap();
        // Readable at once, whether still buffered or already written.
        assert_eq!(&store.read(loc).unwrap()[..], &body[..]);
        rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        locs.push((loc, body));
    }
    for (loc, body) in &locs {
        assert_eq!(&store.read(*loc).unwrap()[..], &body[..]);
    }
    let s = store.stats();
    assert_eq!(s.live_messages, sizes.len() as u64);
    assert_eq!(s.publishes, sizes.len() as u64);
    assert!(s.syncs >= 1 && s.syncs <= sizes.len() as u64);
    assert!(!s.failed);
    // Reads stay correct while another thread keeps appending.
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 100..400u64 {
                store.publish("v/w", i, &payload(i, 700), noop()).unwrap();
            }
        })
    };
    for _ in 0..50 {
        for (loc, body) in &locs {
            assert_eq!(&store.read(*loc).unwrap()[..], &body[..]);
        }
    }
    writer.join().unwrap();
    drop(store);
    let (store, rec) = open(&config(&d.0, 1 << 20, SyncPolicy::Always));
    assert_eq!(ids(&rec, "v/q"), vec![0, 1, 2, 3, 4]);
    assert_eq!(ids(&rec, "v/w"), (100..400).collect::<Vec<_>>());
    for (loc, body) in &locs {
        assert_eq!(&store.read(*loc).unwrap()[..], &body[..]);
    }
}

#[test]
fn recovery_returns_live_messages_in_order_with_delivered_flags() {
    let d = TempDir::new("recovery");
    let cfg = config(&d.0, 8192, SyncPolicy::Always);
    {
        let (store, _) = open(&cfg);
        let mut book = Book::default();
        for i in 0..60u64 {
            let q = if i % 3 == 0 { "v/a" } else { "v/b" };
            book.publish(&store, q, i, &payload(i, 300));
        }
        book.delivered(&store, "v/a", 3);
        book.delivered(&store, "v/b", 4);
        book.delivered(&store, "v/b", 5);
        book.delivered(&store, "v/b", 999); // unknown: ignored
        book.ack(&store, "v/b", &[4, 7, 8]);
        store.sync_now().unwrap();
    }
    let (store, rec) = open(&cfg);
    let a: Vec<u64> = (0..60).filter(|i| i % 3 == 0).collect();
    let b: Vec<u64> = (0..60)
        .filter(|i| i % 3 != 0 && ![4, 7, 8].contains(i))
        .collect();
    assert_eq!(ids(&rec, "v/a"), a);
    assert_eq!(ids(&rec, "v/b"), b);
    for q in &rec {
        for m in &q.messages {
            let want = (q.queue == "v/a" && m.msg_id == 3) || (q.queue == "v/b" && m.msg_id == 5);
            assert_eq!(m.delivered, want, "{} {}", q.queue, m.msg_id);
            assert_eq!(
                &store.read(m.location).unwrap()[..],
                &payload(m.msg_id, 300)[..]
            );
        }
    }
    assert_eq!(store.stats().live_messages, (a.len() + b.len()) as u64);
}

#[test]
fn drop_queue_forgets_messages_and_a_redeclared_queue_keeps_new_ones() {
    let d = TempDir::new("dropq");
    let cfg = config(&d.0, 4096, SyncPolicy::Always);
    {
        let (store, _) = open(&cfg);
        for i in 0..50u64 {
            store
                .publish("v/gone", i, &payload(i, 200), noop())
                .unwrap();
            store
                .publish("v/kept", i, &payload(i, 200), noop())
                .unwrap();
        }
        store.drop_queue("v/gone");
        // Same name, same ids, after the drop: these survive.
        store.publish("v/gone", 1, b"again-1", noop()).unwrap();
        store.publish("v/gone", 2, b"again-2", noop()).unwrap();
        assert_eq!(store.stats().live_messages, 52);
    }
    let (store, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/gone"), vec![1, 2]);
    assert_eq!(ids(&rec, "v/kept"), (0..50).collect::<Vec<_>>());
    let m = &rec.iter().find(|r| r.queue == "v/gone").unwrap().messages[0];
    assert_eq!(&store.read(m.location).unwrap()[..], b"again-1");
}

#[test]
fn invalid_arguments_are_errors() {
    let d = TempDir::new("invalid");
    let (store, _) = open(&config(&d.0, 4096, SyncPolicy::Never));
    assert!(matches!(
        store.publish_many(&[], b"x", noop()),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.publish_many(&[("q", 1), ("q", 2)], b"x", noop()),
        Err(StoreError::Invalid(_))
    ));
    let long = "x".repeat(70_000);
    assert!(matches!(
        store.publish(&long, 1, b"x", noop()),
        Err(StoreError::Invalid(_))
    ));
    let loc = store.publish("q", 1, b"x", noop()).unwrap();
    // Acking unknown queues and locations is harmless.
    let bogus = |segment, offset, len, slot| Location {
        segment,
        offset,
        len,
        slot,
    };
    store.ack("nope", &[loc]);
    store.ack("q", &[bogus(999, 16, 20, 0), bogus(loc.segment, 16, 20, 7)]);
    assert_eq!(store.stats().live_messages, 1);
    store.ack("q", &[loc]);
    assert_eq!(store.stats().live_messages, 0);
    store.publish("q", 1, b"z", noop()).unwrap();
    // Bogus locations are errors, not panics.
    for loc in [
        bogus(999, 16, 20, 0),
        bogus(1, 0, 20, 0),
        bogus(1, 16, 3, 0),
        bogus(1, 16, 1 << 30, 0),
    ] {
        assert!(store.read(loc).is_err(), "{loc:?}");
    }
}

/// The last msg segment file and its records' offsets, found by scanning.
fn last_msg_segment(dir: &Path) -> PathBuf {
    segment_files(dir, "msg-").pop().unwrap()
}

fn publish_ten(cfg: &StoreConfig) -> Vec<Location> {
    let (store, _) = open(cfg);
    (0..10u64)
        .map(|i| publish_wait(&store, "v/q", i, &payload(i, 500)))
        .collect()
}

#[test]
fn torn_tail_mid_record_is_truncated_to_last_good_record() {
    let d = TempDir::new("torn");
    let cfg = config(&d.0, 1 << 20, SyncPolicy::Always);
    let locs = publish_ten(&cfg);
    let path = last_msg_segment(&d.0);
    let last = locs[9];
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(u64::from(last.offset) + 100).unwrap(); // mid-record
    drop(f);
    {
        let (store, rec) = open(&cfg);
        assert_eq!(ids(&rec, "v/q"), (0..9).collect::<Vec<_>>());
        assert_eq!(fs::metadata(&path).unwrap().len(), u64::from(last.offset));
        for (i, loc) in locs[..9].iter().enumerate() {
            assert_eq!(&store.read(*loc).unwrap()[..], &payload(i as u64, 500)[..]);
        }
        // The store keeps working: new publishes go to a new segment.
        publish_wait(&store, "v/q", 9, b"redo");
    }
    let (_store, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/q"), (0..10).collect::<Vec<_>>());

    // A tail shorter than a record header.
    let path = last_msg_segment(&d.0);
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all_at(&[1, 2, 3], len)
        .unwrap();
    let (_store, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/q"), (0..10).collect::<Vec<_>>());
}

#[test]
fn flipped_byte_in_last_record_is_truncated() {
    let d = TempDir::new("flip");
    let cfg = config(&d.0, 1 << 20, SyncPolicy::Always);
    let locs = publish_ten(&cfg);
    let path = last_msg_segment(&d.0);
    let last = locs[9];
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let at = u64::from(last.offset) + u64::from(last.len) - 10;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
    drop(f);
    let (store, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/q"), (0..9).collect::<Vec<_>>());
    assert_eq!(fs::metadata(&path).unwrap().len(), u64::from(last.offset));
    assert!(store.read(last).is_err());
}

#[test]
fn zeroed_tail_and_damaged_headers_do_not_stop_recovery() {
    let d = TempDir::new("zeros");
    let cfg = config(&d.0, 1 << 20, SyncPolicy::Always);
    publish_ten(&cfg);
    let path = last_msg_segment(&d.0);
    let len = fs::metadata(&path).unwrap().len();
    // A filesystem may leave zeros after a crash.
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len + 4096)
        .unwrap();
    // A segment created just before a crash: no header yet, and one with garbage.
    fs::write(d.0.join("msg-0000000050.seg"), b"").unwrap();
    fs::write(d.0.join("msg-0000000051.seg"), [0xAAu8; 100]).unwrap();
    fs::write(d.0.join("ack-0000000050.seg"), b"WRNSTO").unwrap();
    fs::write(d.0.join("unrelated.txt"), b"left alone").unwrap();
    {
        let (store, rec) = open(&cfg);
        assert_eq!(ids(&rec, "v/q"), (0..10).collect::<Vec<_>>());
        assert_eq!(fs::metadata(&path).unwrap().len(), len);
        // Ids are never reused: the next segment is above the damaged ones.
        let loc = publish_wait(&store, "v/q", 10, b"after");
        assert_eq!(loc.segment, 52);
    }
    let (_store, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/q"), (0..11).collect::<Vec<_>>());
    assert!(d.0.join("unrelated.txt").exists());
    assert!(!d.0.join("msg-0000000050.seg").exists());
}

#[test]
fn segments_roll_over_and_fully_acked_ones_are_deleted() {
    let d = TempDir::new("gc");
    let cfg = config(&d.0, 4096, SyncPolicy::Always);
    let (store, _) = open(&cfg);
    let mut locs = Vec::new();
    for i in 0..200u64 {
        locs.push(store.publish("v/q", i, &payload(i, 1000), noop()).unwrap());
    }
    store.sync_now().unwrap();
    let s = store.stats();
    assert!(s.msg_segments >= 50, "{s:?}");
    let full = dir_bytes(&d.0);
    assert!(full > 200 * 1000);
    // Every location is readable across segments.
    for (i, loc) in locs.iter().enumerate() {
        assert_eq!(&store.read(*loc).unwrap()[..], &payload(i as u64, 1000)[..]);
    }
    store.ack("v/q", &locs);
    eventually("msg segments deleted", || store.stats().msg_segments <= 1);
    store.sync_now().unwrap();
    // Ack segments follow once the msg segments they refer to are gone (they roll less often).
    let last = store.publish("v/q", 1000, &[0u8; 3000], noop()).unwrap();
    store.ack("v/q", &[last]);
    store.sync_now().unwrap();
    eventually("space reclaimed", || dir_bytes(&d.0) < full / 4);
    assert!(matches!(store.read(locs[0]), Err(StoreError::NotFound(_))));
    assert_eq!(store.stats().live_messages, 0);
    drop(store);
    let (store, rec) = open(&cfg);
    assert!(rec.is_empty());
    assert!(segment_files(&d.0, "msg-").is_empty());
    assert!(segment_files(&d.0, "ack-").is_empty());
    assert_eq!(store.stats().disk_bytes, 0);
}

#[test]
fn an_old_unacked_message_pins_only_its_own_segment() {
    let d = TempDir::new("pin");
    let cfg = config(&d.0, 4096, SyncPolicy::Always);
    let (store, _) = open(&cfg);
    let mut book = Book::default();
    book.publish(&store, "v/slow", 0, &payload(0, 1000));
    // A steady stream published and consumed after it: each segment's acks land in later segments.
    for i in 1..400u64 {
        book.publish(&store, "v/fast", i, &payload(i, 1000));
        if i > 5 {
            book.ack(&store, "v/fast", &[i - 5]);
        }
    }
    book.ack(&store, "v/fast", &(395..400).collect::<Vec<_>>());
    store.sync_now().unwrap();
    book.publish(&store, "v/fast", 1000, b"roll");
    book.ack(&store, "v/fast", &[1000]);
    store.sync_now().unwrap();
    eventually("later segments deleted", || store.stats().msg_segments <= 2);
    drop(store);
    let (store, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/slow"), vec![0]);
    assert_eq!(ids(&rec, "v/fast"), Vec::<u64>::new());
    assert_eq!(segment_files(&d.0, "msg-").len(), 1);
    assert!(dir_bytes(&d.0) < 64 * 1024, "{}", dir_bytes(&d.0));
    assert_eq!(
        &store.read(rec[0].messages[0].location).unwrap()[..],
        &payload(0, 1000)[..]
    );
}

#[test]
fn group_commit_syncs_fewer_times_than_publishes() {
    let d = TempDir::new("group");
    let (store, _) = open(&config(&d.0, 1 << 20, SyncPolicy::Always));
    let confirmed = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let store = store.clone();
            let confirmed = confirmed.clone();
            std::thread::spawn(move || {
                for i in 0..500u64 {
                    let c = confirmed.clone();
                    store
                        .publish(
                            &format!("v/q{t}"),
                            i,
                            &payload(i, 256),
                            Box::new(move |r| {
                                assert!(r.is_ok());
                                c.fetch_add(1, Ordering::SeqCst);
                            }),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    eventually("all confirmed", || confirmed.load(Ordering::SeqCst) == 2000);
    let s = store.stats();
    assert_eq!(s.publishes, 2000);
    assert!(s.syncs < s.publishes, "{s:?}");
    println!("group commit: {} publishes, {} syncs", s.publishes, s.syncs);
}

#[test]
fn interval_policy_confirms_after_a_periodic_sync() {
    let d = TempDir::new("interval");
    let cfg = config(
        &d.0,
        1 << 20,
        SyncPolicy::Interval(Duration::from_millis(100)),
    );
    let (store, _) = open(&cfg);
    let mut rxs = Vec::new();
    let t = Instant::now();
    for i in 0..40u64 {
        let (r, rx) = publish_rx(&store, "v/q", i, &payload(i, 100));
        r.unwrap();
        rxs.push(rx);
        std::thread::sleep(Duration::from_millis(5));
    }
    for rx in rxs {
        rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    }
    let elapsed = t.elapsed();
    let s = store.stats();
    // At most one sync per 100 ms (plus the first, which may come at once).
    let bound = elapsed.as_millis() as u64 / 100 + 2;
    assert!(s.syncs <= bound, "{s:?} in {elapsed:?}");
    assert!(s.syncs >= 1);
    drop(store);
    let (_s, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/q"), (0..40).collect::<Vec<_>>());
}

#[test]
fn never_policy_confirms_without_syncing() {
    let d = TempDir::new("never");
    let cfg = config(&d.0, 1 << 20, SyncPolicy::Never);
    let (store, _) = open(&cfg);
    let locs: Vec<Location> = (0..100u64)
        .map(|i| publish_wait(&store, "v/q", i, &payload(i, 100)))
        .collect();
    assert_eq!(store.stats().syncs, 0);
    for (i, loc) in locs.iter().enumerate() {
        assert_eq!(&store.read(*loc).unwrap()[..], &payload(i as u64, 100)[..]);
    }
    store.sync_now().unwrap();
    assert_eq!(store.stats().syncs, 1);
    drop(store);
    let (_s, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/q"), (0..100).collect::<Vec<_>>());
}

#[test]
fn open_fails_cleanly_when_the_directory_is_unusable() {
    let d = TempDir::new("notadir");
    fs::create_dir_all(&d.0).unwrap();
    let file = d.0.join("a-file");
    fs::write(&file, b"x").unwrap();
    for dir in [file.clone(), file.join("sub")] {
        let Err(err) = MessageStore::open(config(&dir, 4096, SyncPolicy::Always)) else {
            panic!("open must fail for {}", dir.display());
        };
        assert!(matches!(err, StoreError::Io { .. }), "{err}");
        assert!(err.io_kind().is_some());
    }
    // A segment name that is a directory: an error, not a panic.
    let dir = d.0.join("store");
    fs::create_dir_all(dir.join("msg-0000000001.seg")).unwrap();
    assert!(MessageStore::open(config(&dir, 4096, SyncPolicy::Always)).is_err());
}

#[test]
fn disk_full_fails_the_batch_then_the_store_recovers() {
    let d = TempDir::new("enospc");
    let cfg = config(&d.0, 4096, SyncPolicy::Always);
    {
        let (store, _) = open(&cfg);
        let first = publish_wait(&store, "v/q", 1, b"before");
        store.shared().faults.fail_writes.store(3, Ordering::SeqCst);
        let (r, rx) = publish_rx(&store, "v/q", 2, b"lost");
        r.unwrap();
        let err = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::StorageFull),
            "{err}"
        );
        assert!(store.stats().failed);
        // While failing, publishes are refused at once (the broker nacks or blocks the publisher).
        let refused = store.publish("v/q", 3, b"refused", noop());
        assert!(matches!(refused, Err(StoreError::Io { .. })));
        // Acks keep being accepted.
        store.ack("v/q", &[first]);
        // Space comes back: after the backoff, publishes work again.
        eventually("store accepts publishes again", || {
            let (r, rx) = publish_rx(&store, "v/q", 4, b"after");
            r.is_ok() && rx.recv_timeout(Duration::from_secs(5)).unwrap().is_ok()
        });
        eventually("failure cleared", || !store.stats().failed);
        publish_wait(&store, "v/q", 5, b"after-2");
        assert_eq!(store.stats().live_messages, 2);
    }
    let (store, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/q"), vec![4, 5]);
    for m in &rec[0].messages {
        assert!(store.read(m.location).is_ok());
    }
}

#[test]
fn sync_failure_fails_the_batch_and_rewrites_it() {
    let d = TempDir::new("eio");
    let cfg = config(&d.0, 4096, SyncPolicy::Always);
    {
        let (store, _) = open(&cfg);
        publish_wait(&store, "v/q", 1, b"before");
        store.shared().faults.fail_syncs.store(1, Ordering::SeqCst);
        let (r, rx) = publish_rx(&store, "v/q", 2, b"unsure");
        let loc = r.unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap().is_err());
        // Nothing already synced is lost, and the failed record is still readable (it is rewritten).
        assert!(store.read(loc).is_ok());
        eventually("store accepts publishes again", || {
            let (r, rx) = publish_rx(&store, "v/q", 3, b"after");
            r.is_ok() && rx.recv_timeout(Duration::from_secs(5)).unwrap().is_ok()
        });
        let s = store.sync_now();
        assert!(s.is_ok(), "{s:?}");
    }
    let (_store, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/q"), vec![1, 3]);
}

#[test]
fn sync_now_reports_errors() {
    let d = TempDir::new("syncnow");
    let (store, _) = open(&config(&d.0, 4096, SyncPolicy::Never));
    store.publish("v/q", 1, b"x", noop()).unwrap();
    store.shared().faults.fail_syncs.store(1, Ordering::SeqCst);
    assert!(store.sync_now().is_err());
    assert!(store.sync_now().is_ok());
}

#[test]
fn read_detects_corruption_on_disk() {
    let d = TempDir::new("rot");
    let cfg = config(&d.0, 1 << 20, SyncPolicy::Always);
    let (store, _) = open(&cfg);
    let loc = publish_wait(&store, "v/q", 1, &payload(1, 1000));
    let path = last_msg_segment(&d.0);
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(b"rot", u64::from(loc.offset) + 500).unwrap();
    assert!(matches!(store.read(loc), Err(StoreError::Corrupt { .. })));
}
