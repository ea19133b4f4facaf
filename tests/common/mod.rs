//! Raw-HTTP helpers shared by the integration tests (no HTTP client crates).
#![allow(dead_code)]

pub mod admin;
pub mod browser;
pub mod tls;

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills and reaps the child process when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `ringgate mock-upstream --listen 127.0.0.1:0 <extra>` and waits (up to 20 s) for its
/// "listening on" line; returns the guard and the bound address.
pub fn spawn_mock(extra: &[&str]) -> (ChildGuard, SocketAddr) {
    spawn_mock_on("127.0.0.1:0", extra)
}

/// [`spawn_mock`] on a given address (`listen`), e.g. a port a test restarts a target on.
pub fn spawn_mock_on(listen: &str, extra: &[&str]) -> (ChildGuard, SocketAddr) {
    let mut args = vec!["mock-upstream", "--listen", listen];
    args.extend_from_slice(extra);
    let child = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ringgate mock-upstream");
    let mut guard = ChildGuard(child);
    let line = wait_for_line(&mut guard, "ringgate mock-upstream listening on http://");
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("bad listening line: {line:?}"));
    (guard, addr)
}

/// Reads the child's stdout (on a helper thread, which keeps draining it afterwards) until a line
/// starting with `prefix` appears; panics after 20 s or when stdout closes first.
pub fn wait_for_line(guard: &mut ChildGuard, prefix: &str) -> String {
    let stdout = guard.0.stdout.take().expect("child stdout is piped");
    let (tx, rx) = mpsc::channel();
    let wanted = prefix.to_string();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut sent = false;
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if !sent && line.starts_with(&wanted) => {
                    let _ = tx.send(line.clone());
                    sent = true;
                }
                Ok(_) => {}
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(l) => l,
        Err(_) => {
            let status = guard.0.try_wait().ok().flatten();
            panic!("child never printed {prefix:?} (exit status: {status:?})");
        }
    }
}

/// Connects with 10 s read/write timeouts and TCP_NODELAY.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A connection plus a buffered reader on it (keeps bytes of pipelined answers).
pub fn connect_buffered(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = connect(addr);
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// First value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One HTTP response as read off the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// In order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as text (lossy), e.g. for a failed assertion's message.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, with the body in the panic message.
    pub fn json(&self) -> serde_json::Value {
        json_body(&self.body)
    }

    /// The status and the body parsed as JSON.
    pub fn status_and_json(&self) -> (u16, serde_json::Value) {
        (self.status, self.json())
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_line_crlf<R: BufRead>(r: &mut R) -> io::Result<String> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if !line.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "truncated line",
        ));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| bad("non-UTF-8 line"))
}

/// Reads a status line and headers (skipping 1xx interim answers).
pub fn read_head<R: BufRead>(r: &mut R) -> io::Result<(u16, Vec<(String, String)>)> {
    loop {
        let status_line = read_line_crlf(r)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!("bad status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line_crlf(r)?;
            if line.is_empty() {
                break;
            }
            let (n, v) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        return Ok((status, headers));
    }
}

/// Reads one chunk of a chunked body: Some(data), or None for the last chunk (trailers consumed).
pub fn read_chunk<R: BufRead>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let line = read_line_crlf(r)?;
    let size_str = line.split(';').next().unwrap_or("").trim();
    let size =
        usize::from_str_radix(size_str, 16).map_err(|_| bad(format!("bad chunk size {line:?}")))?;
    if size == 0 {
        loop {
            if read_line_crlf(r)?.is_empty() {
                return Ok(None);
            }
        }
    }
    let mut data = vec![0; size];
    r.read_exact(&mut data)?;
    let mut crlf = [0u8; 2];
    r.read_exact(&mut crlf)?;
    if &crlf != b"\r\n" {
        return Err(bad("missing CRLF after chunk data"));
    }
    Ok(Some(data))
}

/// Reads one whole response: status, headers, body (Content-Length, chunked or close-delimited).
pub fn read_response<R: BufRead>(r: &mut R) -> io::Result<Response> {
    read_response_to(r, false)
}

/// Like [`read_response`]; `head_request` says the request was HEAD (no body follows).
pub fn read_response_to<R: BufRead>(r: &mut R, head_request: bool) -> io::Result<Response> {
    let (status, headers) = read_head(r)?;
    let mut body = Vec::new();
    if head_request || status == 204 || status == 304 {
        return Ok(Response {
            status,
            headers,
            body,
        });
    }
    let chunked = header(&headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        while let Some(c) = read_chunk(r)? {
            body.extend_from_slice(&c);
        }
    } else if let Some(cl) = header(&headers, "content-length") {
        let n: usize = cl.parse().map_err(|_| bad("bad content-length"))?;
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A running `ringgate serve`, started by [`Gateway::builder`]. Dropping it
/// kills the process, then removes its scratch directory (`dir`: the config
/// file and, unless the builder named one, the data dir).
pub struct Gateway {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub dir: std::path::PathBuf,
    /// Taken (killed and reaped) first in `Drop`, then the directory is removed.
    child: Option<ChildGuard>,
}

/// How to start a gateway; one set of defaults for every test: kernel-picked
/// ports on 127.0.0.1, one shard, `--max-connections 2048` (keeps the
/// file-descriptor need under the test host's limit), log level `error`
/// (`RINGGATE_TEST_LOG=debug` shows the gateway's side), a fresh data dir.
/// `args` overrides any of them.
#[derive(Default)]
pub struct GatewayBuilder {
    config: Option<serde_json::Value>,
    data_dir: Option<std::path::PathBuf>,
    args: Vec<String>,
}

impl GatewayBuilder {
    /// Serve this configuration (written to `DIR/config.json`, `--config`).
    pub fn config(mut self, config: &serde_json::Value) -> Self {
        self.config = Some(config.clone());
        self
    }

    /// Keep the store in `dir`, which the test owns (so a restart finds it).
    pub fn data_dir(mut self, dir: &std::path::Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// More command-line arguments (a flag given here replaces the default).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    fn command(&self, dir: &std::path::Path) -> Command {
        std::fs::create_dir_all(dir).expect("create temp dir");
        let given = |flag: &str| self.args.iter().any(|a| a == flag);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringgate"));
        cmd.arg("serve");
        for flag in ["--proxy", "--admin"] {
            if !given(flag) {
                cmd.args([flag, "127.0.0.1:0"]);
            }
        }
        if !given("--log-level") {
            let level = std::env::var("RINGGATE_TEST_LOG").unwrap_or_else(|_| "error".into());
            cmd.args(["--log-level", &level]);
        }
        if !given("--shards") {
            cmd.args(["--shards", "1"]);
        }
        if !given("--max-connections") {
            cmd.args(["--max-connections", "2048"]);
        }
        if !given("--data-dir") {
            let data = self.data_dir.clone().unwrap_or_else(|| dir.join("data"));
            cmd.arg("--data-dir").arg(data);
        }
        if let Some(config) = &self.config {
            let path = dir.join("config.json");
            std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap())
                .expect("write config");
            cmd.arg("--config").arg(path);
        }
        cmd.args(&self.args).stdin(Stdio::null());
        cmd
    }

    fn spawn(&self, dir: &std::path::Path, stdout: Stdio, stderr: Stdio) -> ChildGuard {
        let child = self
            .command(dir)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start ringgate serve");
        ChildGuard(child)
    }

    /// Starts `ringgate serve` and waits (up to 20 s) for its ready line.
    pub fn start(self) -> Gateway {
        let dir = unique_temp_dir("gw");
        let child = self.spawn(&dir, Stdio::piped(), Stdio::inherit());
        // From here on the directory goes when the gateway does.
        let mut gw = Gateway {
            proxy: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            child: Some(child),
        };
        let guard = gw.child.as_mut().expect("just set");
        let line = wait_for_line(guard, "ringgate ready: ");
        // "ringgate ready: proxy http://ADDR admin http://ADDR shards N"
        let addr = |label: &str| -> SocketAddr {
            line.split_whitespace()
                .skip_while(|w| *w != label)
                .nth(1)
                .and_then(|u| u.strip_prefix("http://"))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("bad {label} address in ready line {line:?}"))
        };
        gw.proxy = addr("proxy");
        gw.admin = addr("admin");
        gw
    }

    /// Starts `ringgate serve` expecting it to refuse: its exit code and
    /// stderr (panics if it still runs after 20 s).
    pub fn start_failing(self) -> (i32, String) {
        let dir = unique_temp_dir("gw-failing");
        let mut guard = self.spawn(&dir, Stdio::null(), Stdio::piped());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let out = loop {
            if let Ok(Some(status)) = guard.0.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = guard.0.stderr.take() {
                    let _ = io::Read::read_to_string(&mut e, &mut err);
                }
                break (status.code().unwrap_or(-1), err);
            }
            if std::time::Instant::now() >= deadline {
                drop(guard);
                let _ = std::fs::remove_dir_all(&dir);
                panic!("serve kept running though it should have refused to start");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        drop(guard);
        let _ = std::fs::remove_dir_all(&dir);
        out
    }
}

impl Gateway {
    /// The one way to start a gateway: `Gateway::builder().config(&c).args(&[..]).start()`.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// True while the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.0.try_wait().ok().flatten().is_none())
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.0.id())
    }

    /// Polls until the process exits, up to `within`; `None` if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.0.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait (up to 20 s) for a clean exit.
    pub fn stop(mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        match self.wait_exit(Duration::from_secs(20)) {
            Some(status) => assert!(status.success(), "gateway exited with {status}"),
            None => panic!("gateway did not stop within 20 s of SIGTERM"),
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        drop(self.child.take());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        drop(self.child.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A directory name unique to this process and call.
pub fn unique_temp_dir(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "ringgate-test-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// `Gateway::builder().config(config).args(extra_args).start()`.
pub fn spawn_gateway(config: &serde_json::Value, extra_args: &[&str]) -> Gateway {
    Gateway::builder().config(config).args(extra_args).start()
}

/// A one-gateway config: upstream `llm` (the given targets, `algorithm`), service `svc`, the
/// given rules (each gets `"service": "svc"` unless it names one) and keys.
pub fn one_gateway(
    algorithm: &str,
    targets: serde_json::Value,
    rules: serde_json::Value,
    keys: serde_json::Value,
) -> serde_json::Value {
    let mut rules = rules;
    for r in rules.as_array_mut().expect("rules array") {
        if r.get("service").is_none() && r.get("service_id").is_none() {
            r["service"] = serde_json::json!("svc");
        }
    }
    serde_json::json!({"gateways": [{
        "name": "demo",
        "subdomain": "demo",
        "upstreams": [{"name": "llm", "algorithm": algorithm, "targets": targets}],
        "services": [{"name": "svc", "type": "upstream", "upstream": "llm"}],
        "rules": rules,
        "keys": keys,
    }]})
}

/// A target object for a mock at `addr`.
pub fn target(addr: SocketAddr) -> serde_json::Value {
    serde_json::json!({"host": addr.ip().to_string(), "port": addr.port(), "protocol": "http", "weight": 1})
}

/// The text of `GET path` to the proxy (Host `gw`) with API key `key`
/// (`X-TG-API-Key`) and the `extra` header lines (each ending in CRLF).
pub fn get(path: &str, key: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {key}\r\n{extra}\r\n")
}

/// The text of `POST path` to the proxy (Host `gw`) with API key `key`, the
/// `extra` header lines (each ending in CRLF) and a JSON `body`.
pub fn post(path: &str, key: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {key}\r\n{extra}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `req` on a fresh connection and reads one response.
pub fn roundtrip(addr: SocketAddr, req: &str) -> Response {
    use std::io::Write;
    let (mut s, mut r) = connect_buffered(addr);
    s.write_all(req.as_bytes()).expect("write request");
    read_response(&mut r).unwrap_or_else(|e| panic!("reading the response to {req:?}: {e}"))
}

/// [`post`]s `body` to `addr` on a fresh connection and reads the answer.
pub fn post_json(
    addr: SocketAddr,
    path: &str,
    key: &str,
    extra: &str,
    body: &serde_json::Value,
) -> Response {
    roundtrip(addr, &post(path, key, extra, &body.to_string()))
}

/// Parses a JSON body, with the body in the panic message.
pub fn json_body(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Reads until EOF (or the read timeout); true when the peer closed (EOF or reset) within it.
pub fn closed_within<R: io::Read>(r: &mut R) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// `conns` keep-alive connections sending `per_conn` `POST /x` requests each
/// (key `key`, body `body`), all at once; returns how many got 200, 429 and
/// anything else.
#[allow(dead_code)]
pub fn hammer(
    addr: SocketAddr,
    key: &'static str,
    conns: usize,
    per_conn: usize,
    body: &'static [u8],
) -> (usize, usize, usize) {
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            std::thread::spawn(move || {
                let (mut s, mut r) = connect_buffered(addr);
                let mut counts = (0, 0, 0);
                for _ in 0..per_conn {
                    let head = format!(
                        "POST /x HTTP/1.1\r\nHost: gw\r\nX-TG-API-Key: {key}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    s.write_all(head.as_bytes()).unwrap();
                    s.write_all(body).unwrap();
                    match read_response(&mut r).expect("response").status {
                        200 => counts.0 += 1,
                        429 => counts.1 += 1,
                        _ => counts.2 += 1,
                    }
                }
                counts
            })
        })
        .collect();
    threads.into_iter().fold((0, 0, 0), |acc, t| {
        let c = t.join().unwrap();
        (acc.0 + c.0, acc.1 + c.1, acc.2 + c.2)
    })
}

/// The cost in micro-dollars of the usage event of an SSE answer at 1000 µ$
/// per prompt and 2000 µ$ per completion token (the tests' `priced` model).
pub fn priced_stream_cost(body: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(body);
    let usage = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .find(|v| v["usage"].is_object())
        .expect("usage event")["usage"]
        .clone();
    usage["prompt_tokens"].as_u64().unwrap() * 1000
        + usage["completion_tokens"].as_u64().unwrap() * 2000
}

/// The `data:` payloads of an SSE body, parsed (`[DONE]` as that string).
pub fn sse_data(body: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| {
            if d == "[DONE]" {
                serde_json::json!("[DONE]")
            } else {
                serde_json::from_str(d).unwrap()
            }
        })
        .collect()
}

/// Asserts the mock's streamed chat answer in OpenAI format (translated or not):
/// `chat.completion.chunk`s only, the mock's five tokens, a `stop`, then `[DONE]`;
/// returns the usage chunk's `usage` (the request asked for `include_usage`).
pub fn assert_mock_openai_stream(body: &[u8]) -> serde_json::Value {
    let ev = sse_data(body);
    assert_eq!(ev.last(), Some(&serde_json::json!("[DONE]")));
    let text: String = ev
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 tok3 tok4 ");
    assert!(ev
        .iter()
        .all(|e| e == "[DONE]" || e["object"] == "chat.completion.chunk"));
    assert!(ev
        .iter()
        .any(|e| e["choices"][0]["finish_reason"] == "stop"));
    ev.iter()
        .find(|e| e["usage"].is_object())
        .expect("usage chunk")["usage"]
        .clone()
}

/// `GET /metrics` on the admin listener `admin`: the text (checked to be a 200).
pub fn scrape(admin: SocketAddr) -> String {
    let r = roundtrip(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "GET /metrics: {}", r.text());
    String::from_utf8(r.body).unwrap()
}

/// The value of the unlabelled sample `name` on the admin listener's `/metrics`.
pub fn metric(admin: SocketAddr, name: &str) -> u64 {
    scrape(admin)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .parse()
        .unwrap()
}
