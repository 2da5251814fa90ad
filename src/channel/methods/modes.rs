//! Channel modes: publisher confirms (confirm.select) and transactions (tx.select, commit, rollback).

use super::basic::Settle;
use super::{reply, Ctx};
use crate::channel::{Channel, TxOp};
use crate::error::{AmqpError, AmqpResult};
use amq_protocol::protocol::{confirm, tx, AMQPClass};
use std::sync::atomic::Ordering;

impl Channel {
    pub fn confirm_method(&mut self, ctx: &mut Ctx, m: confirm::AMQPMethod) -> AmqpResult<()> {
        match m {
            confirm::AMQPMethod::Select(s) => {
                if self.tx.is_some() {
                    return Err(AmqpError::precondition_failed(
                        "cannot switch from tx to confirm mode",
                    ));
                }
                self.confirm = true;
                self.shared.mode.confirm.store(true, Ordering::Relaxed);
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
                    self.shared
                        .mode
                        .transactional
                        .store(true, Ordering::Relaxed);
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
                self.clear_uncommitted();
                let mut ops = ops.into_iter();
                while let Some(op) = ops.next() {
                    match op {
                        TxOp::Publish {
                            exchange,
                            mandatory,
                            msg,
                        } => {
                            // The exchange may have gone since the publish; RabbitMQ then fails the commit.
                            let x = match ctx.vhost.get_exchange(&exchange) {
                                Ok(x) => x,
                                Err(e) => {
                                    // What the commit did not reach goes back to the channel's unacked
                                    // deliveries, to be requeued when the error closes the channel.
                                    self.restore_tx(ops);
                                    return Err(e);
                                }
                            };
                            self.route_and_enqueue(ctx, &x, mandatory, msg, false);
                        }
                        TxOp::Ack(entries) => {
                            self.shared.journal_settled(
                                &entries,
                                crate::journal::Kind::Acked,
                                false,
                            );
                            self.settle(entries, Settle::Ack)
                        }
                        TxOp::Reject { entries, how, kind } => {
                            let requeue = !matches!(how, Settle::Discard);
                            self.shared.journal_settled(&entries, kind, requeue);
                            self.settle(entries, how)
                        }
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
                self.clear_uncommitted();
                self.restore_tx(ops.into_iter());
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

    fn clear_uncommitted(&self) {
        self.shared
            .mode
            .uncommitted_messages
            .store(0, Ordering::Relaxed);
        self.shared
            .mode
            .uncommitted_acks
            .store(0, Ordering::Relaxed);
    }

    /// Put the acks and rejects of uncommitted transaction steps back as outstanding deliveries.
    /// Put the deliveries an open transaction acked or rejected back among the unacknowledged.
    pub(crate) fn restore_tx(&self, ops: impl Iterator<Item = TxOp>) {
        let mut restore = Vec::new();
        for op in ops {
            match op {
                TxOp::Ack(e) | TxOp::Reject { entries: e, .. } => restore.extend(e),
                TxOp::Publish { .. } => {}
            }
        }
        self.shared.restore(restore);
    }
}

impl Settle {
    pub(super) fn reject_or_requeue(requeue: bool, counted: bool) -> Settle {
        match (requeue, counted) {
            (false, _) => Settle::Discard,
            (true, true) => Settle::Requeue,
            (true, false) => Settle::Return,
        }
    }

    /// basic.recover's requeue: counted as failed deliveries except on RabbitMQ 4.3.
    pub(super) fn recovered(compat: crate::config::Compat) -> Settle {
        if compat.is_4() {
            Settle::Return
        } else {
            Settle::Requeue
        }
    }
}
