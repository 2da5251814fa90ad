//! Fuzz target: see `warren::fuzz::store_recovery`. Each process recovers in a directory of its own
//! (under /dev/shm when it exists, so the file system is memory).
fn main() {
    warren::fuzz::abort_on_panic();
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("warren-fuzz-store-{}", std::process::id()));
    afl::fuzz!(|data: &[u8]| {
        warren::fuzz::store_recovery(data, &dir);
    });
    let _ = std::fs::remove_dir_all(&dir);
}
