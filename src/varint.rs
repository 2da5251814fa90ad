//! LEB128 varints and zigzag deltas: the encodings of the store's index files, the queues' spilled
//! entries and the management API's sample history, where most numbers are small or close to the one
//! before.

/// Appends `v` as a LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint at `*pos` and moves past it; `None` if truncated or longer than 64 bits.
pub(crate) fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

pub(crate) fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

pub(crate) fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// The difference `b - a` (wrapping) as a zigzag-mapped unsigned number: small either way.
pub(crate) fn delta(a: u64, b: u64) -> u64 {
    zigzag(b.wrapping_sub(a) as i64)
}

/// `b` again from `a` and `delta(a, b)`.
pub(crate) fn undelta(a: u64, z: u64) -> u64 {
    a.wrapping_add(unzigzag(z) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_deltas_round_trip_at_the_edges() {
        let mut buf = Vec::new();
        let values = [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX];
        for v in values {
            put_varint(&mut buf, v);
        }
        let mut pos = 0;
        for v in values {
            assert_eq!(get_varint(&buf, &mut pos), Some(v));
        }
        assert_eq!(pos, buf.len());
        assert_eq!(get_varint(&[0x80], &mut 0), None, "truncated");
        assert_eq!(get_varint(&[0xff; 11], &mut 0), None, "over 64 bits");
        for (a, b) in [(5, 3), (3, 5), (0, u64::MAX), (u64::MAX, 0), (7, 7)] {
            assert_eq!(undelta(a, delta(a, b)), b);
        }
        assert!(delta(10, 9) < 4 && delta(9, 10) < 4, "small either way");
    }
}
