//! Small helpers that need nothing but `std`: the bottom layer.

pub mod canonical_json;
pub mod fnv;
pub mod rfc3339;
