//! Per-shard counters: plain `Cell`s and maps written only by their shard,
//! copied out on request ([`ShardStats`], over the control channel) and
//! summed and rendered on the control thread ([`render`]). Nothing shared is
//! written on the request path.
//!
//! A request leaves its facts in its connection's [`Record`] as it goes
//! (who called, which rule and target, the status, bytes, timings); the end
//! of `proxy::handle` hands the record to [`finish`], the one place where a
//! request is counted and, when sampled, written to the access log.
//!
//! Series are keyed by the configuration's stable keys (hashes of ids), so a
//! configuration change keeps them; names are looked up at scrape time.

pub mod fallbacks;
pub mod render;
pub mod usage;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::util::fnv::fnv1a64;
use std::time::{Duration, Instant};

use crate::config::snapshot::{KeyHash, Snapshot, Target};
use crate::cost::Period;

#[derive(Default)]
pub struct ShardMetrics {
    pub requests: Cell<u64>,
    pub pool_reuses: Cell<u64>,
    pub pool_connects: Cell<u64>,
    pub connections_refused: Cell<u64>,
    routes: RefCell<Map<RouteStats>>,
    targets: RefCell<Map<TargetStats>>,
    tokens: RefCell<Map<TokenStats>>,
    costs: RefCell<Map<CostStats>>,
    spend: RefCell<Map<SpendStats>>,
    plugins: RefCell<Vec<(&'static str, u64)>>,
}

/// What went wrong with one upstream target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamEvent {
    ConnectError,
    Timeout,
    Retry,
}

impl ShardMetrics {
    /// Counts a connect error, timeout or retry against a target.
    pub fn upstream_event(&self, target: u64, event: UpstreamEvent) {
        let mut targets = self.targets.borrow_mut();
        let t = targets.entry(target).or_default();
        match event {
            UpstreamEvent::ConnectError => t.connect_errors += 1,
            UpstreamEvent::Timeout => t.timeouts += 1,
            UpstreamEvent::Retry => t.retries += 1,
        }
    }

    /// Drops the series of targets, routes and gateways not in `live`
    /// (key 0, "no gateway" or "no rule", always stays).
    pub fn retain(&self, live: &crate::config::snapshot::LiveKeys) {
        self.targets
            .borrow_mut()
            .retain(|k, _| live.targets.contains(k));
        self.routes.borrow_mut().retain(|_, r| {
            r.gateway == 0
                || (r.rule == 0 && live.gateways.contains(&r.gateway))
                || live.rules.contains(&(r.gateway, r.rule))
        });
        self.tokens
            .borrow_mut()
            .retain(|_, t| t.gateway == 0 || live.gateways.contains(&t.gateway));
        self.costs
            .borrow_mut()
            .retain(|_, t| t.gateway == 0 || live.gateways.contains(&t.gateway));
    }

    /// Adds an answer's cost to (gateway, key, model) and to the key's
    /// spend in the current day and month (older periods than the previous
    /// ones are forgotten).
    pub fn count_cost(&self, gateway: u64, key_id: &str, model: &[u8], micros: u64) {
        let k = fnv1a64(key_id.as_bytes());
        self.costs
            .borrow_mut()
            .entry(mix(gateway, mix(k, fnv1a64(model))))
            .or_insert_with(|| CostStats {
                gateway,
                key_id: key_id.to_string(),
                model: String::from_utf8_lossy(model).into_owned(),
                micros: 0,
            })
            .micros += micros;
        if key_id.is_empty() {
            return;
        }
        let (day, month) = crate::cost::Period::now();
        let mut spend = self.spend.borrow_mut();
        for period in [day, month] {
            let slot = mix(k, period_key(period));
            if !spend.contains_key(&slot) {
                spend.retain(|_, s| match (s.period, period) {
                    (Period::Day(a), Period::Day(b)) | (Period::Month(a), Period::Month(b)) => {
                        a + 1 >= b
                    }
                    _ => true,
                });
            }
            spend
                .entry(slot)
                .or_insert_with(|| SpendStats {
                    key_id: key_id.to_string(),
                    period,
                    micros: 0,
                })
                .micros += micros;
        }
    }

    /// Counts a request refused by a plugin (`plugin` is its name).
    pub fn plugin_rejection(&self, plugin: &'static str) {
        let mut plugins = self.plugins.borrow_mut();
        match plugins.iter_mut().find(|(p, _)| *p == plugin) {
            Some((_, n)) => *n += 1,
            None => plugins.push((plugin, 1)),
        }
    }

    /// Counts a refusal (not a CORS preflight answer) by the plugin that made it.
    pub fn count_refusal(&self, flow: &crate::plugin::Flow<'_>, stop: &crate::plugin::Stop) {
        use crate::plugin::Stop;
        if let (Stop::Reject(..) | Stop::Limited(..), Some(name)) = (stop, flow.stopped_by) {
            self.plugin_rejection(name);
        }
    }

    /// Counts one answered request of (gateway, rule) (stable keys, 0 for none).
    pub fn count(&self, gateway: u64, rule: u64, status: u16, total: Duration) {
        let mut routes = self.routes.borrow_mut();
        let r = routes
            .entry(mix(gateway, rule))
            .or_insert_with(|| RouteStats {
                gateway,
                rule,
                statuses: Vec::with_capacity(4),
                latency: Histogram::default(),
            });
        match r.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => r.statuses.push((status, 1)),
        }
        r.latency.observe(total);
    }

    /// Counts a request whose last attempt went to `target`.
    pub fn count_upstream(&self, target: u64, latency: Option<Duration>) {
        let mut targets = self.targets.borrow_mut();
        let t = targets.entry(target).or_default();
        t.requests += 1;
        if let Some(d) = latency {
            t.latency.observe(d);
        }
    }

    /// Adds a response's token usage to (gateway, model).
    pub fn count_tokens(&self, gateway: u64, model: &[u8], prompt: u64, completion: u64) {
        let mut tokens = self.tokens.borrow_mut();
        let t = tokens
            .entry(mix(gateway, fnv1a64(model)))
            .or_insert_with(|| TokenStats {
                gateway,
                model: String::from_utf8_lossy(model).into_owned(),
                prompt: 0,
                completion: 0,
            });
        t.prompt += prompt;
        t.completion += completion;
    }
}

fn period_key(p: Period) -> u64 {
    match p {
        Period::Day(d) => d as u64,
        Period::Month(m) => (m as u64) | 1 << 63,
    }
}

#[inline]
pub fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// Histogram bucket bounds in microseconds (100 µs to 60 s) and as the
/// `le` label renders them.
pub const BUCKETS: [(u64, &str); 18] = [
    (100, "0.0001"),
    (250, "0.00025"),
    (500, "0.0005"),
    (1_000, "0.001"),
    (2_500, "0.0025"),
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
    (30_000_000, "30"),
    (60_000_000, "60"),
];

/// A latency histogram: per-bucket (not cumulative) counts, the last slot
/// for values above every bound; the sum in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [u64; BUCKETS.len() + 1],
    pub sum_us: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = BUCKETS
            .iter()
            .position(|&(bound, _)| us <= bound)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Requests of one (gateway, rule); keys are 0 where none was found.
#[derive(Debug, Clone)]
pub struct RouteStats {
    pub gateway: u64,
    pub rule: u64,
    pub statuses: Vec<(u16, u64)>,
    pub latency: Histogram,
}

/// One upstream target: requests whose last attempt went to it, their time
/// to the response head, and its failures.
#[derive(Debug, Clone, Default)]
pub struct TargetStats {
    pub requests: u64,
    pub connect_errors: u64,
    pub timeouts: u64,
    pub retries: u64,
    pub latency: Histogram,
}

/// Tokens of one (gateway, model), from the responses' `usage`.
#[derive(Debug, Clone)]
pub struct TokenStats {
    pub gateway: u64,
    pub model: String,
    pub prompt: u64,
    pub completion: u64,
}

/// Micro-dollars spent by (gateway, key, model); `key_id` is empty for
/// requests without a key.
#[derive(Debug, Clone)]
pub struct CostStats {
    pub gateway: u64,
    pub key_id: String,
    pub model: String,
    pub micros: u64,
}

/// Micro-dollars one key spent in one calendar day or month (UTC).
#[derive(Debug, Clone)]
pub struct SpendStats {
    pub key_id: String,
    pub period: Period,
    pub micros: u64,
}

/// A copy of one shard's counters, sent to the control thread on a scrape.
#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    pub shard: usize,
    pub cpu: usize,
    pub generation: u64,
    pub open_connections: u64,
    pub connections_refused: u64,
    pub pool_idle: u64,
    pub pool_reuses: u64,
    pub pool_connects: u64,
    pub routes: Vec<RouteStats>,
    pub targets: Vec<(u64, TargetStats)>,
    pub tokens: Vec<TokenStats>,
    pub costs: Vec<CostStats>,
    pub spend: Vec<SpendStats>,
    pub plugins: Vec<(&'static str, u64)>,
    /// Each known target's health verdicts on this shard.
    pub health: Vec<(u64, crate::upstream::balance::TargetHealth)>,
    pub log_lines: u64,
    pub log_dropped: u64,
    /// The shard's own ring, when it runs on one.
    pub ring: Option<crate::runtime::uring::Stats>,
    /// Cross-shard counter answers slower than the wake-up bell's interval.
    pub late_answers: u64,
}

impl ShardMetrics {
    /// A copy of these counters; the shard fills in the rest of its
    /// [`ShardStats`] (on the shard, between requests).
    pub fn stats(&self) -> ShardStats {
        let m = self;
        ShardStats {
            connections_refused: m.connections_refused.get(),
            pool_reuses: m.pool_reuses.get(),
            pool_connects: m.pool_connects.get(),
            routes: m.routes.borrow().values().cloned().collect(),
            targets: m
                .targets
                .borrow()
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            tokens: m.tokens.borrow().values().cloned().collect(),
            costs: m.costs.borrow().values().cloned().collect(),
            spend: m.spend.borrow().values().cloned().collect(),
            plugins: m.plugins.borrow().clone(),
            ..ShardStats::default()
        }
    }
}

/// What a request's [`Record`] needs of its shard: the counters, the
/// access log and whether metrics are on. The shard implements it; this
/// module never sees the rest of the shard.
pub trait Sink {
    fn metrics(&self) -> &ShardMetrics;
    fn access_log(&self) -> &crate::access_log::ShardLog;
    /// `--metrics` (counters and token scans on).
    fn metrics_on(&self) -> bool;
}

impl<S: Sink + ?Sized> Sink for std::rc::Rc<S> {
    fn metrics(&self) -> &ShardMetrics {
        (**self).metrics()
    }
    fn access_log(&self) -> &crate::access_log::ShardLog {
        (**self).access_log()
    }
    fn metrics_on(&self) -> bool {
        (**self).metrics_on()
    }
}

/// Keys are already hashes: pass a single one through, mix several.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// One key from two (order matters).
fn mix(a: u64, b: u64) -> u64 {
    (a.rotate_left(29) ^ b).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ a
}

/// Largest response body kept whole to read `usage` from.
const USAGE_BODY_MAX: usize = 16 << 10;

/// What one request did, filled in along the way (in the connection, so
/// no allocation per request once warm) and counted by [`finish`].
pub struct Record {
    started: Instant,
    bytes_in_mark: u64,
    /// The answered status; 0 until an answer is written.
    status: u16,
    gateway: u64,
    /// Index into the gateway's rules and the rule's stable key.
    rule: Option<(u32, u64)>,
    key: Option<KeyHash>,
    target: Option<u64>,
    target_authority: Vec<u8>,
    upstream_started: Option<Instant>,
    upstream_latency: Option<Duration>,
    bytes_out: u64,
    body: Vec<u8>,
    body_complete: bool,
    /// Tokens the provider reported where the body is not kept (translated
    /// answers read `usage` themselves).
    reported: Option<(u64, u64)>,
    /// The model of a translated answer (the request's).
    reported_model: Vec<u8>,
    /// On a rule with model fallbacks or aliases: the model sent upstream
    /// and the fallback step that answered (kept when sampled).
    served_model: Vec<u8>,
    fallback_step: Option<u8>,
    /// The last bytes of a streamed (chunked) answer: its `usage` event is
    /// among the last few, and the stream itself is never kept.
    tail: usage::Tail,
    /// Written to the access log; the fields below are only kept then.
    sampled: bool,
    request_id: [u8; 64],
    request_id_len: u8,
    method: Vec<u8>,
    path: Vec<u8>,
}

impl Default for Record {
    fn default() -> Record {
        Record::new()
    }
}

impl Record {
    pub fn new() -> Record {
        Record {
            started: Instant::now(),
            bytes_in_mark: 0,
            status: 0,
            gateway: 0,
            rule: None,
            key: None,
            target: None,
            target_authority: Vec::new(),
            upstream_started: None,
            upstream_latency: None,
            bytes_out: 0,
            body: Vec::new(),
            body_complete: true,
            reported: None,
            reported_model: Vec::new(),
            served_model: Vec::new(),
            fallback_step: None,
            tail: usage::Tail::default(),
            sampled: false,
            request_id: [0; 64],
            request_id_len: 0,
            method: Vec::new(),
            path: Vec::new(),
        }
    }

    /// Starts a request: `consumed` is the client buffer's consumed-bytes
    /// counter; method, path and id are kept only when the access log
    /// samples this request.
    /// Frees what the last request grew, between requests.
    pub fn trim(&mut self) {
        self.body = Vec::new();
        self.target_authority = Vec::new();
        self.served_model = Vec::new();
        self.method = Vec::new();
        self.path = Vec::new();
        self.tail.trim();
    }

    pub fn begin(
        &mut self,
        shard: &impl Sink,
        consumed: u64,
        method: &[u8],
        path: &[u8],
        request_id: &[u8],
    ) {
        self.started = Instant::now();
        self.bytes_in_mark = consumed;
        self.status = 0;
        self.gateway = 0;
        self.rule = None;
        self.key = None;
        self.target = None;
        self.upstream_started = None;
        self.upstream_latency = None;
        self.fallback_step = None;
        self.bytes_out = 0;
        self.body.clear();
        self.sampled = shard.access_log().sample();
        // `false` stops keeping the body: nobody will read its usage.
        self.body_complete = shard.metrics_on() || self.sampled;
        if self.sampled {
            self.method.clear();
            self.method.extend_from_slice(method);
            self.path.clear();
            self.path.extend_from_slice(path);
            let n = request_id.len().min(self.request_id.len());
            self.request_id[..n].copy_from_slice(&request_id[..n]);
            self.request_id_len = n as u8;
        }
    }

    /// The gateway that serves the request (its stable key).
    pub fn gateway(&mut self, key: u64) {
        self.gateway = key;
    }

    /// The matched rule: its index in the gateway and its stable key.
    pub fn rule(&mut self, index: usize, key: u64) {
        self.rule = Some((index as u32, key));
    }

    /// The API key used (its hash; the key itself is never kept).
    pub fn api_key(&mut self, hash: &KeyHash) {
        self.key = Some(*hash);
    }

    /// An attempt to `target` starts; upstream latency counts from the first.
    pub fn attempt(&mut self, target: &Target) {
        if self.upstream_started.is_none() {
            self.upstream_started = Some(Instant::now());
        }
        if self.target != Some(target.key) {
            self.target = Some(target.key);
            self.target_authority.clear();
            self.target_authority
                .extend_from_slice(target.authority.as_bytes());
        }
    }

    /// The model-fallback step that answered and the model it was sent,
    /// for the access log.
    pub fn served(&mut self, model: Option<&str>, step: u8) {
        if self.sampled {
            self.fallback_step = Some(step);
            self.served_model.clear();
            self.served_model
                .extend_from_slice(model.unwrap_or_default().as_bytes());
        }
    }

    /// The upstream's response head arrived with `status`.
    pub fn answered(&mut self, status: u16) {
        self.status = status;
        self.upstream_latency = self.upstream_started.map(|t| t.elapsed());
    }

    /// The gateway answered `status` itself with `bytes` bytes.
    pub fn answered_locally(&mut self, status: u16, bytes: usize) {
        self.status = status;
        self.bytes_out += bytes as u64;
    }

    /// `bytes` more went to the client.
    #[inline]
    pub fn sent(&mut self, bytes: usize) {
        self.bytes_out += bytes as u64;
    }

    /// Bytes of a streamed answer as they pass: only a bounded tail is kept.
    #[inline]
    pub fn stream(&mut self, bytes: &[u8]) {
        self.tail.feed(bytes);
    }

    /// Tokens a translated answer reported, for the request's `model`.
    pub fn reported_usage(&mut self, prompt: u64, completion: u64, model: Option<&str>) {
        self.reported = Some((prompt, completion));
        self.reported_model.clear();
        self.reported_model
            .extend_from_slice(model.unwrap_or("").as_bytes());
    }

    /// Response body bytes with a known length: kept while the whole body
    /// is small, to read its `usage` at the end (streams are never kept).
    #[inline]
    pub fn body(&mut self, bytes: &[u8]) {
        if !self.body_complete {
            return;
        }
        if self.body.len() + bytes.len() > USAGE_BODY_MAX {
            self.body_complete = false;
            self.body.clear();
        } else {
            self.body.extend_from_slice(bytes);
        }
    }
}

/// Counts a finished request and writes its access-log line if sampled.
/// `consumed` is the client buffer's consumed-bytes counter now.
pub fn finish(shard: &impl Sink, view: &Snapshot, rec: &mut Record, consumed: u64) {
    if !shard.metrics_on() && !rec.sampled {
        return;
    }
    let total = rec.started.elapsed();
    // The client left before any answer: nginx's 499.
    let status = if rec.status == 0 { 499 } else { rec.status };
    let m = shard.metrics();
    if shard.metrics_on() {
        m.count(rec.gateway, rec.rule.map_or(0, |r| r.1), status, total);
        if let Some(target) = rec.target {
            m.count_upstream(target, rec.upstream_latency);
        }
    }
    let mut tokens = None;
    let mut cost = None;
    let key = rec.key.as_ref().and_then(|h| view.keys.get(h));
    // Prices the answer and counts its cost (metrics on).
    let charge = |model: &[u8], billed: crate::cost::Tokens| {
        let c = view.prices.get(model).map(|p| p.cost(billed));
        if let (Some(c), true) = (c, shard.metrics_on()) {
            m.count_cost(rec.gateway, key.map_or("", |k| &k.id), model, c);
        }
        c
    };
    if rec.body_complete && !rec.body.is_empty() {
        if let Some(u) = usage::scan(&rec.body) {
            if shard.metrics_on() {
                m.count_tokens(rec.gateway, u.model, u.prompt, u.completion);
            }
            tokens = Some((u.prompt, u.completion));
            cost = charge(u.model, u.billed());
        }
        rec.body.clear();
    }
    if tokens.is_none() && !rec.tail.is_empty() {
        if let Some(u) = rec.tail.scan() {
            if shard.metrics_on() {
                m.count_tokens(rec.gateway, u.model, u.prompt, u.completion);
            }
            tokens = Some((u.prompt, u.completion));
            cost = charge(u.model, u.billed());
        }
    }
    rec.tail.clear();
    if let Some((prompt, completion)) = rec.reported.take() {
        if tokens.is_none() {
            if shard.metrics_on() {
                m.count_tokens(rec.gateway, b"", prompt, completion);
            }
            tokens = Some((prompt, completion));
            let billed = crate::cost::Tokens {
                input: prompt,
                cached: 0,
                output: completion,
            };
            cost = charge(&rec.reported_model, billed);
        }
    }
    if rec.sampled {
        let line = crate::access_log::Line {
            request_id: &rec.request_id[..rec.request_id_len as usize],
            gateway: view.gateways.iter().find(|g| g.key == rec.gateway),
            rule: rec.rule.map(|r| r.0 as usize),
            key,
            method: &rec.method,
            path: &rec.path,
            status,
            bytes_in: consumed.saturating_sub(rec.bytes_in_mark),
            bytes_out: rec.bytes_out,
            target: rec.target.map(|_| &rec.target_authority[..]),
            upstream_latency: rec.upstream_latency,
            total,
            tokens,
            cost,
            served: rec.fallback_step.map(|s| (&rec.served_model[..], s)),
        };
        shard.access_log().write(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_forgets_what_the_configuration_no_longer_has() {
        let m = ShardMetrics::default();
        for target in [1, 2] {
            m.count_upstream(target, None);
        }
        for (gateway, rule) in [(10, 100), (10, 101), (10, 0), (11, 0), (0, 0)] {
            m.count(gateway, rule, 200, Duration::from_millis(1));
        }
        m.count_tokens(10, b"gpt", 1, 1);
        m.count_tokens(11, b"gpt", 1, 1);
        let mut live = crate::config::snapshot::LiveKeys::default();
        live.targets.insert(2);
        live.gateways.insert(10);
        live.rules.insert((10, 101));
        m.retain(&live);
        let mut targets: Vec<u64> = m.targets.borrow().keys().copied().collect();
        targets.sort();
        assert_eq!(targets, [2]);
        let mut routes: Vec<(u64, u64)> = m
            .routes
            .borrow()
            .values()
            .map(|r| (r.gateway, r.rule))
            .collect();
        routes.sort();
        assert_eq!(routes, [(0, 0), (10, 0), (10, 101)]);
        let tokens: Vec<u64> = m.tokens.borrow().values().map(|t| t.gateway).collect();
        assert_eq!(tokens, [10]);
    }

    #[test]
    fn histogram_buckets_are_inclusive_upper_bounds() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(61));
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[BUCKETS.len()], 1);
        assert_eq!(h.count(), 3);
        assert_eq!(h.sum_us, 100 + 101 + 61_000_000);
    }

    #[test]
    fn bucket_bounds_match_their_labels() {
        for (us, label) in BUCKETS {
            let secs: f64 = label.parse().unwrap();
            assert_eq!((secs * 1e6).round() as u64, us);
        }
    }

    #[test]
    fn mix_depends_on_order() {
        assert_ne!(mix(1, 2), mix(2, 1));
        assert_ne!(mix(0, 5), mix(5, 0));
    }
}
