//! Fuzz target: see `warren::fuzz::frames`.
fn main() {
    warren::fuzz::abort_on_panic();
    afl::fuzz!(|data: &[u8]| {
        warren::fuzz::frames(data);
    });
}
