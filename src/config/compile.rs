//! Compiles a normalized [`model::Config`](super::model::Config) into the
//! immutable [`Snapshot`] every shard holds, validation included: the one
//! fallible step of the apply pipeline (`admin/apply.rs`), so no snapshot is
//! ever built from a configuration that was not checked. It runs
//! `validate_model`, then parses plugin settings, once, into the form the
//! snapshot keeps; either failure is a [`ConfigError`] naming its field. A
//! host name that does not resolve gives `addr: None` (and a warning).

use std::collections::{BTreeMap, HashMap};

use std::time::{Duration, SystemTime};

use super::error::ConfigError;
use super::keys::parse_key_hash;
use super::model::{self, Config, Credentials, GatewayStatus, Protocol, ServiceType};
use super::snapshot::{
    ActiveCheck, Algorithm, ApiKey, BreakerSettings, Gateway, PassiveHealth, Rule, Service,
    ServiceKind, Snapshot, Target, Upstream,
};
use super::validate::validate_model;
use super::{normalize, parse};
use crate::plugin::List;
use crate::route::{RouteSpec, Router};
use crate::upstream::tls::{self, TlsClient, Trust};
use crate::util::fnv::fnv1a64;
use crate::util::rfc3339::parse_rfc3339;

/// `parse` + `normalize` + `validate_model`: a configuration file as
/// `serve --config` and `PUT /api/v1/config` take it. The apply pipeline
/// compiles it next, which checks the plugin settings.
pub fn load(json: &[u8], now: SystemTime) -> Result<Config, ConfigError> {
    let mut cfg = parse(json)?;
    normalize(&mut cfg, now)?;
    validate_model(&cfg)?;
    Ok(cfg)
}

/// A stable key for per-shard state: 64-bit FNV-1a of the entity's id.
pub fn stable_key(id: &str) -> u64 {
    fnv1a64(id.as_bytes())
}

/// Builds the snapshot of `cfg` (normalized and validated) as generation
/// `generation`. Resolves target host names (IP literals never touch DNS).
/// Validation included: fails on a configuration `validate_model` refuses
/// and on plugin settings that do not parse, naming the field.
pub fn compile(cfg: &Config, generation: u64) -> Result<Snapshot, ConfigError> {
    validate_model(cfg)?;
    super::unacted::log_new(cfg);
    let mut snap = Snapshot {
        generation,
        gateways: Vec::with_capacity(cfg.gateways.len()),
        keys: HashMap::new(),
        subdomains: HashMap::new(),
        prices: crate::cost::Prices::new(&cfg.prices),
    };
    for (gi, gw) in cfg.gateways.iter().enumerate() {
        let gateway = compile_gateway(gi, gw)?;
        if let Some(sd) = &gw.subdomain {
            snap.subdomains.insert(sd.to_ascii_lowercase(), gi);
        }
        for key in &gw.keys {
            let Some(hash) = key.key_hash.as_deref().and_then(parse_key_hash) else {
                log::warn!(
                    "gateway {:?}: key {:?} has no valid key_hash, skipped",
                    gw.name,
                    key.name
                );
                continue;
            };
            let policies = key.policies.as_ref().filter(|p| !p.is_empty()).map(|p| {
                p.iter()
                    .filter_map(|r| rule_index(&gw.rules, r))
                    .collect::<Vec<_>>()
            });
            snap.keys.insert(
                hash,
                ApiKey {
                    id: key.id.clone().unwrap_or_default(),
                    name: key.name.clone(),
                    gateway: gi,
                    active: key.active,
                    expires_at: key.expires_at.as_deref().and_then(parse_rfc3339),
                    policies,
                },
            );
        }
        snap.gateways.push(gateway);
    }
    snap.number_targets();
    Ok(snap)
}

/// A policy entry names a rule by id (or, unnormalized, by name).
fn rule_index(rules: &[model::Rule], r: &str) -> Option<usize> {
    rules
        .iter()
        .position(|x| x.id.as_deref() == Some(r))
        .or_else(|| rules.iter().position(|x| !x.name.is_empty() && x.name == r))
}

fn compile_gateway(gi: usize, gw: &model::Gateway) -> Result<Gateway, ConfigError> {
    let required = format!("gateways[{gi}].required_plugins");
    let required_scope = format!("{}.required_plugins", gw.id.as_deref().unwrap_or(&gw.name));
    if gw.rules.is_empty() {
        // No chain holds them yet; still checked.
        crate::plugin::validate(&gw.required_plugins, &required)?;
    }
    let upstreams: Vec<Upstream> = gw.upstreams.iter().map(compile_upstream).collect();
    let services: Vec<Service> = gw
        .services
        .iter()
        .map(|s| compile_service(s, &gw.upstreams))
        .collect();
    let mut rules = Vec::with_capacity(gw.rules.len());
    let mut specs = Vec::with_capacity(gw.rules.len());
    for (ri, r) in gw.rules.iter().enumerate() {
        let service = gw.services.iter().position(|s| {
            (r.service_id.is_some() && s.id == r.service_id)
                || (r.service_id.is_none() && r.service.as_deref() == Some(s.name.as_str()))
        });
        if service.is_none() {
            log::error!(
                "gateway {:?}: rule {:?} has no service, not routable",
                gw.name,
                r.name
            );
        }
        specs.push(match (r.active, service) {
            (true, Some(_)) => Some(RouteSpec {
                path: r.path.clone(),
                methods: r.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
                headers: r
                    .headers
                    .iter()
                    .flatten()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                    .collect(),
            }),
            _ => None,
        });
        rules.push(Rule {
            id: r.id.clone().unwrap_or_default(),
            key: stable_key(r.id.as_deref().unwrap_or_default()),
            // A rule without a name is labelled (metrics, logs) by its path.
            name: if r.name.is_empty() {
                r.path.clone()
            } else {
                r.name.clone()
            },
            path: r.path.clone(),
            service: service.unwrap_or(usize::MAX),
            strip_path: r.strip_path,
            preserve_host: r.preserve_host,
            retry_attempts: r.retry_attempts,
            public: r.public,
            fallback: super::fallback::compile(&r.fallbacks, &r.model_aliases, &gw.upstreams),
            plugins: crate::plugin::chain(
                List {
                    plugins: &gw.required_plugins,
                    field: &required,
                    scope: &required_scope,
                },
                List {
                    plugins: &r.plugin_chain,
                    field: &format!("gateways[{gi}].rules[{ri}].plugin_chain"),
                    scope: &format!("{}.plugin_chain", r.id.as_deref().unwrap_or(&r.name)),
                },
            )?,
        });
    }
    Ok(Gateway {
        id: gw.id.clone().unwrap_or_default(),
        key: stable_key(gw.id.as_deref().unwrap_or_default()),
        name: gw.name.clone(),
        active: gw.status == GatewayStatus::Active,
        router: Router::new(specs),
        rules,
        services,
        upstreams,
    })
}

fn compile_upstream(u: &model::Upstream) -> Upstream {
    let id = u.id.clone().unwrap_or_default();
    Upstream {
        key: stable_key(&id),
        id,
        name: u.name.clone(),
        algorithm: match u.algorithm {
            model::Algorithm::RoundRobin => Algorithm::RoundRobin,
            model::Algorithm::WeightedRoundRobin => Algorithm::WeightedRoundRobin,
            model::Algorithm::LeastConnections => Algorithm::LeastConnections,
            model::Algorithm::Random => Algorithm::Random,
        },
        targets: u
            .targets
            .iter()
            .map(|t| {
                // A provider target without host: its public endpoint
                // (validation made sure there is one).
                let public = if t.host.is_empty() {
                    crate::provider::endpoint::public(t)
                        .map_err(|e| log::error!("target {:?}: {e}", t.id))
                        .ok()
                } else {
                    None
                };
                let (host, port, protocol) = match &public {
                    Some(p) => (p.host.as_str(), p.port, p.protocol),
                    None => (t.host.as_str(), t.port, t.protocol),
                };
                let mut built = build_target(TargetParts {
                    id: t.id.as_deref().unwrap_or_default(),
                    host,
                    port,
                    protocol,
                    weight: t.weight,
                    path: t.path.as_deref(),
                    provider: t.provider.as_deref(),
                    headers: t.headers.as_ref(),
                    credentials: t.credentials.as_ref(),
                    models: t.models.as_deref().unwrap_or_default(),
                    default_model: t.default_model.as_deref(),
                    insecure_ssl: t.insecure_ssl.unwrap_or(false),
                    ca_pem: t.ca_pem.as_deref(),
                    ca_file: t.ca_file.as_deref(),
                });
                built.sse_ping = t.sse_ping_secs.map(std::time::Duration::from_secs);
                built.azure = crate::provider::azure::Azure::of(t);
                built
            })
            .collect(),
        passive_health: u
            .health_checks
            .as_ref()
            .filter(|h| h.passive)
            .map(|h| PassiveHealth {
                threshold: h.threshold.max(1),
                interval_secs: h.interval.max(1),
            }),
        active_check: u.health_checks.as_ref().and_then(active_check),
        breaker: u
            .health_checks
            .as_ref()
            .and_then(|h| h.circuit_breaker.as_ref())
            .map(|b| BreakerSettings {
                failure_ratio: b.failure_ratio,
                window: b.window.clamp(1, 64),
                min_requests: b.min_requests.unwrap_or(10).clamp(1, b.window.clamp(1, 64)),
                cooldown: Duration::from_secs(b.cooldown.max(1)),
            }),
    }
}

fn active_check(h: &model::HealthChecks) -> Option<ActiveCheck> {
    let path = h.path.clone()?;
    let interval = Duration::from_secs(h.interval.max(1));
    Some(ActiveCheck {
        path,
        interval,
        // A probe never outlives its interval.
        timeout: Duration::from_secs(h.timeout.unwrap_or(5).max(1)).min(interval),
        threshold: h.threshold.max(1),
    })
}

fn compile_service(s: &model::Service, upstreams: &[model::Upstream]) -> Service {
    let id = s.id.clone().unwrap_or_default();
    let (kind, (inject, inject_names)) = match s.kind {
        ServiceType::Upstream => {
            let index = upstreams
                .iter()
                .position(|u| {
                    (s.upstream_id.is_some() && u.id == s.upstream_id)
                        || (s.upstream_id.is_none()
                            && s.upstream.as_deref() == Some(u.name.as_str()))
                })
                .unwrap_or_else(|| {
                    log::error!("service {:?} has no upstream", s.name);
                    usize::MAX
                });
            (
                ServiceKind::Upstream(index),
                render(None, s.headers.as_ref(), s.credentials.as_ref()),
            )
        }
        ServiceType::Endpoint => {
            let protocol = s.protocol.unwrap_or_default();
            let target = build_target(TargetParts {
                id: &id,
                host: s.host.as_deref().unwrap_or_default(),
                port: s.port.unwrap_or(protocol.default_port()),
                protocol,
                weight: 1,
                path: s.path.as_deref(),
                provider: None,
                headers: s.headers.as_ref(),
                credentials: s.credentials.as_ref(),
                models: &[],
                default_model: None,
                insecure_ssl: false,
                ca_pem: None,
                ca_file: None,
            });
            // The endpoint's own headers and credentials are on its target.
            (ServiceKind::Endpoint(target), (Vec::new(), Vec::new()))
        }
    };
    Service {
        id,
        name: s.name.clone(),
        kind,
        inject,
        inject_names,
    }
}

struct TargetParts<'a> {
    id: &'a str,
    host: &'a str,
    port: u16,
    protocol: Protocol,
    weight: u32,
    path: Option<&'a str>,
    provider: Option<&'a str>,
    headers: Option<&'a BTreeMap<String, String>>,
    credentials: Option<&'a Credentials>,
    models: &'a [String],
    default_model: Option<&'a str>,
    insecure_ssl: bool,
    ca_pem: Option<&'a str>,
    ca_file: Option<&'a str>,
}

/// The TLS side of an `https` target; `None` (logged) when its CA cannot be
/// read or its host is no valid server name: requests to it then get 502.
fn tls_client(p: &TargetParts<'_>) -> Option<TlsClient> {
    let trust = if p.insecure_ssl {
        log::warn!(
            "target {}:{} has insecure_ssl: its certificate is NOT verified",
            p.host,
            p.port
        );
        Trust::Insecure
    } else if let Some(pem) = p.ca_pem {
        Trust::Custom(pem.to_string())
    } else if let Some(file) = p.ca_file {
        match std::fs::read_to_string(file) {
            Ok(pem) => Trust::Custom(pem),
            Err(e) => {
                log::error!(
                    "target {}:{}: cannot read ca_file {file:?}: {e}",
                    p.host,
                    p.port
                );
                return None;
            }
        }
    } else {
        Trust::Public
    };
    // Connections to the same address share a pool only with the same name
    // and trust; never 0 (plain TCP's key).
    let id = fnv1a64(format!("{}\0{trust:?}", p.host).as_bytes()).max(1);
    let built = tls::client_config(&trust).and_then(|config| {
        Ok(TlsClient {
            config,
            server_name: tls::server_name(p.host)?,
            id,
        })
    });
    match built {
        Ok(c) => Some(c),
        Err(e) => {
            log::error!("target {}:{}: TLS unusable: {e}", p.host, p.port);
            None
        }
    }
}

fn build_target(p: TargetParts<'_>) -> Target {
    let (inject, mut inject_names) = render(p.provider, p.headers, p.credentials);
    if p.credentials.is_some() {
        // Whatever credential the client sent never reaches a provider the
        // gateway authenticates to itself.
        for name in CLIENT_CREDENTIAL_HEADERS {
            if !inject_names.iter().any(|n| n == name) {
                inject_names.push(name.to_string());
            }
        }
    }
    // An IPv6 literal is bracketed in the Host header.
    let bare = p.host.trim_start_matches('[').trim_end_matches(']');
    let host_for_header = if bare.contains(':') {
        format!("[{bare}]")
    } else {
        p.host.to_string()
    };
    let authority = if p.port == p.protocol.default_port() {
        host_for_header
    } else {
        format!("{host_for_header}:{}", p.port)
    };
    Target {
        id: p.id.to_string(),
        key: stable_key(p.id),
        slot: 0,
        host: p.host.to_string(),
        port: p.port,
        tls: p.protocol == Protocol::Https,
        tls_client: if p.protocol == Protocol::Https {
            tls_client(&p)
        } else {
            None
        },
        addr: crate::upstream::pool::resolve(p.host, p.port),
        authority,
        path: p.path.unwrap_or("").trim_end_matches('/').to_string(),
        weight: p.weight,
        provider: p.provider.map(str::to_string),
        format: crate::provider::Format::of(p.provider),
        models: p.models.to_vec(),
        default_model: p.default_model.map(str::to_string),
        inject,
        inject_names,
        sse_ping: None,
        azure: None,
        query: p.credentials.and_then(query_credential),
    }
}

/// A credential sent as a query parameter (`param_name`/`param_value`,
/// `param_location` absent or `query`), as `name=value`.
fn query_credential(c: &Credentials) -> Option<String> {
    let (Some(name), Some(value)) = (&c.param_name, &c.param_value) else {
        return None;
    };
    if c.param_location.as_deref().is_some_and(|l| l != "query") {
        return None;
    }
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    Some(format!("{}={}", enc(name), enc(value)))
}

/// Client headers that carry a provider credential: dropped on the way to a
/// target that has `credentials` of its own.
const CLIENT_CREDENTIAL_HEADERS: [&str; 4] =
    ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// The header lines a target or service injects: its `headers` first, then
/// its credentials rendered for the provider. A line whose name is already
/// present is left out (configured headers win).
///
/// Credentials: with `api_key`, provider `anthropic` gives `x-api-key` and
/// `anthropic-version: 2023-06-01`; provider `azure` gives `api-key` (never
/// `Authorization`); a `header_name` gives
/// `header_name: header_value` (or the `api_key` as the value); otherwise
/// (provider `openai`, no provider, any OpenAI-compatible provider)
/// `Authorization: Bearer <api_key>`. Without `api_key`, `header_name:
/// header_value`.
pub fn render(
    provider: Option<&str>,
    headers: Option<&BTreeMap<String, String>>,
    credentials: Option<&Credentials>,
) -> (Vec<u8>, Vec<String>) {
    let mut lines: Vec<(String, String)> = headers
        .into_iter()
        .flatten()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    if let Some(c) = credentials {
        let provider = provider.map(str::to_ascii_lowercase);
        match (&c.api_key, &c.header_name) {
            (Some(key), _) if provider.as_deref() == Some("anthropic") => {
                lines.push(("x-api-key".into(), key.clone()));
                lines.push(("anthropic-version".into(), "2023-06-01".into()));
                if let (Some(n), Some(v)) = (&c.header_name, &c.header_value) {
                    lines.push((n.clone(), v.clone()));
                }
            }
            (Some(key), _) if provider.as_deref() == Some("azure") => {
                lines.push(("api-key".into(), key.clone()));
                if let (Some(n), Some(v)) = (&c.header_name, &c.header_value) {
                    lines.push((n.clone(), v.clone()));
                }
            }
            (Some(key), Some(name)) if provider.as_deref() != Some("openai") => {
                lines.push((name.clone(), c.header_value.clone().unwrap_or(key.clone())));
            }
            (Some(key), name) => {
                lines.push(("Authorization".into(), format!("Bearer {key}")));
                if let (Some(n), Some(v)) = (name, &c.header_value) {
                    lines.push((n.clone(), v.clone()));
                }
            }
            (None, Some(name)) => {
                if let Some(v) = &c.header_value {
                    lines.push((name.clone(), v.clone()));
                }
            }
            (None, None) => {}
        }
    }
    let mut inject = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (name, value) in lines {
        let lower = name.to_ascii_lowercase();
        if names.contains(&lower) {
            continue;
        }
        inject.extend_from_slice(name.as_bytes());
        inject.extend_from_slice(b": ");
        inject.extend_from_slice(value.as_bytes());
        inject.extend_from_slice(b"\r\n");
        names.push(lower);
    }
    (inject, names)
}

/// A stored configuration document (the state file's body, or the document
/// in Redis), parsed and validated like `PUT /api/v1/config` (and, like it,
/// compiled next by the apply pipeline).
pub fn parse_state(body: &[u8]) -> Result<Config, String> {
    let config = parse(body).map_err(|e| format!("stored state does not parse: {e}"))?;
    validate_model(&config).map_err(|e| format!("stored state is invalid: {e}"))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::hash_key;
    use serde_json::json;
    use sha2::{Digest, Sha256};
    use std::time::{Duration, UNIX_EPOCH};

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// TrustGate's provider targets (no host, no port) compile to their
    /// provider's public HTTPS endpoint.
    /// Nothing unchecked is compiled: a configuration validation refuses,
    /// or one with plugin settings that do not parse, fails with the field.
    #[test]
    fn compile_validates_and_parses_plugin_settings_once() {
        let doc = |upstreams: serde_json::Value, chain: serde_json::Value| {
            let v = json!({"gateways": [{"name": "g", "upstreams": upstreams,
                "services": [{"name": "s", "type": "upstream", "upstream": "u"}],
                "rules": [{"name": "r", "path": "/", "service": "s", "plugin_chain": chain}]}]});
            let mut cfg = parse(v.to_string().as_bytes()).unwrap();
            normalize(&mut cfg, now()).unwrap();
            cfg
        };
        let u = json!({"name": "u", "targets": [{"host": "127.0.0.1", "port": 9}]});
        let twice = doc(json!([u, u]), json!([]));
        let e = compile(&twice, 1).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("gateways[0].upstreams[1].name"));
        let bad = json!([{"name": "rate_limiter", "settings": {"limits": {"global": {"limit": 0, "window": "1m"}}}}]);
        let e = compile(&doc(json!([u]), bad), 1).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("gateways[0].rules[0].plugin_chain[0].settings.limits.global.limit")
        );
        let good = json!([{"name": "rate_limiter", "settings": {"limits": {"global": {"limit": 5, "window": "1m"}}}}]);
        let snap = compile(&doc(json!([u]), good), 1).unwrap();
        assert_eq!(snap.gateways[0].rules[0].plugins.plugins.len(), 1);
    }

    #[test]
    fn provider_targets_without_host_compile_to_the_public_endpoint() {
        let cfg = load_value(
            json!({"gateways": [{"name": "g", "upstreams": [{"name": "u", "targets": [
                {"provider": "openai", "models": ["gpt-4o"], "default_model": "gpt-4o",
                 "credentials": {"header_name": "Authorization", "header_value": "Bearer sk-x"}},
                {"provider": "anthropic", "models": ["claude"], "default_model": "claude",
                 "credentials": {"api_key": "sk-ant"}},
                {"provider": "mistral", "credentials": {"api_key": "mk"}},
                {"provider": "azure", "credentials": {"api_key": "ak",
                 "azure_endpoint": "https://res.openai.azure.com", "azure_version": "2024-06-01"}}
            ]}]}]}),
        );
        let snap = compile(&cfg, 1).unwrap();
        let ts = &snap.gateways[0].upstreams[0].targets;
        let got: Vec<(&str, u16, bool, &str)> = ts
            .iter()
            .map(|t| (t.host.as_str(), t.port, t.tls, t.authority.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("api.openai.com", 443, true, "api.openai.com"),
                ("api.anthropic.com", 443, true, "api.anthropic.com"),
                ("api.mistral.ai", 443, true, "api.mistral.ai"),
                ("res.openai.azure.com", 443, true, "res.openai.azure.com"),
            ]
        );
        assert!(ts.iter().all(|t| t.tls_client.is_some()), "webpki roots");
        let inject = |i: usize| String::from_utf8(ts[i].inject.clone()).unwrap();
        assert!(inject(0).contains("Authorization: Bearer sk-x"));
        assert!(inject(1).contains("x-api-key: sk-ant"));
        assert!(inject(2).contains("Authorization: Bearer mk"));
        assert!(inject(3).contains("api-key: ak"));
        assert_eq!(ts[3].azure.as_ref().unwrap().api_version, "2024-06-01");
        // Stored as given: no host or port appears in the export.
        let t0 = serde_json::to_value(&cfg.gateways[0].upstreams[0].targets[0]).unwrap();
        assert!(t0.get("host").is_none() && t0.get("port").is_none(), "{t0}");
        // Without a known public endpoint the target needs a host; a port
        // without a host is refused.
        let refused = |t: serde_json::Value| {
            let doc =
                json!({"gateways": [{"name": "g", "upstreams": [{"name": "u", "targets": [t]}]}]});
            crate::config::load(doc.to_string().as_bytes(), now())
                .unwrap_err()
                .field
                .unwrap_or_default()
        };
        let at = "gateways[0].upstreams[0].targets[0]";
        assert_eq!(
            refused(json!({"provider": "bedrock", "credentials": {"api_key": "k"}})),
            format!("{at}.host")
        );
        assert_eq!(
            refused(json!({"provider": "openai", "port": 443})),
            format!("{at}.port")
        );
    }

    fn load_value(v: serde_json::Value) -> Config {
        load(v.to_string().as_bytes(), now()).unwrap()
    }

    fn creds(provider: Option<&str>, headers: serde_json::Value, c: serde_json::Value) -> String {
        let headers: Option<BTreeMap<String, String>> = serde_json::from_value(headers).unwrap();
        let c: Option<Credentials> = serde_json::from_value(c).unwrap();
        let (inject, names) = render(provider, headers.as_ref(), c.as_ref());
        let text = String::from_utf8(inject).unwrap();
        let from_lines: Vec<String> = text
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(|l| l.split(':').next().unwrap().to_ascii_lowercase())
            .collect();
        assert_eq!(names, from_lines, "inject_names out of step with inject");
        text
    }

    #[test]
    fn credentials_per_provider() {
        let k = json!({"api_key": "sk-1"});
        assert_eq!(
            creds(Some("openai"), json!(null), k.clone()),
            "Authorization: Bearer sk-1\r\n"
        );
        assert_eq!(
            creds(None, json!(null), k.clone()),
            "Authorization: Bearer sk-1\r\n"
        );
        assert_eq!(
            creds(Some("groq"), json!(null), k.clone()),
            "Authorization: Bearer sk-1\r\n"
        );
        assert_eq!(
            creds(Some("Anthropic"), json!(null), k.clone()),
            "x-api-key: sk-1\r\nanthropic-version: 2023-06-01\r\n"
        );
        assert_eq!(
            creds(
                Some("anthropic"),
                json!({"Anthropic-Version": "2024-01-01"}),
                k.clone()
            ),
            "Anthropic-Version: 2024-01-01\r\nx-api-key: sk-1\r\n"
        );
        assert_eq!(
            creds(
                Some("azure"),
                json!(null),
                json!({"header_name": "api-key", "header_value": "az"})
            ),
            "api-key: az\r\n"
        );
        assert_eq!(
            creds(Some("Azure"), json!(null), k.clone()),
            "api-key: sk-1\r\n"
        );
        assert_eq!(
            creds(Some("mistral"), json!(null), k.clone()),
            "Authorization: Bearer sk-1\r\n"
        );
        assert_eq!(
            creds(
                Some("gemini"),
                json!(null),
                json!({"api_key": "g", "header_name": "x-goog-api-key"})
            ),
            "x-goog-api-key: g\r\n"
        );
        assert_eq!(
            creds(None, json!({"X-A": "1", "x-b": "2"}), json!(null)),
            "X-A: 1\r\nx-b: 2\r\n"
        );
        assert_eq!(
            creds(Some("openai"), json!({"OpenAI-Organization": "org"}), k),
            "OpenAI-Organization: org\r\nAuthorization: Bearer sk-1\r\n"
        );
        assert_eq!(creds(None, json!(null), json!(null)), "");
    }

    fn demo() -> serde_json::Value {
        json!({"gateways": [{
            "name": "demo", "subdomain": "Demo",
            "upstreams": [{"name": "llm", "algorithm": "least-connections",
                           "health_checks": {"passive": true, "threshold": 2, "interval": 7},
                           "targets": [
                {"host": "127.0.0.1", "port": 9000},
                {"host": "::1", "port": 443, "protocol": "https", "path": "/api/", "weight": 5,
                 "provider": "anthropic", "credentials": {"api_key": "sk-ant"}},
                {"host": "localhost", "port": 80, "path": "/"}]}],
            "services": [{"name": "chat", "type": "upstream", "upstream": "llm",
                          "headers": {"X-Svc": "1"}},
                         {"name": "ep", "type": "endpoint", "host": "10.1.2.3", "port": 8443,
                          "protocol": "https", "path": "/base/", "credentials": {"api_key": "sk-ep"}}],
            "rules": [{"name": "r0", "path": "/v1", "service": "chat", "strip_path": true},
                      {"name": "r1", "path": "/v1/chat", "service": "ep", "active": false},
                      {"name": "r2", "path": "/v2/{m}", "methods": ["post"], "service": "ep",
                       "headers": {"X-Tier": "pro"}, "public": true}],
            "keys": [{"name": "app", "key": "rg-demo-key", "policies": ["r0", "r2"]},
                     {"name": "all", "key": "other", "active": false,
                      "expires_at": "2023-11-14T22:13:20Z"}]
        }, {"name": "second", "status": "inactive", "subdomain": "two"}]})
    }

    #[test]
    fn compiles_every_field() {
        let cfg = load_value(demo());
        let snap = compile(&cfg, 7).unwrap();
        assert_eq!(snap.generation, 7);
        assert_eq!(snap.gateways.len(), 2);
        assert_eq!(snap.subdomains.get("demo"), Some(&0));
        assert_eq!(snap.subdomains.get("two"), Some(&1));
        assert_eq!(snap.subdomains.get("Demo"), None);
        let gw = &snap.gateways[0];
        assert!(gw.active);
        assert!(!snap.gateways[1].active);
        assert_eq!(gw.id, cfg.gateways[0].id.clone().unwrap());

        let up = &gw.upstreams[0];
        assert_eq!(up.algorithm, Algorithm::LeastConnections);
        assert_eq!(
            up.key,
            stable_key(cfg.gateways[0].upstreams[0].id.as_deref().unwrap())
        );
        let ph = up.passive_health.unwrap();
        assert_eq!((ph.threshold, ph.interval_secs), (2, 7));
        let t0 = &up.targets[0];
        assert_eq!(t0.addr, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(t0.authority, "127.0.0.1:9000");
        assert_eq!(t0.path, "");
        assert!(!t0.tls);
        assert_eq!(t0.weight, 1);
        assert!(t0.inject.is_empty());
        let t1 = &up.targets[1];
        assert!(t1.tls);
        assert_eq!(t1.addr, Some("[::1]:443".parse().unwrap()));
        assert_eq!(t1.authority, "[::1]");
        assert_eq!(t1.path, "/api");
        assert_eq!(t1.weight, 5);
        assert_eq!(t1.provider.as_deref(), Some("anthropic"));
        assert_eq!(
            t1.inject,
            b"x-api-key: sk-ant\r\nanthropic-version: 2023-06-01\r\n"
        );
        assert_eq!(
            t1.inject_names,
            [
                "x-api-key",
                "anthropic-version",
                "authorization",
                "api-key",
                "x-goog-api-key"
            ]
        );
        let t2 = &up.targets[2];
        assert_eq!(t2.authority, "localhost");
        assert_eq!(t2.path, "");
        assert_ne!(t0.key, t1.key);

        assert!(matches!(gw.services[0].kind, ServiceKind::Upstream(0)));
        assert_eq!(gw.services[0].inject, b"X-Svc: 1\r\n");
        assert_eq!(gw.services[0].inject_names, ["x-svc"]);
        match &gw.services[1].kind {
            ServiceKind::Endpoint(t) => {
                assert_eq!(t.addr, Some("10.1.2.3:8443".parse().unwrap()));
                assert_eq!(t.authority, "10.1.2.3:8443");
                assert_eq!(t.path, "/base");
                assert!(t.tls);
                assert_eq!(t.inject, b"Authorization: Bearer sk-ep\r\n");
                assert_eq!(t.id, gw.services[1].id);
            }
            other => panic!("{other:?}"),
        }
        assert!(gw.services[1].inject.is_empty());

        assert_eq!(gw.rules.len(), 3);
        assert_eq!(gw.rules[1].service, 1);
        assert!(gw.rules[0].strip_path);
        assert!(gw.rules[2].public);
        assert_eq!(gw.router.len(), 3);
        let m = gw.router.find(b"GET", b"/v1/chat/x", &|_| None).unwrap();
        assert_eq!(
            (m.rule, m.matched_len),
            (0, 3),
            "inactive r1 must not route"
        );
        assert!(gw.router.find(b"POST", b"/v2/gpt", &|_| None).is_none());
        assert_eq!(
            gw.router
                .find(b"POST", b"/v2/gpt", &|n| (n == "x-tier")
                    .then_some(b"pro".as_slice()))
                .unwrap()
                .rule,
            2
        );
        assert!(
            gw.router
                .find(b"GET", b"/v2/gpt", &|n| (n == "x-tier")
                    .then_some(b"pro".as_slice()))
                .is_none(),
            "methods upper-cased"
        );

        // Keys by sha256 of the plaintext.
        let digest: [u8; 32] = Sha256::digest(b"rg-demo-key").into();
        let k = &snap.keys[&digest];
        assert_eq!(k.name, "app");
        assert_eq!(k.gateway, 0);
        assert!(k.active);
        assert_eq!(k.expires_at, None);
        assert_eq!(k.policies.as_deref(), Some(&[0usize, 2][..]));
        let digest: [u8; 32] = Sha256::digest(b"other").into();
        let k = &snap.keys[&digest];
        assert!(!k.active);
        assert_eq!(k.policies, None);
        assert_eq!(k.expires_at, Some(now()));
        assert_eq!(snap.keys.len(), 2);
        assert_eq!(hash_key("other").len(), 71);

        // Stable keys across compiles.
        let again = compile(&cfg, 8).unwrap();
        assert_eq!(again.gateways[0].upstreams[0].key, up.key);
        assert_eq!(again.gateways[0].upstreams[0].targets[1].key, t1.key);
    }

    #[test]
    fn unresolvable_host_compiles() {
        let mut v = demo();
        v["gateways"][0]["upstreams"][0]["targets"][2]["host"] = json!("no-such-host.invalid");
        let snap = compile(&load_value(v), 1).unwrap();
        assert_eq!(snap.gateways[0].upstreams[0].targets[2].addr, None);
    }

    #[test]
    fn stable_key_is_fixed() {
        // FNV-1a 64 test vectors: a change here resets every shard's state.
        assert_eq!(stable_key(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_key("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn demo_example_loads() {
        let json =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo.json")).unwrap();
        let cfg = load(&json, now()).unwrap();
        let snap = compile(&cfg, 1).unwrap();
        assert_eq!(snap.subdomains.get("demo"), Some(&0));
        let gw = &snap.gateways[0];
        assert_eq!(
            gw.upstreams[0].targets[0].addr,
            Some("127.0.0.1:9000".parse().unwrap())
        );
        let digest: [u8; 32] = Sha256::digest(b"rg-demo-key").into();
        assert_eq!(snap.keys[&digest].gateway, 0);
        assert_eq!(
            gw.router
                .find(b"POST", b"/v1/chat/completions", &|_| None)
                .unwrap()
                .rule,
            0
        );
        assert!(gw.router.find(b"DELETE", b"/v1", &|_| None).is_none());
    }
}
