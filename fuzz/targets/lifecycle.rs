//! Fuzz target: see `warren::fuzz::lifecycle`.
fn main() {
    warren::fuzz::abort_on_panic();
    afl::fuzz!(|data: &[u8]| {
        warren::fuzz::lifecycle(data);
    });
}
