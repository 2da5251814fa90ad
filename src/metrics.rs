//! Counters for the management API and Prometheus: plain atomics on the objects they count (queues,
//! exchanges, channels, connections), read by a sampler, never locked and never allocated per message.
//!
//! Most counters have one writer at a time — their owner task, or whoever holds the lock that already
//! guards the counted operation — and use [`Counter::bump`], an unlocked load-and-store: no atomic
//! read-modify-write on the message path. Counters that many tasks add to at once use [`Counter::add`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add `n` where only one thread writes at a time (the owner, or under the lock that guards the
    /// counted operation). Readers on other threads see a recent value.
    #[inline]
    pub fn bump(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Add `n` from any number of threads at once.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A struct of named counters with a snapshot in declaration order.
#[macro_export]
macro_rules! counters {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($(#[$fm:meta])* $field:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $($(#[$fm])* pub $field: $crate::metrics::Counter,)*
        }

        impl $name {
            /// The counters' names, in `snapshot` order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            pub fn snapshot(&self) -> Vec<u64> {
                vec![$(self.$field.get()),*]
            }

            /// Add another set's values (folding a closed object's counts into its parent).
            pub fn absorb(&self, other: &$name) {
                $(self.$field.add(other.$field.get());)*
            }
        }
    };
}

crate::counters! {
    /// RabbitMQ's message_stats of a channel (and, summed, of a vhost and the broker).
    pub struct MessageStats {
        publish,
        confirm,
        return_unroutable,
        drop_unroutable,
        deliver,
        deliver_no_ack,
        get,
        get_no_ack,
        get_empty,
        ack,
        redeliver,
    }
}

#[cfg(test)]
mod tests {
    crate::counters! {
        struct Two { a, b }
    }

    #[test]
    fn counters_count_and_snapshot_in_order() {
        let t = Two::default();
        t.a.bump(2);
        t.b.add(5);
        t.a.bump(1);
        assert_eq!(Two::NAMES, &["a", "b"]);
        assert_eq!(t.snapshot(), vec![3, 5]);
        let u = Two::default();
        u.absorb(&t);
        assert_eq!(u.snapshot(), vec![3, 5]);
    }
}
