//! Fanout exchange: every binding matches, whatever the routing key.

use super::{Binding, Destination};

pub fn route(bindings: &[Binding], out: &mut impl FnMut(&Destination)) {
    for b in bindings {
        out(&b.destination);
    }
}
