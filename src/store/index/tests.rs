use super::*;

fn entry(i: u32) -> Entry {
    let mut head = [0u8; RECOVERED_HEAD];
    head[0] = 2;
    head[9] = (i / 7) as u8;
    head[21] = 16;
    Entry {
        slot: i * 2,
        offset: 16 + i * 70,
        len: 70 - (i % 3),
        msg_id: 1000 + u64::from(i),
        head,
    }
}

#[test]
fn entries_round_trip_small() {
    let mut out = Vec::new();
    let mut prev = Prev::default();
    let v: Vec<Entry> = (0..500).map(entry).collect();
    for e in &v {
        put_entry(&mut out, &mut prev, e);
    }
    // A backlog's entries cost a few bytes each.
    assert!(out.len() < 10 * v.len(), "{} bytes", out.len());
    let (mut pos, mut prev) = (0, Prev::default());
    for e in &v {
        assert_eq!(get_entry(&out, &mut pos, &mut prev).as_ref(), Some(e));
    }
    assert_eq!(pos, out.len());
    // Damaged bytes decode to something or nothing, never a panic.
    for i in 0..40 {
        for bit in 0..8 {
            let mut d = out[..60].to_vec();
            d[i] ^= 1 << bit;
            let (mut pos, mut prev) = (0, Prev::default());
            while get_entry(&d, &mut pos, &mut prev).is_some() {}
        }
    }
}

#[test]
fn names() {
    assert_eq!(parse_name("msg-0000000042.idx"), Some((42, false)));
    assert_eq!(parse_name("msg-0000000042.idx.tmp"), Some((42, true)));
    assert_eq!(parse_name("msg-0000000042.seg"), None);
    assert_eq!(parse_name("msg-42.idx"), None);
}
