//! Integration tests for `ringgate mock-upstream`, over raw HTTP.

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use common::{
    connect, connect_buffered, header, read_chunk, read_head, read_response, read_response_to,
    spawn_mock,
};
use serde_json::Value;

fn mock_post(path: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn mock_get(path: &str, extra_headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: mock\r\n{extra_headers}\r\n")
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(body)))
}

#[test]
fn chat_completion_has_usage_and_model() {
    let (_g, addr) = spawn_mock(&["--name", "alpha"]);
    let (mut s, mut r) = connect_buffered(addr);
    let body = r#"{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there, mock"}]}"#;
    s.write_all(mock_post("/v1/chat/completions", "", body).as_bytes())
        .unwrap();
    let common::Response {
        status,
        headers,
        body,
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(header(&headers, "x-mock-name"), Some("alpha"));
    assert!(header(&headers, "x-mock-conn").unwrap().starts_with('s'));
    let v = json(&body);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock-"));
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from mock");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // 8 + 17 chars of content / 4 = 6
    assert_eq!(v["usage"]["prompt_tokens"], 6);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 9);

    // no model in the request → mock-model
    s.write_all(mock_post("/v1/chat/completions", "", r#"{"messages":[]}"#).as_bytes())
        .unwrap();
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["model"], "mock-model");
    assert_eq!(v["usage"]["prompt_tokens"], 1);
}

#[test]
fn chat_stream_events_are_framed_and_ordered() {
    let (_g, addr) = spawn_mock(&["--stream-chunks", "2"]);
    let (mut s, mut r) = connect_buffered(addr);
    let body = r#"{"model":"m1","stream":true,"messages":[{"role":"user","content":"abcdefgh"}]}"#;
    s.write_all(
        mock_post(
            "/v1/chat/completions",
            "x-mock-chunks: 4\r\nx-mock-interval-ms: 5\r\n",
            body,
        )
        .as_bytes(),
    )
    .unwrap();
    let (status, headers) = read_head(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    assert!(header(&headers, "content-length").is_none());

    let mut events = Vec::new();
    while let Some(chunk) = read_chunk(&mut r).unwrap() {
        let text = String::from_utf8(chunk).unwrap();
        // one event per chunk
        assert!(
            text.starts_with("data: ") && text.ends_with("\n\n"),
            "chunk {text:?}"
        );
        assert_eq!(text.matches("data: ").count(), 1, "chunk {text:?}");
        events.push(text["data: ".len()..text.len() - 2].to_string());
    }
    assert_eq!(events.len(), 4 + 3, "{events:#?}");
    for (i, e) in events[..4].iter().enumerate() {
        let v: Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["model"], "m1");
        assert_eq!(v["choices"][0]["delta"]["content"], format!("tok{i} "));
        assert!(v["choices"][0]["finish_reason"].is_null());
        if i == 0 {
            assert_eq!(v["choices"][0]["delta"]["role"], "assistant");
        } else {
            assert!(v["choices"][0]["delta"].get("role").is_none());
        }
    }
    let stop: Value = serde_json::from_str(&events[4]).unwrap();
    assert_eq!(stop["choices"][0]["finish_reason"], "stop");
    let usage: Value = serde_json::from_str(&events[5]).unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert_eq!(usage["usage"]["prompt_tokens"], 2);
    assert_eq!(usage["usage"]["completion_tokens"], 4);
    assert_eq!(usage["usage"]["total_tokens"], 6);
    assert_eq!(events[6], "[DONE]");

    // the connection stays usable; the flag default (2 chunks) applies without the header
    s.write_all(mock_post("/v1/chat/completions", "x-mock-interval-ms: 0\r\n", body).as_bytes())
        .unwrap();
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert_eq!(text.matches("data: ").count(), 2 + 3);
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[test]
fn chat_invalid_json_is_400() {
    let (_g, addr) = spawn_mock(&[]);
    let (mut s, mut r) = connect_buffered(addr);
    s.write_all(mock_post("/v1/chat/completions", "", "{not json").as_bytes())
        .unwrap();
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 400);
    let v = json(&body);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("JSON"));
}

#[test]
fn models_and_not_found() {
    let (_g, addr) = spawn_mock(&[]);
    let (mut s, mut r) = connect_buffered(addr);
    s.write_all(mock_get("/v1/models", "").as_bytes()).unwrap();
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "mock-model");
    assert_eq!(v["data"][0]["owned_by"], "ringgate");

    s.write_all(mock_get("/nowhere", "").as_bytes()).unwrap();
    let common::Response {
        status,
        headers,
        body,
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 404);
    assert!(header(&headers, "x-mock-name").is_none());
    assert!(json(&body)["error"]["message"].is_string());
}

#[test]
fn echo_reflects_the_request() {
    let (_g, addr) = spawn_mock(&[]);
    let (mut s, mut r) = connect_buffered(addr);
    let req = "PUT /echo/some/path?a=1&b=two HTTP/1.1\r\nHost: example\r\nX-Multi: one\r\nX-Custom: \"quoted\"\r\nx-multi: two\r\nContent-Length: 11\r\n\r\nhello\nworld";
    s.write_all(req.as_bytes()).unwrap();
    let common::Response {
        status,
        headers,
        body,
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-length"),
        Some(body.len().to_string().as_str())
    );
    let v = json(&body);
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["path"], "/echo/some/path");
    assert_eq!(v["query"], "a=1&b=two");
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["headers"]["host"], "example");
    assert_eq!(v["headers"]["x-multi"], "one, two");
    assert_eq!(v["headers"]["x-custom"], "\"quoted\"");
    assert_eq!(v["headers"]["content-length"], "11");
    assert_eq!(v["body"], "hello\nworld");
    assert_eq!(v["body_len"], 11);

    // chunked request body, no query
    let req = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
    s.write_all(req.as_bytes()).unwrap();
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(v["path"], "/echo");
    assert!(v["query"].is_null());
    assert_eq!(v["body"], "hello world");
    assert_eq!(v["body_len"], 11);
    assert_eq!(v["headers"]["transfer-encoding"], "chunked");
}

#[test]
fn echo_chunked_answer_and_head() {
    let (_g, addr) = spawn_mock(&[]);
    let (mut s, mut r) = connect_buffered(addr);
    s.write_all(mock_get("/echo/c", "x-mock-chunked: 1\r\n").as_bytes())
        .unwrap();
    let (status, headers) = read_head(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    let mut chunks = Vec::new();
    while let Some(c) = read_chunk(&mut r).unwrap() {
        chunks.push(c);
    }
    assert!(chunks.len() >= 2);
    let v = json(&chunks.concat());
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/echo/c");

    s.write_all(b"HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let common::Response {
        status,
        headers,
        body,
    } = read_response_to(&mut r, true).unwrap();
    assert_eq!(status, 200);
    assert!(body.is_empty());
    let cl: usize = header(&headers, "content-length").unwrap().parse().unwrap();
    assert!(cl > 0);
    // the connection is still in sync: the next answer parses
    s.write_all(mock_get("/v1/models", "").as_bytes()).unwrap();
    assert_eq!(read_response(&mut r).unwrap().status, 200);
}

#[test]
fn keep_alive_reuses_the_connection() {
    let (_g, addr) = spawn_mock(&["--shards", "2"]);
    let (mut s, mut r) = connect_buffered(addr);
    s.write_all(mock_get("/echo", "").as_bytes()).unwrap();
    let common::Response { headers: h1, .. } = read_response(&mut r).unwrap();
    s.write_all(mock_get("/echo", "").as_bytes()).unwrap();
    let common::Response { headers: h2, .. } = read_response(&mut r).unwrap();
    let c1 = header(&h1, "x-mock-conn").unwrap().to_string();
    assert_eq!(Some(c1.as_str()), header(&h2, "x-mock-conn"));
    assert!(header(&h1, "connection").is_none());

    // a second connection gets another id
    let (mut s2, mut r2) = connect_buffered(addr);
    s2.write_all(mock_get("/echo", "").as_bytes()).unwrap();
    let common::Response { headers: h3, .. } = read_response(&mut r2).unwrap();
    assert_ne!(Some(c1.as_str()), header(&h3, "x-mock-conn"));

    // Connection: close is honoured
    s.write_all(mock_get("/echo", "Connection: close\r\n").as_bytes())
        .unwrap();
    let common::Response {
        status,
        headers: h4,
        ..
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&h4, "connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_g, addr) = spawn_mock(&[]);
    let (mut s, mut r) = connect_buffered(addr);
    let all = format!(
        "{}{}{}",
        mock_post("/echo/first", "x-mock-delay-ms: 50\r\n", "one"),
        mock_get("/echo/second", ""),
        mock_post("/v1/chat/completions", "", r#"{"messages":[]}"#)
    );
    s.write_all(all.as_bytes()).unwrap();
    let common::Response {
        headers: h1,
        body: b1,
        ..
    } = read_response(&mut r).unwrap();
    let common::Response {
        headers: h2,
        body: b2,
        ..
    } = read_response(&mut r).unwrap();
    let common::Response {
        status: s3,
        headers: h3,
        body: b3,
    } = read_response(&mut r).unwrap();
    assert_eq!(json(&b1)["path"], "/echo/first");
    assert_eq!(json(&b1)["body"], "one");
    assert_eq!(json(&b2)["path"], "/echo/second");
    assert_eq!(s3, 200);
    assert_eq!(json(&b3)["object"], "chat.completion");
    let c = header(&h1, "x-mock-conn");
    assert_eq!(c, header(&h2, "x-mock-conn"));
    assert_eq!(c, header(&h3, "x-mock-conn"));
}

#[test]
fn status_fault() {
    let (_g, addr) = spawn_mock(&[]);
    let (mut s, mut r) = connect_buffered(addr);
    s.write_all(mock_post("/v1/chat/completions", "x-mock-status: 429\r\n", "{}").as_bytes())
        .unwrap();
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 429);
    let v = json(&body);
    assert_eq!(v["error"]["message"], "mock status 429");
    assert_eq!(v["error"]["type"], "mock");

    s.write_all(mock_get("/anything", "x-mock-status: 204\r\n").as_bytes())
        .unwrap();
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 204);
    assert!(body.is_empty());

    s.write_all(mock_get("/echo", "x-mock-status: 503\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut r).unwrap().status, 503);
}

#[test]
fn close_fault_answers_nothing() {
    let (_g, addr) = spawn_mock(&[]);
    let mut s = connect(addr);
    s.write_all(mock_get("/echo", "x-mock-fault: close\r\n").as_bytes())
        .unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
}

#[test]
fn reset_mid_body_truncates() {
    let (_g, addr) = spawn_mock(&[]);
    let (mut s, mut r) = connect_buffered(addr);
    s.write_all(mock_get("/v1/models", "x-mock-fault: reset-mid-body\r\n").as_bytes())
        .unwrap();
    let (status, headers) = read_head(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-length"), Some("1000"));
    let mut body = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) => {
                assert_ne!(
                    e.kind(),
                    ErrorKind::WouldBlock,
                    "timed out instead of reset"
                );
                assert_ne!(e.kind(), ErrorKind::TimedOut, "timed out instead of reset");
                break;
            }
        }
    }
    assert!(body.len() < 1000, "got {} body bytes", body.len());
}

#[test]
fn delay_fault_delays_the_head() {
    let (_g, addr) = spawn_mock(&[]);
    let (mut s, mut r) = connect_buffered(addr);
    let t = Instant::now();
    s.write_all(mock_get("/echo", "x-mock-delay-ms: 300\r\n").as_bytes())
        .unwrap();
    let common::Response { status, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn garbage_and_close_after_faults() {
    let (_g, addr) = spawn_mock(&[]);
    let mut s = connect(addr);
    s.write_all(mock_get("/echo", "x-mock-fault: garbage\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"this is not http\r\n\r\n");

    let (mut s, mut r) = connect_buffered(addr);
    s.write_all(mock_get("/echo", "x-mock-fault: close-after\r\n").as_bytes())
        .unwrap();
    let common::Response {
        status,
        headers,
        body,
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert!(header(&headers, "connection").is_none());
    assert_eq!(json(&body)["path"], "/echo");
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn slow_body_and_stall_faults() {
    let (_g, addr) = spawn_mock(&[]);
    let (mut s, mut r) = connect_buffered(addr);
    let t = Instant::now();
    s.write_all(mock_get("/v1/models", "x-mock-fault: slow-body\r\n").as_bytes())
        .unwrap();
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(json(&body)["object"], "list");
    // 85 bytes, one every 5 ms
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );

    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s.write_all(mock_get("/echo", "x-mock-fault: stall\r\n").as_bytes())
        .unwrap();
    let mut buf = [0u8; 16];
    let e = s.read(&mut buf).expect_err("stall must send nothing");
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );
}

#[test]
fn oversized_head_is_refused() {
    let (_g, addr) = spawn_mock(&[]);
    let (mut s, mut r) = connect_buffered(addr);
    let big = "a".repeat(70 << 10);
    let req = format!("GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = s.write_all(req.as_bytes());
    let common::Response {
        status, headers, ..
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 431);
    assert_eq!(header(&headers, "connection"), Some("close"));

    let (mut s, mut r) = connect_buffered(addr);
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r).unwrap().status, 413);
}

#[test]
fn port_taken_exits_with_2() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(["mock-upstream", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("in use"), "{err}");
    assert!(out.stdout.is_empty());
}
