//! Channel-level AMQP methods: exchange, queue, basic, confirm and tx. Each handler validates with RabbitMQ's
//! rules and texts, calls into the broker, and writes its reply to the connection's outbound buffer. Errors are
//! returned; the connection decides whether they close the channel or the connection.

use super::{Channel, PendingPublish, TxOp, Unacked};
use crate::broker::message::Message;
use crate::broker::vhost::{QueueDeclare, Routed};
use crate::broker::{Broker, VHost};
use crate::connection::ConnShared;
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::{self, fields};
use crate::queue::{Consumer, Queue};
use amq_protocol::protocol::{basic, confirm, exchange, queue, tx, AMQPClass, BasicProperties};
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::Bytes;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

/// What a channel method needs from its connection.
pub struct Ctx<'a> {
    pub broker: &'a Arc<Broker>,
    pub vhost: &'a Arc<VHost>,
    pub conn: &'a Arc<ConnShared>,
    pub user: &'a str,
    /// Exclusive queues this connection declared, deleted when it closes.
    pub exclusive_queues: &'a mut Vec<Arc<Queue>>,
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
fn clean_name(s: &str) -> String {
    clean_owned_name(s.to_string())
}

/// `clean_name` for a string the caller owns: no copy unless there is something to strip.
fn clean_owned_name(s: String) -> String {
    if s.contains(['\r', '\n']) {
        s.chars().filter(|c| *c != '\r' && *c != '\n').collect()
    } else {
        s
    }
}

fn reply(ctx: &Ctx, channel: u16, m: AMQPClass) {
    ctx.conn
        .outbound
        .send(|b| protocol::write_method(b, channel, m));
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
    fn queue_name(&self, name: &str) -> AmqpResult<String> {
        if name.is_empty() {
            self.last_queue
                .clone()
                .ok_or_else(|| AmqpError::not_found("no previously declared queue"))
        } else {
            Ok(clean_name(name))
        }
    }

    pub fn exchange_method(&mut self, ctx: &mut Ctx, m: exchange::AMQPMethod) -> AmqpResult<()> {
        let id = self.id();
        match m {
            exchange::AMQPMethod::Declare(d) => {
                let name = clean_name(d.exchange.as_str());
                ctx.vhost.declare_exchange(
                    &name,
                    d.kind.as_str(),
                    d.passive,
                    d.durable,
                    d.auto_delete,
                    d.internal,
                    &d.arguments,
                )?;
                if !d.nowait {
                    reply(
                        ctx,
                        id,
                        AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(
                            exchange::DeclareOk {},
                        )),
                    );
                }
            }
            exchange::AMQPMethod::Delete(d) => {
                ctx.vhost
                    .delete_exchange(&clean_name(d.exchange.as_str()), d.if_unused)?;
                if !d.nowait {
                    reply(
                        ctx,
                        id,
                        AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
                    );
                }
            }
            exchange::AMQPMethod::Bind(b) => {
                ctx.vhost.bind_exchange(
                    &clean_name(b.destination.as_str()),
                    &clean_name(b.source.as_str()),
                    b.routing_key.as_str(),
                    &b.arguments,
                )?;
                if !b.nowait {
                    reply(
                        ctx,
                        id,
                        AMQPClass::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {})),
                    );
                }
            }
            exchange::AMQPMethod::Unbind(b) => {
                ctx.vhost.unbind_exchange(
                    &clean_name(b.destination.as_str()),
                    &clean_name(b.source.as_str()),
                    b.routing_key.as_str(),
                    &b.arguments,
                )?;
                if !b.nowait {
                    reply(
                        ctx,
                        id,
                        AMQPClass::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {})),
                    );
                }
            }
            _ => return Err(AmqpError::command_invalid("unimplemented method")),
        }
        Ok(())
    }

    pub fn queue_method(&mut self, ctx: &mut Ctx, m: queue::AMQPMethod) -> AmqpResult<()> {
        let id = self.id();
        let conn_id = ctx.conn.id;
        match m {
            queue::AMQPMethod::Declare(d) => {
                let requested = clean_name(d.queue.as_str());
                let reply_name = requested.starts_with(super::reply_to::PREFIX);
                if d.passive && (reply_name || requested == super::reply_to::PSEUDO_QUEUE) {
                    // The pseudo-queue and live reply names look like a queue with one consumer.
                    if reply_name && ctx.vhost.reply_target(&requested).is_none() {
                        return Err(AmqpError::not_found(format!(
                            "no queue '{}' in vhost '{}'",
                            requested, ctx.vhost.name
                        )));
                    }
                    if !d.nowait {
                        reply(
                            ctx,
                            id,
                            AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                                queue: requested.as_str().into(),
                                message_count: 0,
                                consumer_count: 1,
                            })),
                        );
                    }
                    return Ok(());
                }
                let generated = requested.is_empty() && !d.passive;
                let name = if generated {
                    generated_name("amq.gen-")
                } else {
                    requested
                };
                if generated {
                    let qtype = fields::get(&d.arguments, "x-queue-type").and_then(fields::as_str);
                    if let Some(t) = qtype.filter(|t| t == "quorum" || t == "stream") {
                        return Err(AmqpError::precondition_failed(format!(
                            "Cannot declare a server-named queue for type rabbit_{t}_queue"
                        )));
                    }
                }
                if name.is_empty() {
                    return Err(AmqpError::not_found("no previously declared queue"));
                }
                let req = QueueDeclare {
                    name: &name,
                    passive: d.passive,
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    arguments: &d.arguments,
                };
                let (q, messages, consumers) = if generated {
                    ctx.vhost.declare_queue_unchecked(&req, conn_id)?
                } else {
                    ctx.vhost.declare_queue(&req, conn_id)?
                };
                if q.exclusive_owner == Some(conn_id)
                    && !ctx.exclusive_queues.iter().any(|x| Arc::ptr_eq(x, &q))
                {
                    ctx.exclusive_queues.push(q.clone());
                }
                self.last_queue = Some(name.clone());
                if !d.nowait {
                    reply(
                        ctx,
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                            queue: name.as_str().into(),
                            message_count: messages,
                            consumer_count: consumers,
                        })),
                    );
                }
            }
            queue::AMQPMethod::Bind(b) => {
                let qname = self.queue_name(b.queue.as_str())?;
                let rk = if b.queue.as_str().is_empty() && b.routing_key.as_str().is_empty() {
                    qname.clone()
                } else {
                    b.routing_key.to_string()
                };
                ctx.vhost.bind_queue(
                    &qname,
                    &clean_name(b.exchange.as_str()),
                    &rk,
                    &b.arguments,
                    conn_id,
                )?;
                if !b.nowait {
                    reply(
                        ctx,
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})),
                    );
                }
            }
            queue::AMQPMethod::Unbind(b) => {
                let qname = self.queue_name(b.queue.as_str())?;
                ctx.vhost.unbind_queue(
                    &qname,
                    &clean_name(b.exchange.as_str()),
                    b.routing_key.as_str(),
                    &b.arguments,
                    conn_id,
                )?;
                reply(
                    ctx,
                    id,
                    AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})),
                );
            }
            queue::AMQPMethod::Purge(p) => {
                let qname = self.queue_name(p.queue.as_str())?;
                let q = ctx.vhost.get_queue(&qname)?;
                q.check_access(conn_id)?;
                let n = q.purge();
                if !p.nowait {
                    reply(
                        ctx,
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                            message_count: n,
                        })),
                    );
                }
            }
            queue::AMQPMethod::Delete(d) => {
                let qname = self.queue_name(d.queue.as_str())?;
                let n = ctx
                    .vhost
                    .delete_queue(&qname, d.if_unused, d.if_empty, conn_id)?;
                ctx.exclusive_queues.retain(|q| !q.is_deleted());
                if !d.nowait {
                    reply(
                        ctx,
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                            message_count: n,
                        })),
                    );
                }
            }
            _ => return Err(AmqpError::command_invalid("unimplemented method")),
        }
        Ok(())
    }

    pub fn basic_method(&mut self, ctx: &mut Ctx, m: basic::AMQPMethod) -> AmqpResult<()> {
        let id = self.id();
        match m {
            basic::AMQPMethod::Publish(p) => {
                // Once per message: take the decoded strings over instead of copying them.
                self.publish = Some(PendingPublish {
                    exchange: clean_owned_name(p.exchange.into()),
                    routing_key: p.routing_key.into(),
                    mandatory: p.mandatory,
                    immediate: p.immediate,
                    header: None,
                    body: bytes::BytesMut::new(),
                    single: None,
                });
            }
            basic::AMQPMethod::Qos(q) => {
                if q.global {
                    self.shared.set_global_prefetch(q.prefetch_count as u32);
                    for queue in self.shared.consumed_queues() {
                        queue.dispatch();
                    }
                } else {
                    self.consumer_prefetch = q.prefetch_count as u32;
                }
                reply(
                    ctx,
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
                );
            }
            basic::AMQPMethod::Consume(c) => self.consume(ctx, c)?,
            basic::AMQPMethod::Cancel(c) => {
                let tag = c.consumer_tag.to_string();
                if self.reply_cancel(ctx, &tag) {
                } else if let Some(consumer) = self.shared.remove_consumer(&tag) {
                    if consumer.queue.remove_consumer(&consumer) {
                        ctx.vhost.remove_queue(&consumer.queue);
                    }
                }
                if !c.nowait {
                    reply(
                        ctx,
                        id,
                        AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                            consumer_tag: c.consumer_tag.clone(),
                        })),
                    );
                }
            }
            basic::AMQPMethod::Get(g) => {
                let qname = self.queue_name(g.queue.as_str())?;
                let q = ctx.vhost.get_queue(&qname)?;
                q.check_access(ctx.conn.id)?;
                if q.queue_type == crate::broker::queue_args::QueueType::Quorum
                    && q.is_single_active()
                {
                    return Err(AmqpError::resource_locked(format!(
                        "cannot obtain access to locked queue '{}' in vhost '{}'. basic.get operations are not supported by quorum queues with single active consumer",
                        qname, ctx.vhost.name
                    )));
                }
                if !q.get(&self.shared, g.no_ack) {
                    reply(
                        ctx,
                        id,
                        AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
                    );
                }
            }
            basic::AMQPMethod::Ack(a) => {
                let entries = self.shared.take(a.delivery_tag, a.multiple)?;
                match &mut self.tx {
                    Some(ops) => ops.push(TxOp::Ack(entries)),
                    None => self.settle(entries, Settle::Ack),
                }
            }
            basic::AMQPMethod::Nack(n) => {
                let entries = self.shared.take(n.delivery_tag, n.multiple)?;
                match &mut self.tx {
                    Some(ops) => ops.push(TxOp::Reject {
                        entries,
                        requeue: n.requeue,
                    }),
                    None => self.settle(
                        entries,
                        if n.requeue {
                            Settle::Requeue
                        } else {
                            Settle::Discard
                        },
                    ),
                }
            }
            basic::AMQPMethod::Reject(r) => {
                let entries = self.shared.take(r.delivery_tag, false)?;
                match &mut self.tx {
                    Some(ops) => ops.push(TxOp::Reject {
                        entries,
                        requeue: r.requeue,
                    }),
                    None => self.settle(
                        entries,
                        if r.requeue {
                            Settle::Requeue
                        } else {
                            Settle::Discard
                        },
                    ),
                }
            }
            basic::AMQPMethod::Recover(r) => {
                if !r.requeue {
                    return Err(AmqpError::not_implemented("requeue=false"));
                }
                let entries = self.shared.take_all();
                self.settle(entries, Settle::Requeue);
                reply(
                    ctx,
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                );
            }
            basic::AMQPMethod::RecoverAsync(r) => {
                if !r.requeue {
                    return Err(AmqpError::not_implemented("requeue=false"));
                }
                let entries = self.shared.take_all();
                self.settle(entries, Settle::Requeue);
            }
            _ => return Err(AmqpError::command_invalid("unimplemented method")),
        }
        Ok(())
    }

    fn consume(&mut self, ctx: &mut Ctx, c: basic::Consume) -> AmqpResult<()> {
        let id = self.id();
        let qname = self.queue_name(c.queue.as_str())?;
        if qname == super::reply_to::PSEUDO_QUEUE {
            return self.reply_consume(ctx, c);
        }
        let q = ctx.vhost.get_queue(&qname)?;
        q.check_access(ctx.conn.id)?;
        if q.queue_type == crate::broker::queue_args::QueueType::Quorum
            && self.shared.global_prefetch() > 0
        {
            return Err(AmqpError::not_implemented(format!(
                "queue '{}' in vhost '{}' does not support global qos",
                qname, ctx.vhost.name
            )));
        }
        let priority = match fields::get(&c.arguments, "x-priority") {
            None => 0,
            Some(v) => fields::as_int(v).ok_or_else(|| {
                AmqpError::precondition_failed(format!(
                    "invalid arg 'x-priority' for queue '{}' in vhost '{}': \"expected integer, got {}\"",
                    qname,
                    ctx.vhost.name,
                    fields::type_name(v)
                ))
            })? as i32,
        };
        let tag = self.consumer_tag(c.consumer_tag.as_str())?;
        let consumer = Arc::new(Consumer {
            tag: Arc::from(tag.as_str()),
            channel: self.shared.clone(),
            queue: q.clone(),
            no_ack: c.no_ack,
            exclusive: c.exclusive,
            priority,
            prefetch: self.consumer_prefetch,
            unacked: AtomicU32::new(0),
        });
        let nowait = c.nowait;
        let conn = ctx.conn.clone();
        // Registered on the channel first so that a queue deletion racing with us still finds it to cancel.
        self.shared.add_consumer(consumer.clone());
        let added = q.add_consumer(consumer.clone(), || {
            // consume-ok must reach the client before the first delivery, which add_consumer may make at once.
            if !nowait {
                conn.outbound.send(|b| {
                    protocol::write_method(
                        b,
                        id,
                        AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                            consumer_tag: tag.as_str().into(),
                        })),
                    )
                });
            }
        });
        if let Err(e) = added {
            self.shared.remove_consumer(&consumer.tag);
            return Err(e);
        }
        Ok(())
    }

    /// Apply acks, requeues or discards to the queues the deliveries came from.
    pub fn settle(&self, entries: Vec<Unacked>, how: Settle) {
        if entries.is_empty() {
            return;
        }
        let mut groups: Vec<(Arc<Queue>, Vec<crate::queue::QueuedMessage>)> = Vec::new();
        for u in entries {
            match groups.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
                Some((_, v)) => v.push(u.msg),
                None => groups.push((u.queue, vec![u.msg])),
            }
        }
        for (q, msgs) in groups {
            match how {
                Settle::Ack => q.acked(&msgs),
                Settle::Discard => q.discard(msgs),
                Settle::Requeue => q.requeue(msgs),
            }
        }
        // A channel-wide prefetch may have held back other queues' consumers on this channel.
        if self.shared.global_prefetch() > 0 {
            for q in self.shared.consumed_queues() {
                q.dispatch();
            }
        }
    }

    pub fn confirm_method(&mut self, ctx: &mut Ctx, m: confirm::AMQPMethod) -> AmqpResult<()> {
        match m {
            confirm::AMQPMethod::Select(s) => {
                if self.tx.is_some() {
                    return Err(AmqpError::precondition_failed(
                        "cannot switch from tx to confirm mode",
                    ));
                }
                self.confirm = true;
                if !s.nowait {
                    reply(
                        ctx,
                        self.id(),
                        AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                    );
                }
                Ok(())
            }
            _ => Err(AmqpError::command_invalid("unimplemented method")),
        }
    }

    pub fn tx_method(&mut self, ctx: &mut Ctx, m: tx::AMQPMethod) -> AmqpResult<()> {
        let id = self.id();
        match m {
            tx::AMQPMethod::Select(_) => {
                if self.confirm {
                    return Err(AmqpError::precondition_failed(
                        "cannot switch from confirm to tx mode",
                    ));
                }
                if self.tx.is_none() {
                    self.tx = Some(Vec::new());
                }
                reply(
                    ctx,
                    id,
                    AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})),
                );
            }
            tx::AMQPMethod::Commit(_) => {
                let Some(ops) = self.tx.replace(Vec::new()) else {
                    return Err(AmqpError::precondition_failed(
                        "channel is not transactional",
                    ));
                };
                for op in ops {
                    match op {
                        TxOp::Publish {
                            exchange,
                            mandatory,
                            msg,
                        } => {
                            // The exchange may have gone since the publish; RabbitMQ then fails the commit.
                            let x = ctx.vhost.get_exchange(&exchange)?;
                            self.route_and_enqueue(ctx, &x, mandatory, msg);
                        }
                        TxOp::Ack(entries) => self.settle(entries, Settle::Ack),
                        TxOp::Reject { entries, requeue } => self.settle(
                            entries,
                            if requeue {
                                Settle::Requeue
                            } else {
                                Settle::Discard
                            },
                        ),
                    }
                }
                reply(
                    ctx,
                    id,
                    AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})),
                );
            }
            tx::AMQPMethod::Rollback(_) => {
                let Some(ops) = self.tx.replace(Vec::new()) else {
                    return Err(AmqpError::precondition_failed(
                        "channel is not transactional",
                    ));
                };
                let mut restore = Vec::new();
                for op in ops {
                    match op {
                        TxOp::Ack(e) | TxOp::Reject { entries: e, .. } => restore.extend(e),
                        TxOp::Publish { .. } => {}
                    }
                }
                self.shared.restore(restore);
                reply(
                    ctx,
                    id,
                    AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
                );
            }
            _ => return Err(AmqpError::command_invalid("unimplemented method")),
        }
        Ok(())
    }

    /// A content header arrived for the pending publish.
    pub fn content_header(&mut self, ctx: &Ctx, payload: Bytes) -> AmqpResult<bool> {
        let (size, properties) = protocol::decode_content_header(&payload)
            .ok_or_else(|| AmqpError::frame_error("cannot decode content header"))?;
        let max = ctx.broker.config.max_message_size;
        if size > max {
            return Err(AmqpError::precondition_failed(format!(
                "message size {size} is larger than configured max size {max}"
            )));
        }
        let Some(p) = self.publish.as_mut() else {
            return Err(AmqpError::unexpected_frame(
                "expected method frame, got non method frame instead",
            ));
        };
        p.header = Some((payload, Box::new(properties), size));
        Ok(size == 0)
    }

    /// A body frame arrived; returns true when the body is complete.
    pub fn content_body(&mut self, payload: Bytes) -> AmqpResult<bool> {
        let Some(p) = self.publish.as_mut() else {
            return Err(AmqpError::unexpected_frame(
                "expected method frame, got non method frame instead",
            ));
        };
        let Some((_, _, size)) = &p.header else {
            return Err(AmqpError::unexpected_frame(
                "expected content header for class 60, got non content header frame instead",
            ));
        };
        let size = *size;
        let have = p.body.len() as u64 + p.single.as_ref().map_or(0, |b| b.len() as u64);
        if have + payload.len() as u64 > size {
            // RabbitMQ drops such a message without a word and wedges the channel: the next method on it is
            // an unexpected-frame error.
            self.publish = None;
            self.wedged = true;
            return Ok(false);
        }
        if have == 0 && payload.len() as u64 == size {
            p.single = Some(payload);
            return Ok(true);
        }
        if let Some(first) = p.single.take() {
            p.body.extend_from_slice(&first);
        }
        if p.body.is_empty() {
            p.body.reserve(size as usize);
        }
        p.body.extend_from_slice(&payload);
        Ok(p.body.len() as u64 == size)
    }

    /// The pending publish is complete: validate it, then route it (or buffer it in a transaction).
    pub fn finish_publish(&mut self, ctx: &mut Ctx) -> AmqpResult<()> {
        let Some(p) = self.publish.take() else {
            return Ok(());
        };
        let Some((header, properties, _)) = p.header else {
            return Ok(());
        };
        let body = match p.single {
            Some(b) => b,
            None => p.body.freeze(),
        };
        if p.immediate {
            return Err(AmqpError::not_implemented("immediate=true"));
        }
        let x = ctx.vhost.get_exchange(&p.exchange)?;
        if x.internal {
            return Err(AmqpError::access_refused(format!(
                "cannot publish to internal exchange '{}' in vhost '{}'",
                p.exchange, ctx.vhost.name
            )));
        }
        validate_properties(&properties, ctx.user)?;
        if self.confirm {
            self.publish_seq += 1;
        }
        let msg = self.rewrite_reply_to(Message {
            exchange: x.name.clone(),
            routing_key: p.routing_key.into_boxed_str(),
            header,
            properties,
            body,
        })?;
        let msg = Arc::new(msg);
        if let Some(ops) = &mut self.tx {
            ops.push(TxOp::Publish {
                exchange: p.exchange,
                mandatory: p.mandatory,
                msg,
            });
            return Ok(());
        }
        self.route_and_enqueue(ctx, &x, p.mandatory, msg);
        Ok(())
    }

    fn route_and_enqueue(
        &mut self,
        ctx: &Ctx,
        x: &Arc<crate::broker::exchange::Exchange>,
        mandatory: bool,
        msg: Arc<Message>,
    ) {
        if x.name.is_empty() && msg.routing_key.starts_with(super::reply_to::PREFIX) {
            let target = ctx.vhost.reply_target(&msg.routing_key);
            match &target {
                Some((ch, tag)) => ch.deliver_reply(tag, &msg),
                None if mandatory => {
                    let id = self.id();
                    let frame_max = ctx.conn.frame_max();
                    ctx.conn.outbound.send(|b| {
                        protocol::write_return(
                            b,
                            id,
                            312,
                            "NO_ROUTE",
                            &msg.exchange,
                            &msg.routing_key,
                        );
                        protocol::write_content(b, id, &msg.header, &msg.body, frame_max);
                    });
                }
                None => {}
            }
            if self.confirm {
                let seq = self.publish_seq;
                self.confirm(seq, true);
            }
            return;
        }
        let mut routed = Routed::new();
        let headers = msg.properties.headers().as_ref();
        let cc = headers.map(|h| (routing_list(h, "CC"), routing_list(h, "BCC")));
        match &cc {
            Some((cc, bcc)) if !cc.is_empty() || !bcc.is_empty() => {
                let mut keys: Vec<&str> = vec![&msg.routing_key];
                keys.extend(cc.iter().map(String::as_str));
                keys.extend(bcc.iter().map(String::as_str));
                ctx.vhost.route(x, &keys, headers, &mut routed);
            }
            _ => ctx
                .vhost
                .route(x, &[&msg.routing_key], headers, &mut routed),
        }
        let msg = match &cc {
            Some((_, bcc)) if !bcc.is_empty() => strip_bcc(&msg),
            _ => msg,
        };
        if routed.is_empty() && mandatory {
            let id = self.id();
            let frame_max = ctx.conn.frame_max();
            ctx.conn.outbound.send(|b| {
                protocol::write_return(b, id, 312, "NO_ROUTE", &msg.exchange, &msg.routing_key);
                protocol::write_content(b, id, &msg.header, &msg.body, frame_max);
            });
        }
        if !self.confirm {
            for q in routed {
                q.publish(msg.clone());
            }
            return;
        }
        let seq = self.publish_seq;
        // One extra pending write guards the outcome until every queue has answered: a store write can
        // finish on the sync thread before this loop does.
        self.shared
            .confirms
            .lock()
            .register(seq, routed.len() as u32 + 1, true);
        let cref = crate::queue::ConfirmRef {
            channel: self.shared.clone(),
            seq,
        };
        for q in routed {
            match q.publish_confirmed(msg.clone(), Some(&cref)) {
                crate::queue::Accepted::Yes => self.shared.confirms.lock().write_done(seq, true),
                crate::queue::Accepted::Rejected => {
                    self.shared.confirms.lock().write_done(seq, false)
                }
                crate::queue::Accepted::Pending => {}
            }
        }
        self.shared.confirms.lock().write_done(seq, true);
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Settle {
    Ack,
    Requeue,
    Discard,
}

/// The extra routing keys in a CC or BCC header (validated at publish).
fn routing_list(h: &FieldTable, key: &str) -> Vec<String> {
    match fields::get(h, key) {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .filter_map(fields::as_str)
            .map(|s| s.into_owned())
            .collect(),
        _ => Vec::new(),
    }
}

/// BCC is never delivered: rebuild the header without it.
fn strip_bcc(msg: &Arc<Message>) -> Arc<Message> {
    let mut props = (*msg.properties).clone();
    if let Some(h) = props.headers().clone() {
        let mut t = FieldTable::default();
        for (k, v) in h.inner() {
            if k.as_str() != "BCC" {
                t.insert(k.clone(), v.clone());
            }
        }
        props = props.with_headers(t);
    }
    let header = protocol::encode_content_header(msg.body.len() as u64, &props);
    Arc::new(Message {
        exchange: msg.exchange.clone(),
        routing_key: msg.routing_key.clone(),
        header,
        properties: Box::new(props),
        body: msg.body.clone(),
    })
}

/// RabbitMQ's checks on a published message's properties.
fn validate_properties(p: &BasicProperties, user: &str) -> AmqpResult<()> {
    if let Some(mode) = p.delivery_mode() {
        if *mode != 1 && *mode != 2 {
            return Err(AmqpError::precondition_failed(format!(
                "invalid message: {{delivery_mode_unknown,{mode}}}"
            )));
        }
    }
    if let Some(uid) = p.user_id() {
        if uid.as_str() != user {
            return Err(AmqpError::precondition_failed(format!(
                "user_id property set to '{}' but authenticated user was '{}'",
                uid, user
            )));
        }
    }
    if let Some(h) = p.headers() {
        for key in ["CC", "BCC"] {
            if let Some(v) = fields::get(h, key) {
                let ok = match v {
                    AMQPValue::FieldArray(a) => {
                        a.as_slice().iter().all(|x| fields::as_str(x).is_some())
                    }
                    _ => false,
                };
                if !ok {
                    return Err(AmqpError::precondition_failed(format!(
                        "invalid message: {{unacceptable_type_in_header,\"{key}\",{}}}",
                        fields::type_name(v)
                    )));
                }
            }
        }
    }
    if let Some(exp) = p.expiration() {
        validate_expiration(exp.as_str())?;
    }
    Ok(())
}

/// The expiration property must be a non-negative integer string.
fn validate_expiration(s: &str) -> AmqpResult<u64> {
    let invalid =
        |why: String| AmqpError::precondition_failed(format!("invalid expiration '{s}': {why}"));
    let digits_end = s
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+'))))
        .map_or(s.len(), |(i, _)| i);
    let (num, rest) = s.split_at(digits_end);
    if num.is_empty() || num == "-" || num == "+" {
        return Err(invalid("no_integer".into()));
    }
    if !rest.is_empty() {
        return Err(invalid(format!("{{leftover_string,\"{rest}\"}}")));
    }
    let n: i64 = num.parse().map_err(|_| invalid("no_integer".into()))?;
    if n < 0 {
        return Err(invalid(format!("{{value_negative,{n}}}")));
    }
    Ok(n as u64)
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

    #[test]
    fn expiration_rules() {
        assert_eq!(validate_expiration("1000").unwrap(), 1000);
        assert_eq!(
            validate_expiration("abc").unwrap_err().text,
            "invalid expiration 'abc': no_integer"
        );
        assert_eq!(
            validate_expiration("-1").unwrap_err().text,
            "invalid expiration '-1': {value_negative,-1}"
        );
        assert_eq!(
            validate_expiration("10s").unwrap_err().text,
            "invalid expiration '10s': {leftover_string,\"s\"}"
        );
    }
}
