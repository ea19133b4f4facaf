//! Server-sent events through the gateway: forwarded as they arrive, framed, complete.

use crate::common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{
    connect_buffered, header, json_body, one_gateway, read_chunk, read_head, read_response,
    roundtrip, spawn_gateway, spawn_mock, target, ChildGuard, Gateway,
};
use serde_json::json;

const KEY: &str = "rg-stream-key";

fn setup() -> (ChildGuard, Gateway) {
    let (mock, m) = spawn_mock(&[]);
    let config = one_gateway(
        "round-robin",
        json!([target(m)]),
        json!([{"name": "v1", "path": "/v1"}]),
        json!([{"name": "k", "key": KEY}]),
    );
    (mock, spawn_gateway(&config, &[]))
}

fn stream_request(version: &str, chunks: usize, interval_ms: u64) -> String {
    let body = r#"{"model":"m-stream","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    format!(
        "POST /v1/chat/completions {version}\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nx-mock-chunks: {chunks}\r\nx-mock-interval-ms: {interval_ms}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Splits SSE text into its `data:` payloads, checking the event framing.
fn events(text: &str) -> Vec<String> {
    assert!(text.ends_with("\n\n"), "stream ends mid-event: {text:?}");
    text.split_terminator("\n\n")
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"))
                .to_string()
        })
        .collect()
}

/// Checks the mock's event sequence for `chunks` content events.
fn check_sequence(evs: &[String], chunks: usize) {
    assert_eq!(evs.len(), chunks + 3, "{evs:?}");
    for (i, e) in evs[..chunks].iter().enumerate() {
        let v = json_body(e.as_bytes());
        assert_eq!(v["model"], "m-stream");
        assert_eq!(v["choices"][0]["delta"]["content"], format!("tok{i} "));
    }
    let stop = json_body(evs[chunks].as_bytes());
    assert_eq!(stop["choices"][0]["finish_reason"], "stop");
    let usage = json_body(evs[chunks + 1].as_bytes());
    assert_eq!(usage["usage"]["completion_tokens"], chunks);
    assert_eq!(evs[chunks + 2], "[DONE]");
}

#[test]
fn sse_events_arrive_as_the_upstream_sends_them() {
    let (_m, gw) = setup();
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let sent = Instant::now();
    s.write_all(stream_request("HTTP/1.1", 5, 300).as_bytes())
        .unwrap();
    let (status, headers) = read_head(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    assert!(header(&headers, "content-length").is_none());
    assert!(header(&headers, "x-request-id").is_some());

    // The first event, long before the upstream is done (8 events, 300 ms apart: 2.1 s).
    let first = read_chunk(&mut r).unwrap().expect("a first chunk");
    let first_at = sent.elapsed();
    let first = String::from_utf8(first).unwrap();
    assert!(first.contains("tok0"), "{first:?}");
    assert!(!first.contains("[DONE]"), "whole stream arrived at once");
    assert!(
        first_at < Duration::from_millis(1500),
        "first event after {first_at:?}: buffered"
    );

    // The rest, in order, each chunk well-formed (read_chunk checks sizes and CRLFs).
    let mut text = first;
    let mut arrivals = vec![first_at];
    while let Some(c) = read_chunk(&mut r).unwrap() {
        arrivals.push(sent.elapsed());
        text.push_str(std::str::from_utf8(&c).unwrap());
    }
    let done_at = sent.elapsed();
    check_sequence(&events(&text), 5);
    assert!(
        done_at >= Duration::from_millis(1800),
        "stream finished after {done_at:?}, expected ~2.1 s"
    );
    assert!(
        done_at - first_at >= Duration::from_millis(1500),
        "events were not spread out: {arrivals:?}"
    );

    // The connection stays usable after the stream.
    s.write_all(stream_request("HTTP/1.1", 2, 0).as_bytes())
        .unwrap();
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    check_sequence(&events(std::str::from_utf8(&body).unwrap()), 2);
}

#[test]
fn sse_to_an_http10_client_is_decoded_and_close_delimited() {
    let (_m, gw) = setup();
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(stream_request("HTTP/1.0", 3, 50).as_bytes())
        .unwrap();
    let (status, headers) = read_head(&mut r).unwrap();
    assert_eq!(status, 200);
    assert!(
        header(&headers, "transfer-encoding").is_none(),
        "{headers:?}"
    );
    assert!(header(&headers, "content-length").is_none(), "{headers:?}");
    let mut body = String::new();
    r.read_to_string(&mut body).unwrap();
    check_sequence(&events(&body), 3);
}

#[test]
fn client_leaving_mid_stream_leaves_the_gateway_healthy() {
    let (_m, gw) = setup();
    for _ in 0..3 {
        let (mut s, mut r) = connect_buffered(gw.proxy);
        s.write_all(stream_request("HTTP/1.1", 20, 100).as_bytes())
            .unwrap();
        let (status, _) = read_head(&mut r).unwrap();
        assert_eq!(status, 200);
        let first = read_chunk(&mut r).unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("tok0"));
        drop(r);
        drop(s);
    }
    // Give the gateway a write into the closed socket (the next event is 100 ms later).
    std::thread::sleep(Duration::from_millis(300));
    let common::Response { status, body, .. } =
        roundtrip(gw.proxy, "GET /__/ping HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert_eq!(status, 200);
    assert_eq!(body, br#"{"message":"pong"}"#);
    let common::Response { status, body, .. } =
        roundtrip(gw.proxy, &stream_request("HTTP/1.1", 4, 10));
    assert_eq!(status, 200);
    check_sequence(&events(std::str::from_utf8(&body).unwrap()), 4);
}
