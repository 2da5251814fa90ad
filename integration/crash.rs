//! The crash harness: publishers with confirms and consumers with acks run against the real broker binary,
//! which is killed with SIGKILL at a random moment, restarted on the same data directory, and checked:
//! every confirmed message is still there or was consumed, no message whose ack was known to be durable comes
//! back, and nothing is duplicated. `WARREN_CRASH_CYCLES` sets the number of cycles (default 50).

use crate::common::*;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const QUEUE: &str = "crash-q";
const MARKERS: &str = "crash-markers";

struct Broker {
    child: Child,
    url: String,
}

fn start(dir: &std::path::Path) -> Broker {
    // Keep only a few stored messages in memory per queue, so that the backlog is mostly paged out and the
    // harness checks paging and index recovery too.
    let config = dir.with_extension("toml");
    std::fs::write(&config, "queue_in_memory_messages = 8\n").expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("--config")
        .arg(&config)
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--log-level",
            "warn",
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn warren");
    let stdout = child.stdout.take().expect("stdout");
    let port = listening_port(stdout).unwrap_or_else(|e| panic!("{e}"));
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

async fn declare(conn: &Connection) -> lapin::Channel {
    let ch = conn.create_channel().await.expect("channel");
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(QUEUE.into(), durable, FieldTable::default())
        .await
        .expect("declare");
    ch.queue_declare(MARKERS.into(), durable, FieldTable::default())
        .await
        .expect("declare markers");
    ch
}

async fn publisher(url: String, start_id: u64, seen: Arc<Mutex<Seen>>) {
    let Ok(conn) = Connection::connect(&url, ConnectionProperties::default()).await else {
        return;
    };
    let ch = declare(&conn).await;
    if ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return;
    }
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
                seen.lock().expect("lock").confirmed.insert(id);
            }
            _ => return,
        }
        id += 1;
    }
}

async fn consumer(url: String, seen: Arc<Mutex<Seen>>) {
    let Ok(conn) = Connection::connect(&url, ConnectionProperties::default()).await else {
        return;
    };
    let ch = declare(&conn).await;
    if ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return;
    }
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
        seen.lock().expect("lock").delivered.insert(id);
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
                Ok(c) if c.is_ack() => seen
                    .lock()
                    .expect("lock")
                    .durably_acked
                    .extend(pending.drain(..)),
                _ => return,
            }
        }
    }
}

/// Everything in the queue after a restart, in order, with redelivered flags.
async fn drain(url: &str) -> Vec<(u64, bool)> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect after restart");
    let ch = declare(&conn).await;
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(QUEUE.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
    {
        let id = u64::from_be_bytes(m.delivery.data[..8].try_into().unwrap_or_default());
        out.push((id, m.delivery.redelivered));
    }
    ch.queue_purge(MARKERS.into(), Default::default())
        .await
        .expect("purge markers");
    let _ = conn.close(200, "bye".into()).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_harness() {
    let cycles: u32 = std::env::var("WARREN_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let dir = std::env::temp_dir().join(format!("warren-crash-{}", unique("c")));
    let mut next_id = 0u64;
    let mut total_confirmed = 0usize;
    for cycle in 0..cycles {
        let mut broker = start(&dir);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let p = tokio::spawn(publisher(broker.url.clone(), next_id, seen.clone()));
        let c = tokio::spawn(consumer(broker.url.clone(), seen.clone()));
        let run_ms = 100 + (rand_u64() % 300);
        tokio::time::sleep(Duration::from_millis(run_ms)).await;
        let _ = broker.child.kill();
        let _ = broker.child.wait();
        let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
        let seen = std::mem::take(&mut *seen.lock().expect("lock"));

        let mut broker = start(&dir);
        let present = drain(&broker.url).await;
        let _ = broker.child.kill();
        let _ = broker.child.wait();

        let ids: Vec<u64> = present.iter().map(|(id, _)| *id).collect();
        let unique_ids: HashSet<u64> = ids.iter().copied().collect();
        assert_eq!(
            unique_ids.len(),
            ids.len(),
            "cycle {cycle}: duplicates after restart: {ids:?}"
        );
        for id in &seen.confirmed {
            assert!(
                unique_ids.contains(id) || seen.delivered.contains(id),
                "cycle {cycle}: confirmed message {id} lost"
            );
        }
        for id in &seen.durably_acked {
            assert!(
                !unique_ids.contains(id),
                "cycle {cycle}: acked message {id} came back"
            );
        }
        for (id, redelivered) in &present {
            if seen.delivered.contains(id) {
                assert!(
                    *redelivered,
                    "cycle {cycle}: message {id} delivered before the crash lacks redelivered"
                );
            }
        }
        total_confirmed += seen.confirmed.len();
        next_id += 1_000_000;
    }
    println!("crash harness: {cycles} cycles, {total_confirmed} confirmed messages checked");
    assert!(total_confirmed > 0, "no message was ever confirmed");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(dir.with_extension("toml"));
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish()
}
