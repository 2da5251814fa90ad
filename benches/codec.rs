//! Frame decode/encode on the hot path: cutting frames from a read buffer, decoding basic.publish and the
//! content header with amq-protocol, and encoding deliveries.

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use warren::protocol;

/// One basic.publish + content header + 16-byte body, as a client sends it.
fn publish_frames() -> Vec<u8> {
    let mut b = protocol::OutBuf::default();
    let mut m = BytesMut::new();
    m.put_u16(60);
    m.put_u16(40);
    m.put_u16(0);
    m.put_u8(0);
    m.put_u8(5);
    m.put_slice(b"queue");
    m.put_u8(0);
    b.put_u8(protocol::FRAME_METHOD);
    b.put_u16(1);
    b.put_u32(m.len() as u32);
    b.put_slice(&m);
    b.put_u8(protocol::FRAME_END);
    let props = amq_protocol::protocol::BasicProperties::default().with_delivery_mode(2);
    let header = protocol::encode_content_header(16, &props);
    protocol::write_content(&mut b, 1, &header, &Bytes::from_static(&[7u8; 16]), 131072);
    b.to_vec()
}

fn bench(c: &mut Criterion) {
    let one = publish_frames();
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("split 1000 publishes (3 frames each)", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&batch[..]);
            let mut n = 0;
            while let Ok(Some(f)) = protocol::split_frame(&mut buf, 131072) {
                n += f.payload.len();
            }
            black_box(n)
        })
    });
    g.bench_function("split + parse 1000 publishes", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&batch[..]);
            while let Ok(Some(f)) = protocol::split_frame(&mut buf, 131072) {
                match f.kind {
                    protocol::FRAME_METHOD => {
                        black_box(amq_protocol::protocol::parse_class(&f.payload[..]).is_ok());
                    }
                    protocol::FRAME_HEADER => {
                        black_box(
                            amq_protocol::frame::parsing::parse_content_header(&f.payload[..])
                                .is_ok(),
                        );
                    }
                    _ => {}
                }
            }
        })
    });
    g.finish();

    let props = amq_protocol::protocol::BasicProperties::default().with_delivery_mode(2);
    let header = protocol::encode_content_header(16, &props);
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000 deliveries (deliver + header + 16 B body)", |b| {
        let mut out = protocol::OutBuf::default();
        out.reserve(128 * 1000);
        let body = Bytes::from_static(&[7u8; 16]);
        b.iter(|| {
            out.clear();
            for tag in 0..1000u64 {
                protocol::write_deliver(
                    &mut out,
                    1,
                    "amq.ctag-abcdefghijklmnopqrstuv",
                    tag,
                    false,
                    "",
                    "queue",
                );
                protocol::write_content(&mut out, 1, &header, &body, 131072);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
