//! HTTP/1.1 conformance and request smuggling, table-driven over raw sockets.
//!
//! Every case sends raw bytes to the gateway in front of a recording
//! upstream (`raw::Recorder`, a strict parser that keeps every byte it gets)
//! and checks three things: the statuses the client gets, whether the
//! gateway closed the connection (it must after anything ambiguous), and the
//! exact requests the upstream saw (nothing smuggled, nothing left over).
//! Where the connection must stay open, a probe request proves it is still
//! in sync.

use crate::common;
use crate::raw;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{closed_within, header, one_gateway, read_response, spawn_gateway, target};
use raw::Recorder;
use serde_json::json;

const KEY: &str = "rg-conformance-key";

/// One raw exchange and what must come of it.
struct Case {
    name: &'static str,
    /// Raw bytes; `$K` stands for the `X-TG-API-Key: ...` field (no line end).
    send: &'static str,
    /// Half-close the client side after sending.
    half_close: bool,
    /// Statuses of the responses, in order.
    statuses: &'static [u16],
    /// The gateway must close the connection after them.
    close: bool,
    /// What the upstream may see, in order: `METHOD path[ body]`.
    upstream: &'static [&'static str],
}

const fn bad(name: &'static str, send: &'static str) -> Case {
    refused(name, send, 400)
}

const fn refused(name: &'static str, send: &'static str, status: u16) -> Case {
    Case {
        name,
        send,
        half_close: false,
        statuses: match status {
            400 => &[400],
            408 => &[408],
            413 => &[413],
            431 => &[431],
            _ => &[0],
        },
        close: true,
        upstream: &[],
    }
}

const fn ok(
    name: &'static str,
    send: &'static str,
    statuses: &'static [u16],
    close: bool,
    upstream: &'static [&'static str],
) -> Case {
    Case {
        name,
        send,
        half_close: false,
        statuses,
        close,
        upstream,
    }
}

const CASES: &[Case] = &[
    // ---- request line and header syntax ----
    bad("bad method token", "G(T /a HTTP/1.1\r\nHost: gw\r\n$K\r\n\r\n"),
    bad("control char in target", "GET /a\x01b HTTP/1.1\r\nHost: gw\r\n$K\r\n\r\n"),
    bad("space in target", "GET /a b HTTP/1.1\r\nHost: gw\r\n$K\r\n\r\n"),
    bad("control char in value", "GET /a HTTP/1.1\r\nHost: gw\r\nX-A: a\x01b\r\n$K\r\n\r\n"),
    bad("NUL in value", "GET /a HTTP/1.1\r\nHost: gw\r\nX-A: a\x00b\r\n$K\r\n\r\n"),
    bad("DEL in header name", "GET /a HTTP/1.1\r\nHost: gw\r\nX-\x7fA: b\r\n$K\r\n\r\n"),
    bad("obs-fold", "GET /a HTTP/1.1\r\nHost: gw\r\nX-A: a\r\n b\r\n$K\r\n\r\n"),
    bad("space before colon", "GET /a HTTP/1.1\r\nHost : gw\r\n$K\r\n\r\n"),
    bad("tab before colon", "GET /a HTTP/1.1\r\nHost: gw\r\nX-A\t: b\r\n$K\r\n\r\n"),
    bad("space in header name", "GET /a HTTP/1.1\r\nHost: gw\r\nX A: b\r\n$K\r\n\r\n"),
    bad("empty header name", "GET /a HTTP/1.1\r\nHost: gw\r\n: b\r\n$K\r\n\r\n"),
    bad("header without colon", "GET /a HTTP/1.1\r\nHost: gw\r\nNoColon\r\n$K\r\n\r\n"),
    bad("bare CR in header", "GET /a HTTP/1.1\r\nHost: gw\r\nX-A: a\rX-B: b\r\n$K\r\n\r\n"),
    bad("bare CR after request line", "GET /a HTTP/1.1\rHost: gw\r\n$K\r\n\r\n"),
    bad("whitespace before first header", "GET /a HTTP/1.1\r\n Host: gw\r\n$K\r\n\r\n"),
    bad("missing Host", "GET /a HTTP/1.1\r\n$K\r\n\r\n"),
    bad("repeated Host, same value", "GET /a HTTP/1.1\r\nHost: gw\r\nHost: gw\r\n$K\r\n\r\n"),
    bad("repeated Host, other value", "GET /a HTTP/1.1\r\nHost: gw\r\nhost: evil\r\n$K\r\n\r\n"),
    bad("HTTP/1.2", "GET /a HTTP/1.2\r\nHost: gw\r\n$K\r\n\r\n"),
    bad("HTTP/2.0 request line", "GET /a HTTP/2.0\r\nHost: gw\r\n$K\r\n\r\n"),
    bad("lowercase version", "GET /a http/1.1\r\nHost: gw\r\n$K\r\n\r\n"),
    bad("HTTP/0.9 request", "GET /a\r\n\r\n"),
    bad("double space in request line", "GET  /a HTTP/1.1\r\nHost: gw\r\n$K\r\n\r\n"),
    bad("absolute-form target", "GET http://evil.example/a HTTP/1.1\r\nHost: gw\r\n$K\r\n\r\n"),
    bad("authority-form target", "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n$K\r\n\r\n"),
    bad("asterisk-form on GET", "GET * HTTP/1.1\r\nHost: gw\r\n$K\r\n\r\n"),
    ok("bare LF line endings", "GET /lf HTTP/1.1\nHost: gw\n$K\n\n", &[200], false, &["GET /lf"]),
    ok("HTTP/1.0 without Host", "GET /ten HTTP/1.0\r\n$K\r\n\r\n", &[200], true, &["GET /ten"]),
    refused("head over 32 KiB", "GET /a HTTP/1.1\r\nHost: gw\r\n$K\r\nX-Big: $BIG\r\n\r\n", 431),
    refused("101 header fields", "GET /a HTTP/1.1\r\nHost: gw\r\n$K\r\n$MANY\r\n", 431),
    // ---- framing: Content-Length and Transfer-Encoding together ----
    bad("CL then TE", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    bad("TE then CL", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
    bad("TE and CL, upper case", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTRANSFER-ENCODING: CHUNKED\r\ncontent-length: 5\r\n\r\n0\r\n\r\n"),
    bad("CL.TE smuggle", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"),
    bad("TE.CL smuggle", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST /a HTTP/1.1\r\n\r\n0\r\n\r\n"),
    bad("TE obfuscated second field", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: x\r\n\r\n0\r\n\r\n"),
    bad("TE with vertical tab", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n"),
    bad("TE obs-folded", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"),
    bad("TE space before colon", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    // ---- Content-Length values ----
    bad("duplicate CL, equal", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    bad("duplicate CL, different", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    bad("CL list", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: 5, 5\r\n\r\nhello"),
    bad("CL with plus sign", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: +5\r\n\r\nhello"),
    bad("CL negative", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: -1\r\n\r\n"),
    bad("CL with inner space", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: 1 0\r\n\r\nhello"),
    bad("CL hex", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: 0x5\r\n\r\nhello"),
    bad("CL overflow", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: 18446744073709551616\r\n\r\nhello"),
    bad("CL empty", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length:\r\n\r\nhello"),
    refused("CL over the body limit", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: 99999999999\r\n\r\nhello", 413),
    ok("CL with surrounding spaces", "POST /sp HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length:   5  \r\n\r\nhello", &[200], false, &["POST /sp hello"]),
    ok("GET with a CL body", "GET /gb HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: 5\r\n\r\nhello", &[200], false, &["GET /gb hello"]),
    ok("request inside a CL body stays body", "POST /outer HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: 33\r\n\r\nGET /inner HTTP/1.1\r\nHost: gw\r\n\r\n", &[200], false, &["POST /outer GET /inner HTTP/1.1\r\nHost: gw\r\n\r\n"]),
    // ---- Transfer-Encoding values ----
    bad("chunked, identity", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
    bad("identity, chunked", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n"),
    bad("chunked not last", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
    bad("gzip, chunked (not decodable)", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    bad("chunked twice in two fields", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    bad("TE xchunked", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    bad("TE on HTTP/1.0", "POST /a HTTP/1.0\r\n$K\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    bad("TE and CL on HTTP/1.0", "POST /a HTTP/1.0\r\n$K\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
    ok("chunked, mixed case", "POST /ch HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: ChUnKeD\r\n\r\n5\r\nhello\r\n0\r\n\r\n", &[200], false, &["POST /ch hello"]),
    // ---- chunked bodies ----
    bad("chunk size overflow", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"),
    // The declared size is not refused up front: the data would be (413), but it never comes.
    refused("huge chunk size, data never sent", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nhello", 408),
    bad("chunk size negative", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
    bad("chunk size 0x prefix", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"),
    bad("chunk size line bare LF", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
    bad("chunk extension with bare LF", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n"),
    bad("chunk data longer than its size", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"),
    bad("chunk data without CRLF", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n"),
    refused("missing final CRLF", "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n", 408),
    ok("chunk extensions", "POST /ext HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value;x\r\nhello\r\n0;last\r\n\r\n", &[200], false, &["POST /ext hello"]),
    ok("trailers", "POST /trl HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: v\r\nX-Other: w\r\n\r\n", &[200], false, &["POST /trl hello"]),
    // ---- pipelining ----
    ok("three pipelined requests", "GET /p1 HTTP/1.1\r\nHost: gw\r\n$K\r\n\r\nPOST /p2 HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: 3\r\n\r\nabcPOST /p3 HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n", &[200, 200, 200], false, &["GET /p1", "POST /p2 abc", "POST /p3 xy"]),
    ok("pipelined after a bad request", "GET /b1 HTTP/1.1\r\nHost: gw\r\n$K\r\n\r\nGET /b2 HTTP/1.1\r\nHost : gw\r\n$K\r\n\r\nGET /b3 HTTP/1.1\r\nHost: gw\r\n$K\r\n\r\n", &[200, 400], true, &["GET /b1"]),
    ok("pipelined after CL+TE", "GET /c1 HTTP/1.1\r\nHost: gw\r\n$K\r\n\r\nPOST /c2 HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /c3 HTTP/1.1\r\nHost: gw\r\n$K\r\n\r\n", &[200, 400], true, &["GET /c1"]),
    ok("pipelined after a bad chunk", "POST /d1 HTTP/1.1\r\nHost: gw\r\n$K\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\nGET /d2 HTTP/1.1\r\nHost: gw\r\n$K\r\n\r\n", &[400], true, &[]),
    ok("HTTP/1.0 keep-alive pipelined", "POST /k1 HTTP/1.0\r\n$K\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhiGET /k2 HTTP/1.0\r\n$K\r\n\r\n", &[200, 200], true, &["POST /k1 hi", "GET /k2"]),
    ok("Expect 100-continue", "POST /exp HTTP/1.1\r\nHost: gw\r\n$K\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello", &[200], false, &["POST /exp hello"]),
    Case {
        name: "body shorter than CL, then EOF",
        send: "POST /a HTTP/1.1\r\nHost: gw\r\n$K\r\nContent-Length: 10\r\n\r\nhello",
        half_close: true,
        statuses: &[],
        close: true,
        upstream: &[],
    },
];

fn expand(send: &str) -> Vec<u8> {
    let mut s = send.replace("$K", &format!("X-TG-API-Key: {KEY}"));
    s = s.replace("$BIG", &"b".repeat(33 * 1024));
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    s = s.replace("$MANY\r\n", &many);
    s.into_bytes()
}

/// Runs one case; returns the failure, if any.
fn run(case: &Case, gw: std::net::SocketAddr, up: &Recorder) -> Result<(), String> {
    let s = TcpStream::connect_timeout(&gw, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    // A peer that answers early may reset: a failed write is not a failure here.
    let _ = w.write_all(&expand(case.send));
    if case.half_close {
        let _ = w.shutdown(std::net::Shutdown::Write);
    }
    let mut bodies = Vec::new();
    for (i, want) in case.statuses.iter().enumerate() {
        let common::Response {
            status,
            headers,
            body,
        } = read_response(&mut r).map_err(|e| format!("response {i}: {e}"))?;
        if status != *want {
            return Err(format!(
                "response {i}: status {status}, want {want} ({})",
                String::from_utf8_lossy(&body)
            ));
        }
        if status >= 400 && header(&headers, "x-recorder").is_some() {
            return Err(format!("response {i}: the error came from the upstream"));
        }
        if status == 200 {
            bodies.push(String::from_utf8_lossy(&body).into_owned());
        }
    }
    let mut expect: Vec<String> = case.upstream.iter().map(|s| s.to_string()).collect();
    if case.close {
        if !closed_within(&mut r) {
            return Err("connection left open".into());
        }
    } else {
        let probe = format!("GET /probe HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {KEY}\r\n\r\n");
        w.write_all(probe.as_bytes())
            .map_err(|e| format!("probe: {e}"))?;
        let common::Response { status, body, .. } =
            read_response(&mut r).map_err(|e| format!("probe: {e}"))?;
        if status != 200 {
            return Err(format!("probe: status {status}"));
        }
        bodies.push(String::from_utf8_lossy(&body).into_owned());
        expect.push("GET /probe".into());
    }
    let seen = up.take();
    let got: Vec<String> = seen.iter().map(|s| s.short()).collect();
    if got != expect {
        return Err(format!("upstream saw {got:?}, want {expect:?}"));
    }
    // Every 200 answers its own request, in order.
    for (body, s) in bodies.iter().zip(&seen) {
        let mut it = s.line.split(' ');
        let want = format!("seen {} {}", it.next().unwrap(), it.next().unwrap());
        if *body != want {
            return Err(format!("client got {body:?} for {want:?}"));
        }
    }
    let problems = up.problems();
    if !problems.is_empty() {
        return Err(format!("upstream desync: {problems:?}"));
    }
    Ok(())
}

#[test]
fn conformance_table() {
    assert!(CASES.len() >= 40, "{} cases", CASES.len());
    let up = Recorder::start();
    let config = one_gateway(
        "round-robin",
        json!([target(up.addr)]),
        json!([{"name": "all", "path": "/"}]),
        json!([{"name": "k", "key": KEY}]),
    );
    let gw = spawn_gateway(
        &config,
        &["--header-timeout-ms", "1500", "--body-timeout-ms", "1500"],
    );
    let mut failures = Vec::new();
    for case in CASES {
        if let Err(e) = run(case, gw.proxy, &up) {
            failures.push(format!("{}: {e}", case.name));
            // Start the next case from a clean record.
            up.take();
            up.problems();
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
