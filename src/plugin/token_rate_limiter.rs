//! `token_rate_limiter`: an LLM-token budget per key (or per client IP, or
//! one for all) per window, enforced before the request goes out.
//!
//! The request's cost is estimated from its body — `ceil(body bytes /
//! chars_per_token)` for the prompt plus `max_tokens` (or
//! `max_completion_tokens`, else `default_max_tokens`) — and reserved in
//! the same exact cross-shard window as `rate_limiter` (see
//! [`super::counters`]; across nodes in cluster mode, `cluster::limits`); 429 with `Retry-After` when the budget cannot cover
//! it. When the response ends, the reservation is settled with the
//! `usage.total_tokens` the response carried (plain JSON, or the final
//! usage event of a stream), or kept as estimated when it carried none
//! (an error answer from the upstream, or no answer at all — a later plugin
//! refused, a cache hit, the upstream unreachable — gives it all back).
//! `X-TokenLimit-Limit` / `X-TokenLimit-Remaining` report the budget.
//!
//! ```json
//! {"tokens_per_minute": 10000, "per": "key", "default_max_tokens": 1024, "chars_per_token": 4}
//! ```
//! or `{"limit": 10000, "window": "1h"}`. Reservations are exact (never
//! more reserved than the budget in any window); what is charged after
//! settlement can exceed it only when a response used more tokens than its
//! estimate (a `max_tokens` the upstream ignored).
//!
//! TrustGate's settings compile to the same plugin:
//! `{"tokens_per_request": 500, "tokens_per_minute": 1000, "bucket_size": 5000,
//! "requests_per_minute": 60}` — a budget of `bucket_size` tokens over the
//! time `tokens_per_minute` takes to refill it (a minute without it), each
//! request's reservation capped at `tokens_per_request` (a request whose
//! prompt alone needs more is refused), and at most `requests_per_minute`
//! requests a minute. Answers also carry TrustGate's
//! `X-Ratelimit-{Limit,Remaining,Reset}-Tokens` (and `-Requests`), resets as
//! `"<n>s"`.

use std::time::Duration;

use serde::Deserialize;

use super::counters::Counters;
use super::{bad, push_header_num, Flow, Stop, Window};
use crate::config::ConfigError;
use crate::util::fnv::fnv1a64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    #[default]
    Key,
    Ip,
    Global,
}

pub(super) fn default_max_tokens() -> u64 {
    1024
}

pub(super) fn default_cpt() -> u64 {
    4
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub window: Option<Window>,
    #[serde(default)]
    pub per: Per,
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u64,
    #[serde(default = "default_cpt")]
    pub chars_per_token: u64,
    #[serde(default)]
    pub tokens_per_request: Option<u64>,
    #[serde(default)]
    pub bucket_size: Option<u64>,
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
}

#[derive(Debug)]
pub struct TokenRateLimiter {
    limit: u64,
    window: Duration,
    /// The most one request reserves (TrustGate's `tokens_per_request`).
    per_request: Option<u64>,
    /// Requests a minute (TrustGate's `requests_per_minute`).
    requests_per_minute: Option<u64>,
    per: Per,
    default_max_tokens: u64,
    chars_per_token: u64,
}

/// Tokens reserved for a request in flight.
#[derive(Debug, Clone, Copy)]
pub struct Reservation {
    key: u64,
    bucket: u64,
    estimate: u64,
}

impl TokenRateLimiter {
    pub fn new(s: Settings, field: &str) -> Result<TokenRateLimiter, ConfigError> {
        let (limit, window) = match (s.tokens_per_minute, s.limit, s.window) {
            (_, None, None) if s.bucket_size.is_some() => {
                let size = s.bucket_size.unwrap_or(0);
                // A full bucket refills in size / rate minutes.
                let window = match s.tokens_per_minute {
                    Some(0) => return Err(bad(field, "tokens_per_minute", "must be at least 1")),
                    Some(rate) => {
                        Duration::from_secs((size.saturating_mul(60) / rate).clamp(1, 7 * 86_400))
                    }
                    None => Duration::from_secs(60),
                };
                if size == 0 {
                    return Err(bad(field, "bucket_size", "must be at least 1"));
                }
                (size, window)
            }
            (Some(t), None, None) => (t, Duration::from_secs(60)),
            (None, Some(l), Some(w)) => (l, w.0),
            (None, Some(_), None) => return Err(bad(field, "window", "limit needs a window")),
            (None, None, _) => {
                return Err(bad(
                    field,
                    "tokens_per_minute",
                    "set tokens_per_minute, or limit and window",
                ))
            }
            _ => {
                return Err(bad(
                    field,
                    "limit",
                    "set either tokens_per_minute or limit and window",
                ))
            }
        };
        if limit == 0 {
            return Err(bad(
                field,
                if s.limit.is_some() {
                    "limit"
                } else {
                    "tokens_per_minute"
                },
                "must be at least 1",
            ));
        }
        if s.chars_per_token == 0 {
            return Err(bad(field, "chars_per_token", "must be at least 1"));
        }
        super::either(field, (s.limit, "limit"), (s.bucket_size, "bucket_size"))?;
        for (v, name) in [
            (s.tokens_per_request, "tokens_per_request"),
            (s.requests_per_minute, "requests_per_minute"),
        ] {
            if v == Some(0) {
                return Err(bad(field, name, "must be at least 1"));
            }
        }
        Ok(TokenRateLimiter {
            limit,
            window,
            per_request: s.tokens_per_request,
            requests_per_minute: s.requests_per_minute,
            per: s.per,
            default_max_tokens: s.default_max_tokens,
            chars_per_token: s.chars_per_token,
        })
    }

    /// The estimated cost of a request body.
    pub fn estimate(&self, body: &[u8]) -> u64 {
        let (prompt, max) = estimate_tokens(body, self.chars_per_token, self.default_max_tokens);
        prompt + max
    }

    pub async fn reserve(
        &self,
        counters: &Counters,
        scope: u64,
        peer: Option<std::net::IpAddr>,
        key_id: Option<&str>,
        body: &[u8],
        flow: &mut Flow<'_>,
        headers: &mut Vec<u8>,
    ) -> Option<Stop> {
        let mut ip = [0u8; 16];
        let who: &[u8] = match (self.per, key_id, peer) {
            (Per::Global, _, _) => b"",
            (Per::Key, Some(k), _) => k.as_bytes(),
            (_, _, Some(std::net::IpAddr::V4(a))) => {
                ip[..4].copy_from_slice(&a.octets());
                &ip[..4]
            }
            (_, _, Some(std::net::IpAddr::V6(a))) => {
                ip = a.octets();
                &ip
            }
            _ => b"",
        };
        let key = fnv1a64(who) ^ scope.rotate_left(13) ^ 0x7f4a_7c15_9e37_79b9;
        let mut estimate = self.estimate(body);
        if let Some(cap) = self.per_request {
            if (body.len() as u64).div_ceil(self.chars_per_token) > cap {
                return Some(Stop::Reject(
                    429,
                    "request needs more tokens than tokens_per_request".into(),
                ));
            }
            estimate = estimate.min(cap);
        }
        if let Some(rpm) = self.requests_per_minute {
            let minute = Duration::from_secs(60);
            let d = counters.take_one(key ^ 0x5245_5153, rpm, minute).await;
            if d.unavailable {
                return Some(Stop::Reject(503, "token rate limiter unavailable".into()));
            }
            push_header_num(headers, "X-Ratelimit-Limit-Requests", rpm);
            push_header_num(headers, "X-Ratelimit-Remaining-Requests", d.remaining);
            push_secs(headers, "X-Ratelimit-Reset-Requests", d.reset_us);
            if !d.allowed {
                let retry = d.retry_us.div_ceil(1_000_000).max(1);
                push_header_num(headers, "Retry-After", retry);
                return Some(Stop::Limited(
                    429,
                    "Rate limit exceeded. No requests remaining.".into(),
                    retry.to_string(),
                ));
            }
        }
        let d = counters
            .take_shared(key, estimate, self.limit, self.window)
            .await;
        if d.unavailable {
            return Some(Stop::Reject(503, "token rate limiter unavailable".into()));
        }
        push_header_num(headers, "X-TokenLimit-Limit", self.limit);
        push_header_num(headers, "X-TokenLimit-Remaining", d.remaining);
        push_header_num(headers, "X-Ratelimit-Limit-Tokens", self.limit);
        push_header_num(headers, "X-Ratelimit-Remaining-Tokens", d.remaining);
        push_secs(headers, "X-Ratelimit-Reset-Tokens", d.reset_us);
        if !d.allowed {
            push_header_num(
                headers,
                "Retry-After",
                d.retry_us.div_ceil(1_000_000).max(1),
            );
            return Some(Stop::Reject(429, "token budget exceeded".into()));
        }
        flow.tokens = Some(Reservation {
            key,
            bucket: d.bucket,
            estimate,
        });
        None
    }
}

impl Reservation {
    /// Charges what the response used instead of the estimate.
    pub async fn settle(self, counters: &Counters, used: Option<u64>, status: u16) {
        let actual = match used {
            Some(u) => u,
            None if status >= 400 => 0,
            None => self.estimate,
        };
        let delta = actual as i64 - self.estimate as i64;
        counters.adjust(self.key, self.bucket, delta).await;
    }
}

/// `Name: <n>s` (TrustGate's reset format), whole seconds rounded up.
fn push_secs(headers: &mut Vec<u8>, name: &str, us: u64) {
    let mut v = us.div_ceil(1_000_000).to_string();
    v.push('s');
    super::push_header(headers, name, v.as_bytes());
}

/// A request body's estimated (prompt, completion) tokens: `ceil(bytes /
/// chars_per_token)` and its `max_tokens` (or `max_completion_tokens`, else
/// `default_max`).
pub(crate) fn estimate_tokens(body: &[u8], chars_per_token: u64, default_max: u64) -> (u64, u64) {
    let prompt = (body.len() as u64).div_ceil(chars_per_token);
    let max = find_number(body, b"\"max_tokens\"")
        .or_else(|| find_number(body, b"\"max_completion_tokens\""))
        .unwrap_or(default_max);
    (prompt, max)
}

/// The number after `"name"` and a colon, if any.
fn find_number(hay: &[u8], name: &[u8]) -> Option<u64> {
    let at = hay.windows(name.len()).position(|w| w == name)? + name.len();
    let rest = &hay[at..];
    let rest = &rest[rest.iter().position(|b| !b" \t\r\n".contains(b))?..];
    let rest = rest.strip_prefix(b":")?;
    let start = rest.iter().position(|b| !b" \t\r\n".contains(b))?;
    let digits = rest[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&rest[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

/// The `usage` of a response whose bytes arrive in pieces (a JSON body or
/// an SSE stream): keeps a bounded tail and reads it with the same scanner
/// the metrics use, so OpenAI's and Anthropic's field names both count.
#[derive(Debug, Default)]
pub struct UsageScan {
    tail: crate::metrics::usage::Tail,
}

impl UsageScan {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.tail.feed(bytes);
    }

    /// The usage the response reported, if any.
    pub fn usage(&self) -> Option<crate::metrics::usage::Usage<'_>> {
        self.tail.scan()
    }

    /// Prompt plus completion tokens, when the response reported them.
    pub fn total(&self) -> Option<u64> {
        self.tail.scan().map(|u| u.prompt + u.completion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_and_usage() {
        let t = TokenRateLimiter::new(
            serde_json::from_value(serde_json::json!({"tokens_per_minute": 1000})).unwrap(),
            "s",
        )
        .unwrap();
        let body = br#"{"max_tokens": 50, "messages": []}"#;
        assert_eq!(t.estimate(body), (body.len() as u64).div_ceil(4) + 50);
        assert_eq!(t.estimate(b"{}"), 1 + 1024);
        let mut u = UsageScan::default();
        for piece in [
            &b"data: {\"usage\":{\"prompt_tokens\":3,\"compl"[..],
            b"etion_tokens\":1",
            b"4,\"total_tokens\":17}}\n\n",
        ] {
            u.feed(piece);
        }
        assert_eq!(u.total(), Some(17));
    }
}
