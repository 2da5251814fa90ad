//! The `list_*` verbs: for each, rabbitmqctl's accepted columns, default columns and banner, the
//! management API endpoint it reads, and how each column is extracted from the API's JSON object
//! (rabbitmqctl's info keys do not all have the API's field names).
//!
//! Where rabbitmqctl shows an Erlang pid the API has none; warrenctl shows the object's name
//! there instead (connection name for connection `pid`, channel name for channel `pid` and
//! consumer `channel_pid`), which is also what `close_connection` accepts.

use crate::error::CtlError;
use crate::format::{self, Cell, Framing, TableOpts};
use crate::http::seg;
use crate::App;
use serde_json::Value;

/// Which list verb.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Queues,
    Exchanges,
    Bindings,
    Connections,
    Channels,
    Consumers,
    Users,
    Vhosts,
    Permissions,
    Policies,
}

impl Kind {
    /// Accepted columns, in rabbitmqctl's help order.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Kind::Queues => &[
                "arguments",
                "auto_delete",
                "consumer_capacity",
                "consumer_utilisation",
                "consumers",
                "disk_reads",
                "disk_writes",
                "durable",
                "exclusive",
                "exclusive_consumer_pid",
                "exclusive_consumer_tag",
                "head_message_timestamp",
                "leader",
                "members",
                "memory",
                "message_bytes",
                "message_bytes_persistent",
                "message_bytes_ram",
                "message_bytes_ready",
                "message_bytes_unacknowledged",
                "messages",
                "messages_persistent",
                "messages_ram",
                "messages_ready",
                "messages_ready_ram",
                "messages_unacknowledged",
                "messages_unacknowledged_ram",
                "name",
                "online",
                "owner_pid",
                "pid",
                "policy",
                "slave_pids",
                "state",
                "synchronised_slave_pids",
                "type",
            ],
            Kind::Exchanges => &[
                "arguments",
                "auto_delete",
                "durable",
                "internal",
                "name",
                "policy",
                "type",
            ],
            Kind::Bindings => &[
                "arguments",
                "destination_kind",
                "destination_name",
                "routing_key",
                "source_kind",
                "source_name",
            ],
            Kind::Connections => &[
                "auth_mechanism",
                "channel_max",
                "channels",
                "client_properties",
                "connected_at",
                "frame_max",
                "host",
                "name",
                "peer_cert_issuer",
                "peer_cert_subject",
                "peer_cert_validity",
                "peer_host",
                "peer_port",
                "pid",
                "port",
                "protocol",
                "recv_cnt",
                "recv_oct",
                "send_cnt",
                "send_oct",
                "send_pend",
                "ssl",
                "ssl_cipher",
                "ssl_hash",
                "ssl_key_exchange",
                "ssl_protocol",
                "state",
                "timeout",
                "user",
                "vhost",
            ],
            Kind::Channels => &[
                "acks_uncommitted",
                "confirm",
                "connection",
                "consumer_count",
                "global_prefetch_count",
                "messages_unacknowledged",
                "messages_uncommitted",
                "messages_unconfirmed",
                "name",
                "number",
                "pid",
                "prefetch_count",
                "transactional",
                "user",
                "vhost",
            ],
            Kind::Consumers => &[
                "ack_required",
                "active",
                "activity_status",
                "arguments",
                "channel_pid",
                "consumer_tag",
                "prefetch_count",
                "queue_name",
            ],
            Kind::Users => &["user", "tags"],
            Kind::Vhosts => &[
                "cluster_state",
                "default_queue_type",
                "description",
                "name",
                "tags",
                "tracing",
            ],
            Kind::Permissions => &["user", "configure", "write", "read"],
            Kind::Policies => &[
                "vhost",
                "name",
                "pattern",
                "apply-to",
                "definition",
                "priority",
            ],
        }
    }

    /// Columns shown when none are given.
    pub fn defaults(self) -> &'static [&'static str] {
        match self {
            Kind::Queues => &["name", "messages"],
            Kind::Exchanges => &["name", "type"],
            Kind::Bindings => &[
                "source_name",
                "source_kind",
                "destination_name",
                "destination_kind",
                "routing_key",
                "arguments",
            ],
            Kind::Connections => &["user", "peer_host", "peer_port", "state"],
            Kind::Channels => &["pid", "user", "consumer_count", "messages_unacknowledged"],
            Kind::Consumers => &[
                "queue_name",
                "channel_pid",
                "consumer_tag",
                "ack_required",
                "prefetch_count",
                "active",
                "arguments",
            ],
            Kind::Users | Kind::Permissions | Kind::Policies => self.columns(),
            Kind::Vhosts => &["name"],
        }
    }

    fn framing(self) -> Framing {
        match self {
            Kind::Users | Kind::Vhosts | Kind::Permissions | Kind::Policies => Framing::List,
            _ => Framing::Stream,
        }
    }

    /// The informational lines printed before the table.
    pub fn banner(self, vhost: &str, timeout_secs: u64) -> String {
        match self {
            Kind::Queues => format!(
                "Timeout: {timeout_secs}.0 seconds ...\nListing queues for vhost {vhost} ..."
            ),
            Kind::Exchanges => format!("Listing exchanges for vhost {vhost} ..."),
            Kind::Bindings => format!("Listing bindings for vhost {vhost}..."),
            Kind::Connections => "Listing connections ...".to_string(),
            Kind::Channels => "Listing channels ...".to_string(),
            Kind::Consumers => format!("Listing consumers in vhost {vhost} ..."),
            Kind::Users => "Listing users ...".to_string(),
            Kind::Vhosts => "Listing vhosts ...".to_string(),
            Kind::Permissions => format!("Listing permissions for vhost \"{vhost}\" ..."),
            Kind::Policies => format!("Listing policies for vhost \"{vhost}\" ..."),
        }
    }

    /// API path, and whether a 404 (missing vhost) is an error or an empty list.
    fn endpoint(self, vhost: &str) -> (String, bool) {
        let v = seg(vhost);
        match self {
            Kind::Queues => (format!("queues/{v}"), false),
            Kind::Exchanges => (format!("exchanges/{v}"), false),
            Kind::Bindings => (format!("bindings/{v}"), false),
            Kind::Connections => ("connections".to_string(), false),
            Kind::Channels => ("channels".to_string(), false),
            Kind::Consumers => (format!("consumers/{v}"), false),
            Kind::Users => ("users".to_string(), false),
            Kind::Vhosts => ("vhosts".to_string(), false),
            Kind::Permissions => (format!("vhosts/{v}/permissions"), true),
            Kind::Policies => (format!("policies/{v}"), true),
        }
    }

    /// One column of one API object.
    pub fn cell(self, column: &str, obj: &Value) -> Cell {
        let f = |k: &str| obj.get(k);
        let at = |p: &str| obj.pointer(p);
        match (self, column) {
            (_, "arguments") => format::table_cell(f("arguments")),
            (Kind::Queues, "members" | "online") => format::names_cell(f(column)),
            (Kind::Queues, "slave_pids") => format::names_cell(f("slave_nodes")),
            (Kind::Queues, "synchronised_slave_pids") => {
                format::names_cell(f("synchronised_slave_nodes"))
            }
            (Kind::Queues, "owner_pid") => Cell::of(at("/owner_pid_details/name")),
            (Kind::Queues, "pid" | "exclusive_consumer_pid") => Cell::of(None),
            (Kind::Bindings, "source_name") => Cell::of(f("source")),
            (Kind::Bindings, "source_kind") => Cell::Scalar(Value::from("exchange")),
            (Kind::Bindings, "destination_name") => Cell::of(f("destination")),
            (Kind::Bindings, "destination_kind") => Cell::of(f("destination_type")),
            (Kind::Connections, "pid") => Cell::of(f("name")),
            (Kind::Connections, "client_properties") => format::table_cell(f("client_properties")),
            (Kind::Connections, "protocol") => format::protocol_cell(f("protocol")),
            (Kind::Connections, "host" | "peer_host") => match f(column) {
                Some(Value::String(s)) => Cell::Ip(s.clone()),
                other => Cell::of(other),
            },
            (Kind::Channels, "pid") => Cell::of(f("name")),
            (Kind::Channels, "connection") => Cell::of(at("/connection_details/name")),
            (Kind::Consumers, "queue_name") => Cell::of(at("/queue/name")),
            (Kind::Consumers, "channel_pid") => Cell::of(at("/channel_details/name")),
            (Kind::Users, "user") => Cell::of(f("name")),
            (Kind::Users | Kind::Vhosts, "tags") => format::names_cell(f("tags")),
            (Kind::Vhosts, "cluster_state") => match f("cluster_state") {
                Some(Value::Object(m)) => Cell::Pairs(
                    m.iter()
                        .map(|(k, v)| (k.clone(), format::scalar_text(v)))
                        .collect(),
                ),
                other => Cell::of(other),
            },
            (Kind::Vhosts, "default_queue_type") => match f("default_queue_type") {
                None | Some(Value::Null) => Cell::Scalar(Value::from("undefined")),
                v => Cell::of(v),
            },
            (Kind::Policies, "definition") => match f("definition") {
                Some(v) => Cell::JsonText(sorted_json(v)),
                None => Cell::of(None),
            },
            _ => Cell::of(f(column)),
        }
    }
}

/// Compact JSON with keys sorted (serde_json's map is ordered by key), as rabbitmqctl prints definitions.
fn sorted_json(v: &Value) -> String {
    v.to_string()
}

/// Column arguments: space or comma separated; every one must be known.
pub fn select_columns(kind: Kind, given: &[String]) -> Result<Vec<String>, CtlError> {
    let wanted: Vec<String> = given
        .iter()
        .flat_map(|g| g.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if wanted.is_empty() {
        return Ok(kind.defaults().iter().map(|s| s.to_string()).collect());
    }
    // A column asked for twice is shown once.
    let mut wanted: Vec<String> = wanted
        .iter()
        .enumerate()
        .filter(|(i, c)| !wanted[..*i].contains(c))
        .map(|(_, c)| c.clone())
        .collect();
    let unknown: Vec<&str> = wanted
        .iter()
        .map(String::as_str)
        .filter(|c| !kind.columns().contains(c))
        .collect();
    if !unknown.is_empty() {
        return Err(CtlError::Usage(format!(
            "Info key(s) {} are not supported",
            unknown.join(",")
        )));
    }
    if kind == Kind::Consumers {
        // rabbitmqctl shows consumer columns in its own order, whatever order they were asked in.
        let order = [
            "queue_name",
            "channel_pid",
            "consumer_tag",
            "ack_required",
            "prefetch_count",
            "active",
            "activity_status",
            "arguments",
        ];
        wanted.sort_by_key(|c| order.iter().position(|o| o == c));
    }
    Ok(wanted)
}

/// Rows for the given columns from an API list answer.
pub fn rows(kind: Kind, columns: &[String], items: &Value) -> Vec<Vec<Cell>> {
    let Some(items) = items.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|obj| columns.iter().map(|c| kind.cell(c, obj)).collect())
        .collect()
}

/// Run a `list_*` verb.
pub fn run(app: &App, kind: Kind, given: &[String]) -> Result<(), CtlError> {
    let columns = select_columns(kind, given)?;
    let (path, missing_vhost_is_error) = kind.endpoint(&app.vhost);
    let items = match app.client.get(&path) {
        Ok(v) => v,
        Err(e) if e.is_not_found() => {
            if missing_vhost_is_error {
                app.banner(&kind.banner(&app.vhost, app.timeout_secs));
                return Err(CtlError::no_vhost(&app.vhost));
            }
            // rabbitmqctl lists nothing for a vhost that does not exist.
            Value::Array(Vec::new())
        }
        Err(e) => return Err(app.fail(e)),
    };
    // rabbitmqctl prints its banner only once it has reached the node.
    if !items.is_array() {
        return Err(app.fail(crate::http::ApiError::BadBody(format!(
            "GET /api/{path}: expected a JSON array"
        ))));
    }
    app.banner(&kind.banner(&app.vhost, app.timeout_secs));
    let rows = rows(kind, &columns, &items);
    let opts = TableOpts {
        json: app.json,
        headers: app.headers,
        framing: kind.framing(),
    };
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = format::write_rows(&mut buf, &columns, &rows, opts);
    crate::out(&String::from_utf8_lossy(&buf));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(kind: Kind, cols: &[&str], items: Value, json: bool) -> String {
        let cols: Vec<String> = cols.iter().map(|s| s.to_string()).collect();
        let rows = rows(kind, &cols, &items);
        let mut buf = Vec::new();
        let opts = TableOpts {
            json,
            headers: true,
            framing: kind.framing(),
        };
        format::write_rows(&mut buf, &cols, &rows, opts).unwrap_or_default();
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn table(kind: Kind, cols: &[&str], items: Value) -> String {
        render(kind, cols, items, false)
    }

    fn json_out(kind: Kind, cols: &[&str], items: Value) -> String {
        render(kind, cols, items, true)
    }

    #[test]
    fn column_selection() {
        assert_eq!(
            select_columns(Kind::Queues, &[]).ok(),
            Some(vec!["name".into(), "messages".into()])
        );
        let given = vec!["name,messages".to_string(), "consumers".to_string()];
        assert_eq!(
            select_columns(Kind::Queues, &given).ok().map(|c| c.len()),
            Some(3)
        );
        let dup = vec!["name".to_string(), "name".to_string()];
        assert_eq!(
            select_columns(Kind::Queues, &dup).ok(),
            Some(vec!["name".to_string()])
        );
        let cons = vec!["arguments".to_string(), "queue_name".to_string()];
        assert_eq!(
            select_columns(Kind::Consumers, &cons).ok(),
            Some(vec!["queue_name".into(), "arguments".into()])
        );
        let bad = vec!["nope1".to_string(), "nope2".to_string(), "name".to_string()];
        match select_columns(Kind::Vhosts, &bad) {
            Err(e) => assert_eq!(
                e.message(),
                "Error (argument validation): Info key(s) nope1,nope2 are not supported"
            ),
            Ok(c) => panic!("accepted {c:?}"),
        }
        for kind in [
            Kind::Queues,
            Kind::Exchanges,
            Kind::Bindings,
            Kind::Connections,
            Kind::Channels,
            Kind::Consumers,
        ] {
            for d in kind.defaults() {
                assert!(kind.columns().contains(d), "{kind:?} default {d}");
            }
        }
    }

    #[test]
    fn queues_from_captured_api_json() {
        // Captured from RabbitMQ 3.10.8 GET /api/queues/%2F (trimmed to the fields used).
        let items = json!([
            {"arguments":{"x-max-length":1000,"x-queue-mode":"lazy"},"auto_delete":false,"consumer_capacity":0,
             "consumers":0,"durable":true,"exclusive":false,"exclusive_consumer_tag":null,"messages":10,
             "name":"q1","policy":"p1","state":"running","type":"classic","vhost":"/"},
            {"arguments":{"x-queue-type":"quorum"},"consumer_capacity":1.0,"consumers":1,"durable":true,
             "leader":"ref5681@localhost","members":["ref5681@localhost"],"messages":6,"name":"qq1",
             "policy":null,"type":"quorum","vhost":"/"},
            {"arguments":{},"name":"fresh","durable":true,"vhost":"/"}
        ]);
        assert_eq!(
            table(
                Kind::Queues,
                &[
                    "name",
                    "messages",
                    "arguments",
                    "policy",
                    "consumer_capacity",
                    "members"
                ],
                items.clone()
            ),
            "name\tmessages\targuments\tpolicy\tconsumer_capacity\tmembers\n\
             q1\t10\t[{\"x-max-length\",1000},{\"x-queue-mode\",\"lazy\"}]\tp1\t0\t\n\
             qq1\t6\t[{\"x-queue-type\",\"quorum\"}]\t\t1.0\t[ref5681@localhost]\n\
             fresh\t\t[]\t\t\t\n"
        );
        assert_eq!(
            json_out(Kind::Queues, &["name", "arguments", "members", "exclusive_consumer_tag"], items),
            "[\n{\"name\":\"q1\",\"arguments\":[[\"x-max-length\",\"signedint\",1000],[\"x-queue-mode\",\"longstr\",\"lazy\"]],\"members\":\"\",\"exclusive_consumer_tag\":\"\"}\n\
             ,{\"name\":\"qq1\",\"arguments\":[[\"x-queue-type\",\"longstr\",\"quorum\"]],\"members\":[\"ref5681@localhost\"],\"exclusive_consumer_tag\":\"\"}\n\
             ,{\"name\":\"fresh\",\"arguments\":[],\"members\":\"\",\"exclusive_consumer_tag\":\"\"}\n]\n"
        );
    }

    #[test]
    fn bindings_from_captured_api_json() {
        let items = json!([
            {"source":"","vhost":"/","destination":"q1","destination_type":"queue","routing_key":"q1","arguments":{},"properties_key":"q1"},
            {"source":"exh","vhost":"/","destination":"q3","destination_type":"queue","routing_key":"","arguments":{"x-match":"any","foo":"bar"},"properties_key":"~3HoBwA"}
        ]);
        assert_eq!(
            table(Kind::Bindings, Kind::Bindings.defaults(), items),
            "source_name\tsource_kind\tdestination_name\tdestination_kind\trouting_key\targuments\n\
             \texchange\tq1\tqueue\tq1\t[]\n\
             exh\texchange\tq3\tqueue\t\t[{\"foo\",\"bar\"},{\"x-match\",\"any\"}]\n"
        );
    }

    #[test]
    fn connections_channels_consumers() {
        let conns = json!([{"name":"127.0.0.1:55350 -> 127.0.0.1:5681","user":"guest","peer_host":"127.0.0.1",
            "peer_port":55350,"state":"running","protocol":"AMQP 0-9-1","ssl":false,"peer_cert_subject":null,
            "client_properties":{"capabilities":{"basic.nack":true},"product":"Pika Python Client Library"}}]);
        assert_eq!(
            table(Kind::Connections, &["user", "peer_host", "peer_port", "state", "protocol", "peer_cert_subject", "client_properties"], conns.clone()),
            "user\tpeer_host\tpeer_port\tstate\tprotocol\tpeer_cert_subject\tclient_properties\n\
             guest\t127.0.0.1\t55350\trunning\t{0,9,1}\t\t[{\"capabilities\",[{\"basic.nack\",true}]},{\"product\",\"Pika Python Client Library\"}]\n"
        );
        assert_eq!(
            json_out(Kind::Connections, &["peer_host", "protocol", "pid"], conns),
            "[\n{\"peer_host\":[127,0,0,1],\"protocol\":[0,9,1],\"pid\":\"127.0.0.1:55350 -> 127.0.0.1:5681\"}\n]\n"
        );
        let chans = json!([{"name":"127.0.0.1:55350 -> 127.0.0.1:5681 (1)","user":"guest","consumer_count":1,
            "messages_unacknowledged":0,"connection_details":{"name":"127.0.0.1:55350 -> 127.0.0.1:5681"},"confirm":true}]);
        assert_eq!(
            table(Kind::Channels, &["pid", "user", "consumer_count", "messages_unacknowledged", "connection", "confirm"], chans),
            "pid\tuser\tconsumer_count\tmessages_unacknowledged\tconnection\tconfirm\n\
             127.0.0.1:55350 -> 127.0.0.1:5681 (1)\tguest\t1\t0\t127.0.0.1:55350 -> 127.0.0.1:5681\ttrue\n"
        );
        let cons = json!([{"arguments":{"x-priority":5},"ack_required":true,"active":true,"activity_status":"up",
            "channel_details":{"name":"c (1)"},"consumer_tag":"ctag-q2","exclusive":false,"prefetch_count":10,
            "queue":{"name":"q2","vhost":"/"}}]);
        assert_eq!(
            table(Kind::Consumers, Kind::Consumers.defaults(), cons),
            "queue_name\tchannel_pid\tconsumer_tag\tack_required\tprefetch_count\tactive\targuments\n\
             q2\tc (1)\tctag-q2\ttrue\t10\ttrue\t[{\"x-priority\",5}]\n"
        );
    }

    #[test]
    fn users_vhosts_permissions_policies() {
        let users = json!([{"name":"guest","password_hash":"x","hashing_algorithm":"h","tags":["administrator"],"limits":{}},
                           {"name":"u2","tags":[]}]);
        assert_eq!(
            table(Kind::Users, Kind::Users.defaults(), users.clone()),
            "user\ttags\nguest\t[administrator]\nu2\t[]\n"
        );
        assert_eq!(
            json_out(Kind::Users, Kind::Users.defaults(), users),
            "[\n{\"user\":\"guest\",\"tags\":[\"administrator\"]}\n,{\"user\":\"u2\",\"tags\":[]}\n]\n"
        );
        let vhosts = json!([{"name":"v1","description":"first vhost","tags":["a","b"],"default_queue_type":"undefined",
            "tracing":false,"cluster_state":{"ref5681@localhost":"running"}}]);
        assert_eq!(
            table(
                Kind::Vhosts,
                &[
                    "name",
                    "description",
                    "tags",
                    "default_queue_type",
                    "tracing",
                    "cluster_state"
                ],
                vhosts.clone()
            ),
            "name\tdescription\ttags\tdefault_queue_type\ttracing\tcluster_state\n\
             v1\tfirst vhost\t[a, b]\tundefined\tfalse\t[{ref5681@localhost, running}]\n"
        );
        assert_eq!(
            json_out(Kind::Vhosts, &["name", "cluster_state"], vhosts),
            "[\n{\"name\":\"v1\",\"cluster_state\":{\"ref5681@localhost\":\"running\"}}\n]\n"
        );
        let policies = json!([{"vhost":"/","name":"p1","pattern":"^q1$","apply-to":"queues",
            "definition":{"max-length":500,"dead-letter-exchange":"ex1"},"priority":3}]);
        assert_eq!(
            table(Kind::Policies, Kind::Policies.defaults(), policies.clone()),
            "vhost\tname\tpattern\tapply-to\tdefinition\tpriority\n/\tp1\t^q1$\tqueues\t{\"dead-letter-exchange\":\"ex1\",\"max-length\":500}\t3\n"
        );
        assert_eq!(
            json_out(Kind::Policies, Kind::Policies.defaults(), policies),
            "[\n{\"vhost\":\"/\",\"name\":\"p1\",\"pattern\":\"^q1$\",\"apply-to\":\"queues\",\"definition\":\"{\\\"dead-letter-exchange\\\":\\\"ex1\\\",\\\"max-length\\\":500}\",\"priority\":3}\n]\n"
        );
        assert_eq!(
            table(Kind::Permissions, Kind::Permissions.defaults(), json!([])),
            "\n"
        );
        assert_eq!(
            json_out(Kind::Permissions, Kind::Permissions.defaults(), json!([])),
            "[]\n"
        );
        assert_eq!(table(Kind::Queues, &["name"], json!([])), "");
    }

    #[test]
    fn banners() {
        assert_eq!(
            Kind::Queues.banner("/", 60),
            "Timeout: 60.0 seconds ...\nListing queues for vhost / ..."
        );
        assert_eq!(
            Kind::Bindings.banner("v1", 60),
            "Listing bindings for vhost v1..."
        );
        assert_eq!(
            Kind::Policies.banner("/", 60),
            "Listing policies for vhost \"/\" ..."
        );
    }
}
