//! What reaches a provider: Azure OpenAI's deployment path, `api-version`
//! query and `api-key` header; Bearer auth for the OpenAI-compatible
//! providers; the client's own credentials never forwarded. Asserted on
//! the mock's `/echo`, which reflects the request it received.

use crate::common;

use std::io::Write;

use common::admin::call;
use common::{
    connect_buffered, json_body, post_json, read_response, spawn_gateway, spawn_mock, target,
};
use serde_json::{json, Value};

const KEY: &str = "rg-cred-key";

/// One gateway, one rule per (name, target): `/{name}` with strip_path off
/// and `/{name}s` with strip_path on, each to its own upstream.
fn gateway(targets: &[(&str, Value)]) -> common::Gateway {
    let mut upstreams = Vec::new();
    let mut services = Vec::new();
    let mut rules = Vec::new();
    for (name, t) in targets {
        upstreams.push(json!({"name": name, "targets": [t]}));
        services.push(json!({"name": name, "type": "upstream", "upstream": name}));
        rules.push(json!({"name": name, "path": format!("/{name}"), "service": name}));
        rules.push(
            json!({"name": format!("{name}-s"), "path": format!("/{name}s"),
                          "service": name, "strip_path": true}),
        );
    }
    spawn_gateway(
        &json!({"gateways": [{"name": "c", "upstreams": upstreams, "services": services,
                               "rules": rules, "keys": [{"name": "k", "key": KEY}]}]}),
        &[],
    )
}

fn mock_target(addr: std::net::SocketAddr, fields: Value) -> Value {
    let mut t = target(addr);
    t["path"] = json!("/echo");
    for (k, v) in fields.as_object().unwrap() {
        t[k] = v.clone();
    }
    t
}

#[test]
fn azure_gets_the_deployment_path_api_version_and_api_key() {
    let (_m, mock) = spawn_mock(&[]);
    let fixed = mock_target(
        mock,
        json!({"provider": "azure", "azure_deployment": "prod-4o",
               "credentials": {"api_key": "az-secret"}}),
    );
    let by_model = mock_target(
        mock,
        json!({"provider": "azure", "api_version": "2025-01-01-preview",
               "credentials": {"api_key": "az-2"}}),
    );
    let gw = gateway(&[("az", fixed), ("azm", by_model)]);
    let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});

    // strip_path off: the rule's path is part of the forwarded path; the
    // endpoint starts after its /v1 segment. The client's own api-key and
    // x-api-key headers do not reach Azure.
    let (status, echo) = post_json(
        gw.proxy,
        "/az/v1/chat/completions?trace=1",
        KEY,
        "api-key: client-own-key\r\nx-api-key: client-other\r\n",
        &chat,
    )
    .status_and_json();
    assert_eq!(status, 200, "{echo}");
    assert_eq!(
        echo["path"],
        "/echo/openai/deployments/prod-4o/chat/completions"
    );
    assert_eq!(echo["query"], "trace=1&api-version=2024-10-21");
    let h = &echo["headers"];
    assert_eq!(h["api-key"], "az-secret");
    assert!(h.get("authorization").is_none(), "{h}");
    assert!(h.get("x-api-key").is_none(), "{h}");
    assert_eq!(echo["body"], chat.to_string(), "the body goes unchanged");

    // strip_path on, and the client's own api-version wins (Azure SDKs send one).
    let (status, echo) = post_json(
        gw.proxy,
        "/azs/chat/completions?api-version=2024-06-01",
        KEY,
        "",
        &chat,
    )
    .status_and_json();
    assert_eq!(status, 200, "{echo}");
    assert_eq!(
        echo["path"],
        "/echo/openai/deployments/prod-4o/chat/completions"
    );
    assert_eq!(echo["query"], "api-version=2024-06-01");

    // No azure_deployment: the model names the deployment.
    let (status, echo) = post_json(
        gw.proxy,
        "/azm/v1/chat/completions",
        KEY,
        "",
        &json!({"model": "gpt-4o-mini", "messages": []}),
    )
    .status_and_json();
    assert_eq!(status, 200, "{echo}");
    assert_eq!(
        echo["path"],
        "/echo/openai/deployments/gpt-4o-mini/chat/completions"
    );
    assert_eq!(echo["query"], "api-version=2025-01-01-preview");
    assert_eq!(echo["headers"]["api-key"], "az-2");
    assert!(echo["headers"].get("authorization").is_none());

    // ... so a request without one, or with one that is no deployment name,
    // is refused before anything goes upstream.
    let (status, err) = post_json(
        gw.proxy,
        "/azm/v1/chat/completions",
        KEY,
        "",
        &json!({"messages": []}),
    )
    .status_and_json();
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("azure_deployment"),
        "{err}"
    );
    let (status, err) = post_json(
        gw.proxy,
        "/azm/v1/chat/completions",
        KEY,
        "",
        &json!({"model": "../../admin", "messages": []}),
    )
    .status_and_json();
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("deployment"),
        "{err}"
    );
}

#[test]
fn openai_compatible_providers_get_bearer_auth_and_never_the_clients_key() {
    let (_m, mock) = spawn_mock(&[]);
    let mistral = mock_target(
        mock,
        json!({"provider": "mistral", "credentials": {"api_key": "mistral-secret"}}),
    );
    let gemini = mock_target(
        mock,
        json!({"provider": "gemini", "path": "/echo/v1beta/openai",
               "credentials": {"api_key": "gemini-secret"}}),
    );
    let gw = gateway(&[("mi", mistral), ("ge", gemini)]);
    let chat = json!({"model": "mistral-small", "messages": []});
    let (status, echo) = post_json(
        gw.proxy,
        "/mis/v1/chat/completions",
        KEY,
        "x-api-key: client-other\r\n",
        &chat,
    )
    .status_and_json();
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["path"], "/echo/v1/chat/completions");
    assert_eq!(echo["query"], Value::Null, "no api-version off Azure");
    assert_eq!(echo["headers"]["authorization"], "Bearer mistral-secret");
    assert!(echo["headers"].get("x-api-key").is_none());
    assert!(echo["headers"].get("api-key").is_none());

    // The key came as x-api-key this time; the Bearer is the gateway's own.
    let body = chat.to_string();
    let (mut s, mut r) = connect_buffered(gw.proxy);
    write!(
        s,
        "POST /ges/chat/completions HTTP/1.1\r\nHost: gw\r\nx-api-key: {KEY}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    let echo = json_body(&body);
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["path"], "/echo/v1beta/openai/chat/completions");
    assert_eq!(echo["headers"]["authorization"], "Bearer gemini-secret");
    assert!(
        echo["headers"].get("x-api-key").is_none(),
        "the gateway key stays"
    );
}

#[test]
fn admin_api_names_the_bad_azure_and_keepalive_fields() {
    let (_m, mock) = spawn_mock(&[]);
    let gw = gateway(&[("ok", target(mock))]);
    let (s, v) = call(gw.admin, "GET", "/api/v1/gateways", None, None);
    assert_eq!(s, 200);
    let gid = v["gateways"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/gateways/{gid}/upstreams");
    let refused = |t: Value, field: &str, words: &str| {
        let body = json!({"name": "bad", "targets": [t]});
        let (s, v) = call(gw.admin, "POST", &path, Some(&body), None);
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["field"], field, "{v}");
        assert!(v["error"].as_str().unwrap().contains(words), "{v}");
    };
    let mut t = target(mock);
    t["azure_deployment"] = json!("d");
    refused(t, "targets[0].azure_deployment", "azure");
    let mut t = target(mock);
    t["provider"] = json!("azure");
    t["api_version"] = json!("2024-10-21&x=1");
    refused(t, "targets[0].api_version", "letters");
    for bad in [json!(0), json!(3601)] {
        let mut t = target(mock);
        t["sse_ping_secs"] = bad;
        refused(t, "targets[0].sse_ping_secs", "1 to 3600");
    }
    let mut t = target(mock);
    t["sse_ping_secs"] = json!("15");
    let body = json!({"name": "bad", "targets": [t]});
    let (s, v) = call(gw.admin, "POST", &path, Some(&body), None);
    assert_eq!(s, 400, "a string is no number: {v}");

    // Accepted and exported as given.
    let mut t = target(mock);
    t["provider"] = json!("azure");
    t["azure_deployment"] = json!("prod-4o");
    t["api_version"] = json!("2024-10-21");
    t["sse_ping_secs"] = json!(15);
    let body = json!({"name": "good", "targets": [t]});
    let (s, v) = call(gw.admin, "POST", &path, Some(&body), None);
    assert_eq!(s, 201, "{v}");
    let stored = &v["targets"][0];
    assert_eq!(stored["azure_deployment"], "prod-4o");
    assert_eq!(stored["api_version"], "2024-10-21");
    assert_eq!(stored["sse_ping_secs"], 15);
}
