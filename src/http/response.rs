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
#[derive(Clone, Copy, Debug)]
pub struct ResponseHead {
    /// Bytes of the head including the final empty line; the body starts here.
    pub head_len: usize,
    /// 0 = HTTP/1.0, 1 = HTTP/1.1.
    pub version: u8,
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: Span,
    pub headers: [HeaderSpan; MAX_HEADERS],
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
        headers: [HeaderSpan::default(); MAX_HEADERS],
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
