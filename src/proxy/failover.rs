//! Fallback between targets, called from [`exchange`](super::exchange).
//!
//! A replayable request (its body kept whole, within `--replay-body-bytes`)
//! whose attempt failed before any byte reached the client moves to the
//! next healthy target it has not tried, up to the rule's `retry_attempts`:
//!
//! - on a connect or TLS failure, and on a connection closed or reset
//!   before any response byte;
//! - on a `429`, `500`, `502`, `503` or `504` answer — only when an untried
//!   healthy target is left; the failed answer's body is read and dropped
//!   when it is small and arrives at once (the connection is pooled again),
//!   otherwise the connection is closed. Never pooled half-read.
//!
//! When every attempt fails the client gets the last upstream answer (or
//! the gateway's 502/504 for a transport failure).

use std::time::{Duration, Instant};

use crate::config::snapshot::Target;
use crate::http::{BodyKind, ResponseHead};
use crate::proxy::plan::Targets;
use crate::proxy::rewrite::Body;
use crate::runtime::shard::Shard;
use crate::upstream::pool::{PoolKey, UpstreamConn};

/// A failed answer's body is drained (and the connection kept) up to this size.
const DRAIN_MAX: u64 = 64 << 10;
/// ... and only if it arrives within this long.
const DRAIN_WAIT: Duration = Duration::from_millis(500);

/// Answers another target may replace.
pub(crate) fn falls_back(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// True when a healthy target that `allowed` accepts and that is not in
/// `avoid` is left.
pub(crate) fn untried(
    shard: &Shard,
    targets: &Targets<'_>,
    avoid: &[u64],
    allowed: impl Fn(&Target) -> bool,
) -> bool {
    match targets {
        Targets::Balanced(up) => shard.balancer.has_untried(up, avoid, allowed),
        Targets::Fixed(_) => false,
    }
}

/// True when any target (tried or not) is still healthy: a transport
/// failure is retried only then, else its own 502/504 is the answer.
pub(crate) fn any_healthy(
    shard: &Shard,
    targets: &Targets<'_>,
    allowed: impl Fn(&Target) -> bool,
) -> bool {
    match targets {
        Targets::Balanced(up) => shard.balancer.has_healthy(up, allowed),
        Targets::Fixed(_) => true,
    }
}

/// Drops a failed answer: its body is read to the end and the connection
/// pooled when that is cheap, else the connection is closed.
pub(crate) async fn discard(
    shard: &Shard,
    mut up: UpstreamConn,
    resp: &ResponseHead,
    addr: PoolKey,
) {
    up.buf.consume(resp.head_len);
    let drained = match resp.body {
        BodyKind::None => true,
        BodyKind::Length(n) if n <= DRAIN_MAX => drain(&mut up, resp.body, n).await,
        BodyKind::Chunked => drain(&mut up, resp.body, DRAIN_MAX).await,
        _ => false,
    };
    if drained && resp.keep_alive {
        shard.pool.put(addr, up);
    }
}

/// Reads and drops a body of at most `max` decoded bytes arriving within
/// [`DRAIN_WAIT`]; true when it ended.
async fn drain(up: &mut UpstreamConn, kind: BodyKind, max: u64) -> bool {
    let deadline = Instant::now() + DRAIN_WAIT;
    let mut body = Body::new(kind);
    let mut piece = Vec::new();
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match body.next_piece(up, &mut piece, wait).await {
            Ok(true) => return true,
            Ok(false) if piece.len() as u64 <= max => {}
            _ => return false,
        }
    }
}
