//! Model fallbacks and aliases end to end: a rule's primary service fails
//! (429, 5xx, timeout, refused connection, context-length 400) and the next
//! step of its `fallbacks` answers — across providers with translation, JSON
//! and streams — with `X-Model-Used` / `X-Fallback-Step`, the metrics, no
//! fallback once bytes reached the client, and the admin API's validation.

use crate::common;

use std::net::SocketAddr;

use common::{dead_port, header, json_body, post_json, scrape, spawn_gateway, spawn_mock, target};
use serde_json::{json, Value};

const KEY: &str = "rg-fallback-key";

/// A target on `addr` that always gets the request headers `headers` (the
/// mock obeys `x-mock-*` headers, so the target fails in a fixed way).
fn failing(addr: SocketAddr, headers: Value) -> Value {
    let mut t = target(addr);
    t["headers"] = headers;
    t
}

struct Setup {
    gw: common::Gateway,
    log: std::path::PathBuf,
    _a: common::ChildGuard,
    _b: common::ChildGuard,
}

/// Mock `a` plays the failing primaries, mock `b` the backups (OpenAI
/// `backup`, Anthropic `claude`). One rule per scenario, each `/<name>`
/// (stripped) on service `<name>`.
fn setup() -> Setup {
    let (a_guard, a) = spawn_mock(&["--name", "a", "--stream-interval-ms", "1"]);
    let (b_guard, b) = spawn_mock(&["--name", "b", "--stream-interval-ms", "1"]);
    let mut claude = target(b);
    claude["provider"] = json!("anthropic");
    claude["credentials"] = json!({"api_key": "sk-ant-backup"});
    let mut pinged = failing(
        a,
        json!({"x-mock-delay-ms": "1300", "x-mock-status": "429"}),
    );
    pinged["sse_ping_secs"] = json!(1);
    let dead = json!({"host": "127.0.0.1", "port": dead_port(), "protocol": "http"});
    let upstreams = json!([
        {"name": "p429", "targets": [failing(a, json!({"x-mock-status": "429"}))]},
        {"name": "p500", "targets": [failing(a, json!({"x-mock-status": "503"}))]},
        {"name": "pctx", "targets": [failing(a, json!({"x-mock-error": "context-length"}))]},
        {"name": "pslow", "targets": [failing(a, json!({"x-mock-delay-ms": "4000"}))]},
        {"name": "pdead", "targets": [dead]},
        {"name": "p400", "targets": [failing(a, json!({"x-mock-status": "400"}))]},
        {"name": "pinged", "targets": [pinged]},
        {"name": "backup", "targets": [target(b)]},
        {"name": "claude", "targets": [claude]},
    ]);
    let to_backup = json!([{"upstream": "backup", "model": "backup-model"}]);
    let rules: &[(&str, &str, Value)] = &[
        ("r429", "p429", to_backup.clone()),
        ("r500", "p500", to_backup.clone()),
        (
            "rctx",
            "pctx",
            json!([{"upstream": "claude", "model": "claude-long"}]),
        ),
        ("rslow", "pslow", to_backup.clone()),
        ("rdead", "pdead", to_backup.clone()),
        ("r400", "p400", to_backup.clone()),
        ("rping", "pinged", to_backup.clone()),
        (
            "ranth",
            "p429",
            json!([{"upstream": "claude", "model": "claude-backup"}]),
        ),
        (
            "rchain",
            "p429",
            json!([{"upstream": "p500", "model": "m1"}, {"upstream": "backup", "model": "m2"}]),
        ),
        ("rnone", "p429", json!([])),
    ];
    let mut services = vec![json!({"name": "alias", "type": "upstream", "upstream": "backup"})];
    let mut rule_list = vec![
        json!({"name": "alias", "path": "/alias", "service": "alias",
        "strip_path": true, "model_aliases": {"fast": "gpt-4o-mini", "smart": "gpt-4o"},
        "fallbacks": []}),
    ];
    for (name, up, fb) in rules {
        services.push(json!({"name": name, "type": "upstream", "upstream": up}));
        rule_list.push(
            json!({"name": name, "path": format!("/{name}"), "service": name,
            "strip_path": true, "fallbacks": fb}),
        );
    }
    let log_dir = common::unique_temp_dir("fallback-log");
    std::fs::create_dir_all(&log_dir).unwrap();
    let log = log_dir.join("access.log");
    let gw = spawn_gateway(
        &json!({"gateways": [{"name": "fb", "upstreams": upstreams, "services": services,
            "rules": rule_list, "keys": [{"name": "k", "key": KEY}]}]}),
        &[
            "--upstream-timeout-ms",
            "2000",
            "--access-log",
            log.to_str().unwrap(),
        ],
    );
    Setup {
        gw,
        log,
        _a: a_guard,
        _b: b_guard,
    }
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn streamed(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": true,
           "stream_options": {"include_usage": true}})
}

fn fallbacks(text: &str, reason: &str) -> u64 {
    let prefix = format!("ringgate_fallbacks_total{{gateway=\"fb\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.parse().unwrap())
}

/// Asserts an OpenAI JSON answer served by mock `b` at step `step` with `model`.
fn assert_served(resp: &common::Response, step: &str, model: &str) {
    let common::Response {
        status,
        headers,
        body,
    } = resp;
    assert_eq!(*status, 200, "{}", String::from_utf8_lossy(body));
    assert_eq!(header(headers, "x-mock-name"), Some("b"));
    assert_eq!(header(headers, "x-fallback-step"), Some(step));
    assert_eq!(header(headers, "x-model-used"), Some(model));
    let v = json_body(body);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], model, "the upstream got the concrete model");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from mock");
}

#[test]
fn failures_fall_back_to_the_next_step() {
    let s = setup();
    let p = s.gw.proxy;
    // One step for each reason; rchain: 429, then 503, then the backup.
    for (rule, step, model) in [
        ("r429", "1", "backup-model"),
        ("r500", "1", "backup-model"),
        ("rslow", "1", "backup-model"),
        ("rdead", "1", "backup-model"),
        ("rchain", "2", "m2"),
    ] {
        let path = format!("/{rule}/v1/chat/completions");
        assert_served(&post_json(p, &path, KEY, "", &chat("gpt-x")), step, model);
    }
    // A plain 400 is the client's problem: relayed, no fallback.
    let common::Response {
        status,
        headers,
        body,
    } = post_json(p, "/r400/v1/chat/completions", KEY, "", &chat("gpt-x"));
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&headers, "x-mock-name"), Some("a"));
    assert_eq!(header(&headers, "x-fallback-step"), Some("0"));
    assert_eq!(json_body(&body)["error"]["message"], "mock status 400");
    // Without fallbacks the primary's 429 is the answer.
    let common::Response {
        status, headers, ..
    } = post_json(p, "/rnone/v1/chat/completions", KEY, "", &chat("gpt-x"));
    assert_eq!(status, 429);
    assert_eq!(header(&headers, "x-mock-name"), Some("a"));

    // The access log names the model sent and the step, on fallback rules only.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(&s.log).unwrap_or_default();
        let lines: Vec<Value> = text.lines().map(|l| json_body(l.as_bytes())).collect();
        if lines.len() >= 7 || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let line = |rule: &str| {
        lines
            .iter()
            .find(|l| l["rule"] == rule)
            .unwrap_or_else(|| panic!("no {rule} line in {lines:#?}"))
    };
    assert_eq!(line("r429")["model_used"], "backup-model");
    assert_eq!(line("r429")["fallback_step"], 1);
    assert_eq!(line("rchain")["fallback_step"], 2);
    assert_eq!(
        (
            line("r400")["status"].as_u64(),
            line("r400")["fallback_step"].as_u64()
        ),
        (Some(400), Some(0))
    );
    assert!(line("rnone").get("fallback_step").is_none(), "{lines:#?}");

    let m = scrape(s.gw.admin);
    assert!(m.contains("# TYPE ringgate_fallbacks_total counter"), "{m}");
    assert_eq!(fallbacks(&m, "429"), 2, "r429 and rchain's first step");
    assert_eq!(fallbacks(&m, "5xx"), 2, "r500 and rchain's second step");
    assert_eq!(fallbacks(&m, "timeout"), 1);
    assert_eq!(fallbacks(&m, "connect"), 1);
    assert_eq!(fallbacks(&m, "context_length"), 0);
}

#[test]
fn openai_request_falls_back_to_anthropic_translated() {
    let s = setup();
    let p = s.gw.proxy;
    let common::Response {
        status,
        headers,
        body,
    } = post_json(p, "/ranth/v1/chat/completions", KEY, "", &chat("gpt-x"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&headers, "x-mock-name"), Some("b"));
    assert_eq!(header(&headers, "x-fallback-step"), Some("1"));
    assert_eq!(header(&headers, "x-model-used"), Some("claude-backup"));
    let v = json_body(&body);
    assert_eq!(v["object"], "chat.completion", "OpenAI format back: {v}");
    assert_eq!(v["model"], "claude-backup");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from mock");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    // Streaming: Anthropic events become OpenAI chunks, usage and [DONE].
    let common::Response {
        status,
        headers,
        body,
    } = post_json(p, "/ranth/v1/chat/completions", KEY, "", &streamed("gpt-x"));
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&headers, "x-fallback-step"), Some("1"));
    assert_eq!(header(&headers, "x-model-used"), Some("claude-backup"));
    let usage = common::assert_mock_openai_stream(&body);
    assert_eq!(usage["completion_tokens"], 5);

    // A context-length 400 moves on too (to a longer-context model).
    let common::Response {
        status,
        headers,
        body,
    } = post_json(p, "/rctx/v1/chat/completions", KEY, "", &chat("gpt-x"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&headers, "x-fallback-step"), Some("1"));
    assert_eq!(header(&headers, "x-model-used"), Some("claude-long"));
    assert_eq!(json_body(&body)["object"], "chat.completion");
    let m = scrape(s.gw.admin);
    assert_eq!(fallbacks(&m, "context_length"), 1, "{m}");
    assert_eq!(fallbacks(&m, "429"), 2);
}

/// The primary's answer comes after an early SSE head (keep-alive pings):
/// bytes reached the client, so its 429 ends the stream as an error event
/// and the backup is never asked.
#[test]
fn no_fallback_once_bytes_reached_the_client() {
    let s = setup();
    let common::Response {
        status,
        headers,
        body,
    } = post_json(
        s.gw.proxy,
        "/rping/v1/chat/completions",
        KEY,
        "",
        &streamed("gpt-x"),
    );
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with(": ping"), "{text}");
    assert!(text.contains("event: error"), "{text}");
    assert!(text.contains("\"status\":429"), "{text}");
    assert!(!text.contains("Hello") && !text.contains("tok0"), "{text}");
    let m = scrape(s.gw.admin);
    assert_eq!(fallbacks(&m, "429"), 0, "{m}");
}

#[test]
fn aliases_name_the_concrete_model() {
    let s = setup();
    let p = s.gw.proxy;
    // Aliases, and a model that is none, sent as asked.
    for (asked, sent) in [
        ("fast", "gpt-4o-mini"),
        ("smart", "gpt-4o"),
        ("gpt-4.1", "gpt-4.1"),
    ] {
        assert_served(
            &post_json(p, "/alias/v1/chat/completions", KEY, "", &chat(asked)),
            "0",
            sent,
        );
    }
    // Streams too: the chunks name the concrete model.
    let common::Response {
        status,
        headers,
        body,
    } = post_json(p, "/alias/v1/chat/completions", KEY, "", &streamed("fast"));
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-model-used"), Some("gpt-4o-mini"));
    let ev = common::sse_data(&body);
    assert!(
        ev.iter()
            .filter(|e| *e != "[DONE]")
            .all(|e| e["model"] == "gpt-4o-mini"),
        "{ev:?}"
    );
    // A step's own model wins over the alias: r429's backup gets backup-model.
    assert_served(
        &post_json(p, "/r429/v1/chat/completions", KEY, "", &chat("fast")),
        "1",
        "backup-model",
    );
}

#[test]
fn admin_api_validates_fallbacks_and_aliases() {
    let s = setup();
    let admin = s.gw.admin;
    let (status, gws) = common::admin::call(admin, "GET", "/api/v1/gateways", None, None);
    assert_eq!(status, 200, "{gws}");
    let list = gws
        .as_array()
        .or(gws["gateways"].as_array())
        .expect("gateway list");
    let gid = list[0]["id"].as_str().unwrap().to_string();
    let rules = format!("/api/v1/gateways/{gid}/rules");
    let (_, svcs) = common::admin::call(
        admin,
        "GET",
        &format!("/api/v1/gateways/{gid}/services"),
        None,
        None,
    );
    let svcs = svcs
        .as_array()
        .or(svcs["services"].as_array())
        .expect("services")
        .clone();
    let svc = svcs[0]["id"].as_str().unwrap().to_string();
    let rule = |extra: Value| {
        let mut r = json!({"name": "new", "path": "/new", "service_id": svc});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    };
    let cases = [
        (
            json!({"fallbacks": [{"upstream": "nope", "model": "m"}]}),
            "fallbacks[0].upstream",
            "nope",
        ),
        (
            json!({"fallbacks": [{"upstream": "backup", "model": " "}]}),
            "fallbacks[0].model",
            "empty",
        ),
        (
            json!({"fallbacks": vec![json!({"upstream": "backup", "model": "m"}); 5]}),
            "fallbacks",
            "at most 4",
        ),
        (
            json!({"model_aliases": {"fast": ""}}),
            "model_aliases.fast",
            "empty",
        ),
        (json!({"fallbacks": [{"upstream": "backup"}]}), "", "model"),
    ];
    for (extra, field, words) in cases {
        let (status, v) =
            common::admin::call(admin, "POST", &rules, Some(&rule(extra.clone())), None);
        assert_eq!(status, 400, "{extra} → {v}");
        let text = v.to_string();
        assert!(text.contains(field), "{extra}: field {field} in {v}");
        assert!(text.contains(words), "{extra}: {words:?} in {v}");
    }
    // An endpoint service has no JSON body to rewrite: refused.
    let (status, ep) = common::admin::call(
        admin,
        "POST",
        &format!("/api/v1/gateways/{gid}/services"),
        Some(&json!({"name": "ep", "type": "endpoint", "host": "127.0.0.1", "port": 9})),
        None,
    );
    assert_eq!(status, 201, "{ep}");
    let mut on_endpoint = rule(json!({"model_aliases": {"fast": "m"}}));
    on_endpoint["service_id"] = ep["id"].clone();
    let (status, v) = common::admin::call(admin, "POST", &rules, Some(&on_endpoint), None);
    assert_eq!(status, 400, "{v}");
    assert!(
        v.to_string().contains("fallbacks") && v.to_string().contains("upstream"),
        "{v}"
    );
    // Nothing was created: the new path is not routed.
    let common::Response { status, .. } =
        post_json(s.gw.proxy, "/new/v1/chat/completions", KEY, "", &chat("m"));
    assert_eq!(status, 404);
    // A valid one is stored and acted on at once.
    let ok = rule(json!({"fallbacks": [{"upstream": "backup", "model": "via-admin"}]}));
    let (status, v) = common::admin::call(admin, "POST", &rules, Some(&ok), None);
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        v["fallbacks"],
        json!([{"upstream": "backup", "model": "via-admin"}])
    );
}

/// A `budget` on a rule with aliases and fallbacks prices the concrete
/// model: an alias is not refused as unpriced, and an answer from a
/// fallback step is settled at that step's model's price.
#[test]
fn budgets_price_the_alias_and_the_step_model() {
    let (_a, a) = spawn_mock(&["--name", "a"]);
    let (_b, b) = spawn_mock(&["--name", "b"]);
    // One budget over both rules (the gateway's required plugins).
    let budget = json!([{"name": "budget",
        "settings": {"daily_usd": 1000, "monthly_usd": 1000, "default_max_tokens": 1}}]);
    let gw = spawn_gateway(
        &json!({
            "prices": {"cheap": {"input": 1, "output": 1}, "dear": {"input": 1000, "output": 2000}},
            "gateways": [{"name": "fb", "required_plugins": budget,
                "upstreams": [
                    {"name": "busy", "targets": [failing(a, json!({"x-mock-status": "429"}))]},
                    {"name": "backup", "targets": [target(b)]}],
                "services": [{"name": "busy", "type": "upstream", "upstream": "busy"},
                             {"name": "backup", "type": "upstream", "upstream": "backup"}],
                "rules": [
                    {"name": "fb", "path": "/fb", "service": "busy", "strip_path": true,
                     "model_aliases": {"fast": "cheap"},
                     "fallbacks": [{"upstream": "backup", "model": "dear"}]},
                    {"name": "probe", "path": "/probe", "service": "backup", "strip_path": true,
                     "model_aliases": {"fast": "cheap"}}],
                "keys": [{"name": "k", "key": KEY}]}]}),
        &[],
    );
    let remaining = |resp: &common::Response| -> f64 {
        header(&resp.headers, "x-budget-remaining-usd")
            .unwrap_or_else(|| panic!("no budget header: {:?}", resp.headers))
            .parse()
            .unwrap()
    };
    // The alias is priced as `cheap` (unaliased, `fast` has no price: 400).
    let probe = post_json(
        gw.proxy,
        "/probe/v1/chat/completions",
        KEY,
        "",
        &chat("fast"),
    );
    assert_eq!(
        probe.status,
        200,
        "{}",
        String::from_utf8_lossy(&probe.body)
    );
    assert_eq!(header(&probe.headers, "x-model-used"), Some("cheap"));
    let before = remaining(&probe);
    assert!(before > 999.999, "{before}");
    // Falls back to `dear`: settled at its price (at least 3 output tokens
    // at 2000 µ$), not at the cheap estimate (a few µ$).
    let served = post_json(gw.proxy, "/fb/v1/chat/completions", KEY, "", &chat("fast"));
    assert_served(&served, "1", "dear");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let probe = post_json(
            gw.proxy,
            "/probe/v1/chat/completions",
            KEY,
            "",
            &chat("fast"),
        );
        assert_eq!(probe.status, 200);
        let left = remaining(&probe);
        if left < before - 0.006 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fallback answer was not settled at the dear price: {left} left of {before}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
