//! Header helpers: hop-by-hop names, `Connection` tokens, and the parsing of
//! the framing headers shared by requests and responses.

/// ASCII case-insensitive equality.
#[inline]
pub fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `v` without leading and trailing optional whitespace (SP, HTAB).
#[inline]
pub fn trim(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

/// Headers that describe one connection and never cross the proxy
/// (RFC 9110 §7.6.1, plus the de-facto `keep-alive` and `proxy-connection`).
const HOP_BY_HOP: [&[u8]; 9] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
];

/// True for the fixed hop-by-hop header names (case-insensitive). Names
/// listed in `Connection` are hop-by-hop too: see [`connection_lists`].
#[inline]
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| eq_ignore_case(h, name))
}

/// Comma-separated list elements of `v`, trimmed, empty elements skipped
/// (RFC 9110 §5.6.1 asks recipients to ignore them).
#[inline]
pub(crate) fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| *b == b',').map(trim).filter(|t| !t.is_empty())
}

/// True if `name` is listed as a token in the `Connection` header value(s);
/// such headers are hop-by-hop for this connection.
pub fn connection_lists(connection_values: &[&[u8]], name: &[u8]) -> bool {
    connection_values
        .iter()
        .any(|v| list_items(v).any(|t| eq_ignore_case(t, name)))
}

/// A non-empty run of ASCII digits as u64; no sign, no spaces, no overflow.
#[inline]
pub(crate) fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// What the `Transfer-Encoding` header(s) of a message list, all fields
/// taken together as one list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TransferCodings {
    /// At least one `Transfer-Encoding` field was present.
    pub present: bool,
    /// Number of codings listed.
    pub count: usize,
    /// How many of them are `chunked`.
    pub chunked: usize,
    /// The final coding is `chunked`.
    pub last_chunked: bool,
}

impl TransferCodings {
    pub(crate) fn add(&mut self, value: &[u8]) {
        self.present = true;
        for coding in list_items(value) {
            let is_chunked = eq_ignore_case(coding, b"chunked");
            self.count += 1;
            self.chunked += usize::from(is_chunked);
            self.last_chunked = is_chunked;
        }
    }

    /// `chunked` is the only coding (all a request may use: we decode nothing else).
    pub(crate) fn is_exactly_chunked(&self) -> bool {
        self.count == 1 && self.chunked == 1
    }
}

/// Tokens of the `Connection` header(s) that change connection handling.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
}

impl ConnectionTokens {
    pub(crate) fn add(&mut self, value: &[u8]) {
        for t in list_items(value) {
            if eq_ignore_case(t, b"close") {
                self.close = true;
            } else if eq_ignore_case(t, b"keep-alive") {
                self.keep_alive = true;
            } else if eq_ignore_case(t, b"upgrade") {
                self.upgrade = true;
            }
        }
    }

    /// Persistence per RFC 9112 §9.3: 1.1 unless `close`, 1.0 only with `keep-alive`.
    pub(crate) fn keep_alive(&self, version: u8) -> bool {
        if self.close {
            false
        } else if version >= 1 {
            true
        } else {
            self.keep_alive
        }
    }
}

/// Is `s` an HTTP token (RFC 9110 `tchar`s, non-empty)?
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_hop_by_hop_names() {
        for n in [
            "Connection",
            "KEEP-ALIVE",
            "proxy-connection",
            "Proxy-Authenticate",
            "proxy-authorization",
            "TE",
            "Trailer",
            "transfer-encoding",
            "Upgrade",
        ] {
            assert!(is_hop_by_hop(n.as_bytes()), "{n}");
        }
        for n in [
            "content-length",
            "host",
            "trailers",
            "t",
            "x-te",
            "authorization",
        ] {
            assert!(!is_hop_by_hop(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn http_connection_lists_tokens() {
        let vals: [&[u8]; 2] = [b"keep-alive, X-Foo ", b" ,close,x-bar"];
        assert!(connection_lists(&vals, b"x-foo"));
        assert!(connection_lists(&vals, b"X-BAR"));
        assert!(connection_lists(&vals, b"close"));
        assert!(!connection_lists(&vals, b"x-fo"));
        assert!(!connection_lists(&vals, b""));
        assert!(!connection_lists(&[], b"close"));
    }

    #[test]
    fn http_trim_and_case() {
        assert_eq!(trim(b" \t a b \t"), b"a b");
        assert_eq!(trim(b"   "), b"");
        assert_eq!(trim(b""), b"");
        assert!(eq_ignore_case(b"Content-Length", b"content-length"));
        assert!(!eq_ignore_case(b"content-length", b"content-lengt"));
    }

    #[test]
    fn http_parse_decimal_strict() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"0012"), Some(12));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        for bad in [&b""[..], b"+1", b"-1", b"1 2", b"0x10", b"1,1", b" 1"] {
            assert_eq!(parse_decimal(bad), None, "{:?}", bad);
        }
    }
}
