//! The admin listener's HTTP/1.1 server: small JSON requests, one at a time
//! per connection, bounded in size and time.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};

use crate::admin::{api, console, Admin, Reply, Request};
use crate::buf::ReadBuf;
use crate::http::{self, BodyKind, ChunkedDecoder};
use crate::runtime::conn::{linger, timed};

/// Largest admin request body; larger gets 413.
pub const MAX_ADMIN_BODY: usize = 1 << 20;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// After an early refusal (413, 400, 408 …) the client may still be sending:
/// up to this much is read and discarded, for up to [`LINGER_TIME`], so it
/// reads the answer instead of a reset.
const LINGER_BYTES: usize = 8 << 20;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Headers on every admin answer: no MIME sniffing, never framed, and a
/// policy that lets the console's page load only its own script, style
/// and API (no inline code, nothing from elsewhere).
const SECURITY_HEADERS: &str = "X-Content-Type-Options: nosniff\r\n\
X-Frame-Options: DENY\r\n\
Referrer-Policy: no-referrer\r\n\
Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n";

impl Admin {
    /// Accepts admin connections and, beside them, samples the counters for
    /// `/api/v1/stats`; cancelling this future ends both.
    pub async fn serve(self: Rc<Self>, listener: TcpListener) {
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok(stream) => {
                        let admin = self.clone();
                        glommio::spawn_local(async move { admin.connection(stream).await })
                            .detach();
                    }
                    Err(e) => {
                        log::warn!("admin accept failed: {e}");
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        };
        futures_lite::future::or(accept, self.sample_stats()).await
    }

    async fn connection(self: Rc<Self>, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let mut buf = ReadBuf::new(4096, 64 << 10);
        let limits = http::Limits {
            max_head_bytes: 64 << 10,
            max_headers: http::MAX_HEADERS,
        };
        let mut out = Vec::new();
        loop {
            let (request, keep_alive) = match read_request(&mut stream, &mut buf, &limits).await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(reply) => {
                    log::info!("admin request refused: {}", reply.status);
                    if write_reply(&mut stream, &mut out, &reply, false).await {
                        let mut conn = crate::runtime::conn::Conn::Glommio(stream);
                        linger(&mut conn, &mut buf, LINGER_BYTES, LINGER_TIME).await;
                    }
                    return;
                }
            };
            let reply = self.dispatch(&request).await;
            if !write_reply(&mut stream, &mut out, &reply, keep_alive).await || !keep_alive {
                return;
            }
        }
    }

    async fn dispatch(&self, req: &Request) -> Reply {
        let started = std::time::Instant::now();
        let reply = match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/health") => Reply::json(200, &serde_json::json!({ "status": "ok" })),
            ("GET", "/version") => Reply::json(
                200,
                &serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "name": "ringgate" }),
            ),
            ("GET", "/metrics") => self.metrics().await,
            (_, p) if p == "/api/v1" || p.starts_with("/api/v1/") => {
                if !self.authorized(req) {
                    Reply::error(401, "missing or invalid admin token")
                } else if p == "/api/v1/status" {
                    self.status(req).await
                } else if p == "/api/v1/stats" {
                    self.stats(req).await
                } else {
                    api::handle(self, req).await
                }
            }
            ("GET", p) => match console::find(p) {
                Some(asset) => console::serve(asset, req),
                None => Reply::error(404, "not found"),
            },
            _ => Reply::error(404, "not found"),
        };
        log::info!(
            "admin {} {} -> {} in {:?}",
            req.method,
            req.path,
            reply.status,
            started.elapsed()
        );
        reply
    }

    /// With `--admin-token`, `/api/v1` needs `Authorization: Bearer <token>`,
    /// compared in constant time.
    fn authorized(&self, req: &Request) -> bool {
        let Some(token) = &self.settings.admin_token else {
            return true;
        };
        let presented = req
            .header("authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .unwrap_or("")
            .trim();
        constant_time_eq(presented.as_bytes(), token.as_bytes())
    }
}

/// Equal-length comparison that does not stop at the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

async fn read_request(
    stream: &mut TcpStream,
    buf: &mut ReadBuf,
    limits: &http::Limits,
) -> Result<Option<(Request, bool)>, Reply> {
    let mut waited_idle = buf.is_empty();
    let head = loop {
        if !buf.is_empty() {
            match http::parse_request(buf.filled(), limits) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(e) => return Err(Reply::error(e.status, e.message)),
            }
        }
        let wait = if waited_idle {
            IDLE_TIMEOUT
        } else {
            HEAD_TIMEOUT
        };
        match timed(wait, buf.fill_from(stream)).await {
            Some(Ok(n)) if n > 0 => waited_idle = false,
            None if !waited_idle => {
                return Err(Reply::error(408, "request head not received in time"))
            }
            _ => return Ok(None),
        }
    };
    let b = buf.filled();
    let text = |s: http::Span| String::from_utf8_lossy(s.get(b)).into_owned();
    let mut request = Request {
        method: text(head.method),
        path: text(head.path),
        query: head.query.map(text),
        headers: head
            .headers()
            .iter()
            .map(|h| (text(h.name), text(h.value)))
            .collect(),
        body: Vec::new(),
    };
    let keep_alive = head.keep_alive;
    let expect = head.expect_continue;
    buf.consume(head.head_len);
    match head.body {
        BodyKind::Length(n) if n as usize > MAX_ADMIN_BODY => {
            return Err(Reply::error(413, "admin request body larger than 1 MiB"))
        }
        BodyKind::Length(n) => {
            if expect && n > 0 {
                let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
            }
            while request.body.len() < n as usize {
                if buf.is_empty() && !read_more(stream, buf).await {
                    return Ok(None);
                }
                let take = buf.len().min(n as usize - request.body.len());
                request.body.extend_from_slice(&buf.filled()[..take]);
                buf.consume(take);
            }
        }
        BodyKind::Chunked => {
            if expect {
                let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
            }
            let mut decoder = ChunkedDecoder::new();
            loop {
                let body = &mut request.body;
                let p = decoder
                    .feed(buf.filled(), &mut |d| body.extend_from_slice(d))
                    .map_err(|e| Reply::error(e.status, e.message))?;
                buf.consume(p.consumed);
                if request.body.len() > MAX_ADMIN_BODY {
                    return Err(Reply::error(413, "admin request body larger than 1 MiB"));
                }
                if p.done {
                    break;
                }
                if !read_more(stream, buf).await {
                    return Ok(None);
                }
            }
        }
        _ => {}
    }
    Ok(Some((request, keep_alive)))
}

async fn read_more(stream: &mut TcpStream, buf: &mut ReadBuf) -> bool {
    matches!(timed(HEAD_TIMEOUT, buf.fill_from(stream)).await, Some(Ok(n)) if n > 0)
}

async fn write_reply(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    reply: &Reply,
    keep_alive: bool,
) -> bool {
    out.clear();
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            reply.status,
            http::errors::reason(reply.status)
        )
        .as_bytes(),
    );
    if reply.status != 204 && reply.status != 304 {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(reply.content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(format!("Content-Length: {}\r\n", reply.body.len()).as_bytes());
    }
    for (name, value) in &reply.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !reply.headers.iter().any(|(n, _)| *n == "Cache-Control") {
        out.extend_from_slice(b"Cache-Control: no-store\r\n");
    }
    out.extend_from_slice(SECURITY_HEADERS.as_bytes());
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&reply.body);
    stream.write_all(out).await.is_ok()
}
