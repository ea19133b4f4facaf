//! 64-bit FNV-1a, the one hash of stable keys (ids, names, models) and of
//! the route trie's small maps.

use std::hash::Hasher;

/// 64-bit FNV-1a: stable across runs and builds.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = FnvHasher::default();
    h.write(bytes);
    h.finish()
}

/// FNV-1a as a [`Hasher`] for the trie's small keys (config-controlled, so
/// no flooding concern on insert; lookups never insert).
#[derive(Clone, Copy)]
pub struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> Self {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
