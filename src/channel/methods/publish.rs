//! Completing a publish: validating the message (RabbitMQ's checks on properties, internal exchanges,
//! immediate), rewriting a direct reply-to request, then routing it and enqueueing it — with its publisher
//! confirm — or buffering it in a transaction.

use super::Ctx;
use crate::channel::content::Complete;
use crate::channel::{reply_to, Channel, TxOp};
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::{self, fields};
use crate::queue::message::Message;
use crate::queue::ConfirmRef;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::AMQPValue;
use bytes::Bytes;
use std::sync::Arc;

impl Channel {
    /// A content header or body frame for the pending publish; routes the message once complete.
    pub fn content_frame(&mut self, ctx: &mut Ctx, header: bool, payload: Bytes) -> AmqpResult<()> {
        let complete = if header {
            self.content
                .header(payload, ctx.broker.config.max_message_size())?
        } else {
            self.content.body(payload)?
        };
        match complete {
            Some(m) if m.start.refused.is_some() => {
                Err(AmqpError::command_invalid("unimplemented method")
                    .on(60, m.start.refused.unwrap_or(40)))
            }
            Some(m) => self.finish_publish(ctx, m).map_err(|e| e.on(60, 40)),
            None => Ok(()),
        }
    }

    /// The message is complete: validate it, then route it (or buffer it in a transaction).
    fn finish_publish(&mut self, ctx: &mut Ctx, m: Complete) -> AmqpResult<()> {
        let Complete {
            start: p,
            header,
            properties,
            body,
        } = m;
        if p.immediate {
            return Err(AmqpError::not_implemented("immediate=true"));
        }
        // Write permission before the exchange lookup (RabbitMQ answers 403 before 404); the last exchange
        // allowed is remembered, as RabbitMQ caches a channel's successful checks.
        if self.write_ok.as_deref() != Some(p.exchange.as_str()) {
            ctx.check(crate::broker::Access::Write, "exchange", &p.exchange)?;
            self.write_ok = Some(p.exchange.as_str().into());
        }
        let x = ctx.vhost.get_exchange(&p.exchange)?;
        if x.kind == crate::broker::exchange::ExchangeKind::Topic {
            ctx.broker.check_topic_access(
                ctx.user,
                &ctx.vhost.name,
                crate::broker::Access::Write,
                &p.exchange,
                &p.routing_key,
            )?;
        }
        if x.internal {
            return Err(AmqpError::access_refused(format!(
                "cannot publish to internal exchange '{}' in vhost '{}'",
                p.exchange, ctx.vhost.name
            )));
        }
        // Not shared with the channel's previous publish: the delivering and acking threads would then
        // bounce its count between cores at every message, which cost more than the allocation.
        let routing_key: Arc<str> = Arc::from(p.routing_key.as_str());
        let msg = Message {
            exchange: x.name.clone(),
            routing_key,
            header,
            properties,
            body,
            broker_deaths: false,
        };
        validate(
            Checked {
                delivery_mode: msg.delivery_mode(),
                user_id: msg.user_id(),
                headers: msg.headers(),
                expiration: msg.expiration(),
            },
            ctx.user,
        )?;
        self.shared.stats.publish.bump(1);
        if self.confirm {
            self.publish_seq += 1;
        }
        let msg = self.rewrite_reply_to(msg)?;
        let msg = Arc::new(msg);
        if let Some(ops) = &mut self.tx {
            // RabbitMQ traces a transactional publish when it is made, committed or not.
            if ctx.vhost.tracing() {
                let origin = crate::broker::trace::Origin {
                    connection: ctx.conn.label(),
                    channel: self.shared.id,
                    user: ctx.user,
                    mandatory: p.mandatory,
                    trace: true,
                };
                ctx.vhost.trace_publish(&x, &msg, &origin);
            }
            self.shared
                .mode
                .uncommitted_messages
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ops.push(TxOp::Publish {
                exchange: p.exchange,
                mandatory: p.mandatory,
                msg,
            });
            return Ok(());
        }
        self.route_and_enqueue(ctx, &x, p.mandatory, msg, true);
        Ok(())
    }

    /// Send basic.return for an unroutable mandatory message.
    fn return_unroutable(&self, ctx: &Ctx, msg: &Message) {
        let id = self.id();
        let frame_max = ctx.conn.frame_max();
        ctx.conn.outbound.send(|b| {
            protocol::write_return(b, id, 312, "NO_ROUTE", &msg.exchange, &msg.routing_key);
            protocol::write_content(b, id, &msg.header, &msg.body, frame_max);
        });
    }

    pub(super) fn route_and_enqueue(
        &mut self,
        ctx: &Ctx,
        x: &Arc<crate::broker::exchange::Exchange>,
        mandatory: bool,
        msg: Arc<Message>,
        trace: bool,
    ) {
        if x.name.is_empty() && msg.routing_key.starts_with(reply_to::PREFIX) {
            match ctx.vhost.reply_target(&msg.routing_key) {
                Some((sink, tag)) => sink.deliver_reply(&tag, &msg),
                // RabbitMQ 4.2+ counts a reply to a vanished requester as routed.
                None if mandatory && !ctx.vhost.compat.is_4() => self.return_unroutable(ctx, &msg),
                None => {}
            }
            if self.confirm {
                let seq = self.publish_seq;
                self.confirm(seq, true);
            }
            return;
        }
        let seq = self.publish_seq;
        let cref = self.confirm.then(|| {
            // Two pending writes guard the outcome: the store's (which may finish on its sync thread
            // before the publish returns) and this function's own, released last.
            self.shared.confirms.lock().register(seq, 2, true);
            ConfirmRef {
                sink: self.shared.clone(),
                seq,
            }
        });
        let p = if ctx.vhost.observed() {
            let origin = crate::broker::trace::Origin {
                connection: ctx.conn.label(),
                channel: self.id(),
                user: ctx.user,
                mandatory,
                trace,
            };
            if cref.is_some() && ctx.vhost.journal.on(&ctx.vhost.name) {
                self.shared.journal_confirm_later(
                    seq,
                    msg.journal_event(crate::journal::Kind::Confirmed, &ctx.vhost.name),
                );
            }
            let p = ctx.vhost.publish(x, msg, cref.as_ref(), Some(&origin));
            if !p.routed && mandatory && ctx.vhost.journal.on(&ctx.vhost.name) {
                ctx.vhost.journal.record(
                    p.msg
                        .journal_event(crate::journal::Kind::Returned, &ctx.vhost.name)
                        .with(crate::journal::Detail::Returned {
                            reply_code: 312,
                            reply_text: "NO_ROUTE",
                        }),
                );
            }
            p
        } else {
            ctx.vhost.publish(x, msg, cref.as_ref(), None)
        };
        if !p.routed {
            if mandatory {
                self.shared.stats.return_unroutable.bump(1);
                self.return_unroutable(ctx, &p.msg);
            } else {
                self.shared.stats.drop_unroutable.bump(1);
            }
        }
        if cref.is_some() {
            let mut c = self.shared.confirms.lock();
            if p.enqueued.rejected {
                c.nack(seq);
            }
            if !p.enqueued.pending {
                c.write_done(seq, true);
            }
            c.write_done(seq, true);
        }
    }
}

/// RabbitMQ's checks on a published message's properties.
pub fn validate_properties(p: &BasicProperties, user: &str) -> AmqpResult<()> {
    validate(
        Checked {
            delivery_mode: *p.delivery_mode(),
            user_id: p.user_id().as_ref().map(|u| u.as_str()),
            headers: p.headers().as_ref(),
            expiration: p.expiration().as_ref().map(|e| e.as_str()),
        },
        user,
    )
}

/// The properties RabbitMQ checks, read from decoded properties or in place from a raw header.
struct Checked<'a> {
    delivery_mode: Option<u8>,
    user_id: Option<&'a str>,
    headers: Option<&'a amq_protocol::types::FieldTable>,
    expiration: Option<&'a str>,
}

fn validate(p: Checked<'_>, user: &str) -> AmqpResult<()> {
    if let Some(mode) = p.delivery_mode {
        if mode != 1 && mode != 2 {
            return Err(AmqpError::precondition_failed(format!(
                "invalid message: {{delivery_mode_unknown,{mode}}}"
            )));
        }
    }
    if let Some(uid) = p.user_id {
        if uid != user {
            return Err(AmqpError::precondition_failed(format!(
                "user_id property set to '{}' but authenticated user was '{}'",
                uid, user
            )));
        }
    }
    if let Some(h) = p.headers {
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
    if let Some(exp) = p.expiration {
        validate_expiration(exp)?;
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
    // Erlang integers have no bound: a number too big for i64 is still a number, and too large.
    let digits = num.trim_start_matches(['+', '-']).trim_start_matches('0');
    let n: i64 = match num.parse() {
        Ok(n) => n,
        Err(_) if !num.starts_with('-') => return Err(too_large(s, digits)),
        Err(_) => return Err(invalid("no_integer".into())),
    };
    if n < 0 {
        return Err(invalid(format!("{{value_negative,{n}}}")));
    }
    if n as u64 > MAX_EXPIRATION_MS {
        return Err(too_large(s, digits));
    }
    Ok(n as u64)
}

/// RabbitMQ's longest expiration: ten years.
const MAX_EXPIRATION_MS: u64 = 315_360_000_000;

/// `{value_too_large,N}` as RabbitMQ prints it with Erlang's `~p`, which breaks a term that would run past
/// column 80 after the element and indents the next line under it.
fn too_large(s: &str, digits: &str) -> AmqpError {
    let prefix = format!("invalid expiration '{s}': ");
    let flat = format!("{{value_too_large,{digits}}}");
    let term = if prefix.len() + flat.len() > 80 {
        format!(
            "{{value_too_large,\n{}{digits}}}",
            " ".repeat(prefix.len() + 1)
        )
    } else {
        flat
    };
    AmqpError::precondition_failed(format!("{prefix}{term}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            validate_expiration("315360000000").unwrap(),
            315_360_000_000
        );
        assert_eq!(
            validate_expiration("315360000001").unwrap_err().text,
            "invalid expiration '315360000001': {value_too_large,315360000001}"
        );
        assert_eq!(
            validate_expiration("99999999999999999999").unwrap_err().text,
            format!(
                "invalid expiration '99999999999999999999': {{value_too_large,\n{}99999999999999999999}}",
                " ".repeat(44)
            )
        );
    }
}
