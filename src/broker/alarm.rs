//! Resource alarms: while the process uses more memory than its limit, or the data directory's file system
//! has less free space than its limit, connections that publish are blocked (RabbitMQ's memory and disk
//! alarms). A monitor task samples both twice a second; connections watch the alarm state and stop reading
//! from a publisher's socket until it clears, telling clients that asked with `connection.blocked`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Alarm bits in the watched state.
pub const MEMORY: u8 = 1;
pub const DISK: u8 = 2;

/// How often memory is sampled: a flood of large messages can add a hundred megabytes in half a second, and a
/// read of /proc/self/statm costs microseconds. The free disk space (statvfs) is sampled every
/// `DISK_EVERY`-th time.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
const DISK_EVERY: u32 = 10;

#[derive(Debug)]
pub struct Alarms {
    state: watch::Sender<u8>,
    /// `state` mirrored for the per-message check on the publish path (a watch borrow takes a lock).
    bits: std::sync::atomic::AtomicU8,
    memory_limit: AtomicU64,
    disk_free_limit: AtomicU64,
    /// The data directory, for the disk alarm; None when ephemeral (no disk alarm).
    dir: Option<PathBuf>,
    /// The last measurements (for the management API, which must not make these calls itself).
    last_rss: AtomicU64,
    last_free: AtomicU64,
}

/// The reason sent in connection.blocked, in RabbitMQ's words.
pub fn reason(bits: u8) -> &'static str {
    match bits & (MEMORY | DISK) {
        MEMORY => "low on memory",
        DISK => "low on disk",
        _ => "low on disk & memory",
    }
}

impl Alarms {
    pub fn new(memory_limit: u64, disk_free_limit: u64, dir: Option<PathBuf>) -> Alarms {
        Alarms {
            state: watch::Sender::new(0),
            bits: std::sync::atomic::AtomicU8::new(0),
            memory_limit: AtomicU64::new(memory_limit),
            disk_free_limit: AtomicU64::new(disk_free_limit),
            dir,
            last_rss: AtomicU64::new(0),
            last_free: AtomicU64::new(0),
        }
    }

    /// Resident memory at the last sample.
    pub fn last_rss(&self) -> u64 {
        self.last_rss.load(Ordering::Relaxed)
    }

    /// Free space in the data directory's file system (the working directory's when ephemeral) at the last
    /// sample.
    pub fn last_free_disk(&self) -> u64 {
        self.last_free.load(Ordering::Relaxed)
    }

    pub fn disk_free_limit(&self) -> u64 {
        self.disk_free_limit.load(Ordering::Relaxed)
    }

    /// The alarms now set (a combination of [`MEMORY`] and [`DISK`]).
    pub fn active(&self) -> u8 {
        self.bits.load(Ordering::Relaxed)
    }

    pub fn subscribe(&self) -> watch::Receiver<u8> {
        self.state.subscribe()
    }

    pub fn memory_limit(&self) -> u64 {
        self.memory_limit.load(Ordering::Relaxed)
    }

    /// Change the memory limit at run time (rabbitmqctl set_vm_memory_high_watermark); takes effect at once.
    pub fn set_memory_limit(&self, bytes: u64) {
        self.memory_limit.store(bytes, Ordering::Relaxed);
        self.sample();
    }

    /// Change the free-disk limit at run time (rabbitmqctl set_disk_free_limit); takes effect at once.
    pub fn set_disk_free_limit(&self, bytes: u64) {
        self.disk_free_limit.store(bytes, Ordering::Relaxed);
        self.sample();
    }

    /// Measure memory and disk and raise or clear the alarms.
    pub fn sample(&self) {
        self.sample_with(true);
    }

    /// Measure memory, and the free disk space when `disk` (else keep its last reading).
    fn sample_with(&self, disk: bool) {
        let mut bits = 0;
        let rss = resident_bytes();
        let limit = self.memory_limit();
        if rss.is_some_and(|r| r > limit) {
            bits |= MEMORY;
        }
        self.last_rss.store(rss.unwrap_or(0), Ordering::Relaxed);
        let disk_limit = self.disk_free_limit.load(Ordering::Relaxed);
        let disk_alarm = if disk {
            // An ephemeral broker writes nothing, so it has no disk alarm; it still reports the free space
            // where it runs, as RabbitMQ always reports disk_free.
            let free = match self.dir.as_deref() {
                Some(dir) => free_bytes(dir),
                None => free_bytes(std::path::Path::new(".")),
            };
            self.last_free.store(free.unwrap_or(0), Ordering::Relaxed);
            self.dir.is_some() && free.is_some_and(|f| f < disk_limit)
        } else {
            self.active() & DISK != 0
        };
        if disk_alarm {
            bits |= DISK;
        }
        let old = self.active();
        if old == bits {
            return;
        }
        let free = self.last_free.load(Ordering::Relaxed);
        for (bit, name) in [(MEMORY, "memory"), (DISK, "disk")] {
            match (old & bit != 0, bits & bit != 0) {
                (false, true) => tracing::warn!(
                    resource = name,
                    rss,
                    memory_limit = limit,
                    free_disk = free,
                    disk_free_limit = disk_limit,
                    "resource limit alarm set; publishers will be blocked"
                ),
                (true, false) => tracing::info!(
                    resource = name,
                    rss,
                    free_disk = free,
                    "resource limit alarm cleared"
                ),
                _ => {}
            }
        }
        self.bits.store(bits, Ordering::Relaxed);
        self.state.send_replace(bits);
    }

    /// Sample until the broker is dropped, on a thread of its own: reading /proc and statvfs are file
    /// system calls, which do not belong on the async workers.
    pub fn spawn_monitor(alarms: std::sync::Weak<Alarms>) {
        let spawned = std::thread::Builder::new()
            .name("warren-alarms".into())
            .spawn(move || {
                for round in 1u32.. {
                    std::thread::sleep(SAMPLE_EVERY);
                    let Some(a) = alarms.upgrade() else { return };
                    a.sample_with(round % DISK_EVERY == 0);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the resource alarm monitor; alarms will not fire");
        }
    }
}

/// The process's resident memory, from /proc (Linux).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

/// Free space available to this user on the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `st` points to writable memory of the right type;
    // statvfs initialises it when it returns 0.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_raise_and_clear_alarms() {
        let dir = std::env::temp_dir();
        let a = Alarms::new(u64::MAX, 0, Some(dir));
        a.sample();
        assert_eq!(a.active(), 0);
        a.set_memory_limit(1);
        assert_eq!(a.active(), MEMORY);
        a.set_disk_free_limit(u64::MAX);
        assert_eq!(a.active(), MEMORY | DISK);
        assert_eq!(reason(a.active()), "low on disk & memory");
        a.set_memory_limit(u64::MAX);
        a.set_disk_free_limit(0);
        assert_eq!(a.active(), 0);
        assert!(resident_bytes().is_some_and(|r| r > 0));
    }
}
