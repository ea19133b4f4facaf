//! Request framing at the gateway: every 4xx rule, request bodies (chunked, 100-continue).

use crate::common;

use std::io::{BufRead, Read, Write};
use std::time::{Duration, Instant};

use common::{
    closed_within, connect_buffered, header, json_body, one_gateway, read_response, spawn_gateway,
    spawn_mock, target, ChildGuard, Gateway,
};
use serde_json::json;

const KEY: &str = "rg-framing-key";

fn setup(extra: &[&str]) -> (ChildGuard, Gateway) {
    let (mock, m) = spawn_mock(&[]);
    let config = one_gateway(
        "round-robin",
        json!([target(m)]),
        json!([{"name": "all", "path": "/"}]),
        json!([{"name": "k", "key": KEY}]),
    );
    (mock, spawn_gateway(&config, extra))
}

/// Sends `req`, expects the gateway's own JSON error `status`, then the connection closed.
fn refused_and_closed(gw: &Gateway, req: &[u8], status: u16) {
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(req).unwrap();
    let common::Response {
        status: got,
        headers,
        body,
    } = read_response(&mut r)
        .unwrap_or_else(|e| panic!("no answer to {:?}: {e}", String::from_utf8_lossy(req)));
    assert_eq!(
        got,
        status,
        "request {:?}: body {}",
        String::from_utf8_lossy(req),
        String::from_utf8_lossy(&body)
    );
    assert!(
        header(&headers, "x-mock-conn").is_none(),
        "reached the mock"
    );
    assert!(header(&headers, "x-request-id").is_some());
    assert_eq!(
        header(&headers, "connection").map(str::to_ascii_lowercase),
        Some("close".into())
    );
    assert!(json_body(&body)["error"].is_string());
    assert!(
        closed_within(&mut r),
        "connection left open after {status} to {:?}",
        String::from_utf8_lossy(req)
    );
}

fn with_key(head_lines: &str) -> String {
    format!("{head_lines}X-TG-API-Key: {KEY}\r\n\r\n")
}

#[test]
fn te_with_cl_is_400() {
    let (_m, gw) = setup(&[]);
    let req = with_key(
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ) + "0\r\n\r\n";
    refused_and_closed(&gw, req.as_bytes(), 400);
    // Either order.
    let req = with_key(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    ) + "0\r\n\r\n";
    refused_and_closed(&gw, req.as_bytes(), 400);
}

#[test]
fn duplicate_and_invalid_content_length_are_400() {
    let (_m, gw) = setup(&[]);
    let dup =
        with_key("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n")
            + "hello";
    refused_and_closed(&gw, dup.as_bytes(), 400);
    let list = with_key("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n") + "hello";
    refused_and_closed(&gw, list.as_bytes(), 400);
    for bad in ["+5", "5 5", "abc", "-1", "0x5", ""] {
        let req = with_key(&format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {bad}\r\n"
        )) + "hello";
        refused_and_closed(&gw, req.as_bytes(), 400);
    }
}

#[test]
fn unsupported_transfer_encoding_is_400() {
    let (_m, gw) = setup(&[]);
    for te in ["gzip", "gzip, chunked", "chunked, chunked", "identity"] {
        let req = with_key(&format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n"
        )) + "0\r\n\r\n";
        refused_and_closed(&gw, req.as_bytes(), 400);
    }
}

#[test]
fn missing_or_duplicate_host_is_400() {
    let (_m, gw) = setup(&[]);
    refused_and_closed(&gw, with_key("GET /echo HTTP/1.1\r\n").as_bytes(), 400);
    refused_and_closed(
        &gw,
        with_key("GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n").as_bytes(),
        400,
    );
}

#[test]
fn bad_request_line_is_400() {
    let (_m, gw) = setup(&[]);
    refused_and_closed(&gw, b"GARBAGE\r\n\r\n", 400);
    refused_and_closed(&gw, b"GET /echo HTTP/9.9\r\nHost: x\r\n\r\n", 400);
    refused_and_closed(&gw, b"GET  /echo HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    refused_and_closed(&gw, b"GET /echo HTTP/1.1\r\nBad Header: x\r\n\r\n", 400);
}

#[test]
fn head_too_large_is_431() {
    let (_m, gw) = setup(&["--max-head-bytes", "2048"]);
    let big = "a".repeat(3000);
    let req = with_key(&format!(
        "GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n"
    ));
    refused_and_closed(&gw, req.as_bytes(), 431);
    // Just under the limit is fine.
    let ok = with_key(&format!(
        "GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n",
        "a".repeat(1500)
    ));
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(ok.as_bytes()).unwrap();
    assert_eq!(read_response(&mut r).unwrap().status, 200);
}

#[test]
fn too_many_headers_is_431() {
    let (_m, gw) = setup(&["--max-headers", "10"]);
    let mut head = String::from("GET /echo HTTP/1.1\r\nHost: x\r\n");
    for i in 0..20 {
        head.push_str(&format!("X-H{i}: v\r\n"));
    }
    refused_and_closed(&gw, with_key(&head).as_bytes(), 431);
}

#[test]
fn body_too_large_is_413() {
    let (_m, gw) = setup(&["--max-body-bytes", "1000"]);
    // Content-Length over the limit: refused from the head.
    let req =
        with_key("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n") + &"b".repeat(1001);
    refused_and_closed(&gw, req.as_bytes(), 413);
    // Chunked: refused once the decoded size passes the limit.
    let chunk = "c".repeat(600);
    let req = with_key("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n")
        + &format!("258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n");
    refused_and_closed(&gw, req.as_bytes(), 413);
    // Exactly the limit passes.
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let req =
        with_key("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n") + &"b".repeat(1000);
    s.write_all(req.as_bytes()).unwrap();
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(json_body(&body)["body_len"], 1000);
}

#[test]
fn slow_head_gets_408_and_close() {
    let (_m, gw) = setup(&["--header-timeout-ms", "500"]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let started = Instant::now();
    s.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let common::Response {
        status,
        headers,
        body,
    } = read_response(&mut r).unwrap();
    let waited = started.elapsed();
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
    assert!(json_body(&body)["error"].is_string());
    assert!(header(&headers, "x-request-id").is_some());
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(5),
        "408 after {waited:?}"
    );
    assert!(closed_within(&mut r), "connection left open after 408");
}

#[test]
fn chunked_request_body_passes_through() {
    let (_m, gw) = setup(&[]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(
        with_key("POST /echo/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n")
            .as_bytes(),
    )
    .unwrap();
    // Several writes, one chunk with an extension, a multi-digit hex size.
    let big = "z".repeat(0x1a);
    for piece in [
        "5;name=value\r\nhello\r\n".to_string(),
        "1\r\n \r\n".to_string(),
        format!("1A\r\n{big}\r\n"),
        "0\r\n\r\n".to_string(),
    ] {
        s.write_all(piece.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v = json_body(&body);
    assert_eq!(v["body"], format!("hello {big}"));
    assert_eq!(v["body_len"], 6 + 0x1a);
    assert_eq!(v["headers"]["transfer-encoding"], "chunked");
    assert!(v["headers"].get("content-length").is_none());
    // And the connection goes on.
    s.write_all(with_key("GET /echo/after HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .unwrap();
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(json_body(&body)["path"], "/echo/after");
}

#[test]
fn expect_100_continue_before_the_body() {
    let (_m, gw) = setup(&[]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let body = r#"{"after":"continue"}"#;
    s.write_all(
        with_key(&format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n",
            body.len()
        ))
        .as_bytes(),
    )
    .unwrap();
    // The interim answer comes while the body is still held back.
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let n = r.read_until(b'\n', &mut interim).unwrap();
        assert!(n > 0, "closed before 100 Continue");
    }
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).unwrap();
    let common::Response {
        status,
        headers,
        body: resp,
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert!(header(&headers, "x-mock-conn").is_some());
    let v = json_body(&resp);
    assert_eq!(v["body"], body);
    assert!(v["headers"].get("expect").is_none(), "Expect forwarded");
    // Nothing else is pending on the connection: the next request is answered normally.
    s.write_all(with_key("GET /echo/next HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .unwrap();
    let common::Response {
        status, body: resp, ..
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(json_body(&resp)["path"], "/echo/next");
    let _ = r
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(200)));
    let mut extra = [0u8; 1];
    assert!(
        r.read(&mut extra).is_err(),
        "unexpected bytes after the final answer"
    );
}

#[test]
fn large_bodies_stream_both_ways() {
    let (_m, gw) = setup(&[]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    // Larger than the replay buffer (64 KiB): streamed to the upstream, echoed back whole.
    let body: String = (0..200_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let head = with_key(&format!(
        "POST /echo/big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
        body.len()
    ));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let common::Response {
        status, body: resp, ..
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    let v = json_body(&resp);
    assert_eq!(v["body_len"], body.len());
    assert!(v["body"] == body.as_str(), "body changed on the way");

    // The same as chunks of 10 000 bytes.
    s.write_all(
        with_key("POST /echo/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n").as_bytes(),
    )
    .unwrap();
    for piece in body.as_bytes().chunks(10_000) {
        s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .unwrap();
        s.write_all(piece).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let common::Response {
        status, body: resp, ..
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    let v = json_body(&resp);
    assert_eq!(v["body_len"], body.len());
    assert!(
        v["body"] == body.as_str(),
        "chunked body changed on the way"
    );
}

#[test]
fn refused_requests_with_bodies_keep_framing() {
    let (_m, gw) = setup(&[]);
    // A small body fully sent with a refused request: skipped, the next request is parsed.
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let reqs = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nGET /oops\r\n"
        .to_string()
        + &with_key("GET /echo/next HTTP/1.1\r\nHost: x\r\n");
    s.write_all(reqs.as_bytes()).unwrap();
    let common::Response { status, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 401);
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(json_body(&body)["path"], "/echo/next");

    // A large body not yet sent: refused and closed, never read as requests.
    refused_and_closed(
        &gw,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nGET / HTTP/1.1\r\n",
        401,
    );
    // Chunked body with a refused request: closed too.
    refused_and_closed(
        &gw,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        401,
    );
}

#[test]
fn invalid_chunked_body_is_400() {
    let (_m, gw) = setup(&[]);
    let req = with_key("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n")
        + "zz\r\nhello\r\n0\r\n\r\n";
    refused_and_closed(&gw, req.as_bytes(), 400);
    let req = with_key("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n")
        + "5\r\nhelloXX0\r\n\r\n";
    refused_and_closed(&gw, req.as_bytes(), 400);
}

#[test]
fn expect_100_continue_refused_gets_the_final_answer_only() {
    let (_m, gw) = setup(&[]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .unwrap();
    let mut first = Vec::new();
    r.read_until(b'\n', &mut first).unwrap();
    assert!(
        first.starts_with(b"HTTP/1.1 401 "),
        "{:?}",
        String::from_utf8_lossy(&first)
    );
}

#[test]
fn idle_keep_alive_connection_is_closed_quietly() {
    let (_m, gw) = setup(&["--idle-timeout-ms", "300"]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(with_key("GET /echo HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut r).unwrap().status, 200);
    let idle_from = Instant::now();
    let mut rest = Vec::new();
    // EOF without any bytes (no 408 on an idle connection).
    let n = r.read_to_end(&mut rest).unwrap();
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&rest));
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(250) && idle < Duration::from_secs(5),
        "closed after {idle:?}"
    );
}
