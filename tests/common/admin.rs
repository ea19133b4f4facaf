//! Admin API helpers: a JSON client over raw HTTP, a gateway spawner on a
//! data dir the test controls (so restarts keep state), and a ready-made
//! route to a mock upstream.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{connect_buffered, read_response, wait_for_line, ChildGuard};

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
    let (status, _, body) = read_response(&mut r)?;
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

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ringgate-test-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `ringgate serve`.
pub struct Gateway {
    pub guard: ChildGuard,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
}

impl Gateway {
    /// SIGTERM, then wait (up to 20 s) for a clean exit.
    pub fn stop(mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.guard.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.guard.0.try_wait() {
                assert!(status.success(), "gateway exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("gateway did not stop within 20 s of SIGTERM");
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        let _ = self.guard.0.kill();
        let _ = self.guard.0.wait();
    }
}

fn serve_command(data_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringgate"));
    cmd.arg("serve");
    for flag in ["--proxy", "--admin"] {
        if !extra.contains(&flag) {
            cmd.args([flag, "127.0.0.1:0"]);
        }
    }
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["--log-level", "error", "--max-connections", "1024"]);
    if !extra.contains(&"--shards") {
        cmd.args(["--shards", "1"]);
    }
    cmd.args(extra).stdin(Stdio::null());
    cmd
}

/// Starts `ringgate serve` on `data_dir` (ports picked by the kernel, one
/// shard unless `extra` says `--shards`) and waits for its ready line.
pub fn start(data_dir: &Path, extra: &[&str]) -> Gateway {
    let child = serve_command(data_dir, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ringgate serve");
    let mut guard = ChildGuard(child);
    let line = wait_for_line(&mut guard, "ringgate ready:");
    let addr = |label: &str| -> SocketAddr {
        line.split_whitespace()
            .skip_while(|w| *w != label)
            .nth(1)
            .and_then(|u| u.strip_prefix("http://"))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("bad ready line {line:?}"))
    };
    Gateway {
        proxy: addr("proxy"),
        admin: addr("admin"),
        guard,
    }
}

/// Starts `ringgate serve` expecting it to fail: its exit code and stderr.
pub fn start_failing(data_dir: &Path, extra: &[&str]) -> (i32, String) {
    let child = serve_command(data_dir, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringgate serve");
    let mut guard = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = guard.0.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = guard.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return (status.code().unwrap_or(-1), err);
        }
        assert!(
            Instant::now() < deadline,
            "serve kept running though it should have refused to start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
    read_response(&mut r).expect("proxied response").0
}

/// `GET /api/v1/gateways/{gid}/keys/{kid}/spend?period=...`: the answer, checked to be a 200.
pub fn spend(addr: SocketAddr, gid: &str, kid: &str, period: &str) -> Value {
    let path = format!("/api/v1/gateways/{gid}/keys/{kid}/spend?period={period}");
    let (s, v) = call(addr, "GET", &path, None, None);
    assert_eq!(s, 200, "{v}");
    v
}
