//! Cluster mode: two nodes share one `redis-server` (started here, on a
//! free port, killed at the end). A write on one node is served by the
//! other; a global rate limit holds across both; Redis restarted mid-run
//! leaves both serving, admin writes 503 meanwhile, and they converge again.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::admin::{call, create_route, expect, proxied, start, start_failing, temp_dir, Gateway};
use common::{hammer, spawn_mock, ChildGuard};
use serde_json::json;

/// How long a change made on one node may take to be served by another
/// (pub/sub delivers in milliseconds; the 1 s generation poll is the bound
/// when a message is missed).
const CONVERGE: Duration = Duration::from_secs(5);

/// A `redis-server` of this test only: no persistence, its own dir and port.
struct Redis {
    guard: Option<ChildGuard>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    fn start(dir: &Path) -> Redis {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut r = Redis {
            guard: None,
            port,
            dir: dir.to_path_buf(),
        };
        r.restart();
        r
    }

    /// (Re)starts on the same port and waits until it answers PING.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        self.guard = Some(ChildGuard(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command("PING").as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        drop(self.guard.take());
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// How many scripts Redis ran (`INFO commandstats`, `cmdstat_eval`).
    fn evals(&self) -> u64 {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (&s).write_all(b"INFO commandstats\r\n").unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let len: usize = line.trim_start_matches('$').trim().parse().unwrap();
        let mut body = vec![0; len];
        std::io::Read::read_exact(&mut r, &mut body).unwrap();
        String::from_utf8(body)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_eval:calls="))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    }

    /// What the rate-limit windows in Redis count, all keys and buckets.
    fn counted(&self) -> Option<u64> {
        let sum = "local s = 0 for _, k in ipairs(redis.call('KEYS', 'ringgate:rl:*')) do for _, v in ipairs(redis.call('HVALS', k)) do s = s + tonumber(v) end end return s";
        self.command(&format!("EVAL \"{sum}\" 0"))?
            .strip_prefix(':')?
            .parse()
            .ok()
    }

    /// One inline command; the first reply line.
    fn command(&self, cmd: &str) -> Option<String> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        Some(line.trim_end().to_string())
    }
}

fn node(redis: &Redis, name: &str) -> Gateway {
    start(&temp_dir(name), &["--store", &redis.url(), "--shards", "2"])
}

/// Polls `f` until it is true; how long that took, or a panic after `within`.
fn within(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

#[test]
fn a_write_on_one_node_is_served_by_the_other() {
    let _alone = crate::alone();
    let (_mock, mock) = spawn_mock(&[]);
    let redis = Redis::start(&temp_dir("cluster-redis-a"));
    let a = node(&redis, "cluster-a1");
    let b = node(&redis, "cluster-b1");

    let r = create_route(a.admin, "g", mock, Some("/v1"));
    let took = within("B serves the route made on A", CONVERGE, || {
        proxied(b.proxy, &r.key) == 200
    });
    eprintln!("write on A served by B after {took:?}");
    assert_eq!(proxied(a.proxy, &r.key), 200);
    let (_, on_a) = call(a.admin, "GET", "/api/v1/config", None, None);
    let (_, on_b) = call(b.admin, "GET", "/api/v1/config", None, None);
    assert_eq!(on_a, on_b);
    assert_eq!(
        redis.command("GET ringgate:generation").as_deref(),
        Some("$1")
    );

    // And the other way: a delete on B stops A.
    expect(
        b.admin,
        "DELETE",
        &format!("/api/v1/gateways/{}/rules/{}", r.gateway, r.rule),
        None,
        204,
    );
    assert_eq!(proxied(b.proxy, &r.key), 404);
    within("A stops serving the rule B deleted", CONVERGE, || {
        proxied(a.proxy, &r.key) == 404
    });

    // A third node starting now loads everything.
    let c = node(&redis, "cluster-c1");
    let (_, on_c) = call(c.admin, "GET", "/api/v1/config", None, None);
    let (_, on_b) = call(b.admin, "GET", "/api/v1/config", None, None);
    assert_eq!(on_c, on_b);
    for n in [a, b, c] {
        n.stop();
    }
}

#[test]
fn redis_restarted_mid_run_both_keep_serving_and_converge() {
    let _alone = crate::alone();
    let (_mock, mock) = spawn_mock(&[]);
    let mut redis = Redis::start(&temp_dir("cluster-redis-r"));
    let a = node(&redis, "cluster-a2");
    let b = node(&redis, "cluster-b2");
    let r = create_route(a.admin, "g", mock, Some("/v1"));
    within("B serves A's route", CONVERGE, || {
        proxied(b.proxy, &r.key) == 200
    });
    let keys = format!("/api/v1/gateways/{}/keys", r.gateway);

    redis.kill();
    for round in 0..3 {
        assert_eq!(proxied(a.proxy, &r.key), 200, "A, round {round}");
        assert_eq!(proxied(b.proxy, &r.key), 200, "B, round {round}");
        for n in [&a, &b] {
            let (status, body) = call(n.admin, "POST", &keys, Some(&json!({"name": "down"})), None);
            assert_eq!(status, 503, "{body}");
            assert!(
                body["error"].as_str().unwrap().contains("unreachable"),
                "{body}"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    // Redis comes back empty (no persistence): the nodes write their state
    // back, and a write on B reaches A.
    redis.restart();
    let mut key = None;
    let took = within("a write on B succeeds again", CONVERGE, || {
        let (status, body) = call(b.admin, "POST", &keys, Some(&json!({"name": "up"})), None);
        assert!(
            status == 201 || status == 503 || status == 409,
            "{status} {body}"
        );
        key = body["key"].as_str().map(str::to_string);
        key.is_some()
    });
    eprintln!("admin writes work again {took:?} after the restart");
    let key = key.unwrap();
    assert_eq!(proxied(b.proxy, &key), 200);
    within("A serves the key made on B", CONVERGE, || {
        proxied(a.proxy, &key) == 200
    });
    assert_eq!(proxied(a.proxy, &r.key), 200);
    let (_, on_a) = call(a.admin, "GET", "/api/v1/config", None, None);
    let (_, on_b) = call(b.admin, "GET", "/api/v1/config", None, None);
    assert_eq!(on_a, on_b);
    a.stop();
    b.stop();
}

const KEY: &str = "rg-cluster-key";
const KEY2: &str = "rg-cluster-key-2";

/// Two nodes on `redis`; `config` written on the first and served by both.
fn two_nodes(redis: &Redis, tags: [&str; 2], config: &serde_json::Value) -> (Gateway, Gateway) {
    let a = node(redis, tags[0]);
    let b = node(redis, tags[1]);
    expect(a.admin, "PUT", "/api/v1/config", Some(config), 200);
    // Every shard of B serves it, not only B's store (a request on a shard
    // still on the old generation would find no key).
    within("B's shards serve A's configuration", CONVERGE, || {
        let want = generation(&a);
        let status = call(b.admin, "GET", "/api/v1/status", None, None).1;
        generation(&b) == want
            && status["shards"]
                .as_array()
                .is_some_and(|l| !l.is_empty() && l.iter().all(|s| s["config_generation"] == want))
    });
    (a, b)
}

/// Both nodes hammered at once: together they admit no more than the limit,
/// and no fewer than the limit minus what unused leases can lose.
fn limited_config(mock: SocketAddr, limit: usize) -> serde_json::Value {
    config_with(
        mock,
        json!({"name": "rate_limiter", "settings": {"limits": {"global": {"limit": limit, "window": "10m"}}}}),
    )
}

fn config_with(mock: SocketAddr, plugin: serde_json::Value) -> serde_json::Value {
    json!({"gateways": [{
        "name": "demo",
        "upstreams": [{"name": "llm", "targets": [{"host": "127.0.0.1", "port": mock.port(), "path": "/echo"}]}],
        "services": [{"name": "svc", "type": "upstream", "upstream": "llm"}],
        "rules": [{"name": "r", "path": "/", "service": "svc", "plugin_chain": [plugin]}],
        "keys": [{"name": "k", "key": KEY}, {"name": "k2", "key": KEY2}],
    }]})
}

fn generation(n: &Gateway) -> serde_json::Value {
    call(n.admin, "GET", "/api/v1/status", None, None).1["config_generation"].clone()
}

#[test]
fn a_global_limit_holds_across_both_nodes() {
    let _alone = crate::alone();
    const LIMIT: usize = 200;
    // A lease is at most limit / 20 tokens: a node holds at most 9 unused
    // ones when the window fills (a ten-minute window has 30 s buckets: the
    // burst crosses at most one).
    const LEASE: usize = LIMIT / 20;
    let (_mock, m) = spawn_mock(&[]);
    let redis = Redis::start(&temp_dir("cluster-redis-l"));
    let (a, b) = two_nodes(
        &redis,
        ["cluster-a3", "cluster-b3"],
        &limited_config(m, LIMIT),
    );

    let evals = redis.evals();
    let started = Instant::now();
    let (pa, pb) = (a.proxy, b.proxy);
    let on_a = std::thread::spawn(move || hammer(pa, KEY, 16, 25, b"{}"));
    let on_b = std::thread::spawn(move || hammer(pb, KEY, 16, 25, b"{}"));
    let (a_ok, a_limited, a_other) = on_a.join().unwrap();
    let (b_ok, b_limited, b_other) = on_b.join().unwrap();
    let took = started.elapsed();
    let trips = redis.evals() - evals;
    let ok = a_ok + b_ok;
    eprintln!(
        "global limit {LIMIT}: admitted {ok} (A {a_ok}, B {b_ok}) of 800 in {took:?}; {trips} Redis round trips"
    );
    assert_eq!((a_other, b_other), (0, 0));
    assert_eq!(ok + a_limited + b_limited, 800);
    assert!(ok <= LIMIT, "{ok} admitted, the limit is {LIMIT}");
    assert!(took < Duration::from_secs(30));
    assert!(ok >= LIMIT - 2 * (LEASE - 1), "{ok} admitted");
    assert!(
        a_ok > 0 && b_ok > 0,
        "both nodes admitted some: {a_ok} {b_ok}"
    );
    // Leases keep Redis off most requests: about LIMIT / LEASE grants, the
    // growing leases before them (1, 2, 4, 8 tokens per node), one refusal
    // per node (and shard owner) per bucket, far fewer than 800.
    assert!(
        trips <= (LIMIT / LEASE + 2 * 4 + 2 * 2 * 2) as u64,
        "{trips} round trips"
    );

    // Another burst in the same window admits nothing more, on either node.
    assert_eq!(
        hammer(a.proxy, KEY, 2, 10, b"{}").0 + hammer(b.proxy, KEY, 2, 10, b"{}").0,
        0
    );
    a.stop();
    b.stop();
}

/// Redis unreachable: each node falls back to its own exact window, so
/// each admits the limit (the cluster up to nodes × limit), and none fails.
#[test]
fn without_redis_each_node_limits_on_its_own() {
    let _alone = crate::alone();
    const LIMIT: usize = 30;
    let (_mock, m) = spawn_mock(&[]);
    let mut redis = Redis::start(&temp_dir("cluster-redis-f"));
    let (a, b) = two_nodes(
        &redis,
        ["cluster-a4", "cluster-b4"],
        &limited_config(m, LIMIT),
    );
    redis.kill();
    for n in [&a, &b] {
        assert_eq!(hammer(n.proxy, KEY, 4, 20, b"{}"), (LIMIT, 80 - LIMIT, 0));
    }
    a.stop();
    b.stop();
}

#[test]
fn a_bad_store_or_an_unreachable_redis_stops_start_up() {
    let _alone = crate::alone();
    let (code, err) = start_failing(&temp_dir("cluster-bad"), &["--store", "http://x:1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--store") && err.contains("redis://"), "{err}");
    let port = common::dead_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let (code, err) = start_failing(&temp_dir("cluster-down"), &["--store", &url]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("redis://127.0.0.1:{port}/0")) && err.contains("unreachable"),
        "{err}"
    );
}

/// Token budgets count across nodes too: 1000 tokens per minute, each
/// request reserves 100 (20 body bytes + max_tokens 95; the echo reports no
/// usage, so each stays charged at its estimate): exactly 10 pass over both.
/// 8 connections × 5 requests of `body` on each node at once: exactly 10
/// pass, 70 are refused, nothing else.
fn assert_ten_of_eighty(a: &Gateway, b: &Gateway, body: &'static [u8]) {
    let (pa, pb) = (a.proxy, b.proxy);
    let on_a = std::thread::spawn(move || hammer(pa, KEY, 8, 5, body));
    let on_b = std::thread::spawn(move || hammer(pb, KEY, 8, 5, body));
    let (a_ok, a_limited, a_other) = on_a.join().unwrap();
    let (b_ok, b_limited, b_other) = on_b.join().unwrap();
    assert_eq!((a_other, b_other), (0, 0));
    assert_eq!(
        (a_ok + b_ok, a_limited + b_limited),
        (10, 70),
        "A {a_ok}, B {b_ok}"
    );
}

#[test]
fn a_token_budget_holds_across_both_nodes() {
    let _alone = crate::alone();
    let (_mock, m) = spawn_mock(&[]);
    let redis = Redis::start(&temp_dir("cluster-redis-t"));
    let plugin = json!({"name": "token_rate_limiter", "settings": {"tokens_per_minute": 1000}});
    let (a, b) = two_nodes(
        &redis,
        ["cluster-a5", "cluster-b5"],
        &config_with(m, plugin),
    );
    let body: &'static [u8] = br#"{"max_tokens":   95}"#;

    // Upstream errors give their reservation back (to the node's lease):
    // 15 × 100 tokens pass a 1000-token budget one at a time.
    for i in 0..15 {
        let n = if i % 2 == 0 { &a } else { &b };
        let (mut s, mut r) = common::connect_buffered(n.proxy);
        let req = format!(
            "POST /x HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY2}\r\nx-mock-status: 500\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        assert_eq!(
            common::read_response(&mut r).unwrap().status,
            500,
            "request {i}"
        );
    }

    assert_ten_of_eighty(&a, &b, body);
    a.stop();
    b.stop();
}

#[test]
fn a_dollar_budget_holds_across_both_nodes() {
    let _alone = crate::alone();
    let (_mock, m) = spawn_mock(&[]);
    let redis = Redis::start(&temp_dir("cluster-redis-budget"));
    // Every request costs exactly its estimate: 1 prompt token at 1000 µ$ and
    // 3 completion tokens at 2000 µ$ (the mock reports 1 and 3): 7000 µ$.
    // $0.07 a day covers 10 of them, wherever they arrive.
    let config = json!({
        "prices": {"priced": {"input": 1000, "output": 2000}},
        "gateways": [{
            "name": "demo",
            "upstreams": [{"name": "llm", "targets": [{"host": "127.0.0.1", "port": m.port(), "path": "/v1/chat/completions"}]}],
            "services": [{"name": "svc", "type": "upstream", "upstream": "llm"}],
            "rules": [{"name": "r", "path": "/x", "service": "svc", "strip_path": true,
                "plugin_chain": [{"name": "budget", "settings": {"daily_usd": 0.07, "chars_per_token": 100000}}]}],
            "keys": [{"name": "k", "key": KEY}],
        }]
    });
    let (a, b) = two_nodes(&redis, ["cluster-a7", "cluster-b7"], &config);
    let body: &'static [u8] = br#"{"model":"priced","max_tokens":3,"messages":[]}"#;
    assert_ten_of_eighty(&a, &b, body);
    a.stop();
    b.stop();
}

#[test]
fn the_shared_cache_tier_serves_one_nodes_answer_on_the_other() {
    let _alone = crate::alone();
    let (_mock, m) = spawn_mock(&[]);
    let redis = Redis::start(&temp_dir("cluster-redis-cache"));
    let config = json!({"gateways": [{
        "name": "demo",
        "upstreams": [{"name": "llm", "targets": [{"host": "127.0.0.1", "port": m.port()}]}],
        "services": [{"name": "svc", "type": "upstream", "upstream": "llm"}],
        "rules": [{"name": "r", "path": "/v1", "service": "svc",
            "plugin_chain": [{"name": "cache", "settings": {"shared": true}}]}],
        "keys": [{"name": "k", "key": KEY}],
    }]});
    let (a, b) = two_nodes(&redis, ["cluster-a8", "cluster-b8"], &config);
    let ask = |n: &Gateway, extra: &str| {
        let body =
            json!({"model": "m", "messages": [{"role": "user", "content": "shared"}]}).to_string();
        let (mut s, mut r) = common::connect_buffered(n.proxy);
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let common::Response {
            status,
            headers,
            body,
        } = common::read_response(&mut r).unwrap();
        let cache = common::header(&headers, "x-cache").map(str::to_string);
        (status, cache, body)
    };
    let (status, miss, first) = ask(&a, "");
    assert_eq!((status, miss.as_deref()), (200, Some("MISS")));
    // The write to Redis goes out after the answer: B may ask before it
    // lands. B never stores its own answers (`no-store`), so its hit is A's.
    let mut from_b = None;
    within("B serves A's answer", CONVERGE, || {
        let (status, c, body) = ask(&b, "Cache-Control: no-store\r\n");
        from_b = Some(body);
        status == 200 && c.as_deref() == Some("HIT")
    });
    assert_eq!(from_b.unwrap(), first, "A's answer, its id included");
    a.stop();
    b.stop();
}

/// Low traffic is not under-admitted: both nodes send one request at a time,
/// 300 ms apart, to a limit of 60 per 6 s — together at most ~44 in any
/// window, so every one must pass. (With fixed leases of limit / 20 that
/// ended unused, each node charged 3 tokens per 300 ms bucket and used 1:
/// the window filled at about 20 real admissions.) Leases start at one
/// token and unused tokens go back to the bucket they were counted in.
#[test]
fn low_traffic_on_both_nodes_is_all_admitted() {
    let _alone = crate::alone();
    const LIMIT: usize = 60;
    const PER_NODE: usize = 30;
    let (_mock, m) = spawn_mock(&[]);
    let redis = Redis::start(&temp_dir("cluster-redis-low"));
    let plugin = json!({"name": "rate_limiter", "settings": {"limits": {"global": {"limit": LIMIT, "window": "6s"}}}});
    let (a, b) = two_nodes(
        &redis,
        ["cluster-a6", "cluster-b6"],
        &config_with(m, plugin),
    );
    let paced = |addr: SocketAddr| {
        std::thread::spawn(move || {
            let (mut s, mut r) = common::connect_buffered(addr);
            let mut statuses = Vec::new();
            for _ in 0..PER_NODE {
                let head = format!(
                    "POST /x HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nContent-Length: 2\r\n\r\n{{}}"
                );
                s.write_all(head.as_bytes()).unwrap();
                statuses.push(common::read_response(&mut r).expect("response").status);
                // After the answer, so the rate never exceeds one per 300 ms.
                std::thread::sleep(Duration::from_millis(300));
            }
            statuses
        })
    };
    let (on_a, on_b) = (paced(a.proxy), paced(b.proxy));
    let (sa, sb) = (on_a.join().unwrap(), on_b.join().unwrap());
    let admitted = |s: &[u16]| s.iter().filter(|&&c| c == 200).count();
    eprintln!(
        "low traffic: A {} of {PER_NODE}, B {} of {PER_NODE} admitted",
        admitted(&sa),
        admitted(&sb)
    );
    assert_eq!(sa, vec![200; PER_NODE], "A");
    assert_eq!(sb, vec![200; PER_NODE], "B");
    a.stop();
    b.stop();
}

/// Unused lease tokens go back to Redis exactly: short bursts grow each
/// node's lease (1, 2, 4, 8 tokens...), so the last one ends with tokens
/// left; once it ended, Redis's window counts exactly what was admitted.
#[test]
fn unused_lease_tokens_go_back_to_redis() {
    let _alone = crate::alone();
    let (_mock, m) = spawn_mock(&[]);
    let redis = Redis::start(&temp_dir("cluster-redis-g"));
    let plugin = json!({"name": "rate_limiter", "settings": {"limits": {"global": {"limit": 400, "window": "6s"}}}});
    let (a, b) = two_nodes(
        &redis,
        ["cluster-a7", "cluster-b7"],
        &config_with(m, plugin),
    );
    assert_eq!(hammer(a.proxy, KEY, 1, 10, b"{}"), (10, 0, 0));
    assert_eq!(hammer(b.proxy, KEY, 1, 7, b"{}"), (7, 0, 0));
    // Leases end with their 300 ms bucket; the window lasts 6 s.
    let took = within(
        "Redis counts what was admitted",
        Duration::from_secs(4),
        || redis.counted() == Some(17),
    );
    eprintln!("Redis counted exactly the 17 admitted {took:?} after the bursts");
    a.stop();
    b.stop();
}
