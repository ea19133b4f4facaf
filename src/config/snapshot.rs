//! The compiled, immutable configuration every shard holds.
//!
//! Everything fallible (validation, reference resolution, DNS) happens while
//! compiling, on the control thread; applying a snapshot on a shard is a
//! pointer swap and cannot fail. Indices (`usize`) point into the vectors of
//! the same [`Gateway`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::route::Router;
use crate::upstream::pool::PoolKey;
use crate::upstream::tls::TlsClient;

/// A SHA-256 digest of an API key's plaintext.
pub type KeyHash = [u8; 32];

#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every applied change.
    pub generation: u64,
    pub gateways: Vec<Gateway>,
    /// sha256(plaintext key) → key.
    pub keys: HashMap<KeyHash, ApiKey>,
    /// Lower-case subdomain → index into `gateways`.
    pub subdomains: HashMap<String, usize>,
    /// The price table: built-in examples and the configuration's `prices`.
    pub prices: crate::cost::Prices,
}

impl Snapshot {
    /// Gives every target (upstream targets, then endpoint services) its
    /// dense `slot`, in the order [`Snapshot::targets`] walks them.
    pub fn number_targets(&mut self) {
        let mut n = 0u32;
        for gw in &mut self.gateways {
            let endpoints = gw.services.iter_mut().filter_map(|s| match &mut s.kind {
                ServiceKind::Endpoint(t) => Some(t),
                ServiceKind::Upstream(_) => None,
            });
            for t in gw
                .upstreams
                .iter_mut()
                .flat_map(|u| u.targets.iter_mut())
                .chain(endpoints)
            {
                t.slot = n;
                n += 1;
            }
        }
    }

    /// Every target, in `slot` order.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.gateways.iter().flat_map(|gw| {
            let endpoints = gw.services.iter().filter_map(|s| match &s.kind {
                ServiceKind::Endpoint(t) => Some(t),
                ServiceKind::Upstream(_) => None,
            });
            gw.upstreams
                .iter()
                .flat_map(|u| u.targets.iter())
                .chain(endpoints)
        })
    }

    /// The configuration with nothing in it.
    pub fn empty() -> Snapshot {
        Snapshot {
            generation: 0,
            gateways: Vec::new(),
            keys: HashMap::new(),
            subdomains: HashMap::new(),
            prices: crate::cost::Prices::new(&Default::default()),
        }
    }
}

impl Snapshot {
    /// The stable keys of every live gateway, rule (as `(gateway, rule)`),
    /// upstream and target: per-shard state keyed by anything else belongs
    /// to a configuration that is gone.
    pub fn live_keys(&self) -> LiveKeys {
        let mut live = LiveKeys::default();
        for g in &self.gateways {
            live.gateways.insert(g.key);
            live.rules.extend(g.rules.iter().map(|r| (g.key, r.key)));
            for u in &g.upstreams {
                live.upstreams.insert(u.key);
                live.targets.extend(u.targets.iter().map(|t| t.key));
            }
            for s in &g.services {
                if let ServiceKind::Endpoint(t) = &s.kind {
                    live.targets.insert(t.key);
                }
            }
        }
        live
    }
}

/// See [`Snapshot::live_keys`].
#[derive(Debug, Default)]
pub struct LiveKeys {
    pub gateways: std::collections::HashSet<u64>,
    pub rules: std::collections::HashSet<(u64, u64)>,
    pub upstreams: std::collections::HashSet<u64>,
    pub targets: std::collections::HashSet<u64>,
}

#[derive(Debug)]
pub struct Gateway {
    pub id: String,
    /// Stable across snapshots (hash of the id): metrics are keyed by it.
    pub key: u64,
    pub name: String,
    /// `status == "active"`; an inactive gateway answers 403 to everything.
    pub active: bool,
    /// Matches (method, path, headers) to an index into `rules`.
    pub router: Router,
    pub rules: Vec<Rule>,
    pub services: Vec<Service>,
    pub upstreams: Vec<Upstream>,
}

#[derive(Debug)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// Index into `Snapshot::gateways`.
    pub gateway: usize,
    pub active: bool,
    pub expires_at: Option<SystemTime>,
    /// Indices into the gateway's `rules` this key may use; `None`: all.
    pub policies: Option<Vec<usize>>,
}

#[derive(Debug)]
pub struct Rule {
    pub id: String,
    /// Stable across snapshots (hash of the id): metrics are keyed by it.
    pub key: u64,
    pub name: String,
    /// The rule's path as configured, e.g. `/v1` or `/v1/{model}/chat`.
    pub path: String,
    /// Index into the gateway's `services`.
    pub service: usize,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub retry_attempts: u32,
    pub public: bool,
    /// Model fallbacks and aliases, when configured.
    pub fallback: Option<Box<super::fallback::Fallback>>,
    /// The gateway's required plugins, then the rule's own, in run order.
    pub plugins: crate::plugin::Chain,
}

#[derive(Debug)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub kind: ServiceKind,
    /// Pre-rendered `Name: value\r\n` lines from the service's `headers`
    /// and `credentials`, injected after the target's.
    pub inject: Vec<u8>,
    /// Lower-case names of the headers in `inject`.
    pub inject_names: Vec<String>,
}

#[derive(Debug)]
pub enum ServiceKind {
    /// Index into the gateway's `upstreams`.
    Upstream(usize),
    /// A single fixed target (`type: "endpoint"`).
    Endpoint(Target),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    Random,
}

#[derive(Debug)]
pub struct Upstream {
    pub id: String,
    pub name: String,
    pub algorithm: Algorithm,
    pub targets: Vec<Target>,
    /// Stable across snapshots (hash of the upstream id): per-shard balancer
    /// state is keyed by it so a config change does not reset it.
    pub key: u64,
    pub passive_health: Option<PassiveHealth>,
    /// `health_checks.path`: shard 0 polls every target (see
    /// `upstream/health.rs`).
    pub active_check: Option<ActiveCheck>,
    /// `health_checks.circuit_breaker`: per target, per shard.
    pub breaker: Option<BreakerSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActiveCheck {
    /// Absolute request path of the probe (`GET`), query allowed.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failed probes that mark a target down.
    pub threshold: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Opens when failures / outcomes in the window reach this (0 < r <= 1).
    pub failure_ratio: f64,
    /// Outcomes remembered (1..=64).
    pub window: u32,
    /// Outcomes needed before the ratio is trusted (1..=window).
    pub min_requests: u32,
    /// How long it stays open before one probe request is let through.
    pub cooldown: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct PassiveHealth {
    /// Consecutive failures that mark a target down.
    pub threshold: u32,
    /// Seconds a target stays down.
    pub interval_secs: u64,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    /// Stable across snapshots (hash of the target id): per-shard state
    /// (health, in-flight counts, balancer weights) is keyed by it.
    pub key: u64,
    /// Dense index of this target in its snapshot ([`Snapshot::number_targets`]):
    /// per-shard balancer state is a `Vec` indexed by it.
    pub slot: u32,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// `https` targets: the client configuration and server name. `None`
    /// on an `https` target whose trust could not be built (every request
    /// then fails with 502).
    pub tls_client: Option<TlsClient>,
    /// Resolved when compiling; `None` when the name did not resolve.
    pub addr: Option<SocketAddr>,
    /// The `Host` header value: `host`, or `host:port` off the default port.
    pub authority: String,
    /// Path prefix without a trailing slash (`""` for none).
    pub path: String,
    pub weight: u32,
    pub provider: Option<String>,
    /// The API dialect it speaks (from `provider`).
    pub format: crate::provider::Format,
    /// Models it serves (`models`); empty: any.
    pub models: Vec<String>,
    /// Fills a request without `model`.
    pub default_model: Option<String>,
    /// Pre-rendered `Name: value\r\n` lines: the target's `headers`, then its
    /// credentials as its provider wants them.
    pub inject: Vec<u8>,
    /// Lower-case names of the headers in `inject` (and, on a target with
    /// `credentials`, of every credential header); a client header of the
    /// same name is dropped.
    pub inject_names: Vec<String>,
    /// SSE keep-alive: `: ping` every this long while a streaming request
    /// waits for this target's response head.
    pub sse_ping: Option<std::time::Duration>,
    /// `provider: "azure"`: the deployment path and `api-version`.
    pub azure: Option<crate::provider::azure::Azure>,
    /// `name=value` (percent-encoded) added to every upstream query: a
    /// credential sent as a query parameter (`param_location: "query"`).
    pub query: Option<String>,
}

impl Target {
    /// The pool its connections live in (`None`: unresolved address).
    pub fn pool_key(&self) -> Option<PoolKey> {
        Some(PoolKey {
            addr: self.addr?,
            tls: self.tls_client.as_ref().map_or(0, |t| t.id),
        })
    }
}
