//! HTTPS upstreams: verification against a test CA, SNI/name checks,
//! insecure_ssl, pooled TLS connections, session resumption, credentials.

use crate::common;
use crate::common::tls;

use std::sync::atomic::Ordering;

use common::{header, json_body, post, roundtrip, spawn_gateway};
use serde_json::json;
use tls::{make_pki, spawn_tls_server};

const KEY: &str = "rg-tls-key";

fn gateway_for(targets: serde_json::Value) -> common::Gateway {
    let config = json!({"gateways": [{
        "name": "tls",
        "upstreams": [{"name": "llm", "targets": targets}],
        "services": [{"name": "svc", "type": "upstream", "upstream": "llm"}],
        "rules": [{"name": "all", "path": "/v1", "service": "svc"}],
        "keys": [{"name": "app", "key": KEY}]
    }]});
    spawn_gateway(&config, &[])
}

#[test]
fn https_target_verified_by_custom_ca_pools_and_injects_credentials() {
    let pki = make_pki(&["localhost"]);
    let (addr, stats) = spawn_tls_server(&pki, false);
    let gw = gateway_for(json!([{
        "host": "localhost", "port": addr.port(), "protocol": "https",
        "provider": "openai", "credentials": {"api_key": "sk-upstream"},
        "ca_pem": pki.ca_pem,
    }]));
    let common::Response {
        status,
        headers,
        body,
    } = roundtrip(
        gw.proxy,
        &post("/v1/chat/completions", KEY, "", r#"{"model":"m"}"#),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v = json_body(&body);
    assert_eq!(v["path"], "/v1/chat/completions");
    assert_eq!(
        v["authorization"], "Bearer sk-upstream",
        "the client's key never reaches the provider"
    );
    assert_eq!(v["body"], r#"{"model":"m"}"#);
    assert!(header(&headers, "x-request-id").is_some());
    // A second request on a new client connection rides the pooled TLS connection.
    let common::Response { status, body, .. } = roundtrip(
        gw.proxy,
        &post("/v1/chat/completions", KEY, "", r#"{"model":"m2"}"#),
    );
    assert_eq!(status, 200);
    let w = json_body(&body);
    assert_eq!(w["conn"], v["conn"], "pooled TLS connection reused");
    assert_eq!(w["n"], 2);
    assert_eq!(stats.handshakes.load(Ordering::Relaxed), 1);
}

#[test]
fn tls_sessions_resume_across_connections() {
    let pki = make_pki(&["localhost"]);
    let (addr, stats) = spawn_tls_server(&pki, true);
    let gw = gateway_for(json!([{
        "host": "localhost", "port": addr.port(), "protocol": "https", "ca_pem": pki.ca_pem,
    }]));
    for i in 0..3 {
        let common::Response { status, body, .. } =
            roundtrip(gw.proxy, &post("/v1/chat/completions", KEY, "", "{}"));
        assert_eq!(
            status,
            200,
            "request {i}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    assert_eq!(
        stats.handshakes.load(Ordering::Relaxed),
        3,
        "server closes after each answer"
    );
    assert!(
        stats.resumed.load(Ordering::Relaxed) >= 1,
        "later handshakes resume the session"
    );
}

#[test]
fn untrusted_or_misnamed_certificates_are_refused_with_502() {
    let pki = make_pki(&["localhost"]);
    let (addr, stats) = spawn_tls_server(&pki, false);
    // Public roots do not know the test CA; an IP does not match "localhost".
    let gw_unknown_ca =
        gateway_for(json!([{"host": "localhost", "port": addr.port(), "protocol": "https"}]));
    let gw_wrong_name = gateway_for(json!([{
        "host": "127.0.0.1", "port": addr.port(), "protocol": "https", "ca_pem": pki.ca_pem,
    }]));
    for gw in [&gw_unknown_ca, &gw_wrong_name] {
        let common::Response { status, body, .. } =
            roundtrip(gw.proxy, &post("/v1/chat/completions", KEY, "", "{}"));
        assert_eq!(status, 502);
        let v = json_body(&body);
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("TLS handshake failed"),
            "{v}"
        );
    }
    assert_eq!(
        stats.requests.load(Ordering::Relaxed),
        0,
        "no request crossed an unverified connection"
    );
    // insecure_ssl turns verification off.
    let gw_insecure = gateway_for(json!([{
        "host": "127.0.0.1", "port": addr.port(), "protocol": "https", "insecure_ssl": true,
    }]));
    let common::Response { status, body, .. } = roundtrip(
        gw_insecure.proxy,
        &post("/v1/chat/completions", KEY, "", "{}"),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn anthropic_credentials_replace_the_clients() {
    let pki = make_pki(&["localhost"]);
    let (addr, _) = spawn_tls_server(&pki, false);
    let gw = gateway_for(json!([{
        "host": "localhost", "port": addr.port(), "protocol": "https", "ca_pem": pki.ca_pem,
        "provider": "anthropic", "credentials": {"api_key": "sk-ant"},
    }]));
    let body = "{}";
    let common::Response {
        status, body: resp, ..
    } = roundtrip(
        gw.proxy,
        &format!(
            "POST /v1/messages HTTP/1.1\r\nHost: gw\r\nx-api-key: {KEY}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(status, 200);
    let v = json_body(&resp);
    assert_eq!(v["x_api_key"], "sk-ant");
    assert_eq!(v["authorization"], "");
}
