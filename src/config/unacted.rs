//! TrustGate fields ringgate accepts, stores and returns but does not act
//! on (the README's compatibility table lists them). Each is logged once
//! per process, at info, the first time a configuration sets it, so an
//! operator migrating a TrustGate setup learns what has no effect here.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::config::model::{Config, Credentials, Plugin};

static LOGGED: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);

/// The unacted fields `cfg` sets, as `entity.field` names.
pub fn set_in(cfg: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut note = |set: bool, name: &'static str| {
        if set && !out.contains(&name) {
            out.push(name);
        }
    };
    let plugins = |list: &[Plugin], note: &mut dyn FnMut(bool, &'static str)| {
        for p in list {
            note(p.id.is_some(), "plugin.id");
            note(p.level.is_some(), "plugin.level");
            note(p.parallel == Some(true), "plugin.parallel");
        }
    };
    for gw in &cfg.gateways {
        note(gw.telemetry.is_some(), "gateway.telemetry");
        note(gw.security_config.is_some(), "gateway.security_config");
        note(gw.client_tls.is_some(), "gateway.client_tls");
        note(gw.session_config.is_some(), "gateway.session_config");
        note(gw.tier.is_some(), "gateway.tier");
        note(gw.enabled_plugins.is_some(), "gateway.enabled_plugins");
        plugins(&gw.required_plugins, &mut note);
        for up in &gw.upstreams {
            note(up.tags.is_some(), "upstream.tags");
            note(up.embedding.is_some(), "upstream.embedding");
            note(up.websocket_config.is_some(), "upstream.websocket_config");
            note(up.proxy_config.is_some(), "upstream.proxy_config");
            for t in &up.targets {
                note(t.priority.is_some(), "target.priority");
                note(t.tags.is_some(), "target.tags");
                note(t.description.is_some(), "target.description");
                note(t.provider_options.is_some(), "target.provider_options");
                note(t.auth.is_some(), "target.auth");
                note(t.stream.is_some(), "target.stream");
                if let Some(c) = &t.credentials {
                    cloud_identity(c, &mut note);
                }
            }
        }
        for s in &gw.services {
            note(s.tags.is_some(), "service.tags");
            note(s.retries.is_some(), "service.retries");
            note(s.stream.is_some(), "service.stream");
            if let Some(c) = &s.credentials {
                cloud_identity(c, &mut note);
            }
        }
        for r in &gw.rules {
            note(r.kind.is_some(), "rule.type");
            note(r.trustlens.is_some(), "rule.trustlens");
            plugins(&r.plugin_chain, &mut note);
        }
        for k in &gw.keys {
            note(k.subject_type.is_some(), "key.subject_type");
            note(k.subject.is_some(), "key.subject");
        }
    }
    out
}

fn cloud_identity(c: &Credentials, note: &mut dyn FnMut(bool, &'static str)) {
    let azure = c.azure_use_managed_identity.is_some()
        || c.azure_client_id.is_some()
        || c.azure_client_secret.is_some()
        || c.azure_tenant_id.is_some();
    note(
        azure,
        "credentials.azure_* (managed identity, client id/secret, tenant)",
    );
    let gcp = c.gcp_use_service_account.is_some() || c.gcp_service_account_json.is_some();
    note(gcp, "credentials.gcp_*");
    let aws = c.aws_access_key_id.is_some()
        || c.aws_secret_access_key.is_some()
        || c.aws_region.is_some()
        || c.aws_session_token.is_some()
        || c.aws_role.is_some()
        || c.aws_use_role.is_some();
    note(aws, "credentials.aws_*");
    note(c.allow_override.is_some(), "credentials.allow_override");
    note(
        c.param_location.as_deref() == Some("body"),
        "credentials.param_location \"body\" (query parameters are sent)",
    );
}

/// Logs (info) each unacted field `cfg` sets that was not logged before.
pub fn log_new(cfg: &Config) {
    let fields = set_in(cfg);
    if fields.is_empty() {
        return;
    }
    let Ok(mut logged) = LOGGED.lock() else {
        return;
    };
    let logged = logged.get_or_insert_with(HashSet::new);
    for f in fields {
        if logged.insert(f) {
            log::info!(
                "TrustGate field {f} is stored and returned, but ringgate does not act on it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_a_trustgate_configuration_sets() {
        let cfg: Config = serde_json::from_value(serde_json::json!({"gateways": [{
            "name": "g", "telemetry": {"exporters": []},
            "upstreams": [{"name": "u", "targets": [{"host": "h", "port": 1, "priority": 1,
                "credentials": {"aws_region": "eu-west-1"}}]}],
            "rules": [{"path": "/x", "plugin_chain": [{"name": "cors", "parallel": true, "settings": {}}]}]
        }]}))
        .unwrap();
        assert_eq!(
            set_in(&cfg),
            [
                "gateway.telemetry",
                "target.priority",
                "credentials.aws_*",
                "plugin.parallel"
            ]
        );
        assert!(set_in(&Config::default()).is_empty());
    }
}
