//! Hostile upstreams, as raw scripted TCP servers: the client gets a 502/504
//! or a truncated stream, never a wrong body or another client's bytes, and
//! a broken upstream connection is never handed out again.

use crate::common;
use crate::raw;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    connect_buffered, get, header, json_body, one_gateway, read_head, read_response, spawn_gateway,
    target, Gateway,
};
use raw::{read_request_head, Scripted};
use serde_json::json;

const KEY: &str = "rg-hostile-up-key";

fn gateway(up: SocketAddr) -> Gateway {
    let config = one_gateway(
        "round-robin",
        json!([target(up)]),
        json!([{"name": "all", "path": "/"}]),
        json!([{"name": "k", "key": KEY}]),
    );
    spawn_gateway(&config, &["--upstream-timeout-ms", "1500"])
}

fn path_of(head: &[u8]) -> String {
    String::from_utf8_lossy(head)
        .split(' ')
        .nth(1)
        .unwrap_or("")
        .to_string()
}

fn ok_response(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// What each path makes the upstream do; `true` keeps the connection for
/// the next request.
fn misbehave(s: &mut TcpStream, path: &str) -> bool {
    let big = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
        "b".repeat(100 << 10)
    );
    let reply: &[u8] = match path {
        "/dup-cl-diff" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "/dup-cl-list" => b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
        "/dup-cl-same" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "/cl-te" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "/te-cl" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "/bad-status" => b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
        "/bad-version" => b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "/no-status" => b"HTTP/1.1\r\nContent-Length: 2\r\n\r\nok",
        "/bad-header" => b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 2\r\n\r\nok",
        "/obs-fold" => b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
        "/bad-cl" => b"HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok",
        "/switch" => b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
        "/garbage" => b"\x00\x01garbage that is not HTTP\r\n\r\n",
        "/big-head" => big.as_bytes(),
        "/half-head" => b"HTTP/1.1 200 OK\r\nContent-Le",
        "/empty" => b"",
        "/never" | "/half-head-stall" => {
            if path == "/half-head-stall" {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-A: ");
            }
            // Hold the connection open without a word until the gateway leaves.
            let mut b = [0u8; 64];
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            while matches!(s.read(&mut b), Ok(n) if n > 0) {}
            return false;
        }
        "/bad-chunk" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        "/ok" => {
            let _ = s.write_all(ok_response("fine").as_bytes());
            return true;
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    };
    let _ = s.write_all(reply);
    false
}

fn misbehaving_upstream() -> Scripted {
    Scripted::start(|mut s, _| {
        while let Some(head) = read_request_head(&mut s) {
            if !misbehave(&mut s, &path_of(&head)) {
                return;
            }
        }
    })
}

/// Asserts the gateway's own error (not the upstream's bytes), then that a
/// good request still works.
fn expect_gateway_error(gw: &Gateway, path: &str, status: u16) {
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(get(path, KEY, "").as_bytes()).unwrap();
    let common::Response {
        status: got,
        headers,
        body,
    } = read_response(&mut r).unwrap_or_else(|e| panic!("{path}: no answer: {e}"));
    assert_eq!(got, status, "{path}: {}", String::from_utf8_lossy(&body));
    assert!(json_body(&body)["error"].is_string(), "{path}");
    assert!(header(&headers, "x-request-id").is_some());
}

#[test]
fn invalid_response_heads_are_502() {
    let _alone = crate::alone();
    let up = misbehaving_upstream();
    let gw = gateway(up.addr);
    for path in [
        "/dup-cl-diff",
        "/dup-cl-list",
        "/cl-te",
        "/te-cl",
        "/bad-status",
        "/bad-version",
        "/no-status",
        "/bad-header",
        "/obs-fold",
        "/bad-cl",
        "/switch",
        "/garbage",
        "/big-head",
        "/half-head",
        "/empty",
    ] {
        expect_gateway_error(&gw, path, 502);
        // The next exchange is clean.
        let common::Response { status, body, .. } =
            common::roundtrip(gw.proxy, &get("/ok", KEY, ""));
        assert_eq!(
            (status, body.as_slice()),
            (200, &b"fine"[..]),
            "after {path}"
        );
    }
}

#[test]
fn duplicate_equal_content_length_is_accepted() {
    let _alone = crate::alone();
    let up = misbehaving_upstream();
    let gw = gateway(up.addr);
    let common::Response {
        status,
        headers,
        body,
    } = common::roundtrip(gw.proxy, &get("/dup-cl-same", KEY, ""));
    assert_eq!((status, body.as_slice()), (200, &b"hello"[..]));
    // Forwarded once, not twice.
    let cls = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .count();
    assert!(cls >= 1);
}

#[test]
fn silent_or_stalled_upstreams_are_504() {
    let _alone = crate::alone();
    let up = misbehaving_upstream();
    let gw = gateway(up.addr);
    for path in ["/never", "/half-head-stall"] {
        let t = Instant::now();
        expect_gateway_error(&gw, path, 504);
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
            "{path}: {took:?}"
        );
    }
}

#[test]
fn bad_chunk_mid_body_truncates_and_closes() {
    let _alone = crate::alone();
    let up = misbehaving_upstream();
    let gw = gateway(up.addr);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(get("/bad-chunk", KEY, "").as_bytes()).unwrap();
    let (status, _) = read_head(&mut r).unwrap();
    assert_eq!(status, 200);
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    // The client never sees a last chunk: it knows the body is incomplete.
    assert!(
        !rest.ends_with(b"0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(!rest.windows(2).any(|w| w == b"zz"));
}

/// An upstream whose body is longer than its Content-Length, with the
/// extra bytes shaped as a second response: they never reach a client.
#[test]
fn body_longer_than_content_length_is_cut_and_never_reused() {
    let _alone = crate::alone();
    let up = Scripted::start(|mut s, _| {
        while let Some(head) = read_request_head(&mut s) {
            if path_of(&head) == "/longer" {
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
                );
            } else {
                let _ = s.write_all(ok_response("fine").as_bytes());
            }
        }
    });
    let gw = gateway(up.addr);
    for _ in 0..20 {
        let (mut s, mut r) = connect_buffered(gw.proxy);
        s.write_all(get("/longer", KEY, "").as_bytes()).unwrap();
        let common::Response { status, body, .. } = read_response(&mut r).unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"hello"[..]));
        s.write_all(get("/next", KEY, "").as_bytes()).unwrap();
        let common::Response { status, body, .. } = read_response(&mut r).unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"fine"[..]));
    }
}

#[test]
fn body_shorter_than_content_length_is_a_truncated_close() {
    let _alone = crate::alone();
    let up = Scripted::start(|mut s, _| {
        if read_request_head(&mut s).is_some() {
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly twenty bytes...");
        }
        // Closes here.
    });
    let gw = gateway(up.addr);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(get("/short", KEY, "").as_bytes()).unwrap();
    let (status, headers) = read_head(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-length"), Some("100"));
    let mut rest = Vec::new();
    let t = Instant::now();
    let _ = r.read_to_end(&mut rest);
    assert_eq!(rest, b"only twenty bytes...");
    assert!(t.elapsed() < Duration::from_secs(5), "not closed promptly");
}

#[test]
fn reset_mid_body_is_a_truncated_close() {
    let _alone = crate::alone();
    let up = Scripted::start(|mut s, _| {
        if read_request_head(&mut s).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
            let _ = s.write_all(&[b'x'; 1000]);
            std::thread::sleep(Duration::from_millis(50));
            // SO_LINGER 0: close sends a reset.
            let sock = socket2::SockRef::from(&s);
            let _ = sock.set_linger(Some(Duration::ZERO));
        }
    });
    let gw = gateway(up.addr);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(get("/reset", KEY, "").as_bytes()).unwrap();
    let (status, _) = read_head(&mut r).unwrap();
    assert_eq!(status, 200);
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.len() <= 1000 && rest.iter().all(|b| *b == b'x'));
}

/// An endless body: the gateway streams it while the client reads, and lets
/// the upstream go as soon as the client leaves.
#[test]
fn endless_body_stops_when_the_client_leaves() {
    let _alone = crate::alone();
    let stopped = Arc::new(AtomicBool::new(false));
    let st = stopped.clone();
    let up = Scripted::start(move |mut s, _| {
        if read_request_head(&mut s).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            let chunk = format!("4000\r\n{}\r\n", "e".repeat(0x4000));
            while s.write_all(chunk.as_bytes()).is_ok() {}
            st.store(true, Ordering::SeqCst);
        }
    });
    let gw = gateway(up.addr);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(get("/endless", KEY, "").as_bytes()).unwrap();
    let (status, _) = read_head(&mut r).unwrap();
    assert_eq!(status, 200);
    let mut got = 0usize;
    let mut b = vec![0u8; 64 << 10];
    while got < (8 << 20) {
        got += r.read(&mut b).unwrap();
    }
    drop(r);
    drop(s);
    let t = Instant::now();
    while !stopped.load(Ordering::SeqCst) {
        assert!(t.elapsed() < Duration::from_secs(10), "upstream still fed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pooled connections the upstream closes silently after each answer: every
/// request still gets its own answer, and a dead connection is never reused
/// twice (each pooled connection serves at most one more request).
#[test]
fn silently_closed_pooled_connections_are_not_handed_out_twice() {
    let _alone = crate::alone();
    let served = Arc::new(AtomicUsize::new(0));
    let sv = served.clone();
    let up = Scripted::start(move |mut s, i| {
        if let Some(head) = read_request_head(&mut s) {
            sv.fetch_add(1, Ordering::SeqCst);
            let body = format!("{} on {i}", path_of(&head));
            // Claims keep-alive, then closes without a word.
            let _ = s.write_all(ok_response(&body).as_bytes());
        }
    });
    let gw = gateway(up.addr);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    for n in 0..30 {
        let path = format!("/n{n}");
        s.write_all(get(&path, KEY, "").as_bytes()).unwrap();
        let common::Response { status, body, .. } = read_response(&mut r).unwrap();
        assert_eq!(
            status,
            200,
            "request {n}: {}",
            String::from_utf8_lossy(&body)
        );
        let body = String::from_utf8(body).unwrap();
        assert!(body.starts_with(&format!("{path} on ")), "{body}");
    }
    assert_eq!(served.load(Ordering::SeqCst), 30);
    // One connection per request: none was used for two.
    assert_eq!(up.connections.load(Ordering::SeqCst), 30);
}

/// Many clients at once on one upstream answering slowly and out of step:
/// each client gets the body of its own request.
#[test]
fn concurrent_clients_never_see_each_others_bodies() {
    let _alone = crate::alone();
    let up = Scripted::start(|mut s, _| {
        while let Some(head) = read_request_head(&mut s) {
            let path = path_of(&head);
            let body = format!("for {path}");
            let resp = ok_response(&body);
            // Split writes with a pause, to interleave with other connections.
            let (a, b) = resp.as_bytes().split_at(resp.len() / 2);
            if s.write_all(a).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
            if s.write_all(b).is_err() {
                return;
            }
        }
    });
    let gw = gateway(up.addr);
    let addr = gw.proxy;
    let threads: Vec<_> = (0..16)
        .map(|t| {
            std::thread::spawn(move || {
                let (mut s, mut r) = connect_buffered(addr);
                for n in 0..20 {
                    let path = format!("/c{t}-{n}");
                    s.write_all(get(&path, KEY, "").as_bytes()).unwrap();
                    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
                    assert_eq!(status, 200);
                    assert_eq!(String::from_utf8(body).unwrap(), format!("for {path}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// A pooled connection on which the upstream has since sent a FIN (it keeps
/// reading) or unsolicited bytes is never written to again: the pool's
/// liveness check sees what arrived while the connection sat idle.
#[test]
fn pooled_connections_that_changed_while_idle_are_never_written_to() {
    let _alone = crate::alone();
    let reused_after_change = Arc::new(AtomicUsize::new(0));
    let seen = reused_after_change.clone();
    let up = Scripted::start(move |mut s, _| {
        let mut changed = false;
        while let Some(head) = read_request_head(&mut s) {
            if changed {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            let path = path_of(&head);
            if s.write_all(ok_response(&path).as_bytes()).is_err() {
                return;
            }
            match path.as_str() {
                // Half-close: the gateway sees a FIN, but a request written
                // anyway would still reach this loop.
                "/fin" => {
                    let _ = s.shutdown(std::net::Shutdown::Write);
                    changed = true;
                }
                "/garbage" => {
                    std::thread::sleep(Duration::from_millis(20));
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
                    changed = true;
                }
                _ => {}
            }
        }
    });
    let gw = gateway(up.addr);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    for round in 0..6 {
        let first = if round % 2 == 0 { "/fin" } else { "/garbage" };
        for path in [first, "/after"] {
            s.write_all(get(path, KEY, "").as_bytes()).unwrap();
            let common::Response { status, body, .. } = read_response(&mut r).unwrap();
            assert_eq!(status, 200, "round {round} {path}");
            assert_eq!(String::from_utf8(body).unwrap(), path);
            // Long enough for the FIN or the bytes to reach the idle connection.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(reused_after_change.load(Ordering::SeqCst), 0);
    // Each round: one connection changed and was dropped, a fresh one served
    // "/after" and went back to the pool, where the next round's first
    // request found it.
    assert_eq!(up.connections.load(Ordering::SeqCst), 7);
}
