//! Node-level verbs: `status`, `ping`, `await_startup`, rabbitmq-diagnostics' health checks
//! (`check_running`, `check_local_alarms`, `check_port_connectivity`, `check_virtual_hosts`)
//! and definitions export/import. Node facts come from `/api/overview`, `/api/nodes/{node}`
//! and `/api/health/checks/*`.

use crate::error::{exit, CtlError};
use crate::format::erl_float;
use crate::http::{seg, ApiError};
use crate::App;
use serde_json::{json, Map, Value};
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

fn bold(s: &str) -> String {
    format!("\u{1b}[1m{s}\u{1b}[0m")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn list_of(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|xs| xs.iter().map(crate::format::scalar_text).collect())
        .unwrap_or_default()
}

/// Bytes in the unit `status --unit` asks for, as rabbitmqctl rounds them.
fn in_unit(bytes: f64, unit: &str) -> String {
    let (div, name) = match unit {
        "bytes" | "b" => return format!("{} bytes", bytes as u64),
        "kb" => (1e3, "kb"),
        "mb" => (1e6, "mb"),
        "tb" => (1e12, "tb"),
        _ => (1e9, "gb"),
    };
    format!("{} {name}", erl_float(bytes / div, 4))
}

/// rabbitmq-diagnostics' description of a listener protocol.
fn purpose(protocol: &str) -> &'static str {
    match protocol {
        "amqp" => "AMQP 0-9-1 and AMQP 1.0",
        "amqp/ssl" => "AMQP 0-9-1 and AMQP 1.0 over TLS",
        "http" => "HTTP API",
        "https" => "HTTP API over TLS (HTTPS)",
        "clustering" => "inter-node and CLI tool communication",
        "http/prometheus" => "Prometheus exporter API over HTTP",
        "https/prometheus" => "Prometheus exporter API over TLS (HTTPS)",
        "mqtt" => "MQTT",
        "stomp" => "STOMP",
        "stream" => "RabbitMQ Stream",
        _ => "",
    }
}

/// The overview's listeners on `node` in rabbitmq-diagnostics' map shape.
fn listeners(overview: &Value, node: &str) -> Vec<Value> {
    overview
        .get("listeners")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .filter(|l| str_of(l, "node") == node || l.get("node").is_none())
                .map(|l| {
                    let ip = str_of(l, "ip_address");
                    let interface = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
                    let protocol = str_of(l, "protocol");
                    json!({"interface": interface, "node": node, "port": l.get("port").cloned().unwrap_or(Value::Null),
                           "protocol": protocol, "purpose": purpose(protocol)})
                })
                .collect()
        })
        .unwrap_or_default()
}

fn listener_line(l: &Value) -> String {
    format!(
        "Interface: {}, port: {}, protocol: {}, purpose: {}",
        str_of(l, "interface"),
        l.get("port")
            .map(crate::format::scalar_text)
            .unwrap_or_default(),
        str_of(l, "protocol"),
        str_of(l, "purpose")
    )
}

/// Alarm lines as rabbitmqctl words them.
fn alarm_line(resource: &str, node: &str) -> String {
    match resource {
        "memory" => format!("Memory alarm on node {node}"),
        "disk" => format!("Free disk space alarm on node {node}"),
        "file_descriptor_limit" => format!("File descriptor limit alarm on node {node}"),
        other => format!("{other} alarm on node {node}"),
    }
}

pub fn status(app: &App, unit: &str) -> Result<(), CtlError> {
    let overview = app.get("overview")?;
    let node = str_of(&overview, "node").to_string();
    let info = app.get(&format!("nodes/{}?memory=true", seg(&node)))?;
    let vhosts = app
        .get("vhosts?columns=name")
        .map(|v| v.as_array().map_or(0, Vec::len))?;
    let n = |k: &str| info.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    // The health check is current; the node stats' mem_alarm / disk_free_alarm lag by a stats interval.
    let alarms = match app.client.get("health/checks/local-alarms") {
        Ok(_) => Vec::new(),
        Err(ApiError::Status {
            status: 503, body, ..
        }) => alarm_lines(&body, &node),
        Err(e) if e.is_not_found() => {
            let mut from_stats = Vec::new();
            for (key, resource) in [("mem_alarm", "memory"), ("disk_free_alarm", "disk")] {
                if info.get(key).and_then(Value::as_bool) == Some(true) {
                    from_stats.push(alarm_line(resource, &node));
                }
            }
            from_stats
        }
        Err(e) => return Err(app.fail(e)),
    };
    let totals = overview
        .get("object_totals")
        .cloned()
        .unwrap_or(Value::Null);
    let listeners = listeners(&overview, &node);
    let memory = info.get("memory").cloned().unwrap_or(Value::Null);
    let mem_total = memory
        .pointer("/total/rss")
        .and_then(Value::as_f64)
        .unwrap_or_else(|| n("mem_used"));

    if app.json {
        let mut m = Map::new();
        m.insert(
            "active_plugins".into(),
            json!(list_of(&info, "enabled_plugins")),
        );
        m.insert("alarms".into(), json!(alarms));
        m.insert("config_files".into(), json!(list_of(&info, "config_files")));
        m.insert("data_directory".into(), json!(str_of(&info, "db_dir")));
        m.insert("disk_free".into(), json!(info.get("disk_free")));
        m.insert("disk_free_limit".into(), json!(info.get("disk_free_limit")));
        m.insert(
            "erlang_version".into(),
            json!(str_of(&overview, "erlang_full_version")),
        );
        m.insert(
            "file_descriptors".into(),
            json!({"sockets_limit": info.get("sockets_total"), "sockets_used": info.get("sockets_used"),
                   "total_limit": info.get("fd_total"), "total_used": info.get("fd_used")}),
        );
        m.insert("listeners".into(), json!(listeners));
        m.insert("log_files".into(), json!(list_of(&info, "log_files")));
        m.insert("memory".into(), memory.clone());
        m.insert("net_ticktime".into(), json!(info.get("net_ticktime")));
        m.insert(
            "pid".into(),
            json!(str_of(&info, "os_pid").parse::<u64>().ok()),
        );
        m.insert(
            "processes".into(),
            json!({"limit": info.get("proc_total"), "used": info.get("proc_used")}),
        );
        m.insert(
            "product_name".into(),
            json!(str_of(&overview, "product_name")),
        );
        m.insert(
            "product_version".into(),
            json!(str_of(&overview, "product_version")),
        );
        m.insert(
            "rabbitmq_version".into(),
            json!(str_of(&overview, "rabbitmq_version")),
        );
        m.insert("run_queue".into(), json!(info.get("run_queue")));
        m.insert(
            "totals".into(),
            json!({"virtual_host_count": vhosts, "connection_count": totals.get("connections"),
                   "queue_count": totals.get("queues")}),
        );
        m.insert("uptime".into(), json!((n("uptime") / 1000.0) as u64));
        m.insert(
            "vm_memory_calculation_strategy".into(),
            json!(str_of(&info, "mem_calculation_strategy")),
        );
        m.insert(
            "vm_memory_high_watermark_limit".into(),
            json!(info.get("mem_limit")),
        );
        crate::out(&format!("{}\n", Value::Object(m)));
        return Ok(());
    }

    let mut t = String::new();
    let mut line = |s: String| {
        t.push_str(&s);
        t.push('\n');
    };
    line(bold("Runtime"));
    line(String::new());
    line(format!("OS PID: {}", str_of(&info, "os_pid")));
    line(format!(
        "Uptime (seconds): {}",
        (n("uptime") / 1000.0) as u64
    ));
    line(format!(
        "RabbitMQ version: {}",
        str_of(&overview, "rabbitmq_version")
    ));
    if let Some(s) = overview
        .get("release_series_support_status")
        .and_then(Value::as_str)
    {
        line(format!("RabbitMQ release series support status: {s}"));
    }
    line(format!("Node name: {node}"));
    line(format!(
        "Erlang configuration: {}",
        str_of(&overview, "erlang_full_version")
    ));
    line(format!(
        "Erlang processes: {} used, {} limit",
        n("proc_used") as u64,
        n("proc_total") as u64
    ));
    line(format!("Scheduler run queue: {}", n("run_queue") as u64));
    line(format!(
        "Cluster heartbeat timeout (net_ticktime): {}",
        n("net_ticktime") as u64
    ));
    line(String::new());
    line(bold("Plugins"));
    line(String::new());
    line("Enabled plugins:".into());
    line(String::new());
    for p in list_of(&info, "enabled_plugins") {
        line(format!(" * {p}"));
    }
    line(String::new());
    line(bold("Data directory"));
    line(String::new());
    line(format!("Node data directory: {}", str_of(&info, "db_dir")));
    line(String::new());
    line(bold("Config files"));
    line(String::new());
    for f in list_of(&info, "config_files") {
        line(format!(" * {f}"));
    }
    line(String::new());
    line(bold("Log file(s)"));
    line(String::new());
    for f in list_of(&info, "log_files") {
        line(format!(" * {f}"));
    }
    line(String::new());
    line(bold("Alarms"));
    line(String::new());
    if alarms.is_empty() {
        line("(none)".into());
    }
    for a in &alarms {
        line(a.clone());
    }
    line(String::new());
    line(bold("Memory"));
    line(String::new());
    line(format!("Total memory used: {}", in_unit(mem_total, unit)));
    line(format!(
        "Calculation strategy: {}",
        str_of(&info, "mem_calculation_strategy")
    ));
    line(format!(
        "Memory high watermark limit: {}",
        in_unit(n("mem_limit"), unit)
    ));
    line(String::new());
    if let Some(parts) = memory.as_object() {
        let mut parts: Vec<(&String, f64)> = parts
            .iter()
            .filter_map(|(k, v)| v.as_f64().map(|x| (k, x)))
            .collect();
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (k, x) in parts {
            let pct = if mem_total > 0.0 {
                100.0 * x / mem_total
            } else {
                0.0
            };
            line(format!(
                "{k}: {} ({} %)",
                in_unit(x, unit),
                erl_float(pct, 2)
            ));
        }
    }
    line(String::new());
    line(bold("File Descriptors"));
    line(String::new());
    line(format!(
        "Total: {}, limit: {}",
        n("fd_used") as u64,
        n("fd_total") as u64
    ));
    line(format!(
        "Sockets: {}, limit: {}",
        n("sockets_used") as u64,
        n("sockets_total") as u64
    ));
    line(String::new());
    line(bold("Free Disk Space"));
    line(String::new());
    line(format!(
        "Low free disk space watermark: {}",
        in_unit(n("disk_free_limit"), unit)
    ));
    line(format!(
        "Free disk space: {}",
        in_unit(n("disk_free"), unit)
    ));
    line(String::new());
    line(bold("Totals"));
    line(String::new());
    let total = |k: &str| totals.get(k).and_then(Value::as_u64).unwrap_or(0);
    line(format!("Connection count: {}", total("connections")));
    line(format!("Queue count: {}", total("queues")));
    line(format!("Virtual host count: {vhosts}"));
    line(String::new());
    line(bold("Listeners"));
    line(String::new());
    for l in &listeners {
        line(listener_line(l));
    }
    app.banner(&format!("Status of node {node} ..."));
    crate::out(&t);
    Ok(())
}

pub fn ping(app: &App) -> Result<(), CtlError> {
    let ms = u128::from(app.timeout_secs) * 1000;
    app.banner(&format!(
        "Will ping {}. This only checks if the management API answers and accepts the credentials. Timeout: {ms} ms.",
        app.client.base()
    ));
    match app.client.get("whoami") {
        Ok(_) => {
            crate::out("Ping succeeded\n");
            Ok(())
        }
        Err(
            ApiError::Status { status: 401, .. } | ApiError::Unreachable(_) | ApiError::Timeout,
        ) => Err(CtlError::failed(
            exit::UNAVAILABLE,
            format!(
                "Failed to connect and authenticate to {} in {ms} ms",
                app.client.base()
            ),
        )),
        Err(e) => Err(app.fail(e)),
    }
}

pub fn await_startup(app: &App) -> Result<(), CtlError> {
    let deadline = Instant::now() + Duration::from_secs(app.timeout_secs);
    loop {
        let last = match app.client.get("overview") {
            Ok(_) => return Ok(()),
            // Answering but refusing us will not change by waiting.
            Err(e @ ApiError::Status { status: 401, .. }) => return Err(app.fail(e)),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(match last {
                ApiError::Unreachable(_) | ApiError::Timeout => CtlError::Timeout {
                    verb: app.verb.clone(),
                    url: app.client.base().to_string(),
                    millis: u128::from(app.timeout_secs) * 1000,
                },
                other => app.fail(other),
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Print a health check's success: JSON object, or the message (banner-style lines go first).
fn check_ok(app: &App, json: Value, text: &str) {
    if app.json {
        crate::out(&format!("{json}\n"));
    } else {
        crate::out(&format!("{text}\n"));
    }
}

/// A failed health check: JSON on stdout, or `Error:` text on stderr; exit 69.
fn check_failed(app: &App, json: Value, text: String) -> CtlError {
    if app.json {
        crate::out(&format!("{json}\n"));
        CtlError::Silent(exit::UNAVAILABLE)
    } else {
        CtlError::failed(exit::UNAVAILABLE, text)
    }
}

pub fn check_running(app: &App) -> Result<(), CtlError> {
    let node = app.node_name()?;
    app.banner(&format!(
        "Checking if RabbitMQ is running on node {node} ..."
    ));
    let running = app
        .get_opt(&format!("nodes/{}", seg(&node)))?
        .and_then(|n| n.get("running").and_then(Value::as_bool))
        .unwrap_or(true);
    if running {
        let msg = format!("RabbitMQ on node {node} is fully booted and running");
        check_ok(app, json!({"message": msg}), &msg);
        Ok(())
    } else {
        let msg = format!("RabbitMQ on node {node} is not running or has not fully booted yet (check with is_booting)");
        Err(check_failed(
            app,
            json!({"message": msg, "result": "error"}),
            msg,
        ))
    }
}

/// Run one `/api/health/checks/…` endpoint after the banner: `None` when it passed (its success
/// message printed), the 503 body when it failed.
fn health_check(
    app: &App,
    endpoint: &str,
    banner: &str,
    ok_text: &str,
) -> Result<Option<String>, CtlError> {
    app.banner(banner);
    match app.client.get(&format!("health/checks/{endpoint}")) {
        Ok(_) => {
            check_ok(app, json!({"result": "ok"}), ok_text);
            Ok(None)
        }
        Err(ApiError::Status {
            status: 503, body, ..
        }) => Ok(Some(body)),
        Err(e) => Err(app.fail(e)),
    }
}

pub fn check_local_alarms(app: &App) -> Result<(), CtlError> {
    let node = app.node_name()?;
    let banner = format!("Asking node {node} to report any local resource alarms ...");
    let ok_text = format!("Node {node} reported no local alarms");
    let Some(body) = health_check(app, "local-alarms", &banner, &ok_text)? else {
        return Ok(());
    };
    let lines = alarm_lines(&body, &node);
    let json = json!({"local": lines, "message": format!("Node {node} reported local alarms"), "result": "error"});
    Err(check_failed(app, json, lines.join("\n")))
}

/// Alarm lines from a failed local-alarms check body:
/// `{"alarms":[{"node":"n","resource":"memory"}],"reason":"…","status":"failed"}`.
fn alarm_lines(body: &str, node: &str) -> Vec<String> {
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let lines: Vec<String> = parsed
        .get("alarms")
        .and_then(Value::as_array)
        .map(|xs| {
            xs.iter()
                .map(|a| {
                    let on = a.get("node").and_then(Value::as_str).unwrap_or(node);
                    alarm_line(str_of(a, "resource"), on)
                })
                .collect()
        })
        .unwrap_or_default();
    if lines.is_empty() {
        vec![parsed
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("There are alarms in effect on the node")
            .to_string()]
    } else {
        lines
    }
}

pub fn check_port_connectivity(app: &App) -> Result<(), CtlError> {
    let overview = app.get("overview")?;
    let node = str_of(&overview, "node").to_string();
    app.banner(&format!(
        "Testing TCP connections to all active listeners on node {node} ..."
    ));
    let host = host_of(app.client.base());
    let listeners = listeners(&overview, &node);
    let per =
        Duration::from_millis((app.timeout_secs * 1000 / (listeners.len() as u64 + 1)).max(100));
    let failures: Vec<Value> = listeners
        .iter()
        .filter(|l| {
            let port = l
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            !port.is_some_and(|p| tcp_connects(&host, p, per))
        })
        .cloned()
        .collect();
    if failures.is_empty() {
        let mut ports: Vec<u64> = listeners
            .iter()
            .filter_map(|l| l.get("port").and_then(Value::as_u64))
            .collect();
        ports.sort_unstable();
        let ports: Vec<String> = ports.iter().map(u64::to_string).collect();
        let text = format!(
            "Successfully connected to ports {} on node {node}.",
            ports.join(", ")
        );
        check_ok(
            app,
            json!({"listeners": listeners, "node": node, "result": "ok"}),
            &text,
        );
        Ok(())
    } else {
        let mut text =
            format!("Connection to ports of the following listeners on node {node} failed: ");
        for f in &failures {
            text.push('\n');
            text.push_str(&listener_line(f));
        }
        Err(check_failed(
            app,
            json!({"failures": failures, "node": node, "result": "error"}),
            text,
        ))
    }
}

/// The host part of the management URL (listeners are probed on the same host).
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default().to_string();
    }
    authority.split(':').next().unwrap_or_default().to_string()
}

fn tcp_connects(host: &str, port: u16, timeout: Duration) -> bool {
    match (host, port).to_socket_addrs() {
        Ok(addrs) => addrs
            .into_iter()
            .any(|a| TcpStream::connect_timeout(&a, timeout).is_ok()),
        Err(_) => false,
    }
}

pub fn check_virtual_hosts(app: &App) -> Result<(), CtlError> {
    let node = app.node_name()?;
    let banner = format!("Checking if all vhosts are running on node {node} ...");
    let ok_text = format!("Node {node} reported all vhosts as running");
    if health_check(app, "virtual-hosts", &banner, &ok_text)?.is_none() {
        return Ok(());
    }
    // Which vhosts: those whose cluster_state for this node is not "running".
    let pointer = format!(
        "/cluster_state/{}",
        node.replace('~', "~0").replace('/', "~1")
    );
    let vhosts = app.get("vhosts")?;
    let down: Vec<String> = vhosts
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|v| {
                    v.pointer(&pointer)
                        .and_then(Value::as_str)
                        .is_some_and(|s| s != "running")
                })
                .map(|v| str_of(v, "name").to_string())
                .collect()
        })
        .unwrap_or_default();
    let text = format!(
        "Some virtual hosts on node {node} are down:\n{}",
        down.join("\n")
    );
    Err(check_failed(
        app,
        json!({"down_vhosts": down, "result": "error"}),
        text,
    ))
}

pub fn export_definitions(app: &App, file: &str, format: &str) -> Result<(), CtlError> {
    if format != "json" {
        return Err(CtlError::BadArgument(format!(
            "format {format} is not supported, use json"
        )));
    }
    let to_stdout = file == "-";
    if !to_stdout {
        let path = std::path::Path::new(file);
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            return Err(CtlError::BadArgument(format!(
                "Directory {} does not exist",
                dir.display()
            )));
        }
        app.banner(&format!(
            "Exporting definitions in JSON to a file at \"{file}\" ..."
        ));
    }
    // Re-serialised through serde_json's ordered map: keys sorted, as rabbitmqctl writes them.
    let defs = app.get("definitions")?;
    let text = defs.to_string();
    if to_stdout {
        crate::out(&text);
        return Ok(());
    }
    std::fs::write(file, text).map_err(|e| {
        CtlError::failed(
            exit::DATAERR,
            format!("Failed to write definitions to {file}: {e}"),
        )
    })
}

pub fn import_definitions(app: &App, file: Option<&str>, format: &str) -> Result<(), CtlError> {
    if format != "json" {
        return Err(CtlError::BadArgument(format!(
            "format {format} is not supported, use json"
        )));
    }
    let text = match file.filter(|f| *f != "-") {
        Some(path) => {
            if !std::path::Path::new(path).is_file() {
                return Err(CtlError::BadArgument(format!("File {path} does not exist")));
            }
            app.banner(&format!(
                "Importing definitions in JSON from a file at \"{path}\" ..."
            ));
            std::fs::read_to_string(path).map_err(|e| {
                CtlError::failed(exit::DATAERR, format!("Failed to read {path}: {e}"))
            })?
        }
        None => {
            app.banner("Importing definitions in JSON from standard input ...");
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| {
                CtlError::failed(exit::DATAERR, format!("Failed to read standard input: {e}"))
            })?;
            s
        }
    };
    let parsed: Value = serde_json::from_str(&text).map_err(|e| {
        CtlError::failed(
            exit::DATAERR,
            format!("Failed to deserialise input (format: JSON) (error: {e})"),
        )
    })?;
    match app.client.post("definitions", parsed.to_string()) {
        Ok(_) => {
            app.info("Successfully started definition import. This process is asynchronous and can take some time.");
            Ok(())
        }
        Err(ApiError::Status {
            status: 400,
            reason,
            ..
        }) if reason.starts_with("[\"no_such_vhost\"") => {
            let vhost: Vec<String> = serde_json::from_str(&reason).unwrap_or_default();
            Err(CtlError::no_vhost(vhost.get(1).map_or("", String::as_str)))
        }
        Err(e) => Err(app.fail(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(in_unit(138_657_792.0, "gb"), "0.1387 gb");
        assert_eq!(in_unit(138_989_600.0, "mb"), "138.9896 mb");
        assert_eq!(in_unit(0.0, "gb"), "0.0 gb");
        assert_eq!(in_unit(1234.0, "bytes"), "1234 bytes");
    }

    #[test]
    fn listeners_from_captured_overview() {
        let overview = json!({"node":"ref5681@localhost","listeners":[
            {"node":"ref5681@localhost","protocol":"amqp","ip_address":"127.0.0.1","port":5681,"socket_opts":{}},
            {"node":"ref5681@localhost","protocol":"clustering","ip_address":"::","port":25681,"socket_opts":[]},
            {"node":"other@host","protocol":"amqp","ip_address":"::","port":5672,"socket_opts":{}}]});
        let ls = listeners(&overview, "ref5681@localhost");
        assert_eq!(ls.len(), 2);
        assert_eq!(
            listener_line(&ls[0]),
            "Interface: 127.0.0.1, port: 5681, protocol: amqp, purpose: AMQP 0-9-1 and AMQP 1.0"
        );
        assert_eq!(
            listener_line(&ls[1]),
            "Interface: [::], port: 25681, protocol: clustering, purpose: inter-node and CLI tool communication"
        );
    }

    #[test]
    fn host_from_url() {
        assert_eq!(host_of("http://127.0.0.1:15672"), "127.0.0.1");
        assert_eq!(
            host_of("https://user:pw@broker.example:443/"),
            "broker.example"
        );
        assert_eq!(host_of("http://[::1]:15672"), "::1");
        assert_eq!(host_of("http://localhost"), "localhost");
    }

    #[test]
    fn alarms() {
        assert_eq!(alarm_line("memory", "n@h"), "Memory alarm on node n@h");
        assert_eq!(
            alarm_line("disk", "n@h"),
            "Free disk space alarm on node n@h"
        );
        // Captured 503 body of GET /api/health/checks/local-alarms during a memory alarm.
        let body = r#"{"alarms":[{"node":"ref5680@localhost","resource":"memory"}],"reason":"There are alarms in effect on the node","status":"failed"}"#;
        assert_eq!(
            alarm_lines(body, "x"),
            vec!["Memory alarm on node ref5680@localhost"]
        );
        assert_eq!(
            alarm_lines("", "x"),
            vec!["There are alarms in effect on the node"]
        );
    }
}
