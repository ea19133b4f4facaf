//! HTTP/1.1 on the wire, without an executor: head parsing, message framing
//! and chunked coding.
//!
//! Heads are parsed with `httparse` into a stack array and kept as [`Span`]s
//! (offsets) into the caller's read buffer, so no header is copied or
//! allocated on the hot path. Framing decisions (which [`BodyKind`], whether
//! the connection survives) are made here once, following RFC 9112 §6 with
//! the smuggling guards spelled out in `request.rs` and `response.rs`.
//!
//! Errors are [`HttpError`]s that already carry the status the gateway
//! answers with: 400/431 for a client's request, 502 for an upstream's
//! response.

pub mod chunked;
pub mod errors;
pub mod headers;
pub mod request;
pub mod response;

pub use chunked::{encode_chunk, ChunkedDecoder, Progress, LAST_CHUNK};
pub use request::{parse_request, RequestHead};
pub use response::{parse_response, ResponseHead};

/// Most headers a head may carry; the size of the stack arrays.
pub const MAX_HEADERS: usize = 100;
/// Default limit on the bytes of a head, request line and final CRLF included.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 32 * 1024;

/// A byte range `start..end` of the buffer a head was parsed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The bytes this span covers in `buf` (the buffer it was parsed from).
    ///
    /// Returns an empty slice if `buf` is too short rather than panicking.
    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }

    /// The span of `part` inside `buf`; `part` must be a sub-slice of `buf`
    /// (as everything `httparse` returns is). Anything else (httparse hands
    /// out a static `""` for a missing reason phrase) gives an empty span.
    #[inline]
    pub(crate) fn of(buf: &[u8], part: &[u8]) -> Span {
        let base = buf.as_ptr() as usize;
        let p = part.as_ptr() as usize;
        if p < base || p + part.len() > base + buf.len() {
            return Span::default();
        }
        let start = (p - base) as u32;
        Span {
            start,
            end: start + part.len() as u32,
        }
    }
}

/// A header as two spans of the read buffer.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderSpan {
    pub name: Span,
    pub value: Span,
}

/// How the body of a message is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all.
    None,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`; decode with [`ChunkedDecoder`].
    Chunked,
    /// Responses only: the body runs until the upstream closes.
    UntilClose,
}

/// Limits on a head, checked while parsing.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of a head including the final empty line (default 32 KiB).
    pub max_head_bytes: usize,
    /// Number of header fields (default 100, clamped to [`MAX_HEADERS`]).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            max_headers: MAX_HEADERS,
        }
    }
}

/// An HTTP error the gateway answers itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub message: &'static str,
}

impl HttpError {
    pub const fn new(status: u16, message: &'static str) -> Self {
        HttpError { status, message }
    }

    pub(crate) const fn bad_request(message: &'static str) -> Self {
        HttpError::new(400, message)
    }

    pub(crate) const fn bad_gateway(message: &'static str) -> Self {
        HttpError::new(502, message)
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for HttpError {}

/// First header named `name` (case-insensitive) among `headers`.
#[inline]
pub(crate) fn find_header<'a>(
    headers: &[HeaderSpan],
    buf: &'a [u8],
    name: &str,
) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| headers::eq_ignore_case(h.name.get(buf), name.as_bytes()))
        .map(|h| h.value.get(buf))
}
