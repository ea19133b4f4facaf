//! What the server fills in before validation: ids, timestamps, name
//! references resolved to ids, key hashes.

use std::time::SystemTime;

use super::error::ConfigError;
use super::keys::hash_key;
use super::model::Config;
use crate::util::rfc3339::format_rfc3339;

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
