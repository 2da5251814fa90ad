//! From a frame to its handler: channel 0 and the handshake go to the lifecycle machine, whose actions are
//! carried out here; channel frames pass the channel lifecycle gate and go to the channel's class handlers
//! or its content assembly. Also channel and connection release (consumers, unacked messages, exclusive
//! queues).

use super::lifecycle::Action;
use super::{handshake, BrokerEnv, Connection, Open};
use crate::broker::{Command, DeleteCause};
use crate::channel::lifecycle::{self as chan, Phase, Step};
use crate::channel::methods::{Ctx, Settle};
use crate::channel::{Channel, ChannelShared, Pending, Then};
use crate::error::AmqpError;
use crate::protocol::{self, RawFrame};
use amq_protocol::protocol::{access, basic, channel, connection, AMQPClass};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a connection the client closed waits for the client to close its socket (capped by the heartbeat).
const CLOSED_LINGER_SECS: u64 = 30;

/// The outcome of handling input: keep going, or stop reading (the writer flushes and closes the socket).
pub(super) enum Flow {
    Continue,
    Stop,
}

impl Connection {
    pub(super) fn send_method(&self, channel: u16, m: AMQPClass) {
        self.shared
            .outbound
            .send(|b| protocol::write_method(b, channel, m));
    }

    /// Carry out the lifecycle machine's actions.
    pub(super) fn act(&mut self, actions: Vec<Action>) -> Flow {
        for a in actions {
            match a {
                Action::Raw(bytes) => self.shared.outbound.send(|b| b.extend_from_slice(bytes)),
                Action::Start => {
                    let external = self.machine.external.is_some();
                    let version = self.broker.config.compat().version();
                    self.shared
                        .outbound
                        .send(|b| handshake::write_start(b, external, version));
                    tracing::debug!("sent connection.start");
                }
                Action::Send(m) => self.send_method(0, m),
                Action::Tuned(t) => {
                    self.heartbeat = t.heartbeat;
                    self.shared.set_frame_max(t.frame_max);
                    self.shared.outbound.set_heartbeat(t.heartbeat);
                    self.channel_max = t.channel_max;
                }
                Action::Opened { user, vhost } => {
                    let info = super::ConnInfo {
                        client_properties: crate::protocol::fields::EncodedTable::new(
                            &std::mem::take(&mut self.machine.client_properties),
                        ),
                        mechanism: std::mem::take(&mut self.machine.mechanism),
                        channel_max: self.channel_max,
                        frame_max: self.shared.frame_max(),
                        heartbeat: self.heartbeat,
                        cancel_notify: self.machine.caps.cancel_notify,
                    };
                    self.shared.set_open(info, &vhost, &user.name);
                    tracing::info!(user = %user.name, vhost = %vhost.name, "connection open");
                    self.open = Some(Open {
                        user: Arc::from(user.name.as_str()),
                        vhost,
                    });
                }
                Action::Close(e) => {
                    tracing::warn!(code = e.code.code(), text = %e.reply_text(), class = e.class_id, method = e.method_id, "closing connection");
                    self.send_method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                            reply_code: e.code.code(),
                            reply_text: e.reply_text().as_str().into(),
                            class_id: e.class_id,
                            method_id: e.method_id,
                        })),
                    );
                    self.release();
                    self.closing_deadline = Some(Instant::now() + self.linger());
                }
                Action::Release => {
                    self.release();
                    self.closing_deadline = Some(Instant::now() + self.linger());
                }
                Action::Linger(d) => {
                    self.closing_deadline = Some(Instant::now() + d);
                }
                Action::Stop => return Flow::Stop,
            }
        }
        Flow::Continue
    }

    /// How long to wait for the peer once closing: the heartbeat interval, at most 30 s.
    fn linger(&self) -> Duration {
        Duration::from_secs(match self.heartbeat {
            0 => CLOSED_LINGER_SECS,
            hb => (hb as u64).min(CLOSED_LINGER_SECS),
        })
    }

    /// Close the connection from the broker side.
    pub(super) fn close_connection(&mut self, e: AmqpError) -> Flow {
        let actions = self.machine.close(e);
        self.act(actions)
    }

    pub(super) fn handle_frame(&mut self, f: RawFrame) -> Flow {
        let env = BrokerEnv {
            broker: &self.broker,
            peer: self.shared.peer,
        };
        if let Some(actions) = self.machine.frame(&f, &env) {
            return self.act(actions);
        }
        match self.running_frame(f) {
            Ok(flow) => flow,
            Err(e) => self.close_connection(e),
        }
    }

    fn running_frame(&mut self, f: RawFrame) -> Result<Flow, AmqpError> {
        match f.kind {
            protocol::FRAME_METHOD => {
                if let Some(size) = protocol::peek_qos_prefetch_size(&f.payload) {
                    // amq-protocol drops basic.qos prefetch_size, which RabbitMQ refuses when non-zero.
                    if size != 0 && f.channel != 0 && self.channels.contains_key(&f.channel) {
                        return Err(AmqpError::not_implemented(format!(
                            "prefetch_size!=0 ({size})"
                        ))
                        .on(60, 10));
                    }
                }
                let parsed = match protocol::parse_publish(&f.payload) {
                    Some(p) => {
                        self.published = true;
                        Ok(AMQPClass::Basic(basic::AMQPMethod::Publish(p)))
                    }
                    None => parse_method(&f.payload),
                };
                let method = match parsed {
                    Ok(m) => m,
                    Err(None) => {
                        // RabbitMQ drops the connection without a close on an unknown method.
                        tracing::warn!("unknown method, dropping connection");
                        return Ok(Flow::Stop);
                    }
                    Err(Some(e)) => return Err(e),
                };
                if matches!(method, AMQPClass::Basic(basic::AMQPMethod::Publish(_))) {
                    self.published = true;
                }
                if f.channel == 0 {
                    let actions = self.machine.running_method(method);
                    Ok(self.act(actions))
                } else {
                    self.channel_method(f.channel, method)?;
                    Ok(Flow::Continue)
                }
            }
            protocol::FRAME_HEADER | protocol::FRAME_BODY if f.channel == 0 => {
                Err(AmqpError::unexpected_frame(format!(
                    "type {}, all octets = {}",
                    f.kind,
                    protocol::erlang_binary(&f.payload)
                )))
            }
            protocol::FRAME_HEADER | protocol::FRAME_BODY => {
                self.channel_content(f)?;
                Ok(Flow::Continue)
            }
            protocol::FRAME_HEARTBEAT if !f.payload.is_empty() => {
                Err(AmqpError::frame_error(format!(
                    "type 8, all octets = {}: unknown_frame",
                    protocol::erlang_binary(&f.payload)
                )))
            }
            protocol::FRAME_HEARTBEAT if f.channel != 0 => {
                Err(AmqpError::unexpected_frame(format!(
                    "type 8, all octets = {}",
                    protocol::erlang_binary(&f.payload)
                )))
            }
            protocol::FRAME_HEARTBEAT => Ok(Flow::Continue),
            kind => Err(AmqpError::frame_error(format!(
                "type {kind}, all octets = {}: unknown_frame",
                protocol::erlang_binary(&f.payload)
            ))),
        }
    }

    fn phase(&self, id: u16) -> Phase {
        self.channels.get(&id).map_or(Phase::Absent, |c| c.phase)
    }

    fn channel_method(&mut self, id: u16, m: AMQPClass) -> Result<(), AmqpError> {
        let (class_id, method_id) = (m.get_amqp_class_id(), m.get_amqp_method_id());
        let phase = self.phase(id);
        if phase == Phase::Open {
            if let Some(ch) = self.channels.get(&id) {
                ch.content.check_method()?;
            }
        }
        match chan::on_method(phase, class_id, method_id)? {
            Step::Open => self.open_channel(id),
            Step::Ignore => Ok(()),
            Step::CloseOk => {
                self.send_close_ok(id);
                Ok(())
            }
            Step::Forget => {
                self.channels.remove(&id);
                Ok(())
            }
            Step::ClientClose => {
                if let Some(mut ch) = self.channels.remove(&id) {
                    self.cleanup_channel(&mut ch);
                }
                self.send_close_ok(id);
                Ok(())
            }
            Step::Flow => {
                if let AMQPClass::Channel(channel::AMQPMethod::Flow(f)) = &m {
                    if !f.active {
                        return Err(AmqpError::not_implemented("active=false").on(20, 20));
                    }
                }
                self.send_method(
                    id,
                    AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: true,
                    })),
                );
                Ok(())
            }
            Step::Access => {
                self.send_method(
                    id,
                    AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})),
                );
                Ok(())
            }
            Step::Dispatch => match self.dispatch_channel_method(id, m) {
                Ok(()) => Ok(()),
                Err(e) => self.channel_failed(id, e.on(class_id, method_id)),
            },
        }
    }

    /// A channel-level error: soft ones close the channel, hard ones the connection.
    fn channel_failed(&mut self, id: u16, e: AmqpError) -> Result<(), AmqpError> {
        if e.is_hard() {
            Err(e)
        } else {
            self.close_channel(id, e);
            Ok(())
        }
    }

    fn send_close_ok(&self, id: u16) {
        self.send_method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
        );
    }

    fn open_channel(&mut self, id: u16) -> Result<(), AmqpError> {
        if self.channels.len() >= self.channel_max as usize {
            return Err(AmqpError::not_allowed(format!(
                "number of channels opened ({}) has reached the negotiated channel_max ({})",
                self.channels.len(),
                self.channel_max
            )));
        }
        if let Some(open) = &self.open {
            if let Some(max) = self.broker.user_limit(&open.user, "max-channels") {
                if self.broker.user_channel_count(&open.user) as i64 >= max {
                    // RabbitMQ 4.3 dropped the parentheses.
                    let limit = if self.broker.config.compat().is_4() {
                        max.to_string()
                    } else {
                        format!("({max})")
                    };
                    return Err(AmqpError::not_allowed(format!(
                        "number of channels opened for user '{}' has reached the maximum allowed user limit of {limit}",
                        open.user
                    )));
                }
            }
        }
        let shared = ChannelShared::new(id, self.shared.clone(), Some(self.ack_sweep.clone()));
        self.shared.channels.lock().insert(id, shared.clone());
        self.broker.churn.channel_created.add(1);
        self.channels.insert(id, Box::new(Channel::new(shared)));
        self.send_method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
        );
        tracing::debug!(channel = id, "channel opened");
        Ok(())
    }

    /// Run `f` on channel `id` with the method context of this connection (`None`: no such channel).
    fn with_channel<R>(
        &mut self,
        id: u16,
        f: impl FnOnce(&mut Channel, &mut Ctx) -> R,
    ) -> Option<R> {
        let (Some(open), Some(ch)) = (&self.open, self.channels.get_mut(&id)) else {
            return None;
        };
        let mut ctx = Ctx {
            broker: &self.broker,
            vhost: &open.vhost,
            conn: &self.shared,
            user: &open.user,
            exclusive_queues: &mut self.exclusive_queues,
            pending: &mut self.pending,
        };
        Some(f(ch, &mut ctx))
    }

    fn dispatch_channel_method(&mut self, id: u16, m: AMQPClass) -> Result<(), AmqpError> {
        if self.open.is_none() {
            return Err(AmqpError::internal_error("no vhost"));
        }
        let is_publish = matches!(m, AMQPClass::Basic(basic::AMQPMethod::Publish(_)));
        let r = self.with_channel(id, |ch, ctx| {
            let r = match m {
                AMQPClass::Exchange(m) => ch.exchange_method(ctx, m),
                AMQPClass::Queue(m) => ch.queue_method(ctx, m),
                AMQPClass::Basic(m) => ch.basic_method(ctx, m),
                AMQPClass::Confirm(m) => ch.confirm_method(ctx, m),
                AMQPClass::Tx(m) => ch.tx_method(ctx, m),
                _ => Err(AmqpError::command_invalid("unimplemented method")),
            };
            (r, is_publish && ch.confirm)
        });
        let Some((r, dirty)) = r else { return Ok(()) };
        if dirty {
            self.confirm_dirty.push(id);
        }
        r
    }

    fn channel_content(&mut self, f: RawFrame) -> Result<(), AmqpError> {
        let id = f.channel;
        if !chan::on_content(self.phase(id))? {
            return Ok(());
        }
        let done = self.with_channel(id, |ch, ctx| {
            let r = ch.content_frame(ctx, f.kind == protocol::FRAME_HEADER, f.payload);
            (r, ch.confirm)
        });
        let Some((result, confirm)) = done else {
            return Err(AmqpError::internal_error("no vhost"));
        };
        if confirm {
            self.confirm_dirty.push(id);
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) => self.channel_failed(id, e),
        }
    }

    /// The wait is over: send the reply (and tell the channel about consumers the command cancelled), close
    /// the connection if the change could not be recorded, or retry a basic.get.
    pub(super) fn finish_pending(&mut self, p: Pending, outcome: crate::error::AmqpResult<()>) {
        match p.then {
            Then::Reply {
                reply,
                cancelled,
                class_id,
                method_id,
            } => {
                let failed = outcome.err();
                // The channel may have been closed meanwhile (a consumer timeout): no reply after a close.
                let open = self.phase(p.channel) == Phase::Open;
                if let (None, Some(m), true) = (&failed, reply, open) {
                    self.send_method(p.channel, m);
                }
                for c in cancelled {
                    c.channel.cancelled(&c);
                }
                if let Some(e) = failed {
                    self.close_connection(e.on(class_id, method_id));
                }
            }
            Then::Get { queue, no_ack } => {
                self.with_channel(p.channel, |ch, ctx| {
                    if ch.phase == Phase::Open {
                        ch.get(ctx, queue, no_ack);
                    }
                });
            }
        }
    }

    /// Close a channel at another task's request, if it is still the open channel it was.
    pub(super) fn close_channel_from_broker(&mut self, shared: &Arc<ChannelShared>, e: AmqpError) {
        let current = self
            .channels
            .get(&shared.id)
            .is_some_and(|ch| ch.phase == Phase::Open && Arc::ptr_eq(&ch.shared, shared));
        if current {
            self.close_channel(shared.id, e);
        }
    }

    /// Close one channel from the broker side with a soft error.
    fn close_channel(&mut self, id: u16, e: AmqpError) {
        tracing::info!(channel = id, code = e.code.code(), text = %e.reply_text(), "closing channel");
        if let Some(mut ch) = self.channels.remove(&id) {
            self.cleanup_channel(&mut ch);
            ch.phase = Phase::Closing;
            self.channels.insert(id, ch);
        }
        self.send_method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: e.code.code(),
                reply_text: e.reply_text().as_str().into(),
                class_id: e.class_id,
                method_id: e.method_id,
            })),
        );
    }

    /// Release what a channel holds: its consumers (auto-deleting queues that lose their last one) and its
    /// unacknowledged messages, which go back to their queues.
    fn cleanup_channel(&self, ch: &mut Channel) {
        ch.shared.mark_closed();
        // The channel leaves the management API's view; its counts stay in its vhost's totals.
        if self.shared.channels.lock().remove(&ch.id()).is_some() {
            self.broker.churn.channel_closed.add(1);
            if let Some(open) = &self.open {
                open.vhost.totals.channels.absorb(&ch.shared.stats);
            }
        }
        // An uncommitted transaction's acks and rejects never happened: those deliveries are requeued with
        // the rest, as RabbitMQ does.
        if let Some(ops) = ch.tx.take() {
            ch.restore_tx(ops.into_iter());
        }
        // Requeued before the consumers go, so that a single-active-consumer queue's next consumer starts
        // with them, in their original positions (the closed channel takes no deliveries meanwhile).
        let entries = ch.shared.take_all();
        ch.settle(entries, Settle::Requeue);
        for c in ch.shared.take_consumers() {
            crate::channel::methods::release(&self.broker, &c);
        }
        ch.content.reset();
        if let (Some(r), Some(open)) = (ch.reply.take(), &self.open) {
            open.vhost.unregister_reply(&r.name);
        }
    }

    /// Everything a finished connection must give back (once).
    pub(super) fn release(&mut self) {
        let channels: Vec<Box<Channel>> = self.channels.drain().map(|(_, c)| c).collect();
        for mut ch in channels {
            self.cleanup_channel(&mut ch);
        }
        let Some(open) = &self.open else { return };
        for q in std::mem::take(&mut self.exclusive_queues) {
            self.broker.execute_internal(Command::DeleteQueue {
                vhost: open.vhost.name.to_string(),
                name: q.name.to_string(),
                if_unused: false,
                if_empty: false,
                cause: DeleteCause::OwnerGone,
            });
        }
    }

    pub(super) fn flush_confirms(&mut self) {
        for id in self.confirm_dirty.drain(..) {
            if let Some(ch) = self.channels.get_mut(&id) {
                ch.flush_confirms();
            }
        }
    }
}

/// Decode a method frame payload with amq-protocol. `Err(None)` is an unknown class or method.
fn parse_method(payload: &[u8]) -> Result<AMQPClass, Option<AmqpError>> {
    if protocol::nesting::method_too_deep(payload) {
        let (class_id, method_id) = protocol::peek_method(payload);
        return Err(Some(
            AmqpError::syntax_error(format!(
                "field table nested more than {} levels deep",
                protocol::nesting::MAX_DEPTH
            ))
            .on(class_id, method_id),
        ));
    }
    match amq_protocol::protocol::parse_class(payload) {
        Ok((_, m)) => Ok(m),
        Err(_) => {
            let (class_id, method_id) = protocol::peek_method(payload);
            if handshake::known_method(class_id, method_id) {
                let args = payload.get(4..).unwrap_or_default();
                Err(Some(
                    AmqpError::frame_error(format!(
                        "cannot decode {}",
                        protocol::erlang_binary(args)
                    ))
                    .on(class_id, method_id),
                ))
            } else {
                Err(None)
            }
        }
    }
}
