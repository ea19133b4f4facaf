//! The `cache` plugin over real sockets: hits and misses for JSON and
//! streams, canonical keys, `Cache-Control`, expiry, eviction, per-key
//! isolation, and the same hit rate on two shards as on one.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{header, post, roundtrip, spawn_gateway, spawn_mock, Gateway};
use serde_json::{json, Value};

const KEY: &str = "rg-cache-key";
const KEY2: &str = "rg-cache-key-two";

/// `/v1` (cache with `settings`) and `/k/v1` (per-key cache) → the mock.
fn gateway(m: SocketAddr, settings: Value, shards: &str) -> Gateway {
    let mut per_key = settings.clone();
    per_key["per_key"] = json!(true);
    let config = json!({"gateways": [{
        "name": "demo",
        "upstreams": [{"name": "llm", "targets": [{"host": m.ip().to_string(), "port": m.port()}]}],
        "services": [{"name": "svc", "type": "upstream", "upstream": "llm"}],
        "rules": [
            {"name": "shared", "path": "/v1", "service": "svc",
             "plugin_chain": [{"name": "cache", "settings": settings}]},
            {"name": "perkey", "path": "/k", "service": "svc", "strip_path": true,
             "plugin_chain": [{"name": "cache", "settings": per_key}]}],
        "keys": [{"name": "k", "key": KEY}, {"name": "k2", "key": KEY2}],
    }]});
    spawn_gateway(&config, &["--shards", shards])
}

struct Answer {
    status: u16,
    cache: Option<String>,
    age: Option<String>,
    content_type: Option<String>,
    body: String,
}

fn answer_with(addr: SocketAddr, path: &str, key: &str, extra: &str, body: &str) -> Answer {
    let common::Response {
        status,
        headers,
        body,
    } = roundtrip(addr, &post(path, key, extra, body));
    Answer {
        status,
        cache: header(&headers, "x-cache").map(str::to_string),
        age: header(&headers, "age").map(str::to_string),
        content_type: header(&headers, "content-type").map(str::to_string),
        body: String::from_utf8(body).unwrap(),
    }
}

fn answer(addr: SocketAddr, body: &str) -> Answer {
    answer_with(addr, "/v1/chat/completions", KEY, "", body)
}

fn chat(content: &str) -> String {
    json!({"model": "m", "messages": [{"role": "user", "content": content}]}).to_string()
}

#[test]
fn json_hits_misses_canonical_keys_and_cache_control() {
    let (_mock, m) = spawn_mock(&[]);
    let gw = gateway(m, json!({}), "1");
    let p = gw.proxy;
    let first = answer(p, &chat("hello"));
    assert_eq!((first.status, first.cache.as_deref()), (200, Some("MISS")));
    let hit = answer(p, &chat("hello"));
    assert_eq!((hit.status, hit.cache.as_deref()), (200, Some("HIT")));
    assert_eq!(hit.body, first.body, "the same answer, its id included");
    assert_eq!(hit.age.as_deref(), Some("0"));
    assert_eq!(hit.content_type.as_deref(), Some("application/json"));
    // Key order, whitespace and `user` do not matter.
    let same =
        r#"{ "user": "ann", "messages": [ {"content": "hello", "role": "user"} ], "model": "m" }"#;
    assert_eq!(answer(p, same).body, first.body);
    // `temperature: 0` is deterministic too (and a different request).
    let cold =
        r#"{"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "hello"}]}"#;
    assert_eq!(answer(p, cold).cache.as_deref(), Some("MISS"));
    assert_eq!(answer(p, cold).cache.as_deref(), Some("HIT"));
    // A different prompt or model does.
    let other = answer(p, &chat("goodbye"));
    assert_eq!(other.cache.as_deref(), Some("MISS"));
    assert_ne!(other.body, first.body);
    // Non-deterministic requests are not cached at all.
    let warm =
        r#"{"model": "m", "temperature": 0.8, "messages": [{"role": "user", "content": "hello"}]}"#;
    let a = answer(p, warm);
    let b = answer(p, warm);
    assert_eq!((a.cache, b.cache), (None, None));
    assert_ne!(a.body, b.body);

    // no-cache: a fresh answer, which is stored and served afterwards.
    let fresh = answer_with(
        p,
        "/v1/chat/completions",
        KEY,
        "Cache-Control: no-cache\r\n",
        &chat("hello"),
    );
    assert_eq!(fresh.cache.as_deref(), Some("MISS"));
    assert_ne!(fresh.body, first.body);
    assert_eq!(answer(p, &chat("hello")).body, fresh.body);
    // no-store: answered (from the cache when it holds the request), never stored.
    let ns = answer_with(
        p,
        "/v1/chat/completions",
        KEY,
        "Cache-Control: no-store\r\n",
        &chat("new"),
    );
    assert_eq!(ns.cache.as_deref(), Some("MISS"));
    assert_eq!(answer(p, &chat("new")).cache.as_deref(), Some("MISS"));
    assert_eq!(answer(p, &chat("new")).cache.as_deref(), Some("HIT"));

    assert_eq!(common::metric(gw.admin, "ringgate_cache_hits_total"), 5);
    // The mock reports usage (1 + 3 tokens here): each hit saved them.
    assert_eq!(
        common::metric(gw.admin, "ringgate_cache_tokens_saved_total"),
        5 * 4
    );
    assert_eq!(common::metric(gw.admin, "ringgate_cache_entries"), 4);
}

#[test]
fn streams_are_replayed_with_their_usage_chunk() {
    let (_mock, m) = spawn_mock(&["--stream-interval-ms", "1"]);
    let gw = gateway(m, json!({}), "1");
    let body = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let first = answer(gw.proxy, &body);
    assert_eq!((first.status, first.cache.as_deref()), (200, Some("MISS")));
    assert!(first.body.contains("\"usage\"") && first.body.trim_end().ends_with("data: [DONE]"));
    let hit = answer(gw.proxy, &body);
    assert_eq!(hit.cache.as_deref(), Some("HIT"));
    assert_eq!(hit.content_type.as_deref(), Some("text/event-stream"));
    assert_eq!(hit.body, first.body);
    // The same request without `stream` gets the recorded stream as JSON.
    let plain = answer(gw.proxy, &chat("hi"));
    assert_eq!(plain.cache.as_deref(), Some("HIT"));
    assert_eq!(plain.content_type.as_deref(), Some("application/json"));
    let v: Value = serde_json::from_str(&plain.body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 tok4 "
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0, "{v}");
    // A stream asked for without the usage chunk is another request; its
    // plain twin was served from the cache, so no JSON was recorded: a miss.
    let bare =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        answer(gw.proxy, &bare.to_string()).cache.as_deref(),
        Some("MISS")
    );

    // A JSON answer recorded first serves a streamed request as a stream.
    let json_first = answer(gw.proxy, &chat("json first"));
    assert_eq!(json_first.cache.as_deref(), Some("MISS"));
    let want: Value = serde_json::from_str(&json_first.body).unwrap();
    let streamed = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": "json first"}]});
    let s = answer(gw.proxy, &streamed.to_string());
    assert_eq!(s.cache.as_deref(), Some("HIT"));
    assert_eq!(s.content_type.as_deref(), Some("text/event-stream"));
    let events: Vec<Value> = s
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        events[0]["choices"][0]["delta"]["content"],
        want["choices"][0]["message"]["content"]
    );
    assert_eq!(events[1]["choices"][0]["finish_reason"], "stop");
    assert_eq!(events[2]["usage"], want["usage"]);
    assert!(s.body.ends_with("data: [DONE]\n\n"));
}

#[test]
fn entries_expire_and_are_evicted_least_recently_used_first() {
    let (_mock, m) = spawn_mock(&[]);
    let gw = gateway(m, json!({"ttl": "1s", "max_entries": 2}), "1");
    let p = gw.proxy;
    answer(p, &chat("a"));
    answer(p, &chat("b"));
    assert_eq!(answer(p, &chat("a")).cache.as_deref(), Some("HIT"));
    answer(p, &chat("c")); // evicts b, the least recently used
    assert_eq!(answer(p, &chat("b")).cache.as_deref(), Some("MISS"));
    assert_eq!(
        common::metric(gw.admin, "ringgate_cache_evictions_total"),
        2
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        answer(p, &chat("b")).cache.as_deref(),
        Some("MISS"),
        "expired"
    );
}

#[test]
fn a_per_key_cache_never_answers_another_key() {
    let (_mock, m) = spawn_mock(&[]);
    let gw = gateway(m, json!({}), "1");
    let p = gw.proxy;
    let path = "/k/v1/chat/completions";
    let mine = answer_with(p, path, KEY, "", &chat("secret"));
    assert_eq!(
        answer_with(p, path, KEY, "", &chat("secret")).body,
        mine.body
    );
    let theirs = answer_with(p, path, KEY2, "", &chat("secret"));
    assert_eq!(theirs.cache.as_deref(), Some("MISS"));
    assert_ne!(theirs.body, mine.body);
    // The shared rule keeps its own entries.
    assert_eq!(answer(p, &chat("secret")).cache.as_deref(), Some("MISS"));
}

#[test]
fn two_shards_hit_as_often_as_one() {
    let (_mock, m) = spawn_mock(&[]);
    for shards in ["1", "2"] {
        let gw = gateway(m, json!({}), shards);
        // 10 prompts, 5 times each, every request on a new connection (the
        // kernel spreads them over the shards).
        for round in 0..5 {
            for i in 0..10 {
                let a = answer(gw.proxy, &chat(&format!("prompt {i}")));
                assert_eq!(a.status, 200);
                let want = if round == 0 { "MISS" } else { "HIT" };
                assert_eq!(a.cache.as_deref(), Some(want), "shards {shards}");
            }
        }
        assert_eq!(common::metric(gw.admin, "ringgate_cache_hits_total"), 40);
        assert_eq!(common::metric(gw.admin, "ringgate_cache_misses_total"), 10);
    }
}

#[test]
fn translated_answers_are_cached_as_the_client_got_them() {
    let (_mock, m) = spawn_mock(&["--stream-interval-ms", "1"]);
    let mut anth = common::target(m);
    anth["provider"] = json!("anthropic");
    anth["credentials"] = json!({"api_key": "sk-ant"});
    let config = json!({"gateways": [{
        "name": "demo",
        "upstreams": [{"name": "claude", "targets": [anth]}],
        "services": [{"name": "svc", "type": "upstream", "upstream": "claude"}],
        "rules": [{"name": "c", "path": "/v1", "service": "svc",
                   "plugin_chain": [{"name": "cache", "settings": {}}]}],
        "keys": [{"name": "k", "key": KEY}],
    }]});
    let gw = spawn_gateway(&config, &["--shards", "1"]);
    let plain = chat("translate me");
    let first = answer(gw.proxy, &plain);
    assert_eq!((first.status, first.cache.as_deref()), (200, Some("MISS")));
    let v: Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(v["object"], "chat.completion", "OpenAI format: {v}");
    let hit = answer(gw.proxy, &plain);
    assert_eq!((hit.cache.as_deref(), hit.body), (Some("HIT"), first.body));

    let stream = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                        "messages": [{"role": "user", "content": "stream me"}]})
    .to_string();
    let first = answer(gw.proxy, &stream);
    assert_eq!(first.cache.as_deref(), Some("MISS"));
    assert!(
        first.body.contains("chat.completion.chunk"),
        "{}",
        first.body
    );
    let hit = answer(gw.proxy, &stream);
    assert_eq!(hit.cache.as_deref(), Some("HIT"));
    assert_eq!(hit.body, first.body);
}
