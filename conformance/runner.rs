//! Interprets a `Case`: set up, send, check. Returns what was observed, or why it failed.

use std::time::{Duration, Instant};

use crate::client::{table_get, Conn, Event, TuneOk, REPLY_TIMEOUT};
use crate::codec::{self, Arg, Field, FRAME_BODY, FRAME_HEADER, FRAME_METHOD};
use crate::methods as m;
use crate::spec::{Case, Expect, Out, Reply, Setup};

/// Gap between single-byte writes in `Out::Trickle`.
const TRICKLE_GAP: Duration = Duration::from_millis(1);

pub async fn setup(s: Setup) -> Result<Conn, String> {
    let r = match s {
        Setup::RawBeforeHandshake => Conn::connect().await,
        Setup::AfterStart => Conn::to_start().await.map(|(c, _)| c),
        Setup::AfterTune => Conn::to_tune().await,
        Setup::AfterTuneOk(t) => Conn::to_tune_ok(t).await,
        Setup::AfterOpen => Conn::open(TuneOk::ECHO).await,
        Setup::AfterOpenWith(t) => Conn::open(t).await,
        Setup::AfterChannelOpen(ch) => {
            let mut c = Conn::open(TuneOk::ECHO).await?;
            c.open_channel(ch).await?;
            Ok(c)
        }
    };
    r.map_err(|e| format!("setup {s:?} failed: {e}"))
}

fn encode(items: &[Out], out: &mut Vec<u8>) -> Result<(), String> {
    for i in items {
        match i {
            Out::Bytes(b) => out.extend_from_slice(b),
            Out::Frame(f) => out.extend_from_slice(&f.encode()),
            Out::Trickle(v) | Out::Batch(v) => encode(v, out)?,
            other => return Err(format!("{other:?} cannot be nested in Trickle/Batch")),
        }
    }
    Ok(())
}

fn check_reply(ev: &Event, want: &Reply) -> Result<(), String> {
    let wanted = format!(
        "ch{} {}",
        want.channel,
        codec::method_name(want.class, want.method)
    );
    let Event::Frame(f) = ev else {
        return Err(format!("expected {wanted}, got {}", ev.describe()));
    };
    if f.typ != FRAME_METHOD {
        return Err(format!("expected {wanted}, got {}", ev.describe()));
    }
    let got = codec::decode_method(f)?;
    if got.channel != want.channel || got.class != want.class || got.method != want.method {
        return Err(format!("expected {wanted}, got {}", ev.describe()));
    }
    if let Some(args) = &want.args {
        if got.args.as_ref() != Some(args) {
            return Err(format!(
                "{wanted}: expected args {args:?}, got {:?}",
                got.args
            ));
        }
    }
    Ok(())
}

async fn do_out(c: &mut Conn, o: &Out) -> Result<(), String> {
    match o {
        Out::Bytes(b) => c.write(b).await,
        Out::Frame(f) => c.send(f).await,
        Out::Trickle(v) => {
            let mut b = Vec::new();
            encode(v, &mut b)?;
            c.trickle(&b, TRICKLE_GAP).await
        }
        Out::Batch(v) => {
            let mut b = Vec::new();
            encode(v, &mut b)?;
            c.write(&b).await
        }
        Out::ShutdownWrite => c.shutdown_write().await,
        Out::Sleep(ms) => {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            Ok(())
        }
        Out::Await(want) => {
            let ev = c.next_skip_heartbeats(Instant::now() + REPLY_TIMEOUT).await;
            check_reply(&ev, want).map_err(|e| format!("while awaiting: {e}"))
        }
        Out::Silence(ms) => {
            let ev = c
                .next_skip_heartbeats(Instant::now() + Duration::from_millis(*ms))
                .await;
            match ev {
                Event::Timeout => Ok(()),
                other => Err(format!(
                    "expected {ms} ms of silence, got {}",
                    other.describe()
                )),
            }
        }
        Out::AwaitContent { channel, body } => {
            let ev = c.next_skip_heartbeats(Instant::now() + REPLY_TIMEOUT).await;
            let size = match &ev {
                Event::Frame(f)
                    if f.typ == FRAME_HEADER && f.channel == *channel && f.payload.len() >= 14 =>
                {
                    u64::from_be_bytes(f.payload[4..12].try_into().unwrap())
                }
                other => {
                    return Err(format!(
                        "expected ch{channel} content header, got {}",
                        other.describe()
                    ))
                }
            };
            if size != body.len() as u64 {
                return Err(format!(
                    "content header body_size {size}, expected {}",
                    body.len()
                ));
            }
            let mut got = Vec::new();
            while (got.len() as u64) < size {
                match c.next_skip_heartbeats(Instant::now() + REPLY_TIMEOUT).await {
                    Event::Frame(f) if f.typ == FRAME_BODY && f.channel == *channel => {
                        got.extend_from_slice(&f.payload)
                    }
                    other => {
                        return Err(format!(
                            "expected ch{channel} body frame, got {}",
                            other.describe()
                        ))
                    }
                }
            }
            if &got != body {
                return Err(format!("body {got:?}, expected {body:?}"));
            }
            Ok(())
        }
    }
}

/// Wait for the server to close TCP; frames other than heartbeats are an error.
async fn await_close(c: &mut Conn, within: Duration) -> Result<Duration, String> {
    let t0 = Instant::now();
    match c.next_skip_heartbeats(t0 + within).await {
        ev if ev.is_close() => Ok(t0.elapsed()),
        Event::Timeout => Err(format!("TCP still open after {:.1}s", within.as_secs_f64())),
        other => Err(format!("expected TCP close, got {}", other.describe())),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn close_kind(ev: &Event) -> &'static str {
    match ev {
        Event::Reset(_) => "reset",
        _ => "EOF",
    }
}

/// Run one case; Ok(observation) or Err(failure).
pub async fn run(case: &Case) -> Result<String, String> {
    let mut c = setup(case.setup).await?;
    for (i, o) in case.send.iter().enumerate() {
        do_out(&mut c, o)
            .await
            .map_err(|e| format!("send step {i}: {e}"))?;
    }
    let t0 = Instant::now();
    match &case.expect {
        Expect::HeaderThenClose { header, within_ms } => {
            let (bytes, end) = c
                .read_until_close(t0 + Duration::from_millis(*within_ms))
                .await;
            if matches!(end, Event::Timeout) {
                return Err(format!(
                    "got {bytes:?} but TCP still open after {within_ms} ms"
                ));
            }
            if bytes != *header {
                return Err(format!(
                    "expected header {:?} then close, got {:?} then {}",
                    header,
                    bytes,
                    end.describe()
                ));
            }
            Ok(format!(
                "header {:?} then {} after {}",
                String::from_utf8_lossy(&bytes),
                close_kind(&end),
                secs(t0.elapsed())
            ))
        }
        Expect::ConnectionStart => {
            let start = c.expect_method(0, 10, 10).await?;
            check_start(&start.args.unwrap_or_default())
        }
        Expect::ConnectionClose {
            code,
            text,
            class,
            method,
            closed_within_ms,
        } => {
            let ev = c.next_skip_heartbeats(t0 + REPLY_TIMEOUT).await;
            check_close(&ev, 0, 10, 50, *code, text, *class, *method)?;
            let after = secs(t0.elapsed());
            c.send(&m::connection_close_ok()).await.ok(); // the server may already be gone
            let closed = await_close(&mut c, Duration::from_millis(*closed_within_ms)).await?;
            Ok(format!(
                "connection.close after {after}; TCP closed {} after close-ok",
                secs(closed)
            ))
        }
        Expect::ChannelClose {
            channel,
            code,
            text,
            class,
            method,
        } => {
            let ev = c.next_skip_heartbeats(t0 + REPLY_TIMEOUT).await;
            check_close(&ev, *channel, 20, 40, *code, text, *class, *method)?;
            c.send(&m::channel_close_ok(*channel)).await?;
            c.open_channel(*channel)
                .await
                .map_err(|e| format!("channel not reusable after close-ok: {e}"))?;
            Ok(format!(
                "channel.close after {}; channel reopened",
                secs(t0.elapsed())
            ))
        }
        Expect::Method {
            reply,
            then_closed_within_ms,
        } => {
            let ev = c.next_skip_heartbeats(t0 + REPLY_TIMEOUT).await;
            check_reply(&ev, reply)?;
            let mut obs = format!("{} after {}", ev.describe(), secs(t0.elapsed()));
            if let Some(ms) = then_closed_within_ms {
                let d = await_close(&mut c, Duration::from_millis(*ms)).await?;
                obs.push_str(&format!("; TCP closed {} later", secs(d)));
            }
            Ok(obs)
        }
        Expect::SilentClose { within_ms } => {
            let ev = c
                .next_skip_heartbeats(t0 + Duration::from_millis(*within_ms))
                .await;
            match ev {
                ref e if e.is_close() => Ok(format!(
                    "silent close ({}) after {}",
                    close_kind(e),
                    secs(t0.elapsed())
                )),
                Event::Timeout => Err(format!(
                    "TCP still open after {within_ms} ms (expected a silent close)"
                )),
                other => Err(format!("expected a silent close, got {}", other.describe())),
            }
        }
        Expect::SilentCloseOrConnectionClose {
            within_ms,
            code,
            text,
            class,
            method,
        } => {
            let ev = c
                .next_skip_heartbeats(t0 + Duration::from_millis(*within_ms))
                .await;
            match ev {
                ref e if e.is_close() => Ok(format!(
                    "silent close ({}) after {}",
                    close_kind(e),
                    secs(t0.elapsed())
                )),
                Event::Timeout => Err(format!(
                    "TCP still open after {within_ms} ms (expected a close)"
                )),
                ev => {
                    check_close(&ev, 0, 10, 50, *code, text, *class, *method)?;
                    let after = secs(t0.elapsed());
                    c.send(&m::connection_close_ok()).await.ok();
                    let d = await_close(&mut c, Duration::from_millis(4000)).await?;
                    Ok(format!("connection.close after {after} (intended path); TCP closed {} after close-ok", secs(d)))
                }
            }
        }
        Expect::StaysOpen { probe_channel } => {
            c.send(&m::heartbeat(0)).await?;
            c.send(&m::channel_open(*probe_channel)).await?;
            c.expect_method(*probe_channel, 20, 11)
                .await
                .map_err(|e| format!("connection not usable: {e}"))?;
            Ok(format!(
                "still open: channel.open({probe_channel}) -> open-ok"
            ))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_close(
    ev: &Event,
    channel: u16,
    cls: u16,
    mth: u16,
    code: u16,
    text: &str,
    class: u16,
    method: u16,
) -> Result<(), String> {
    let wanted = format!(
        "ch{channel} {} code={code} text={text:?} class={class} method={method}",
        codec::method_name(cls, mth)
    );
    let bad = || format!("expected {wanted}, got {}", ev.describe());
    let Event::Frame(f) = ev else {
        return Err(bad());
    };
    if f.typ != FRAME_METHOD {
        return Err(bad());
    }
    let got = codec::decode_method(f)?;
    if got.channel != channel || got.class != cls || got.method != mth {
        return Err(bad());
    }
    match codec::close_fields(&got) {
        Some((c, t, cl, me)) if c == code && t == text && cl == class && me == method => Ok(()),
        _ => Err(bad()),
    }
}

fn check_start(args: &[Arg]) -> Result<String, String> {
    let [Arg::Octet(major), Arg::Octet(minor), Arg::Table(props), Arg::LongStr(mechs), Arg::LongStr(locales)] =
        args
    else {
        return Err(format!("bad connection.start args {args:?}"));
    };
    let mut errs = Vec::new();
    if (*major, *minor) != (0, 9) {
        errs.push(format!("version {major}-{minor}, expected 0-9"));
    }
    if mechs.as_slice() != b"PLAIN AMQPLAIN" {
        errs.push(format!(
            "mechanisms {:?}, expected \"PLAIN AMQPLAIN\"",
            String::from_utf8_lossy(mechs)
        ));
    }
    if locales.as_slice() != b"en_US" {
        errs.push(format!(
            "locales {:?}, expected \"en_US\"",
            String::from_utf8_lossy(locales)
        ));
    }
    match table_get(props, "product") {
        Some(Field::LongStr(p)) if p.as_slice() == b"RabbitMQ" => {}
        other => errs.push(format!(
            "server_properties.product = {other:?}, expected \"RabbitMQ\""
        )),
    }
    for key in [
        "version",
        "platform",
        "copyright",
        "information",
        "cluster_name",
    ] {
        if !matches!(table_get(props, key), Some(Field::LongStr(_))) {
            errs.push(format!("server_properties.{key} missing or not a longstr"));
        }
    }
    match table_get(props, "capabilities") {
        Some(Field::Table(caps)) => {
            for cap in [
                "publisher_confirms",
                "exchange_exchange_bindings",
                "basic.nack",
                "consumer_cancel_notify",
                "connection.blocked",
                "consumer_priorities",
                "authentication_failure_close",
                "per_consumer_qos",
                "direct_reply_to",
            ] {
                if table_get(caps, cap) != Some(&Field::Bool(true)) {
                    errs.push(format!(
                        "capability {cap} = {:?}, expected true",
                        table_get(caps, cap)
                    ));
                }
            }
        }
        other => errs.push(format!("server_properties.capabilities = {other:?}")),
    }
    if errs.is_empty() {
        Ok("connection.start 0-9 \"PLAIN AMQPLAIN\" \"en_US\"".into())
    } else {
        Err(errs.join("; "))
    }
}
