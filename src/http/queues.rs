//! Queues: list, get (with consumers), declare, delete, purge, and getting messages.

use super::auth::Caller;
use super::collect::{self, QUEUE_MSG};
use super::exchanges::{args, bool_of, run};
use super::reply::{self, Reply, Result, Vary};
use super::stats::{self, Key};
use super::{Api, Req};
use crate::broker::vhost::queues::check_queue_name;
use crate::broker::{Command, DeleteCause, VHost};
use crate::protocol::fields;
use crate::queue::{Consumer, ConsumerChannel, Got, Held, Queue, QueuedMessage};
use axum::http::StatusCode;
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Unix milliseconds as RabbitMQ writes idle_since: "2026-12-05T11:52:07.901+00:00".
pub fn iso_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

fn object(api: &Api, v: &VHost, q: &Arc<Queue>, r: &Req, single: bool) -> Result<Value> {
    let mut o = Map::new();
    o.insert("name".into(), json!(q.name.to_string()));
    o.insert("vhost".into(), json!(v.name.to_string()));
    o.insert("durable".into(), json!(q.durable));
    o.insert("auto_delete".into(), json!(q.auto_delete));
    o.insert("exclusive".into(), json!(q.exclusive_owner.is_some()));
    o.insert("arguments".into(), fields::table_to_json(&q.arguments));
    o.insert("node".into(), json!(super::overview::NODE));
    o.insert("type".into(), json!(q.queue_type.name()));
    let policy = v.policy_for(&q.name, true);
    if let Some(p) = &policy {
        o.insert("policy".into(), json!(p));
    }
    let status = q.status();
    if r.flag("disable_stats") {
        let totals = r.flag("enable_queue_totals");
        o.insert(
            "state".into(),
            json!(if totals { "running" } else { "live" }),
        );
        if totals {
            o.insert("messages".into(), json!(status.ready + status.unacked));
            o.insert("messages_ready".into(), json!(status.ready));
            o.insert("messages_unacknowledged".into(), json!(status.unacked));
        }
        return Ok(Value::Object(o));
    }
    o.insert("policy".into(), json!(policy));
    o.insert(
        "operator_policy".into(),
        json!(v.operator_policy_for(&q.name)),
    );
    o.insert(
        "effective_policy_definition".into(),
        Value::Object(v.effective_policy(&q.name, true)),
    );
    o.insert("state".into(), json!("running"));
    o.insert("consumers".into(), json!(status.consumers));
    let capacity = if status.consumers > 0 {
        json!(1.0)
    } else {
        json!(0)
    };
    o.insert("consumer_capacity".into(), capacity.clone());
    o.insert("consumer_utilisation".into(), capacity);
    o.insert(
        "exclusive_consumer_tag".into(),
        json!(status.exclusive_consumer.map(|t| t.to_string())),
    );
    o.insert(
        "single_active_consumer_tag".into(),
        json!(status.single_active.map(|t| t.to_string())),
    );
    o.insert("head_message_timestamp".into(), Value::Null);
    o.insert("recoverable_slaves".into(), Value::Null);
    o.insert("memory".into(), json!(status.memory + 1024));
    o.insert("reductions".into(), json!(0));
    o.insert("reductions_details".into(), json!({"rate": 0.0}));
    o.insert(
        "garbage_collection".into(),
        json!({"fullsweep_after": 65535, "max_heap_size": 0, "min_bin_vheap_size": 46422, "min_heap_size": 233, "minor_gcs": 0}),
    );
    let paged = status.ready - status.ready_in_memory.min(status.ready);
    o.insert(
        "message_bytes".into(),
        json!(status.ready_bytes + status.unacked_bytes),
    );
    o.insert("message_bytes_ready".into(), json!(status.ready_bytes));
    o.insert(
        "message_bytes_unacknowledged".into(),
        json!(status.unacked_bytes),
    );
    o.insert("message_bytes_ram".into(), json!(status.memory));
    o.insert("message_bytes_persistent".into(), json!(0));
    o.insert("message_bytes_paged_out".into(), json!(0));
    o.insert(
        "messages_ram".into(),
        json!(status.ready_in_memory + status.unacked),
    );
    o.insert("messages_ready_ram".into(), json!(status.ready_in_memory));
    o.insert("messages_unacknowledged_ram".into(), json!(status.unacked));
    o.insert("messages_paged_out".into(), json!(paged));
    o.insert("messages_persistent".into(), json!(0));
    if q.queue_type == crate::queue::args::QueueType::Classic {
        o.insert(
            "backing_queue_status".into(),
            json!({"avg_ack_egress_rate": 0.0, "avg_ack_ingress_rate": 0.0, "avg_egress_rate": 0.0,
                   "avg_ingress_rate": 0.0, "delta": ["delta", "undefined", 0, 0, "undefined"],
                   "len": status.ready, "mode": "default", "next_deliver_seq_id": 0, "next_seq_id": 0,
                   "q1": 0, "q2": 0, "q3": 0, "q4": status.ready, "target_ram_count": "infinity", "version": 2}),
        );
    } else {
        o.insert("leader".into(), json!(super::overview::NODE));
        o.insert("members".into(), json!([super::overview::NODE]));
        o.insert("online".into(), json!([super::overview::NODE]));
    }
    let key = Key::of(q);
    let values = collect::queue_values(q);
    let lw = stats::window(r, "lengths")?;
    o.extend(super::overview::lengths_object(
        api,
        &key,
        &values[QUEUE_MSG.len()..],
        QUEUE_MSG.len(),
        lw,
    ));
    let msg = &values[..QUEUE_MSG.len()];
    if msg.iter().any(|x| *x > 0) {
        let w = stats::window(r, "msg_rates")?;
        let ms = api.stats.stats_object(&key, QUEUE_MSG, msg, w, false);
        o.insert("message_stats".into(), Value::Object(ms));
    }
    let changed = api.stats.changed_at(&key).unwrap_or(q.created_at);
    if api.broker.timers.wall_ms().saturating_sub(changed) >= stats::INTERVAL.as_millis() as u64 {
        o.insert("idle_since".into(), json!(iso_time(changed)));
    }
    if single {
        let ix = super::conns::ConnIndex::of(api);
        let details: Vec<Value> = q
            .consumers()
            .iter()
            .map(|c| super::conns::consumer_object(&ix, c))
            .collect();
        o.insert("consumer_details".into(), Value::Array(details));
        o.insert("deliveries".into(), json!([]));
        o.insert("incoming".into(), json!([]));
    }
    Ok(Value::Object(o))
}

pub fn list(api: &Api, c: &Caller, r: &Req, vhost: Option<&str>) -> Result {
    let vhosts = match vhost {
        Some(v) => {
            let vh = super::vhosts::lookup(api, v)?;
            c.require_vhost(&api.broker, v)?;
            vec![vh]
        }
        None => api
            .broker
            .vhosts()
            .into_iter()
            .filter(|v| c.sees(&api.broker, &v.name))
            .collect(),
    };
    let mut items = Vec::new();
    for v in &vhosts {
        for q in v.queues() {
            items.push(object(api, v, &q, r, false)?);
        }
    }
    super::list::reply(items, r)
}

pub fn lookup(api: &Api, c: &Caller, vhost: &str, name: &str) -> Result<(Arc<VHost>, Arc<Queue>)> {
    let v = super::vhosts::lookup(api, vhost)?;
    c.require_vhost(&api.broker, vhost)?;
    let q = v.queue(name).ok_or_else(reply::not_found)?;
    Ok((v, q))
}

pub fn get(api: &Api, c: &Caller, r: &Req, vhost: &str, name: &str) -> Result {
    let (v, q) = lookup(api, c, vhost, name)?;
    Ok(super::list::single(object(api, &v, &q, r, true)?, r))
}

pub async fn put(api: &Api, c: &Caller, r: &Req, vhost: &str, name: &str) -> Result {
    let body = r.json()?;
    if api.broker.vhost(vhost).is_none() {
        return Err(reply::vhost_not_found());
    }
    c.require_vhost(&api.broker, vhost)?;
    check_queue_name(name).map_err(|e| reply::from_amqp(&e))?;
    let existed = api
        .broker
        .vhost(vhost)
        .and_then(|v| v.queue(name))
        .is_some();
    let cmd = Command::DeclareQueue {
        vhost: vhost.to_string(),
        name: name.to_string(),
        durable: bool_of(body.get("durable")),
        exclusive: false,
        auto_delete: bool_of(body.get("auto_delete")),
        arguments: args(body.get("arguments")),
    };
    run(api, c, cmd).await?;
    Ok(Reply::created(!existed))
}

pub async fn delete(api: &Api, c: &Caller, r: &Req, vhost: &str, name: &str) -> Result {
    lookup(api, c, vhost, name)?;
    let cmd = Command::DeleteQueue {
        vhost: vhost.to_string(),
        name: name.to_string(),
        if_unused: r.flag("if-unused"),
        if_empty: r.flag("if-empty"),
        cause: DeleteCause::Client,
    };
    let out = run(api, c, cmd).await?;
    if let crate::broker::Outcome::QueueDeleted { cancelled_here, .. } = out {
        for c in cancelled_here {
            c.channel.cancelled(&c);
        }
    }
    Ok(Reply::no_content())
}

pub fn purge(api: &Api, c: &Caller, vhost: &str, name: &str) -> Result {
    let (_, q) = lookup(api, c, vhost, name).map_err(|e| e.vary(Vary::NoAccept))?;
    q.purge();
    Ok(Reply::no_content().vary(Vary::NoAccept))
}

/// A channel for the management API's "get messages": it takes what basic.get hands it.
#[derive(Debug, Default)]
struct Grab {
    got: Mutex<Option<(QueuedMessage, u32)>>,
}

impl ConsumerChannel for Grab {
    fn deliver(&self, _: &Arc<Consumer>, _: &Arc<Queue>, _: &QueuedMessage) -> bool {
        false
    }
    fn deliver_get(&self, _: &Arc<Queue>, qm: QueuedMessage, _: bool, remaining: u32) {
        *self.got.lock() = Some((qm, remaining));
    }
    fn cancelled(&self, _: &Arc<Consumer>) {}
    fn key(&self) -> (u64, u16) {
        (0, 0)
    }
}

fn number(v: Option<&Value>) -> Option<u64> {
    match v {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

/// A message's properties as the management API shows them (`[]` when there are none).
pub fn properties_json(p: &amq_protocol::protocol::BasicProperties) -> Value {
    let mut m = Map::new();
    let s = |v: &Option<amq_protocol::types::ShortString>| v.as_ref().map(|x| json!(x.as_str()));
    let pairs: [(&str, Option<Value>); 13] = [
        ("app_id", s(p.app_id())),
        ("user_id", s(p.user_id())),
        ("type", s(p.kind())),
        ("timestamp", p.timestamp().map(|t| json!(t))),
        ("message_id", s(p.message_id())),
        ("expiration", s(p.expiration())),
        ("reply_to", s(p.reply_to())),
        ("correlation_id", s(p.correlation_id())),
        ("priority", p.priority().map(|x| json!(x))),
        ("delivery_mode", p.delivery_mode().map(|x| json!(x))),
        ("headers", p.headers().as_ref().map(fields::table_to_json)),
        ("content_encoding", s(p.content_encoding())),
        ("content_type", s(p.content_type())),
    ];
    for (k, v) in pairs {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    }
    if m.is_empty() {
        json!([])
    } else {
        Value::Object(m)
    }
}

pub async fn get_messages(api: &Api, c: &Caller, r: &Req, vhost: &str, name: &str) -> Result {
    let body = r.json()?;
    reply::require(&body, &["count", "ackmode", "encoding"])?;
    let (_, q) = lookup(api, c, vhost, name).map_err(|e| {
        if e.status == StatusCode::NOT_FOUND {
            reply::Reply::error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("NOT_FOUND - no queue '{name}' in vhost '{vhost}'"),
            )
        } else {
            e
        }
    })?;
    let count = number(body.get("count")).unwrap_or(0);
    let (no_ack, requeue, reject) = match body["ackmode"].as_str() {
        Some("ack_requeue_true") => (false, true, false),
        Some("ack_requeue_false") => (true, false, false),
        Some("reject_requeue_true") => (false, true, true),
        Some("reject_requeue_false") => (false, false, true),
        _ => return Err(Reply::status(StatusCode::INTERNAL_SERVER_ERROR)),
    };
    let base64_only = match body["encoding"].as_str() {
        Some("auto") => false,
        Some("base64") => true,
        _ => {
            return Err(reply::bad_request(
                "Unsupported encoding. Please use auto or base64.",
            ))
        }
    };
    let truncate = number(body.get("truncate")).map(|t| t as usize);
    let grab = Arc::new(Grab::default());
    let ch: Arc<dyn ConsumerChannel> = grab.clone();
    let mut taken: Vec<Held> = Vec::new();
    let mut out = Vec::new();
    while (out.len() as u64) < count {
        match q.get(&ch, no_ack) {
            Got::Empty => break,
            Got::Wait(rx) => {
                let _ = rx.await;
                continue;
            }
            Got::Delivered => {}
        }
        let Some((qm, remaining)) = grab.got.lock().take() else {
            break;
        };
        let m = &qm.msg;
        let mut payload = m.body.to_vec();
        if let Some(t) = truncate {
            payload.truncate(t);
        }
        let (text, encoding) = match (base64_only, std::str::from_utf8(&payload)) {
            (false, Ok(s)) => (s.to_string(), "string"),
            _ => (
                base64::engine::general_purpose::STANDARD.encode(&payload),
                "base64",
            ),
        };
        out.push(json!({
            "payload_bytes": m.body.len(),
            "redelivered": qm.redelivered,
            "exchange": m.exchange.to_string(),
            "routing_key": m.routing_key.to_string(),
            "message_count": remaining,
            "properties": properties_json(m.props()),
            "payload": text,
            "payload_encoding": encoding,
        }));
        if !no_ack {
            taken.push(Held::Whole(qm));
        }
    }
    if !taken.is_empty() {
        if requeue {
            q.requeue(taken);
        } else if reject {
            q.discard(taken);
        } else {
            q.acked(&taken);
        }
    }
    Ok(Reply::json(&Value::Array(out)))
}
