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
//! Credit card numbers (digits, or groups split by spaces or dashes) are
//! masked only when they pass the Luhn check.
//!
//! TrustGate's settings compile to the same plugin:
//! ```json
//! {"predefined_entities": [{"entity": "credit_card", "enabled": true, "mask_with": "[CARD]"},
//!                          {"entity": "email", "preserve_len": true}],
//!  "rules": [{"pattern": "falcon", "type": "keyword", "mask_with": "[PROJECT]"},
//!            {"pattern": "ACME-\\d{6}", "type": "regex", "mask_with": "[ID]"}],
//!  "similarity_threshold": 0.8, "max_edit_distance": 1, "apply_all": false}
//! ```
//! Each entity and rule has its own mask (an entity's default is
//! TrustGate's `[MASKED_<ENTITY>]`, e.g. `[MASKED_CC]`). Keyword rules match
//! fuzzily as TrustGate's do: a word within `max_edit_distance` (0 or 1,
//! default 1) edits of the keyword, when that leaves the similarity
//! (1 − edits / length) at or above `similarity_threshold` (default 0.8).
//! Entities TrustGate knows but ringgate has no detector for are refused
//! (400 naming them); `reversible_hashing` can only be off.

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
    Uuid,
    MacAddress,
    StripeKey,
}

const ALL: [Entity; 12] = [
    Entity::StripeKey,
    Entity::Jwt,
    Entity::ApiKey,
    Entity::AwsKey,
    Entity::Email,
    Entity::Iban,
    Entity::CreditCard,
    Entity::Ssn,
    Entity::Uuid,
    Entity::MacAddress,
    Entity::Phone,
    Entity::Ipv4,
];

/// TrustGate's entity names and default masks for the entities ringgate
/// detects.
const TRUSTGATE_ENTITIES: [(&str, Entity, &str); 11] = [
    ("credit_card", Entity::CreditCard, "[MASKED_CC]"),
    ("email", Entity::Email, "[MASKED_EMAIL]"),
    ("phone_number", Entity::Phone, "[MASKED_PHONE]"),
    ("ssn", Entity::Ssn, "[MASKED_SSN]"),
    ("ip_address", Entity::Ipv4, "[MASKED_IP]"),
    ("iban", Entity::Iban, "[MASKED_IBAN]"),
    ("api_key", Entity::ApiKey, "[MASKED_API_KEY]"),
    ("jwt_token", Entity::Jwt, "[MASKED_JWT]"),
    ("uuid", Entity::Uuid, "[MASKED_UUID]"),
    ("mac_address", Entity::MacAddress, "[MASKED_MAC]"),
    ("stripe_key", Entity::StripeKey, "[MASKED_STRIPE_KEY]"),
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
        Entity::Uuid => {
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        }
        Entity::MacAddress => r"\b[0-9a-fA-F]{2}(?:[:-][0-9a-fA-F]{2}){5}\b",
        Entity::StripeKey => r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
    }
}

/// A TrustGate `predefined_entities` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredefinedEntity {
    pub entity: String,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub mask_with: Option<String>,
    #[serde(default)]
    pub preserve_len: Option<bool>,
}

/// A TrustGate `rules` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    pub pattern: String,
    #[serde(rename = "type")]
    pub kind: RuleKind,
    pub mask_with: String,
    #[serde(default)]
    pub preserve_len: bool,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    Keyword,
    Regex,
}

/// TrustGate's `reversible_hashing`: accepted only off.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reversible {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub secret: Option<String>,
}

/// A keyword as a regex matching it within `edits` (0 or 1) edits:
/// every deletion, substitution and insertion of one word character.
fn fuzzy_keyword(k: &str, edits: u32) -> String {
    let chars: Vec<char> = k.chars().collect();
    let esc = |cs: &[char]| regex::escape(&cs.iter().collect::<String>());
    let mut alts = vec![esc(&chars)];
    if edits >= 1 {
        for i in 0..chars.len() {
            let (a, b) = (esc(&chars[..i]), esc(&chars[i + 1..]));
            alts.push(format!("{a}{b}"));
            alts.push(format!("{a}\\w{b}"));
        }
        for i in 0..=chars.len() {
            alts.push(format!("{}\\w{}", esc(&chars[..i]), esc(&chars[i..])));
        }
    }
    alts.retain(|a| !a.is_empty());
    format!("(?i)\\b(?:{})\\b", alts.join("|"))
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
    #[serde(default)]
    pub predefined_entities: Vec<PredefinedEntity>,
    #[serde(default)]
    pub rules: Vec<MaskRule>,
    /// Every predefined entity, each with its default mask.
    #[serde(default)]
    pub apply_all: bool,
    #[serde(default)]
    pub similarity_threshold: Option<f64>,
    #[serde(default)]
    pub max_edit_distance: Option<u32>,
    /// Keywords match case-insensitively either way.
    #[serde(default)]
    pub normalize_input: bool,
    #[serde(default)]
    pub reversible_hashing: Option<Reversible>,
}

#[derive(Debug)]
struct Rule {
    re: Regex,
    luhn: bool,
    /// Its own mask (TrustGate's per-entity and per-rule `mask_with`);
    /// `None`: the plugin's.
    mask: Option<(String, bool)>,
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
        let trustgate = s.apply_all || !s.predefined_entities.is_empty() || !s.rules.is_empty();
        if trustgate && s.entities.is_some() {
            return Err(bad(
                field,
                "entities",
                "set entities or predefined_entities, not both",
            ));
        }
        if s.reversible_hashing.as_ref().is_some_and(|r| r.enabled) {
            return Err(bad(
                field,
                "reversible_hashing.enabled",
                "reversible hashing is not supported: masks are one-way",
            ));
        }
        // Per-entity masks (TrustGate's), else the plugin's.
        let mut masks: Vec<(Entity, Option<(String, bool)>)> = Vec::new();
        if trustgate {
            if s.apply_all {
                for (_, e, default) in TRUSTGATE_ENTITIES {
                    masks.push((e, Some((default.to_string(), false))));
                }
            }
            for (i, p) in s.predefined_entities.iter().enumerate() {
                let f = format!("predefined_entities[{i}]");
                let Some(&(_, e, default)) =
                    TRUSTGATE_ENTITIES.iter().find(|(n, ..)| *n == p.entity)
                else {
                    let known: Vec<&str> = TRUSTGATE_ENTITIES.iter().map(|(n, ..)| *n).collect();
                    return Err(bad(
                        field,
                        &format!("{f}.entity"),
                        format!(
                            "{:?} is not an entity ringgate detects ({})",
                            p.entity,
                            known.join(", ")
                        ),
                    ));
                };
                masks.retain(|(x, _)| *x != e);
                if p.enabled == Some(false) {
                    continue;
                }
                let preserve = p.preserve_len.unwrap_or(false);
                let mask = match p.mask_with.as_deref().filter(|m| !m.is_empty()) {
                    Some(m) => check_mask(m, preserve, field, &format!("{f}.mask_with"))?,
                    None if preserve => "*".to_string(),
                    None => default.to_string(),
                };
                masks.push((e, Some((mask, preserve))));
            }
        } else {
            for e in s.entities.clone().unwrap_or_else(|| ALL.to_vec()) {
                masks.push((e, None));
            }
        }
        // Longer, more specific entities first, so a JWT is not half-masked
        // as something else.
        for e in ALL {
            if let Some((_, mask)) = masks.iter().find(|(x, _)| *x == e) {
                rules.push(Rule {
                    re: Regex::new(pattern(e)).expect("entity patterns compile"),
                    luhn: e == Entity::CreditCard,
                    mask: mask.clone(),
                });
            }
        }
        let threshold = s.similarity_threshold.unwrap_or(0.8);
        if !(0.0..=1.0).contains(&threshold) {
            return Err(bad(field, "similarity_threshold", "must be 0 to 1"));
        }
        let edits = s.max_edit_distance.unwrap_or(1);
        if edits > 1 {
            return Err(bad(
                field,
                "max_edit_distance",
                "ringgate matches keywords within 0 or 1 edits",
            ));
        }
        for (i, r) in s.rules.iter().enumerate() {
            let f = format!("rules[{i}]");
            let mask = check_mask(
                &r.mask_with,
                r.preserve_len,
                field,
                &format!("{f}.mask_with"),
            )?;
            let re = match r.kind {
                RuleKind::Keyword => {
                    let k = r.pattern.trim();
                    if k.is_empty() {
                        return Err(bad(field, &format!("{f}.pattern"), "must not be empty"));
                    }
                    // One edit in a word of n characters: similarity 1 - 1/n.
                    let n = k.chars().count() as f64;
                    let fuzzy = edits == 1 && 1.0 - 1.0 / n >= threshold;
                    Regex::new(&fuzzy_keyword(k, u32::from(fuzzy))).map_err(|e| {
                        bad(
                            field,
                            &format!("{f}.pattern"),
                            format!("keyword too long: {e}"),
                        )
                    })?
                }
                RuleKind::Regex => user_regex(&r.pattern, field, &format!("{f}.pattern"))?,
            };
            rules.push(Rule {
                re,
                luhn: false,
                mask: Some((mask, r.preserve_len)),
            });
        }
        for (i, k) in s.keywords.iter().enumerate() {
            if k.is_empty() {
                return Err(bad(field, &format!("keywords[{i}]"), "must not be empty"));
            }
            rules.push(Rule {
                re: Regex::new(&format!("(?i){}", regex::escape(k))).expect("escaped"),
                luhn: false,
                mask: None,
            });
        }
        for (i, p) in s.patterns.iter().enumerate() {
            let re = user_regex(p, field, &format!("patterns[{i}]"))?;
            rules.push(Rule {
                re,
                luhn: false,
                mask: None,
            });
        }
        let mask_with = match s.mask_with {
            Some(m) => check_mask(&m, s.preserve_len, field, "mask_with")?,
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

    fn replacement<'a>(&'a self, rule: &'a Rule, matched: &[u8]) -> Cow<'a, [u8]> {
        let (mask, preserve) = match &rule.mask {
            Some((m, p)) => (m, *p),
            None => (&self.mask_with, self.preserve_len),
        };
        if preserve {
            let n = String::from_utf8_lossy(matched).chars().count();
            Cow::Owned(mask.repeat(n).into_bytes())
        } else {
            Cow::Borrowed(mask.as_bytes())
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
                    self.replacement(rule, m)
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

/// A mask: one character with `preserve`, no characters that would break
/// the JSON it lands in.
fn check_mask(m: &str, preserve: bool, prefix: &str, field: &str) -> Result<String, ConfigError> {
    if preserve && m.chars().count() != 1 {
        return Err(bad(prefix, field, "with preserve_len, a single character"));
    }
    if m.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
        return Err(bad(
            prefix,
            field,
            "no control characters, quotes or backslashes",
        ));
    }
    Ok(m.to_string())
}

/// An operator's pattern (the `regex` crate's syntax), bounded in size and
/// never matching the empty string.
fn user_regex(p: &str, prefix: &str, field: &str) -> Result<Regex, ConfigError> {
    let re = regex::bytes::RegexBuilder::new(p)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| bad(prefix, field, format!("invalid regex: {e}")))?;
    if re.is_match(b"") {
        return Err(bad(prefix, field, "must not match the empty string"));
    }
    Ok(re)
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
    fn trustgate_settings() {
        let m = masker(serde_json::json!({
            "predefined_entities": [
                {"entity": "credit_card", "enabled": true},
                {"entity": "email", "enabled": true, "mask_with": "[EMAIL]"},
                {"entity": "ssn", "enabled": false}
            ],
            "rules": [
                {"pattern": "falcon", "type": "keyword", "mask_with": "[PROJECT]"},
                {"pattern": "ACME-\\d{4}", "type": "regex", "mask_with": "#", "preserve_len": true}
            ],
            "similarity_threshold": 0.8
        }));
        for (input, want) in [
            ("card 4111-1111-1111-1111 ok", "card [MASKED_CC] ok"),
            ("card 4111 1111 1111 1111 ok", "card [MASKED_CC] ok"),
            ("card 4111111111111111 ok", "card [MASKED_CC] ok"),
            ("mail bob@example.com", "mail [EMAIL]"),
            ("ssn 123-45-6789", "ssn 123-45-6789"),
            // Fuzzy keywords: one edit away, case-insensitively.
            (
                "Project Falcon, project falcom, project falconn",
                "Project [PROJECT], project [PROJECT], project [PROJECT]",
            ),
            ("falcons? no: fal", "[PROJECT]? no: fal"),
            ("id ACME-1234", "id #########"),
        ] {
            assert_eq!(masked(&m, input), want, "{input}");
        }
        // A short keyword is matched exactly (one edit in three characters
        // is below the 0.8 similarity).
        let m = masker(
            serde_json::json!({"rules": [{"pattern": "abc", "type": "keyword", "mask_with": "X"}]}),
        );
        assert_eq!(masked(&m, "abc abd"), "X abd");
        // apply_all: every entity with TrustGate's default masks.
        let m = masker(serde_json::json!({"apply_all": true}));
        assert_eq!(masked(&m, "to bob@example.com"), "to [MASKED_EMAIL]");
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
        assert_eq!(
            bad(serde_json::json!({"predefined_entities": [{"entity": "passport"}]})),
            Some("s.predefined_entities[0].entity".into())
        );
        assert_eq!(
            bad(
                serde_json::json!({"apply_all": true, "reversible_hashing": {"enabled": true, "secret": "x"}})
            ),
            Some("s.reversible_hashing.enabled".into())
        );
        assert_eq!(
            bad(
                serde_json::json!({"rules": [{"pattern": "(", "type": "regex", "mask_with": "x"}]})
            ),
            Some("s.rules[0].pattern".into())
        );
    }
}
