//! The benchmark scripts' own logic, against the real binary where it talks to one:
//! `scripts/idle_conns.py --path` (each connection served one request, then idle) and
//! `scripts/compare_report.py` (the medians and ratios of `scripts/compare-nginx.sh`).
//! `examples/stream_load.rs`'s one-at-a-time latency mode, each way it waits.
//! The load runs themselves (wrk, hey, nginx) are not part of the suite, except the
//! cache scenarios of `scripts/benchmark.sh` in a short form (1 s per run, concurrency 2,
//! the debug binary): their hits and misses are checked against the gateway's counters.

use crate::common;

use common::{spawn_gateway, spawn_mock};
use serde_json::json;
use std::process::Command;

fn script(name: &str) -> String {
    format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A mock upstream (its guard and address) behind a gateway with one `/v1` rule and
/// the API key `key`.
fn mock_behind_gateway(key: &str) -> (common::ChildGuard, std::net::SocketAddr, common::Gateway) {
    let (mock, m) = spawn_mock(&[]);
    let config = common::one_gateway(
        "round-robin",
        json!([common::target(m)]),
        json!([{"name": "openai", "path": "/v1"}]),
        json!([{"name": "k", "key": key}]),
    );
    (mock, m, spawn_gateway(&config, &[]))
}

fn idle_conns(gw: &common::Gateway, conns: u32, key: &str) -> std::process::Output {
    Command::new("python3")
        .arg(script("idle_conns.py"))
        .args([
            "--proxy",
            &gw.proxy.to_string(),
            "--pid",
            &gw.pid().to_string(),
        ])
        .args([
            "--conns",
            &conns.to_string(),
            "--path",
            "/v1/chat/completions",
            "--method",
            "POST",
        ])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--header", "Content-Type: application/json"])
        .args([
            "--body",
            r#"{"model":"gpt-3.5-turbo","messages":[{"role":"user","content":"Hi"}]}"#,
        ])
        .output()
        .expect("run python3 scripts/idle_conns.py")
}

/// Every connection gets a 2xx answer before it is left idle, and the script reports the
/// gateway's RSS before and after; a refused request is an error naming the status.
#[test]
fn idle_conns_serves_each_connection_once_and_reports_rss() {
    let (_mock, _, gw) = mock_behind_gateway("rg-idle-bench");

    let out = idle_conns(&gw, 300, "rg-idle-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout {stdout} stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RGIDLE "))
        .expect("an RGIDLE line");
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a number in {line}"))
    };
    assert_eq!(field("conns"), 300.0);
    assert_eq!(field("served"), 300.0);
    let (before, after) = (field("rss_before_kib"), field("rss_after_kib"));
    assert!(before > 1000.0, "a running gateway's RSS, got {before} KiB");
    let per = field("kb_per_conn");
    assert!((per - (after - before) / 300.0).abs() < 0.01, "{line}");

    let out = idle_conns(&gw, 5, "rg-wrong-key");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("was answered 401"), "{stderr}");
}

/// `stream_load latency` (part (a) of `scripts/stream_bench.sh`) with each way of
/// waiting and with a fresh connection per stream: every stream through the gateway
/// and straight to the mock completes, and the report counts them. A wrong key fails
/// the gateway side and the tool says so.
#[test]
fn stream_load_latency_clients_complete_their_streams() {
    let (_mock, m, gw) = mock_behind_gateway("rg-stream-bench");
    // `cargo test` builds the examples next to the binaries.
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ringgate"))
        .parent()
        .expect("the binary's directory")
        .join("examples/stream_load");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test` (it builds the examples) or `cargo build --example stream_load`",
        bin.display()
    );
    let run = |key: &str, extra: &[&str]| {
        let out = Command::new(&bin)
            .args(["latency", "--direct", &m.to_string()])
            .args(["--gateway", &gw.proxy.to_string(), "--key", key])
            .args(["--streams", "6", "--round", "3", "--chunks", "2"])
            .args(["--interval-ms", "1", "--deadline-secs", "30"])
            .args(extra)
            .output()
            .expect("run stream_load");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for (extra, client) in [
        (&[][..], "blocking client"),
        (&["--client", "glommio"][..], "glommio client"),
        (&["--fresh"][..], "on fresh connections"),
        (&["--fresh", "--client", "glommio"][..], "glommio client"),
    ] {
        let (code, out) = run("rg-stream-bench", extra);
        assert_eq!(code, Some(0), "{extra:?}:\n{out}");
        assert!(
            out.starts_with("latency: 6 streams each way, one at a time") && out.contains(client),
            "{extra:?}:\n{out}"
        );
        assert!(out.contains(" failed=0"), "{extra:?}:\n{out}");
        assert!(
            out.contains("added by ringgate: ttft p50 "),
            "{extra:?}:\n{out}"
        );
    }
    let (code, out) = run("rg-wrong-key", &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(" failed=6") && out.contains("ringgate: 6 failed, first: status Some(401)"),
        "{out}"
    );
    let out = Command::new(&bin)
        .args([
            "latency",
            "--direct",
            "127.0.0.1:1",
            "--gateway",
            "127.0.0.1:1",
        ])
        .args(["--key", "k", "--client", "epoll"])
        .output()
        .expect("run stream_load");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--client is blocking or glommio"),
        "{stderr}"
    );
}

/// The report takes the median of each proxy over rounds and divides them, and shows
/// n/a where a column was not measured.
#[test]
fn compare_report_prints_medians_and_ratios() {
    let dir = common::unique_temp_dir("report");
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("compare.csv");
    let mut text = String::from(
        "part,round,target,tool,concurrency,requests,errors,rps,p50_ms,p95_ms,p99_ms,proxy_user_us,\
         proxy_sys_us,proxy_cores,upstream_us,res_per_req,syscalls_per_req,rss_before_kb,rss_after_kb,kb_per_conn\n",
    );
    // ringgate 10k/20k/30k req/s over three rounds (median 20k), nginx 40k each: 0.50x.
    for (round, rg) in [(1, 10000), (2, 20000), (3, 30000)] {
        text += &format!(
            "percore,{round},ringgate,wrk,50,100000,0,{rg},1.0,,2.0,10.0,30.0,1.0,5.0,1.5,,,,\n"
        );
        text += &format!(
            "percore,{round},nginx,wrk,50,100000,0,40000,0.5,,1.0,5.0,15.0,1.0,5.0,0.01,,,,\n"
        );
    }
    text += "idle,1,ringgate,idle_conns,1000,1000,0,,,,,,,,,,,10000,50000,40.00\n";
    text += "idle,1,nginx,idle_conns,1000,1000,0,,,,,,,,,,,10000,18000,8.00\n";
    std::fs::write(&csv, text).unwrap();
    let json_path = dir.join("compare.json");
    let out = Command::new("python3")
        .arg(script("compare_report.py"))
        .arg(&csv)
        .arg("--json")
        .arg(&json_path)
        .output()
        .expect("run python3 scripts/compare_report.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |metric: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.starts_with("50 ") && l.split("  ").any(|c| c.trim() == metric))
            .unwrap_or_else(|| panic!("no {metric} summary row in\n{stdout}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let rps = row("req/s");
    assert_eq!(
        &rps[rps.len() - 4..],
        ["20000", "40000", "0.50x", "0.25-0.75"],
        "{stdout}"
    );
    let cpu = row("CPU µs/req");
    assert!(
        cpu.ends_with(&[
            "40.0".into(),
            "20.0".into(),
            "2.00x".into(),
            "2.00-2.00".into()
        ]),
        "{stdout}"
    );
    let sc = row("syscalls/req");
    assert!(
        sc.ends_with(&["n/a".into(), "n/a".into(), "n/a".into()]),
        "{stdout}"
    );
    assert!(stdout.contains("5.00x"), "idle ratio 40/8 in\n{stdout}");

    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(doc["summary"]["percore"][0]["rps"]["ratio"], json!(0.5));
    assert_eq!(doc["summary"]["idle"]["ringgate_over_nginx"], json!(5.0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `scripts/benchmark.sh`'s cache scenarios, short, against a gateway this test runs:
/// `cache-hit` is answered from the cache, `cache-miss` (a different message each
/// request) never is, `cache-lookup` (the same with `no-store`) looks up and misses,
/// `cache-off` does not touch it, and the summary line compares them.
#[test]
fn benchmark_cache_scenarios_hit_and_miss() {
    let gw = spawn_gateway(&json!({"gateways": []}), &[]);
    let dir = common::unique_temp_dir("bench-cache");
    let out = Command::new("bash")
        .arg(script("benchmark.sh"))
        .env("SCENARIOS", "cache-hit cache-miss cache-lookup cache-off")
        .env("CONCURRENCY", "2")
        .env("DURATION", "1s")
        .env("ADMIN_URL", format!("http://{}/api/v1", gw.admin))
        .env("PROXY_URL", format!("http://{}", gw.proxy))
        .env("GATEWAY_PID", gw.pid().to_string())
        .env("RINGGATE_BIN", env!("CARGO_BIN_EXE_ringgate"))
        .env("RESULTS_DIR", &dir)
        .env("NO_PROXY", "*")
        .output()
        .expect("run scripts/benchmark.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "benchmark.sh failed:\n{stderr}");
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let row = |scenario: &str| -> Vec<String> {
        csv.lines()
            .find(|l| l.starts_with(&format!("{scenario},")))
            .unwrap_or_else(|| panic!("no {scenario} row in\n{csv}"))
            .split(',')
            .map(str::to_string)
            .collect()
    };
    let (hit, miss, off) = (row("cache-hit"), row("cache-miss"), row("cache-off"));
    let lookup = row("cache-lookup");
    assert_eq!(
        (&hit[1][..], &miss[1][..], &lookup[1][..], &off[1][..]),
        ("wrk", "wrk", "wrk", "wrk")
    );
    let requests = |r: &[String]| -> u64 { r[3].parse().unwrap() };
    for r in [&hit, &miss, &lookup, &off] {
        assert!(requests(r) > 10, "{r:?}");
        assert_eq!(r[4], "0", "errors in {r:?}");
    }
    let summary = std::fs::read_to_string(dir.join("cache.txt")).unwrap();
    assert!(
        summary.starts_with("cache at concurrency 2: hit ")
            && summary.contains(" vs miss ")
            && summary.contains("lookup cost on a miss ")
            && summary.contains("a miss with its insert "),
        "{summary}"
    );
    // What the gateway's cache counted during each run (from its /metrics): the hit
    // run only hits (a request in flight at wrk's deadline may count too), the miss
    // run only misses, the run without the cache neither.
    let counted = |scenario: &str| -> [u64; 3] {
        let line = summary
            .lines()
            .find(|l| l.starts_with(&format!("{scenario} c2 ")))
            .unwrap_or_else(|| panic!("no {scenario} counters in\n{summary}"));
        let field = |name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {line}"))
        };
        [field("requests"), field("hits"), field("misses")]
    };
    let [n, hits, misses] = counted("cache-hit");
    assert!(
        n == requests(&hit) && (n..=n + 2).contains(&hits) && misses == 0,
        "{summary}"
    );
    let [n, hits, misses] = counted("cache-miss");
    assert!(
        n == requests(&miss) && hits == 0 && (n..=n + 2).contains(&misses),
        "{summary}"
    );
    let [n, hits, misses] = counted("cache-lookup");
    assert!(
        n == requests(&lookup) && hits == 0 && (n..=n + 2).contains(&misses),
        "{summary}"
    );
    assert_eq!(counted("cache-off")[1..], [0, 0], "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}
