//! One client connection: the keep-alive loop, request heads under their
//! timeouts, the gateway's own answers (built-ins, errors), and the
//! authentication and routing that turn a head into a [`Plan`] for
//! [`exchange`].

mod ai;
mod exchange;
mod failover;
mod fallback;
mod head;
mod keepalive;
mod plan;
mod rewrite;

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::buf::ReadBuf;
use crate::http::{self, BodyKind, HttpError, RequestHead};
use crate::metrics::bump;
use crate::runtime::conn::{linger, Conn};
use crate::runtime::shard::Shard;

pub(crate) use plan::Plan;

/// What the connection does after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    KeepAlive,
    Close,
}

/// Bytes read from the client ahead of the head limit, to hold a pipelined
/// request or the start of a body.
pub(crate) const CLIENT_BUF: usize = 4 << 10;

/// A client connection and its reusable buffers (no allocation per request
/// once warm).
pub(crate) struct Client {
    pub stream: Conn,
    pub buf: ReadBuf,
    /// The response head (or error) being assembled.
    pub out: Vec<u8>,
    /// The upstream request head being assembled.
    pub up_head: Vec<u8>,
    /// Pieces of the request head kept for composing upstream heads.
    pub fwd: Vec<u8>,
    /// Client headers to forward: spans (name, value) into `fwd`.
    pub fwd_headers: Vec<(u32, u32, u32, u32)>,
    /// The request body, when it is kept for a retry.
    pub body: Vec<u8>,
    /// The peer's IP as text, for X-Forwarded-For.
    pub peer_ip: String,
    /// When the current request's body must have arrived in full.
    pub body_deadline: Instant,
    /// What the current request did, for metrics and the access log.
    pub obs: crate::metrics::Record,
    /// The peer's IP, for plugins.
    pub peer: Option<std::net::IpAddr>,
    /// Response headers plugins add (`Name: value\r\n` lines).
    pub plugin_headers: Vec<u8>,
    /// Scratch space for plugins that rewrite the body.
    pub scratch: Vec<u8>,
    /// The current request already got an early `text/event-stream` head
    /// (SSE keep-alive): any later answer continues that stream.
    pub early_sse: Option<keepalive::EarlyHead>,
}

/// Writes all of `bytes` to the client within the send timeout; false when
/// the client is gone or stopped reading (then the connection is dropped:
/// a client that never reads cannot pin it and its buffers).
pub(crate) async fn send(shard: &Shard, stream: &mut Conn, bytes: &[u8]) -> bool {
    stream.send(bytes, shard.settings.limits.send_timeout).await
}

/// Serves a client connection until it closes, errs, idles out or the
/// shard drains.
///
/// Between requests the connection is *parked*: its buffers go back to the
/// shard and it waits for the next bytes in a small future; each request
/// runs in a future of its own, allocated while it runs. So an idle
/// keep-alive connection holds a few hundred bytes, not the request path's
/// state and buffers. (On glommio's path, which cannot wait for readability
/// without a buffer, the wait is the head read itself.)
pub async fn serve_connection(shard: &Rc<Shard>, stream: Conn) {
    stream.set_nodelay();
    let peer = stream.peer_ip();
    let peer_ip = peer.map(|ip| ip.to_string()).unwrap_or_default();
    let limits = &shard.settings.limits;
    let mut conn = Client {
        stream,
        buf: ReadBuf::new(0, limits.max_head_bytes),
        out: Vec::new(),
        up_head: Vec::new(),
        fwd: Vec::new(),
        fwd_headers: Vec::new(),
        body: Vec::new(),
        peer_ip,
        body_deadline: Instant::now(),
        obs: crate::metrics::Record::new(),
        peer,
        plugin_headers: Vec::new(),
        scratch: Vec::new(),
        early_sse: None,
    };
    let accepted = Instant::now();
    let mut first = true;
    loop {
        if conn.buf.is_empty() {
            conn.park(shard);
            let wait = if first {
                limits.header_timeout
            } else {
                limits.idle_timeout
            };
            let ready = futures_lite::future::or(conn.stream.readable(wait), async {
                shard.drained().await;
                Some(false)
            })
            .await;
            match ready {
                Some(true) => {}
                Some(false) => return,
                // A new connection that sent nothing gets its 408 below.
                None if first => {}
                None => return,
            }
            conn.unpark(shard);
        }
        let started = if first { Some(accepted) } else { None };
        let next = Box::pin(one_request(shard, &mut conn, started)).await;
        first = false;
        if next == Next::Close || shard.draining() {
            conn.park(shard);
            return;
        }
    }
}

impl Client {
    /// Gives the buffers back while the connection waits for a request.
    fn park(&mut self, shard: &Shard) {
        if let Some(buf) = self.buf.release() {
            shard.give_read_buf(buf, CLIENT_BUF);
        }
        for v in [
            &mut self.out,
            &mut self.up_head,
            &mut self.fwd,
            &mut self.body,
            &mut self.plugin_headers,
            &mut self.scratch,
        ] {
            *v = Vec::new();
        }
        self.fwd_headers = Vec::new();
        self.obs.trim();
    }

    /// Takes buffers for a request.
    fn unpark(&mut self, shard: &Shard) {
        self.buf.restore(shard.take_read_buf(CLIENT_BUF));
        self.out.reserve(1024);
        self.up_head.reserve(1024);
        self.fwd.reserve(1024);
        self.fwd_headers.reserve(16);
    }
}

/// One request: its head, then its answer. `started`: when the head's
/// timer started (the accept, for a connection's first request).
async fn one_request(shard: &Rc<Shard>, conn: &mut Client, started: Option<Instant>) -> Next {
    let limits = &shard.settings.limits;
    let http_limits = http::Limits {
        max_head_bytes: limits.max_head_bytes,
        max_headers: limits.max_headers,
    };
    if conn.buf.capacity() == 0 {
        conn.unpark(shard);
    }
    let head = match read_head(shard, conn, &http_limits, started).await {
        Ok(Some(head)) => head,
        Ok(None) => return Next::Close,
        Err(e) => {
            let rid = shard.request_id();
            conn.obs.begin(shard, conn.buf.consumed(), b"", b"", &rid);
            respond_error(shard, conn, e.status, e.message, &rid, false).await;
            crate::metrics::finish(shard, &shard.view(), &mut conn.obs, conn.buf.consumed());
            linger_close(conn).await;
            return Next::Close;
        }
    };
    bump(&shard.metrics.requests);
    conn.body_deadline = Instant::now() + limits.body_deadline;
    handle(shard, conn, &head).await
}

/// Reads until a complete head is buffered. `Ok(None)`: the connection ended
/// quietly (peer closed, idle timeout, drain while idle).
async fn read_head(
    shard: &Shard,
    conn: &mut Client,
    limits: &http::Limits,
    mut started: Option<Instant>,
) -> Result<Option<RequestHead>, HttpError> {
    let settings = &shard.settings.limits;
    let first = started.is_some();
    loop {
        if !conn.buf.is_empty() {
            if let Some(head) = http::parse_request(conn.buf.filled(), limits)? {
                return Ok(Some(head));
            }
            started.get_or_insert_with(Instant::now);
            if conn.buf.is_full() {
                return Err(HttpError {
                    status: 431,
                    message: "request head too large",
                });
            }
        }
        let idle = conn.buf.is_empty() && !first;
        let wait = match started {
            Some(t) => settings.header_timeout.saturating_sub(t.elapsed()),
            None => settings.idle_timeout,
        };
        let read = if idle {
            // Between requests: also wake up when the shard starts draining.
            futures_lite::future::or(conn.stream.fill(&mut conn.buf, wait), async {
                shard.drained().await;
                Some(Ok(0))
            })
            .await
        } else {
            conn.stream.fill(&mut conn.buf, wait).await
        };
        match read {
            Some(Ok(0)) | Some(Err(_)) => return Ok(None),
            Some(Ok(_)) => {}
            None if idle => return Ok(None),
            None => {
                return Err(HttpError {
                    status: 408,
                    message: "request head not received in time",
                })
            }
        }
    }
}

/// Writes one of the gateway's own JSON errors.
pub(crate) async fn respond_error(
    shard: &Shard,
    conn: &mut Client,
    status: u16,
    message: &str,
    request_id: &[u8],
    keep_alive: bool,
) -> Next {
    respond_error_with(shard, conn, status, message, request_id, b"", keep_alive).await
}

pub(crate) async fn respond_error_with(
    shard: &Shard,
    conn: &mut Client,
    status: u16,
    message: &str,
    request_id: &[u8],
    extra_headers: &[u8],
    keep_alive: bool,
) -> Next {
    if let Some(early) = conn.early_sse {
        let data = keepalive::gateway_error(status, message);
        return keepalive::error_event(shard, conn, early, status, &data, keep_alive).await;
    }
    conn.out.clear();
    let rid = std::str::from_utf8(request_id).unwrap_or("-");
    http::errors::write_error(
        &mut conn.out,
        status,
        message,
        rid,
        extra_headers,
        keep_alive,
    );
    send_own_answer(shard, conn, status, keep_alive).await
}

/// Sends the gateway's own answer assembled in `conn.out`, recording it.
async fn send_own_answer(shard: &Shard, conn: &mut Client, status: u16, keep_alive: bool) -> Next {
    conn.obs.answered_locally(status, conn.out.len());
    if !send(shard, &mut conn.stream, &conn.out).await || !keep_alive {
        return Next::Close;
    }
    Next::KeepAlive
}

/// Closes after an error while the client may still be sending: stop writing,
/// read and discard for a moment so the client sees the response rather
/// than a reset.
pub(crate) async fn linger_close(conn: &mut Client) {
    linger(
        &mut conn.stream,
        &mut conn.buf,
        256 << 10,
        Duration::from_millis(500),
    )
    .await;
}

/// One request, counted once it is answered.
async fn handle(shard: &Rc<Shard>, conn: &mut Client, head: &RequestHead) -> Next {
    let view = shard.view();
    conn.early_sse = None;
    let next = answer(shard, conn, head, &view).await;
    crate::metrics::finish(shard, &view, &mut conn.obs, conn.buf.consumed());
    next
}

/// Built-ins, authentication, routing, then the exchange.
async fn answer(
    shard: &Rc<Shard>,
    conn: &mut Client,
    head: &RequestHead,
    view: &crate::config::Snapshot,
) -> Next {
    let buf = conn.buf.filled();
    let rid = plan::request_id(shard, head, buf);
    let consumed = conn.buf.consumed();
    let (method, path) = (head.method.get(buf), head.path.get(buf));
    conn.obs
        .begin(shard, consumed, method, path, rid.as_bytes());
    // On the gateway's own answers the connection stays open only when the
    // request's body can be skipped (see `skip_body`).
    let can_keep = head.keep_alive && head.version == 1;

    if let Some(body) = builtin(head, buf) {
        let keep_alive = can_keep && skip_body(shard, conn, head).await;
        return respond_json(shard, conn, 200, body, rid.as_bytes(), keep_alive).await;
    }

    if let BodyKind::Length(n) = head.body {
        if n > shard.settings.limits.max_body_bytes {
            respond_error(
                shard,
                conn,
                413,
                "request body too large",
                rid.as_bytes(),
                false,
            )
            .await;
            linger_close(conn).await;
            return Next::Close;
        }
    }

    if let Some(cors) = plan::preflight(view, head, buf) {
        // Answered here, key or not, and never forwarded.
        conn.plugin_headers.clear();
        let req = crate::plugin::RequestView {
            head,
            buf,
            peer: conn.peer,
            key_id: None,
        };
        if let Some(stop) = cors.on_request(&req, &mut conn.plugin_headers) {
            return stopped(shard, conn, head, stop, &rid, can_keep).await;
        }
    }

    let mut plan = match Plan::build(view, conn, head, rid) {
        Ok(plan) => plan,
        Err((status, message, rid)) => {
            let skipped = skip_body(shard, conn, head).await;
            let keep_alive = can_keep && skipped;
            let next =
                respond_error(shard, conn, status, message, rid.as_bytes(), keep_alive).await;
            if next == Next::Close && !skipped {
                linger_close(conn).await;
            }
            return next;
        }
    };
    conn.plugin_headers.clear();
    if !plan.rule.plugins.is_empty() {
        let req = crate::plugin::RequestView {
            head,
            buf: conn.buf.filled(),
            peer: conn.peer,
            key_id: plan.key_id,
        };
        let chain = &plan.rule.plugins;
        // Boxed, like the other rarer paths: the request future stays small.
        let stop = Box::pin(crate::plugin::on_request(
            &shard.counters,
            chain,
            &req,
            &mut plan.plugins,
            &mut conn.plugin_headers,
        ))
        .await;
        if let Some(stop) = stop {
            shard.metrics.count_refusal(&plan.plugins, &stop);
            return Box::pin(stopped(shard, conn, head, stop, &rid, can_keep)).await;
        }
    }
    conn.buf.consume(head.head_len);
    exchange::run(shard, conn, plan).await
}

/// A plugin stopped the request on its head: its answer, the body skipped
/// when it can be (else the connection closes).
async fn stopped(
    shard: &Shard,
    conn: &mut Client,
    head: &RequestHead,
    stop: crate::plugin::Stop,
    rid: &plan::RequestId,
    can_keep: bool,
) -> Next {
    let skipped = skip_body(shard, conn, head).await;
    let next = plugin_answer(shard, conn, stop, rid, can_keep && skipped).await;
    if next == Next::Close && !skipped {
        linger_close(conn).await;
    }
    next
}

/// Consumes the head and, when the gateway answers without forwarding,
/// reads and drops a small Content-Length body so the connection can take
/// the next request: a body split from its head by the network must not
/// turn a keep-alive answer into a close. True when the connection is
/// positioned at the next request. Large or chunked bodies, and bodies the
/// client holds back for `100 Continue`, are not read: the caller closes.
async fn skip_body(shard: &Shard, conn: &mut Client, head: &RequestHead) -> bool {
    conn.buf.consume(head.head_len);
    let mut left = match head.body {
        BodyKind::None => return true,
        BodyKind::Length(n) if !head.expect_continue || conn.buf.len() as u64 >= n => n,
        _ => return false,
    };
    if left > shard.settings.limits.replay_body_bytes as u64 {
        return false;
    }
    loop {
        let take = (conn.buf.len() as u64).min(left);
        conn.buf.consume(take as usize);
        left -= take;
        if left == 0 {
            return true;
        }
        match conn
            .stream
            .fill(&mut conn.buf, shard.settings.limits.body_timeout)
            .await
        {
            Some(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
}

/// How long the next read of request-body bytes may wait: the pause limit,
/// or what is left of the whole body's deadline when that is less.
pub(crate) fn body_wait(shard: &Shard, conn: &Client) -> Duration {
    let left = conn.body_deadline.saturating_duration_since(Instant::now());
    shard.settings.limits.body_timeout.min(left)
}

/// A plugin's own answer: a refusal, or a CORS preflight's 204.
pub(crate) async fn plugin_answer(
    shard: &Shard,
    conn: &mut Client,
    stop: crate::plugin::Stop,
    rid: &plan::RequestId,
    keep_alive: bool,
) -> Next {
    let extra = std::mem::take(&mut conn.plugin_headers);
    let next = match stop {
        crate::plugin::Stop::Reject(status, message) => {
            respond_error_with(
                shard,
                conn,
                status,
                &message,
                rid.as_bytes(),
                &extra,
                keep_alive,
            )
            .await
        }
        crate::plugin::Stop::Limited(status, message, retry_after) => {
            conn.out.clear();
            let body = serde_json::json!({"error": message, "retry_after": retry_after});
            http::errors::write_error_body(
                &mut conn.out,
                status,
                body.to_string().as_bytes(),
                std::str::from_utf8(rid.as_bytes()).unwrap_or("-"),
                &extra,
                keep_alive,
            );
            send_own_answer(shard, conn, status, keep_alive).await
        }
        crate::plugin::Stop::Preflight => {
            conn.out.clear();
            conn.out.extend_from_slice(b"HTTP/1.1 204 No Content\r\n");
            conn.out.extend_from_slice(&extra);
            conn.out.extend_from_slice(b"X-Request-Id: ");
            conn.out.extend_from_slice(rid.as_bytes());
            conn.out.extend_from_slice(if keep_alive {
                b"\r\n\r\n".as_slice()
            } else {
                b"\r\nConnection: close\r\n\r\n".as_slice()
            });
            send_own_answer(shard, conn, 204, keep_alive).await
        }
        crate::plugin::Stop::Cached(entry) => {
            conn.out.clear();
            let rid = rid.as_bytes();
            crate::plugin::cache::write_hit(&mut conn.out, &entry, &extra, rid, keep_alive);
            send_own_answer(shard, conn, 200, keep_alive).await
        }
    };
    conn.plugin_headers = extra;
    next
}

fn builtin(head: &RequestHead, buf: &[u8]) -> Option<&'static [u8]> {
    if !(head.is_method(buf, "GET") || head.is_method(buf, "HEAD")) {
        return None;
    }
    match head.path.get(buf) {
        b"/__/ping" => Some(br#"{"message":"pong"}"#),
        b"/health" => Some(br#"{"status":"ok"}"#),
        _ => None,
    }
}

async fn respond_json(
    shard: &Shard,
    conn: &mut Client,
    status: u16,
    body: &[u8],
    rid: &[u8],
    keep_alive: bool,
) -> Next {
    conn.out.clear();
    http::errors::write_json(
        &mut conn.out,
        status,
        body,
        std::str::from_utf8(rid).ok(),
        keep_alive,
    );
    send_own_answer(shard, conn, status, keep_alive).await
}
