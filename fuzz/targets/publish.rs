//! Fuzz target: see `warren::fuzz::publish`.
fn main() {
    warren::fuzz::abort_on_panic();
    afl::fuzz!(|data: &[u8]| {
        warren::fuzz::publish(data);
    });
}
