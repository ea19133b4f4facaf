//! Admin JSON: any body given to the configuration loader (parse, normalize,
//! validate) is accepted or refused with a field path, never a panic.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    if let Err(e) = ringgate::config::compile::load(data, now) {
        assert!(!e.error.is_empty());
    }
});
