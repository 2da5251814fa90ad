//! Routing semantics of the built-in exchange types.

use crate::common::*;
use lapin::{
    options::*,
    types::{AMQPValue, DecimalValue, FieldTable},
    BasicProperties, Channel, ExchangeKind,
};

/// Publish a marker to the default exchange behind the test messages and wait for it: once it
/// is in the queue, everything published before it on this channel has been routed.
async fn settle(ch: &Channel) {
    let q = excl_queue(ch, "settle").await;
    publish(ch, "", &q, b"marker").await;
    wait_for_count(ch, &q, 1).await;
}

#[tokio::test]
async fn direct_exact_match_only() {
    let (_conn, ch) = setup().await;
    let x = unique("direct");
    declare_exchange(&ch, &x, ExchangeKind::Direct).await;
    let q1 = excl_queue(&ch, "d1").await;
    let q2 = excl_queue(&ch, "d2").await;
    bind(&ch, &q1, &x, "key").await;
    bind(&ch, &q2, &x, "key").await;
    bind(&ch, &q2, &x, "other").await;
    for rk in ["key", "other", "ke", "key.x", "KEY", ""] {
        publish(&ch, &x, rk, rk.as_bytes()).await;
    }
    settle(&ch).await;
    assert_eq!(drain(&ch, &q1).await, vec!["key"]);
    assert_eq!(drain(&ch, &q2).await, vec!["key", "other"]);
    within(ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn direct_same_queue_two_keys_one_copy_each() {
    let (_conn, ch) = setup().await;
    let q = excl_queue(&ch, "d-two").await;
    bind(&ch, &q, "amq.direct", &format!("{q}-a")).await;
    bind(&ch, &q, "amq.direct", &format!("{q}-b")).await;
    // duplicate binding is idempotent
    bind(&ch, &q, "amq.direct", &format!("{q}-a")).await;
    publish(&ch, "amq.direct", &format!("{q}-a"), b"A").await;
    publish(&ch, "amq.direct", &format!("{q}-b"), b"B").await;
    settle(&ch).await;
    assert_eq!(drain(&ch, &q).await, vec!["A", "B"]);
}

#[tokio::test]
async fn default_exchange_routes_by_queue_name() {
    let (_conn, ch) = setup().await;
    let q = excl_queue(&ch, "dflt").await;
    publish(&ch, "", &q, b"hit").await;
    publish(&ch, "", &format!("{q}-nope"), b"miss").await;
    settle(&ch).await;
    let m = get_one(&ch, &q, true).await;
    assert_eq!(body(&m.delivery), "hit");
    assert_eq!(m.delivery.exchange.as_str(), "");
    assert_eq!(m.delivery.routing_key.as_str(), q);
    assert!(get(&ch, &q, true).await.is_none());
}

#[tokio::test]
async fn fanout_ignores_routing_key() {
    let (_conn, ch) = setup().await;
    let x = unique("fan");
    declare_exchange(&ch, &x, ExchangeKind::Fanout).await;
    let qs = [
        excl_queue(&ch, "f1").await,
        excl_queue(&ch, "f2").await,
        excl_queue(&ch, "f3").await,
    ];
    bind(&ch, &qs[0], &x, "").await;
    bind(&ch, &qs[1], &x, "whatever").await;
    bind(&ch, &qs[2], &x, "x.y.#").await;
    publish(&ch, &x, "anything", b"one").await;
    publish(&ch, &x, "", b"two").await;
    settle(&ch).await;
    for q in &qs {
        assert_eq!(drain(&ch, q).await, vec!["one", "two"], "queue {q}");
    }
    within(ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .unwrap();
}

const TOPIC_KEYS: &[&str] = &[
    "", ".", "a", "b", "a.", ".a", "a.b", "a.c", "b.a", "a..b", "a.x.b", "a.b.c", "a.x.y.b", "a#",
    "a.*#", "a.b#", "x.a",
];

/// (binding pattern, routing keys from TOPIC_KEYS it must match; all others must not match).
/// Words are split on '.', '' is zero words, '.' is two empty words, '*' is exactly one (possibly
/// empty) word, '#' zero or more words, and both are special only as whole words.
const TOPIC_TABLE: &[(&str, &[&str])] = &[
    (
        "#",
        &[
            "", ".", "a", "b", "a.", ".a", "a.b", "a.c", "b.a", "a..b", "a.x.b", "a.b.c",
            "a.x.y.b", "a#", "a.*#", "a.b#", "x.a",
        ],
    ),
    ("*", &["a", "b", "a#"]),
    ("", &[""]),
    ("a", &["a"]),
    (
        "a.#",
        &[
            "a", "a.", "a.b", "a.c", "a..b", "a.x.b", "a.b.c", "a.x.y.b", "a.*#", "a.b#",
        ],
    ),
    ("#.a", &["a", ".a", "b.a", "x.a"]),
    ("a.#.b", &["a.b", "a..b", "a.x.b", "a.x.y.b"]),
    (
        "*.#",
        &[
            ".", "a", "b", "a.", ".a", "a.b", "a.c", "b.a", "a..b", "a.x.b", "a.b.c", "a.x.y.b",
            "a#", "a.*#", "a.b#", "x.a",
        ],
    ),
    (
        "#.*",
        &[
            ".", "a", "b", "a.", ".a", "a.b", "a.c", "b.a", "a..b", "a.x.b", "a.b.c", "a.x.y.b",
            "a#", "a.*#", "a.b#", "x.a",
        ],
    ),
    ("a#", &["a#"]),
    ("a.*#", &["a.*#"]),
    ("a.*", &["a.", "a.b", "a.c", "a.*#", "a.b#"]),
    (
        "*.*",
        &[".", "a.", ".a", "a.b", "a.c", "b.a", "a.*#", "a.b#", "x.a"],
    ),
    ("a.b", &["a.b"]),
    ("a.*.c", &["a.b.c"]),
    (
        "#.b.#",
        &["b", "a.b", "b.a", "a..b", "a.x.b", "a.b.c", "a.x.y.b"],
    ),
    ("*.a", &[".a", "b.a", "x.a"]),
    (".", &["."]),
    (
        "#.#",
        &[
            "", ".", "a", "b", "a.", ".a", "a.b", "a.c", "b.a", "a..b", "a.x.b", "a.b.c",
            "a.x.y.b", "a#", "a.*#", "a.b#", "x.a",
        ],
    ),
    (
        "a.*.#",
        &[
            "a.", "a.b", "a.c", "a..b", "a.x.b", "a.b.c", "a.x.y.b", "a.*#", "a.b#",
        ],
    ),
];

#[tokio::test]
async fn topic_word_rules_table() {
    let (_conn, ch) = setup().await;
    let x = unique("topic");
    declare_exchange(&ch, &x, ExchangeKind::Topic).await;
    let mut queues = Vec::new();
    for (pattern, _) in TOPIC_TABLE {
        let q = excl_queue(&ch, "t").await;
        bind(&ch, &q, &x, pattern).await;
        queues.push(q);
    }
    for rk in TOPIC_KEYS {
        publish(&ch, &x, rk, format!("<{rk}>").as_bytes()).await;
    }
    settle(&ch).await;
    let mut failures = Vec::new();
    for ((pattern, expected), q) in TOPIC_TABLE.iter().zip(&queues) {
        let got = drain(&ch, q).await;
        let want: Vec<String> = TOPIC_KEYS
            .iter()
            .filter(|k| expected.contains(k))
            .map(|k| format!("<{k}>"))
            .collect();
        if got != want {
            failures.push(format!("pattern {pattern:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "topic mismatches:\n{}",
        failures.join("\n")
    );
    within(ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn topic_overlapping_bindings_deliver_once() {
    let (_conn, ch) = setup().await;
    let x = unique("topic-once");
    declare_exchange(&ch, &x, ExchangeKind::Topic).await;
    let q = excl_queue(&ch, "t-once").await;
    for p in ["#", "a.*", "a.b", "*.b", "a.#"] {
        bind(&ch, &q, &x, p).await;
    }
    publish(&ch, &x, "a.b", b"ab").await;
    publish(&ch, &x, "z", b"z").await;
    settle(&ch).await;
    assert_eq!(drain(&ch, &q).await, vec!["ab", "z"]);
    within(ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn topic_unbind_stops_routing() {
    let (_conn, ch) = setup().await;
    let q = excl_queue(&ch, "t-unbind").await;
    let pattern = format!("{q}.*");
    bind(&ch, &q, "amq.topic", &pattern).await;
    publish(&ch, "amq.topic", &format!("{q}.one"), b"1").await;
    settle(&ch).await;
    within(ch.queue_unbind(
        q.as_str().into(),
        "amq.topic".into(),
        pattern.as_str().into(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    publish(&ch, "amq.topic", &format!("{q}.two"), b"2").await;
    settle(&ch).await;
    assert_eq!(drain(&ch, &q).await, vec!["1"]);
}

#[tokio::test]
async fn headers_match_modes_and_types() {
    let (_conn, ch) = setup().await;
    let x = unique("headers");
    declare_exchange(&ch, &x, ExchangeKind::Headers).await;
    let bindings: Vec<(&str, FieldTable)> = vec![
        (
            "all",
            table(vec![
                ("x-match", lstr("all")),
                ("a", AMQPValue::LongInt(1)),
                ("b", lstr("x")),
            ]),
        ),
        (
            "any",
            table(vec![
                ("x-match", lstr("any")),
                ("a", AMQPValue::LongInt(1)),
                ("b", lstr("x")),
            ]),
        ),
        (
            "default-all",
            table(vec![("a", AMQPValue::LongInt(1)), ("b", lstr("x"))]),
        ),
        ("all-empty", table(vec![("x-match", lstr("all"))])),
        ("any-empty", table(vec![("x-match", lstr("any"))])),
        (
            "all-ignores-x",
            table(vec![("x-match", lstr("all")), ("x-foo", lstr("bar"))]),
        ),
        (
            "any-ignores-x",
            table(vec![("x-match", lstr("any")), ("x-foo", lstr("bar"))]),
        ),
        (
            "all-with-x",
            table(vec![
                ("x-match", lstr("all-with-x")),
                ("x-foo", lstr("bar")),
                ("a", AMQPValue::LongInt(1)),
            ]),
        ),
        (
            "any-with-x",
            table(vec![
                ("x-match", lstr("any-with-x")),
                ("x-foo", lstr("bar")),
            ]),
        ),
        (
            "void-presence",
            table(vec![("x-match", lstr("all")), ("a", AMQPValue::Void)]),
        ),
    ];
    let mut queues = Vec::new();
    for (name, args) in &bindings {
        let q = excl_queue(&ch, name).await;
        bind_args(&ch, &q, &x, "ignored-rk", args.clone()).await;
        queues.push(q);
    }
    let messages: Vec<(&str, Option<FieldTable>)> = vec![
        (
            "m-long",
            Some(table(vec![("a", long(1)), ("b", lstr("x"))])),
        ),
        ("m-short", Some(table(vec![("a", AMQPValue::ShortInt(1))]))),
        (
            "m-str1",
            Some(table(vec![("a", lstr("1")), ("b", lstr("x"))])),
        ),
        ("m-none", None),
        ("m-empty", Some(FieldTable::default())),
        (
            "m-xfoo-a",
            Some(table(vec![
                ("x-foo", lstr("bar")),
                ("a", AMQPValue::LongInt(1)),
            ])),
        ),
        ("m-xfoo", Some(table(vec![("x-foo", lstr("bar"))]))),
        (
            "m-a2",
            Some(table(vec![("a", AMQPValue::LongInt(2)), ("b", lstr("x"))])),
        ),
        (
            "m-extra",
            Some(table(vec![
                ("a", AMQPValue::ShortShortInt(1)),
                ("b", lstr("x")),
                ("c", lstr("y")),
            ])),
        ),
        ("m-bool", Some(table(vec![("a", AMQPValue::Boolean(true))]))),
    ];
    for (name, headers) in &messages {
        let mut props = BasicProperties::default();
        if let Some(h) = headers {
            props = props.with_headers(h.clone());
        }
        publish_props(&ch, &x, "some-key", name.as_bytes(), props).await;
    }
    settle(&ch).await;
    let expected: &[(&str, &[&str])] = &[
        ("all", &["m-long", "m-extra"]),
        (
            "any",
            &["m-long", "m-short", "m-str1", "m-xfoo-a", "m-a2", "m-extra"],
        ),
        ("default-all", &["m-long", "m-extra"]),
        (
            "all-empty",
            &[
                "m-long", "m-short", "m-str1", "m-none", "m-empty", "m-xfoo-a", "m-xfoo", "m-a2",
                "m-extra", "m-bool",
            ],
        ),
        ("any-empty", &[]),
        (
            "all-ignores-x",
            &[
                "m-long", "m-short", "m-str1", "m-none", "m-empty", "m-xfoo-a", "m-xfoo", "m-a2",
                "m-extra", "m-bool",
            ],
        ),
        ("any-ignores-x", &[]),
        ("all-with-x", &["m-xfoo-a"]),
        ("any-with-x", &["m-xfoo-a", "m-xfoo"]),
        (
            "void-presence",
            &[
                "m-long", "m-short", "m-str1", "m-xfoo-a", "m-a2", "m-extra", "m-bool",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for ((name, want), q) in expected.iter().zip(&queues) {
        let got = drain(&ch, q).await;
        if got != *want {
            failures.push(format!("binding {name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "headers mismatches:\n{}",
        failures.join("\n")
    );
    within(ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn headers_value_type_classes() {
    let (_conn, ch) = setup().await;
    let x = unique("headers-types");
    declare_exchange(&ch, &x, ExchangeKind::Headers).await;
    let bindings: Vec<(&str, AMQPValue)> = vec![
        ("int", AMQPValue::LongInt(1)),
        ("double", AMQPValue::Double(1.0)),
        ("str", lstr("1")),
        ("bool", AMQPValue::Boolean(true)),
        (
            "decimal",
            AMQPValue::DecimalValue(DecimalValue { scale: 0, value: 1 }),
        ),
    ];
    let mut queues = Vec::new();
    for (name, v) in &bindings {
        let q = excl_queue(&ch, name).await;
        bind_args(
            &ch,
            &q,
            &x,
            "",
            table(vec![("x-match", lstr("all")), ("v", v.clone())]),
        )
        .await;
        queues.push(q);
    }
    let messages: Vec<(&str, AMQPValue)> = vec![
        ("byte", AMQPValue::ShortShortInt(1)),
        ("ubyte", AMQPValue::ShortShortUInt(1)),
        ("short", AMQPValue::ShortInt(1)),
        ("ushort", AMQPValue::ShortUInt(1)),
        ("long", AMQPValue::LongLongInt(1)),
        ("uint", AMQPValue::LongUInt(1)),
        ("timestamp", AMQPValue::Timestamp(1)),
        ("float", AMQPValue::Float(1.0)),
        ("double", AMQPValue::Double(1.0)),
        ("str", lstr("1")),
        ("bytes", AMQPValue::ByteArray(b"1".to_vec().into())),
        ("bool", AMQPValue::Boolean(true)),
        (
            "decimal",
            AMQPValue::DecimalValue(DecimalValue { scale: 0, value: 1 }),
        ),
    ];
    for (name, v) in &messages {
        let props = BasicProperties::default().with_headers(table(vec![("v", v.clone())]));
        publish_props(&ch, &x, "", name.as_bytes(), props).await;
    }
    settle(&ch).await;
    let mut got = Vec::new();
    for ((name, _), q) in bindings.iter().zip(&queues) {
        got.push((name.to_string(), drain(&ch, q).await));
    }
    let expected: Vec<(String, Vec<String>)> = [
        (
            "int",
            vec![
                "byte",
                "ubyte",
                "short",
                "ushort",
                "long",
                "uint",
                "timestamp",
                "float",
                "double",
            ],
        ),
        (
            "double",
            vec![
                "byte",
                "ubyte",
                "short",
                "ushort",
                "long",
                "uint",
                "timestamp",
                "float",
                "double",
            ],
        ),
        ("str", vec!["str", "bytes"]),
        ("bool", vec!["bool"]),
        ("decimal", vec!["decimal"]),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(got, expected);
    within(ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn headers_invalid_x_match_is_406() {
    let (conn, ch) = setup().await;
    let q = excl_queue(&ch, "h-bad").await;
    let res = within(ch.queue_bind(
        q.as_str().into(),
        "amq.headers".into(),
        "".into(),
        QueueBindOptions::default(),
        table(vec![("x-match", lstr("foo"))]),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        "PRECONDITION_FAILED - Invalid x-match field value <<\"foo\">>; expected all, any, all-with-x, or any-with-x",
    )
    .await;
}

#[tokio::test]
async fn headers_non_string_x_match_is_406() {
    let (conn, ch) = setup().await;
    let q = excl_queue(&ch, "h-bad-type").await;
    let res = within(ch.queue_bind(
        q.as_str().into(),
        "amq.match".into(),
        "".into(),
        QueueBindOptions::default(),
        table(vec![("x-match", AMQPValue::LongInt(5))]),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        "PRECONDITION_FAILED - Invalid x-match field type signedint (value 5); expected longstr",
    )
    .await;
}

#[tokio::test]
async fn headers_unbind_with_args() {
    let (_conn, ch) = setup().await;
    let q = excl_queue(&ch, "h-unbind").await;
    let args = table(vec![("x-match", lstr("all")), ("route", lstr(&q))]);
    bind_args(&ch, &q, "amq.headers", "", args.clone()).await;
    let props = || BasicProperties::default().with_headers(table(vec![("route", lstr(&q))]));
    publish_props(&ch, "amq.headers", "", b"before", props()).await;
    settle(&ch).await;
    within(ch.queue_unbind(q.as_str().into(), "amq.headers".into(), "".into(), args))
        .await
        .unwrap();
    publish_props(&ch, "amq.headers", "", b"after", props()).await;
    settle(&ch).await;
    assert_eq!(drain(&ch, &q).await, vec!["before"]);
}
