//! Per-shard counters: plain `Cell`s written only by their shard, summed at
//! scrape time. Nothing shared is written on the request path.

use std::cell::Cell;

#[derive(Default)]
pub struct ShardMetrics {
    pub requests: Cell<u64>,
    /// Responses by status class: index 1..=5 for 1xx..5xx.
    pub responses: [Cell<u64>; 6],
    pub upstream_connect_errors: Cell<u64>,
    pub upstream_timeouts: Cell<u64>,
    pub retries: Cell<u64>,
    pub pool_reuses: Cell<u64>,
    pub pool_connects: Cell<u64>,
    pub connections_refused: Cell<u64>,
    /// Tokens providers reported (`usage`), and the responses that had one.
    pub prompt_tokens: Cell<u64>,
    pub completion_tokens: Cell<u64>,
    pub usage_reports: Cell<u64>,
}

impl ShardMetrics {
    pub fn count_response(&self, status: u16) {
        let class = (status / 100).min(5) as usize;
        bump(&self.responses[class]);
    }
}

#[inline]
pub fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}
