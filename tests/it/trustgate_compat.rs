//! A TrustGate operator's session replayed against ringgate with TrustGate's
//! exact payloads: the legacy `scripts/benchmark.sh` flow twice, one create
//! per entity with the fields its example scripts send (provider targets,
//! every plugin configured the TrustGate way), list/get/update/delete, then
//! proxying with `X-TG-API-Key` and each plugin's effect, and the seed's
//! `hey` command.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use common::admin::{call, start, temp_dir};
use common::{header, json_body, roundtrip, spawn_mock, Response};
use serde_json::{json, Value};

/// What TrustGate's scripts do: JSON with `Authorization: Bearer ` and an
/// empty token (`TOKEN=""` in benchmark.sh).
fn tg(admin: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    call(admin, method, &format!("/api/v1{path}"), body, Some(""))
}

fn ok(admin: SocketAddr, method: &str, path: &str, body: Option<&Value>, want: u16) -> Value {
    let (s, v) = tg(admin, method, path, body);
    assert_eq!(s, want, "{method} {path} {body:?}: {v}");
    v
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

fn epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One proxied request: `X-TG-API-Key` and the Host benchmark.sh sends.
fn proxy(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    extra: &[&str],
    body: &[u8],
) -> Response {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: benchmark-'{}'.example.com\r\nX-TG-API-Key: {key}\r\n",
        epoch()
    );
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    let (mut s, mut r) = common::connect_buffered(addr);
    s.write_all(&bytes).unwrap();
    common::read_response(&mut r).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn error_of(r: &Response) -> String {
    json_body(&r.body)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `scripts/benchmark.sh` (latest legacy revision), steps 2 to 6, against
/// the gateway itself as the upstream (it pings `localhost:<proxy>`).
/// Returns the gateway id and the key the script reads.
fn benchmark_flow(admin: SocketAddr, proxy_port: u16) -> (String, String) {
    let now = epoch();
    let gw = ok(
        admin,
        "POST",
        "/gateways",
        Some(&json!({"name": "Benchmark Gateway"})),
        201,
    );
    let gid = id(&gw);
    let key = ok(
        admin,
        "POST",
        &format!("/gateways/{gid}/keys"),
        Some(&json!({"name": "Benchmark Key", "expires_at": "2026-01-01T00:00:00Z"})),
        201,
    );
    let api_key = key["key"].as_str().expect(".key").to_string();
    let up = ok(
        admin,
        "POST",
        &format!("/gateways/{gid}/upstreams"),
        Some(&json!({
            "name": format!("ping-upstream-{now}"),
            "algorithm": "round-robin",
            "targets": [{"host": "localhost", "port": proxy_port, "protocol": "http",
                         "weight": 100, "priority": 1, "path": "/__/ping"}],
            "health_checks": {"passive": true, "threshold": 3, "interval": 60}
        })),
        201,
    );
    assert_eq!(
        up["targets"][0]["priority"], 1,
        "priority is stored and returned"
    );
    let svc = ok(
        admin,
        "POST",
        &format!("/gateways/{gid}/services"),
        Some(
            &json!({"name": format!("ping-service-{now}"), "type": "upstream",
                     "description": "Ping test service", "upstream_id": id(&up)}),
        ),
        201,
    );
    ok(
        admin,
        "POST",
        &format!("/gateways/{gid}/rules"),
        Some(
            &json!({"path": "/test", "name": "rule1", "service_id": id(&svc),
                     "methods": ["GET"], "strip_path": true, "active": true}),
        ),
        201,
    );
    (gid, api_key)
}

/// A key without expiry, as `test_external_validator.sh` creates it
/// (`"expires_at": null`): the stored key and its plaintext.
fn new_key(admin: SocketAddr, gid: &str, name: &str) -> (Value, String) {
    let key = ok(
        admin,
        "POST",
        &format!("/gateways/{gid}/keys"),
        Some(&json!({"name": name, "expires_at": null})),
        201,
    );
    let plain = key["key"].as_str().expect(".key").to_string();
    (key, plain)
}

/// A validator for `external_api`: `{"flagged": <payload mentions "forbidden">}`.
fn spawn_validator() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let flagged = String::from_utf8_lossy(&body).contains("forbidden");
            let answer = json!({"flagged": flagged}).to_string();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    addr
}

#[test]
fn an_operators_trustgate_session_works_unchanged() {
    let (_mock, mock) = spawn_mock(&[]);
    let validator = spawn_validator();
    let dir = temp_dir("trustgate");
    let gw = start(&dir, &[]);
    let (a, p) = (gw.admin, gw.proxy);

    // 1. The benchmark flow, twice: same names, rules named "rule1" in both.
    let (g1, key1) = benchmark_flow(a, p.port());
    let (g2, _) = benchmark_flow(a, p.port());
    assert_ne!(g1, g2);
    let list = ok(a, "GET", "/gateways", None, 200);
    assert_eq!(
        (
            list["count"].as_u64(),
            list["offset"].as_u64(),
            list["limit"].as_u64()
        ),
        (Some(2), Some(0), Some(10))
    );
    assert_eq!(list["gateways"][0]["name"], list["gateways"][1]["name"]);
    // The script's key expires 2026-01-01, which is past: like an unknown
    // key, 401 (TrustGate's answer).
    let r = proxy(p, "GET", "/test", &key1, &[], b"");
    assert_eq!(
        (r.status, error_of(&r).as_str()),
        (401, "API key has expired")
    );
    // A key without expiry (test_external_validator.sh sends null) pings
    // through the rule: strip_path, target path /__/ping.
    let (_, fresh_key) = new_key(a, &g1, "Benchmark Key");
    let r = proxy(p, "GET", "/test", &fresh_key, &[], b"");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(json_body(&r.body), json!({"message": "pong"}));

    // 2. One create per entity with the fields TrustGate's example scripts send.
    let g = ok(
        a,
        "POST",
        "/gateways",
        Some(&json!({
            "name": "Plugins Gateway", "subdomain": format!("plugins-{}", epoch()), "status": "active",
            "tier": "free", "enabled_plugins": [],
            "required_plugins": [{"name": "request_size_limiter", "enabled": true, "stage": "pre_request",
                "priority": 0, "parallel": false, "level": "gateway",
                "settings": {"allowed_payload_size": 1, "size_unit": "kilobytes", "max_chars_per_request": 900}}]
        })),
        201,
    );
    let gid = id(&g);
    assert_eq!(g["required_plugins"][0]["level"], "gateway");
    assert!(g["created_at"].is_string() && g["updated_at"].is_string());
    let base = format!("/gateways/{gid}");
    let up = ok(
        a,
        "POST",
        &format!("{base}/upstreams"),
        Some(&json!({
            "name": "echo-upstream", "algorithm": "least-conn", "tags": ["test"],
            "targets": [{"host": mock.ip().to_string(), "port": mock.port(), "protocol": "http",
                         "weight": 100, "priority": 1, "path": "/echo", "tags": ["primary"],
                         "headers": {"X-Target": "echo"}}],
            "health_checks": {"passive": true, "threshold": 3, "interval": 60}
        })),
        201,
    );
    // Provider targets as TrustGate writes them: no host, no port.
    let providers = ok(
        a,
        "POST",
        &format!("{base}/upstreams"),
        Some(&json!({
            "name": "llm-providers", "algorithm": "round-robin",
            "targets": [
                {"provider": "openai", "weight": 50, "priority": 1, "models": ["gpt-4o", "gpt-4o-mini"],
                 "default_model": "gpt-4o-mini", "provider_options": {"api": "completions"},
                 "credentials": {"header_name": "Authorization", "header_value": "Bearer sk-test"}},
                {"provider": "anthropic", "weight": 50, "priority": 1, "models": ["claude-3-5-sonnet-latest"],
                 "default_model": "claude-3-5-sonnet-latest", "credentials": {"api_key": "sk-ant-test"}},
                {"provider": "azure", "models": ["gpt-4o"], "default_model": "gpt-4o",
                 "credentials": {"api_key": "az", "azure_endpoint": "https://res.openai.azure.com",
                                 "azure_version": "2024-06-01"}},
                {"provider": "mistral", "models": ["mistral-small"], "default_model": "mistral-small",
                 "credentials": {"api_key": "mk"}}
            ]
        })),
        201,
    );
    assert!(providers["targets"][0].get("host").is_none(), "{providers}");
    assert_eq!(providers["targets"][0]["default_model"], "gpt-4o-mini");
    let svc = ok(
        a,
        "POST",
        &format!("{base}/services"),
        Some(&json!({
            "name": "echo-service", "type": "upstream", "description": "echo", "upstream_id": id(&up),
            "tags": ["test"], "retries": 3
        })),
        201,
    );
    let sid = id(&svc);
    let cors = json!({"allowed_origins": ["https://app.example.com"], "allowed_methods": ["POST", "GET"],
        "allow_credentials": true, "expose_headers": ["X-Request-Id"], "max_age": "12h", "log_violations": true});
    let plugin = |name: &str, settings: Value| {
        json!([{"name": name, "enabled": true, "stage": "pre_request",
        "priority": 1, "parallel": false, "settings": settings}])
    };
    let rules = [
        ("/post", plugin("cors", cors)),
        (
            "/limited",
            plugin(
                "rate_limiter",
                json!({
            "limits": {"global": {"limit": 2, "window": "1m"}, "per_user": {"limit": 100, "window": "1m"}},
            "actions": {"type": "reject", "retry_after": "30"}}),
            ),
        ),
        (
            "/tokens",
            plugin(
                "token_rate_limiter",
                json!({
            "tokens_per_request": 200, "tokens_per_minute": 1000, "bucket_size": 1000, "requests_per_minute": 2}),
            ),
        ),
        (
            "/allowlist",
            plugin(
                "ip_whitelist",
                json!({"enabled": true, "ips": [], "cidrs": ["10.0.0.0/8"]}),
            ),
        ),
        (
            "/open",
            plugin(
                "ip_whitelist",
                json!({"enabled": false, "ips": ["10.0.0.1"]}),
            ),
        ),
        (
            "/mask",
            plugin(
                "data_masking",
                json!({
            "predefined_entities": [{"entity": "credit_card", "enabled": true}, {"entity": "email", "enabled": true, "mask_with": "[EMAIL]"}],
            "rules": [{"pattern": "falcon", "type": "keyword", "mask_with": "[PROJECT]"}],
            "similarity_threshold": 0.8}),
            ),
        ),
        (
            "/guard",
            plugin(
                "injection_protection",
                json!({
            "predefined_injections": [{"type": "all", "enabled": true}],
            "content_to_check": ["body"], "action": "block", "status_code": 400,
            "error_message": "Potential security threat detected"}),
            ),
        ),
        (
            "/validated",
            plugin(
                "external_api",
                json!({
            "endpoint": format!("http://{validator}/validate"), "method": "POST", "timeout": "2s",
            "field_maps": [{"source": "input", "destination": "text"}],
            "conditions": [{"field": "flagged", "operator": "eq", "value": true, "stop_flow": true,
                            "message": "Content flagged"}]}),
            ),
        ),
    ];
    let mut rule_ids = Vec::new();
    for (path, chain) in &rules {
        // TrustGate's rules: no name, strip_path false, active on create.
        let r = ok(
            a,
            "POST",
            &format!("{base}/rules"),
            Some(&json!({
                "path": path, "service_id": sid, "methods": ["GET", "POST"], "strip_path": false,
                "active": true, "headers": {}, "plugin_chain": chain
            })),
            201,
        );
        rule_ids.push(id(&r));
    }
    let (key, k) = new_key(a, &gid, "Test Key");

    // 3. Lists, gets, updates as TrustGate's scripts read them.
    assert_eq!(
        ok(a, "GET", &format!("{base}/upstreams"), None, 200)[0]["id"],
        id(&up)
    );
    assert_eq!(
        ok(a, "GET", &format!("{base}/services"), None, 200)[0]["id"],
        sid
    );
    assert_eq!(
        ok(a, "GET", &format!("{base}/rules"), None, 200)
            .as_array()
            .map(Vec::len),
        Some(rules.len())
    );
    let keys = ok(a, "GET", &format!("{base}/keys"), None, 200);
    assert_eq!(
        (keys["count"].as_u64(), keys["api_keys"][0]["id"].as_str()),
        (Some(1), Some(id(&key).as_str()))
    );
    assert_eq!(
        ok(
            a,
            "GET",
            &format!("{base}/upstreams/{}", id(&up)),
            None,
            200
        )["algorithm"],
        "least-connections"
    );
    let renamed = ok(
        a,
        "PUT",
        &base,
        Some(&json!({"name": "Plugins Gateway v2"})),
        200,
    );
    assert_eq!(
        (renamed["name"].as_str(), renamed["subdomain"].as_str()),
        (Some("Plugins Gateway v2"), g["subdomain"].as_str())
    );

    // 4. Proxying with X-TG-API-Key: without strip_path the target path is
    // the whole upstream path, and the query string is kept.
    let r = proxy(
        p,
        "POST",
        "/post?trace=1",
        &k,
        &["Origin: https://app.example.com"],
        br#"{"a":1}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let echo = json_body(&r.body);
    assert_eq!(
        (echo["path"].as_str(), echo["query"].as_str()),
        (Some("/echo"), Some("trace=1"))
    );
    assert_eq!(echo["headers"]["x-target"], "echo");
    assert!(echo["headers"].get("x-tg-api-key").is_none());
    assert_eq!(
        header(&r.headers, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    // cors: the browser's preflight needs no key; a disallowed origin is 403.
    let pre = roundtrip(p, "OPTIONS /post HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: POST\r\n\r\n");
    assert_eq!(
        (pre.status, header(&pre.headers, "access-control-max-age")),
        (204, Some("43200"))
    );
    let pre = roundtrip(p, "OPTIONS /post HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: DELETE\r\n\r\n");
    assert_eq!(pre.status, 405);
    assert_eq!(
        proxy(
            p,
            "POST",
            "/post",
            &k,
            &["Origin: https://evil.example"],
            b"{}"
        )
        .status,
        403
    );
    // request_size_limiter (the gateway's required plugin): 1 KB.
    let big = format!("{{\"x\":\"{}\"}}", "y".repeat(1100));
    assert_eq!(
        proxy(p, "POST", "/post", &k, &[], big.as_bytes()).status,
        413
    );
    // rate_limiter: 2 a minute, then 429 with the configured retry_after.
    for left in ["1", "0"] {
        let r = proxy(p, "GET", "/limited", &k, &["X-User-ID: ann"], b"");
        assert_eq!(r.status, 200);
        assert_eq!(
            header(&r.headers, "x-ratelimit-global-remaining"),
            Some(left)
        );
        assert_eq!(header(&r.headers, "x-ratelimit-global-limit"), Some("2"));
    }
    let r = proxy(p, "GET", "/limited", &k, &[], b"");
    assert_eq!(
        (r.status, header(&r.headers, "retry-after")),
        (429, Some("30"))
    );
    assert_eq!(
        json_body(&r.body),
        json!({"error": "global rate limit exceeded", "retry_after": "30"})
    );
    // token_rate_limiter: headers, and requests_per_minute.
    let chat = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":10}"#;
    let r = proxy(p, "POST", "/tokens", &k, &[], chat);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(header(&r.headers, "x-ratelimit-limit-tokens"), Some("1000"));
    assert_eq!(header(&r.headers, "x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(proxy(p, "POST", "/tokens", &k, &[], chat).status, 200);
    assert_eq!(proxy(p, "POST", "/tokens", &k, &[], chat).status, 429);
    // ip_whitelist: enabled with a CIDR that excludes loopback; disabled.
    assert_eq!(proxy(p, "GET", "/allowlist", &k, &[], b"").status, 403);
    assert_eq!(proxy(p, "GET", "/open", &k, &[], b"").status, 200);
    // data_masking: card with dashes, email, fuzzy keyword.
    let r = proxy(
        p,
        "POST",
        "/mask",
        &k,
        &[],
        br#"{"text":"card 4111-1111-1111-1111 mail bob@example.com project Falcom"}"#,
    );
    let seen = json_body(&r.body)["body"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        seen, r#"{"text":"card [MASKED_CC] mail [EMAIL] project [PROJECT]"}"#,
        "{r:?}"
    );
    // injection_protection: TrustGate's status and message.
    let r = proxy(
        p,
        "POST",
        "/guard",
        &k,
        &[],
        br#"{"q":"<script>alert(1)</script>"}"#,
    );
    assert_eq!(
        (r.status, error_of(&r).as_str()),
        (400, "Potential security threat detected")
    );
    assert_eq!(
        proxy(p, "POST", "/guard", &k, &[], br#"{"q":"hello"}"#).status,
        200
    );
    // external_api: the validator's verdict.
    assert_eq!(
        proxy(p, "POST", "/validated", &k, &[], br#"{"input":"fine"}"#).status,
        200
    );
    let r = proxy(
        p,
        "POST",
        "/validated",
        &k,
        &[],
        br#"{"input":"forbidden"}"#,
    );
    assert_eq!((r.status, error_of(&r).as_str()), (422, "Content flagged"));

    // 5. Partial rule update, then deletes.
    let put = ok(
        a,
        "PUT",
        &format!("{base}/rules/{}", rule_ids[0]),
        Some(&json!({"active": false})),
        200,
    );
    assert_eq!(
        (put["path"].as_str(), put["active"].as_bool()),
        (Some("/post"), Some(false))
    );
    assert_eq!(proxy(p, "POST", "/post", &k, &[], b"{}").status, 404);
    for rid in &rule_ids {
        ok(a, "DELETE", &format!("{base}/rules/{rid}"), None, 204);
    }
    ok(a, "DELETE", &format!("{base}/services/{sid}"), None, 204);
    ok(
        a,
        "DELETE",
        &format!("{base}/upstreams/{}", id(&up)),
        None,
        204,
    );
    ok(a, "DELETE", &format!("{base}/keys/{}", id(&key)), None, 204);
    ok(a, "DELETE", &base, None, 204);
    assert_eq!(tg(a, "GET", &base, None).0, 404);

    // 6. The seed's hey command (docs' benchmark page), at a smaller count:
    // every request answered 200 through the benchmark flow's gateway.
    let chat_rule = ok(
        a,
        "POST",
        &format!("/gateways/{g1}/upstreams"),
        Some(&json!({
            "name": "chat", "algorithm": "round-robin",
            "targets": [{"host": mock.ip().to_string(), "port": mock.port(), "protocol": "http", "weight": 100, "priority": 1}]
        })),
        201,
    );
    let chat_svc = ok(
        a,
        "POST",
        &format!("/gateways/{g1}/services"),
        Some(&json!({"name": "chat", "type": "upstream", "upstream_id": id(&chat_rule)})),
        201,
    );
    ok(
        a,
        "POST",
        &format!("/gateways/{g1}/rules"),
        Some(
            &json!({"path": "/v1", "service_id": id(&chat_svc), "methods": ["POST"], "active": true}),
        ),
        201,
    );
    let out = std::process::Command::new("hey")
        .args([
            "-n",
            "2000",
            "-c",
            "50",
            "-H",
            &format!("Authorization: Bearer {fresh_key}"),
            "-H",
            "Content-Type: application/json",
            "-m",
            "POST",
            "-d",
            r#"{"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}]}"#,
            &format!("http://{p}/v1/chat/completions"),
        ])
        .output()
        .unwrap_or_else(|e| panic!("hey is needed for this test (apt-get install hey): {e}"));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("[200]\t2000 responses"), "{report}");
    assert!(!report.contains("Error distribution"), "{report}");
    gw.stop();
}
