//! The queue's ready list: push, pop and requeue-at-original-position, plain and with priorities.

use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use warren::queue::message::Message;
use warren::queue::ready::ReadyList;
use warren::queue::QueuedMessage;

fn msg(prio: u8) -> Arc<Message> {
    Arc::new(Message {
        exchange: "".into(),
        routing_key: "q".into(),
        header: Bytes::new(),
        properties: warren::queue::message::Props::new(
            BasicProperties::default().with_priority(prio),
        ),
        body: Bytes::from_static(&[0u8; 16]),
        broker_deaths: false,
    })
}

fn bench(c: &mut Criterion) {
    let m = msg(0);
    let mut g = c.benchmark_group("ready list");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("push + pop 1000", |b| {
        let mut r = ReadyList::new(None);
        b.iter(|| {
            for seq in 0..1000 {
                r.push_back(QueuedMessage::new(seq, m.clone()));
            }
            while let Some(x) = r.pop_front() {
                black_box(x.seq);
            }
        })
    });
    g.bench_function("pop 1000 then requeue 100 at their places", |b| {
        let mut r = ReadyList::new(None);
        b.iter(|| {
            for seq in 0..1000 {
                r.push_back(QueuedMessage::new(seq, m.clone()));
            }
            let taken: Vec<QueuedMessage> = (0..100).filter_map(|_| r.pop_front()).collect();
            r.requeue(taken);
            black_box(r.len());
            r.clear();
        })
    });
    let prios: Vec<Arc<Message>> = (0..10).map(msg).collect();
    g.bench_function("priority (10 levels) push + pop 1000", |b| {
        let mut r = ReadyList::new(Some(9));
        b.iter(|| {
            for seq in 0..1000u64 {
                let m = prios[(seq % 10) as usize].clone();
                r.push_back(QueuedMessage::new(seq, m));
            }
            while let Some(x) = r.pop_front() {
                black_box(x.seq);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
