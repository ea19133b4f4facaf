//! Shards, pinning, listeners, preflight checks and the control plane: the
//! pieces `serve` in `app.rs` puts together.

pub mod bell;
pub mod bind;
pub mod conn;
pub mod control;
pub mod executor;
pub mod preflight;
pub mod settings;
pub mod shard;
pub mod uring;
pub mod worker;

use std::sync::atomic::{AtomicBool, Ordering};

pub use settings::{ServeArgs, Settings};

/// True once SIGINT or SIGTERM arrived.
pub(crate) fn stopping(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}
