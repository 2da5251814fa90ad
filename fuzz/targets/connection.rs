//! Fuzz target: see `warren::fuzz::ConnectionTarget`. The broker (and its runtime threads) is created on
//! the first input, after AFL's fork server has forked: threads do not survive a fork.
use std::sync::OnceLock;

static TARGET: OnceLock<warren::fuzz::ConnectionTarget> = OnceLock::new();

fn main() {
    warren::fuzz::abort_on_panic();
    afl::fuzz!(|data: &[u8]| {
        TARGET
            .get_or_init(warren::fuzz::ConnectionTarget::new)
            .run(data);
    });
}
