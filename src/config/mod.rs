//! The data model of SPEC §2 (`model`), its validation (`validate`) and its
//! compilation into the immutable per-shard [`Snapshot`] (`compile`).

pub mod model;
pub mod snapshot;

pub use model::Config;
pub use snapshot::Snapshot;
