//! Fuzz target: see `warren::fuzz::content_header`.
fn main() {
    warren::fuzz::abort_on_panic();
    afl::fuzz!(|data: &[u8]| {
        warren::fuzz::content_header(data);
    });
}
