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

pub mod access_log;
pub mod admin;
pub mod app;
pub mod buf;
pub mod cluster;
pub mod config;
pub mod cost;
pub mod http;
pub mod metrics;
pub mod mock_upstream;
pub mod plugin;
pub mod provider;
pub mod proxy;
pub mod route;
pub mod runtime;
pub mod upstream;
pub mod util;
