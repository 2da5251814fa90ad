//! The overview, the cluster name, nodes (Warren is one node), whoami.

use super::auth::Caller;
use super::collect::{self, conn, CHURN, LENGTHS, MSG, OCTETS};
use super::reply::{self, Reply, Result};
use super::stats::{self, Key};
use super::{Api, Req};
use crate::broker::{Actor, Command};
use serde_json::{json, Map, Value};

/// This node's name.
pub const NODE: &str = crate::protocol::NODE_NAME;

fn exchange_types() -> Value {
    json!([
        {"name": "direct", "description": "AMQP direct exchange, as per the AMQP specification", "enabled": true},
        {"name": "fanout", "description": "AMQP fanout exchange, as per the AMQP specification", "enabled": true},
        {"name": "headers", "description": "AMQP headers exchange, as per the AMQP specification", "enabled": true},
        {"name": "topic", "description": "AMQP topic exchange, as per the AMQP specification", "enabled": true},
    ])
}

pub fn cluster_name_of(api: &Api) -> String {
    api.broker
        .global_parameters()
        .into_iter()
        .find(|(n, _)| n == "cluster_name")
        .and_then(|(_, v)| v.as_str().map(str::to_string))
        .unwrap_or_else(|| NODE.to_string())
}

pub fn listeners(api: &Api) -> Value {
    let mut l = vec![
        json!({"node": NODE, "protocol": "amqp", "ip_address": api.broker.config.bind, "port": api.amqp_port,
               "socket_opts": {"backlog": 128, "nodelay": true, "linger": [true, 0], "exit_on_close": false}}),
        json!({"node": NODE, "protocol": "http", "ip_address": api.broker.config.management.bind, "port": api.mgmt_port,
               "socket_opts": {"cowboy_opts": {"sendfile": false}, "port": api.mgmt_port}}),
    ];
    if let Some(p) = api.prometheus_port {
        l.push(json!({"node": NODE, "protocol": "http/prometheus", "ip_address": api.broker.config.prometheus.bind,
                      "port": p, "socket_opts": {"cowboy_opts": {"sendfile": false}, "port": p}}));
    }
    Value::Array(l)
}

fn contexts(api: &Api) -> Value {
    let mut c = vec![
        json!({"ssl_opts": [], "node": NODE, "description": "RabbitMQ Management",
                            "path": "/", "cowboy_opts": "[{sendfile,false}]", "port": api.mgmt_port.to_string()}),
    ];
    if let Some(p) = api.prometheus_port {
        c.push(
            json!({"ssl_opts": [], "node": NODE, "description": "RabbitMQ Prometheus",
                      "path": "/", "cowboy_opts": "[{sendfile,false}]", "port": p.to_string(),
                      "protocol": "'http/prometheus'"}),
        );
    }
    Value::Array(c)
}

pub fn overview(api: &Api, c: &Caller, r: &Req) -> Result {
    let b = &api.broker;
    let mut o = Map::new();
    o.insert(
        "management_version".into(),
        json!(api.broker.config.compat().version()),
    );
    o.insert("rates_mode".into(), json!("basic"));
    o.insert(
        "sample_retention_policies".into(),
        json!({"global": [600, 3600, 28800, 86400], "basic": [600, 3600], "detailed": [600]}),
    );
    o.insert("exchange_types".into(), exchange_types());
    o.insert(
        "product_version".into(),
        json!(api.broker.config.compat().version()),
    );
    o.insert("product_name".into(), json!("RabbitMQ"));
    o.insert(
        "rabbitmq_version".into(),
        json!(api.broker.config.compat().version()),
    );
    o.insert("cluster_name".into(), json!(cluster_name_of(api)));
    o.insert("erlang_version".into(), json!("Warren"));
    o.insert(
        "erlang_full_version".into(),
        json!(concat!("Warren ", env!("CARGO_PKG_VERSION"), " (Rust)")),
    );
    o.insert("release_series_support_status".into(), json!("supported"));
    let disable = r.flag("disable_stats");
    o.insert("disable_stats".into(), json!(disable));
    o.insert(
        "enable_queue_totals".into(),
        json!(r.flag("enable_queue_totals")),
    );
    let sessions = b.connections();
    let vhosts: Vec<_> = b
        .vhosts()
        .into_iter()
        .filter(|v| c.sees(b, &v.name))
        .collect();
    let connections = sessions
        .iter()
        .filter(|s| s.vhost().is_some_and(|v| c.sees(b, v)))
        .count();
    let channels: usize = sessions
        .iter()
        .filter(|s| s.vhost().is_some_and(|v| c.sees(b, v)))
        .filter_map(conn)
        .map(|c| c.channels.lock().len())
        .sum();
    let queues: usize = vhosts.iter().map(|v| v.queue_count()).sum();
    let exchanges: usize = vhosts.iter().map(|v| v.exchanges().len()).sum();
    if !disable {
        let totals: Vec<collect::Totals> = vhosts
            .iter()
            .map(|v| collect::vhost_totals(v, &sessions))
            .collect();
        let values = collect::broker_values(b, &totals);
        let window = stats::window(r, "msg_rates")?;
        let key = Key::Broker;
        let mut names: Vec<&str> = MSG.to_vec();
        let msg_vals = values[..MSG.len()].to_vec();
        let mut ms = api
            .stats
            .stats_object(&key, &names, &msg_vals, window, false);
        let store = b.store().map(|s| s.stats());
        ms.insert("disk_reads".into(), json!(0));
        ms.insert("disk_reads_details".into(), json!({"rate": 0.0}));
        ms.insert(
            "disk_writes".into(),
            json!(store.as_ref().map_or(0, |s| s.publishes)),
        );
        ms.insert("disk_writes_details".into(), json!({"rate": 0.0}));
        o.insert("message_stats".into(), Value::Object(ms));
        names = CHURN.to_vec();
        let churn_vals = values[MSG.len() + LENGTHS.len() + OCTETS.len()..].to_vec();
        let churn = api
            .stats
            .stats_object(&key, &names, &churn_vals, None, false);
        o.insert("churn_rates".into(), Value::Object(churn));
        let lengths = values[MSG.len()..MSG.len() + LENGTHS.len()].to_vec();
        let lwindow = stats::window(r, "lengths")?;
        let qt = lengths_object(api, &key, &lengths, MSG.len(), lwindow);
        o.insert("queue_totals".into(), Value::Object(qt));
    }
    let mut totals = json!({"channels": channels, "connections": connections, "exchanges": exchanges, "queues": queues});
    if c.is_monitor() {
        let consumers: usize = vhosts
            .iter()
            .flat_map(|v| v.queues())
            .map(|q| q.consumer_count() as usize)
            .sum();
        totals["consumers"] = json!(consumers);
    }
    o.insert("object_totals".into(), totals);
    o.insert("statistics_db_event_queue".into(), json!(0));
    if c.is_monitor() {
        o.insert("node".into(), json!(NODE));
        o.insert("listeners".into(), listeners(api));
        o.insert("contexts".into(), contexts(api));
    }
    Ok(super::list::single(Value::Object(o), r))
}

/// messages, messages_ready, messages_unacknowledged with their details, whose rates are sampled at
/// positions `offset..offset + 3` of the object's values.
pub fn lengths_object(
    api: &Api,
    key: &Key,
    lengths: &[u64],
    offset: usize,
    window: Option<(u64, u64)>,
) -> Map<String, Value> {
    let mut names: Vec<String> = (0..offset).map(|i| format!("_{i}")).collect();
    names.extend(LENGTHS.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut vals = vec![0u64; offset];
    vals.extend(lengths);
    let all = api.stats.stats_object(key, &refs, &vals, window, false);
    all.into_iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .collect()
}

pub fn cluster_name(api: &Api) -> Result {
    Ok(Reply::json(&json!({"name": cluster_name_of(api)})))
}

pub async fn set_cluster_name(api: &Api, c: &Caller, r: &Req) -> Result {
    c.require_admin()?;
    let body = r.json()?;
    reply::require(&body, &["name"])?;
    let cmd = Command::SetGlobalParameter {
        name: "cluster_name".into(),
        value: body["name"].clone(),
    };
    api.broker
        .run(cmd, &Actor::internal())
        .await
        .map_err(|e| reply::from_amqp(&e))?;
    Ok(Reply::no_content())
}

fn node_object(api: &Api, r: &Req) -> Value {
    if r.flag("disable_stats") {
        return json!({"name": NODE, "type": "disc", "running": true});
    }
    let b = &api.broker;
    let alarms = b.alarms.active();
    let mem = b.alarms.last_rss();
    let uptime = b.timers.wall_ms().saturating_sub(b.started_at);
    let sessions = b.connections().len();
    let mut n = json!({
        "partitions": [],
        "os_pid": std::process::id().to_string(),
        "fd_total": fd_limit(),
        "sockets_total": fd_limit(),
        "mem_limit": b.alarms.memory_limit(),
        "mem_alarm": alarms & crate::broker::alarm::MEMORY != 0,
        "disk_free_limit": b.config.disk_free_limit_bytes,
        "disk_free_alarm": alarms & crate::broker::alarm::DISK != 0,
        "proc_total": 1048576,
        "rates_mode": "basic",
        "uptime": uptime,
        "run_queue": 0,
        "processors": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "exchange_types": exchange_types(),
        "auth_mechanisms": [
            {"name": "PLAIN", "description": "SASL PLAIN authentication mechanism", "enabled": true},
            {"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism", "enabled": true},
        ],
        "applications": [{"name": "warren", "description": "Warren AMQP 0-9-1 broker", "version": env!("CARGO_PKG_VERSION")}],
        "contexts": contexts(api),
        "log_files": [],
        "db_dir": b.config.data_dir.display().to_string(),
        "config_files": [],
        "net_ticktime": 60,
        "enabled_plugins": ["rabbitmq_management", "rabbitmq_prometheus"],
        "mem_calculation_strategy": "rss",
        "name": NODE,
        "type": "disc",
        "running": true,
        "mem_used": mem,
        "mem_used_details": {"rate": 0.0},
        "fd_used": sessions,
        "fd_used_details": {"rate": 0.0},
        "sockets_used": sessions,
        "sockets_used_details": {"rate": 0.0},
        "proc_used": 0,
        "disk_free": b.alarms.last_free_disk(),
        "disk_free_details": {"rate": 0.0},
        "cluster_links": [],
        "being_drained": false,
    });
    if let Some(s) = b.store().map(|s| s.stats()) {
        n["msg_store_write_count"] = json!(s.publishes);
        n["msg_store_read_count"] = json!(0);
        n["warren_store"] = json!({"msg_segments": s.msg_segments, "ack_segments": s.ack_segments, "disk_bytes": s.disk_bytes, "pending_bytes": s.pending_bytes});
    }
    n
}

fn fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    }
}

pub fn nodes(api: &Api, c: &Caller, r: &Req) -> Result {
    c.require_monitor()?;
    Ok(Reply::json(&json!([node_object(api, r)])))
}

pub fn node(api: &Api, c: &Caller, r: &Req, name: &str) -> Result {
    c.require_monitor()?;
    if name != NODE {
        return Err(Reply::status(axum::http::StatusCode::INTERNAL_SERVER_ERROR));
    }
    Ok(super::list::single(node_object(api, r), r))
}

pub fn whoami(c: &Caller) -> Result {
    let tags = c.user.as_ref().map(|u| u.tags.clone()).unwrap_or_default();
    Ok(Reply::json(&json!({"name": c.name(), "tags": tags})))
}
