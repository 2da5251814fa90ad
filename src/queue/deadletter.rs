//! Dead-lettering: the pure part. Given a message that died in a queue, build the message that is republished
//! to the dead-letter exchange, with RabbitMQ's `x-death` bookkeeping (one entry per queue and reason, newest
//! first, with a count), the `x-first-death-*` headers, and the per-message expiration moved into the entry.

use crate::protocol::{self, fields};
use crate::queue::message::Message;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Rejected,
    Expired,
    Maxlen,
    DeliveryLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

fn ls(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// The routing keys a message was published with: its routing key and any CC keys.
pub fn publish_keys(msg: &Message) -> Vec<String> {
    let mut keys = vec![msg.routing_key.to_string()];
    if let Some(h) = msg.props().headers() {
        if let Some(AMQPValue::FieldArray(a)) = fields::get(h, "CC") {
            keys.extend(
                a.as_slice()
                    .iter()
                    .filter_map(fields::as_str)
                    .map(|s| s.into_owned()),
            );
        }
    }
    keys
}

/// The queue names recorded in a message's x-death entries, and whether any death was a rejection.
pub fn death_history(msg: &Message) -> (Vec<String>, bool) {
    let mut queues = Vec::new();
    let mut rejected = false;
    if let Some(AMQPValue::FieldArray(a)) = msg
        .props()
        .headers()
        .as_ref()
        .and_then(|h| fields::get(h, "x-death"))
    {
        for e in a.as_slice() {
            if let AMQPValue::FieldTable(t) = e {
                if let Some(q) = fields::get(t, "queue").and_then(fields::as_str) {
                    queues.push(q.into_owned());
                }
                if fields::get(t, "reason")
                    .and_then(fields::as_str)
                    .is_some_and(|r| r == "rejected")
                {
                    rejected = true;
                }
            }
        }
    }
    (queues, rejected)
}

/// Where a message dies: its queue, why, and whose x-death records count.
#[derive(Debug, Clone, Copy)]
pub struct Death<'a> {
    pub queue: &'a str,
    pub reason: Reason,
    /// RabbitMQ 4.x: an x-death header a client published is not read back; the broker starts afresh.
    pub only_own_deaths: bool,
}

/// Build the dead-lettered copy of `msg` that died as `death` says, to be published to `dlx` with
/// `routing_key` (the dead-letter routing key, or None to keep the original keys).
pub fn dead_lettered(
    msg: &Message,
    death: Death<'_>,
    dlx: &str,
    dl_routing_key: Option<&str>,
    now_secs: u64,
) -> Message {
    let Death { queue, reason, .. } = death;
    let mut props = msg.props().clone();
    let mut headers = props.headers().clone().unwrap_or_default();
    // The redelivery counts belong to the queue the message died in.
    let counted = |k: &str| k == "x-delivery-count" || k == "x-acquired-count";
    if headers.inner().keys().any(|k| counted(k.as_str())) {
        let mut t = FieldTable::default();
        for (k, v) in headers.inner() {
            if !counted(k.as_str()) {
                t.insert(k.clone(), v.clone());
            }
        }
        headers = t;
    }
    let fresh = death.only_own_deaths && !msg.broker_deaths;
    let mut entries: Vec<AMQPValue> = match fields::get(&headers, "x-death") {
        Some(AMQPValue::FieldArray(a)) if !fresh => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let same = |v: &AMQPValue| match v {
        AMQPValue::FieldTable(t) => {
            fields::get(t, "queue")
                .and_then(fields::as_str)
                .is_some_and(|q| q == queue)
                && fields::get(t, "reason")
                    .and_then(fields::as_str)
                    .is_some_and(|r| r == reason.as_str())
        }
        _ => false,
    };
    if let Some(i) = entries.iter().position(same) {
        let mut e = entries.remove(i);
        if let AMQPValue::FieldTable(t) = &mut e {
            let count = fields::get(t, "count")
                .and_then(fields::as_int)
                .unwrap_or(0)
                + 1;
            t.insert("count".into(), AMQPValue::LongLongInt(count));
        }
        entries.insert(0, e);
    } else {
        let mut t = FieldTable::default();
        t.insert("count".into(), AMQPValue::LongLongInt(1));
        t.insert("reason".into(), ls(reason.as_str()));
        t.insert("queue".into(), ls(queue));
        t.insert("time".into(), AMQPValue::Timestamp(now_secs));
        t.insert("exchange".into(), ls(&msg.exchange));
        let keys: Vec<AMQPValue> = publish_keys(msg).iter().map(|k| ls(k)).collect();
        t.insert(
            "routing-keys".into(),
            AMQPValue::FieldArray(FieldArray::from(keys)),
        );
        if let Some(exp) = msg.props().expiration() {
            t.insert("original-expiration".into(), ls(exp.as_str()));
        }
        entries.insert(0, AMQPValue::FieldTable(t));
    }
    if fresh || fields::get(&headers, "x-first-death-reason").is_none() {
        headers.insert("x-first-death-reason".into(), ls(reason.as_str()));
        headers.insert("x-first-death-queue".into(), ls(queue));
        headers.insert("x-first-death-exchange".into(), ls(&msg.exchange));
    }
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(entries)),
    );
    let mut routing_key = msg.routing_key.clone();
    if let Some(rk) = dl_routing_key {
        routing_key = rk.into();
        // A dead-letter routing key replaces the CC keys too.
        let mut t = FieldTable::default();
        for (k, v) in headers.inner() {
            if k.as_str() != "CC" {
                t.insert(k.clone(), v.clone());
            }
        }
        headers = t;
    }
    props = props.with_headers(headers);
    let mut props2 = amq_protocol::protocol::BasicProperties::default();
    // Rebuild without expiration: the builder API cannot unset a field.
    if let Some(v) = props.content_type() {
        props2 = props2.with_content_type(v.clone());
    }
    if let Some(v) = props.content_encoding() {
        props2 = props2.with_content_encoding(v.clone());
    }
    if let Some(v) = props.headers() {
        props2 = props2.with_headers(v.clone());
    }
    if let Some(v) = props.delivery_mode() {
        props2 = props2.with_delivery_mode(*v);
    }
    if let Some(v) = props.priority() {
        props2 = props2.with_priority(*v);
    }
    if let Some(v) = props.correlation_id() {
        props2 = props2.with_correlation_id(v.clone());
    }
    if let Some(v) = props.reply_to() {
        props2 = props2.with_reply_to(v.clone());
    }
    if let Some(v) = props.message_id() {
        props2 = props2.with_message_id(v.clone());
    }
    if let Some(v) = props.timestamp() {
        props2 = props2.with_timestamp(*v);
    }
    if let Some(v) = props.kind() {
        props2 = props2.with_type(v.clone());
    }
    if let Some(v) = props.user_id() {
        props2 = props2.with_user_id(v.clone());
    }
    if let Some(v) = props.app_id() {
        props2 = props2.with_app_id(v.clone());
    }
    if let Some(v) = props.cluster_id() {
        props2 = props2.with_cluster_id(v.clone());
    }
    let header = protocol::encode_content_header(msg.body.len() as u64, &props2);
    Message {
        exchange: dlx.into(),
        routing_key,
        header,
        properties: crate::queue::message::Props::new(props2),
        body: msg.body.clone(),
        broker_deaths: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(expiration: Option<&str>) -> Message {
        let mut p = amq_protocol::protocol::BasicProperties::default();
        if let Some(e) = expiration {
            p = p.with_expiration(e.into());
        }
        Message {
            exchange: "ex".into(),
            routing_key: "rk".into(),
            header: protocol::encode_content_header(3, &p),
            properties: crate::queue::message::Props::new(p),
            body: Bytes::from_static(b"abc"),
            broker_deaths: false,
        }
    }

    fn death(m: &Message) -> Vec<FieldTable> {
        match m
            .props()
            .headers()
            .as_ref()
            .and_then(|h| fields::get(h, "x-death"))
        {
            Some(AMQPValue::FieldArray(a)) => a
                .as_slice()
                .iter()
                .filter_map(|v| {
                    if let AMQPValue::FieldTable(t) = v {
                        Some(t.clone())
                    } else {
                        None
                    }
                })
                .collect(),
            _ => vec![],
        }
    }

    #[test]
    fn first_death_and_repeat() {
        let at = |queue, reason| Death {
            queue,
            reason,
            only_own_deaths: false,
        };
        let m = dead_lettered(
            &msg(Some("500")),
            at("q1", Reason::Expired),
            "dlx",
            None,
            100,
        );
        assert!(m.props().expiration().is_none());
        let d = death(&m);
        assert_eq!(d.len(), 1);
        assert_eq!(
            fields::get(&d[0], "count"),
            Some(&AMQPValue::LongLongInt(1))
        );
        assert_eq!(
            fields::get(&d[0], "original-expiration")
                .and_then(fields::as_str)
                .as_deref(),
            Some("500")
        );
        assert_eq!(&*m.exchange, "dlx");
        let m2 = dead_lettered(&m, at("q2", Reason::Rejected), "dlx", Some("k2"), 101);
        let m3 = dead_lettered(&m2, at("q1", Reason::Expired), "dlx", None, 102);
        let d = death(&m3);
        assert_eq!(d.len(), 2);
        assert_eq!(
            fields::get(&d[0], "queue")
                .and_then(fields::as_str)
                .as_deref(),
            Some("q1")
        );
        assert_eq!(
            fields::get(&d[0], "count"),
            Some(&AMQPValue::LongLongInt(2))
        );
        let h = m3.props().headers().clone().unwrap();
        assert_eq!(
            fields::get(&h, "x-first-death-queue")
                .and_then(fields::as_str)
                .as_deref(),
            Some("q1")
        );
        assert_eq!(&*m2.routing_key, "k2");
        let (queues, rejected) = death_history(&m3);
        assert!(rejected);
        assert_eq!(queues.len(), 2);
    }

    #[test]
    fn rabbitmq_4_reads_back_only_its_own_deaths() {
        let own = |queue| Death {
            queue,
            reason: Reason::Rejected,
            only_own_deaths: true,
        };
        let m = dead_lettered(&msg(None), own("q0"), "dlx", None, 1);
        // A client republishes it, x-death and all.
        let mut client = m.with_headers(|_| {});
        client.broker_deaths = false;
        let again = dead_lettered(&client, own("q0"), "dlx", None, 2);
        let d = death(&again);
        assert_eq!(d.len(), 1);
        assert_eq!(
            fields::get(&d[0], "count"),
            Some(&AMQPValue::LongLongInt(1))
        );
        assert!(again.broker_deaths);
        // The broker's own records keep counting.
        let third = dead_lettered(&again, own("q0"), "dlx", None, 3);
        assert_eq!(
            fields::get(&death(&third)[0], "count"),
            Some(&AMQPValue::LongLongInt(2))
        );
    }
}
