//! Admin API helpers: a JSON client over raw HTTP, a gateway spawner on a
//! data dir the test controls (so restarts keep state), and a ready-made
//! route to a mock upstream.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

pub use super::Gateway;
use super::{connect_buffered, read_response, unique_temp_dir};

/// One admin call on a fresh connection: status and JSON body (`Null` when
/// empty).
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
    call_raw(
        addr,
        method,
        path,
        bytes.as_ref().map(|_| "application/json"),
        bytes.as_deref().unwrap_or(b""),
        token,
    )
}

/// An admin call with an explicit Content-Type (or none) and raw body bytes.
pub fn call_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    token: Option<&str>,
) -> (u16, Value) {
    try_call_raw(addr, method, path, content_type, body, token)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// `call` that reports a connection failure instead of panicking.
pub fn try_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
    try_call_raw(
        addr,
        method,
        path,
        bytes.as_ref().map(|_| "application/json"),
        bytes.as_deref().unwrap_or(b""),
        None,
    )
}

fn try_call_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    token: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut r = std::io::BufReader::new(s.try_clone()?);
    let mut s = s;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    // A refused body may be answered (and the connection closed) before it
    // is all sent: ignore write errors, the answer is what matters.
    let _ = s.write_all(body);
    let super::Response { status, body, .. } = read_response(&mut r)?;
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&body)
            )
        })
    };
    Ok((status, value))
}

/// `call` that asserts the status and returns the body.
pub fn expect(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    status: u16,
) -> Value {
    let (got, v) = call(addr, method, path, body, None);
    assert_eq!(got, status, "{method} {path} answered {v}");
    v
}

/// A fresh, empty directory under the system temp dir, which the test owns
/// (a gateway's data dir that outlives a restart).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = unique_temp_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `Gateway::builder().data_dir(data_dir).args(extra).start()`.
pub fn start(data_dir: &Path, extra: &[&str]) -> Gateway {
    Gateway::builder().data_dir(data_dir).args(extra).start()
}

/// `Gateway::builder().data_dir(data_dir).args(extra).start_failing()`.
pub fn start_failing(data_dir: &Path, extra: &[&str]) -> (i32, String) {
    Gateway::builder()
        .data_dir(data_dir)
        .args(extra)
        .start_failing()
}

/// The ids of a route: gateway → upstream (the mock) → service → rule, and
/// an API key's plaintext.
pub struct Route {
    pub gateway: String,
    pub upstream: String,
    pub service: String,
    pub rule: String,
    pub key: String,
}

pub fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

/// Creates gateway `name`, an upstream on `mock`, a service and (when
/// `rule_path` is given) a rule for POST/GET on it, and a key.
pub fn create_route(
    admin: SocketAddr,
    name: &str,
    mock: SocketAddr,
    rule_path: Option<&str>,
) -> Route {
    let gw = id(&expect(
        admin,
        "POST",
        "/api/v1/gateways",
        Some(&json!({ "name": name })),
        201,
    ));
    let base = format!("/api/v1/gateways/{gw}");
    let up = id(&expect(
        admin,
        "POST",
        &format!("{base}/upstreams"),
        Some(&json!({"name": "llm", "targets": [{"host": "127.0.0.1", "port": mock.port()}]})),
        201,
    ));
    let svc = id(&expect(
        admin,
        "POST",
        &format!("{base}/services"),
        Some(&json!({"name": "chat", "type": "upstream", "upstream_id": up})),
        201,
    ));
    let rule = match rule_path {
        Some(p) => id(&expect(
            admin,
            "POST",
            &format!("{base}/rules"),
            Some(
                &json!({"name": "openai", "path": p, "methods": ["GET", "POST"], "service_id": svc}),
            ),
            201,
        )),
        None => String::new(),
    };
    let key = expect(
        admin,
        "POST",
        &format!("{base}/keys"),
        Some(&json!({"name": "app"})),
        201,
    )["key"]
        .as_str()
        .expect("plaintext key in the create answer")
        .to_string();
    Route {
        gateway: gw,
        upstream: up,
        service: svc,
        rule,
        key,
    }
}

/// The raw bytes of a proxied chat completion with `key`.
pub fn chat_request(key: &str, close: bool) -> Vec<u8> {
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes()
}

/// One proxied chat completion on a fresh connection: the status.
pub fn proxied(proxy: SocketAddr, key: &str) -> u16 {
    let (mut s, mut r) = connect_buffered(proxy);
    s.write_all(&chat_request(key, true)).unwrap();
    read_response(&mut r).expect("proxied response").status
}

/// `GET /api/v1/gateways/{gid}/keys/{kid}/spend?period=...`: the answer, checked to be a 200.
pub fn spend(addr: SocketAddr, gid: &str, kid: &str, period: &str) -> Value {
    let path = format!("/api/v1/gateways/{gid}/keys/{kid}/spend?period={period}");
    let (s, v) = call(addr, "GET", &path, None, None);
    assert_eq!(s, 200, "{v}");
    v
}
