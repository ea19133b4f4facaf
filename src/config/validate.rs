//! Validation of a [`Config`]: everything a configuration must satisfy
//! before it is compiled.
//!
//! Every error names the offending field as a JSON path such as
//! `gateways[0].rules[2].service`; the first error found, in document
//! order, is returned.

use std::collections::{HashMap, HashSet};

use super::error::ConfigError;
use super::keys::{hash_key, parse_key_hash};
use super::model::{Config, Credentials, Gateway, HealthChecks, Plugin, ServiceType, Target};
use crate::http::headers::is_token;
use crate::route::{parse_rule_path, Segment};
use crate::util::rfc3339::parse_rfc3339;

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

/// A list of plugins: names and settings objects; with `parse`, their
/// settings too (parsed and dropped: `compile` parses them for the snapshot).
fn check_plugins(plugins: &[Plugin], field: &str, parse: bool) -> Result<(), ConfigError> {
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
    if parse {
        crate::plugin::validate(plugins, field)?;
    }
    Ok(())
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

/// Checks everything a configuration must satisfy, plugin settings
/// included. Expects a [`normalize`]d configuration, though references by
/// name are accepted.
pub fn validate(cfg: &Config) -> Result<(), ConfigError> {
    validate_with(cfg, true)
}

/// [`validate`] but for parsing plugin settings (their names and shape are
/// checked): what the apply pipeline runs, since `compile` parses the
/// settings once into the form the snapshot keeps and fails on a bad one.
pub fn validate_model(cfg: &Config) -> Result<(), ConfigError> {
    validate_with(cfg, false)
}

fn validate_with(cfg: &Config, plugins: bool) -> Result<(), ConfigError> {
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
        check_plugins(
            &gw.required_plugins,
            &format!("{gp}.required_plugins"),
            plugins,
        )?;

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
            check_plugins(&rule.plugin_chain, &format!("{rp}.plugin_chain"), plugins)?;
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
