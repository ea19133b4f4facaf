//! Health and failover over real sockets: a target dying mid-run, fallback on
//! 429/503, no retry of bodies that cannot be replayed, active health checks
//! (down and back, across shards, and a target restarted on its port), the
//! circuit breaker, 503 when nothing is healthy, `X-Selected-Target`.

use crate::common;
use crate::common::tls;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    connect_buffered, dead_port, get, header, json_body, post, read_response, roundtrip, scrape,
    spawn_gateway, spawn_mock, target, ChildGuard, Gateway, Response,
};
use serde_json::{json, Value};

const KEY: &str = "rg-health-key";

/// A raw upstream whose answer status is switchable: `status` for every
/// request, `health_status` for a path ending in `/healthz`. Counts both; answers with
/// a `Content-Length` body, or a chunked one while `chunked` is set.
struct Switch {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    health_status: Arc<AtomicU16>,
    chunked: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    probes: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl Switch {
    fn start(status: u16) -> Switch {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = Switch {
            addr: listener.local_addr().unwrap(),
            status: Arc::new(AtomicU16::new(status)),
            health_status: Arc::new(AtomicU16::new(200)),
            chunked: Arc::new(AtomicBool::new(false)),
            requests: Arc::new(AtomicUsize::new(0)),
            probes: Arc::new(AtomicUsize::new(0)),
            connections: Arc::new(AtomicUsize::new(0)),
        };
        let (st, hs, ch, rq, pr, cn) = (
            s.status.clone(),
            s.health_status.clone(),
            s.chunked.clone(),
            s.requests.clone(),
            s.probes.clone(),
            s.connections.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                cn.fetch_add(1, Ordering::SeqCst);
                let (st, hs, ch, rq, pr) =
                    (st.clone(), hs.clone(), ch.clone(), rq.clone(), pr.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(stream.try_clone().unwrap());
                    let mut w = stream;
                    while let Some(path) = read_request(&mut r) {
                        let status = if path.ends_with("/healthz") {
                            pr.fetch_add(1, Ordering::SeqCst);
                            hs.load(Ordering::SeqCst)
                        } else {
                            rq.fetch_add(1, Ordering::SeqCst);
                            st.load(Ordering::SeqCst)
                        };
                        let body = format!("{{\"from\":\"switch\",\"status\":{status}}}");
                        let resp = if ch.load(Ordering::SeqCst) {
                            format!(
                                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                                body.len()
                            )
                        } else {
                            format!(
                                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                        };
                        if w.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        s
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one request (head and a Content-Length or chunked body); its path.
fn read_request<R: BufRead>(r: &mut R) -> Option<String> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let path = line.split(' ').nth(1)?.to_string();
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        if n.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse().ok()?;
        } else if n.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    if chunked {
        while common::read_chunk(r).ok()?.is_some() {}
    } else {
        let mut body = vec![0; length];
        r.read_exact(&mut body).ok()?;
    }
    Some(path)
}

fn gateway_with(targets: Value, health: Option<Value>, retries: u32, args: &[&str]) -> Gateway {
    let mut upstream = json!({"name": "llm", "algorithm": "round-robin", "targets": targets});
    if let Some(h) = health {
        upstream["health_checks"] = h;
    }
    let config = json!({"gateways": [{
        "name": "health",
        "upstreams": [upstream],
        "services": [{"name": "svc", "type": "upstream", "upstream": "llm"}],
        "rules": [{"name": "all", "path": "/", "service": "svc", "retry_attempts": retries}],
        "keys": [{"name": "k", "key": KEY}]
    }]});
    spawn_gateway(&config, args)
}

fn selected(resp: &Response) -> &str {
    header(&resp.headers, "x-selected-target")
        .unwrap_or_else(|| panic!("no X-Selected-Target: {:?}", resp.headers))
}

fn name(resp: &Response) -> Option<&str> {
    header(&resp.headers, "x-mock-name")
}

fn addr_text(a: SocketAddr) -> String {
    format!("{}:{}", a.ip(), a.port())
}

/// The value of one `/metrics` series of the test gateway's upstream
/// target `t` (`extra` labels follow the target's, e.g. `,reason="passive"`).
fn target_metric(gw: &Gateway, name: &str, t: SocketAddr, extra: &str) -> Option<u64> {
    let series = format!(
        "{name}{{gateway=\"health\",upstream=\"llm\",target=\"{}\"{extra}}} ",
        addr_text(t)
    );
    scrape(gw.admin)
        .lines()
        .find_map(|l| l.strip_prefix(&series).map(|v| v.parse().unwrap()))
}

/// Polls `f` every 50 ms until it is true, up to `within`.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_target_killed_mid_run_costs_the_client_nothing() {
    let (a, addr_a) = spawn_mock(&["--name", "a"]);
    let (_b, addr_b) = spawn_mock(&["--name", "b"]);
    let gw = gateway_with(
        json!([target(addr_a), target(addr_b)]),
        Some(json!({"passive": true, "threshold": 1, "path": "/v1/models", "interval": 1})),
        2,
        &["--shards", "2"],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..2)
        .map(|c| {
            let (stop, killed, done) = (stop.clone(), killed.clone(), done.clone());
            let proxy = gw.proxy;
            std::thread::spawn(move || {
                let (mut s, mut r) = connect_buffered(proxy);
                let mut after_kill = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let was_killed = killed.load(Ordering::SeqCst);
                    let body = format!("{{\"client\":{c},\"n\":{i}}}");
                    s.write_all(post(&format!("/echo/{c}/{i}"), KEY, "", &body).as_bytes())
                        .unwrap();
                    let resp = read_response(&mut r).expect("a response");
                    assert_eq!(
                        resp.status,
                        200,
                        "client {c} request {i}: {}",
                        String::from_utf8_lossy(&resp.body)
                    );
                    assert_eq!(
                        json_body(&resp.body)["body"],
                        body,
                        "client {c} request {i}"
                    );
                    if was_killed {
                        after_kill.push(name(&resp).unwrap_or("?").to_string());
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
                after_kill
            })
        })
        .collect();
    assert!(eventually(Duration::from_secs(10), || done
        .load(Ordering::SeqCst)
        >= 200));
    drop(a); // SIGKILL, reaped
    killed.store(true, Ordering::SeqCst);
    let at_kill = done.load(Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(10), || done
        .load(Ordering::SeqCst)
        >= at_kill + 400));
    stop.store(true, Ordering::SeqCst);
    let mut after = Vec::new();
    for c in clients {
        after.extend(c.join().expect("a client saw an error"));
    }
    assert!(after.len() >= 300, "{}", after.len());
    assert!(
        after.iter().all(|n| n == "b"),
        "answered after the kill by {after:?}"
    );
}

#[test]
fn a_429_or_503_falls_back_to_the_other_target() {
    let a = Switch::start(429);
    let (_b, addr_b) = spawn_mock(&["--name", "b"]);
    let gw = gateway_with(json!([target(a.addr), target(addr_b)]), None, 1, &[]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    for round in 0..2 {
        if round == 1 {
            // A 503 with a chunked body this time.
            a.status.store(503, Ordering::SeqCst);
            a.chunked.store(true, Ordering::SeqCst);
        }
        let before = a.requests();
        for i in 0..10 {
            let body = format!("{{\"i\":{i}}}");
            s.write_all(post(&format!("/echo/{i}"), KEY, "", &body).as_bytes())
                .unwrap();
            let resp = read_response(&mut r).unwrap();
            assert_eq!(
                resp.status,
                200,
                "round {round} request {i}: {}",
                String::from_utf8_lossy(&resp.body)
            );
            assert_eq!(name(&resp), Some("b"));
            assert_eq!(selected(&resp), addr_text(addr_b));
            let echo = json_body(&resp.body);
            assert_eq!(echo["path"], format!("/echo/{i}"));
            assert_eq!(echo["body"], body);
        }
        // Round-robin offers the failing target first every other time at least.
        let tried = a.requests() - before;
        assert!(
            tried >= 5,
            "round {round}: the failing target saw {tried} requests"
        );
    }
    // The failed answers were read to the end and their connections reused.
    let conns = a.connections.load(Ordering::SeqCst);
    assert!(
        conns <= 2,
        "{conns} connections for {} failed answers",
        a.requests()
    );
}

#[test]
fn bodies_that_cannot_be_replayed_are_not_retried() {
    let a = Switch::start(503);
    let (_b, addr_b) = spawn_mock(&["--name", "b"]);
    let gw = gateway_with(
        json!([target(a.addr), target(addr_b)]),
        None,
        1,
        &["--replay-body-bytes", "1024"],
    );
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(4000));
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let tally = |s: &mut TcpStream, r: &mut BufReader<TcpStream>, req: &[u8]| -> (usize, usize) {
        let before = a.requests();
        let mut from_a = 0;
        for _ in 0..4 {
            s.write_all(req).unwrap();
            let resp = read_response(r).unwrap();
            match resp.status {
                503 => {
                    assert_eq!(selected(&resp), addr_text(a.addr));
                    assert_eq!(json_body(&resp.body)["from"], "switch");
                    from_a += 1;
                }
                200 => assert_eq!(selected(&resp), addr_text(addr_b)),
                other => panic!("status {other}"),
            }
        }
        (from_a, a.requests() - before)
    };
    // Large Content-Length body: the failing target's 503 reaches the client.
    let (answered, seen) = tally(&mut s, &mut r, post("/echo", KEY, "", &big).as_bytes());
    assert_eq!((answered, seen), (2, 2));
    // Large chunked body: the same.
    let mut chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for piece in big.as_bytes().chunks(1000) {
        chunked.push_str(&format!(
            "{:x}\r\n{}\r\n",
            piece.len(),
            std::str::from_utf8(piece).unwrap()
        ));
    }
    chunked.push_str("0\r\n\r\n");
    let (answered, seen) = tally(&mut s, &mut r, chunked.as_bytes());
    assert_eq!((answered, seen), (2, 2));
    // A small body is replayable: every 503 is replaced by the other target's answer.
    let (answered, seen) = tally(
        &mut s,
        &mut r,
        post("/echo", KEY, "", "{\"small\":1}").as_bytes(),
    );
    assert_eq!(answered, 0);
    assert!(seen >= 2, "{seen}");
}

/// A target whose health checks fail (a [`Switch`] answering 503 on its
/// health path) beside a healthy mock `b`, behind a 2-shard gateway probing
/// every second; returns once two probes failed, so the "down" verdict has
/// reached both shards.
fn failing_target_beside_a_healthy_one() -> (Switch, ChildGuard, Gateway) {
    let h = Switch::start(200);
    h.health_status.store(503, Ordering::SeqCst);
    let (b, addr_b) = spawn_mock(&["--name", "b"]);
    let gw = gateway_with(
        json!([target(h.addr), target(addr_b)]),
        Some(json!({"path": "/echo/healthz", "interval": 1, "timeout": 1, "threshold": 1})),
        0,
        &["--shards", "2"],
    );
    assert!(eventually(Duration::from_secs(5), || h
        .probes
        .load(Ordering::SeqCst)
        >= 2));
    (h, b, gw)
}

#[test]
fn active_checks_take_a_target_out_on_every_shard_and_bring_it_back() {
    let (h, _b, gw) = failing_target_beside_a_healthy_one();
    let before = h.requests();
    for i in 0..30 {
        // New connections: the kernel spreads them over both shards.
        let resp = roundtrip(gw.proxy, &get(&format!("/echo/{i}"), KEY, ""));
        assert_eq!(resp.status, 200);
        assert_eq!(
            name(&resp),
            Some("b"),
            "request {i} went to {}",
            selected(&resp)
        );
    }
    assert_eq!(
        h.requests(),
        before,
        "a request reached the target marked down"
    );
    let b_addr = b_addr_of(&gw, h.addr);
    assert_eq!(
        target_metric(&gw, "ringgate_target_up", h.addr, ""),
        Some(0)
    );
    assert_eq!(
        target_metric(&gw, "ringgate_target_up", b_addr, ""),
        Some(1)
    );
    // It passes again: back in rotation.
    h.health_status.store(200, Ordering::SeqCst);
    let mut from_h = 0;
    assert!(eventually(Duration::from_secs(5), || {
        let resp = roundtrip(gw.proxy, &get("/echo", KEY, ""));
        assert_eq!(resp.status, 200);
        if selected(&resp) == addr_text(h.addr) {
            from_h += 1;
        }
        from_h >= 3
    }));
    assert_eq!(
        target_metric(&gw, "ringgate_target_up", h.addr, ""),
        Some(1)
    );
}

/// The other target of a two-target test gateway, read from `/metrics`.
fn b_addr_of(gw: &Gateway, not: SocketAddr) -> SocketAddr {
    scrape(gw.admin)
        .lines()
        .filter_map(|l| l.strip_prefix("ringgate_target_up{"))
        .filter_map(|l| l.split("target=\"").nth(1)?.split('"').next())
        .map(|a| a.parse::<SocketAddr>().unwrap())
        .find(|&a| a != not)
        .expect("a second target in /metrics")
}

#[test]
fn a_target_restarted_on_its_port_comes_back() {
    let (a, addr_a) = spawn_mock(&["--name", "a"]);
    let (_b, addr_b) = spawn_mock(&["--name", "b"]);
    let gw = gateway_with(
        json!([target(addr_a), target(addr_b)]),
        Some(json!({"path": "/v1/models", "interval": 1, "timeout": 1, "threshold": 1})),
        0,
        &[],
    );
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let mut ask = |s: &mut TcpStream| -> Response {
        s.write_all(get("/echo", KEY, "").as_bytes()).unwrap();
        read_response(&mut r).unwrap()
    };
    assert!(eventually(Duration::from_secs(5), || name(&ask(&mut s)) == Some("a")));
    drop(a);
    // No retries here: the dead target's turns fail until the checks take it
    // out, then every answer is b's.
    let mut in_a_row = 0;
    assert!(
        eventually(Duration::from_secs(5), || {
            let resp = ask(&mut s);
            in_a_row = if resp.status == 200 { in_a_row + 1 } else { 0 };
            in_a_row >= 10
        }),
        "the dead target was never taken out"
    );
    let _a = common::spawn_mock_on(&addr_a.to_string(), &["--name", "a"]);
    assert!(
        eventually(Duration::from_secs(5), || {
            let resp = ask(&mut s);
            assert_eq!(resp.status, 200);
            name(&resp) == Some("a")
        }),
        "the restarted target never came back"
    );
}

#[test]
fn the_circuit_breaker_opens_then_lets_one_probe_through() {
    let a = Switch::start(500);
    let (_b, addr_b) = spawn_mock(&["--name", "b"]);
    let gw = gateway_with(
        json!([target(a.addr), target(addr_b)]),
        Some(
            json!({"circuit_breaker": {"failure_ratio": 0.5, "window": 4, "min_requests": 4, "cooldown": 1}}),
        ),
        0,
        &[],
    );
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let mut send = |n: usize| -> Vec<u16> {
        (0..n)
            .map(|_| {
                s.write_all(get("/echo", KEY, "").as_bytes()).unwrap();
                let resp = read_response(&mut r).unwrap();
                if resp.status != 200 {
                    assert_eq!(selected(&resp), addr_text(a.addr));
                }
                resp.status
            })
            .collect()
    };
    // Round-robin: four 500s from the failing target open its breaker.
    let st = send(8);
    assert_eq!(st.iter().filter(|&&s| s == 500).count(), 4, "{st:?}");
    assert_eq!(a.requests(), 4);
    // Open: nothing reaches it.
    assert!(send(10).iter().all(|&s| s == 200));
    assert_eq!(a.requests(), 4);
    let ejected = |gw: &Gateway, reason: &str| {
        target_metric(
            gw,
            "ringgate_target_ejected_shards",
            a.addr,
            &format!(",reason=\"{reason}\""),
        )
    };
    assert_eq!(ejected(&gw, "circuit_breaker"), Some(1));
    assert_eq!(ejected(&gw, "passive"), Some(0));
    assert_eq!(
        target_metric(&gw, "ringgate_target_up", a.addr, ""),
        Some(1)
    );
    // After the cool-down exactly one probe goes through; it fails: open again.
    std::thread::sleep(Duration::from_millis(1200));
    let st = send(6);
    assert_eq!(st.iter().filter(|&&s| s == 500).count(), 1, "{st:?}");
    assert_eq!(a.requests(), 5);
    // Healthy again: the next probe closes the breaker and it shares the load.
    a.status.store(200, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(send(8).iter().all(|&s| s == 200));
    assert!(a.requests() >= 5 + 3, "{}", a.requests());
    assert_eq!(ejected(&gw, "circuit_breaker"), Some(0));
}

#[test]
fn nothing_healthy_is_503_with_a_json_error() {
    let dead = |_| json!({"host": "127.0.0.1", "port": dead_port()});
    let gw = gateway_with(
        json!([dead(0), dead(1)]),
        Some(json!({"passive": true, "threshold": 1, "interval": 60})),
        1,
        &[],
    );
    // Both fail once (the retry took the second): the last failure answers.
    let common::Response {
        status,
        headers,
        body,
    } = roundtrip(gw.proxy, &get("/x", KEY, ""));
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    assert!(header(&headers, "x-request-id").is_some());
    // Both are down now.
    let req = format!(
        "GET /x HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nX-Request-Id: rid-503\r\n\r\n"
    );
    let common::Response {
        status,
        headers,
        body,
    } = roundtrip(gw.proxy, &req);
    assert_eq!(status, 503);
    assert_eq!(header(&headers, "x-request-id"), Some("rid-503"));
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(
        json_body(&body),
        json!({"error": "no healthy upstream target"})
    );
    assert!(header(&headers, "x-selected-target").is_none());
}

#[test]
fn streamed_and_translated_answers_name_their_target() {
    let (_m, m) = spawn_mock(&["--stream-interval-ms", "1"]);
    let mut anth = target(m);
    anth["provider"] = json!("anthropic");
    anth["credentials"] = json!({"api_key": "sk-ant"});
    let config = json!({"gateways": [{
        "name": "p",
        "upstreams": [{"name": "gpt", "targets": [target(m)]}, {"name": "claude", "targets": [anth]}],
        "services": [{"name": "gpt", "type": "upstream", "upstream": "gpt"},
                     {"name": "claude", "type": "upstream", "upstream": "claude"}],
        "rules": [{"name": "gpt", "path": "/gpt", "service": "gpt", "strip_path": true},
                  {"name": "claude", "path": "/claude", "service": "claude", "strip_path": true}],
        "keys": [{"name": "k", "key": KEY}]
    }]});
    let gw = spawn_gateway(&config, &[]);
    let want = addr_text(m);
    for path in ["/gpt/v1/chat/completions", "/claude/v1/chat/completions"] {
        for stream in [false, true] {
            let body = json!({"model": "m", "stream": stream,
                              "messages": [{"role": "user", "content": "hi"}]})
            .to_string();
            let resp = roundtrip(gw.proxy, &post(path, KEY, "", &body));
            assert_eq!(
                resp.status,
                200,
                "{path} stream={stream}: {}",
                String::from_utf8_lossy(&resp.body)
            );
            assert_eq!(selected(&resp), want, "{path} stream={stream}");
            if stream {
                assert_eq!(
                    header(&resp.headers, "content-type"),
                    Some("text/event-stream")
                );
            }
        }
    }
}

#[test]
fn config_changes_adjust_the_checker_without_duplicating_it() {
    use common::admin::call;
    let (h, _b, gw) = failing_target_beside_a_healthy_one();
    let (status, config) = call(gw.admin, "GET", "/api/v1/config", None, None);
    assert_eq!(status, 200);
    // Five changes in a row (the timeout flips): still one probe per second.
    for i in 0..5 {
        let mut c = config.clone();
        c["gateways"][0]["upstreams"][0]["health_checks"]["timeout"] = json!(1 + i % 2);
        let (status, body) = call(gw.admin, "PUT", "/api/v1/config", Some(&c), None);
        assert_eq!(status, 200, "{body}");
    }
    let before = h.probes.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(3000));
    let probes = h.probes.load(Ordering::SeqCst) - before;
    assert!(
        (2..=4).contains(&probes),
        "{probes} probes in 3 s at 1 per second"
    );
    // Still down on every shard.
    let seen = h.requests();
    for i in 0..10 {
        assert_eq!(
            name(&roundtrip(gw.proxy, &get(&format!("/echo/{i}"), KEY, ""))),
            Some("b")
        );
    }
    assert_eq!(h.requests(), seen);
    // The check removed (same target ids): its verdict goes with it.
    let mut c = config.clone();
    c["gateways"][0]["upstreams"][0]
        .as_object_mut()
        .unwrap()
        .remove("health_checks");
    let (status, body) = call(gw.admin, "PUT", "/api/v1/config", Some(&c), None);
    assert_eq!(status, 200, "{body}");
    let mut from_h = 0;
    assert!(eventually(Duration::from_secs(3), || {
        let resp = roundtrip(gw.proxy, &get("/echo", KEY, ""));
        if selected(&resp) == addr_text(h.addr) {
            from_h += 1;
        }
        from_h >= 3
    }));
    // And no probe goes out any more.
    let before = h.probes.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(h.probes.load(Ordering::SeqCst), before);
}

#[test]
fn https_targets_are_probed_over_verified_tls() {
    let pki = tls::make_pki(&["localhost"]);
    let (addr, stats) = tls::spawn_tls_server(&pki, false);
    let checks = json!({"path": "/v1/models", "interval": 1, "timeout": 1, "threshold": 1});
    let trusted = json!({"host": "localhost", "port": addr.port(), "protocol": "https",
                         "ca_pem": pki.ca_pem});
    let gw = gateway_with(json!([trusted]), Some(checks.clone()), 0, &[]);
    // Probes arrive while no client sends anything, and the target stays up.
    assert!(eventually(Duration::from_secs(5), || stats
        .requests
        .load(Ordering::Relaxed)
        >= 2));
    let resp = roundtrip(gw.proxy, &get("/v1/x", KEY, ""));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(selected(&resp), format!("localhost:{}", addr.port()));
    // The same server without its CA: the probe's handshake fails, the only
    // target goes down, and the answer becomes 503 instead of 502.
    let untrusted = json!({"host": "localhost", "port": addr.port(), "protocol": "https"});
    let gw = gateway_with(json!([untrusted]), Some(checks), 0, &[]);
    assert!(eventually(Duration::from_secs(5), || {
        let common::Response { status, body, .. } = roundtrip(gw.proxy, &get("/v1/x", KEY, ""));
        assert!(status == 502 || status == 503, "{status}");
        status == 503 && json_body(&body) == json!({"error": "no healthy upstream target"})
    }));
}
