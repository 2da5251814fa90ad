//! Raw-frame AMQP 0-9-1 conformance suite: a table of cases (cases.rs), each
//! validated against RabbitMQ 3.10, run against the broker named by target.rs.
//!
//!   AMQP_ADDR=127.0.0.1:5692 cargo test --test conformance -- --nocapture
//!   CONFORMANCE_CASE=tune_ok,frame_ cargo test --test conformance   # substring filter
//!
//! All cases run concurrently, each on its own connection; every case prints one
//! line (ok/FAIL + what was observed) and the test fails listing every failed case
//! by name.

#![allow(dead_code)]

mod cases;
mod client;
mod codec;
mod methods;
mod runner;
mod spec;
mod target;

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Upper bound for any single case (the slowest RabbitMQ cases take ~3 s).
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let all = cases::cases();
    let mut seen = HashSet::new();
    for c in &all {
        assert!(seen.insert(c.name), "duplicate case name {}", c.name);
    }
    let filter: Vec<String> = std::env::var("CONFORMANCE_CASE")
        .ok()
        .map(|s| {
            s.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let selected: Vec<_> = all
        .into_iter()
        .filter(|c| filter.is_empty() || filter.iter().any(|p| c.name.contains(p.as_str())))
        .collect();
    assert!(
        !selected.is_empty(),
        "CONFORMANCE_CASE={filter:?} matches no case"
    );

    let t0 = Instant::now();
    let mut handles = Vec::new();
    for case in selected {
        handles.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = match tokio::time::timeout(CASE_TIMEOUT, runner::run(&case)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "case did not finish within {}s",
                    CASE_TIMEOUT.as_secs()
                )),
            };
            (case.name, r, started.elapsed())
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.expect("case task panicked"));
    }
    let total = results.len();
    let mut failed = Vec::new();
    for (name, r, took) in &results {
        match r {
            Ok(obs) => println!("ok   {name:<58} [{:.2}s] {obs}", took.as_secs_f64()),
            Err(e) => {
                println!("FAIL {name:<58} [{:.2}s] {e}", took.as_secs_f64());
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    println!(
        "conformance: {} passed, {} failed, {} cases in {:.1}s",
        total - failed.len(),
        failed.len(),
        total,
        t0.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        panic!(
            "{} of {} conformance cases failed:\n  {}",
            failed.len(),
            total,
            failed.join("\n  ")
        );
    }
}
