//! Rate limits counted across the nodes of a cluster: Redis keeps the
//! window, each node takes tokens from it in leases.
//!
//! **Redis side** ([`TAKE`], one atomic script per lease): the key's window
//! is a hash of `BUCKETS + 1` buckets of `window / BUCKETS` each, on Redis's
//! own clock (`TIME`, so node clocks do not matter). A request for `want`
//! tokens gets `min(want, limit - sum of the buckets)`, counted in the
//! current bucket, and learns which bucket that is and how long it still
//! lasts. The same script first gives back the unused tokens of the lease
//! it replaces ([`GIVE`] does that alone, in batches).
//!
//! **Node side** ([`Leases`]): the key's owner shard (the cross-shard owner
//! of `plugin::counters`) keeps the tokens it was granted and admits from
//! them without asking Redis, until they run out or the bucket they were
//! counted in ends — measured from when the request was *sent*, so the
//! lease always ends before Redis's bucket does. When Redis grants less
//! than asked, the window is full: the node denies locally until the lease
//! ends, so a refused flood costs one round trip per node and bucket, not
//! one per request.
//!
//! **Lease size** adapts per key: the first lease asks for one token; a
//! lease used up while its bucket lasts makes the next one twice as large,
//! up to `limit / 20`; a lease that ends with tokens left makes the next
//! one half as large. A busy key costs one round trip per twentieth of its
//! limit per node (after `log2(limit / 20)` growing ones); a quiet one asks
//! for what it uses.
//!
//! **Giving back.** A lease's unused tokens go back to the *same* Redis
//! bucket they were counted in, if that bucket is still in the window:
//! with the next lease's script when one replaces it, else by a task that
//! wakes when the lease ends and queues them for [`GIVE`] (batched, on its
//! own connection, off the request path). Token budgets give back the
//! unused part of a settled reservation the same way once its lease is
//! over.
//!
//! **Bound.** Every admitted request used a token counted in a bucket that
//! was current when it was admitted. Redis never lets the `BUCKETS + 1`
//! newest buckets hold more than `limit` when it grants, and a give-back
//! only removes tokens that were never used from the bucket they were
//! counted in — so at the last grant in any bucket, each of the `BUCKETS +
//! 1` buckets still counts at least what will ever be used from it. Any
//! interval of length `window` touches at most `BUCKETS + 1` buckets, so
//! **no interval of length `window` admits more than `limit` across all
//! nodes and shards** — the same zero error bound as one node.
//!
//! **Under-admission.** Redis counts, beyond what was used, only tokens
//! nodes hold right now: at most one live lease per node and key (at most
//! `limit / 20` tokens, and about what the node uses per bucket: a node
//! seeing one request per bucket holds one), plus unused tokens of ended
//! leases for the round trip that gives them back. A give-back that fails
//! (Redis unreachable) leaves its tokens counted until they leave the
//! window. As on one node, a request may be refused for a count up to one
//! bucket older than the window.
//!
//! **Token budgets** (`token_rate_limiter`) take their estimate the same
//! way and settle later: tokens given back return to the lease they came
//! from while it lasts, else to Redis's bucket; tokens used beyond the
//! estimate come out of the lease, or are charged to Redis's window without
//! a limit check (they were used).
//!
//! **Redis unreachable**: the owner shard decides with its own exact window
//! instead (`limit` per node, so up to `nodes × limit` per window across the
//! cluster), and tries Redis again after [`RETRY`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use redis_protocol::resp2::types::OwnedFrame;

use super::resp::{int, Error, RedisClient};
use super::RedisUrl;

/// Buckets per window.
pub const BUCKETS: u64 = 20;

/// The outcome of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Still available in the window after this request.
    pub remaining: u64,
    /// Microseconds until everything counted now has left the window.
    pub reset_us: u64,
    /// When denied: microseconds until the request would fit.
    pub retry_us: u64,
    /// The bucket the cost was counted in (for `plugin::counters::Counters::adjust`).
    pub bucket: u64,
    /// The owner could not be asked.
    pub unavailable: bool,
    /// Extra permits leased to the asking shard along with this admission.
    pub leased: u64,
}

/// A limiter call's bound: a slow Redis must not hold requests long (and
/// the asking shard waits at most `counters`' 2 s for its owner).
const TIMEOUT: Duration = Duration::from_millis(750);
/// After a failure, requests use the local windows this long before Redis
/// is tried again.
pub const RETRY: Duration = Duration::from_secs(1);
/// Leases kept before the ended ones are dropped.
const KEEP: usize = 4096;
/// Give-backs sent in one script.
const BATCH: usize = 256;

/// Lua: `give(key, bucket, tokens, bucket width)` takes unused tokens
/// back out of a bucket (with `now` and `n` set): only while the bucket is
/// in the window, never below zero.
macro_rules! give_lua {
    () => {
        r"
local function give(k, gb, gn, bw)
  if gn > 0 and gb >= math.floor(now / bw) - n then
    local f = string.format('%d', gb)
    local v = tonumber(redis.call('HGET', k, f) or '0')
    if v > 0 then redis.call('HINCRBY', k, f, string.format('%d', -math.min(v, gn))) end
  end
end
"
    };
}

/// KEYS: the window hash. ARGV: limit, window µs, wanted tokens, buckets,
/// then a bucket and how many unused tokens to give back to it first (0:
/// none). Returns {granted, remaining, µs left in the bucket, reset µs,
/// retry µs, bucket}.
const TAKE: &str = concat!(
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, win, want, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local bw = math.max(1, math.floor(win / n))
",
    give_lua!(),
    r"
give(KEYS[1], tonumber(ARGV[5]), tonumber(ARGV[6]), bw)
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
return {grant, math.max(0, limit - sum - grant), (b + 1) * bw - now, (b + n + 1) * bw - now, (oldest + n + 1) * bw - now, b}
"
);

/// KEYS: window hashes. ARGV: buckets, then per key: window µs, bucket,
/// unused tokens to give back to that bucket.
const GIVE: &str = concat!(
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
",
    give_lua!(),
    r"
for i = 1, #KEYS do
  local win = tonumber(ARGV[3 * i - 1])
  give(KEYS[i], tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1]), math.max(1, math.floor(win / n)))
end
return #KEYS
"
);

/// A decision's `bucket` with this bit set names a lease's Redis bucket,
/// not a local bucket (local bucket numbers are microseconds divided by a
/// width).
const LEASE_BIT: u64 = 1 << 63;

/// Whether a decision's `bucket` names a lease.
pub fn is_lease(bucket: u64) -> bool {
    bucket & LEASE_BIT != 0
}

struct Lease {
    /// The Redis bucket the tokens were counted in.
    bucket: u64,
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
    /// Tokens the next lease asks for (see the module docs).
    size: u64,
    /// A task gives back what is left when the lease ends.
    watched: bool,
}

impl Lease {
    /// Takes the unused tokens out, to go back to Redis.
    fn unused(&mut self, key: u64) -> Option<Return> {
        let tokens = std::mem::take(&mut self.tokens);
        (tokens > 0).then_some(Return {
            key,
            window_us: self.window_us,
            bucket: self.bucket,
            tokens,
        })
    }

    /// The lease is over with `tokens` unused: they go back, and the next
    /// lease is smaller if any were left.
    fn retire(&mut self, key: u64) -> Option<Return> {
        let back = self.unused(key);
        if back.is_some() {
            self.size = (self.size / 2).max(1);
        }
        back
    }
}

/// Unused tokens going back to the Redis bucket they were counted in.
struct Return {
    key: u64,
    window_us: u64,
    bucket: u64,
    tokens: u64,
}

/// One shard's leases and its own Redis connections.
pub struct Leases {
    client: RedisClient,
    /// Give-backs use their own connection: no request waits behind one.
    returns: RedisClient,
    leases: RefCell<HashMap<u64, Lease>>,
    /// One refill at a time; a waiter looks at the lease again first.
    turn: Semaphore,
    down_until: Cell<Option<Instant>>,
    /// Give-backs not sent yet, and whether a task is sending them.
    queue: RefCell<Vec<Return>>,
    flushing: Cell<bool>,
}

fn name(key: u64) -> String {
    format!("ringgate:rl:{key:016x}")
}

impl Leases {
    pub fn new(target: RedisUrl) -> Leases {
        Leases {
            client: RedisClient::new(target.clone(), TIMEOUT),
            returns: RedisClient::new(target, TIMEOUT),
            leases: RefCell::new(HashMap::new()),
            turn: Semaphore::new(1),
            down_until: Cell::new(None),
            queue: RefCell::new(Vec::new()),
            flushing: Cell::new(false),
        }
    }

    /// Takes `cost` tokens of `key` from the lease, refilling it from Redis
    /// when needed; `None` when Redis cannot be reached (the caller decides
    /// locally).
    pub async fn take(
        self: &Rc<Self>,
        key: u64,
        cost: u64,
        limit: u64,
        window_us: u64,
    ) -> Option<Decision> {
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
        let most = (limit / 20).max(1);
        let sent = Instant::now();
        // The lease this one replaces: its unused tokens go back with the
        // request, and how it was used sizes the new one.
        let (want, back) = {
            let mut leases = self.leases.borrow_mut();
            if leases.len() >= KEEP {
                let mut back = Vec::new();
                leases.retain(|&k, l| {
                    let keep = l.ends > sent;
                    if !keep {
                        back.extend(l.unused(k));
                    }
                    keep
                });
                for r in back {
                    self.give_back(r);
                }
            }
            let l = leases.entry(key).or_insert(Lease {
                bucket: 0,
                window_us,
                tokens: 0,
                ends: sent,
                remaining: 0,
                reset: sent,
                exhausted: false,
                retry: sent,
                size: 1,
                watched: false,
            });
            let back = if l.ends > sent {
                // Used up while its bucket lasts (an exhausted one would
                // have denied above): the key needs more per bucket.
                l.size = (l.size * 2).min(most);
                l.unused(key)
            } else {
                l.retire(key)
            };
            l.size = l.size.min(most);
            (cost.max(l.size), back)
        };
        match self
            .refill(key, limit, window_us, want, back.as_ref())
            .await
        {
            Ok(r) => {
                if self.down_until.take().is_some() {
                    log::warn!("{}: rate limits are global again", self.client.target.shown);
                }
                let us = Duration::from_micros;
                let mut leases = self.leases.borrow_mut();
                let l = leases.get_mut(&key)?;
                let bucket = r[5];
                if l.bucket != bucket {
                    // Tokens a settlement gave back to the old lease
                    // meanwhile belong to its bucket.
                    if let Some(r) = l.unused(key) {
                        self.give_back(r);
                    }
                    l.bucket = bucket;
                    l.watched = false;
                }
                l.window_us = window_us;
                l.tokens += r[0];
                l.ends = sent + us(r[2]);
                l.remaining = r[1];
                l.reset = sent + us(r[3]);
                l.exhausted = r[0] < want;
                l.retry = sent + us(r[4]);
                drop(leases);
                let d = self.spend_lease(key, cost);
                self.watch(key);
                d
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
            bucket: LEASE_BIT | lease.bucket,
            unavailable: false,
            leased: 0,
        })
    }

    /// When `key`'s lease holds tokens and no task watches it yet: a task
    /// that gives back what is left when the lease ends (unless a refill
    /// replaced it first and gave them back itself).
    fn watch(self: &Rc<Self>, key: u64) {
        let (bucket, mut ends) = {
            let mut leases = self.leases.borrow_mut();
            let Some(l) = leases.get_mut(&key) else {
                return;
            };
            if l.watched || l.tokens == 0 {
                return;
            }
            l.watched = true;
            (l.bucket, l.ends)
        };
        let me = self.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(ends.saturating_duration_since(Instant::now())).await;
                let back = {
                    let mut leases = me.leases.borrow_mut();
                    let Some(l) = leases.get_mut(&key) else {
                        return;
                    };
                    if l.bucket != bucket {
                        return;
                    }
                    if l.ends > Instant::now() {
                        // Refilled in the same bucket: its end moved a little.
                        ends = l.ends;
                        continue;
                    }
                    l.watched = false;
                    l.retire(key)
                };
                if let Some(r) = back {
                    me.give_back(r);
                }
                return;
            }
        })
        .detach();
    }

    /// Queues unused tokens for Redis; one task sends the queue in batches.
    fn give_back(self: &Rc<Self>, r: Return) {
        self.queue.borrow_mut().push(r);
        if self.flushing.replace(true) {
            return;
        }
        let me = self.clone();
        glommio::spawn_local(async move {
            loop {
                let batch: Vec<Return> = {
                    let mut q = me.queue.borrow_mut();
                    let n = q.len().min(BATCH);
                    q.drain(..n).collect()
                };
                if batch.is_empty() {
                    me.flushing.set(false);
                    return;
                }
                if let Err(e) = me.give(&batch).await {
                    // Only under-admission: the tokens stay counted until
                    // they leave the window.
                    log::debug!(
                        "{}: cannot give back unused tokens: {e}",
                        me.client.target.shown
                    );
                }
            }
        })
        .detach();
    }

    /// Settles a grant of lease bucket `lease` (a token budget's
    /// reservation): a negative `delta` (fewer tokens used than reserved)
    /// goes back to the lease while it is the same and lasts, else to
    /// Redis's bucket; a positive one is taken from the lease, and what the
    /// lease cannot cover is charged to Redis's window unconditionally.
    pub async fn settle(self: &Rc<Self>, key: u64, lease: u64, delta: i64) {
        let bucket = lease & !LEASE_BIT;
        let (owed, window_us) = {
            let mut leases = self.leases.borrow_mut();
            let Some(l) = leases.get_mut(&key) else {
                return;
            };
            let same = l.bucket == bucket && l.ends > Instant::now();
            if delta < 0 {
                let tokens = delta.unsigned_abs();
                let window_us = l.window_us;
                if same {
                    l.tokens += tokens;
                    drop(leases);
                    self.watch(key);
                } else {
                    drop(leases);
                    self.give_back(Return {
                        key,
                        window_us,
                        bucket,
                        tokens,
                    });
                }
                return;
            }
            let from_lease = if same { l.tokens.min(delta as u64) } else { 0 };
            l.tokens -= from_lease;
            (delta as u64 - from_lease, l.window_us)
        };
        if owed > 0 && !self.down() {
            // No limit: the tokens were used already.
            if let Err(e) = self
                .refill(key, u64::MAX >> 12, window_us, owed, None)
                .await
            {
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
        back: Option<&Return>,
    ) -> Result<[u64; 6], Error> {
        let name = name(key);
        let (back_bucket, back_tokens) = back.map_or((0, 0), |r| (r.bucket, r.tokens));
        let args = [
            limit.to_string(),
            window_us.to_string(),
            want.to_string(),
            BUCKETS.to_string(),
            back_bucket.to_string(),
            back_tokens.to_string(),
        ];
        let mut call: Vec<&[u8]> = vec![b"EVAL", TAKE.as_bytes(), b"1", name.as_bytes()];
        call.extend(args.iter().map(|a| a.as_bytes()));
        let reply = self.client.call(&call).await?;
        let OwnedFrame::Array(v) = reply else {
            return Err(Error::Reply(format!("unexpected reply {reply:?}")));
        };
        let mut out = [0u64; 6];
        if v.len() != out.len() {
            return Err(Error::Reply(format!("unexpected reply {v:?}")));
        }
        for (o, f) in out.iter_mut().zip(&v) {
            *o = int(f)?.max(0) as u64;
        }
        Ok(out)
    }

    /// Sends a batch of give-backs (one script, on the give-back connection).
    async fn give(&self, batch: &[Return]) -> Result<(), Error> {
        let names: Vec<String> = batch.iter().map(|r| name(r.key)).collect();
        let mut args = vec![BUCKETS.to_string()];
        for r in batch {
            args.extend([
                r.window_us.to_string(),
                r.bucket.to_string(),
                r.tokens.to_string(),
            ]);
        }
        let count = batch.len().to_string();
        let mut call: Vec<&[u8]> = vec![b"EVAL", GIVE.as_bytes(), count.as_bytes()];
        call.extend(names.iter().map(|n| n.as_bytes()));
        call.extend(args.iter().map(|a| a.as_bytes()));
        self.returns.call(&call).await.map(drop)
    }
}
