//! Response heads from an upstream: no panic, errors are 502, spans inside
//! the head, and a complete head parses the same from its own prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringgate::http::{parse_response, BodyKind, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_head_bytes: 4096,
        max_headers: 32,
    };
    let (is_head, data) = match data.split_first() {
        Some((b, rest)) => (b & 1 == 1, rest),
        None => return,
    };
    match parse_response(data, &limits, is_head) {
        Ok(Some(head)) => {
            assert!(head.head_len <= data.len());
            assert!((100..=999).contains(&head.status));
            for h in head.headers() {
                assert!(h.value.end as usize <= head.head_len);
            }
            if is_head {
                assert_eq!(head.body, BodyKind::None);
            }
            if head.body == BodyKind::UntilClose {
                assert!(!head.keep_alive);
            }
            let again = parse_response(&data[..head.head_len], &limits, is_head)
                .expect("prefix errs")
                .expect("prefix incomplete");
            assert_eq!(again.body, head.body);
            assert_eq!(again.keep_alive, head.keep_alive);
        }
        Ok(None) => assert!(data.len() < limits.max_head_bytes),
        Err(e) => assert_eq!(e.status, 502),
    }
});
