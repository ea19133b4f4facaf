//! ringgate — a thread-per-core AI gateway on io_uring.
//!
//! Two flows run through this crate.
//!
//! **Request path** (one pinned glommio executor per CPU, nothing shared and
//! nothing locked): [`runtime`] accepts on the shard's own `SO_REUSEPORT`
//! socket → [`http`] parses the head into offsets of the read buffer →
//! [`route`] finds gateway, key and rule in the shard's immutable
//! [`config::Snapshot`] → [`upstream`] picks a target and a pooled keep-alive
//! connection → [`proxy`] writes the rewritten head, streams the body both
//! ways and hands the connection back to the pool.
//!
//! **Admin path** (one control thread): [`admin`] parses and validates a
//! change against the whole configuration, compiles a new snapshot, makes it
//! durable in the data directory, then [`runtime::control`] sends the
//! `Arc<Snapshot>` to every shard over glommio's cross-core channels and
//! answers only when every shard acknowledged it. A shard swaps its view
//! between requests; requests in flight finish on the snapshot they began with.
//!
//! **Observability** rides on both: each request is counted once, at its end,
//! in its shard's own [`metrics`] (and written to the shard's [`access_log`]
//! buffer when sampled); a `/metrics` scrape on the admin listener asks every
//! shard for a copy over the same control channels and sums them there.
//!
//! # Layers
//!
//! Each module uses only modules of its own layer or of layers below it
//! (a lower number). `layers.rs` checks it: it reads every `crate::`,
//! `super::` and `self::` path in `src/` and fails on an edge this table does
//! not allow, and on any circle between files, naming the file and the edge.
//! A module is placed by the longest entry that is a prefix of its path.
//!
//! | layer | what | modules |
//! |------:|------|---------|
//! | 0 | std-only helpers and buffers | `util`, `buf` |
//! | 1 | the HTTP/1.1 codec | `http` |
//! | 2 | I/O on glommio and the shard's ring: executors, sockets, timeouts, wake-ups, binding | `runtime::uring`, `runtime::conn`, `runtime::bell`, `runtime::bind`, `runtime::executor` |
//! | 3 | the Redis client and its URL | `cluster::resp`, `cluster` |
//! | 4 | the configuration model, its errors, parsing and normalisation; model fallbacks and aliases; prices | `config::error`, `config::model`, `config::keys`, `config::parse`, `config::normalize`, `config::fallback`, `cost` |
//! | 5 | routes, provider dialects, the token-usage scan | `route`, `provider`, `metrics::usage` |
//! | 6 | limit windows and their Redis leases | `cluster::limits` |
//! | 7 | upstream TLS, connections and pools | `upstream::tls`, `upstream::pool` |
//! | 8 | plugins and their cross-shard counters | `plugin` |
//! | 9 | validation and the compiled snapshot | `config` |
//! | 10 | balancing and health | `upstream` |
//! | 11 | metrics and the access log | `access_log`, `metrics` |
//! | 12 | settings, host checks, the control plane's messages and broadcast | `runtime::settings`, `runtime::preflight`, `runtime::control` |
//! | 13 | a shard's state | `runtime::shard` |
//! | 14 | the proxy | `proxy` |
//! | 15 | the shard threads | `runtime::worker`, `runtime` |
//! | 16 | the stores and the admin API | `cluster::config`, `admin` |
//! | 17 | wiring | `app` |

pub mod access_log;
pub mod admin;
pub mod app;
pub mod buf;
pub mod cluster;
pub mod config;
pub mod cost;
pub mod http;
pub mod metrics;
pub mod plugin;
pub mod provider;
pub mod proxy;
pub mod route;
pub mod runtime;
pub mod upstream;
pub mod util;

#[cfg(test)]
mod layers;
