//! OpenAI chat completions ⇄ Anthropic messages: requests, JSON responses,
//! errors and SSE streams, both directions.
//!
//! Mapped: system/developer messages ⇄ `system`; text and image parts;
//! assistant `tool_calls` ⇄ `tool_use` blocks; `tool` messages ⇄
//! `tool_result` blocks; `tools`/`tool_choice`; `stop` ⇄ `stop_sequences`;
//! `max_tokens` (Anthropic requires it: [`DEFAULT_MAX_TOKENS`] when the
//! client sent none); stop reasons; usage; error bodies. Fields one side has
//! and the other lacks (`n`, `logprobs`, `top_k`, …) are dropped.

use serde_json::{json, Map, Value};

use super::sse;
use super::Usage;

/// `max_tokens` sent to Anthropic when an OpenAI client set none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Text of an OpenAI `content` (string or parts) joined.
fn openai_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// OpenAI content parts → Anthropic content blocks.
fn openai_parts_to_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Some(
                    json!({"type": "text", "text": p.get("text").cloned().unwrap_or_default()}),
                ),
                Some("image_url") => {
                    let url = p
                        .get("image_url")
                        .and_then(|i| i.get("url").or(Some(i)))
                        .and_then(Value::as_str)?;
                    Some(image_block(url))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn image_block(url: &str) -> Value {
    // data:image/png;base64,....
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((meta, data)) = rest.split_once(',') {
            let media = meta.trim_end_matches(";base64");
            return json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}});
        }
    }
    json!({"type": "image", "source": {"type": "url", "url": url}})
}

/// Appends a message, merging into the previous one of the same role
/// (Anthropic wants user and assistant turns to alternate).
fn push_turn(messages: &mut Vec<Value>, role: &str, mut blocks: Vec<Value>) {
    if let Some(last) = messages.last_mut() {
        if last["role"] == role {
            if let Some(Value::Array(c)) = last.get_mut("content") {
                c.append(&mut blocks);
                return;
            }
        }
    }
    messages.push(json!({"role": role, "content": blocks}));
}

/// An OpenAI chat-completions request → an Anthropic messages request.
pub fn openai_to_anthropic_request(req: &Value) -> Result<Value, String> {
    let obj = req
        .as_object()
        .ok_or("request body must be a JSON object")?;
    let msgs = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("\"messages\" must be an array")?;
    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for m in msgs {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.push(openai_text(content)),
            "assistant" => {
                let mut blocks = openai_parts_to_blocks(content);
                blocks.retain(|b| b.get("text").and_then(Value::as_str) != Some(""));
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let f = call.get("function").unwrap_or(&Value::Null);
                    let args = f.get("arguments").and_then(Value::as_str).unwrap_or("{}");
                    let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.get("id").cloned().unwrap_or_default(),
                        "name": f.get("name").cloned().unwrap_or_default(),
                        "input": input,
                    }));
                }
                push_turn(&mut messages, "assistant", blocks);
            }
            "tool" | "function" => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": m.get("tool_call_id").cloned().unwrap_or_default(),
                    "content": openai_text(content),
                });
                push_turn(&mut messages, "user", vec![block]);
            }
            _ => push_turn(&mut messages, "user", openai_parts_to_blocks(content)),
        }
    }
    let mut out = Map::new();
    out.insert(
        "model".into(),
        obj.get("model").cloned().unwrap_or_default(),
    );
    if !system.is_empty() {
        out.insert("system".into(), Value::String(system.join("\n")));
    }
    out.insert("messages".into(), Value::Array(messages));
    let max = obj
        .get("max_completion_tokens")
        .or_else(|| obj.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max));
    for k in ["temperature", "top_p", "stream"] {
        if let Some(v) = obj.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    match obj.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                let mut t = json!({
                    "name": f.get("name").cloned().unwrap_or_default(),
                    "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"})),
                });
                if let Some(d) = f.get("description") {
                    t["description"] = d.clone();
                }
                t
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = obj.get("tool_choice") {
        let c = match choice {
            Value::String(s) if s == "required" => Some(json!({"type": "any"})),
            Value::String(s) if s == "none" => Some(json!({"type": "none"})),
            Value::String(_) => Some(json!({"type": "auto"})),
            Value::Object(o) => o
                .get("function")
                .and_then(|f| f.get("name"))
                .map(|n| json!({"type": "tool", "name": n})),
            _ => None,
        };
        if let Some(c) = c {
            out.insert("tool_choice".into(), c);
        }
    }
    if let Some(user) = obj.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    Ok(Value::Object(out))
}

fn finish_from_anthropic(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

fn stop_from_openai(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        _ => "end_turn",
    }
}

fn openai_usage(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// An Anthropic message response → an OpenAI chat completion.
pub fn anthropic_to_openai_response(resp: &Value) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in resp
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": block.get("id").cloned().unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or_default(),
                    "arguments": block.get("input").map_or("{}".to_string(), Value::to_string),
                },
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let mut usage = Usage::default();
    if let Some(u) = resp.get("usage") {
        usage.merge(u);
    }
    json!({
        "id": resp.get("id").cloned().unwrap_or_default(),
        "object": "chat.completion",
        "created": unix_now(),
        "model": resp.get("model").cloned().unwrap_or_default(),
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_from_anthropic(resp.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": openai_usage(usage),
    })
}

/// An error body of either dialect (or anything else) → OpenAI's error shape.
pub fn error_to_openai(body: &[u8], status: u16) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = v.get("error").unwrap_or(&Value::Null);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| err.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("upstream answered {status}"));
    let kind = err
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or(match status {
            401 => "authentication_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        });
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

/// An error body of either dialect → Anthropic's error shape.
pub fn error_to_anthropic(body: &[u8], status: u16) -> Value {
    let e = error_to_openai(body, status);
    json!({"type": "error", "error": {"type": e["error"]["type"], "message": e["error"]["message"]}})
}

/// An Anthropic messages request → an OpenAI chat-completions request.
pub fn anthropic_to_openai_request(req: &Value) -> Result<Value, String> {
    let obj = req
        .as_object()
        .ok_or("request body must be a JSON object")?;
    let msgs = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("\"messages\" must be an array")?;
    let mut messages: Vec<Value> = Vec::new();
    match obj.get("system") {
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) => messages
            .push(json!({"role": "system", "content": openai_text(&Value::Array(blocks.clone()))})),
        _ => {}
    }
    for m in msgs {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let blocks = match m.get("content") {
            Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
            Some(Value::Array(b)) => b.clone(),
            _ => Vec::new(),
        };
        let mut parts = Vec::new();
        let mut calls = Vec::new();
        for b in &blocks {
            match b.get("type").and_then(Value::as_str) {
                Some("text") => parts.push(json!({"type": "text", "text": b.get("text").cloned().unwrap_or_default()})),
                Some("image") => {
                    let src = b.get("source").unwrap_or(&Value::Null);
                    let url = match src.get("type").and_then(Value::as_str) {
                        Some("base64") => format!(
                            "data:{};base64,{}",
                            src.get("media_type").and_then(Value::as_str).unwrap_or("image/png"),
                            src.get("data").and_then(Value::as_str).unwrap_or("")
                        ),
                        _ => text_of(src, "url"),
                    };
                    parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                }
                Some("tool_use") => calls.push(json!({
                    "id": b.get("id").cloned().unwrap_or_default(),
                    "type": "function",
                    "function": {"name": b.get("name").cloned().unwrap_or_default(),
                                 "arguments": b.get("input").map_or("{}".to_string(), Value::to_string)},
                })),
                Some("tool_result") => {
                    let content = match b.get("content") {
                        Some(Value::String(s)) => s.clone(),
                        Some(c @ Value::Array(_)) => openai_text(c),
                        _ => String::new(),
                    };
                    messages.push(json!({"role": "tool", "tool_call_id": b.get("tool_use_id").cloned().unwrap_or_default(), "content": content}));
                }
                _ => {}
            }
        }
        if parts.is_empty() && calls.is_empty() {
            continue;
        }
        // Plain text only: the simple string form every server accepts.
        let content = if parts.iter().all(|p| p["type"] == "text") {
            if parts.is_empty() && role == "assistant" {
                Value::Null
            } else {
                Value::String(openai_text(&Value::Array(parts)))
            }
        } else {
            Value::Array(parts)
        };
        let mut msg = json!({"role": role, "content": content});
        if !calls.is_empty() {
            msg["tool_calls"] = Value::Array(calls);
        }
        messages.push(msg);
    }
    let mut out = Map::new();
    out.insert(
        "model".into(),
        obj.get("model").cloned().unwrap_or_default(),
    );
    out.insert("messages".into(), Value::Array(messages));
    for k in ["max_tokens", "temperature", "top_p"] {
        if let Some(v) = obj.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(s) = obj.get("stop_sequences").filter(|v| v.is_array()) {
        out.insert("stop".into(), s.clone());
    }
    if obj.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut f = json!({
                    "name": t.get("name").cloned().unwrap_or_default(),
                    "parameters": t.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"})),
                });
                if let Some(d) = t.get("description") {
                    f["description"] = d.clone();
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(c) = obj.get("tool_choice") {
        let choice = match c.get("type").and_then(Value::as_str) {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                json!({"type": "function", "function": {"name": c.get("name").cloned().unwrap_or_default()}})
            }
            _ => json!("auto"),
        };
        out.insert("tool_choice".into(), choice);
    }
    if let Some(user) = obj.get("metadata").and_then(|m| m.get("user_id")) {
        out.insert("user".into(), user.clone());
    }
    Ok(Value::Object(out))
}

/// An OpenAI chat completion → an Anthropic message.
pub fn openai_to_anthropic_response(resp: &Value) -> Value {
    let choice = resp
        .get("choices")
        .and_then(|c| c.get(0))
        .unwrap_or(&Value::Null);
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    let text = openai_text(msg.get("content").unwrap_or(&Value::Null));
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function").unwrap_or(&Value::Null);
        let args = f.get("arguments").and_then(Value::as_str).unwrap_or("{}");
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or_default(),
            "name": f.get("name").cloned().unwrap_or_default(),
            "input": serde_json::from_str::<Value>(args).unwrap_or_else(|_| json!({})),
        }));
    }
    let mut usage = Usage::default();
    if let Some(u) = resp.get("usage") {
        usage.merge(u);
    }
    json!({
        "id": resp.get("id").cloned().unwrap_or_default(),
        "type": "message",
        "role": "assistant",
        "model": resp.get("model").cloned().unwrap_or_default(),
        "content": content,
        "stop_reason": stop_from_openai(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens},
    })
}

/// Rewrites an SSE stream from one dialect to the other, event by event.
pub struct StreamTranslator {
    parser: sse::Parser,
    dir: Direction,
    /// Client asked for the final usage chunk (OpenAI `stream_options`).
    include_usage: bool,
    id: String,
    model: String,
    created: u64,
    pub usage: Usage,
    /// OpenAI side: index of the current tool call.
    tool_index: i64,
    /// Anthropic side: open content block (index, is tool) and the next index.
    open_block: Option<(u64, bool)>,
    next_block: u64,
    open_tools: Vec<(i64, u64)>,
    started: bool,
    finish: Option<String>,
    pub done: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    AnthropicToOpenAi,
    OpenAiToAnthropic,
}

impl StreamTranslator {
    pub fn new(dir: Direction, include_usage: bool) -> StreamTranslator {
        StreamTranslator {
            parser: sse::Parser::default(),
            dir,
            include_usage,
            id: String::new(),
            model: String::new(),
            created: unix_now(),
            usage: Usage::default(),
            tool_index: -1,
            open_block: None,
            next_block: 0,
            open_tools: Vec::new(),
            started: false,
            finish: None,
            done: false,
        }
    }

    /// Feeds upstream bytes; appends translated events to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
        let mut parser = std::mem::take(&mut self.parser);
        let r = parser.feed(bytes, &mut |e| {
            let data: Value = if e.data == b"[DONE]" {
                Value::String("[DONE]".into())
            } else {
                match serde_json::from_slice(e.data) {
                    Ok(v) => v,
                    Err(_) => return,
                }
            };
            match self.dir {
                Direction::AnthropicToOpenAi => self.anthropic_event(&data, out),
                Direction::OpenAiToAnthropic => self.openai_event(&data, out),
            }
        });
        self.parser = parser;
        r
    }

    /// The upstream ended: closes the translated stream if it did not.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match self.dir {
            Direction::AnthropicToOpenAi => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.done = true;
            }
            Direction::OpenAiToAnthropic => self.openai_event(&Value::String("[DONE]".into()), out),
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        let c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        data_line(out, None, &c);
    }

    fn anthropic_event(&mut self, ev: &Value, out: &mut Vec<u8>) {
        match ev.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let m = ev.get("message").unwrap_or(&Value::Null);
                self.id = text_of(m, "id");
                self.model = text_of(m, "model");
                if let Some(u) = m.get("usage") {
                    self.usage.merge(u);
                }
                self.chunk(json!({"role": "assistant", "content": ""}), None, out);
            }
            Some("content_block_start") => {
                let b = ev.get("content_block").unwrap_or(&Value::Null);
                if b.get("type").and_then(Value::as_str) == Some("tool_use") {
                    self.tool_index += 1;
                    self.chunk(
                        json!({"tool_calls": [{"index": self.tool_index, "id": b.get("id"), "type": "function",
                                "function": {"name": b.get("name"), "arguments": ""}}]}),
                        None,
                        out,
                    );
                } else if let Some(t) = b
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    self.chunk(json!({"content": t}), None, out);
                }
            }
            Some("content_block_delta") => {
                let d = ev.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => self.chunk(json!({"content": d.get("text")}), None, out),
                    Some("input_json_delta") => self.chunk(
                        json!({"tool_calls": [{"index": self.tool_index.max(0),
                                "function": {"arguments": d.get("partial_json")}}]}),
                        None,
                        out,
                    ),
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(u) = ev.get("usage") {
                    self.usage.merge(u);
                }
                let stop = ev
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                self.chunk(json!({}), Some(finish_from_anthropic(stop)), out);
            }
            Some("message_stop") => {
                if self.include_usage {
                    let c = json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": openai_usage(self.usage),
                    });
                    data_line(out, None, &c);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.done = true;
            }
            Some("error") => {
                let body = serde_json::to_vec(ev).unwrap_or_default();
                data_line(out, None, &error_to_openai(&body, 500));
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.done = true;
            }
            _ => {} // ping, content_block_stop
        }
    }

    fn start_message(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let m = json!({"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": self.usage.prompt_tokens, "output_tokens": 0}}});
        data_line(out, Some("message_start"), &m);
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some((i, _)) = self.open_block.take() {
            data_line(
                out,
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": i}),
            );
        }
    }

    fn open(&mut self, tool: bool, block: Value, out: &mut Vec<u8>) -> u64 {
        self.close_block(out);
        let i = self.next_block;
        self.next_block += 1;
        self.open_block = Some((i, tool));
        data_line(
            out,
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": i, "content_block": block}),
        );
        i
    }

    fn openai_event(&mut self, ev: &Value, out: &mut Vec<u8>) {
        if ev.as_str() == Some("[DONE]") {
            if self.done {
                return;
            }
            self.start_message(out);
            self.close_block(out);
            let stop = stop_from_openai(self.finish.as_deref());
            data_line(
                out,
                Some("message_delta"),
                &json!({"type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": self.usage.completion_tokens}}),
            );
            data_line(out, Some("message_stop"), &json!({"type": "message_stop"}));
            self.done = true;
            return;
        }
        if let Some(e) = ev.get("error") {
            let body = serde_json::to_vec(&json!({"error": e})).unwrap_or_default();
            data_line(out, Some("error"), &error_to_anthropic(&body, 500));
            self.done = true;
            return;
        }
        if self.id.is_empty() {
            self.id = text_of(ev, "id");
            self.model = text_of(ev, "model");
        }
        if let Some(u) = ev.get("usage").filter(|u| u.is_object()) {
            self.usage.merge(u);
        }
        let Some(choice) = ev.get("choices").and_then(|c| c.get(0)) else {
            return;
        };
        self.start_message(out);
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(t) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            let i = match self.open_block {
                Some((i, false)) => i,
                _ => self.open(false, json!({"type": "text", "text": ""}), out),
            };
            data_line(
                out,
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": i,
                "delta": {"type": "text_delta", "text": t}}),
            );
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ti = call.get("index").and_then(Value::as_i64).unwrap_or(0);
            let f = call.get("function").unwrap_or(&Value::Null);
            let block = match self.open_tools.iter().find(|(t, _)| *t == ti) {
                Some(&(_, b)) => b,
                None => {
                    let b = self.open(true, json!({"type": "tool_use", "id": call.get("id").cloned().unwrap_or_default(),
                        "name": f.get("name").cloned().unwrap_or_default(), "input": {}}), out);
                    self.open_tools.push((ti, b));
                    b
                }
            };
            if let Some(args) = f
                .get("arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                data_line(
                    out,
                    Some("content_block_delta"),
                    &json!({"type": "content_block_delta", "index": block,
                    "delta": {"type": "input_json_delta", "partial_json": args}}),
                );
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
    }
}

fn data_line(out: &mut Vec<u8>, event: Option<&str>, v: &Value) {
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut *out, v);
    out.extend_from_slice(b"\n\n");
}

/// A string field of a JSON object, or "" when absent or not a string.
fn text_of(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

#[cfg(test)]
mod tests;
