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
//! - HTTP/1.1 without `Host`, or more than one `Host`.

use std::mem::MaybeUninit;

use super::headers::{eq_ignore_case, parse_decimal, trim, ConnectionTokens, TransferCodings};
use super::{find_header, BodyKind, HeaderSpan, HttpError, Limits, Span, MAX_HEADERS};

/// A parsed request head; every [`Span`] points into the buffer given to
/// [`parse_request`].
#[derive(Clone, Copy, Debug)]
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
    pub headers: [HeaderSpan; MAX_HEADERS],
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
        headers: [HeaderSpan::default(); MAX_HEADERS],
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
