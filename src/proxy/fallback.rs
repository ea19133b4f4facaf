//! Model fallbacks and aliases, called from [`exchange`](super::exchange).
//!
//! A rule's `fallbacks` (see [`crate::config::fallback`]) is an ordered
//! chain of (upstream, model) steps after the rule's own service (step 0).
//! When a step's last attempt fails — a `429` or `5xx` answer, a timeout, a
//! connect failure, no healthy target, or a `400` reporting that the prompt
//! exceeds the model's context — the next step is tried: its upstream, its
//! model written into the body, and the request translated when that
//! upstream speaks another dialect (its answer is translated back, streams
//! included). The safety rules are failover's: only a request whose body is
//! held whole and was read as JSON, and never once a byte (an early SSE head)
//! reached the client. Within a step, the rule's `retry_attempts` failover
//! between the upstream's targets runs as before.
//!
//! Answers on such a rule say which step served them: `X-Model-Used` (the
//! model sent upstream) and `X-Fallback-Step` (0 = the rule's service).

use std::time::{Duration, Instant};

use crate::http::errors::push_decimal;
use crate::http::{BodyKind, ResponseHead};
use crate::proxy::ai::Ai;
use crate::proxy::plan::{Plan, Targets};
use crate::proxy::Client;
use crate::upstream::pool::UpstreamConn;

/// Why a step was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Reason {
    TooMany,
    Server,
    Timeout,
    ContextLength,
    Connect,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::TooMany => "429",
            Reason::Server => "5xx",
            Reason::Timeout => "timeout",
            Reason::ContextLength => "context_length",
            Reason::Connect => "connect",
        }
    }

    /// The reason an upstream answer with this status gives, if any (a
    /// `400` is a reason only when its body says so: [`context_length`]).
    pub fn of_status(status: u16) -> Option<Reason> {
        match status {
            429 => Some(Reason::TooMany),
            500..=599 => Some(Reason::Server),
            _ => None,
        }
    }
}

fn count(gateway: u64, reason: Reason) {
    crate::metrics::fallbacks::count(gateway, reason.label());
}

/// Whether the request may leave step `step` for the next one.
pub(crate) fn may_step(
    plan: &Plan<'_>,
    conn: &Client,
    ai: &Ai,
    step: u8,
    replayable: bool,
) -> bool {
    let Some(fb) = &plan.rule.fallback else {
        return false;
    };
    usize::from(step) < fb.steps.len() && replayable && ai.inspected() && conn.early_sse.is_none()
}

/// Moves the request to the next step (the caller checked [`may_step`]):
/// its upstream becomes the plan's targets and its model the request's.
pub(crate) fn step_on(plan: &mut Plan<'_>, ai: &mut Ai, step: &mut u8, reason: Reason) {
    let Some(fb) = &plan.rule.fallback else {
        return;
    };
    let Some((up, model)) = fb.steps.get(usize::from(*step)) else {
        return;
    };
    log::debug!(
        "request {}: fallback step {} ({}) after {}",
        String::from_utf8_lossy(plan.request_id.as_bytes()),
        *step + 1,
        model,
        reason.label()
    );
    count(plan.gateway.key, reason);
    // A budget settles at the step's price (the requested one when it has none).
    let price = plan.plugins.prices.and_then(|p| p.get(model.as_bytes()));
    if let (Some(b), Some(p)) = (plan.plugins.budget.as_mut(), price) {
        b.reprice(p);
    }
    plan.targets = Targets::Balanced(&plan.gateway.upstreams[*up]);
    ai.use_model(model);
    *step += 1;
}

/// `X-Model-Used` and `X-Fallback-Step`, into the answer's extra headers,
/// and both into the access log, on a rule with fallbacks or aliases.
pub(crate) fn served(conn: &mut Client, plan: &Plan<'_>, model: Option<&str>, step: u8) {
    if plan.rule.fallback.is_none() {
        return;
    }
    conn.obs.served(model, step);
    let out = &mut conn.plugin_headers;
    if let Some(m) = model.filter(|m| m.bytes().all(|b| b.is_ascii_graphic() || b == b' ')) {
        out.extend_from_slice(b"X-Model-Used: ");
        out.extend_from_slice(m.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Fallback-Step: ");
    push_decimal(out, u64::from(step));
    out.extend_from_slice(b"\r\n");
}

/// An error body is read whole into the connection's buffer (not consumed,
/// so the answer can still be relayed) when it is at most this long ...
const PEEK_MAX: usize = 16 << 10;
/// ... and arrives within this long.
const PEEK_WAIT: Duration = Duration::from_millis(500);

/// Whether a `400` answer reports a prompt longer than the model's
/// context: its body (small, arriving at once) is read into `up.buf`
/// behind the head and searched; it stays there for the relay.
pub(crate) async fn context_length(up: &mut UpstreamConn, resp: &ResponseHead) -> bool {
    let want = match resp.body {
        BodyKind::Length(n) if n as usize <= PEEK_MAX => Some(resp.head_len + n as usize),
        BodyKind::Chunked => None,
        _ => return false,
    };
    let deadline = Instant::now() + PEEK_WAIT;
    loop {
        let body = &up.buf.filled()[resp.head_len..];
        let complete = match want {
            Some(w) => up.buf.len() >= w,
            None => body.ends_with(b"0\r\n\r\n"),
        };
        if complete {
            return says_context_length(body);
        }
        if body.len() > PEEK_MAX || up.buf.is_full() {
            return false;
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match up.stream.fill(&mut up.buf, wait).await {
            Some(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
}

/// OpenAI's `context_length_exceeded` code, Anthropic's "prompt is too
/// long" and the "maximum context length" wording of OpenAI-compatible
/// servers.
pub(crate) fn says_context_length(body: &[u8]) -> bool {
    const MARKS: [&[u8]; 4] = [
        b"context_length_exceeded",
        b"prompt is too long",
        b"maximum context length",
        b"context window",
    ];
    let lower = body.to_ascii_lowercase();
    MARKS
        .iter()
        .any(|m| lower.windows(m.len()).any(|w| w == *m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_length_errors_are_recognised() {
        assert!(says_context_length(
            br#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#
        ));
        assert!(says_context_length(
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#
        ));
        assert!(!says_context_length(
            br#"{"error":{"message":"messages is required","type":"invalid_request_error"}}"#
        ));
    }

    #[test]
    fn reasons_from_status() {
        assert_eq!(Reason::of_status(429), Some(Reason::TooMany));
        assert_eq!(Reason::of_status(503), Some(Reason::Server));
        assert_eq!(Reason::of_status(400), None);
        assert_eq!(Reason::of_status(200), None);
    }
}
