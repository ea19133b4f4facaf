//! Request-head parsing: a tiny request, a typical OpenAI SDK request, and
//! one with 64 headers; plus a chunked body through the decoder.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringgate::http::{parse_request, ChunkedDecoder, Limits};

const TINY: &[u8] = b"GET /__/ping HTTP/1.1\r\nHost: a\r\n\r\n";

const OPENAI_SDK: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\n\
Host: gateway.example.com\r\n\
Accept-Encoding: gzip, deflate\r\n\
Connection: keep-alive\r\n\
Accept: application/json\r\n\
Content-Type: application/json\r\n\
User-Agent: OpenAI/Python 1.54.3\r\n\
X-Stainless-Lang: python\r\n\
X-Stainless-Package-Version: 1.54.3\r\n\
X-Stainless-OS: Linux\r\n\
X-Stainless-Arch: x64\r\n\
X-Stainless-Runtime: CPython\r\n\
X-Stainless-Runtime-Version: 3.11.7\r\n\
Authorization: Bearer rg-0123456789abcdef0123456789abcdef0123456789a\r\n\
X-Stainless-Async: false\r\n\
x-stainless-retry-count: 0\r\n\
Content-Length: 98\r\n\r\n";

fn many_headers() -> Vec<u8> {
    let mut v = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n".to_vec();
    for i in 0..61 {
        v.extend_from_slice(format!("X-Custom-Header-{i}: some value number {i}\r\n").as_bytes());
    }
    v.extend_from_slice(b"\r\n");
    v
}

fn heads(c: &mut Criterion) {
    let limits = Limits::default();
    let many = many_headers();
    let mut g = c.benchmark_group("parse_request");
    for (name, input) in [
        ("tiny", TINY),
        ("openai_sdk", OPENAI_SDK),
        ("64_headers", &many[..]),
    ] {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                parse_request(black_box(input), &limits)
                    .unwrap()
                    .unwrap()
                    .head_len
            })
        });
    }
    g.finish();
}

fn chunked(c: &mut Criterion) {
    let mut body = Vec::new();
    for _ in 0..64 {
        ringgate::http::encode_chunk(&[b'x'; 256], &mut body);
    }
    body.extend_from_slice(ringgate::http::LAST_CHUNK);
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("decode_64x256", |b| {
        b.iter(|| {
            let mut d = ChunkedDecoder::new();
            let mut n = 0usize;
            let p = d
                .feed(black_box(&body), &mut |data| n += data.len())
                .unwrap();
            assert!(p.done);
            n
        })
    });
    g.finish();
}

criterion_group!(benches, heads, chunked);
criterion_main!(benches);
