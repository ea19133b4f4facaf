//! `GET /api/v1/stats`: the last 15 minutes of each gateway's counters, for
//! the console's charts. The admin server samples every shard's counters
//! every [`EVERY`] (the same copies `/metrics` sums) and keeps the last
//! [`KEEP`] samples on the control thread; an answer adds one taken now.
//! Counters are cumulative since start: a reader takes differences between
//! samples for rates.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::admin::Request;
use crate::admin::{Admin, Reply};
use crate::metrics::render::Names;
use crate::metrics::{ShardStats, BUCKETS};

/// Time between samples.
pub const EVERY: Duration = Duration::from_secs(10);
/// Samples kept: 15 minutes and one more, so the oldest difference spans them.
pub const KEEP: usize = 91;

/// One gateway's cumulative counters.
#[derive(Clone, Default)]
struct Totals {
    requests: u64,
    errors: u64,
    tokens: u64,
    /// Per-bucket (not cumulative) latency counts, as [`crate::metrics::Histogram`].
    latency: [u64; BUCKETS.len() + 1],
}

struct Sample {
    at: Instant,
    gateways: BTreeMap<String, Totals>,
}

thread_local! {
    /// The control thread's samples, oldest first.
    static HISTORY: RefCell<VecDeque<Sample>> = const { RefCell::new(VecDeque::new()) };
}

impl Admin {
    /// Samples now and then every [`EVERY`], forever (the admin server runs
    /// it beside its accept loop and cancels both together).
    pub(crate) async fn sample_stats(&self) {
        loop {
            let sample = self.take_sample().await;
            HISTORY.with(|h| {
                let mut h = h.borrow_mut();
                h.push_back(sample);
                while h.len() > KEEP {
                    h.pop_front();
                }
            });
            glommio::timer::sleep(EVERY).await;
        }
    }

    async fn take_sample(&self) -> Sample {
        let shards = self.plane.stats().await;
        let snapshot = self.store.borrow().snapshot();
        Sample {
            at: Instant::now(),
            gateways: totals(&shards, &Names::new(&snapshot)),
        }
    }

    pub(crate) async fn stats(&self, req: &Request) -> Reply {
        if req.method != "GET" {
            return Reply::error(405, "method not allowed");
        }
        let now = self.take_sample().await;
        let samples: Vec<Value> = HISTORY.with(|h| {
            h.borrow()
                .iter()
                .chain(std::iter::once(&now))
                .map(|s| sample_json(s, now.at))
                .collect()
        });
        let buckets: Vec<&str> = BUCKETS.iter().map(|(_, le)| *le).chain(["+Inf"]).collect();
        Reply::json(
            200,
            &json!({
                "interval_seconds": EVERY.as_secs(),
                "latency_buckets": buckets,
                "samples": samples,
            }),
        )
    }
}

/// Every shard's counters summed by gateway name.
fn totals(shards: &[ShardStats], names: &Names) -> BTreeMap<String, Totals> {
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for r in shards.iter().flat_map(|s| &s.routes) {
        let t = out.entry(names.gateway(r.gateway)).or_default();
        for &(status, n) in &r.statuses {
            t.requests += n;
            if status >= 500 {
                t.errors += n;
            }
        }
        for (a, b) in t.latency.iter_mut().zip(&r.latency.counts) {
            *a += b;
        }
    }
    for k in shards.iter().flat_map(|s| &s.tokens) {
        out.entry(names.gateway(k.gateway)).or_default().tokens += k.prompt + k.completion;
    }
    out
}

fn sample_json(s: &Sample, now: Instant) -> Value {
    let gateways: serde_json::Map<String, Value> = s
        .gateways
        .iter()
        .map(|(name, t)| {
            (
                name.clone(),
                json!({
                    "requests": t.requests,
                    "errors_5xx": t.errors,
                    "tokens": t.tokens,
                    "latency": t.latency.to_vec(),
                }),
            )
        })
        .collect();
    json!({
        "age_ms": now.saturating_duration_since(s.at).as_millis() as u64,
        "gateways": gateways,
    })
}
