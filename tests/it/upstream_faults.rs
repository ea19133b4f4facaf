//! Misbehaving upstreams: refused, reset, slow, garbage, closed; retries; the gateway survives.

use crate::common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{
    closed_within, connect_buffered, dead_port, get, header, json_body, read_head, read_response,
    roundtrip, spawn_gateway, spawn_mock, target, ChildGuard, Gateway, Response,
};
use serde_json::json;

const KEY: &str = "rg-faults-key";

fn setup(extra: &[&str]) -> (ChildGuard, Gateway) {
    let (mock, m) = spawn_mock(&[]);
    let dead = json!({"host": "127.0.0.1", "port": dead_port()});
    // The mixed targets prefix "/echo" (the mock answers 404 elsewhere); the
    // rules strip their path (without strip_path a target's path would be
    // the whole upstream path).
    let mut dead_echo = dead.clone();
    dead_echo["path"] = json!("/echo");
    let mut live_echo = target(m);
    live_echo["path"] = json!("/echo");
    let config = json!({"gateways": [{
        "name": "faults",
        "upstreams": [
            {"name": "live", "targets": [target(m)]},
            {"name": "dead", "targets": [dead]},
            {"name": "mixed", "algorithm": "round-robin", "targets": [dead_echo, live_echo]}
        ],
        "services": [
            {"name": "live", "type": "upstream", "upstream": "live"},
            {"name": "dead", "type": "upstream", "upstream": "dead"},
            {"name": "mixed", "type": "upstream", "upstream": "mixed"}
        ],
        "rules": [
            {"name": "echo", "path": "/echo", "service": "live"},
            {"name": "dead", "path": "/dead", "service": "dead"},
            {"name": "retry", "path": "/retry", "service": "mixed", "retry_attempts": 1, "strip_path": true},
            {"name": "noretry", "path": "/noretry", "service": "mixed", "strip_path": true}
        ],
        "keys": [{"name": "k", "key": KEY}]
    }]});
    (mock, spawn_gateway(&config, extra))
}

fn assert_gateway_error(resp: &Response, status: u16) {
    let Response {
        status: s,
        headers,
        body,
    } = resp;
    assert_eq!(*s, status, "body {}", String::from_utf8_lossy(body));
    assert!(header(headers, "x-mock-conn").is_none(), "{headers:?}");
    assert!(header(headers, "x-request-id").is_some());
    assert!(json_body(body)["error"].is_string());
}

fn ping_ok(gw: &mut Gateway) {
    assert!(gw.alive(), "the gateway process exited");
    let common::Response { status, body, .. } =
        roundtrip(gw.proxy, "GET /__/ping HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert_eq!(status, 200);
    assert_eq!(body, br#"{"message":"pong"}"#);
}

#[test]
fn nothing_listening_is_502() {
    let (_m, mut gw) = setup(&[]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    for _ in 0..3 {
        s.write_all(get("/dead", KEY, "").as_bytes()).unwrap();
        let resp = read_response(&mut r).unwrap();
        assert_gateway_error(&resp, 502);
    }
    // Same client connection, a live rule: fine.
    s.write_all(get("/echo", KEY, "").as_bytes()).unwrap();
    assert_eq!(read_response(&mut r).unwrap().status, 200);
    ping_ok(&mut gw);
}

#[test]
fn reset_mid_body_truncates_and_closes_the_client() {
    let (_m, mut gw) = setup(&[]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(get("/echo", KEY, "x-mock-fault: reset-mid-body\r\n").as_bytes())
        .unwrap();
    let (status, headers) = read_head(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-length"), Some("1000"));
    let mut body = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match r.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(closed, "client connection left open after a truncated body");
    assert!(body.len() < 1000, "got {} bytes", body.len());
    assert!(body.starts_with(b"{\"partial\":\""), "{body:?}");
    ping_ok(&mut gw);
    assert_eq!(roundtrip(gw.proxy, &get("/echo", KEY, "")).status, 200);
}

#[test]
fn slow_upstream_is_504() {
    let (_m, mut gw) = setup(&["--upstream-timeout-ms", "500"]);
    let started = Instant::now();
    let resp = roundtrip(gw.proxy, &get("/echo", KEY, "x-mock-delay-ms: 2000\r\n"));
    let took = started.elapsed();
    assert_gateway_error(&resp, 504);
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1900),
        "504 after {took:?}"
    );
    ping_ok(&mut gw);
    // A quick request on the same gateway still works.
    assert_eq!(roundtrip(gw.proxy, &get("/echo", KEY, "")).status, 200);
}

#[test]
fn garbage_and_close_are_502() {
    let (_m, mut gw) = setup(&[]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    for fault in ["garbage", "close", "garbage", "close"] {
        s.write_all(get("/echo", KEY, &format!("x-mock-fault: {fault}\r\n")).as_bytes())
            .unwrap();
        let resp = read_response(&mut r).unwrap();
        assert_gateway_error(&resp, 502);
    }
    s.write_all(get("/echo", KEY, "").as_bytes()).unwrap();
    assert_eq!(read_response(&mut r).unwrap().status, 200);
    ping_ok(&mut gw);
}

#[test]
fn stale_pooled_connection_is_replaced_transparently() {
    let (_m, gw) = setup(&[]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    for round in 0..5 {
        // The mock answers, then closes its side of the (pooled) upstream connection.
        s.write_all(get("/echo/first", KEY, "x-mock-fault: close-after\r\n").as_bytes())
            .unwrap();
        let common::Response {
            status,
            headers: h1,
            ..
        } = read_response(&mut r).unwrap();
        assert_eq!(status, 200, "round {round}");
        // At once, on the same client connection.
        s.write_all(get("/echo/second", KEY, "").as_bytes())
            .unwrap();
        let common::Response {
            status,
            headers: h2,
            body,
        } = read_response(&mut r).unwrap();
        assert_eq!(
            status,
            200,
            "round {round}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(json_body(&body)["path"], "/echo/second");
        assert_ne!(
            header(&h1, "x-mock-conn"),
            header(&h2, "x-mock-conn"),
            "a closed upstream connection was used again"
        );
    }
}

#[test]
fn connect_failure_is_retried_on_the_other_target() {
    let (_m, mut gw) = setup(&[]);
    for i in 0..20 {
        let resp = roundtrip(gw.proxy, &get(&format!("/retry/{i}"), KEY, ""));
        assert_eq!(
            resp.status,
            200,
            "request {i}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        assert!(header(&resp.headers, "x-mock-conn").is_some());
        assert_eq!(json_body(&resp.body)["path"], format!("/echo/{i}"));
    }
    // Without retry_attempts the dead target's turns fail: the retry above did the work.
    let failures = (0..20)
        .map(|i| roundtrip(gw.proxy, &get(&format!("/noretry/{i}"), KEY, "")))
        .filter(|resp| resp.status == 502)
        .count();
    assert!(
        (5..=15).contains(&failures),
        "{failures} of 20 failed without retries"
    );
    ping_ok(&mut gw);
}

#[test]
fn dead_upstream_never_crashes_the_gateway() {
    let (_m, mut gw) = setup(&[]);
    for i in 0..50 {
        let mut req = get(&format!("/dead/{i}"), KEY, "");
        if i % 2 == 0 {
            // With a body and on its own connection, closed right after writing.
            req = format!(
                "POST /dead/{i} HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nContent-Length: 5\r\n\r\nhello"
            );
        }
        let (mut s, mut r) = connect_buffered(gw.proxy);
        s.write_all(req.as_bytes()).unwrap();
        if i % 5 == 0 {
            drop(s);
            drop(r);
            continue;
        }
        assert_gateway_error(&read_response(&mut r).unwrap(), 502);
    }
    ping_ok(&mut gw);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(get("/echo", KEY, "Connection: close\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut r).unwrap().status, 200);
    assert!(closed_within(&mut r));
}

#[test]
fn passive_health_takes_a_dead_target_out() {
    let (_mock, m) = spawn_mock(&[]);
    let mut dead = json!({"host": "127.0.0.1", "port": dead_port(), "path": "/echo", "weight": 1});
    let mut live = target(m);
    live["path"] = json!("/echo");
    live["weight"] = json!(1);
    dead["weight"] = json!(1);
    let config = json!({"gateways": [{
        "name": "health",
        "upstreams": [{"name": "pair", "algorithm": "weighted-round-robin",
            "targets": [dead, live],
            "health_checks": {"passive": true, "threshold": 2, "interval": 60}}],
        "services": [{"name": "pair", "type": "upstream", "upstream": "pair"}],
        "rules": [{"name": "all", "path": "/h", "service": "pair", "strip_path": true}],
        "keys": [{"name": "k", "key": KEY}]
    }]});
    let mut gw = spawn_gateway(&config, &[]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let mut failures = 0;
    for i in 0..30 {
        s.write_all(get(&format!("/h/{i}"), KEY, "").as_bytes())
            .unwrap();
        let common::Response { status, body, .. } = read_response(&mut r).unwrap();
        match status {
            200 => assert_eq!(json_body(&body)["path"], format!("/echo/{i}")),
            502 => {
                failures += 1;
                assert!(i < 10, "request {i} still went to the dead target");
            }
            other => panic!("request {i}: {other} {}", String::from_utf8_lossy(&body)),
        }
    }
    assert_eq!(failures, 2, "the threshold is 2 consecutive failures");
    ping_ok(&mut gw);
}

#[test]
fn stalled_upstream_is_504() {
    let (_m, mut gw) = setup(&["--upstream-timeout-ms", "300"]);
    let resp = roundtrip(gw.proxy, &get("/echo", KEY, "x-mock-fault: stall\r\n"));
    assert_gateway_error(&resp, 504);
    ping_ok(&mut gw);
}
