//! The virtual clock: a broker started on it (`--clock virtual`, `clock = "virtual"`, or the builder's
//! `virtual_clock`) keeps broker time still until a test advances it, and an advance fires everything due in
//! time order — message TTL and dead-lettering, queue expiry, consumer timeouts — in milliseconds of real
//! time. Over HTTP: `POST /api/warren/clock/advance {"ms": N}`.

use crate::common::*;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

async fn virtual_warren() -> (warren::Server, TestBroker) {
    own_warren_with(warren::Config {
        clock: "virtual".into(),
        ..test_config()
    })
    .await
}

#[tokio::test]
async fn an_hour_ttl_dead_letters_on_an_hours_advance_and_not_before() {
    let (server, b) = virtual_warren().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "dlq").await;
    declare_queue_with(
        &ch,
        "waiting",
        Default::default(),
        table(vec![
            ("x-message-ttl", long(HOUR.as_millis() as i64)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr("dlq")),
        ]),
    )
    .await;
    publish(&ch, "", "waiting", b"later").await;
    wait_for_count(&ch, "waiting", 1).await;
    let start = server.broker_time_ms();
    server.advance_clock(HOUR - Duration::from_millis(1));
    assert_eq!(
        queue_counts(&ch, "dlq").await.0,
        0,
        "expired before its hour"
    );
    assert_eq!(queue_counts(&ch, "waiting").await.0, 1);
    let now = server.advance_clock(Duration::from_millis(1));
    assert_eq!(now - start, HOUR.as_millis() as u64);
    let m = get_one(&ch, "dlq", true).await;
    assert_eq!(body(&m.delivery), "later");
    let death = match header(&m.delivery.properties, "x-death") {
        Some(lapin::types::AMQPValue::FieldArray(a)) => a.as_slice()[0].clone(),
        other => panic!("x-death: {other:?}"),
    };
    let lapin::types::AMQPValue::FieldTable(death) = death else {
        panic!("x-death entry")
    };
    assert_eq!(
        death.inner().get("time"),
        Some(&lapin::types::AMQPValue::Timestamp(now / 1000)),
        "x-death time is broker time"
    );
}

#[tokio::test]
async fn a_day_long_x_expires_queue_vanishes_on_a_days_advance() {
    let (server, b) = virtual_warren().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue_with(
        &ch,
        "day",
        Default::default(),
        table(vec![("x-expires", long(24 * 3_600_000))]),
    )
    .await;
    let exists = || {
        server
            .broker()
            .vhost("/")
            .and_then(|v| v.queue("day"))
            .is_some()
    };
    // (A passive declare would count as use and renew the lease, so look without touching it.)
    server.advance_clock(24 * HOUR - Duration::from_millis(1));
    assert!(exists(), "expired before its day");
    server.advance_clock(Duration::from_millis(1));
    assert!(!exists(), "still there after its day");
    let res = try_declare_queue(&ch, "day", passive(), Default::default()).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        404,
        "NOT_FOUND - no queue 'day' in vhost '/'",
    )
    .await;
}

#[tokio::test]
async fn a_consumer_timeout_fires_on_an_advance() {
    let (server, b) = virtual_warren().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "slow").await;
    publish(&ch, "", "slow", b"unacked").await;
    let mut c = consume(&ch, "slow", manual_ack()).await;
    c.next().await;
    server.advance_clock(Duration::from_secs(29 * 60));
    assert!(ch.status().connected());
    server.advance_clock(Duration::from_secs(60));
    assert_channel_closed(
        &c.error().await,
        406,
        "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value used: 1800000 ms. This timeout value can be configured, see consumers doc guide to learn more",
    );
}

#[tokio::test]
async fn retries_with_delays_run_in_virtual_time() {
    // A retry loop: work -> (reject) -> wait queue with a 10-minute TTL -> back to work. Five rounds take
    // fifty minutes of broker time and a moment of real time.
    let (server, b) = virtual_warren().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue_with(
        &ch,
        "work",
        Default::default(),
        table(vec![
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr("wait")),
        ]),
    )
    .await;
    declare_queue_with(
        &ch,
        "wait",
        Default::default(),
        table(vec![
            ("x-message-ttl", long(600_000)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr("work")),
        ]),
    )
    .await;
    publish(&ch, "", "work", b"job").await;
    let real = std::time::Instant::now();
    for round in 1..=5 {
        let m = get_wait(&ch, "work", false).await;
        reject(&ch, m.delivery.delivery_tag, false).await;
        wait_for_count(&ch, "wait", 1).await;
        server.advance_clock(Duration::from_secs(600));
        let m = get_wait(&ch, "work", false).await;
        let count = match header(&m.delivery.properties, "x-death") {
            Some(lapin::types::AMQPValue::FieldArray(a)) => a.as_slice().len(),
            _ => 0,
        };
        assert_eq!(
            count, 2,
            "round {round}: rejected from work, expired from wait"
        );
        nack(&ch, m.delivery.delivery_tag, true).await;
    }
    assert!(real.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_clock_endpoints_advance_a_virtual_clock_and_refuse_a_real_one() {
    let (server, _b) = virtual_warren().await;
    let mgmt = server.management_url().expect("management");
    let http = reqwest::Client::new();
    let before: serde_json::Value = http
        .get(format!("{mgmt}/api/warren/clock"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .expect("GET clock")
        .json()
        .await
        .expect("json");
    assert_eq!(before["mode"], "virtual");
    let r = http
        .post(format!("{mgmt}/api/warren/clock/advance"))
        .basic_auth("guest", Some("guest"))
        .json(&serde_json::json!({"ms": 90_000}))
        .send()
        .await
        .expect("POST advance");
    assert_eq!(r.status(), 200);
    let after: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        after["now"].as_u64().unwrap_or(0) - before["now"].as_u64().unwrap_or(0),
        90_000
    );

    let real = warren::Server::builder().start().await.expect("start");
    let r = http
        .post(format!(
            "{}/api/warren/clock/advance",
            real.management_url().expect("mgmt")
        ))
        .basic_auth("guest", Some("guest"))
        .json(&serde_json::json!({"ms": 1}))
        .send()
        .await
        .expect("POST advance");
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn warrenctl_advances_the_clock() {
    let (server, _b) = virtual_warren().await;
    let mgmt = server.management_url().expect("management");
    let before = server.broker_time_ms();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .args(["--url", &mgmt, "-q", "advance_clock", "90s"])
        .output()
        .await
        .expect("run warrenctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("broker time on stdout");
    assert_eq!(now - before, 90_000);
    assert_eq!(server.broker_time_ms(), now);
}

async fn idle(mgmt: &str, timeout_ms: u64) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .get(format!("{mgmt}/api/warren/idle?timeout_ms={timeout_ms}"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .expect("GET idle");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

#[tokio::test]
async fn idle_answers_at_once_on_a_quiet_broker_and_waits_for_a_slow_consumer() {
    let (server, b) = own_warren_with(test_config()).await;
    let mgmt = server.management_url().expect("management");
    let (status, body) = idle(&mgmt, 5000).await;
    assert_eq!(
        (status, body["idle"].clone()),
        (200, serde_json::json!(true))
    );

    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "work").await;
    let mut c = consume(&ch, "work", manual_ack()).await;
    publish(&ch, "", "work", b"job").await;
    // The consumer holds the delivery: not idle; 408 says why.
    let d = c.next().await;
    let (status, body) = idle(&mgmt, 50).await;
    assert_eq!(status, 408);
    assert_eq!(body["pending"]["unacknowledged_deliveries"], 1);
    // A slow consumer acks later; idle waits for it.
    let acker = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        d.ack(Default::default()).await.expect("ack");
    });
    let (status, body) = idle(&mgmt, 5000).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["waited_ms"].as_u64().unwrap_or(0) >= 100, "{body}");
    acker.await.expect("acker");
}

#[tokio::test]
async fn a_timeout_behind_an_older_delivery_without_one_is_not_missed() {
    // The broker has no default timeout; queue "timed" has 200 ms. The channel's oldest delivery comes from
    // "untimed"; once that is acked, the "timed" one is the oldest and must still time out.
    let (server, b) = own_warren_with(warren::Config {
        clock: "virtual".into(),
        consumer_timeout: 0,
        ..test_config()
    })
    .await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "untimed").await;
    declare_queue_with(
        &ch,
        "timed",
        Default::default(),
        table(vec![("x-consumer-timeout", long(200))]),
    )
    .await;
    publish(&ch, "", "untimed", b"u").await;
    publish(&ch, "", "timed", b"t").await;
    let first = get_wait(&ch, "untimed", false).await;
    let mut c = consume(&ch, "timed", manual_ack()).await;
    c.next().await;
    ack(&ch, first.delivery.delivery_tag).await;
    // The ack has been handled once a round trip on the channel returns.
    declare_queue(&ch, "untimed").await;
    server.advance_clock(Duration::from_millis(250));
    assert_channel_closed(
        &c.error().await,
        406,
        "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value used: 200 ms. This timeout value can be configured, see consumers doc guide to learn more",
    );
}

#[tokio::test]
async fn channels_opened_and_closed_by_the_hundred_leave_no_timers_behind() {
    let (server, b) = virtual_warren().await;
    let conn = connect(&b).await;
    let setup = open(&conn).await;
    declare_queue(&setup, "churn").await;
    for i in 0..300 {
        publish(&setup, "", "churn", format!("m{i}").as_bytes()).await;
    }
    let before = server.broker().timers.pending();
    for _ in 0..300 {
        let ch = open(&conn).await;
        get_wait(&ch, "churn", false).await;
        within(ch.close(200, "bye".into())).await.expect("close");
    }
    let after = server.broker().timers.pending();
    assert!(
        after <= before + 2,
        "{before} timers before, {after} after 300 channels"
    );
}
