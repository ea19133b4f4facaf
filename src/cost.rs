//! What an answer cost: a price table per model and the arithmetic.
//!
//! Prices are dollars per million tokens for input (prompt), output
//! (completion) and, where a provider bills it lower, cached input. The
//! built-in table ([`DEFAULTS`]) holds list prices of well-known OpenAI and
//! Anthropic models as **examples**; the configuration's top-level `prices`
//! overrides or extends them:
//!
//! ```json
//! {"prices": {"gpt-4o": {"input": 2.5, "output": 10, "cached_input": 1.25},
//!             "my-finetune": {"input": 3, "output": 12}}}
//! ```
//!
//! A model is priced by its exact name, else by the longest table name it
//! starts with followed by `-` (`gpt-4o-2024-08-06` → `gpt-4o`,
//! `gpt-4o-mini-2024-07-18` → `gpt-4o-mini`). Costs are whole micro-dollars
//! (1e-6 USD), rounded up per answer, so sums are exact integers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// One model's prices in the configuration, dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceUsd {
    pub input: f64,
    pub output: f64,
    /// Cached prompt tokens; `input` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
}

/// One model's prices in micro-dollars per million tokens (equivalently,
/// pico-dollars per token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
}

/// (model, input, output, cached input), dollars per million tokens: list
/// prices at the time of writing, examples for operators to override.
pub const DEFAULTS: &[(&str, f64, f64, f64)] = &[
    ("gpt-4o", 2.5, 10.0, 1.25),
    ("gpt-4o-mini", 0.15, 0.6, 0.075),
    ("gpt-4.1", 2.0, 8.0, 0.5),
    ("gpt-4.1-mini", 0.4, 1.6, 0.1),
    ("gpt-4.1-nano", 0.1, 0.4, 0.025),
    ("o1", 15.0, 60.0, 7.5),
    ("o1-mini", 1.1, 4.4, 0.55),
    ("o3", 2.0, 8.0, 0.5),
    ("o3-mini", 1.1, 4.4, 0.55),
    ("o4-mini", 1.1, 4.4, 0.275),
    ("claude-3-5-sonnet", 3.0, 15.0, 0.3),
    ("claude-3-7-sonnet", 3.0, 15.0, 0.3),
    ("claude-sonnet-4", 3.0, 15.0, 0.3),
    ("claude-3-haiku", 0.25, 1.25, 0.03),
    ("claude-3-5-haiku", 0.8, 4.0, 0.08),
    ("claude-haiku-4", 1.0, 5.0, 0.1),
    ("claude-3-opus", 15.0, 75.0, 1.5),
    ("claude-opus-4", 15.0, 75.0, 1.5),
    ("claude-opus-4-5", 5.0, 25.0, 0.5),
];

/// The most a price may be (dollars per million tokens).
const MAX_PRICE: f64 = 100_000.0;

fn micros(usd: f64) -> u64 {
    (usd * 1e6).round() as u64
}

/// The compiled table: defaults, then the configuration's overrides.
#[derive(Debug, Clone, Default)]
pub struct Prices {
    /// Sorted by name.
    table: Vec<(String, Price)>,
}

impl Prices {
    pub fn new(overrides: &BTreeMap<String, PriceUsd>) -> Prices {
        let mut map: BTreeMap<String, Price> = DEFAULTS
            .iter()
            .map(|&(m, i, o, c)| {
                let p = Price {
                    input: micros(i),
                    output: micros(o),
                    cached_input: micros(c),
                };
                (m.to_string(), p)
            })
            .collect();
        for (m, p) in overrides {
            let price = Price {
                input: micros(p.input),
                output: micros(p.output),
                cached_input: micros(p.cached_input.unwrap_or(p.input)),
            };
            map.insert(m.clone(), price);
        }
        Prices {
            table: map.into_iter().collect(),
        }
    }

    /// The price of `model`: exact, else the longest `name-` prefix.
    pub fn get(&self, model: &[u8]) -> Option<Price> {
        let mut best: Option<(usize, Price)> = None;
        for (name, p) in &self.table {
            let n = name.as_bytes();
            let fits = model == n
                || (model.len() > n.len() && model.starts_with(n) && model[n.len()] == b'-');
            if fits && best.is_none_or(|(l, _)| n.len() > l) {
                best = Some((n.len(), *p));
            }
        }
        best.map(|(_, p)| p)
    }
}

/// Tokens of one answer, split the way they are billed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Prompt tokens billed at the input price.
    pub input: u64,
    /// Prompt tokens served from the provider's cache.
    pub cached: u64,
    pub output: u64,
}

impl Price {
    /// Micro-dollars, rounded up.
    pub fn cost(&self, t: Tokens) -> u64 {
        let pico = u128::from(t.input) * u128::from(self.input)
            + u128::from(t.cached) * u128::from(self.cached_input)
            + u128::from(t.output) * u128::from(self.output);
        pico.div_ceil(1_000_000).min(u128::from(u64::MAX)) as u64
    }
}

/// Checks the configuration's `prices`.
pub fn validate(prices: &BTreeMap<String, PriceUsd>) -> Result<(), ConfigError> {
    for (model, p) in prices {
        let field = format!("prices.{model}");
        if model.is_empty() || model.len() > 200 {
            return Err(ConfigError::invalid(
                "a model name is 1 to 200 characters",
                "prices",
            ));
        }
        for (name, v) in [
            ("input", Some(p.input)),
            ("output", Some(p.output)),
            ("cached_input", p.cached_input),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || !(0.0..=MAX_PRICE).contains(&v) {
                    return Err(ConfigError::invalid(
                        format!("a price is 0 to {MAX_PRICE} dollars per million tokens"),
                        format!("{field}.{name}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), UTC.
pub fn civil(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A calendar period a spend is counted in (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    /// Days since the epoch.
    Day(i64),
    /// `year * 12 + month - 1`.
    Month(i64),
}

impl Period {
    /// The day and the month of `unix_secs`.
    pub fn of(unix_secs: u64) -> (Period, Period) {
        let days = (unix_secs / 86_400) as i64;
        let (y, m, _) = civil(days);
        (Period::Day(days), Period::Month(y * 12 + i64::from(m) - 1))
    }

    /// The current day and month.
    pub fn now() -> (Period, Period) {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Period::of(secs)
    }

    /// The first instant of the period, RFC 3339.
    pub fn start(&self) -> String {
        match *self {
            Period::Day(d) => {
                let (y, m, d) = civil(d);
                format!("{y:04}-{m:02}-{d:02}T00:00:00Z")
            }
            Period::Month(n) => format!("{:04}-{:02}-01T00:00:00Z", n / 12, n % 12 + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_exact_name_then_longest_prefix() {
        let mut o = BTreeMap::new();
        o.insert(
            "gpt-4o".to_string(),
            PriceUsd {
                input: 5.0,
                output: 20.0,
                cached_input: None,
            },
        );
        let p = Prices::new(&o);
        assert_eq!(p.get(b"gpt-4o").unwrap().input, 5_000_000);
        assert_eq!(p.get(b"gpt-4o").unwrap().cached_input, 5_000_000);
        assert_eq!(p.get(b"gpt-4o-2024-08-06").unwrap().output, 20_000_000);
        assert_eq!(p.get(b"gpt-4o-mini-2024-07-18").unwrap().input, 150_000);
        assert_eq!(p.get(b"claude-opus-4-5-20251101").unwrap().input, 5_000_000);
        assert_eq!(
            p.get(b"claude-opus-4-1-20250805").unwrap().input,
            15_000_000
        );
        assert_eq!(p.get(b"o10"), None);
        assert_eq!(p.get(b"gpt-4oo"), None);
        assert_eq!(p.get(b""), None);
    }

    #[test]
    fn cost_in_micro_dollars_rounded_up() {
        let p = Prices::new(&BTreeMap::new()).get(b"gpt-4o").unwrap();
        // 1000 in at $2.5/M, 200 cached at $1.25/M, 500 out at $10/M.
        let t = Tokens {
            input: 1000,
            cached: 200,
            output: 500,
        };
        assert_eq!(p.cost(t), 2500 + 250 + 5000);
        let mini = Prices::new(&BTreeMap::new()).get(b"gpt-4o-mini").unwrap();
        let one = Tokens {
            input: 1,
            ..Tokens::default()
        };
        assert_eq!(mini.cost(one), 1); // 0.15 µ$ rounds up
        assert_eq!(mini.cost(Tokens::default()), 0);
    }

    #[test]
    fn calendar_periods() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
        let (d, m) = Period::of(1_709_251_199); // 2024-02-29T23:59:59Z
        assert_eq!(d.start(), "2024-02-29T00:00:00Z");
        assert_eq!(m.start(), "2024-02-01T00:00:00Z");
        let (_, m) = Period::of(1_735_689_600); // 2025-01-01
        assert_eq!(m.start(), "2025-01-01T00:00:00Z");
    }

    #[test]
    fn validation_names_the_field() {
        let mut o = BTreeMap::new();
        o.insert(
            "m".to_string(),
            PriceUsd {
                input: 1.0,
                output: f64::NAN,
                cached_input: None,
            },
        );
        let e = validate(&o).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("prices.m.output"));
    }
}
