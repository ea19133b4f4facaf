//! Hostile clients: slowloris, slow bodies, clients that never read, many
//! idle connections, and the per-shard connection cap.

use crate::common;
use crate::raw;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    closed_within, connect, connect_buffered, get, one_gateway, read_response, roundtrip,
    spawn_gateway, Gateway,
};
use raw::{read_request_head, Recorder, Scripted};
use serde_json::json;

const KEY: &str = "rg-hostile-client-key";

fn gateway(up: SocketAddr, extra: &[&str]) -> Gateway {
    let config = one_gateway(
        "round-robin",
        json!([common::target(up)]),
        json!([{"name": "all", "path": "/"}]),
        json!([{"name": "k", "key": KEY}]),
    );
    spawn_gateway(&config, extra)
}

/// Raises the soft fd limit to the hard one (the gateway child inherits it).
fn raise_fd_limit() -> u64 {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Slowloris: a head dripped a byte at a time still gets 408 when the head
/// timeout runs out, counted from its first byte, not from the last read.
#[test]
fn slowloris_dripping_a_head_gets_408_within_the_head_timeout() {
    let _alone = crate::alone();
    let up = Recorder::start();
    let gw = gateway(up.addr, &["--header-timeout-ms", "1000"]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let head = get("/slow", KEY, "");
    let started = Instant::now();
    let drip = {
        let mut w = s.try_clone().unwrap();
        let head = head.clone();
        std::thread::spawn(move || {
            for b in head.as_bytes()[..head.len() - 2].iter() {
                if w.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let common::Response { status, .. } = read_response(&mut r).unwrap();
    let waited = started.elapsed();
    assert_eq!(status, 408);
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_millis(2500),
        "408 after {waited:?}"
    );
    assert!(closed_within(&mut r));
    drip.join().unwrap();
    let _ = s.flush();
    assert!(up.take().is_empty(), "a partial head reached the upstream");
}

/// A body that stops mid-way gets 408 after the body timeout; the upstream
/// never sees a partial request (small bodies are buffered first).
#[test]
fn stalled_body_gets_408_and_nothing_reaches_the_upstream() {
    let _alone = crate::alone();
    let up = Recorder::start();
    let gw = gateway(up.addr, &["--body-timeout-ms", "800"]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let started = Instant::now();
    s.write_all(
        format!("POST /b HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nContent-Length: 100\r\n\r\nonly some").as_bytes(),
    )
    .unwrap();
    let common::Response { status, .. } = read_response(&mut r).unwrap();
    let waited = started.elapsed();
    assert_eq!(status, 408);
    assert!(
        waited >= Duration::from_millis(750) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(closed_within(&mut r));
    assert!(up.take().is_empty());
}

/// A body dripped a byte at a time, each pause well under the body
/// timeout, still has to arrive within the whole-body deadline: 408, and
/// nothing reaches the upstream.
#[test]
fn dripped_body_gets_408_at_the_body_deadline() {
    let _alone = crate::alone();
    let up = Recorder::start();
    let gw = gateway(
        up.addr,
        &["--body-timeout-ms", "5000", "--body-deadline-ms", "1000"],
    );
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let started = Instant::now();
    s.write_all(
        format!(
            "POST /drip HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nContent-Length: 100\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut writer = s.try_clone().unwrap();
    let drip = std::thread::spawn(move || {
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(100));
            if writer.write_all(b"x").is_err() {
                break;
            }
        }
    });
    let common::Response { status, .. } = read_response(&mut r).unwrap();
    let waited = started.elapsed();
    assert_eq!(status, 408);
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let _ = drip.join();
    assert!(up.take().is_empty());
}

/// A slow but steady body (each pause under the body timeout) is served.
#[test]
fn slow_steady_body_is_served() {
    let _alone = crate::alone();
    let up = Recorder::start();
    let gw = gateway(up.addr, &["--body-timeout-ms", "800"]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(
        format!("POST /steady HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\nContent-Length: 10\r\n\r\n").as_bytes(),
    )
    .unwrap();
    for b in b"0123456789" {
        std::thread::sleep(Duration::from_millis(150));
        s.write_all(&[*b]).unwrap();
    }
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"seen POST /steady"[..]));
    let seen = up.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"0123456789");
}

/// A client that asks for a large streamed response and never reads: once
/// the socket buffers are full the gateway gives up after the send timeout,
/// closes the client and lets the upstream go.
#[test]
fn client_that_never_reads_is_dropped_after_the_send_timeout() {
    let _alone = crate::alone();
    let released = Arc::new(AtomicBool::new(false));
    let rel = released.clone();
    let up = Scripted::start(move |mut s, _| {
        if read_request_head(&mut s).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n");
            let chunk = vec![b'z'; 64 << 10];
            let mut sent = 0usize;
            while sent < (1 << 30) && s.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
            rel.store(true, Ordering::SeqCst);
        }
    });
    let gw = gateway(up.addr, &["--send-timeout-ms", "1000"]);
    // A small receive buffer so the pressure builds quickly.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect_timeout(&gw.proxy.into(), Duration::from_secs(5))
        .unwrap();
    let mut s: TcpStream = sock.into();
    s.write_all(get("/huge", KEY, "").as_bytes()).unwrap();
    let started = Instant::now();
    while !released.load(Ordering::SeqCst) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the gateway still holds a client that never reads"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Reading now finds the end of the connection, well short of the body.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut total = 0usize;
    let mut b = vec![0u8; 64 << 10];
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert!(total < (64 << 20), "read {total} bytes");
    // And the gateway is fine.
    let common::Response { status, .. } =
        roundtrip(gw.proxy, "GET /__/ping HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert_eq!(status, 200);
}

/// Thousands of idle connections do not slow active ones; memory per idle
/// connection is printed (run with --nocapture) and bounded.
#[test]
fn many_idle_connections_do_not_harm_active_ones() {
    let _alone = crate::alone();
    const IDLE: usize = 2000;
    let limit = raise_fd_limit();
    assert!(limit >= (IDLE as u64) * 2 + 200, "fd limit {limit}");
    let up = Recorder::start();
    let gw = gateway(up.addr, &["--max-connections", "4096"]);
    // Warm up, then measure.
    for _ in 0..20 {
        assert_eq!(roundtrip(gw.proxy, &get("/warm", KEY, "")).status, 200);
    }
    let before = rss_kib(gw.pid());
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(connect(gw.proxy));
    }
    // Half of them send a partial head, half nothing at all.
    for s in idle.iter_mut().step_by(2) {
        s.write_all(b"GET /idle HTTP/1.1\r\nHost:").unwrap();
    }
    // All accepted: a request on a fresh connection is served promptly.
    let t = Instant::now();
    for _ in 0..50 {
        assert_eq!(roundtrip(gw.proxy, &get("/active", KEY, "")).status, 200);
    }
    let per_request = t.elapsed() / 50;
    let after = rss_kib(gw.pid());
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / IDLE as f64;
    println!(
        "{IDLE} idle connections: RSS {before} KiB -> {after} KiB, {per_conn:.0} bytes per connection; active request {per_request:?}"
    );
    assert!(per_request < Duration::from_millis(100), "{per_request:?}");
    assert!(
        per_conn < 64.0 * 1024.0,
        "{per_conn} bytes per idle connection"
    );
    // The idle ones are still open (nothing was dropped to make room).
    let probe = &mut idle[1];
    probe.write_all(get("/late", KEY, "").as_bytes()).unwrap();
    let mut r = std::io::BufReader::new(probe.try_clone().unwrap());
    assert_eq!(read_response(&mut r).unwrap().status, 200);
}

/// Beyond --max-connections a new connection is closed at once (not queued),
/// and accepted again once there is room.
#[test]
fn connections_beyond_the_cap_are_refused_fast() {
    let _alone = crate::alone();
    let up = Recorder::start();
    let gw = gateway(up.addr, &["--max-connections", "20"]);
    let mut held: Vec<(TcpStream, std::io::BufReader<TcpStream>)> = Vec::new();
    for i in 0..20 {
        let (mut s, mut r) = connect_buffered(gw.proxy);
        // A full exchange proves this one is being served (not just in the backlog).
        s.write_all(get(&format!("/held{i}"), KEY, "").as_bytes())
            .unwrap();
        assert_eq!(read_response(&mut r).unwrap().status, 200);
        held.push((s, r));
    }
    for _ in 0..5 {
        let mut s = connect(gw.proxy);
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let t = Instant::now();
        let _ = s.write_all(get("/over", KEY, "").as_bytes());
        let mut b = [0u8; 64];
        let r = s.read(&mut b);
        assert!(
            matches!(r, Ok(0))
                || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "over the cap: {r:?}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "refusal took {:?}",
            t.elapsed()
        );
    }
    // Free some room: new connections are served again.
    held.truncate(10);
    let t = Instant::now();
    loop {
        let (mut s, mut r) = connect_buffered(gw.proxy);
        let _ = s.write_all(get("/again", KEY, "").as_bytes());
        if let Ok(common::Response { status: 200, .. }) = read_response(&mut r) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no room after closing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
