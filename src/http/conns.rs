//! Connections (list, get, close), channels and consumers.

use super::auth::Caller;
use super::collect::{self, conn, MSG};
use super::reply::{self, Reply, Result};
use super::stats::{self, Key};
use super::{Api, Req};
use crate::broker::Session;
use crate::channel::ChannelShared;
use crate::connection::ConnShared;
use crate::protocol::fields;
use crate::queue::Consumer;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The connection name, peer and user of each connection id (to describe consumers' channels).
pub struct ConnIndex(crate::FastMap<u64, (String, std::net::SocketAddr, String)>);

impl ConnIndex {
    pub fn of(api: &Api) -> ConnIndex {
        ConnIndex(
            api.broker
                .connections()
                .iter()
                .filter_map(conn)
                .map(|c| {
                    (
                        c.id,
                        (c.name(), c.peer, c.user().unwrap_or_default().to_string()),
                    )
                })
                .collect(),
        )
    }
}

pub fn consumer_object(ix: &ConnIndex, c: &Consumer) -> Value {
    let (conn_id, number) = c.channel.key();
    let (name, peer, user) = match ix.0.get(&conn_id) {
        Some((n, p, u)) => (n.clone(), Some(*p), u.clone()),
        None => (String::new(), None, String::new()),
    };
    json!({
        "arguments": fields::table_to_json(&c.arguments),
        "ack_required": !c.no_ack,
        "active": true,
        "activity_status": "up",
        "channel_details": {
            "connection_name": name,
            "name": format!("{name} ({number})"),
            "node": super::overview::NODE,
            "number": number,
            "peer_host": peer.map(|p| p.ip().to_string()),
            "peer_port": peer.map(|p| p.port()),
            "user": user,
        },
        "consumer_tag": c.tag.to_string(),
        // RabbitMQ 3.12+ reports the delivery-acknowledgement timeout here and clients written for
        // it (rabbitmq_http_client) require the key; RabbitMQ's default, which Warren does not yet enforce.
        "consumer_timeout": 1_800_000,
        "exclusive": c.exclusive,
        "prefetch_count": c.prefetch,
        "queue": {"name": c.queue.name.to_string(), "vhost": c.queue.vhost.to_string()},
    })
}

fn conn_object(api: &Api, c: &ConnShared, r: &Req, single: bool) -> Result<Value> {
    let mut o = Map::new();
    o.insert("name".into(), json!(c.name()));
    o.insert("vhost".into(), json!(c.vhost()));
    o.insert("user".into(), json!(c.user()));
    o.insert("node".into(), json!(super::overview::NODE));
    if r.flag("disable_stats") {
        return Ok(Value::Object(o));
    }
    let info = c.info();
    let none = if single { json!("") } else { Value::Null };
    o.insert(
        "auth_mechanism".into(),
        json!(info.map_or("PLAIN", |i| i.mechanism.as_str())),
    );
    o.insert(
        "channel_max".into(),
        json!(info.map_or(0, |i| i.channel_max)),
    );
    o.insert("channels".into(), json!(c.channels.lock().len()));
    let props = info.map(|i| i.client_properties.table());
    o.insert(
        "client_properties".into(),
        props.as_ref().map_or(json!({}), fields::table_to_json),
    );
    let provided = props
        .as_ref()
        .and_then(|t| fields::get(t, "connection_name"))
        .and_then(fields::as_str)
        .map(|s| s.into_owned());
    o.insert("user_provided_name".into(), json!(provided));
    o.insert("connected_at".into(), json!(c.connected_at));
    o.insert("frame_max".into(), json!(c.frame_max()));
    o.insert("timeout".into(), json!(info.map_or(0, |i| i.heartbeat)));
    o.insert("host".into(), json!(c.local.ip().to_string()));
    o.insert("port".into(), json!(c.local.port()));
    o.insert("peer_host".into(), json!(c.peer.ip().to_string()));
    o.insert("peer_port".into(), json!(c.peer.port()));
    for k in [
        "peer_cert_issuer",
        "peer_cert_subject",
        "peer_cert_validity",
        "ssl_cipher",
        "ssl_hash",
        "ssl_key_exchange",
    ] {
        o.insert(k.into(), none.clone());
    }
    o.insert(
        "ssl_protocol".into(),
        c.tls.map_or(none.clone(), |v| json!(v)),
    );
    o.insert("ssl".into(), json!(c.tls.is_some()));
    o.insert("protocol".into(), json!("AMQP 0-9-1"));
    o.insert("state".into(), json!("running"));
    o.insert("type".into(), json!("network"));
    o.insert("user_who_performed_action".into(), json!(c.user()));
    o.insert("recv_cnt".into(), json!(c.recv.recv_cnt.get()));
    o.insert("send_cnt".into(), json!(c.outbound.sent.send_cnt.get()));
    o.insert("send_pend".into(), json!(c.outbound.pending_bytes()));
    o.insert("reductions".into(), json!(0));
    o.insert("reductions_details".into(), json!({"rate": 0.0}));
    o.insert(
        "garbage_collection".into(),
        json!({"fullsweep_after": 65535, "max_heap_size": 0, "min_bin_vheap_size": 46422, "min_heap_size": 233, "minor_gcs": 0}),
    );
    let key = Key::Object(c as *const ConnShared as usize);
    let w = stats::window(r, "data_rates")?;
    let oct = api
        .stats
        .stats_object(&key, collect::OCTETS, &collect::conn_values(c), w, false);
    o.extend(oct);
    Ok(Value::Object(o))
}

/// The connections the caller may see (all for monitors, else its vhosts' and its own).
fn visible(api: &Api, c: &Caller, vhost: Option<&str>) -> Vec<Arc<dyn Session>> {
    api.broker
        .connections()
        .into_iter()
        .filter(|s| s.vhost().is_some())
        .filter(|s| vhost.is_none_or(|v| s.vhost() == Some(v)))
        .filter(|s| {
            c.is_monitor()
                || conn(s).and_then(|x| x.user()) == Some(c.name())
                || s.vhost().is_some_and(|v| c.sees(&api.broker, v))
        })
        .collect()
}

pub fn connections(api: &Api, c: &Caller, r: &Req, vhost: Option<&str>) -> Result {
    if let Some(v) = vhost {
        super::vhosts::lookup(api, v)?;
        c.require_vhost(&api.broker, v)?;
    }
    let mut items = Vec::new();
    for s in visible(api, c, vhost) {
        if let Some(x) = conn(&s) {
            items.push(conn_object(api, x, r, false)?);
        }
    }
    super::list::reply(items, r)
}

pub fn connections_of_user(api: &Api, c: &Caller, r: &Req, user: &str) -> Result {
    let mut items = Vec::new();
    for s in visible(api, c, None) {
        if let Some(x) = conn(&s).filter(|x| x.user() == Some(user)) {
            items.push(conn_object(api, x, r, false)?);
        }
    }
    Ok(Reply::json(&Value::Array(items)))
}

fn find(api: &Api, c: &Caller, name: &str) -> Result<Arc<dyn Session>> {
    visible(api, c, None)
        .into_iter()
        .find(|s| conn(s).is_some_and(|x| x.name() == name))
        .ok_or_else(reply::not_found)
}

pub fn connection(api: &Api, c: &Caller, r: &Req, name: &str) -> Result {
    let s = find(api, c, name)?;
    let x = conn(&s).ok_or_else(reply::not_found)?;
    Ok(super::list::single(conn_object(api, x, r, true)?, r))
}

/// DELETE: close the connection with 320 and the X-Reason header's text.
pub fn close(api: &Api, c: &Caller, r: &Req, name: &str) -> Result {
    let s = find(api, c, name)?;
    let reason = r
        .headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin");
    s.force_close(reason);
    Ok(Reply::no_content())
}

fn channel_object(
    api: &Api,
    ch: &Arc<ChannelShared>,
    r: &Req,
    ix: Option<&ConnIndex>,
) -> Result<Value> {
    let c = &ch.conn;
    let name = format!("{} ({})", c.name(), ch.id);
    let mut o = Map::new();
    o.insert("name".into(), json!(name));
    o.insert("number".into(), json!(ch.id));
    o.insert("node".into(), json!(super::overview::NODE));
    o.insert("user".into(), json!(c.user()));
    o.insert("user_who_performed_action".into(), json!(c.user()));
    o.insert("vhost".into(), json!(c.vhost()));
    o.insert(
        "connection_details".into(),
        json!({"name": c.name(), "peer_host": c.peer.ip().to_string(), "peer_port": c.peer.port()}),
    );
    let (unacked, unconfirmed) = ch.pending_counts();
    let m = &ch.mode;
    o.insert("confirm".into(), json!(m.confirm.load(Ordering::Relaxed)));
    o.insert(
        "transactional".into(),
        json!(m.transactional.load(Ordering::Relaxed)),
    );
    o.insert(
        "prefetch_count".into(),
        json!(m.prefetch.load(Ordering::Relaxed)),
    );
    o.insert("global_prefetch_count".into(), json!(ch.global_prefetch()));
    o.insert("consumer_count".into(), json!(ch.consumers().len()));
    o.insert("messages_unacknowledged".into(), json!(unacked));
    o.insert("messages_unconfirmed".into(), json!(unconfirmed));
    o.insert(
        "messages_uncommitted".into(),
        json!(m.uncommitted_messages.load(Ordering::Relaxed)),
    );
    o.insert(
        "acks_uncommitted".into(),
        json!(m.uncommitted_acks.load(Ordering::Relaxed)),
    );
    o.insert("pending_raft_commands".into(), json!(0));
    o.insert("state".into(), json!("running"));
    o.insert("reductions".into(), json!(0));
    o.insert("reductions_details".into(), json!({"rate": 0.0}));
    o.insert(
        "garbage_collection".into(),
        json!({"fullsweep_after": 65535, "max_heap_size": 0, "min_bin_vheap_size": 46422, "min_heap_size": 233, "minor_gcs": 0}),
    );
    let values = collect::channel_values(ch);
    if values.iter().any(|v| *v > 0) {
        let w = stats::window(r, "msg_rates")?;
        let ms = api.stats.stats_object(&Key::of(ch), MSG, &values, w, true);
        o.insert("message_stats".into(), Value::Object(ms));
    }
    if let Some(ix) = ix {
        let consumers: Vec<Value> = ch
            .consumers()
            .iter()
            .map(|x| consumer_object(ix, x))
            .collect();
        o.insert("consumer_details".into(), Value::Array(consumers));
        o.insert("deliveries".into(), json!([]));
        o.insert("publishes".into(), json!([]));
    }
    Ok(Value::Object(o))
}

fn all_channels(sessions: &[Arc<dyn Session>]) -> Vec<Arc<ChannelShared>> {
    sessions
        .iter()
        .filter_map(conn)
        .flat_map(|c| c.channels.lock().values().cloned().collect::<Vec<_>>())
        .collect()
}

pub fn channels(api: &Api, c: &Caller, r: &Req, vhost: Option<&str>) -> Result {
    if let Some(v) = vhost {
        super::vhosts::lookup(api, v)?;
        c.require_vhost(&api.broker, v)?;
    }
    let mut items = Vec::new();
    for ch in all_channels(&visible(api, c, vhost)) {
        items.push(channel_object(api, &ch, r, None)?);
    }
    super::list::reply(items, r)
}

pub fn connection_channels(api: &Api, c: &Caller, r: &Req, name: &str) -> Result {
    let s = find(api, c, name)?;
    let mut items = Vec::new();
    for ch in all_channels(&[s]) {
        items.push(channel_object(api, &ch, r, None)?);
    }
    super::list::reply(items, r)
}

pub fn channel(api: &Api, c: &Caller, r: &Req, name: &str) -> Result {
    let ix = ConnIndex::of(api);
    let ch = all_channels(&visible(api, c, None))
        .into_iter()
        .find(|ch| format!("{} ({})", ch.conn.name(), ch.id) == name)
        .ok_or_else(reply::not_found)?;
    Ok(super::list::single(
        channel_object(api, &ch, r, Some(&ix))?,
        r,
    ))
}

pub fn consumers(api: &Api, c: &Caller, vhost: Option<&str>) -> Result {
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
    let ix = ConnIndex::of(api);
    let mut out = Vec::new();
    for v in vhosts {
        for q in v.queues() {
            out.extend(q.consumers().iter().map(|x| consumer_object(&ix, x)));
        }
    }
    Ok(Reply::json(&Value::Array(out)))
}
