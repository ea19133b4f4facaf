//! `rate_limiter`: request limits `global`, `per_ip`, `per_key` and
//! `per_user` (the value of `user_header`), each `{limit, window}`, exact
//! across shards (see [`super::counters`]) and, in cluster mode, across
//! nodes (see `cluster::limits`). Answers carry
//! `X-RateLimit-Limit/Remaining/Reset` (of the tightest dimension); a refusal
//! is 429 with `Retry-After`.
//!
//! ```json
//! {"limits": {"global": {"limit": 1000, "window": "1m"},
//!             "per_ip": {"limit": 10, "window": "10s"},
//!             "per_key": {"limit": 100, "window": "1m"},
//!             "per_user": {"limit": 20, "window": "1m"}},
//!  "user_header": "X-User-Id"}
//! ```
//! A request without a value for a dimension (no key, no user header) is not
//! counted on that dimension.
//!
//! TrustGate's settings work as written: `actions` (`{"type": "reject",
//! "retry_after": "60"}`: `Retry-After` and the body's `retry_after` say
//! that instead of the computed wait), `per_user` keyed by `X-User-ID` (or
//! `X-UserID`, `User-ID`) when no `user_header` is set, and `per_ua`
//! (accepted; TrustGate never checks it either). Each checked dimension also
//! answers TrustGate's `X-RateLimit-<type>-Limit/-Remaining/-Reset` (reset
//! in unix seconds), e.g. `X-RateLimit-global-Limit`; a refusal says which
//! (`"per_user rate limit exceeded"`).

use serde::Deserialize;

use super::counters::Counters;
use super::{bad, push_header_num, RequestView, Stop, Window};
use crate::config::ConfigError;
use crate::util::fnv::fnv1a64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub limits: Limits,
    #[serde(default)]
    pub user_header: Option<String>,
    #[serde(default)]
    pub actions: Option<Actions>,
}

/// TrustGate's refusal settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actions {
    /// `reject` or `block` (both refuse with 429).
    #[serde(rename = "type")]
    pub kind: String,
    /// Seconds, as a string (TrustGate's) or a number.
    #[serde(default)]
    pub retry_after: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default)]
    pub global: Option<Limit>,
    #[serde(default)]
    pub per_ip: Option<Limit>,
    #[serde(default)]
    pub per_key: Option<Limit>,
    #[serde(default)]
    pub per_user: Option<Limit>,
    /// TrustGate parses it but never checks it; so does ringgate.
    #[serde(default)]
    pub per_ua: Option<Limit>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub limit: u64,
    pub window: Window,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dimension {
    Global,
    Ip,
    Key,
    User,
}

impl Dimension {
    fn name(self) -> &'static str {
        match self {
            Dimension::Global => "global",
            Dimension::Ip => "per_ip",
            Dimension::Key => "per_key",
            Dimension::User => "per_user",
        }
    }
}

/// The user headers TrustGate reads when no `user_header` is set.
const USER_HEADERS: [&str; 3] = ["x-user-id", "x-userid", "user-id"];

#[derive(Debug)]
pub struct RateLimiter {
    dims: Vec<(Dimension, Limit)>,
    /// `None`: TrustGate's [`USER_HEADERS`].
    user_header: Option<String>,
    /// `actions.retry_after`: the fixed `Retry-After`.
    retry_after: Option<u64>,
    /// The `X-RateLimit-<type>-*` header names, by dimension.
    names: Vec<[String; 3]>,
}

impl RateLimiter {
    pub fn new(s: Settings, field: &str) -> Result<RateLimiter, ConfigError> {
        let mut dims = Vec::new();
        for (d, name, l) in [
            (Dimension::Global, "global", s.limits.global),
            (Dimension::Ip, "per_ip", s.limits.per_ip),
            (Dimension::Key, "per_key", s.limits.per_key),
            (Dimension::User, "per_user", s.limits.per_user),
        ] {
            if let Some(l) = l {
                if l.limit == 0 {
                    return Err(bad(
                        field,
                        &format!("limits.{name}.limit"),
                        "must be at least 1",
                    ));
                }
                dims.push((d, l));
            }
        }
        if dims.is_empty() {
            return Err(bad(
                field,
                "limits",
                "needs at least one of global, per_ip, per_key, per_user",
            ));
        }
        if let Some(h) = &s.user_header {
            if !crate::http::headers::is_token(h) {
                return Err(bad(
                    field,
                    "user_header",
                    format!("{h:?} is not a header name"),
                ));
            }
        }
        let retry_after = match &s.actions {
            None => None,
            Some(a) => {
                if !["reject", "block"].contains(&a.kind.as_str()) {
                    return Err(bad(
                        field,
                        "actions.type",
                        "must be \"reject\" or \"block\"",
                    ));
                }
                let secs = match &a.retry_after {
                    None => None,
                    Some(serde_json::Value::Number(n)) => n.as_u64(),
                    Some(serde_json::Value::String(t)) => t.trim().parse::<u64>().ok(),
                    Some(_) => None,
                };
                if a.retry_after.is_some() && secs.is_none() {
                    return Err(bad(
                        field,
                        "actions.retry_after",
                        "must be whole seconds (\"60\" or 60)",
                    ));
                }
                // TrustGate's default.
                Some(secs.unwrap_or(60))
            }
        };
        let names = dims
            .iter()
            .map(|(d, _)| {
                ["Limit", "Remaining", "Reset"].map(|h| format!("X-RateLimit-{}-{h}", d.name()))
            })
            .collect();
        Ok(RateLimiter {
            dims,
            user_header: s.user_header,
            retry_after,
            names,
        })
    }

    /// Checks every dimension in turn; the first refusal answers.
    pub async fn check(
        &self,
        counters: &Counters,
        scope: u64,
        req: &RequestView<'_>,
        headers: &mut Vec<u8>,
    ) -> Option<Stop> {
        // The tightest answer so far: (limit, remaining, reset_us).
        let mut shown: Option<(u64, u64, u64)> = None;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for (i, &(dim, l)) in self.dims.iter().enumerate() {
            let mut ip_buf = [0u8; 16];
            let value: &[u8] = match dim {
                Dimension::Global => b"",
                Dimension::Ip => match req.peer {
                    Some(std::net::IpAddr::V4(a)) => {
                        ip_buf[..4].copy_from_slice(&a.octets());
                        &ip_buf[..4]
                    }
                    Some(std::net::IpAddr::V6(a)) => {
                        ip_buf = a.octets();
                        &ip_buf
                    }
                    None => continue,
                },
                Dimension::Key => match req.key_id {
                    Some(k) => k.as_bytes(),
                    None => continue,
                },
                Dimension::User => {
                    let v = match self.user_header.as_deref() {
                        Some(h) => req.header(h),
                        None => USER_HEADERS.iter().find_map(|h| req.header(h)),
                    };
                    match v {
                        Some(v) => v,
                        None => continue,
                    }
                }
            };
            let key = fnv1a64(value)
                ^ scope.rotate_left(7)
                ^ (dim as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let d = counters.take_one(key, l.limit, l.window.0).await;
            if d.unavailable {
                return Some(Stop::Reject(503, "rate limiter unavailable".into()));
            }
            let [lim, rem, reset] = &self.names[i];
            push_header_num(headers, lim, l.limit);
            push_header_num(headers, rem, if d.allowed { d.remaining } else { 0 });
            push_header_num(headers, reset, now + secs_up(d.reset_us));
            if !d.allowed {
                let retry = self.retry_after.unwrap_or_else(|| secs_up(d.retry_us));
                push_header_num(headers, "X-RateLimit-Limit", l.limit);
                push_header_num(headers, "X-RateLimit-Remaining", 0);
                push_header_num(headers, "X-RateLimit-Reset", secs_up(d.reset_us));
                push_header_num(headers, "Retry-After", retry);
                return Some(Stop::Limited(
                    429,
                    format!("{} rate limit exceeded", dim.name()).into(),
                    retry.to_string(),
                ));
            }
            if shown.map_or(true, |(_, r, _)| d.remaining < r) {
                shown = Some((l.limit, d.remaining, d.reset_us));
            }
        }
        if let Some((limit, remaining, reset_us)) = shown {
            push_header_num(headers, "X-RateLimit-Limit", limit);
            push_header_num(headers, "X-RateLimit-Remaining", remaining);
            push_header_num(headers, "X-RateLimit-Reset", secs_up(reset_us));
        }
        None
    }
}

/// Whole seconds, rounded up, at least 1.
fn secs_up(us: u64) -> u64 {
    us.div_ceil(1_000_000).max(1)
}
