use super::*;
use serde_json::json;

#[test]
fn openai_request_to_anthropic() {
    let req = json!({
        "model": "claude-3-5-sonnet",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "user", "content": [{"type": "text", "text": "and"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}
        ],
        "stop": "END", "temperature": 0.5, "stream": true,
        "tools": [{"type": "function", "function": {"name": "weather", "description": "w", "parameters": {"type": "object"}}}],
        "tool_choice": "required", "n": 1
    });
    let out = openai_to_anthropic_request(&req).unwrap();
    assert_eq!(
        out,
        json!({
            "model": "claude-3-5-sonnet",
            "system": "be brief",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                    {"type": "text", "text": "and"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}
            ],
            "max_tokens": DEFAULT_MAX_TOKENS,
            "temperature": 0.5, "stream": true,
            "stop_sequences": ["END"],
            "tools": [{"name": "weather", "description": "w", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"}
        })
    );
    let with_max = json!({"model": "m", "messages": [], "max_tokens": 7});
    assert_eq!(
        openai_to_anthropic_request(&with_max).unwrap()["max_tokens"],
        7
    );
    assert!(openai_to_anthropic_request(&json!({"model": "m"})).is_err());
    assert!(openai_to_anthropic_request(&json!([1])).is_err());
}

#[test]
fn anthropic_response_to_openai() {
    let resp = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [{"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "tu_1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 3}
    });
    let out = anthropic_to_openai_response(&resp);
    assert_eq!(out["object"], "chat.completion");
    assert_eq!(out["id"], "msg_1");
    assert_eq!(out["choices"][0]["message"]["content"], "Hi");
    assert_eq!(
        out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"a\":1}"
    );
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13})
    );
    let max = json!({"content": [], "stop_reason": "max_tokens"});
    assert_eq!(
        anthropic_to_openai_response(&max)["choices"][0]["finish_reason"],
        "length"
    );
}

#[test]
fn errors_map_both_ways() {
    let anth = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    assert_eq!(
        error_to_openai(anth, 529),
        json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null}})
    );
    assert_eq!(
        error_to_openai(b"<html>", 502)["error"]["type"],
        "api_error"
    );
    assert_eq!(
        error_to_openai(b"", 429)["error"]["type"],
        "rate_limit_error"
    );
    let oai = br#"{"error":{"message":"bad key","type":"invalid_request_error"}}"#;
    assert_eq!(
        error_to_anthropic(oai, 401),
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad key"}})
    );
}

#[test]
fn anthropic_request_to_openai() {
    let req = json!({
        "model": "gpt-4o", "max_tokens": 100, "system": "sys", "stream": true,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "let me"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"}]}
        ],
        "stop_sequences": ["X"],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"}
    });
    let out = anthropic_to_openai_request(&req).unwrap();
    assert_eq!(
        out,
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "let me", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "42"}
            ],
            "max_tokens": 100, "stop": ["X"], "stream": true,
            "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}}
        })
    );
}

#[test]
fn openai_response_to_anthropic() {
    let resp = json!({"id": "c1", "model": "gpt", "choices": [{"index": 0, "message": {"role": "assistant", "content": "yo"}, "finish_reason": "length"}],
                      "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}});
    assert_eq!(
        openai_to_anthropic_response(&resp),
        json!({"id": "c1", "type": "message", "role": "assistant", "model": "gpt",
               "content": [{"type": "text", "text": "yo"}], "stop_reason": "max_tokens", "stop_sequence": null,
               "usage": {"input_tokens": 4, "output_tokens": 2}})
    );
}

fn data_events(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| {
            if d == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(d).unwrap()
            }
        })
        .collect()
}

#[test]
fn anthropic_stream_to_openai_chunks() {
    let sse = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
        "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"tu\",\"name\":\"f\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":5}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let mut t = StreamTranslator::new(Direction::AnthropicToOpenAi, true);
    let mut out = Vec::new();
    // Split at an awkward place: events still come out whole.
    let (a, b) = sse.as_bytes().split_at(101);
    t.feed(a, &mut out).unwrap();
    t.feed(b, &mut out).unwrap();
    assert!(t.done);
    let ev = data_events(&out);
    assert_eq!(ev.len(), 8, "{}", String::from_utf8_lossy(&out));
    assert_eq!(ev[0]["object"], "chat.completion.chunk");
    assert_eq!(ev[0]["id"], "msg_1");
    assert_eq!(ev[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(ev[1]["choices"][0]["delta"]["content"], "Hel");
    assert_eq!(ev[2]["choices"][0]["delta"]["content"], "lo");
    assert_eq!(
        ev[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
        "f"
    );
    assert_eq!(
        ev[4]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
        "{}"
    );
    assert_eq!(ev[5]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        ev[6]["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17})
    );
    assert_eq!(ev[6]["choices"], json!([]));
    assert_eq!(ev[7], json!("[DONE]"));
    assert_eq!(
        t.usage,
        Usage {
            prompt_tokens: 12,
            completion_tokens: 5
        }
    );
}

#[test]
fn openai_stream_to_anthropic_events() {
    let sse = concat!(
        "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"tok0 \"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok1 \"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
        "data: [DONE]\n\n",
    );
    let mut t = StreamTranslator::new(Direction::OpenAiToAnthropic, false);
    let mut out = Vec::new();
    t.feed(sse.as_bytes(), &mut out).unwrap();
    assert!(t.done);
    let text = String::from_utf8(out).unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let ev = data_events(text.as_bytes());
    assert_eq!(ev[0]["message"]["id"], "c1");
    assert_eq!(ev[2]["delta"]["text"], "tok0 ");
    assert_eq!(ev[5]["delta"]["stop_reason"], "end_turn");
    assert_eq!(ev[5]["usage"]["output_tokens"], 2);
    // An upstream that ends without [DONE] still gets a closed stream.
    let mut t = StreamTranslator::new(Direction::OpenAiToAnthropic, false);
    let mut out = Vec::new();
    t.feed(
        sse.split("data: [DONE]").next().unwrap().as_bytes(),
        &mut out,
    )
    .unwrap();
    assert!(!t.done);
    t.finish(&mut out);
    assert!(String::from_utf8(out)
        .unwrap()
        .ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}
