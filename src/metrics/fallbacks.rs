//! Model fallbacks taken, node-wide, by gateway and reason: counted by
//! `proxy::fallback` (only on its path, so the lock is off the common
//! path), read by `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

static COUNTS: Mutex<BTreeMap<(u64, &'static str), u64>> = Mutex::new(BTreeMap::new());

/// One fallback from a step of gateway `gateway` for `reason` (a label).
pub fn count(gateway: u64, reason: &'static str) {
    let mut c = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    *c.entry((gateway, reason)).or_default() += 1;
}

/// (gateway key, reason label, fallbacks).
pub fn counts() -> Vec<(u64, &'static str, u64)> {
    let c = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    c.iter().map(|(&(g, r), &n)| (g, r, n)).collect()
}
