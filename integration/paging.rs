//! Bounded memory: a queue's backlog pages out to the message store and comes back in order, across a
//! restart too; resource alarms block publishers (and only publishers) until they clear.

use crate::common::*;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use warren::queue::paging::KEEP_STORED;

/// A broker on `dir`; `paging_ratio` sets how early queues page transient messages out.
async fn start(dir: &std::path::Path, paging_ratio: f64) -> (warren::Server, TestBroker) {
    start_with(warren::config::Config {
        memory_limit_bytes: Some(1 << 40),
        memory_paging_ratio: paging_ratio,
        ..on_disk(dir)
    })
    .await
}

fn on_disk(dir: &std::path::Path) -> warren::config::Config {
    warren::config::Config {
        bind: "127.0.0.1".into(),
        port: 0,
        ephemeral: false,
        data_dir: dir.to_path_buf(),
        ..Default::default()
    }
}

async fn start_with(config: warren::config::Config) -> (warren::Server, TestBroker) {
    let server = warren::Server::builder()
        .config(config)
        .start()
        .await
        .expect("start");
    let b = TestBroker::from_url(server.url_for("guest", "guest", "%2f"));
    (server, b)
}

/// The queue `name` of the default vhost.
fn queue_of(server: &warren::Server, name: &str) -> std::sync::Arc<warren::queue::Queue> {
    server
        .broker()
        .vhost("/")
        .and_then(|v| v.queue(name))
        .expect("queue")
}

/// A connection and a channel in confirm mode, with the durable queue `queue` declared.
async fn confirming(b: &TestBroker, queue: &str) -> (lapin::Connection, lapin::Channel) {
    let conn = connect(b).await;
    let ch = open(&conn).await;
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .unwrap();
    within(ch.queue_declare(queue.into(), durable(), FieldTable::default()))
        .await
        .unwrap();
    (conn, ch)
}

/// Publish `n` messages numbered from `from` with confirms, 500 in flight at a time.
async fn publish_numbered(ch: &lapin::Channel, queue: &str, from: u32, n: u32, persistent: bool) {
    let props = if persistent {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default()
    };
    let mut pending = Vec::new();
    for i in from..from + n {
        let c = within(ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            format!("msg-{i}").as_bytes(),
            props.clone(),
        ))
        .await
        .unwrap();
        pending.push(c);
        if pending.len() == 500 {
            for c in pending.drain(..) {
                assert!(within(c).await.unwrap().is_ack());
            }
        }
    }
    for c in pending {
        assert!(within(c).await.unwrap().is_ack());
    }
}

fn numbered(from: u32, to: u32) -> Vec<String> {
    (from..to).map(|i| format!("msg-{i}")).collect()
}

#[tokio::test]
async fn a_persistent_backlog_pages_out_and_survives_restart_in_order() {
    let dir = data_dir("paging-restart");
    let (server, b) = start(&dir, 0.5).await;
    let (conn, ch) = confirming(&b, "backlog").await;
    let n = KEEP_STORED as u32 + 4 * warren::queue::spill::CHUNK as u32 + 100;
    publish_numbered(&ch, "backlog", 0, n, true).await;
    let q = queue_of(&server, "backlog");
    assert_eq!(q.message_count(), n);
    assert_eq!(
        q.ready_in_memory(),
        KEEP_STORED,
        "a stored backlog keeps only its head in memory"
    );
    assert!(q.paged_index_in_memory() <= 2 * warren::queue::spill::CHUNK);
    // Take the first 10 (acked) and leave one unacked: it comes back first, redelivered.
    for i in 0..10 {
        let m = within(ch.basic_get("backlog".into(), BasicGetOptions { no_ack: true }))
            .await
            .unwrap()
            .expect("message");
        assert_eq!(m.delivery.data, format!("msg-{i}").as_bytes());
    }
    let unacked = within(ch.basic_get("backlog".into(), BasicGetOptions::default()))
        .await
        .unwrap()
        .expect("message");
    assert_eq!(unacked.delivery.data, b"msg-10");
    drop(conn);
    server.shutdown().await;

    let (server, b) = start(&dir, 0.5).await;
    let q = queue_of(&server, "backlog");
    assert_eq!(q.message_count(), n - 10);
    assert_eq!(
        q.ready_in_memory(),
        0,
        "recovery reads no bodies back until they are delivered"
    );
    // Nor does it hold an index entry per message: the middle of the run is spilled to the store.
    assert!(q.paged_index_in_memory() <= 2 * warren::queue::spill::CHUNK);
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let first = within(ch.basic_get("backlog".into(), BasicGetOptions::default()))
        .await
        .unwrap()
        .expect("message");
    assert_eq!(first.delivery.data, b"msg-10");
    assert!(first.delivery.redelivered);
    within(first.delivery.ack(BasicAckOptions::default()))
        .await
        .unwrap();
    assert_eq!(drain(&ch, "backlog").await, numbered(11, n));
    drop(conn);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A broker on `dir` whose store starts a new segment every 64 KiB, so a few thousand messages fill many
/// sealed segments (which a clean shutdown indexes).
fn small_segments(dir: &std::path::Path) -> warren::config::Config {
    warren::config::Config {
        store_segment_bytes: 64 << 10,
        ..on_disk(dir)
    }
}

#[tokio::test]
async fn indexed_backlogs_come_back_unread_and_are_read_block_by_block() {
    let dir = data_dir("paging-indexed");
    let (server, b) = start_with(small_segments(&dir)).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .unwrap();
    for q in ["indexed", "purged"] {
        within(ch.queue_declare(q.into(), durable(), FieldTable::default()))
            .await
            .unwrap();
    }
    let prio = table(vec![("x-max-priority", int(5))]);
    within(ch.queue_declare("prio".into(), durable(), prio))
        .await
        .unwrap();
    let n = 8000;
    publish_numbered(&ch, "indexed", 0, n, true).await;
    publish_numbered(&ch, "purged", 0, 3000, true).await;
    for i in 0..3000u32 {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_priority((i % 3) as u8 * 2);
        within(ch.basic_publish(
            "".into(),
            "prio".into(),
            BasicPublishOptions::default(),
            format!("p{}-{i}", i % 3).as_bytes(),
            props,
        ))
        .await
        .unwrap();
    }
    within(ch.wait_for_confirms()).await.unwrap();
    for i in 0..10 {
        let m = get(&ch, "indexed", true).await.expect("message");
        assert_eq!(m.delivery.data, format!("msg-{i}").as_bytes());
    }
    let unacked = get(&ch, "indexed", false).await.expect("message");
    assert_eq!(unacked.delivery.data, b"msg-10");
    drop(conn);
    server.shutdown().await;
    let indexes = std::fs::read_dir(dir.join("messages"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".idx"))
        })
        .count();
    assert!(
        indexes > 5,
        "a clean shutdown indexes sealed segments ({indexes})"
    );

    let (server, b) = start_with(small_segments(&dir)).await;
    let queue = |name: &str| queue_of(&server, name);
    let q = queue("indexed");
    assert_eq!(q.message_count(), n - 10);
    assert_eq!(q.ready_in_memory(), 0);
    // Blocks of the index stand for the backlog: not an entry per message in memory.
    assert!(q.paged_index_in_memory() <= 2 * warren::queue::spill::CHUNK);
    assert_eq!(queue("purged").message_count(), 3000);
    // Nothing of it was acked or delivered: it is all blocks, not one entry read.
    assert_eq!(queue("purged").paged_index_in_memory(), 0);
    assert_eq!(queue("prio").message_count(), 3000);
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let first = get(&ch, "indexed", false).await.expect("message");
    assert_eq!(first.delivery.data, b"msg-10");
    assert!(first.delivery.redelivered);
    within(first.delivery.ack(BasicAckOptions::default()))
        .await
        .unwrap();
    // Read half, then restart again: what was consumed from blocks stays consumed.
    for i in 11..4000 {
        let m = get(&ch, "indexed", true).await.expect("message");
        assert_eq!(m.delivery.data, format!("msg-{i}").as_bytes());
        assert!(!m.delivery.redelivered, "msg-{i}");
    }
    // Five taken from the front of a block and left unacknowledged, then the rest purged: a purge forgets
    // what is left of the block, not the part already read.
    let mut held = Vec::new();
    for i in 0..5 {
        let m = get(&ch, "purged", false).await.expect("message");
        assert_eq!(m.delivery.data, format!("msg-{i}").as_bytes());
        held.push(m);
    }
    // Its blocks were never touched before the restart: read back in parts, in order, and counted.
    for i in 5..2000 {
        let m = get(&ch, "purged", true).await.expect("message");
        assert_eq!(m.delivery.data, format!("msg-{i}").as_bytes());
    }
    assert_eq!(queue("purged").message_count(), 3000 - 2000);
    within(ch.queue_purge("purged".into(), Default::default()))
        .await
        .unwrap();
    // A priority queue reads its blocks at boot: highest priority first, each level in order.
    let got = drain(&ch, "prio").await;
    let want: Vec<String> = [2u32, 1, 0]
        .iter()
        .flat_map(|p| {
            (0..3000u32)
                .filter(move |i| i % 3 == *p)
                .map(move |i| format!("p{p}-{i}"))
        })
        .collect();
    assert_eq!(got, want);
    drop(held);
    drop(conn);
    server.shutdown().await;

    let (server, b) = start_with(small_segments(&dir)).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    // The five held when the connection closed went back to the queue, and only they are left.
    assert_eq!(drain(&ch, "purged").await, numbered(0, 5));
    assert_eq!(drain(&ch, "prio").await, Vec::<String>::new());
    assert_eq!(drain(&ch, "indexed").await, numbered(4000, n));
    drop(conn);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_recovered_block_is_read_back_in_parts() {
    // Segments of 512 KiB: an untouched backlog comes back as blocks of the most entries a block takes
    // (1,024), which a queue reads back 256 at a time, never whole.
    let dir = data_dir("paging-block-parts");
    let config = || warren::config::Config {
        store_segment_bytes: 512 << 10,
        ..on_disk(&dir)
    };
    let (server, b) = start_with(config()).await;
    let (conn, ch) = confirming(&b, "parts").await;
    let n = 12_000;
    publish_numbered(&ch, "parts", 0, n, true).await;
    drop(conn);
    server.shutdown().await;

    let (server, b) = start_with(config()).await;
    let q = queue_of(&server, "parts");
    assert_eq!(q.message_count(), n);
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let mut most = 0;
    for i in 0..n {
        let m = get(&ch, "parts", true).await.expect("message");
        assert_eq!(m.delivery.data, format!("msg-{i}").as_bytes());
        most = most.max(q.paged_index_in_memory());
        assert_eq!(q.message_count(), n - i - 1);
    }
    // A part, and a tail shorter than a head that recovery left in memory.
    assert!(most <= 256 + 64, "{most} index entries in memory");
    assert!(get(&ch, "parts", true).await.is_none());
    drop(conn);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_recovered_backlog_whose_index_table_is_lost_loses_only_that_segment() {
    // A queue holds its recovered backlog as one run of blocks and finds each next block in the index
    // tables as it reads on. A table gone after recovery (here: deleted) passes over its segment's
    // messages, logged, and the rest still comes, in order; the queue's count ends at zero.
    let dir = data_dir("paging-lost-table");
    let (server, b) = start_with(small_segments(&dir)).await;
    let (conn, ch) = confirming(&b, "lost").await;
    let n = 8000;
    publish_numbered(&ch, "lost", 0, n, true).await;
    drop(conn);
    server.shutdown().await;

    let (server, b) = start_with(small_segments(&dir)).await;
    let q = queue_of(&server, "lost");
    assert_eq!(q.message_count(), n);
    let mut indexes: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join("messages"))
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "idx"))
        .collect();
    indexes.sort();
    assert!(indexes.len() > 5, "{indexes:?}");
    std::fs::remove_file(&indexes[2]).unwrap();
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let got: Vec<u32> = drain(&ch, "lost")
        .await
        .iter()
        .map(|m| m.trim_start_matches("msg-").parse().unwrap())
        .collect();
    // One gap: the third segment's messages.
    let gaps: Vec<(u32, u32)> = got
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(
        got[0] == 0 && got.last() == Some(&(n - 1)),
        "{:?}",
        (got[0], got.last())
    );
    assert!(got.len() < n as usize - 100, "{}", got.len());
    assert_eq!(q.message_count(), 0);
    drop(conn);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_indexed_backlog_expires_after_a_restart_without_being_read() {
    let dir = data_dir("paging-indexed-ttl");
    ttl_backlog_expires(small_segments(&dir), 5000, true).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_spilled_backlog_expires_without_being_delivered() {
    let dir = data_dir("paging-ttl");
    let n = KEEP_STORED as u32 + 5 * warren::queue::spill::CHUNK as u32;
    ttl_backlog_expires(on_disk(&dir), n, false).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `n` persistent messages in a queue with a 60 s TTL (on a virtual clock), across a restart or not, all
/// expire once the clock moves past it: expiry walks the spilled chunks' (or index blocks') entries; no
/// consumer, no body needed.
async fn ttl_backlog_expires(config: warren::config::Config, n: u32, restart: bool) {
    let config = warren::config::Config {
        clock: "virtual".into(),
        ..config
    };
    let (mut server, mut b) = start_with(config.clone()).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .unwrap();
    let args = table(vec![("x-message-ttl", int(60_000))]);
    within(ch.queue_declare("aging".into(), durable(), args))
        .await
        .unwrap();
    publish_numbered(&ch, "aging", 0, n, true).await;
    drop(conn);
    if restart {
        server.shutdown().await;
        (server, b) = start_with(config).await;
    }
    let q = queue_of(&server, "aging");
    assert_eq!(q.message_count(), n);
    server.advance_clock(std::time::Duration::from_secs(61));
    wait_until(|| q.message_count() == 0).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    assert!(get(&ch, "aging", true).await.is_none());
    drop(conn);
    server.shutdown().await;
}

#[tokio::test]
async fn transient_messages_page_out_under_memory_pressure_and_die_with_the_broker() {
    let dir = data_dir("paging-transient");
    // A paging threshold of a few bytes: every queue is under pressure.
    let (server, b) = start(&dir, 1e-12).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .unwrap();
    within(ch.queue_declare("t".into(), durable(), FieldTable::default()))
        .await
        .unwrap();
    within(ch.queue_declare("p".into(), durable(), FieldTable::default()))
        .await
        .unwrap();
    publish_numbered(&ch, "t", 0, 1000, false).await;
    publish_numbered(&ch, "p", 0, 10, true).await;
    let v = server.broker().vhost("/").expect("vhost");
    let t = v.queue("t").expect("queue");
    assert_eq!(t.message_count(), 1000);
    // Nobody consumes from it: under pressure it keeps none in memory (one with consumers keeps 64).
    assert_eq!(t.ready_in_memory(), 0);
    // Half of it comes back from the store, in order.
    for i in 0..500 {
        let m = within(ch.basic_get("t".into(), BasicGetOptions { no_ack: true }))
            .await
            .unwrap()
            .expect("message");
        assert_eq!(m.delivery.data, format!("msg-{i}").as_bytes());
    }
    drop(conn);
    server.shutdown().await;

    // Transient messages do not survive a restart, paged or not; persistent ones do.
    let (server, b) = start(&dir, 1e-12).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    assert_eq!(drain(&ch, "t").await, Vec::<String>::new());
    assert_eq!(drain(&ch, "p").await, numbered(0, 10));
    drop(conn);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_resource_alarm_blocks_publishers_until_it_clears() {
    let server = warren::Server::builder().start().await.expect("start");
    let b = TestBroker::from_url(server.url_for("guest", "guest", "%2f"));
    let publisher = connect(&b).await;
    let consumer = connect(&b).await;
    let pch = open(&publisher).await;
    let cch = open(&consumer).await;
    within(pch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .unwrap();
    within(pch.queue_declare("q".into(), Default::default(), FieldTable::default()))
        .await
        .unwrap();
    let alarms = server.broker().alarms.clone();
    alarms.set_memory_limit(1);
    // As in RabbitMQ, the publish that meets the alarm is held at its content header: its body is not
    // read, so the message is not routed (nor confirmed) until the alarm clears. lapin holds publishes
    // itself once it hears connection.blocked, so publish from a task.
    let first = tokio::spawn(async move {
        let c = pch
            .basic_publish(
                "".into(),
                "q".into(),
                BasicPublishOptions::default(),
                b"one",
                BasicProperties::default(),
            )
            .await?;
        c.await
    });
    wait_until(|| publisher.status().blocked()).await;
    // A connection that only consumes keeps working during the alarm, and the held message is not there.
    assert!(
        within(cch.basic_get("q".into(), BasicGetOptions { no_ack: true }))
            .await
            .unwrap()
            .is_none(),
        "a blocked publisher's message was taken"
    );
    assert!(!consumer.status().blocked());
    alarms.set_memory_limit(u64::MAX);
    assert!(within(first).await.unwrap().unwrap().is_ack());
    wait_until(|| !publisher.status().blocked()).await;
    let got = within(cch.basic_get("q".into(), BasicGetOptions { no_ack: true }))
        .await
        .unwrap()
        .expect("the held message");
    assert_eq!(got.delivery.data, b"one");
    server.shutdown().await;
}

/// Once queues are crowded (here from the start: a queue keeps 8 stored messages in memory), a consumer's
/// unacknowledged persistent messages are held by their place in the store only. Whatever comes back (a
/// nack, a reject to a dead-letter queue, a closed channel's deliveries) is read back first and behaves as
/// a message held whole does: in its place, ahead of what follows, with its headers.
#[tokio::test]
async fn deliveries_held_by_their_place_come_back_whole_and_in_order() {
    let dir = data_dir("paging-held");
    let (server, b) = start_with(warren::config::Config {
        queue_in_memory_messages: 8,
        ..on_disk(&dir)
    })
    .await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    confirm_select(&ch).await;
    within(ch.queue_declare("held-dlq".into(), durable(), FieldTable::default()))
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert("x-dead-letter-exchange".into(), lstr(""));
    args.insert("x-dead-letter-routing-key".into(), lstr("held-dlq"));
    within(ch.queue_declare("held".into(), durable(), args))
        .await
        .unwrap();
    publish_numbered(&ch, "held", 0, 20, true).await;

    let cch = open(&conn).await;
    within(cch.basic_qos(10, Default::default())).await.unwrap();
    let mut d = consume(&cch, "held", manual_ack()).await;
    let first = d.next_n(10).await;
    assert_eq!(bodies(&first), numbered(0, 10));
    nack(&cch, first[0].delivery_tag, true).await;
    reject(&cch, first[1].delivery_tag, false).await;
    within(cch.basic_ack(first[4].delivery_tag, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    // The nacked message is redelivered before anything behind it.
    let next = d.next_n(5).await;
    let mut want = numbered(10, 14);
    want.insert(0, "msg-0".into());
    assert_eq!(bodies(&next), want);
    let flags: Vec<bool> = next.iter().map(|m| m.redelivered).collect();
    assert_eq!(flags, [true, false, false, false, false]);

    // The rejected one is dead-lettered whole: body, properties and x-death.
    wait_for_count(&ch, "held-dlq", 1).await;
    let dead = get(&ch, "held-dlq", true).await.expect("dead-lettered");
    assert_eq!(dead.delivery.data, b"msg-1");
    assert_eq!(dead.delivery.properties.delivery_mode(), &Some(2));
    assert_eq!(
        dl_headers(&dead.delivery.properties),
        expected_dl_headers(
            vec![death(1, "rejected", "held", "", &["held"], None)],
            ("rejected", "held", ""),
            vec![],
        )
    );

    // Closing the channel returns its ten outstanding deliveries to their places.
    within(cch.close(200, "bye".into())).await.unwrap();
    let head = get(&ch, "held", true).await.expect("requeued head");
    assert_eq!(head.delivery.data, b"msg-0");
    assert!(head.delivery.redelivered);
    let mut rest = numbered(5, 20);
    rest.retain(|m| m != "msg-0");
    assert_eq!(drain(&ch, "held").await, rest);

    // A quorum queue's returns go to its back, counted; past the delivery limit, to the dead-letter queue.
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), lstr("quorum"));
    args.insert("x-delivery-limit".into(), AMQPValue::LongInt(1));
    args.insert("x-dead-letter-exchange".into(), lstr(""));
    args.insert("x-dead-letter-routing-key".into(), lstr("held-dlq"));
    within(ch.queue_declare("held-qq".into(), durable(), args))
        .await
        .unwrap();
    publish_numbered(&ch, "held-qq", 0, 2, true).await;
    let cch = open(&conn).await;
    within(cch.basic_qos(2, Default::default())).await.unwrap();
    let mut d = consume(&cch, "held-qq", manual_ack()).await;
    let first = d.next_n(2).await;
    assert_eq!(bodies(&first), numbered(0, 2));
    nack(&cch, first[0].delivery_tag, true).await;
    let again = d.next().await;
    assert_eq!(again.data, b"msg-0");
    assert!(again.redelivered);
    let count = again
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned());
    assert_eq!(count, Some(AMQPValue::LongLongInt(1)));
    nack(&cch, again.delivery_tag, true).await;
    wait_for_count(&ch, "held-dlq", 1).await;
    let dead = get(&ch, "held-dlq", true).await.expect("past the limit");
    assert_eq!(dead.delivery.data, b"msg-0");
    drop(conn);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
