//! Exact rate-limit counters across shards.
//!
//! **Design.** Every counter key (a plugin's scope, the dimension and its
//! value, hashed to 64 bits) has one owner shard, `key % shards`. Only the
//! owner keeps the key's window and decides; another shard asks it over
//! glommio's cross-core channel mesh (one `Ask`, one `Answer`) and waits.
//! Keys owned by the asking shard are decided at once, without a message.
//! Every admission is counted by the one place that decides.
//!
//! **The window** ([`Window`]) is a sliding window kept as `N + 1` buckets
//! of `window / N` each. A request at time `t` is admitted only if the sum of
//! the current bucket and the `N` before it, plus its cost, stays within the
//! limit. Those buckets cover `[t - window, t]` and more, so **no interval of
//! length `window` ever admits more than `limit`: the error bound is zero**
//! (over all shards and connections, because one owner counts). The price is
//! a little under-admission: a request may be refused for a count up to one
//! bucket (`window / N`) older than the window.
//!
//! **Leases** ([`Counters::take_one`], unit costs only): when the window has
//! plenty left, the owner admits a remote request together with up to
//! [`LEASE_MAX`] more permits, counted at once in the current bucket, and
//! the asking shard spends them locally — but only while that same bucket is
//! current (every shard computes buckets from one shared epoch). Within one
//! bucket the window's sums do not depend on when a count was added, so a
//! permit spent later in the bucket is exactly an admission the owner made
//! then: **the bound stays zero**. Permits left when the bucket ends are
//! lost, which can only under-admit; a lease is at most `remaining /
//! (shards × BUCKETS × 8)`, so that loss is at most ~6% of the limit per
//! window in the worst case, and nothing for limits under ~320 per shard
//! (no lease is granted). Token budgets (costs settled later) never lease.
//!
//! **Cluster mode** (`--store redis://`): `take_shared` (and `take_one`) let
//! the owner decide from the node's lease of a window Redis keeps for all
//! nodes (`cluster::limits`); the permit leases above are not used then.
//!
//! **Cost.** A request whose key another shard owns waits one cross-core
//! round trip (a few microseconds on busy shards; the owner's executor may
//! have to be woken) unless a lease covers it. A denied check on one dimension does not give back
//! what earlier dimensions of the same request took (conservative: it can
//! only under-admit). If the owner cannot be reached (shutting down), the
//! check fails closed with 503.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};

pub use crate::cluster::limits::{Decision, BUCKETS};

/// Messages in flight per shard pair before senders yield.
const CHANNEL: usize = 4096;
/// The longest a receiving task waits before looking at its channel again.
/// How long a shard waits for an owner's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// An answer slower than this is counted late (`/metrics`). An owner
/// answers in microseconds; one that takes the wake-up bell's interval was
/// woken by the bell (`runtime/bell.rs`: glommio lost the channel's
/// wake-up) or was overloaded.
const LATE: Duration = crate::runtime::bell::INTERVAL;
/// The most permits one lease carries.
pub const LEASE_MAX: u64 = 64;

/// The instant every shard counts buckets from, so a bucket number means the
/// same time span on every shard.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A bucketed sliding window (see the module docs).
#[derive(Debug, Clone)]
pub struct Window {
    counts: [u64; BUCKETS as usize + 1],
    /// Absolute index of the newest bucket.
    head: u64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            counts: [0; BUCKETS as usize + 1],
            head: 0,
        }
    }
}

fn bucket_width(window_us: u64) -> u64 {
    (window_us / BUCKETS).max(1)
}

impl Window {
    fn slot(b: u64) -> usize {
        (b % (BUCKETS + 1)) as usize
    }

    fn advance(&mut self, b: u64) {
        if b <= self.head {
            return;
        }
        let steps = (b - self.head).min(BUCKETS + 1);
        for i in 0..steps {
            self.counts[Self::slot(b - i)] = 0;
        }
        self.head = b;
    }

    fn sum(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Counts `cost` at `now_us` if it fits under `limit`.
    pub fn take(&mut self, now_us: u64, cost: u64, limit: u64, window_us: u64) -> Decision {
        let bw = bucket_width(window_us);
        let b = now_us / bw;
        self.advance(b);
        let sum = self.sum();
        let reset_us = (b + BUCKETS + 1) * bw - now_us;
        if sum.saturating_add(cost) <= limit {
            self.counts[Self::slot(b)] += cost;
            return Decision {
                allowed: true,
                remaining: limit - sum - cost,
                reset_us,
                retry_us: 0,
                bucket: b,
                unavailable: false,
                leased: 0,
            };
        }
        // Denied: when will enough have left the window?
        let mut retry_us = reset_us;
        if cost <= limit {
            let mut freed = 0;
            for i in b.saturating_sub(BUCKETS)..=b {
                freed += self.counts[Self::slot(i)];
                if sum - freed + cost <= limit {
                    retry_us = (i + BUCKETS + 1) * bw - now_us;
                    break;
                }
            }
        }
        Decision {
            allowed: false,
            remaining: limit.saturating_sub(sum),
            reset_us,
            retry_us,
            bucket: b,
            unavailable: false,
            leased: 0,
        }
    }

    /// Corrects what was counted in `bucket` by `delta` (a settled token
    /// reservation); a bucket that has left the window is not touched.
    pub fn adjust(&mut self, bucket: u64, delta: i64) {
        if bucket > self.head || bucket + BUCKETS < self.head {
            return;
        }
        let c = &mut self.counts[Self::slot(bucket)];
        *c = c.saturating_add_signed(delta);
    }

    fn expired(&self, now_us: u64, window_us: u64) -> bool {
        now_us / bucket_width(window_us) > self.head + BUCKETS
    }
}

/// Between shards.
#[derive(Debug)]
pub enum Msg {
    Ask {
        from: usize,
        id: u64,
        key: u64,
        cost: u64,
        limit: u64,
        window_us: u64,
        /// Counted across the cluster (`take_shared`).
        shared: bool,
        /// A unit cost that may come with a lease.
        lease: bool,
    },
    Answer {
        id: u64,
        decision: Decision,
    },
    Adjust {
        key: u64,
        bucket: u64,
        delta: i64,
    },
}

/// The mesh every shard joins at start (only with more than one shard).
pub type Mesh = MeshBuilder<Msg, Full>;

pub fn mesh(shards: usize) -> Option<Mesh> {
    (shards > 1).then(|| MeshBuilder::full(shards, CHANNEL))
}

#[derive(Default)]
struct Slot {
    decision: Cell<Option<Decision>>,
    waker: RefCell<Option<Waker>>,
}

struct Owned {
    window: Window,
    window_us: u64,
}

/// Permits an owner leased to this shard for one key and one bucket.
struct Lease {
    bucket: u64,
    permits: u64,
    limit: u64,
    window_us: u64,
    /// What the owner reported left in the window when it granted them.
    remaining: u64,
}

/// One shard's counters: the windows of the keys it owns, and its links to
/// the other owners.
pub struct Counters {
    index: usize,
    /// This shard's place in the mesh (join order, not the shard index).
    me: Cell<usize>,
    shards: Cell<usize>,
    epoch: Instant,
    owned: RefCell<HashMap<u64, Owned>>,
    senders: RefCell<Option<Senders<Msg>>>,
    waiting: RefCell<HashMap<u64, Rc<Slot>>>,
    leases: RefCell<HashMap<u64, Lease>>,
    next_id: Cell<u64>,
    inserts: Cell<u64>,
    /// Answers from an owner shard that took longer than [`LATE`].
    late: Cell<u64>,
    /// Cluster mode: leases of the windows Redis keeps for all nodes.
    cluster: Option<Rc<crate::cluster::limits::Leases>>,
    /// Cluster mode: this shard's connection for the response cache's
    /// shared tier (`plugin::cache`).
    pub cache_redis: Option<Rc<crate::cluster::resp::RedisClient>>,
}

impl Counters {
    pub fn new(index: usize) -> Counters {
        Counters {
            index,
            me: Cell::new(0),
            shards: Cell::new(1),
            epoch: epoch(),
            owned: RefCell::new(HashMap::new()),
            senders: RefCell::new(None),
            waiting: RefCell::new(HashMap::new()),
            leases: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            inserts: Cell::new(0),
            late: Cell::new(0),
            cluster: None,
            cache_redis: None,
        }
    }

    /// Answers from owner shards that came later than [`LATE`], or never.
    pub fn late_answers(&self) -> u64 {
        self.late.get()
    }

    /// Cluster mode: `take_shared` counts across every node through Redis.
    pub fn shared(mut self, redis: Option<crate::cluster::RedisUrl>) -> Counters {
        self.cache_redis = redis.as_ref().map(|t| {
            Rc::new(crate::cluster::resp::RedisClient::new(
                t.clone(),
                crate::plugin::cache::REDIS_TIMEOUT,
            ))
        });
        self.cluster = redis.map(|t| Rc::new(crate::cluster::limits::Leases::new(t)));
        self
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Joins the mesh (waits until every shard has); the receivers go to
    /// [`Counters::serve`].
    pub async fn join(&self, mesh: Mesh) -> Option<Receivers<Msg>> {
        match mesh.join().await {
            Ok((senders, receivers)) => {
                self.shards.set(senders.nr_consumers());
                self.me.set(senders.peer_id());
                *self.senders.borrow_mut() = Some(senders);
                Some(receivers)
            }
            Err(e) => {
                log::error!("shard {}: cannot join the counter mesh: {e}", self.index);
                None
            }
        }
    }

    /// Answers the other shards until their links close.
    pub async fn serve(self: Rc<Self>, mut receivers: Receivers<Msg>) {
        let mut tasks = Vec::new();
        for (peer, rx) in receivers.streams() {
            let me = self.clone();
            tasks.push(glommio::spawn_local(async move {
                // A plain `recv`: glommio 0.9 registers a waker clone with the
                // reactor on every pending poll and never removes it when the
                // future is dropped, so racing `recv` against a timer leaks a
                // clone per tick until the task's refcount overflows.
                while let Some(msg) = rx.recv().await {
                    match msg {
                        // May wait for Redis: not on the link's own task.
                        Msg::Ask {
                            from,
                            id,
                            key,
                            cost,
                            limit,
                            window_us,
                            shared: true,
                            ..
                        } => {
                            let me = me.clone();
                            glommio::spawn_local(async move {
                                let decision = me.decide_shared(key, cost, limit, window_us).await;
                                me.send(from, Msg::Answer { id, decision }).await;
                            })
                            .detach();
                        }
                        msg => me.receive(msg).await,
                    }
                }
                log::debug!("shard {}: counter link from {peer} closed", me.index);
            }));
        }
        for t in tasks {
            t.await;
        }
    }

    /// Stops asking others (shutdown).
    pub fn leave(&self) {
        if let Some(s) = self.senders.borrow_mut().take() {
            s.close();
        }
    }

    async fn receive(&self, msg: Msg) {
        match msg {
            Msg::Ask {
                from,
                id,
                key,
                cost,
                limit,
                window_us,
                lease,
                ..
            } => {
                let decision = self.decide(key, cost, limit, window_us, lease);
                self.send(from, Msg::Answer { id, decision }).await;
            }
            Msg::Answer { id, decision } => {
                if let Some(slot) = self.waiting.borrow_mut().remove(&id) {
                    slot.decision.set(Some(decision));
                    if let Some(w) = slot.waker.borrow_mut().take() {
                        w.wake();
                    }
                }
            }
            Msg::Adjust { key, bucket, delta } if crate::cluster::limits::is_lease(bucket) => {
                self.adjust_lease(key, bucket, delta).await;
            }
            Msg::Adjust { key, bucket, delta } => {
                if let Some(o) = self.owned.borrow_mut().get_mut(&key) {
                    o.window.adjust(bucket, delta);
                }
            }
        }
    }

    /// Sends without ever racing another task on the same sender: `try_send`
    /// is synchronous; a full channel yields and tries again.
    async fn send(&self, to: usize, mut msg: Msg) -> bool {
        loop {
            let full = {
                let senders = self.senders.borrow();
                let Some(s) = senders.as_ref() else {
                    return false;
                };
                match s.try_send_to(to, msg) {
                    Ok(()) => return true,
                    Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(m))) => m,
                    Err(_) => return false,
                }
            };
            msg = full;
            futures_lite::future::yield_now().await;
        }
    }

    fn owner(&self, key: u64) -> usize {
        (key % self.shards.get() as u64) as usize
    }

    /// Decides for the owned `key`; `lease`: a remote unit cost, which may
    /// get permits to spend locally in the same bucket.
    fn decide(&self, key: u64, cost: u64, limit: u64, window_us: u64, lease: bool) -> Decision {
        let now = self.now_us();
        let mut owned = self.owned.borrow_mut();
        let n = self.inserts.get() + 1;
        self.inserts.set(n);
        if n % 4096 == 0 {
            owned.retain(|_, o| !o.window.expired(now, o.window_us));
        }
        let o = owned.entry(key).or_insert_with(|| Owned {
            window: Window::default(),
            window_us,
        });
        if o.window_us != window_us {
            // The window was reconfigured: start it afresh.
            o.window = Window::default();
            o.window_us = window_us;
        }
        let mut d = o.window.take(now, cost, limit, window_us);
        if lease && d.allowed {
            let extra = (d.remaining / (self.shards.get() as u64 * BUCKETS * 8)).min(LEASE_MAX);
            if extra > 0 {
                let more = o.window.take(now, extra, limit, window_us);
                debug_assert!(more.allowed && more.bucket == d.bucket);
                d.remaining = more.remaining;
                d.leased = extra;
            }
        }
        d
    }

    /// [`Counters::take`] for a unit cost, served from a lease when this
    /// shard holds one for `key` in the current bucket.
    /// In cluster mode, [`Counters::take_shared`] (the node's Redis lease is
    /// the owner's).
    pub async fn take_one(&self, key: u64, limit: u64, window: Duration) -> Decision {
        if self.cluster.is_some() {
            return self.take_shared(key, 1, limit, window).await;
        }
        let window_us = (window.as_micros() as u64).max(1);
        if self.owner(key) == self.me.get() {
            return self.decide(key, 1, limit, window_us, false);
        }
        let now = self.now_us();
        let bw = bucket_width(window_us);
        let b = now / bw;
        {
            let mut leases = self.leases.borrow_mut();
            if let Some(l) = leases.get_mut(&key) {
                if l.bucket == b && l.limit == limit && l.window_us == window_us && l.permits > 0 {
                    l.permits -= 1;
                    return Decision {
                        allowed: true,
                        remaining: l.remaining + l.permits,
                        reset_us: (b + BUCKETS + 1) * bw - now,
                        retry_us: 0,
                        bucket: b,
                        unavailable: false,
                        leased: 0,
                    };
                }
                leases.remove(&key);
            }
        }
        let d = self.ask(key, 1, limit, window_us, true, false).await;
        if d.leased > 0 {
            let mut leases = self.leases.borrow_mut();
            if leases.len() >= 4096 {
                leases.retain(|_, l| l.bucket == b);
            }
            // Concurrent asks each bring a lease: keep the permits of all
            // those for the same bucket (dropping them would under-admit).
            let l = leases.entry(key).or_insert(Lease {
                bucket: d.bucket,
                permits: 0,
                limit,
                window_us,
                remaining: d.remaining,
            });
            if (l.bucket, l.limit, l.window_us) != (d.bucket, limit, window_us) {
                *l = Lease {
                    bucket: d.bucket,
                    permits: 0,
                    limit,
                    window_us,
                    remaining: d.remaining,
                };
            }
            l.permits += d.leased;
            l.remaining = l.remaining.min(d.remaining);
        }
        Decision {
            remaining: d.remaining + d.leased,
            ..d
        }
    }

    /// The owner's decision in cluster mode: from the node's lease of the
    /// window Redis keeps, or from its own window while Redis is unreachable.
    async fn decide_shared(&self, key: u64, cost: u64, limit: u64, window_us: u64) -> Decision {
        if let Some(leases) = &self.cluster {
            if let Some(d) = leases.take(key, cost, limit, window_us).await {
                return d;
            }
        }
        self.decide(key, cost, limit, window_us, false)
    }

    /// Takes `cost` from `key`'s window of `limit` per `window`, asking the
    /// key's owner shard when that is another one.
    pub async fn take(&self, key: u64, cost: u64, limit: u64, window: Duration) -> Decision {
        self.take_in(key, cost, limit, window, false).await
    }

    /// `take`, counted across every node of a cluster (`--store redis://`,
    /// see `cluster::limits`); the same as `take` on a single node.
    pub async fn take_shared(&self, key: u64, cost: u64, limit: u64, window: Duration) -> Decision {
        self.take_in(key, cost, limit, window, self.cluster.is_some())
            .await
    }

    async fn take_in(
        &self,
        key: u64,
        cost: u64,
        limit: u64,
        window: Duration,
        shared: bool,
    ) -> Decision {
        let window_us = (window.as_micros() as u64).max(1);
        if self.owner(key) == self.me.get() {
            return if shared {
                self.decide_shared(key, cost, limit, window_us).await
            } else {
                self.decide(key, cost, limit, window_us, false)
            };
        }
        self.ask(key, cost, limit, window_us, false, shared).await
    }

    /// Asks `key`'s owner (another shard) and waits for the answer.
    async fn ask(
        &self,
        key: u64,
        cost: u64,
        limit: u64,
        window_us: u64,
        lease: bool,
        shared: bool,
    ) -> Decision {
        let owner = self.owner(key);
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        let slot = Rc::new(Slot::default());
        self.waiting.borrow_mut().insert(id, slot.clone());
        let ask = Msg::Ask {
            from: self.me.get(),
            id,
            key,
            cost,
            limit,
            window_us,
            lease,
            shared,
        };
        let unavailable = Decision {
            allowed: false,
            remaining: 0,
            reset_us: 0,
            retry_us: 1_000_000,
            bucket: 0,
            unavailable: true,
            leased: 0,
        };
        let asked = Instant::now();
        if !self.send(owner, ask).await {
            self.waiting.borrow_mut().remove(&id);
            return unavailable;
        }
        let answer = futures_lite::future::poll_fn(|cx| match slot.decision.get() {
            Some(d) => Poll::Ready(d),
            None => {
                *slot.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        });
        let answer = crate::runtime::conn::timed(ASK_TIMEOUT, answer).await;
        if asked.elapsed() >= LATE {
            self.late.set(self.late.get() + 1);
        }
        match answer {
            Some(d) => d,
            None => {
                self.waiting.borrow_mut().remove(&id);
                log::warn!("shard {}: no answer from counter owner {owner}", self.index);
                unavailable
            }
        }
    }

    /// Corrects what `take` counted (fire and forget).
    pub async fn adjust(&self, key: u64, bucket: u64, delta: i64) {
        if delta == 0 {
            return;
        }
        let owner = self.owner(key);
        if owner == self.me.get() {
            if crate::cluster::limits::is_lease(bucket) {
                self.adjust_lease(key, bucket, delta).await;
            } else if let Some(o) = self.owned.borrow_mut().get_mut(&key) {
                o.window.adjust(bucket, delta);
            }
            return;
        }
        self.send(owner, Msg::Adjust { key, bucket, delta }).await;
    }

    /// Settles what a lease granted (on the owner): see
    /// `cluster::limits::Leases::settle`.
    async fn adjust_lease(&self, key: u64, lease: u64, delta: i64) {
        if let Some(leases) = &self.cluster {
            leases.settle(key, lease, delta).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_limit_in_any_window() {
        // 1000 µs window, limit 5; requests every 7 µs for a while.
        let mut w = Window::default();
        let mut admitted = Vec::new();
        for t in (0..20_000).step_by(7) {
            if w.take(t, 1, 5, 1000).allowed {
                admitted.push(t);
            }
        }
        for (i, &t) in admitted.iter().enumerate() {
            let in_window = admitted[i..].iter().take_while(|&&u| u < t + 1000).count();
            assert!(
                in_window <= 5,
                "{in_window} admitted in [{t}, {})",
                t + 1000
            );
        }
        // And it does admit: close to 5 per window over 20 windows.
        assert!(admitted.len() >= 5 * 20 * 9 / 10, "{}", admitted.len());
    }

    #[test]
    fn exact_burst_and_retry() {
        let mut w = Window::default();
        let ok = (0..200)
            .filter(|_| w.take(10, 1, 50, 10_000_000).allowed)
            .count();
        assert_eq!(ok, 50);
        let d = w.take(10, 1, 50, 10_000_000);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        // Everything was counted in bucket 0: it leaves after 21 buckets.
        assert_eq!(d.retry_us, 21 * 500_000 - 10);
        assert!(w.take(10_500_000, 1, 50, 10_000_000).allowed);
    }

    #[test]
    fn weighted_costs_and_adjust() {
        let mut w = Window::default();
        let d = w.take(0, 60, 100, 1_000_000);
        assert!(d.allowed);
        assert!(!w.take(1, 50, 100, 1_000_000).allowed);
        w.adjust(d.bucket, -20);
        assert!(w.take(2, 50, 100, 1_000_000).allowed);
        assert!(!w.take(2, 101, 100, 1_000_000).allowed);
    }
}
