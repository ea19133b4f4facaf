//! The data model (`model`), its validation (`validate`) and its
//! compilation into the immutable per-shard [`Snapshot`] (`compile`).
//!
//! The flow: [`parse`] → [`normalize`] (ids, name references, key hashes)
//! → [`compile`], which validates (`validate_model`), parses plugin settings
//! once and fails on either; [`load`] is parse, normalize and
//! `validate_model` (a document checked as it is read). [`validate`] is
//! `validate_model` with the plugin settings parsed too (and dropped), for a
//! caller that wants every check without compiling.

pub mod compile;
pub mod error;
pub mod fallback;
pub mod keys;
pub mod model;
pub mod normalize;
pub mod parse;
pub mod snapshot;
pub mod unacted;
pub mod validate;

#[cfg(test)]
mod tests;

pub use compile::{compile, load};
pub use error::{ConfigError, ErrorKind};
pub use model::Config;
pub use normalize::normalize;
pub use parse::parse;
pub use snapshot::Snapshot;
pub use validate::validate;
