//! Acks by location: slots settle once, stale acks of a dropped queue are ignored, and recovery hands
//! messages out as it goes (they can be settled before it ends) and drops the queues it is told to.

use super::*;

#[test]
fn a_dropped_queues_stale_ack_does_not_settle_its_successor() {
    let d = TempDir::new("stale");
    let cfg = config(&d.0, 1 << 20, SyncPolicy::Never);
    let (store, _) = open(&cfg);
    let old = store.publish("v/q", 1, b"old", noop()).unwrap();
    store.drop_queue("v/q");
    assert_eq!(store.stats().live_messages, 0);
    // Redeclared under the same name, in the same segment.
    let new = store.publish("v/q", 1, b"new", noop()).unwrap();
    assert_eq!(new.segment, old.segment);
    store.ack("v/q", &[old]);
    store.delivered("v/q", old);
    assert_eq!(store.stats().live_messages, 1);
    drop(store);
    let (store, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/q"), vec![1]);
    assert_eq!(
        &store.read(rec[0].messages[0].location).unwrap()[..],
        b"new"
    );
    assert!(!rec[0].messages[0].delivered);
}

#[test]
fn recovery_streams_and_drops_refused_queues() {
    let d = TempDir::new("stream");
    let cfg = config(&d.0, 8192, SyncPolicy::Never);
    {
        let (store, _) = open(&cfg);
        for i in 0..300u64 {
            let q = ["v/keep", "v/gone", "v/settle"][(i % 3) as usize];
            store.publish(q, i, &payload(i, 100), noop()).unwrap();
        }
    }
    {
        let (store, pending) = MessageStore::open_recovering(cfg.clone()).unwrap();
        let mut asked = Vec::new();
        let mut kept = Vec::new();
        let s = store.clone();
        store
            .recover(
                pending,
                &mut |q| {
                    asked.push(q.to_string());
                    q != "v/gone"
                },
                &mut |q, m| {
                    let Recovered::Message(m) = m else {
                        panic!("nothing was indexed")
                    };
                    if q == "v/settle" {
                        // Settled while recovery still scans its segment.
                        s.ack(q, &[m.location]);
                    } else {
                        kept.push(m.msg_id);
                    }
                },
            )
            .unwrap();
        asked.sort();
        assert_eq!(asked, ["v/gone", "v/keep", "v/settle"]);
        assert_eq!(kept, (0..300).step_by(3).collect::<Vec<_>>());
        assert_eq!(store.stats().live_messages, 100);
        store.sync_now().unwrap();
    }
    let (store, rec) = open(&cfg);
    assert_eq!(rec.len(), 1);
    assert_eq!(ids(&rec, "v/keep"), (0..300).step_by(3).collect::<Vec<_>>());
    assert_eq!(store.stats().live_messages, 100);
    // A new queue under a dropped name keeps what it publishes after the drop.
    store.publish("v/gone", 1000, b"later", noop()).unwrap();
    drop(store);
    let (_store, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/gone"), vec![1000]);
}

#[test]
fn settled_slots_cost_a_bit_and_only_in_segments_with_acks() {
    let d = TempDir::new("bits");
    let cfg = config(&d.0, 64 << 10, SyncPolicy::Never);
    let (store, _) = open(&cfg);
    let locs: Vec<Location> = (0..2000u64)
        .map(|i| store.publish("v/q", i, &[1u8; 16], noop()).unwrap())
        .collect();
    let bitmap_words = |s: &MessageStore| -> usize {
        s.shared()
            .lock()
            .msg
            .segs
            .values()
            .map(|s| s.settled.len())
            .sum()
    };
    assert_eq!(bitmap_words(&store), 0, "no acks, no bitmaps");
    store.ack("v/q", &locs[..10]);
    let words = bitmap_words(&store);
    assert!(words > 0 && words <= 64 << 10 >> 6, "{words} words");
    assert_eq!(store.stats().live_messages, 1990);
}

#[test]
fn acked_messages_never_come_back() {
    let d = TempDir::new("acked");
    let cfg = config(&d.0, 4096, SyncPolicy::Always);
    {
        let (store, _) = open(&cfg);
        let mut book = Book::default();
        for i in 0..100u64 {
            book.publish(&store, "v/q", i, &payload(i, 200));
        }
        let odd: Vec<u64> = (0..100).filter(|i| i % 2 == 1).collect();
        book.ack(&store, "v/q", &odd);
        // Acking twice, or as a queue with nothing in the segment, changes nothing.
        book.ack(&store, "v/q", &odd);
        store.ack("v/other", &book.locs("v/q", &[0, 2]));
        assert_eq!(store.stats().live_messages, 50);
    }
    let evens: Vec<u64> = (0..100).filter(|i| i % 2 == 0).collect();
    {
        let (store, rec) = open(&cfg);
        assert_eq!(ids(&rec, "v/q"), evens);
        let mut book = Book::default();
        book.recovered(&rec);
        // Ack some recovered messages after the restart, publish new ones.
        book.ack(&store, "v/q", &[0, 2, 4, 4]);
        assert_eq!(store.stats().live_messages, 47);
        store.publish("v/q", 1000, b"new", noop()).unwrap();
    }
    for _ in 0..2 {
        let (_store, rec) = open(&cfg);
        let mut want: Vec<u64> = evens.iter().copied().filter(|i| *i > 4).collect();
        want.push(1000);
        assert_eq!(ids(&rec, "v/q"), want);
    }
}

#[test]
fn publish_many_stores_one_copy_acked_per_queue() {
    let d = TempDir::new("many");
    let cfg = config(&d.0, 4096, SyncPolicy::Always);
    let loc;
    {
        let (store, _) = open(&cfg);
        loc = store
            .publish_many(&[("v/a", 1), ("v/b", 7), ("v/c", 1)], b"fanout", noop())
            .unwrap();
        assert_eq!(store.stats().live_messages, 3);
        store.ack("v/a", &[loc]);
        store.ack("v/a", &[loc]);
        assert_eq!(store.stats().live_messages, 2);
        store.ack("v/c", &[loc.target(2)]);
        store.delivered("v/b", loc.target(1));
    }
    {
        let (store, rec) = open(&cfg);
        assert_eq!(ids(&rec, "v/a"), Vec::<u64>::new());
        assert_eq!(ids(&rec, "v/b"), vec![7]);
        assert!(rec[0].messages[0].delivered);
        assert_eq!(rec[0].messages[0].location, loc.target(1));
        assert_eq!(&store.read(loc).unwrap()[..], b"fanout");
        store.ack("v/b", &[rec[0].messages[0].location]);
    }
    let (_store, rec) = open(&cfg);
    assert!(rec.is_empty());
    assert!(segment_files(&d.0, "msg-").is_empty());
}

#[test]
fn batched_reads_check_every_record_of_a_run() {
    let d = TempDir::new("runs");
    let cfg = config(&d.0, 16 << 10, SyncPolicy::Always);
    let (store, _) = open(&cfg);
    let mut placed: Vec<(Option<u64>, Location)> = (0..60u64)
        .map(|i| {
            (
                Some(i),
                store.publish("v/q", i, &payload(i, 900), noop()).unwrap(),
            )
        })
        .collect();
    store.sync_now().unwrap();
    // Gaps (every third left out), runs that cross segments, one not written yet, a bogus one.
    placed.retain(|(id, _)| id.is_some_and(|i| i % 3 != 1));
    let unsynced = store.publish("v/q", 99, b"pending", noop()).unwrap();
    placed.push((Some(99), unsynced));
    let bogus = Location {
        len: 4,
        ..placed[0].1
    };
    placed.push((None, bogus));
    // A record damaged on disk fails alone; its neighbours in the same read still come back.
    let victim = placed[5].1;
    let path = d.0.join(format!("msg-{:010}.seg", victim.segment));
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(b"X", u64::from(victim.offset) + u64::from(victim.len) - 1)
        .unwrap();
    let (tx, rx) = mpsc::channel();
    store.read_async(
        placed.iter().map(|(_, l)| *l).collect(),
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(got.len(), placed.len());
    for (i, ((id, l), r)) in placed.iter().zip(&got).enumerate() {
        match id {
            Some(99) => assert_eq!(&r.as_ref().unwrap()[..], b"pending"),
            Some(_) if i == 5 => assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{r:?}"),
            Some(id) => assert_eq!(&r.as_ref().unwrap()[..], &payload(*id, 900)[..], "{l:?}"),
            None => assert!(r.is_err()),
        }
    }
}

#[test]
fn a_queue_dropped_while_recovery_runs_stays_dropped() {
    let d = TempDir::new("drop-replay");
    let cfg = config(&d.0, 8192, SyncPolicy::Never);
    {
        let (store, _) = open(&cfg);
        for i in 0..3000u64 {
            let q = if i % 2 == 0 { "v/a" } else { "v/b" };
            store.publish(q, i, &payload(i, 40), noop()).unwrap();
        }
    }
    {
        let (store, pending) = MessageStore::open_recovering(cfg.clone()).unwrap();
        let s = store.clone();
        let mut dropped = false;
        store
            .recover(pending, &mut |_| true, &mut |q, _| {
                // The queue goes (an x-expires timer, say) while most of its segments are still unread.
                if q == "v/b" && !dropped {
                    dropped = true;
                    s.drop_queue("v/b");
                }
            })
            .unwrap();
        assert!(dropped);
        assert_eq!(store.stats().live_messages, 1500);
        assert_eq!(store.stats().queues, 1);
        store.sync_now().unwrap();
    }
    let (store, rec) = open(&cfg);
    assert_eq!(ids(&rec, "v/b"), Vec::<u64>::new());
    assert_eq!(ids(&rec, "v/a"), (0..3000).step_by(2).collect::<Vec<_>>());
    assert_eq!(store.stats().live_messages, 1500);
}

#[test]
fn reads_for_queues_filled_side_by_side_are_read_together_and_answered_apart() {
    let d = TempDir::new("read-jobs");
    let cfg = config(&d.0, 1 << 20, SyncPolicy::Never);
    let (store, _) = open(&cfg);
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..600u64 {
        let (q, v) = if i % 2 == 0 {
            ("v/a", &mut a)
        } else {
            ("v/b", &mut b)
        };
        v.push((i, store.publish(q, i, &payload(i, 60), noop()).unwrap()));
    }
    store.sync_now().unwrap();
    // One reader asks out of file order, one asks for a record still in the write buffer, one asks for a
    // record that is not there: each gets its own answers in its own order.
    a.reverse();
    let pending = store.publish("v/b", 999, b"pending", noop()).unwrap();
    b.push((999, pending));
    let bogus = Location { len: 4, ..a[3].1 };
    let jobs: Vec<Vec<Location>> = vec![
        a.iter().map(|(_, l)| *l).collect(),
        b.iter().map(|(_, l)| *l).collect(),
        vec![bogus],
    ];
    let refs: Vec<&[Location]> = jobs.iter().map(|j| j.as_slice()).collect();
    let mut scratch = crate::store::read::ReadScratch::default();
    let got = store.shared.read_jobs(&refs, &mut scratch);
    assert_eq!(got.len(), 3);
    for (want, got) in [&a, &b].into_iter().zip(&got) {
        assert_eq!(got.len(), want.len());
        for ((id, l), r) in want.iter().zip(got) {
            let r = r.as_ref().unwrap_or_else(|e| panic!("{l:?}: {e}"));
            if *id == 999 {
                assert_eq!(&r[..], b"pending");
            } else {
                assert_eq!(&r[..], &payload(*id, 60)[..], "{l:?}");
            }
        }
    }
    assert!(got[2][0].is_err(), "{:?}", got[2]);
    assert!(
        !scratch.bytes.is_empty(),
        "interleaved runs are read through the reused buffer"
    );
    // What a reader gets from interleaved runs is gathered into pieces of its own: in file order, its
    // records mostly follow one another in memory (each payload starts a record's length after the last),
    // not an allocation (and a malloc header) each. (Without the record that may still be in the write
    // buffer: its whole run would be read a record at a time.)
    let b_written = &jobs[1][..jobs[1].len() - 1];
    let two = store
        .shared
        .read_jobs(&[jobs[0].as_slice(), b_written], &mut scratch);
    // The second pass reuses the first one's lists: it answers with its own records, nothing left over.
    assert_eq!(two.len(), 2);
    for ((id, _), r) in a.iter().zip(&two[0]).chain(b.iter().zip(&two[1])) {
        assert_eq!(&r.as_ref().expect("read")[..], &payload(*id, 60)[..]);
    }
    // A pass of one record after a larger one: anything left over would name a record it did not ask for.
    let one = store.shared.read_jobs(&[&jobs[0][..1]], &mut scratch);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].len(), 1);
    assert_eq!(
        &one[0][0].as_ref().expect("read")[..],
        &payload(a[0].0, 60)[..]
    );
    let mut a_read: Vec<(Location, usize)> = a
        .iter()
        .zip(&two[0])
        .map(|((_, l), r)| (*l, r.as_ref().expect("read").as_ptr() as usize))
        .collect();
    a_read.sort_by_key(|(l, _)| l.offset);
    let contiguous = a_read
        .windows(2)
        .filter(|w| w[1].1 == w[0].1 + w[0].0.len as usize)
        .count();
    assert!(
        contiguous >= a_read.len() * 9 / 10,
        "{contiguous} of {}",
        a_read.len()
    );

    // Through the reader thread: jobs sent together are all answered.
    let (tx, rx) = mpsc::channel();
    for job in jobs.iter().take(2) {
        let tx = tx.clone();
        let n = job.len();
        store.read_async(
            job.clone(),
            Box::new(move |r| {
                let _ = tx.send((n, r.iter().filter(|r| r.is_ok()).count()));
            }),
        );
    }
    for _ in 0..2 {
        let (n, ok) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(n, ok);
    }
}

#[test]
fn queues_a_fan_out_reached_read_its_records_together() {
    let d = TempDir::new("read-fanout");
    let cfg = config(&d.0, 1 << 20, SyncPolicy::Never);
    let (store, _) = open(&cfg);
    let queues = [("v/a", 0u64), ("v/b", 0), ("v/c", 0)];
    let locs: Vec<Location> = (0..300u64)
        .map(|i| {
            store
                .publish_many(&queues, &payload(i, 50), noop())
                .unwrap()
        })
        .collect();
    store.sync_now().unwrap();
    let jobs: Vec<Vec<Location>> = (0..queues.len())
        .map(|q| locs.iter().map(|l| l.target(q)).collect())
        .collect();
    let refs: Vec<&[Location]> = jobs.iter().map(|j| j.as_slice()).collect();
    let mut scratch = crate::store::read::ReadScratch::default();
    let got = store.shared.read_jobs(&refs, &mut scratch);
    for answers in &got {
        assert_eq!(answers.len(), locs.len());
        for (i, r) in answers.iter().enumerate() {
            assert_eq!(&r.as_ref().unwrap()[..], &payload(i as u64, 50)[..]);
        }
    }
    // Three queues asking for the same records read them in one run (the buffer spans them all), not in
    // a read per record or two.
    let (first, last) = (locs[0], locs[locs.len() - 1]);
    assert_eq!(first.segment, last.segment);
    assert_eq!(
        scratch.bytes.len() as u64,
        u64::from(last.offset) + u64::from(last.len) - u64::from(first.offset)
    );
}
