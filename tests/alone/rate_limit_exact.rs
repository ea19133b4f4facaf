//! Both limiters are exact across shards: with `--shards 2` and many
//! connections spread over both shards, exactly the limit passes.

use crate::common;

use std::net::SocketAddr;

use common::{hammer, spawn_gateway, spawn_mock};
use serde_json::{json, Value};

const KEY: &str = "rg-exact-key";

fn gateway(m: SocketAddr, chain: Value) -> common::Gateway {
    let config = json!({"gateways": [{
        "name": "demo",
        "upstreams": [{"name": "llm", "targets": [{"host": m.ip().to_string(), "port": m.port(), "path": "/echo"}]}],
        "services": [{"name": "svc", "type": "upstream", "upstream": "llm"}],
        "rules": [{"name": "r", "path": "/", "service": "svc", "plugin_chain": chain}],
        "keys": [{"name": "k", "key": KEY}],
    }]});
    spawn_gateway(&config, &["--shards", "2"])
}

#[test]
fn rate_limiter_is_exact_over_two_shards() {
    let _alone = crate::alone();
    let (_mock, m) = spawn_mock(&[]);
    let gw = gateway(
        m,
        json!([{"name": "rate_limiter", "settings": {"limits": {
            "global": {"limit": 50, "window": "10s"},
            "per_key": {"limit": 1000, "window": "10s"}}}}]),
    );
    // 200 requests over 20 connections, spread by the kernel over both shards.
    let (ok, limited, other) = hammer(gw.proxy, KEY, 20, 10, b"{}");
    assert_eq!((ok, limited, other), (50, 150, 0));
}

#[test]
fn token_rate_limiter_is_exact_over_two_shards() {
    let _alone = crate::alone();
    let (_mock, m) = spawn_mock(&[]);
    let gw = gateway(
        m,
        json!([{"name": "token_rate_limiter", "settings": {"tokens_per_minute": 1000}}]),
    );
    // Each body is 20 bytes (5 tokens) + max_tokens 95: 100 tokens reserved;
    // the echo reports no usage, so each stays charged at its estimate.
    let body: &'static [u8] = br#"{"max_tokens":   95}"#;
    assert_eq!(body.len(), 20);
    let (ok, limited, other) = hammer(gw.proxy, KEY, 20, 4, body);
    assert_eq!((ok, limited, other), (10, 70, 0));
}

#[test]
fn leased_permits_never_exceed_the_limit() {
    let _alone = crate::alone();
    // Limit 3,000 per minute: large enough that the owner shard leases the
    // other one up to 3000 / (2 shards × 20 buckets × 8) = 9 permits at a
    // time. 4,000 requests on 40 connections over both shards.
    let (_mock, m) = spawn_mock(&[]);
    let gw = gateway(
        m,
        json!([{"name": "rate_limiter", "settings": {"limits": {
            "global": {"limit": 3000, "window": "1m"}}}}]),
    );
    let started = std::time::Instant::now();
    let (ok, limited, other) = hammer(gw.proxy, KEY, 40, 100, b"{}");
    assert_eq!(other, 0);
    assert_eq!(ok + limited, 4000);
    // Never more than the limit; permits a lease still held when its
    // bucket ended are lost: at most 9 per 3 s bucket the test spans (a
    // loaded machine stretches the run over more buckets).
    assert!(ok <= 3000, "{ok} admitted over a limit of 3000");
    let buckets = (started.elapsed().as_secs() as usize / 3 + 2).max(7);
    assert!(
        ok >= 3000 - 9 * buckets,
        "only {ok} of 3000 admitted over {buckets} buckets"
    );
}
