//! Consumer priorities (the x-priority consume argument): a higher-priority consumer gets the
//! messages while it has capacity. Checked against RabbitMQ 3.10.8.

use crate::common::*;
use lapin::options::*;

#[tokio::test]
async fn higher_priority_consumer_gets_messages_while_it_has_capacity() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = xq(&ch, "cprio", vec![]).await;
    let low_ch = open(&conn).await;
    let high_ch = open(&conn).await;
    within(low_ch.basic_qos(10, BasicQosOptions::default()))
        .await
        .unwrap();
    within(high_ch.basic_qos(2, BasicQosOptions::default()))
        .await
        .unwrap();
    // registered first, but lower priority
    let low = within(low_ch.basic_consume(
        q.as_str().into(),
        "low".into(),
        manual_ack(),
        table(vec![("x-priority", int(1))]),
    ))
    .await
    .unwrap();
    let mut low = deliveries(low);
    let high = within(high_ch.basic_consume(
        q.as_str().into(),
        "high".into(),
        manual_ack(),
        table(vec![("x-priority", int(10))]),
    ))
    .await
    .unwrap();
    let mut high = deliveries(high);
    for i in 0..5 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    let h = high.next_n(2).await;
    assert_eq!(bodies(&h), vec!["m0", "m1"]);
    assert_eq!(bodies(&low.next_n(3).await), vec!["m2", "m3", "m4"]);
    high.assert_quiet().await;
    for d in &h {
        ack(&high_ch, d.delivery_tag).await;
    }
    publish(&ch, "", &q, b"m5").await;
    assert_eq!(body(&high.next().await), "m5");
    low.assert_quiet().await;
}

#[tokio::test]
async fn higher_priority_auto_ack_consumer_gets_everything() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "cprio-auto", vec![]).await;
    let low = within(ch.basic_consume(
        q.as_str().into(),
        "low".into(),
        no_ack(),
        table(vec![("x-priority", int(-5))]),
    ))
    .await
    .unwrap();
    let mut low = deliveries(low);
    // no x-priority = 0 > -5
    let mut normal = consume_tagged(&ch, &q, "normal", no_ack()).await;
    for i in 0..4 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    assert_eq!(
        bodies(&normal.next_n(4).await),
        vec!["m0", "m1", "m2", "m3"]
    );
    low.assert_quiet().await;
}
