//! Channels. `shared` holds what other tasks touch (delivery tags, unacked messages, consumers); the rest of a
//! channel's state lives here and is owned by its connection task: content assembly for basic.publish,
//! publisher-confirm sequence numbers, the transaction buffer, and the last declared queue name. `methods`
//! implements the channel-level AMQP methods.

pub mod confirms;
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
    pub header: Option<(Bytes, Box<BasicProperties>, u64)>,
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
            tx: None,
            last_queue: None,
            wedged: false,
            reply: None,
        }
    }

    pub fn id(&self) -> u16 {
        self.shared.id
    }

    /// Send the confirms that are ready (called once per batch of frames read).
    pub fn flush_confirms(&mut self) {
        self.shared.flush_confirms();
    }

    /// Record the outcome of publish `seq` that waits for no disk write.
    pub fn confirm(&mut self, seq: u64, ack: bool) {
        self.shared.confirms.lock().register(seq, 0, ack);
    }
}
