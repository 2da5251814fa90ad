//! Direct reply-to (`amq.rabbitmq.reply-to`): a requester consumes from the pseudo-queue with no-ack, publishes
//! a request whose reply_to the broker rewrites to a private name, and a responder publishing to the default
//! exchange with that name as routing key reaches the requester's channel directly, with no queue in between.

use super::methods::Ctx;
use super::Channel;
use crate::broker::vhost::{ReplySink, ReplyTarget};
use crate::error::{AmqpError, AmqpResult};
use crate::protocol;
use crate::queue::message::Message;
use amq_protocol::protocol::{basic, AMQPClass};
use std::sync::{Arc, Weak};

pub const PSEUDO_QUEUE: &str = "amq.rabbitmq.reply-to";
pub const PREFIX: &str = crate::broker::vhost::REPLY_TO_PREFIX;

/// A channel's reply consumer.
#[derive(Debug, Clone)]
pub struct ReplyConsumer {
    pub tag: Arc<str>,
    /// The private name requests carry in reply_to.
    pub name: String,
}

impl Channel {
    /// basic.consume on amq.rabbitmq.reply-to.
    pub(super) fn reply_consume(&mut self, ctx: &mut Ctx, c: basic::Consume) -> AmqpResult<()> {
        if !c.no_ack {
            return Err(AmqpError::precondition_failed(
                "reply consumer cannot acknowledge",
            ));
        }
        if self.reply.is_some() {
            return Err(AmqpError::precondition_failed("reply consumer already set"));
        }
        let tag = self.consumer_tag(c.consumer_tag.as_str())?;
        let name = reply_name(ctx.conn.id, self.id());
        let tag: Arc<str> = Arc::from(tag.as_str());
        let sink: Weak<dyn ReplySink> = Arc::downgrade(&self.shared) as Weak<dyn ReplySink>;
        ctx.vhost.register_reply(
            &name,
            ReplyTarget {
                sink,
                consumer_tag: tag.clone(),
            },
        );
        self.reply = Some(ReplyConsumer {
            tag: tag.clone(),
            name,
        });
        if !c.nowait {
            let id = self.id();
            ctx.conn.outbound.send(|b| {
                protocol::write_method(
                    b,
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                        consumer_tag: tag.as_ref().into(),
                    })),
                )
            });
        }
        Ok(())
    }

    /// basic.cancel of the reply consumer; returns whether `tag` was it.
    pub(super) fn reply_cancel(&mut self, ctx: &Ctx, tag: &str) -> bool {
        match &self.reply {
            Some(r) if &*r.tag == tag => {
                ctx.vhost.unregister_reply(&r.name);
                self.reply = None;
                true
            }
            _ => false,
        }
    }

    /// A request's reply_to of amq.rabbitmq.reply-to becomes this channel's private reply name.
    pub(super) fn rewrite_reply_to(&self, msg: Message) -> AmqpResult<Message> {
        match msg.reply_to() {
            Some(r) if r == PSEUDO_QUEUE => {}
            _ => return Ok(msg),
        }
        let Some(reply) = &self.reply else {
            return Err(AmqpError::precondition_failed(
                "fast reply consumer does not exist",
            ));
        };
        let properties = msg
            .props()
            .clone()
            .with_reply_to(reply.name.as_str().into());
        let header = protocol::encode_content_header(msg.body.len() as u64, &properties);
        Ok(Message {
            header,
            properties: crate::queue::message::Props::new(properties),
            ..msg
        })
    }
}

/// A reply name shaped like RabbitMQ's: two standard-base64 parts, an opaque channel identity (31 bytes) and a
/// random key (16 bytes).
fn reply_name(conn: u64, channel: u16) -> String {
    use base64::Engine;
    let mut id = [0u8; 31];
    id[..8].copy_from_slice(&conn.to_be_bytes());
    id[8..10].copy_from_slice(&channel.to_be_bytes());
    let noise: [u8; 21] = rand::random();
    id[10..].copy_from_slice(&noise);
    let key: [u8; 16] = rand::random();
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("{PREFIX}{}.{}", b64.encode(id), b64.encode(key))
}
