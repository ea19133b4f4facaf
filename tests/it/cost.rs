//! Cost of answers: the price table (built-in examples, configuration
//! overrides), the cost of JSON, streamed and translated answers in
//! `/metrics` and the access log, and the spend endpoint per key.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::admin::call;
use common::{json_body, roundtrip, scrape, spawn_gateway, spawn_mock, target, Gateway};
use serde_json::{json, Value};

const KEY: &str = "rg-cost-key";

/// Gateway `g1` with key `k1`: `/gpt` → an OpenAI-format mock, `/claude` →
/// the same mock as an Anthropic target (translated); `priced` costs $1000
/// and $2000 per million tokens (1000 and 2000 µ$ a token).
fn gateway(m: SocketAddr, extra: &[&str]) -> Gateway {
    let mut anth = target(m);
    anth["provider"] = json!("anthropic");
    anth["credentials"] = json!({"api_key": "sk-ant"});
    let config = json!({
        "prices": {"priced": {"input": 1000, "output": 2000},
                   "claude-priced": {"input": 10, "output": 20}},
        "gateways": [{
            "id": "g1", "name": "demo",
            "upstreams": [{"name": "gpt", "targets": [target(m)]},
                          {"name": "claude", "targets": [anth]}],
            "services": [{"name": "gpt", "type": "upstream", "upstream": "gpt"},
                         {"name": "claude", "type": "upstream", "upstream": "claude"}],
            "rules": [{"name": "gpt", "path": "/gpt", "service": "gpt", "strip_path": true},
                      {"name": "claude", "path": "/claude", "service": "claude", "strip_path": true}],
            "keys": [{"id": "k1", "name": "k", "key": KEY}],
        }]
    });
    spawn_gateway(&config, extra)
}

fn chat(gw: &Gateway, path: &str, body: &Value) -> (u16, Vec<u8>) {
    let b = serde_json::to_string(body).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    );
    let common::Response { status, body, .. } = roundtrip(gw.proxy, &req);
    (status, body)
}

/// The value of the cost sample for `model`, if any.
fn cost_of(text: &str, model: &str) -> Option<u64> {
    let want =
        format!("ringgate_cost_micro_usd_total{{gateway=\"demo\",key=\"k1\",model=\"{model}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .map(|v| v.trim().parse().unwrap())
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cost_of_json_streamed_and_translated_answers() {
    let (_mock, m) = spawn_mock(&["--stream-interval-ms", "1"]);
    let dir = common::unique_temp_dir("cost-log");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let gw = gateway(m, &["--access-log", log.to_str().unwrap()]);

    // JSON: the mock reports prompt = message bytes / 4 and 3 completion tokens.
    let req = json!({"model": "priced", "messages": [{"role": "user", "content": "hello there"}]});
    let (s, body) = chat(&gw, "/gpt/v1/chat/completions", &req);
    assert_eq!(s, 200);
    let u = &json_body(&body)["usage"];
    let (p, c) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    let json_cost = p * 1000 + c * 2000;

    // A stream: the usage event at its end is read.
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let (s, body) = chat(&gw, "/gpt/v1/chat/completions", &sreq);
    assert_eq!(s, 200);
    let stream_cost = common::priced_stream_cost(&body);

    // Translated (OpenAI client, Anthropic target): 9 in, 3 out at $10/$20 per M.
    let treq = json!({"model": "claude-priced", "messages": [{"role": "user", "content": "hi"}]});
    let (s, body) = chat(&gw, "/claude/v1/chat/completions", &treq);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_body(&body)["usage"]["prompt_tokens"], 9);

    // A built-in default price (gpt-4o-mini: $0.15 in, $0.60 out per M).
    let dreq = json!({"model": "gpt-4o-mini-2024-07-18", "messages": [{"role": "user", "content": "hello there"}]});
    assert_eq!(chat(&gw, "/gpt/v1/chat/completions", &dreq).0, 200);
    let default_cost = (p * 150_000 + c * 600_000).div_ceil(1_000_000);

    // An unpriced model costs nothing and is not counted.
    let ureq = json!({"model": "unknown-model", "messages": [{"role": "user", "content": "x"}]});
    assert_eq!(chat(&gw, "/gpt/v1/chat/completions", &ureq).0, 200);

    let text = wait_for("cost metrics", || {
        let t = scrape(gw.admin);
        cost_of(&t, "gpt-4o-mini-2024-07-18").map(|_| t)
    });
    assert_eq!(
        cost_of(&text, "priced"),
        Some(json_cost + stream_cost),
        "{text}"
    );
    assert_eq!(
        cost_of(&text, "claude-priced"),
        Some(9 * 10 + 3 * 20),
        "{text}"
    );
    assert_eq!(cost_of(&text, "gpt-4o-mini-2024-07-18"), Some(default_cost));
    assert_eq!(cost_of(&text, "unknown-model"), None);

    // The access log carries each answer's cost in dollars.
    let lines: Vec<Value> = wait_for("access log lines", || {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        let v: Vec<Value> = t
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (v.len() >= 5).then_some(v)
    });
    let costs: Vec<Value> = lines.iter().map(|l| l["cost_usd"].clone()).collect();
    assert_eq!(
        costs,
        [
            json!(json_cost as f64 / 1e6),
            json!(stream_cost as f64 / 1e6),
            json!(150e-6),
            json!(default_cost as f64 / 1e6),
            Value::Null
        ]
    );

    // Spend per key: today and this month hold everything above.
    let total = json_cost + stream_cost + 150 + default_cost;
    for period in ["day", "month"] {
        let v = common::admin::spend(gw.admin, "g1", "k1", period);
        assert_eq!(v["spend_micro_usd"], total, "{v}");
        assert_eq!(v["period"], period);
        assert!(v["period_start"].as_str().unwrap().ends_with("T00:00:00Z"));
    }
    let (s, v) = call(
        gw.admin,
        "GET",
        "/api/v1/gateways/g1/keys/k1/spend?period=year",
        None,
        None,
    );
    assert_eq!((s, v["field"].as_str()), (400, Some("period")), "{v}");
    let (s, _) = call(
        gw.admin,
        "GET",
        "/api/v1/gateways/g1/keys/nope/spend",
        None,
        None,
    );
    assert_eq!(s, 404);
}

#[test]
fn bad_prices_are_refused_naming_the_field() {
    let (_mock, m) = spawn_mock(&[]);
    let gw = gateway(m, &[]);
    let (s, mut cfg) = call(gw.admin, "GET", "/api/v1/config", None, None);
    assert_eq!(s, 200);
    assert_eq!(cfg["prices"]["priced"]["input"], 1000.0);
    cfg["prices"]["priced"]["output"] = json!(-1);
    let (s, v) = call(gw.admin, "PUT", "/api/v1/config", Some(&cfg), None);
    assert_eq!(
        (s, v["field"].as_str()),
        (400, Some("prices.priced.output")),
        "{v}"
    );
    cfg["prices"]["priced"]["output"] = json!(2000);
    cfg["prices"]["priced"]["extra"] = json!(1);
    let (s, v) = call(gw.admin, "PUT", "/api/v1/config", Some(&cfg), None);
    assert_eq!(s, 400, "{v}");
    // Nothing changed.
    let (_, now) = call(gw.admin, "GET", "/api/v1/config", None, None);
    assert_eq!(now["prices"]["priced"]["output"], 2000.0);
}
