//! The upstream side of a shard: target choice, passive health and the
//! circuit breaker (`balance`), active health checks (`health`),
//! connections and the per-shard keep-alive pool (`pool`).

pub mod balance;
pub mod health;
pub mod pool;
pub mod tls;

pub use balance::{Balancer, InFlight};
pub use pool::{connect, ConnectError, Pool, PoolKey, UpstreamConn};
