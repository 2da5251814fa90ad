//! lapin-based integration suite for the broker core; validated against RabbitMQ 3.10.8.
//! Run against an external broker with `AMQP_URL=amqp://guest:guest@127.0.0.1:5691/ cargo test`.

mod churn;
mod common;
mod consumer_timeout;
mod crash;
mod definitions_log;
mod durability;
mod embedding;
mod hostile;
mod management;
mod paging;
mod permissions;

mod acks;
mod confirms_tx;
mod connection;
mod consume;
mod exchange_deletion;
mod exchange_routing;
mod exchanges;
mod flood;
mod policies;
mod publish;
mod queue_lifetimes;
mod queue_operations;
mod queues;
mod routing;

// RabbitMQ queue features, one file each.
mod compat;
mod consumer_priorities;
mod dead_lettering;
mod direct_reply_to;
mod exactness;
mod length_limits;
mod limits;
mod message_ttl;
mod priority_queues;
mod queue_expiry;
mod quorum_queues;
mod single_active_consumer;
mod tls;
mod virtual_clock;
