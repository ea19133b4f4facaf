//! Raw TCP peers for the hardening suites: a recording upstream that keeps
//! every byte the gateway sent it (to prove nothing smuggled got through),
//! and scripted upstreams that misbehave on purpose.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the recording upstream parsed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The request line, e.g. `POST /echo HTTP/1.1`.
    pub line: String,
    /// The head's header lines, as sent.
    pub headers: Vec<String>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Seen {
    /// `METHOD path` and the body as text: what the case tables compare.
    pub fn short(&self) -> String {
        let mut it = self.line.split(' ');
        let m = it.next().unwrap_or("");
        let p = it.next().unwrap_or("");
        if self.body.is_empty() {
            format!("{m} {p}")
        } else {
            format!("{m} {p} {}", String::from_utf8_lossy(&self.body))
        }
    }
}

#[derive(Default)]
struct Log {
    seen: Vec<Seen>,
    /// Bytes that did not parse as an HTTP/1.1 request (a desync).
    garbage: Vec<String>,
    /// Unparsed bytes per open connection.
    partial: Vec<(usize, Vec<u8>)>,
}

/// A raw upstream that parses what it gets strictly, records it and answers
/// `200` with the body `seen <METHOD> <path>`.
pub struct Recorder {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    pub connections: Arc<AtomicUsize>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (l, c) = (log.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let id = c.fetch_add(1, Ordering::SeqCst);
                let l = l.clone();
                std::thread::spawn(move || record_connection(stream, id, &l));
            }
        });
        Recorder {
            addr,
            log,
            connections,
        }
    }

    /// Everything parsed so far, in arrival order, then forgets it.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut self.log.lock().unwrap().seen)
    }

    /// Desync evidence: unparseable bytes, or bytes left over that do not
    /// complete a request.
    pub fn problems(&self) -> Vec<String> {
        let mut log = self.log.lock().unwrap();
        let mut out = std::mem::take(&mut log.garbage);
        for (id, p) in &log.partial {
            if !p.is_empty() {
                out.push(format!(
                    "connection {id}: {} unparsed bytes {:?}",
                    p.len(),
                    String::from_utf8_lossy(p)
                ));
            }
        }
        out
    }
}

fn record_connection(mut s: TcpStream, id: usize, log: &Mutex<Log>) {
    log.lock().unwrap().partial.push((id, Vec::new()));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match parse_request(&buf) {
                Parsed::Partial => break,
                Parsed::Bad(why) => {
                    let mut l = log.lock().unwrap();
                    l.garbage.push(format!(
                        "connection {id}: {why}: {:?}",
                        String::from_utf8_lossy(&buf)
                    ));
                    return;
                }
                Parsed::Done(seen, used) => {
                    buf.drain(..used);
                    let path = seen.line.split(' ').nth(1).unwrap_or("").to_string();
                    let method = seen.line.split(' ').next().unwrap_or("").to_string();
                    let body = format!("seen {method} {path}");
                    log.lock().unwrap().seen.push(seen);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Recorder: {id}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            }
        }
        let mut l = log.lock().unwrap();
        if let Some(p) = l.partial.iter_mut().find(|(i, _)| *i == id) {
            p.1 = buf.clone();
        }
    }
    let mut l = log.lock().unwrap();
    l.partial.retain(|(i, _)| *i != id);
    if !buf.is_empty() {
        l.garbage.push(format!(
            "connection {id} closed with {} unparsed bytes {:?}",
            buf.len(),
            String::from_utf8_lossy(&buf)
        ));
    }
}

enum Parsed {
    Partial,
    Bad(String),
    Done(Seen, usize),
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A strict parser of what a well-behaved gateway sends: CRLF everywhere,
/// one framing header at most.
fn parse_request(buf: &[u8]) -> Parsed {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Parsed::Partial;
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Bad("non-UTF-8 head".into());
    };
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("").to_string();
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3 || parts[2] != "HTTP/1.1" || !parts[1].starts_with('/') {
        return Parsed::Bad(format!("bad request line {line:?}"));
    }
    let mut headers = Vec::new();
    let mut cl: Option<usize> = None;
    let mut chunked = false;
    for h in lines {
        if h.contains('\n') || h.contains('\r') || h.starts_with(' ') || h.starts_with('\t') {
            return Parsed::Bad(format!("bad header line {h:?}"));
        }
        let Some((n, v)) = h.split_once(':') else {
            return Parsed::Bad(format!("header without colon {h:?}"));
        };
        if n.ends_with(' ') {
            return Parsed::Bad(format!("space before colon {h:?}"));
        }
        let v = v.trim();
        if n.eq_ignore_ascii_case("content-length") {
            if cl.is_some() {
                return Parsed::Bad("two Content-Length".into());
            }
            match v.parse() {
                Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) => cl = Some(n),
                _ => return Parsed::Bad(format!("bad Content-Length {v:?}")),
            }
        } else if n.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !v.eq_ignore_ascii_case("chunked") {
                return Parsed::Bad(format!("bad Transfer-Encoding {v:?}"));
            }
            chunked = true;
        }
        headers.push(h.to_string());
    }
    if chunked && cl.is_some() {
        return Parsed::Bad("both Content-Length and Transfer-Encoding".into());
    }
    let mut at = end + 4;
    let mut body = Vec::new();
    if let Some(n) = cl {
        if buf.len() < at + n {
            return Parsed::Partial;
        }
        body.extend_from_slice(&buf[at..at + n]);
        at += n;
    } else if chunked {
        loop {
            let Some(le) = find(&buf[at..], b"\r\n") else {
                return Parsed::Partial;
            };
            let size_line = String::from_utf8_lossy(&buf[at..at + le]).to_string();
            let size_str = size_line.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size_str, 16) else {
                return Parsed::Bad(format!("bad chunk size {size_line:?}"));
            };
            at += le + 2;
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    let Some(le) = find(&buf[at..], b"\r\n") else {
                        return Parsed::Partial;
                    };
                    at += le + 2;
                    if le == 0 {
                        break;
                    }
                }
                break;
            }
            if buf.len() < at + size + 2 {
                return Parsed::Partial;
            }
            body.extend_from_slice(&buf[at..at + size]);
            if &buf[at + size..at + size + 2] != b"\r\n" {
                return Parsed::Bad("chunk data not followed by CRLF".into());
            }
            at += size + 2;
        }
    }
    Parsed::Done(
        Seen {
            line,
            headers,
            body,
        },
        at,
    )
}

/// A raw upstream running `script` on a thread for every connection it
/// accepts (with the connection's index, from 0).
pub struct Scripted {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl Scripted {
    pub fn start<F>(script: F) -> Scripted
    where
        F: Fn(TcpStream, usize) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let c = connections.clone();
        let script = Arc::new(script);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let i = c.fetch_add(1, Ordering::SeqCst);
                let script = script.clone();
                std::thread::spawn(move || script(stream, i));
            }
        });
        Scripted { addr, connections }
    }
}

/// Reads one request head (up to CRLFCRLF, with a 10 s timeout) and returns
/// it; the body of the requests in these tests is empty.
pub fn read_request_head(s: &mut TcpStream) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    while find(&buf, b"\r\n\r\n").is_none() {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    Some(buf)
}
