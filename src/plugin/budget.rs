//! `budget`: dollars per key (or for everyone through the plugin) per day
//! and per month, enforced before the request goes out.
//!
//! The request's cost is estimated from its body and the price of the model
//! it names (the configuration's price table, `crate::cost`): `ceil(body
//! bytes / chars_per_token)` prompt tokens at the input price plus
//! `max_tokens` (or `max_completion_tokens`, else `default_max_tokens`) at
//! the output price. That estimate is reserved in a 24-hour and a 30-day
//! window with the same exact cross-shard counters as `token_rate_limiter`
//! (see [`super::counters`]; across nodes in cluster mode,
//! `cluster::limits`): 429 with `Retry-After` and a message naming the
//! budget and when it allows the request again when the budget cannot
//! cover it. When the answer ends, the reservation is settled to its real
//! cost from the `usage` it carried (JSON, a stream's usage event, a
//! translated answer), at the requested model's price (an alias's model;
//! a model-fallback step's when it has one); an answer without
//! usage keeps the estimate (an error answer gives it all back).
//!
//! ```json
//! {"daily_usd": 5, "monthly_usd": 100, "per": "key", "default_max_tokens": 1024, "chars_per_token": 4}
//! ```
//! `per`: `"key"` (each API key its own budget; requests without a key
//! share one) or `"gateway"` (one budget for every request the plugin
//! sees). In the gateway's `required_plugins` a budget covers all its
//! rules; in a rule's `plugin_chain`, that rule. The windows slide: "daily"
//! is any 24 hours, "monthly" any 30 days. A request naming a model without
//! a price is refused (400): its spend could not be counted.
//!
//! Exactness: reservations never exceed the budget in any window; spend
//! after settlement can exceed it only when an answer used more tokens
//! than its estimate (a `max_tokens` the upstream ignored).

use std::time::Duration;

use serde::Deserialize;

use super::counters::Counters;
use super::token_rate_limiter::{default_cpt, default_max_tokens, estimate_tokens};
use super::{bad, Flow, Stop};
use crate::config::ConfigError;
use crate::cost::{Price, Tokens};
use crate::util::fnv::fnv1a64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    #[default]
    Key,
    Gateway,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub daily_usd: Option<f64>,
    #[serde(default)]
    pub monthly_usd: Option<f64>,
    #[serde(default)]
    pub per: Per,
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u64,
    #[serde(default = "default_cpt")]
    pub chars_per_token: u64,
}

/// The windows: (name, length, salt for the counter key).
const WINDOWS: [(&str, Duration, u64); 2] = [
    ("daily", Duration::from_secs(86_400), 0x5bd1_e995_0d00_0001),
    (
        "monthly",
        Duration::from_secs(30 * 86_400),
        0x5bd1_e995_0d00_0002,
    ),
];

/// The largest budget, dollars.
const MAX_USD: f64 = 1e9;

#[derive(Debug)]
pub struct Budget {
    /// Micro-dollars per window (daily, monthly); `None`: no limit.
    limits: [Option<u64>; 2],
    per: Per,
    default_max_tokens: u64,
    chars_per_token: u64,
}

/// Micro-dollars reserved for a request in flight.
#[derive(Debug, Clone, Copy)]
pub struct Reservation {
    /// Counter key and bucket per window (`None`: no limit there).
    taken: [Option<(u64, u64)>; 2],
    estimate: u64,
    price: Price,
}

fn usd_to_micros(usd: f64) -> u64 {
    (usd * 1e6).round() as u64
}

fn micros_text(m: u64) -> String {
    format!("{}.{:02}", m / 1_000_000, (m % 1_000_000) / 10_000)
}

impl Budget {
    pub fn new(s: Settings, field: &str) -> Result<Budget, ConfigError> {
        if s.daily_usd.is_none() && s.monthly_usd.is_none() {
            return Err(bad(
                field,
                "daily_usd",
                "set daily_usd, monthly_usd or both",
            ));
        }
        let mut limits = [None; 2];
        for (i, (name, v)) in [("daily_usd", s.daily_usd), ("monthly_usd", s.monthly_usd)]
            .into_iter()
            .enumerate()
        {
            if let Some(v) = v {
                if !v.is_finite() || v <= 0.0 || v > MAX_USD {
                    return Err(bad(
                        field,
                        name,
                        "a budget is more than 0 and at most 1e9 dollars",
                    ));
                }
                limits[i] = Some(usd_to_micros(v).max(1));
            }
        }
        if s.chars_per_token == 0 {
            return Err(bad(field, "chars_per_token", "must be at least 1"));
        }
        Ok(Budget {
            limits,
            per: s.per,
            default_max_tokens: s.default_max_tokens,
            chars_per_token: s.chars_per_token,
        })
    }

    /// Reserves the request's estimated cost in every window, or refuses it.
    pub async fn reserve(
        &self,
        counters: &Counters,
        scope: u64,
        key_id: Option<&str>,
        body: &[u8],
        flow: &mut Flow<'_>,
        headers: &mut Vec<u8>,
    ) -> Option<Stop> {
        let asked = crate::metrics::usage::string(body, b"model").unwrap_or(b"");
        // An alias is priced as the model it stands for.
        let model = flow
            .models
            .zip(std::str::from_utf8(asked).ok())
            .and_then(|(m, a)| m.alias(a))
            .map_or(asked, str::as_bytes);
        let Some(price) = flow.prices.and_then(|p| p.get(model)) else {
            let msg = if model.is_empty() {
                "the budget needs the request's \"model\" to price it".to_string()
            } else {
                format!(
                    "model {:?} has no price: the budget cannot count its spend (add it to the configuration's prices)",
                    String::from_utf8_lossy(model)
                )
            };
            return Some(Stop::Reject(400, msg.into()));
        };
        let (prompt, max) = estimate_tokens(body, self.chars_per_token, self.default_max_tokens);
        let estimate = price.cost(Tokens {
            input: prompt,
            cached: 0,
            output: max,
        });
        let who: &[u8] = match (self.per, key_id) {
            (Per::Key, Some(k)) => k.as_bytes(),
            _ => b"",
        };
        let base = fnv1a64(who) ^ scope.rotate_left(17);
        let mut taken = [None; 2];
        let mut tightest: Option<u64> = None;
        for (i, &(name, window, salt)) in WINDOWS.iter().enumerate() {
            let Some(limit) = self.limits[i] else {
                continue;
            };
            let key = base ^ salt;
            let d = counters.take_shared(key, estimate, limit, window).await;
            if d.unavailable || !d.allowed {
                // Give back what the other window took.
                for (k, b) in taken.iter().flatten() {
                    counters.adjust(*k, *b, -(estimate as i64)).await;
                }
                if d.unavailable {
                    return Some(Stop::Reject(503, "budget unavailable".into()));
                }
                let secs = d.retry_us.div_ceil(1_000_000).max(1);
                super::push_header_num(headers, "Retry-After", secs);
                let whose = if self.per == Per::Key && key_id.is_some() {
                    "this key"
                } else {
                    "this gateway"
                };
                let wait = humantime::format_duration(Duration::from_secs(secs));
                return Some(Stop::Reject(
                    429,
                    format!(
                        "{name} budget of ${} for {whose} is spent (${} left, this request needs up to ${}); it allows this request again in {wait}",
                        micros_text(limit),
                        micros_text(d.remaining),
                        micros_text(estimate),
                    )
                    .into(),
                ));
            }
            taken[i] = Some((key, d.bucket));
            tightest = Some(tightest.map_or(d.remaining, |t| t.min(d.remaining)));
        }
        if let Some(left) = tightest {
            super::push_header(
                headers,
                "X-Budget-Remaining-USD",
                format!("{}.{:06}", left / 1_000_000, left % 1_000_000).as_bytes(),
            );
        }
        flow.budget = Some(Box::new(Reservation {
            taken,
            estimate,
            price,
        }));
        None
    }
}

impl Reservation {
    /// Prices the answer as `price`'s model: the request moved to a model
    /// fallback step.
    pub fn reprice(&mut self, price: Price) {
        self.price = price;
    }

    /// Charges what the answer cost instead of the estimate.
    pub async fn settle(self, counters: &Counters, used: Option<Tokens>, status: u16) {
        let actual = match used {
            Some(t) => self.price.cost(t),
            None if status >= 400 => 0,
            None => self.estimate,
        };
        let delta = actual as i64 - self.estimate as i64;
        for (k, b) in self.taken.iter().flatten() {
            counters.adjust(*k, *b, delta).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(v: serde_json::Value) -> Result<Budget, ConfigError> {
        Budget::new(serde_json::from_value(v).unwrap(), "s")
    }

    #[test]
    fn settings_are_checked() {
        let b = budget(serde_json::json!({"daily_usd": 1.5})).unwrap();
        assert_eq!(b.limits, [Some(1_500_000), None]);
        let e = budget(serde_json::json!({})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("s.daily_usd"));
        let e = budget(serde_json::json!({"daily_usd": 1, "monthly_usd": -1})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("s.monthly_usd"));
        let e = budget(serde_json::json!({"daily_usd": 1, "chars_per_token": 0})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("s.chars_per_token"));
        assert_eq!(micros_text(1_234_567), "1.23");
    }
}
