//! Channel-level AMQP methods, one file per class: [`exchange`], [`queue`], [`basic`] (consumers, acks,
//! basic.get), [`publish`] (completing, validating and routing a published message) and [`modes`]
//! (confirm.select and tx). Each handler validates with RabbitMQ's rules and texts, calls into the broker
//! (topology through its command path), and writes its reply to the connection's outbound buffer — at once,
//! or once the change is durable. Errors are returned; the connection decides whether they close the
//! channel or the connection.

mod basic;
mod exchange;
mod modes;
mod publish;
mod queue;

pub use basic::{release, Settle};
pub use publish::validate_properties;

use super::{Channel, Pending};
use crate::broker::{Actor, Broker, Executed, VHost};
use crate::channel::link::ConnShared;
use crate::error::{AmqpError, AmqpResult};
use crate::protocol;
use crate::queue::{Consumer, ConsumerChannel, Queue};
use amq_protocol::protocol::AMQPClass;
use std::sync::Arc;

/// What a channel method needs from its connection.
pub struct Ctx<'a> {
    pub broker: &'a Arc<Broker>,
    pub vhost: &'a Arc<VHost>,
    pub conn: &'a Arc<ConnShared>,
    pub user: &'a Arc<str>,
    /// Exclusive queues this connection declared, deleted when it closes.
    pub exclusive_queues: &'a mut Vec<Arc<Queue>>,
    /// Set by a method whose reply must wait for its change to be durable.
    pub pending: &'a mut Option<Pending>,
}

/// A random name in RabbitMQ's style: prefix + 22 url-safe base64 characters.
pub fn generated_name(prefix: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes: [u8; 16] = rand::random();
    let mut s = String::with_capacity(prefix.len() + 22);
    s.push_str(prefix);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            s.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        s.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    s
}

/// RabbitMQ strips CR and LF from entity names.
pub(super) fn clean_name(s: &str) -> String {
    clean_owned_name(s.to_string())
}

/// `clean_name` for a string the caller owns: no copy unless there is something to strip.
pub(super) fn clean_owned_name(s: String) -> String {
    if s.contains(['\r', '\n']) {
        s.chars().filter(|c| *c != '\r' && *c != '\n').collect()
    } else {
        s
    }
}

/// RabbitMQ 4.3.1+ lets a passive declare through with any of read, write or configure permission (3.x checks
/// none); the refusal names configure, as a normal declare's would.
pub(super) fn passive_access(ctx: &Ctx, kind: &str, name: &str) -> AmqpResult<()> {
    use crate::broker::Access;
    if !ctx.vhost.compat.is_4() {
        return Ok(());
    }
    let configure = ctx.check(Access::Configure, kind, name);
    if configure.is_err()
        && (ctx.check(Access::Read, kind, name).is_ok()
            || ctx.check(Access::Write, kind, name).is_ok())
    {
        return Ok(());
    }
    configure
}

pub(super) fn reply(ctx: &Ctx, channel: u16, m: AMQPClass) {
    ctx.conn
        .outbound
        .send(|b| protocol::write_method(b, channel, m));
}

impl Ctx<'_> {
    /// RabbitMQ's resource check for this connection's user (403 ACCESS_REFUSED).
    pub(super) fn check(
        &self,
        access: crate::broker::Access,
        kind: &str,
        name: &str,
    ) -> AmqpResult<()> {
        self.broker
            .check_access(self.user, &self.vhost.name, access, kind, name)
    }

    pub(super) fn actor(&self, channel: u16) -> Actor {
        Actor::channel(self.user.clone(), self.conn.id, channel)
    }

    /// Execute a command for channel `channel` and answer it with `reply` once its change is durable.
    pub(super) fn run(
        &mut self,
        channel: u16,
        cmd: crate::broker::Command,
        reply: Option<AMQPClass>,
        ids: (u16, u16),
    ) -> AmqpResult<()> {
        let done = self.broker.execute(cmd, &self.actor(channel))?;
        self.answer(channel, done, reply, Vec::new(), ids);
        Ok(())
    }

    /// Answer a command: now if its change needs no disk write (or `reply` is None and nothing waits),
    /// otherwise once it is durable.
    pub(super) fn answer(
        &mut self,
        channel: u16,
        executed: Executed,
        reply: Option<AMQPClass>,
        cancelled: Vec<Arc<Consumer>>,
        (class_id, method_id): (u16, u16),
    ) {
        if executed.ticket.is_done() {
            if let Some(m) = reply {
                self::reply(self, channel, m);
            }
            for c in cancelled {
                c.channel.cancelled(&c);
            }
            return;
        }
        *self.pending = Some(Pending {
            wait: super::Wait::Durable(executed.ticket),
            channel,
            then: super::Then::Reply {
                reply,
                cancelled,
                class_id,
                method_id,
            },
        });
    }
}

impl Channel {
    /// The tag for a new consumer: the client's, or a server-generated one; a tag in use is a connection error.
    pub(super) fn consumer_tag(&self, requested: &str) -> AmqpResult<String> {
        let tag = if requested.is_empty() {
            generated_name("amq.ctag-")
        } else {
            requested.to_string()
        };
        let reply_tag = self.reply.as_ref().is_some_and(|r| *r.tag == *tag);
        if self.shared.has_consumer(&tag) || reply_tag {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{tag}'"
            )));
        }
        Ok(tag)
    }

    /// Resolve an empty queue name to the last queue declared on this channel.
    pub(super) fn queue_name(&self, name: &str) -> AmqpResult<String> {
        if name.is_empty() {
            self.last_queue
                .clone()
                .ok_or_else(|| AmqpError::not_found("no previously declared queue"))
        } else {
            Ok(clean_name(name))
        }
    }

    /// This channel as the core's consumer-channel interface.
    pub(super) fn as_consumer_channel(&self) -> Arc<dyn ConsumerChannel> {
        self.shared.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let n = generated_name("amq.gen-");
        assert_eq!(n.len(), 8 + 22);
        assert!(n[8..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
