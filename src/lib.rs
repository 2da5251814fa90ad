//! Warren: an AMQP 0-9-1 message broker that behaves like RabbitMQ on the wire.
//!
//! # Layers
//! Each layer uses only the layers below it; nothing below knows what is above.
//!
//! 1. **Foundations** — [`protocol`] (pure codec: frame splitting, byte peeks, the hot frames written by
//!    hand, field tables), [`store`] (the message store: segment logs, group commit, recovery, a reader
//!    thread; queues are string keys, payloads opaque bytes), [`clock`] (the one broker clock and its
//!    scheduler), [`error`] (typed reply codes), [`metrics`] (plain atomic message counters the layers
//!    above bump and the management layer samples), [`journal`] (the bounded record of each message's
//!    life, which every layer above appends to) and [`config`].
//! 2. **Queues** — [`queue`]: messages, queue arguments, the ready list and paging, dispatch, settlement,
//!    TTL and expiry timers, dead-lettering. A queue reaches the rest of the broker only through the traits
//!    in [`queue::consumer`]: `ConsumerChannel` (deliveries, cancellations), `ConfirmSink` (publisher
//!    confirms) and `QueueHost` (routing dead letters, expiring a queue).
//! 3. **Broker** — [`broker`]: vhosts, exchanges (one file per type), bindings and routing, policies,
//!    users and permissions, parameters and limits, the definitions log, boot and recovery. Every change
//!    is a [`broker::Command`] executed by [`broker::Broker::execute`]; connections are seen only through
//!    the [`broker::Session`] trait.
//! 4. **Channels** — [`channel`]: content assembly and the channel lifecycle (state machines without I/O),
//!    the channel-level methods (one file per class), delivery tags, confirms, transactions, direct
//!    reply-to. Implements the queue layer's traits.
//! 5. **Connections** — [`connection`]: the connection lifecycle machine (handshake, close), the per-
//!    connection task that reads frames and dispatches them, and the writer task.
//! 6. **Edges** — [`server`] (listener, embedding API), [`definitions`] (RabbitMQ-format import/export,
//!    as commands), [`http`] (RabbitMQ's management API and Prometheus metrics: reads broker state, and
//!    changes it only through `Command`s), and the binaries (`main.rs`, `warrenctl`, `warren-perf`).
//!
//! # The life of a message
//! The publisher's connection task cuts frames from its read buffer and its channel assembles basic.publish,
//! the content header (kept as raw bytes) and the body (shared `Bytes`) into a `Message`. The vhost routes it
//! through the exchange's bindings, exchange-to-exchange bindings and alternate exchanges to a set of queues.
//! A persistent message bound for durable queues is written to the store once, as one record all of them
//! name; its confirm goes out once the group commit that covers it has synced. Each queue appends it and, if
//! a consumer has prefetch room, encodes basic.deliver plus the unchanged header and body straight into the
//! consumer connection's outbound buffer, registering the delivery as unacked on the consumer's channel (a
//! large body is attached by reference, not copied). That connection's writer task flushes the buffer in one
//! write or `writev`. A queue that holds more than it should in memory keeps only index entries for the rest;
//! the store's reader thread brings bodies back ahead of the consumers. While queues are crowded, a channel
//! holds a stored delivery by its place in the store only. basic.ack settles the delivery and lets the queue
//! dispatch again; nack/reject with requeue, recover, or a closing channel put the message back at its
//! original position marked redelivered (read back first if it was held by its place, the queue's head
//! waiting for it).
//!
//! # The life of a topology change
//! queue.declare (or a management call, or a definitions import) becomes a `Command`. `Broker::execute`
//! validates and applies it under the metadata lock and, when it touches durable state, queues its decided
//! form in the definitions log; the reply waits until the log's thread has group-committed it. A change that
//! cannot be written is undone and answered with 541. At boot the log is replayed through the same apply.

pub mod broker;
pub mod channel;
pub mod clock;
pub mod config;
pub mod connection;
pub mod definitions;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod journal;
pub mod metrics;
pub mod protocol;
pub mod queue;
pub mod server;
pub mod store;
pub mod tls;
mod varint;

pub use config::Config;
pub use server::Server;

/// The hash maps on the message path (names of exchanges, queues and binding keys, channel numbers, store
/// ids). SipHash, std's default, was ~8% of the broker's time in the 16 B benchmark; foldhash is several times
/// faster and still seeded per process, so colliding names cannot be precomputed by a client.
pub type FastHasher = foldhash::fast::RandomState;
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastHasher>;
pub type FastSet<K> = std::collections::HashSet<K, FastHasher>;
pub type FastDashMap<K, V> = dashmap::DashMap<K, V, FastHasher>;
