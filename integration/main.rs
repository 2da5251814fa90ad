//! lapin-based integration suite for the broker core; validated against RabbitMQ 3.10.8.
//! Run against an external broker with `AMQP_URL=amqp://guest:guest@127.0.0.1:5691/ cargo test`.

mod common;
mod crash;
mod definitions_log;
mod durability;
mod embedding;
mod paging;

mod basic;
mod confirms_tx;
mod connection;
mod exchanges;
mod policies;
mod queue_features;
mod queues;
mod routing;
