//! The per-request cost of observability, without the noise of an end-to-end run: counting a
//! request (route, target and token maps, two histograms), reading `usage` from the mock's
//! answer, the sampling draw, and formatting one access-log line.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringgate::access_log::{Line, ShardLog};
use ringgate::metrics::{usage, ShardMetrics};

const BODY: &[u8] = br#"{"id":"chatcmpl-mock-1","object":"chat.completion","created":1700000000,"model":"gpt-3.5-turbo","choices":[{"index":0,"message":{"role":"assistant","content":"This is a mock response from ringgate."},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":8,"total_tokens":9}}"#;

fn per_request(c: &mut Criterion) {
    let m = ShardMetrics::default();
    c.bench_function("metrics_count_request", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let status = if i.is_multiple_of(10) { 404 } else { 200 };
            m.count(
                black_box(0x1234),
                black_box(0x5678),
                status,
                Duration::from_micros(i % 5000),
            );
            m.count_upstream(black_box(0x9abc), Some(Duration::from_micros(i % 4000)));
        })
    });
    c.bench_function("usage_scan_and_count", |b| {
        b.iter(|| {
            let u = usage::scan(black_box(BODY)).unwrap();
            m.count_tokens(0x1234, u.model, u.prompt, u.completion);
        })
    });
    let (tx, _rx) = std::sync::mpsc::sync_channel(1);
    let log = ShardLog::new(Some(tx), 0.01, 1);
    c.bench_function("access_log_sample_draw", |b| {
        b.iter(|| black_box(log.sample()))
    });
    let mut out = Vec::with_capacity(64 << 10);
    c.bench_function("access_log_format_line", |b| {
        b.iter(|| {
            out.clear();
            Line {
                request_id: b"30afde18abd16db50000000000000001",
                gateway: None,
                rule: None,
                key: None,
                method: b"POST",
                path: b"/v1/chat/completions",
                status: 200,
                bytes_in: 261,
                bytes_out: 400,
                target: Some(b"127.0.0.1:9000"),
                upstream_latency: Some(Duration::from_micros(930)),
                total: Duration::from_micros(1058),
                tokens: Some((1, 8)),
                cost: Some(25),
                served: None,
            }
            .format(&mut out);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, per_request);
criterion_main!(benches);
