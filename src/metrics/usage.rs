//! Token counts from a buffered JSON response body, without parsing it
//! whole: the first `"model"` key's string, and the numbers after the
//! `"usage"` key (OpenAI `prompt_tokens`/`completion_tokens`, Anthropic
//! `input_tokens`/`output_tokens`). A key inside a JSON string cannot match:
//! its quotes would be escaped there.

/// Token counts and the model that produced them.
#[derive(Debug, PartialEq, Eq)]
pub struct Usage<'a> {
    pub model: &'a [u8],
    pub prompt: u64,
    pub completion: u64,
    /// Prompt tokens read from the provider's cache (OpenAI
    /// `prompt_tokens_details.cached_tokens`, counted in `prompt`;
    /// Anthropic `cache_read_input_tokens`, not counted in `prompt`).
    pub cached: u64,
    /// Cached tokens are part of `prompt` (OpenAI) rather than beside it.
    pub cached_in_prompt: bool,
}

impl Usage<'_> {
    /// The tokens as they are billed.
    pub fn billed(&self) -> crate::cost::Tokens {
        let input = if self.cached_in_prompt {
            self.prompt.saturating_sub(self.cached)
        } else {
            self.prompt
        };
        crate::cost::Tokens {
            input,
            cached: self.cached,
            output: self.completion,
        }
    }
}

/// The end of a response whose bytes pass in pieces (a stream, or a body
/// too large to keep): providers put `usage` last, so a bounded tail is
/// enough for [`scan`] and the response itself is never kept.
#[derive(Debug, Default)]
pub struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    /// Frees the storage (between requests).
    pub fn trim(&mut self) {
        self.bytes = Vec::new();
    }
}

/// Enough for the last few events of a stream.
const TAIL: usize = 2 << 10;

impl Tail {
    pub fn feed(&mut self, bytes: &[u8]) {
        let keep = TAIL.min(bytes.len());
        self.bytes.extend_from_slice(&bytes[bytes.len() - keep..]);
        if self.bytes.len() > TAIL {
            let cut = self.bytes.len() - TAIL;
            self.bytes.drain(..cut);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// The usage in what was kept, if any.
    pub fn scan(&self) -> Option<Usage<'_>> {
        scan(&self.bytes)
    }
}

/// `None` unless the body has a `usage` object with at least one count.
pub fn scan(body: &[u8]) -> Option<Usage<'_>> {
    // Providers put `usage` last: look from the end, then forward from there.
    let at = last_key(body, b"usage")?;
    let usage = &body[at..];
    let prompt = number(usage, b"prompt_tokens").or_else(|| number(usage, b"input_tokens"));
    let completion =
        number(usage, b"completion_tokens").or_else(|| number(usage, b"output_tokens"));
    if prompt.is_none() && completion.is_none() {
        return None;
    }
    let (cached, cached_in_prompt) = match number(usage, b"cached_tokens") {
        Some(c) => (c, true),
        None => (
            number(usage, b"cache_read_input_tokens").unwrap_or(0),
            false,
        ),
    };
    Some(Usage {
        model: string(body, b"model").unwrap_or(b""),
        prompt: prompt.unwrap_or(0),
        completion: completion.unwrap_or(0),
        cached,
        cached_in_prompt,
    })
}

/// The position just after `"name"` and its colon, for the first
/// occurrence of `name` as an object key.
fn key(hay: &[u8], name: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let i = from + find(hay.get(from..)?, name)?;
        if let Some(at) = key_at(hay, i, name) {
            return Some(at);
        }
        from = i + 1;
    }
}

/// [`key`] for the last occurrence.
fn last_key(hay: &[u8], name: &[u8]) -> Option<usize> {
    let mut end = hay.len();
    loop {
        let i = hay
            .get(..end)?
            .windows(name.len())
            .rposition(|w| w == name)?;
        if let Some(at) = key_at(hay, i, name) {
            return Some(at);
        }
        end = i + name.len() - 1;
    }
}

/// When `name` at `i` is a quoted object key (`"name" :`), the position of its value.
fn key_at(hay: &[u8], i: usize, name: &[u8]) -> Option<usize> {
    let quoted = i >= 1
        && hay[i - 1] == b'"'
        && (i < 2 || hay[i - 2] != b'\\')
        && hay.get(i + name.len()) == Some(&b'"');
    if !quoted {
        return None;
    }
    let mut j = i + name.len() + 1;
    while hay.get(j).is_some_and(|b| b.is_ascii_whitespace()) {
        j += 1;
    }
    if hay.get(j) != Some(&b':') {
        return None;
    }
    j += 1;
    while hay.get(j).is_some_and(|b| b.is_ascii_whitespace()) {
        j += 1;
    }
    Some(j)
}

fn number(hay: &[u8], name: &[u8]) -> Option<u64> {
    let at = key(hay, name)?;
    let digits = hay[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    std::str::from_utf8(&hay[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// A string value without escapes (model names have none).
pub(crate) fn string<'a>(hay: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let at = key(hay, name)?;
    if hay.get(at) != Some(&b'"') {
        return None;
    }
    let rest = &hay[at + 1..];
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    (rest[end] == b'"' && end <= 200).then_some(&rest[..end])
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let j = i + hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        if &hay[j..j + needle.len()] == needle {
            return Some(j);
        }
        i = j + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_completion() {
        let body = br#"{"id":"x","object":"chat.completion","model":"gpt-4o","choices":[{"message":{"content":"say \"usage\": {\"prompt_tokens\": 99}"}}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":0}}}"#;
        assert_eq!(
            scan(body),
            Some(Usage {
                model: b"gpt-4o",
                prompt: 12,
                completion: 5,
                cached: 0,
                cached_in_prompt: true,
            })
        );
    }

    #[test]
    fn anthropic_message_with_spaces() {
        let body = br#"{"type": "message", "model" : "claude-3", "usage" : { "input_tokens" : 7, "output_tokens" : 3 }}"#;
        assert_eq!(
            scan(body),
            Some(Usage {
                model: b"claude-3",
                prompt: 7,
                completion: 3,
                cached: 0,
                cached_in_prompt: false,
            })
        );
    }

    #[test]
    fn cached_prompt_tokens_are_billed_apart() {
        let openai = br#"{"model":"gpt-4o","usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":60}}}"#;
        let t = scan(openai).unwrap().billed();
        assert_eq!((t.input, t.cached, t.output), (40, 60, 5));
        let anthropic = br#"{"model":"claude-sonnet-4","usage":{"input_tokens":10,"cache_read_input_tokens":90,"output_tokens":2}}"#;
        let t = scan(anthropic).unwrap().billed();
        assert_eq!((t.input, t.cached, t.output), (10, 90, 2));
    }

    #[test]
    fn no_usage_no_counts() {
        assert_eq!(scan(br#"{"model":"m","data":[]}"#), None);
        assert_eq!(scan(br#"{"usage":null}"#), None);
        assert_eq!(scan(b"not json at all usage"), None);
        assert_eq!(scan(b""), None);
        assert_eq!(scan(br#"{"a":"\"usage\":{\"prompt_tokens\":5}"}"#), None);
        assert_eq!(
            scan(br#"{"usage":{"prompt_tokens":1}}"#),
            Some(Usage {
                model: b"",
                prompt: 1,
                completion: 0,
                cached: 0,
                cached_in_prompt: false,
            })
        );
    }
}
