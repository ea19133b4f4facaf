//! Request heads and chunked bodies: no panic on any input, spans inside the
//! buffer, a complete head parses the same from its own prefix, and the
//! chunked decoder gives the same answer for any split of its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringgate::http::{parse_request, BodyKind, ChunkedDecoder, Limits};

fn decode(input: &[u8], split: usize) -> (Result<(usize, bool), u16>, Vec<u8>) {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut consumed = 0;
    for part in [&input[..split], &input[split..]] {
        match d.feed(part, &mut |b| out.extend_from_slice(b)) {
            Ok(p) => {
                consumed += p.consumed;
                if p.done {
                    return (Ok((consumed, true)), out);
                }
                assert_eq!(p.consumed, part.len(), "stopped early without being done");
            }
            Err(e) => return (Err(e.status), out),
        }
    }
    (Ok((consumed, false)), out)
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_head_bytes: 4096,
        max_headers: 32,
    };
    match parse_request(data, &limits) {
        Ok(Some(head)) => {
            assert!(head.head_len <= data.len());
            assert!(head.head_len <= limits.max_head_bytes);
            for h in head.headers() {
                assert!(h.name.end as usize <= head.head_len);
                assert!(h.value.end as usize <= head.head_len);
            }
            assert!(head.target.end as usize <= head.head_len);
            let again = parse_request(&data[..head.head_len], &limits)
                .expect("prefix errs")
                .expect("prefix incomplete");
            assert_eq!(again.head_len, head.head_len);
            assert_eq!(again.body, head.body);
            if head.body == BodyKind::Chunked {
                let body = &data[head.head_len..];
                let whole = decode(body, body.len());
                let split = decode(body, body.len() / 2);
                assert_eq!(whole, split);
            }
        }
        Ok(None) => assert!(data.len() < limits.max_head_bytes),
        Err(e) => assert!(e.status == 400 || e.status == 431),
    }
    // The decoder on raw input, split at every eighth position.
    let whole = decode(data, data.len());
    for split in (0..data.len()).step_by(8) {
        assert_eq!(decode(data, split), whole);
    }
});
