//! Throughput measurements on this machine; printed, never asserted (beyond a sanity check), so they are
//! ignored by a plain `cargo test`. Run them with
//! `cargo test --release --lib store::tests::bench -- --ignored --nocapture`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;

/// Publishers each keep a window of unconfirmed 1 KiB messages, like AMQP publishers with confirms.
fn confirmed_rate(
    sync: SyncPolicy,
    publishers: u64,
    window: usize,
    run: Duration,
) -> (f64, StoreStats) {
    let d = TempDir::new("bench");
    let (store, _) = open(&config(&d.0, StoreConfig::DEFAULT_SEGMENT_SIZE, sync));
    let body = vec![0x5Au8; 1024];
    let start = Instant::now();
    let threads: Vec<_> = (0..publishers)
        .map(|p| {
            let store = store.clone();
            let body = body.clone();
            std::thread::spawn(move || {
                let q = format!("v/bench{p}");
                let (tx, rx) = mpsc::channel();
                let mut id = 0u64;
                let mut confirmed = 0u64;
                let mut placed = Vec::with_capacity(window);
                while start.elapsed() < run {
                    for _ in 0..window {
                        let tx = tx.clone();
                        let loc = store
                            .publish(
                                &q,
                                id,
                                &body,
                                Box::new(move |r| {
                                    let _ = tx.send(r.is_ok());
                                }),
                            )
                            .unwrap();
                        placed.push(loc);
                        id += 1;
                    }
                    for _ in 0..window {
                        if rx.recv().unwrap() {
                            confirmed += 1;
                        }
                    }
                    // Consume what was published, as a steady-state broker would.
                    store.ack(&q, &placed);
                    placed.clear();
                }
                confirmed
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let rate = total as f64 / start.elapsed().as_secs_f64();
    (rate, store.stats())
}

#[test]
#[ignore = "measurement only: run with --ignored --nocapture"]
fn bench_publish_rate_with_always() {
    let run = Duration::from_millis(1500);
    for (publishers, window) in [(1u64, 1usize), (1, 64), (8, 64)] {
        let (rate, s) = confirmed_rate(SyncPolicy::Always, publishers, window, run);
        println!(
            "store bench Always: {publishers} publisher(s) x window {window}: {rate:.0} confirmed 1 KiB publishes/s, \
             {:.1} publishes per fdatasync",
            s.publishes as f64 / s.syncs.max(1) as f64
        );
    }
    let (rate, _) = confirmed_rate(SyncPolicy::Never, 8, 64, run);
    println!("store bench Never: 8 publishers x window 64: {rate:.0} confirmed 1 KiB publishes/s");
}

#[test]
#[ignore = "measurement only: run with --ignored --nocapture"]
fn bench_recovery_of_a_large_store() {
    let d = TempDir::new("bench-recovery");
    let cfg = config(&d.0, 8 << 20, SyncPolicy::Never);
    let n = 200_000u64;
    {
        let (store, _) = open(&cfg);
        let body = vec![7u8; 512];
        let locs: Vec<Location> = (0..n)
            .map(|i| store.publish("v/big", i, &body, noop()).unwrap())
            .collect();
        store.ack("v/big", &locs.into_iter().step_by(2).collect::<Vec<_>>());
    }
    let t = Instant::now();
    let (store, rec) = open(&cfg);
    let elapsed = t.elapsed();
    assert_eq!(rec[0].messages.len() as u64, n / 2);
    let s = store.stats();
    println!(
        "store bench recovery: {n} records ({} MiB, {} segments), {} live, in {elapsed:?}",
        s.disk_bytes >> 20,
        s.msg_segments,
        s.live_messages
    );
}
