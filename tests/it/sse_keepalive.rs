//! SSE keep-alive (`sse_ping_secs` on a target): a streaming request whose
//! upstream is slow to answer gets an early `200 text/event-stream` head
//! and `: ping` comments, then the upstream's events; an error answer after
//! the early head becomes an `event: error`; fast answers and non-streaming
//! requests are untouched.

use crate::common;

use std::io::{BufRead, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    connect_buffered, header, json_body, read_chunk, read_head, read_response, spawn_gateway,
    spawn_mock, target,
};
use serde_json::{json, Value};

const KEY: &str = "rg-ping-key";
const PING: &[u8] = b": ping\n\n";

/// A gateway whose rule `/v1` leads to `t` (with `sse_ping_secs: 1`), plus
/// rule `/anth` (strip_path) to an anthropic target on the same mock.
fn gateway(mock: std::net::SocketAddr, extra_args: &[&str]) -> common::Gateway {
    let mut t = target(mock);
    t["sse_ping_secs"] = json!(1);
    let mut anth = target(mock);
    anth["sse_ping_secs"] = json!(1);
    anth["provider"] = json!("anthropic");
    anth["path"] = json!("/v1");
    anth["credentials"] = json!({"api_key": "sk-ant"});
    spawn_gateway(
        &json!({"gateways": [{"name": "p",
            "upstreams": [{"name": "oai", "targets": [t]}, {"name": "anth", "targets": [anth]}],
            "services": [{"name": "oai", "type": "upstream", "upstream": "oai"},
                         {"name": "anth", "type": "upstream", "upstream": "anth"}],
            "rules": [{"name": "oai", "path": "/v1", "service": "oai"},
                      {"name": "anth", "path": "/anth", "service": "anth", "strip_path": true}],
            "keys": [{"name": "k", "key": KEY}]}]}),
        extra_args,
    )
}

fn chat_request(path: &str, stream: bool, extra: &str, version: &str) -> String {
    let body = json!({"model": "gpt-4o", "stream": stream,
                      "messages": [{"role": "user", "content": "think hard"}]})
    .to_string();
    format!(
        "POST {path} HTTP/{version}\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n{extra}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads chunks until the last one: the leading pings counted apart, the
/// rest concatenated.
fn read_pings_then_body<R: BufRead>(r: &mut R) -> (usize, Vec<u8>) {
    let mut pings = 0;
    let mut rest = Vec::new();
    while let Some(c) = read_chunk(r).unwrap() {
        if rest.is_empty() && c == PING {
            pings += 1;
        } else {
            rest.extend_from_slice(&c);
        }
    }
    (pings, rest)
}

fn data_events(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_string)
        .collect()
}

/// The JSON of the one `event: error` in `body`.
fn error_event(body: &[u8]) -> Value {
    let text = String::from_utf8_lossy(body);
    let data = text
        .strip_prefix("event: error\ndata: ")
        .and_then(|t| t.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not one error event: {text:?}"));
    json_body(data.as_bytes())
}

/// Sends a streaming chat request on `s` whose answer comes after the
/// early head and at least one ping, and returns the error event it ends in.
fn pinged_error<R: BufRead>(s: &mut TcpStream, r: &mut R, path: &str, extra: &str) -> Value {
    s.write_all(chat_request(path, true, extra, "1.1").as_bytes())
        .unwrap();
    let (status, _) = read_head(r).unwrap();
    assert_eq!(status, 200);
    let (pings, rest) = read_pings_then_body(r);
    assert!(pings >= 1, "{path} {extra:?}: no ping before the answer");
    error_event(&rest)
}

#[test]
fn a_slow_stream_gets_an_early_head_and_pings_then_its_events() {
    let (_m, mock) = spawn_mock(&["--stream-interval-ms", "1"]);
    let gw = gateway(mock, &[]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    let started = Instant::now();
    s.write_all(
        chat_request(
            "/v1/chat/completions",
            true,
            "x-mock-delay-ms: 2600\r\n",
            "1.1",
        )
        .as_bytes(),
    )
    .unwrap();
    let (status, headers) = read_head(&mut r).unwrap();
    let head_after = started.elapsed();
    assert_eq!(status, 200);
    assert!(
        head_after < Duration::from_millis(2400),
        "the head came only after {head_after:?}"
    );
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    assert!(header(&headers, "x-request-id").is_some());
    assert_eq!(header(&headers, "connection"), None);
    assert_eq!(
        header(&headers, "x-mock-conn"),
        None,
        "the upstream's headers come too late"
    );
    let (pings, rest) = read_pings_then_body(&mut r);
    assert!((1..=3).contains(&pings), "{pings} pings");
    let events = data_events(&rest);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert_eq!(events.len(), 5 + 3, "five tokens, stop, usage, [DONE]");
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");

    // The connection stays usable; an answer within sse_ping_secs is the
    // upstream's own, untouched.
    s.write_all(chat_request("/v1/chat/completions", true, "", "1.1").as_bytes())
        .unwrap();
    let common::Response {
        status,
        headers,
        body,
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert!(header(&headers, "x-mock-conn").is_some(), "{headers:?}");
    assert!(!body.starts_with(PING));
    assert_eq!(data_events(&body).len(), 8);
}

#[test]
fn an_error_answer_after_the_early_head_is_an_error_event() {
    let (_m, mock) = spawn_mock(&[]);
    let gw = gateway(mock, &["--upstream-timeout-ms", "2500"]);
    let (mut s, mut r) = connect_buffered(gw.proxy);

    // The upstream's own error, with its status.
    let e = pinged_error(
        &mut s,
        &mut r,
        "/v1/chat/completions",
        "x-mock-delay-ms: 1600\r\nx-mock-status: 429\r\n",
    );
    assert_eq!(e["status"], 429, "{e}");
    assert_eq!(e["error"]["message"], "mock status 429", "{e}");

    // The gateway's own: the upstream never answers (504), same connection.
    let e = pinged_error(
        &mut s,
        &mut r,
        "/v1/chat/completions",
        "x-mock-fault: stall\r\n",
    );
    assert_eq!(e["status"], 504, "{e}");
    assert_eq!(e["type"], "error");
    assert_eq!(
        e["error"]["message"], "upstream did not answer in time",
        "{e}"
    );
}

#[test]
fn requests_that_are_no_streams_are_never_pinged() {
    let (_m, mock) = spawn_mock(&[]);
    let gw = gateway(mock, &[]);
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(
        chat_request(
            "/v1/chat/completions",
            false,
            "x-mock-delay-ms: 1500\r\n",
            "1.1",
        )
        .as_bytes(),
    )
    .unwrap();
    let common::Response {
        status,
        headers,
        body,
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(json_body(&body)["object"], "chat.completion");

    // Accept: text/event-stream makes it a stream even without a JSON body;
    // a JSON answer then is no event stream: it comes as an error event.
    write!(
        s,
        "GET /v1/models HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n\
         Accept: text/event-stream\r\nx-mock-delay-ms: 1500\r\n\r\n"
    )
    .unwrap();
    let (status, headers) = read_head(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    let (pings, rest) = read_pings_then_body(&mut r);
    assert!(pings >= 1);
    let e = error_event(&rest);
    assert_eq!(e["status"], 200);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("instead of an event stream"),
        "{e}"
    );
}

#[test]
fn translated_streams_and_http10_clients_after_an_early_head() {
    let (_m, mock) = spawn_mock(&["--stream-interval-ms", "1"]);
    let gw = gateway(mock, &[]);

    // OpenAI client, anthropic target: translated chunks after the pings.
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(
        chat_request(
            "/anth/chat/completions",
            true,
            "x-mock-delay-ms: 1500\r\n",
            "1.1",
        )
        .as_bytes(),
    )
    .unwrap();
    let (status, headers) = read_head(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    let (pings, rest) = read_pings_then_body(&mut r);
    assert!(pings >= 1);
    let events = data_events(&rest);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk", "{first}");

    // ... and its error, translated to OpenAI's shape, as an error event.
    let e = pinged_error(
        &mut s,
        &mut r,
        "/anth/chat/completions",
        "x-mock-delay-ms: 1500\r\nx-mock-status: 529\r\n",
    );
    assert_eq!(e["status"], 529, "{e}");
    assert!(e["error"]["message"].is_string(), "{e}");

    // HTTP/1.0: no chunked coding, the stream ends with the connection.
    let (mut s, mut r) = connect_buffered(gw.proxy);
    s.write_all(
        chat_request(
            "/v1/chat/completions",
            true,
            "x-mock-delay-ms: 1500\r\n",
            "1.0",
        )
        .as_bytes(),
    )
    .unwrap();
    let (status, headers) = read_head(&mut r).unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "transfer-encoding"), None);
    assert_eq!(header(&headers, "connection"), Some("close"));
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut body).unwrap();
    assert!(
        body.starts_with(PING),
        "{:?}",
        String::from_utf8_lossy(&body)
    );
    let events = data_events(&body);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
}
