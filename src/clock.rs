//! The broker's one clock, and the timers that read it.
//!
//! Every time-dependent decision of the core — message and queue TTL, queue expiry (x-expires), and later
//! delivery-limit delays, consumer timeouts and rate sampling — reads [`Clock::now_ms`] and arms its deadlines
//! with the [`Scheduler`], never `Instant::now` or `tokio::time` directly. A real clock (the default) follows
//! the machine. A manual clock stands still until [`Scheduler::advance`] moves it, which fires every timer that
//! falls due, in deadline order, each at its own time: unit tests use it to test expiry without sleeping, and
//! users' test suites will be able to do the same. Socket timing (heartbeats, handshake and close timeouts)
//! deliberately stays on tokio's real time: a client must not be disconnected because a test moved time.
//!
//! One scheduler task serves every timer of the broker (a binary heap of deadlines), so a queue with a TTL
//! costs one heap entry, not a task, and nothing exists while nothing can expire.

use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Milliseconds since the Unix epoch, from the machine's clock.
fn system_wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// CLOCK_MONOTONIC_COARSE in milliseconds: the kernel's last tick, read without a hardware timer access.
fn coarse_monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1000)
        .saturating_add(ts.tv_nsec as u64 / 1_000_000)
}

#[derive(Debug)]
enum Kind {
    Real {
        start: std::time::Instant,
        /// The coarse monotonic clock's reading at `start`.
        coarse_start: u64,
    },
    /// Moves only when told: `now` is milliseconds since `wall_start`.
    Manual { now: AtomicU64, wall_start: u64 },
}

/// The broker's notion of time: a monotonic millisecond count for deadlines, and wall-clock milliseconds for
/// the timestamps the broker writes (x-death `time`, stored expiry deadlines).
#[derive(Debug)]
pub struct Clock {
    kind: Kind,
}

impl Clock {
    /// The machine's clock.
    pub fn real() -> Clock {
        Clock {
            kind: Kind::Real {
                start: std::time::Instant::now(),
                coarse_start: coarse_monotonic_ms(),
            },
        }
    }

    /// A clock that starts at the machine's current wall time and stands still until advanced.
    pub fn manual() -> Clock {
        Self::manual_at(system_wall_ms())
    }

    /// A manual clock whose wall time starts at `wall_start_ms`.
    pub fn manual_at(wall_start_ms: u64) -> Clock {
        Clock {
            kind: Kind::Manual {
                now: AtomicU64::new(0),
                wall_start: wall_start_ms,
            },
        }
    }

    pub fn is_manual(&self) -> bool {
        matches!(self.kind, Kind::Manual { .. })
    }

    /// Monotonic milliseconds since this clock started: what deadlines are expressed in.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match &self.kind {
            Kind::Real { start, .. } => start.elapsed().as_millis() as u64,
            Kind::Manual { now, .. } => now.load(Ordering::Acquire),
        }
    }

    /// [`Clock::now_ms`] to within a few milliseconds, at a fraction of the cost: for
    /// stamps taken per message, such as when a delivery went out.
    #[inline]
    pub fn now_coarse_ms(&self) -> u64 {
        match &self.kind {
            Kind::Real { coarse_start, .. } => coarse_monotonic_ms().saturating_sub(*coarse_start),
            Kind::Manual { now, .. } => now.load(Ordering::Acquire),
        }
    }

    /// Milliseconds since the Unix epoch, as the broker stamps what it writes.
    pub fn wall_ms(&self) -> u64 {
        match &self.kind {
            Kind::Real { .. } => system_wall_ms(),
            Kind::Manual { now, wall_start } => {
                wall_start.saturating_add(now.load(Ordering::Acquire))
            }
        }
    }

    /// Map a wall-clock deadline (Unix ms, as stored on disk) onto this clock's monotonic scale.
    pub fn deadline_from_wall(&self, wall_deadline: u64) -> u64 {
        let (now, wall) = (self.now_ms(), self.wall_ms());
        now.saturating_add(wall_deadline.saturating_sub(wall))
    }

    /// Move a manual clock forward to `to` (never backwards); a real clock ignores this.
    fn set_manual(&self, to: u64) {
        if let Kind::Manual { now, .. } = &self.kind {
            now.fetch_max(to, Ordering::AcqRel);
        }
    }

    /// How long until `deadline` on the real clock (`None` for a manual clock: only `advance` moves it).
    fn real_wait(&self, deadline: u64) -> Option<Duration> {
        match self.kind {
            Kind::Real { .. } => Some(Duration::from_millis(
                deadline.saturating_sub(self.now_ms()),
            )),
            Kind::Manual { .. } => None,
        }
    }
}

/// Something with deadlines: the scheduler calls `fire` once a deadline it was given has passed. A target may
/// be given several deadlines (`kind` tells them apart) and must tolerate stale ones: it re-checks its own
/// state, since the scheduler never cancels an entry.
pub trait Timer: Send + Sync {
    fn fire(self: Arc<Self>, kind: u8, deadline: u64);
}

struct Entry {
    at: u64,
    id: u64,
    kind: u8,
    target: Weak<dyn Timer>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.id) == (o.at, o.id)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.id).cmp(&(o.at, o.id))
    }
}

#[derive(Default)]
struct Heap {
    entries: BinaryHeap<Reverse<Entry>>,
    next_id: u64,
}

/// Every deadline of the broker in one heap, fired by one task (or by `advance` on a manual clock).
pub struct Scheduler {
    clock: Arc<Clock>,
    heap: Mutex<Heap>,
    /// Held while timers fire, so that the driver and `advance` (possibly from several callers) fire one
    /// at a time and in deadline order.
    firing: Mutex<()>,
    advancing: Mutex<()>,
    /// Woken when an earlier deadline is armed, or a manual clock moves.
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("clock", &self.clock)
            .field("pending", &self.heap.lock().entries.len())
            .finish()
    }
}

impl Scheduler {
    pub fn new(clock: Clock) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            clock: Arc::new(clock),
            heap: Mutex::new(Heap::default()),
            firing: Mutex::new(()),
            advancing: Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        })
    }

    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn wall_ms(&self) -> u64 {
        self.clock.wall_ms()
    }

    /// Call `target.fire(kind, deadline)` once the clock reaches `deadline`.
    pub fn at(&self, deadline: u64, target: Weak<dyn Timer>, kind: u8) {
        let earliest = {
            let mut h = self.heap.lock();
            let id = h.next_id;
            h.next_id += 1;
            let earliest = h.entries.peek().is_none_or(|e| deadline < e.0.at);
            h.entries.push(Reverse(Entry {
                at: deadline,
                id,
                kind,
                target,
            }));
            earliest
        };
        if earliest {
            self.wake.notify_one();
        }
    }

    /// Entries on the heap (armed deadlines, including stale ones not yet fired).
    pub fn pending(&self) -> usize {
        self.heap.lock().entries.len()
    }

    /// The next deadline, if any timer is armed.
    pub fn next_deadline(&self) -> Option<u64> {
        self.heap.lock().entries.peek().map(|e| e.0.at)
    }

    /// Fire every timer due at or before `until`, in deadline order, moving a manual clock to each deadline
    /// as it goes. Targets may arm new timers while firing; those are fired too if due. Returns how many fired.
    fn fire_until(&self, until: u64) -> usize {
        let _one_at_a_time = self.firing.lock();
        let mut fired = 0;
        loop {
            let entry = {
                let mut h = self.heap.lock();
                match h.entries.peek() {
                    Some(e) if e.0.at <= until => h.entries.pop().map(|e| e.0),
                    _ => break,
                }
            };
            let Some(e) = entry else { break };
            self.clock.set_manual(e.at);
            if let Some(t) = e.target.upgrade() {
                t.fire(e.kind, e.at);
                fired += 1;
            }
        }
        fired
    }

    /// Fire every timer that is due now.
    pub fn run_due(&self) -> usize {
        self.fire_until(self.clock.now_ms())
    }

    /// Move a manual clock forward by `by`, firing everything that falls due on the way in deadline order,
    /// each with the clock at its deadline. Returns the new time. On a real clock this only fires what is due.
    pub fn advance(&self, by: Duration) -> u64 {
        if !self.clock.is_manual() {
            self.run_due();
            return self.clock.now_ms();
        }
        // Serialised: two concurrent advances of an hour move the clock two hours, not one.
        let _one_advance_at_a_time = self.advancing.lock();
        let target = self
            .clock
            .now_ms()
            .saturating_add(by.as_millis().min(u64::MAX as u128) as u64);
        self.fire_until(target);
        self.clock.set_manual(target);
        target
    }

    /// Start the task that fires timers as the real clock passes their deadlines (and, on a manual clock,
    /// those armed already due). It holds only a weak reference and ends with the scheduler.
    pub fn spawn_driver(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(s) = weak.upgrade() else { return };
                s.run_due();
                let wait = s.next_deadline().and_then(|d| s.clock.real_wait(d));
                // Wait without keeping the scheduler alive, so dropping the broker ends this task.
                let notified = {
                    let s2 = s.clone();
                    async move { s2.wake.notified().await }
                };
                drop(s);
                match wait {
                    Some(d) => {
                        let _ = tokio::time::timeout(d, notified).await;
                    }
                    None => notified.await,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        fired: Mutex<Vec<(u8, u64, u64)>>,
        clock: Mutex<Option<Arc<Clock>>>,
    }

    impl Timer for Recorder {
        fn fire(self: Arc<Self>, kind: u8, deadline: u64) {
            let now = self.clock.lock().as_ref().map_or(0, |c| c.now_ms());
            self.fired.lock().push((kind, deadline, now));
        }
    }

    #[test]
    fn manual_clock_fires_in_order_each_at_its_time() {
        let s = Scheduler::new(Clock::manual_at(1_000_000));
        let r = Arc::new(Recorder::default());
        *r.clock.lock() = Some(s.clock().clone());
        let t: Weak<dyn Timer> = Arc::downgrade(&r) as Weak<dyn Timer>;
        s.at(300, t.clone(), 3);
        s.at(100, t.clone(), 1);
        s.at(200, t.clone(), 2);
        assert_eq!(s.run_due(), 0, "nothing is due before time moves");
        assert_eq!(s.advance(Duration::from_millis(250)), 250);
        assert_eq!(*r.fired.lock(), vec![(1, 100, 100), (2, 200, 200)]);
        assert_eq!(s.clock().wall_ms(), 1_000_250);
        s.advance(Duration::from_millis(50));
        assert_eq!(r.fired.lock().last(), Some(&(3, 300, 300)));
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn dropped_targets_are_skipped() {
        let s = Scheduler::new(Clock::manual());
        let r = Arc::new(Recorder::default());
        s.at(10, Arc::downgrade(&r) as Weak<dyn Timer>, 0);
        drop(r);
        s.advance(Duration::from_millis(20));
        assert_eq!(s.next_deadline(), None);
    }

    #[tokio::test]
    async fn real_clock_driver_fires() {
        let s = Scheduler::new(Clock::real());
        s.spawn_driver();
        let r = Arc::new(Recorder::default());
        let deadline = s.now_ms() + 20;
        s.at(deadline, Arc::downgrade(&r) as Weak<dyn Timer>, 7);
        tokio::time::timeout(Duration::from_secs(5), async {
            while r.fired.lock().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("timer fired");
        assert_eq!(r.fired.lock()[0].0, 7);
        assert!(s.now_ms() >= deadline);
    }
}
