//! The management API at the HTTP level: status codes, headers and error bodies as RabbitMQ's
//! management plugin produces them (observed on 3.10.8), which clients such as rabbitmqadmin and
//! monitoring scripts match on.

use super::Mgmt;
use crate::common::*;
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};

/// A request as guest (with a JSON body when given).
async fn send(m: &Mgmt, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = m.request(method, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("send")
}

async fn body_json(r: reqwest::Response) -> Value {
    r.json().await.expect("JSON body")
}

#[tokio::test]
async fn authentication_and_authorisation_failures_are_401_with_rabbitmq_bodies() {
    let m = Mgmt::start().await;
    let c = reqwest::Client::new();
    let anon = c.get(m.url("/api/overview")).send().await.expect("send");
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anon.headers()[header::WWW_AUTHENTICATE],
        "Basic realm=\"RabbitMQ Management\""
    );
    let bad = c
        .get(m.url("/api/overview"))
        .basic_auth("guest", Some("nope"))
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert!(bad.headers().contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(
        body_json(bad).await,
        json!({"error": "not_authorized", "reason": "Login failed"})
    );
    // a user without a management tag: authorisation, British spelling, no challenge
    let user = unique("untagged");
    let put = send(
        &m,
        Method::PUT,
        &format!("/api/users/{user}"),
        Some(json!({"password": "pw", "tags": ""})),
    )
    .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let r = c
        .get(m.url("/api/queues"))
        .basic_auth(&user, Some("pw"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(!r.headers().contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(
        body_json(r).await,
        json!({"error": "not_authorised", "reason": "Not management user"})
    );
    // /api/auth needs no credentials
    let auth = c.get(m.url("/api/auth")).send().await.expect("send");
    assert_eq!(auth.status(), StatusCode::OK);
    send(&m, Method::DELETE, &format!("/api/users/{user}"), None).await;
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_bad_accept() {
    let m = Mgmt::start().await;
    let r = send(&m, Method::GET, "/api/no-such-thing", None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        body_json(r).await,
        json!({"error": "Object Not Found", "reason": "Not Found"})
    );
    let r = send(&m, Method::GET, "/api/queues/%2F/never-declared", None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // 405 comes before authentication
    let r = reqwest::Client::new()
        .delete(m.url("/api/overview"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()[header::ALLOW], "HEAD, GET, OPTIONS");
    let r = m
        .get("/api/overview")
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
    let r = send(&m, Method::GET, "/api/vhosts/", None).await;
    assert_eq!(r.status(), StatusCode::OK, "trailing slash tolerated");
    let r = send(&m, Method::GET, "/api/overview", None).await;
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
}

#[tokio::test]
async fn queue_put_redeclare_and_conditional_delete() {
    let m = Mgmt::start().await;
    let q = unique("put-q");
    let path = format!("/api/queues/%2F/{q}");
    let put = |body: Value| send(&m, Method::PUT, &path, Some(body));
    assert_eq!(
        put(json!({"durable": true})).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        put(json!({"durable": true})).await.status(),
        StatusCode::NO_CONTENT
    );
    // an omitted durable means false, which differs from the queue
    let r = put(json!({})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        body_json(r).await,
        json!({"error": "bad_request", "reason": format!(
            "inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'false' but current is 'true'")})
    );
    let r = send(
        &m,
        Method::PUT,
        "/api/queues/%2F/amq.reserved",
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        body_json(r).await,
        json!({"error": "not_authorised", "reason": "Access refused."})
    );
    let r = send(
        &m,
        Method::PUT,
        "/api/queues/no-such-vhost/q",
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        body_json(r).await,
        json!({"error": "not_found", "reason": "vhost_not_found"})
    );

    let publish = send(&m, Method::POST, "/api/exchanges/%2F/amq.default/publish", Some(json!({"properties": {}, "routing_key": q, "payload": "x", "payload_encoding": "string"}))).await;
    assert_eq!(body_json(publish).await, json!({"routed": true}));
    let r = send(&m, Method::DELETE, &format!("{path}?if-empty=true"), None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        body_json(r).await,
        json!({"error": "bad_request", "reason": format!("queue '{q}' in vhost '/' not empty")})
    );
    let purge = send(&m, Method::DELETE, &format!("{path}/contents"), None).await;
    assert_eq!(purge.status(), StatusCode::NO_CONTENT);
    let r = send(&m, Method::DELETE, &format!("{path}?if-empty=true"), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn get_messages_encodes_like_rabbitmq() {
    let m = Mgmt::start().await;
    let conn = connect(&m.amqp).await;
    let ch = open(&conn).await;
    let q = declare_queue(&ch, &unique("get-enc")).await;
    publish(&ch, "", &q, b"plain text").await;
    publish(&ch, "", &q, &[0xff, 0x00, 0x01]).await;
    wait_for_count(&ch, &q, 2).await;
    let r = send(
        &m,
        Method::POST,
        &format!("/api/queues/%2F/{q}/get"),
        Some(json!({"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 5})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = body_json(r).await;
    assert_eq!(got[0]["payload"], "plain");
    assert_eq!(got[0]["payload_bytes"], 10);
    assert_eq!(got[0]["payload_encoding"], "string");
    assert_eq!(got[0]["message_count"], 1);
    // empty properties are an empty list, as RabbitMQ's JSON encoder writes them
    assert_eq!(got[0]["properties"], json!([]));
    assert_eq!(got[1]["payload"], "/wAB");
    assert_eq!(got[1]["payload_encoding"], "base64");
    // requeued: both are still there, now redelivered
    let again = send(
        &m,
        Method::POST,
        &format!("/api/queues/%2F/{q}/get"),
        Some(json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})),
    )
    .await;
    let again = body_json(again).await;
    assert_eq!(again[0]["redelivered"], true);
    assert_eq!(again[0]["message_count"], 1);
    let missing = send(
        &m,
        Method::POST,
        &format!("/api/queues/%2F/{q}/get"),
        Some(json!({"count": 1, "ackmode": "ack_requeue_false"})),
    )
    .await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        body_json(missing).await,
        json!({"error": "bad_request", "reason": "[{key_missing,encoding}]"})
    );
}

#[tokio::test]
async fn binding_post_location_and_properties_key() {
    let m = Mgmt::start().await;
    let conn = connect(&m.amqp).await;
    let ch = open(&conn).await;
    let q = declare_queue(&ch, &unique("bind-loc")).await;
    let r = send(
        &m,
        Method::POST,
        &format!("/api/bindings/%2F/e/amq.topic/q/{q}"),
        Some(json!({"routing_key": "a b/c~d%e#*"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()[header::LOCATION]
        .to_str()
        .expect("ascii")
        .to_string();
    assert_eq!(location, format!("{q}/a%2Bb%252Fc%257Ed%2525e%2523%252A"));
    let list = body_json(
        send(
            &m,
            Method::GET,
            &format!("/api/bindings/%2F/e/amq.topic/q/{q}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(list[0]["properties_key"], "a+b%2Fc%7Ed%25e%23%2A");
    assert_eq!(list[0]["routing_key"], "a b/c~d%e#*");
    // the Location resolves against the collection URL
    let one = send(
        &m,
        Method::GET,
        &format!("/api/bindings/%2F/e/amq.topic/q/{location}"),
        None,
    )
    .await;
    assert_eq!(one.status(), StatusCode::OK);
    let del = m
        .request(
            Method::DELETE,
            &format!("/api/bindings/%2F/e/amq.topic/q/{location}"),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    let gone = send(
        &m,
        Method::GET,
        &format!("/api/bindings/%2F/e/amq.topic/q/{q}"),
        None,
    )
    .await;
    assert_eq!(body_json(gone).await, json!([]));
}

#[tokio::test]
async fn pagination_follows_rabbitmq_rules() {
    let m = Mgmt::start().await;
    let conn = connect(&m.amqp).await;
    let ch = open(&conn).await;
    let prefix = unique("paged");
    for i in 0..3 {
        declare_queue(&ch, &format!("{prefix}-{i}")).await;
    }
    let page = body_json(
        send(
            &m,
            Method::GET,
            &format!("/api/queues/%2F?page=1&page_size=2&name={prefix}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(page["filtered_count"], 3);
    assert_eq!(page["page_count"], 2);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["items"][0]["name"], format!("{prefix}-0"));
    let r = send(
        &m,
        Method::GET,
        &format!("/api/queues/%2F?page=9&page_size=2&name={prefix}"),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        body_json(r).await,
        json!({"error": "page_out_of_range", "reason": "Page out of range, page: 9 page size: 2, len: 3"})
    );
    let r = send(&m, Method::GET, "/api/queues?page=1&page_size=501", None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        body_json(r).await,
        json!({"error": "invalid_pagination_parameters", "reason": "Invalid pagination parameters: page number 1, page size 501"})
    );
    // page_size alone does not paginate
    let plain = body_json(send(&m, Method::GET, "/api/queues?page_size=1", None).await).await;
    assert!(plain.is_array());
}

#[tokio::test]
async fn nodes_report_free_disk_space_even_when_ephemeral() {
    let m = Mgmt::start().await;
    let nodes = body_json(send(&m, Method::GET, "/api/nodes", None).await).await;
    let free = nodes[0]["disk_free"].as_u64().unwrap_or(0);
    assert!(free > 0, "disk_free: {}", nodes[0]["disk_free"]);
    assert_eq!(nodes[0]["disk_free_alarm"], json!(false));
}
