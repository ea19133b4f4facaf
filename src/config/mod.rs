//! The data model (`model`), its validation (`validate`) and its
//! compilation into the immutable per-shard [`Snapshot`] (`compile`).
//!
//! The flow: [`parse`] → [`normalize`] (ids, name references, key hashes)
//! → [`validate`] → [`compile`]; [`load`] is the first three.

pub mod compile;
pub mod fallback;
pub mod model;
pub mod snapshot;
pub mod unacted;
pub mod validate;

pub use compile::{compile, load};
pub use model::Config;
pub use snapshot::Snapshot;
pub use validate::{normalize, parse, validate, ConfigError, ErrorKind};
