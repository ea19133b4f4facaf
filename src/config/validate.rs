//! Parsing, normalization and validation of a [`Config`].
//!
//! Every error names the offending field as a JSON path such as
//! `gateways[0].rules[2].service`; the first error found, in document
//! order, is returned.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::model::{Config, Credentials, Gateway, HealthChecks, Plugin, ServiceType, Target};
use crate::route::{parse_rule_path, Segment};

/// What kind of refusal a [`ConfigError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed, missing or dangling: 400.
    Invalid,
    /// A duplicate name, id, subdomain, key or rule path: 409.
    Conflict,
    /// 404.
    NotFound,
}

/// A refused configuration: `{"error": ..., "field": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ErrorKind,
    pub error: String,
    /// JSON path of the offending field, e.g. `gateways[0].rules[2].service`.
    pub field: Option<String>,
}

impl ConfigError {
    pub fn invalid(error: impl Into<String>, field: impl Into<String>) -> ConfigError {
        ConfigError {
            kind: ErrorKind::Invalid,
            error: error.into(),
            field: Some(field.into()),
        }
    }

    pub fn conflict(error: impl Into<String>, field: impl Into<String>) -> ConfigError {
        ConfigError {
            kind: ErrorKind::Conflict,
            error: error.into(),
            field: Some(field.into()),
        }
    }

    pub fn not_found(error: impl Into<String>) -> ConfigError {
        ConfigError {
            kind: ErrorKind::NotFound,
            error: error.into(),
            field: None,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::Invalid => 400,
            ErrorKind::Conflict => 409,
            ErrorKind::NotFound => 404,
        }
    }

    /// The response body: `{"error": "...", "field": "..."}` (no `field`
    /// when there is none).
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "error": self.error });
        if let Some(f) = &self.field {
            body["field"] = serde_json::Value::String(f.clone());
        }
        body
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.error),
            None => f.write_str(&self.error),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses a configuration document. A JSON syntax error has no `field`; an
/// unknown field, a missing field, a wrong type or a bad enum value names
/// its JSON path.
pub fn parse(json: &[u8]) -> Result<Config, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(json);
    let cfg: Config = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        json_error(inner, Some(path))
    })?;
    de.end().map_err(|e| json_error(e, None))?;
    Ok(cfg)
}

fn json_error(e: serde_json::Error, path: Option<String>) -> ConfigError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            let msg = e.to_string();
            let mut field = path.filter(|p| p != ".");
            // A missing field is reported on its parent object: name it.
            if let Some(name) = msg
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                field = Some(match field {
                    Some(parent) => format!("{parent}.{name}"),
                    None => name.to_string(),
                });
            }
            ConfigError {
                kind: ErrorKind::Invalid,
                error: msg,
                field,
            }
        }
        _ => ConfigError {
            kind: ErrorKind::Invalid,
            error: format!("invalid JSON: {e}"),
            field: None,
        },
    }
}

/// `"sha256:" + hex(sha256(key))`, the stored form of an API key.
pub fn hash_key(plaintext: &str) -> String {
    let digest = Sha256::digest(plaintext.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Decodes `sha256:<64 lowercase hex>`.
pub fn parse_key_hash(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("sha256:")?.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nibble(hex[2 * i])? << 4 | nibble(hex[2 * i + 1])?;
    }
    Some(out)
}

/// Parses an RFC 3339 timestamp (`2025-01-31T12:00:00Z`,
/// `2025-01-31T12:00:00.5+02:00`).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let t = b.get(from..to)?;
        if !t.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(t).ok()?.parse().ok()
    };
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut i = 19;
    let mut nanos: u32 = 0;
    if at(i, b".") {
        i += 1;
        let start = i;
        while at(i, b"0123456789") {
            if i - start < 9 {
                nanos += u32::from(b[i] - b'0') * 10u32.pow(8 - (i - start) as u32);
            }
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = if at(i, b"Zz") && b.len() == i + 1 {
        0
    } else if at(i, b"+-") && b.len() == i + 6 && at(i + 3, b":") {
        let (oh, om) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
        if oh > 23 || om > 59 {
            return None;
        }
        let o = oh * 3600 + om * 60;
        if b[i] == b'-' {
            -o
        } else {
            o
        }
    } else {
        return None;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let mdays = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > mdays[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days since 1970-01-01 (H. Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset;
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

/// An RFC 3339 timestamp with seconds precision, UTC.
pub fn format_rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn fill_id(id: &mut Option<String>) -> String {
    match id {
        Some(s) if !s.is_empty() => s.clone(),
        _ => {
            let new = uuid::Uuid::new_v4().to_string();
            *id = Some(new.clone());
            new
        }
    }
}

/// Fills in what the server assigns and resolves references by name:
/// ids (UUIDv4) for every entity without one, `gateway_id` on children,
/// `created_at`/`updated_at` when missing, `upstream` → `upstream_id`,
/// `service` → `service_id`, policy rule names → rule ids, plaintext `key` →
/// `key_hash` + `prefix` (the plaintext is cleared), methods upper-cased.
/// A name that resolves to nothing is an [`ErrorKind::Invalid`] error.
pub fn normalize(cfg: &mut Config, now: SystemTime) -> Result<(), ConfigError> {
    let stamp = format_rfc3339(now);
    for (gi, gw) in cfg.gateways.iter_mut().enumerate() {
        let gp = format!("gateways[{gi}]");
        let gid = fill_id(&mut gw.id);
        gw.created_at.get_or_insert_with(|| stamp.clone());
        gw.updated_at.get_or_insert_with(|| stamp.clone());
        let stamp_all = |c: &mut Option<String>, u: &mut Option<String>| {
            c.get_or_insert_with(|| stamp.clone());
            u.get_or_insert_with(|| stamp.clone());
        };
        for up in &mut gw.upstreams {
            stamp_all(&mut up.created_at, &mut up.updated_at);
        }
        for svc in &mut gw.services {
            stamp_all(&mut svc.created_at, &mut svc.updated_at);
        }
        for rule in &mut gw.rules {
            stamp_all(&mut rule.created_at, &mut rule.updated_at);
        }
        for key in &mut gw.keys {
            stamp_all(&mut key.created_at, &mut key.updated_at);
        }
        for up in &mut gw.upstreams {
            fill_id(&mut up.id);
            up.gateway_id = Some(gid.clone());
            for t in &mut up.targets {
                fill_id(&mut t.id);
            }
        }
        let upstreams = &gw.upstreams;
        for (si, svc) in gw.services.iter_mut().enumerate() {
            fill_id(&mut svc.id);
            svc.gateway_id = Some(gid.clone());
            if let Some(name) = svc.upstream.take() {
                let field = format!("{gp}.services[{si}].upstream");
                let id = upstreams
                    .iter()
                    .find(|u| u.name == name)
                    .and_then(|u| u.id.clone())
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            format!("no upstream named {name:?} in this gateway"),
                            field.clone(),
                        )
                    })?;
                if svc.upstream_id.as_ref().is_some_and(|given| *given != id) {
                    return Err(ConfigError::invalid(
                        "upstream and upstream_id name different upstreams",
                        field,
                    ));
                }
                svc.upstream_id = Some(id);
            }
        }
        let services = &gw.services;
        for (ri, rule) in gw.rules.iter_mut().enumerate() {
            fill_id(&mut rule.id);
            rule.gateway_id = Some(gid.clone());
            for m in &mut rule.methods {
                m.make_ascii_uppercase();
            }
            if let Some(name) = rule.service.take() {
                let field = format!("{gp}.rules[{ri}].service");
                let id = services
                    .iter()
                    .find(|s| s.name == name)
                    .and_then(|s| s.id.clone())
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            format!("no service named {name:?} in this gateway"),
                            field.clone(),
                        )
                    })?;
                if rule.service_id.as_ref().is_some_and(|given| *given != id) {
                    return Err(ConfigError::invalid(
                        "service and service_id name different services",
                        field,
                    ));
                }
                rule.service_id = Some(id);
            }
        }
        let rules = &gw.rules;
        for (ki, key) in gw.keys.iter_mut().enumerate() {
            let kp = format!("{gp}.keys[{ki}]");
            fill_id(&mut key.id);
            key.gateway_id = Some(gid.clone());
            if let Some(plain) = key.key.take() {
                if plain.is_empty() {
                    return Err(ConfigError::invalid(
                        "must not be empty",
                        format!("{kp}.key"),
                    ));
                }
                let hash = hash_key(&plain);
                if key.key_hash.as_ref().is_some_and(|h| *h != hash) {
                    return Err(ConfigError::invalid(
                        "key_hash does not match key",
                        format!("{kp}.key_hash"),
                    ));
                }
                key.key_hash = Some(hash);
                key.prefix = Some(plain.chars().take(8).collect());
            }
            if let Some(policies) = &mut key.policies {
                for (pi, p) in policies.iter_mut().enumerate() {
                    if rules.iter().any(|r| r.id.as_ref() == Some(p)) {
                        continue;
                    }
                    match rules
                        .iter()
                        .find(|r| r.name == *p)
                        .and_then(|r| r.id.clone())
                    {
                        Some(id) => *p = id,
                        None => {
                            return Err(ConfigError::invalid(
                                format!("no rule with id or name {p:?} in this gateway"),
                                format!("{kp}.policies[{pi}]"),
                            ))
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Is `s` an HTTP token (RFC 9110 `tchar`s, non-empty)?
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Headers the gateway itself owns: never injectable from configuration.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

fn check_value(v: &str, field: &str) -> Result<(), ConfigError> {
    if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(ConfigError::invalid(
            "must not contain CR, LF or NUL",
            field,
        ));
    }
    Ok(())
}

fn check_header_name(name: &str, field: &str, injected: bool) -> Result<(), ConfigError> {
    if !is_token(name) {
        return Err(ConfigError::invalid(
            format!("{name:?} is not a valid header name"),
            field,
        ));
    }
    if injected && RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(ConfigError::invalid(
            format!("header {name:?} cannot be set by configuration"),
            field,
        ));
    }
    Ok(())
}

fn check_headers(
    headers: &Option<std::collections::BTreeMap<String, String>>,
    field: &str,
    injected: bool,
) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (name, value) in headers.iter().flatten() {
        let f = format!("{field}.{name}");
        check_header_name(name, &f, injected)?;
        check_value(value, &f)?;
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(ConfigError::invalid(
                format!("header {name:?} given twice"),
                f,
            ));
        }
    }
    Ok(())
}

fn check_credentials(c: &Option<Credentials>, field: &str) -> Result<(), ConfigError> {
    if let Some(c) = c {
        match (&c.param_name, &c.param_value) {
            (Some(n), Some(_)) if !n.is_empty() => {}
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    "must not be empty",
                    format!("{field}.param_name"),
                ))
            }
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "param_name needs param_value",
                    format!("{field}.param_value"),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "param_value needs param_name",
                    format!("{field}.param_name"),
                ))
            }
            (None, None) => {}
        }
        if let Some(l) = &c.param_location {
            if l != "query" && l != "body" {
                return Err(ConfigError::invalid(
                    "must be \"query\" or \"body\"",
                    format!("{field}.param_location"),
                ));
            }
        }
    }
    let Some(c) = c else { return Ok(()) };
    if let Some(k) = &c.api_key {
        let f = format!("{field}.api_key");
        if k.is_empty() {
            return Err(ConfigError::invalid("must not be empty", f));
        }
        check_value(k, &f)?;
    }
    match (&c.header_name, &c.header_value) {
        (Some(n), v) => {
            check_header_name(n, &format!("{field}.header_name"), true)?;
            match v {
                Some(v) => check_value(v, &format!("{field}.header_value"))?,
                None if c.api_key.is_none() => {
                    return Err(ConfigError::invalid(
                        "header_name needs header_value or api_key",
                        format!("{field}.header_value"),
                    ))
                }
                None => {}
            }
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "header_value needs header_name",
                format!("{field}.header_name"),
            ))
        }
        (None, None) => {}
    }
    Ok(())
}

fn nonempty(s: &str, field: &str) -> Result<(), ConfigError> {
    if s.trim().is_empty() {
        return Err(ConfigError::invalid("must not be empty", field));
    }
    if s.chars().any(char::is_control) {
        return Err(ConfigError::invalid(
            "must not contain control characters",
            field,
        ));
    }
    Ok(())
}

fn check_id<'a>(
    id: &'a Option<String>,
    field: &str,
    seen: &mut HashSet<&'a str>,
) -> Result<(), ConfigError> {
    let Some(id) = id else { return Ok(()) };
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
    {
        return Err(ConfigError::invalid(
            "an id is 1 to 128 characters of [A-Za-z0-9._~-]",
            field,
        ));
    }
    if !seen.insert(id) {
        return Err(ConfigError::conflict(
            format!("id {id:?} is used twice"),
            field,
        ));
    }
    Ok(())
}

fn check_parent(child: &Option<String>, gw: &Gateway, field: &str) -> Result<(), ConfigError> {
    if let (Some(c), Some(g)) = (child, &gw.id) {
        if c != g {
            return Err(ConfigError::invalid(
                "does not match the enclosing gateway's id",
                field,
            ));
        }
    }
    Ok(())
}

fn check_time(t: &Option<String>, field: &str) -> Result<(), ConfigError> {
    if let Some(t) = t {
        if parse_rfc3339(t).is_none() {
            return Err(ConfigError::invalid(
                format!("{t:?} is not an RFC 3339 timestamp"),
                field,
            ));
        }
    }
    Ok(())
}

fn check_host(host: &str, field: &str) -> Result<(), ConfigError> {
    nonempty(host, field)?;
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
    {
        return Err(ConfigError::invalid(
            format!("{host:?} is not a host name or IP address"),
            field,
        ));
    }
    Ok(())
}

/// `health_checks`: passive, active (`path`) and the circuit breaker.
fn check_health_checks(hc: &HealthChecks, hp: &str) -> Result<(), ConfigError> {
    let at_least_one = |v: u64, name: &str| {
        if v == 0 {
            Err(ConfigError::invalid(
                "must be at least 1",
                format!("{hp}.{name}"),
            ))
        } else {
            Ok(())
        }
    };
    let active = hc.path.is_some();
    if hc.passive || active {
        at_least_one(u64::from(hc.threshold), "threshold")?;
        at_least_one(hc.interval, "interval")?;
    }
    if let Some(t) = hc.timeout {
        at_least_one(t, "timeout")?;
    }
    check_path_prefix(&hc.path, &format!("{hp}.path"))?;
    if let Some(cb) = &hc.circuit_breaker {
        let bp = format!("{hp}.circuit_breaker");
        if !(cb.failure_ratio > 0.0 && cb.failure_ratio <= 1.0) {
            return Err(ConfigError::invalid(
                "must be above 0 and at most 1",
                format!("{bp}.failure_ratio"),
            ));
        }
        if !(1..=64).contains(&cb.window) {
            return Err(ConfigError::invalid(
                "must be 1 to 64 (requests)",
                format!("{bp}.window"),
            ));
        }
        if cb.min_requests.is_some_and(|m| m == 0 || m > cb.window) {
            return Err(ConfigError::invalid(
                "must be 1 to `window`",
                format!("{bp}.min_requests"),
            ));
        }
        if cb.cooldown == 0 {
            return Err(ConfigError::invalid(
                "must be at least 1 (seconds)",
                format!("{bp}.cooldown"),
            ));
        }
    }
    Ok(())
}

fn check_path_prefix(path: &Option<String>, field: &str) -> Result<(), ConfigError> {
    if let Some(p) = path {
        if !p.starts_with('/')
            || p.chars()
                .any(|c| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::invalid(
                "must start with '/' and hold no '?', '#', spaces or control characters",
                field,
            ));
        }
    }
    Ok(())
}

fn check_plugins(plugins: &[Plugin], field: &str) -> Result<(), ConfigError> {
    for (i, p) in plugins.iter().enumerate() {
        let pp = format!("{field}[{i}]");
        nonempty(&p.name, &format!("{pp}.name"))?;
        if !p.settings.is_object() {
            return Err(ConfigError::invalid(
                "must be an object",
                format!("{pp}.settings"),
            ));
        }
    }
    crate::plugin::validate(plugins, field)
}

fn check_target(t: &Target, tp: &str) -> Result<(), ConfigError> {
    if t.host.is_empty() {
        // TrustGate's provider target: the provider's public endpoint.
        crate::provider::endpoint::public(t)
            .map_err(|e| ConfigError::invalid(e, format!("{tp}.host")))?;
        if t.port != 0 {
            return Err(ConfigError::invalid(
                "a target without host uses its provider's endpoint: give host too, or no port",
                format!("{tp}.port"),
            ));
        }
    } else {
        check_host(&t.host, &format!("{tp}.host"))?;
        if t.port == 0 {
            return Err(ConfigError::invalid(
                "must be 1 to 65535",
                format!("{tp}.port"),
            ));
        }
    }
    if !(1..=1000).contains(&t.weight) {
        return Err(ConfigError::invalid(
            "must be 1 to 1000",
            format!("{tp}.weight"),
        ));
    }
    check_path_prefix(&t.path, &format!("{tp}.path"))?;
    check_headers(&t.headers, &format!("{tp}.headers"), true)?;
    if let Some(p) = &t.provider {
        nonempty(p, &format!("{tp}.provider"))?;
    }
    for (mi, m) in t.models.iter().flatten().enumerate() {
        nonempty(m, &format!("{tp}.models[{mi}]"))?;
    }
    if let Some(m) = &t.default_model {
        nonempty(m, &format!("{tp}.default_model"))?;
    }
    if let Some(pem) = &t.ca_pem {
        crate::upstream::tls::parse_pem_certs(pem)
            .map_err(|e| ConfigError::invalid(e, format!("{tp}.ca_pem")))?;
    }
    if let Some(f) = &t.ca_file {
        nonempty(f, &format!("{tp}.ca_file"))?;
    }
    if let Some(n) = t.sse_ping_secs {
        if !(1..=3600).contains(&n) {
            return Err(ConfigError::invalid(
                "must be 1 to 3600 (seconds)",
                format!("{tp}.sse_ping_secs"),
            ));
        }
    }
    crate::provider::azure::check_target(t, tp)?;
    check_credentials(&t.credentials, &format!("{tp}.credentials"))
}

/// A DNS label: 1 to 63 of `[A-Za-z0-9-]`, no leading or trailing `-`.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Can two rules with the same path and overlapping methods match the same
/// request? Only when every header both require has the same value.
fn headers_compatible(
    a: &Option<std::collections::BTreeMap<String, String>>,
    b: &Option<std::collections::BTreeMap<String, String>>,
) -> bool {
    a.iter().flatten().all(|(n, v)| {
        b.iter()
            .flatten()
            .all(|(m, w)| !n.eq_ignore_ascii_case(m) || v == w)
    })
}

fn methods_overlap(a: &[String], b: &[String]) -> bool {
    a.is_empty()
        || b.is_empty()
        || a.iter()
            .any(|m| b.iter().any(|n| m.eq_ignore_ascii_case(n)))
}

/// Checks everything a configuration must satisfy. Expects a
/// [`normalize`]d configuration, though references by name are accepted.
pub fn validate(cfg: &Config) -> Result<(), ConfigError> {
    crate::cost::validate(&cfg.prices)?;
    let mut subdomains = HashSet::new();
    let mut key_hashes: HashSet<String> = HashSet::new();
    let mut gateway_ids = HashSet::new();
    let mut upstream_ids = HashSet::new();
    let mut target_ids = HashSet::new();
    let mut service_ids = HashSet::new();
    let mut rule_ids = HashSet::new();
    let mut key_ids = HashSet::new();

    for (gi, gw) in cfg.gateways.iter().enumerate() {
        let gp = format!("gateways[{gi}]");
        check_id(&gw.id, &format!("{gp}.id"), &mut gateway_ids)?;
        // Names need not be unique (TrustGate's benchmark flow creates
        // "Benchmark Gateway" on every run): ids identify gateways.
        nonempty(&gw.name, &format!("{gp}.name"))?;
        if let Some(sd) = &gw.subdomain {
            let f = format!("{gp}.subdomain");
            if !is_dns_label(sd) {
                return Err(ConfigError::invalid(
                    format!("{sd:?} is not a DNS label (1-63 of a-z, 0-9, '-')"),
                    f,
                ));
            }
            if !subdomains.insert(sd.to_ascii_lowercase()) {
                return Err(ConfigError::conflict(
                    format!("subdomain {sd:?} is already used by another gateway"),
                    f,
                ));
            }
        }
        check_time(&gw.created_at, &format!("{gp}.created_at"))?;
        check_time(&gw.updated_at, &format!("{gp}.updated_at"))?;
        check_plugins(&gw.required_plugins, &format!("{gp}.required_plugins"))?;

        let mut names = HashSet::new();
        for (ui, up) in gw.upstreams.iter().enumerate() {
            let up_p = format!("{gp}.upstreams[{ui}]");
            check_id(&up.id, &format!("{up_p}.id"), &mut upstream_ids)?;
            check_parent(&up.gateway_id, gw, &format!("{up_p}.gateway_id"))?;
            check_time(&up.created_at, &format!("{up_p}.created_at"))?;
            check_time(&up.updated_at, &format!("{up_p}.updated_at"))?;
            nonempty(&up.name, &format!("{up_p}.name"))?;
            if !names.insert(up.name.as_str()) {
                return Err(ConfigError::conflict(
                    format!(
                        "an upstream named {:?} already exists in this gateway",
                        up.name
                    ),
                    format!("{up_p}.name"),
                ));
            }
            if up.targets.is_empty() {
                return Err(ConfigError::invalid(
                    "an upstream needs at least one target",
                    format!("{up_p}.targets"),
                ));
            }
            for (ti, t) in up.targets.iter().enumerate() {
                let tp = format!("{up_p}.targets[{ti}]");
                check_id(&t.id, &format!("{tp}.id"), &mut target_ids)?;
                check_target(t, &tp)?;
            }
            if let Some(hc) = &up.health_checks {
                check_health_checks(hc, &format!("{up_p}.health_checks"))?;
            }
        }

        let mut names = HashSet::new();
        for (si, svc) in gw.services.iter().enumerate() {
            let sp = format!("{gp}.services[{si}]");
            check_id(&svc.id, &format!("{sp}.id"), &mut service_ids)?;
            check_parent(&svc.gateway_id, gw, &format!("{sp}.gateway_id"))?;
            check_time(&svc.created_at, &format!("{sp}.created_at"))?;
            check_time(&svc.updated_at, &format!("{sp}.updated_at"))?;
            nonempty(&svc.name, &format!("{sp}.name"))?;
            if !names.insert(svc.name.as_str()) {
                return Err(ConfigError::conflict(
                    format!(
                        "a service named {:?} already exists in this gateway",
                        svc.name
                    ),
                    format!("{sp}.name"),
                ));
            }
            match svc.kind {
                ServiceType::Upstream => {
                    match (&svc.upstream_id, &svc.upstream) {
                        (Some(id), _) => {
                            if !gw.upstreams.iter().any(|u| u.id.as_ref() == Some(id)) {
                                return Err(ConfigError::invalid(
                                    format!("no upstream with id {id:?} in this gateway"),
                                    format!("{sp}.upstream_id"),
                                ));
                            }
                        }
                        (None, Some(name)) => {
                            if !gw.upstreams.iter().any(|u| u.name == *name) {
                                return Err(ConfigError::invalid(
                                    format!("no upstream named {name:?} in this gateway"),
                                    format!("{sp}.upstream"),
                                ));
                            }
                        }
                        (None, None) => {
                            return Err(ConfigError::invalid(
                                "a service of type upstream needs upstream_id (or upstream)",
                                format!("{sp}.upstream_id"),
                            ))
                        }
                    }
                    for (set, name) in [
                        (svc.host.is_some(), "host"),
                        (svc.port.is_some(), "port"),
                        (svc.protocol.is_some(), "protocol"),
                    ] {
                        if set {
                            return Err(ConfigError::invalid(
                                "not allowed for a service of type upstream",
                                format!("{sp}.{name}"),
                            ));
                        }
                    }
                }
                ServiceType::Endpoint => {
                    for (set, name) in [
                        (svc.upstream_id.is_some(), "upstream_id"),
                        (svc.upstream.is_some(), "upstream"),
                    ] {
                        if set {
                            return Err(ConfigError::invalid(
                                "not allowed for a service of type endpoint",
                                format!("{sp}.{name}"),
                            ));
                        }
                    }
                    match &svc.host {
                        Some(h) => check_host(h, &format!("{sp}.host"))?,
                        None => {
                            return Err(ConfigError::invalid(
                                "a service of type endpoint needs host",
                                format!("{sp}.host"),
                            ))
                        }
                    }
                    match svc.port {
                        Some(0) => {
                            return Err(ConfigError::invalid(
                                "must be 1 to 65535",
                                format!("{sp}.port"),
                            ))
                        }
                        Some(_) => {}
                        None => {
                            return Err(ConfigError::invalid(
                                "a service of type endpoint needs port",
                                format!("{sp}.port"),
                            ))
                        }
                    }
                }
            }
            check_path_prefix(&svc.path, &format!("{sp}.path"))?;
            check_headers(&svc.headers, &format!("{sp}.headers"), true)?;
            check_credentials(&svc.credentials, &format!("{sp}.credentials"))?;
        }

        let mut names = HashSet::new();
        // Canonical path (params as `{}`) → indices of active rules.
        let mut paths: HashMap<String, Vec<usize>> = HashMap::new();
        for (ri, rule) in gw.rules.iter().enumerate() {
            let rp = format!("{gp}.rules[{ri}]");
            check_id(&rule.id, &format!("{rp}.id"), &mut rule_ids)?;
            check_parent(&rule.gateway_id, gw, &format!("{rp}.gateway_id"))?;
            check_time(&rule.created_at, &format!("{rp}.created_at"))?;
            check_time(&rule.updated_at, &format!("{rp}.updated_at"))?;
            // A rule's name is optional (TrustGate's scripts send none);
            // a given one is unique, since policies may name it.
            if !rule.name.is_empty() && !names.insert(rule.name.as_str()) {
                return Err(ConfigError::conflict(
                    format!(
                        "a rule named {:?} already exists in this gateway",
                        rule.name
                    ),
                    format!("{rp}.name"),
                ));
            }
            let segments = parse_rule_path(&rule.path).map_err(|e| {
                ConfigError::invalid(format!("invalid rule path: {e}"), format!("{rp}.path"))
            })?;
            match (&rule.service_id, &rule.service) {
                (Some(id), _) => {
                    if !gw.services.iter().any(|s| s.id.as_ref() == Some(id)) {
                        return Err(ConfigError::invalid(
                            format!("no service with id {id:?} in this gateway"),
                            format!("{rp}.service_id"),
                        ));
                    }
                }
                (None, Some(name)) => {
                    if !gw.services.iter().any(|s| s.name == *name) {
                        return Err(ConfigError::invalid(
                            format!("no service named {name:?} in this gateway"),
                            format!("{rp}.service"),
                        ));
                    }
                }
                (None, None) => {
                    return Err(ConfigError::invalid(
                        "a rule needs service_id (or service)",
                        format!("{rp}.service_id"),
                    ))
                }
            }
            for (mi, m) in rule.methods.iter().enumerate() {
                if !is_token(m) {
                    return Err(ConfigError::invalid(
                        format!("{m:?} is not an HTTP method"),
                        format!("{rp}.methods[{mi}]"),
                    ));
                }
            }
            check_headers(&rule.headers, &format!("{rp}.headers"), false)?;
            check_plugins(&rule.plugin_chain, &format!("{rp}.plugin_chain"))?;
            super::fallback::check(rule, gw, &rp)?;
            if rule.active {
                let mut canonical = String::new();
                for s in &segments {
                    canonical.push('/');
                    match s {
                        Segment::Literal(l) => canonical.push_str(l),
                        Segment::Param(_) => canonical.push_str("{}"),
                    }
                }
                let same = paths.entry(canonical).or_default();
                for &other in same.iter() {
                    let o = &gw.rules[other];
                    if methods_overlap(&o.methods, &rule.methods)
                        && headers_compatible(&o.headers, &rule.headers)
                    {
                        return Err(ConfigError::conflict(
                            format!(
                                "path {:?} with these methods is already routed by rule {:?}",
                                rule.path,
                                o.id.as_deref()
                                    .filter(|_| o.name.is_empty())
                                    .unwrap_or(&o.name)
                            ),
                            format!("{rp}.path"),
                        ));
                    }
                }
                same.push(ri);
            }
        }

        for (ki, key) in gw.keys.iter().enumerate() {
            let kp = format!("{gp}.keys[{ki}]");
            check_id(&key.id, &format!("{kp}.id"), &mut key_ids)?;
            check_parent(&key.gateway_id, gw, &format!("{kp}.gateway_id"))?;
            check_time(&key.created_at, &format!("{kp}.created_at"))?;
            check_time(&key.updated_at, &format!("{kp}.updated_at"))?;
            // Like gateways, keys are told apart by id, not name.
            nonempty(&key.name, &format!("{kp}.name"))?;
            let hash = match (&key.key, &key.key_hash) {
                (Some(k), _) if k.is_empty() => {
                    return Err(ConfigError::invalid(
                        "must not be empty",
                        format!("{kp}.key"),
                    ))
                }
                (Some(k), _) => (hash_key(k), format!("{kp}.key")),
                (None, Some(h)) => {
                    if parse_key_hash(h).is_none() {
                        return Err(ConfigError::invalid(
                            "must be \"sha256:\" and 64 lowercase hex digits",
                            format!("{kp}.key_hash"),
                        ));
                    }
                    (h.clone(), format!("{kp}.key_hash"))
                }
                (None, None) => {
                    return Err(ConfigError::invalid(
                        "a key needs key or key_hash",
                        format!("{kp}.key"),
                    ))
                }
            };
            if !key_hashes.insert(hash.0) {
                return Err(ConfigError::conflict("this key is already in use", hash.1));
            }
            check_time(&key.expires_at, &format!("{kp}.expires_at"))?;
            for (pi, p) in key.policies.iter().flatten().enumerate() {
                if !gw
                    .rules
                    .iter()
                    .any(|r| r.id.as_ref() == Some(p) || r.name == *p)
                {
                    return Err(ConfigError::invalid(
                        format!("no rule with id {p:?} in this gateway"),
                        format!("{kp}.policies[{pi}]"),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEMO_KEY_HASH: &str =
        "sha256:f073569af640d3888f14b4626cdd5290d8ae3b505085eea4757e5d214728e6e7";

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn base() -> serde_json::Value {
        json!({"gateways": [{
            "name": "demo", "subdomain": "demo",
            "upstreams": [{"name": "llm", "targets": [{"host": "127.0.0.1", "port": 9000}]},
                          {"name": "other", "targets": [{"host": "10.0.0.1", "port": 80}]}],
            "services": [{"name": "chat", "type": "upstream", "upstream": "llm"},
                         {"name": "ep", "type": "endpoint", "host": "api.example.com", "port": 443,
                          "protocol": "https"}],
            "rules": [{"name": "openai", "path": "/v1", "methods": ["get", "POST"], "service": "chat"},
                      {"name": "models", "path": "/v1/{model}/x", "service": "ep"},
                      {"name": "off", "path": "/v1", "active": false, "service": "chat"}],
            "keys": [{"name": "app", "key": "rg-demo-key", "policies": ["openai"]}]
        }]})
    }

    fn load_value(v: &serde_json::Value) -> Result<Config, ConfigError> {
        let mut cfg = parse(v.to_string().as_bytes())?;
        normalize(&mut cfg, now())?;
        validate(&cfg)?;
        Ok(cfg)
    }

    /// Applies `edit` to the base document and expects an error.
    #[test]
    fn health_check_fields_name_the_field() {
        let cases = [
            (json!({"path": "/h", "interval": 0}), "interval"),
            (json!({"path": "/h", "threshold": 0}), "threshold"),
            (json!({"path": "h"}), "path"),
            (json!({"timeout": 0}), "timeout"),
            (
                json!({"circuit_breaker": {"failure_ratio": 0.0}}),
                "circuit_breaker.failure_ratio",
            ),
            (
                json!({"circuit_breaker": {"failure_ratio": 1.5}}),
                "circuit_breaker.failure_ratio",
            ),
            (
                json!({"circuit_breaker": {"window": 0}}),
                "circuit_breaker.window",
            ),
            (
                json!({"circuit_breaker": {"window": 65}}),
                "circuit_breaker.window",
            ),
            (
                json!({"circuit_breaker": {"window": 4, "min_requests": 5}}),
                "circuit_breaker.min_requests",
            ),
            (
                json!({"circuit_breaker": {"cooldown": 0}}),
                "circuit_breaker.cooldown",
            ),
        ];
        for (hc, field) in cases {
            let (kind, f) =
                refused(|v| v["gateways"][0]["upstreams"][0]["health_checks"] = hc.clone());
            assert_eq!(kind, ErrorKind::Invalid, "{hc}");
            assert_eq!(
                f,
                format!("gateways[0].upstreams[0].health_checks.{field}"),
                "{hc}"
            );
        }
        let mut v = base();
        v["gateways"][0]["upstreams"][0]["health_checks"] = json!({
            "path": "/v1/models", "interval": 5, "timeout": 2,
            "circuit_breaker": {"window": 4}
        });
        let cfg = load_value(&v).expect("valid health checks");
        let snap = crate::config::compile::compile(&cfg, 1);
        let up = &snap.gateways[0].upstreams[0];
        let check = up.active_check.as_ref().expect("active check");
        assert_eq!(check.path, "/v1/models");
        assert_eq!(check.interval, Duration::from_secs(5));
        assert_eq!(check.timeout, Duration::from_secs(2));
        let b = up.breaker.expect("breaker");
        assert_eq!((b.window, b.min_requests, b.failure_ratio), (4, 4, 0.5));
        assert_eq!(b.cooldown, Duration::from_secs(30));
        // Slots are dense over upstream targets, then endpoint services.
        let slots: Vec<u32> = snap.targets().map(|t| t.slot).collect();
        assert_eq!(slots, vec![0, 1, 2]);
    }

    fn refused(edit: impl FnOnce(&mut serde_json::Value)) -> (ErrorKind, String) {
        let mut v = base();
        edit(&mut v);
        let e = load_value(&v).expect_err("accepted");
        (e.kind, e.field.unwrap_or_default())
    }

    fn parse_err(doc: &str) -> (ErrorKind, Option<String>) {
        let e = parse(doc.as_bytes()).expect_err("parsed");
        (e.kind, e.field)
    }

    #[test]
    fn base_is_valid() {
        load_value(&base()).unwrap();
    }

    #[test]
    fn parse_errors_name_the_field() {
        use ErrorKind::Invalid;
        assert_eq!(parse_err("{nope"), (Invalid, None));
        assert_eq!(parse_err("{} x"), (Invalid, None));
        assert_eq!(parse_err(""), (Invalid, None));
        assert_eq!(
            parse_err(
                r#"{"gateways":[{"name":"a","upstreams":[{"name":"u","targets":[]},{"name":"v","algorithm":"fastest"}]}]}"#
            ),
            (Invalid, Some("gateways[0].upstreams[1].algorithm".into()))
        );
        assert_eq!(
            parse_err(r#"{"gateways":[{"name":"a","bogus":1}]}"#),
            (Invalid, Some("gateways[0].bogus".into()))
        );
        assert_eq!(
            parse_err(
                r#"{"gateways":[{"name":"a","upstreams":[{"name":"u","targets":[{"host":"h","port":"80"}]}]}]}"#
            ),
            (
                Invalid,
                Some("gateways[0].upstreams[0].targets[0].port".into())
            )
        );
        assert_eq!(
            parse_err(
                r#"{"gateways":[{"name":"a","upstreams":[{"name":"u","targets":[{"host":"h","port":70000}]}]}]}"#
            ),
            (
                Invalid,
                Some("gateways[0].upstreams[0].targets[0].port".into())
            )
        );
        assert_eq!(
            parse_err(r#"{"gateways":[{"subdomain":"a"}]}"#),
            (Invalid, Some("gateways[0].name".into()))
        );
        assert_eq!(
            parse_err(
                r#"{"gateways":[{"name":"a","rules":[{"name":"r","path":"/","plugin_chain":[{"name":"p","stage":"later"}]}]}]}"#
            ),
            (
                Invalid,
                Some("gateways[0].rules[0].plugin_chain[0].stage".into())
            )
        );
        assert_eq!(
            parse_err(r#"{"gateways":[{"name":"a","status":"paused"}]}"#),
            (Invalid, Some("gateways[0].status".into()))
        );
        assert_eq!(
            parse_err(r#"{"gateway":[]}"#),
            (Invalid, Some("gateway".into()))
        );
    }

    #[test]
    fn normalize_fills_ids_resolves_names_and_hashes_keys() {
        let cfg = load_value(&base()).unwrap();
        let gw = &cfg.gateways[0];
        let gid = gw.id.clone().unwrap();
        assert!(uuid::Uuid::parse_str(&gid).is_ok());
        assert_eq!(gw.created_at.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(gw.updated_at, gw.created_at);
        assert!(gw.upstreams[0].targets[0].id.is_some());
        assert_eq!(gw.upstreams[1].gateway_id.as_ref(), Some(&gid));
        assert_eq!(gw.services[0].upstream_id, gw.upstreams[0].id);
        assert_eq!(gw.services[0].upstream, None);
        assert_eq!(gw.rules[0].service_id, gw.services[0].id);
        assert_eq!(gw.rules[1].service_id, gw.services[1].id);
        assert_eq!(gw.rules[0].service, None);
        assert_eq!(gw.rules[0].methods, ["GET", "POST"]);
        let key = &gw.keys[0];
        assert_eq!(key.key, None);
        assert_eq!(key.key_hash.as_deref(), Some(DEMO_KEY_HASH));
        assert_eq!(key.prefix.as_deref(), Some("rg-demo-"));
        assert_eq!(
            key.policies.as_ref().unwrap(),
            &[gw.rules[0].id.clone().unwrap()]
        );
        // Normalizing again changes nothing.
        let mut again = cfg.clone();
        normalize(&mut again, now() + Duration::from_secs(5)).unwrap();
        assert_eq!(again, cfg);
        // All ids distinct.
        let json = serde_json::to_value(&cfg).unwrap();
        let text = json.to_string();
        assert!(!text.contains("\"rg-demo-key\""));
        // The export round-trips.
        let back = load_value(&json).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn export_never_contains_plaintext() {
        let mut cfg = parse(base().to_string().as_bytes()).unwrap();
        // Even an un-normalized config does not serialize the plaintext.
        assert!(!serde_json::to_string(&cfg).unwrap().contains("rg-demo-key"));
        normalize(&mut cfg, now()).unwrap();
        let out = serde_json::to_string(&cfg).unwrap();
        assert!(!out.contains("rg-demo-key"), "{out}");
        assert!(out.contains(DEMO_KEY_HASH));
        assert!(!out.contains("\"key\""));
    }

    #[test]
    fn dangling_names() {
        use ErrorKind::Invalid;
        assert_eq!(
            refused(|v| v["gateways"][0]["services"][0]["upstream"] = json!("nope")),
            (Invalid, "gateways[0].services[0].upstream".into())
        );
        assert_eq!(
            refused(|v| v["gateways"][0]["rules"][2]["service"] = json!("nope")),
            (Invalid, "gateways[0].rules[2].service".into())
        );
        assert_eq!(
            refused(|v| v["gateways"][0]["keys"][0]["policies"] = json!(["openai", "nope"])),
            (Invalid, "gateways[0].keys[0].policies[1]".into())
        );
        assert_eq!(
            refused(|v| v["gateways"][0]["keys"][0]["key_hash"] = json!("sha256:00")),
            (Invalid, "gateways[0].keys[0].key_hash".into())
        );
    }

    #[test]
    fn least_conn_is_least_connections() {
        let mut v = base();
        v["gateways"][0]["upstreams"][0]["algorithm"] = json!("least-conn");
        let cfg = load_value(&v).expect("accepted");
        assert_eq!(
            cfg.gateways[0].upstreams[0].algorithm,
            crate::config::model::Algorithm::LeastConnections
        );
    }

    /// TrustGate's benchmark flow runs twice: same gateway and key names,
    /// rules without a name.
    #[test]
    fn duplicate_gateway_and_key_names_and_nameless_rules_are_accepted() {
        let mut v = base();
        let mut second = v["gateways"][0].clone();
        second["subdomain"] = json!("other");
        second["keys"] = json!([{"name": "app", "key": "other"}, {"name": "app", "key": "third"}]);
        second["rules"] =
            json!([{"path": "/a", "service": "chat"}, {"path": "/b", "service": "chat"}]);
        v["gateways"].as_array_mut().unwrap().push(second);
        let cfg = load_value(&v).expect("accepted");
        let snap = crate::config::compile(&cfg, 1);
        // A nameless rule is labelled by its path.
        assert_eq!(snap.gateways[1].rules[0].name, "/a");
        // Named rules stay unique (policies name them).
        let (kind, field) = refused(|v| v["gateways"][0]["rules"][1]["name"] = json!("openai"));
        assert_eq!(
            (kind, field.as_str()),
            (ErrorKind::Conflict, "gateways[0].rules[1].name")
        );
    }

    #[test]
    fn validation_errors_name_their_field() {
        use ErrorKind::{Conflict, Invalid};
        type Edit = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(Edit, ErrorKind, &str)> = vec![
            (
                Box::new(|v| v["gateways"][0]["name"] = json!(" ")),
                Invalid,
                "gateways[0].name",
            ),
            (
                Box::new(|v| {
                    v["gateways"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "b", "subdomain": "DEMO"}));
                }),
                Conflict,
                "gateways[1].subdomain",
            ),
            (
                Box::new(|v| v["gateways"][0]["subdomain"] = json!("a.b")),
                Invalid,
                "gateways[0].subdomain",
            ),
            (
                Box::new(|v| v["gateways"][0]["subdomain"] = json!("-a")),
                Invalid,
                "gateways[0].subdomain",
            ),
            (
                Box::new(|v| v["gateways"][0]["upstreams"][1]["name"] = json!("llm")),
                Conflict,
                "gateways[0].upstreams[1].name",
            ),
            (
                Box::new(|v| v["gateways"][0]["upstreams"][1]["targets"] = json!([])),
                Invalid,
                "gateways[0].upstreams[1].targets",
            ),
            (
                Box::new(|v| v["gateways"][0]["upstreams"][0]["targets"][0]["port"] = json!(0)),
                Invalid,
                "gateways[0].upstreams[0].targets[0].port",
            ),
            (
                Box::new(|v| v["gateways"][0]["upstreams"][0]["targets"][0]["host"] = json!("")),
                Invalid,
                "gateways[0].upstreams[0].targets[0].host",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["upstreams"][0]["targets"][0]["weight"] = json!(1001)
                }),
                Invalid,
                "gateways[0].upstreams[0].targets[0].weight",
            ),
            (
                Box::new(|v| v["gateways"][0]["upstreams"][0]["targets"][0]["weight"] = json!(0)),
                Invalid,
                "gateways[0].upstreams[0].targets[0].weight",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["upstreams"][0]["targets"][0]["headers"] =
                        json!({"X-Ok": "a", "Bad Name": "b"})
                }),
                Invalid,
                "gateways[0].upstreams[0].targets[0].headers.Bad Name",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["upstreams"][0]["targets"][0]["headers"] =
                        json!({"X-Evil": "a\r\nHost: x"})
                }),
                Invalid,
                "gateways[0].upstreams[0].targets[0].headers.X-Evil",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["upstreams"][0]["targets"][0]["credentials"] =
                        json!({"header_value": "x"})
                }),
                Invalid,
                "gateways[0].upstreams[0].targets[0].credentials.header_name",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["services"][1]["name"] = json!("chat");
                    v["gateways"][0]["rules"][1]["service"] = json!("chat");
                }),
                Conflict,
                "gateways[0].services[1].name",
            ),
            (
                Box::new(|v| v["gateways"][0]["services"][0]["host"] = json!("h")),
                Invalid,
                "gateways[0].services[0].host",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["services"][0]["upstream"] = serde_json::Value::Null;
                }),
                Invalid,
                "gateways[0].services[0].upstream_id",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["services"][0]["upstream"] = serde_json::Value::Null;
                    v["gateways"][0]["services"][0]["upstream_id"] = json!("missing-id");
                }),
                Invalid,
                "gateways[0].services[0].upstream_id",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["services"][1]
                        .as_object_mut()
                        .unwrap()
                        .remove("port");
                }),
                Invalid,
                "gateways[0].services[1].port",
            ),
            (
                Box::new(|v| v["gateways"][0]["services"][1]["upstream"] = json!("llm")),
                Invalid,
                "gateways[0].services[1].upstream_id",
            ),
            (
                Box::new(|v| v["gateways"][0]["rules"][1]["name"] = json!("openai")),
                Conflict,
                "gateways[0].rules[1].name",
            ),
            (
                Box::new(|v| v["gateways"][0]["rules"][1]["path"] = json!("v1")),
                Invalid,
                "gateways[0].rules[1].path",
            ),
            (
                Box::new(|v| v["gateways"][0]["rules"][1]["path"] = json!("/v1?x=1")),
                Invalid,
                "gateways[0].rules[1].path",
            ),
            (
                Box::new(|v| v["gateways"][0]["rules"][1]["path"] = json!("/v1/{mo-del}")),
                Invalid,
                "gateways[0].rules[1].path",
            ),
            (
                Box::new(|v| v["gateways"][0]["rules"][1]["methods"] = json!(["GET", "P OST"])),
                Invalid,
                "gateways[0].rules[1].methods[1]",
            ),
            (
                // Same path (trailing slash ignored), overlapping (any) method.
                Box::new(|v| v["gateways"][0]["rules"][1]["path"] = json!("/v1/")),
                Conflict,
                "gateways[0].rules[1].path",
            ),
            (
                // Param names do not make paths different.
                Box::new(|v| {
                    v["gateways"][0]["rules"][0]["path"] = json!("/v1/{a}/x");
                }),
                Conflict,
                "gateways[0].rules[1].path",
            ),
            (
                Box::new(|v| v["gateways"][0]["rules"][2]["active"] = json!(true)),
                Conflict,
                "gateways[0].rules[2].path",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["rules"][1]["service"] = serde_json::Value::Null;
                    v["gateways"][0]["rules"][1]["service_id"] = json!("not-a-service");
                }),
                Invalid,
                "gateways[0].rules[1].service_id",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["rules"][1]["headers"] = json!({"x-a": "b\n"});
                }),
                Invalid,
                "gateways[0].rules[1].headers.x-a",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["rules"][1]["plugin_chain"] =
                        json!([{"name": "rate_limiter", "settings": []}]);
                }),
                Invalid,
                "gateways[0].rules[1].plugin_chain[0].settings",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["keys"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "app2", "key_hash": DEMO_KEY_HASH}));
                }),
                Conflict,
                "gateways[0].keys[1].key_hash",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["keys"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "app2", "key_hash": DEMO_KEY_HASH.to_uppercase()}));
                }),
                Invalid,
                "gateways[0].keys[1].key_hash",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["keys"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "app2"}));
                }),
                Invalid,
                "gateways[0].keys[1].key",
            ),
            (
                Box::new(|v| v["gateways"][0]["keys"][0]["expires_at"] = json!("tomorrow")),
                Invalid,
                "gateways[0].keys[0].expires_at",
            ),
            (
                Box::new(|v| {
                    v["gateways"][0]["upstreams"][1]["id"] = json!("same");
                    v["gateways"][0]["upstreams"][0]["id"] = json!("same");
                }),
                Conflict,
                "gateways[0].upstreams[1].id",
            ),
            (
                Box::new(|v| {
                    v["gateways"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "b", "rules": [{"name": "r", "path": "/", "service": "chat"}]}));
                }),
                Invalid,
                "gateways[1].rules[0].service",
            ),
        ];
        for (i, (edit, kind, field)) in cases.into_iter().enumerate() {
            assert_eq!(refused(edit), (kind, field.to_string()), "case {i}");
        }
    }

    #[test]
    fn non_conflicting_rules_accepted() {
        let mut v = base();
        let rules = v["gateways"][0]["rules"].as_array_mut().unwrap();
        // Same path, disjoint methods.
        rules.push(json!({"name": "del", "path": "/v1", "methods": ["DELETE"], "service": "chat"}));
        // Same path and method, headers that cannot both match.
        rules.push(json!({"name": "ha", "path": "/h", "headers": {"x-m": "a"}, "service": "chat"}));
        rules.push(json!({"name": "hb", "path": "/h", "headers": {"X-M": "b"}, "service": "chat"}));
        // Param vs literal at the same place is fine.
        rules.push(json!({"name": "lit", "path": "/v1/gpt/x", "service": "chat"}));
        load_value(&v).unwrap();
        let mut v2 = v.clone();
        v2["gateways"][0]["rules"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "hc", "path": "/h", "service": "chat"}));
        let e = load_value(&v2).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(e.status(), 409);
    }

    #[test]
    fn error_status_and_body() {
        let e = ConfigError::invalid("bad", "gateways[0].name");
        assert_eq!(e.status(), 400);
        assert_eq!(e.to_string(), "gateways[0].name: bad");
        assert_eq!(
            e.to_json(),
            json!({"error": "bad", "field": "gateways[0].name"})
        );
        assert_eq!(ConfigError::not_found("x").status(), 404);
        assert_eq!(ConfigError::not_found("x").to_json(), json!({"error": "x"}));
    }

    #[test]
    fn rfc3339() {
        let t = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64());
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(t("2023-11-14T22:13:20Z"), Some(1_700_000_000.0));
        assert_eq!(t("2023-11-14T23:13:20+01:00"), Some(1_700_000_000.0));
        assert_eq!(t("2023-11-14t21:13:20.5-01:00"), Some(1_700_000_000.5));
        assert_eq!(t("2024-02-29T00:00:00Z"), Some(1_709_164_800.0));
        for bad in [
            "2023-02-29T00:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14",
            "2023-13-01T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0100",
            "x",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
        assert_eq!(parse_rfc3339(&format_rfc3339(now())), Some(now()));
    }

    #[test]
    fn key_hash_helpers() {
        assert_eq!(hash_key("rg-demo-key"), DEMO_KEY_HASH);
        let bytes = parse_key_hash(DEMO_KEY_HASH).unwrap();
        assert_eq!(bytes[0], 0xf0);
        assert_eq!(bytes[31], 0xe7);
        assert!(parse_key_hash(
            "sha256:F073569af640d3888f14b4626cdd5290d8ae3b505085eea4757e5d214728e6e7"
        )
        .is_none());
        assert!(parse_key_hash("md5:00").is_none());
    }
}
