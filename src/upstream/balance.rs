//! Target choice per upstream, per shard: round-robin, smooth weighted
//! round-robin (nginx's), least-connections and weighted random, skipping
//! targets that are not healthy:
//!
//! - **passive health**: `threshold` consecutive failures mark a target down
//!   for `interval` seconds;
//! - **active health**: shard 0's probes ([`super::health`]) said it is down;
//! - **circuit breaker** (per target, per shard — each shard judges from the
//!   requests it sent): open when the failures among the last `window`
//!   outcomes reach `failure_ratio`; after `cooldown` one request goes
//!   through (half-open); its success closes the breaker, its failure opens
//!   it again.
//!
//! State lives in a `Vec` indexed by [`Target::slot`], so a health lookup is
//! an index and a key compare. A configuration change ([`Balancer::adopt`])
//! rebuilds the `Vec` in the new slot order, carrying every target's state
//! over by its stable key; a request still on the previous snapshot finds
//! its target through the key map instead.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::config::snapshot::{Algorithm, BreakerSettings, Snapshot, Target, Upstream};

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

/// One target's verdicts on one shard (see [`Balancer::health`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetHealth {
    /// The active checks report it down (the same verdict on every shard).
    pub active_down: bool,
    /// Out of rotation after consecutive failures (passive health).
    pub passive_down: bool,
    /// Its circuit breaker refuses requests.
    pub breaker_open: bool,
}

#[derive(Default)]
struct TargetState {
    /// The target's stable key (0: an unused slot).
    key: u64,
    in_flight: u32,
    failures: u32,
    down_until: Option<Instant>,
    current_weight: i64,
    /// Active health checks report it down.
    active_down: bool,
    breaker: Breaker,
}

/// A circuit breaker's memory: the last outcomes (bit set = failure).
#[derive(Default)]
struct Breaker {
    outcomes: u64,
    count: u32,
    state: BreakerState,
}

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
enum BreakerState {
    #[default]
    Closed,
    /// No request until `until`; then one probe.
    Open { until: Instant, cooldown: Duration },
    /// The probe is out; another may go when `deadline` passes without an
    /// outcome (the probe's client went away).
    HalfOpen {
        deadline: Instant,
        cooldown: Duration,
    },
}

impl Breaker {
    fn admits(&self, now: &impl Fn() -> Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open { until, .. } => now() >= until,
            BreakerState::HalfOpen { deadline, .. } => now() >= deadline,
        }
    }

    /// A request goes to the target: an open breaker whose cool-down passed
    /// lets it through as the half-open probe.
    fn on_start(&mut self) {
        let cooldown = match self.state {
            BreakerState::Closed => return,
            BreakerState::Open { cooldown, .. } | BreakerState::HalfOpen { cooldown, .. } => {
                cooldown
            }
        };
        if self.admits(&Instant::now) {
            self.state = BreakerState::HalfOpen {
                deadline: Instant::now() + cooldown,
                cooldown,
            };
        }
    }

    /// Counts an outcome; `Some(what changed)` when the state did.
    fn record(&mut self, settings: Option<&BreakerSettings>, ok: bool) -> Option<&'static str> {
        let Some(b) = settings else {
            *self = Breaker::default();
            return None;
        };
        let open = |cooldown: Duration| BreakerState::Open {
            until: Instant::now() + cooldown,
            cooldown,
        };
        match self.state {
            BreakerState::HalfOpen { .. } if ok => {
                *self = Breaker::default();
                Some("closed: the half-open probe succeeded")
            }
            BreakerState::HalfOpen { .. } => {
                self.state = open(b.cooldown);
                Some("opened again: the half-open probe failed")
            }
            // A request sent before the breaker opened.
            BreakerState::Open { .. } => None,
            BreakerState::Closed => {
                self.outcomes = (self.outcomes << 1) | u64::from(!ok);
                self.count = (self.count + 1).min(b.window);
                let mask = if b.window >= 64 {
                    u64::MAX
                } else {
                    (1u64 << b.window) - 1
                };
                let failed = (self.outcomes & mask).count_ones();
                if !ok
                    && self.count >= b.min_requests
                    && f64::from(failed) >= b.failure_ratio * f64::from(self.count)
                {
                    self.outcomes = 0;
                    self.count = 0;
                    self.state = open(b.cooldown);
                    return Some("opened: failure ratio reached");
                }
                None
            }
        }
    }
}

pub struct Balancer {
    /// Indexed by `Target::slot` of the adopted snapshot, then targets only
    /// older snapshots know.
    states: RefCell<Vec<TargetState>>,
    /// Key → index into `states` (messages, requests on older snapshots).
    slots: RefCell<KeyMap<usize>>,
    /// Keys the active checks report down (outlives snapshot changes).
    active_down: RefCell<KeyMap<()>>,
    cursors: RefCell<KeyMap<usize>>,
    rng: Cell<u64>,
}

/// Counts a request in flight to a target until dropped.
pub struct InFlight<'a> {
    balancer: &'a Balancer,
    key: u64,
    index: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let b = self.balancer;
        let mut states = b.states.borrow_mut();
        if let Some(i) = b.find_key(&states, self.index, self.key) {
            let s = &mut states[i];
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
}

/// Which targets `ok` accepts, without allocating for up to 64 targets.
struct Mask {
    small: [bool; 64],
    many: Vec<bool>,
}

impl Mask {
    fn of(n: usize, ok: impl Fn(usize) -> bool) -> Mask {
        let mut m = Mask {
            small: [false; 64],
            many: Vec::new(),
        };
        if n <= 64 {
            for (i, u) in m.small.iter_mut().enumerate().take(n) {
                *u = ok(i);
            }
        } else {
            m.many = (0..n).map(ok).collect();
        }
        m
    }

    fn get(&self, i: usize) -> bool {
        if self.many.is_empty() {
            self.small[i]
        } else {
            self.many[i]
        }
    }
}

impl Balancer {
    pub fn new(seed: u64) -> Balancer {
        let mut s = [0u8; 8];
        let _ = getrandom::getrandom(&mut s);
        Balancer {
            states: RefCell::default(),
            slots: RefCell::default(),
            active_down: RefCell::default(),
            cursors: RefCell::default(),
            rng: Cell::new(u64::from_le_bytes(s) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
        }
    }

    /// Lays the state out in `snapshot`'s slot order, keeping every known
    /// target's state (called when the shard swaps its view).
    pub fn adopt(&self, snapshot: &Snapshot) {
        let mut old = std::mem::take(&mut *self.states.borrow_mut());
        let old_slots = std::mem::take(&mut *self.slots.borrow_mut());
        let active_down = self.active_down.borrow();
        let mut states: Vec<TargetState> = Vec::new();
        let mut slots = KeyMap::default();
        for t in snapshot.targets() {
            let slot = t.slot as usize;
            if states.len() <= slot {
                states.resize_with(slot + 1, TargetState::default);
            }
            let mut s = match old_slots.get(&t.key) {
                Some(&i) => std::mem::take(&mut old[i]),
                None => TargetState::default(),
            };
            s.key = t.key;
            s.active_down = active_down.contains_key(&t.key);
            states[slot] = s;
            slots.insert(t.key, slot);
        }
        *self.states.borrow_mut() = states;
        *self.slots.borrow_mut() = slots;
    }

    /// Where `key`'s state is: at `slot` when the snapshot matches, else
    /// wherever the key map says.
    fn find_key(&self, states: &[TargetState], slot: usize, key: u64) -> Option<usize> {
        match states.get(slot) {
            Some(s) if s.key == key => Some(slot),
            _ => self.slots.borrow().get(&key).copied(),
        }
    }

    fn find(&self, states: &[TargetState], t: &Target) -> Option<usize> {
        self.find_key(states, t.slot as usize, t.key)
    }

    fn find_or_insert(&self, states: &mut Vec<TargetState>, t: &Target) -> usize {
        if let Some(i) = self.find(states, t) {
            return i;
        }
        states.push(TargetState {
            key: t.key,
            active_down: self.active_down.borrow().contains_key(&t.key),
            ..TargetState::default()
        });
        let i = states.len() - 1;
        self.slots.borrow_mut().insert(t.key, i);
        i
    }

    /// Drops the state of upstreams and active verdicts of targets not in
    /// `live` (target state was already laid out by [`adopt`](Self::adopt)).
    pub fn retain(&self, live: &crate::config::snapshot::LiveKeys) {
        self.active_down
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
        let pick = |strict: bool| -> Option<usize> {
            let usable = Mask::of(up.targets.len(), |i| {
                self.usable(up, &up.targets[i], strict, avoid, &allowed, &now)
            });
            let ok = |i: usize| usable.get(i);
            match up.algorithm {
                Algorithm::RoundRobin => self.round_robin(up, ok),
                Algorithm::WeightedRoundRobin => self.smooth_weighted(up, ok),
                Algorithm::LeastConnections => self.least_connections(up, ok),
                Algorithm::Random => self.weighted_random(up, ok),
            }
        };
        pick(true).or_else(|| if avoid.is_empty() { None } else { pick(false) })
    }

    /// True when some healthy target that `allowed` accepts is not in
    /// `avoid` (a fallback has somewhere new to go). Changes nothing.
    pub fn has_untried(
        &self,
        up: &Upstream,
        avoid: &[u64],
        allowed: impl Fn(&Target) -> bool,
    ) -> bool {
        let now = Cell::new(None);
        up.targets
            .iter()
            .any(|t| self.usable(up, t, true, avoid, &allowed, &now))
    }

    /// True when some healthy target that `allowed` accepts exists, tried or not.
    pub fn has_healthy(&self, up: &Upstream, allowed: impl Fn(&Target) -> bool) -> bool {
        self.has_untried(up, &[], allowed)
    }

    fn usable(
        &self,
        up: &Upstream,
        t: &Target,
        strict: bool,
        avoid: &[u64],
        allowed: &impl Fn(&Target) -> bool,
        now: &Cell<Option<Instant>>,
    ) -> bool {
        t.addr.is_some()
            && allowed(t)
            && (!strict || !avoid.contains(&t.key))
            && self.healthy(up, t, now)
    }

    /// Passive, active and breaker verdicts: an index, a compare, and the
    /// clock only when a verdict has an end.
    fn healthy(&self, up: &Upstream, t: &Target, now: &Cell<Option<Instant>>) -> bool {
        let states = self.states.borrow();
        let Some(i) = self.find(&states, t) else {
            return true;
        };
        let s = &states[i];
        if s.active_down {
            return false;
        }
        let clock = || {
            let n = now.get().unwrap_or_else(Instant::now);
            now.set(Some(n));
            n
        };
        if let Some(until) = s.down_until {
            if clock() < until {
                return false;
            }
        }
        up.breaker.is_none() || s.breaker.admits(&clock)
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
        let mut states = self.states.borrow_mut();
        let mut total = 0i64;
        let mut best: Option<(usize, usize, i64)> = None;
        for (i, t) in up.targets.iter().enumerate() {
            if !ok(i) {
                continue;
            }
            let si = self.find_or_insert(&mut states, t);
            let s = &mut states[si];
            s.current_weight += i64::from(t.weight);
            total += i64::from(t.weight);
            if best.is_none_or(|(_, _, w)| s.current_weight > w) {
                best = Some((i, si, s.current_weight));
            }
        }
        let (i, si, _) = best?;
        states[si].current_weight -= total;
        Some(i)
    }

    fn least_connections(&self, up: &Upstream, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let n = up.targets.len();
        let start = self.cursor(up);
        let states = self.states.borrow();
        (0..n)
            .map(|i| (start + i) % n)
            .filter(|&i| ok(i))
            .min_by_key(|&i| {
                self.find(&states, &up.targets[i])
                    .map_or(0, |si| states[si].in_flight)
            })
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

    /// Marks a request in flight to `target` (least-connections counts
    /// these); an open breaker past its cool-down lets this one through as
    /// its half-open probe.
    pub fn start(&self, target: &Target) -> InFlight<'_> {
        let mut states = self.states.borrow_mut();
        let index = self.find_or_insert(&mut states, target);
        let s = &mut states[index];
        s.in_flight += 1;
        s.breaker.on_start();
        InFlight {
            balancer: self,
            key: target.key,
            index,
        }
    }

    /// Counts an outcome. Passive health (`up`'s `passive_health`):
    /// `threshold` consecutive failures mark the target down for
    /// `interval`; any success clears the count. The circuit breaker
    /// (`up`'s `breaker`) counts it in its window.
    pub fn record(&self, target: &Target, up: Option<&Upstream>, ok: bool) {
        let mut states = self.states.borrow_mut();
        let i = self.find_or_insert(&mut states, target);
        let s = &mut states[i];
        if let Some(change) = s.breaker.record(up.and_then(|u| u.breaker.as_ref()), ok) {
            log::warn!(
                "target {}:{}: circuit breaker {change}",
                target.host,
                target.port
            );
        }
        if ok {
            s.failures = 0;
            s.down_until = None;
            return;
        }
        s.failures += 1;
        if let Some(h) = up.and_then(|u| u.passive_health) {
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

    /// The active checks' verdict on the target with `key` (from shard 0).
    pub fn set_active(&self, key: u64, up: bool) {
        if up {
            self.active_down.borrow_mut().remove(&key);
        } else {
            self.active_down.borrow_mut().insert(key, ());
        }
        let mut states = self.states.borrow_mut();
        let i = self.slots.borrow().get(&key).copied();
        if let Some(s) = i.and_then(|i| states.get_mut(i)) {
            s.active_down = !up;
        }
    }

    /// Every known target's health on this shard, for `/metrics` (the
    /// breaker counts as ejected while it refuses requests: open, or
    /// half-open with its probe in flight).
    pub fn health(&self) -> Vec<(u64, TargetHealth)> {
        let now = Instant::now();
        self.states
            .borrow()
            .iter()
            .map(|s| {
                let h = TargetHealth {
                    active_down: s.active_down,
                    passive_down: s.down_until.is_some_and(|until| now < until),
                    breaker_open: !s.breaker.admits(&|| now),
                };
                (s.key, h)
            })
            .collect()
    }

    /// In-flight requests to a target on this shard.
    pub fn in_flight(&self, target: &Target) -> u32 {
        let states = self.states.borrow();
        self.find(&states, target)
            .map_or(0, |i| states[i].in_flight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ratio: f64, window: u32, min: u32) -> BreakerSettings {
        BreakerSettings {
            failure_ratio: ratio,
            window,
            min_requests: min,
            cooldown: Duration::from_millis(30),
        }
    }

    #[test]
    fn breaker_opens_at_the_ratio_once_enough_are_counted() {
        let s = settings(0.5, 4, 4);
        let mut b = Breaker::default();
        assert!(b.record(Some(&s), false).is_none()); // 1 of 1, under min_requests
        assert!(b.record(Some(&s), true).is_none());
        assert!(b.record(Some(&s), true).is_none());
        assert!(b.record(Some(&s), false).is_some()); // 2 of 4 = 0.5
        assert!(!b.admits(&Instant::now));
    }

    #[test]
    fn breaker_window_forgets_old_failures() {
        let s = settings(0.5, 4, 4);
        let mut b = Breaker::default();
        for ok in [false, true, true, true, true, true, false] {
            assert!(b.record(Some(&s), ok).is_none(), "opened early");
        }
        assert_eq!(b.state, BreakerState::Closed);
    }

    #[test]
    fn breaker_half_open_probe_closes_or_reopens() {
        let s = settings(1.0, 2, 2);
        let mut b = Breaker::default();
        b.record(Some(&s), false);
        assert!(b.record(Some(&s), false).is_some());
        assert!(!b.admits(&Instant::now));
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admits(&Instant::now));
        b.on_start(); // the probe
        assert!(!b.admits(&Instant::now), "a second probe went out");
        assert!(b.record(Some(&s), false).is_some()); // failed: open again
        assert!(matches!(b.state, BreakerState::Open { .. }));
        std::thread::sleep(Duration::from_millis(40));
        b.on_start();
        assert!(b.record(Some(&s), true).is_some()); // succeeded: closed
        assert_eq!(b.state, BreakerState::Closed);
        assert!(b.admits(&|| unreachable!("closed needs no clock")));
    }

    #[test]
    fn breaker_without_settings_is_closed() {
        let mut b = Breaker {
            state: BreakerState::Open {
                until: Instant::now() + Duration::from_secs(60),
                cooldown: Duration::from_secs(60),
            },
            ..Breaker::default()
        };
        b.record(None, false);
        assert_eq!(b.state, BreakerState::Closed);
    }
}
