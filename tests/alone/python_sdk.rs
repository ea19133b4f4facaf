//! The official OpenAI and Anthropic Python SDKs (versions pinned in
//! `tests/python/requirements.txt`, installed from PyPI into a virtualenv
//! under the cargo target dir, reused while the pins are unchanged) run
//! `tests/python/sdk_check.py` against the real gateway and mock: plain and
//! streaming chat completions, both translated routes, native Anthropic,
//! a wrong key, a stream through SSE keep-alive pings, and a model fallback
//! from an OpenAI target answering 429 to an Anthropic one (JSON and stream).
//!
//! Needs `python3` with `venv` and `pip` (`.ci/run` installs them); without
//! them this test fails and says so. `RINGGATE_PYTHON` picks another
//! interpreter.

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{spawn_gateway, spawn_mock, target};
use serde_json::json;

const KEY: &str = "rg-sdk-key";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Runs `cmd` to completion within `limit`; (exit code, stdout + stderr).
fn run(cmd: &mut Command, limit: Duration) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = out.join().unwrap() + &err.join().unwrap();
    match status {
        Some(s) => (s.code(), text),
        None => panic!("{cmd:?} did not finish within {limit:?}:\n{text}"),
    }
}

/// The virtualenv's python, made (or refreshed) when the pins changed.
fn venv_python() -> PathBuf {
    let python = std::env::var("RINGGATE_PYTHON").unwrap_or_else(|_| "python3".into());
    let requirements = repo_file("tests/python/requirements.txt");
    let pins = std::fs::read_to_string(&requirements).expect("read requirements.txt");
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-sdk-venv");
    let stamp = venv.join("ringgate-requirements.txt");
    let bin = venv.join("bin").join("python");
    if bin.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(pins.as_str()) {
        return bin;
    }
    let (code, out) = run(
        Command::new(&python).args(["-c", "import sys, venv, ensurepip; print(sys.version)"]),
        Duration::from_secs(30),
    );
    assert_eq!(
        code,
        Some(0),
        "the Python SDK test needs {python} with venv and pip (Debian: apt-get install \
         python3 python3-venv python3-pip; .ci/run does this):\n{out}"
    );
    let _ = std::fs::remove_dir_all(&venv);
    let (code, out) = run(
        Command::new(&python).args(["-m", "venv"]).arg(&venv),
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "{python} -m venv {venv:?} failed:\n{out}");
    let (code, out) = run(
        Command::new(&bin)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        Duration::from_secs(600),
    );
    assert_eq!(
        code,
        Some(0),
        "pip could not install the pinned SDKs from PyPI:\n{out}"
    );
    std::fs::write(&stamp, pins).expect("write the venv stamp");
    bin
}

#[test]
fn official_python_sdks_work_through_the_gateway() {
    let _alone = crate::alone();
    let python = venv_python();

    let (_m, mock) = spawn_mock(&["--stream-interval-ms", "1"]);
    let oai = target(mock);
    let mut anth = target(mock);
    anth["provider"] = json!("anthropic");
    anth["credentials"] = json!({"api_key": "sk-ant-upstream"});
    let mut busy = target(mock);
    busy["headers"] = json!({"x-mock-status": "429"});
    let mut slow = target(mock);
    slow["sse_ping_secs"] = json!(1);
    let gw = spawn_gateway(
        &json!({"gateways": [{"name": "sdk",
            "upstreams": [{"name": "oai", "targets": [oai]},
                          {"name": "anth", "targets": [anth]},
                          {"name": "slow", "targets": [slow]},
                          {"name": "busy", "targets": [busy]}],
            "services": [{"name": "oai", "type": "upstream", "upstream": "oai"},
                         {"name": "anth", "type": "upstream", "upstream": "anth"},
                         {"name": "slow", "type": "upstream", "upstream": "slow"},
                         {"name": "busy", "type": "upstream", "upstream": "busy"}],
            "rules": [{"name": "v1", "path": "/v1", "service": "oai"},
                      {"name": "toanth", "path": "/toanth", "service": "anth", "strip_path": true},
                      {"name": "toai", "path": "/toai", "service": "oai", "strip_path": true},
                      {"name": "anth", "path": "/anth", "service": "anth", "strip_path": true},
                      {"name": "slow", "path": "/slow", "service": "slow", "strip_path": true},
                      {"name": "fallback", "path": "/fallback", "service": "busy", "strip_path": true,
                       "fallbacks": [{"upstream": "anth", "model": "claude-fallback"}]},
                      {"path": "/claude/v1/chat/completions", "service": "anth", "strip_path": true}],
            "keys": [{"name": "k", "key": KEY}]}]}),
        &[],
    );

    let (code, out) = run(
        Command::new(&python)
            .arg(repo_file("tests/python/sdk_check.py"))
            .args(["--gateway", &format!("http://{}", gw.proxy), "--key", KEY])
            .env("PYTHONUNBUFFERED", "1")
            .env("NO_PROXY", "*"),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "sdk_check.py failed:\n{out}");
    for check in [
        "openai chat",
        "openai chat stream",
        "openai client -> anthropic target",
        "openai client -> anthropic target, stream",
        "openai client -> endpoint rule with strip_path -> anthropic target",
        "openai client -> endpoint rule with strip_path -> anthropic target, stream",
        "anthropic client -> openai target",
        "anthropic client -> openai target, stream",
        "anthropic native",
        "anthropic native stream",
        "openai wrong gateway key",
        "openai stream through sse keep-alive pings",
        "openai error event after sse keep-alive pings",
        "anthropic error event after sse keep-alive pings (translated)",
        "openai 429 -> fallback to anthropic target",
        "openai 429 -> fallback to anthropic target, stream",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("ok   {check}: "))),
            "check {check:?} did not pass:\n{out}"
        );
    }
    assert!(out.contains("sdk checks: 16 ok, 0 failing"), "{out}");
    println!("{out}");
}
