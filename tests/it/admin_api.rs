//! The admin API (README.md, "Admin API") against the real binary: CRUD of every entity,
//! every refusal status (400 with its field, 404, 405, 409, 413, 415), paging,
//! the configuration export/import, and the admin token.

use crate::common;

use common::admin::{call, call_raw, create_route, expect, id, start, temp_dir};
use common::spawn_mock;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn no_nested_lists(gw: &Value) {
    for k in ["upstreams", "services", "rules", "keys"] {
        assert!(gw.get(k).is_none(), "gateway object shows {k}: {gw}");
    }
}

/// Sends a request the API must refuse; checks the status and the field the
/// error names.
fn refused(
    a: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    status: u16,
    field: &str,
) {
    let (s, v) = call(a, method, path, body, None);
    assert_eq!(
        (s, error_field(&v)),
        (status, field),
        "{method} {path}: {v}"
    );
}

fn error_field(v: &Value) -> &str {
    assert!(v["error"].is_string(), "no error message in {v}");
    v["field"]
        .as_str()
        .unwrap_or_else(|| panic!("no field in {v}"))
}

#[test]
fn gateways_crud_paging_and_refusals() {
    let dir = temp_dir("api-gw");
    let gw = start(&dir, &[]);
    let a = gw.admin;

    let (s, list) = call(a, "GET", "/api/v1/gateways", None, None);
    assert_eq!(
        (s, list.clone()),
        (
            200,
            json!({"gateways": [], "count": 0, "offset": 0, "limit": 10})
        )
    );

    let g1 = expect(
        a,
        "POST",
        "/api/v1/gateways",
        Some(
            &json!({"name": "one", "subdomain": "one", "id": "ignored", "created_at": "2000-01-01T00:00:00Z"}),
        ),
        201,
    );
    no_nested_lists(&g1);
    let g1_id = id(&g1);
    assert_ne!(g1_id, "ignored", "the server assigns ids");
    assert_eq!(g1["status"], "active");
    assert_ne!(g1["created_at"], "2000-01-01T00:00:00Z");
    for n in ["two", "three"] {
        expect(
            a,
            "POST",
            "/api/v1/gateways",
            Some(&json!({ "name": n })),
            201,
        );
    }

    // Paging: count is the total before paging.
    let page = expect(a, "GET", "/api/v1/gateways?offset=1&limit=1", None, 200);
    assert_eq!(page["count"], 3);
    assert_eq!(
        (page["offset"].as_u64(), page["limit"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(page["gateways"].as_array().unwrap().len(), 1);
    assert_eq!(page["gateways"][0]["name"], "two");
    let tail = expect(a, "GET", "/api/v1/gateways?offset=2&limit=100", None, 200);
    assert_eq!(tail["gateways"].as_array().unwrap().len(), 1);
    refused(a, "GET", "/api/v1/gateways?limit=101", None, 400, "limit");
    refused(a, "GET", "/api/v1/gateways?limit=0", None, 400, "limit");
    refused(a, "GET", "/api/v1/gateways?offset=x", None, 400, "offset");

    // Refusals.
    for (body, status, field) in [
        (json!({"name": "x", "subdomain": "one"}), 409, "subdomain"),
        (json!({"subdomain": "x"}), 400, "name"),
        (json!({"name": "x", "status": "sleeping"}), 400, "status"),
        (json!({"name": "x", "color": "red"}), 400, "color"),
        (
            json!({"name": "x", "subdomain": "not a label"}),
            400,
            "subdomain",
        ),
        (
            json!({"name": "x", "required_plugins": [{"name": "rate_limiter", "settings": 5}]}),
            400,
            "required_plugins[0].settings",
        ),
    ] {
        refused(a, "POST", "/api/v1/gateways", Some(&body), status, field);
    }
    let (s, _) = call(a, "GET", "/api/v1/gateways/nope", None, None);
    assert_eq!(s, 404);
    let (s, _) = call(
        a,
        "PUT",
        "/api/v1/gateways/nope",
        Some(&json!({"name": "z"})),
        None,
    );
    assert_eq!(s, 404);
    let (s, _) = call(a, "DELETE", "/api/v1/gateways/nope", None, None);
    assert_eq!(s, 404);
    let (s, _) = call(a, "PATCH", "/api/v1/gateways", None, None);
    assert_eq!(s, 405);
    let (s, _) = call(a, "GET", "/api/v1/nothing", None, None);
    assert_eq!(s, 404);
    // Nothing refused was stored.
    assert_eq!(expect(a, "GET", "/api/v1/gateways", None, 200)["count"], 3);

    // PUT changes the fields it names (TrustGate's partial update) and bumps
    // updated_at (seconds precision).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let put = expect(
        a,
        "PUT",
        &format!("/api/v1/gateways/{g1_id}"),
        Some(&json!({"name": "uno", "status": "inactive"})),
        200,
    );
    no_nested_lists(&put);
    assert_eq!(put["id"], g1_id.as_str());
    assert_eq!(put["name"], "uno");
    assert_eq!(put["status"], "inactive");
    assert_eq!(put["subdomain"], "one", "kept: the body did not name it");
    assert_eq!(put["created_at"], g1["created_at"]);
    assert_ne!(put["updated_at"], g1["updated_at"]);
    let got = expect(a, "GET", &format!("/api/v1/gateways/{g1_id}"), None, 200);
    assert_eq!(got, put);
    // A partial body is still checked whole: an unknown field or a bad
    // value is a 400 naming it, and changes nothing.
    for (body, field) in [
        (json!({"colour": "red"}), "colour"),
        (json!({"status": "asleep"}), "status"),
        (json!({"name": ""}), "name"),
        (json!({"rules": []}), "rules"),
    ] {
        let (s, v) = call(
            a,
            "PUT",
            &format!("/api/v1/gateways/{g1_id}"),
            Some(&body),
            None,
        );
        assert_eq!((s, error_field(&v)), (400, field), "{body}");
    }
    assert_eq!(
        expect(a, "GET", &format!("/api/v1/gateways/{g1_id}"), None, 200),
        put
    );
    // Names need not be unique (gateways are told apart by id).
    let same = expect(
        a,
        "PUT",
        &format!("/api/v1/gateways/{g1_id}"),
        Some(&json!({"name": "two"})),
        200,
    );
    assert_eq!(same["name"], "two");

    // Deleting a gateway deletes its children.
    let up = expect(
        a,
        "POST",
        &format!("/api/v1/gateways/{g1_id}/upstreams"),
        Some(&json!({"name": "u", "targets": [{"host": "127.0.0.1", "port": 9}]})),
        201,
    );
    let (s, body) = call(
        a,
        "DELETE",
        &format!("/api/v1/gateways/{g1_id}"),
        None,
        None,
    );
    assert_eq!((s, body), (204, Value::Null));
    let (s, _) = call(
        a,
        "GET",
        &format!("/api/v1/gateways/{g1_id}/upstreams/{}", id(&up)),
        None,
        None,
    );
    assert_eq!(s, 404);
    let export = expect(a, "GET", "/api/v1/config", None, 200);
    assert_eq!(export["gateways"].as_array().unwrap().len(), 2);
    assert!(!export.to_string().contains(&id(&up)));
    gw.stop();
}

#[test]
fn upstreams_services_rules_crud_and_refusals() {
    let dir = temp_dir("api-entities");
    let gw = start(&dir, &[]);
    let a = gw.admin;
    let g = id(&expect(
        a,
        "POST",
        "/api/v1/gateways",
        Some(&json!({"name": "g"})),
        201,
    ));
    let other = id(&expect(
        a,
        "POST",
        "/api/v1/gateways",
        Some(&json!({"name": "other"})),
        201,
    ));
    let base = format!("/api/v1/gateways/{g}");

    // Upstreams.
    refused(
        a,
        "POST",
        &format!("{base}/upstreams"),
        Some(
            &json!({"name": "llm", "targets": [{"host": "127.0.0.1", "port": 9000}, {"host": "127.0.0.1", "port": 0}]}),
        ),
        400,
        "targets[1].port",
    );
    for (body, status, field) in [
        (
            json!({"name": "llm", "algorithm": "fastest", "targets": []}),
            400,
            "algorithm",
        ),
        (json!({"name": "llm", "targets": []}), 400, "targets"),
        (
            json!({"name": "llm", "targets": [{"host": "127.0.0.1"}]}),
            400,
            "targets[0].port",
        ),
    ] {
        refused(
            a,
            "POST",
            &format!("{base}/upstreams"),
            Some(&body),
            status,
            field,
        );
    }
    let up = expect(
        a,
        "POST",
        &format!("{base}/upstreams"),
        Some(
            &json!({"name": "llm", "algorithm": "weighted-round-robin", "gateway_id": "ignored",
                     "targets": [{"host": "127.0.0.1", "port": 9000, "weight": 3}]}),
        ),
        201,
    );
    let up_id = id(&up);
    assert_eq!(up["gateway_id"], g.as_str());
    let target_id = up["targets"][0]["id"].as_str().unwrap().to_string();
    refused(
        a,
        "POST",
        &format!("{base}/upstreams"),
        Some(&json!({"name": "llm", "targets": [{"host": "h", "port": 1}]})),
        409,
        "name",
    );
    // PUT keeps the id of a target at the same place.
    let put = expect(
        a,
        "PUT",
        &format!("{base}/upstreams/{up_id}"),
        Some(
            &json!({"name": "llm", "targets": [{"host": "127.0.0.2", "port": 9001},
                                                 {"host": "127.0.0.1", "port": 9000}]}),
        ),
        200,
    );
    assert_eq!(put["id"], up_id.as_str());
    assert_eq!(put["algorithm"], "round-robin");
    assert_eq!(put["targets"][1]["id"], target_id.as_str());
    assert_ne!(put["targets"][0]["id"], target_id.as_str());
    refused(
        a,
        "PUT",
        &format!("{base}/upstreams/{up_id}"),
        Some(&json!({"name": "llm", "targets": [{"host": "bad host", "port": 1}]})),
        400,
        "targets[0].host",
    );
    assert_eq!(
        expect(a, "GET", &format!("{base}/upstreams/{up_id}"), None, 200),
        put
    );

    // Services.
    for (body, status, field) in [
        (
            json!({"name": "chat", "type": "upstream", "upstream": "missing"}),
            400,
            "upstream",
        ),
        (
            json!({"name": "chat", "type": "endpoint", "port": 80}),
            400,
            "host",
        ),
        (json!({"name": "chat"}), 400, "type"),
    ] {
        refused(
            a,
            "POST",
            &format!("{base}/services"),
            Some(&body),
            status,
            field,
        );
    }
    let svc = expect(
        a,
        "POST",
        &format!("{base}/services"),
        Some(&json!({"name": "chat", "type": "upstream", "upstream": "llm"})),
        201,
    );
    let svc_id = id(&svc);
    assert_eq!(svc["upstream_id"], up_id.as_str());
    let ep = id(&expect(
        a,
        "POST",
        &format!("{base}/services"),
        Some(&json!({"name": "ep", "type": "endpoint", "host": "127.0.0.1", "port": 9000})),
        201,
    ));

    // Rules.
    let rule = expect(
        a,
        "POST",
        &format!("{base}/rules"),
        Some(&json!({"name": "r1", "path": "/v1", "methods": ["post"], "service": "chat"})),
        201,
    );
    let rule_id = id(&rule);
    assert_eq!(rule["service_id"], svc_id.as_str());
    assert_eq!(rule["methods"], json!(["POST"]));
    assert_eq!(rule["active"], true);
    refused(
        a,
        "POST",
        &format!("{base}/rules"),
        Some(&json!({"name": "r2", "path": "/v1", "methods": ["GET", "POST"], "service_id": ep})),
        409,
        "path",
    );
    expect(
        a,
        "POST",
        &format!("{base}/rules"),
        Some(&json!({"name": "r2", "path": "/v1", "methods": ["GET"], "service_id": ep})),
        201,
    );
    for (body, status, field) in [
        (
            json!({"name": "r3", "path": "v1", "service_id": ep}),
            400,
            "path",
        ),
        (json!({"name": "r3", "path": "/x"}), 400, "service_id"),
        (
            json!({"name": "r3", "path": "/x", "service_id": ep, "methods": ["GE T"]}),
            400,
            "methods[0]",
        ),
        (
            json!({"name": "r1", "path": "/y", "service_id": ep}),
            409,
            "name",
        ),
    ] {
        refused(
            a,
            "POST",
            &format!("{base}/rules"),
            Some(&body),
            status,
            field,
        );
    }
    // TrustGate's rules have no name.
    let nameless = expect(
        a,
        "POST",
        &format!("{base}/rules"),
        Some(&json!({"path": "/nameless", "service_id": ep, "methods": ["GET"], "active": true})),
        201,
    );
    assert_eq!(nameless["name"], "");
    assert!(nameless["created_at"].is_string() && nameless["updated_at"].is_string());
    expect(
        a,
        "DELETE",
        &format!("{base}/rules/{}", id(&nameless)),
        None,
        204,
    );
    for i in 0..5 {
        expect(
            a,
            "POST",
            &format!("{base}/rules"),
            Some(&json!({"name": format!("p{i}"), "path": format!("/p/{i}"), "service_id": ep})),
            201,
        );
    }
    // Rules list as a bare array (TrustGate's shape), all of them unless
    // the query pages them.
    let all = expect(a, "GET", &format!("{base}/rules"), None, 200);
    assert_eq!(all.as_array().map(Vec::len), Some(7), "{all}");
    let page = expect(
        a,
        "GET",
        &format!("{base}/rules?offset=2&limit=3"),
        None,
        200,
    );
    let names: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p0", "p1", "p2"]);
    std::thread::sleep(std::time::Duration::from_millis(10));
    let put = expect(
        a,
        "PUT",
        &format!("{base}/rules/{rule_id}"),
        Some(
            &json!({"name": "renamed", "path": "/v1", "methods": ["POST"], "service_id": svc_id, "strip_path": true}),
        ),
        200,
    );
    assert_eq!(
        (
            put["id"].as_str(),
            put["name"].as_str(),
            put["strip_path"].as_bool()
        ),
        (Some(rule_id.as_str()), Some("renamed"), Some(true))
    );
    // Partial, as TrustGate's: what the body leaves out is kept.
    let partial = expect(
        a,
        "PUT",
        &format!("{base}/rules/{rule_id}"),
        Some(&json!({"strip_path": false, "active": false})),
        200,
    );
    assert_eq!(
        (
            &partial["name"],
            &partial["path"],
            &partial["methods"],
            &partial["strip_path"],
            &partial["active"]
        ),
        (
            &json!("renamed"),
            &json!("/v1"),
            &json!(["POST"]),
            &json!(false),
            &json!(false)
        )
    );
    assert_eq!(partial["created_at"], put["created_at"]);
    refused(
        a,
        "PUT",
        &format!("{base}/rules/{rule_id}"),
        Some(&json!({"strip": true})),
        400,
        "strip",
    );

    // An entity addressed under the wrong gateway is not found.
    for path in [
        format!("upstreams/{up_id}"),
        format!("services/{svc_id}"),
        format!("rules/{rule_id}"),
    ] {
        let wrong = format!("/api/v1/gateways/{other}/{path}");
        assert_eq!(call(a, "GET", &wrong, None, None).0, 404, "GET {wrong}");
        assert_eq!(
            call(a, "DELETE", &wrong, None, None).0,
            404,
            "DELETE {wrong}"
        );
        assert_eq!(call(a, "PUT", &wrong, Some(&json!({"name": "x", "path": "/q", "service_id": svc_id, "type": "endpoint", "host": "h", "port": 1, "targets": [{"host": "h", "port": 1}]})), None).0, 404, "PUT {wrong}");
    }
    let (s, _) = call(a, "GET", "/api/v1/gateways/nope/rules", None, None);
    assert_eq!(s, 404);
    let (s, _) = call(a, "GET", &format!("{base}/widgets"), None, None);
    assert_eq!(s, 404);

    // Deleting what is still referenced: 409; in order: 204.
    let (s, v) = call(
        a,
        "DELETE",
        &format!("{base}/upstreams/{up_id}"),
        None,
        None,
    );
    assert_eq!(s, 409, "{v}");
    let (s, v) = call(
        a,
        "DELETE",
        &format!("{base}/services/{svc_id}"),
        None,
        None,
    );
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        call(a, "DELETE", &format!("{base}/rules/{rule_id}"), None, None).0,
        204
    );
    assert_eq!(
        call(a, "DELETE", &format!("{base}/rules/{rule_id}"), None, None).0,
        404
    );
    assert_eq!(
        call(
            a,
            "DELETE",
            &format!("{base}/services/{svc_id}"),
            None,
            None
        )
        .0,
        204
    );
    assert_eq!(
        call(
            a,
            "DELETE",
            &format!("{base}/upstreams/{up_id}"),
            None,
            None
        )
        .0,
        204
    );
    assert_eq!(
        expect(a, "GET", &format!("{base}/upstreams"), None, 200),
        json!([])
    );
    gw.stop();
}

#[test]
fn api_keys_are_generated_shown_once_and_stored_hashed() {
    let (_mock, mock) = spawn_mock(&[]);
    let dir = temp_dir("api-keys");
    let gw = start(&dir, &[]);
    let a = gw.admin;
    let r = create_route(a, "g", mock, Some("/v1"));
    let base = format!("/api/v1/gateways/{}", r.gateway);
    assert_eq!(
        r.key.len(),
        43,
        "32 bytes in base64url without padding: {}",
        r.key
    );
    assert!(r
        .key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(common::admin::proxied(gw.proxy, &r.key), 200);

    let created = expect(
        a,
        "POST",
        &format!("{base}/keys"),
        Some(
            &json!({"name": "limited", "policies": ["openai"], "expires_at": "2099-01-01T00:00:00Z"}),
        ),
        201,
    );
    let plain = created["key"].as_str().unwrap().to_string();
    assert!(created.get("key_hash").is_none(), "{created}");
    assert_eq!(created["prefix"], &plain[..8]);
    assert_eq!(created["policies"], json!([r.rule]));
    let key_id = id(&created);

    let list = expect(a, "GET", &format!("{base}/keys"), None, 200);
    assert_eq!(list["count"], 2);
    for k in list["api_keys"].as_array().unwrap() {
        assert!(k.get("key").is_none() && k.get("key_hash").is_none(), "{k}");
        assert!(k["prefix"].is_string() && k["active"].is_boolean());
    }
    let one = expect(a, "GET", &format!("{base}/keys/{key_id}"), None, 200);
    assert_eq!(one["expires_at"], "2099-01-01T00:00:00Z");
    assert!(one.get("key").is_none() && one.get("key_hash").is_none());

    let export = expect(a, "GET", "/api/v1/config", None, 200).to_string();
    assert!(
        !export.contains(&plain) && !export.contains(&r.key),
        "the export never shows a plaintext key"
    );
    let digest: String = Sha256::digest(plain.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(export.contains(&format!("sha256:{digest}")));
    let stored = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(!stored.contains(&plain) && stored.contains(&digest));

    for (body, status, field) in [
        (json!({"name": "mine", "key": "chosen"}), 400, "key"),
        (
            json!({"name": "p", "policies": ["nope"]}),
            400,
            "policies[0]",
        ),
        (
            json!({"name": "t", "expires_at": "tomorrow"}),
            400,
            "expires_at",
        ),
    ] {
        refused(
            a,
            "POST",
            &format!("{base}/keys"),
            Some(&body),
            status,
            field,
        );
    }
    // Key names need not be unique (TrustGate's benchmark flow runs twice).
    let twin = expect(
        a,
        "POST",
        &format!("{base}/keys"),
        Some(&json!({"name": "app"})),
        201,
    );
    assert_ne!(twin["key"], json!(plain));
    expect(
        a,
        "DELETE",
        &format!("{base}/keys/{}", id(&twin)),
        None,
        204,
    );
    assert_eq!(
        call(
            a,
            "PUT",
            &format!("{base}/keys/{key_id}"),
            Some(&json!({"name": "x"})),
            None
        )
        .0,
        405
    );
    // A rule named in a key's policies cannot go (the key would widen).
    assert_eq!(
        call(a, "DELETE", &format!("{base}/rules/{}", r.rule), None, None).0,
        409
    );

    assert_eq!(
        call(a, "DELETE", &format!("{base}/keys/{key_id}"), None, None).0,
        204
    );
    assert_eq!(
        call(a, "GET", &format!("{base}/keys/{key_id}"), None, None).0,
        404
    );
    let first = expect(a, "GET", &format!("{base}/keys"), None, 200)["api_keys"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        call(a, "DELETE", &format!("{base}/keys/{first}"), None, None).0,
        204
    );
    assert_eq!(
        common::admin::proxied(gw.proxy, &r.key),
        401,
        "a deleted key is refused at once"
    );
    gw.stop();
}

#[test]
fn bodies_that_are_not_json_or_too_large() {
    let dir = temp_dir("api-bodies");
    let gw = start(&dir, &[]);
    let a = gw.admin;
    let (s, v) = call_raw(
        a,
        "POST",
        "/api/v1/gateways",
        Some("text/plain"),
        br#"{"name":"x"}"#,
        None,
    );
    assert_eq!(s, 415, "{v}");
    let (s, _) = call_raw(
        a,
        "POST",
        "/api/v1/gateways",
        Some("application/x-www-form-urlencoded"),
        b"name=x",
        None,
    );
    assert_eq!(s, 415);
    let (s, _) = call_raw(
        a,
        "POST",
        "/api/v1/gateways",
        Some("application/json; charset=utf-8"),
        br#"{"name":"ok"}"#,
        None,
    );
    assert_eq!(s, 201, "parameters after the media type are fine");
    let (s, _) = call_raw(
        a,
        "POST",
        "/api/v1/gateways",
        None,
        br#"{"name":"no-ct"}"#,
        None,
    );
    assert_eq!(s, 201, "no Content-Type: the body is read as JSON");
    let (s, v) = call_raw(
        a,
        "POST",
        "/api/v1/gateways",
        Some("application/json"),
        b"{\"name\": ",
        None,
    );
    assert_eq!(s, 400, "{v}");
    assert!(v.get("field").is_none());
    let (s, _) = call_raw(
        a,
        "POST",
        "/api/v1/gateways",
        Some("application/json"),
        b"not json",
        None,
    );
    assert_eq!(s, 400);
    let (s, _) = call_raw(
        a,
        "POST",
        "/api/v1/gateways",
        Some("application/json"),
        b"",
        None,
    );
    assert_eq!(s, 400);
    let (s, _) = call_raw(
        a,
        "POST",
        "/api/v1/gateways",
        Some("application/json"),
        b"[1,2]",
        None,
    );
    assert_eq!(s, 400);
    let (s, _) = call_raw(
        a,
        "POST",
        "/api/v1/gateways",
        Some("application/json"),
        br#"{"name":"a"} {"name":"b"}"#,
        None,
    );
    assert_eq!(s, 400, "trailing data");
    let big = format!(
        r#"{{"name":"big","subdomain":"{}"}}"#,
        "a".repeat((1 << 20) + 10)
    );
    let (s, _) = call_raw(
        a,
        "POST",
        "/api/v1/gateways",
        Some("application/json"),
        big.as_bytes(),
        None,
    );
    assert_eq!(s, 413);
    let (s, _) = call_raw(
        a,
        "PUT",
        "/api/v1/config",
        Some("application/json"),
        big.as_bytes(),
        None,
    );
    assert_eq!(s, 413);
    assert_eq!(expect(a, "GET", "/api/v1/gateways", None, 200)["count"], 2);
    gw.stop();
}

#[test]
fn config_export_and_atomic_replace() {
    let (_mock, mock) = spawn_mock(&[]);
    let dir = temp_dir("api-config");
    let gw = start(&dir, &[]);
    let a = gw.admin;
    let doc = json!({"gateways": [{
        "name": "demo", "subdomain": "demo",
        "upstreams": [{"name": "llm", "targets": [{"host": "127.0.0.1", "port": mock.port()}]}],
        "services": [{"name": "chat", "type": "upstream", "upstream": "llm"}],
        "rules": [{"name": "openai", "path": "/v1", "methods": ["GET", "POST"], "service": "chat"}],
        "keys": [{"name": "app", "key": "rg-demo-key"}]
    }]});
    let answer = expect(a, "PUT", "/api/v1/config", Some(&doc), 200);
    assert!(!answer.to_string().contains("rg-demo-key"));
    assert_eq!(common::admin::proxied(gw.proxy, "rg-demo-key"), 200);
    let export = expect(a, "GET", "/api/v1/config", None, 200);
    assert_eq!(answer, export);
    let g = &export["gateways"][0];
    assert!(g["id"].is_string() && g["keys"][0]["key_hash"].is_string());
    assert_eq!(g["services"][0]["upstream_id"], g["upstreams"][0]["id"]);
    assert_eq!(g["rules"][0]["service_id"], g["services"][0]["id"]);
    // The export is accepted back unchanged.
    assert_eq!(
        expect(a, "PUT", "/api/v1/config", Some(&export), 200),
        export
    );

    // An invalid document changes nothing and names the field in the body.
    let mut bad = doc.clone();
    bad["gateways"][0]["rules"][0]["service"] = json!("missing");
    refused(
        a,
        "PUT",
        "/api/v1/config",
        Some(&bad),
        400,
        "gateways[0].rules[0].service",
    );
    let mut bad = doc.clone();
    bad["gateways"][0]["upstreams"][0]["targets"][0]["weight"] = json!(0);
    let (s, v) = call(a, "PUT", "/api/v1/config", Some(&bad), None);
    assert_eq!(
        (s, error_field(&v)),
        (400, "gateways[0].upstreams[0].targets[0].weight")
    );
    let mut bad = doc.clone();
    bad["gateways"][0]["extra"] = json!(1);
    refused(
        a,
        "PUT",
        "/api/v1/config",
        Some(&bad),
        400,
        "gateways[0].extra",
    );
    let mut bad = doc.clone();
    bad["gateways"][0]["rules"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "dup", "path": "/v1", "methods": ["POST"], "service": "chat"}));
    refused(
        a,
        "PUT",
        "/api/v1/config",
        Some(&bad),
        409,
        "gateways[0].rules[1].path",
    );
    assert_eq!(expect(a, "GET", "/api/v1/config", None, 200), export);

    // Replacing with nothing removes everything at once.
    expect(
        a,
        "PUT",
        "/api/v1/config",
        Some(&json!({"gateways": []})),
        200,
    );
    assert_eq!(common::admin::proxied(gw.proxy, "rg-demo-key"), 401);
    gw.stop();
}

#[test]
fn admin_token_guards_api_v1_but_not_health() {
    let dir = temp_dir("api-token");
    let gw = start(&dir, &["--admin-token", "s3cret-token"]);
    let a = gw.admin;
    assert_eq!(call(a, "GET", "/api/v1/gateways", None, None).0, 401);
    assert_eq!(
        call(a, "GET", "/api/v1/gateways", None, Some("wrong")).0,
        401
    );
    assert_eq!(
        call(a, "GET", "/api/v1/gateways", None, Some("s3cret-toke")).0,
        401
    );
    assert_eq!(
        call(a, "GET", "/api/v1/gateways", None, Some("s3cret-token-")).0,
        401
    );
    assert_eq!(
        call(
            a,
            "POST",
            "/api/v1/gateways",
            Some(&json!({"name": "x"})),
            None
        )
        .0,
        401
    );
    assert_eq!(
        call(a, "GET", "/api/v1/gateways", None, Some("s3cret-token")).0,
        200
    );
    assert_eq!(
        call(
            a,
            "POST",
            "/api/v1/gateways",
            Some(&json!({"name": "x"})),
            Some("s3cret-token")
        )
        .0,
        201
    );
    assert_eq!(
        call(a, "GET", "/health", None, None),
        (200, json!({"status": "ok"}))
    );
    gw.stop();

    // Without --admin-token the API is open (on loopback by default).
    let gw = start(&dir, &[]);
    assert_eq!(call(gw.admin, "GET", "/api/v1/gateways", None, None).0, 200);
    assert_eq!(
        call(gw.admin, "GET", "/api/v1/gateways", None, Some("anything")).0,
        200
    );
    gw.stop();
}
