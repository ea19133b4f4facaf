//! The store in `--data-dir`: state survives SIGTERM and `kill -9` right
//! after a 2xx, damage is detected and named, one process per data dir,
//! `--config` replaces the stored state.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::admin::{
    call, create_route, expect, id, proxied, start, start_failing, temp_dir, try_call,
};
use common::spawn_mock;
use serde_json::json;

#[test]
fn state_survives_a_clean_restart_and_still_proxies() {
    let (_mock, mock) = spawn_mock(&[]);
    let dir = temp_dir("persist-restart");
    let gw = start(&dir, &[]);
    let r = create_route(gw.admin, "g", mock, Some("/v1"));
    assert_eq!(proxied(gw.proxy, &r.key), 200);
    let before = expect(gw.admin, "GET", "/api/v1/config", None, 200);
    gw.stop();

    let gw = start(&dir, &["--shards", "2"]);
    assert_eq!(expect(gw.admin, "GET", "/api/v1/config", None, 200), before);
    for _ in 0..4 {
        assert_eq!(proxied(gw.proxy, &r.key), 200);
    }
    // And it keeps accepting changes on top.
    let base = format!("/api/v1/gateways/{}", r.gateway);
    expect(
        gw.admin,
        "DELETE",
        &format!("{base}/rules/{}", r.rule),
        None,
        204,
    );
    gw.stop();
    let gw = start(&dir, &[]);
    assert_eq!(
        call(
            gw.admin,
            "GET",
            &format!("{base}/rules/{}", r.rule),
            None,
            None
        )
        .0,
        404
    );
    assert_eq!(proxied(gw.proxy, &r.key), 404);
    gw.stop();
}

/// Every gateway id, page by page.
fn gateway_ids(admin: std::net::SocketAddr) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let path = format!("/api/v1/gateways?offset={}&limit=100", ids.len());
        let page = expect(admin, "GET", &path, None, 200);
        let items = page["gateways"].as_array().unwrap();
        ids.extend(items.iter().map(id));
        if items.is_empty() || ids.len() >= page["count"].as_u64().unwrap() as usize {
            return ids;
        }
    }
}

/// Each loop: start, check every acknowledged gateway is there, create one
/// and get its 201, then keep creating from a second thread and `kill -9`
/// at a varying moment (usually mid-write). Whatever was acknowledged must
/// be there after the restart; an unacknowledged write may or may not be.
#[test]
fn kill_9_right_after_or_during_writes_loses_nothing_acknowledged() {
    let dir = temp_dir("persist-kill9");
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut n = 0;
    let mut deleted = 0;
    for i in 0..30 {
        let gw = start(&dir, &[]);
        let stored = gateway_ids(gw.admin);
        let acked = acknowledged.lock().unwrap().clone();
        for want in &acked {
            assert!(
                stored.contains(want),
                "loop {i}: acknowledged gateway {want} is gone"
            );
        }
        // Keep the list short: drop what earlier loops made (acknowledged too).
        if stored.len() > 60 {
            for gone in &stored[..40] {
                expect(
                    gw.admin,
                    "DELETE",
                    &format!("/api/v1/gateways/{gone}"),
                    None,
                    204,
                );
                acknowledged.lock().unwrap().retain(|a| a != gone);
                deleted += 1;
            }
        }
        n += 1;
        let created = expect(
            gw.admin,
            "POST",
            "/api/v1/gateways",
            Some(&json!({ "name": format!("g{n}") })),
            201,
        );
        acknowledged.lock().unwrap().push(id(&created));

        let admin = gw.admin;
        let acks = acknowledged.clone();
        let first = n * 1000;
        let writer = std::thread::spawn(move || {
            for k in first.. {
                let body = json!({ "name": format!("g{k}") });
                match try_call(admin, "POST", "/api/v1/gateways", Some(&body)) {
                    Ok((201, v)) => acks.lock().unwrap().push(id(&v)),
                    Ok((s, v)) => panic!("create answered {s} {v}"),
                    Err(_) => return,
                }
            }
        });
        std::thread::sleep(Duration::from_millis(3 + (i * 7) % 40));
        gw.kill9();
        writer.join().expect("writer thread");
    }
    let gw = start(&dir, &[]);
    let stored = gateway_ids(gw.admin);
    for want in acknowledged.lock().unwrap().iter() {
        assert!(stored.contains(want), "acknowledged gateway {want} is gone");
    }
    eprintln!(
        "kill -9 loop: {} acknowledged creates survived 30 kills",
        acknowledged.lock().unwrap().len() + deleted
    );
    gw.stop();
}

fn stored_state() -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = temp_dir("persist-corrupt");
    let gw = start(&dir, &[]);
    expect(
        gw.admin,
        "POST",
        "/api/v1/gateways",
        Some(&json!({"name": "g"})),
        201,
    );
    gw.stop();
    let file = dir.join("state.json");
    assert!(file.exists());
    (dir, file)
}

/// A named way to damage the store file.
type Damage = (&'static str, fn(&mut Vec<u8>));

#[test]
fn a_damaged_store_file_stops_start_up_and_is_named() {
    let damages: [Damage; 4] = [
        ("truncated", |b| b.truncate(b.len() / 2)),
        ("garbage", |b| *b = b"\x00\xffgarbage, not a store".to_vec()),
        ("flipped byte", |b| {
            let at = b.len() - 10;
            b[at] ^= 0x01;
        }),
        ("empty", |b| b.clear()),
    ];
    for (what, damage) in damages {
        let (dir, file) = stored_state();
        let mut bytes = std::fs::read(&file).unwrap();
        damage(&mut bytes);
        std::fs::write(&file, &bytes).unwrap();
        let (code, stderr) = start_failing(&dir, &[]);
        assert_eq!(code, 2, "{what}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("ringgate: "))
            .unwrap_or_else(|| panic!("{what}: no error line in {stderr:?}"));
        assert!(
            line.contains(&file.display().to_string()) && line.contains("corrupt"),
            "{what}: {line}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        // The damaged file is left for the operator, not replaced.
        assert_eq!(std::fs::read(&file).unwrap(), bytes, "{what}");
    }
}

#[test]
fn a_second_serve_on_the_same_data_dir_is_refused() {
    let dir = temp_dir("persist-lock");
    let gw = start(&dir, &[]);
    let (code, stderr) = start_failing(&dir, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("already in use by another ringgate process")
            && stderr.contains("ringgate.lock"),
        "{stderr}"
    );
    // The first one is unaffected.
    assert_eq!(call(gw.admin, "GET", "/api/v1/gateways", None, None).0, 200);
    gw.stop();
    // Once it stopped, the lock is free again.
    start(&dir, &[]).stop();
}

#[test]
fn a_second_serve_on_the_same_proxy_port_is_refused_unless_sharing_is_asked() {
    let first = start(&temp_dir("port-first"), &[]);
    let proxy = first.proxy.to_string();
    let (code, stderr) = start_failing(&temp_dir("port-second"), &["--proxy", &proxy]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("proxy address {proxy} is already in use"))
            && stderr.contains("--share-proxy-port on"),
        "{stderr}"
    );
    // The first one still serves its proxy port alone.
    assert_eq!(proxied_ping(first.proxy), 200);
    // Sharing on purpose (a zero-downtime upgrade): both serve the port, and
    // it stays served once the old one stopped.
    let second = start(
        &temp_dir("port-shared"),
        &["--proxy", &proxy, "--share-proxy-port", "on"],
    );
    assert_eq!(second.proxy, first.proxy);
    first.stop();
    assert_eq!(proxied_ping(second.proxy), 200);
    second.stop();
}

fn proxied_ping(proxy: std::net::SocketAddr) -> u16 {
    use std::io::Write;
    let (mut s, mut r) = common::connect_buffered(proxy);
    s.write_all(b"GET /__/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    common::read_response(&mut r).unwrap().status
}

#[test]
fn config_file_replaces_stored_state_and_an_invalid_one_stops_start_up() {
    let (_mock, mock) = spawn_mock(&[]);
    let dir = temp_dir("persist-config");
    let gw = start(&dir, &[]);
    expect(
        gw.admin,
        "POST",
        "/api/v1/gateways",
        Some(&json!({"name": "from-api"})),
        201,
    );
    gw.stop();

    let file = dir.join("gateway.json");
    let doc = json!({"gateways": [{
        "name": "demo",
        "upstreams": [{"name": "llm", "targets": [{"host": "127.0.0.1", "port": mock.port()}]}],
        "services": [{"name": "chat", "type": "upstream", "upstream": "llm"}],
        "rules": [{"name": "openai", "path": "/v1", "service": "chat"}],
        "keys": [{"name": "app", "key": "file-key"}]
    }]});
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let gw = start(&dir, &["--config", file.to_str().unwrap()]);
    let list = expect(gw.admin, "GET", "/api/v1/gateways", None, 200);
    assert_eq!(
        list["count"], 1,
        "the file replaces the stored state: {list}"
    );
    assert_eq!(list["gateways"][0]["name"], "demo");
    assert_eq!(proxied(gw.proxy, "file-key"), 200);
    let gid = list["gateways"][0]["id"].as_str().unwrap().to_string();
    expect(
        gw.admin,
        "POST",
        &format!("/api/v1/gateways/{gid}/keys"),
        Some(&json!({"name": "more"})),
        201,
    );
    gw.stop();

    // Without --config, what was persisted (the file's state plus later changes) is served.
    let gw = start(&dir, &[]);
    assert_eq!(
        expect(
            gw.admin,
            "GET",
            &format!("/api/v1/gateways/{gid}/keys"),
            None,
            200
        )["count"],
        2
    );
    assert_eq!(proxied(gw.proxy, "file-key"), 200);
    gw.stop();

    let mut bad = doc.clone();
    bad["gateways"][0]["rules"][0]["service"] = json!("missing");
    std::fs::write(&file, serde_json::to_vec(&bad).unwrap()).unwrap();
    let (code, stderr) = start_failing(&dir, &["--config", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ringgate: "))
        .unwrap();
    assert!(
        line.contains("gateways[0].rules[0].service") && line.contains("gateway.json"),
        "{line}"
    );
    // The refused file changed nothing.
    let gw = start(&dir, &[]);
    assert_eq!(
        expect(
            gw.admin,
            "GET",
            &format!("/api/v1/gateways/{gid}/keys"),
            None,
            200
        )["count"],
        2
    );
    gw.stop();
}
