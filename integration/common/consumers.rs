//! Consumers whose deliveries arrive in a tokio channel, a watch on a channel's close, and settling
//! deliveries (ack, nack, reject).

use super::*;
use lapin::{
    message::{Delivery, DeliveryResult},
    options::*,
    types::FieldTable,
    Channel, Consumer,
};
use tokio::sync::mpsc;

/// A consumer whose deliveries are forwarded (in order) into a tokio channel, so tests need no
/// `Stream` trait. Dropping it cancels the consumer (lapin sends basic.cancel).
pub struct Deliveries {
    consumer: Consumer,
    rx: mpsc::UnboundedReceiver<DeliveryResult>,
}

pub fn deliveries(consumer: Consumer) -> Deliveries {
    let (tx, rx) = mpsc::unbounded_channel();
    // The closure runs synchronously in frame order; only the (empty) future is spawned.
    consumer.set_delegate(move |d: DeliveryResult| {
        let _ = tx.send(d);
        async {}
    });
    Deliveries { consumer, rx }
}

impl Deliveries {
    pub fn tag(&self) -> String {
        self.consumer.tag().as_str().to_string()
    }

    /// Next delivery; panics on timeout, error or cancellation.
    pub async fn next(&mut self) -> Delivery {
        match within(self.rx.recv()).await {
            Some(Ok(Some(d))) => d,
            Some(Ok(None)) => panic!("consumer was cancelled while waiting for a delivery"),
            Some(Err(e)) => panic!("consumer error while waiting for a delivery: {e:?}"),
            None => panic!("consumer stream ended"),
        }
    }

    pub async fn next_n(&mut self, n: usize) -> Vec<Delivery> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.next().await);
        }
        v
    }

    /// Nothing at all (no delivery, no cancel, no error) arrives within [`QUIET`].
    pub async fn assert_quiet(&mut self) {
        if let Ok(item) = tokio::time::timeout(QUIET, self.rx.recv()).await {
            panic!("expected no delivery, got {item:?}");
        }
    }

    /// The consumer gets cancelled (server basic.cancel or cancel-ok), with no delivery before.
    pub async fn cancelled(&mut self) {
        match within(self.rx.recv()).await {
            Some(Ok(None)) | None => {}
            other => panic!("expected consumer cancellation, got {other:?}"),
        }
    }

    /// The consumer's channel gets closed by the broker; returns that error.
    pub async fn error(&mut self) -> lapin::Error {
        loop {
            match within(self.rx.recv()).await {
                Some(Err(e)) => return e,
                Some(Ok(Some(_))) => continue,
                other => panic!("expected a channel error on the consumer, got {other:?}"),
            }
        }
    }
}

pub async fn consume(ch: &Channel, queue: &str, opts: BasicConsumeOptions) -> Deliveries {
    consume_tagged(ch, queue, "", opts).await
}

pub async fn consume_tagged(
    ch: &Channel,
    queue: &str,
    tag: &str,
    opts: BasicConsumeOptions,
) -> Deliveries {
    let c = within(ch.basic_consume(queue.into(), tag.into(), opts, FieldTable::default()))
        .await
        .unwrap_or_else(|e| panic!("basic.consume on {queue} failed: {e:?}"));
    deliveries(c)
}

pub fn no_ack() -> BasicConsumeOptions {
    BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    }
}

pub fn manual_ack() -> BasicConsumeOptions {
    BasicConsumeOptions::default()
}

/// Observes the close of a channel whose failing method has no reply (publish, ack, reject ...).
///
/// It consumes from a private server-named exclusive queue on that channel; lapin hands the
/// close reason to every consumer of the channel no matter when it arrives.
pub struct ChannelWatch(Deliveries);

pub async fn watch(ch: &Channel) -> ChannelWatch {
    let q = within(ch.queue_declare(
        "".into(),
        QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("watch queue");
    ChannelWatch(consume(ch, q.name().as_str(), no_ack()).await)
}

impl ChannelWatch {
    /// Wait for the broker to close the channel; returns the close reason.
    pub async fn closed(mut self) -> lapin::Error {
        self.0.error().await
    }
}

pub async fn ack(ch: &Channel, tag: u64) {
    within(ch.basic_ack(tag, BasicAckOptions::default()))
        .await
        .expect("basic.ack");
}

pub async fn nack(ch: &Channel, tag: u64, requeue: bool) {
    within(ch.basic_nack(
        tag,
        BasicNackOptions {
            multiple: false,
            requeue,
        },
    ))
    .await
    .expect("basic.nack");
}

pub async fn reject(ch: &Channel, tag: u64, requeue: bool) {
    within(ch.basic_reject(tag, BasicRejectOptions { requeue }))
        .await
        .expect("basic.reject");
}
