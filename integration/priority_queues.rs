//! Priority queues (x-max-priority): messages leave by priority (a priority above the maximum counts
//! as the maximum) and in FIFO order within one, to basic.get and to consumers; without the argument
//! the priority is ignored; the argument's bounds. Checked against RabbitMQ 3.10.8.

use crate::common::*;
use crate::common::{exclusive as excl, try_declare_queue as declare};
use lapin::BasicProperties;

#[tokio::test]
async fn priority_queue_orders_by_priority_then_fifo() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "prio", vec![("x-max-priority", int(5))]).await;
    let msgs: [(&str, Option<u8>); 8] = [
        ("a", None),
        ("b", Some(3)),
        ("c", Some(9)),
        ("d", Some(5)),
        ("e", Some(0)),
        ("f", Some(3)),
        ("g", Some(1)),
        ("h", Some(255)),
    ];
    for (m, p) in msgs {
        let props = match p {
            Some(p) => prio(p),
            None => BasicProperties::default(),
        };
        publish_props(&ch, "", &q, m.as_bytes(), props).await;
    }
    wait_for_count(&ch, &q, 8).await;
    let mut got = Vec::new();
    while let Some(m) = get(&ch, &q, true).await {
        got.push((body(&m.delivery), *m.delivery.properties.priority()));
    }
    // above max counts as max, but the property is delivered unchanged
    assert_eq!(
        got,
        vec![
            ("c".to_string(), Some(9)),
            ("d".to_string(), Some(5)),
            ("h".to_string(), Some(255)),
            ("b".to_string(), Some(3)),
            ("f".to_string(), Some(3)),
            ("g".to_string(), Some(1)),
            ("a".to_string(), None),
            ("e".to_string(), Some(0)),
        ]
    );
}

#[tokio::test]
async fn priority_is_ignored_without_max_priority() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "noprio", vec![]).await;
    for (m, p) in [("a", 1u8), ("b", 9), ("c", 5)] {
        publish_props(&ch, "", &q, m.as_bytes(), prio(p)).await;
    }
    wait_for_count(&ch, &q, 3).await;
    assert_eq!(drain(&ch, &q).await, vec!["a", "b", "c"]);
}

#[tokio::test]
async fn priority_queue_delivers_to_consumer_by_priority() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "prio-consume", vec![("x-max-priority", int(10))]).await;
    for (m, p) in [("low", 1u8), ("high", 8), ("mid", 4)] {
        publish_props(&ch, "", &q, m.as_bytes(), prio(p)).await;
    }
    wait_for_count(&ch, &q, 3).await;
    let mut c = consume(&ch, &q, no_ack()).await;
    assert_eq!(bodies(&c.next_n(3).await), vec!["high", "mid", "low"]);
}

#[tokio::test]
async fn max_priority_above_255_is_rejected() {
    let (conn, ch) = setup().await;
    let q = unique("prio256");
    let res = declare(&ch, &q, excl(), table(vec![("x-max-priority", int(256))])).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '{q}' in vhost '/': {{max_value_exceeded,256}}"),
    )
    .await;
}
