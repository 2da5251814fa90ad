//! Dead-lettering: the x-death headers a dead-lettered message must carry, and a normalised view of
//! the ones it does carry.

use super::*;
use lapin::{
    protocol::BasicProperties,
    types::{AMQPValue, FieldTable},
};
use std::time::{SystemTime, UNIX_EPOCH};

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One expected x-death entry (its `time` is normalised to 0 by [`dl_headers`]).
pub fn death(
    count: i64,
    reason: &str,
    queue: &str,
    exchange: &str,
    keys: &[&str],
    original_expiration: Option<&str>,
) -> AMQPValue {
    let mut e = vec![
        ("count", long(count)),
        ("reason", lstr(reason)),
        ("queue", lstr(queue)),
        ("time", AMQPValue::Timestamp(0)),
        ("exchange", lstr(exchange)),
        ("routing-keys", strs(keys)),
    ];
    if let Some(x) = original_expiration {
        e.push(("original-expiration", lstr(x)));
    }
    AMQPValue::FieldTable(table(e))
}

/// The full header table a dead-lettered message must carry: `deaths` (newest first), the
/// x-first-death-* fields (reason, queue, exchange) and any other headers.
pub fn expected_dl_headers(
    deaths: Vec<AMQPValue>,
    first: (&str, &str, &str),
    other: Vec<(&str, AMQPValue)>,
) -> FieldTable {
    let mut h = table(other);
    h.insert("x-death".into(), AMQPValue::FieldArray(deaths.into()));
    h.insert("x-first-death-reason".into(), lstr(first.0));
    h.insert("x-first-death-queue".into(), lstr(first.1));
    h.insert("x-first-death-exchange".into(), lstr(first.2));
    h
}

/// The message's headers with every x-death `time` checked (a timestamp within a minute of
/// now) and then replaced by 0, so the table can be compared exactly.
pub fn dl_headers(props: &BasicProperties) -> FieldTable {
    let mut h = props
        .headers()
        .clone()
        .expect("dead-lettered message has no headers");
    let deaths = match h.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.clone(),
        other => panic!("x-death is not an array: {other:?}"),
    };
    let mut out = Vec::new();
    for d in deaths.as_slice() {
        let AMQPValue::FieldTable(t) = d else {
            panic!("x-death entry is not a table: {d:?}")
        };
        let mut t = t.clone();
        match t.inner().get("time") {
            Some(AMQPValue::Timestamp(ts)) => {
                let now = now_secs();
                assert!(
                    *ts + 60 >= now && *ts <= now + 60,
                    "x-death time {ts} is not close to now {now}"
                );
            }
            other => panic!("x-death time is not a timestamp: {other:?}"),
        }
        t.insert("time".into(), AMQPValue::Timestamp(0));
        out.push(AMQPValue::FieldTable(t));
    }
    h.insert("x-death".into(), AMQPValue::FieldArray(out.into()));
    h
}
