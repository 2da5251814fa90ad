//! Model-based tests with restart steps, and a crash test that SIGKILLs a child process mid-stream.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::store::format::SegKind;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Model: per queue, live messages in publish order with (delivered, payload length).
type Model = BTreeMap<String, Vec<(u64, bool, usize)>>;

fn check(
    store: &MessageStore,
    rec: &[RecoveredQueue],
    model: &Model,
) -> HashMap<(String, u64), Location> {
    let mut locs = HashMap::new();
    let got: BTreeMap<String, Vec<(u64, bool)>> = rec
        .iter()
        .map(|q| {
            (
                q.queue.clone(),
                q.messages.iter().map(|m| (m.msg_id, m.delivered)).collect(),
            )
        })
        .collect();
    let want: BTreeMap<String, Vec<(u64, bool)>> = model
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(q, v)| (q.clone(), v.iter().map(|(id, d, _)| (*id, *d)).collect()))
        .collect();
    assert_eq!(got, want);
    for q in rec {
        let lens: HashMap<u64, usize> =
            model[&q.queue].iter().map(|(id, _, n)| (*id, *n)).collect();
        for m in &q.messages {
            let body = store.read(m.location).unwrap();
            assert_eq!(&body[..], &payload(m.msg_id, lens[&m.msg_id])[..]);
            locs.insert((q.queue.clone(), m.msg_id), m.location);
        }
    }
    locs
}

fn run_model(seed: u64, ops: usize, sync: SyncPolicy) {
    let d = TempDir::new("model");
    let cfg = config(&d.0, 4096, sync);
    let queues = ["v/a", "v/b", "v/c"];
    let mut rng = Rng(seed);
    let mut model: Model = queues.iter().map(|q| (q.to_string(), Vec::new())).collect();
    let mut next_id = 0u64;
    let confirms = Arc::new(AtomicU64::new(0));
    let mut publishes = 0u64;
    let (mut store, rec) = open(&cfg);
    let mut locs = check(&store, &rec, &model);
    let mut restarts = 0;
    for _ in 0..ops {
        let q = queues[rng.below(3) as usize];
        let live = &mut model.get_mut(q).unwrap();
        match rng.below(100) {
            0..=39 => {
                let n = match rng.below(20) {
                    0 => 5000, // larger than a segment: gets one of its own
                    1 => 0,
                    _ => rng.below(1500) as usize,
                };
                next_id += 1;
                let c = confirms.clone();
                let loc = store
                    .publish(
                        q,
                        next_id,
                        &payload(next_id, n),
                        Box::new(move |r| {
                            assert!(r.is_ok());
                            c.fetch_add(1, Ordering::SeqCst);
                        }),
                    )
                    .unwrap();
                publishes += 1;
                live.push((next_id, false, n));
                locs.insert((q.to_string(), next_id), loc);
            }
            40..=59 if !live.is_empty() => {
                let k = 1 + rng.below(3) as usize;
                let mut acked = Vec::new();
                for _ in 0..k.min(live.len()) {
                    // Mostly the oldest, sometimes a random one (out-of-order acks).
                    let i = if rng.below(3) == 0 {
                        rng.below(live.len() as u64) as usize
                    } else {
                        0
                    };
                    acked.push(live.remove(i).0);
                }
                let at: Vec<Location> =
                    acked.iter().map(|id| locs[&(q.to_string(), *id)]).collect();
                store.ack(q, &at);
            }
            60..=69 if !live.is_empty() => {
                let i = rng.below(live.len() as u64) as usize;
                live[i].1 = true;
                store.delivered(q, locs[&(q.to_string(), live[i].0)]);
            }
            70..=71 => {
                live.clear();
                store.drop_queue(q);
            }
            72..=74 => {
                // Half the restarts find the sealed segments indexed.
                if rng.below(2) == 0 {
                    store.index_now();
                }
                drop(store);
                restarts += 1;
                let (s, rec) = open(&cfg);
                store = s;
                locs = check(&store, &rec, &model);
            }
            75..=76 => store.sync_now().unwrap(),
            _ if !live.is_empty() => {
                let i = rng.below(live.len() as u64) as usize;
                let (id, _, n) = live[i];
                let body = store.read(locs[&(q.to_string(), id)]).unwrap();
                assert_eq!(&body[..], &payload(id, n)[..]);
            }
            _ => {}
        }
        assert_eq!(
            store.stats().live_messages,
            model.values().map(|v| v.len() as u64).sum::<u64>()
        );
    }
    assert!(restarts > 0);
    store.sync_now().unwrap();
    assert_eq!(confirms.load(Ordering::SeqCst), publishes);
    // Ack everything: the store shrinks back to (almost) nothing.
    for (q, live) in model.iter_mut() {
        let at: Vec<Location> = live
            .drain(..)
            .map(|(id, _, _)| locs[&(q.clone(), id)])
            .collect();
        store.ack(q, &at);
    }
    store.sync_now().unwrap();
    drop(store);
    let (store, rec) = open(&cfg);
    assert!(rec.is_empty());
    assert_eq!(store.stats().disk_bytes, 0, "{:?}", store.stats());
}

#[test]
fn model_with_restarts_never_policy() {
    for seed in [1, 2, 3] {
        run_model(seed, 3000, SyncPolicy::Never);
    }
}

#[test]
fn model_with_restarts_always_policy() {
    run_model(42, 800, SyncPolicy::Always);
}

const CRASH_DIR: &str = "WARREN_STORE_CRASH_DIR";
const CRASH_START: &str = "WARREN_STORE_CRASH_START";

/// Child side of `crash_kill_recovers_every_confirmed_message`; does nothing when run normally.
#[test]
#[ignore = "run by crash_kill_recovers_every_confirmed_message as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR) else {
        return;
    };
    let start: u64 = std::env::var(CRASH_START).unwrap().parse().unwrap();
    // Segments are indexed as soon as they are sealed, so that kills land in index writes too.
    let cfg = StoreConfig {
        index_after: Duration::ZERO,
        ..config(Path::new(&dir), 8192, SyncPolicy::Always)
    };
    let (store, _) = open(&cfg);
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    // End the harness's "test ... " line so that every line we print stands alone.
    let _ = writeln!(out.lock().unwrap());
    let inflight = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut i = start;
    let mut locs = HashMap::new();
    while t.elapsed() < Duration::from_secs(30) {
        while inflight.load(Ordering::SeqCst) > 200 {
            std::thread::yield_now();
        }
        let (out2, inflight2) = (out.clone(), inflight.clone());
        inflight.fetch_add(1, Ordering::SeqCst);
        let loc = store
            .publish(
                "v/crash",
                i,
                &payload(i, (i % 700) as usize),
                Box::new(move |r| {
                    if r.is_ok() {
                        let mut o = out2.lock().unwrap();
                        let _ = writeln!(o, "C {i}");
                        let _ = o.flush();
                    }
                    inflight2.fetch_sub(1, Ordering::SeqCst);
                }),
            )
            .unwrap();
        locs.insert(i, loc);
        if i.is_multiple_of(3) && i >= start + 10 {
            let mut o = out.lock().unwrap();
            let _ = writeln!(o, "A {}", i - 10);
            let _ = o.flush();
            drop(o);
            store.ack("v/crash", &[locs[&(i - 10)]]);
        }
        if i.is_multiple_of(5) && i > start {
            store.delivered("v/crash", locs[&(i - 1)]);
        }
        i += 1;
    }
}

#[test]
fn crash_kill_recovers_every_confirmed_message() {
    let d = TempDir::new("crash");
    let exe = std::env::current_exe().unwrap();
    let mut confirmed = BTreeSet::new();
    let mut acked = BTreeSet::new();
    let mut start = 0u64;
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "store::tests::model::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR, &d.0)
            .env(CRASH_START, start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut seen = 0;
        let want = 500 + round * 300;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("C ") {
                confirmed.insert(n.parse::<u64>().unwrap());
                seen += 1;
            } else if let Some(n) = line.strip_prefix("A ") {
                acked.insert(n.parse::<u64>().unwrap());
            }
            if seen >= want {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL, mid-stream
        child.wait().unwrap();
        assert!(seen >= want, "child confirmed only {seen}");

        let (store, rec) = open(&config(&d.0, 8192, SyncPolicy::Always));
        let got = ids(&rec, "v/crash");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "publish order");
        let got_set: BTreeSet<u64> = got.iter().copied().collect();
        for id in &confirmed {
            assert!(
                acked.contains(id) || got_set.contains(id),
                "round {round}: confirmed message {id} lost"
            );
        }
        for m in rec.iter().flat_map(|q| &q.messages) {
            let body = store.read(m.location).unwrap();
            assert_eq!(&body[..], &payload(m.msg_id, (m.msg_id % 700) as usize)[..]);
        }
        // Next round starts above everything seen, so ids stay unique.
        start = got
            .last()
            .copied()
            .unwrap_or(0)
            .max(confirmed.last().copied().unwrap_or(0))
            + 1_000;
        // Ack what this round recovered that the model already counts as acked.
        let stale: Vec<Location> = rec
            .iter()
            .flat_map(|q| &q.messages)
            .filter(|m| acked.contains(&m.msg_id))
            .map(|m| m.location)
            .collect();
        store.ack("v/crash", &stale);
    }
}

/// Copies a state a power cut could leave. Taken under the store lock, so nothing the state records moves
/// meanwhile; the sync thread writes and creates files without the lock, so bytes past `written` may be
/// changing as they are read (a torn write, which a power cut can leave as well). Per segment file:
/// - the synced bytes (`durable`) always survive, then nothing, a prefix of the written but unsynced bytes,
///   a torn fragment of garbage, or both;
/// - a segment with nothing synced yet (being created, perhaps without its header yet) may be there with any
///   prefix of what is on disk, or missing;
/// - a msg segment being deleted may still be there (its unlink is not durable before the directory sync
///   that comes before the state forgets it), or gone. Ack segments leave the state before their unlink.
fn power_cut_copy(store: &MessageStore, dst: &Path, rng: &mut Rng) {
    fs::create_dir_all(dst).unwrap();
    let st = store.shared().lock();
    for (kind, log) in [(SegKind::Msg, &st.msg), (SegKind::Ack, &st.ack)] {
        for (&id, seg) in &log.segs {
            let src = store.shared().path(kind, id);
            let on_disk = match fs::read(&src) {
                Ok(b) => b,
                // Not created yet, or already unlinked by GC.
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && (seg.durable == 0 || seg.deleting) =>
                {
                    continue
                }
                Err(e) => panic!("read {}: {e}", src.display()),
            };
            let durable = seg.durable as usize;
            assert!(
                on_disk.len() >= durable,
                "{} shorter than its synced length",
                src.display()
            );
            let data = if durable == 0 {
                if rng.below(2) == 0 {
                    continue;
                }
                on_disk[..rng.below(on_disk.len() as u64 + 1) as usize].to_vec()
            } else if seg.deleting && rng.below(2) == 0 {
                continue;
            } else {
                let mut data = on_disk[..durable].to_vec();
                let tail = rng.below(4);
                if tail & 1 == 1 {
                    let unsynced = (on_disk.len() - durable) as u64;
                    let n = rng.below(unsynced + 1) as usize;
                    data.extend_from_slice(&on_disk[durable..durable + n]);
                }
                if tail & 2 == 2 {
                    let n = 1 + rng.below(64);
                    data.extend((0..n).map(|_| rng.next() as u8));
                }
                data
            };
            fs::write(dst.join(src.file_name().unwrap()), data).unwrap();
        }
    }
    // Index files: one is synced before it is renamed into place, but the rename is not durable until
    // something syncs the directory, so a power cut leaves it whole or absent; one being written (.tmp) may
    // be left with any prefix of its bytes. Recovery must use what checks and scan the rest.
    let entries = fs::read_dir(&store.shared().cfg.dir).unwrap();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let whole = name.ends_with(".idx");
        if !(whole || name.ends_with(".idx.tmp")) || rng.below(3) == 0 {
            continue;
        }
        // The indexer writes, renames and GC deletes without the store lock: it may be gone already.
        let Ok(bytes) = fs::read(e.path()) else {
            continue;
        };
        let n = if whole {
            bytes.len()
        } else {
            rng.below(bytes.len() as u64 + 1) as usize
        };
        fs::write(dst.join(&name), &bytes[..n]).unwrap();
    }
}

/// Ids below this that are multiples of 3 are never acked: they pin the oldest segments for the whole test
/// while the segments around and after them are collected.
const POWER_CUT_PINNED_BELOW: u64 = 300;
/// Other multiples of 3 are acked once this many of them are live, down to half of it, so that recovery
/// meets messages a long way behind the head without the store growing without bound.
const POWER_CUT_OLD_LIVE: usize = 1500;
/// Publishers wait while the live store has this many msg segments (each is an open file, in the live
/// store and again in the copy being recovered) or this many publishes in flight.
const POWER_CUT_MAX_SEGMENTS: usize = 400;
const POWER_CUT_MAX_INFLIGHT: u64 = 256;

/// The publisher and acker threads of `power_cut_keeps_every_confirmed_message`. Dropping it (also when
/// the test fails) stops and joins them, before the store directory is removed under them.
struct Workers {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in std::mem::take(&mut self.threads) {
            t.join().unwrap();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn power_cut_keeps_every_confirmed_message() {
    let d = TempDir::new("powercut");
    // Pinned segments are indexed as soon as they are sealed, so that cuts land in index writes too.
    let cfg = StoreConfig {
        index_after: Duration::ZERO,
        ..config(&d.0, 16 << 10, SyncPolicy::Always)
    };
    let (store, _) = open(&cfg);
    let confirmed = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let acked = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let (fresh_tx, fresh_rx) = std::sync::mpsc::channel::<u64>();
    // Where each publish went, for the acker (a confirm can arrive before `publish` returns).
    let placed: Arc<std::sync::Mutex<HashMap<u64, Location>>> = Arc::default();
    let mut workers = Workers {
        stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        threads: Vec::new(),
    };
    for t in 0..2u64 {
        let (store, confirmed, stop) = (store.clone(), confirmed.clone(), workers.stop.clone());
        let (fresh, placed) = (fresh_tx.clone(), placed.clone());
        let inflight = Arc::new(AtomicU64::new(0));
        workers.threads.push(std::thread::spawn(move || {
            let mut i = t;
            while !stop.load(Ordering::SeqCst) {
                // Back-pressure, so that the store's size does not depend on how the threads are scheduled.
                if inflight.load(Ordering::SeqCst) >= POWER_CUT_MAX_INFLIGHT
                    || (i % 32 < 2 && store.stats().msg_segments >= POWER_CUT_MAX_SEGMENTS)
                {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                let (c, fresh, inflight2) = (confirmed.clone(), fresh.clone(), inflight.clone());
                inflight.fetch_add(1, Ordering::SeqCst);
                let loc = store
                    .publish(
                        "v/p",
                        i,
                        &payload(i, (i % 900) as usize),
                        Box::new(move |r| {
                            if r.is_ok() {
                                c.lock().unwrap().insert(i);
                                let _ = fresh.send(i);
                            }
                            inflight2.fetch_sub(1, Ordering::SeqCst);
                        }),
                    )
                    .unwrap();
                placed.lock().unwrap().insert(i, loc);
                i += 2;
                if i % 64 < 2 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }));
    }
    drop(fresh_tx);
    {
        let (store, acked, stop) = (store.clone(), acked.clone(), workers.stop.clone());
        workers.threads.push(std::thread::spawn(move || {
            // Multiples of 3 (above the pinned ones) waiting to be acked, oldest first.
            let mut old: BTreeSet<u64> = BTreeSet::new();
            // Confirmed before their publisher noted where they went: tried again next round.
            let mut unplaced: Vec<u64> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let mut batch: Vec<u64> = Vec::new();
                let fresh: Vec<u64> = unplaced.drain(..).chain(fresh_rx.try_iter()).collect();
                let fresh: Vec<u64> = {
                    let p = placed.lock().unwrap();
                    let (known, unknown) = fresh.into_iter().partition(|id| p.contains_key(id));
                    unplaced = unknown;
                    known
                };
                for id in fresh {
                    if id % 3 != 0 {
                        batch.push(id);
                    } else if id >= POWER_CUT_PINNED_BELOW {
                        old.insert(id);
                    }
                }
                if old.len() > POWER_CUT_OLD_LIVE {
                    while old.len() > POWER_CUT_OLD_LIVE / 2 {
                        batch.extend(old.pop_first());
                    }
                }
                // Recorded as acked before the ack is issued: a copy may hold the ack from then on.
                acked.lock().unwrap().extend(batch.iter().copied());
                for ids in batch.chunks(50) {
                    let at: Vec<Location> = {
                        let mut p = placed.lock().unwrap();
                        ids.iter().filter_map(|id| p.remove(id)).collect()
                    };
                    store.ack("v/p", &at);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }));
    }
    let mut rng = Rng(7);
    eventually("first confirms", || !confirmed.lock().unwrap().is_empty());
    let mut max_segments = 0;
    for cut in 0..10 {
        std::thread::sleep(Duration::from_millis(40 + rng.below(60)));
        // Confirmed before the cut: read first, so each of these was durable before the snapshot.
        let before: BTreeSet<u64> = confirmed.lock().unwrap().clone();
        let copy = TempDir::new("powercut-copy");
        power_cut_copy(&store, &copy.0, &mut rng);
        let (copy_store, rec) = open(&config(&copy.0, 16 << 10, SyncPolicy::Always));
        max_segments = max_segments.max(copy_store.stats().msg_segments);
        let got: BTreeSet<u64> = ids(&rec, "v/p").into_iter().collect();
        let acked_now = acked.lock().unwrap().clone();
        for id in &before {
            assert!(
                got.contains(id) || acked_now.contains(id),
                "cut {cut}: confirmed message {id} lost"
            );
        }
        for m in rec.iter().flat_map(|q| &q.messages) {
            let body = copy_store.read(m.location).unwrap();
            assert_eq!(&body[..], &payload(m.msg_id, (m.msg_id % 900) as usize)[..]);
        }
    }
    workers.finish();
    assert!(!confirmed.lock().unwrap().is_empty());
    // The workload stayed bounded (it once grew to thousands of segments and ran out of file descriptors).
    assert!(
        max_segments < 2 * POWER_CUT_MAX_SEGMENTS,
        "{max_segments} msg segments"
    );
}
