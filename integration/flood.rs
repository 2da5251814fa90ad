//! A flood: several publishers with confirms against one slow consumer, on a broker (the real binary, so its
//! RSS is its own) with a small memory limit. Its RSS must stay near the limit, the publishers must be
//! blocked (connection.blocked) and unblocked, and every confirmed message must reach the consumer.

use crate::common::*;
use lapin::options::{BasicAckOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::BasicProperties;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LIMIT_MIB: u64 = 96;
const PUBLISHERS: usize = 4;
const BODY: usize = 8 * 1024;
const FLOOD_FOR: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_held_near_the_memory_limit_and_loses_nothing_confirmed() {
    // Paging only at the limit itself, so the alarm (not paging) is what holds the flood.
    let w = Child::spawn(
        "flood",
        &format!(
            "memory_limit_bytes = {}\nmemory_paging_ratio = 1.0",
            LIMIT_MIB << 20
        ),
    );
    let b = TestBroker::from_url(w.broker.url());
    let pid = w.pid();
    let setup = connect(&b).await;
    let ch = open(&setup).await;
    declare_queue(&ch, "flood").await;

    let stop = Arc::new(AtomicBool::new(false));
    let confirmed = Arc::new(AtomicU64::new(0));
    let blocked_seen = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));

    // RSS sampler
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib_of(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // One slow consumer: prefetch 10, a pause per message while the flood lasts.
    let consumer_conn = connect(&b).await;
    let cch = open(&consumer_conn).await;
    within(cch.basic_qos(10, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut deliveries = consume(&cch, "flood", manual_ack()).await;

    let mut publishers = Vec::new();
    for _ in 0..PUBLISHERS {
        let conn = connect(&b).await;
        let (stop, confirmed, blocked_seen) =
            (stop.clone(), confirmed.clone(), blocked_seen.clone());
        publishers.push(tokio::spawn(async move {
            let ch = open(&conn).await;
            within(ch.confirm_select(ConfirmSelectOptions::default()))
                .await
                .expect("confirms");
            let body = vec![b'f'; BODY];
            let mut window = std::collections::VecDeque::new();
            while !stop.load(Ordering::Relaxed) {
                if conn.status().blocked() {
                    blocked_seen.store(true, Ordering::Relaxed);
                }
                let c = ch
                    .basic_publish(
                        "".into(),
                        "flood".into(),
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default(),
                    )
                    .await
                    .expect("publish");
                window.push_back(c);
                if window.len() >= 256 {
                    if let Some(c) = window.pop_front() {
                        if c.await.expect("confirm").is_ack() {
                            confirmed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            for c in window {
                if c.await.expect("confirm").is_ack() {
                    confirmed.fetch_add(1, Ordering::Relaxed);
                }
            }
            conn
        }));
    }

    let flood_end = tokio::time::Instant::now() + FLOOD_FOR;
    let mut consumed = 0u64;
    while tokio::time::Instant::now() < flood_end {
        let d = deliveries.next().await;
        d.ack(BasicAckOptions::default()).await.expect("ack");
        consumed += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut conns = Vec::new();
    for p in publishers {
        // Publishers blocked by the alarm finish once the consumer below drains the queue.
        conns.push(p);
    }
    // Drain at full speed until every confirmed message has been seen.
    let drain = async {
        loop {
            let all_done = conns.iter().all(|p| p.is_finished());
            if all_done && consumed >= confirmed.load(Ordering::Relaxed) {
                break;
            }
            let d = deliveries.next().await;
            d.ack(BasicAckOptions::default()).await.expect("ack");
            consumed += 1;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), drain)
        .await
        .expect("drain in time");
    let mut publisher_conns = Vec::new();
    for p in conns {
        publisher_conns.push(p.await.expect("publisher"));
    }
    sampler.abort();
    let peak_mib = peak.load(Ordering::Relaxed) / 1024;
    let total = confirmed.load(Ordering::Relaxed);
    println!("flood: {total} confirmed, {consumed} consumed, peak RSS {peak_mib} MiB (limit {LIMIT_MIB} MiB)");
    assert!(total > 1000, "the flood hardly flowed: {total} confirmed");
    assert!(
        consumed >= total,
        "confirmed {total} but consumed only {consumed}"
    );
    assert!(
        blocked_seen.load(Ordering::Relaxed),
        "no publisher was ever blocked"
    );
    assert!(
        publisher_conns.iter().all(|c| !c.status().blocked()),
        "a publisher stayed blocked"
    );
    assert!(
        peak_mib < LIMIT_MIB * 3 / 2,
        "peak RSS {peak_mib} MiB against a {LIMIT_MIB} MiB limit"
    );
}
