//! Routing with many bindings: topic patterns and headers matching over 1,000 bindings.

use amq_protocol::types::{AMQPValue, FieldTable};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use warren::broker::command::BindingArgs;
use warren::broker::{Actor, Broker, Command};
use warren::queue::Routed;

fn run(b: &Broker, cmd: Command) {
    b.execute(cmd, &Actor::internal()).expect("command applies");
}

fn setup(kind: &str, n: usize) -> Arc<Broker> {
    let b = Broker::new(warren::Config::default());
    run(
        &b,
        Command::DeclareExchange {
            vhost: "/".into(),
            name: "x".into(),
            kind: kind.into(),
            durable: false,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::default(),
        },
    );
    for i in 0..n {
        let name = format!("q{i}");
        run(
            &b,
            Command::DeclareQueue {
                vhost: "/".into(),
                name: name.clone(),
                durable: false,
                exclusive: false,
                auto_delete: false,
                arguments: FieldTable::default(),
            },
        );
        let (routing_key, arguments) = if kind == "topic" {
            let key = match i % 4 {
                0 => format!("stock.{i}.*"),
                1 => format!("stock.#.{i}"),
                2 => format!("*.{i}.nyse"),
                _ => format!("news.{i}"),
            };
            (key, FieldTable::default())
        } else {
            let mut t = FieldTable::default();
            t.insert("x-match".into(), AMQPValue::LongString("all".into()));
            t.insert(
                "region".into(),
                AMQPValue::LongString(format!("r{}", i % 50).as_str().into()),
            );
            t.insert("level".into(), AMQPValue::LongInt((i % 7) as i32));
            (String::new(), t)
        };
        run(
            &b,
            Command::Bind(BindingArgs {
                vhost: "/".into(),
                source: "x".into(),
                destination: name,
                to_exchange: false,
                routing_key,
                arguments,
            }),
        );
    }
    b
}

fn bench(c: &mut Criterion) {
    let b = setup("topic", 1000);
    let v = b.vhost("/").unwrap();
    let x = v.exchange("x").unwrap();
    c.bench_function("topic: route 1 key over 1000 bindings", |bn| {
        bn.iter(|| {
            let mut out = Routed::new();
            v.route(&x, &["stock.500.nyse"], None, &mut out);
            black_box(out.len())
        })
    });
    let b = setup("headers", 1000);
    let v = b.vhost("/").unwrap();
    let x = v.exchange("x").unwrap();
    let mut h = FieldTable::default();
    h.insert("region".into(), AMQPValue::LongString("r7".into()));
    h.insert("level".into(), AMQPValue::LongInt(3));
    h.insert("other".into(), AMQPValue::Boolean(true));
    c.bench_function("headers: route over 1000 bindings", |bn| {
        bn.iter(|| {
            let mut out = Routed::new();
            v.route(&x, &[""], Some(&h), &mut out);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
