//! Fanout exchange: every binding matches, whatever the routing key.

use super::{Bound, Destination};

pub fn route<'a>(bindings: impl Iterator<Item = &'a Bound>, out: &mut impl FnMut(&Destination)) {
    for b in bindings {
        out(&b.binding.destination);
    }
}
