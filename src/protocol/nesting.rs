//! How deeply field tables and arrays nest, measured without recursion before amq-protocol decodes a frame.
//! amq-protocol's parser (like the encoder and every walk over a decoded table) recurses once per level, so
//! one method or content header nesting tables tens of thousands deep — a frame of a few hundred KiB — would
//! overflow a worker's stack and abort the broker. Frames nesting deeper than [`MAX_DEPTH`] are refused
//! instead. The walk only measures depth: anything malformed is left for the real parser to reject.

/// Deeper than any real client nests (x-death headers reach 3), shallow enough that every recursive walk
/// over a table stays far inside a worker's stack.
pub const MAX_DEPTH: usize = 128;

fn u32_at(p: &[u8], i: usize) -> Option<usize> {
    let b = p.get(i..i.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// The offset after a short string at `i`.
fn skip_short(p: &[u8], i: usize) -> Option<usize> {
    Some(i + 1 + *p.get(i)? as usize)
}

/// Whether the field table starting at `start` (its 4-byte length) nests tables or arrays more than `max`
/// levels deep. A malformed table answers false: the parser will refuse it anyway.
pub fn table_too_deep(p: &[u8], start: usize, max: usize) -> bool {
    // (end offset, is a table) for every open table or array, innermost last.
    let mut open: Vec<(usize, bool)> = Vec::new();
    let Some(len) = u32_at(p, start) else {
        return false;
    };
    let mut i = start + 4;
    open.push((i.saturating_add(len).min(p.len()), true));
    while let Some(&(end, is_table)) = open.last() {
        if i >= end {
            open.pop();
            i = end;
            continue;
        }
        if is_table {
            match skip_short(p, i) {
                Some(next) => i = next,
                None => return false,
            }
        }
        let Some(&kind) = p.get(i) else { return false };
        i += 1;
        let size = match kind {
            b'F' | b'A' => {
                let Some(n) = u32_at(p, i) else { return false };
                i += 4;
                if open.len() >= max {
                    return true;
                }
                open.push((i.saturating_add(n).min(end), kind == b'F'));
                continue;
            }
            b't' | b'b' | b'B' => 1,
            b's' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'l' | b'L' | b'd' | b'T' => 8,
            b'D' => 5,
            b'S' | b'x' => match u32_at(p, i) {
                Some(n) => 4 + n,
                None => return false,
            },
            b'V' => 0,
            _ => return false,
        };
        i = i.saturating_add(size);
    }
    false
}

/// Whether a method frame's payload carries a field table nested more than [`MAX_DEPTH`] levels deep.
pub fn method_too_deep(payload: &[u8]) -> bool {
    let (class, method) = super::peek_method(payload);
    // Skip to the method's table argument: the reserved short, then its short strings and flag octet.
    let table = |shorts: usize, flags: bool| -> Option<usize> {
        let mut i = 6;
        for _ in 0..shorts {
            i = skip_short(payload, i)?;
        }
        Some(i + usize::from(flags))
    };
    let start = match (class, method) {
        (10, 11) => Some(4),        // connection.start-ok: client-properties first
        (40, 10) => table(2, true), // exchange.declare
        (40, 30) | (40, 40) => table(3, true), // exchange.bind / unbind
        (50, 10) => table(1, true), // queue.declare
        (50, 20) => table(3, true), // queue.bind
        (50, 50) => table(3, false), // queue.unbind
        (60, 20) => table(2, true), // basic.consume
        _ => None,
    };
    start.is_some_and(|s| table_too_deep(payload, s, MAX_DEPTH))
}

/// Whether a content header's `headers` property nests more than [`MAX_DEPTH`] levels deep.
pub fn header_too_deep(p: &[u8]) -> bool {
    let Some(flags) = p.get(12..14).map(|f| u16::from_be_bytes([f[0], f[1]])) else {
        return false;
    };
    if flags & 0x2000 == 0 {
        return false;
    }
    let mut i = Some(14);
    for bit in [0x8000u16, 0x4000] {
        if flags & bit != 0 {
            i = i.and_then(|i| skip_short(p, i));
        }
    }
    i.is_some_and(|s| table_too_deep(p, s, MAX_DEPTH))
}

/// The bytes of a field table nesting `depth` levels (tables and arrays alternating), built without recursion:
/// for tests here and in the integration suite, which need frames that would exhaust a recursive parser.
#[doc(hidden)]
pub fn nested_table_bytes(depth: usize) -> Vec<u8> {
    let mut inner: Vec<u8> = vec![0, 0, 0, 0];
    for level in 1..depth {
        let mut outer = Vec::with_capacity(inner.len() + 8);
        if level.is_multiple_of(2) {
            outer.extend_from_slice(&((3 + inner.len()) as u32).to_be_bytes());
            outer.extend_from_slice(&[1, b'k', b'A']);
        } else {
            outer.extend_from_slice(&((1 + inner.len()) as u32).to_be_bytes());
            outer.push(b'F');
        }
        outer.extend_from_slice(&inner);
        inner = outer;
    }
    let mut top = Vec::with_capacity(inner.len() + 8);
    top.extend_from_slice(&((3 + inner.len()) as u32).to_be_bytes());
    let kind = if depth.is_multiple_of(2) { b'A' } else { b'F' };
    top.extend_from_slice(&[1, b'k', kind]);
    top.extend_from_slice(&inner);
    top
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{AMQPValue, FieldArray, FieldTable};

    fn nested_table(depth: usize) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert("leaf".into(), AMQPValue::LongString("x".into()));
        for _ in 1..depth {
            let mut outer = FieldTable::default();
            outer.insert("n".into(), AMQPValue::FieldTable(t));
            t = outer;
        }
        t
    }

    fn encoded(t: &FieldTable) -> Vec<u8> {
        let ctx = amq_protocol::frame::WriteContext::from(Vec::new());
        amq_protocol::types::generation::gen_field_table(t)(ctx)
            .expect("encode")
            .into_inner()
            .0
    }

    #[test]
    fn measures_depth_of_real_tables() {
        let ok = encoded(&nested_table(MAX_DEPTH));
        assert!(!table_too_deep(&ok, 0, MAX_DEPTH));
        let deep = encoded(&nested_table(MAX_DEPTH + 1));
        assert!(table_too_deep(&deep, 0, MAX_DEPTH));
        let mut arr = FieldTable::default();
        arr.insert(
            "a".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(nested_table(
                3,
            ))])),
        );
        // the top table, the array, then three tables
        assert!(!table_too_deep(&encoded(&arr), 0, 5));
        assert!(table_too_deep(&encoded(&arr), 0, 4));
    }

    #[test]
    fn a_frame_worth_of_nesting_is_refused_without_recursion() {
        let deep = nested_table_bytes(40_000);
        assert!(deep.len() < 400_000);
        // Run on a small stack: the walk must not recurse.
        let r = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || table_too_deep(&deep, 0, MAX_DEPTH))
            .expect("thread")
            .join()
            .expect("no stack overflow");
        assert!(r);
    }

    #[test]
    fn malformed_tables_are_left_to_the_parser() {
        assert!(!table_too_deep(&[0, 0, 0], 0, 1));
        assert!(!table_too_deep(&[0, 0, 0, 9, 1, b'k', b'F', 0], 0, 1));
        assert!(!table_too_deep(&[0, 0, 0, 3, 1, b'k', b'?'], 0, 1));
    }

    #[test]
    fn finds_the_table_in_each_method_and_header() {
        let deep = encoded(&nested_table(MAX_DEPTH + 1));
        let shallow = encoded(&nested_table(2));
        let method = |class: u16, id: u16, prefix: &[u8], table: &[u8]| {
            let mut p = Vec::new();
            p.extend_from_slice(&class.to_be_bytes());
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(prefix);
            p.extend_from_slice(table);
            p
        };
        // queue.declare: reserved short, queue name "q", flags octet, arguments
        let qd = [0, 0, 1, b'q', 0];
        assert!(method_too_deep(&method(50, 10, &qd, &deep)));
        assert!(!method_too_deep(&method(50, 10, &qd, &shallow)));
        // basic.consume: reserved, queue, tag, flags
        let bc = [0, 0, 1, b'q', 0, 0];
        assert!(method_too_deep(&method(60, 20, &bc, &deep)));
        // connection.start-ok: the table comes first
        assert!(method_too_deep(&method(10, 11, &[], &deep)));
        // queue.unbind: reserved, queue, exchange, key, no flags
        let qu = [0, 0, 1, b'q', 1, b'x', 0];
        assert!(method_too_deep(&method(50, 50, &qu, &deep)));
        assert!(
            !method_too_deep(&method(60, 40, &[], &deep)),
            "basic.publish has no table"
        );

        // content header: class, weight, size, flags (content-type + headers), "t", headers
        let mut h = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xa0, 0x00, 1, b't'];
        h.extend_from_slice(&deep);
        assert!(header_too_deep(&h));
        h.truncate(16);
        h.extend_from_slice(&shallow);
        assert!(!header_too_deep(&h));
    }
}
