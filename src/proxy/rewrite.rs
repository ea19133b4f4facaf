//! Responses the gateway rewrites instead of relaying: translated to the
//! client's dialect (see [`ai`](super::ai)), masked by `data_masking` with
//! `mask_response`, or both (translated first, so the masks apply to what
//! the client reads).
//!
//! An SSE answer is rewritten event by event as it arrives and re-chunked
//! (close-delimited for an HTTP/1.0 client): a value is masked when it lies
//! within one event. Anything else is read whole, up to
//! [`MAX_REWRITTEN_BODY`], rewritten, and sent with a `Content-Length`; a
//! larger body, a compressed one (the request went out without
//! `Accept-Encoding`, so only an upstream that ignores that sends one), or a
//! body cut short is answered with 502 rather than passed on unmasked.
//!
//! After an early SSE head ([`keepalive`](super::keepalive)) every answer
//! comes here: a `2xx` event stream continues the client's stream without a
//! head of its own; anything else becomes one `event: error`.

use serde_json::Value;

use crate::config::snapshot::Target;
use crate::http::chunked::{encode_chunk, ChunkedDecoder, LAST_CHUNK};
use crate::http::headers::eq_ignore_case;
use crate::http::{BodyKind, ResponseHead};
use crate::plugin::data_masking::DataMasking;
use crate::provider::translate::{self, Direction, StreamTranslator};
use crate::provider::{self, sse};
use crate::proxy::ai::Ai;
use crate::proxy::head::push_response_head;
use crate::proxy::plan::Plan;
use crate::proxy::{respond_error, send, Client, Next};
use crate::runtime::shard::Shard;
use crate::upstream::pool::UpstreamConn;

/// A rewritten non-streaming response is read whole up to this size.
pub const MAX_REWRITTEN_BODY: usize = 16 << 20;

/// Forwards the response to `plan`'s request, rewritten. Returns what the
/// client connection does next and whether the upstream connection can be
/// pooled.
pub(crate) async fn forward(
    shard: &Shard,
    conn: &mut Client,
    plan: &mut Plan<'_>,
    target: &Target,
    up: &mut UpstreamConn,
    resp: &ResponseHead,
    ai: &mut Ai,
) -> (Next, bool) {
    let mask = plan.plugins.mask_response;
    let buf = up.buf.filled();
    let is_sse = resp
        .header(buf, "content-type")
        .is_some_and(|v| provider::memfind(v, b"event-stream").is_some());
    let encoded = resp
        .header(buf, "content-encoding")
        .is_some_and(|v| !v.trim_ascii().eq_ignore_ascii_case(b"identity"));
    let rid = plan.request_id;
    let early = conn.early_sse;
    let keep = plan.client_keep_alive && !shard.draining() && early.is_none_or(|e| e.keep);
    if encoded {
        let next = respond_error(
            shard,
            conn,
            502,
            "upstream sent a compressed body the gateway must rewrite",
            rid.as_bytes(),
            keep,
        )
        .await;
        return (next, false);
    }
    let translate = ai.translate;
    // Our own framing and type replace the upstream's.
    let skip = |name: &[u8]| {
        eq_ignore_case(name, b"content-length")
            || (translate.is_some() && eq_ignore_case(name, b"content-type"))
    };
    conn.out.clear();
    push_response_head(
        &mut conn.out,
        buf,
        resp,
        rid.as_bytes(),
        &conn.plugin_headers,
        target,
        skip,
    );
    let kind = resp.body;
    up.buf.consume(resp.head_len);
    let mut body = Body::new(kind);
    let timeout = shard.settings.limits.upstream_timeout;
    let reusable = resp.keep_alive && kind != BodyKind::UntilClose;

    if is_sse && (resp.status < 300 || (translate.is_none() && early.is_none())) {
        // HTTP/1.0 clients get a close-delimited stream.
        let chunked = plan.client_version == 1;
        if translate.is_some() {
            conn.out
                .extend_from_slice(b"Content-Type: text/event-stream\r\n");
        }
        if chunked {
            conn.out
                .extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        if !(keep && chunked) {
            conn.out.extend_from_slice(b"Connection: close\r\n");
        }
        conn.out.extend_from_slice(b"\r\n");
        if early.is_some() {
            conn.out.clear(); // the client has its head already
        }
        conn.obs.sent(conn.out.len());
        if !conn.out.is_empty() && !send(shard, &mut conn.stream, &conn.out).await {
            return (Next::Close, false);
        }
        let mut stream = Stream {
            translator: translate.map(|d| StreamTranslator::new(d, ai.include_usage)),
            mask,
            carry: Vec::new(),
            scratch: Vec::new(),
        };
        let mut piece = Vec::new();
        let mut events = Vec::new();
        loop {
            piece.clear();
            let r = body.next_piece(up, &mut piece, timeout).await;
            events.clear();
            let Ok(done) = r else {
                return (Next::Close, false); // truncated: the client sees no end chunk
            };
            if stream.feed(&piece, done, &mut events).is_err() {
                return (Next::Close, false);
            }
            conn.out.clear();
            if chunked {
                encode_chunk(&events, &mut conn.out);
                if done {
                    conn.out.extend_from_slice(LAST_CHUNK);
                }
            } else {
                conn.out.extend_from_slice(&events);
            }
            conn.obs.sent(conn.out.len());
            conn.obs.stream(&events);
            crate::plugin::observe_response(&mut plan.plugins, &events);
            if !conn.out.is_empty() && !send(shard, &mut conn.stream, &conn.out).await {
                return (Next::Close, false);
            }
            if done {
                if let Some(tr) = &stream.translator {
                    ai.usage = tr.usage;
                    conn.obs.reported_usage(
                        ai.usage.prompt_tokens,
                        ai.usage.completion_tokens,
                        ai.model.as_deref(),
                    );
                }
                let next = if keep && chunked {
                    Next::KeepAlive
                } else {
                    Next::Close
                };
                return (next, reusable);
            }
        }
    }

    // Anything else: read whole, rewrite, send with a length.
    let mut piece = Vec::new();
    loop {
        match body.next_piece(up, &mut piece, timeout).await {
            Ok(true) => break,
            Ok(false) if piece.len() <= MAX_REWRITTEN_BODY => {}
            _ => {
                let next = respond_error(
                    shard,
                    conn,
                    502,
                    "upstream response could not be read whole to rewrite it",
                    rid.as_bytes(),
                    false,
                )
                .await;
                return (next, false);
            }
        }
    }
    let mut out_body = match translate {
        None => piece,
        Some(dir) => match translate_whole(dir, resp.status, &piece, ai) {
            Some(v) => {
                conn.out
                    .extend_from_slice(b"Content-Type: application/json\r\n");
                serde_json::to_vec(&v).unwrap_or_default()
            }
            None => {
                let next = respond_error(
                    shard,
                    conn,
                    502,
                    "upstream sent invalid JSON",
                    rid.as_bytes(),
                    keep,
                )
                .await;
                return (next, reusable);
            }
        },
    };
    if translate.is_some() {
        conn.obs.reported_usage(
            ai.usage.prompt_tokens,
            ai.usage.completion_tokens,
            ai.model.as_deref(),
        );
    }
    if let Some(m) = mask {
        let mut masked = Vec::new();
        if m.mask(&out_body, &mut masked) {
            out_body = masked;
        }
    }
    crate::plugin::observe_response(&mut plan.plugins, &out_body);
    if translate.is_none() {
        conn.obs.body(&out_body);
    }
    if let Some(early) = early {
        let data = super::keepalive::upstream_error(resp.status, &out_body);
        let next =
            super::keepalive::error_event(shard, conn, early, resp.status, &data, keep).await;
        return (next, reusable);
    }
    conn.out.extend_from_slice(b"Content-Length: ");
    crate::http::errors::push_decimal(&mut conn.out, out_body.len() as u64);
    conn.out.extend_from_slice(b"\r\n");
    if !keep {
        conn.out.extend_from_slice(b"Connection: close\r\n");
    } else if plan.client_version == 0 {
        conn.out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    conn.out.extend_from_slice(b"\r\n");
    if !plan.is_head {
        conn.out.extend_from_slice(&out_body);
    }
    conn.obs.sent(conn.out.len());
    if !send(shard, &mut conn.stream, &conn.out).await {
        return (Next::Close, false);
    }
    let next = if keep { Next::KeepAlive } else { Next::Close };
    (next, reusable)
}

/// A whole JSON answer (or error) in the client's dialect; `None` when a
/// success body is not JSON.
fn translate_whole(dir: Direction, status: u16, body: &[u8], ai: &mut Ai) -> Option<Value> {
    if status >= 300 {
        return Some(match dir {
            Direction::AnthropicToOpenAi => translate::error_to_openai(body, status),
            Direction::OpenAiToAnthropic => translate::error_to_anthropic(body, status),
        });
    }
    let v = serde_json::from_slice::<Value>(body).ok()?;
    provider::scan_usage(body, &mut ai.usage);
    Some(match dir {
        Direction::AnthropicToOpenAi => translate::anthropic_to_openai_response(&v),
        Direction::OpenAiToAnthropic => translate::openai_to_anthropic_response(&v),
    })
}

/// An upstream body read piece by piece, decoded (its head already
/// consumed from the connection's buffer).
pub(crate) struct Body {
    kind: BodyKind,
    decoder: ChunkedDecoder,
    left: u64,
}

impl Body {
    pub fn new(kind: BodyKind) -> Body {
        Body {
            kind,
            decoder: ChunkedDecoder::new(),
            left: match kind {
                BodyKind::Length(n) => n,
                _ => u64::MAX,
            },
        }
    }

    /// Moves the next decoded bytes of `up` into `out`, reading once (within
    /// `timeout`) when nothing is buffered. `Ok(true)`: the body is complete.
    pub async fn next_piece(
        &mut self,
        up: &mut UpstreamConn,
        out: &mut Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<bool, ()> {
        loop {
            match self.kind {
                BodyKind::None => return Ok(true),
                BodyKind::Length(_) => {
                    let n = (up.buf.len() as u64).min(self.left) as usize;
                    out.extend_from_slice(&up.buf.filled()[..n]);
                    up.buf.consume(n);
                    self.left -= n as u64;
                    if n > 0 || self.left == 0 {
                        return Ok(self.left == 0);
                    }
                }
                BodyKind::Chunked => {
                    let before = out.len();
                    let p = self
                        .decoder
                        .feed(up.buf.filled(), &mut |d| out.extend_from_slice(d))
                        .map_err(|_| ())?;
                    up.buf.consume(p.consumed);
                    if p.done {
                        return Ok(true);
                    }
                    if out.len() > before {
                        return Ok(false);
                    }
                }
                BodyKind::UntilClose => {
                    let n = up.buf.len();
                    out.extend_from_slice(up.buf.filled());
                    up.buf.consume(n);
                    if n > 0 {
                        return Ok(false);
                    }
                }
            }
            match up.stream.fill(&mut up.buf, timeout).await {
                Some(Ok(n)) if n > 0 => {}
                Some(Ok(_)) if self.kind == BodyKind::UntilClose => return Ok(true),
                _ => return Err(()),
            }
        }
    }
}

/// An SSE stream being rewritten: translated, then masked whole event by
/// whole event.
struct Stream<'a> {
    translator: Option<StreamTranslator>,
    mask: Option<&'a DataMasking>,
    /// The start of an event not complete yet.
    carry: Vec<u8>,
    scratch: Vec<u8>,
}

impl Stream<'_> {
    /// Rewrites `bytes` (the next piece of the decoded body; `done`: the
    /// last) into `out`: every event completed so far. `Err` when an event
    /// grows past [`sse::MAX_EVENT`].
    fn feed(&mut self, bytes: &[u8], done: bool, out: &mut Vec<u8>) -> Result<(), ()> {
        let Some(mask) = self.mask else {
            if let Some(tr) = &mut self.translator {
                tr.feed(bytes, out)?;
                if done {
                    tr.finish(out);
                }
            } else {
                out.extend_from_slice(bytes);
            }
            return Ok(());
        };
        let old_len = self.carry.len();
        match &mut self.translator {
            Some(tr) => {
                tr.feed(bytes, &mut self.carry)?;
                if done {
                    tr.finish(&mut self.carry);
                }
            }
            None => self.carry.extend_from_slice(bytes),
        }
        let end = if done {
            self.carry.len()
        } else {
            events_end(&self.carry, old_len)
        };
        let mut start = 0;
        while start < end {
            let stop = start + event_len(&self.carry[start..end]);
            let event = &self.carry[start..stop];
            if mask.mask(event, &mut self.scratch) {
                out.extend_from_slice(&self.scratch);
            } else {
                out.extend_from_slice(event);
            }
            start = stop;
        }
        self.carry.drain(..end);
        if self.carry.len() > sse::MAX_EVENT {
            return Err(());
        }
        Ok(())
    }
}

/// The length of the first event of `b` with the blank line that ends it
/// (`\n\n` or `\n\r\n`), or all of `b` when none ends in it.
fn event_len(b: &[u8]) -> usize {
    let mut i = 0;
    while let Some(nl) = b[i..].iter().position(|&c| c == b'\n') {
        let at = i + nl;
        match b.get(at + 1) {
            Some(b'\n') => return at + 2,
            Some(b'\r') if b.get(at + 2) == Some(&b'\n') => return at + 3,
            _ => i = at + 1,
        }
    }
    b.len()
}

/// The end of the last complete event in `b` (0 when there is none),
/// looking only at the blank lines that end at or after `from`: the bytes
/// before it held no complete event. Linear in what is new, so an upstream
/// dripping one endless event costs no rescans.
fn events_end(b: &[u8], from: usize) -> usize {
    (from.max(1)..b.len())
        .rev()
        .find(|&i| {
            b[i] == b'\n'
                && (b[i - 1] == b'\n' || (i >= 2 && b[i - 1] == b'\r' && b[i - 2] == b'\n'))
        })
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends_event(b: &[u8]) -> bool {
        b.ends_with(b"\n\n") || b.ends_with(b"\n\r\n")
    }

    fn masker() -> DataMasking {
        DataMasking::new(
            serde_json::from_value(
                serde_json::json!({"entities": ["email"], "mask_response": true}),
            )
            .unwrap(),
            "s",
        )
        .unwrap()
    }

    #[test]
    fn events_are_found_whatever_the_line_endings() {
        assert_eq!(event_len(b"data: a\n\ndata: b\n\n"), 9);
        assert_eq!(event_len(b"data: a\r\n\r\ndata: b"), 11);
        assert_eq!(event_len(b"data: a\ndata: b"), 15);
        assert_eq!(events_end(b"data: a\n\ndata: b\n\ndata: c", 0), 18);
        assert_eq!(events_end(b"data: a\n\ndata: b\r\n\r\ndata: c", 0), 20);
        assert_eq!(events_end(b"data: a\ndata", 0), 0);
        assert_eq!(events_end(b": ping\n\n", 0), 8);
        // A blank line split across two feeds is found from the new bytes.
        assert_eq!(events_end(b"data: a\n\n", 8), 9);
    }

    #[test]
    fn a_stream_is_masked_event_by_event_however_it_is_split() {
        let m = masker();
        let input = b"data: {\"c\":\"mail bob@example.com\"}\n\n: keep\n\ndata: {\"c\":\"x@y.io z\"}\r\n\r\ndata: [DONE]\n\n";
        let want = "data: {\"c\":\"mail [MASKED]\"}\n\n: keep\n\ndata: {\"c\":\"[MASKED] z\"}\r\n\r\ndata: [DONE]\n\n";
        for split in 1..input.len() {
            let mut s = Stream {
                translator: None,
                mask: Some(&m),
                carry: Vec::new(),
                scratch: Vec::new(),
            };
            let mut out = Vec::new();
            for (i, piece) in input.chunks(split).enumerate() {
                let done = (i + 1) * split >= input.len();
                s.feed(piece, done, &mut out).unwrap();
                // Nothing of an incomplete event goes out early.
                assert!(out.is_empty() || ends_event(&out), "split {split}");
            }
            assert_eq!(String::from_utf8_lossy(&out), want, "split {split}");
        }
    }

    #[test]
    fn translated_events_are_masked_too() {
        let m = masker();
        let mut s = Stream {
            translator: Some(StreamTranslator::new(Direction::AnthropicToOpenAi, false)),
            mask: Some(&m),
            carry: Vec::new(),
            scratch: Vec::new(),
        };
        let input = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":3}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"mail eve@example.com\"}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let mut out = Vec::new();
        let (a, b) = input.as_bytes().split_at(200);
        s.feed(a, false, &mut out).unwrap();
        s.feed(b, true, &mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("chat.completion.chunk"), "{text}");
        assert!(text.contains("mail [MASKED]"), "{text}");
        assert!(!text.contains("eve@example.com"), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    }

    #[test]
    fn an_endless_event_is_refused() {
        let m = masker();
        let mut s = Stream {
            translator: None,
            mask: Some(&m),
            carry: Vec::new(),
            scratch: Vec::new(),
        };
        let big = vec![b'a'; 1 << 20];
        let mut out = Vec::new();
        let mut r = Ok(());
        for _ in 0..5 {
            r = r.and(s.feed(&big, false, &mut out));
        }
        assert!(r.is_err());
        assert!(out.is_empty());
    }
}
