//! Parsing, normalization and validation of whole configurations.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::keys::{hash_key, parse_key_hash};
use super::model::Config;
use super::{normalize, parse, validate, ConfigError, ErrorKind};
use crate::util::rfc3339::{format_rfc3339, parse_rfc3339};

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
        let (kind, f) = refused(|v| v["gateways"][0]["upstreams"][0]["health_checks"] = hc.clone());
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
    let snap = crate::config::compile::compile(&cfg, 1).unwrap();
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
    second["rules"] = json!([{"path": "/a", "service": "chat"}, {"path": "/b", "service": "chat"}]);
    v["gateways"].as_array_mut().unwrap().push(second);
    let cfg = load_value(&v).expect("accepted");
    let snap = crate::config::compile(&cfg, 1).unwrap();
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
            Box::new(|v| v["gateways"][0]["upstreams"][0]["targets"][0]["weight"] = json!(1001)),
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
                v["gateways"].as_array_mut().unwrap().push(
                    json!({"name": "b", "rules": [{"name": "r", "path": "/", "service": "chat"}]}),
                );
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
