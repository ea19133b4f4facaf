//! Several shards on one port: new connections spread over them and every one is served.

use crate::common;

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

use common::{
    connect_buffered, header, json_body, one_gateway, read_response, spawn_gateway, spawn_mock,
    target,
};
use serde_json::json;

const KEY: &str = "rg-shard-key";

#[test]
fn sixty_four_concurrent_connections_are_served_by_both_shards() {
    let _alone = crate::alone();
    let (_m, m) = spawn_mock(&[]);
    let config = one_gateway(
        "round-robin",
        json!([target(m)]),
        json!([{"name": "echo", "path": "/echo"}]),
        json!([{"name": "k", "key": KEY}]),
    );
    let gw = spawn_gateway(&config, &["--shards", "2"]);

    // 64 new connections (distinct source ports), all requests in flight at once.
    let started = Instant::now();
    let mut conns: Vec<_> = (0..64).map(|_| connect_buffered(gw.proxy)).collect();
    for (i, (w, _)) in conns.iter_mut().enumerate() {
        let req = format!(
            "GET /echo/{i} HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nx-mock-delay-ms: 200\r\n\r\n"
        );
        w.write_all(req.as_bytes()).unwrap();
    }
    let mut upstream_conns = HashSet::new();
    let mut request_ids = HashSet::new();
    let mut id_prefixes = HashSet::new();
    for (i, (_, r)) in conns.iter_mut().enumerate() {
        let common::Response {
            status,
            headers,
            body,
        } = read_response(r).unwrap();
        assert_eq!(
            status,
            200,
            "request {i}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(json_body(&body)["path"], format!("/echo/{i}"));
        upstream_conns.insert(header(&headers, "x-mock-conn").unwrap().to_string());
        let rid = header(&headers, "x-request-id").unwrap().to_string();
        // Generated ids are a per-shard prefix (16 hex digits) and a per-shard counter
        // (runtime/shard.rs `RequestIds`): the prefixes tell the shards apart.
        assert_eq!(rid.len(), 32, "{rid}");
        id_prefixes.insert(rid[..16].to_string());
        request_ids.insert(rid);
    }
    let took = started.elapsed();
    assert_eq!(request_ids.len(), 64, "request ids are not unique");
    assert!(
        upstream_conns.len() >= 2,
        "only {} upstream connection(s) for 64 concurrent requests",
        upstream_conns.len()
    );
    assert_eq!(
        id_prefixes.len(),
        2,
        "64 connections were not spread over both shards: {id_prefixes:?}"
    );
    // Concurrent, not one after another (64 × 200 ms would be 12.8 s).
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // Keep-alive on each connection still works after the burst.
    for (i, (w, r)) in conns.iter_mut().enumerate().take(8) {
        let req =
            format!("GET /echo/again/{i} HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\n\r\n");
        w.write_all(req.as_bytes()).unwrap();
        let common::Response { status, body, .. } = read_response(r).unwrap();
        assert_eq!(status, 200);
        assert_eq!(json_body(&body)["path"], format!("/echo/again/{i}"));
    }
}

/// `THP_enabled` of a running process, from `/proc/<pid>/status`.
fn thp_enabled(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:").map(|v| v.trim().to_string()))
}

#[test]
fn the_gateway_opts_out_of_transparent_huge_pages_unless_asked() {
    let _alone = crate::alone();
    let config = one_gateway(
        "round-robin",
        json!([{"host": "127.0.0.1", "port": 9, "protocol": "http", "weight": 1}]),
        json!([{"name": "echo", "path": "/echo"}]),
        json!([{"name": "k", "key": KEY}]),
    );
    // The gateway is ready (spawn_gateway waited for it), so the switch is made.
    let off = spawn_gateway(&config, &["--shards", "1"]);
    assert_eq!(thp_enabled(off.pid()).as_deref(), Some("0"));
    let on = spawn_gateway(&config, &["--shards", "1", "--huge-pages", "on"]);
    assert_eq!(thp_enabled(on.pid()).as_deref(), Some("1"));
}
