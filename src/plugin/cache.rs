//! `cache`: answers repeated requests from memory instead of the provider.
//!
//! **Key.** SHA-256 of: the plugin's scope (its gateway or rule, so a
//! gateway never sees another's entries), the API key's id when
//! `per_key`, the method and path, and the request JSON in canonical form
//! (object keys sorted, no whitespace, strings and numbers as written:
//! `util::canonical_json`; the fields in `ignore_fields`, by default
//! `user`, left out). The model is part of that JSON. A body that
//! is not a JSON object is never cached. With `only_deterministic` (the
//! default) only requests whose `temperature` is absent or 0 are.
//!
//! **What is kept.** Successful (200) answers that arrived whole: JSON
//! bodies (they must parse) and SSE streams (they must end with OpenAI's
//! `[DONE]` or Anthropic's `message_stop`), as the client received them
//! (translated, masked). A streamed request is answered from a recorded
//! stream of the same request (same `stream_options`): the events, usage
//! chunk included, in one response. A plain request is answered from a
//! recorded JSON body, else from a recorded OpenAI chat stream of the same
//! request assembled into its `chat.completion` JSON; a streamed request
//! without a recorded stream gets a recorded `chat.completion` as a stream
//! (the message in one chunk, then the finish reason and, when asked for,
//! the usage chunk). Not for tool calls or several choices.
//!
//! **Bounds.** Entries live `ttl`; at most `max_entries` and `max_bytes`
//! per node, least recently used evicted first; an answer larger than
//! `max_entry_bytes` is not kept.
//!
//! **Layout.** One store per plugin scope per node, shared by every shard
//! behind a mutex (held for a map lookup or insert, never across an
//! await), so the hit rate does not depend on the number of shards. It
//! outlives configuration changes that keep the plugin (changed bounds
//! apply to it) and is freed when the plugin is gone. A miss on a warm
//! node usually takes neither the mutex nor the map: a filter of counts
//! by digest bits, sized for `max_entries` when the store is made (about
//! eight one-byte counts an entry, 4 KiB to 4 MiB), reads zero for about
//! nine in ten requests it has not seen, while the map itself is far
//! larger than the CPU's caches. Hits and misses
//! happen before any reservation of `budget` or `token_rate_limiter`
//! placed after the cache in the chain: a hit costs nothing.
//!
//! **Shared tier** (`"shared": true`, cluster mode only: `--store
//! redis://`): a local miss asks Redis (`GET ringgate:cache:<key>`, at
//! most [`REDIS_TIMEOUT`]; an error or timeout is a miss) and keeps a hit
//! locally; a stored answer is also written there (`SET … PX ttl`, after
//! the answer went out, without waiting). So one node's answer serves the
//! others. Redis's own memory policy bounds it; entries expire with `ttl`.
//!
//! **Client control.** `Cache-Control: no-cache` skips the lookup (the
//! answer is still stored), `no-store` skips storing. Answers carry
//! `X-Cache: HIT` (with `Age` in seconds) or `X-Cache: MISS`.
//!
//! ```json
//! {"ttl": "10m", "max_entries": 10000, "max_bytes": 67108864, "max_entry_bytes": 1048576,
//!  "per_key": false, "ignore_fields": ["user"], "only_deterministic": true}
//! ```

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{bad, push_header, push_header_num, Flow, RequestView, Stop, Window};
use crate::cluster::resp::RedisClient;
use crate::config::ConfigError;
use crate::util::canonical_json::{Object, Scratch};

fn default_ttl() -> Window {
    Window(Duration::from_secs(600))
}
fn default_max_entries() -> u64 {
    10_000
}
fn default_max_bytes() -> u64 {
    64 << 20
}
fn default_max_entry_bytes() -> u64 {
    1 << 20
}
fn default_ignore() -> Vec<String> {
    vec!["user".to_string()]
}
fn yes() -> bool {
    true
}

/// The longest a request waits for the shared tier.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub shared: bool,
    #[serde(default = "default_ttl")]
    pub ttl: Window,
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    #[serde(default = "default_max_entry_bytes")]
    pub max_entry_bytes: u64,
    #[serde(default)]
    pub per_key: bool,
    #[serde(default = "default_ignore")]
    pub ignore_fields: Vec<String>,
    #[serde(default = "yes")]
    pub only_deterministic: bool,
}

/// Largest bounds accepted.
const MAX_ENTRIES: u64 = 10_000_000;
const MAX_BYTES: u64 = 16 << 30;
const MAX_ENTRY_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Copy)]
struct Bounds {
    ttl: Duration,
    max_entries: u64,
    max_bytes: u64,
}

#[derive(Debug)]
pub struct Cache {
    max_entry_bytes: usize,
    per_key: bool,
    ignore_fields: Vec<String>,
    only_deterministic: bool,
    shared: bool,
    /// The node's store for this scope (none while only validating).
    store: Option<Arc<Store>>,
}

/// One kept answer.
#[derive(Debug)]
pub struct Entry {
    pub body: Vec<u8>,
    /// An SSE stream (else JSON).
    pub sse: bool,
    stored: Instant,
    /// Prompt plus completion tokens the answer reported.
    tokens: u64,
}

impl Entry {
    pub fn age(&self) -> Duration {
        self.stored.elapsed()
    }
}

type Key = [u8; 32];

/// Keys are SHA-256 digests already: their first eight bytes are the hash.
#[derive(Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length, then its bytes: keep the bytes.
        if let Some(head) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*head);
        }
    }
}

type KeyMap<V> = HashMap<Key, V, std::hash::BuildHasherDefault<DigestHasher>>;

/// The kinds of answer one request can have kept (a key's last byte).
const KINDS: usize = 4;

/// A request's kept answers, one per kind, each with its use tick: the
/// kinds share a digest, so one probe finds them all (a miss looks for
/// three kinds).
type Slot = [Option<(Arc<Entry>, u64)>; KINDS];

/// A key's slot (its last byte cleared) and kind.
fn slot_of(k: &Key) -> (Key, usize) {
    let mut s = *k;
    s[31] = 0;
    (s, k[31] as usize % KINDS)
}

/// One-byte counts of the store's slots by bits of their digest: a zero
/// proves a miss without the lock. Written only under the store's lock;
/// read without it (a slot another shard adds meanwhile can be missed,
/// as it could a moment earlier). A count that reaches 255 stays there.
#[derive(Debug)]
struct Filter {
    counts: Box<[AtomicU8]>,
}

impl Filter {
    fn new(max_entries: u64) -> Filter {
        let n = (max_entries.saturating_mul(8) as usize)
            .clamp(1 << 12, 1 << 22)
            .next_power_of_two();
        Filter {
            counts: (0..n).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    /// Digest bytes 8..16: the map hashes bytes 0..8.
    fn count(&self, slot: &Key) -> &AtomicU8 {
        let bits = u64::from_le_bytes(slot[8..16].try_into().expect("eight bytes"));
        &self.counts[bits as usize & (self.counts.len() - 1)]
    }

    fn may_hold(&self, slot: &Key) -> bool {
        self.count(slot).load(Ordering::Relaxed) != 0
    }

    fn add(&self, slot: &Key) {
        let c = self.count(slot);
        let n = c.load(Ordering::Relaxed);
        if n < u8::MAX {
            c.store(n + 1, Ordering::Relaxed);
        }
    }

    fn remove(&self, slot: &Key) {
        let c = self.count(slot);
        let n = c.load(Ordering::Relaxed);
        if n != u8::MAX {
            c.store(n.saturating_sub(1), Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
struct Lru {
    map: KeyMap<Slot>,
    /// The store's filter: every slot in `map` counted.
    filter: Arc<Filter>,
    /// Use tick → key, oldest first.
    order: BTreeMap<u64, Key>,
    tick: u64,
    entries: u64,
    bytes: u64,
}

impl Lru {
    fn remove(&mut self, k: &Key) -> Option<Arc<Entry>> {
        let (s, kind) = slot_of(k);
        let slot = self.map.get_mut(&s)?;
        let (e, t) = slot[kind].take()?;
        if slot.iter().all(Option::is_none) {
            self.map.remove(&s);
            self.filter.remove(&s);
        }
        self.order.remove(&t);
        self.entries -= 1;
        self.bytes -= e.body.len() as u64;
        Some(e)
    }

    /// Marks `k` most recently used.
    fn touch(&mut self, k: &Key) {
        let (s, kind) = slot_of(k);
        self.tick += 1;
        let tick = self.tick;
        if let Some(Some((_, t))) = self.map.get_mut(&s).map(|slot| &mut slot[kind]) {
            let old = std::mem::replace(t, tick);
            self.order.remove(&old);
            self.order.insert(tick, *k);
        }
    }

    fn insert(&mut self, k: Key, e: Arc<Entry>) {
        self.tick += 1;
        let t = self.tick;
        self.order.insert(t, k);
        self.entries += 1;
        self.bytes += e.body.len() as u64;
        let (s, kind) = slot_of(&k);
        let filter = &self.filter;
        self.map.entry(s).or_insert_with(|| {
            filter.add(&s);
            Slot::default()
        })[kind] = Some((e, t));
    }
}

/// The node-wide store of one scope, with its counters.
#[derive(Debug)]
pub struct Store {
    lru: Mutex<Lru>,
    filter: Arc<Filter>,
    bounds: Mutex<Bounds>,
    /// `bounds.ttl` in nanoseconds, for a lookup without that lock.
    ttl_ns: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
    pub tokens_saved: AtomicU64,
}

impl Store {
    fn new(bounds: Bounds) -> Store {
        let filter = Arc::new(Filter::new(bounds.max_entries));
        Store {
            lru: Mutex::new(Lru {
                map: KeyMap::default(),
                filter: filter.clone(),
                order: BTreeMap::new(),
                tick: 0,
                entries: 0,
                bytes: 0,
            }),
            filter,
            ttl_ns: AtomicU64::new(nanos(bounds.ttl)),
            bounds: Mutex::new(bounds),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            tokens_saved: AtomicU64::new(0),
        }
    }

    fn bounds(&self) -> Bounds {
        *self.bounds.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_bounds(&self, b: Bounds) {
        *self.bounds.lock().unwrap_or_else(|e| e.into_inner()) = b;
        self.ttl_ns.store(nanos(b.ttl), Ordering::Relaxed);
    }

    #[cfg(test)]
    fn get(&self, k: &Key) -> Option<Arc<Entry>> {
        self.first(std::slice::from_ref(k)).map(|(_, e)| e)
    }

    /// The first of `keys` with a live entry (its index and the entry),
    /// under one lock, probing once per distinct slot.
    fn first(&self, keys: &[Key]) -> Option<(usize, Arc<Entry>)> {
        if !keys.iter().any(|k| self.filter.may_hold(&slot_of(k).0)) {
            return None;
        }
        let ttl = Duration::from_nanos(self.ttl_ns.load(Ordering::Relaxed));
        let mut lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        let mut from = 0;
        loop {
            let mut probed: Option<(Key, Option<&Slot>)> = None;
            let mut found = None;
            for (i, k) in keys.iter().enumerate().skip(from) {
                let (s, kind) = slot_of(k);
                let slot = match probed {
                    Some((p, slot)) if p == s => slot,
                    _ => {
                        let slot = lru.map.get(&s);
                        probed = Some((s, slot));
                        slot
                    }
                };
                if let Some(Some((e, _))) = slot.map(|slot| &slot[kind]) {
                    found = Some((i, e.clone()));
                    break;
                }
            }
            let (i, e) = found?;
            if e.age() >= ttl {
                lru.remove(&keys[i]);
                from = i + 1;
                continue;
            }
            lru.touch(&keys[i]);
            return Some((i, e));
        }
    }

    #[cfg(test)]
    fn put(&self, k: Key, e: Entry) {
        self.put_arc(k, Arc::new(e));
    }

    fn put_arc(&self, k: Key, e: Arc<Entry>) {
        let b = self.bounds();
        let size = e.body.len() as u64;
        if size > b.max_bytes || b.max_entries == 0 {
            return;
        }
        let mut lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        lru.remove(&k);
        let mut evicted = 0;
        while lru.entries >= b.max_entries || lru.bytes + size > b.max_bytes {
            // Popped first, so the loop ends even if a tick had no entry.
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if lru.remove(&oldest).is_some() {
                evicted += 1;
            }
        }
        lru.insert(k, e);
        drop(lru);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
    }

    /// (entries, bytes) now.
    pub fn size(&self) -> (u64, u64) {
        let lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        (lru.entries, lru.bytes)
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// Every scope's store on this node, while a configuration uses it (a
/// store is freed with the last snapshot that has its plugin).
fn registry() -> &'static Mutex<HashMap<u64, Weak<Store>>> {
    static STORES: OnceLock<Mutex<HashMap<u64, Weak<Store>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

/// The node's cache counters, summed over scopes: (hits, misses,
/// evictions, tokens saved, entries, bytes).
pub fn totals() -> [u64; 6] {
    let stores: Vec<Arc<Store>> = registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter_map(Weak::upgrade)
        .collect();
    let mut t = [0u64; 6];
    for s in stores {
        let (n, b) = s.size();
        for (i, v) in [
            s.hits.load(Ordering::Relaxed),
            s.misses.load(Ordering::Relaxed),
            s.evictions.load(Ordering::Relaxed),
            s.tokens_saved.load(Ordering::Relaxed),
            n,
            b,
        ]
        .into_iter()
        .enumerate()
        {
            t[i] += v;
        }
    }
    t
}

/// Per-request cache state.
pub struct Pending<'s> {
    cache: &'s Cache,
    /// Look up (no `Cache-Control: no-cache`).
    read: bool,
    /// Store the answer (no `Cache-Control: no-store`).
    write: bool,
    /// The key's digest with the scope, key id (when `per_key`) and path
    /// already in it.
    route: Sha256,
    /// Set once the body gave a key: the answer is recorded under it.
    key: Option<Key>,
    recording: Vec<u8>,
    overflow: bool,
    /// The shared tier's connection, when the plugin uses it.
    redis: Option<Rc<RedisClient>>,
}

impl Cache {
    pub fn new(s: Settings, field: &str, scope: u64) -> Result<Cache, ConfigError> {
        for (name, v, max) in [
            ("max_entries", s.max_entries, MAX_ENTRIES),
            ("max_bytes", s.max_bytes, MAX_BYTES),
            ("max_entry_bytes", s.max_entry_bytes, MAX_ENTRY_BYTES),
        ] {
            if v == 0 || v > max {
                return Err(bad(field, name, format!("must be 1 to {max}")));
            }
        }
        let bounds = Bounds {
            ttl: s.ttl.0,
            max_entries: s.max_entries,
            max_bytes: s.max_bytes,
        };
        // Scope 0: validation only, no store.
        let store = (scope != 0).then(|| {
            let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
            reg.retain(|_, w| w.strong_count() > 0);
            match reg.get(&scope).and_then(Weak::upgrade) {
                Some(st) => {
                    st.set_bounds(bounds);
                    st
                }
                None => {
                    let st = Arc::new(Store::new(bounds));
                    reg.insert(scope, Arc::downgrade(&st));
                    st
                }
            }
        });
        Ok(Cache {
            max_entry_bytes: s.max_entry_bytes as usize,
            per_key: s.per_key,
            ignore_fields: s.ignore_fields,
            only_deterministic: s.only_deterministic,
            shared: s.shared,
            store,
        })
    }

    /// The head stage: `Cache-Control`, method and path.
    pub fn on_request<'s>(&'s self, scope: u64, req: &RequestView<'_>, flow: &mut Flow<'s>) {
        if self.store.is_none() || !req.head.is_method(req.buf, "POST") {
            return;
        }
        let cc = req.header("cache-control").unwrap_or(b"");
        let has = |d: &[u8]| {
            cc.split(|&b| b == b',')
                .any(|p| p.trim_ascii().eq_ignore_ascii_case(d))
        };
        // Length-prefixed, so no two routes run into each other's bytes.
        let key_id = if self.per_key {
            req.key_id.unwrap_or("")
        } else {
            ""
        };
        let path = req.head.path.get(req.buf);
        let mut route = Sha256::new();
        route.update(scope.to_le_bytes());
        for part in [key_id.as_bytes(), path] {
            route.update((part.len() as u32).to_le_bytes());
            route.update(part);
        }
        flow.cache = Some(Box::new(Pending {
            cache: self,
            read: !has(b"no-cache"),
            write: !has(b"no-store"),
            route,
            key: None,
            recording: Vec::new(),
            overflow: false,
            redis: None,
        }));
    }

    /// The body stage: a hit answers; a miss arms the recording. Without
    /// the shared tier it needs no await, so it is not a future: a future
    /// here would be boxed for every request. Never inlined, so a profile
    /// of the proxy shows the cache's own time under the cache's names.
    #[inline(never)]
    pub fn on_body(
        &self,
        redis: Option<&Rc<RedisClient>>,
        body: &[u8],
        flow: &mut Flow<'_>,
        headers: &mut Vec<u8>,
    ) -> Step {
        let Some(p) = flow.cache.as_mut() else {
            return Step::Done(None);
        };
        let (Some(store), Some(keys)) = (self.store.as_ref(), self.keys(&p.route, body)) else {
            return Step::Done(None);
        };
        let redis = redis.filter(|_| self.shared);
        p.redis = redis.cloned();
        let mut hit = None;
        if p.read {
            hit = self.lookup(store, &keys);
            if let (None, Some(r)) = (&hit, redis) {
                return Step::Remote(r.clone(), keys.all[0]);
            }
        }
        Step::Done(self.settle(store, hit, keys.all[0], flow, headers))
    }

    /// The body stage after a local miss, with the shared tier.
    pub async fn on_remote(
        &self,
        r: Rc<RedisClient>,
        key: Key,
        flow: &mut Flow<'_>,
        headers: &mut Vec<u8>,
    ) -> Option<Stop> {
        let store = self.store.as_ref()?;
        let hit = remote_get(&r, &key).await.map(|e| {
            let e = Arc::new(e);
            store.put_arc(key, e.clone());
            e
        });
        self.settle(store, hit, key, flow, headers)
    }

    /// Counts a looked-up request's hit or miss: a hit answers, a miss arms
    /// the recording under `key` (when the request may be stored).
    fn settle(
        &self,
        store: &Store,
        hit: Option<Arc<Entry>>,
        key: Key,
        flow: &mut Flow<'_>,
        headers: &mut Vec<u8>,
    ) -> Option<Stop> {
        let p = flow.cache.as_mut()?;
        if let Some(e) = hit {
            store.hits.fetch_add(1, Ordering::Relaxed);
            store.tokens_saved.fetch_add(e.tokens, Ordering::Relaxed);
            flow.cache = None;
            return Some(Stop::Cached(e));
        }
        if p.read {
            store.misses.fetch_add(1, Ordering::Relaxed);
        }
        push_header(headers, "X-Cache", b"MISS");
        if p.write {
            p.key = Some(key);
        }
        None
    }

    /// The local store's answer: the request's own, or its twin converted.
    fn lookup(&self, store: &Store, keys: &Keys) -> Option<Arc<Entry>> {
        let (i, e) = store.first(&keys.all[..keys.n])?;
        if i == 0 {
            return Some(e);
        }
        // The same request's twin recorded in the other form.
        let body = match keys.stream {
            Stream::No => stream_to_json(&e.body)?,
            Stream::Yes { usage } => json_to_stream(&e.body, usage)?,
        };
        Some(Arc::new(Entry {
            body,
            sse: keys.stream != Stream::No,
            stored: e.stored,
            tokens: e.tokens,
        }))
    }

    /// The keys of a cacheable body, `None` when it is not one.
    ///
    /// One SHA-256 over the route and the canonical body gives the digest;
    /// a key is its first 31 bytes and a tag for the kind of answer. Only a
    /// stream with unusual `stream_options` hashes once more.
    fn keys(&self, route: &Sha256, body: &[u8]) -> Option<Keys> {
        SCRATCH.with_borrow_mut(|scratch| {
            let keys = self.keys_in(route, body, scratch);
            scratch.trim(SCRATCH_KEEP);
            keys
        })
    }

    fn keys_in(&self, route: &Sha256, body: &[u8], scratch: &mut Scratch) -> Option<Keys> {
        let v = Object::parse(body, scratch)?;
        // One pass over the top level; a repeated key counts as its last.
        let (mut temperature, mut stream, mut options) = (None, false, None);
        for (k, value) in v.members() {
            match k {
                b"temperature" => temperature = Some(value),
                b"stream" => stream = value.leaf() == Some(b"true"),
                b"stream_options" => options = Some(value),
                // A key spelled with an escape could hide `temperature` or
                // `stream` from these checks while the provider reads it.
                k if k.contains(&b'\\') => return None,
                _ => {}
            }
        }
        if self.only_deterministic {
            match temperature.map(|t| t.leaf()) {
                None | Some(Some(b"null")) => {}
                Some(Some(t)) if is_zero(t) => {}
                Some(_) => return None,
            }
        }
        let mut h = route.clone();
        let skip = |k: &[u8]| {
            k == b"stream"
                || k == b"stream_options"
                || self.ignore_fields.iter().any(|f| f.as_bytes() == k)
        };
        v.pieces_without(skip, |piece| h.update(piece));
        let digest: [u8; 32] = h.finalize().into();
        let tagged = |tag: u8, d: &[u8; 32]| -> Key {
            let mut k = *d;
            k[31] = tag;
            k
        };
        let json = tagged(TAG_JSON, &digest);
        Some(if stream {
            let own = match options {
                None => tagged(TAG_SSE, &digest),
                Some(o) => {
                    let mut w = Vec::new();
                    o.write(&mut w);
                    if w == USAGE {
                        tagged(TAG_SSE_USAGE, &digest)
                    } else {
                        let mut h = Sha256::new();
                        h.update(digest);
                        h.update(&w);
                        tagged(TAG_SSE_OTHER, &h.finalize().into())
                    }
                }
            };
            Keys {
                all: [own, json, [0; 32]],
                n: 2,
                stream: Stream::Yes {
                    usage: options.is_some_and(|o| o.is_true_at("include_usage")),
                },
            }
        } else {
            Keys {
                all: [
                    json,
                    tagged(TAG_SSE_USAGE, &digest),
                    tagged(TAG_SSE, &digest),
                ],
                n: 3,
                stream: Stream::No,
            }
        })
    }
}

thread_local! {
    /// The canonical form being written: one per shard thread, so a miss
    /// allocates nothing once it fits.
    static SCRATCH: std::cell::RefCell<Scratch> = const { std::cell::RefCell::new(Scratch::new()) };
}

/// How many bytes of canonical form a thread keeps after a key: a larger
/// body's is freed after use.
const SCRATCH_KEEP: usize = 64 << 10;

/// The kinds of answer a key's last byte names: JSON, a stream without
/// `stream_options`, one with exactly [`USAGE`], one with other options
/// (its digest also covers them).
const TAG_JSON: u8 = 0;
const TAG_SSE: u8 = 1;
const TAG_SSE_USAGE: u8 = 2;
const TAG_SSE_OTHER: u8 = 3;
/// `stream_options` asking for usage, in canonical form.
const USAGE: &[u8] = br#"{"include_usage":true}"#;

/// Whether a JSON value (as written, grammar checked) is a number whose
/// digits before any exponent are all zero; anything else is not.
fn is_zero(n: &[u8]) -> bool {
    let n = n.strip_prefix(b"-").unwrap_or(n);
    n.first().is_some_and(u8::is_ascii_digit)
        && n.iter()
            .take_while(|&&b| b != b'e' && b != b'E')
            .all(|&b| b == b'0' || b == b'.')
}

impl std::fmt::Debug for Pending<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("read", &self.read)
            .field("write", &self.write)
            .field("recording", &self.recording.len())
            .field("shared", &self.redis.is_some())
            .finish()
    }
}

/// What the body stage of [`Cache::on_body`] leaves to do.
pub enum Step {
    /// Settled: a hit's answer, or a miss (`None`).
    Done(Option<Stop>),
    /// A local miss the shared tier may answer: [`Cache::on_remote`].
    Remote(Rc<RedisClient>, Key),
}

/// Where a request's answer is kept, and where its twin in the other form
/// (streamed or plain) would be.
/// A request's own key first (`all[0]`), then its twins': the same request
/// recorded in the other form. `n` of `all` are used.
struct Keys {
    all: [Key; 3],
    n: usize,
    stream: Stream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    No,
    /// `usage`: the client asked for the usage chunk.
    Yes {
        usage: bool,
    },
}

/// A `chat.completion` JSON answer as the OpenAI stream a streamed request
/// gets: the message in one chunk, the finish reason, the usage chunk when
/// asked for, `[DONE]`. `None` for anything else.
fn json_to_stream(body: &[u8], usage: bool) -> Option<Vec<u8>> {
    use serde_json::{json, Value};
    let v: Value = serde_json::from_slice(body).ok()?;
    let choices = v["choices"].as_array()?;
    if v["object"] != "chat.completion" || choices.len() != 1 {
        return None;
    }
    let m = &choices[0]["message"];
    if !m["tool_calls"].is_null() || !m["content"].is_string() {
        return None;
    }
    let chunk = |choices: Value| {
        json!({"id": v["id"], "object": "chat.completion.chunk", "created": v["created"],
               "model": v["model"], "choices": choices})
    };
    let mut events = vec![
        chunk(
            json!([{"index": 0, "delta": {"role": m["role"], "content": m["content"]}, "finish_reason": null}]),
        ),
        chunk(json!([{"index": 0, "delta": {}, "finish_reason": choices[0]["finish_reason"]}])),
    ];
    if usage && v["usage"].is_object() {
        let mut u = chunk(json!([]));
        u["usage"] = v["usage"].clone();
        events.push(u);
    }
    let mut out = Vec::new();
    for e in events {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&serde_json::to_vec(&e).ok()?);
        out.extend_from_slice(b"\n\n");
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    Some(out)
}

/// An OpenAI chat stream as the `chat.completion` JSON a plain request
/// gets; `None` for anything else (Anthropic events, tool calls, several
/// choices).
fn stream_to_json(sse: &[u8]) -> Option<Vec<u8>> {
    use serde_json::{json, Value};
    let text = std::str::from_utf8(sse).ok()?;
    let (mut id, mut created, mut model) = (Value::Null, Value::Null, Value::Null);
    let (mut content, mut role, mut finish, mut usage) =
        (String::new(), "assistant".to_string(), Value::Null, None);
    for data in text.lines().filter_map(|l| l.strip_prefix("data:")) {
        let data = data.trim();
        if data == "[DONE]" {
            break;
        }
        let c: Value = serde_json::from_str(data).ok()?;
        if c["object"] != "chat.completion.chunk" {
            return None;
        }
        id = c["id"].clone();
        created = c["created"].clone();
        model = c["model"].clone();
        if c["usage"].is_object() {
            usage = Some(c["usage"].clone());
        }
        for choice in c["choices"].as_array()? {
            let d = &choice["delta"];
            if choice["index"].as_u64() != Some(0) || !d["tool_calls"].is_null() {
                return None;
            }
            if let Some(r) = d["role"].as_str() {
                role = r.to_string();
            }
            if let Some(t) = d["content"].as_str() {
                content.push_str(t);
            }
            if !choice["finish_reason"].is_null() {
                finish = choice["finish_reason"].clone();
            }
        }
    }
    let mut out = json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": role, "content": content}, "finish_reason": finish}],
    });
    if let Some(u) = usage {
        out["usage"] = u;
    }
    serde_json::to_vec(&out).ok()
}

impl Pending<'_> {
    /// Response bytes as the client gets them (with the head when the
    /// answer is relayed as is; the body alone when it is rewritten).
    pub fn record(&mut self, bytes: &[u8]) {
        if self.key.is_none() || self.overflow {
            return;
        }
        if self.recording.len() + bytes.len() > self.cache.max_entry_bytes + (16 << 10) {
            self.overflow = true;
            self.recording = Vec::new();
            return;
        }
        self.recording.extend_from_slice(bytes);
    }

    /// The answer ended with `status`: keeps it when it is whole.
    pub fn finish(self, status: u16) {
        let (Some(key), Some(store)) = (self.key, self.cache.store.as_ref()) else {
            return;
        };
        if status != 200 || self.overflow {
            return;
        }
        let Some(body) = answer_body(&self.recording) else {
            return;
        };
        if body.len() > self.cache.max_entry_bytes {
            return;
        }
        let sse = !body.starts_with(b"{");
        let whole = if sse {
            let t = body.trim_ascii_end();
            t.ends_with(b"data: [DONE]") || t.ends_with(b"{\"type\":\"message_stop\"}")
        } else {
            serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok()
        };
        if !whole {
            return;
        }
        let tokens = crate::metrics::usage::scan(&body).map_or(0, |u| u.prompt + u.completion);
        let e = Arc::new(Entry {
            body,
            sse,
            stored: Instant::now(),
            tokens,
        });
        store.put_arc(key, e.clone());
        if let Some(r) = self.redis {
            remote_put(r, &key, &e, store.bounds().ttl);
        }
    }
}

/// The shared tier's name of `key`.
fn remote_name(key: &Key) -> Vec<u8> {
    let mut name = b"ringgate:cache:".to_vec();
    for b in key {
        name.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    name
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `[1, sse, tokens u64 LE, stored unix ms u64 LE, body]`.
fn encode(e: &Entry) -> Vec<u8> {
    let stored = unix_ms().saturating_sub(e.age().as_millis() as u64);
    let mut v = Vec::with_capacity(18 + e.body.len());
    v.push(1);
    v.push(u8::from(e.sse));
    v.extend_from_slice(&e.tokens.to_le_bytes());
    v.extend_from_slice(&stored.to_le_bytes());
    v.extend_from_slice(&e.body);
    v
}

fn decode(v: &[u8]) -> Option<Entry> {
    if v.len() < 18 || v[0] != 1 {
        return None;
    }
    let tokens = u64::from_le_bytes(v[2..10].try_into().ok()?);
    let stored = u64::from_le_bytes(v[10..18].try_into().ok()?);
    let age = Duration::from_millis(unix_ms().saturating_sub(stored));
    Some(Entry {
        body: v[18..].to_vec(),
        sse: v[1] == 1,
        stored: Instant::now().checked_sub(age)?,
        tokens,
    })
}

/// The shared tier's entry for `key`; an error or a timeout is a miss.
async fn remote_get(r: &RedisClient, key: &Key) -> Option<Entry> {
    use redis_protocol::resp2::types::OwnedFrame;
    match r.call(&[b"GET", &remote_name(key)]).await {
        Ok(OwnedFrame::BulkString(v)) => decode(&v),
        Ok(_) => None,
        Err(e) => {
            log::debug!("cache: shared tier lookup failed: {e}");
            None
        }
    }
}

/// Writes `e` to the shared tier in the background.
fn remote_put(r: Rc<RedisClient>, key: &Key, e: &Entry, ttl: Duration) {
    let name = remote_name(key);
    let value = encode(e);
    let ms = ttl.as_millis().max(1).to_string();
    glommio::spawn_local(async move {
        let args: [&[u8]; 5] = [b"SET", &name, &value, b"PX", ms.as_bytes()];
        if let Err(e) = r.call(&args).await {
            log::debug!("cache: shared tier write failed: {e}");
        }
    })
    .detach();
}

/// The body of a recorded answer: after the head when there is one (chunked
/// coding removed), else the bytes themselves.
fn answer_body(rec: &[u8]) -> Option<Vec<u8>> {
    if !rec.starts_with(b"HTTP/1.") {
        return Some(rec.to_vec());
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = resp.parse(rec).ok()? else {
        return None;
    };
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding") && h.value.eq_ignore_ascii_case(b"chunked")
    });
    let encoded = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-encoding")
            && !h.value.eq_ignore_ascii_case(b"identity")
    });
    if encoded {
        return None; // compressed: the key does not know the client's Accept-Encoding
    }
    let rest = &rec[n..];
    if !chunked {
        return Some(rest.to_vec());
    }
    let mut out = Vec::with_capacity(rest.len());
    let mut dec = crate::http::chunked::ChunkedDecoder::new();
    let p = dec.feed(rest, &mut |d| out.extend_from_slice(d)).ok()?;
    p.done.then_some(out)
}

/// Writes a hit's answer: head and body.
pub fn write_hit(out: &mut Vec<u8>, e: &Entry, extra: &[u8], rid: &[u8], keep_alive: bool) {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: ");
    out.extend_from_slice(if e.sse {
        b"text/event-stream\r\nCache-Control: no-cache\r\n".as_slice()
    } else {
        b"application/json\r\n".as_slice()
    });
    out.extend_from_slice(extra);
    push_header(out, "X-Cache", b"HIT");
    push_header_num(out, "Age", e.age().as_secs());
    push_header(out, "X-Request-Id", rid);
    push_header_num(out, "Content-Length", e.body.len() as u64);
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&e.body);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route's digest state, as `on_request` starts it.
    fn route_of(b: &[u8]) -> Sha256 {
        let mut h = Sha256::new();
        h.update(b);
        h
    }

    /// The key of a plain request.
    struct Keyer(Cache);
    impl Keyer {
        fn key(&self, route: &[u8], body: &[u8]) -> Option<Key> {
            self.0.keys(&route_of(route), body).map(|k| k.all[0])
        }
    }

    fn cache(v: serde_json::Value, scope: u64) -> Cache {
        Cache::new(serde_json::from_value(v).unwrap(), "s", scope).unwrap()
    }

    #[test]
    fn canonical_keys_ignore_order_whitespace_and_ignored_fields() {
        let c = cache(serde_json::json!({}), 0);
        let c = Keyer(c);
        let r = [1u8; 32];
        let a = c.key(
            &r,
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"user":"ann"}"#,
        );
        let b = c.key(
            &r,
            br#"{ "messages" : [ {"content":"hi", "role":"user"} ], "model":"m", "user":"bob" }"#,
        );
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(
            a,
            c.key(
                &r,
                br#"{"model":"m2","messages":[{"role":"user","content":"hi"}]}"#
            )
        );
        assert_ne!(
            a,
            c.key(
                &[2u8; 32],
                br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#
            )
        );
        assert_eq!(c.key(&r, br#"{"model":"m","temperature":0.7}"#), None);
        assert_eq!(c.key(&r, b"[1,2]"), None);
        assert_eq!(c.key(&r, b"not json"), None);
        for zero in ["0", "0.0", "-0", "0e3", "-0.000E-5", "null"] {
            let b = format!(r#"{{"model":"m","temperature":{zero}}}"#);
            assert!(c.key(&r, b.as_bytes()).is_some(), "{b}");
        }
        // Zero is read from the digits: a value that only rounds to zero
        // is not deterministic output.
        for other in ["0.5", "10", "-1", "0.01", "1e-400", "true", "[0]"] {
            let b = format!(r#"{{"model":"m","temperature":{other}}}"#);
            assert_eq!(c.key(&r, b.as_bytes()), None, "{b}");
        }
        assert_eq!(c.key(&r, br#"{"model":"m","temperature":"0"}"#), None);
        // A repeated key counts as its last, as the provider reads it.
        assert_eq!(
            c.key(&r, br#"{"model":"m","temperature":0,"temperature":0.7}"#),
            None
        );
        assert!(c
            .key(&r, br#"{"model":"m","temperature":0.7,"temperature":0}"#)
            .is_some());
        // A key spelled with an escape could hide the temperature.
        assert_eq!(c.key(&r, br#"{"model":"m","temp\u0065rature":1}"#), None);
        let any = Keyer(cache(serde_json::json!({"only_deterministic": false}), 0));
        assert!(any.key(&r, br#"{"model":"m","temperature":0.7}"#).is_some());
    }

    #[test]
    fn a_recorded_stream_answers_a_plain_request() {
        let sse = concat!(
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":2,\"total_tokens\":4}}\n\n",
            "data: [DONE]\n\n"
        );
        let v: serde_json::Value =
            serde_json::from_slice(&stream_to_json(sse.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "c1", "object": "chat.completion", "created": 5, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}})
        );
        assert_eq!(
            stream_to_json(b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n"),
            None
        );
        // The keys: a plain request looks for its streamed twins.
        let c = cache(serde_json::json!({}), 0);
        let r = route_of(&[0u8; 32]);
        let plain = c.keys(&r, br#"{"model":"m","messages":[]}"#).unwrap();
        let streamed = c
            .keys(&r, br#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#)
            .unwrap();
        let bare = c
            .keys(&r, br#"{"model":"m","messages":[],"stream":true}"#)
            .unwrap();
        assert_eq!((plain.n, streamed.n), (3, 2));
        assert_eq!(plain.all[1..], [streamed.all[0], bare.all[0]]);
        assert_ne!(plain.all[0], streamed.all[0]);
        assert_eq!(streamed.all[1], plain.all[0]);
        assert_eq!(streamed.stream, Stream::Yes { usage: true });
        assert_eq!(bare.stream, Stream::Yes { usage: false });
        // Other options: a key of their own, still the plain request's twin.
        let odd = c
            .keys(&r, br#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":false}}"#)
            .unwrap();
        assert!(![plain.all[0], streamed.all[0], bare.all[0]].contains(&odd.all[0]));
        assert_eq!(
            (odd.all[1], odd.stream),
            (plain.all[0], Stream::Yes { usage: false })
        );
        // And back: the assembled JSON as a stream again.
        let again = json_to_stream(&stream_to_json(sse.as_bytes()).unwrap(), true).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&stream_to_json(&again).unwrap()).unwrap(),
            v
        );
        let no_usage =
            String::from_utf8(json_to_stream(&serde_json::to_vec(&v).unwrap(), false).unwrap())
                .unwrap();
        assert!(!no_usage.contains("usage") && no_usage.ends_with("data: [DONE]\n\n"));
    }

    /// The filter counts slots, not kinds; a shared count keeps its other
    /// slot visible; eviction and expiry take their counts back; a count
    /// at 255 stays (a maybe), so lookups stay right.
    #[test]
    fn filter_counts_slots_and_proves_misses() {
        let s = Store::new(Bounds {
            ttl: Duration::from_secs(60),
            max_entries: 3,
            max_bytes: 1 << 20,
        });
        let e = || Entry {
            body: b"{}".to_vec(),
            sse: false,
            stored: Instant::now(),
            tokens: 0,
        };
        // Same filter bits (bytes 8..16), different slots.
        let key = |first: u8, tag: u8| {
            let mut k = [0u8; 32];
            k[0] = first;
            k[31] = tag;
            k
        };
        let count = |k: &Key| s.filter.count(&slot_of(k).0).load(Ordering::Relaxed);
        s.put(key(1, TAG_JSON), e());
        s.put(key(1, TAG_SSE), e());
        assert_eq!(count(&key(1, TAG_JSON)), 1, "two kinds, one slot");
        s.put(key(2, TAG_JSON), e());
        assert_eq!(count(&key(2, TAG_JSON)), 2);
        assert!(s.get(&key(2, TAG_JSON)).is_some());
        assert!(s.get(&key(3, TAG_JSON)).is_none(), "a maybe, then the map");
        // The fourth entry evicts the oldest, key 1's JSON; its SSE twin
        // keeps the slot.
        s.put(key(4, TAG_JSON), e());
        assert_eq!(count(&key(1, TAG_JSON)), 3);
        // Two more evict key 1's SSE and key 2: the slot goes.
        s.put(key(5, TAG_JSON), e());
        s.put(key(6, TAG_JSON), e());
        assert_eq!(count(&key(1, TAG_JSON)), 3, "slots 4, 5 and 6");
        assert!(s.get(&key(1, TAG_SSE)).is_none() && s.get(&key(2, TAG_JSON)).is_none());
        // Other bits: a zero count, a miss without the map.
        let mut far = key(9, TAG_JSON);
        far[8] = 1;
        assert_eq!(count(&far), 0);
        assert!(s.get(&far).is_none());
        s.put(far, e());
        assert_eq!(count(&far), 1);
        assert!(s.get(&far).is_some());
        // Expiry removes too.
        s.set_bounds(Bounds {
            ttl: Duration::ZERO,
            max_entries: 3,
            max_bytes: 1 << 20,
        });
        assert!(s.get(&far).is_none());
        assert_eq!(count(&far), 0);
        // Saturated: stays, and the map still answers.
        let c = s.filter.count(&slot_of(&far).0);
        c.store(u8::MAX, Ordering::Relaxed);
        s.set_bounds(Bounds {
            ttl: Duration::from_secs(60),
            max_entries: 3,
            max_bytes: 1 << 20,
        });
        s.put(far, e());
        s.put(key(10, TAG_JSON), e());
        s.put(key(11, TAG_JSON), e());
        s.put(key(12, TAG_JSON), e());
        assert!(s.get(&far).is_none(), "evicted");
        assert_eq!(c.load(Ordering::Relaxed), u8::MAX);
    }

    #[test]
    fn lru_bounds_entries_and_bytes() {
        let s = Store::new(Bounds {
            ttl: Duration::from_secs(60),
            max_entries: 2,
            max_bytes: 10,
        });
        let e = |n: usize| Entry {
            body: vec![b'x'; n],
            sse: false,
            stored: Instant::now(),
            tokens: 0,
        };
        s.put([1; 32], e(3));
        s.put([2; 32], e(3));
        assert!(s.get(&[1; 32]).is_some()); // 1 is now the most recent
        s.put([3; 32], e(3));
        assert!(s.get(&[2; 32]).is_none(), "least recently used goes first");
        assert!(s.get(&[1; 32]).is_some() && s.get(&[3; 32]).is_some());
        s.put([4; 32], e(9)); // needs 9 of 10 bytes: both others go
        assert_eq!(s.size(), (1, 9));
        assert_eq!(s.evictions.load(Ordering::Relaxed), 3);
        s.put([5; 32], e(11)); // larger than the whole store: not kept
        assert!(s.get(&[5; 32]).is_none());
        // Kinds of one request share a slot; each counts as an entry.
        let kind = |tag: u8| {
            let mut k = [7; 32];
            k[31] = tag;
            k
        };
        s.put(kind(TAG_JSON), e(1));
        s.put(kind(TAG_SSE_USAGE), e(1));
        assert_eq!(s.size(), (2, 2), "the 9-byte entry went for the room");
        assert_eq!(
            s.first(&[kind(TAG_SSE), kind(TAG_SSE_USAGE), kind(TAG_JSON)])
                .map(|(i, _)| i),
            Some(1)
        );
        s.put(kind(TAG_SSE), e(1)); // evicts the least recently used: JSON
        assert!(s.get(&kind(TAG_JSON)).is_none());
        assert!(s.get(&kind(TAG_SSE_USAGE)).is_some() && s.get(&kind(TAG_SSE)).is_some());
        assert_eq!(s.size(), (2, 2));
    }

    #[test]
    fn shared_tier_encoding_round_trips() {
        let e = Entry {
            body: b"data: x\n\n".to_vec(),
            sse: true,
            stored: Instant::now() - Duration::from_secs(3),
            tokens: 42,
        };
        let d = decode(&encode(&e)).unwrap();
        assert_eq!((&d.body, d.sse, d.tokens), (&e.body, true, 42));
        let age = d.age().as_secs_f64();
        assert!((2.9..4.0).contains(&age), "{age}");
        assert!(decode(b"\x02rest-of-it-long-enough").is_none());
        assert!(decode(b"\x01").is_none());
        assert_eq!(&remote_name(&[0xab; 32])[..17], b"ringgate:cache:ab");
    }

    #[test]
    fn recorded_answers_are_decoded() {
        assert_eq!(
            answer_body(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap(),
            b"{}"
        );
        assert_eq!(
            answer_body(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
            )
            .unwrap(),
            b"{}"
        );
        assert_eq!(
            answer_body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n"),
            None
        );
        assert_eq!(
            answer_body(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nxx"),
            None
        );
    }
}
