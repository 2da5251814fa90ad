//! Warren: an AMQP 0-9-1 message broker that behaves like RabbitMQ on the wire.
//!
//! # Layout
//! - `server`: the listener and the embedding API (`Server::start`).
//! - `connection`: one task per client connection (handshake, frames, heartbeats) and its writer (`outbound`).
//! - `channel`: channel state (content assembly, confirms, transactions) and the channel-level methods;
//!   `ChannelShared` holds delivery tags and unacknowledged messages that queues touch from other tasks.
//! - `broker`: the broker handle, vhosts, exchanges (one file per type) and bindings.
//! - `queue`: queue state and dispatch to consumers; `queue::ready` pages backlogs out to the store.
//! - `store`: the message store (segment logs, group commit, recovery); `broker::alarm`: memory/disk alarms.
//! - `protocol`: pure framing and encoding; amq-protocol is the codec of record.
//! - `config`, `error`: settings with defaults, and typed protocol errors.
//!
//! # The life of a message
//! The publisher's connection task cuts frames from its read buffer and its channel assembles basic.publish,
//! the content header (kept as raw bytes) and the body (shared `Bytes`) into a `Message`. The vhost routes it
//! through the exchange's bindings, exchange-to-exchange bindings and alternate exchanges to a set of queues.
//! Each queue appends it and, if a consumer has prefetch room, encodes basic.deliver plus the unchanged header
//! and body straight into the consumer connection's outbound buffer, registering the delivery as unacked on the
//! consumer's channel (a large body is attached by reference, not copied). That connection's writer task
//! flushes the buffer in one write or `writev`. A persistent message on a durable queue is appended to the
//! store first; its confirm goes out once the group commit that covers it has synced. A queue that holds
//! more than it should in memory keeps only index entries for the rest and reads bodies back near the head.
//! basic.ack settles the delivery and lets the queue dispatch again; nack/reject with requeue, recover, or a
//! closing channel put the message back at its original position marked redelivered.

pub mod broker;
pub mod channel;
pub mod clock;
pub mod config;
pub mod connection;
pub mod definitions;
pub mod error;
pub mod protocol;
pub mod queue;
pub mod server;
pub mod store;

pub use config::Config;
pub use server::Server;

/// The hash maps on the message path (names of exchanges, queues and binding keys, channel numbers, store
/// ids). SipHash, std's default, was ~8% of the broker's time in the 16 B benchmark; foldhash is several times
/// faster and still seeded per process, so colliding names cannot be precomputed by a client.
pub type FastHasher = foldhash::fast::RandomState;
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastHasher>;
pub type FastSet<K> = std::collections::HashSet<K, FastHasher>;
pub type FastDashMap<K, V> = dashmap::DashMap<K, V, FastHasher>;
