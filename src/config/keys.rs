//! API keys at rest: the `sha256:` hash the store keeps instead of the key.

use sha2::{Digest, Sha256};

/// `"sha256:" + hex(sha256(key))`, the stored form of an API key.
pub fn hash_key(plaintext: &str) -> String {
    let digest = Sha256::digest(plaintext.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Decodes `sha256:<64 lowercase hex>`.
pub fn parse_key_hash(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("sha256:")?.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nibble(hex[2 * i])? << 4 | nibble(hex[2 * i + 1])?;
    }
    Some(out)
}
