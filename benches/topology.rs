//! Topology at scale, through the command path: binding and unbinding next to 100,000 existing bindings,
//! routing one message to 1,000 queues, and deleting a queue in a vhost with 1,000 exchanges. Each should
//! cost the same whatever else exists (bind and unbind O(1), queue deletion proportional to the queue's own
//! bindings, de-duplication of routed queues linear).

use amq_protocol::types::FieldTable;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use warren::broker::command::BindingArgs;
use warren::broker::{Actor, Broker, Command};
use warren::queue::Routed;

fn run(b: &Broker, cmd: Command) {
    b.execute(cmd, &Actor::internal()).expect("command applies");
}

fn exchange(name: &str, kind: &str) -> Command {
    Command::DeclareExchange {
        vhost: "/".into(),
        name: name.into(),
        kind: kind.into(),
        durable: false,
        auto_delete: false,
        internal: false,
        arguments: FieldTable::default(),
    }
}

fn queue(name: &str) -> Command {
    Command::DeclareQueue {
        vhost: "/".into(),
        name: name.into(),
        durable: false,
        exclusive: false,
        auto_delete: false,
        arguments: FieldTable::default(),
    }
}

fn bind(source: &str, queue: &str, key: &str, unbind: bool) -> Command {
    let args = BindingArgs {
        vhost: "/".into(),
        source: source.into(),
        destination: queue.into(),
        to_exchange: false,
        routing_key: key.into(),
        arguments: FieldTable::default(),
    };
    if unbind {
        Command::Unbind(args)
    } else {
        Command::Bind(args)
    }
}

fn bench(c: &mut Criterion) {
    for kind in ["direct", "topic"] {
        let b = Broker::new(warren::Config::default());
        run(&b, exchange("x", kind));
        run(&b, queue("q"));
        let n = 100_000;
        let t = std::time::Instant::now();
        for i in 0..n {
            run(&b, bind("x", "q", &format!("k.{i}"), false));
        }
        eprintln!("{kind}: {n} binds from empty took {:?}", t.elapsed());
        c.bench_function(
            &format!("{kind}: bind+unbind with {n} existing bindings"),
            |bn| {
                bn.iter(|| {
                    run(&b, bind("x", "q", "new.key", false));
                    run(&b, bind("x", "q", "new.key", true));
                })
            },
        );
    }
    for kind in ["fanout", "direct", "topic"] {
        let b = Broker::new(warren::Config::default());
        run(&b, exchange("x", kind));
        for i in 0..1000 {
            let q = format!("q{i}");
            run(&b, queue(&q));
            run(
                &b,
                bind("x", &q, if kind == "topic" { "a.#" } else { "a.b" }, false),
            );
        }
        let v = b.vhost("/").unwrap();
        let x = v.exchange("x").unwrap();
        c.bench_function(&format!("{kind}: route one message to 1000 queues"), |bn| {
            bn.iter(|| {
                let mut out = Routed::new();
                v.route(&x, &["a.b"], None, &mut out);
                black_box(out.len())
            })
        });
    }
    let b = Broker::new(warren::Config::default());
    for i in 0..1000 {
        run(&b, exchange(&format!("x{i}"), "direct"));
    }
    run(&b, queue("victim"));
    run(&b, bind("x0", "victim", "k", false));
    c.bench_function("delete a queue in a vhost with 1000 exchanges", |bn| {
        bn.iter(|| {
            run(&b, queue("tmp"));
            run(&b, bind("x1", "tmp", "k", false));
            run(
                &b,
                Command::DeleteQueue {
                    vhost: "/".into(),
                    name: "tmp".into(),
                    if_unused: false,
                    if_empty: false,
                    cause: Default::default(),
                },
            );
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
