//! The balancer's per-attempt work (choose + start + record) with health
//! state on and off, and the health lookup itself: a `Vec` slot plus a key
//! compare against the keyed hash map it replaced.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::time::SystemTime;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use ringgate::config::compile::{compile, load};
use ringgate::config::Snapshot;
use ringgate::upstream::balance::KeyHasher;
use ringgate::upstream::Balancer;
use serde_json::json;

fn snapshot(algorithm: &str, targets: usize, health: bool) -> Snapshot {
    let targets: Vec<_> = (0..targets)
        .map(|i| json!({"host": "127.0.0.1", "port": 9000 + i, "weight": 1 + i % 3}))
        .collect();
    let mut up = json!({"name": "llm", "algorithm": algorithm, "targets": targets});
    if health {
        up["health_checks"] = json!({"passive": true, "threshold": 3, "interval": 10,
                                     "circuit_breaker": {}});
    }
    let cfg = json!({"gateways": [{"name": "g", "upstreams": [up],
        "services": [{"name": "s", "type": "upstream", "upstream": "llm"}],
        "rules": [{"name": "r", "path": "/", "service": "s"}]}]});
    let cfg = load(cfg.to_string().as_bytes(), SystemTime::now()).expect("valid config");
    compile(&cfg, 1).expect("the benchmark configuration compiles")
}

fn attempt(c: &mut Criterion) {
    let mut g = c.benchmark_group("balancer_attempt");
    for (algorithm, n) in [("round-robin", 2usize), ("weighted-round-robin", 16)] {
        for health in [false, true] {
            let snap = snapshot(algorithm, n, health);
            let b = Balancer::new(1);
            b.adopt(&snap);
            let up = &snap.gateways[0].upstreams[0];
            let id = format!(
                "{algorithm}/{n}/{}",
                if health { "health" } else { "plain" }
            );
            g.bench_function(BenchmarkId::from_parameter(id), |bench| {
                bench.iter(|| {
                    let i = b.choose(up, &[]).expect("a target");
                    let t = &up.targets[i];
                    let guard = b.start(t);
                    b.record(t, Some(up), true);
                    drop(guard);
                    black_box(i)
                })
            });
        }
    }
    g.finish();
}

fn lookup(c: &mut Criterion) {
    #[derive(Default, Clone, Copy)]
    struct State {
        key: u64,
        down: bool,
    }
    let keys: Vec<u64> = (0..16u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        .collect();
    let slots: Vec<State> = keys.iter().map(|&key| State { key, down: false }).collect();
    let map: HashMap<u64, State, BuildHasherDefault<KeyHasher>> = keys
        .iter()
        .map(|&key| (key, State { key, down: false }))
        .collect();
    let mut g = c.benchmark_group("health_lookup_16_targets");
    g.bench_function("vec_slot_and_key", |bench| {
        bench.iter(|| {
            let mut up = 0;
            for (slot, key) in keys.iter().enumerate() {
                let s = &slots[black_box(slot)];
                up += usize::from(s.key == *key && !s.down);
            }
            black_box(up)
        })
    });
    g.bench_function("keyed_hash_map", |bench| {
        bench.iter(|| {
            let mut up = 0;
            for key in &keys {
                up += usize::from(map.get(black_box(key)).is_some_and(|s| !s.down));
            }
            black_box(up)
        })
    });
    g.finish();
}

criterion_group!(benches, attempt, lookup);
criterion_main!(benches);
