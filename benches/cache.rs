//! The response cache's work on a request it does not hold, without I/O:
//! the head stage (`Cache-Control`, the route into the digest) and the body
//! stage (the canonical JSON, one SHA-256, one probe of the node's store),
//! exactly as the proxy calls them for a chat request of an SDK's shape.
//!
//! - `miss_lookup_empty`: `Cache-Control: no-store` and an empty store: the
//!   lookup alone (the `cache-lookup` scenario of `scripts/benchmark.sh`);
//! - `miss_lookup_100k`: the same against a store holding 100,000 answers,
//!   so the probe reads a table much larger than the CPU's caches, as a miss
//!   on a warm node does;
//! - `miss_arm_100k`: a miss that may be stored (no `Cache-Control`): the
//!   lookup and arming the recording of its answer.
//!
//! Divide by the proxy's CPU per request (`scripts/compare-nginx.sh
//! --per-core`) for the lookup's share of a core.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringgate::http::{parse_request, Limits, RequestHead};
use ringgate::plugin::cache::{Cache, Step};
use ringgate::plugin::{Flow, RequestView};

const SCOPE: u64 = 0x5eed;

/// A chat request as the OpenAI SDKs write it (keys in their order,
/// `json.dumps` spacing), differing from the others by `n`.
fn request(n: u64, cache_control: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"messages": [{{"role": "system", "content": "You are a helpful assistant."}}, {{"role": "user", "content": "Summarise ticket {n} in one sentence."}}], "model": "gpt-4o-mini", "temperature": 0, "user": "team-a"}}"#
    );
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer k\r\n\
         Content-Type: application/json\r\n{cache_control}Content-Length: {}\r\n\r\n",
        body.len()
    );
    [head.as_bytes(), body.as_bytes()].concat()
}

/// A request and its parsed head (the proxy parses it before any plugin).
struct Request {
    buf: Vec<u8>,
    head: RequestHead,
}

impl Request {
    fn new(n: u64, cache_control: &str) -> Request {
        let buf = request(n, cache_control);
        let limits = Limits {
            max_head_bytes: 32 << 10,
            max_headers: 100,
        };
        let head = parse_request(&buf, &limits)
            .ok()
            .flatten()
            .expect("a whole request head");
        Request { buf, head }
    }
}

/// The two stages for one request; `answer` recorded as its answer when the
/// miss armed a recording. True on a hit.
fn one(cache: &Cache, r: &Request, answer: Option<&[u8]>) -> bool {
    let (buf, at) = (&r.buf[..], r.head.head_len);
    let view = RequestView {
        head: &r.head,
        buf,
        peer: None,
        key_id: Some("k"),
    };
    let mut flow = Flow::default();
    let mut headers = Vec::new();
    cache.on_request(SCOPE, &view, &mut flow);
    let hit = match cache.on_body(None, &buf[at..], &mut flow, &mut headers) {
        Step::Done(stop) => stop.is_some(),
        Step::Remote(..) => unreachable!("no shared tier here"),
    };
    if let (Some(answer), Some(mut p)) = (answer, flow.cache.take()) {
        p.record(answer);
        p.finish(200);
    }
    hit
}

/// A cache with room for a million answers.
fn cache() -> Cache {
    let settings = serde_json::from_value(serde_json::json!({ "max_entries": 1_000_000 }))
        .expect("cache settings");
    Cache::new(settings, "bench", SCOPE).expect("a cache")
}

fn misses(c: &mut Criterion) {
    const ANSWER: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    let mut g = c.benchmark_group("cache");

    let lookup = Request::new(0, "Cache-Control: no-store\r\n");
    let empty = cache();
    g.bench_function("miss_lookup_empty", |b| {
        b.iter(|| assert!(!one(&empty, black_box(&lookup), None)))
    });
    drop(empty);

    let warm = cache();
    for n in 1..=100_000 {
        one(&warm, &Request::new(n, ""), Some(ANSWER));
    }
    assert!(
        one(&warm, &Request::new(1, ""), None),
        "a stored request hits"
    );
    g.bench_function("miss_lookup_100k", |b| {
        b.iter(|| assert!(!one(&warm, black_box(&lookup), None)))
    });
    let arm = Request::new(0, "");
    g.bench_function("miss_arm_100k", |b| {
        b.iter(|| assert!(!one(&warm, black_box(&arm), None)))
    });
    g.finish();
}

criterion_group!(benches, misses);
criterion_main!(benches);
