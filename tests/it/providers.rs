//! Provider features end to end against the mock: model routing,
//! default_model, OpenAI ⇄ Anthropic translation (JSON and SSE, both ways).

use crate::common;

use std::io::Write;

use common::{
    connect_buffered, header, json_body, post_json, read_response, spawn_gateway, spawn_mock,
    target,
};
use serde_json::{json, Value};

const KEY: &str = "rg-providers-key";

fn gateway(upstreams: Value, service_upstream: &[(&str, &str)]) -> common::Gateway {
    let services: Vec<Value> = service_upstream
        .iter()
        .map(|(s, u)| json!({"name": s, "type": "upstream", "upstream": u}))
        .collect();
    let rules: Vec<Value> = service_upstream
        .iter()
        .map(|(s, _)| json!({"name": s, "path": format!("/{s}"), "service": s, "strip_path": true}))
        .collect();
    spawn_gateway(
        &json!({"gateways": [{"name": "p", "upstreams": upstreams, "services": services,
                               "rules": rules, "keys": [{"name": "k", "key": KEY}]}]}),
        &[],
    )
}

#[test]
fn models_route_to_the_targets_that_list_them() {
    let (_a, a) = spawn_mock(&["--name", "a"]);
    let (_b, b) = spawn_mock(&["--name", "b"]);
    let mut ta = target(a);
    ta["models"] = json!(["gpt-a"]);
    let mut tb = target(b);
    tb["models"] = json!(["gpt-b", "gpt-b-mini"]);
    tb["default_model"] = json!("gpt-b-mini");
    let gw = gateway(
        json!([{"name": "llm", "targets": [ta, tb]}]),
        &[("llm", "llm")],
    );
    for _ in 0..4 {
        let common::Response {
            status,
            headers,
            body,
        } = post_json(
            gw.proxy,
            "/llm/v1/chat/completions",
            KEY,
            "Accept-Encoding: gzip\r\n",
            &json!({"model": "gpt-a", "messages": []}),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(header(&headers, "x-mock-name"), Some("a"));
        let common::Response {
            status, headers, ..
        } = post_json(
            gw.proxy,
            "/llm/v1/chat/completions",
            KEY,
            "Accept-Encoding: gzip\r\n",
            &json!({"model": "gpt-b", "messages": []}),
        );
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "x-mock-name"), Some("b"));
    }
    let common::Response { status, body, .. } = post_json(
        gw.proxy,
        "/llm/v1/chat/completions",
        KEY,
        "Accept-Encoding: gzip\r\n",
        &json!({"model": "gpt-zzz", "messages": []}),
    );
    assert_eq!(status, 400);
    assert!(json_body(&body)["error"]
        .as_str()
        .unwrap()
        .contains("\"gpt-zzz\""));
    // No model: any target; the one with default_model fills it in.
    let mut filled = 0;
    for _ in 0..4 {
        let common::Response {
            status,
            headers,
            body,
        } = post_json(
            gw.proxy,
            "/llm/v1/chat/completions",
            KEY,
            "Accept-Encoding: gzip\r\n",
            &json!({"messages": []}),
        );
        assert_eq!(status, 200);
        if header(&headers, "x-mock-name") == Some("b") {
            assert_eq!(json_body(&body)["model"], "gpt-b-mini");
            filled += 1;
        } else {
            assert_eq!(json_body(&body)["model"], "mock-model");
        }
    }
    assert!(filled > 0);
    let common::Response { status, .. } = post_json(
        gw.proxy,
        "/llm/v1/chat/completions",
        KEY,
        "Accept-Encoding: gzip\r\n",
        &json!("not an object"),
    );
    assert_eq!(status, 400);
}

fn translating_gateway() -> (common::ChildGuard, common::Gateway) {
    let (mock, m) = spawn_mock(&["--stream-interval-ms", "1"]);
    let mut anth = target(m);
    anth["provider"] = json!("anthropic");
    anth["credentials"] = json!({"api_key": "sk-ant"});
    let mut oai = target(m);
    oai["provider"] = json!("openai");
    let gw = gateway(
        json!([{"name": "claude", "targets": [anth]}, {"name": "gpt", "targets": [oai]}]),
        &[("claude", "claude"), ("gpt", "gpt")],
    );
    (mock, gw)
}

#[test]
fn openai_client_to_anthropic_target() {
    let (_mock, gw) = translating_gateway();
    let req = json!({"model": "claude-x", "messages": [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}]});
    let common::Response {
        status,
        headers,
        body,
    } = post_json(
        gw.proxy,
        "/claude/v1/chat/completions",
        KEY,
        "Accept-Encoding: gzip\r\n",
        &req,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let v = json_body(&body);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "claude-x");
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "Hello from mock"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12})
    );

    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    sreq["stream_options"] = json!({"include_usage": true});
    let common::Response {
        status,
        headers,
        body,
    } = post_json(
        gw.proxy,
        "/claude/v1/chat/completions",
        KEY,
        "Accept-Encoding: gzip\r\n",
        &sreq,
    );
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    let usage = common::assert_mock_openai_stream(&body);
    assert_eq!(usage["prompt_tokens"], 9);
    assert_eq!(usage["completion_tokens"], 5);
}

#[test]
fn anthropic_client_to_openai_target() {
    let (_mock, gw) = translating_gateway();
    let req = json!({"model": "gpt-x", "max_tokens": 50, "system": "s", "messages": [{"role": "user", "content": "hi"}]});
    let common::Response { status, body, .. } = post_json(
        gw.proxy,
        "/gpt/v1/messages",
        KEY,
        "Accept-Encoding: gzip\r\n",
        &req,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v = json_body(&body);
    assert_eq!(v["type"], "message");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Hello from mock"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], 3);

    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let common::Response { status, body, .. } = post_json(
        gw.proxy,
        "/gpt/v1/messages",
        KEY,
        "Accept-Encoding: gzip\r\n",
        &sreq,
    );
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let deltas: String = common::sse_data(&body)
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(deltas, "tok0 tok1 tok2 tok3 tok4 ");
}

#[test]
fn upstream_errors_are_mapped_to_the_clients_dialect() {
    let (_mock, gw) = translating_gateway();
    // The mock's Anthropic mode refuses a request without max_tokens; the
    // gateway always sets it, so force an error with x-mock-status instead.
    let body = json!({"model": "c", "messages": []}).to_string();
    let (mut s, mut r) = connect_buffered(gw.proxy);
    write!(
        s,
        "POST /claude/v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n\
         x-mock-status: 429\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let common::Response {
        status, body: resp, ..
    } = read_response(&mut r).unwrap();
    assert_eq!(status, 429);
    let v = json_body(&resp);
    assert_eq!(v["error"]["message"], "mock status 429");
    assert!(v["error"].get("param").is_some(), "OpenAI error shape: {v}");
}

/// The dialect is the client's: a rule that strips the client's whole path
/// (`/claude/v1/chat/completions` → `/`) still translates for an Anthropic
/// target, and the request goes to the provider's endpoint.
#[test]
fn a_stripping_rule_keeps_the_clients_dialect_and_the_providers_endpoint() {
    let (_mock, m) = spawn_mock(&["--stream-interval-ms", "1"]);
    let mut anth = target(m);
    anth["provider"] = json!("anthropic");
    anth["credentials"] = json!({"api_key": "sk-ant"});
    let mut oai = target(m);
    oai["provider"] = json!("openai");
    let gw = spawn_gateway(
        &json!({"gateways": [{"name": "p",
            "upstreams": [{"name": "claude", "targets": [anth]}, {"name": "gpt", "targets": [oai]}],
            "services": [{"name": "claude", "type": "upstream", "upstream": "claude"},
                         {"name": "gpt", "type": "upstream", "upstream": "gpt"}],
            "rules": [
                {"path": "/claude/v1/chat/completions", "service": "claude", "strip_path": true},
                {"path": "/chat", "service": "gpt", "strip_path": true}
            ],
            "keys": [{"name": "k", "key": KEY}]}]}),
        &[],
    );
    let req = json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]});
    let common::Response { status, body, .. } = post_json(
        gw.proxy,
        "/claude/v1/chat/completions",
        KEY,
        "Accept-Encoding: gzip\r\n",
        &req,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v = json_body(&body);
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"], "Hello from mock",
        "{v}"
    );
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let common::Response {
        status,
        headers,
        body,
    } = post_json(
        gw.proxy,
        "/claude/v1/chat/completions",
        KEY,
        "Accept-Encoding: gzip\r\n",
        &sreq,
    );
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    let ev = common::sse_data(&body);
    assert_eq!(ev.last(), Some(&json!("[DONE]")));
    assert!(ev
        .iter()
        .all(|e| e == "[DONE]" || e["object"] == "chat.completion.chunk"));
    // A path that names no dialect (`/chat` stripped to `/`): a chat body to
    // an OpenAI target goes to its chat endpoint.
    let common::Response { status, body, .. } = post_json(
        gw.proxy,
        "/chat",
        KEY,
        "Accept-Encoding: gzip\r\n",
        &json!({"model": "gpt-x", "messages": []}),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_body(&body)["object"], "chat.completion");
    // A body that is no JSON (an upload) on such a route is no chat call:
    // forwarded untouched to the path the rule leaves.
    let upload = b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nRIFF\r\n--b--\r\n";
    let (mut s, mut r) = connect_buffered(gw.proxy);
    write!(
        s,
        "POST /chat/echo/upload HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n",
        upload.len()
    )
    .unwrap();
    s.write_all(upload).unwrap();
    let common::Response { status, body, .. } = read_response(&mut r).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_body(&body)["path"], "/echo/upload");
}
