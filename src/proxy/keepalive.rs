//! SSE keep-alive: a streaming request whose target has `sse_ping_secs`
//! and has not sent its response head within that time gets an early
//! `200 text/event-stream` head from the gateway, then a `: ping` comment
//! every `sse_ping_secs` until the upstream answers, so that idle timeouts
//! of load balancers between the client and ringgate do not cut a long
//! reasoning stream before its first token.
//!
//! A request is streaming when its inspected JSON body says
//! `"stream": true` or it accepts `text/event-stream`. Answers faster than
//! `sse_ping_secs` pass untouched (the upstream's own head and status).
//!
//! Once the early head is out ([`Client::early_sse`] is set), everything
//! else the exchange has to say continues that event stream
//! ([`rewrite`](super::rewrite) forwards the upstream's answer):
//! - a `2xx text/event-stream` answer: its events, re-framed (the
//!   upstream's own headers are gone);
//! - any other answer (an error status, or JSON where a stream was asked
//!   for): one `event: error` whose `data` is the upstream's JSON object
//!   with `"status": <upstream status>` added — a body without an `error`
//!   member is wrapped as `{"type":"error","error":{"type":"api_error",
//!   "message":...}}` — then the end of the stream;
//! - the gateway's own errors (504 upstream timeout, 502, 503):
//!   `event: error` with `{"type":"error","error":{"type":"api_error",
//!   "message":...,"code":<status>},"status":<status>}`.
//!
//! That shape is an error to both official SDKs: OpenAI's raises on an
//! `error` member, Anthropic's on `event: error`. Under translation
//! ([`super::ai`]) the error body is first mapped to the client's dialect.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::snapshot::Target;
use crate::http::headers::eq_ignore_case;
use crate::proxy::ai::Ai;
use crate::proxy::plan::Plan;
use crate::proxy::{send, Client, Next};
use crate::runtime::shard::Shard;

/// The early head the client got: how the rest of its stream is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EarlyHead {
    /// HTTP/1.1: chunked; HTTP/1.0: delimited by close.
    pub chunked: bool,
    /// The head did not say `Connection: close`.
    pub keep: bool,
}

/// How often to ping while waiting for `target`'s head; `None`: not at
/// all (not a streaming request, or the target has no `sse_ping_secs`).
pub(crate) fn interval(conn: &Client, ai: &Ai, target: &Target) -> Option<Duration> {
    let every = target.sse_ping?;
    (ai.streaming() || accepts_event_stream(conn)).then_some(every)
}

fn accepts_event_stream(conn: &Client) -> bool {
    conn.fwd_headers.iter().any(|&(ns, ne, vs, ve)| {
        eq_ignore_case(&conn.fwd[ns as usize..ne as usize], b"accept")
            && crate::provider::memfind(&conn.fwd[vs as usize..ve as usize], b"text/event-stream")
                .is_some()
    })
}

/// Awaits `head` (an attempt's wait for the upstream's response head),
/// pinging the client every `every` meanwhile. `Err`: the client went away.
pub(crate) async fn await_head<T>(
    shard: &Shard,
    conn: &mut Client,
    plan: &Plan<'_>,
    every: Option<Duration>,
    head: impl Future<Output = T>,
) -> Result<T, ()> {
    let Some(every) = every else {
        return Ok(head.await);
    };
    let mut head = pin!(head);
    loop {
        // The head future is only paused while a ping is written, never
        // dropped half-way; the timer is what gets dropped.
        let tick = async {
            glommio::timer::sleep(every).await;
            None
        };
        match futures_lite::future::or(async { Some(head.as_mut().await) }, tick).await {
            Some(r) => return Ok(r),
            None => {
                if !ping(shard, conn, plan).await {
                    return Err(());
                }
            }
        }
    }
}

/// One `: ping`, after the early head the first time.
async fn ping(shard: &Shard, conn: &mut Client, plan: &Plan<'_>) -> bool {
    conn.out.clear();
    let early = match conn.early_sse {
        Some(e) => e,
        None => {
            let early = EarlyHead {
                chunked: plan.client_version == 1,
                keep: plan.client_version == 1 && plan.client_keep_alive && !shard.draining(),
            };
            let out = &mut conn.out;
            out.extend_from_slice(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Request-Id: ",
            );
            out.extend_from_slice(plan.request_id.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&conn.plugin_headers);
            if early.chunked {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            }
            if !early.keep {
                out.extend_from_slice(b"Connection: close\r\n");
            }
            out.extend_from_slice(b"\r\n");
            conn.early_sse = Some(early);
            early
        }
    };
    frame(&mut conn.out, early, b": ping\n\n", false);
    conn.obs.sent(conn.out.len());
    send(shard, &mut conn.stream, &conn.out).await
}

/// Appends `data` framed for the client, and the end of the stream when
/// `last`.
fn frame(out: &mut Vec<u8>, early: EarlyHead, data: &[u8], last: bool) {
    if early.chunked {
        crate::http::encode_chunk(data, out);
        if last {
            out.extend_from_slice(crate::http::LAST_CHUNK);
        }
    } else {
        out.extend_from_slice(data);
    }
}

/// Ends the early stream with `event: error` carrying `data` (a JSON
/// object), recording `status` as the answer. The gateway's own errors
/// after the early head come here (see [`super::respond_error_with`]).
pub(crate) async fn error_event(
    shard: &Shard,
    conn: &mut Client,
    early: EarlyHead,
    status: u16,
    data: &Value,
    keep_alive: bool,
) -> Next {
    let mut event = b"event: error\ndata: ".to_vec();
    serde_json::to_writer(&mut event, data).unwrap_or_default();
    event.extend_from_slice(b"\n\n");
    conn.out.clear();
    frame(&mut conn.out, early, &event, true);
    conn.obs.answered_locally(status, conn.out.len());
    let sent = send(shard, &mut conn.stream, &conn.out).await;
    if sent && early.chunked && early.keep && keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// The data of a gateway error event.
pub(crate) fn gateway_error(status: u16, message: &str) -> Value {
    json!({"type": "error", "error": {"type": "api_error", "message": message, "code": status},
           "status": status})
}

/// The data of the event for an upstream's non-stream answer: its JSON
/// object (with `status` added), or a wrapped error.
pub(crate) fn upstream_error(status: u16, body: &[u8]) -> Value {
    let mut v = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) if m.get("error").is_some_and(|e| !e.is_null()) => Value::Object(m),
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            json!({"type": "error", "error": {"type": "api_error",
                   "message": format!("upstream answered {status} instead of an event stream: {text}")}})
        }
    };
    v["status"] = json!(status);
    v
}
