//! The crash harness: publishers with confirms and consumers with acks run against the real broker binary,
//! which is killed with SIGKILL at a random moment, restarted on the same data directory, and checked:
//! every confirmed message is still there or was consumed, no message whose ack was known to be durable comes
//! back, and nothing is duplicated. `WARREN_CRASH_CYCLES` sets the number of cycles (default 50).
//!
//! Every random choice of a run (when to kill the broker in each cycle) comes from one seed, printed at the
//! start and named in every failure. `WARREN_CRASH_SEED=<seed>` replays that kill schedule; the broker's own
//! timing still varies from run to run.

use crate::common::*;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::process::Child;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const QUEUE: &str = "crash-q";
const MARKERS: &str = "crash-markers";

struct Broker {
    child: Child,
    url: String,
}

fn start(dir: &std::path::Path, seed: u64) -> Broker {
    // Keep only a few stored messages in memory per queue, so that the backlog is mostly paged out and the
    // harness checks paging and index recovery too.
    let (child, port) = spawn_warren(dir, "queue_in_memory_messages = 8\n")
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    Broker {
        child,
        url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
    }
}

#[derive(Default)]
struct Seen {
    confirmed: HashSet<u64>,
    /// Delivered to the consumer before the crash (acked or not).
    delivered: HashSet<u64>,
    /// Acked, and known durable because a later confirmed publish on the same connection followed the ack.
    durably_acked: HashSet<u64>,
}

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

/// A channel on `conn` with both queues declared.
async fn declare(conn: &Connection) -> lapin::Result<lapin::Channel> {
    let ch = conn.create_channel().await?;
    ch.queue_declare(QUEUE.into(), durable(), FieldTable::default())
        .await?;
    ch.queue_declare(MARKERS.into(), durable(), FieldTable::default())
        .await?;
    Ok(ch)
}

/// A connection and a channel in confirm mode with both queues declared; `None` once the broker is gone.
async fn confirming_channel(url: &str) -> Option<(Connection, lapin::Channel)> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .ok()?;
    let ch = declare(&conn).await.ok()?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .ok()?;
    Some((conn, ch))
}

/// The record of what the clients saw; a poisoned lock still holds sound sets.
fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn publisher(url: String, start_id: u64, seen: Arc<Mutex<Seen>>) {
    let Some((_conn, ch)) = confirming_channel(&url).await else {
        return;
    };
    let mut id = start_id;
    loop {
        let body = id.to_be_bytes();
        let Ok(confirm) = ch
            .basic_publish(
                "".into(),
                QUEUE.into(),
                BasicPublishOptions::default(),
                &body,
                persistent(),
            )
            .await
        else {
            return;
        };
        match confirm.await {
            Ok(c) if c.is_ack() => {
                lock(&seen).confirmed.insert(id);
            }
            _ => return,
        }
        id += 1;
    }
}

async fn consumer(url: String, seen: Arc<Mutex<Seen>>) {
    let Some((_conn, ch)) = confirming_channel(&url).await else {
        return;
    };
    let _ = ch.basic_qos(50, BasicQosOptions::default()).await;
    let Ok(mut deliveries) = ch
        .basic_consume(
            QUEUE.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    else {
        return;
    };
    let mut pending = Vec::new();
    while let Some(Ok(d)) = deliveries.next().await {
        let id = u64::from_be_bytes(d.data[..8].try_into().unwrap_or_default());
        lock(&seen).delivered.insert(id);
        if d.ack(BasicAckOptions::default()).await.is_err() {
            return;
        }
        pending.push(id);
        if pending.len() >= 10 {
            // A confirmed publish after the acks proves they reached the disk before it.
            let Ok(c) = ch
                .basic_publish(
                    "".into(),
                    MARKERS.into(),
                    BasicPublishOptions::default(),
                    b"m",
                    persistent(),
                )
                .await
            else {
                return;
            };
            match c.await {
                Ok(c) if c.is_ack() => lock(&seen).durably_acked.extend(pending.drain(..)),
                _ => return,
            }
        }
    }
}

/// Everything in the queue after a restart, in order, with redelivered flags.
async fn drain(url: &str, seed: u64) -> Vec<(u64, bool)> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: connect after restart: {e:?}"));
    let ch = declare(&conn)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: declare after restart: {e:?}"));
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(QUEUE.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: basic.get after restart: {e:?}"))
    {
        let id = u64::from_be_bytes(m.delivery.data[..8].try_into().unwrap_or_default());
        out.push((id, m.delivery.redelivered));
    }
    ch.queue_purge(MARKERS.into(), Default::default())
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: purge markers: {e:?}"));
    let _ = conn.close(200, "bye".into()).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_harness() {
    let cycles: u32 = std::env::var("WARREN_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let seed = seed();
    eprintln!("crash harness seed {seed} (replay with WARREN_CRASH_SEED={seed})");
    let mut rng = SplitMix64(seed);
    let dir = data_dir("crash");
    let mut next_id = 0u64;
    let mut total_confirmed = 0usize;
    for cycle in 0..cycles {
        let mut broker = start(&dir, seed);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let p = tokio::spawn(publisher(broker.url.clone(), next_id, seen.clone()));
        let c = tokio::spawn(consumer(broker.url.clone(), seen.clone()));
        let run_ms = 100 + rng.next_u64() % 300;
        tokio::time::sleep(Duration::from_millis(run_ms)).await;
        let _ = broker.child.kill();
        let _ = broker.child.wait();
        let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
        let seen = std::mem::take(&mut *lock(&seen));

        let mut broker = start(&dir, seed);
        let present = drain(&broker.url, seed).await;
        let _ = broker.child.kill();
        let _ = broker.child.wait();

        let ids: Vec<u64> = present.iter().map(|(id, _)| *id).collect();
        let unique_ids: HashSet<u64> = ids.iter().copied().collect();
        assert_eq!(
            unique_ids.len(),
            ids.len(),
            "seed {seed}, cycle {cycle}: duplicates after restart: {ids:?}"
        );
        for id in &seen.confirmed {
            assert!(
                unique_ids.contains(id) || seen.delivered.contains(id),
                "seed {seed}, cycle {cycle}: confirmed message {id} lost"
            );
        }
        for id in &seen.durably_acked {
            assert!(
                !unique_ids.contains(id),
                "seed {seed}, cycle {cycle}: acked message {id} came back"
            );
        }
        for (id, redelivered) in &present {
            if seen.delivered.contains(id) {
                assert!(
                    *redelivered,
                    "seed {seed}, cycle {cycle}: message {id} delivered before the crash lacks redelivered"
                );
            }
        }
        total_confirmed += seen.confirmed.len();
        next_id += 1_000_000;
    }
    println!("crash harness: {cycles} cycles, {total_confirmed} confirmed messages checked (seed {seed})");
    assert!(
        total_confirmed > 0,
        "seed {seed}: no message was ever confirmed"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(dir.with_extension("toml"));
}

/// The run's seed: `WARREN_CRASH_SEED` when set, otherwise one taken from the clock.
fn seed() -> u64 {
    match std::env::var("WARREN_CRASH_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("WARREN_CRASH_SEED={s:?} is not a u64")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    }
}

/// splitmix64: a small deterministic generator, so that a run's random choices follow from its seed alone.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
