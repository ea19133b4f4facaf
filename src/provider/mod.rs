//! What makes ringgate an AI gateway rather than a plain proxy: it reads the
//! JSON `model` of a request to route it, and translates between the OpenAI
//! chat-completions dialect and Anthropic's messages dialect in both
//! directions (request, JSON response, SSE stream, errors).
//!
//! Everything here is pure (bytes and `serde_json::Value` in, bytes out), so
//! it is unit-tested without an executor; `proxy::ai` wires it into an
//! exchange.

pub mod azure;
pub mod endpoint;
pub mod sse;
pub mod translate;

use std::borrow::Cow;

use serde::Deserialize;

/// The API dialect a client or a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenAI chat completions (OpenAI, Azure OpenAI, Mistral, Gemini's
    /// OpenAI endpoint, vLLM, Ollama, any OpenAI-compatible server).
    OpenAi,
    /// Anthropic messages.
    Anthropic,
}

impl Format {
    /// The dialect of a target's `provider` (anything but `anthropic` is
    /// taken as OpenAI-compatible).
    pub fn of(provider: Option<&str>) -> Format {
        match provider {
            Some(p) if p.eq_ignore_ascii_case("anthropic") => Format::Anthropic,
            _ => Format::OpenAi,
        }
    }

    /// The dialect a client speaks, from the request path: `…/messages` is
    /// Anthropic, `…/chat/completions` OpenAI; `None` for anything else
    /// (embeddings, models, files: forwarded untranslated).
    pub fn of_path(path: &[u8]) -> Option<Format> {
        if path.ends_with(b"/chat/completions") {
            Some(Format::OpenAi)
        } else if path.ends_with(b"/messages") {
            Some(Format::Anthropic)
        } else {
            None
        }
    }

    /// The endpoint suffix of this dialect.
    pub fn endpoint(self) -> &'static str {
        match self {
            Format::OpenAi => "/chat/completions",
            Format::Anthropic => "/messages",
        }
    }
}

/// The upstream path of a translated request: the client's endpoint
/// suffix swapped for the target's (`/v1/chat/completions` →
/// `/v1/messages`).
pub fn translate_path(path: &[u8], from: Format, to: Format, out: &mut Vec<u8>) {
    let suffix = from.endpoint().as_bytes();
    let stem = path.strip_suffix(suffix).unwrap_or(path);
    out.extend_from_slice(stem);
    out.extend_from_slice(to.endpoint().as_bytes());
}

/// The upstream path of a chat call in the `client` dialect to a target
/// speaking `target`, from `base` (the target's path and what the rule
/// forwards): a path ending in the client's endpoint gets the target's
/// instead (`/v1/chat/completions` → `/v1/messages`), one ending in the
/// target's endpoint is kept (a target `path` naming its endpoint, as
/// TrustGate configurations do), and any other (a rule that stripped the
/// whole path) gets the provider's endpoint appended (`/` →
/// `/v1/messages`).
pub fn endpoint_path(base: &[u8], client: Format, target: Format, out: &mut Vec<u8>) {
    if base.ends_with(client.endpoint().as_bytes()) {
        translate_path(base, client, target, out);
    } else if base.ends_with(target.endpoint().as_bytes()) {
        out.extend_from_slice(base);
    } else {
        let stem = base.strip_suffix(b"/").unwrap_or(base);
        out.extend_from_slice(stem);
        if !stem.ends_with(b"/v1") {
            out.extend_from_slice(b"/v1");
        }
        out.extend_from_slice(target.endpoint().as_bytes());
    }
}

/// The few fields routing needs; serde skips the rest of the body without
/// copying it.
#[derive(Debug, Default, Deserialize)]
pub struct Peek<'a> {
    #[serde(borrow, default)]
    pub model: Option<Cow<'a, str>>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// Present when the body is a chat call in either dialect.
    #[serde(default)]
    pub messages: Option<serde::de::IgnoredAny>,
}

/// Reads `model` and `stream` from a JSON body. `Err`: not a JSON object.
pub fn peek(body: &[u8]) -> Result<Peek<'_>, String> {
    serde_json::from_slice::<Peek<'_>>(body).map_err(|e| format!("invalid JSON body: {e}"))
}

/// Tokens one exchange used, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    /// From an OpenAI (`prompt_tokens`/`completion_tokens`) or Anthropic
    /// (`input_tokens`/`output_tokens`) `usage` object; fields missing are
    /// kept from `self` (Anthropic streams report them in two events).
    pub fn merge(&mut self, usage: &serde_json::Value) {
        let get = |k: &str| usage.get(k).and_then(serde_json::Value::as_u64);
        if let Some(n) = get("prompt_tokens").or_else(|| get("input_tokens")) {
            self.prompt_tokens = n;
        }
        if let Some(n) = get("completion_tokens").or_else(|| get("output_tokens")) {
            self.completion_tokens = n;
        }
    }
}

/// Scans a response body (JSON, or SSE data lines) for the last `usage`
/// object. Cheap to call on every piece: only pieces holding `"usage"` are
/// parsed.
pub fn scan_usage(piece: &[u8], usage: &mut Usage) -> bool {
    if memfind(piece, b"\"usage\"").is_none() {
        return false;
    }
    let mut found = false;
    let mut visit = |json: &[u8]| {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) {
            let u = v
                .get("usage")
                .or_else(|| v.get("message").and_then(|m| m.get("usage")));
            if let Some(u) = u.filter(|u| u.is_object()) {
                usage.merge(u);
                found = true;
            }
        }
    };
    let trimmed = piece.trim_ascii_start();
    if trimmed.starts_with(b"{") {
        visit(trimmed);
    } else {
        for line in piece.split(|&b| b == b'\n') {
            if let Some(data) = line.strip_prefix(b"data:") {
                visit(data.trim_ascii());
            }
        }
    }
    found
}

pub(crate) fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(Format::of(Some("Anthropic")), Format::Anthropic);
        assert_eq!(Format::of(Some("mistral")), Format::OpenAi);
        assert_eq!(Format::of(None), Format::OpenAi);
        assert_eq!(
            Format::of_path(b"/v1/chat/completions"),
            Some(Format::OpenAi)
        );
        assert_eq!(Format::of_path(b"/v1/messages"), Some(Format::Anthropic));
        assert_eq!(Format::of_path(b"/v1/embeddings"), None);
    }

    #[test]
    fn paths_translate() {
        let mut out = Vec::new();
        translate_path(
            b"/v1/chat/completions",
            Format::OpenAi,
            Format::Anthropic,
            &mut out,
        );
        assert_eq!(out, b"/v1/messages");
        out.clear();
        translate_path(b"/v1/messages", Format::Anthropic, Format::OpenAi, &mut out);
        assert_eq!(out, b"/v1/chat/completions");
    }

    #[test]
    fn endpoint_paths() {
        let ep = |base: &[u8], c, t| {
            let mut out = Vec::new();
            endpoint_path(base, c, t, &mut out);
            String::from_utf8(out).unwrap()
        };
        use Format::{Anthropic as A, OpenAi as O};
        assert_eq!(ep(b"/v1/chat/completions", O, A), "/v1/messages");
        assert_eq!(ep(b"/pre/v1/messages", A, O), "/pre/v1/chat/completions");
        assert_eq!(ep(b"/v1/messages", O, A), "/v1/messages");
        assert_eq!(ep(b"", O, A), "/v1/messages");
        assert_eq!(ep(b"/", O, O), "/v1/chat/completions");
        assert_eq!(ep(b"/echo", O, A), "/echo/v1/messages");
        assert_eq!(ep(b"/api/v1/", A, A), "/api/v1/messages");
    }

    #[test]
    fn peeks_without_copying() {
        let p =
            peek(br#"{"messages":[{"role":"user","content":"x"}],"model":"gpt-4o","stream":true}"#)
                .unwrap();
        assert_eq!(p.model.as_deref(), Some("gpt-4o"));
        assert_eq!(p.stream, Some(true));
        assert!(peek(b"{}").unwrap().model.is_none());
        assert!(peek(b"not json").is_err());
        assert!(peek(b"[1]").is_err());
    }

    #[test]
    fn usage_from_json_and_sse() {
        let mut u = Usage::default();
        assert!(scan_usage(
            br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#,
            &mut u
        ));
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 3,
                completion_tokens: 5
            }
        );
        let mut u = Usage::default();
        let sse = b"data: {\"choices\":[]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
        assert!(scan_usage(sse, &mut u));
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 7,
                completion_tokens: 2
            }
        );
        // Anthropic: input in message_start, output in message_delta.
        let mut u = Usage::default();
        scan_usage(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":11,\"output_tokens\":1}}}\n\n", &mut u);
        scan_usage(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n", &mut u);
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 11,
                completion_tokens: 9
            }
        );
        assert!(!scan_usage(b"data: {\"choices\":[]}\n\n", &mut u));
    }
}
