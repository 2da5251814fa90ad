//! Length limits (x-max-length, x-max-length-bytes) and overflow: drop-head dead-letters the oldest
//! messages, reject-publish nacks the new one (and dead-letters it with reject-publish-dlx).
//! Checked against RabbitMQ 3.10.8.

use crate::common::*;
use lapin::Confirmation;

#[tokio::test]
async fn max_length_drop_head_dead_letters_oldest() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "maxlen-dlq", vec![]).await;
    let q = xq(
        &ch,
        "maxlen",
        vec![
            ("x-max-length", int(2)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    for m in ["m1", "m2", "m3", "m4"] {
        publish(&ch, "", &q, m.as_bytes()).await;
    }
    wait_for_count(&ch, &dlq, 2).await;
    assert_eq!(queue_counts(&ch, &q).await.0, 2);
    assert_eq!(drain(&ch, &q).await, vec!["m3", "m4"]);
    for expected in ["m1", "m2"] {
        let d = get_one(&ch, &dlq, true).await;
        assert_eq!(body(&d.delivery), expected);
        assert_eq!(d.delivery.exchange.as_str(), "");
        assert_eq!(d.delivery.routing_key.as_str(), dlq);
        assert_eq!(
            dl_headers(&d.delivery.properties),
            expected_dl_headers(
                vec![death(1, "maxlen", &q, "", &[&q], None)],
                ("maxlen", &q, ""),
                vec![],
            )
        );
    }
}

#[tokio::test]
async fn max_length_bytes_drop_head() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "maxbytes-dlq", vec![]).await;
    let q = xq(
        &ch,
        "maxbytes",
        vec![
            ("x-max-length-bytes", int(10)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    // bodies count, not properties
    for m in ["aaaa", "bbbb", "cccc"] {
        publish_props(
            &ch,
            "",
            &q,
            m.as_bytes(),
            with_headers(vec![("pad", lstr(&"p".repeat(100)))]),
        )
        .await;
    }
    wait_for_count(&ch, &dlq, 1).await;
    assert_eq!(queue_counts(&ch, &q).await.0, 2);
    // a message larger than the limit pushes everything out, itself included
    publish(&ch, "", &q, b"eleven-byte").await;
    wait_for_count(&ch, &dlq, 4).await;
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
    assert_eq!(
        drain(&ch, &dlq).await,
        vec!["aaaa", "bbbb", "cccc", "eleven-byte"]
    );
}

#[tokio::test]
async fn max_length_zero_drops_every_message() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "maxlen0-dlq", vec![]).await;
    let q = xq(
        &ch,
        "maxlen0",
        vec![
            ("x-max-length", int(0)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    confirm_select(&ch).await;
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &q, false, b"m").await
    ));
    wait_for_count(&ch, &dlq, 1).await;
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
    let d = get_one(&ch, &dlq, true).await;
    assert_eq!(
        dl_headers(&d.delivery.properties),
        expected_dl_headers(
            vec![death(1, "maxlen", &q, "", &[&q], None)],
            ("maxlen", &q, ""),
            vec![],
        )
    );
}

#[tokio::test]
async fn max_length_zero_reject_publish_nacks() {
    let (_conn, ch) = setup().await;
    let q = xq(
        &ch,
        "maxlen0-rp",
        vec![
            ("x-max-length", int(0)),
            ("x-overflow", lstr("reject-publish")),
        ],
    )
    .await;
    confirm_select(&ch).await;
    assert!(is_nack(&publish_confirm(&ch, "", &q, false, b"m").await));
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
}

#[tokio::test]
async fn reject_publish_nacks_overflow_without_dead_lettering() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "rp-dlq", vec![]).await;
    let q = xq(
        &ch,
        "rp",
        vec![
            ("x-max-length", int(2)),
            ("x-overflow", lstr("reject-publish")),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    confirm_select(&ch).await;
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &q, false, b"m1").await
    ));
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &q, false, b"m2").await
    ));
    let c = publish_confirm(&ch, "", &q, false, b"m3").await;
    assert!(matches!(c, Confirmation::Nack(None)), "{c:?}");
    // room again after one is taken
    assert_eq!(body(&get_one(&ch, &q, true).await.delivery), "m1");
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &q, false, b"m4").await
    ));
    assert_eq!(drain(&ch, &q).await, vec!["m2", "m4"]);
    stays_at(&ch, &dlq, 0).await;
}

#[tokio::test]
async fn reject_publish_dlx_nacks_and_dead_letters() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "rpdlx-dlq", vec![]).await;
    let q = xq(
        &ch,
        "rpdlx",
        vec![
            ("x-max-length", int(1)),
            ("x-overflow", lstr("reject-publish-dlx")),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    confirm_select(&ch).await;
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &q, false, b"m1").await
    ));
    assert!(is_nack(&publish_confirm(&ch, "", &q, false, b"m2").await));
    wait_for_count(&ch, &dlq, 1).await;
    assert_eq!(drain(&ch, &q).await, vec!["m1"]);
    let d = get_one(&ch, &dlq, true).await;
    assert_eq!(body(&d.delivery), "m2");
    assert_eq!(
        dl_headers(&d.delivery.properties),
        expected_dl_headers(
            vec![death(1, "maxlen", &q, "", &[&q], None)],
            ("maxlen", &q, ""),
            vec![],
        )
    );
}
