//! The head of the answer the client gets: the upstream's status line and
//! end-to-end headers, the request id, the plugins' headers and the target
//! that answered. Shared by plain and rewritten answers.

use crate::config::snapshot::Target;
use crate::http::errors::push_decimal;
use crate::http::headers::{connection_lists, eq_ignore_case, is_hop_by_hop};
use crate::http::{self, ResponseHead};

/// The status line and the upstream's end-to-end headers for the client,
/// with X-Request-Id when the upstream sent none, the plugins' headers and
/// X-Selected-Target;
/// `skip` drops more (the framing of a body the gateway rewrites). The
/// framing, `Connection` and the final CRLF are the caller's.
pub(crate) fn push_response_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    resp: &ResponseHead,
    rid: &[u8],
    plugin_headers: &[u8],
    target: &Target,
    skip: impl Fn(&[u8]) -> bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(resp.status));
    out.push(b' ');
    let reason = resp.reason.get(buf);
    out.extend_from_slice(if reason.is_empty() {
        http::errors::reason(resp.status).as_bytes()
    } else {
        reason
    });
    out.extend_from_slice(b"\r\n");
    let mut connection: [&[u8]; 4] = [b""; 4];
    let mut n_conn = 0;
    let mut has_request_id = false;
    for h in resp.headers() {
        if eq_ignore_case(h.name.get(buf), b"connection") && n_conn < 4 {
            connection[n_conn] = h.value.get(buf);
            n_conn += 1;
        }
    }
    for h in resp.headers() {
        let name = h.name.get(buf);
        if is_hop_by_hop(name)
            || (n_conn > 0 && connection_lists(&connection[..n_conn], name))
            || skip(name)
        {
            continue;
        }
        has_request_id |= eq_ignore_case(name, b"x-request-id");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.get(buf));
        out.extend_from_slice(b"\r\n");
    }
    if !has_request_id {
        out.extend_from_slice(b"X-Request-Id: ");
        out.extend_from_slice(rid);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(plugin_headers);
    push_selected_target(out, target);
}

/// `X-Selected-Target: host:port\r\n`, the target that answered.
pub(crate) fn push_selected_target(out: &mut Vec<u8>, target: &Target) {
    out.extend_from_slice(b"X-Selected-Target: ");
    let host = target.host.as_bytes();
    let bracket = host.contains(&b':') && !host.starts_with(b"[");
    if bracket {
        out.push(b'[');
    }
    out.extend_from_slice(host);
    if bracket {
        out.push(b']');
    }
    out.push(b':');
    push_decimal(out, u64::from(target.port));
    out.extend_from_slice(b"\r\n");
}
