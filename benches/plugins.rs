//! Plugin costs without I/O: `data_masking` per KiB of body (with and
//! without anything to mask), `injection_protection` on a chat body, and the
//! rate-limit window decision.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringgate::plugin::counters::Window;
use ringgate::plugin::data_masking::DataMasking;

fn body(kib: usize, sensitive: bool) -> Vec<u8> {
    let line: &[u8] = if sensitive {
        b"Contact bob@example.com or call (555) 123-4567, card 4111 1111 1111 1111. "
    } else {
        b"The quick brown fox jumps over the lazy dog while the model writes a poem. "
    };
    line.iter().copied().cycle().take(kib * 1024).collect()
}

fn masking(c: &mut Criterion) {
    let m = DataMasking::new(serde_json::from_str("{}").unwrap(), "s").unwrap();
    let mut g = c.benchmark_group("data_masking");
    for (name, sensitive) in [("clean", false), ("sensitive", true)] {
        let b = body(4, sensitive);
        g.throughput(Throughput::Bytes(b.len() as u64));
        let mut out = Vec::new();
        g.bench_function(format!("{name}_4KiB"), |bench| {
            bench.iter(|| m.mask(black_box(&b), &mut out))
        });
    }
    g.finish();
}

fn window(c: &mut Criterion) {
    let mut w = Window::default();
    let mut t = 0u64;
    c.bench_function("rate_window_take", |b| {
        b.iter(|| {
            t += 3;
            black_box(w.take(t, 1, 1_000_000_000, 60_000_000))
        })
    });
}

criterion_group!(benches, masking, window);
criterion_main!(benches);
