//! Observability: exact Prometheus counts after known traffic, the JSON access log (sampling,
//! SIGHUP reopen), `/api/v1/status`, and SIGTERM draining an in-flight stream.

use crate::common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::admin::call;
use common::{
    connect_buffered, dead_port, json_body, read_chunk, read_head, roundtrip, spawn_gateway,
    spawn_mock, Gateway,
};
use serde_json::{json, Value};

const KEY: &str = "rg-obs-secret-key";

/// Gateway `demo`: rule `chat` (`/v1`) to the mock, rule `dead` (`/dead`, 2 retries) to an
/// endpoint nobody listens on.
fn config(mock: SocketAddr, dead: u16) -> Value {
    json!({"gateways": [{
        "name": "demo",
        "upstreams": [{"name": "llm", "algorithm": "round-robin", "targets": [
            {"host": "127.0.0.1", "port": mock.port(), "protocol": "http", "weight": 1}]}],
        "services": [
            {"name": "svc", "type": "upstream", "upstream": "llm"},
            {"name": "down", "type": "endpoint", "host": "127.0.0.1", "port": dead, "protocol": "http"}
        ],
        "rules": [
            {"name": "chat", "path": "/v1", "methods": ["GET", "POST"], "service": "svc"},
            {"name": "dead", "path": "/dead", "methods": ["GET"], "service": "down", "retry_attempts": 2}
        ],
        "keys": [{"name": "app", "key": KEY}]
    }]})
}

fn chat(request_id: &str, key: &str) -> String {
    let body = r#"{"model":"m-obs","messages":[{"role":"user","content":"one two three four"}]}"#;
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\nX-Request-Id: {request_id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn traced_get(path: &str, request_id: &str, key: Option<&str>) -> String {
    let auth = key.map_or(String::new(), |k| format!("x-api-key: {k}\r\n"));
    format!("GET {path} HTTP/1.1\r\nHost: gw\r\n{auth}X-Request-Id: {request_id}\r\n\r\n")
}

/// Prompt and completion tokens from a response body's `usage`.
fn usage(body: &[u8]) -> (u64, u64) {
    let v = json_body(body);
    (
        v["usage"]["prompt_tokens"].as_u64().unwrap(),
        v["usage"]["completion_tokens"].as_u64().unwrap(),
    )
}

/// `GET /metrics` on the admin listener: the text, checked for exposition-format shape.
fn scrape(admin: SocketAddr) -> String {
    let common::Response {
        status,
        headers,
        body,
    } = roundtrip(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(
        common::header(&headers, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(body).unwrap();
    check_format(&text);
    text
}

/// Every family has HELP then TYPE before its samples; every sample line is `name[{..}] value`.
fn check_format(text: &str) {
    assert!(text.ends_with('\n'));
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut helped = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(
                helped.last().map(String::as_str),
                Some(name),
                "TYPE without HELP: {line}"
            );
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_string(), kind.to_string());
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
            assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            assert!(typed.contains_key(family), "sample before its TYPE: {line}");
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                }
            }
        }
    }
    assert!(typed.len() >= 20, "{typed:?}");
}

/// The value of one exact series, if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn sum_of(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Scrapes until `ready` holds (requests are counted just after their answer is written).
fn scrape_until(admin: SocketAddr, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(admin);
        if ready(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never got there:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_count_known_traffic_exactly() {
    let (_mock, m) = spawn_mock(&[]);
    let dead = dead_port();
    let gw = spawn_gateway(&config(m, dead), &["--shards", "2"]);

    let mut tokens = (0, 0);
    for i in 0..7 {
        let common::Response { status, body, .. } =
            roundtrip(gw.proxy, &chat(&format!("ok-{i}"), KEY));
        assert_eq!(status, 200);
        let (p, c) = usage(&body);
        tokens = (tokens.0 + p, tokens.1 + c);
    }
    for i in 0..3 {
        let common::Response { status, .. } = roundtrip(
            gw.proxy,
            &traced_get("/nowhere", &format!("nf-{i}"), Some(KEY)),
        );
        assert_eq!(status, 404);
    }
    for i in 0..2 {
        let common::Response { status, .. } = roundtrip(
            gw.proxy,
            &traced_get("/v1/models", &format!("na-{i}"), None),
        );
        assert_eq!(status, 401);
    }
    let common::Response { status, .. } =
        roundtrip(gw.proxy, &traced_get("/dead", "dead-0", Some(KEY)));
    assert_eq!(status, 502);

    let text = scrape_until(gw.admin, |t| sum_of(t, "ringgate_requests_total") >= 13.0);
    let exact = |series: &str, want: f64| {
        assert_eq!(value(&text, series), Some(want), "{series}\n{text}");
    };
    exact(
        "ringgate_requests_total{gateway=\"demo\",rule=\"chat\",status=\"200\"}",
        7.0,
    );
    exact(
        "ringgate_requests_total{gateway=\"demo\",rule=\"\",status=\"404\"}",
        3.0,
    );
    exact(
        "ringgate_requests_total{gateway=\"\",rule=\"\",status=\"401\"}",
        2.0,
    );
    exact(
        "ringgate_requests_total{gateway=\"demo\",rule=\"dead\",status=\"502\"}",
        1.0,
    );
    assert_eq!(sum_of(&text, "ringgate_requests_total"), 13.0);
    exact(
        "ringgate_request_duration_seconds_count{gateway=\"demo\",rule=\"chat\"}",
        7.0,
    );
    exact(
        "ringgate_request_duration_seconds_bucket{gateway=\"demo\",rule=\"chat\",le=\"+Inf\"}",
        7.0,
    );
    exact(
        "ringgate_request_duration_seconds_count{gateway=\"\",rule=\"\"}",
        2.0,
    );
    assert!(
        value(
            &text,
            "ringgate_request_duration_seconds_sum{gateway=\"demo\",rule=\"chat\"}"
        )
        .unwrap()
            > 0.0
    );

    let mock_target = format!(
        "gateway=\"demo\",upstream=\"llm\",target=\"127.0.0.1:{}\"",
        m.port()
    );
    exact(
        &format!("ringgate_upstream_requests_total{{{mock_target}}}"),
        7.0,
    );
    exact(
        &format!("ringgate_upstream_duration_seconds_count{{{mock_target}}}"),
        7.0,
    );
    exact(
        &format!("ringgate_upstream_connect_errors_total{{{mock_target}}}"),
        0.0,
    );
    let dead_target = format!("gateway=\"demo\",upstream=\"down\",target=\"127.0.0.1:{dead}\"");
    exact(
        &format!("ringgate_upstream_connect_errors_total{{{dead_target}}}"),
        1.0,
    );
    exact(
        &format!("ringgate_upstream_retries_total{{{dead_target}}}"),
        2.0,
    );
    exact(
        &format!("ringgate_upstream_requests_total{{{dead_target}}}"),
        1.0,
    );

    exact(
        "ringgate_prompt_tokens_total{gateway=\"demo\",model=\"m-obs\"}",
        tokens.0 as f64,
    );
    exact(
        "ringgate_completion_tokens_total{gateway=\"demo\",model=\"m-obs\"}",
        tokens.1 as f64,
    );
    assert!(tokens.0 > 0 && tokens.1 > 0);

    // Each 200 took a pooled or a fresh connection; the dead target never connected.
    let reuses = value(&text, "ringgate_upstream_pool_reuses_total").unwrap();
    let connects = value(&text, "ringgate_upstream_pool_connects_total").unwrap();
    assert_eq!(
        reuses + connects,
        7.0 + 3.0,
        "7 to the mock, 3 attempts to the dead port"
    );
    let ratio = value(&text, "ringgate_upstream_pool_reuse_ratio").unwrap();
    assert!((ratio - reuses / (reuses + connects)).abs() < 1e-9);
    for shard in ["0", "1"] {
        assert!(value(
            &text,
            &format!("ringgate_open_connections{{shard=\"{shard}\"}}")
        )
        .is_some());
        exact(
            &format!("ringgate_shard_config_generation{{shard=\"{shard}\"}}"),
            1.0,
        );
    }
    exact("ringgate_config_generation", 1.0);
    assert!(text.contains("# TYPE ringgate_plugin_rejections_total counter\n"));
}

/// The lines of the access log at `path` (none when it does not exist yet).
fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn wait_for_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = log_lines(path);
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} lines, expected {n}",
            path.display(),
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn key_id(gw: &Gateway) -> String {
    let (status, cfg) = call(gw.admin, "GET", "/api/v1/config", None, None);
    assert_eq!(status, 200);
    cfg["gateways"][0]["keys"][0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn access_log_lines_parse_and_match_the_traffic() {
    let (_mock, m) = spawn_mock(&[]);
    let dir = common::unique_temp_dir("obs-log");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let gw = spawn_gateway(
        &config(m, dead_port()),
        &["--access-log", path.to_str().unwrap()],
    );
    let kid = key_id(&gw);

    let mut want: HashMap<String, (u16, usize, Vec<u8>)> = HashMap::new();
    for i in 0..3 {
        let rid = format!("log-ok-{i}");
        let req = chat(&rid, KEY);
        let common::Response { status, body, .. } = roundtrip(gw.proxy, &req);
        assert_eq!(status, 200);
        want.insert(rid, (status, req.len(), body));
    }
    let req = chat("log-badkey", "rg-wrong-secret");
    let common::Response { status, body, .. } = roundtrip(gw.proxy, &req);
    assert_eq!(status, 401);
    want.insert("log-badkey".into(), (status, req.len(), body));
    let req = traced_get("/nowhere?token=hidden", "log-404", Some(KEY));
    let common::Response { status, body, .. } = roundtrip(gw.proxy, &req);
    assert_eq!(status, 404);
    want.insert("log-404".into(), (status, req.len(), body));

    let lines = wait_for_lines(&path, 5);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    for line in &lines {
        assert!(
            !line.contains(KEY) && !line.contains("rg-wrong-secret"),
            "key material: {line}"
        );
        assert!(!line.contains("hidden"), "query logged: {line}");
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let rid = v["request_id"].as_str().unwrap();
        let (status, bytes_in, body) = &want[rid];
        assert_eq!(v["status"], *status, "{line}");
        assert_eq!(v["bytes_in"], *bytes_in as u64, "{line}");
        assert!(
            v["bytes_out"].as_u64().unwrap() > body.len() as u64,
            "{line}"
        );
        assert!(v["total_ms"].as_f64().unwrap() > 0.0, "{line}");
        assert!(v["time"].as_str().unwrap().ends_with('Z'), "{line}");
        match rid {
            r if r.starts_with("log-ok-") => {
                let (p, c) = usage(body);
                assert_eq!(v["gateway"], "demo");
                assert_eq!(v["rule"], "chat");
                assert_eq!(v["key_id"], kid.as_str());
                assert_eq!(v["method"], "POST");
                assert_eq!(v["path"], "/v1/chat/completions");
                assert_eq!(v["target"], format!("127.0.0.1:{}", m.port()));
                assert!(v["upstream_ms"].as_f64().unwrap() > 0.0);
                assert!(v["upstream_ms"].as_f64() <= v["total_ms"].as_f64());
                assert_eq!(
                    (v["prompt_tokens"].as_u64(), v["completion_tokens"].as_u64()),
                    (Some(p), Some(c))
                );
            }
            "log-badkey" => {
                for field in [
                    "gateway",
                    "rule",
                    "key_id",
                    "target",
                    "upstream_ms",
                    "prompt_tokens",
                ] {
                    assert!(v[field].is_null(), "{field}: {line}");
                }
                assert_eq!(v["path"], "/v1/chat/completions");
            }
            "log-404" => {
                assert_eq!(v["gateway"], "demo");
                assert!(v["rule"].is_null());
                assert_eq!(v["key_id"], kid.as_str());
                assert_eq!(v["method"], "GET");
                assert_eq!(v["path"], "/nowhere");
            }
            other => panic!("unexpected request id {other}"),
        }
    }
    let text = scrape(gw.admin);
    assert_eq!(value(&text, "ringgate_access_log_lines_total"), Some(5.0));
    assert_eq!(
        value(&text, "ringgate_access_log_dropped_lines_total"),
        Some(0.0)
    );
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

fn terminate(gw: &Gateway, signal: i32) {
    // SAFETY: a plain kill(2) on our own child's pid.
    let r = unsafe { libc::kill(gw.pid() as i32, signal) };
    assert_eq!(r, 0, "kill failed");
}

#[test]
fn access_log_sampled_at_zero_writes_nothing() {
    let (_mock, m) = spawn_mock(&[]);
    let dir = common::unique_temp_dir("obs-sample0");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let mut gw = spawn_gateway(
        &config(m, dead_port()),
        &[
            "--access-log",
            path.to_str().unwrap(),
            "--access-log-sample",
            "0",
        ],
    );
    for i in 0..5 {
        let common::Response { status, .. } = roundtrip(gw.proxy, &chat(&format!("s0-{i}"), KEY));
        assert_eq!(status, 200);
    }
    scrape_until(gw.admin, |t| sum_of(t, "ringgate_requests_total") >= 5.0);
    // A clean stop flushes every shard's buffer and the writer: nothing may be pending after it.
    terminate(&gw, libc::SIGTERM);
    let status = gw
        .wait_exit(Duration::from_secs(15))
        .expect("gateway did not stop");
    assert!(status.success(), "{status:?}");
    assert!(path.exists(), "the log file is opened at start");
    assert_eq!(log_lines(&path), Vec::<String>::new());
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_reopens_the_access_log() {
    let (_mock, m) = spawn_mock(&[]);
    let dir = common::unique_temp_dir("obs-hup");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let mut gw = spawn_gateway(
        &config(m, dead_port()),
        &["--access-log", path.to_str().unwrap()],
    );
    for i in 0..2 {
        assert_eq!(
            roundtrip(gw.proxy, &chat(&format!("before-{i}"), KEY)).status,
            200
        );
    }
    wait_for_lines(&path, 2);
    std::fs::rename(&path, &rotated).unwrap();
    terminate(&gw, libc::SIGHUP);
    // The writer reopens the path (creating it) within its 200 ms poll.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.exists() {
        assert!(Instant::now() < deadline, "SIGHUP did not reopen the log");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gw.alive(), "SIGHUP ended the gateway");
    for i in 0..3 {
        assert_eq!(
            roundtrip(gw.proxy, &chat(&format!("after-{i}"), KEY)).status,
            200
        );
    }
    let new = wait_for_lines(&path, 3);
    let old = log_lines(&rotated);
    let ids = |lines: &[String]| -> Vec<String> {
        let mut v: Vec<String> = lines
            .iter()
            .map(|l| {
                json_body(l.as_bytes())["request_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&old), ["before-0", "before-1"]);
    assert_eq!(ids(&new), ["after-0", "after-1", "after-2"]);
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn status_lists_every_shard_behind_the_admin_token() {
    let (_mock, m) = spawn_mock(&[]);
    let gw = spawn_gateway(
        &config(m, dead_port()),
        &["--shards", "2", "--admin-token", "adm-tok"],
    );
    // One client connection stays open after its request.
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(chat("st-1", KEY).as_bytes()).unwrap();
    assert_eq!(common::read_response(&mut r).unwrap().status, 200);

    let (status, _) = call(gw.admin, "GET", "/api/v1/status", None, None);
    assert_eq!(status, 401);
    let (status, v) = call(gw.admin, "GET", "/api/v1/status", None, Some("adm-tok"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["config_generation"], 1);
    assert!(v["uptime_seconds"].is_u64(), "{v}");
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2, "{v}");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let mut open = 0;
    for (i, sh) in shards.iter().enumerate() {
        assert_eq!(sh["shard"], i as u64);
        assert!(sh["cpu"].as_u64().unwrap() < cpus.max(2), "{sh}");
        assert_eq!(sh["config_generation"], 1);
        open += sh["open_connections"].as_u64().unwrap();
    }
    assert_eq!(open, 1, "{v}");
    // /metrics is outside /api/v1: no token needed.
    let text = scrape(gw.admin);
    assert_eq!(sum_of(&text, "ringgate_open_connections"), 1.0);
    drop(s);
}

#[test]
fn sigterm_drains_an_inflight_stream_then_exits_zero() {
    let (_mock, m) = spawn_mock(&[]);
    let mut gw = spawn_gateway(&config(m, dead_port()), &[]);
    let body = r#"{"model":"m-obs","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\nx-mock-chunks: 10\r\nx-mock-interval-ms: 100\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(req.as_bytes()).unwrap();
    let (status, _) = read_head(&mut r).unwrap();
    assert_eq!(status, 200);
    let mut text = String::from_utf8(read_chunk(&mut r).unwrap().unwrap()).unwrap();
    assert!(text.contains("tok0") && !text.contains("[DONE]"), "{text}");

    terminate(&gw, libc::SIGTERM);
    // New connections are refused once the shard stops accepting (well before the stream ends).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match TcpStream::connect_timeout(&gw.proxy, Duration::from_secs(1)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            Err(e) => panic!("unexpected connect error: {e}"),
            Ok(_) => {
                assert!(Instant::now() < deadline, "still accepting after SIGTERM");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    // The stream was still in flight when new connections were refused: more events follow.
    let mut after_refusal = 0;
    while let Some(c) = read_chunk(&mut r).unwrap() {
        after_refusal += 1;
        text.push_str(std::str::from_utf8(&c).unwrap());
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(
        text.matches("data: ").count(),
        13,
        "10 tokens, stop, usage, [DONE]: {text}"
    );
    assert!(
        after_refusal >= 1,
        "refusal only seen after the stream ended"
    );
    let status = gw
        .wait_exit(Duration::from_secs(15))
        .expect("gateway did not exit after the drain");
    assert!(status.success(), "{status:?}");
}

/// A streamed answer's tokens are counted from its final usage event
/// (the stream itself is never kept): the series equal what the client saw.
#[test]
fn streamed_tokens_are_counted_from_the_usage_event() {
    let (_mock, mock) = spawn_mock(&["--stream-interval-ms", "1"]);
    let gw = spawn_gateway(&config(mock, common::dead_port()), &["--shards", "2"]);
    let body = r#"{"model":"m-stream","stream":true,"messages":[{"role":"user","content":"count these words please"}]}"#;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let common::Response {
        status,
        body: stream,
        ..
    } = roundtrip(gw.proxy, &req);
    assert_eq!(status, 200);
    let text = String::from_utf8(stream).unwrap();
    let usage_event = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .find(|v| v["usage"].is_object())
        .expect("the stream carries a usage event");
    let prompt = usage_event["usage"]["prompt_tokens"].as_u64().unwrap();
    let completion = usage_event["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(prompt > 0 && completion > 0);
    let series = |family: &str| format!("{family}{{gateway=\"demo\",model=\"m-stream\"}}");
    let text = scrape_until(gw.admin, |t| {
        value(t, &series("ringgate_prompt_tokens_total")).is_some()
    });
    assert_eq!(
        value(&text, &series("ringgate_prompt_tokens_total")),
        Some(prompt as f64)
    );
    assert_eq!(
        value(&text, &series("ringgate_completion_tokens_total")),
        Some(completion as f64)
    );
}
