//! A headless Chromium driven over WebDriver: `chromedriver` on a loopback
//! port and a small JSON-over-HTTP client of our own (raw `TcpStream`, the
//! same reader as every other test). Chromium and chromedriver come from the
//! Debian packages (`apt-get install chromium chromium-driver`; `.ci/run`
//! installs them); `RINGGATE_CHROMIUM` / `RINGGATE_CHROMEDRIVER` point
//! elsewhere. Included by the console tests with `#[path]`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{dead_port, read_response, unique_temp_dir, ChildGuard};

/// The W3C key under which an element reference travels.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session; the session, chromedriver (and its Chromium) and
/// the profile directory end when it is dropped.
pub struct Browser {
    driver: Option<ChildGuard>,
    port: u16,
    session: String,
    profile: PathBuf,
}

/// A WebDriver error: its `error` code and message.
#[derive(Debug)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

fn program(var: &str, default: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_string());
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: the console tests need Chromium and chromedriver \
         (apt-get install chromium chromium-driver, or set {var})"
    );
    path
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile and
    /// every background-networking feature off (nothing leaves the host).
    pub fn start() -> Browser {
        let chromium = program("RINGGATE_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("RINGGATE_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = dead_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = unique_temp_dir("chromium");
        std::fs::create_dir_all(&profile).unwrap();
        let mut b = Browser {
            driver: Some(ChildGuard(child)),
            port,
            session: String::new(),
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while b
            .raw("GET", "/status", None)
            .map_or(true, |v| v["value"]["ready"] != json!(true))
        {
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", b.profile.display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {"binary": chromium, "args": args, "prefs": {
                "download.default_directory": b.downloads(),
                "download.prompt_for_download": false,
            }},
        }}});
        let v = b
            .raw("POST", "/session", Some(&caps))
            .expect("chromedriver answers");
        b.session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b
    }

    /// Where files the page downloads are saved.
    pub fn downloads(&self) -> PathBuf {
        self.profile.join("downloads")
    }

    /// One WebDriver call: the whole answer, or the connection error.
    fn raw(&self, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<Value> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut r = std::io::BufReader::new(s.try_clone()?);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        let answer = read_response(&mut r)?.body;
        Ok(serde_json::from_slice(&answer).unwrap_or(Value::Null))
    }

    /// A command in this session: its `value`, or the WebDriver error.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let full = format!("/session/{}{path}", self.session);
        let v = self
            .raw(method, &full, body.as_ref())
            .unwrap_or_else(|e| panic!("chromedriver {method} {path}: {e}"));
        let value = v["value"].clone();
        match value.get("error").and_then(Value::as_str) {
            Some(error) => Err(WdError {
                error: error.to_string(),
                message: value["message"].as_str().unwrap_or("").to_string(),
            }),
            None => Ok(value),
        }
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {} {}", e.error, e.message))
    }

    pub fn goto(&self, url: &str) {
        self.ok("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.ok(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The first element matching `css`, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )
        .ok()
        .and_then(|v| v[ELEMENT].as_str().map(str::to_string))
    }

    /// Waits (up to `within`) for an element matching `css`.
    pub fn wait_for(&self, css: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {css:?} on the page within {within:?}; it shows: {}",
                self.page_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to `within`) until `script` returns true.
    pub fn wait_until(&self, what: &str, script: &str, args: Value, within: Duration) {
        let deadline = Instant::now() + within;
        while self.exec(script, args.clone()) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; the page shows: {}",
                self.page_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn click(&self, css: &str) {
        let e = self.wait_for(css, Duration::from_secs(10));
        self.ok("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Replaces the text of the input matching `css` with `text`, as typed keys.
    pub fn fill(&self, css: &str, text: &str) {
        let e = self.wait_for(css, Duration::from_secs(10));
        self.ok("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.ok(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// The rendered text of the element matching `css`.
    pub fn text(&self, css: &str) -> String {
        let e = self.wait_for(css, Duration::from_secs(10));
        self.ok("GET", &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The whole page's visible text (for failure messages).
    pub fn page_text(&self) -> String {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": "return document.body.innerText", "args": []})),
        )
        .map(|v| v.as_str().unwrap_or("").to_string())
        .unwrap_or_else(|e| format!("({}: {})", e.error, e.message))
    }

    /// The text of an open alert/confirm/prompt, if one is open.
    pub fn alert_text(&self) -> Option<String> {
        self.call("GET", "/alert/text", None)
            .ok()
            .map(|v| v.as_str().unwrap_or("").to_string())
    }

    /// Saves a PNG of the viewport as `dir/name.png` and returns its path.
    pub fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        use base64::Engine;
        let png = self.ok("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .expect("valid base64");
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.raw("DELETE", &path, None);
        }
        drop(self.driver.take());
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
