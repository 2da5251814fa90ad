//! The command path and routing without sockets: every command validated and applied, replay of a recorded
//! log giving the same state, undo of a change the log could not take, and routing across exchange-to-
//! exchange bindings, alternate exchanges, CC/BCC keys and cycles.

use super::command::BindingArgs;
use super::*;
use crate::error::ReplyCode;
use crate::queue::Routed;
use amq_protocol::types::{AMQPValue, FieldTable};

fn run(b: &Broker, cmd: Command) -> AmqpResult<Outcome> {
    b.execute(cmd, &Actor::internal()).map(|e| e.outcome)
}

fn ok(b: &Broker, cmd: Command) {
    run(b, cmd).expect("command applies");
}

fn code(r: AmqpResult<Outcome>) -> (u16, String) {
    let e = r.expect_err("command refused");
    (e.code.code(), e.text)
}

fn exchange(name: &str, kind: &str, durable: bool, args: FieldTable) -> Command {
    Command::DeclareExchange {
        vhost: "/".into(),
        name: name.into(),
        kind: kind.into(),
        durable,
        auto_delete: false,
        internal: false,
        arguments: args,
    }
}

fn queue(name: &str, durable: bool) -> Command {
    Command::DeclareQueue {
        vhost: "/".into(),
        name: name.into(),
        durable,
        exclusive: false,
        auto_delete: false,
        arguments: FieldTable::default(),
    }
}

fn binding(source: &str, destination: &str, to_exchange: bool, key: &str) -> BindingArgs {
    BindingArgs {
        vhost: "/".into(),
        source: source.into(),
        destination: destination.into(),
        to_exchange,
        routing_key: key.into(),
        arguments: FieldTable::default(),
    }
}

fn delete_queue(name: &str, if_unused: bool, if_empty: bool) -> Command {
    Command::DeleteQueue {
        vhost: "/".into(),
        name: name.into(),
        if_unused,
        if_empty,
        cause: DeleteCause::Client,
    }
}

fn routed(b: &Broker, x: &str, keys: &[&str]) -> Vec<String> {
    let v = b.vhost("/").unwrap();
    let mut out = Routed::new();
    v.route(&v.exchange(x).unwrap(), keys, None, &mut out);
    let mut names: Vec<String> = out.iter().map(|q| q.name.to_string()).collect();
    names.sort();
    names
}

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

#[test]
fn exchange_commands_validate_like_rabbitmq() {
    let b = Broker::new(crate::Config::default());
    ok(&b, exchange("x", "direct", true, FieldTable::default()));
    ok(&b, exchange("x", "direct", true, FieldTable::default()));
    assert_eq!(
        code(run(&b, exchange("x", "fanout", true, FieldTable::default()))),
        (
            406,
            "inequivalent arg 'type' for exchange 'x' in vhost '/': received 'fanout' but current is 'direct'"
                .into()
        )
    );
    assert_eq!(
        code(run(&b, exchange("y", "nope", true, FieldTable::default()))).0,
        503
    );
    assert_eq!(
        code(run(
            &b,
            exchange("amq.mine", "direct", true, FieldTable::default())
        ))
        .0,
        403
    );
    let bad_ae = table(&[("alternate-exchange", AMQPValue::LongInt(1))]);
    assert_eq!(code(run(&b, exchange("z", "direct", true, bad_ae))).0, 406);
    assert_eq!(
        code(run(
            &b,
            Command::DeleteExchange {
                vhost: "/".into(),
                name: "amq.direct".into(),
                if_unused: false
            }
        ))
        .0,
        403
    );
    ok(&b, queue("q", true));
    ok(&b, Command::Bind(binding("x", "q", false, "k")));
    assert_eq!(
        code(run(
            &b,
            Command::DeleteExchange {
                vhost: "/".into(),
                name: "x".into(),
                if_unused: true
            }
        )),
        (406, "exchange 'x' in vhost '/' in use".into())
    );
}

#[test]
fn queue_and_binding_commands_validate_like_rabbitmq() {
    let b = Broker::new(crate::Config::default());
    ok(&b, queue("q", true));
    assert_eq!(
        code(run(&b, queue("q", false))),
        (
            406,
            "inequivalent arg 'durable' for queue 'q' in vhost '/': received 'false' but current is 'true'"
                .into()
        )
    );
    assert_eq!(
        code(run(&b, Command::Bind(binding("nope", "q", false, "")))),
        (404, "no exchange 'nope' in vhost '/'".into())
    );
    assert_eq!(
        code(run(
            &b,
            Command::Bind(binding("amq.direct", "nope", false, ""))
        )),
        (404, "no queue 'nope' in vhost '/'".into())
    );
    assert_eq!(
        code(run(&b, Command::Bind(binding("", "q", false, "")))).0,
        403
    );
    let v = b.vhost("/").unwrap();
    v.queue("q")
        .unwrap()
        .publish(std::sync::Arc::new(crate::queue::message::Message {
            exchange: "".into(),
            routing_key: "q".into(),
            header: bytes::Bytes::new(),
            properties: crate::queue::message::Props::default(),
            body: bytes::Bytes::from_static(b"x"),
            broker_deaths: false,
        }));
    assert_eq!(
        code(run(&b, delete_queue("q", false, true))),
        (406, "queue 'q' in vhost '/' not empty".into())
    );
    match run(&b, delete_queue("q", false, false)).unwrap() {
        Outcome::QueueDeleted { messages, .. } => assert_eq!(messages, 1),
        other => panic!("{other:?}"),
    }
    assert!(v.queue("q").is_none());
    ok(&b, delete_queue("q", false, false));
}

#[test]
fn access_control_commands() {
    let b = Broker::new(crate::Config::default());
    let perms = |user: &str, configure: &str| Command::SetPermissions {
        user: user.into(),
        vhost: "/".into(),
        configure: configure.into(),
        write: ".*".into(),
        read: ".*".into(),
    };
    assert_eq!(code(run(&b, perms("nobody", ".*"))).0, 404);
    ok(
        &b,
        Command::PutUser {
            name: "u".into(),
            password: StoredPassword::hash("pw"),
            tags: vec!["management".into()],
        },
    );
    assert_eq!(code(run(&b, perms("u", "("))).0, 406);
    assert!(!b.can_access("u", "/"));
    ok(&b, perms("u", "^amq"));
    assert!(b.can_access("u", "/"));
    assert!(b.users.permission("u", "/").unwrap().allows(0, "amq.gen-1"));
    ok(
        &b,
        Command::SetTopicPermissions {
            user: "u".into(),
            vhost: "/".into(),
            exchange: "amq.topic".into(),
            write: "^a".into(),
            read: ".*".into(),
        },
    );
    assert_eq!(b.users.topic_permissions("u", "/").len(), 1);
    ok(
        &b,
        Command::SetUserLimit {
            user: "u".into(),
            name: "max-channels".into(),
            value: 3,
        },
    );
    assert_eq!(
        code(run(
            &b,
            Command::SetUserLimit {
                user: "u".into(),
                name: "max-queues".into(),
                value: 3
            }
        ))
        .0,
        406
    );
    ok(&b, Command::DeleteUser { name: "u".into() });
    assert!(
        !b.can_access("u", "/"),
        "a deleted user's grants go with it"
    );
    assert!(b.users.topic_permissions("u", "/").is_empty());
}

#[test]
fn vhost_limits_and_parameters() {
    let b = Broker::new(crate::Config::default());
    ok(
        &b,
        Command::SetVhostLimit {
            vhost: "/".into(),
            name: "max-queues".into(),
            value: 1,
        },
    );
    ok(&b, queue("a", false));
    let (c, text) = code(run(&b, queue("b", false)));
    assert_eq!(c, 406);
    assert_eq!(
        text,
        "cannot declare queue 'b': queue limit in vhost '/' (1) is reached"
    );
    ok(
        &b,
        Command::SetGlobalParameter {
            name: "cluster_name".into(),
            value: "warren@test".into(),
        },
    );
    assert_eq!(b.global_parameters().len(), 1);
    assert_eq!(
        code(run(
            &b,
            Command::SetParameter {
                component: "c".into(),
                vhost: "nope".into(),
                name: "n".into(),
                value: 1.into()
            }
        ))
        .0,
        404
    );
}

#[test]
fn routing_through_exchange_to_exchange_bindings_with_cycles() {
    let b = Broker::new(crate::Config::default());
    for (x, kind) in [("a", "topic"), ("b", "fanout"), ("c", "direct")] {
        ok(&b, exchange(x, kind, false, FieldTable::default()));
    }
    for q in ["qa", "qb", "qc"] {
        ok(&b, queue(q, false));
    }
    ok(&b, Command::Bind(binding("a", "b", true, "k.#")));
    ok(&b, Command::Bind(binding("b", "c", true, "")));
    ok(&b, Command::Bind(binding("c", "a", true, "k.1")));
    ok(&b, Command::Bind(binding("a", "qa", false, "*.1")));
    ok(&b, Command::Bind(binding("b", "qb", false, "")));
    ok(&b, Command::Bind(binding("c", "qc", false, "k.1")));
    assert_eq!(routed(&b, "a", &["k.1"]), ["qa", "qb", "qc"]);
    assert_eq!(routed(&b, "a", &["k.2"]), ["qb"]);
    assert!(routed(&b, "a", &["x"]).is_empty());
    // CC-style extra keys: each queue once however many keys reach it.
    assert_eq!(routed(&b, "c", &["k.1", "k.1", "z"]), ["qa", "qb", "qc"]);
}

#[test]
fn alternate_exchange_takes_what_matched_nothing() {
    let b = Broker::new(crate::Config::default());
    ok(&b, exchange("ae", "fanout", false, FieldTable::default()));
    let args = table(&[("alternate-exchange", AMQPValue::LongString("ae".into()))]);
    ok(&b, exchange("main", "direct", false, args));
    ok(&b, queue("routed", false));
    ok(&b, queue("unrouted", false));
    ok(&b, Command::Bind(binding("main", "routed", false, "k")));
    ok(&b, Command::Bind(binding("ae", "unrouted", false, "")));
    assert_eq!(routed(&b, "main", &["k"]), ["routed"]);
    assert_eq!(routed(&b, "main", &["other"]), ["unrouted"]);
}

#[test]
fn deleting_a_queue_removes_its_bindings_and_auto_deletes_sources() {
    let b = Broker::new(crate::Config::default());
    ok(
        &b,
        Command::DeclareExchange {
            vhost: "/".into(),
            name: "ad".into(),
            kind: "direct".into(),
            durable: false,
            auto_delete: true,
            internal: false,
            arguments: FieldTable::default(),
        },
    );
    ok(&b, queue("q", false));
    ok(&b, Command::Bind(binding("ad", "q", false, "k1")));
    ok(&b, Command::Bind(binding("ad", "q", false, "k2")));
    ok(&b, Command::Bind(binding("amq.direct", "q", false, "k")));
    ok(&b, delete_queue("q", false, false));
    let v = b.vhost("/").unwrap();
    assert!(v.exchange("ad").is_none(), "auto-delete source went");
    assert!(!v.exchange("amq.direct").unwrap().has_bindings());
}

/// A directory removed when the test ends.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "warren-broker-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn persistent(dir: &TempDir) -> Arc<Broker> {
    Broker::open(crate::Config {
        data_dir: dir.0.clone(),
        ..Default::default()
    })
    .expect("open")
}

/// Execute and wait until durable (outside the async runtime).
fn durable(b: &Broker, cmd: Command) -> AmqpResult<Outcome> {
    let e = b.execute(cmd, &Actor::internal())?;
    e.ticket.wait_blocking()?;
    Ok(e.outcome)
}

#[test]
fn replaying_the_log_rebuilds_the_same_durable_state() {
    let dir = TempDir::new("replay");
    let b = persistent(&dir);
    let mut cmds = vec![
        Command::AddVhost {
            name: "v".into(),
            description: "d".into(),
            tags: vec!["t".into()],
            default_queue_type: None,
            tracing: false,
        },
        Command::PutUser {
            name: "u".into(),
            password: StoredPassword::hash("pw"),
            tags: vec![],
        },
        Command::SetPermissions {
            user: "u".into(),
            vhost: "v".into(),
            configure: "".into(),
            write: ".*".into(),
            read: "^r".into(),
        },
        exchange("dx", "topic", true, FieldTable::default()),
        exchange("tx", "topic", false, FieldTable::default()),
        queue("dq", true),
        queue("tq", false),
        queue("gone", true),
        Command::Bind(binding("dx", "dq", false, "a.#")),
        Command::Bind(binding("dx", "tq", false, "a.#")),
        Command::Bind(binding("dx", "gone", false, "x")),
        delete_queue("gone", false, false),
        Command::SetPolicy {
            def: serde_json::from_value(serde_json::json!({
                "vhost": "/", "name": "p", "pattern": "^dq$", "definition": {"max-length": 5}
            }))
            .unwrap(),
            operator: false,
        },
        Command::SetVhostLimit {
            vhost: "v".into(),
            name: "max-connections".into(),
            value: 10,
        },
        Command::SetGlobalParameter {
            name: "g".into(),
            value: serde_json::json!({"a": 1}),
        },
    ];
    // A cascade: an auto-delete exchange losing its last binding is recorded as its own deletion.
    cmds.push(Command::DeclareExchange {
        vhost: "/".into(),
        name: "ad".into(),
        kind: "fanout".into(),
        durable: true,
        auto_delete: true,
        internal: false,
        arguments: FieldTable::default(),
    });
    cmds.push(Command::Bind(binding("ad", "dq", false, "")));
    cmds.push(Command::Unbind(binding("ad", "dq", false, "")));
    for c in cmds {
        durable(&b, c).expect("applies");
    }
    let before = b.snapshot();
    assert!(before.iter().all(
        |c| !matches!(c, Command::DeclareQueue { name, .. } if name == "tq" || name == "gone")
    ));
    assert!(!before
        .iter()
        .any(|c| matches!(c, Command::DeclareExchange { name, .. } if name == "ad")));
    drop(b);
    let b = persistent(&dir);
    assert_eq!(b.snapshot(), before, "replay gives the same durable state");
    assert!(b.vhost("/").unwrap().queue("tq").is_none());
}

#[test]
fn a_change_the_log_cannot_record_is_undone_and_refused() {
    let dir = TempDir::new("undo");
    let b = persistent(&dir);
    durable(&b, queue("kept", true)).unwrap();
    // Every further write fails with ENOSPC, as on a full disk.
    let log = b.log.clone().unwrap();
    log.fail_writes_for_test();
    let r = durable(&b, queue("lost", true));
    let e = r.expect_err("the write failed");
    assert_eq!(e.code, ReplyCode::InternalError);
    assert!(b.vhost("/").unwrap().queue("lost").is_none(), "undone");
    let r = durable(&b, delete_queue("kept", false, false));
    assert!(r.is_err());
    assert!(
        b.vhost("/").unwrap().queue("kept").is_some(),
        "a failed delete keeps the queue"
    );
    // Transient changes need no disk and still work.
    durable(&b, queue("transient", false)).unwrap();
}
