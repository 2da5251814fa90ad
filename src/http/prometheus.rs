//! Prometheus metrics on their own listener, with rabbitmq_prometheus's names, types, help texts and labels:
//! `/metrics` (aggregated: one sample per family), `/metrics/per-object` (one per queue, channel,
//! connection), `/metrics/detailed?family=…` (the chosen families, per object, prefixed
//! `rabbitmq_detailed_`), plus Warren's own store and alarm figures under `warren_`.

use super::collect::conn;
use crate::broker::Broker;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use std::fmt::Write;

type Labels = Vec<(&'static str, String)>;

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
}

/// How the exposition is shaped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Aggregated,
    PerObject,
    Detailed,
}

struct Writer {
    out: String,
    mode: Mode,
    /// Families asked for (`/metrics/detailed`); None = all.
    families: Option<Vec<String>>,
}

impl Writer {
    fn prefix(&self) -> &'static str {
        if self.mode == Mode::Detailed {
            "rabbitmq_detailed_"
        } else {
            "rabbitmq_"
        }
    }

    /// Whether a family group (rabbitmq_prometheus's `family=` names) is wanted.
    fn wants(&self, group: &str) -> bool {
        self.families
            .as_ref()
            .is_none_or(|f| f.iter().any(|x| x == group))
    }

    /// Write a family: `# TYPE` then `# HELP` (rabbitmq_prometheus's order), then the samples; aggregated
    /// output sums per-object samples into one unlabelled sample.
    fn family(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: Vec<(Labels, f64)>,
        per_object: bool,
    ) {
        let full = format!("{}{name}", self.prefix());
        let _ = writeln!(self.out, "# TYPE {full} {kind}");
        let _ = writeln!(self.out, "# HELP {full} {help}");
        let mut f = Family { out: &mut self.out };
        if per_object && self.mode == Mode::Aggregated {
            if !samples.is_empty() {
                let sum: f64 = samples.iter().map(|(_, v)| v).sum();
                f.sample(&full, &[], sum);
            }
        } else {
            for (labels, v) in &samples {
                f.sample(&full, labels, *v);
            }
        }
    }

    fn raw(&mut self, name: &str, kind: &str, help: &str, samples: Vec<(Labels, f64)>) {
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let mut f = Family { out: &mut self.out };
        for (labels, v) in &samples {
            f.sample(name, labels, *v);
        }
    }
}

impl Family<'_> {
    fn sample(&mut self, name: &str, labels: &[(&'static str, String)], v: f64) {
        let _ = write!(self.out, "{name}");
        if !labels.is_empty() {
            let parts: Vec<String> = labels
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}=\"{}\"",
                        v.replace('\\', "\\\\")
                            .replace('"', "\\\"")
                            .replace('\n', "\\n")
                    )
                })
                .collect();
            let _ = write!(self.out, "{{{}}}", parts.join(","));
        }
        if v.fract() == 0.0 && v.abs() < 1e15 {
            let _ = writeln!(self.out, " {}", v as i64);
        } else {
            let _ = writeln!(self.out, " {v}");
        }
    }
}

fn one(v: f64) -> Vec<(Labels, f64)> {
    vec![(Vec::new(), v)]
}

/// A pid-like label for a connection or channel, as rabbitmq_prometheus labels them.
fn pid(conn: u64, channel: u16) -> String {
    format!("<0.{conn}.{channel}>")
}

fn render(b: &Broker, mode: Mode, families: Option<Vec<String>>) -> String {
    let mut w = Writer {
        out: String::with_capacity(16 * 1024),
        mode,
        families,
    };
    let version = b.config.compat().version();
    w.raw(
        "rabbitmq_build_info",
        "untyped",
        "RabbitMQ & Erlang/OTP version info",
        vec![(
            vec![
                ("rabbitmq_version", version.to_string()),
                ("prometheus_plugin_version", version.to_string()),
                ("prometheus_client_version", "4.9.1".into()),
                ("erlang_version", "Warren".into()),
            ],
            1.0,
        )],
    );
    let cluster = b
        .global_parameters()
        .into_iter()
        .find(|(n, _)| n == "cluster_name")
        .and_then(|(_, v)| v.as_str().map(str::to_string))
        .unwrap_or_else(|| super::overview::NODE.to_string());
    w.raw(
        "rabbitmq_identity_info",
        "untyped",
        "RabbitMQ node & cluster identity info",
        vec![(
            vec![
                ("rabbitmq_node", super::overview::NODE.to_string()),
                ("rabbitmq_cluster", cluster),
                (
                    "rabbitmq_cluster_permanent_id",
                    format!("warren-{}", super::overview::NODE),
                ),
            ],
            1.0,
        )],
    );
    if mode == Mode::Detailed && w.families.as_ref().is_some_and(|f| f.is_empty()) {
        return w.out;
    }
    let churn = b.churn.snapshot();
    if w.wants("connection_churn_metrics") {
        for (i, (name, help)) in [
            (
                "connections_opened_total",
                "Total number of connections opened",
            ),
            (
                "connections_closed_total",
                "Total number of connections closed or terminated",
            ),
            ("channels_opened_total", "Total number of channels opened"),
            ("channels_closed_total", "Total number of channels closed"),
            ("queues_declared_total", "Total number of queues declared"),
            ("queues_created_total", "Total number of queues created"),
            ("queues_deleted_total", "Total number of queues deleted"),
        ]
        .iter()
        .enumerate()
        {
            w.family(name, "counter", help, one(churn[i] as f64), false);
        }
    }
    let alarms = b.alarms.active();
    if mode == Mode::Aggregated {
        for (name, help, bit) in [
            (
                "alarms_file_descriptor_limit",
                "is 1 if file descriptor limit alarm is in effect",
                0,
            ),
            (
                "alarms_free_disk_space_watermark",
                "is 1 if free disk space watermark alarm is in effect",
                crate::broker::alarm::DISK,
            ),
            (
                "alarms_memory_used_watermark",
                "is 1 if VM memory watermark alarm is in effect",
                crate::broker::alarm::MEMORY,
            ),
        ] {
            w.family(
                name,
                "untyped",
                help,
                one(f64::from(u8::from(bit != 0 && alarms & bit != 0))),
                false,
            );
        }
    }
    if w.wants("node_coarse_metrics") {
        let sessions = b.connections().len() as f64;
        w.family(
            "process_open_fds",
            "gauge",
            "Open file descriptors",
            one(sessions),
            false,
        );
        w.family(
            "process_open_tcp_sockets",
            "gauge",
            "Open TCP sockets",
            one(sessions),
            false,
        );
        w.family(
            "process_resident_memory_bytes",
            "gauge",
            "Memory used in bytes",
            one(b.alarms.last_rss() as f64),
            false,
        );
        w.family(
            "disk_space_available_bytes",
            "gauge",
            "Disk space available in bytes",
            one(b.alarms.last_free_disk() as f64),
            false,
        );
    }
    if w.wants("node_metrics") {
        w.family(
            "resident_memory_limit_bytes",
            "gauge",
            "Memory high watermark in bytes",
            one(b.alarms.memory_limit() as f64),
            false,
        );
        w.family(
            "disk_space_available_limit_bytes",
            "gauge",
            "Free disk space low watermark in bytes",
            one(b.alarms.disk_free_limit() as f64),
            false,
        );
        let uptime = b.timers.wall_ms().saturating_sub(b.started_at) as f64 / 1000.0;
        w.family(
            "erlang_uptime_seconds",
            "gauge",
            "Node uptime",
            one(uptime),
            false,
        );
    }
    let vhosts = b.vhosts();
    let queues: Vec<_> = vhosts.iter().flat_map(|v| v.queues()).collect();
    let qlabel = |q: &crate::queue::Queue| -> Labels {
        vec![
            ("vhost", q.vhost.to_string()),
            ("queue", q.name.to_string()),
        ]
    };
    if w.wants("queue_coarse_metrics") {
        let st: Vec<_> = queues.iter().map(|q| (qlabel(q), q.status())).collect();
        w.family(
            "queue_messages_ready",
            "gauge",
            "Messages ready to be delivered to consumers",
            st.iter()
                .map(|(l, s)| (l.clone(), s.ready as f64))
                .collect(),
            true,
        );
        w.family(
            "queue_messages_unacked",
            "gauge",
            "Messages delivered to consumers but not yet acknowledged",
            st.iter()
                .map(|(l, s)| (l.clone(), s.unacked as f64))
                .collect(),
            true,
        );
        w.family(
            "queue_messages",
            "gauge",
            "Sum of ready and unacknowledged messages - total queue depth",
            st.iter()
                .map(|(l, s)| (l.clone(), (s.ready + s.unacked) as f64))
                .collect(),
            true,
        );
    }
    if w.wants("queue_metrics") || w.wants("queue_consumer_count") {
        let st: Vec<_> = queues.iter().map(|q| (qlabel(q), q.status())).collect();
        w.family(
            "queue_consumers",
            "gauge",
            "Consumers on a queue",
            st.iter()
                .map(|(l, s)| (l.clone(), s.consumers as f64))
                .collect(),
            true,
        );
        if w.wants("queue_metrics") {
            w.family(
                "queue_messages_bytes",
                "gauge",
                "Size in bytes of ready and unacknowledged messages",
                st.iter()
                    .map(|(l, s)| (l.clone(), s.ready_bytes as f64))
                    .collect(),
                true,
            );
            w.family(
                "queue_messages_ready_bytes",
                "gauge",
                "Size in bytes of ready messages",
                st.iter()
                    .map(|(l, s)| (l.clone(), s.ready_bytes as f64))
                    .collect(),
                true,
            );
            w.family(
                "queue_messages_ram",
                "gauge",
                "Ready and unacknowledged messages stored in memory",
                st.iter()
                    .map(|(l, s)| (l.clone(), (s.ready_in_memory + s.unacked) as f64))
                    .collect(),
                true,
            );
            w.family(
                "queue_messages_paged_out",
                "gauge",
                "Messages paged out to disk",
                st.iter()
                    .map(|(l, s)| (l.clone(), s.ready.saturating_sub(s.ready_in_memory) as f64))
                    .collect(),
                true,
            );
            w.family(
                "queue_process_memory_bytes",
                "gauge",
                "Memory in bytes used by the Erlang queue process",
                st.iter()
                    .map(|(l, s)| (l.clone(), s.memory as f64))
                    .collect(),
                true,
            );
        }
    }
    let sessions = b.connections();
    let conns: Vec<_> = sessions.iter().filter_map(conn).collect();
    let channels: Vec<_> = conns
        .iter()
        .flat_map(|c| c.channels.lock().values().cloned().collect::<Vec<_>>())
        .collect();
    let chlabel =
        |c: &crate::channel::ChannelShared| -> Labels { vec![("channel", pid(c.conn.id, c.id))] };
    if w.wants("channel_metrics") {
        w.family(
            "channel_consumers",
            "gauge",
            "Consumers on a channel",
            channels
                .iter()
                .map(|c| (chlabel(c), c.consumers().len() as f64))
                .collect(),
            true,
        );
        w.family(
            "channel_messages_unacked",
            "gauge",
            "Delivered but not yet acknowledged messages",
            channels
                .iter()
                .map(|c| (chlabel(c), c.pending_counts().0 as f64))
                .collect(),
            true,
        );
        w.family(
            "channel_messages_unconfirmed",
            "gauge",
            "Published but not yet confirmed messages",
            channels
                .iter()
                .map(|c| (chlabel(c), c.pending_counts().1 as f64))
                .collect(),
            true,
        );
    }
    if w.wants("channel_exchange_metrics") {
        let stat = |f: fn(&crate::metrics::MessageStats) -> u64| -> Vec<(Labels, f64)> {
            channels
                .iter()
                .map(|c| (chlabel(c), f(&c.stats) as f64))
                .collect()
        };
        w.family(
            "channel_messages_published_total",
            "counter",
            "Total number of messages published into an exchange on a channel",
            stat(|s| s.publish.get()),
            true,
        );
        w.family(
            "channel_messages_confirmed_total",
            "counter",
            "Total number of messages published into an exchange and confirmed on the channel",
            stat(|s| s.confirm.get()),
            true,
        );
        w.family("channel_messages_unroutable_returned_total", "counter", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", stat(|s| s.return_unroutable.get()), true);
        w.family("channel_messages_unroutable_dropped_total", "counter", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", stat(|s| s.drop_unroutable.get()), true);
    }
    if w.wants("channel_queue_metrics") {
        let stat = |f: fn(&crate::metrics::MessageStats) -> u64| -> Vec<(Labels, f64)> {
            channels
                .iter()
                .map(|c| (chlabel(c), f(&c.stats) as f64))
                .collect()
        };
        w.family(
            "channel_get_ack_total",
            "counter",
            "Total number of messages fetched with basic.get in manual acknowledgement mode",
            stat(|s| s.get.get()),
            true,
        );
        w.family(
            "channel_get_total",
            "counter",
            "Total number of messages fetched with basic.get in automatic acknowledgement mode",
            stat(|s| s.get_no_ack.get()),
            true,
        );
        w.family(
            "channel_messages_delivered_ack_total",
            "counter",
            "Total number of messages delivered to consumers in manual acknowledgement mode",
            stat(|s| s.deliver.get()),
            true,
        );
        w.family(
            "channel_messages_delivered_total",
            "counter",
            "Total number of messages delivered to consumers in automatic acknowledgement mode",
            stat(|s| s.deliver_no_ack.get()),
            true,
        );
        w.family(
            "channel_messages_redelivered_total",
            "counter",
            "Total number of messages redelivered to consumers",
            stat(|s| s.redeliver.get()),
            true,
        );
        w.family(
            "channel_messages_acked_total",
            "counter",
            "Total number of messages acknowledged by consumers",
            stat(|s| s.ack.get()),
            true,
        );
        w.family(
            "channel_get_empty_total",
            "counter",
            "Total number of times basic.get operations fetched no message",
            stat(|s| s.get_empty.get()),
            true,
        );
    }
    let clabel = |c: &crate::connection::ConnShared| -> Labels { vec![("channel", pid(c.id, 0))] };
    if w.wants("connection_coarse_metrics") {
        w.family(
            "connection_incoming_bytes_total",
            "counter",
            "Total number of bytes received on a connection",
            conns
                .iter()
                .map(|c| (clabel(c), c.recv.recv_oct.get() as f64))
                .collect(),
            true,
        );
        w.family(
            "connection_outgoing_bytes_total",
            "counter",
            "Total number of bytes sent on a connection",
            conns
                .iter()
                .map(|c| (clabel(c), c.outbound.sent.send_oct.get() as f64))
                .collect(),
            true,
        );
    }
    if w.wants("connection_metrics") {
        w.family(
            "connection_incoming_packets_total",
            "counter",
            "Total number of packets received on a connection",
            conns
                .iter()
                .map(|c| (clabel(c), c.recv.recv_cnt.get() as f64))
                .collect(),
            true,
        );
        w.family(
            "connection_outgoing_packets_total",
            "counter",
            "Total number of packets sent on a connection",
            conns
                .iter()
                .map(|c| (clabel(c), c.outbound.sent.send_cnt.get() as f64))
                .collect(),
            true,
        );
        w.family(
            "connection_channels",
            "gauge",
            "Channels on a connection",
            conns
                .iter()
                .map(|c| (clabel(c), c.channels.lock().len() as f64))
                .collect(),
            true,
        );
    }
    if mode != Mode::Detailed {
        w.family(
            "connections",
            "gauge",
            "Connections currently open",
            one(conns.len() as f64),
            false,
        );
        w.family(
            "channels",
            "gauge",
            "Channels currently open",
            one(channels.len() as f64),
            false,
        );
        let consumers: u64 = queues.iter().map(|q| q.status().consumers).sum();
        w.family(
            "consumers",
            "gauge",
            "Consumers currently connected",
            one(consumers as f64),
            false,
        );
        w.family(
            "queues",
            "gauge",
            "Queues available",
            one(queues.len() as f64),
            false,
        );
        let total = crate::metrics::MessageStats::default();
        for v in &vhosts {
            total.absorb(&v.totals.channels);
        }
        for c in &channels {
            total.absorb(&c.stats);
        }
        let amqp: Labels = vec![("protocol", "amqp091".to_string())];
        let g = |v: u64| vec![(amqp.clone(), v as f64)];
        w.raw(
            "rabbitmq_global_messages_received_total",
            "counter",
            "Total number of messages received from publishers",
            g(total.publish.get()),
        );
        w.raw(
            "rabbitmq_global_messages_confirmed_total",
            "counter",
            "Total number of messages confirmed to publishers",
            g(total.confirm.get()),
        );
        w.raw("rabbitmq_global_messages_unroutable_dropped_total", "counter", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", g(total.drop_unroutable.get()));
        w.raw("rabbitmq_global_messages_unroutable_returned_total", "counter", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", g(total.return_unroutable.get()));
        let delivered = total.deliver.get()
            + total.deliver_no_ack.get()
            + total.get.get()
            + total.get_no_ack.get();
        w.raw(
            "rabbitmq_global_messages_delivered_total",
            "counter",
            "Total number of messages delivered to consumers",
            g(delivered),
        );
        w.raw("rabbitmq_global_messages_delivered_consume_manual_ack_total", "counter", "Total number of messages delivered to consumers using basic.consume with manual acknowledgment", g(total.deliver.get()));
        w.raw("rabbitmq_global_messages_delivered_consume_auto_ack_total", "counter", "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment", g(total.deliver_no_ack.get()));
        w.raw("rabbitmq_global_messages_delivered_get_manual_ack_total", "counter", "Total number of messages delivered to consumers using basic.get with manual acknowledgment", g(total.get.get()));
        w.raw("rabbitmq_global_messages_delivered_get_auto_ack_total", "counter", "Total number of messages delivered to consumers using basic.get with automatic acknowledgment", g(total.get_no_ack.get()));
        w.raw(
            "rabbitmq_global_messages_get_empty_total",
            "counter",
            "Total number of times basic.get operations fetched no message",
            g(total.get_empty.get()),
        );
        w.raw(
            "rabbitmq_global_messages_redelivered_total",
            "counter",
            "Total number of messages redelivered to consumers",
            g(total.redeliver.get()),
        );
        w.raw(
            "rabbitmq_global_messages_acknowledged_total",
            "counter",
            "Total number of messages acknowledged by consumers",
            g(total.ack.get()),
        );
        w.raw(
            "rabbitmq_global_consumers",
            "gauge",
            "Current number of consumers",
            g(consumers),
        );
        // Warren's own figures.
        if let Some(s) = b.store().map(|s| s.stats()) {
            w.raw(
                "warren_store_disk_bytes",
                "gauge",
                "Bytes in message store segment files",
                one(s.disk_bytes as f64),
            );
            w.raw(
                "warren_store_pending_bytes",
                "gauge",
                "Bytes accepted by the message store but not yet written",
                one(s.pending_bytes as f64),
            );
            w.raw(
                "warren_store_live_messages",
                "gauge",
                "Messages the store holds for queues",
                one(s.live_messages as f64),
            );
            w.raw(
                "warren_store_segments",
                "gauge",
                "Segment files of the message store",
                vec![
                    (vec![("log", "msg".to_string())], s.msg_segments as f64),
                    (vec![("log", "ack".to_string())], s.ack_segments as f64),
                ],
            );
            w.raw(
                "warren_store_publishes_total",
                "counter",
                "Publish records written since start",
                one(s.publishes as f64),
            );
            w.raw(
                "warren_store_syncs_total",
                "counter",
                "fdatasync rounds of the message log since start",
                one(s.syncs as f64),
            );
            w.raw(
                "warren_store_failed",
                "gauge",
                "1 while the last store write or sync failed",
                one(f64::from(u8::from(s.failed))),
            );
        }
        w.raw(
            "warren_alarm_memory",
            "gauge",
            "1 while the memory alarm blocks publishers",
            one(f64::from(u8::from(
                alarms & crate::broker::alarm::MEMORY != 0,
            ))),
        );
        w.raw(
            "warren_alarm_disk",
            "gauge",
            "1 while the disk alarm blocks publishers",
            one(f64::from(u8::from(
                alarms & crate::broker::alarm::DISK != 0,
            ))),
        );
    }
    w.out
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    r
}

async fn handle(State(b): State<std::sync::Weak<Broker>>, req: Request<Body>) -> Response<Body> {
    let Some(b) = b.upgrade() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, String::new());
    };
    let path = req.uri().path().trim_end_matches('/').to_string();
    let families: Vec<String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.strip_prefix("family="))
        .map(str::to_string)
        .collect();
    match path.as_str() {
        "/metrics" => text(StatusCode::OK, render(&b, Mode::Aggregated, None)),
        "/metrics/per-object" => text(StatusCode::OK, render(&b, Mode::PerObject, None)),
        "/metrics/detailed" => text(StatusCode::OK, render(&b, Mode::Detailed, Some(families))),
        p if p.starts_with("/metrics/") => {
            let mut r = Response::new(Body::from("Unknown Registry"));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        _ => super::reply::not_found().into_response(false),
    }
}

/// Serve `/metrics` on `listener`.
pub async fn serve(listener: crate::tls::HttpListener, broker: std::sync::Weak<Broker>) {
    let app = axum::Router::new().fallback(handle).with_state(broker);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "prometheus listener stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_families_have_type_before_help_and_one_sample() {
        let b = Broker::new(crate::Config::default());
        let out = render(&b, Mode::Aggregated, None);
        let t = out.find("# TYPE rabbitmq_queues gauge").unwrap();
        let h = out.find("# HELP rabbitmq_queues Queues available").unwrap();
        assert!(t < h);
        assert!(out.contains("\nrabbitmq_queues 0\n"));
        assert!(out.contains("rabbitmq_build_info{rabbitmq_version="));
        let d = render(
            &b,
            Mode::Detailed,
            Some(vec!["queue_coarse_metrics".into()]),
        );
        assert!(d.contains("# TYPE rabbitmq_detailed_queue_messages_ready gauge"));
        assert!(!d.contains("rabbitmq_detailed_connections_opened_total"));
    }
}
