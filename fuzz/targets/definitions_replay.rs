//! Fuzz target: see `warren::fuzz::definitions_replay`.
fn main() {
    warren::fuzz::abort_on_panic();
    afl::fuzz!(|data: &[u8]| {
        warren::fuzz::definitions_replay(data);
    });
}
