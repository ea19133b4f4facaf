"""The official OpenAI and Anthropic Python SDKs, unchanged, against ringgate.

Run by tests/python_sdk.rs (which makes the virtualenv from requirements.txt
and starts the mock upstream and the gateway with the routes below); by hand:

    python tests/python/sdk_check.py --gateway http://127.0.0.1:8081 --key rg-sdk-key

Routes the gateway must have (see tests/python_sdk.rs):
    /v1        -> the mock, OpenAI dialect (no translation)
    /toanth    -> an anthropic target (strip_path): OpenAI client, translated
    /toai      -> an OpenAI target (strip_path): Anthropic client, translated
    /anth      -> an anthropic target (strip_path): Anthropic client, native
    /slow      -> an OpenAI target with sse_ping_secs: 1 (strip_path); the
                  Anthropic client reaches it translated

Prints one line per check ("ok   name: detail" or "FAIL name: why") and
exits 1 when any check failed.
"""

import argparse
import sys

import anthropic
import openai

REPLY = "Hello from mock"
TOKENS = "tok0 tok1 tok2 tok3 tok4 "
USER = [{"role": "user", "content": "Say hello"}]


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--key", required=True)
    args = ap.parse_args()
    gw, key = args.gateway.rstrip("/"), args.key

    def oai(prefix):
        return openai.OpenAI(base_url=f"{gw}{prefix}", api_key=key, max_retries=0, timeout=20)

    def anth(prefix):
        return anthropic.Anthropic(base_url=f"{gw}{prefix}", api_key=key, max_retries=0, timeout=20)

    failed = []

    def check(name, fn):
        try:
            print(f"ok   {name}: {fn()}", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported by name
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            failed.append(name)

    def openai_chat(prefix, model):
        r = oai(prefix).chat.completions.create(model=model, messages=USER)
        text = r.choices[0].message.content
        expect(text == REPLY, f"content {text!r}")
        expect(r.choices[0].finish_reason == "stop", f"finish_reason {r.choices[0].finish_reason}")
        expect(r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, f"usage {r.usage}")
        return f"{text!r}, usage {r.usage.prompt_tokens}/{r.usage.completion_tokens}"

    def openai_stream(prefix, model, **extra):
        stream = oai(prefix).chat.completions.create(
            model=model, messages=USER, stream=True,
            stream_options={"include_usage": True}, **extra)
        text, finish, usage = "", None, None
        for chunk in stream:
            expect(chunk.object == "chat.completion.chunk", f"object {chunk.object}")
            for c in chunk.choices:
                text += c.delta.content or ""
                finish = c.finish_reason or finish
            usage = chunk.usage or usage
        expect(text != "", "no content")
        expect(finish == "stop", f"finish_reason {finish}")
        expect(usage is not None and usage.completion_tokens > 0, f"usage {usage}")
        return f"{text!r}, usage {usage.prompt_tokens}/{usage.completion_tokens}"

    def anthropic_message(prefix):
        m = anth(prefix).messages.create(model="claude-x", max_tokens=64, messages=USER,
                                         system="Be brief.")
        text = m.content[0].text
        expect(m.type == "message" and m.role == "assistant", f"{m.type}/{m.role}")
        expect(text == REPLY, f"text {text!r}")
        expect(m.stop_reason == "end_turn", f"stop_reason {m.stop_reason}")
        expect(m.usage.input_tokens > 0 and m.usage.output_tokens > 0, f"usage {m.usage}")
        return f"{text!r}, usage {m.usage.input_tokens}/{m.usage.output_tokens}"

    def anthropic_stream(prefix):
        events = anth(prefix).messages.create(model="claude-x", max_tokens=64, messages=USER,
                                              stream=True)
        kinds, text, stop = [], "", None
        for ev in events:
            kinds.append(ev.type)
            if ev.type == "content_block_delta" and ev.delta.type == "text_delta":
                text += ev.delta.text
            if ev.type == "message_delta":
                stop = ev.delta.stop_reason
        expect(kinds[0] == "message_start" and kinds[-1] == "message_stop", f"events {kinds}")
        expect(text != "", "no text")
        expect(stop == "end_turn", f"stop_reason {stop}")
        # The helper that accumulates the final message, too.
        with anth(prefix).messages.stream(model="claude-x", max_tokens=64, messages=USER) as s:
            streamed = "".join(s.text_stream)
            final = s.get_final_message()
        expect(streamed == text, f"helper text {streamed!r} != {text!r}")
        expect(final.content[0].text == text, f"final {final.content}")
        return f"{text!r}, {len(kinds)} events"

    def fallback_chat():
        # /fallback's own upstream answers 429; its fallback step is an
        # Anthropic target: the OpenAI client still gets OpenAI format.
        raw = oai("/fallback/v1").chat.completions.with_raw_response.create(
            model="gpt-4o", messages=USER)
        r = raw.parse()
        step, used = raw.headers.get("x-fallback-step"), raw.headers.get("x-model-used")
        expect((step, used) == ("1", "claude-fallback"), f"headers {step!r} {used!r}")
        expect(r.object == "chat.completion" and r.model == "claude-fallback", f"{r.object} {r.model}")
        expect(r.choices[0].message.content == REPLY, f"content {r.choices[0].message.content!r}")
        expect(r.usage.completion_tokens > 0, f"usage {r.usage}")
        return f"step {step}, {used}, {r.choices[0].message.content!r}"

    def fallback_stream():
        raw = oai("/fallback/v1").chat.completions.with_raw_response.create(
            model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True})
        step = raw.headers.get("x-fallback-step")
        expect(step == "1", f"x-fallback-step {step!r}")
        text, usage, models = "", None, set()
        for chunk in raw.parse():
            expect(chunk.object == "chat.completion.chunk", f"object {chunk.object}")
            models.add(chunk.model)
            for c in chunk.choices:
                text += c.delta.content or ""
            usage = chunk.usage or usage
        expect(text != "" and usage is not None, f"text {text!r} usage {usage}")
        expect(models == {"claude-fallback"}, f"models {models}")
        return f"step {step}, {text!r}, usage {usage.prompt_tokens}/{usage.completion_tokens}"

    def wrong_key():
        bad = openai.OpenAI(base_url=f"{gw}/v1", api_key="not-a-key", max_retries=0, timeout=20)
        try:
            bad.chat.completions.create(model="gpt-4o", messages=USER)
        except openai.AuthenticationError as e:
            return f"AuthenticationError {e.status_code}"
        raise AssertionError("no error")

    def keepalive_stream():
        # The mock holds its head 1.5 s; the gateway pings every second.
        return openai_stream("/slow/v1", "gpt-4o", extra_headers={"x-mock-delay-ms": "1500"})

    def keepalive_error():
        stream = oai("/slow/v1").chat.completions.create(
            model="gpt-4o", messages=USER, stream=True,
            extra_headers={"x-mock-delay-ms": "1500", "x-mock-status": "429"})
        try:
            for _ in stream:
                pass
        except openai.APIError as e:
            expect("mock status 429" in str(e), f"message {e}")
            return f"{type(e).__name__}: {e}"
        raise AssertionError("the stream ended without an error")

    check("openai chat", lambda: openai_chat("/v1", "gpt-4o"))
    check("openai chat stream", lambda: openai_stream("/v1", "gpt-4o"))
    check("openai client -> anthropic target", lambda: openai_chat("/toanth/v1", "claude-x"))
    check("openai client -> anthropic target, stream",
          lambda: openai_stream("/toanth/v1", "claude-x"))
    def anthropic_keepalive_error():
        events = anth("/slow").messages.create(
            model="gpt-4o", max_tokens=64, messages=USER, stream=True,
            extra_headers={"x-mock-delay-ms": "1500", "x-mock-status": "503"})
        try:
            for _ in events:
                pass
        except anthropic.APIError as e:
            expect("mock status 503" in str(e), f"message {e}")
            return f"{type(e).__name__}: {e}"
        raise AssertionError("the stream ended without an error")

    # A rule on the whole endpoint path with strip_path (nothing of the
    # client's path is left): the dialect is still the client's.
    check("openai client -> endpoint rule with strip_path -> anthropic target",
          lambda: openai_chat("/claude/v1", "claude-x"))
    check("openai client -> endpoint rule with strip_path -> anthropic target, stream",
          lambda: openai_stream("/claude/v1", "claude-x"))
    check("anthropic client -> openai target", lambda: anthropic_message("/toai"))
    check("anthropic client -> openai target, stream", lambda: anthropic_stream("/toai"))
    check("anthropic native", lambda: anthropic_message("/anth"))
    check("anthropic native stream", lambda: anthropic_stream("/anth"))
    check("openai wrong gateway key", wrong_key)
    check("openai stream through sse keep-alive pings", keepalive_stream)
    check("openai error event after sse keep-alive pings", keepalive_error)
    check("anthropic error event after sse keep-alive pings (translated)",
          anthropic_keepalive_error)

    check("openai 429 -> fallback to anthropic target", fallback_chat)
    check("openai 429 -> fallback to anthropic target, stream", fallback_stream)

    print(f"sdk checks: {16 - len(failed)} ok, {len(failed)} failing"
          f" (openai {openai.__version__}, anthropic {anthropic.__version__})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
