//! The shape of a conformance case: pure data, interpreted by `runner`.

use crate::client::TuneOk;
use crate::codec::{Arg, Frame};

pub struct Case {
    pub name: &'static str,
    pub setup: Setup,
    pub send: Vec<Out>,
    pub expect: Expect,
}

/// How far the connection is taken (with the standard client) before `send` runs.
#[derive(Clone, Copy, Debug)]
pub enum Setup {
    /// TCP connected, nothing sent.
    RawBeforeHandshake,
    /// Protocol header sent, connection.start read: the server now waits for start-ok.
    AfterStart,
    /// start-ok (PLAIN guest/guest) sent, connection.tune read: server waits for tune-ok.
    AfterTune,
    /// tune-ok sent (with these values): server waits for connection.open.
    AfterTuneOk(TuneOk),
    /// Fully open on vhost "/", tune-ok echoing the server.
    AfterOpen,
    /// Fully open, tune-ok with these values.
    AfterOpenWith(TuneOk),
    /// Fully open (echo tune) and channel.open(n) answered with open-ok.
    AfterChannelOpen(u16),
}

/// One step of what the client does.
#[derive(Clone, Debug)]
pub enum Out {
    /// Bytes verbatim, one write.
    Bytes(Vec<u8>),
    /// One encoded frame, one write.
    Frame(Frame),
    /// The encoded items written ONE BYTE PER TCP WRITE (TCP_NODELAY, 1 ms apart).
    Trickle(Vec<Out>),
    /// The encoded items coalesced into a single write.
    Batch(Vec<Out>),
    /// Half-close: shutdown(SHUT_WR).
    ShutdownWrite,
    /// Pause (milliseconds).
    Sleep(u64),
    /// The next non-heartbeat frame must be this reply (synchronises multi-step cases).
    Await(Reply),
    /// No non-heartbeat frame (and no close) may arrive for this many milliseconds.
    Silence(u64),
    /// The next frames must be a content header (class 60) and body frames carrying exactly `body`.
    AwaitContent { channel: u16, body: Vec<u8> },
}

/// A method frame expected from the server. `args: None` = don't compare arguments.
#[derive(Clone, Debug)]
pub struct Reply {
    pub channel: u16,
    pub class: u16,
    pub method: u16,
    pub args: Option<Vec<Arg>>,
}

/// The final verdict a case checks.
#[derive(Clone, Debug)]
pub enum Expect {
    /// The server writes exactly `header` and then closes TCP within `within_ms`.
    HeaderThenClose {
        header: &'static [u8],
        within_ms: u64,
    },
    /// connection.start: version 0-9, mechanisms "PLAIN AMQPLAIN" (that order, as 3.10.8 sends it), locales "en_US",
    /// RabbitMQ's capabilities all true, product "RabbitMQ".
    ConnectionStart,
    /// connection.close (channel 0) with exactly these fields; the client answers
    /// close-ok and the server must then close TCP within `closed_within_ms`.
    ConnectionClose {
        code: u16,
        text: &'static str,
        class: u16,
        method: u16,
        closed_within_ms: u64,
    },
    /// channel.close on `channel` with exactly these fields; after the client's
    /// close-ok the channel number must be reusable (channel.open -> open-ok).
    ChannelClose {
        channel: u16,
        code: u16,
        text: &'static str,
        class: u16,
        method: u16,
    },
    /// This exact method reply; then, if `then_closed_within_ms`, TCP must close.
    Method {
        reply: Reply,
        then_closed_within_ms: Option<u64>,
    },
    /// The server closes TCP (EOF or reset) within `within_ms` without sending any
    /// byte (heartbeats excepted).
    SilentClose { within_ms: u64 },
    /// EITHER a silent close within `within_ms` (RabbitMQ 3.10 .. 4.x as observed)
    /// OR the connection.close the error was meant to produce (the "intended" code path).
    SilentCloseOrConnectionClose {
        within_ms: u64,
        code: u16,
        text: &'static str,
        class: u16,
        method: u16,
    },
    /// The connection is still usable: a heartbeat is accepted and channel.open on
    /// `probe_channel` gets open-ok, with no other frame in between.
    StaysOpen { probe_channel: u16 },
}

// ---------------------------------------------------------------- shorthands for the table

pub fn f(frame: Frame) -> Out {
    Out::Frame(frame)
}

pub fn await_(channel: u16, class: u16, method: u16) -> Out {
    Out::Await(Reply {
        channel,
        class,
        method,
        args: None,
    })
}

pub fn reply(channel: u16, class: u16, method: u16) -> Reply {
    Reply {
        channel,
        class,
        method,
        args: None,
    }
}

pub fn conn_close(code: u16, text: &'static str, class: u16, method: u16) -> Expect {
    Expect::ConnectionClose {
        code,
        text,
        class,
        method,
        closed_within_ms: 4000,
    }
}

pub fn chan_close(channel: u16, code: u16, text: &'static str, class: u16, method: u16) -> Expect {
    Expect::ChannelClose {
        channel,
        code,
        text,
        class,
        method,
    }
}

pub fn tune(channel_max: Option<u16>, frame_max: Option<u32>, heartbeat: Option<u16>) -> TuneOk {
    TuneOk {
        channel_max,
        frame_max,
        heartbeat,
    }
}
