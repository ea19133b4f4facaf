//! The data model of SPEC §2 (`model`), its validation (`validate`) and its
//! compilation into the immutable per-shard [`Snapshot`] (`compile`).

pub mod snapshot;

pub use snapshot::Snapshot;
