//! Rule matching with 10 and 10,000 rules, and key lookup (sha256 of the
//! presented key, then a map lookup) among 10,000 keys.

use std::collections::HashMap;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use ringgate::route::{RouteSpec, Router};
use sha2::{Digest, Sha256};

fn router(n: usize) -> Router {
    let mut specs = Vec::with_capacity(n);
    for i in 0..n {
        let path = match i % 4 {
            0 => format!("/tenant{i}/v1"),
            1 => format!("/tenant{i}/v1/chat/completions"),
            2 => format!("/tenant{i}/{{model}}/invoke"),
            _ => format!("/svc/{i}/api"),
        };
        specs.push(Some(RouteSpec {
            path,
            methods: vec!["GET".into(), "POST".into()],
            headers: vec![],
        }));
    }
    specs.push(Some(RouteSpec {
        path: "/v1".into(),
        methods: vec![],
        headers: vec![],
    }));
    Router::new(specs)
}

fn matching(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_find");
    for n in [10usize, 10_000] {
        let r = router(n);
        let hit = format!("/tenant{}/v1/chat/completions/extra", (n / 4) * 4 + 1 - 4);
        let none = |_: &str| -> Option<&[u8]> { None };
        g.bench_with_input(BenchmarkId::new("deep_hit", n), &hit, |b, path| {
            b.iter(|| {
                r.find(b"POST", black_box(path.as_bytes()), &none)
                    .map(|m| m.rule)
            })
        });
        g.bench_with_input(BenchmarkId::new("openai_path", n), &n, |b, _| {
            b.iter(|| {
                r.find(b"POST", black_box(b"/v1/chat/completions"), &none)
                    .map(|m| m.rule)
            })
        });
        g.bench_with_input(BenchmarkId::new("miss", n), &n, |b, _| {
            b.iter(|| {
                r.find(b"POST", black_box(b"/nothing/here"), &none)
                    .map(|m| m.rule)
            })
        });
    }
    g.finish();
}

fn keys(c: &mut Criterion) {
    let map: HashMap<[u8; 32], usize> = (0..10_000)
        .map(|i| (Sha256::digest(format!("rg-key-{i}")).into(), i))
        .collect();
    let presented = "rg-key-4242";
    c.bench_function("key_lookup_10000", |b| {
        b.iter(|| {
            let h: [u8; 32] = Sha256::digest(black_box(presented)).into();
            map.get(&h).copied()
        })
    });
}

criterion_group!(benches, matching, keys);
criterion_main!(benches);
