//! `request_size_limiter`: `max_bytes` of body (413, decided from
//! `Content-Length` before the body is read, or from the decoded size of a
//! chunked body), `max_chars` (413, UTF-8 characters of the buffered body)
//! and `require_content_length` (411 for a body sent without one).
//!
//! ```json
//! {"max_bytes": 1048576, "max_chars": 200000, "require_content_length": false}
//! ```

use serde::Deserialize;

use super::{bad, RequestView, Stop};
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
}

#[derive(Debug)]
pub struct RequestSizeLimiter {
    pub max_bytes: Option<u64>,
    pub max_chars: Option<u64>,
    pub require_content_length: bool,
}

impl RequestSizeLimiter {
    pub fn new(s: Settings, field: &str) -> Result<RequestSizeLimiter, ConfigError> {
        if s.max_bytes.is_none() && s.max_chars.is_none() && !s.require_content_length {
            return Err(bad(
                field,
                "max_bytes",
                "set max_bytes, max_chars or require_content_length",
            ));
        }
        if s.max_chars == Some(0) {
            return Err(bad(field, "max_chars", "must be at least 1"));
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
