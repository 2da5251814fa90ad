//! Routing with many bindings: topic patterns and headers matching.

use amq_protocol::types::{AMQPValue, FieldTable};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use warren::broker::vhost::{QueueDeclare, Routed};
use warren::broker::VHost;

fn setup(kind: &str, n: usize) -> std::sync::Arc<VHost> {
    let v = VHost::new("/", None, None);
    v.declare_exchange(
        "x",
        kind,
        false,
        false,
        false,
        false,
        &FieldTable::default(),
    )
    .unwrap();
    for i in 0..n {
        let name = format!("q{i}");
        let args = FieldTable::default();
        let req = QueueDeclare {
            name: &name,
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: &args,
        };
        v.declare_queue(&req, 1).unwrap();
        if kind == "topic" {
            let key = match i % 4 {
                0 => format!("stock.{i}.*"),
                1 => format!("stock.#.{i}"),
                2 => format!("*.{i}.nyse"),
                _ => format!("news.{i}"),
            };
            v.bind_queue(&name, "x", &key, &FieldTable::default(), 1)
                .unwrap();
        } else {
            let mut b = FieldTable::default();
            b.insert("x-match".into(), AMQPValue::LongString("all".into()));
            b.insert(
                "region".into(),
                AMQPValue::LongString(format!("r{}", i % 50).as_str().into()),
            );
            b.insert("level".into(), AMQPValue::LongInt((i % 7) as i32));
            v.bind_queue(&name, "x", "", &b, 1).unwrap();
        }
    }
    v
}

fn bench(c: &mut Criterion) {
    let v = setup("topic", 1000);
    let x = v.exchange("x").unwrap();
    c.bench_function("topic: route 1 key over 1000 bindings", |b| {
        b.iter(|| {
            let mut out = Routed::new();
            v.route(&x, &["stock.500.nyse"], None, &mut out);
            black_box(out.len())
        })
    });
    let v = setup("headers", 1000);
    let x = v.exchange("x").unwrap();
    let mut h = FieldTable::default();
    h.insert("region".into(), AMQPValue::LongString("r7".into()));
    h.insert("level".into(), AMQPValue::LongInt(3));
    h.insert("other".into(), AMQPValue::Boolean(true));
    c.bench_function("headers: route over 1000 bindings", |b| {
        b.iter(|| {
            let mut out = Routed::new();
            v.route(&x, &[""], Some(&h), &mut out);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
