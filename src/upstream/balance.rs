//! Target choice per upstream, per shard: round-robin, smooth weighted
//! round-robin (nginx's), least-connections and weighted random, skipping
//! targets that passive health marked down.
//!
//! State is keyed by the targets' and upstreams' stable keys, so a
//! configuration change keeps counters, weights and health.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::config::snapshot::{Algorithm, PassiveHealth, Target, Upstream};

/// Keys are already hashes: pass them through.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct TargetState {
    in_flight: u32,
    failures: u32,
    down_until: Option<Instant>,
    current_weight: i64,
}

pub struct Balancer {
    targets: RefCell<KeyMap<TargetState>>,
    cursors: RefCell<KeyMap<usize>>,
    rng: Cell<u64>,
}

/// Counts a request in flight to a target until dropped.
pub struct InFlight<'a> {
    balancer: &'a Balancer,
    key: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.balancer.targets.borrow_mut().get_mut(&self.key) {
            t.in_flight = t.in_flight.saturating_sub(1);
        }
    }
}

impl Balancer {
    pub fn new(seed: u64) -> Balancer {
        let mut s = [0u8; 8];
        let _ = getrandom::getrandom(&mut s);
        Balancer {
            targets: RefCell::default(),
            cursors: RefCell::default(),
            rng: Cell::new(u64::from_le_bytes(s) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
        }
    }

    /// Drops the state of targets and upstreams not in `live`.
    pub fn retain(&self, live: &crate::config::snapshot::LiveKeys) {
        self.targets
            .borrow_mut()
            .retain(|k, _| live.targets.contains(k));
        self.cursors
            .borrow_mut()
            .retain(|k, _| live.upstreams.contains(k));
    }

    fn random(&self) -> u64 {
        // xorshift64*
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Picks a target index of `up`. Targets whose keys are in `avoid` (tried
    /// already by this request) are skipped unless nothing else is healthy.
    /// `None`: no healthy target.
    pub fn choose(&self, up: &Upstream, avoid: &[u64]) -> Option<usize> {
        self.choose_where(up, avoid, |_| true)
    }

    /// Like [`choose`](Self::choose), among the targets `allowed` accepts
    /// (model routing).
    pub fn choose_where(
        &self,
        up: &Upstream,
        avoid: &[u64],
        allowed: impl Fn(&Target) -> bool,
    ) -> Option<usize> {
        let now = Cell::new(None);
        let usable = |t: &Target, strict: bool| {
            t.addr.is_some()
                && allowed(t)
                && (!strict || !avoid.contains(&t.key))
                && self.is_up(t.key, &now)
        };
        let pick = |strict: bool| -> Option<usize> {
            let ok = |i: usize| usable(&up.targets[i], strict);
            match up.algorithm {
                Algorithm::RoundRobin => self.round_robin(up, ok),
                Algorithm::WeightedRoundRobin => self.smooth_weighted(up, ok),
                Algorithm::LeastConnections => self.least_connections(up, ok),
                Algorithm::Random => self.weighted_random(up, ok),
            }
        };
        pick(true).or_else(|| if avoid.is_empty() { None } else { pick(false) })
    }

    fn is_up(&self, key: u64, now: &Cell<Option<Instant>>) -> bool {
        let targets = self.targets.borrow();
        let Some(until) = targets.get(&key).and_then(|t| t.down_until) else {
            return true;
        };
        let now = now.get().unwrap_or_else(Instant::now);
        now >= until
    }

    fn cursor(&self, up: &Upstream) -> usize {
        let mut cursors = self.cursors.borrow_mut();
        let c = cursors.entry(up.key).or_insert(0);
        let v = *c;
        *c = c.wrapping_add(1);
        v
    }

    fn round_robin(&self, up: &Upstream, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let n = up.targets.len();
        let start = self.cursor(up);
        (0..n).map(|i| (start + i) % n).find(|&i| ok(i))
    }

    fn smooth_weighted(&self, up: &Upstream, ok: impl Fn(usize) -> bool) -> Option<usize> {
        // `ok` reads the target states (health): ask it before borrowing them mutably.
        let mut usable = [false; 64];
        let many: Vec<bool>;
        let usable: &[bool] = if up.targets.len() <= usable.len() {
            for (i, u) in usable.iter_mut().enumerate().take(up.targets.len()) {
                *u = ok(i);
            }
            &usable[..up.targets.len()]
        } else {
            many = (0..up.targets.len()).map(&ok).collect();
            &many
        };
        let mut states = self.targets.borrow_mut();
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for (i, t) in up.targets.iter().enumerate() {
            if !usable[i] {
                continue;
            }
            let s = states.entry(t.key).or_default();
            s.current_weight += i64::from(t.weight);
            total += i64::from(t.weight);
            if best.map_or(true, |(_, w)| s.current_weight > w) {
                best = Some((i, s.current_weight));
            }
        }
        let (i, _) = best?;
        if let Some(s) = states.get_mut(&up.targets[i].key) {
            s.current_weight -= total;
        }
        Some(i)
    }

    fn least_connections(&self, up: &Upstream, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let n = up.targets.len();
        let start = self.cursor(up);
        let states = self.targets.borrow();
        (0..n)
            .map(|i| (start + i) % n)
            .filter(|&i| ok(i))
            .min_by_key(|&i| states.get(&up.targets[i].key).map_or(0, |s| s.in_flight))
    }

    fn weighted_random(&self, up: &Upstream, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let total: u64 = (0..up.targets.len())
            .filter(|&i| ok(i))
            .map(|i| u64::from(up.targets[i].weight))
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = self.random() % total;
        for i in (0..up.targets.len()).filter(|&i| ok(i)) {
            let w = u64::from(up.targets[i].weight);
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }

    /// Marks a request in flight to `target` (least-connections counts these).
    pub fn start(&self, target: &Target) -> InFlight<'_> {
        self.targets
            .borrow_mut()
            .entry(target.key)
            .or_default()
            .in_flight += 1;
        InFlight {
            balancer: self,
            key: target.key,
        }
    }

    /// Passive health: `threshold` consecutive failures mark a target down
    /// for `interval`; any success clears the count.
    pub fn record(&self, target: &Target, health: Option<PassiveHealth>, ok: bool) {
        let mut states = self.targets.borrow_mut();
        let s = states.entry(target.key).or_default();
        if ok {
            s.failures = 0;
            s.down_until = None;
            return;
        }
        s.failures += 1;
        if let Some(h) = health {
            if s.failures >= h.threshold.max(1) {
                s.failures = 0;
                s.down_until = Some(Instant::now() + Duration::from_secs(h.interval_secs.max(1)));
                log::warn!(
                    "target {}:{} marked down for {}s after {} consecutive failures",
                    target.host,
                    target.port,
                    h.interval_secs,
                    h.threshold
                );
            }
        }
    }

    /// In-flight requests to a target on this shard.
    pub fn in_flight(&self, key: u64) -> u32 {
        self.targets.borrow().get(&key).map_or(0, |s| s.in_flight)
    }
}
