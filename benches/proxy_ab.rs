//! End-to-end A/B: the same closed-loop load through the gateway and
//! straight to the upstream, in one run, on the same mock. Prints req/s and
//! latency percentiles for each and the latency the gateway adds.
//!
//! `cargo bench --bench proxy_ab` (env: `AB_SECONDS`, default 5;
//! `AB_CONCURRENCY`, default `1,16`). The load generator is plain threads
//! with blocking keep-alive sockets: one connection per thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BODY: &str = r#"{"model":"gpt-3.5-turbo","messages":[{"role":"user","content":"Hi"}]}"#;

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns it with the address from its ready line.
fn start(args: &[&str], marker: &str) -> (Guard, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringgate"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ringgate");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).expect("read ready line") == 0 {
            panic!("ringgate exited before it was ready ({args:?})");
        }
        if let Some(rest) = line.split(marker).nth(1) {
            let addr = rest.trim().split_whitespace().next().unwrap_or("");
            let addr = addr
                .trim_start_matches("http://")
                .parse()
                .expect("address in ready line");
            return (Guard(child), addr);
        }
    }
}

fn request(path: &str, key: Option<&str>) -> Vec<u8> {
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

/// Reads one response with a Content-Length body; returns its status.
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    Ok(status)
}

struct Run {
    rps: f64,
    p50: u32,
    p90: u32,
    p99: u32,
    errors: usize,
}

fn load(addr: SocketAddr, req: &[u8], conns: usize, secs: u64) -> Run {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let req = req.to_vec();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(100_000);
                let mut errors = 0;
                let s = TcpStream::connect(addr).expect("connect");
                s.set_nodelay(true).ok();
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut w = s.try_clone().expect("clone");
                let mut r = BufReader::new(s);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = w.write_all(&req).is_ok() && matches!(read_response(&mut r), Ok(200));
                    if ok {
                        lat.push(t.elapsed().as_micros() as u32);
                    } else {
                        errors += 1;
                        break;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t.join().expect("load thread");
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Run {
        rps: all.len() as f64 / elapsed,
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        errors,
    }
}

fn main() {
    let secs: u64 = std::env::var("AB_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let levels: Vec<usize> = std::env::var("AB_CONCURRENCY")
        .unwrap_or_else(|_| "1,16".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();

    let (_mock, upstream) = start(
        &["mock-upstream", "--listen", "127.0.0.1:0"],
        "listening on ",
    );
    let dir = std::env::temp_dir().join(format!("ringgate-ab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = serde_json::json!({"gateways": [{
        "name": "ab",
        "upstreams": [{"name": "llm", "targets": [{"host": "127.0.0.1", "port": upstream.port()}]}],
        "services": [{"name": "chat", "type": "upstream", "upstream": "llm"}],
        "rules": [{"name": "v1", "path": "/v1", "methods": ["POST"], "service": "chat"}],
        "keys": [{"name": "ab", "key": "rg-ab-key"}]
    }]});
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, config.to_string()).expect("write config");
    let data = dir.join("data");
    let (_gateway, proxy) = start(
        &[
            "serve",
            "--proxy",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--max-connections",
            "4096",
            "--data-dir",
            data.to_str().unwrap_or("."),
            "--config",
            config_path.to_str().unwrap_or("."),
        ],
        "proxy ",
    );

    println!("proxy_ab: {secs}s per run, POST /v1/chat/completions, closed loop, one keep-alive connection per thread");
    println!(
        "{:<10} {:>5} {:>10} {:>8} {:>8} {:>8} {:>7}",
        "target", "conns", "req/s", "p50 us", "p90 us", "p99 us", "errors"
    );
    for &c in &levels {
        let direct = load(upstream, &request("/v1/chat/completions", None), c, secs);
        let gateway = load(
            proxy,
            &request("/v1/chat/completions", Some("rg-ab-key")),
            c,
            secs,
        );
        for (name, r) in [("direct", &direct), ("ringgate", &gateway)] {
            println!(
                "{name:<10} {c:>5} {:>10.0} {:>8} {:>8} {:>8} {:>7}",
                r.rps, r.p50, r.p90, r.p99, r.errors
            );
        }
        println!(
            "           added by the gateway at {c} conn(s): p50 +{} us, p99 +{} us, throughput x{:.2}",
            gateway.p50 as i64 - direct.p50 as i64,
            gateway.p99 as i64 - direct.p99 as i64,
            gateway.rps / direct.rps.max(1.0)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
