//! The narrow interfaces through which a queue reaches the layers around it. The queue module knows nothing of
//! channels, connections or virtual hosts: deliveries and cancellations go to a [`ConsumerChannel`] (the
//! channel layer implements it), publisher-confirm outcomes to a [`ConfirmSink`], and dead-lettering and
//! expiry go through the [`QueueHost`] (the vhost implements it). Unit tests implement all three with plain
//! recorders, so queue behaviour is tested without a socket.

use super::{Queue, QueuedMessage};
use amq_protocol::types::FieldTable;
use smallvec::SmallVec;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// The queues a message is routed to, each once.
pub type Routed = SmallVec<[Arc<Queue>; 4]>;

/// A channel that consumes from queues, as a queue sees it.
pub trait ConsumerChannel: Send + Sync + fmt::Debug {
    /// Hand `qm` to `consumer` if the consumer and its channel have room, registering it as unacknowledged
    /// unless the consumer is no-ack. Returns false to leave the message in the queue. Called under the
    /// queue's lock, so it must not call back into the queue. The delivery may wait in the channel until
    /// `flush`, which the dispatch round calls before it ends.
    fn deliver(&self, consumer: &Arc<Consumer>, queue: &Arc<Queue>, qm: &QueuedMessage) -> bool;
    /// Send on what `deliver` queued.
    fn flush(&self) {}
    /// Answer a basic.get with `qm`; `remaining` is the ready count after it.
    fn deliver_get(&self, queue: &Arc<Queue>, qm: QueuedMessage, no_ack: bool, remaining: u32);
    /// The queue has dropped `consumer` (it was deleted): forget it and tell the client if it asked to know.
    fn cancelled(&self, consumer: &Arc<Consumer>);
    /// Which connection and channel this is, so a command's own channel can be told apart from others.
    fn key(&self) -> (u64, u16);
}

/// Where the outcome of a publish that waits on the message store goes (the publishing channel).
pub use crate::store::WriteSink as ConfirmSink;

/// What a queue needs from the virtual host it lives in.
pub trait QueueHost: Send + Sync {
    /// Route a dead-lettered message published to `exchange` with `keys`. False when the exchange does not
    /// exist (the message is then dropped, as in RabbitMQ).
    fn route(
        &self,
        exchange: &str,
        keys: &[&str],
        headers: Option<&FieldTable>,
        out: &mut Routed,
    ) -> bool;
    /// The queue's x-expires passed while it had no consumers: delete it.
    fn expire(&self, queue: &Arc<Queue>);
}

/// A consumer registered on a queue by a channel.
#[derive(Debug)]
pub struct Consumer {
    pub tag: Arc<str>,
    pub channel: Arc<dyn ConsumerChannel>,
    pub queue: Arc<Queue>,
    pub no_ack: bool,
    pub exclusive: bool,
    pub priority: i32,
    /// Per-consumer prefetch (basic.qos global=false at consume time); 0 is unlimited.
    pub prefetch: u32,
    /// Unacknowledged deliveries to this consumer; changed only under the channel's delivery lock.
    pub unacked: AtomicU32,
    /// The basic.consume arguments (shown by the management API).
    pub arguments: FieldTable,
    /// Its own `x-consumer-timeout` in ms, which RabbitMQ 4.3 honours on quorum queues.
    pub timeout: Option<u64>,
}

impl Consumer {
    /// A lock-free hint used to skip full consumers; the channel re-checks under its lock.
    pub fn may_take(&self) -> bool {
        self.no_ack || self.prefetch == 0 || self.unacked.load(Ordering::Relaxed) < self.prefetch
    }
}

/// Who to tell when a stored publish is durable: the publishing channel and the publish's sequence number.
#[derive(Clone)]
pub struct ConfirmRef {
    pub sink: Arc<dyn ConfirmSink>,
    pub seq: u64,
}

impl fmt::Debug for ConfirmRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfirmRef")
            .field("seq", &self.seq)
            .finish()
    }
}
