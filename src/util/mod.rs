//! Small helpers that need nothing but `std`: the bottom layer.

pub mod rfc3339;
