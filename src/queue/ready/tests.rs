//! The ready list with a real store under it: paging, spilling, priorities, read-ahead.

use super::*;
use crate::queue::message::{Message, RecordMeta};
use crate::queue::paging::KEEP_MIN;
use crate::queue::paging::{MemoryBudget, KEEP_STORED, TRANSIENT_PREFIX};
use crate::store::MessageStore;
use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;
use std::sync::Arc;

fn qm(seq: u64, prio: Option<u8>) -> QueuedMessage {
    let mut p = BasicProperties::default();
    if let Some(x) = prio {
        p = p.with_priority(x);
    }
    QueuedMessage::new(
        seq,
        Arc::new(Message {
            exchange: "".into(),
            routing_key: "".into(),
            header: crate::protocol::encode_content_header(1, &p),
            properties: crate::queue::message::Props::new(p),
            body: Bytes::from(format!("m{seq}")),
            broker_deaths: false,
        }),
    )
}

fn paging_list(dir: &crate::store::tests::TempDir, limit: u64) -> (ReadyList, Arc<MemoryBudget>) {
    paging_list_in_phase(dir, limit, 0)
}

fn paging_list_in_phase(
    dir: &crate::store::tests::TempDir,
    limit: u64,
    phase: usize,
) -> (ReadyList, Arc<MemoryBudget>) {
    let (store, _) = MessageStore::open(crate::store::StoreConfig::new(&dir.0)).unwrap();
    let budget = MemoryBudget::new(limit);
    let pager = Pager {
        store,
        durable_key: Some("q".into()),
        transient_key: format!("{TRANSIENT_PREFIX}q"),
        budget: budget.clone(),
        phase,
    };
    (ReadyList::with_pager(None, Some(pager)), budget)
}

fn body(m: &QueuedMessage) -> String {
    String::from_utf8(m.msg.body.to_vec()).unwrap()
}

/// Pop the head, reading paged messages back first (as the queue does through the reader thread).
fn pop(r: &mut ReadyList) -> Option<QueuedMessage> {
    loop {
        match r.head() {
            Head::Empty => return None,
            Head::InMemory => return r.pop_front(),
            Head::Paged | Head::Loading => {
                let load = r.begin_load().expect("a paged head can be loaded");
                load_now(r, load);
            }
        }
    }
}

#[test]
fn pages_out_under_pressure_and_reads_back_in_order() {
    let dir = crate::store::tests::TempDir::new("ready-pressure");
    // A budget of zero: everything beyond KEEP_MIN goes to the store.
    let (mut r, budget) = paging_list(&dir, 0);
    let n = KEEP_MIN as u64 + 500;
    for s in 0..n {
        r.push_back(qm(s, None));
        r.page_out();
    }
    assert_eq!(r.len(), n as usize);
    assert_eq!(r.in_memory(), KEEP_MIN);
    assert_eq!(
        r.bytes(),
        (0..n).map(|s| format!("m{s}").len() as u64).sum::<u64>()
    );
    // Pop a few, requeue them: they go back in front of the paged run.
    let first: Vec<QueuedMessage> = (0..3).filter_map(|_| r.pop_front()).collect();
    r.requeue(first);
    let order: Vec<String> = std::iter::from_fn(|| pop(&mut r).map(|m| body(&m))).collect();
    let want: Vec<String> = (0..n).map(|s| format!("m{s}")).collect();
    assert_eq!(order, want);
    assert_eq!((r.len(), r.bytes(), budget.used()), (0, 0, 0));
}

#[test]
fn a_long_paged_run_keeps_a_bounded_index_in_memory() {
    use crate::queue::spill::CHUNK;
    let dir = crate::store::tests::TempDir::new("ready-spill");
    let (mut r, _budget) = paging_list(&dir, 0);
    let store = r.pager.as_ref().unwrap().store.clone();
    let n = KEEP_MIN as u64 + 10 * CHUNK as u64 + 7;
    for s in 0..n {
        r.push_back(qm(s, None));
        r.page_out();
        assert!(r.paged_in_memory() <= 2 * CHUNK, "at {s}");
    }
    assert_eq!(r.len(), n as usize);
    // Half of it read back in order, through the spilled chunks.
    let first: Vec<String> = (0..n / 2)
        .filter_map(|_| pop(&mut r).map(|m| body(&m)))
        .collect();
    assert_eq!(
        first,
        (0..n / 2).map(|s| format!("m{s}")).collect::<Vec<_>>()
    );
    assert!(r.paged_in_memory() <= 2 * CHUNK);
    // A purge forgets the rest, spilled chunks included, once the reader has read them.
    let (mem, _) = r.drain(true);
    drop(mem);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.stats().live_messages != 0 {
        assert!(std::time::Instant::now() < deadline, "{:?}", store.stats());
        std::thread::yield_now();
    }
}

#[test]
fn spilled_tails_leave_only_the_heads_in_memory_in_order() {
    use crate::queue::spill::{CHUNK, HEAD};
    let dir = crate::store::tests::TempDir::new("ready-spill-tails");
    let (mut r, _budget) = paging_list(&dir, 0);
    // In memory, then a paged head, then a tail of half a chunk: too short to spill by itself.
    let n = (KEEP_MIN + HEAD + CHUNK / 2) as u64;
    for s in 0..n {
        r.push_back(qm(s, None));
        r.page_out();
    }
    assert_eq!(r.paged_in_memory(), HEAD + CHUNK / 2);
    r.spill_tails();
    assert_eq!(r.paged_in_memory(), HEAD);
    assert_eq!(r.len(), n as usize);
    // Nothing to spill a second time; what follows goes behind the chunk.
    r.spill_tails();
    r.push_back(qm(n, None));
    r.page_out();
    let order: Vec<String> = std::iter::from_fn(|| pop(&mut r).map(|m| body(&m))).collect();
    assert_eq!(order, (0..=n).map(|s| format!("m{s}")).collect::<Vec<_>>());
}

#[test]
fn recovered_messages_spill_in_short_chunks_and_keep_their_order() {
    use crate::queue::paging::Paged;
    use crate::queue::spill::HEAD;
    let dir = crate::store::tests::TempDir::new("ready-recovered");
    let (mut r, _budget) = paging_list(&dir, 0);
    let store = r.pager.as_ref().unwrap().store.clone();
    let n = (HEAD + 3 * RECOVERED_CHUNK + 100) as u64;
    for s in 0..n {
        let m = qm(s, None);
        let rec = m.msg.encode_record(RecordMeta::default());
        let loc = store.publish("q", s, &rec, Box::new(|_| {})).unwrap();
        r.push_paged(0, Paged::of(&m, loc, false));
        assert!(r.paged_in_memory() < HEAD + RECOVERED_CHUNK, "at {s}");
    }
    r.spill_tails();
    assert_eq!(r.paged_in_memory(), HEAD);
    assert_eq!(r.len(), n as usize);
    let order: Vec<String> = std::iter::from_fn(|| pop(&mut r).map(|m| body(&m))).collect();
    assert_eq!(order, (0..n).map(|s| format!("m{s}")).collect::<Vec<_>>());
}

#[test]
fn a_queues_phase_cuts_its_first_chunk_short() {
    use crate::queue::spill::{CHUNK, HEAD};
    let dir = crate::store::tests::TempDir::new("ready-phase");
    let phase = 300;
    let (mut r, _budget) = paging_list_in_phase(&dir, 0, phase);
    // Where the index entries held in memory fell: each time the tail was spilled as a chunk.
    let mut spilled_at = Vec::new();
    let mut held = 0;
    for s in 0..(KEEP_MIN + HEAD + 3 * CHUNK) as u64 {
        r.push_back(qm(s, None));
        r.page_out();
        let now = r.paged_in_memory();
        if now < held {
            spilled_at.push(s as usize + 1 - KEEP_MIN);
        }
        held = now;
    }
    let first = HEAD + CHUNK - phase;
    assert_eq!(spilled_at, vec![first, first + CHUNK, first + 2 * CHUNK]);
    // Phases spread over the chunk for keys that differ in a digit.
    let phases: std::collections::HashSet<usize> = (0..1000)
        .map(|i| Pager::phase_of(&format!("/\u{1}recovery-{i}")))
        .collect();
    assert!(phases.len() > 400, "{}", phases.len());
    assert!(phases.iter().all(|&p| p < CHUNK));
}

#[test]
fn stored_messages_page_without_pressure_and_drain_reports_ids() {
    let dir = crate::store::tests::TempDir::new("ready-stored");
    let (mut r, budget) = paging_list(&dir, u64::MAX);
    let store = r.pager.as_ref().unwrap().store.clone();
    let n = KEEP_STORED as u64 + 10;
    for s in 0..n {
        let mut m = qm(s, None);
        let loc = store
            .publish(
                "q",
                s,
                &m.msg.encode_record(RecordMeta::default()),
                Box::new(|_| {}),
            )
            .unwrap();
        m.set_loc(Some(loc));
        r.push_back(m);
        r.page_out();
    }
    assert_eq!(r.in_memory(), KEEP_STORED);
    assert!(budget.used() > 0);
    let (mem, paged) = r.drain(true);
    assert_eq!(mem.len(), KEEP_STORED);
    assert_eq!(
        paged.iter().map(|l| l.slot).collect::<Vec<_>>(),
        (KEEP_STORED as u32..n as u32).collect::<Vec<_>>()
    );
    assert_eq!(budget.used(), 0);
}

#[test]
fn priority_levels_page_and_keep_their_order() {
    let dir = crate::store::tests::TempDir::new("ready-prio");
    let (store, _) = MessageStore::open(crate::store::StoreConfig::new(&dir.0)).unwrap();
    let budget = MemoryBudget::new(0);
    let pager = Pager {
        store,
        durable_key: None,
        transient_key: format!("{TRANSIENT_PREFIX}pq"),
        budget: budget.clone(),
        phase: 0,
    };
    let mut r = ReadyList::with_pager(Some(3), Some(pager));
    // Enough for every level to spill chunks of its own under the one transient key.
    let n = 4 * 3 * crate::queue::spill::CHUNK as u64 + 600;
    for s in 0..n {
        r.push_back(qm(s, Some((s % 4) as u8)));
        r.page_out();
    }
    assert_eq!(r.in_memory(), KEEP_MIN);
    assert!(r.paged_in_memory() <= 4 * 2 * crate::queue::spill::CHUNK);
    let order: Vec<u64> = std::iter::from_fn(|| pop(&mut r).map(|m| m.seq)).collect();
    let mut want: Vec<u64> = (0..n).collect();
    want.sort_by_key(|s| (std::cmp::Reverse(s % 4), *s));
    assert_eq!(order, want);
    assert_eq!(budget.used(), 0);
}

#[test]
fn read_ahead_starts_before_the_head_is_paged_and_keeps_order() {
    let dir = crate::store::tests::TempDir::new("ready-ahead");
    let (mut r, _) = paging_list(&dir, 0);
    let n = KEEP_MIN as u64 + 300;
    for s in 0..n {
        r.push_back(qm(s, None));
        r.page_out();
    }
    // KEEP_MIN (64) in memory ahead of the paged run: fewer than half a batch stand before it once
    // a few are served, so a load begins while the head is still in memory.
    assert!(r.begin_load().is_none(), "enough runway yet");
    for _ in 0..10 {
        r.pop_front().unwrap();
    }
    let load = r.begin_load().expect("read-ahead begins");
    assert_eq!(
        r.head(),
        Head::InMemory,
        "the in-memory head is still served"
    );
    assert!(r.begin_load().is_none(), "one load at a time");
    let mut served: Vec<u64> = (0..10).collect();
    while r.head() == Head::InMemory {
        served.push(r.pop_front().unwrap().seq);
    }
    assert_eq!(r.head(), Head::Loading, "the next one is being read back");
    load_now(&mut r, load);
    served.extend(std::iter::from_fn(|| pop(&mut r).map(|m| m.seq)));
    assert_eq!(served, (0..n).collect::<Vec<_>>());
}

#[test]
fn a_load_that_returns_after_a_purge_is_forgotten() {
    let dir = crate::store::tests::TempDir::new("ready-stale");
    let (mut r, budget) = paging_list(&dir, 0);
    for s in 0..(KEEP_MIN as u64 + 10) {
        r.push_back(qm(s, None));
        r.page_out();
    }
    while r.pop_front().is_some() {}
    let load = r.begin_load().unwrap();
    r.drain(true);
    load_now(&mut r, load);
    assert_eq!((r.len(), r.in_memory(), budget.used()), (0, 0, 0));
    assert_eq!(r.head(), Head::Empty);
}

#[test]
fn dropping_the_list_returns_its_budget() {
    let dir = crate::store::tests::TempDir::new("ready-drop");
    let (mut r, budget) = paging_list(&dir, u64::MAX);
    r.push_back(qm(0, None));
    assert!(budget.used() > 0);
    drop(r);
    assert_eq!(budget.used(), 0);
}

#[test]
fn priorities_then_fifo() {
    let mut r = ReadyList::new(Some(5));
    r.push_back(qm(0, None));
    r.push_back(qm(1, Some(3)));
    r.push_back(qm(2, Some(9)));
    r.push_back(qm(3, Some(3)));
    let order: Vec<u64> = std::iter::from_fn(|| r.pop_front().map(|m| m.seq)).collect();
    assert_eq!(order, vec![2, 1, 3, 0]);
    assert_eq!(r.bytes(), 0);
}

#[test]
fn requeue_restores_positions() {
    let mut r = ReadyList::new(None);
    for s in 0..5 {
        r.push_back(qm(s, None));
    }
    let taken: Vec<QueuedMessage> = (0..5).filter_map(|_| r.pop_front()).collect();
    r.requeue(vec![taken[3].clone(), taken[1].clone()]);
    r.requeue(vec![taken[4].clone()]);
    let order: Vec<u64> = std::iter::from_fn(|| r.pop_front().map(|m| m.seq)).collect();
    assert_eq!(order, vec![1, 3, 4]);
}

#[test]
fn crowded_queues_read_back_a_share_that_shrinks_as_more_is_held() {
    let total = 1 << 20;
    let budget = MemoryBudget::with_keep_stored(u64::MAX, KEEP_STORED, total);
    let batch = || budget.crowded_batch(128, 16);
    assert_eq!(batch(), 128, "nothing held");
    budget.used.store(total, Ordering::Relaxed);
    assert_eq!(batch(), 128, "up to the kept total");
    budget.used.store(total + total / 2, Ordering::Relaxed);
    assert_eq!(batch(), 72, "fewer past it");
    budget.used.store(total, Ordering::Relaxed);
    let loading = budget.reserve(total / 2);
    assert_eq!(batch(), 72, "reads under way count");
    drop(loading);
    budget.used.store(2 * total, Ordering::Relaxed);
    assert_eq!(batch(), 16, "the floor at twice the total");
    budget.used.store(1000 * total, Ordering::Relaxed);
    assert_eq!(batch(), 16, "never below the floor");
}
