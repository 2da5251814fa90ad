//! Channels: the layer between a connection and the core. [`shared`] holds what queues touch from other tasks
//! (delivery tags, unacknowledged messages, consumers, confirms) and implements the core's
//! `ConsumerChannel`, `ConfirmSink` and `ReplySink`; the rest of a channel's state lives here, owned by its
//! connection task: [`content`] (content assembly), [`lifecycle`] (which frames a channel accepts when),
//! publisher-confirm sequence numbers, the transaction buffer, and the last declared queue name.
//! [`methods`] implements the channel-level AMQP methods, one file per class; topology changes go through
//! the broker's command path, and their replies wait for durability as [`Pending`] replies.

pub mod ack_timeout;
pub mod confirms;
pub mod content;
pub mod deliveries;
pub mod lifecycle;
pub mod link;
pub mod methods;
pub mod reply_to;
mod shared;

pub use ack_timeout::AckSweep;
pub use deliveries::Unacked;
pub use shared::{ChannelShared, ChannelStats};

use crate::broker::Ticket;
use crate::queue::message::Message;
use crate::queue::{Consumer, Queue};
use amq_protocol::protocol::AMQPClass;
use std::sync::Arc;

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
        how: methods::Settle,
        kind: crate::journal::Kind,
    },
}

/// Something the connection must wait for before it handles the next frame, so replies keep their order:
/// a command's change becoming durable, or a paged message being read back for basic.get.
#[derive(Debug)]
pub enum Wait {
    Durable(Ticket),
    Loaded(tokio::sync::oneshot::Receiver<()>),
}

/// What to do once the wait is over.
#[derive(Debug)]
pub enum Then {
    /// Send the reply (and tell the channel about consumers the command cancelled, after it, as RabbitMQ
    /// orders them) — or close the connection with 541 if the change could not be recorded.
    Reply {
        reply: Option<AMQPClass>,
        cancelled: Vec<Arc<Consumer>>,
        class_id: u16,
        method_id: u16,
    },
    /// Try the basic.get again.
    Get { queue: Arc<Queue>, no_ack: bool },
}

#[derive(Debug)]
pub struct Pending {
    pub wait: Wait,
    pub channel: u16,
    pub then: Then,
}

#[derive(Debug)]
pub struct Channel {
    pub phase: lifecycle::Phase,
    pub shared: Arc<ChannelShared>,
    pub content: content::Assembly,
    /// Prefetch applied to consumers created from now on (basic.qos global=false).
    pub consumer_prefetch: u32,
    pub confirm: bool,
    /// Sequence number of the last publish seen in confirm mode.
    pub publish_seq: u64,
    pub tx: Option<Vec<TxOp>>,
    pub last_queue: Option<String>,
    /// The direct reply-to consumer, if this channel has one.
    pub reply: Option<reply_to::ReplyConsumer>,
    /// The exchange this channel last passed the write-permission check for.
    pub write_ok: Option<Box<str>>,
}

impl Channel {
    pub fn new(shared: Arc<ChannelShared>) -> Channel {
        Channel {
            phase: lifecycle::Phase::Open,
            shared,
            content: content::Assembly::Idle,
            consumer_prefetch: 0,
            confirm: false,
            publish_seq: 0,
            tx: None,
            write_ok: None,
            last_queue: None,
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
