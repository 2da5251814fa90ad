//! The management API through rabbitmq_http_client: every response it reads must deserialize into the
//! client's RabbitMQ-shaped types, and what the API changes must be what AMQP clients then see.

use super::{eventually, Mgmt};
use crate::common::*;
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use rabbitmq_http_client::commons::{
    ExchangeType, PolicyTarget, QueueType, VirtualHostLimitTarget,
};
use rabbitmq_http_client::password_hashing::{base64_encoded_salted_password_hash_sha256, salt};
use rabbitmq_http_client::requests::{
    EnforcedLimitParams, ExchangeParams, Permissions, PolicyParams, QueueParams, UserParams,
    VirtualHostParams,
};
use serde_json::{json, Map, Value};

#[tokio::test]
async fn every_listing_deserializes_after_traffic() {
    let m = Mgmt::start().await;
    let api = m.api();
    let conn = connect(&m.amqp).await;
    let ch = open(&conn).await;
    let q = declare_queue(&ch, &unique("listed")).await;
    let x = unique("listed-x");
    declare_exchange(&ch, &x, lapin::ExchangeKind::Topic).await;
    bind(&ch, &q, &x, "a.#").await;
    publish(&ch, &x, "a.b", b"one").await;
    publish(&ch, &x, "a.c", b"two").await;
    within(ch.basic_qos(1, BasicQosOptions::default()))
        .await
        .expect("qos");
    let consumer = within(ch.basic_consume(
        q.as_str().into(),
        "listed-tag".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    let mut d = deliveries(consumer);
    d.next().await;

    let info = eventually("queue stats", || async {
        let i = api.get_queue_info("/", &q).await.ok()?;
        (i.message_count == 2 && i.unacknowledged_message_count == 1).then_some(i)
    })
    .await;
    assert_eq!(info.consumer_count, 1);
    assert_eq!(info.queue_type, "classic");
    assert!(!info.durable);

    let overview = api.overview().await.expect("overview");

    assert!(overview.object_totals.queues >= 1);
    assert!(overview.object_totals.connections >= 1);
    assert!(!overview.listeners.is_empty());
    assert!(api
        .list_vhosts()
        .await
        .expect("vhosts")
        .iter()
        .any(|v| v.name == "/"));
    assert_eq!(api.get_vhost("/").await.expect("vhost").name, "/");
    let me = api.current_user().await.expect("whoami");
    assert_eq!(me.name, "guest");
    assert!(me.tags.0.iter().any(|t| t == "administrator"));
    assert!(api
        .list_users()
        .await
        .expect("users")
        .iter()
        .any(|u| u.name == "guest"));
    assert!(api
        .list_permissions()
        .await
        .expect("perms")
        .iter()
        .any(|p| p.user == "guest"));
    api.list_topic_permissions().await.expect("topic perms");
    let xi = api.get_exchange_info("/", &x).await.expect("exchange");
    assert_eq!(xi.exchange_type, "topic");
    assert!(api
        .list_exchanges()
        .await
        .expect("exchanges")
        .iter()
        .any(|e| e.name == "amq.direct"));
    let bindings = api
        .list_queue_bindings("/", &q)
        .await
        .expect("queue bindings");
    assert!(bindings
        .iter()
        .any(|b| b.source == x && b.routing_key == "a.#"));
    assert!(bindings
        .iter()
        .any(|b| b.source.is_empty() && b.routing_key == q));
    let from_x = api
        .list_exchange_bindings_with_source("/", &x)
        .await
        .expect("source");
    assert_eq!(from_x.len(), 1);
    api.list_bindings().await.expect("bindings");
    assert!(api
        .list_queues()
        .await
        .expect("queues")
        .iter()
        .any(|i| i.name == q));

    let conns = api.list_connections().await.expect("connections");
    assert!(!conns.is_empty());
    let one = api
        .get_connection_info(&conns[0].name)
        .await
        .expect("connection");
    assert_eq!(one.username, "guest");
    assert!(!api.list_channels().await.expect("channels").is_empty());

    api.list_policies().await.expect("policies");
    api.list_operator_policies()
        .await
        .expect("operator policies");
    api.list_runtime_parameters().await.expect("parameters");
    api.list_all_vhost_limits().await.expect("vhost limits");
    api.list_all_user_limits().await.expect("user limits");
    let defs = api
        .export_cluster_wide_definitions_as_data()
        .await
        .expect("definitions");
    assert!(defs.virtual_hosts.iter().any(|v| v.name == "/"));
    api.health_check_local_alarms().await.expect("local alarms");
    api.health_check_cluster_wide_alarms()
        .await
        .expect("cluster alarms");
    let (_, port) = host_port(&m.amqp);
    api.health_check_port_listener(port)
        .await
        .expect("listener check");
    assert!(api.health_check_port_listener(1).await.is_err());

    if m.server.is_none() {
        // rabbitmq_http_client reads node and consumer keys that RabbitMQ added after 3.10
        // (`being_drained`, `consumer_timeout`); Warren reports them, 3.10 does not.
        return;
    }
    let node = &api.list_nodes().await.expect("nodes")[0];
    assert_eq!(
        api.get_node_info(&node.name).await.expect("node").name,
        node.name
    );
    let consumers = api.list_consumers().await.expect("consumers");
    let c = consumers
        .iter()
        .find(|c| c.consumer_tag == "listed-tag")
        .expect("our consumer");
    assert_eq!(c.queue.name, q);
    assert!(c.manual_ack);
    assert_eq!(c.prefetch_count, 1);
}

#[tokio::test]
async fn topology_declared_over_http_serves_amqp_clients() {
    let m = Mgmt::start().await;
    let api = m.api();
    let vhost = unique("api-vhost");
    let user = unique("api-user");
    api.create_vhost(&VirtualHostParams::named(&vhost).with_description("made over HTTP"))
        .await
        .expect("create vhost");
    let hash = base64_encoded_salted_password_hash_sha256(&salt(), "s3cret");
    api.create_user(&UserParams::new(&user, &hash, "management"))
        .await
        .expect("create user");
    api.grant_full_permissions(&user, &vhost)
        .await
        .expect("permissions");
    api.declare_exchange(
        &vhost,
        &ExchangeParams::durable("orders", ExchangeType::Direct, None),
    )
    .await
    .expect("exchange");
    api.declare_queue(
        &vhost,
        &QueueParams::new("orders.new", QueueType::Classic, true, false, None).with_max_length(5),
    )
    .await
    .expect("queue");
    api.bind_queue(&vhost, "orders.new", "orders", Some("new"), None)
        .await
        .expect("bind");

    let info = api
        .get_queue_info(&vhost, "orders.new")
        .await
        .expect("queue info");
    assert!(info.durable);
    assert_eq!(info.arguments.0.get("x-max-length"), Some(&json!(5)));

    // the new user logs in over AMQP with the hashed password and publishes into the new vhost
    let b = TestBroker::from_url(amqp_url_for(&m, &user, "s3cret", &vhost));
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    confirm_select(&ch).await;
    publish_confirmed(&ch, "orders", "new", b"from amqp").await;

    let routed = api
        .publish_message(&vhost, "orders", "new", "from http", Default::default())
        .await
        .expect("publish");
    assert!(routed.routed);
    let dropped = api
        .publish_message(&vhost, "orders", "nowhere", "lost", Default::default())
        .await
        .expect("publish unroutable");
    assert!(!dropped.routed);

    let got = api
        .get_messages(&vhost, "orders.new", 5, "ack_requeue_false")
        .await
        .expect("get");
    let payloads: Vec<&str> = got.iter().map(|g| g.payload.as_str()).collect();
    assert_eq!(payloads, ["from amqp", "from http"]);
    assert_eq!(got[0].exchange, "orders");
    assert_eq!(got[1].message_count, 0);
    assert!(get(&ch, "orders.new", true).await.is_none());

    // a user without the right tag is refused by the API
    let plain = unique("api-plain");
    api.create_user(&UserParams::new(&plain, &hash, ""))
        .await
        .expect("create plain user");
    for (who, pass) in [(plain.as_str(), "s3cret"), (user.as_str(), "wrong")] {
        let err = m
            .api_as(who, pass)
            .list_queues()
            .await
            .expect_err("refused");
        assert_eq!(err.status_code().map(|s| s.as_u16()), Some(401), "{who}");
    }
    // the management user sees its vhost's queues only, and cannot list users
    let mine = m
        .api_as(&user, "s3cret")
        .list_queues()
        .await
        .expect("own queues");
    assert!(mine.iter().all(|q| q.vhost == vhost));
    assert!(m.api_as(&user, "s3cret").list_users().await.is_err());

    api.delete_vhost(&vhost, false).await.expect("delete vhost");
    api.delete_user(&user, false).await.expect("delete user");
    api.delete_user(&plain, false).await.expect("delete user");
    assert!(api
        .get_vhost(&vhost)
        .await
        .expect_err("gone")
        .is_not_found());
    api.delete_vhost(&vhost, true)
        .await
        .expect("idempotent delete");
}

fn amqp_url_for(m: &Mgmt, user: &str, pass: &str, vhost: &str) -> String {
    let (host, port) = host_port(&m.amqp);
    format!(
        "amqp://{user}:{pass}@{host}:{port}/{}",
        vhost.replace('/', "%2f")
    )
}

#[tokio::test]
async fn closing_a_connection_over_http_reaches_the_client_with_the_reason() {
    let m = Mgmt::start().await;
    let api = m.api();
    let label = unique("to-be-closed");
    let conn = within(lapin::Connection::connect_uri(
        amqp_uri(&m.amqp.url()),
        lapin::ConnectionProperties::default().with_connection_name(label.clone().into()),
    ))
    .await
    .expect("connect");
    let mut events = Box::pin(conn.events_listener());
    let name = eventually("our connection in the list", || async {
        let conns = api.list_connections().await.ok()?;
        conns
            .into_iter()
            .find(|c| c.client_properties.connection_name == label)
            .map(|c| c.name)
    })
    .await;
    api.close_connection(&name, Some("maintenance window"), false)
        .await
        .expect("close");
    let (code, text) = within(async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(e)) => break amqp_error(&e),
                Some(_) => continue,
                None => panic!("events ended without an error"),
            }
        }
    })
    .await;
    assert_eq!(code, 320);
    assert_eq!(text, "CONNECTION_FORCED - maintenance window");
    // the connection leaves the list once the client's close-ok arrives
    eventually("the closed connection to leave the list", || async {
        let r = api.get_connection_info(&name).await;
        r.err().filter(|e| e.is_not_found()).map(|_| ())
    })
    .await;
    let err = api
        .close_connection(&name, None, false)
        .await
        .expect_err("gone");
    assert!(err.is_not_found());
    api.close_connection(&name, None, true)
        .await
        .expect("idempotent");
}

#[tokio::test]
async fn policies_and_limits_set_over_http_apply_to_amqp_declarations() {
    let m = Mgmt::start().await;
    let api = m.api();
    let vhost = unique("limits");
    api.create_vhost(&VirtualHostParams::named(&vhost))
        .await
        .expect("vhost");
    api.grant_full_permissions("guest", &vhost)
        .await
        .expect("permissions");
    let mut def = Map::new();
    def.insert("max-length".into(), json!(2));
    api.declare_policy(&PolicyParams {
        vhost: &vhost,
        name: "cap",
        pattern: "^capped\\.",
        apply_to: PolicyTarget::Queues,
        priority: 1,
        definition: def,
    })
    .await
    .expect("policy");
    let b = TestBroker::from_url(amqp_url_for(&m, "guest", "guest", &vhost));
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "capped.one").await;
    for body in ["1", "2", "3"] {
        publish(&ch, "", "capped.one", body.as_bytes()).await;
    }
    let info = eventually("policy applied", || async {
        let i = api.get_queue_info(&vhost, "capped.one").await.ok()?;
        (i.message_count == 2).then_some(i)
    })
    .await;
    assert_eq!(info.policy.as_deref(), Some("cap"));
    assert_eq!(
        info.effective_policy_definition
            .as_ref()
            .and_then(|d| d.get("max-length")),
        Some(&json!(2))
    );
    assert_eq!(drain(&ch, "capped.one").await, ["2", "3"]);
    let p = api.get_policy(&vhost, "cap").await.expect("get policy");
    assert_eq!(p.pattern, "^capped\\.");

    api.set_vhost_limit(
        &vhost,
        EnforcedLimitParams::new(VirtualHostLimitTarget::MaxQueues, 1),
    )
    .await
    .expect("limit");
    let limits = api.list_vhost_limits(&vhost).await.expect("limits");
    assert_eq!(limits.len(), 1);
    let err = try_declare_queue(&ch, "second", Default::default(), FieldTable::default())
        .await
        .expect_err("over the limit");
    assert_channel_closed(
        &err,
        406,
        &format!(
            "PRECONDITION_FAILED - cannot declare queue 'second': queue limit in vhost '{vhost}' (1) is reached"
        ),
    );
    api.delete_vhost(&vhost, false).await.expect("cleanup");
}

#[tokio::test]
async fn definitions_exported_from_one_warren_rebuild_another() {
    let a = Mgmt::warren().await;
    let api = a.api();
    let conn = connect(&a.amqp).await;
    let ch = open(&conn).await;
    let q = unique("exported");
    declare_queue_with(&ch, &q, durable(), FieldTable::default()).await;
    let x = unique("exported-x");
    declare_exchange(&ch, &x, lapin::ExchangeKind::Fanout).await;
    bind(&ch, &q, &x, "").await;
    let hash = base64_encoded_salted_password_hash_sha256(&salt(), "pw");
    api.create_user(&UserParams::new("exported-user", &hash, "monitoring"))
        .await
        .expect("user");
    let mut def = Map::new();
    def.insert("message-ttl".into(), json!(60000));
    api.declare_policy(&PolicyParams {
        vhost: "/",
        name: "ttl",
        pattern: "^exported",
        apply_to: PolicyTarget::Queues,
        priority: 0,
        definition: def,
    })
    .await
    .expect("policy");
    let text = api.export_cluster_wide_definitions().await.expect("export");
    let defs: Value = serde_json::from_str(&text).expect("json");

    let b = Mgmt::warren().await;
    b.api().import_definitions(defs).await.expect("import");
    let api_b = b.api();
    assert!(api_b.get_queue_info("/", &q).await.expect("queue").durable);
    assert_eq!(
        api_b
            .get_exchange_info("/", &x)
            .await
            .expect("x")
            .exchange_type,
        "fanout"
    );
    assert_eq!(
        api_b
            .list_exchange_bindings_with_source("/", &x)
            .await
            .expect("b")
            .len(),
        1
    );
    assert_eq!(
        api_b.get_policy("/", "ttl").await.expect("policy").pattern,
        "^exported"
    );
    let u = api_b.get_user("exported-user").await.expect("user");
    assert_eq!(
        u.password_hash.as_ref().map(|h| h.as_str()),
        Some(hash.as_str())
    );
    // the imported user logs in with the password whose hash travelled
    let (_, port) = host_port(&b.amqp);
    let url = format!("amqp://exported-user:pw@127.0.0.1:{port}/%2f");
    api_b
        .declare_permissions(&Permissions {
            user: "exported-user",
            vhost: "/",
            configure: "",
            read: "",
            write: "",
        })
        .await
        .expect("perms");
    connect(&TestBroker::from_url(url)).await;
}
