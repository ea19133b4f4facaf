//! Rate limits counted across the nodes of a cluster: Redis keeps the
//! window, each node takes tokens from it in leases.
//!
//! **Redis side** ([`TAKE`], one atomic script per lease): the key's window
//! is a hash of `BUCKETS + 1` buckets of `window / BUCKETS` each, on Redis's
//! own clock (`TIME`, so node clocks do not matter). A request for `want`
//! tokens gets `min(want, limit - sum of the buckets)`, counted in the
//! current bucket, and learns how long that bucket still lasts.
//!
//! **Node side** ([`Leases`]): the key's owner shard (the cross-shard owner
//! of `plugin::counters`) keeps the tokens it was granted and admits from
//! them without asking Redis, until they run out or the bucket they were
//! counted in ends — measured from when the request was *sent*, so the
//! lease always ends before Redis's bucket does. A lease asks for
//! `max(cost, limit / 20)` tokens: a busy key costs one round trip per
//! twentieth of its limit per node. When Redis grants less than asked, the
//! window is full: the node denies locally until the lease ends, so a
//! refused flood costs one round trip per node and bucket, not one per
//! request.
//!
//! **Bound.** Every admitted request used a token counted in a bucket that
//! was current when it was admitted, and Redis never lets the `BUCKETS + 1`
//! newest buckets hold more than `limit`; any interval of length `window`
//! touches at most `BUCKETS + 1` buckets, so **no interval of length
//! `window` admits more than `limit` across all nodes and shards** — the
//! same zero error bound as one node. The price is under-admission: tokens
//! of a lease that ends unused are lost for the window, at most
//! `limit / 20 - 1` per node and key per bucket.
//!
//! **Token budgets** (`token_rate_limiter`) take their estimate the same
//! way and settle later: tokens given back return to the lease they came
//! from while it lasts (afterwards they stay counted: under-admission
//! only); tokens used beyond the estimate come out of the lease, or are
//! charged to Redis's window without a limit check (they were used).
//!
//! **Redis unreachable**: the owner shard decides with its own exact window
//! instead (`limit` per node, so up to `nodes × limit` per window across the
//! cluster), and tries Redis again after [`RETRY`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use redis_protocol::resp2::types::OwnedFrame;

use super::resp::{int, Client, Error};
use super::Target;
use crate::plugin::counters::{Decision, BUCKETS};

/// A limiter call's bound: a slow Redis must not hold requests long (and
/// the asking shard waits at most `counters`' 2 s for its owner).
const TIMEOUT: Duration = Duration::from_millis(750);
/// After a failure, requests use the local windows this long before Redis
/// is tried again.
pub const RETRY: Duration = Duration::from_secs(1);
/// Leases kept before the ended ones are dropped.
const KEEP: usize = 4096;

/// KEYS: the window hash. ARGV: limit, window µs, wanted tokens, buckets.
/// Returns {granted, remaining, µs left in the bucket, reset µs, retry µs}.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, win, want, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local bw = math.max(1, math.floor(win / n))
local b = math.floor(now / bw)
local h = redis.call('HGETALL', KEYS[1])
local sum, oldest = 0, b
for i = 1, #h, 2 do
  local k = tonumber(h[i])
  if k < b - n then
    redis.call('HDEL', KEYS[1], h[i])
  else
    sum = sum + tonumber(h[i + 1])
    if k < oldest then oldest = k end
  end
end
local grant = math.max(0, math.min(want, limit - sum))
if grant > 0 then redis.call('HINCRBY', KEYS[1], string.format('%d', b), grant) end
redis.call('PEXPIRE', KEYS[1], math.floor(win / 1000) + 1000)
return {grant, math.max(0, limit - sum - grant), (b + 1) * bw - now, (b + n + 1) * bw - now, (oldest + n + 1) * bw - now}
";

/// A decision's `bucket` with this bit set names a lease, not a local
/// bucket (local bucket numbers are microseconds divided by a width).
const LEASE_BIT: u64 = 1 << 63;

/// Whether a decision's `bucket` names a lease.
pub fn is_lease(bucket: u64) -> bool {
    bucket & LEASE_BIT != 0
}

struct Lease {
    /// Changes whenever `ends` is set afresh: tokens given back to an older
    /// lease are not added to a newer one (they were counted in another
    /// bucket).
    id: u64,
    window_us: u64,
    tokens: u64,
    ends: Instant,
    /// What Redis had left after the grant (for `X-RateLimit-Remaining`).
    remaining: u64,
    /// When everything counted so far has left the window.
    reset: Instant,
    /// Redis had no more than it granted: deny until the lease ends,
    /// without asking again (nothing leaves Redis's window before then).
    exhausted: bool,
    /// When a denied request would fit (Redis's estimate).
    retry: Instant,
}

/// One shard's leases and its own Redis connection.
pub struct Leases {
    client: Client,
    leases: RefCell<HashMap<u64, Lease>>,
    /// One refill at a time; a waiter looks at the lease again first.
    turn: Semaphore,
    down_until: Cell<Option<Instant>>,
    next_id: Cell<u64>,
    /// Round trips to Redis (for the measurement in tests/cluster.rs).
    pub refills: Cell<u64>,
}

impl Leases {
    pub fn new(target: Target) -> Leases {
        Leases {
            client: Client::new(target, TIMEOUT),
            leases: RefCell::new(HashMap::new()),
            turn: Semaphore::new(1),
            down_until: Cell::new(None),
            next_id: Cell::new(0),
            refills: Cell::new(0),
        }
    }

    /// Takes `cost` tokens of `key` from the lease, refilling it from Redis
    /// when needed; `None` when Redis cannot be reached (the caller decides
    /// locally).
    pub async fn take(&self, key: u64, cost: u64, limit: u64, window_us: u64) -> Option<Decision> {
        if let Some(d) = self.spend_lease(key, cost) {
            return Some(d);
        }
        let _turn = self.turn.acquire_permit(1).await.ok()?;
        if let Some(d) = self.spend_lease(key, cost) {
            return Some(d);
        }
        if self.down() {
            return None;
        }
        let want = cost.max(limit / 20).max(1);
        let sent = Instant::now();
        self.refills.set(self.refills.get() + 1);
        match self.refill(key, limit, window_us, want).await {
            Ok(r) => {
                if self.down_until.take().is_some() {
                    log::warn!("{}: rate limits are global again", self.client.target.shown);
                }
                let us = Duration::from_micros;
                let mut leases = self.leases.borrow_mut();
                if leases.len() >= KEEP {
                    let now = Instant::now();
                    leases.retain(|_, l| l.ends > now);
                }
                let ends = sent + us(r[2]);
                let lease = leases.entry(key).or_insert(Lease {
                    id: 0,
                    window_us,
                    tokens: 0,
                    ends,
                    remaining: 0,
                    reset: sent,
                    exhausted: false,
                    retry: sent,
                });
                if lease.ends <= sent {
                    lease.tokens = 0;
                }
                // Older tokens end with their own bucket: the lease ends
                // with the earliest.
                if lease.tokens > 0 {
                    lease.ends = lease.ends.min(ends);
                } else {
                    lease.ends = ends;
                    lease.id = self.next_id.get() + 1;
                    self.next_id.set(lease.id);
                }
                lease.window_us = window_us;
                lease.tokens += r[0];
                lease.remaining = r[1];
                lease.reset = sent + us(r[3]);
                lease.exhausted = r[0] < want;
                lease.retry = sent + us(r[4]);
                drop(leases);
                self.spend_lease(key, cost)
            }
            Err(e) => {
                log::warn!(
                    "{}: {e}; rate limits count per node for {RETRY:?}",
                    self.client.target.shown
                );
                self.down_until.set(Some(Instant::now() + RETRY));
                None
            }
        }
    }

    /// Redis failed less than `RETRY` ago.
    fn down(&self) -> bool {
        self.down_until.get().is_some_and(|t| Instant::now() < t)
    }

    fn spend_lease(&self, key: u64, cost: u64) -> Option<Decision> {
        let mut leases = self.leases.borrow_mut();
        let lease = leases.get_mut(&key)?;
        let now = Instant::now();
        if lease.ends <= now {
            return None;
        }
        let allowed = lease.tokens >= cost;
        if !allowed && !lease.exhausted {
            return None;
        }
        if allowed {
            lease.tokens -= cost;
        }
        let since = |t: Instant| t.saturating_duration_since(now).as_micros() as u64;
        Some(Decision {
            allowed,
            remaining: lease.remaining + lease.tokens,
            reset_us: since(lease.reset),
            retry_us: if allowed {
                0
            } else {
                since(lease.retry).max(since(lease.ends))
            },
            bucket: LEASE_BIT | lease.id,
            unavailable: false,
            leased: 0,
        })
    }

    /// Settles a grant of lease `lease` (a token budget's reservation): a
    /// negative `delta` (fewer tokens used than reserved) goes back to the
    /// lease while it is the same and lasts (else it is lost: only
    /// under-admission); a positive one is taken from the lease, and what
    /// the lease cannot cover is charged to Redis's window unconditionally.
    pub async fn settle(&self, key: u64, lease: u64, delta: i64) {
        let (owed, window_us) = {
            let mut leases = self.leases.borrow_mut();
            let Some(l) = leases.get_mut(&key) else {
                return;
            };
            let same = LEASE_BIT | l.id == lease && l.ends > Instant::now();
            if delta < 0 {
                if same {
                    l.tokens += delta.unsigned_abs();
                }
                return;
            }
            let from_lease = if same { l.tokens.min(delta as u64) } else { 0 };
            l.tokens -= from_lease;
            (delta as u64 - from_lease, l.window_us)
        };
        if owed > 0 && !self.down() {
            // No limit: the tokens were used already.
            if let Err(e) = self.refill(key, u64::MAX >> 12, window_us, owed).await {
                log::warn!(
                    "{}: cannot charge {owed} tokens: {e}",
                    self.client.target.shown
                );
            }
        }
    }

    async fn refill(
        &self,
        key: u64,
        limit: u64,
        window_us: u64,
        want: u64,
    ) -> Result<[u64; 5], Error> {
        let name = format!("ringgate:rl:{key:016x}");
        let (limit, window, want, buckets) = (
            limit.to_string(),
            window_us.to_string(),
            want.to_string(),
            BUCKETS.to_string(),
        );
        let reply = self
            .client
            .call(&[
                b"EVAL",
                TAKE.as_bytes(),
                b"1",
                name.as_bytes(),
                limit.as_bytes(),
                window.as_bytes(),
                want.as_bytes(),
                buckets.as_bytes(),
            ])
            .await?;
        let OwnedFrame::Array(v) = reply else {
            return Err(Error::Reply(format!("unexpected reply {reply:?}")));
        };
        let mut out = [0u64; 5];
        if v.len() != out.len() {
            return Err(Error::Reply(format!("unexpected reply {v:?}")));
        }
        for (o, f) in out.iter_mut().zip(&v) {
            *o = int(f)?.max(0) as u64;
        }
        Ok(out)
    }
}
