//! Rates for the management API. Every object counts with plain atomics (see `metrics`); this sampler reads
//! them every five seconds (RabbitMQ's collect interval) on the broker clock, keeps a short history for
//! objects that did something and a longer one for vhosts and the broker, and turns it into RabbitMQ's
//! `<stat>_details` objects: `{"rate": …}`, or with `msg_rates_age` / `msg_rates_incr` (and the `lengths_`
//! and `data_rates_` equivalents) samples, `avg` and `avg_rate`. Nothing here runs per message.

use crate::broker::Broker;
use crate::varint::{delta, get_varint, put_varint, undelta};
use crate::FastMap;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often counters are sampled (RabbitMQ's collect_statistics_interval).
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept per object that had activity (a minute), and per vhost and for the broker (an hour).
const OBJECT_SAMPLES: usize = 13;
const TOTAL_SAMPLES: usize = 721;

/// What is sampled: an object by address (queues, exchanges, channels, connections), a vhost by name, or
/// the broker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Object(usize),
    Vhost(String),
    Broker,
}

impl Key {
    pub fn of<T>(a: &Arc<T>) -> Key {
        Key::Object(Arc::as_ptr(a) as *const () as usize)
    }
}

/// One object's history: (timestamp ms, values), oldest first, held encoded. A thousand queues, channels and
/// connections that all did something kept 13 samples each as a vector apiece: ~5 MB, for numbers that
/// mostly grow by little from one sample to the next. The first sample is held whole, each later one as
/// deltas from the one before, in varints: about 20 bytes a sample instead of 130.
#[derive(Debug, Default)]
struct Series {
    encoded: Vec<u8>,
    /// How many samples `encoded` holds.
    len: usize,
    /// When its counters last changed (for a queue's idle_since).
    changed_at: u64,
    /// Seen in the latest sampling round (others are dropped).
    seen: bool,
}

type Sample = (u64, Vec<u64>);

impl Series {
    fn samples(&self) -> Vec<Sample> {
        let mut out: Vec<Sample> = Vec::with_capacity(self.len);
        let b = &self.encoded;
        let mut pos = 0;
        while out.len() < self.len {
            let Some(n) = get_varint(b, &mut pos) else {
                break;
            };
            let prev = out.last();
            let Some(at) = get_varint(b, &mut pos).map(|d| undelta(prev.map_or(0, |p| p.0), d))
            else {
                break;
            };
            let mut values = Vec::with_capacity(n as usize);
            for i in 0..n as usize {
                let Some(d) = get_varint(b, &mut pos) else {
                    break;
                };
                let before = prev.and_then(|p| p.1.get(i)).copied().unwrap_or(0);
                values.push(undelta(before, d));
            }
            out.push((at, values));
        }
        out
    }

    fn set(&mut self, samples: &[Sample]) {
        let mut b = std::mem::take(&mut self.encoded);
        b.clear();
        let mut prev: Option<&Sample> = None;
        for s in samples {
            // Bounded by the number of counters an object has (a dozen): never by a client.
            put_varint(&mut b, s.1.len() as u64);
            put_varint(&mut b, delta(prev.map_or(0, |p| p.0), s.0));
            for (i, v) in s.1.iter().enumerate() {
                let before = prev.and_then(|p| p.1.get(i)).copied().unwrap_or(0);
                put_varint(&mut b, delta(before, *v));
            }
            prev = Some(s);
        }
        b.shrink_to_fit();
        self.encoded = b;
        self.len = samples.len();
    }
}

#[derive(Debug, Default)]
pub struct Sampler {
    series: Mutex<FastMap<Key, Series>>,
}

/// Values to sample for one object.
pub struct Reading {
    pub key: Key,
    pub values: Vec<u64>,
}

impl Sampler {
    pub fn new() -> Arc<Sampler> {
        Arc::new(Sampler::default())
    }

    /// Record one round of readings taken at `now` (Unix ms); objects not read are forgotten.
    pub fn record(&self, now: u64, readings: Vec<Reading>) {
        let mut all = self.series.lock();
        for s in all.values_mut() {
            s.seen = false;
        }
        for Reading { key, values } in readings {
            let keep = match key {
                Key::Object(_) => OBJECT_SAMPLES,
                _ => TOTAL_SAMPLES,
            };
            let s = all.entry(key).or_default();
            s.seen = true;
            let mut samples = s.samples();
            let changed = samples.last().is_none_or(|(_, v)| *v != values);
            if changed {
                s.changed_at = now;
            }
            // An object that never did anything keeps one sample only.
            let active = values.iter().any(|v| *v != 0);
            samples.push((now, values));
            let cap = if active { keep } else { 1 };
            let extra = samples.len().saturating_sub(cap);
            samples.drain(..extra);
            s.set(&samples);
        }
        all.retain(|_, s| s.seen);
    }

    /// An object's history, decoded (empty when it has none).
    fn history(&self, key: &Key) -> Vec<Sample> {
        self.series
            .lock()
            .get(key)
            .map_or_else(Vec::new, Series::samples)
    }

    /// The per-second rate of each value over the last interval (zeros when there is no history).
    pub fn rates(&self, key: &Key, n: usize) -> Vec<f64> {
        rates_of(&self.history(key), n)
    }

    /// When the object's counters last changed.
    pub fn changed_at(&self, key: &Key) -> Option<u64> {
        self.series.lock().get(key).map(|s| s.changed_at)
    }

    /// `<name>` and `<name>_details` for every value, as RabbitMQ writes message_stats (and lengths).
    /// `only_nonzero` leaves out counters that are zero (channels show only what happened on them).
    pub fn stats_object(
        &self,
        key: &Key,
        names: &[&str],
        values: &[u64],
        window: Option<(u64, u64)>,
        only_nonzero: bool,
    ) -> Map<String, Value> {
        // Decoded once for every value's rate and samples.
        let history = self.history(key);
        let rates = rates_of(&history, names.len());
        let mut m = Map::new();
        for (i, name) in names.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0);
            if only_nonzero && v == 0 {
                continue;
            }
            m.insert((*name).to_string(), json!(v));
            let mut d = json!({"rate": rates.get(i).copied().unwrap_or(0.0)});
            if let Some((age, incr)) = window {
                let samples = window_samples(&history, i, age, incr);
                let list: Vec<Value> = samples
                    .iter()
                    .map(|(t, v)| json!({"sample": v, "timestamp": t}))
                    .collect();
                let avg = if samples.is_empty() {
                    0.0
                } else {
                    samples.iter().map(|(_, v)| *v as f64).sum::<f64>() / samples.len() as f64
                };
                let avg_rate = match (samples.first(), samples.last()) {
                    (Some(a), Some(b)) if age > 0 => a.1.saturating_sub(b.1) as f64 / age as f64,
                    _ => 0.0,
                };
                d["samples"] = Value::Array(list);
                d["avg"] = json!(avg);
                d["avg_rate"] = json!(avg_rate);
            }
            m.insert(format!("{name}_details"), d);
        }
        m
    }

    /// Start sampling `broker` every interval until it is dropped.
    pub fn spawn(self: &Arc<Self>, broker: Weak<Broker>, read: fn(&Broker) -> Vec<Reading>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (Some(s), Some(b)) = (me.upgrade(), broker.upgrade()) else {
                    return;
                };
                s.record(b.timers.wall_ms(), read(&b));
            }
        });
    }
}

/// The per-second rate of each value over the last interval of `samples` (zeros without two of them).
fn rates_of(samples: &[Sample], n: usize) -> Vec<f64> {
    let len = samples.len();
    if len < 2 {
        return vec![0.0; n];
    }
    let (t1, v1) = &samples[len - 1];
    let (t0, v0) = &samples[len - 2];
    let dt = (t1.saturating_sub(*t0)) as f64 / 1000.0;
    (0..n)
        .map(|i| match (v1.get(i), v0.get(i)) {
            (Some(a), Some(b)) if dt > 0.0 => a.saturating_sub(*b) as f64 / dt,
            _ => 0.0,
        })
        .collect()
}

/// RabbitMQ's samples for value `i` over `age` seconds every `incr` seconds: (timestamp, value), newest
/// first.
fn window_samples(samples: &[Sample], i: usize, age: u64, incr: u64) -> Vec<(u64, u64)> {
    let Some((latest, _)) = samples.last() else {
        return Vec::new();
    };
    let step = incr * 1000;
    let newest = latest - latest % step.max(1);
    let mut out = Vec::new();
    let mut t = newest;
    while out.len() as u64 <= age / incr.max(1) {
        // The last sample at or before t.
        let Some((_, v)) = samples.iter().rev().find(|(ts, _)| *ts <= t + 999) else {
            break;
        };
        out.push((t, v.get(i).copied().unwrap_or(0)));
        if t < step {
            break;
        }
        t -= step;
    }
    out
}

/// A `*_details` window from the query (`msg_rates_age` and `msg_rates_incr`, say); RabbitMQ's 400 for a
/// zero increment.
pub fn window(r: &super::Req, prefix: &str) -> super::reply::Result<Option<(u64, u64)>> {
    let age = r
        .q(&format!("{prefix}_age"))
        .and_then(|s| s.parse::<u64>().ok());
    let incr = r
        .q(&format!("{prefix}_incr"))
        .and_then(|s| s.parse::<u64>().ok());
    match (age, incr) {
        (Some(age), Some(0)) => Err(super::reply::bad_request(format!(
            "Invalid range parameters: age {age}, incr 0"
        ))),
        (Some(age), Some(incr)) => Ok(Some((age, incr))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_over_the_last_interval() {
        let s = Sampler::default();
        let k = Key::Vhost("/".into());
        s.record(
            10_000,
            vec![Reading {
                key: k.clone(),
                values: vec![0, 5],
            }],
        );
        s.record(
            15_000,
            vec![Reading {
                key: k.clone(),
                values: vec![50, 5],
            }],
        );
        assert_eq!(s.rates(&k, 2), vec![10.0, 0.0]);
        let m = s.stats_object(&k, &["publish", "ack"], &[50, 5], Some((10, 5)), false);
        assert_eq!(m["publish"], json!(50));
        assert_eq!(m["publish_details"]["rate"], json!(10.0));
        let samples = m["publish_details"]["samples"].as_array().unwrap();
        assert_eq!(samples[0], json!({"sample": 50, "timestamp": 15_000}));
        s.record(20_000, vec![]);
        assert_eq!(
            s.rates(&k, 2),
            vec![0.0, 0.0],
            "a vanished object is forgotten"
        );
    }

    #[test]
    fn a_series_keeps_its_samples_exactly_in_a_few_bytes_each() {
        let s = Sampler::default();
        let k = Key::Object(1);
        let mut expect = Vec::new();
        for i in 0..20u64 {
            // Growing, shrinking, at the top of the range, zero, constant.
            let values = vec![i * 1000, 50 - i, u64::MAX - i, 0, 7];
            let at = 10_000 + i * 5_000;
            s.record(
                at,
                vec![Reading {
                    key: k.clone(),
                    values: values.clone(),
                }],
            );
            expect.push((at, values));
        }
        let all = s.series.lock();
        let series = &all[&k];
        assert_eq!(series.samples(), expect[20 - OBJECT_SAMPLES..]);
        assert!(
            series.encoded.len() <= 12 * OBJECT_SAMPLES + 20,
            "{} bytes for {OBJECT_SAMPLES} samples of 5 values",
            series.encoded.len()
        );
    }
}
