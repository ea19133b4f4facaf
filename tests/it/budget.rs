//! The `budget` plugin: dollars per key per day and month, reserved before
//! the request goes out and settled to the answer's cost, exact over two
//! shards.

use crate::common;

use std::io::Write;
use std::net::SocketAddr;

use common::admin::call;
use common::{
    connect_buffered, dead_port, header, json_body, post, read_response, roundtrip, spawn_gateway,
    spawn_mock, Gateway,
};
use serde_json::{json, Value};

const KEY: &str = "rg-budget-key";

/// Gateway `g1`, key `k1`, `budget` in its required plugins (so it covers
/// every rule): `/x` → the mock's chat completions, `/dead` → nothing
/// listening. `priced` costs 1000 µ$ per input and 2000 µ$ per output token.
fn gateway(m: SocketAddr, budget: Value, shards: &str) -> Gateway {
    let dead = dead_port();
    let config = json!({
        "prices": {"priced": {"input": 1000, "output": 2000}},
        "gateways": [{
            "id": "g1", "name": "demo",
            "required_plugins": [{"name": "budget", "settings": budget}],
            "upstreams": [
                {"name": "llm", "targets": [{"host": m.ip().to_string(), "port": m.port(), "path": "/v1/chat/completions"}]},
                {"name": "dead", "targets": [{"host": "127.0.0.1", "port": dead}]}],
            "services": [{"name": "svc", "type": "upstream", "upstream": "llm"},
                         {"name": "dead", "type": "upstream", "upstream": "dead"}],
            "rules": [{"name": "x", "path": "/x", "service": "svc", "strip_path": true},
                      {"name": "dead", "path": "/dead", "service": "dead"}],
            "keys": [{"id": "k1", "name": "k", "key": KEY}],
        }]
    });
    spawn_gateway(&config, &["--shards", shards])
}

fn spend(gw: &Gateway, period: &str) -> u64 {
    common::admin::spend(gw.admin, "g1", "k1", period)["spend_micro_usd"]
        .as_u64()
        .unwrap()
}

/// Waits until the spend endpoint shows `want` (answers are counted as
/// they end, a moment after the client has them).
fn spend_reaches(gw: &Gateway, period: &str, want: u64) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = spend(gw, period);
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "{period} spend {got}, want {want}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn budget_is_exact_over_two_shards() {
    let (_mock, m) = spawn_mock(&[]);
    // One token of prompt estimated (chars_per_token is large) and the mock
    // reports one; max_tokens 3 and the mock answers 3: every request costs
    // exactly its estimate, 1000 + 3 × 2000 = 7000 µ$. $0.07 a day: 10 pass.
    let gw = gateway(
        m,
        json!({"daily_usd": 0.07, "monthly_usd": 1, "chars_per_token": 100000}),
        "2",
    );
    let body: &'static [u8] = br#"{"model":"priced","max_tokens":3,"messages":[]}"#;
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let addr = gw.proxy;
            std::thread::spawn(move || {
                let mut counts = (0, 0, 0);
                let (mut s, mut r) = connect_buffered(addr);
                for _ in 0..4 {
                    let head = format!(
                        "POST /x HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    s.write_all(head.as_bytes()).unwrap();
                    s.write_all(body).unwrap();
                    match read_response(&mut r).unwrap().status {
                        200 => counts.0 += 1,
                        429 => counts.1 += 1,
                        _ => counts.2 += 1,
                    }
                }
                counts
            })
        })
        .collect();
    let counts = threads.into_iter().fold((0, 0, 0), |a, t| {
        let c = t.join().unwrap();
        (a.0 + c.0, a.1 + c.1, a.2 + c.2)
    });
    assert_eq!(counts, (10, 70, 0));
    spend_reaches(&gw, "day", 70_000);
    spend_reaches(&gw, "month", 70_000);
}

#[test]
fn budget_settles_to_the_answers_cost_and_says_when_it_resets() {
    let (_mock, m) = spawn_mock(&["--stream-interval-ms", "1"]);
    let gw = gateway(
        m,
        json!({"daily_usd": 0.25, "chars_per_token": 100000}),
        "1",
    );
    // Estimated 1000 + 100 × 2000 = 201000 µ$; the mock's answer costs 7000.
    let body = r#"{"model":"priced","max_tokens":100,"messages":[]}"#;

    // A stream is settled from its usage event.
    let stream = r#"{"model":"priced","max_tokens":100,"stream":true,"messages":[]}"#;
    let r = roundtrip(gw.proxy, &post("/x", KEY, "", stream));
    assert_eq!(r.status, 200);
    assert!(header(&r.headers, "x-budget-remaining-usd").is_some());
    let stream_cost = common::priced_stream_cost(&r.body);
    spend_reaches(&gw, "day", stream_cost);

    // An upstream that never answers gives its reservation back.
    assert_eq!(
        roundtrip(gw.proxy, &post("/dead", KEY, "", body)).status,
        502
    );
    // A model without a price cannot be budgeted.
    let r = roundtrip(
        gw.proxy,
        &post(
            "/x",
            KEY,
            "",
            r#"{"model":"nobody-prices-me","messages":[]}"#,
        ),
    );
    assert_eq!(r.status, 400);
    assert!(json_body(&r.body)["error"]
        .as_str()
        .unwrap()
        .contains("has no price"));

    // JSON answers settle to 7000 each: while 201000 still fits, they pass.
    let fits = (250_000 - 201_000 - stream_cost) / 7000 + 1;
    let mut ok = 0;
    let refused = loop {
        let r = roundtrip(gw.proxy, &post("/x", KEY, "", body));
        match r.status {
            200 => ok += 1,
            429 => break r,
            s => panic!("status {s}: {}", String::from_utf8_lossy(&r.body)),
        }
        assert!(ok <= fits, "more passed than the budget covers");
    };
    assert_eq!(ok, fits);
    let msg = json_body(&refused.body)["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with("daily budget of $0.25 for this key is spent"),
        "{msg}"
    );
    assert!(msg.contains("it allows this request again in"), "{msg}");
    let retry: u64 = header(&refused.headers, "retry-after")
        .unwrap()
        .parse()
        .unwrap();
    // The window is counted in 20 buckets of 72 minutes; a count leaves it
    // up to one bucket after 24 hours (never early).
    assert!(retry > 0 && retry <= 86_400 + 4_320, "{retry}");
    spend_reaches(&gw, "day", stream_cost + 7000 * fits);
    // A smaller request still fits in what is left.
    let small = r#"{"model":"priced","max_tokens":3,"messages":[]}"#;
    let r = roundtrip(gw.proxy, &post("/x", KEY, "", small));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn budget_settings_are_checked() {
    let (_mock, m) = spawn_mock(&[]);
    let gw = gateway(m, json!({"monthly_usd": 5}), "1");
    let (_, mut cfg) = call(gw.admin, "GET", "/api/v1/config", None, None);
    cfg["gateways"][0]["required_plugins"][0]["settings"] = json!({"daily_usd": 0});
    let (s, v) = call(gw.admin, "PUT", "/api/v1/config", Some(&cfg), None);
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        v["field"],
        "gateways[0].required_plugins[0].settings.daily_usd"
    );
}
