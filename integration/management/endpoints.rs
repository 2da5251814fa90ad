//! One ordered walk over the management API's endpoints, each answer compared with what RabbitMQ 3.10's
//! management plugin returns for the same request (status code, and the body exactly or the part of it
//! that does not depend on timing). Every mismatch is collected so that one run shows them all.

use super::Mgmt;
use crate::common::unique;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// What an answer's body must be.
enum Body {
    Any,
    /// Exactly this JSON.
    Is(Value),
    /// Objects: these keys with matching values; arrays: each listed element matches some element.
    Has(Value),
}
use Body::{Any, Has, Is};

fn matches(actual: &Value, want: &Value) -> bool {
    match (actual, want) {
        (Value::Object(a), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| a.get(k).is_some_and(|av| matches(av, wv))),
        (Value::Array(a), Value::Array(w)) => w.iter().all(|wv| a.iter().any(|av| matches(av, wv))),
        _ => actual == want,
    }
}

struct Sweep {
    m: Mgmt,
    fails: Vec<String>,
    user: (String, String),
}

impl Sweep {
    /// Send one request and record whether the answer is as RabbitMQ gives it; the body is returned
    /// for follow-up checks, the Location header (if any) as the second value.
    async fn check(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
        want: Body,
    ) -> (Value, Option<String>) {
        let mut req = reqwest::Client::new()
            .request(method.clone(), self.m.url(path))
            .basic_auth(&self.user.0, Some(&self.user.1));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("send");
        let got = r.status();
        let location = r
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = r.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let what = format!("{method} {path}");
        if got != StatusCode::from_u16(status).expect("status") {
            self.fails
                .push(format!("{what}: status {got}, want {status}; body {text}"));
        } else {
            let ok = match &want {
                Any => true,
                Is(w) => &value == w,
                Has(w) => matches(&value, w),
            };
            if !ok {
                let w = match want {
                    Is(w) | Has(w) => w,
                    Any => Value::Null,
                };
                self.fails
                    .push(format!("{what}: body {text}\n    want {w}"));
            }
        }
        (value, location)
    }

    fn expect(&mut self, what: &str, ok: bool) {
        if !ok {
            self.fails.push(what.to_string());
        }
    }

    fn as_user(&mut self, user: &str, pass: &str) {
        self.user = (user.into(), pass.into());
    }
}

#[tokio::test]
// One request per line reads as the table it is; rustfmt would spread each over seven.
#[rustfmt::skip]
async fn every_endpoint_answers_as_rabbitmq_does() {
    use Method as M;
    let m = Mgmt::start().await;
    let external = m.server.is_none();
    let mut s = Sweep {
        m,
        fails: vec![],
        user: ("guest".into(), "guest".into()),
    };
    let v = unique("sweep");
    let u = format!("{v}-user");
    let (q, x, x2) = ("sq", "sx", "sx2");
    let vp = format!("/api/vhosts/{v}");

    // node-level
    s.check(M::GET, "/api/cluster-name", None, 200, Any).await;
    s.check(M::GET, "/api/extensions", None, 200, Any).await;
    s.check(M::GET, "/api/auth", None, 200, Is(json!({"enable_uaa": false, "uaa_client_id": "", "uaa_location": ""}))).await;
    s.check(M::GET, "/api/whoami", None, 200, Is(json!({"name": "guest", "tags": ["administrator"]}))).await;

    // vhosts
    let desc = json!({"description": "swept", "tags": "a,b", "tracing": false});
    s.check(M::PUT, &vp, Some(desc.clone()), 201, Any).await;
    s.check(M::PUT, &vp, Some(desc), 204, Any).await;
    s.check(M::GET, &vp, None, 200, Has(json!({"name": v, "description": "swept", "tags": ["a", "b"], "tracing": false}))).await;
    s.check(M::GET, "/api/vhosts/no-such-vhost", None, 404, Is(json!({"error": "Object Not Found", "reason": "Not Found"}))).await;

    // users
    s.check(M::PUT, &format!("/api/users/{u}"), Some(json!({"password": "pw", "tags": "management"})), 201, Any).await;
    s.check(M::PUT, &format!("/api/users/{u}"), Some(json!({"password": "pw", "tags": " management , policymaker ,"})), 204, Any).await;
    s.check(M::PUT, &format!("/api/users/{u}-x"), Some(json!({"password": "pw"})), 400, Is(json!({"error": "bad_request", "reason": "tags_not_present"}))).await;
    s.check(M::GET, &format!("/api/users/{u}"), None, 200, Has(json!({"name": u, "tags": ["management", "policymaker"], "hashing_algorithm": "rabbit_password_hashing_sha256", "limits": {}}))).await;
    s.check(M::GET, "/api/users/without-permissions", None, 200, Has(json!([{"name": u}]))).await;

    // permissions
    let perm = json!({"configure": ".*", "write": ".*", "read": ".*"});
    let pp = format!("/api/permissions/{v}/{u}");
    s.check(M::PUT, &pp, Some(perm.clone()), 201, Any).await;
    s.check(M::PUT, &pp, Some(perm.clone()), 204, Any).await;
    s.check(M::PUT, &format!("/api/permissions/{v}/nobody-at-all"), Some(perm), 400, Is(json!({"error": "bad_request", "reason": "vhost_or_user_not_found"}))).await;
    s.check(M::PUT, &pp, Some(json!({"configure": ".*", "write": ".*"})), 400, Is(json!({"error": "bad_request", "reason": "[{key_missing,read}]"}))).await;
    s.check(M::GET, &pp, None, 200, Is(json!({"user": u, "vhost": v, "configure": ".*", "write": ".*", "read": ".*"}))).await;
    s.check(M::GET, &format!("{vp}/permissions"), None, 200, Has(json!([{"vhost": v, "user": u}]))).await;
    s.check(M::GET, &format!("/api/users/{u}/permissions"), None, 200, Has(json!([{"vhost": v, "user": u}]))).await;
    let tp = format!("/api/topic-permissions/{v}/{u}");
    s.check(M::PUT, &tp, Some(json!({"exchange": "amq.topic", "write": "^x", "read": "^y"})), 201, Any).await;
    s.check(M::PUT, &tp, Some(json!({"exchange": x, "write": "^x", "read": "^y"})), 204, Any).await;
    s.check(M::GET, &tp, None, 200, Has(json!([{"user": u, "vhost": v, "exchange": "amq.topic", "write": "^x", "read": "^y"}, {"exchange": x}]))).await;
    s.check(M::DELETE, &format!("{tp}/{x}"), None, 204, Any).await;
    s.check(M::GET, &format!("{vp}/topic-permissions"), None, 200, Has(json!([{"vhost": v, "exchange": "amq.topic"}]))).await;

    // exchanges
    let xp = format!("/api/exchanges/{v}/{x}");
    s.check(M::PUT, &xp, Some(json!({"type": "topic", "durable": true})), 201, Any).await;
    s.check(M::PUT, &xp, Some(json!({"type": "topic", "durable": true, "arguments": {"x-ignored": 1}})), 204, Any).await;
    s.check(M::PUT, &xp, Some(json!({"type": "fanout", "durable": true})), 400, Is(json!({"error": "bad_request", "reason": format!("inequivalent arg 'type' for exchange '{x}' in vhost '{v}': received 'fanout' but current is 'topic'")}))).await;
    s.check(M::PUT, &format!("/api/exchanges/{v}/{x2}"), Some(json!({})), 201, Any).await;
    s.check(M::GET, &format!("/api/exchanges/{v}/{x2}"), None, 200, Has(json!({"name": x2, "type": "direct", "durable": false, "auto_delete": false, "internal": false, "arguments": {}}))).await;
    s.check(M::PUT, &format!("/api/exchanges/{v}/amq.mine"), Some(json!({})), 401, Is(json!({"error": "not_authorised", "reason": "Access refused."}))).await;
    s.check(M::PUT, &format!("/api/exchanges/{v}/badtype"), Some(json!({"type": "nope"})), 400, Is(json!({"error": "bad_request", "reason": "unknown exchange type 'nope'"}))).await;
    s.check(M::PUT, "/api/exchanges/no-such-vhost/e", Some(json!({})), 404, Is(json!({"error": "not_found", "reason": "vhost_not_found"}))).await;
    s.check(M::PUT, &format!("/api/exchanges/{v}/{x2}"), Some(json!("x")), 400, Is(json!({"error": "bad_request", "reason": "invalid payload: the request body JSON-decoded to a string. Is the input doubly-JSON-encoded?"}))).await;

    // queues and bindings
    let qp = format!("/api/queues/{v}/{q}");
    s.check(M::PUT, &qp, Some(json!({"durable": true, "arguments": {"x-max-length": 10}})), 201, Any).await;
    s.check(M::PUT, &qp, Some(json!({"durable": true, "arguments": {"x-max-length": "ten"}})), 400, Any).await;
    s.check(M::GET, &qp, None, 200, Has(json!({"name": q, "vhost": v, "durable": true, "auto_delete": false, "exclusive": false, "arguments": {"x-max-length": 10}, "type": "classic"}))).await;
    let (_, loc) = s.check(M::POST, &format!("/api/bindings/{v}/e/{x}/q/{q}"), Some(json!({"routing_key": "k"})), 201, Any).await;
    s.expect(
        &format!("queue binding Location {loc:?}"),
        loc.as_deref() == Some("sq/k"),
    );
    let (_, loc) = s.check(M::POST, &format!("/api/bindings/{v}/e/{x}/e/{x2}"), Some(json!({"routing_key": "r", "arguments": {"a": 1}})), 201, Any).await;
    let props = loc
        .as_deref()
        .and_then(|l| l.strip_prefix("sx2/"))
        .unwrap_or("")
        .to_string();
    s.expect(
        &format!("e2e binding Location {loc:?}"),
        props.starts_with("r~") && props.len() == 8,
    );
    s.check(M::GET, &format!("/api/bindings/{v}/e/{x}/e/{x2}"), None, 200, Has(json!([{"source": x, "vhost": v, "destination": x2, "destination_type": "exchange", "routing_key": "r", "arguments": {"a": 1}}]))).await;
    s.check(M::GET, &format!("/api/bindings/{v}/e/{x}/e/{x2}/{props}"), None, 200, Has(json!({"routing_key": "r"}))).await;
    s.check(M::GET, &format!("/api/bindings/{v}/e/{x}/e/{x2}/r~AAAAAA"), None, 404, Any).await;
    s.check(M::POST, &format!("/api/bindings/{v}/e/nope/q/{q}"), Some(json!({})), 404, Is(json!({"error": "not_found", "reason": format!("no exchange 'nope' in vhost '{v}'")}))).await;
    s.check(M::GET, &format!("{xp}/bindings/source"), None, 200, Has(json!([{"destination": q}, {"destination": x2}]))).await;
    s.check(M::GET, &format!("/api/exchanges/{v}/{x2}/bindings/destination"), None, 200, Has(json!([{"source": x}]))).await;
    s.check(M::GET, &format!("/api/exchanges/{v}/nope/bindings/source"), None, 200, Is(json!([]))).await;
    s.check(M::GET, &format!("{qp}/bindings"), None, 200, Has(json!([{"source": "", "routing_key": q}, {"source": x, "routing_key": "k", "properties_key": "k"}]))).await;
    s.check(M::GET, &format!("/api/bindings/{v}"), None, 200, Has(json!([{"source": x, "destination": q}]))).await;
    s.check(M::DELETE, &format!("{xp}?if-unused=true"), None, 400, Is(json!({"error": "bad_request", "reason": format!("exchange '{x}' in vhost '{v}' in use")}))).await;
    let msg = json!({"properties": {"delivery_mode": 2, "headers": {"h": 1}}, "routing_key": "k", "payload": "aGk=", "payload_encoding": "base64"});
    s.check(M::POST, &format!("{xp}/publish"), Some(msg.clone()), 200, Is(json!({"routed": true}))).await;
    s.check(M::POST, &format!("/api/exchanges/{v}/nope/publish"), Some(msg), 400, Is(json!({"error": "bad_request", "reason": format!("404 NOT_FOUND - no exchange 'nope' in vhost '{v}'")}))).await;
    s.check(M::POST, &format!("{xp}/publish"), Some(json!({"routing_key": "k", "payload": "x"})), 400, Is(json!({"error": "bad_request", "reason": "[{key_missing,properties},{key_missing,payload_encoding}]"}))).await;
    s.check(M::POST, &format!("{qp}/get"), Some(json!({"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"})), 200, Is(json!([{"payload_bytes": 2, "redelivered": false, "exchange": x, "routing_key": "k", "message_count": 0, "properties": {"delivery_mode": 2, "headers": {"h": 1}}, "payload": "hi", "payload_encoding": "string"}]))).await;
    s.check(M::POST, &format!("{qp}/get"), Some(json!({"count": 1, "ackmode": "ack_requeue_true", "encoding": "hex"})), 400, Is(json!({"error": "bad_request", "reason": "Unsupported encoding. Please use auto or base64."}))).await;
    s.check(M::DELETE, &format!("{qp}?if-empty=true"), None, 400, Is(json!({"error": "bad_request", "reason": format!("queue '{q}' in vhost '{v}' not empty")}))).await;
    s.check(M::DELETE, &format!("{qp}/contents"), None, 204, Any).await;
    s.check(M::GET, &format!("{qp}/contents"), None, 405, Any).await;

    // limits
    let vl = format!("/api/vhost-limits/{v}");
    s.check(M::GET, &vl, None, 200, Is(json!([]))).await;
    s.check(M::PUT, &format!("{vl}/max-queues"), Some(json!({"value": 10})), 204, Any).await;
    s.check(M::GET, &vl, None, 200, Is(json!([{"vhost": v, "value": {"max-queues": 10}}]))).await;
    s.check(M::GET, &format!("{vl}/max-queues"), None, 405, Any).await;
    s.check(M::PUT, &format!("{vl}/max-foo"), Some(json!({"value": 10})), 400, Is(json!({"error": "bad_request", "reason": "Validation failed\n\nUnrecognised terms [{<<\"max-foo\">>,10}] in limits\n"}))).await;
    s.check(M::DELETE, &format!("{vl}/max-queues"), None, 204, Any).await;
    s.check(M::DELETE, &format!("{vl}/max-queues"), None, 204, Any).await;
    let ul = format!("/api/user-limits/{u}");
    s.check(M::PUT, &format!("{ul}/max-connections"), Some(json!({"value": 5})), 204, Any).await;
    s.check(M::GET, &ul, None, 200, Is(json!([{"user": u, "value": {"max-connections": 5}}]))).await;
    s.check(M::GET, &format!("/api/users/{u}"), None, 200, Has(json!({"limits": {"max-connections": 5}}))).await;
    s.check(M::DELETE, &format!("{ul}/max-connections"), None, 204, Any).await;

    // policies, operator policies, parameters
    let pol = format!("/api/policies/{v}/cap");
    let def = json!({"pattern": "^zz", "definition": {"max-length": 3}, "apply-to": "queues"});
    s.check(M::PUT, &pol, Some(def.clone()), 201, Any).await;
    s.check(M::PUT, &pol, Some(def), 204, Any).await;
    s.check(M::GET, &pol, None, 200, Is(json!({"vhost": v, "name": "cap", "pattern": "^zz", "apply-to": "queues", "definition": {"max-length": 3}, "priority": 0}))).await;
    s.check(M::PUT, &pol, Some(json!({"pattern": "^zz", "definition": {}})), 400, Is(json!({"error": "bad_request", "reason": "Validation failed\n\nno policy provided\n"}))).await;
    s.check(M::PUT, &pol, Some(json!({"pattern": "^zz", "definition": {"no-such-key": 1}})), 400, Is(json!({"error": "bad_request", "reason": "Validation failed\n\n[{&lt;&lt;\"no-such-key\"&gt;&gt;,1}] are not recognised policy settings\n"}))).await;
    s.check(M::PUT, &pol, Some(json!({"definition": {"max-length": 3}})), 400, Is(json!({"error": "bad_request", "reason": "[{key_missing,pattern}]"}))).await;
    s.check(M::GET, &format!("/api/policies/{v}"), None, 200, Has(json!([{"name": "cap"}]))).await;
    let op = format!("/api/operator-policies/{v}/op");
    s.check(M::PUT, &op, Some(json!({"pattern": "^zz", "definition": {"max-length": 100}})), 201, Any).await;
    s.check(M::PUT, &op, Some(json!({"pattern": "^zz", "definition": {"ha-mode": "all"}})), 400, Is(json!({"error": "bad_request", "reason": "Validation failed\n\n[{<<\"ha-mode\">>,<<\"all\">>}] are not recognised policy settings\n"}))).await;
    s.check(M::GET, "/api/parameters", None, 200, Has(json!([{"component": "operator_policy", "vhost": v, "name": "op"}]))).await;
    s.check(M::DELETE, &op, None, 204, Any).await;
    s.check(M::DELETE, &op, None, 404, Any).await;
    s.check(M::DELETE, &pol, None, 204, Any).await;
    let gp = format!("/api/global-parameters/{v}");
    s.check(M::PUT, &gp, Some(json!({"value": {"a": 1}})), 201, Any).await;
    s.check(M::GET, &gp, None, 200, Is(json!({"value": {"a": 1}, "name": v}))).await;
    s.check(M::PUT, &gp, Some(json!({})), 400, Is(json!({"error": "bad_request", "reason": "[{key_missing,value}]"}))).await;
    s.check(M::DELETE, &gp, None, 204, Any).await;
    s.check(M::GET, &gp, None, 404, Any).await;

    // definitions
    let dp = format!("/api/definitions/{v}");
    let (d, _) = s.check(M::GET, &dp, None, 200, Has(json!({"queues": [{"name": q, "durable": true}], "exchanges": [{"name": x, "type": "topic"}]}))).await;
    let keys: Vec<&str> = d
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    s.expect(&format!("vhost definitions keys {keys:?}"), {
        let mut k = keys.clone();
        k.sort_unstable();
        k == [
            "bindings",
            "exchanges",
            "parameters",
            "policies",
            "queues",
            "rabbit_version",
        ]
    });
    s.check(M::POST, &dp, Some(json!({"queues": [{"name": "imported", "durable": true, "auto_delete": false, "arguments": {}}]})), 204, Any).await;
    s.check(M::GET, &format!("/api/queues/{v}/imported"), None, 200, Has(json!({"durable": true}))).await;
    s.check(M::GET, "/api/definitions/no-such-vhost", None, 400, Is(json!({"error": "bad_request", "reason": "vhost_not_found"}))).await;
    s.check(M::POST, "/api/definitions", Some(json!([])), 400, Is(json!({"error": "bad_request", "reason": "failed_to_parse_json"}))).await;

    // aliveness and health checks
    let ok = json!({"status": "ok"});
    s.check(M::GET, &format!("/api/aliveness-test/{v}"), None, 200, Is(ok.clone())).await;
    for c in [
        "alarms",
        "local-alarms",
        "virtual-hosts",
        "certificate-expiration/1/weeks",
    ] {
        s.check(M::GET, &format!("/api/health/checks/{c}"), None, 200, Is(ok.clone())).await;
    }
    s.check(M::GET, "/api/healthchecks/node", None, 200, Is(ok.clone())).await;
    s.check(M::GET, "/api/health/checks/protocol-listener/amqp091", None, 200, Is(json!({"status": "ok", "protocol": "amqp"}))).await;
    s.check(M::GET, "/api/health/checks/port-listener/notaport", None, 400, Is(json!({"error": "bad_request", "reason": "Invalid port"}))).await;
    s.check(M::GET, "/api/health/checks/certificate-expiration/1/fortnights", None, 400, Is(json!({"error": "bad_request", "reason": "Time unit not recognised. Supported units: days, weeks, months, years."}))).await;
    s.check(M::GET, "/api/health/checks/node-is-quorum-critical", None, 200, Is(json!({"status": "ok", "reason": "single node cluster"}))).await;
    if !external {
        // RabbitMQ 3.11+ (not 3.10) has this one; the issue asks for it
        s.check(M::GET, "/api/health/checks/ready-to-serve-clients", None, 200, Is(ok.clone())).await;
    }

    // what a management user may and may not do
    s.as_user(&u, "pw");
    s.check(M::GET, "/api/whoami", None, 200, Is(json!({"name": u, "tags": ["management", "policymaker"]}))).await;
    s.check(M::GET, &vp, None, 401, Is(json!({"error": "not_authorised", "reason": "Not administrator user"}))).await;
    s.check(M::GET, "/api/nodes", None, 401, Is(json!({"error": "not_authorised", "reason": "Not monitor user"}))).await;
    s.check(M::GET, "/api/queues/%2F", None, 401, Is(json!({"error": "not_authorised", "reason": "User not authorised to access virtual host"}))).await;
    s.check(M::GET, &format!("/api/queues/{v}"), None, 200, Has(json!([{"name": q}]))).await;
    let (vs, _) = s.check(M::GET, "/api/vhosts", None, 200, Has(json!([{"name": v}]))).await;
    s.expect(
        "a management user lists only its vhosts",
        vs.as_array().map(Vec::len) == Some(1),
    );
    s.as_user("guest", "guest");

    // bulk delete and cleanup
    let gone = format!("{v}-bulk");
    s.check(M::PUT, &format!("/api/users/{gone}"), Some(json!({"password": "pw", "tags": ""})), 201, Any).await;
    s.check(M::POST, "/api/users/bulk-delete", Some(json!({"users": [gone]})), 204, Any).await;
    s.check(M::GET, &format!("/api/users/{gone}"), None, 404, Any).await;
    s.check(M::DELETE, &format!("/api/exchanges/{v}/{x2}"), None, 204, Any).await;
    s.check(M::DELETE, &vp, None, 204, Any).await;
    s.check(M::DELETE, &vp, None, 404, Any).await;
    s.check(M::DELETE, &format!("/api/users/{u}"), None, 204, Any).await;

    assert!(
        s.fails.is_empty(),
        "{} mismatches:\n  {}",
        s.fails.len(),
        s.fails.join("\n  ")
    );
}
