//! Response heads from an upstream: parse, decide the framing, keep offsets.
//!
//! Every error here is a 502: the upstream sent something we cannot frame
//! safely. Rules (RFC 9112 §6.3):
//! - 1xx, 204, 304 and any answer to HEAD have no body, whatever their
//!   `Content-Length`/`Transfer-Encoding` say (those are informational then);
//! - `Transfer-Encoding` with `Content-Length` is refused (hostile or broken
//!   upstream); a final `chunked` coding is `Chunked`, `chunked` twice is
//!   refused, any other final coding is read until close;
//! - `Content-Length` may repeat (fields or a comma list) only with equal
//!   values;
//! - neither header: the body runs until the upstream closes.

use std::mem::MaybeUninit;

use super::headers::{
    eq_ignore_case, list_items, parse_decimal, ConnectionTokens, TransferCodings,
};
use super::{find_header, BodyKind, HeaderSpan, HttpError, Limits, Span, MAX_HEADERS};

/// A parsed response head; every [`Span`] points into the buffer given to
/// [`parse_response`].
#[derive(Clone, Debug)]
pub struct ResponseHead {
    /// Bytes of the head including the final empty line; the body starts here.
    pub head_len: usize,
    /// 0 = HTTP/1.0, 1 = HTTP/1.1.
    pub version: u8,
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: Span,
    /// On the heap: a head is held across the proxy's awaits, and an
    /// inline array of [`MAX_HEADERS`] would make every request's future
    /// (and each move of it) kilobytes larger.
    pub headers: Vec<HeaderSpan>,
    pub header_count: usize,
    /// From the status, the request method and the framing headers.
    pub body: BodyKind,
    /// Whether the upstream connection can be reused after this message.
    pub keep_alive: bool,
}

impl ResponseHead {
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

    /// An interim (1xx) response other than 101: a final response follows.
    #[inline]
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// Parses a response head at the start of `buf`. `request_was_head` says the
/// request was `HEAD` (so the response has no body).
///
/// `Ok(None)` means more bytes are needed (and then
/// `buf.len() < limits.max_head_bytes`); errors are all status 502.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    request_was_head: bool,
) -> Result<Option<ResponseHead>, HttpError> {
    let max_headers = limits.max_headers.min(MAX_HEADERS);
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let mut raw = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        window,
        &mut raw[..max_headers],
    );
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= limits.max_head_bytes {
                Err(HttpError::bad_gateway("upstream response header too large"))
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::bad_gateway("too many upstream response headers"))
        }
        Err(_) => return Err(HttpError::bad_gateway("invalid upstream response head")),
    };

    let status = res.code.unwrap_or(0);
    if !(100..=999).contains(&status) {
        return Err(HttpError::bad_gateway("invalid upstream response status"));
    }
    let version = res.version.unwrap_or(1);
    let mut head = ResponseHead {
        head_len,
        version,
        status,
        reason: Span::of(buf, res.reason.unwrap_or_default().as_bytes()),
        headers: vec![HeaderSpan::default(); res.headers.len()],
        header_count: res.headers.len(),
        body: BodyKind::None,
        keep_alive: false,
    };

    let mut te = TransferCodings::default();
    let mut conn = ConnectionTokens::default();
    let mut content_length: Option<Result<u64, ()>> = None;

    for (slot, h) in head.headers.iter_mut().zip(res.headers.iter()) {
        *slot = HeaderSpan {
            name: Span::of(buf, h.name.as_bytes()),
            value: Span::of(buf, h.value),
        };
        let name = h.name.as_bytes();
        if eq_ignore_case(name, b"content-length") {
            content_length = Some(merge_content_length(content_length, h.value));
        } else if eq_ignore_case(name, b"transfer-encoding") {
            te.add(h.value);
        } else if eq_ignore_case(name, b"connection") {
            conn.add(h.value);
        }
    }

    let bodiless =
        request_was_head || (100..200).contains(&status) || status == 204 || status == 304;
    head.body = if bodiless {
        BodyKind::None
    } else if te.present {
        if content_length.is_some() {
            return Err(HttpError::bad_gateway(
                "upstream sent both Transfer-Encoding and Content-Length",
            ));
        }
        if te.chunked > 1 {
            return Err(HttpError::bad_gateway("upstream applied chunked twice"));
        }
        if te.last_chunked {
            BodyKind::Chunked
        } else {
            BodyKind::UntilClose
        }
    } else {
        match content_length {
            Some(Ok(n)) => BodyKind::Length(n),
            Some(Err(())) => return Err(HttpError::bad_gateway("invalid upstream Content-Length")),
            None => BodyKind::UntilClose,
        }
    };

    head.keep_alive = conn.keep_alive(version)
        && head.body != BodyKind::UntilClose
        && status != 101
        // Transfer-Encoding in a 1.0 message: framing is suspect, don't reuse.
        && !(te.present && version == 0);
    Ok(Some(head))
}

/// Folds one `Content-Length` field into what was seen so far: every list
/// element of every field must be the same valid number.
fn merge_content_length(seen: Option<Result<u64, ()>>, value: &[u8]) -> Result<u64, ()> {
    let mut current = match seen {
        Some(Err(())) => return Err(()),
        Some(Ok(n)) => Some(n),
        None => None,
    };
    for item in list_items(value) {
        let n = parse_decimal(item).ok_or(())?;
        match current {
            Some(c) if c != n => return Err(()),
            _ => current = Some(n),
        }
    }
    current.ok_or(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8], head: bool) -> Result<Option<ResponseHead>, HttpError> {
        parse_response(s, &Limits::default(), head)
    }

    fn ok(s: &[u8]) -> ResponseHead {
        ok_head(s, false)
    }

    fn ok_head(s: &[u8], head: bool) -> ResponseHead {
        match parse(s, head) {
            Ok(Some(h)) => h,
            other => panic!(
                "{:?}: {:?}",
                String::from_utf8_lossy(s),
                other.map(|o| o.map(|h| h.body))
            ),
        }
    }

    fn err(s: &[u8]) -> HttpError {
        match parse(s, false) {
            Err(e) => e,
            Ok(o) => panic!(
                "{:?} parsed: {:?}",
                String::from_utf8_lossy(s),
                o.map(|h| h.body)
            ),
        }
    }

    #[test]
    fn http_response_content_length() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nhello world!";
        let h = ok(buf);
        assert_eq!(h.status, 200);
        assert_eq!(h.version, 1);
        assert_eq!(h.reason.get(buf), b"OK");
        assert_eq!(h.head_len, buf.len() - 12);
        assert_eq!(h.body, BodyKind::Length(12));
        assert!(h.keep_alive);
        assert!(!h.is_interim());
        assert_eq!(h.header(buf, "content-type"), Some(&b"text/plain"[..]));
        assert_eq!(h.headers().len(), 2);
    }

    #[test]
    fn http_response_chunked_and_te_rules() {
        let h = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.body, BodyKind::Chunked);
        assert!(h.keep_alive);
        let h = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(h.body, BodyKind::Chunked);
        let h = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(h.body, BodyKind::UntilClose);
        assert!(!h.keep_alive);
        let h = ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert_eq!(h.body, BodyKind::UntilClose);
        assert!(!h.keep_alive);
        let e = err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(e.status, 502);
        let e = err(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(e.status, 502);
        // TE in an HTTP/1.0 response: still decoded, never reused.
        let h =
            ok(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.body, BodyKind::Chunked);
        assert!(!h.keep_alive);
    }

    #[test]
    fn http_response_content_length_duplicates() {
        let h = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(7));
        let h = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(7));
        for bad in [
            &b"Content-Length: 7\r\nContent-Length: 8"[..],
            b"Content-Length: 7, 8",
            b"Content-Length: x",
            b"Content-Length: -1",
            b"Content-Length: ",
            b"Content-Length: 99999999999999999999",
            b"Content-Length: 7\r\nContent-Length: bad",
        ] {
            let mut buf = b"HTTP/1.1 200 OK\r\n".to_vec();
            buf.extend_from_slice(bad);
            buf.extend_from_slice(b"\r\n\r\n");
            assert_eq!(err(&buf).status, 502, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn http_response_until_close_without_framing() {
        let h = ok(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n");
        assert_eq!(h.body, BodyKind::UntilClose);
        assert!(!h.keep_alive);
    }

    #[test]
    fn http_response_bodiless_statuses_and_head() {
        for s in [
            b"100 Continue",
            &b"103 Early Hints"[..],
            b"204 No Content",
            b"304 Not Modified",
        ] {
            let mut buf = b"HTTP/1.1 ".to_vec();
            buf.extend_from_slice(s);
            buf.extend_from_slice(b"\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n");
            let h = ok(&buf);
            assert_eq!(h.body, BodyKind::None, "{:?}", String::from_utf8_lossy(s));
            assert!(h.keep_alive);
            // Framing headers stay visible.
            assert_eq!(h.header(&buf, "content-length"), Some(&b"10"[..]));
        }
        let h = ok_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", true);
        assert_eq!(h.body, BodyKind::None);
        assert!(h.keep_alive);
        let h = ok_head(b"HTTP/1.1 200 OK\r\n\r\n", true);
        assert_eq!(h.body, BodyKind::None);
        assert!(h.keep_alive);
    }

    #[test]
    fn http_response_interim() {
        assert!(ok(b"HTTP/1.1 100 Continue\r\n\r\n").is_interim());
        assert!(ok(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n").is_interim());
        let up = ok(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
        assert!(!up.is_interim());
        assert!(!up.keep_alive);
        assert!(!ok(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_interim());
    }

    #[test]
    fn http_response_keep_alive_rules() {
        let cases: &[(&[u8], bool)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                true,
            ),
            (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false),
        ];
        for (c, ka) in cases {
            assert_eq!(ok(c).keep_alive, *ka, "{:?}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn http_response_status_line() {
        let buf = b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n";
        let h = ok(buf);
        assert!(h.reason.is_empty());
        assert_eq!(h.reason.get(buf), b"");
        let h = ok(b"HTTP/1.1 999 Whatever\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.status, 999);
        for bad in [
            &b"HTTP/1.1 099 Low\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"ICY 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        ] {
            assert_eq!(err(bad).status, 502, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn http_response_partial_and_too_large() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
        for i in 0..buf.len() {
            assert!(matches!(parse(&buf[..i], false), Ok(None)), "prefix {i}");
        }
        let limits = Limits {
            max_head_bytes: 32,
            max_headers: 2,
        };
        assert_eq!(parse_response(buf, &limits, false).unwrap_err().status, 502);
        let many = b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let limits = Limits {
            max_head_bytes: 1024,
            max_headers: 2,
        };
        assert_eq!(
            parse_response(many, &limits, false).unwrap_err().status,
            502
        );
    }
}
