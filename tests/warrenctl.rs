//! End-to-end tests of the `warrenctl` binary against a stub management API: a tiny HTTP/1.1
//! server on loopback that answers from a route table with bodies captured from RabbitMQ 3.10.8
//! and records every request. Checks what reaches stdout/stderr, the exit codes, and what the
//! tool sends (methods, percent-encoded paths, bodies, headers). Needs no broker.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

/// One request as the stub saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

/// A stub management API: `"METHOD /api/path"` → (status, body).
struct Stub {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Stub {
    fn start(routes: &[(&str, u16, &str)]) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let routes: HashMap<String, (u16, String)> = routes
            .iter()
            .map(|(k, s, b)| (k.to_string(), (*s, b.to_string())))
            .collect();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &routes, &log);
            }
        });
        Stub { url, seen }
    }

    /// The JSON body of the first request with this method.
    fn json_body(&self, method: &str) -> serde_json::Value {
        let req = self
            .seen()
            .into_iter()
            .find(|r| r.method == method)
            .expect("a request with that method");
        serde_json::from_str(&req.body).expect("JSON body")
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, "")
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run_ctl(&self.url, args, stdin)
    }
}

fn run_ctl(url: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .arg("--url")
        .arg(url)
        .args(args)
        .env_remove("WARREN_USER")
        .env_remove("WARREN_PASS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn warrenctl");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait for warrenctl")
}

fn serve(stream: TcpStream, routes: &HashMap<String, (u16, String)>, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let key = format!("{method} {path}");
    let (status, reply) = routes.get(&key).cloned().unwrap_or((
        404,
        r#"{"error":"Object Not Found","reason":"Not Found"}"#.to_string(),
    ));
    if let Ok(mut l) = log.lock() {
        l.push(Seen {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    let mut stream = reader.into_inner();
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        reply.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(reply.as_bytes()));
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// Captured from RabbitMQ 3.10.8 (GET /api/queues/%2F, trimmed to a few fields per queue).
const QUEUES: &str = r#"[{"arguments":{"x-max-length":1000,"x-queue-mode":"lazy"},"auto_delete":false,"durable":true,"messages":10,"messages_ready":10,"name":"q1","policy":"p1","type":"classic","vhost":"/"},{"arguments":{"x-queue-type":"quorum"},"durable":true,"leader":"ref5681@localhost","members":["ref5681@localhost"],"messages":6,"name":"qq1","policy":null,"type":"quorum","vhost":"/"}]"#;
const OVERVIEW: &str = r#"{"management_version":"3.10.8","rabbitmq_version":"3.10.8","node":"ref5681@localhost","listeners":[{"node":"ref5681@localhost","protocol":"amqp","ip_address":"127.0.0.1","port":5681,"socket_opts":{}}],"object_totals":{"connections":0,"queues":2}}"#;

#[test]
fn list_queues_table_with_banner() {
    let stub = Stub::start(&[("GET /api/queues/%2F", 200, QUEUES)]);
    let o = stub.run(&["list_queues"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "Timeout: 60.0 seconds ...\nListing queues for vhost / ...\nname\tmessages\nq1\t10\nqq1\t6\n"
    );
    let o = stub.run(&[
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "arguments",
        "members",
    ]);
    assert_eq!(
        stdout(&o),
        "q1\t[{\"x-max-length\",1000},{\"x-queue-mode\",\"lazy\"}]\t\nqq1\t[{\"x-queue-type\",\"quorum\"}]\t[ref5681@localhost]\n"
    );
}

#[test]
fn list_queues_json_and_vhost_encoding() {
    let stub = Stub::start(&[("GET /api/queues/a%2Fb", 200, QUEUES)]);
    let o = stub.run(&[
        "list_queues",
        "-p",
        "a/b",
        "--formatter",
        "json",
        "name",
        "policy",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "[\n{\"name\":\"q1\",\"policy\":\"p1\"}\n,{\"name\":\"qq1\",\"policy\":\"\"}\n]\n"
    );
    assert!(stub
        .seen()
        .iter()
        .any(|r| r.method == "GET" && r.path == "/api/queues/a%2Fb"));
    // A vhost that does not exist lists nothing, like rabbitmqctl.
    let o = stub.run(&["list_queues", "-p", "nope"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        "Timeout: 60.0 seconds ...\nListing queues for vhost nope ...\n"
    );
}

#[test]
fn list_permissions_missing_vhost_is_a_data_error() {
    let stub = Stub::start(&[]);
    let o = stub.run(&["list_permissions", "-p", "nope"]);
    assert_eq!(o.status.code(), Some(65));
    assert_eq!(stdout(&o), "Listing permissions for vhost \"nope\" ...\n");
    assert_eq!(stderr(&o), "Virtual host 'nope' does not exist\n");
}

#[test]
fn bad_columns_and_arguments_are_usage_errors() {
    let stub = Stub::start(&[]);
    let o = stub.run(&["list_vhosts", "nope"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).starts_with(
        "Error (argument validation): Info key(s) nope are not supported\nArguments given:\n"
    ));
    let o = stub.run(&["add_vhost"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).starts_with("Error (argument validation): not enough arguments."));
    let o = stub.run(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("Command 'frobnicate' not found."));
    // Nothing reached the API.
    assert!(stub.seen().is_empty());
}

#[test]
fn add_user_refuses_an_existing_user() {
    let stub = Stub::start(&[(
        "GET /api/users/u1",
        200,
        r#"{"name":"u1","password_hash":"h","tags":[]}"#,
    )]);
    let o = stub.run(&["add_user", "u1", "pw"]);
    assert_eq!(o.status.code(), Some(70));
    assert_eq!(stderr(&o), "Error:\nUser \"u1\" already exists\n");
    assert!(stub.seen().iter().all(|r| r.method == "GET"));
}

#[test]
fn add_user_reads_the_password_from_stdin() {
    let stub = Stub::start(&[("PUT /api/users/u2", 201, "")]);
    let o = stub.run_stdin(&["add_user", "u2"], "s3cret\n");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let body = stub.json_body("PUT");
    assert_eq!(body, serde_json::json!({"password": "s3cret", "tags": ""}));
    // Default credentials guest/guest as HTTP Basic.
    assert!(stub.seen().iter().all(|r| r
        .headers
        .get("authorization")
        .is_some_and(|a| a == "Basic Z3Vlc3Q6Z3Vlc3Q=")));
}

#[test]
fn set_user_tags_keeps_the_password() {
    let user = r#"{"name":"u1","password_hash":"kI3GCqW5","hashing_algorithm":"rabbit_password_hashing_sha256","tags":["management"],"limits":{}}"#;
    let stub = Stub::start(&[
        ("GET /api/users/u1", 200, user),
        ("PUT /api/users/u1", 204, ""),
    ]);
    let o = stub.run(&["set_user_tags", "u1", "monitoring", "policymaker"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "Setting tags for user \"u1\" to [monitoring, policymaker] ...\n"
    );
    let body = stub.json_body("PUT");
    assert_eq!(
        body,
        serde_json::json!({"password_hash":"kI3GCqW5","hashing_algorithm":"rabbit_password_hashing_sha256","tags":"monitoring,policymaker"})
    );
}

#[test]
fn delete_queue_reports_ready_messages() {
    let stub = Stub::start(&[
        (
            "GET /api/queues/%2F/q%201",
            200,
            r#"{"name":"q 1","messages_ready":3}"#,
        ),
        (
            "DELETE /api/queues/%2F/q%201?if-empty=true",
            400,
            r#"{"error":"bad_request","reason":"queue 'q 1' in vhost '/' not empty"}"#,
        ),
        ("DELETE /api/queues/%2F/q%201", 204, ""),
    ]);
    let o = stub.run(&["delete_queue", "q 1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "Deleting queue 'q 1' on vhost '/' ...\nQueue was successfully deleted with 3 ready messages\n"
    );
    let o = stub.run(&["delete_queue", "-e", "q 1"]);
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(stderr(&o), "Error:\nQueue is not empty\n");
    let o = stub.run(&["delete_queue", "nope"]);
    assert_eq!(
        (o.status.code(), stderr(&o)),
        (Some(64), "Error:\nQueue not found\n".to_string())
    );
}

#[test]
fn close_connection_sends_the_reason() {
    let name = "127.0.0.1:55350 -> 127.0.0.1:5681";
    let stub = Stub::start(&[(
        "DELETE /api/connections/127.0.0.1%3A55350%20-%3E%20127.0.0.1%3A5681",
        204,
        "",
    )]);
    let o = stub.run(&["close_connection", name, "go away"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("Closing connection {name}, reason: go away...\n")
    );
    let del = stub
        .seen()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .expect("a DELETE");
    assert_eq!(
        del.headers.get("x-reason").map(String::as_str),
        Some("go away")
    );
}

#[test]
fn policy_validation_errors_are_shown_unescaped() {
    let reason = r#"{"error":"bad_request","reason":"Validation failed\n\n[{&lt;&lt;\"bogus\"&gt;&gt;,1}] are not recognised policy settings\n"}"#;
    let stub = Stub::start(&[("PUT /api/policies/%2F/p4", 400, reason)]);
    let o = stub.run(&["set_policy", "p4", "^x", r#"{"bogus":1}"#]);
    assert_eq!(o.status.code(), Some(69));
    assert_eq!(
        stderr(&o),
        "Error:\nValidation failed\n\n[{<<\"bogus\">>,1}] are not recognised policy settings\n\n"
    );
    let body = stub.json_body("PUT");
    assert_eq!(
        body,
        serde_json::json!({"pattern":"^x","definition":{"bogus":1},"priority":0,"apply-to":"all"})
    );
}

#[test]
fn health_checks() {
    let alarms = r#"{"alarms":[{"node":"ref5681@localhost","resource":"memory"}],"reason":"There are alarms in effect on the node","status":"failed"}"#;
    let stub = Stub::start(&[
        ("GET /api/overview", 200, OVERVIEW),
        ("GET /api/health/checks/local-alarms", 503, alarms),
    ]);
    let o = stub.run(&["check_local_alarms"]);
    assert_eq!(o.status.code(), Some(69));
    assert_eq!(
        stdout(&o),
        "Asking node ref5681@localhost to report any local resource alarms ...\n"
    );
    assert_eq!(
        stderr(&o),
        "Error:\nMemory alarm on node ref5681@localhost\n"
    );
    let o = stub.run(&["check_local_alarms", "--formatter", "json"]);
    assert_eq!(o.status.code(), Some(69));
    assert_eq!(
        stdout(&o),
        "{\"local\":[\"Memory alarm on node ref5681@localhost\"],\"message\":\"Node ref5681@localhost reported local alarms\",\"result\":\"error\"}\n"
    );
    let ok = Stub::start(&[
        ("GET /api/overview", 200, OVERVIEW),
        (
            "GET /api/health/checks/virtual-hosts",
            200,
            r#"{"status":"ok"}"#,
        ),
    ]);
    let o = ok.run(&["-q", "check_virtual_hosts"]);
    assert_eq!(
        (o.status.code(), stdout(&o)),
        (
            Some(0),
            "Node ref5681@localhost reported all vhosts as running\n".into()
        )
    );
}

#[test]
fn export_definitions_sorts_keys() {
    let defs = r#"{"vhosts":[{"name":"/"}],"rabbit_version":"3.10.8","users":[{"tags":["administrator"],"name":"guest"}]}"#;
    let stub = Stub::start(&[("GET /api/definitions", 200, defs)]);
    let o = stub.run(&["export_definitions", "-"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        r#"{"rabbit_version":"3.10.8","users":[{"name":"guest","tags":["administrator"]}],"vhosts":[{"name":"/"}]}"#
    );
}

#[test]
fn unreachable_node_and_bad_credentials() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let o = run_ctl(&format!("http://127.0.0.1:{port}"), &["list_queues"], "");
    assert_eq!(o.status.code(), Some(69));
    assert!(stdout(&o).is_empty(), "no banner before reaching the node");
    assert!(
        stderr(&o).starts_with("Error: unable to perform an operation on node"),
        "{}",
        stderr(&o)
    );
    let stub = Stub::start(&[(
        "GET /api/users",
        401,
        r#"{"error":"not_authorized","reason":"Login failed"}"#,
    )]);
    let o = stub.run(&["list_users"]);
    assert_eq!(o.status.code(), Some(69));
    assert!(
        stderr(&o).contains("refused the credentials of user 'guest'"),
        "{}",
        stderr(&o)
    );
}
