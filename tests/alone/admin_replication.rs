//! Replication to every shard: a 2xx from the admin API means every shard
//! already serves the change (read-your-writes on fresh connections), and a
//! stream of changes under load fails no proxied request.

use crate::common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::admin::{chat_request, create_route, expect, id, proxied, start, temp_dir};
use common::{connect_buffered, read_response, spawn_mock};
use serde_json::json;

#[test]
fn a_2xx_means_every_shard_serves_the_change() {
    let _alone = crate::alone();
    let (_mock, mock) = spawn_mock(&[]);
    let dir = temp_dir("repl-ryw");
    let gw = start(&dir, &["--shards", "2"]);
    let r = create_route(gw.admin, "g", mock, None);
    let rules = format!("/api/v1/gateways/{}/rules", r.gateway);
    for round in 0..5 {
        let rule = id(&expect(
            gw.admin,
            "POST",
            &rules,
            Some(
                &json!({"name": "openai", "path": "/v1", "methods": ["POST"], "service_id": r.service}),
            ),
            201,
        ));
        let got: Vec<u16> = (0..8).map(|_| proxied(gw.proxy, &r.key)).collect();
        assert_eq!(got, [200; 8], "round {round}: right after the create");
        expect(gw.admin, "DELETE", &format!("{rules}/{rule}"), None, 204);
        let got: Vec<u16> = (0..8).map(|_| proxied(gw.proxy, &r.key)).collect();
        assert_eq!(got, [404; 8], "round {round}: right after the delete");
    }
    gw.stop();
}

#[test]
fn two_hundred_changes_under_load_fail_no_request() {
    let _alone = crate::alone();
    let (_mock, mock) = spawn_mock(&["--shards", "2"]);
    let dir = temp_dir("repl-load");
    let gw = start(&dir, &["--shards", "2"]);
    let r = create_route(gw.admin, "g", mock, Some("/v1"));
    let rules = format!("/api/v1/gateways/{}/rules", r.gateway);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, key, proxy) = (stop.clone(), ok.clone(), r.key.clone(), gw.proxy);
            std::thread::spawn(move || -> Result<(), String> {
                let (mut s, mut rd) = connect_buffered(proxy);
                let req = chat_request(&key, false);
                while !stop.load(Ordering::Relaxed) {
                    s.write_all(&req).map_err(|e| format!("write: {e}"))?;
                    let common::Response { status, body, .. } =
                        read_response(&mut rd).map_err(|e| format!("read: {e}"))?;
                    if status != 200 {
                        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
                    }
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();

    let started = Instant::now();
    let mut extra: Option<String> = None;
    for i in 0..200 {
        match i % 3 {
            0 => {
                expect(
                    gw.admin,
                    "PUT",
                    &format!("{rules}/{}", r.rule),
                    Some(
                        &json!({"name": format!("openai-{i}"), "path": "/v1", "methods": ["GET", "POST"], "service_id": r.service}),
                    ),
                    200,
                );
            }
            _ => match extra.take() {
                None => {
                    extra = Some(id(&expect(
                        gw.admin,
                        "POST",
                        &rules,
                        Some(
                            &json!({"name": "unrelated", "path": format!("/other/{i}"), "service_id": r.service}),
                        ),
                        201,
                    )));
                }
                Some(e) => {
                    expect(gw.admin, "DELETE", &format!("{rules}/{e}"), None, 204);
                }
            },
        }
    }
    let elapsed = started.elapsed();
    // Let the clients run a little past the last change.
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join()
            .expect("client thread")
            .expect("a proxied request failed");
    }
    let served = ok.load(Ordering::Relaxed);
    eprintln!("200 admin changes in {elapsed:?} while {served} proxied requests succeeded");
    assert!(served >= 200, "the clients barely ran: {served}");
    gw.stop();
}
