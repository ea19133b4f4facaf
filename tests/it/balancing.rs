//! Target choice across two named mocks: weighted round-robin, round-robin, least-connections.

use crate::common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{
    connect_buffered, get, header, one_gateway, read_response, roundtrip, spawn_gateway,
    spawn_mock, target, ChildGuard, Gateway,
};
use serde_json::json;

const KEY: &str = "rg-balance-key";

struct Setup {
    _a: ChildGuard,
    _b: ChildGuard,
    gw: Gateway,
}

fn setup(algorithm: &str, weights: (u32, u32), shards: &str) -> Setup {
    let (a, addr_a) = spawn_mock(&["--name", "a"]);
    let (b, addr_b) = spawn_mock(&["--name", "b"]);
    let mut ta = target(addr_a);
    ta["weight"] = json!(weights.0);
    let mut tb = target(addr_b);
    tb["weight"] = json!(weights.1);
    let config = one_gateway(
        algorithm,
        json!([ta, tb]),
        json!([{"name": "echo", "path": "/echo"}]),
        json!([{"name": "k", "key": KEY}]),
    );
    let gw = spawn_gateway(&config, &["--shards", shards]);
    Setup { _a: a, _b: b, gw }
}

fn name_of(resp: &common::Response) -> String {
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    header(&resp.headers, "x-mock-name")
        .expect("x-mock-name")
        .to_string()
}

/// Counts (a, b) over `n` requests, each on a new client connection (so with several shards
/// the kernel spreads them).
fn split_new_connections(gw: &Gateway, n: usize) -> (usize, usize) {
    let mut a = 0;
    for _ in 0..n {
        if name_of(&roundtrip(gw.proxy, &get("/echo", KEY, ""))) == "a" {
            a += 1;
        }
    }
    (a, n - a)
}

#[test]
fn weighted_round_robin_3_to_1_one_shard() {
    let s = setup("weighted-round-robin", (3, 1), "1");
    let (mut w, mut r) = connect_buffered(s.gw.proxy);
    let mut a = 0;
    for _ in 0..400 {
        w.write_all(get("/echo", KEY, "").as_bytes()).unwrap();
        if name_of(&read_response(&mut r).unwrap()) == "a" {
            a += 1;
        }
    }
    let b = 400 - a;
    assert!((270..=330).contains(&a), "a={a} b={b}");
    assert!((90..=110).contains(&b), "a={a} b={b}");
    // And over new connections too.
    let (a, b) = split_new_connections(&s.gw, 400);
    assert!((90..=110).contains(&b), "new connections: a={a} b={b}");
}

#[test]
fn weighted_round_robin_3_to_1_two_shards() {
    let s = setup("weighted-round-robin", (3, 1), "2");
    let (a, b) = split_new_connections(&s.gw, 400);
    assert!((255..=345).contains(&a), "a={a} b={b}");
    assert!((85..=115).contains(&b), "a={a} b={b}");
}

#[test]
fn round_robin_alternates() {
    let s = setup("round-robin", (1, 1), "1");
    let (mut w, mut r) = connect_buffered(s.gw.proxy);
    let mut names = Vec::new();
    for _ in 0..20 {
        w.write_all(get("/echo", KEY, "").as_bytes()).unwrap();
        names.push(name_of(&read_response(&mut r).unwrap()));
    }
    for pair in names.windows(2) {
        assert_ne!(pair[0], pair[1], "not alternating: {names:?}");
    }
    assert_eq!(names.iter().filter(|n| *n == "a").count(), 10);
}

#[test]
fn least_connections_avoids_the_busy_target() {
    let s = setup("least-connections", (1, 1), "1");
    let proxy = s.gw.proxy;
    // A slow request occupies one target for 1.5 s.
    let started = Instant::now();
    let slow = std::thread::spawn(move || {
        name_of(&roundtrip(
            proxy,
            &get("/echo", KEY, "x-mock-delay-ms: 1500\r\n"),
        ))
    });
    // Quick requests meanwhile, one connection. Those sent once the slow one is surely
    // dispatched (200 ms) and well before it ends (1200 ms) must all avoid its target.
    let (mut w, mut r) = connect_buffered(proxy);
    let mut during = Vec::new();
    while started.elapsed() < Duration::from_millis(1200) {
        let sent_at = started.elapsed();
        w.write_all(get("/echo", KEY, "").as_bytes()).unwrap();
        let name = name_of(&read_response(&mut r).unwrap());
        if sent_at >= Duration::from_millis(200) && started.elapsed() < Duration::from_millis(1400)
        {
            during.push(name);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let busy = slow.join().unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "slow request was not slow"
    );
    assert!(during.len() >= 5, "too few quick requests: {during:?}");
    assert!(
        during.iter().all(|n| *n != busy),
        "a request went to the busy target {busy}: {during:?}"
    );
    // Nothing busy any more: both targets serve again.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        w.write_all(get("/echo", KEY, "").as_bytes()).unwrap();
        seen.insert(name_of(&read_response(&mut r).unwrap()));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}
