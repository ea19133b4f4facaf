//! The same proxy behaviour on both data paths: the shard's own io_uring
//! (`--io uring`, the default on this kernel) and glommio's sockets
//! (`--io glommio`, the fallback). Every scenario runs against one gateway
//! of each kind; the other suites run on the default path (set
//! `RINGGATE_IO=glommio` to run them all on the fallback).

use crate::common;

use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const KEY: &str = "rg-io-key";
const PATHS: [&str; 2] = ["uring", "glommio"];

fn gateway(io: &str, mock: SocketAddr, extra: &[&str]) -> Gateway {
    let config = one_gateway(
        "round-robin",
        json!([target(mock)]),
        json!([{"name": "all", "path": "/", "methods": ["GET", "POST"]}]),
        json!([{"name": "k", "key": KEY}]),
    );
    let mut args = vec!["--io", io];
    args.extend_from_slice(extra);
    spawn_gateway(&config, &args)
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn keep_alive_pipelining_and_pool_reuse_on_both_paths() {
    let (_m, mock) = spawn_mock(&[]);
    for io in PATHS {
        let gw = gateway(io, mock, &[]);
        let (mut s, mut r) = connect_buffered(gw.proxy);
        for i in 0..3 {
            s.write_all(get(&format!("/echo/{i}"), KEY, "").as_bytes())
                .unwrap();
            let common::Response { status, body, .. } = read_response(&mut r).unwrap();
            assert_eq!(status, 200, "{io}");
            assert_eq!(json_body(&body)["path"], format!("/echo/{i}"), "{io}");
        }
        // Two requests in one write: answered in order.
        s.write_all(format!("{}{}", get("/echo/a", KEY, ""), get("/echo/b", KEY, "")).as_bytes())
            .unwrap();
        for p in ["/echo/a", "/echo/b"] {
            let common::Response { status, body, .. } = read_response(&mut r).unwrap();
            assert_eq!(status, 200, "{io}");
            assert_eq!(json_body(&body)["path"], p, "{io}");
        }
        let m = scrape(gw.admin);
        assert!(
            metric(&m, "ringgate_upstream_pool_reuses_total") >= 4,
            "{io}: the upstream connection was not reused:\n{m}"
        );
        // The ring's counters appear exactly when the shard runs on its ring.
        assert_eq!(
            metric(&m, "ringgate_ring_completions_total") > 0,
            io == "uring",
            "{io}:\n{m}"
        );
    }
}

#[test]
fn large_bodies_both_ways_arrive_byte_exact_on_both_paths() {
    let (_m, mock) = spawn_mock(&[]);
    // Larger than the retry buffer (streamed), the provided buffers and the socket buffers.
    let body: Vec<u8> = (0..600_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    for io in PATHS {
        let gw = gateway(io, mock, &[]);
        let (mut s, mut r) = connect_buffered(gw.proxy);
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body).unwrap();
        let common::Response {
            status,
            body: echoed,
            ..
        } = read_response(&mut r).unwrap();
        assert_eq!(status, 200, "{io}");
        let echoed = json_body(&echoed);
        assert_eq!(
            echoed["body"].as_str().map(str::as_bytes),
            Some(&body[..]),
            "{io}: the body came back changed"
        );
        // And the connection still serves the next request.
        s.write_all(get("/echo/after", KEY, "").as_bytes()).unwrap();
        assert_eq!(read_response(&mut r).unwrap().status, 200, "{io}");
    }
}

#[test]
fn streamed_events_arrive_as_sent_on_both_paths() {
    let (_m, mock) = spawn_mock(&[]);
    for io in PATHS {
        let gw = gateway(io, mock, &[]);
        let (mut s, mut r) = connect_buffered(gw.proxy);
        let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nx-mock-stream-chunks: 5\r\nx-mock-interval-ms: 20\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let (status, headers) = read_head(&mut r).unwrap();
        assert_eq!(status, 200, "{io}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("text/event-stream"),
            "{io}"
        );
        let mut text = Vec::new();
        while let Some(chunk) = read_chunk(&mut r).unwrap() {
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(text).unwrap();
        assert!(text.trim_end().ends_with("data: [DONE]"), "{io}: {text}");
        assert!(text.matches("data: {").count() >= 5, "{io}: {text}");
    }
}

/// The gateway closes an idle keep-alive connection at its idle timeout:
/// the client sees the FIN promptly (on the ring, the armed receive is
/// cancelled before the close, or no FIN would be sent).
#[test]
fn idle_and_head_timeouts_close_with_a_fin_on_both_paths() {
    let (_m, mock) = spawn_mock(&[]);
    for io in PATHS {
        let gw = gateway(
            io,
            mock,
            &["--idle-timeout-ms", "300", "--header-timeout-ms", "300"],
        );
        let (mut s, mut r) = connect_buffered(gw.proxy);
        s.write_all(get("/echo", KEY, "").as_bytes()).unwrap();
        assert_eq!(read_response(&mut r).unwrap().status, 200, "{io}");
        let t = Instant::now();
        let mut rest = Vec::new();
        r.get_mut()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = r.read_to_end(&mut rest).unwrap();
        assert_eq!(n, 0, "{io}: bytes after the answer on an idle connection");
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
            "{io}: idle close after {waited:?}"
        );
        // A connection that never sends a head gets 408, then the FIN.
        let (_s2, mut r2) = connect_buffered(gw.proxy);
        let common::Response { status, .. } = read_response(&mut r2).unwrap();
        assert_eq!(status, 408, "{io}");
        assert!(closed_within(&mut r2), "{io}: no FIN after the 408");
    }
}

#[test]
fn upstream_failures_map_to_502_and_504_on_both_paths() {
    for io in PATHS {
        // Nothing listens: 502.
        let dead: SocketAddr = format!("127.0.0.1:{}", dead_port()).parse().unwrap();
        let gw = gateway(io, dead, &[]);
        assert_eq!(roundtrip(gw.proxy, &get("/x", KEY, "")).status, 502, "{io}");
        drop(gw);
        // A stalled upstream: 504 at the upstream timeout.
        let (_m, mock) = spawn_mock(&[]);
        let gw = gateway(io, mock, &["--upstream-timeout-ms", "300"]);
        let req = format!(
            "GET /echo HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nx-mock-delay-ms: 3000\r\n\r\n"
        );
        let t = Instant::now();
        assert_eq!(roundtrip(gw.proxy, &req).status, 504, "{io}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{io}: {:?}",
            t.elapsed()
        );
        // The gateway still answers.
        assert_eq!(
            roundtrip(gw.proxy, &get("/echo", KEY, "")).status,
            200,
            "{io}"
        );
    }
}

/// A client that sends a request and half-closes still gets its answer.
#[test]
fn half_closed_client_gets_its_answer_on_both_paths() {
    let (_m, mock) = spawn_mock(&[]);
    for io in PATHS {
        let gw = gateway(io, mock, &[]);
        let mut s = connect(gw.proxy);
        s.write_all(
            format!("GET /echo HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut r = BufReader::new(s);
        let common::Response { status, .. } = read_response(&mut r).unwrap();
        assert_eq!(status, 200, "{io}");
    }
}

#[test]
fn check_names_the_data_path() {
    for (io, want) in [
        ("uring", "the shard's own io_uring"),
        ("glommio", "glommio's sockets"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringgate"))
            .args(["check", "--io", io])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("data path"))
            .unwrap_or_else(|| panic!("no data path line in {text}"));
        assert!(line.starts_with("PASS") && line.contains(want), "{line}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(["check", "--io", "sideways"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--io"));
}
