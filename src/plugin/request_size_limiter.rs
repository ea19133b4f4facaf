//! `request_size_limiter`: `max_bytes` of body (413, decided from
//! `Content-Length` before the body is read, or from the decoded size of a
//! chunked body), `max_chars` (413, UTF-8 characters of the buffered body)
//! and `require_content_length` (411 for a body sent without one).
//!
//! ```json
//! {"max_bytes": 1048576, "max_chars": 200000, "require_content_length": false}
//! ```
//! TrustGate's spelling compiles to the same plugin:
//! `{"allowed_payload_size": 10, "size_unit": "megabytes", "max_chars_per_request": 100000}`
//! (`size_unit`: `bytes`, `kilobytes` or `megabytes`, the default; 1 KB =
//! 1024 bytes).

use serde::Deserialize;

use super::{bad, either, RequestView, Stop};
use crate::config::ConfigError;
use crate::http::BodyKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub max_bytes: Option<u64>,
    #[serde(default)]
    pub max_chars: Option<u64>,
    #[serde(default)]
    pub require_content_length: bool,
    /// TrustGate's `max_bytes`, in `size_unit`s.
    #[serde(default)]
    pub allowed_payload_size: Option<u64>,
    #[serde(default)]
    pub size_unit: Option<SizeUnit>,
    /// TrustGate's `max_chars`.
    #[serde(default)]
    pub max_chars_per_request: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeUnit {
    Bytes,
    Kilobytes,
    #[default]
    Megabytes,
}

#[derive(Debug)]
pub struct RequestSizeLimiter {
    pub max_bytes: Option<u64>,
    pub max_chars: Option<u64>,
    pub require_content_length: bool,
}

impl RequestSizeLimiter {
    pub fn new(mut s: Settings, field: &str) -> Result<RequestSizeLimiter, ConfigError> {
        // One setting, two spellings: ringgate's or TrustGate's, not both.
        if s.allowed_payload_size == Some(0) {
            return Err(bad(field, "allowed_payload_size", "must be at least 1"));
        }
        if s.size_unit.is_some() && s.allowed_payload_size.is_none() {
            return Err(bad(field, "size_unit", "only with allowed_payload_size"));
        }
        let unit: u64 = match s.size_unit.unwrap_or_default() {
            SizeUnit::Bytes => 1,
            SizeUnit::Kilobytes => 1 << 10,
            SizeUnit::Megabytes => 1 << 20,
        };
        let payload = s.allowed_payload_size.map(|n| n.saturating_mul(unit));
        s.max_bytes = either(
            field,
            (s.max_bytes, "max_bytes"),
            (payload, "allowed_payload_size"),
        )?;
        s.max_chars = either(
            field,
            (s.max_chars, "max_chars"),
            (s.max_chars_per_request, "max_chars_per_request"),
        )?;
        if s.max_bytes.is_none() && s.max_chars.is_none() && !s.require_content_length {
            return Err(bad(
                field,
                "max_bytes",
                "set max_bytes, max_chars or require_content_length",
            ));
        }
        if s.max_chars == Some(0) {
            let name = if s.max_chars_per_request.is_some() {
                "max_chars_per_request"
            } else {
                "max_chars"
            };
            return Err(bad(field, name, "must be at least 1"));
        }
        Ok(RequestSizeLimiter {
            max_bytes: s.max_bytes,
            max_chars: s.max_chars,
            require_content_length: s.require_content_length,
        })
    }

    pub fn on_head(&self, req: &RequestView<'_>) -> Option<Stop> {
        match req.head.body {
            BodyKind::Length(n) if self.max_bytes.is_some_and(|m| n > m) => {
                Some(Stop::Reject(413, "request body too large".into()))
            }
            BodyKind::Chunked if self.require_content_length => {
                Some(Stop::Reject(411, "Content-Length required".into()))
            }
            _ => None,
        }
    }

    /// The whole (decoded) body.
    pub fn on_body(&self, body: &[u8]) -> Option<Stop> {
        if self.max_bytes.is_some_and(|m| body.len() as u64 > m) {
            return Some(Stop::Reject(413, "request body too large".into()));
        }
        if let Some(max) = self.max_chars {
            // Characters of UTF-8 text: every byte that does not continue one.
            let chars = body.iter().filter(|&&b| (b as i8) >= -0x40).count() as u64;
            if chars > max {
                return Some(Stop::Reject(
                    413,
                    "request body has too many characters".into(),
                ));
            }
        }
        None
    }
}
