//! Channels. `shared` holds what other tasks touch (delivery tags, unacked messages, consumers); the rest of a
//! channel's state lives here and is owned by its connection task: content assembly for basic.publish,
//! publisher-confirm sequence numbers, the transaction buffer, and the last declared queue name. `methods`
//! implements the channel-level AMQP methods.

pub mod methods;
pub mod reply_to;
mod shared;

pub use shared::{ChannelShared, Unacked};

use crate::broker::message::Message;
use amq_protocol::protocol::BasicProperties;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    Open,
    /// The broker sent channel.close and waits for close-ok; everything else is ignored.
    Closing,
}

/// A basic.publish whose content is still arriving.
#[derive(Debug)]
pub struct PendingPublish {
    pub exchange: String,
    pub routing_key: String,
    pub mandatory: bool,
    pub immediate: bool,
    pub header: Option<(Bytes, BasicProperties, u64)>,
    pub body: BytesMut,
    /// The single body frame, kept without copying when the body arrives in one frame.
    pub single: Option<Bytes>,
}

/// What a transaction holds until commit.
#[derive(Debug)]
pub enum TxOp {
    Publish {
        exchange: String,
        mandatory: bool,
        msg: Arc<Message>,
    },
    Ack(Vec<Unacked>),
    Reject {
        entries: Vec<Unacked>,
        requeue: bool,
    },
}

#[derive(Debug)]
pub struct Channel {
    pub state: ChannelState,
    pub shared: Arc<ChannelShared>,
    pub publish: Option<PendingPublish>,
    /// Prefetch applied to consumers created from now on (basic.qos global=false).
    pub consumer_prefetch: u32,
    pub confirm: bool,
    /// Sequence number of the last publish seen in confirm mode.
    pub publish_seq: u64,
    /// Highest sequence number ready to be confirmed and the highest already confirmed.
    pub confirm_ready: u64,
    pub confirm_sent: u64,
    pub tx: Option<Vec<TxOp>>,
    pub last_queue: Option<String>,
    /// A body overran its declared size; RabbitMQ then refuses every further method on the channel.
    pub wedged: bool,
    /// The direct reply-to consumer, if this channel has one.
    pub reply: Option<reply_to::ReplyConsumer>,
}

impl Channel {
    pub fn new(shared: Arc<ChannelShared>) -> Channel {
        Channel {
            state: ChannelState::Open,
            shared,
            publish: None,
            consumer_prefetch: 0,
            confirm: false,
            publish_seq: 0,
            confirm_ready: 0,
            confirm_sent: 0,
            tx: None,
            last_queue: None,
            wedged: false,
            reply: None,
        }
    }

    pub fn id(&self) -> u16 {
        self.shared.id
    }

    /// Send the coalesced basic.ack for every publish confirmed since the last flush.
    pub fn flush_confirms(&mut self) {
        if self.confirm_ready > self.confirm_sent {
            let multiple = self.confirm_ready > self.confirm_sent + 1;
            let tag = self.confirm_ready;
            let id = self.id();
            self.shared
                .conn
                .outbound
                .send(|b| crate::protocol::write_confirm(b, id, true, tag, multiple));
            self.confirm_sent = tag;
        }
    }

    /// Confirm publish `seq`: acks are coalesced; a nack flushes the acks before it and goes out at once.
    pub fn confirm(&mut self, seq: u64, ack: bool) {
        if ack {
            self.confirm_ready = seq;
        } else {
            self.confirm_ready = seq - 1;
            self.flush_confirms();
            let id = self.id();
            self.shared
                .conn
                .outbound
                .send(|b| crate::protocol::write_confirm(b, id, false, seq, false));
            self.confirm_ready = seq;
            self.confirm_sent = seq;
        }
    }
}
