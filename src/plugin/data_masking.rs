//! `data_masking`: replaces sensitive data in the request body before it
//! goes upstream and, with `mask_response`, in the response body (a whole
//! buffered body, or a stream event by event). Predefined `entities`
//! (default: all) plus custom `keywords` and `patterns` (the `regex` crate's
//! syntax). A match becomes `mask_with` (default `[MASKED]`), or with
//! `preserve_len` that one character repeated to the match's length
//! (default `*`).
//!
//! ```json
//! {"entities": ["email", "credit_card", "iban", "ssn", "phone", "ipv4", "api_key", "aws_key", "jwt"],
//!  "keywords": ["Project Falcon"], "patterns": ["ACME-\\d{6}"],
//!  "mask_with": "[MASKED]", "preserve_len": false, "mask_response": true}
//! ```
//! Credit card numbers are masked only when they pass the Luhn check.

use std::borrow::Cow;

use regex::bytes::{Captures, Regex, RegexSet, RegexSetBuilder};
use serde::Deserialize;

use super::bad;
use crate::config::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Email,
    CreditCard,
    Iban,
    Ssn,
    Phone,
    Ipv4,
    ApiKey,
    AwsKey,
    Jwt,
}

const ALL: [Entity; 9] = [
    Entity::Jwt,
    Entity::ApiKey,
    Entity::AwsKey,
    Entity::Email,
    Entity::Iban,
    Entity::CreditCard,
    Entity::Ssn,
    Entity::Phone,
    Entity::Ipv4,
];

fn pattern(e: Entity) -> &'static str {
    match e {
        Entity::Email => r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        Entity::CreditCard => r"\b\d(?:[ -]?\d){12,18}\b",
        Entity::Iban => r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
        Entity::Ssn => r"\b\d{3}-\d{2}-\d{4}\b",
        Entity::Phone => r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\b\d{3})[ .-]\d{3}[ .-]\d{4}\b",
        Entity::Ipv4 => r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b",
        Entity::ApiKey => r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}",
        Entity::AwsKey => r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
        Entity::Jwt => r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub entities: Option<Vec<Entity>>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub patterns: Vec<String>,
    #[serde(default)]
    pub mask_with: Option<String>,
    #[serde(default)]
    pub preserve_len: bool,
    #[serde(default)]
    pub mask_response: bool,
}

#[derive(Debug)]
struct Rule {
    re: Regex,
    luhn: bool,
}

#[derive(Debug)]
pub struct DataMasking {
    rules: Vec<Rule>,
    /// Every rule's pattern in one automaton: one pass over a body tells
    /// which rules can match (a clean body costs one scan, not one per rule).
    any: RegexSet,
    mask_with: String,
    preserve_len: bool,
    pub mask_response: bool,
}

/// Does the digit string pass the Luhn check?
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut n = 0;
    for (i, d) in digits
        .iter()
        .rev()
        .filter(|b| b.is_ascii_digit())
        .map(|b| u32::from(b - b'0'))
        .enumerate()
    {
        sum += if i % 2 == 1 {
            let x = d * 2;
            if x > 9 {
                x - 9
            } else {
                x
            }
        } else {
            d
        };
        n += 1;
    }
    n >= 13 && sum % 10 == 0
}

impl DataMasking {
    pub fn new(s: Settings, field: &str) -> Result<DataMasking, ConfigError> {
        let mut rules = Vec::new();
        let entities = s.entities.unwrap_or_else(|| ALL.to_vec());
        // Longer, more specific entities first, so a JWT is not half-masked
        // as something else.
        for e in ALL.iter().filter(|e| entities.contains(e)) {
            rules.push(Rule {
                re: Regex::new(pattern(*e)).expect("entity patterns compile"),
                luhn: *e == Entity::CreditCard,
            });
        }
        for (i, k) in s.keywords.iter().enumerate() {
            if k.is_empty() {
                return Err(bad(field, &format!("keywords[{i}]"), "must not be empty"));
            }
            rules.push(Rule {
                re: Regex::new(&format!("(?i){}", regex::escape(k))).expect("escaped"),
                luhn: false,
            });
        }
        for (i, p) in s.patterns.iter().enumerate() {
            let re = regex::bytes::RegexBuilder::new(p)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| {
                    bad(
                        field,
                        &format!("patterns[{i}]"),
                        format!("invalid regex: {e}"),
                    )
                })?;
            if re.is_match(b"") {
                return Err(bad(
                    field,
                    &format!("patterns[{i}]"),
                    "must not match the empty string",
                ));
            }
            rules.push(Rule { re, luhn: false });
        }
        let mask_with = match s.mask_with {
            Some(m) if s.preserve_len && m.chars().count() != 1 => {
                return Err(bad(
                    field,
                    "mask_with",
                    "with preserve_len, a single character",
                ))
            }
            Some(m) if m.chars().any(|c| c.is_control() || c == '"' || c == '\\') => {
                return Err(bad(
                    field,
                    "mask_with",
                    "no control characters, quotes or backslashes",
                ))
            }
            Some(m) => m,
            None if s.preserve_len => "*".into(),
            None => "[MASKED]".into(),
        };
        if rules.is_empty() {
            return Err(bad(
                field,
                "entities",
                "nothing to mask: no entities, keywords or patterns",
            ));
        }
        let any = RegexSetBuilder::new(rules.iter().map(|r| r.re.as_str()))
            .size_limit(16 << 20)
            .build()
            .map_err(|e| bad(field, "patterns", format!("too complex together: {e}")))?;
        Ok(DataMasking {
            any,
            rules,
            mask_with,
            preserve_len: s.preserve_len,
            mask_response: s.mask_response,
        })
    }

    fn replacement<'a>(&'a self, matched: &[u8]) -> Cow<'a, [u8]> {
        if self.preserve_len {
            let n = String::from_utf8_lossy(matched).chars().count();
            Cow::Owned(self.mask_with.repeat(n).into_bytes())
        } else {
            Cow::Borrowed(self.mask_with.as_bytes())
        }
    }

    /// Masks `input` into `out`; `false` (and `out` untouched) when there was
    /// nothing to mask.
    pub fn mask(&self, input: &[u8], out: &mut Vec<u8>) -> bool {
        let mut current: Cow<'_, [u8]> = Cow::Borrowed(input);
        let mut changed = false;
        let hits = self.any.matches(input);
        if !hits.matched_any() {
            return false;
        }
        for rule in hits.iter().map(|i| &self.rules[i]) {
            let next = rule.re.replace_all(&current, |c: &Captures<'_>| {
                let m = &c[0];
                if rule.luhn && !luhn(m) {
                    Cow::Owned(m.to_vec())
                } else {
                    self.replacement(m)
                }
            });
            if let Cow::Owned(v) = next {
                if v != *current {
                    changed = true;
                }
                current = Cow::Owned(v);
            }
        }
        if changed {
            out.clear();
            out.extend_from_slice(&current);
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(json: serde_json::Value) -> DataMasking {
        DataMasking::new(serde_json::from_value(json).unwrap(), "s").unwrap()
    }

    fn masked(m: &DataMasking, s: &str) -> String {
        let mut out = Vec::new();
        if m.mask(s.as_bytes(), &mut out) {
            String::from_utf8(out).unwrap()
        } else {
            s.to_string()
        }
    }

    #[test]
    fn entities() {
        let m = masker(serde_json::json!({}));
        for (input, want) in [
            ("mail bob@example.com now", "mail [MASKED] now"),
            ("card 4111 1111 1111 1111 ok", "card [MASKED] ok"),
            ("card 4111 1111 1111 1112 ok", "card 4111 1111 1111 1112 ok"),
            ("iban DE89 3704 0044 0532 0130 00", "iban [MASKED]"),
            ("ssn 123-45-6789.", "ssn [MASKED]."),
            ("call (555) 123-4567", "call [MASKED]"),
            ("from 10.0.0.12:80", "from [MASKED]:80"),
            ("key sk-abcdefghijklmnop1234", "key [MASKED]"),
            ("aws AKIAIOSFODNN7EXAMPLE", "aws [MASKED]"),
            (
                "t eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc_DEF-123",
                "t [MASKED]",
            ),
            ("nothing here", "nothing here"),
        ] {
            assert_eq!(masked(&m, input), want, "{input}");
        }
    }

    #[test]
    fn custom_and_preserve_len() {
        let m = masker(serde_json::json!({
            "entities": [], "keywords": ["falcon"], "patterns": ["ACME-\\d{4}"], "preserve_len": true
        }));
        assert_eq!(
            masked(&m, "Project Falcon ACME-1234 x"),
            "Project ****** ********* x"
        );
    }

    #[test]
    fn bad_settings() {
        let bad = |v: serde_json::Value| {
            DataMasking::new(serde_json::from_value(v).unwrap(), "s")
                .unwrap_err()
                .field
        };
        assert_eq!(
            bad(serde_json::json!({"patterns": ["("]})),
            Some("s.patterns[0]".into())
        );
        assert_eq!(
            bad(serde_json::json!({"preserve_len": true, "mask_with": "ab"})),
            Some("s.mask_with".into())
        );
    }
}
