//! The AI side of one exchange: model routing and dialect translation,
//! wired into [`exchange`](super::exchange) at three points — after the
//! body is buffered ([`Ai::inspect`]), per attempt ([`Ai::prepare`], which
//! also filters targets by model) and on the response
//! ([`forward_translated`]). The transformations themselves are pure
//! functions in [`crate::provider`].
//!
//! Model routing needs the JSON body, so it happens only when the body was
//! buffered whole: a `Content-Length` body of at most `--replay-body-bytes`
//! (the same limit that makes a request replayable). Above it — or with a
//! chunked request body — model routing is skipped (any target may serve
//! it) and a request that would need translation is refused with 413.

use serde_json::Value;

use crate::config::snapshot::{Target, Upstream};
use crate::http::chunked::ChunkedDecoder;
use crate::http::{BodyKind, ResponseHead};
use crate::provider::translate::{self, Direction, StreamTranslator};
use crate::provider::{self, Format, Usage};
use crate::proxy::plan::{Plan, Targets};
use crate::proxy::{timed, Client, Next};
use crate::runtime::shard::Shard;
use crate::upstream::pool::UpstreamConn;

/// A translated non-streaming response is read whole up to this size.
const MAX_TRANSLATED_BODY: usize = 16 << 20;

/// Per-request AI state; `Ai::default()` does nothing.
#[derive(Default)]
pub(crate) struct Ai {
    /// The request's model (the body's, or a target's `default_model`).
    pub model: Option<String>,
    /// The client's dialect, when the request is a buffered JSON chat call.
    client: Option<Format>,
    /// The body was buffered and could be inspected.
    inspected: bool,
    include_usage: bool,
    stream: bool,
    /// The body, parsed once when a rewrite needs it.
    parsed: Option<Value>,
    /// For the current attempt: the rewritten body and path, and the
    /// response translation.
    pub body: Vec<u8>,
    pub path: Vec<u8>,
    pub rewritten: bool,
    pub translate: Option<Direction>,
    /// Tokens reported by the provider (translated responses).
    pub usage: Usage,
}

/// True when some target of the upstream cares about the body.
fn needs_body(up: &Upstream, client: Option<Format>) -> bool {
    up.targets.iter().any(|t| {
        !t.models.is_empty() || t.default_model.is_some() || client.is_some_and(|c| c != t.format)
    })
}

impl Ai {
    /// Reads `model` (and `stream`) from the buffered body when a target
    /// routes by model or needs translation. `Err`: the 400 to answer.
    pub fn inspect(plan: &Plan<'_>, fwd: &[u8], body: &[u8], buffered: bool) -> Result<Ai, String> {
        let mut ai = Ai::default();
        let Targets::Balanced(up) = plan.targets else {
            return Ok(ai);
        };
        let method = &fwd[plan.method.0 as usize..plan.method.1 as usize];
        let path = &fwd[plan.path.0 as usize..plan.path.1 as usize];
        let client = if method == b"POST" {
            Format::of_path(path)
        } else {
            None
        };
        if !needs_body(up, client) {
            return Ok(ai);
        }
        ai.client = client;
        if !buffered || !matches!(plan.body, BodyKind::Length(_)) {
            return Ok(ai);
        }
        let peek = provider::peek(body)?;
        ai.inspected = true;
        ai.model = peek.model.map(|m| m.into_owned());
        ai.stream = peek.stream == Some(true);
        if let Some(m) = &ai.model {
            if !up.targets.iter().any(|t| ai.serves(t)) {
                return Err(format!("model {m:?} is not served by this route"));
            }
        }
        Ok(ai)
    }

    /// Whether `target` may serve this request's model.
    pub fn serves(&self, target: &Target) -> bool {
        match &self.model {
            Some(m) if self.inspected => {
                target.models.is_empty() || target.models.iter().any(|x| x == m)
            }
            _ => true,
        }
    }

    /// Makes the body and path for `target`. `Err((status, message))`:
    /// refuse the request.
    pub fn prepare(
        &mut self,
        target: &Target,
        fwd_path: &[u8],
        body: &[u8],
    ) -> Result<(), (u16, String)> {
        self.rewritten = false;
        self.translate = None;
        self.path.clear();
        let translate_to = self.client.filter(|&c| c != target.format);
        if translate_to.is_some() && !self.inspected {
            return Err((
                413,
                "request body too large (or chunked) to translate for this provider".into(),
            ));
        }
        let fill_model = self.model.is_none() && target.default_model.is_some() && self.inspected;
        if translate_to.is_none() && !fill_model {
            return Ok(());
        }
        if self.parsed.is_none() {
            // Parsed once per request, only when some target needs a rewrite.
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| (400, format!("invalid JSON body: {e}")))?;
            self.parsed = Some(v);
        }
        let mut v = self.parsed.clone().unwrap_or_default();
        if fill_model {
            v["model"] = Value::String(target.default_model.clone().unwrap_or_default());
        }
        if let Some(client) = translate_to {
            self.include_usage = v
                .get("stream_options")
                .and_then(|o| o.get("include_usage"))
                .and_then(Value::as_bool)
                == Some(true);
            v = match (client, target.format) {
                (Format::OpenAi, _) => {
                    self.translate = Some(Direction::AnthropicToOpenAi);
                    translate::openai_to_anthropic_request(&v)
                }
                (Format::Anthropic, _) => {
                    self.translate = Some(Direction::OpenAiToAnthropic);
                    translate::anthropic_to_openai_request(&v)
                }
            }
            .map_err(|e| (400, e))?;
            self.path.extend_from_slice(target.path.as_bytes());
            provider::translate_path(fwd_path, client, target.format, &mut self.path);
        }
        self.body.clear();
        serde_json::to_writer(&mut self.body, &v).map_err(|e| (500, e.to_string()))?;
        self.rewritten = true;
        Ok(())
    }

    /// Request headers not forwarded under translation: the upstream must
    /// answer uncompressed, and dialect-specific headers mean nothing to the
    /// other side.
    pub fn drops_header(&self, name: &[u8]) -> bool {
        self.translate.is_some()
            && [
                &b"accept-encoding"[..],
                b"anthropic-version",
                b"anthropic-beta",
                b"openai-organization",
            ]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
    }
}

/// Moves the next decoded body bytes of `up` into `out`, reading once when
/// nothing is buffered. `Ok(true)`: the body is complete.
async fn next_piece(
    shard: &Shard,
    up: &mut UpstreamConn,
    kind: BodyKind,
    decoder: &mut ChunkedDecoder,
    left: &mut u64,
    out: &mut Vec<u8>,
) -> Result<bool, ()> {
    loop {
        let done = match kind {
            BodyKind::None => return Ok(true),
            BodyKind::Length(_) => {
                let n = (up.buf.len() as u64).min(*left) as usize;
                out.extend_from_slice(&up.buf.filled()[..n]);
                up.buf.consume(n);
                *left -= n as u64;
                if n > 0 || *left == 0 {
                    return Ok(*left == 0);
                }
                false
            }
            BodyKind::Chunked => {
                let before = out.len();
                let p = decoder
                    .feed(up.buf.filled(), &mut |d| out.extend_from_slice(d))
                    .map_err(|_| ())?;
                up.buf.consume(p.consumed);
                if p.done {
                    return Ok(true);
                }
                if out.len() > before {
                    return Ok(false);
                }
                false
            }
            BodyKind::UntilClose => {
                let n = up.buf.len();
                out.extend_from_slice(up.buf.filled());
                up.buf.consume(n);
                if n > 0 {
                    return Ok(false);
                }
                false
            }
        };
        debug_assert!(!done);
        match timed(
            shard.settings.limits.upstream_timeout,
            up.buf.fill_from(&mut up.stream),
        )
        .await
        {
            Some(Ok(n)) if n > 0 => {}
            Some(Ok(_)) if kind == BodyKind::UntilClose => return Ok(true),
            _ => return Err(()),
        }
    }
}

fn push_head(
    out: &mut Vec<u8>,
    target: &Target,
    status: u16,
    content_type: &str,
    rid: &[u8],
    len: Option<usize>,
    keep: bool,
) {
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\n",
            crate::http::errors::reason(status)
        )
        .as_bytes(),
    );
    out.extend_from_slice(b"X-Request-Id: ");
    out.extend_from_slice(rid);
    out.extend_from_slice(b"\r\n");
    super::failover::push_selected_target(out, target);
    match len {
        Some(n) => out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes()),
        None => out.extend_from_slice(b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"),
    }
    if !keep {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if !data.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

/// Forwards a response from a target of the other dialect, translated:
/// SSE event by event (re-chunked to the client), JSON bodies whole.
/// Returns what the client connection does next and whether the upstream
/// connection can be pooled.
pub(crate) async fn forward_translated(
    shard: &Shard,
    conn: &mut Client,
    plan: &Plan<'_>,
    target: &Target,
    up: &mut UpstreamConn,
    resp: &ResponseHead,
    ai: &mut Ai,
) -> (Next, bool) {
    let Some(dir) = ai.translate else {
        return (Next::Close, false);
    };
    let is_sse = resp
        .header(up.buf.filled(), "content-type")
        .is_some_and(|v| provider::memfind(v, b"event-stream").is_some());
    let kind = resp.body;
    let rid = plan.request_id;
    up.buf.consume(resp.head_len);
    let mut decoder = ChunkedDecoder::new();
    let mut left = match kind {
        BodyKind::Length(n) => n,
        _ => u64::MAX,
    };
    let mut piece = Vec::new();
    // HTTP/1.0 clients get a close-delimited stream.
    let chunked = plan.client_version == 1;
    let keep = plan.client_keep_alive && !shard.draining();

    if is_sse && resp.status < 300 {
        let mut tr = StreamTranslator::new(dir, ai.include_usage);
        let ctype = "text/event-stream";
        conn.out.clear();
        push_head(
            &mut conn.out,
            target,
            resp.status,
            ctype,
            rid.as_bytes(),
            None,
            keep && chunked,
        );
        if !chunked {
            // No Transfer-Encoding for HTTP/1.0: rewrite the head.
            conn.out.clear();
            conn.out.extend_from_slice(format!("HTTP/1.1 {} OK\r\nContent-Type: {ctype}\r\nCache-Control: no-cache\r\nConnection: close\r\n", resp.status).as_bytes());
            super::failover::push_selected_target(&mut conn.out, target);
            conn.out.extend_from_slice(b"\r\n");
        }
        conn.obs.sent(conn.out.len());
        if !crate::proxy::send(shard, &mut conn.stream, &conn.out).await {
            return (Next::Close, false);
        }
        let mut translated = Vec::new();
        loop {
            piece.clear();
            let r = next_piece(shard, up, kind, &mut decoder, &mut left, &mut piece).await;
            translated.clear();
            if tr.feed(&piece, &mut translated).is_err() {
                return (Next::Close, false);
            }
            let done = match r {
                Ok(d) => d,
                Err(()) => return (Next::Close, false), // truncated: the client sees no end chunk
            };
            if done {
                tr.finish(&mut translated);
            }
            conn.out.clear();
            if chunked {
                push_chunk(&mut conn.out, &translated);
                if done {
                    conn.out.extend_from_slice(b"0\r\n\r\n");
                }
            } else {
                conn.out.extend_from_slice(&translated);
            }
            conn.obs.sent(conn.out.len());
            if !conn.out.is_empty() && !crate::proxy::send(shard, &mut conn.stream, &conn.out).await
            {
                return (Next::Close, false);
            }
            if done {
                ai.usage = tr.usage;
                conn.obs
                    .reported_usage(ai.usage.prompt_tokens, ai.usage.completion_tokens);
                let next = if keep && chunked {
                    Next::KeepAlive
                } else {
                    Next::Close
                };
                return (next, resp.keep_alive && kind != BodyKind::UntilClose);
            }
        }
    }

    // A JSON answer (or an error): read whole, translate, send with a length.
    loop {
        match next_piece(shard, up, kind, &mut decoder, &mut left, &mut piece).await {
            Ok(true) => break,
            Ok(false) if piece.len() <= MAX_TRANSLATED_BODY => {}
            _ => {
                let next = crate::proxy::respond_error(
                    shard,
                    conn,
                    502,
                    "upstream response could not be read for translation",
                    rid.as_bytes(),
                    false,
                )
                .await;
                return (next, false);
            }
        }
    }
    let out_json = if resp.status < 300 {
        match serde_json::from_slice::<Value>(&piece) {
            Ok(v) => {
                provider::scan_usage(&piece, &mut ai.usage);
                conn.obs
                    .reported_usage(ai.usage.prompt_tokens, ai.usage.completion_tokens);
                match dir {
                    Direction::AnthropicToOpenAi => translate::anthropic_to_openai_response(&v),
                    Direction::OpenAiToAnthropic => translate::openai_to_anthropic_response(&v),
                }
            }
            Err(_) => {
                let next = crate::proxy::respond_error(
                    shard,
                    conn,
                    502,
                    "upstream sent invalid JSON",
                    rid.as_bytes(),
                    keep,
                )
                .await;
                return (next, resp.keep_alive);
            }
        }
    } else {
        match dir {
            Direction::AnthropicToOpenAi => translate::error_to_openai(&piece, resp.status),
            Direction::OpenAiToAnthropic => translate::error_to_anthropic(&piece, resp.status),
        }
    };
    let body = serde_json::to_vec(&out_json).unwrap_or_default();
    conn.out.clear();
    push_head(
        &mut conn.out,
        target,
        resp.status,
        "application/json",
        rid.as_bytes(),
        Some(body.len()),
        keep,
    );
    if plan.is_head {
        // no body
    } else {
        conn.out.extend_from_slice(&body);
    }
    conn.obs.sent(conn.out.len());
    if !crate::proxy::send(shard, &mut conn.stream, &conn.out).await {
        return (Next::Close, false);
    }
    let next = if keep { Next::KeepAlive } else { Next::Close };
    (next, resp.keep_alive && kind != BodyKind::UntilClose)
}
