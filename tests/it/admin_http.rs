//! The admin listener's HTTP behaviour over real sockets: refusals that
//! reach the client even while it is still sending, and the web console's
//! page and assets (security headers, compression, caching).

use crate::common;

use std::io::{Read, Write};

use common::admin::{call, create_route, proxied, start, temp_dir};
use common::{connect_buffered, header, read_response, roundtrip, Response};

fn admin_get(addr: std::net::SocketAddr, path: &str, extra: &str) -> Response {
    roundtrip(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: admin\r\n{extra}Connection: close\r\n\r\n"),
    )
}

#[test]
fn a_2_mib_body_without_expect_reads_its_413() {
    let gw = start(&temp_dir("admin-linger"), &[]);
    let (mut s, mut r) = connect_buffered(gw.admin);
    let body = vec![b'a'; 2 << 20];
    let head = format!(
        "POST /api/v1/gateways HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..64 << 10]).unwrap();
    // By now the 413 is answered. The rest of the body still goes out: the
    // server reads and discards what it refused instead of closing with
    // unread bytes, which resets the connection under the client.
    std::thread::sleep(std::time::Duration::from_millis(300));
    s.write_all(&body[64 << 10..])
        .expect("the server keeps reading the refused body");
    let common::Response {
        status,
        headers,
        body: answer,
    } = read_response(&mut r).expect("the 413, not a reset");
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(header(&headers, "connection"), Some("close"));
    let v = common::json_body(&answer);
    assert!(
        v["error"].as_str().unwrap().contains("1 MiB"),
        "the message names the limit: {v}"
    );
    // Then the server's side is closed: EOF, not more bytes.
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).unwrap_or(0), 0);
    // Nothing was created.
    let (status, list) = common::admin::call(gw.admin, "GET", "/api/v1/gateways", None, None);
    assert_eq!(status, 200);
    assert_eq!(list["count"], 0, "{list}");
    gw.stop();
}

#[test]
fn the_console_page_is_served_with_strict_headers() {
    let gw = start(&temp_dir("admin-console"), &["--admin-token", "t0k"]);
    // Open without the token: the page asks for it; the API behind it does not answer.
    let common::Response {
        status,
        headers,
        body,
    } = admin_get(gw.admin, "/", "");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = header(&headers, "content-security-policy").expect("a CSP");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "CSP {csp:?} lacks {directive}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&headers, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("<title>ringgate console</title>"));
    for api in ["/api/v1/gateways", "/api/v1/stats"] {
        assert_eq!(admin_get(gw.admin, api, "").status, 401, "{api}");
    }
    // The same page as /index.html; unknown paths stay 404.
    assert_eq!(admin_get(gw.admin, "/index.html", "").status, 200);
    assert_eq!(admin_get(gw.admin, "/nope", "").status, 404);
    assert_eq!(admin_get(gw.admin, "/assets/app.js", "").status, 404);
    gw.stop();
}

/// The asset URLs the page loads (`/assets/…`).
fn asset_paths(page: &str) -> Vec<String> {
    page.split('"')
        .filter(|s| s.starts_with("/assets/"))
        .map(str::to_string)
        .collect()
}

#[test]
fn assets_are_gzipped_hashed_immutable_and_revalidated() {
    let gw = start(&temp_dir("admin-assets"), &[]);
    let common::Response {
        headers: page_headers,
        body: page,
        ..
    } = admin_get(gw.admin, "/", "");
    let page = String::from_utf8(page).unwrap();
    let assets = asset_paths(&page);
    assert_eq!(assets.len(), 2, "one script, one stylesheet: {assets:?}");
    let mut compressed = 0;
    for path in &assets {
        let common::Response {
            status,
            headers: plain_headers,
            body: plain,
        } = admin_get(gw.admin, path, "");
        assert_eq!(status, 200, "{path}");
        assert!(header(&plain_headers, "content-encoding").is_none());
        let common::Response {
            status,
            headers,
            body: gz,
        } = admin_get(gw.admin, path, "Accept-Encoding: gzip, br\r\n");
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
        assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
        assert_eq!(
            header(&headers, "cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "{path} is gzip");
        assert!(
            gz.len() * 2 < plain.len(),
            "{path}: {} of {}",
            gz.len(),
            plain.len()
        );
        compressed += gz.len();
        let want = if path.ends_with(".js") {
            "text/javascript"
        } else {
            "text/css"
        };
        assert!(header(&headers, "content-type").unwrap().starts_with(want));
        // The ETag of each representation revalidates to 304, without a body.
        for (h, accept) in [
            (&plain_headers, ""),
            (&headers, "Accept-Encoding: gzip\r\n"),
        ] {
            let etag = header(h, "etag").expect("an ETag");
            let common::Response {
                status,
                headers: h304,
                body,
            } = admin_get(
                gw.admin,
                path,
                &format!("{accept}If-None-Match: {etag}\r\n"),
            );
            assert_eq!(status, 304, "{path} with {etag}");
            assert!(body.is_empty());
            assert_eq!(header(&h304, "etag"), Some(etag));
        }
        assert_ne!(header(&plain_headers, "etag"), header(&headers, "etag"));
    }
    assert!(
        compressed < 150 << 10,
        "the console is {compressed} bytes compressed"
    );
    // The page revalidates too.
    let etag = header(&page_headers, "etag").unwrap();
    let common::Response { status, .. } =
        admin_get(gw.admin, "/", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(status, 304);
    let common::Response { status, .. } = admin_get(gw.admin, "/", "If-None-Match: \"other\"\r\n");
    assert_eq!(status, 200);
    gw.stop();
}

#[test]
fn stats_keep_each_gateways_counters_since_the_first_sample() {
    let (_mock, mock) = common::spawn_mock(&[]);
    let gw = start(&temp_dir("admin-stats"), &[]);
    let route = create_route(gw.admin, "demo", mock, Some("/v1"));
    for _ in 0..25 {
        assert_eq!(proxied(gw.proxy, &route.key), 200);
    }
    let failing = format!(
        "GET /v1/models HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\nx-mock-status: 500\r\nConnection: close\r\n\r\n",
        route.key
    );
    assert_eq!(roundtrip(gw.proxy, &failing).status, 500);
    let (status, v) = call(gw.admin, "GET", "/api/v1/stats", None, None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["interval_seconds"], 10);
    let buckets = v["latency_buckets"].as_array().unwrap();
    assert_eq!(buckets.last().unwrap(), "+Inf");
    let samples = v["samples"].as_array().unwrap();
    // The one taken at start, before any of this, and the one taken now.
    assert!(samples.len() >= 2, "{v}");
    let (first, last) = (&samples[0], samples.last().unwrap());
    assert_eq!(
        first["gateways"]["demo"]["requests"].as_u64().unwrap_or(0),
        0
    );
    assert!(first["age_ms"].as_u64().unwrap() > 0);
    assert_eq!(last["age_ms"], 0);
    let demo = &last["gateways"]["demo"];
    assert_eq!(demo["requests"], 26, "{demo}");
    assert_eq!(demo["errors_5xx"], 1, "{demo}");
    assert!(demo["tokens"].as_u64().unwrap() > 0, "{demo}");
    let latency = demo["latency"].as_array().unwrap();
    assert_eq!(latency.len(), buckets.len());
    assert_eq!(latency.iter().map(|n| n.as_u64().unwrap()).sum::<u64>(), 26);
    let (status, _) = call(gw.admin, "POST", "/api/v1/stats", None, None);
    assert_eq!(status, 405);
    gw.stop();
}
