//! The web console in a real browser: headless Chromium over WebDriver
//! against the real binary and its mock upstream. Each test drives the
//! page as a person would (typing, clicking) and checks the effect through
//! the admin API or the proxy. Screenshots go to the folder printed at the
//! start (under the cargo target dir).

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use browser::Browser;
use common::admin::{call, proxied, start, temp_dir};
use common::{browser, spawn_mock};
use serde_json::{json, Value};

/// One browser at a time: the machine may have two cores.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

const WAIT: Duration = Duration::from_secs(15);

/// Saves a screenshot of the page's top as `NAME.png` in the screenshot
/// folder, and prints where.
fn snap(b: &Browser, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    b.exec("window.scrollTo(0, 0)", json!([]));
    let path = b.screenshot(&dir, name);
    println!("console screenshot: {}", path.display());
}

fn url(admin: SocketAddr, hash: &str) -> String {
    format!("http://{admin}/{hash}")
}

/// Lists of the admin API, in today's wrapped shape or a bare array.
fn items(v: &Value, plural: &str) -> Vec<Value> {
    v.as_array()
        .or_else(|| v[plural].as_array())
        .or_else(|| v["api_keys"].as_array())
        .cloned()
        .unwrap_or_default()
}

fn create_gateway_by_api(admin: SocketAddr, name: &str, token: Option<&str>) -> String {
    let (s, v) = call(
        admin,
        "POST",
        "/api/v1/gateways",
        Some(&json!({ "name": name })),
        token,
    );
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn log_in_and_build_a_route_through_the_console() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let (_mock, mock) = spawn_mock(&[]);
    let gw = start(
        &temp_dir("console-route"),
        &["--admin-token", "s3cret-token"],
    );
    let b = Browser::start();
    b.goto(&url(gw.admin, ""));
    // The console asks for the token; a wrong one is refused beside its field.
    b.fill("form.login input[name=token]", "wrong");
    b.click("form.login button[type=submit]");
    b.wait_for("form.login [data-error-for=token]", WAIT);
    b.fill("form.login input[name=token]", "s3cret-token");
    b.click("form.login button[type=submit]");
    b.wait_for("[data-test=requests-total]", WAIT);
    assert!(b.text(".access").contains("signed in"));

    // Gateway, upstream on the mock, service, rule, key: all by typing.
    b.goto(&url(gw.admin, "#/gateways"));
    b.fill("form.create-gateway input[name=name]", "demo");
    b.click("form.create-gateway button[type=submit]");
    b.wait_for("h1.gw-name", WAIT);
    assert_eq!(b.text("h1.gw-name"), "demo");
    b.fill("form.create-upstream input[name=name]", "llm");
    b.fill(
        "form.create-upstream input[name='targets[0].port']",
        &mock.port().to_string(),
    );
    b.click("form.create-upstream button[type=submit]");
    b.wait_for("[data-upstream=llm]", WAIT);
    b.fill("form.create-service input[name=name]", "chat");
    b.click("form.create-service button[type=submit]");
    b.wait_until(
        "the service is listed",
        "return [...document.querySelectorAll('[data-section=services] td')].some(td => td.textContent === 'chat')",
        json!([]),
        WAIT,
    );
    b.fill("form.create-rule input[name=name]", "openai");
    b.click("form.create-rule button[type=submit]");
    b.wait_until(
        "the rule is listed",
        "return [...document.querySelectorAll('[data-section=rules] td')].some(td => td.textContent === 'openai')",
        json!([]),
        WAIT,
    );
    b.fill("form.create-key input[name=name]", "app");
    b.click("form.create-key button[type=submit]");
    b.wait_for("input[data-test=new-key]", WAIT);
    let key = b
        .exec(
            "return document.querySelector('input[data-test=new-key]').value",
            json!([]),
        )
        .as_str()
        .unwrap()
        .to_string();
    assert!(key.len() >= 32, "a plaintext key: {key:?}");
    // The key works at once, through the proxy.
    assert_eq!(proxied(gw.proxy, &key), 200);
    // The token never went into the URL or a cookie.
    let where_ = b.exec("return location.href + ' ' + document.cookie", json!([]));
    assert!(
        !where_.as_str().unwrap().contains("s3cret-token"),
        "{where_}"
    );
    // What the console made is what the API holds.
    let t = Some("s3cret-token");
    let (_, gws) = call(gw.admin, "GET", "/api/v1/gateways", None, t);
    let gws = items(&gws, "gateways");
    assert_eq!(gws.len(), 1);
    let gid = gws[0]["id"].as_str().unwrap();
    let (_, rules) = call(
        gw.admin,
        "GET",
        &format!("/api/v1/gateways/{gid}/rules"),
        None,
        t,
    );
    let rules = items(&rules, "rules");
    assert_eq!(rules[0]["path"], "/v1");
    assert_eq!(rules[0]["methods"], json!(["GET", "POST"]));
    snap(&b, "gateway");
    gw.stop();
}

#[test]
fn a_bad_port_is_shown_beside_its_field_and_creates_nothing() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let gw = start(&temp_dir("console-port"), &[]);
    let gid = create_gateway_by_api(gw.admin, "demo", None);
    let b = Browser::start();
    b.goto(&url(gw.admin, &format!("#/gateways/{gid}")));
    // Without --admin-token the console says the API is open, and where.
    b.wait_for("form.create-upstream", WAIT);
    let access = b.text(".access");
    assert!(
        access.contains("open") && access.contains(&gw.admin.to_string()),
        "{access:?}"
    );
    b.fill("form.create-upstream input[name=name]", "llm");
    b.fill(
        "form.create-upstream input[name='targets[0].port']",
        "70000",
    );
    b.click("form.create-upstream button[type=submit]");
    b.wait_for(
        "form.create-upstream [data-error-for='targets[0].port']",
        WAIT,
    );
    // The API's own message, right after the port input.
    let beside = b.exec(
        "const i = document.querySelector(\"form.create-upstream input[name='targets[0].port']\");
         return [i.nextElementSibling.textContent, i.classList.contains('invalid')]",
        json!([]),
    );
    let message = beside[0].as_str().unwrap();
    assert!(message.contains("70000"), "{beside}");
    assert_eq!(beside[1], true);
    // The same message the API gives, and nothing was created.
    let (status, v) = call(
        gw.admin,
        "POST",
        &format!("/api/v1/gateways/{gid}/upstreams"),
        Some(
            &json!({"name": "llm", "targets": [{"host": "127.0.0.1", "port": 70000, "weight": 1}]}),
        ),
        None,
    );
    assert_eq!(status, 400);
    assert_eq!(v["field"], "targets[0].port");
    // (The parser's position differs with the body's layout.)
    let without_position = |m: &str| m.split(" at line").next().unwrap_or("").to_string();
    assert_eq!(
        without_position(message),
        without_position(v["error"].as_str().unwrap())
    );
    let (_, ups) = call(
        gw.admin,
        "GET",
        &format!("/api/v1/gateways/{gid}/upstreams"),
        None,
        None,
    );
    assert!(items(&ups, "upstreams").is_empty(), "{ups}");
    gw.stop();
}

#[test]
fn the_overview_counts_requests_and_a_killed_target_shows_down() {
    let health = json!({"path": "/echo/health", "interval": 1, "timeout": 1, "threshold": 1});
    let Scene {
        b,
        gw,
        gid,
        mock,
        _mock: mock_guard,
        _one,
    } = scene("console-overview", Some(health));
    b.goto(&url(gw.admin, ""));
    b.wait_for("[data-test=requests-total]", WAIT);
    // 200 requests over about 6 s while the page watches, so its charts
    // have something to draw.
    for i in 0..200 {
        assert_eq!(proxied(gw.proxy, "rg-console-key"), 200);
        if i % 10 == 9 {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    b.wait_until(
        "the overview counts 200 requests",
        "const e = document.querySelector('[data-test=requests-total]');
         const row = document.querySelector('tr[data-gateway=demo] [data-test=requests]');
         return !!e && e.textContent === '200' && !!row && row.textContent === '200'",
        json!([]),
        WAIT,
    );
    snap(&b, "overview");
    // A page opened now draws the past at once, from the server's samples
    // (a page on its own would need three polls, 4 s, for two points).
    b.goto(&url(gw.admin, "#/gateways"));
    b.goto(&url(gw.admin, ""));
    let opened = Instant::now();
    b.wait_until(
        "the requests chart has two points",
        "const c = document.querySelector('svg[data-chart=rps]'); return !!c && Number(c.dataset.points) >= 2",
        json!([]),
        WAIT,
    );
    assert!(
        opened.elapsed() < Duration::from_secs(3),
        "{:?}",
        opened.elapsed()
    );

    b.goto(&url(gw.admin, &format!("#/gateways/{gid}")));
    let badge = format!("[data-target='127.0.0.1:{}']", mock.port());
    let text_is = |want: &str| {
        format!(
            "const e = document.querySelector(\"{badge}\"); return !!e && e.textContent.startsWith('{want}')"
        )
    };
    b.wait_until("the target shows up", &text_is("up"), json!([]), WAIT);
    drop(mock_guard);
    let killed = Instant::now();
    // Probes every 1 s (timeout 1 s, one failure marks it down) and the
    // console polls every 2 s: down within a probe interval plus a poll.
    b.wait_until(
        "the killed target shows down",
        &text_is("down"),
        json!([]),
        Duration::from_secs(8),
    );
    let took = killed.elapsed();
    println!("the killed target showed down after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    snap(&b, "gateway-target-down");
    gw.stop();
}

#[test]
fn a_gateway_named_like_html_is_shown_as_text_and_runs_nothing() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let gw = start(&temp_dir("console-xss"), &[]);
    let name = "<img src=x onerror=alert(1)>";
    let b = Browser::start();
    b.goto(&url(gw.admin, "#/gateways"));
    // Made through the console itself.
    b.fill("form.create-gateway input[name=name]", name);
    b.click("form.create-gateway button[type=submit]");
    b.wait_for("h1.gw-name", WAIT);
    assert_eq!(b.text("h1.gw-name"), name);
    b.goto(&url(gw.admin, "#/gateways"));
    b.wait_for("a.gw-link", WAIT);
    assert_eq!(b.text("a.gw-link"), name);
    b.goto(&url(gw.admin, ""));
    b.wait_for("[data-test=requests-total]", WAIT);
    b.goto(&url(gw.admin, "#/gateways"));
    b.wait_for("a.gw-link", WAIT);
    // No element was made from the name, and no dialog opened.
    assert_eq!(
        b.exec("return document.querySelectorAll('img').length", json!([])),
        json!(0)
    );
    assert_eq!(b.alert_text(), None, "an alert opened");
    let (_, gws) = call(gw.admin, "GET", "/api/v1/gateways", None, None);
    assert_eq!(items(&gws, "gateways")[0]["name"], name);
    gw.stop();
}

/// A gateway with a route to the mock (its upstream with `health_checks`,
/// if given) and the key `rg-console-key`, put through the API; returns the
/// gateway's id.
fn route_by_api(admin: SocketAddr, mock: SocketAddr, health: Option<Value>) -> String {
    let mut upstream =
        json!({"name": "llm", "targets": [{"host": "127.0.0.1", "port": mock.port()}]});
    if let Some(h) = health {
        upstream["health_checks"] = h;
    }
    let config = json!({"gateways": [{
        "name": "demo",
        "upstreams": [upstream],
        "services": [{"name": "chat", "type": "upstream", "upstream": "llm"}],
        "rules": [{"name": "openai", "path": "/v1", "methods": ["POST"], "service": "chat"}],
        "keys": [{"name": "app", "key": "rg-console-key"}]
    }]});
    let (status, v) = call(admin, "PUT", "/api/v1/config", Some(&config), None);
    assert_eq!(status, 200, "{v}");
    let (_, gws) = call(admin, "GET", "/api/v1/gateways", None, None);
    items(&gws, "gateways")[0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// What most tests start from: the one browser's turn, the mock, a
/// gateway routed to it by [`route_by_api`] (its id), and a browser.
struct Scene {
    b: Browser,
    gw: common::admin::Gateway,
    gid: String,
    mock: SocketAddr,
    _mock: common::ChildGuard,
    _one: std::sync::MutexGuard<'static, ()>,
}

fn scene(tag: &str, health: Option<Value>) -> Scene {
    let one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let (guard, mock) = spawn_mock(&[]);
    let gw = start(&temp_dir(tag), &[]);
    let gid = route_by_api(gw.admin, mock, health);
    Scene {
        b: Browser::start(),
        gw,
        gid,
        mock,
        _mock: guard,
        _one: one,
    }
}

#[test]
fn plugin_settings_show_the_servers_validation_message_then_apply() {
    let Scene {
        b,
        gw,
        gid,
        _mock,
        _one,
        ..
    } = scene("console-plugins", None);
    b.goto(&url(gw.admin, &format!("#/gateways/{gid}")));
    b.click("[data-section=rules] [data-action=plugins]");
    // rate_limiter is the first choice; add it, then give it a bad limit.
    b.click("tr.editor [data-action=add-plugin]");
    let settings = "tr.editor textarea[data-field='plugin_chain[0]']";
    b.fill(
        settings,
        r#"{"limits": {"per_key": {"limit": 0, "window": "1m"}}}"#,
    );
    b.click("tr.editor form.plugins button[type=submit]");
    // Beside the plugin's settings, naming the field inside them.
    b.wait_for(
        "tr.editor [data-error-for='plugin_chain[0].settings.limits.per_key.limit']",
        WAIT,
    );
    let message = b.text("tr.editor .field-error");
    assert!(message.contains("at least 1"), "{message:?}");
    // Nothing changed: the key is not limited.
    for _ in 0..3 {
        assert_eq!(proxied(gw.proxy, "rg-console-key"), 200);
    }
    b.fill(
        settings,
        r#"{"limits": {"per_key": {"limit": 2, "window": "1m"}}}"#,
    );
    b.click("tr.editor form.plugins button[type=submit]");
    b.wait_until(
        "the rule lists its plugin",
        "return [...document.querySelectorAll('[data-section=rules] td')].some(td => td.textContent === 'rate_limiter')",
        json!([]),
        WAIT,
    );
    let codes: Vec<u16> = (0..3)
        .map(|_| proxied(gw.proxy, "rg-console-key"))
        .collect();
    assert_eq!(codes, [200, 200, 429]);
    gw.stop();
}

#[test]
fn a_conflict_says_what_conflicts() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let gw = start(&temp_dir("console-conflict"), &[]);
    // Gateway names may repeat (as in TrustGate); subdomains may not.
    let (s, v) = call(
        gw.admin,
        "POST",
        "/api/v1/gateways",
        Some(&json!({"name": "first", "subdomain": "taken"})),
        None,
    );
    assert_eq!(s, 201, "{v}");
    let b = Browser::start();
    b.goto(&url(gw.admin, "#/gateways"));
    b.fill("form.create-gateway input[name=name]", "second");
    b.fill("form.create-gateway input[name=subdomain]", "taken");
    b.click("form.create-gateway button[type=submit]");
    b.wait_for("form.create-gateway [data-error-for=subdomain]", WAIT);
    let message = b.text("form.create-gateway .field-error");
    assert!(
        message.starts_with("Conflict:") && message.contains("\"taken\" is already used"),
        "{message:?}"
    );
    let (_, gws) = call(gw.admin, "GET", "/api/v1/gateways", None, None);
    assert_eq!(items(&gws, "gateways").len(), 1);
    gw.stop();
}

#[test]
fn configuration_downloads_and_uploads_with_a_preview() {
    let Scene {
        b,
        gw,
        mock,
        _mock,
        _one,
        ..
    } = scene("console-config", None);
    b.goto(&url(gw.admin, "#/config"));
    // Download: the file is the API's export.
    b.click("[data-action=download]");
    let file = b.downloads().join("ringgate-config.json");
    let deadline = Instant::now() + WAIT;
    while !file.exists() {
        assert!(
            Instant::now() < deadline,
            "no download at {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let downloaded: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let (_, exported) = call(gw.admin, "GET", "/api/v1/config", None, None);
    assert_eq!(downloaded, exported);

    // Upload a changed one: a second upstream, no rule, another key.
    let mut doc = downloaded.clone();
    let g = &mut doc["gateways"][0];
    g["upstreams"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "spare", "targets": [{"host": "127.0.0.1", "port": mock.port()}]}));
    g["rules"] = json!([]);
    g["keys"] = json!([{"name": "other", "key": "rg-other-key"}]);
    let path = temp_dir("console-upload").join("next.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    b.fill(
        "form.upload-config input[type=file]",
        &path.to_string_lossy(),
    );
    b.wait_for("ul.changes", WAIT);
    let preview = b.text("ul.changes");
    for line in [
        "added upstream demo/spare",
        "removed rule demo/openai",
        "removed key demo/app",
        "added key demo/other",
    ] {
        assert!(
            preview.contains(line),
            "{line:?} not in the preview:\n{preview}"
        );
    }
    assert!(!preview.contains("service demo/chat"), "{preview}");
    // Previewing changed nothing.
    assert_eq!(proxied(gw.proxy, "rg-console-key"), 200);
    b.click("form.upload-config button[type=submit]");
    b.wait_for(".flash.ok", WAIT);
    let (_, now) = call(gw.admin, "GET", "/api/v1/config", None, None);
    let names: Vec<_> = now["gateways"][0]["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["llm", "spare"]);
    assert_eq!(proxied(gw.proxy, "rg-console-key"), 401);
    gw.stop();
}

#[test]
fn entities_are_edited_as_json_and_the_gateway_by_its_form() {
    let Scene {
        b,
        gw,
        gid,
        _mock,
        _one,
        ..
    } = scene("console-edit", None);
    b.goto(&url(gw.admin, &format!("#/gateways/{gid}")));
    b.click("[data-section=rules] [data-action=edit]");
    let editor = "[data-section=rules] tr.editor textarea";
    let text = b.exec(
        "return document.querySelector(arguments[0]).value",
        json!([editor]),
    );
    let mut rule: Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
    assert_eq!(rule["path"], "/v1");
    // A refusal names its field above the editor and changes nothing.
    rule["retry_attempts"] = json!(-1);
    b.fill(editor, &rule.to_string());
    b.click("[data-section=rules] tr.editor button[type=submit]");
    b.wait_for("[data-section=rules] tr.editor .form-error", WAIT);
    let message = b.text("[data-section=rules] tr.editor .form-error");
    assert!(message.contains("retry_attempts"), "{message:?}");
    // A valid edit is applied: the rule now also takes GET.
    rule["retry_attempts"] = json!(1);
    rule["methods"] = json!(["GET", "POST"]);
    b.fill(editor, &rule.to_string());
    b.click("[data-section=rules] tr.editor button[type=submit]");
    b.wait_until(
        "the rule lists GET",
        "return [...document.querySelectorAll('[data-section=rules] td')].some(td => td.textContent === 'GET POST')",
        json!([]),
        WAIT,
    );
    let get = "GET /v1/models HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer rg-console-key\r\nConnection: close\r\n\r\n";
    assert_eq!(common::roundtrip(gw.proxy, get).status, 200);
    // The gateway's own form renames it.
    b.fill("form.edit-gateway input[name=name]", "renamed");
    b.click("form.edit-gateway button[type=submit]");
    b.wait_until(
        "the heading shows the new name",
        "const h = document.querySelector('h1.gw-name'); return !!h && h.textContent === 'renamed'",
        json!([]),
        WAIT,
    );
    let (_, g) = call(
        gw.admin,
        "GET",
        &format!("/api/v1/gateways/{gid}"),
        None,
        None,
    );
    assert_eq!(g["name"], "renamed");
    gw.stop();
}
