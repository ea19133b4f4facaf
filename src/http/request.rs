//! Request heads: parse, validate the framing, keep offsets.
//!
//! Framing rules (each violation is a 400 unless noted), chosen so that the
//! gateway and any upstream can never disagree about where a body ends:
//! - anything `httparse` rejects (bad tokens, control characters, bare CR,
//!   obs-fold, whitespace before the colon, versions other than 1.0/1.1,
//!   HTTP/2 preface, HTTP/0.9);
//! - a head longer than `max_head_bytes`, or more than `max_headers`
//!   fields → 431;
//! - `Transfer-Encoding` together with `Content-Length` (refused, not
//!   "TE wins": a request that carries both is a smuggling attempt or broken);
//! - `Transfer-Encoding` other than exactly one `chunked` coding (we decode no
//!   other coding, `chunked` twice or not last is invalid), or on HTTP/1.0;
//! - more than one `Content-Length` field, or a comma list, even with equal
//!   values (simplest safe rule: no request needs it), or a value that is not
//!   a plain run of digits fitting in u64;
//! - HTTP/1.1 without `Host`, or more than one `Host`;
//! - a request-target that is not a path (absolute or authority form, or
//!   `*` on anything but OPTIONS).

use std::mem::MaybeUninit;

use super::headers::{eq_ignore_case, parse_decimal, trim, ConnectionTokens, TransferCodings};
use super::{find_header, BodyKind, HeaderSpan, HttpError, Limits, Span, MAX_HEADERS};

/// A parsed request head; every [`Span`] points into the buffer given to
/// [`parse_request`].
#[derive(Clone, Debug)]
pub struct RequestHead {
    /// Bytes of the head including the final CRLFCRLF (or LFLF); the body or
    /// the next pipelined request starts here.
    pub head_len: usize,
    pub method: Span,
    /// The request-target as sent.
    pub target: Span,
    /// `target` up to the first `?`.
    pub path: Span,
    /// After the first `?` (without it), if there is one.
    pub query: Option<Span>,
    /// 0 = HTTP/1.0, 1 = HTTP/1.1.
    pub version: u8,
    /// On the heap: a head is held across the proxy's awaits, and an
    /// inline array of [`MAX_HEADERS`] would make every request's future
    /// (and each move of it) kilobytes larger.
    pub headers: Vec<HeaderSpan>,
    pub header_count: usize,
    /// `None`, `Length(n)` or `Chunked`; never `UntilClose` for a request.
    pub body: BodyKind,
    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (a 1.0 client cannot
    /// understand a 100 response, so it is ignored there, RFC 9110 §10.1.1).
    pub expect_continue: bool,
    pub host: Option<Span>,
}

impl RequestHead {
    /// The parsed header fields in order.
    #[inline]
    pub fn headers(&self) -> &[HeaderSpan] {
        &self.headers[..self.header_count]
    }

    /// Value of the first header named `name` (case-insensitive).
    #[inline]
    pub fn header<'a>(&self, buf: &'a [u8], name: &str) -> Option<&'a [u8]> {
        find_header(self.headers(), buf, name)
    }

    /// The method is exactly `m` (methods are case-sensitive).
    #[inline]
    pub fn is_method(&self, buf: &[u8], m: &str) -> bool {
        self.method.get(buf) == m.as_bytes()
    }
}

/// Parses a request head at the start of `buf`.
///
/// `Ok(None)` means the head is incomplete and more bytes are needed (and then
/// `buf.len() < limits.max_head_bytes`). Errors carry the status to answer
/// with (400 or 431).
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, HttpError> {
    let max_headers = limits.max_headers.min(MAX_HEADERS);
    // Never look past the limit: a head that does not end inside it is too large.
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let mut raw = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(window, &mut raw[..max_headers]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= limits.max_head_bytes {
                Err(HttpError::new(431, "request header too large"))
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::new(431, "too many request headers"))
        }
        Err(httparse::Error::Version) => {
            return Err(HttpError::bad_request("unsupported HTTP version"))
        }
        Err(_) => return Err(HttpError::bad_request("malformed request head")),
    };

    // Origin-form only (and `*` for OPTIONS): a reverse proxy that took an
    // absolute or authority form would have to pick between its host and
    // `Host`; refusing is the unambiguous choice.
    let raw_target = req.path.unwrap_or_default().as_bytes();
    let origin_form =
        raw_target.first() == Some(&b'/') || (raw_target == b"*" && req.method == Some("OPTIONS"));
    if !origin_form {
        return Err(HttpError::bad_request("request target must be a path"));
    }
    let method = Span::of(buf, req.method.unwrap_or_default().as_bytes());
    let target = Span::of(buf, req.path.unwrap_or_default().as_bytes());
    let version = req.version.unwrap_or(1);
    let (path, query) = split_target(buf, target);

    let mut head = RequestHead {
        head_len,
        method,
        target,
        path,
        query,
        version,
        headers: vec![HeaderSpan::default(); req.headers.len()],
        header_count: req.headers.len(),
        body: BodyKind::None,
        keep_alive: false,
        expect_continue: false,
        host: None,
    };

    let mut te = TransferCodings::default();
    let mut conn = ConnectionTokens::default();
    let mut content_length: Option<&[u8]> = None;
    let mut content_length_count = 0usize;
    let mut host_count = 0usize;

    for (slot, h) in head.headers.iter_mut().zip(req.headers.iter()) {
        *slot = HeaderSpan {
            name: Span::of(buf, h.name.as_bytes()),
            value: Span::of(buf, h.value),
        };
        let name = h.name.as_bytes();
        if eq_ignore_case(name, b"content-length") {
            content_length_count += 1;
            content_length = Some(h.value);
        } else if eq_ignore_case(name, b"transfer-encoding") {
            te.add(h.value);
        } else if eq_ignore_case(name, b"host") {
            host_count += 1;
            if head.host.is_none() {
                head.host = Some(slot.value);
            }
        } else if eq_ignore_case(name, b"connection") {
            conn.add(h.value);
        } else if eq_ignore_case(name, b"expect") {
            head.expect_continue |= eq_ignore_case(trim(h.value), b"100-continue");
        }
    }

    head.body = if te.present {
        if content_length.is_some() {
            return Err(HttpError::bad_request(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        if version == 0 {
            return Err(HttpError::bad_request(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if !te.is_exactly_chunked() {
            return Err(HttpError::bad_request("unsupported Transfer-Encoding"));
        }
        BodyKind::Chunked
    } else if let Some(v) = content_length {
        if content_length_count > 1 {
            return Err(HttpError::bad_request("duplicate Content-Length"));
        }
        match parse_decimal(trim(v)) {
            Some(n) => BodyKind::Length(n),
            None => return Err(HttpError::bad_request("invalid Content-Length")),
        }
    } else {
        BodyKind::None
    };

    if host_count > 1 {
        return Err(HttpError::bad_request("duplicate Host header"));
    }
    if version == 1 && host_count == 0 {
        return Err(HttpError::bad_request("missing Host header"));
    }

    head.keep_alive = conn.keep_alive(version);
    head.expect_continue &= version == 1;
    Ok(Some(head))
}

/// Splits the request-target at the first `?` into path and query.
#[inline]
fn split_target(buf: &[u8], target: Span) -> (Span, Option<Span>) {
    match target.get(buf).iter().position(|b| *b == b'?') {
        Some(i) => {
            let q = target.start + i as u32;
            (
                Span {
                    start: target.start,
                    end: q,
                },
                Some(Span {
                    start: q + 1,
                    end: target.end,
                }),
            )
        }
        None => (target, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Result<Option<RequestHead>, HttpError> {
        parse_request(s, &Limits::default())
    }

    fn ok(s: &[u8]) -> RequestHead {
        match parse(s) {
            Ok(Some(h)) => h,
            other => panic!(
                "{:?}: {:?}",
                String::from_utf8_lossy(s),
                other.map(|o| o.map(|h| h.body))
            ),
        }
    }

    fn status(s: &[u8]) -> u16 {
        match parse(s) {
            Err(e) => e.status,
            Ok(o) => panic!(
                "{:?} parsed: {:?}",
                String::from_utf8_lossy(s),
                o.map(|h| h.body)
            ),
        }
    }

    #[test]
    fn http_request_simple_get_spans() {
        let buf = b"GET /v1/chat?a=1&b=2 HTTP/1.1\r\nHost: api.example\r\nX-Thing:  v \r\n\r\n";
        let h = ok(buf);
        assert_eq!(h.head_len, buf.len());
        assert_eq!(h.method.get(buf), b"GET");
        assert!(h.is_method(buf, "GET"));
        assert!(!h.is_method(buf, "get"));
        assert_eq!(h.target.get(buf), b"/v1/chat?a=1&b=2");
        assert_eq!(h.path.get(buf), b"/v1/chat");
        assert_eq!(h.query.map(|q| q.get(buf)), Some(&b"a=1&b=2"[..]));
        assert_eq!(h.version, 1);
        assert_eq!(h.header_count, 2);
        assert_eq!(h.headers().len(), 2);
        assert_eq!(h.host.map(|s| s.get(buf)), Some(&b"api.example"[..]));
        assert_eq!(
            h.header(buf, "x-thing").map(super::super::headers::trim),
            Some(&b"v"[..])
        );
        assert_eq!(h.header(buf, "X-Missing"), None);
        assert_eq!(h.body, BodyKind::None);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
    }

    #[test]
    fn http_request_query_edge_cases() {
        let buf = b"GET /p? HTTP/1.1\r\nHost: h\r\n\r\n";
        let h = ok(buf);
        assert_eq!(h.path.get(buf), b"/p");
        assert_eq!(h.query.map(|q| q.len()), Some(0));
        let buf = b"GET /p?x?y HTTP/1.1\r\nHost: h\r\n\r\n";
        let h = ok(buf);
        assert_eq!(h.query.map(|q| q.get(buf)), Some(&b"x?y"[..]));
        let buf = b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
        let h = ok(buf);
        assert_eq!(h.path.get(buf), b"*");
        assert_eq!(h.query, None);
    }

    #[test]
    fn http_request_header_first_match_case_insensitive() {
        let buf = b"GET / HTTP/1.1\r\nhost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
        let h = ok(buf);
        assert_eq!(h.header(buf, "X-A"), Some(&b"1"[..]));
        assert_eq!(h.header(buf, "HOST"), Some(&b"h"[..]));
        assert_eq!(h.headers()[2].value.get(buf), b"2");
    }

    #[test]
    fn http_request_partial_input_is_none_at_every_prefix() {
        let buf = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
        for i in 0..buf.len() {
            assert!(matches!(parse(&buf[..i]), Ok(None)), "prefix {i}");
        }
        assert_eq!(ok(buf).body, BodyKind::Length(5));
    }

    #[test]
    fn http_request_pipelined_head_len_stops_at_first() {
        let first = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
        let mut buf = first.to_vec();
        buf.extend_from_slice(b"abcGET /b HTTP/1.1\r\nHost: h\r\n\r\n");
        let h = ok(&buf);
        assert_eq!(h.head_len, first.len());
        assert_eq!(h.body, BodyKind::Length(3));
        let next = ok(&buf[h.head_len + 3..]);
        assert_eq!(next.path.get(&buf[h.head_len + 3..]), b"/b");
    }

    #[test]
    fn http_request_bare_lf_line_endings_accepted() {
        let buf = b"GET / HTTP/1.1\nHost: h\n\n";
        let h = ok(buf);
        assert_eq!(h.head_len, buf.len());
    }

    #[test]
    fn http_request_head_too_large_is_431() {
        let limits = Limits {
            max_head_bytes: 64,
            max_headers: MAX_HEADERS,
        };
        let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ".to_vec();
        buf.resize(63, b'a');
        assert!(matches!(parse_request(&buf, &limits), Ok(None)));
        buf.push(b'a');
        assert_eq!(parse_request(&buf, &limits).unwrap_err().status, 431);
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&buf, &limits).unwrap_err().status, 431);
        // A head of exactly the limit is fine.
        let mut exact = b"GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ".to_vec();
        exact.resize(60, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(exact.len(), 64);
        assert_eq!(
            parse_request(&exact, &limits).unwrap().unwrap().head_len,
            64
        );
        // Default limit: 32 KiB of headers without an end.
        let mut big = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        while big.len() <= 32 * 1024 {
            big.extend_from_slice(b"X-Filler: 0123456789abcdef\r\n");
        }
        assert_eq!(status(&big), 431);
    }

    #[test]
    fn http_request_too_many_headers_is_431() {
        let limits = Limits {
            max_head_bytes: 1 << 20,
            max_headers: 3,
        };
        let three = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(
            parse_request(three, &limits).unwrap().unwrap().header_count,
            3
        );
        let four = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(parse_request(four, &limits).unwrap_err().status, 431);
        let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many), 431);
        // max_headers above MAX_HEADERS is clamped, not a panic.
        let huge = Limits {
            max_head_bytes: 1 << 20,
            max_headers: 10_000,
        };
        assert_eq!(parse_request(&many, &huge).unwrap_err().status, 431);
    }

    #[test]
    fn http_request_malformed_syntax_is_400() {
        let cases: &[&[u8]] = &[
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",       // bad method token
            b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n", // control char in target
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", // control char in value
            b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",      // space before colon
            b"GET / HTTP/1.1\r\nHo st: h\r\n\r\n",      // space in name
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", // obs-fold
            b"GET / HTTP/1.1\r\nHost: h\rX: a\r\n\r\n", // bare CR
            b"GET / HTTP/1.1\rHost: h\r\n\r\n",         // bare CR after request line
            b"GET / HTTP/1.1\r\n: empty-name\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", // double space
        ];
        for c in cases {
            assert_eq!(status(c), 400, "{:?}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn http_request_target_must_be_origin_form() {
        for c in [
            &b"GET http://evil/a HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n",
            b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET a/b HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert_eq!(status(c), 400, "{:?}", String::from_utf8_lossy(c));
        }
        assert_eq!(
            ok(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").body,
            BodyKind::None
        );
    }

    #[test]
    fn http_request_only_versions_10_and_11() {
        let cases: &[&[u8]] = &[
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.2\r\nHost: h\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
            b"GET / HTTP/0.9\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET / http/1.1\r\nHost: h\r\n\r\n",
        ];
        for c in cases {
            assert_eq!(status(c), 400, "{:?}", String::from_utf8_lossy(c));
        }
        let h = ok(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.version, 0);
    }

    #[test]
    fn http_request_te_with_content_length_is_400() {
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn http_request_transfer_encoding_rules() {
        let h = ok(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked \r\n\r\n");
        assert_eq!(h.body, BodyKind::Chunked);
        let bad: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ];
        for c in bad {
            assert_eq!(status(c), 400, "{:?}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn http_request_content_length_rules() {
        let h = ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(42));
        let h = ok(b"POST / HTTP/1.1\r\nHost: h\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(0));
        let h = ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(u64::MAX));
        let bad: &[&[u8]] = &[
            b"Content-Length: 5\r\nContent-Length: 5",
            b"Content-Length: 5\r\nContent-Length: 6",
            b"Content-Length: 5, 5",
            b"Content-Length: 5,",
            b"Content-Length: +5",
            b"Content-Length: -5",
            b"Content-Length: 5 5",
            b"Content-Length: 0x5",
            b"Content-Length: five",
            b"Content-Length: ",
            b"Content-Length: 18446744073709551616",
        ];
        for c in bad {
            let mut buf = b"POST / HTTP/1.1\r\nHost: h\r\n".to_vec();
            buf.extend_from_slice(c);
            buf.extend_from_slice(b"\r\n\r\n");
            assert_eq!(status(&buf), 400, "{:?}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn http_request_no_framing_headers_means_no_body() {
        for m in ["GET", "POST", "PUT", "DELETE"] {
            let buf = format!("{m} / HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(ok(buf.as_bytes()).body, BodyKind::None);
        }
    }

    #[test]
    fn http_request_host_rules() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
        let h = ok(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.host, None);
        let buf = b"GET / HTTP/1.0\r\nHost: x.y:8080\r\n\r\n";
        assert_eq!(ok(buf).host.map(|s| s.get(buf)), Some(&b"x.y:8080"[..]));
    }

    #[test]
    fn http_request_keep_alive_rules() {
        let cases: &[(&[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
                true,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\nConnection: closed\r\n\r\n", false),
        ];
        for (c, ka) in cases {
            assert_eq!(ok(c).keep_alive, *ka, "{:?}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn http_request_expect_continue() {
        let h =
            ok(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
        assert!(h.expect_continue);
        let h = ok(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n");
        assert!(!h.expect_continue);
        let h = ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
        assert!(!h.expect_continue);
    }
}
