//! One forwarded exchange: the request body made ready (kept for a retry
//! when small), a target and a connection per attempt, the rewritten head
//! and body upstream, then the response head rewritten and the body streamed
//! back as it arrives.
//!
//! Errors are tagged by where they happened, which decides the status and
//! whether a retry is safe: a connect failure, or a reused pooled connection
//! that failed before any response byte, with a body we still hold.

use std::io;
use std::rc::Rc;

use crate::config::snapshot::Target;
use crate::http::chunked::ChunkedDecoder;
use crate::http::errors::push_decimal;
use crate::http::headers::eq_ignore_case;
use crate::http::{self, BodyKind, ResponseHead};
use crate::metrics::{bump, UpstreamEvent};
use crate::proxy::ai::Ai;
use crate::proxy::failover;
use crate::proxy::fallback::{self, Reason};
use crate::proxy::head::push_response_head;
use crate::proxy::plan::{Piece, Plan, Targets};
use crate::proxy::rewrite;
use crate::proxy::{linger_close, respond_error, send, Client, Next};
use crate::runtime::shard::Shard;
use crate::upstream::pool::{UpstreamConn, UPSTREAM_HEAD_MAX};

/// Bodies up to this size go out in the same write as the head.
const COALESCE: usize = 16 << 10;

/// The part of the request body still to be read from the client.
enum Pending {
    None,
    Length(u64),
    Chunked(ChunkedDecoder, u64),
}

/// Why an attempt failed, and so what the client gets.
enum UpstreamError {
    /// Connect refused, reset or unreachable.
    Connect(io::Error),
    /// The TLS handshake failed (untrusted certificate, wrong name).
    Tls,
    /// Closed or reset before any response byte.
    Closed {
        reused: bool,
    },
    Timeout,
    Invalid,
}

impl UpstreamError {
    /// The client's answer for this failure, and what it counts against the target.
    fn answer(&self) -> (u16, &'static str, Option<UpstreamEvent>) {
        match self {
            UpstreamError::Connect(e) if e.kind() == io::ErrorKind::TimedOut => (
                504,
                "upstream connect timed out",
                Some(UpstreamEvent::Timeout),
            ),
            UpstreamError::Connect(_) => (
                502,
                "upstream refused the connection",
                Some(UpstreamEvent::ConnectError),
            ),
            UpstreamError::Closed { .. } => (
                502,
                "upstream closed the connection without a response",
                None,
            ),
            UpstreamError::Timeout => (
                504,
                "upstream did not answer in time",
                Some(UpstreamEvent::Timeout),
            ),
            UpstreamError::Invalid => (502, "upstream sent an invalid response", None),
            UpstreamError::Tls => (
                502,
                "upstream TLS handshake failed (certificate not trusted or wrong name)",
                None,
            ),
        }
    }

    /// Why a model fallback leaves the step this failure ended.
    fn fallback_reason(&self) -> Reason {
        match self {
            UpstreamError::Timeout => Reason::Timeout,
            UpstreamError::Connect(e) if e.kind() == io::ErrorKind::TimedOut => Reason::Timeout,
            UpstreamError::Invalid => Reason::Server,
            _ => Reason::Connect,
        }
    }
}

/// What follows a failed attempt (nothing has reached the client yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// A pooled connection the upstream had dropped: again, once, free.
    Stale,
    /// Another attempt, on another target where there is one (failover).
    Failover,
    /// Answer the client with the failure.
    No,
}

/// The retry decision, pure: `attempt` attempts were counted before this
/// one, of `attempts` allowed; `healthy_left` says whether any target could
/// still take one (asked only when it matters).
fn after_failure(
    failure: &UpstreamError,
    replayable: bool,
    stale_retried: bool,
    attempt: u32,
    attempts: u32,
    healthy_left: impl FnOnce() -> bool,
) -> Retry {
    if !replayable {
        return Retry::No;
    }
    if matches!(failure, UpstreamError::Closed { reused: true }) && !stale_retried {
        return Retry::Stale;
    }
    let retryable = matches!(
        failure,
        UpstreamError::Connect(_) | UpstreamError::Tls | UpstreamError::Closed { .. }
    );
    if retryable && attempt + 1 < attempts && healthy_left() {
        Retry::Failover
    } else {
        Retry::No
    }
}

/// Why a client-side step failed.
enum ClientError {
    /// Gone, or broke the protocol mid-body: close without an answer.
    Gone,
    /// Answer this status, then close.
    Status(u16, &'static str),
}

pub(crate) async fn run(shard: &Rc<Shard>, conn: &mut Client, mut plan: Plan<'_>) -> Next {
    let next = exchange(shard, conn, &mut plan).await;
    if plan.plugins.tokens.is_some() || plan.plugins.budget.is_some() {
        // No answer came back (refused later in the chain, or the upstream
        // failed): what was reserved is given back, as for an error answer.
        Box::pin(crate::plugin::on_response_end(
            &shard.counters,
            &mut plan.plugins,
            502,
        ))
        .await;
    }
    next
}

// `plan` is borrowed from `run`, which settles what it leaves reserved;
// the body below reads as when it owned it (hence the borrows of a borrow).
#[allow(clippy::needless_borrow)]
async fn exchange(shard: &Rc<Shard>, conn: &mut Client, mut plan: &mut Plan<'_>) -> Next {
    let rid = plan.request_id;
    if plan.expect_continue && plan.body != BodyKind::None {
        if !send(shard, &mut conn.stream, b"HTTP/1.1 100 Continue\r\n\r\n").await {
            return Next::Close;
        }
    }
    let mut pending = match read_replayable_body(shard, conn, plan.body).await {
        Ok(p) => p,
        Err(e) => return Box::pin(client_failed(shard, conn, e, rid.as_bytes())).await,
    };
    if plan.rule.plugins.wants_body {
        let complete = matches!(pending, Pending::None);
        // The rarer paths are boxed so the common path's future stays small
        // (it is moved into a fresh allocation per request).
        let stop = Box::pin(crate::plugin::on_body(
            &shard.counters,
            &mut plan.plugins,
            conn.peer,
            plan.key_id,
            &mut plan.body,
            &mut conn.body,
            &mut conn.scratch,
            complete,
            &mut conn.plugin_headers,
        ))
        .await;
        if let Some(stop) = stop {
            shard.metrics.count_refusal(&plan.plugins, &stop);
            let keep_alive = keep(&plan, &pending);
            let next = Box::pin(crate::proxy::plugin_answer(
                shard, conn, stop, &rid, keep_alive,
            ))
            .await;
            if !keep_alive {
                Box::pin(linger_close(conn)).await;
            }
            return next;
        }
    }

    let buffered = matches!(pending, Pending::None);
    let mut ai = match Ai::inspect(&plan, &conn.fwd, &conn.body, buffered) {
        Ok(ai) => ai,
        Err(msg) => {
            let keep_alive = keep(&plan, &pending);
            return Box::pin(refuse(shard, conn, 400, &msg, rid.as_bytes(), keep_alive)).await;
        }
    };
    ai.identity = plan.plugins.mask_response.is_some();
    let mut health = match plan.targets {
        Targets::Balanced(up) => Some(up),
        Targets::Fixed(_) => None,
    };
    let attempts = 1 + plan.rule.retry_attempts;
    let mut attempt = 0;
    let mut stale_retry = false;
    let mut avoid: Vec<u64> = Vec::new();
    // The model-fallback step serving the request (0: the rule's service).
    let mut step = 0u8;
    // Leaves the current fallback step for the next: fresh targets, attempts.
    macro_rules! step_on {
        ($reason:expr) => {{
            fallback::step_on(&mut plan, &mut ai, &mut step, $reason);
            health = match plan.targets {
                Targets::Balanced(up) => Some(up),
                Targets::Fixed(_) => None,
            };
            attempt = 0;
            stale_retry = false;
            avoid.clear();
            continue;
        }};
    }
    loop {
        let target: &Target = match plan.targets {
            Targets::Fixed(t) => t,
            Targets::Balanced(up) => {
                match shard.balancer.choose_where(up, &avoid, |t| ai.serves(t)) {
                    Some(i) => &up.targets[i],
                    None if fallback::may_step(
                        &plan,
                        conn,
                        &ai,
                        step,
                        matches!(pending, Pending::None),
                    ) =>
                    {
                        step_on!(Reason::Connect)
                    }
                    None => {
                        return Box::pin(refuse(
                            shard,
                            conn,
                            503,
                            "no healthy upstream target",
                            rid.as_bytes(),
                            keep(&plan, &pending),
                        ))
                        .await
                    }
                }
            }
        };
        let Some(addr) = target.pool_key() else {
            return Box::pin(refuse(
                shard,
                conn,
                502,
                "upstream host could not be resolved",
                rid.as_bytes(),
                keep(&plan, &pending),
            ))
            .await;
        };
        let rest = &conn.fwd[plan.path.0 as usize..plan.path.1 as usize];
        if let Err((status, msg)) = ai.prepare(target, rest, !plan.rule.strip_path, &conn.body) {
            let keep_alive = keep(&plan, &pending);
            return Box::pin(refuse(
                shard,
                conn,
                status,
                &msg,
                rid.as_bytes(),
                keep_alive,
            ))
            .await;
        }
        let _in_flight = shard.balancer.start(target);
        let replayable = matches!(pending, Pending::None);
        conn.obs.attempt(target);

        let ping = super::keepalive::interval(conn, &ai, target);
        let result = attempt_once(shard, conn, &plan, target, addr, &mut pending, &ai, ping).await;
        let (mut up, resp) = match result {
            Ok(ok) => ok,
            Err(Err(client)) => {
                return Box::pin(client_failed(shard, conn, client, rid.as_bytes())).await
            }
            Err(Ok(failure)) => {
                let decision =
                    after_failure(&failure, replayable, stale_retry, attempt, attempts, || {
                        failover::any_healthy(shard, &plan.targets, |t| ai.serves(t))
                    });
                if decision != Retry::Stale {
                    shard.balancer.record(target, health, false);
                    avoid.push(target.key);
                    attempt += 1;
                }
                if decision != Retry::No {
                    stale_retry |= decision == Retry::Stale;
                    shard
                        .metrics
                        .upstream_event(target.key, UpstreamEvent::Retry);
                    continue;
                }
                let (status, message, event) = failure.answer();
                if let Some(event) = event {
                    shard.metrics.upstream_event(target.key, event);
                }
                if fallback::may_step(&plan, conn, &ai, step, replayable) {
                    step_on!(failure.fallback_reason())
                }
                let keep_alive = keep(&plan, &pending);
                return Box::pin(refuse(
                    shard,
                    conn,
                    status,
                    message,
                    rid.as_bytes(),
                    keep_alive,
                ))
                .await;
            }
        };
        shard.balancer.record(target, health, resp.status < 500);
        if failover::falls_back(resp.status) && replayable && attempt + 1 < attempts {
            avoid.push(target.key);
            if failover::untried(shard, &plan.targets, &avoid, |t| ai.serves(t)) {
                Box::pin(failover::discard(shard, up, &resp, addr)).await;
                attempt += 1;
                shard
                    .metrics
                    .upstream_event(target.key, UpstreamEvent::Retry);
                continue;
            }
        }
        if fallback::may_step(&plan, conn, &ai, step, replayable) {
            let reason = match Reason::of_status(resp.status) {
                None if resp.status == 400
                    && Box::pin(fallback::context_length(&mut up, &resp)).await =>
                {
                    Some(Reason::ContextLength)
                }
                r => r,
            };
            if let Some(reason) = reason {
                Box::pin(failover::discard(shard, up, &resp, addr)).await;
                step_on!(reason)
            }
        }
        fallback::served(conn, &plan, ai.sent_model(target), step);
        conn.obs.answered(resp.status);
        // After an early SSE head (keep-alive pings) the answer is rewritten
        // into that stream.
        let rewritten = ai.translate.is_some() || plan.plugins.mask_response.is_some();
        if rewritten || conn.early_sse.is_some() {
            let (client, reusable) = Box::pin(rewrite::forward(
                shard, conn, &mut plan, target, &mut up, &resp, &mut ai,
            ))
            .await;
            crate::plugin::on_response_end(&shard.counters, &mut plan.plugins, resp.status).await;
            if reusable {
                shard.pool.put(addr, up);
            }
            return client;
        }
        let next = forward_response(shard, conn, &mut plan, target, &mut up, &resp).await;
        crate::plugin::on_response_end(&shard.counters, &mut plan.plugins, resp.status).await;
        if next.upstream_reusable {
            shard.pool.put(addr, up);
        }
        return next.client;
    }
}

/// The gateway's own error answer; when the connection cannot stay open
/// (the client may still be sending its body), a linger-close follows, so
/// the client reads the answer rather than a reset.
async fn refuse(
    shard: &Shard,
    conn: &mut Client,
    status: u16,
    message: &str,
    rid: &[u8],
    keep_alive: bool,
) -> Next {
    let next = respond_error(shard, conn, status, message, rid, keep_alive).await;
    if !keep_alive {
        linger_close(conn).await;
    }
    next
}

/// Whether the client connection may stay open after an error answer.
fn keep(plan: &Plan<'_>, pending: &Pending) -> bool {
    plan.client_keep_alive && plan.client_version == 1 && matches!(pending, Pending::None)
}

async fn client_failed(shard: &Shard, conn: &mut Client, e: ClientError, rid: &[u8]) -> Next {
    if let ClientError::Status(status, message) = e {
        respond_error(shard, conn, status, message, rid, false).await;
        linger_close(conn).await;
    }
    Next::Close
}

/// Reads the body into `conn.body` when it is small enough to keep for a
/// retry; otherwise keeps what is buffered and says what is still to come.
async fn read_replayable_body(
    shard: &Shard,
    conn: &mut Client,
    kind: BodyKind,
) -> Result<Pending, ClientError> {
    let limits = &shard.settings.limits;
    conn.body.clear();
    match kind {
        BodyKind::None | BodyKind::UntilClose => Ok(Pending::None),
        BodyKind::Length(n) => {
            let take = (conn.buf.len() as u64).min(n) as usize;
            conn.body.extend_from_slice(&conn.buf.filled()[..take]);
            conn.buf.consume(take);
            let mut left = n - take as u64;
            if n as usize > limits.replay_body_bytes {
                return Ok(if left == 0 {
                    Pending::None
                } else {
                    Pending::Length(left)
                });
            }
            while left > 0 {
                read_client(shard, conn).await?;
                let take = (conn.buf.len() as u64).min(left) as usize;
                conn.body.extend_from_slice(&conn.buf.filled()[..take]);
                conn.buf.consume(take);
                left -= take as u64;
            }
            Ok(Pending::None)
        }
        BodyKind::Chunked => {
            let mut decoder = ChunkedDecoder::new();
            let mut size = 0u64;
            loop {
                let p = feed(&mut decoder, conn.buf.filled(), &mut size)?;
                conn.body
                    .extend_from_slice(&conn.buf.filled()[..p.consumed]);
                conn.buf.consume(p.consumed);
                if size > limits.max_body_bytes {
                    return Err(ClientError::Status(413, "request body too large"));
                }
                if p.done {
                    return Ok(Pending::None);
                }
                if conn.body.len() >= limits.replay_body_bytes {
                    return Ok(Pending::Chunked(decoder, size));
                }
                read_client(shard, conn).await?;
            }
        }
    }
}

fn feed(
    decoder: &mut ChunkedDecoder,
    input: &[u8],
    size: &mut u64,
) -> Result<http::Progress, ClientError> {
    decoder
        .feed(input, &mut |data| *size += data.len() as u64)
        .map_err(|e| ClientError::Status(e.status, e.message))
}

/// One read of request-body bytes from the client, bounded by the body timeout.
async fn read_client(shard: &Shard, conn: &mut Client) -> Result<(), ClientError> {
    let wait = crate::proxy::body_wait(shard, conn);
    match conn.stream.fill(&mut conn.buf, wait).await {
        None => Err(ClientError::Status(
            408,
            "request body not received in time",
        )),
        Some(Ok(0)) | Some(Err(_)) => Err(ClientError::Gone),
        Some(Ok(_)) => Ok(()),
    }
}

type AttemptResult = Result<(UpstreamConn, ResponseHead), Result<UpstreamError, ClientError>>;

/// One attempt: a connection, the request, the response head (awaited
/// with SSE keep-alive pings when `ping` is set).
#[allow(clippy::too_many_arguments)]
async fn attempt_once(
    shard: &Shard,
    conn: &mut Client,
    plan: &Plan<'_>,
    target: &Target,
    addr: crate::upstream::PoolKey,
    pending: &mut Pending,
    ai: &Ai,
    ping: Option<std::time::Duration>,
) -> AttemptResult {
    let limits = &shard.settings.limits;
    let mut up = match shard.pool.take(&addr) {
        Some(c) => {
            bump(&shard.metrics.pool_reuses);
            c
        }
        None => {
            bump(&shard.metrics.pool_connects);
            if target.tls && target.tls_client.is_none() {
                return Err(Ok(UpstreamError::Tls));
            }
            // Boxed: connecting (and the TLS handshake) is the rarer path.
            Box::pin(crate::upstream::connect(
                addr.addr,
                limits.connect_timeout,
                target.tls_client.as_ref(),
            ))
            .await
            .map_err(|e| {
                Ok(match e {
                    crate::upstream::ConnectError::Tcp(e) => UpstreamError::Connect(e),
                    crate::upstream::ConnectError::Tls(_) => UpstreamError::Tls,
                })
            })?
        }
    };
    let reused = up.reused;
    compose_head(conn, plan, target, pending, ai);
    let head_len = conn.up_head.len();
    let body = if ai.rewritten { &ai.body } else { &conn.body };
    if body.len() <= COALESCE {
        conn.up_head.extend_from_slice(body);
    }
    // An upstream that stops reading gets the upstream timeout, like one
    // that stops answering.
    let wait = limits.upstream_timeout;
    let mut sent = up.stream.send(&conn.up_head, wait).await;
    if sent && body.len() > COALESCE {
        sent = up.stream.send(body, wait).await;
    }
    conn.up_head.truncate(head_len);
    if !sent {
        return Err(Ok(UpstreamError::Closed { reused }));
    }
    stream_request_body(shard, conn, &mut up, pending).await?;
    let head = read_response_head(shard, &mut up, plan.is_head);
    let resp = super::keepalive::await_head(shard, conn, plan, ping, head)
        .await
        .map_err(|()| Err(ClientError::Gone))?
        .map_err(|e| {
            Ok(match e {
                UpstreamError::Closed { .. } => UpstreamError::Closed { reused },
                other => other,
            })
        })?;
    Ok((up, resp))
}

/// Copies the rest of a large request body from the client to the upstream.
async fn stream_request_body(
    shard: &Shard,
    conn: &mut Client,
    up: &mut UpstreamConn,
    pending: &mut Pending,
) -> Result<(), Result<UpstreamError, ClientError>> {
    let max = shard.settings.limits.max_body_bytes;
    loop {
        let (n, done) = match pending {
            Pending::None => return Ok(()),
            Pending::Length(left) => {
                if conn.buf.is_empty() {
                    read_client(shard, conn).await.map_err(Err)?;
                }
                let n = (conn.buf.len() as u64).min(*left) as usize;
                *left -= n as u64;
                (n, *left == 0)
            }
            Pending::Chunked(decoder, size) => {
                if conn.buf.is_empty() {
                    read_client(shard, conn).await.map_err(Err)?;
                }
                let p = feed(decoder, conn.buf.filled(), size).map_err(Err)?;
                if *size > max {
                    return Err(Err(ClientError::Status(413, "request body too large")));
                }
                (p.consumed, p.done)
            }
        };
        let wait = shard.settings.limits.upstream_timeout;
        if !up.stream.send(&conn.buf.filled()[..n], wait).await {
            // Part of the body is gone: no retry, and the client must stop too.
            return Err(Err(ClientError::Status(
                502,
                "upstream closed the connection while receiving the body",
            )));
        }
        conn.buf.consume(n);
        if done {
            *pending = Pending::None;
        }
    }
}

fn push_piece(out: &mut Vec<u8>, fwd: &[u8], p: Piece) {
    out.extend_from_slice(&fwd[p.0 as usize..p.1 as usize]);
}

fn injected(target: &Target, plan: &Plan<'_>, name: &[u8]) -> bool {
    target
        .inject_names
        .iter()
        .chain(plan.service.inject_names.iter())
        .any(|n| eq_ignore_case(n.as_bytes(), name))
}

/// The upstream request head, into `conn.up_head`.
fn compose_head(conn: &mut Client, plan: &Plan<'_>, target: &Target, pending: &Pending, ai: &Ai) {
    let out = &mut conn.up_head;
    let fwd = &conn.fwd;
    out.clear();
    push_piece(out, fwd, plan.method);
    out.push(b' ');
    let rest = &fwd[plan.path.0 as usize..plan.path.1 as usize];
    if !ai.path.is_empty() {
        out.extend_from_slice(&ai.path); // translated endpoint, with the target's prefix
    } else if !plan.rule.strip_path && !target.path.is_empty() {
        // Without strip_path the target's path is the whole upstream path
        // (TrustGate's forwarding: a rule `/post` to a target path `/post`).
        out.extend_from_slice(target.path.as_bytes());
    } else {
        out.extend_from_slice(target.path.as_bytes());
        if !rest.is_empty() {
            out.extend_from_slice(rest);
        } else if target.path.is_empty() {
            out.push(b'/');
        }
    }
    let query = plan.query.map(|q| &fwd[q.0 as usize..q.1 as usize]);
    crate::proxy::ai::push_query(out, target, query);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    match plan.host {
        Some(h) if plan.rule.preserve_host => push_piece(out, fwd, h),
        _ => out.extend_from_slice(target.authority.as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    for &(ns, ne, vs, ve) in &conn.fwd_headers {
        let name = &fwd[ns as usize..ne as usize];
        if injected(target, plan, name) || ai.drops_header(name) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&fwd[vs as usize..ve as usize]);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if let Some(p) = plan.forwarded_for {
        push_piece(out, fwd, p);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(conn.peer_ip.as_bytes());
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: http\r\n");
    if let Some(h) = plan.host {
        out.extend_from_slice(b"X-Forwarded-Host: ");
        push_piece(out, fwd, h);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Request-Id: ");
    out.extend_from_slice(plan.request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&target.inject);
    out.extend_from_slice(&plan.service.inject);
    match (plan.body, pending) {
        (BodyKind::Length(n), _) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(
                out,
                if ai.rewritten {
                    ai.body.len() as u64
                } else {
                    n
                },
            );
            out.extend_from_slice(b"\r\n");
        }
        (BodyKind::Chunked, _) => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

async fn read_response_head(
    shard: &Shard,
    up: &mut UpstreamConn,
    is_head: bool,
) -> Result<ResponseHead, UpstreamError> {
    let limits = http::Limits {
        max_head_bytes: UPSTREAM_HEAD_MAX,
        max_headers: http::MAX_HEADERS,
    };
    let timeout = shard.settings.limits.upstream_timeout;
    let deadline = std::time::Instant::now() + timeout;
    let mut any = false;
    loop {
        if !up.buf.is_empty() {
            any = true;
            match http::parse_response(up.buf.filled(), &limits, is_head) {
                Ok(Some(h)) if h.is_interim() => {
                    up.buf.consume(h.head_len);
                    continue;
                }
                Ok(Some(h)) if h.status == 101 => return Err(UpstreamError::Invalid),
                Ok(Some(h)) => return Ok(h),
                Ok(None) if !up.buf.is_full() => {}
                _ => return Err(UpstreamError::Invalid),
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match up.stream.fill(&mut up.buf, left).await {
            None => return Err(UpstreamError::Timeout),
            Some(Ok(0)) | Some(Err(_)) if !any => {
                return Err(UpstreamError::Closed { reused: false })
            }
            Some(Ok(0)) | Some(Err(_)) => return Err(UpstreamError::Invalid),
            Some(Ok(_)) => {}
        }
    }
}

struct Outcome {
    client: Next,
    upstream_reusable: bool,
}

/// How the response body reaches the client.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Relay {
    None,
    Length(u64),
    /// Chunked both sides: bytes pass through, the decoder only finds the end.
    Chunked,
    /// Chunked upstream, HTTP/1.0 client: decoded, delimited by close.
    Dechunk,
    UntilClose,
}

async fn forward_response(
    shard: &Shard,
    conn: &mut Client,
    plan: &mut Plan<'_>,
    target: &Target,
    up: &mut UpstreamConn,
    resp: &ResponseHead,
) -> Outcome {
    let relay = match resp.body {
        BodyKind::None => Relay::None,
        BodyKind::Length(n) => Relay::Length(n),
        BodyKind::Chunked if plan.client_version == 1 => Relay::Chunked,
        BodyKind::Chunked => Relay::Dechunk,
        BodyKind::UntilClose => Relay::UntilClose,
    };
    let client_keep_alive = plan.client_keep_alive
        && !shard.draining()
        && !matches!(relay, Relay::Dechunk | Relay::UntilClose);

    // The head, rewritten.
    let out = &mut conn.out;
    out.clear();
    push_response_head(
        out,
        up.buf.filled(),
        resp,
        plan.request_id.as_bytes(),
        &conn.plugin_headers,
        target,
        |_| false,
    );
    if relay == Relay::Chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if !client_keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if plan.client_version == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    up.buf.consume(resp.head_len);

    let finished = relay_body(shard, conn, up, relay, &mut plan.plugins).await;
    let client = if finished == Finished::Complete && client_keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    };
    Outcome {
        client,
        upstream_reusable: finished == Finished::Complete
            && resp.keep_alive
            && relay != Relay::UntilClose,
    }
}

#[derive(PartialEq, Eq)]
enum Finished {
    Complete,
    /// The upstream failed mid-body: the client sees a truncated response.
    Truncated,
    /// The client went away.
    ClientGone,
}

/// Streams the body: whatever is buffered goes out with the head, then each
/// upstream read is written to the client as it arrives.
async fn relay_body(
    shard: &Shard,
    conn: &mut Client,
    up: &mut UpstreamConn,
    relay: Relay,
    flow: &mut crate::plugin::Flow<'_>,
) -> Finished {
    let timeout = shard.settings.limits.upstream_timeout;
    let mut left = match relay {
        Relay::Length(n) => n,
        _ => u64::MAX,
    };
    let mut decoder = ChunkedDecoder::new();
    let mut first = true;
    loop {
        // Move what is buffered (and belongs to this body) into `out`.
        let (take, done) = match relay {
            Relay::None => (0, true),
            Relay::Length(_) => {
                let n = (up.buf.len() as u64).min(left) as usize;
                left -= n as u64;
                conn.out.extend_from_slice(&up.buf.filled()[..n]);
                conn.obs.body(&up.buf.filled()[..n]);
                (n, left == 0)
            }
            Relay::Chunked => match decoder.feed(up.buf.filled(), &mut |_| {}) {
                Ok(p) => {
                    conn.out.extend_from_slice(&up.buf.filled()[..p.consumed]);
                    conn.obs.stream(&up.buf.filled()[..p.consumed]);
                    (p.consumed, p.done)
                }
                Err(_) => return finish_truncated(shard, conn, first).await,
            },
            Relay::Dechunk => {
                let out = &mut conn.out;
                match decoder.feed(up.buf.filled(), &mut |d| out.extend_from_slice(d)) {
                    Ok(p) => (p.consumed, p.done),
                    Err(_) => return finish_truncated(shard, conn, first).await,
                }
            }
            Relay::UntilClose => {
                let n = up.buf.len();
                conn.out.extend_from_slice(up.buf.filled());
                (n, false)
            }
        };
        up.buf.consume(take);
        crate::plugin::observe_response(flow, &conn.out);
        if !conn.out.is_empty() || first {
            conn.obs.sent(conn.out.len());
            if !send(shard, &mut conn.stream, &conn.out).await {
                return Finished::ClientGone;
            }
            conn.out.clear();
        }
        first = false;
        if done {
            return Finished::Complete;
        }
        match up.stream.fill(&mut up.buf, timeout).await {
            Some(Ok(n)) if n > 0 => {}
            Some(Ok(_)) if relay == Relay::UntilClose => return Finished::Complete,
            _ => return Finished::Truncated,
        }
    }
}

async fn finish_truncated(shard: &Shard, conn: &mut Client, first: bool) -> Finished {
    if first {
        send(shard, &mut conn.stream, &conn.out).await;
    }
    conn.out.clear();
    Finished::Truncated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(reused: bool) -> UpstreamError {
        UpstreamError::Closed { reused }
    }

    #[test]
    fn retry_decisions() {
        let refused = UpstreamError::Connect(io::ErrorKind::ConnectionRefused.into());
        // A dropped pooled connection is retried once, whatever the budget.
        assert_eq!(
            after_failure(&closed(true), true, false, 0, 1, || false),
            Retry::Stale
        );
        assert_eq!(
            after_failure(&closed(true), true, true, 0, 1, || true),
            Retry::No
        );
        assert_eq!(
            after_failure(&closed(true), true, true, 0, 2, || true),
            Retry::Failover
        );
        // Failover needs budget, a healthy target and a body we still hold.
        assert_eq!(
            after_failure(&refused, true, false, 0, 2, || true),
            Retry::Failover
        );
        assert_eq!(
            after_failure(&refused, true, false, 1, 2, || true),
            Retry::No
        );
        assert_eq!(
            after_failure(&refused, true, false, 0, 2, || false),
            Retry::No
        );
        assert_eq!(
            after_failure(&refused, false, false, 0, 3, || true),
            Retry::No
        );
        assert_eq!(
            after_failure(&closed(true), false, false, 0, 3, || true),
            Retry::No
        );
        // A timeout or an invalid answer may have been acted on: never retried.
        assert_eq!(
            after_failure(&UpstreamError::Timeout, true, false, 0, 3, || true),
            Retry::No
        );
        assert_eq!(
            after_failure(&UpstreamError::Invalid, true, false, 0, 3, || true),
            Retry::No
        );
        // The healthy-target question is asked only when the rest allows a retry.
        assert_eq!(
            after_failure(
                &UpstreamError::Timeout,
                true,
                false,
                0,
                3,
                || unreachable!()
            ),
            Retry::No
        );
    }

    #[test]
    fn failures_answer_502_or_504() {
        let timed_out = UpstreamError::Connect(io::ErrorKind::TimedOut.into());
        assert_eq!(timed_out.answer().0, 504);
        assert_eq!(UpstreamError::Timeout.answer().0, 504);
        assert_eq!(closed(false).answer().0, 502);
        assert_eq!(UpstreamError::Tls.answer().0, 502);
    }
}
