//! `loopback`: the ceiling a broker's large-message throughput is judged against. Raw TCP over 127.0.0.1 with
//! no protocol at all, on the same machine and at the same write size as a `throughput -s N` run:
//!
//! - `direct`: one writer thread sends N-byte writes, one reader thread reads them (two kernel copies per
//!   byte, two threads).
//! - `relay`: writer -> relay -> reader, where the relay thread reads and forwards like a broker does (four
//!   copies per byte, three threads), i.e. what a broker that did no work at all could reach.
//!
//! Blocking sockets and plain threads: nothing here should cost more than the kernel's copies.

use crate::amqp::{io_error, Error, Result};
use crate::run::{fmt_bytes, fmt_rate};
use crate::stats::ResourceSnapshot;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const READ_BUF: usize = 1 << 20;

struct Pass {
    bytes: u64,
    seconds: f64,
    cpu_pct: f64,
}

/// Read until EOF; returns the bytes read.
fn sink(mut s: TcpStream) -> u64 {
    let mut buf = vec![0u8; READ_BUF];
    let mut total = 0u64;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total
}

/// Forward everything from `from` to `to` until EOF, then close `to`.
fn forward(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; READ_BUF];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

fn listener() -> Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0").map_err(|e| io_error("loopback", "bind 127.0.0.1", e))
}

fn connect(l: &TcpListener) -> Result<(TcpStream, TcpStream)> {
    let addr = l
        .local_addr()
        .map_err(|e| io_error("loopback", "local_addr", e))?;
    let client = TcpStream::connect(addr).map_err(|e| io_error("loopback", "connect", e))?;
    let (server, _) = l.accept().map_err(|e| io_error("loopback", "accept", e))?;
    // Same as the broker and the AMQP tool: Nagle off.
    client
        .set_nodelay(true)
        .map_err(|e| io_error("loopback", "nodelay", e))?;
    server
        .set_nodelay(true)
        .map_err(|e| io_error("loopback", "nodelay", e))?;
    Ok((client, server))
}

fn pass(size: usize, duration: f64, relay: bool) -> Result<Pass> {
    let l = listener()?;
    let (mut writer, reader_end) = if relay {
        let (w, relay_in) = connect(&l)?;
        let (relay_out, r) = connect(&l)?;
        thread::spawn(move || forward(relay_in, relay_out));
        (w, r)
    } else {
        connect(&l)?
    };
    let reader = thread::spawn(move || sink(reader_end));
    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let stop = stop.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_secs_f64(duration));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let chunk = vec![0x5au8; size.max(1)];
    let before = ResourceSnapshot::take(None);
    let t0 = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        writer
            .write_all(&chunk)
            .map_err(|e| io_error("loopback", "write", e))?;
    }
    drop(writer);
    let bytes = reader.join().map_err(|_| Error::Protocol {
        conn: "loopback".into(),
        what: "reader thread panicked".into(),
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = ResourceSnapshot::take(None).since(&before);
    let _ = timer.join();
    Ok(Pass {
        bytes,
        seconds,
        cpu_pct: cpu.tool_cpu_pct,
    })
}

pub fn loopback(size: usize, duration: f64) -> Result<(serde_json::Value, String)> {
    let direct = pass(size, duration, false)?;
    let relay = pass(size, duration, true)?;
    let rate = |p: &Pass| p.bytes as f64 / p.seconds.max(1e-9);
    let json = json!({
        "mode": "loopback",
        "size": size,
        "duration_s": duration,
        "direct_bytes_per_s": rate(&direct),
        "direct_writes_per_s": rate(&direct) / size as f64,
        "direct_cpu_pct": direct.cpu_pct,
        "relay_bytes_per_s": rate(&relay),
        "relay_writes_per_s": rate(&relay) / size as f64,
        "relay_cpu_pct": relay.cpu_pct,
    });
    let line = |name: &str, p: &Pass| {
        format!(
            "  {name:<7} {}/s  ({} writes/s of {size} B), cpu {:.0}%\n",
            fmt_bytes(rate(p) as u64),
            fmt_rate(rate(p) / size as f64),
            p.cpu_pct,
        )
    };
    let human = format!(
        "warren-perf loopback: raw TCP over 127.0.0.1, {size} B writes, {duration} s each\n{}{}",
        line("direct", &direct),
        line("relay", &relay)
    );
    Ok((json, human))
}
