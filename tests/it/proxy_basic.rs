//! The request path end to end: real gateway, real mock upstream, raw HTTP.

use crate::common;

use std::io::Write;
use std::net::SocketAddr;

use common::{
    closed_within, connect_buffered, get, header, json_body, read_response, roundtrip,
    spawn_gateway, spawn_mock, ChildGuard, Gateway, Response,
};
use serde_json::{json, Value};

const KEY: &str = "rg-main-key";

/// Mock + gateway with one upstream per behaviour under test. Services carry an `x-which`
/// header naming them, so the echo shows which rule (and service) served a request.
fn setup() -> (ChildGuard, SocketAddr, Gateway) {
    let (mock, m) = spawn_mock(&[]);
    let host = m.ip().to_string();
    let port = m.port();
    let svc = |name: &str, upstream: &str| json!({"name": name, "type": "upstream", "upstream": upstream, "headers": {"x-which": name}});
    let config = json!({"gateways": [{
        "name": "demo",
        "subdomain": "demo",
        "upstreams": [
            {"name": "llm", "targets": [{"host": host, "port": port}]},
            {"name": "prefixed", "targets": [{"host": host, "port": port, "path": "/echo"}]},
            {"name": "openai", "targets": [{"host": host, "port": port, "provider": "openai",
                "headers": {"x-target-tag": "t1"},
                "credentials": {"api_key": "sk-upstream-secret"}}]},
            {"name": "anthropic", "targets": [{"host": host, "port": port, "provider": "anthropic",
                "credentials": {"api_key": "ak-upstream-secret"}}]},
            {"name": "withparam", "targets": [{"host": host, "port": port, "path": "/echo",
                "credentials": {"param_name": "key", "param_value": "s3cr t", "param_location": "query"}}]}
        ],
        "services": [
            svc("echo", "llm"),
            svc("deep", "llm"),
            svc("param", "llm"),
            svc("postonly", "llm"),
            svc("limited", "llm"),
            svc("public", "llm"),
            svc("preserve", "llm"),
            svc("api", "prefixed"),
            svc("openai", "openai"),
            svc("anthropic", "anthropic"),
            svc("paramcred", "withparam")
        ],
        "rules": [
            {"name": "echo", "path": "/echo", "service": "echo"},
            {"name": "deep", "path": "/echo/deep", "service": "deep"},
            {"name": "param", "path": "/echo/items/{id}/detail", "service": "param"},
            {"name": "postonly", "path": "/echo/post-only", "methods": ["POST"], "service": "postonly"},
            {"name": "only-post", "path": "/only-post", "methods": ["POST"], "service": "postonly"},
            {"name": "limited", "path": "/echo/limited", "service": "limited"},
            {"name": "public", "path": "/echo/public", "public": true, "service": "public"},
            {"name": "preserve", "path": "/echo/preserve", "preserve_host": true, "service": "preserve"},
            {"name": "api", "path": "/api", "strip_path": true, "service": "api"},
            {"name": "whole", "path": "/whole", "service": "api"},
            {"name": "openai", "path": "/echo/openai", "service": "openai"},
            {"name": "anthropic", "path": "/echo/anthropic", "service": "anthropic"},
            {"name": "paramcred", "path": "/paramcred", "strip_path": true, "service": "paramcred"}
        ],
        "keys": [
            {"name": "main", "key": KEY},
            {"name": "off", "key": "rg-inactive-key", "active": false},
            {"name": "old", "key": "rg-expired-key", "expires_at": "2020-01-01T00:00:00Z"},
            {"name": "narrow", "key": "rg-limited-key", "policies": ["limited"]}
        ]
    }]});
    let gw = spawn_gateway(&config, &[]);
    (mock, m, gw)
}

/// The echo's view of the request, checking the answer is a 200 from the mock.
fn echoed(resp: &Response) -> Value {
    let Response {
        status,
        headers,
        body,
    } = resp;
    assert_eq!(
        *status,
        200,
        "status; body {}",
        String::from_utf8_lossy(body)
    );
    assert!(
        header(headers, "x-mock-conn").is_some(),
        "not the mock's answer: {headers:?}"
    );
    json_body(body)
}

/// A gateway error: status, JSON `{"error": ...}`, an X-Request-Id.
fn assert_error(resp: &Response, status: u16) {
    let Response {
        status: s,
        headers,
        body,
    } = resp;
    assert_eq!(*s, status, "body {}", String::from_utf8_lossy(body));
    assert_eq!(header(headers, "content-type"), Some("application/json"));
    assert!(
        header(headers, "x-mock-conn").is_none(),
        "came from the mock"
    );
    let rid = header(headers, "x-request-id").expect("X-Request-Id on an error");
    assert!(!rid.is_empty());
    let v = json_body(body);
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
}

#[test]
fn get_and_post_reach_echo() {
    let (_m, _, gw) = setup();
    let v = echoed(&roundtrip(gw.proxy, &get("/echo", KEY, "")));
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/echo");
    assert_eq!(v["query"], Value::Null);
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["body_len"], 0);

    let body = r#"{"hello":"world"}"#;
    let req = format!(
        "POST /echo/sub?x=1 HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let v = echoed(&roundtrip(gw.proxy, &req));
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/echo/sub");
    assert_eq!(v["query"], "x=1");
    assert_eq!(v["body"], body);
    assert_eq!(v["body_len"], body.len());
    assert_eq!(v["headers"]["content-type"], "application/json");
    assert_eq!(v["headers"]["content-length"], body.len().to_string());
    assert_eq!(v["headers"]["x-which"], "echo");
}

#[test]
fn keep_alive_serves_twice_and_reuses_the_upstream_connection() {
    let (_m, _, gw) = setup();
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(get("/echo/one", KEY, "").as_bytes()).unwrap();
    let first = read_response(&mut r).unwrap();
    assert_eq!(echoed(&first)["path"], "/echo/one");
    assert!(
        header(&first.headers, "connection").is_none(),
        "{:?}",
        first.headers
    );
    s.write_all(get("/echo/two", KEY, "").as_bytes()).unwrap();
    let second = read_response(&mut r).unwrap();
    assert_eq!(echoed(&second)["path"], "/echo/two");
    assert_eq!(
        header(&first.headers, "x-mock-conn"),
        header(&second.headers, "x-mock-conn"),
        "the pooled upstream connection was not reused"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_m, _, gw) = setup();
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let body = "abc";
    let all = format!(
        "{}POST /echo/2 HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nContent-Length: 3\r\n\r\n{body}{}",
        get("/echo/1", KEY, ""),
        get("/echo/3", KEY, "")
    );
    s.write_all(all.as_bytes()).unwrap();
    for (i, method) in [(1, "GET"), (2, "POST"), (3, "GET")] {
        let v = echoed(&read_response(&mut r).unwrap());
        assert_eq!(v["path"], format!("/echo/{i}"));
        assert_eq!(v["method"], method);
    }
    // The connection is still usable afterwards.
    s.write_all(get("/echo/4", KEY, "").as_bytes()).unwrap();
    assert_eq!(echoed(&read_response(&mut r).unwrap())["path"], "/echo/4");
}

#[test]
fn forwarded_headers_and_request_id() {
    let (_m, _, gw) = setup();
    // Without client-sent values: ours only, a generated id.
    let resp = roundtrip(gw.proxy, &get("/echo", KEY, ""));
    let v = echoed(&resp);
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "gw");
    let sent_id = h["x-request-id"].as_str().expect("x-request-id forwarded");
    assert!(sent_id.len() >= 16, "{sent_id}");
    assert_eq!(header(&resp.headers, "x-request-id"), Some(sent_id));

    // Client-sent X-Forwarded-For is appended to, X-Request-Id kept, spoofed proto/host replaced.
    let resp = roundtrip(
        gw.proxy,
        &get("/echo", KEY, "X-Forwarded-For: 10.1.2.3\r\nX-Request-Id: client-id-42\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n"),
    );
    let v = echoed(&resp);
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(h["x-request-id"], "client-id-42");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "gw");
    assert_eq!(header(&resp.headers, "x-request-id"), Some("client-id-42"));

    // Two requests without an id get different ones.
    let a = roundtrip(gw.proxy, &get("/echo", KEY, ""));
    let b = roundtrip(gw.proxy, &get("/echo", KEY, ""));
    assert_ne!(
        header(&a.headers, "x-request-id"),
        header(&b.headers, "x-request-id")
    );
}

#[test]
fn host_is_the_target_authority_unless_preserve_host() {
    let (_m, m, gw) = setup();
    let v = echoed(&roundtrip(gw.proxy, &get("/echo", KEY, "")));
    assert_eq!(v["headers"]["host"], m.to_string());
    let v = echoed(&roundtrip(gw.proxy, &get("/echo/preserve", KEY, "")));
    assert_eq!(v["headers"]["x-which"], "preserve");
    assert_eq!(v["headers"]["host"], "gw");
}

#[test]
fn hop_by_hop_headers_are_dropped() {
    let (_m, _, gw) = setup();
    let resp = roundtrip(
        gw.proxy,
        &get("/echo", KEY, "Connection: keep-alive, X-Secret-Hop\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: keep-alive\r\nX-Secret-Hop: 1\r\nX-End-To-End: kept\r\n"),
    );
    let v = echoed(&resp);
    let h = v["headers"].as_object().unwrap();
    for gone in [
        "connection",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
        "x-secret-hop",
    ] {
        assert!(!h.contains_key(gone), "{gone} was forwarded: {h:?}");
    }
    assert_eq!(h["x-end-to-end"], "kept");
}

#[test]
fn the_gateway_key_is_never_forwarded() {
    let (_m, _, gw) = setup();
    let forms = [
        format!("X-TG-API-Key: {KEY}\r\n"),
        format!("Authorization: Bearer {KEY}\r\n"),
        format!("x-api-key: {KEY}\r\n"),
        // A second (and third) copy beside the header the key was read
        // from: every header carrying it is dropped.
        format!("X-TG-API-Key: {KEY}\r\nAuthorization: Bearer {KEY}\r\n"),
        format!("X-TG-API-Key: {KEY}\r\nx-api-key: {KEY}\r\napi-key: {KEY}\r\nx-goog-api-key: {KEY}\r\n"),
        format!("Authorization: Bearer {KEY}\r\nX-Custom-Auth: Token {KEY}\r\n"),
    ];
    for form in forms {
        let req = format!("GET /echo HTTP/1.1\r\nHost: gw\r\n{form}\r\n");
        let common::Response {
            status,
            headers,
            body,
        } = roundtrip(gw.proxy, &req);
        let v = echoed(&Response {
            status,
            headers,
            body: body.clone(),
        });
        let h = v["headers"].as_object().unwrap();
        for name in [
            "x-tg-api-key",
            "authorization",
            "x-api-key",
            "api-key",
            "x-goog-api-key",
            "x-custom-auth",
        ] {
            assert!(
                !h.contains_key(name),
                "{name} forwarded with {form:?}: {h:?}"
            );
        }
        assert!(
            !String::from_utf8_lossy(&body).contains(KEY),
            "the key reached the upstream: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn target_headers_and_credentials_are_injected() {
    let (_m, _, gw) = setup();
    // openai: Authorization: Bearer <api_key>, replacing the client's own Authorization.
    let v = echoed(&roundtrip(
        gw.proxy,
        &get(
            "/echo/openai",
            KEY,
            "Authorization: Basic Y2xpZW50OnNlY3JldA==\r\n",
        ),
    ));
    let h = &v["headers"];
    assert_eq!(h["authorization"], "Bearer sk-upstream-secret");
    assert_eq!(h["x-target-tag"], "t1");
    assert_eq!(h["x-which"], "openai");

    // The gateway key in Authorization is replaced too, never forwarded.
    let req =
        format!("GET /echo/openai HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n\r\n");
    let v = echoed(&roundtrip(gw.proxy, &req));
    assert_eq!(v["headers"]["authorization"], "Bearer sk-upstream-secret");

    // anthropic: x-api-key + anthropic-version; a client x-api-key (the gateway key) is gone.
    let req = format!("GET /echo/anthropic HTTP/1.1\r\nHost: gw\r\nx-api-key: {KEY}\r\n\r\n");
    let v = echoed(&roundtrip(gw.proxy, &req));
    let h = &v["headers"];
    assert_eq!(h["x-api-key"], "ak-upstream-secret");
    assert_eq!(h["anthropic-version"], "2023-06-01");
    assert!(h.get("authorization").is_none(), "{h}");
}

#[test]
fn strip_path_joins_the_target_path_and_keeps_the_query() {
    let (_m, _, gw) = setup();
    let v = echoed(&roundtrip(
        gw.proxy,
        &get("/api/v1/models?a=1&b=two", KEY, ""),
    ));
    assert_eq!(v["path"], "/echo/v1/models");
    assert_eq!(v["query"], "a=1&b=two");
    assert_eq!(v["headers"]["x-which"], "api");
    // The rule path alone: just the target path.
    let v = echoed(&roundtrip(gw.proxy, &get("/api", KEY, "")));
    assert_eq!(v["path"], "/echo");
    // Without strip_path the whole path is forwarded.
    let v = echoed(&roundtrip(gw.proxy, &get("/echo/deep/x?q=%20", KEY, "")));
    assert_eq!(v["path"], "/echo/deep/x");
    assert_eq!(v["query"], "q=%20");
    // ... unless the target has a path: then that is the whole upstream
    // path (TrustGate's forwarding), and the query is still kept.
    let v = echoed(&roundtrip(gw.proxy, &get("/whole/x/y?k=v", KEY, "")));
    assert_eq!(v["path"], "/echo");
    assert_eq!(v["query"], "k=v");
    // A credential sent as a query parameter (TrustGate's param_*) joins
    // the client's query.
    let v = echoed(&roundtrip(gw.proxy, &get("/paramcred/x?a=1", KEY, "")));
    assert_eq!(
        (v["path"].as_str(), v["query"].as_str()),
        (Some("/echo/x"), Some("a=1&key=s3cr%20t"))
    );
    let v = echoed(&roundtrip(gw.proxy, &get("/paramcred", KEY, "")));
    assert_eq!(v["query"], "key=s3cr%20t");
}

#[test]
fn authentication_errors() {
    let (_m, _, gw) = setup();
    let req =
        |key_line: &str, path: &str| format!("GET {path} HTTP/1.1\r\nHost: gw\r\n{key_line}\r\n");
    assert_error(&roundtrip(gw.proxy, &req("", "/echo")), 401);
    assert_error(
        &roundtrip(gw.proxy, &req("X-TG-API-Key: rg-nope\r\n", "/echo")),
        401,
    );
    assert_error(
        &roundtrip(gw.proxy, &req("Authorization: Bearer rg-nope\r\n", "/echo")),
        401,
    );
    // Inactive and expired keys are 401 like unknown ones (TrustGate's answer).
    assert_error(
        &roundtrip(gw.proxy, &req("X-TG-API-Key: rg-inactive-key\r\n", "/echo")),
        401,
    );
    assert_error(
        &roundtrip(gw.proxy, &req("x-api-key: rg-expired-key\r\n", "/echo")),
        401,
    );
    // A key with policies: its rule works, others are 401.
    let limited = "X-TG-API-Key: rg-limited-key\r\n";
    let v = echoed(&roundtrip(gw.proxy, &req(limited, "/echo/limited")));
    assert_eq!(v["headers"]["x-which"], "limited");
    assert_error(&roundtrip(gw.proxy, &req(limited, "/echo")), 401);
    // A client X-Request-Id is echoed on the error.
    let resp = roundtrip(gw.proxy, &req("X-Request-Id: err-id-7\r\n", "/echo"));
    assert_error(&resp, 401);
    assert_eq!(header(&resp.headers, "x-request-id"), Some("err-id-7"));
}

#[test]
fn errors_keep_the_connection_alive() {
    let (_m, _, gw) = setup();
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(b"GET /echo HTTP/1.1\r\nHost: gw\r\n\r\n")
        .unwrap();
    assert_error(&read_response(&mut r).unwrap(), 401);
    s.write_all(get("/nothing/here", KEY, "").as_bytes())
        .unwrap();
    assert_error(&read_response(&mut r).unwrap(), 404);
    s.write_all(get("/echo", KEY, "").as_bytes()).unwrap();
    echoed(&read_response(&mut r).unwrap());
}

#[test]
fn no_rule_is_404() {
    let (_m, _, gw) = setup();
    assert_error(&roundtrip(gw.proxy, &get("/nothing", KEY, "")), 404);
    // Prefix only at a segment boundary.
    assert_error(&roundtrip(gw.proxy, &get("/echoes", KEY, "")), 404);
    assert_error(&roundtrip(gw.proxy, &get("/", KEY, "")), 404);
}

#[test]
fn public_rule_is_reachable_through_the_subdomain_without_a_key() {
    let (_m, _, gw) = setup();
    let public = |host: &str, path: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let v = echoed(&roundtrip(
        gw.proxy,
        &public("demo.example.com", "/echo/public/x"),
    ));
    assert_eq!(v["headers"]["x-which"], "public");
    assert_eq!(v["path"], "/echo/public/x");
    let v = echoed(&roundtrip(
        gw.proxy,
        &public("DEMO.example.com:8081", "/echo/public"),
    ));
    assert_eq!(v["headers"]["x-which"], "public");
    // Non-public rule on the same gateway: a key is needed.
    assert_error(
        &roundtrip(gw.proxy, &public("demo.example.com", "/echo")),
        401,
    );
    // Another subdomain names no gateway.
    assert_error(
        &roundtrip(gw.proxy, &public("other.example.com", "/echo/public")),
        401,
    );
}

#[test]
fn param_segments_longest_rule_and_methods() {
    let (_m, _, gw) = setup();
    let which = |path: &str| {
        let v = echoed(&roundtrip(gw.proxy, &get(path, KEY, "")));
        v["headers"]["x-which"].as_str().unwrap().to_string()
    };
    assert_eq!(which("/echo/items/42/detail"), "param");
    assert_eq!(which("/echo/items/abc/detail/more"), "param");
    assert_eq!(which("/echo/items/42"), "echo");
    assert_eq!(which("/echo/items/42/other"), "echo");
    assert_eq!(which("/echo/deep"), "deep");
    assert_eq!(which("/echo/deep/er"), "deep");
    assert_eq!(which("/echo/deeper"), "echo");
    assert_eq!(which("/echo"), "echo");

    // Methods: POST matches the POST-only rule, GET falls back to the shorter one.
    let post = format!(
        "POST /echo/post-only HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        echoed(&roundtrip(gw.proxy, &post))["headers"]["x-which"],
        "postonly"
    );
    assert_eq!(which("/echo/post-only"), "echo");
    // And with no shorter rule to fall back to: 404.
    assert_error(&roundtrip(gw.proxy, &get("/only-post", KEY, "")), 404);
    let post = format!(
        "POST /only-post HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nContent-Length: 0\r\n\r\n"
    );
    // Forwarded: the mock itself answers 404 (it only echoes under /echo).
    let common::Response {
        status, headers, ..
    } = roundtrip(gw.proxy, &post);
    assert_eq!(status, 404);
    assert!(header(&headers, "x-mock-conn").is_some(), "{headers:?}");
}

#[test]
fn http10_with_and_without_keep_alive() {
    let (_m, _, gw) = setup();
    // Without keep-alive: answered, then closed.
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(format!("GET /echo/a HTTP/1.0\r\nX-TG-API-Key: {KEY}\r\n\r\n").as_bytes())
        .unwrap();
    let resp = read_response(&mut r).unwrap();
    let v = echoed(&resp);
    assert_eq!(v["path"], "/echo/a");
    assert_eq!(
        header(&resp.headers, "connection").map(str::to_ascii_lowercase),
        Some("close".into())
    );
    assert!(closed_within(&mut r), "HTTP/1.0 connection left open");

    // With keep-alive: two answers on one connection.
    let (mut s, mut r) = connect_buffered(gw.proxy);
    for path in ["/echo/b", "/echo/c"] {
        s.write_all(
            format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\nX-TG-API-Key: {KEY}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let resp = read_response(&mut r).unwrap();
        assert_eq!(echoed(&resp)["path"], path);
        assert_eq!(
            header(&resp.headers, "connection").map(str::to_ascii_lowercase),
            Some("keep-alive".into())
        );
        assert!(header(&resp.headers, "content-length").is_some());
    }
}

#[test]
fn builtin_ping_and_health() {
    let (_m, _, gw) = setup();
    // No key needed, keep-alive kept.
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(b"GET /__/ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let common::Response {
        status,
        headers,
        body,
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(body, br#"{"message":"pong"}"#);
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, br#"{"status":"ok"}"#);
}

#[test]
fn response_framings_pass_through() {
    let (_m, _, gw) = setup();
    let (mut s, mut r) = connect_buffered(gw.proxy);
    // Chunked from the upstream, chunked to a 1.1 client.
    s.write_all(get("/echo/chunked", KEY, "x-mock-chunked: 1\r\n").as_bytes())
        .unwrap();
    let common::Response {
        status,
        headers,
        body,
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    assert_eq!(json_body(&body)["path"], "/echo/chunked");
    // HEAD: a head with Content-Length and no body; the connection goes on.
    s.write_all(
        format!("HEAD /echo/head HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let common::Response {
        status,
        headers,
        body,
    } = common::read_response_to(&mut r, true).unwrap();
    assert_eq!(status, 200);
    assert!(header(&headers, "content-length").is_some(), "{headers:?}");
    assert!(body.is_empty());
    // 204 and an upstream 500 pass through as they are.
    s.write_all(get("/echo", KEY, "x-mock-status: 204\r\n").as_bytes())
        .unwrap();
    let common::Response {
        status,
        headers,
        body,
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 204);
    assert!(header(&headers, "x-mock-conn").is_some());
    assert!(body.is_empty());
    s.write_all(get("/echo", KEY, "x-mock-status: 500\r\n").as_bytes())
        .unwrap();
    let common::Response {
        status,
        headers,
        body,
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 500);
    assert!(header(&headers, "x-mock-conn").is_some());
    assert_eq!(json_body(&body)["error"]["message"], "mock status 500");
    // Still in step.
    s.write_all(get("/echo/last", KEY, "").as_bytes()).unwrap();
    assert_eq!(
        echoed(&read_response(&mut r).unwrap())["path"],
        "/echo/last"
    );

    // Chunked from the upstream to an HTTP/1.0 client: decoded, close-delimited.
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(
        format!("GET /echo/old HTTP/1.0\r\nX-TG-API-Key: {KEY}\r\nx-mock-chunked: 1\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let common::Response {
        status,
        headers,
        body,
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert!(header(&headers, "transfer-encoding").is_none());
    assert_eq!(json_body(&body)["path"], "/echo/old");
}

#[test]
fn slow_upstream_body_is_relayed_whole() {
    let (_m, _, gw) = setup();
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(get("/echo/slow", KEY, "x-mock-fault: slow-body\r\n").as_bytes())
        .unwrap();
    let v = echoed(&read_response(&mut r).unwrap());
    assert_eq!(v["path"], "/echo/slow");
    s.write_all(get("/echo/after", KEY, "").as_bytes()).unwrap();
    assert_eq!(
        echoed(&read_response(&mut r).unwrap())["path"],
        "/echo/after"
    );
}

/// The gateway's own answers (no key, no rule, a built-in) keep a keep-alive
/// connection usable even when the request's small body arrives after its
/// head: the body is read and dropped, never taken for the next request,
/// and the connection is not closed.
#[test]
fn own_answers_skip_a_late_body_and_keep_the_connection() {
    let (_mock, m) = spawn_mock(&[]);
    let config = common::one_gateway(
        "round-robin",
        json!([common::target(m)]),
        json!([{"name": "echo", "path": "/echo"}]),
        json!([{"name": "k", "key": "rg-late-body"}]),
    );
    let gw = spawn_gateway(&config, &[]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let cases: [(&str, &str, &str, u16); 3] = [
        ("POST", "/echo", "", 401),
        ("POST", "/nowhere", "X-TG-API-Key: rg-late-body\r\n", 404),
        ("GET", "/__/ping", "", 200),
    ];
    for (method, path, key, want) in cases {
        let body = b"{\"late\":true}";
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: gw\r\n{key}Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        s.write_all(body).unwrap();
        let resp = read_response(&mut r).expect("answer to the split request");
        assert_eq!(resp.status, want, "{path}");
        assert!(
            header(&resp.headers, "connection").map_or(true, |v| !v.eq_ignore_ascii_case("close")),
            "{path}: kept open"
        );
    }
    // The same connection still serves a forwarded request.
    s.write_all(b"GET /echo/after HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: rg-late-body\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut r).expect("answer after the split requests");
    assert_eq!(resp.status, 200);
    assert_eq!(json_body(&resp.body)["path"], "/echo/after");
}
