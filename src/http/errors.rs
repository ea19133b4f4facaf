//! Responses the gateway answers itself: JSON bodies, one buffer, one write.

/// Canonical reason phrase of `status` (RFC 9110 §15), `"Unknown"` otherwise.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes a complete error response to `out`:
/// status line (always HTTP/1.1), `Content-Type: application/json`,
/// `Content-Length`, `X-Request-Id` (omitted when `request_id` is empty),
/// `extra_headers` as given (complete `Name: value\r\n` lines, e.g.
/// `Retry-After`), `Connection: close` when `!keep_alive`, and the body
/// `{"error":"<message>"}` with `message` JSON-escaped.
pub fn write_error(
    out: &mut Vec<u8>,
    status: u16,
    message: &str,
    request_id: &str,
    extra_headers: &[u8],
    keep_alive: bool,
) {
    // Body length first, so the head and body go out in one buffer.
    let body_len = br#"{"error":""}"#.len() + escaped_len(message);
    write_head(
        out,
        status,
        body_len,
        Some(request_id),
        extra_headers,
        keep_alive,
    );
    out.extend_from_slice(br#"{"error":""#);
    escape_json(message, out);
    out.extend_from_slice(br#""}"#);
}

/// Writes a complete error response with a ready JSON `body` (same head
/// as [`write_error`]).
pub fn write_error_body(
    out: &mut Vec<u8>,
    status: u16,
    body: &[u8],
    request_id: &str,
    extra_headers: &[u8],
    keep_alive: bool,
) {
    write_head(
        out,
        status,
        body.len(),
        Some(request_id),
        extra_headers,
        keep_alive,
    );
    out.extend_from_slice(body);
}

/// Writes a complete response with a ready JSON `body` (same head as
/// [`write_error`], without extra headers).
pub fn write_json(
    out: &mut Vec<u8>,
    status: u16,
    body: &[u8],
    request_id: Option<&str>,
    keep_alive: bool,
) {
    write_head(out, status, body.len(), request_id, b"", keep_alive);
    out.extend_from_slice(body);
}

fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    body_len: usize,
    request_id: Option<&str>,
    extra_headers: &[u8],
    keep_alive: bool,
) {
    out.reserve(160 + extra_headers.len() + body_len);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    push_decimal(out, body_len as u64);
    out.extend_from_slice(b"\r\n");
    if let Some(id) = request_id.filter(|id| !id.is_empty()) {
        out.extend_from_slice(b"X-Request-Id: ");
        // The id may be the client's own: never let it break the head.
        out.extend(
            id.bytes()
                .filter(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f)),
        );
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra_headers);
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal without allocating.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The escape of one byte of a JSON string, if it needs one.
#[inline]
fn escape_of(b: u8) -> Option<&'static [u8]> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // \u00XX for every control character, built once at compile time.
    static CONTROL: [[u8; 6]; 32] = {
        let mut t = [[0u8; 6]; 32];
        let mut i = 0;
        while i < 32 {
            t[i] = [b'\\', b'u', b'0', b'0', HEX[i >> 4], HEX[i & 0xf]];
            i += 1;
        }
        t
    };
    match b {
        b'"' => Some(b"\\\""),
        b'\\' => Some(b"\\\\"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        b'\t' => Some(b"\\t"),
        0..=0x1f => Some(&CONTROL[b as usize]),
        _ => None,
    }
}

fn escaped_len(s: &str) -> usize {
    s.bytes().map(|b| escape_of(b).map_or(1, |e| e.len())).sum()
}

/// Appends `s` escaped for the inside of a JSON string (non-ASCII stays UTF-8).
fn escape_json(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(e) = escape_of(b) {
            out.extend_from_slice(&bytes[plain..i]);
            out.extend_from_slice(e);
            plain = i + 1;
        }
    }
    out.extend_from_slice(&bytes[plain..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_errors_write_error_exact_bytes() {
        let mut out = Vec::new();
        write_error(
            &mut out,
            429,
            "rate limited",
            "req-1",
            b"Retry-After: 3\r\n",
            true,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 429 Too Many Requests\r\n\
             Content-Type: application/json\r\n\
             Content-Length: 24\r\n\
             X-Request-Id: req-1\r\n\
             Retry-After: 3\r\n\
             \r\n\
             {\"error\":\"rate limited\"}"
        );
    }

    #[test]
    fn http_errors_write_error_close_and_escaping() {
        let mut out = b"prefix|".to_vec();
        write_error(&mut out, 400, "bad \"x\"\\\n\u{1}é", "id", b"", false);
        let body = "{\"error\":\"bad \\\"x\\\"\\\\\\n\\u0001é\"}";
        let expected = format!(
            "prefix|HTTP/1.1 400 Bad Request\r\n\
             Content-Type: application/json\r\n\
             Content-Length: {}\r\n\
             X-Request-Id: id\r\n\
             Connection: close\r\n\
             \r\n{body}",
            body.len()
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        // The escaped body is valid JSON that round-trips.
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "bad \"x\"\\\n\u{1}é");
    }

    #[test]
    fn http_errors_request_id_cannot_inject_headers() {
        let mut out = Vec::new();
        write_error(&mut out, 502, "upstream", "a\r\nX-Evil: 1", b"", true);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("X-Request-Id: aX-Evil: 1\r\n"), "{s}");
        let mut out = Vec::new();
        write_error(&mut out, 503, "none", "", b"", true);
        assert!(!String::from_utf8(out).unwrap().contains("X-Request-Id"));
    }

    #[test]
    fn http_errors_write_json_exact_bytes() {
        let mut out = Vec::new();
        write_json(&mut out, 200, br#"{"message":"pong"}"#, None, true);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n{\"message\":\"pong\"}"
        );
        let mut out = Vec::new();
        write_json(&mut out, 404, b"{}", Some("r"), false);
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-Request-Id: r\r\nConnection: close\r\n\r\n{}"
        );
    }

    #[test]
    fn http_errors_reason_phrases() {
        assert_eq!(reason(400), "Bad Request");
        assert_eq!(reason(401), "Unauthorized");
        assert_eq!(reason(403), "Forbidden");
        assert_eq!(reason(404), "Not Found");
        assert_eq!(reason(408), "Request Timeout");
        assert_eq!(reason(413), "Content Too Large");
        assert_eq!(reason(429), "Too Many Requests");
        assert_eq!(reason(431), "Request Header Fields Too Large");
        assert_eq!(reason(502), "Bad Gateway");
        assert_eq!(reason(503), "Service Unavailable");
        assert_eq!(reason(504), "Gateway Timeout");
        assert_eq!(reason(799), "Unknown");
    }
}
