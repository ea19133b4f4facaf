//! The integration tests that need the machine to themselves, in one binary
//! that runs them one at a time.
//!
//! These measure exact outcomes under load (limits exact across shards, two
//! cluster nodes over Redis, busy client threads, 2,000 idle connections,
//! misbehaving peers on timers, the Python SDKs against their timeouts) or
//! wait on answers from other executors (`scripts/stall_stress.sh` runs three
//! of these modules under CPU burners). Run beside the parallel tests of
//! `tests/it/main.rs` they failed now and then, e.g. `rate_limit_exact`
//! counted (36, 150, 14) for (50, 150, 0). Cargo runs test binaries one after
//! another, so nothing of `it` runs beside them; inside this binary every test
//! first takes [`alone`], so they do not overlap with each other either.
//!
//! `cargo test --test alone MODULE::` runs one area.

#[path = "../common/mod.rs"]
mod common;
#[path = "../raw/mod.rs"]
mod raw;

mod admin_replication;
mod cluster;
mod contention;
mod hostile_clients;
mod hostile_upstreams;
mod python_sdk;
mod rate_limit_exact;
mod sharding;

use std::sync::{Mutex, MutexGuard};

/// Held for a test's duration: one test of this binary runs at a time (a
/// failed test's poisoned lock still serves the next).
pub fn alone() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
