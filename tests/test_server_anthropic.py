"""`turnspec serve` speaking Anthropic's Messages API: the official `anthropic` SDK on loopback against the real
server code, with scripted engines (tests/test_server.py's harness) over corpus templates: Qwen2.5's (Hermes tool
calls), Qwen3's (reasoning with an `enable_thinking` switch) and SmolLM2's own folder.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'turnspec[serve]'")
anthropic = pytest.importorskip("anthropic", reason="these tests use the official client: pip install anthropic")

import turnspec  # noqa: E402
from turnspec.reader.events import Done, ToolCall, ToolCallDelta, ToolCallError  # noqa: E402
from turnspec.server import create_app  # noqa: E402
from turnspec.server.models import ModelManager, ServedModel  # noqa: E402

from helpers.paths import CORPUS, need  # noqa: E402
from helpers.servers import real_model_server  # noqa: E402
from test_server import ScriptedEngine, answer_for, raw_request, running, smol_server  # noqa: E402,F401
from test_server import smol_spec, smol_tokenizer  # noqa: E402,F401  (module fixtures)

WEATHER = {"name": "get_weather", "description": "Current weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
HERMES_CALL = 'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city" : "Paris" }}\n</tool_call><|im_end|>'
QWEN3_THINKING = "<think>\nThe user greets me. I greet back.\n</think>\n\nHello there!<|im_end|>"


def api(url: str, **kw: Any) -> Any:
    return anthropic.Anthropic(base_url=url, api_key=kw.pop("api_key", "unused"), max_retries=0, timeout=30, **kw)


def hi(text: str = "What is the capital of France?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def blocks(message: Any) -> list[dict[str, Any]]:
    """A message's content blocks as plain data (the stream helper's Parsed* blocks carry one more field)."""
    return [{k: v for k, v in b.model_dump().items() if k != "parsed_output"} for b in message.content]


def template_spec(name: str, tokenizer: Any) -> Any:
    template = need(CORPUS / "templates" / name).read_text(encoding="utf-8")
    return turnspec.from_template(template, name=name.removesuffix(".jinja"), tokenizer=tokenizer,
                                  special_tokens={"eos_token": "<|im_end|>"})


class Script:
    """What the scripted engine answers: the first reply of `replies` whose key is in the last user turn."""

    def __init__(self, default: str, **replies: str):
        self.default, self.replies = default, replies

    def __call__(self, prompt: str) -> str:
        asked = prompt.rsplit("<|im_start|>", 2)[-2] if prompt.count("<|im_start|>") > 1 else prompt
        for key, reply in self.replies.items():
            if key in asked:
                return reply
        return self.default


@pytest.fixture
def qwen(smol_tokenizer):
    spec = template_spec("Qwen-Qwen2.5-7B-Instruct.jinja", smol_tokenizer)
    script = Script(HERMES_CALL, tool_response="It is 18 C and sunny in Paris.<|im_end|>")
    engine = ScriptedEngine(smol_tokenizer, script)
    with running(create_app(spec, engine)) as url:
        yield url, engine


@pytest.fixture
def qwen3(smol_tokenizer):
    spec = template_spec("Qwen-Qwen3-0.6B.jinja", smol_tokenizer)
    engine = ScriptedEngine(smol_tokenizer, lambda prompt: QWEN3_THINKING)
    with running(create_app(spec, engine)) as url:
        yield url, engine, spec


@pytest.fixture
def smol(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer) as served:
        yield served


# ------------------------------------------------------------------------------------------------ text
def test_messages_create(smol, smol_spec):
    url, engine = smol
    # this SDK version no longer declares the sampling fields; the API (and this server) still take them
    reply = api(url).messages.create(model="smol", max_tokens=64, system="You are terse.", messages=hi(),
                                     metadata={"user_id": "u1"}, extra_body={"temperature": 0.2, "top_p": 0.9})
    assert reply.type == "message" and reply.role == "assistant" and reply.id.startswith("msg_")
    assert [b.type for b in reply.content] == ["text"]
    assert reply.content[0].text == "The capital of France is Paris."
    assert reply.stop_reason == "end_turn" and reply.stop_sequence is None
    gen = engine.generations[-1]
    enc = smol_spec.encode([{"role": "system", "content": "You are terse."}, *hi()], add_generation_prompt=True,
                           assistant_mask=False)
    assert gen["prompt_ids"] == list(enc.ids)
    assert reply.usage.input_tokens == len(enc.ids) and reply.usage.output_tokens == gen["planned"]
    assert gen["max_tokens"] == 64 and gen["temperature"] == 0.2 and gen["top_p"] == 0.9


def test_system_blocks_and_text_blocks_are_joined(smol):
    url, engine = smol
    api(url).messages.create(model="smol", max_tokens=8,
                             system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
                             messages=[{"role": "user", "content": [{"type": "text", "text": "Hello"},
                                                                    {"type": "text", "text": "there"}]}])
    prompt = engine.generations[-1]["prompt"]
    assert "<|im_start|>system\nBe brief.\nBe kind.<|im_end|>" in prompt
    assert "<|im_start|>user\nHello\nthere<|im_end|>" in prompt


def test_messages_stream_equals_create(smol):
    url, _ = smol
    client = api(url)
    whole = client.messages.create(model="smol", max_tokens=64, messages=hi())
    with client.messages.stream(model="smol", max_tokens=64, messages=hi()) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert events.count("content_block_start") == events.count("content_block_stop") == 1
    assert events.count("text") > 3  # streamed as it came
    assert blocks(final) == blocks(whole) and final.stop_reason == whole.stop_reason == "end_turn"
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_max_tokens_and_stop_sequences(smol):
    url, _ = smol
    client = api(url)
    cut = client.messages.create(model="smol", max_tokens=3, messages=hi())
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3
    stopped = client.messages.create(model="smol", max_tokens=64, messages=hi(), stop_sequences=["France"])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "France"
    assert stopped.content[0].text == "The capital of "
    with client.messages.stream(model="smol", max_tokens=64, messages=hi(), stop_sequences=["France"]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "France"
    assert blocks(final) == blocks(stopped)


def test_top_k_1_is_greedy(smol):
    url, engine = smol
    api(url).messages.create(model="smol", max_tokens=4, messages=hi(),
                             extra_body={"temperature": 1.0, "top_k": 1})
    assert engine.generations[-1]["temperature"] == 0.0


# ------------------------------------------------------------------------------------------------ tools
def test_tool_round_trip_in_three_turns(qwen):
    """tool_use -> tool_result -> the answer: the call comes back in the history as the template writes calls, its
    `toolu_` id mapped back to the reader's id, and the result as the template's tool response."""
    url, engine = qwen
    client = api(url)
    asked = hi("Weather in Paris?")
    first = client.messages.create(model="m", max_tokens=128, messages=asked, tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    assert [b.type for b in first.content] == ["text", "tool_use"] and first.content[0].text == "Let me check."
    call = first.content[1]
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    assert call.id.startswith("toolu_") and len(call.id) == len("toolu_") + 9
    assert '"name": "get_weather"' in engine.generations[-1]["prompt"]  # the tool was rendered
    history = asked + [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                       {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                     "content": [{"type": "text", "text": "18 C, sunny"}]}]}]
    second = client.messages.create(model="m", max_tokens=128, messages=history, tools=[WEATHER])
    prompt = engine.generations[-1]["prompt"]
    # the server kept the conversation's ids (server/sessions.py): the call is in the prompt exactly as the model
    # wrote it, spacing included, where a re-render through the template would have rewritten it
    assert "<|im_start|>assistant\n" + HERMES_CALL in prompt
    assert "<tool_response>\n18 C, sunny\n</tool_response>" in prompt
    assert second.stop_reason == "end_turn" and second.content[0].text == "It is 18 C and sunny in Paris."


def test_tool_use_streamed_equals_whole(qwen):
    url, _ = qwen
    client = api(url)
    whole = client.messages.create(model="m", max_tokens=128, messages=hi("Weather?"), tools=[WEATHER])
    with client.messages.stream(model="m", max_tokens=128, messages=hi("Weather?"), tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_message()
    strip_ids = lambda bs: [{**b, "id": None} if b["type"] == "tool_use" else b for b in bs]  # noqa: E731
    assert strip_ids(blocks(final)) == strip_ids(blocks(whole)) and final.stop_reason == "tool_use"
    json_deltas = [e.delta.partial_json for e in events if e.type == "content_block_delta"
                   and e.delta.type == "input_json_delta"]
    assert len(json_deltas) > 3 and "".join(json_deltas) == '{"city" : "Paris" }'  # as the model writes it
    starts = [e.content_block for e in events if e.type == "content_block_start"]
    assert [b.type for b in starts] == ["text", "tool_use"] and starts[1].name == "get_weather"


def test_tool_choice_none_returns_the_call_as_text(qwen):
    url, engine = qwen
    reply = api(url).messages.create(model="m", max_tokens=128, messages=hi("Weather?"), tools=[WEATHER],
                                     tool_choice={"type": "none"})
    assert "get_weather" not in engine.generations[-1]["prompt"]
    assert [b.type for b in reply.content] == ["text"] and reply.stop_reason == "end_turn"
    assert reply.content[0].text == 'Let me check.{"name": "get_weather", "arguments": {"city" : "Paris" }}'


def test_what_claude_code_sends_is_accepted(qwen):
    """Claude Code's requests: `?beta=true`, system and content blocks and tools with `cache_control`,
    `metadata.user_id`, its headers; a stream."""
    url, engine = qwen
    cached = {"cache_control": {"type": "ephemeral"}}
    body = {"model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True, "metadata": {"user_id": "user_abc"},
            "system": [{"type": "text", "text": "You are Claude Code.", **cached}],
            "tools": [{**WEATHER, **cached}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather?", **cached}]}]}
    status, reply = raw_request(url, "POST", "/v1/messages?beta=true", body,
                                headers={"anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219"})
    assert status == 200 and isinstance(reply, str)
    names = [line.removeprefix("event: ") for line in reply.splitlines() if line.startswith("event: ")]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    assert "input_json_delta" in reply and '"stop_reason": "tool_use"' in reply
    assert "<|im_start|>system\nYou are Claude Code." in engine.generations[-1]["prompt"]


# ------------------------------------------------------------------------------------------------ thinking
def test_thinking_blocks_on_a_reasoning_template(qwen3):
    url, engine, _ = qwen3
    client = api(url)
    reply = client.messages.create(model="m", max_tokens=128, messages=hi("Hello"),
                                   thinking={"type": "enabled", "budget_tokens": 1024})
    assert [b.type for b in reply.content] == ["thinking", "text"]
    assert reply.content[0].thinking == "The user greets me. I greet back." and reply.content[1].text == "Hello there!"
    assert "<think>" not in engine.generations[-1]["prompt"].rsplit("<|im_start|>assistant", 1)[1]
    with client.messages.stream(model="m", max_tokens=128, messages=hi("Hello"),
                                thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert blocks(final) == blocks(reply) and "thinking_delta" in kinds and "text_delta" in kinds
    # disabled: Qwen3's enable_thinking=false writes an empty think block into the prompt itself
    client.messages.create(model="m", max_tokens=128, messages=hi("Hello"), thinking={"type": "disabled"})
    assert engine.generations[-1]["prompt"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_thinking_and_tool_use_come_back_as_the_templates_reasoning_and_call(qwen3):
    """Qwen3 renders the reasoning of the turns after the last user question: a thinking block sent back with a
    tool_use is in the prompt, between the template's own think tags, before the call."""
    url, engine, _ = qwen3
    history = hi("Weather in Paris?") + [
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should call the tool.", "signature": ""},
            {"type": "tool_use", "id": "toolu_a1b2c3d4e", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a1b2c3d4e", "content": "18 C"}]}]
    api(url).messages.create(model="m", max_tokens=16, messages=history, tools=[WEATHER])
    prompt = engine.generations[-1]["prompt"]
    assert ('<|im_start|>assistant\n<think>\nI should call the tool.\n</think>\n\n<tool_call>\n'
            '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>') in prompt
    assert "<tool_response>\n18 C\n</tool_response>" in prompt


# ------------------------------------------------------------------------------------------------ count_tokens
def test_count_tokens_equals_the_prompt(qwen):
    url, engine = qwen
    client = api(url)
    counted = client.messages.count_tokens(model="m", messages=hi("Weather?"), tools=[WEATHER], system="Be brief.")
    reply = client.messages.create(model="m", max_tokens=16, messages=hi("Weather?"), tools=[WEATHER],
                                   system="Be brief.")
    assert counted.input_tokens == reply.usage.input_tokens == len(engine.generations[-1]["prompt_ids"])
    assert len(engine.generations) == 1  # counting generates nothing


# ------------------------------------------------------------------------------------------------ errors
def assert_anthropic_error(status: int, body: Any, expect_status: int, kind: str, *words: str) -> None:
    assert status == expect_status, body
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == kind, body
    for word in words:
        assert word in body["error"]["message"], body
    assert "Traceback" not in body["error"]["message"]


def msg_body(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 16, "messages": hi(), **fields}


BAD = [
    (b'{"model": "m", "messages": [', ("not valid JSON",)),
    (b"\xff\xfe", ("not valid JSON",)),
    ([1, 2], ("JSON object",)),
    (b"[" * 200_000 + b"]" * 200_000, ("nested too deeply",)),
    ({"model": "m", "messages": hi()}, ("max_tokens", "required")),
    ({"max_tokens": 8, "messages": hi()}, ("model", "required")),
    (msg_body(messages=[]), ("at least one message",)),
    (msg_body(max_tokens=0), ("max_tokens",)),
    (msg_body(max_tokens="many"), ("max_tokens", "integer")),
    (msg_body(temperature=1.5), ("temperature",)),
    (msg_body(messages=[{"role": "system", "content": "x"}]), ("messages[0].role", "'system'")),
    (msg_body(messages=[{"role": "user", "content": 5}]), ("messages[0].content",)),
    (msg_body(messages=[{"role": "user", "content": [{"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]),
     ("messages[0].content[0]", "image blocks", "reads text only")),
    (msg_body(messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x",
                                                      "content": [{"type": "image", "source": {}}]}]}]),
     ("image blocks",)),
    (msg_body(messages=[{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]),
     ("tool_use_id",)),
    (msg_body(messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f",
                                                           "input": "oops"}]}]), ("input", "object")),
    (msg_body(tool_choice={"type": "any"}), ("tool_choice", "tools")),
    (msg_body(tools=[WEATHER], tool_choice={"type": "tool", "name": "get_time"}), ("get_time",)),
    (msg_body(tools=[WEATHER], tool_choice={"type": "sometimes"}), ("tool_choice.type",)),
    (msg_body(tools=[{"type": "web_search_20250305", "name": "web_search"}]), ("tools[0].type", "server tools")),
    (msg_body(stop_sequences=[""]), ("stop_sequences",)),
    (msg_body(thinking={"type": "maybe"}), ("thinking.type",)),
    (msg_body(system=[{"type": "image"}]), ("system[0]",)),
]


@pytest.mark.parametrize("body,words", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_is_a_400_in_anthropics_shape(smol, body, words):
    url, engine = smol
    status, reply = raw_request(url, "POST", "/v1/messages", body)
    assert_anthropic_error(status, reply, 400, "invalid_request_error", *words)
    assert engine.generations == []
    assert api(url).messages.create(model="m", max_tokens=8, messages=hi()).content  # still serving


def test_count_tokens_refuses_bad_input_in_anthropics_shape(smol):
    url, _ = smol
    status, reply = raw_request(url, "POST", "/v1/messages/count_tokens", {"model": "m", "messages": "hi"})
    assert_anthropic_error(status, reply, 400, "invalid_request_error", "messages")


def test_the_official_client_raises_typed_errors(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer, api_key="sekret") as (url, engine):
        with pytest.raises(anthropic.AuthenticationError) as info:
            api(url, api_key="wrong").messages.create(model="m", max_tokens=8, messages=hi())
        assert info.value.status_code == 401 and info.value.body["error"]["type"] == "authentication_error"
        status, reply = raw_request(url, "POST", "/v1/messages", msg_body())
        assert_anthropic_error(status, reply, 401, "authentication_error", "missing API key")
        client = api(url, api_key="sekret")  # the SDK sends x-api-key
        assert client.messages.create(model="m", max_tokens=8, messages=hi()).content[0].text
        with pytest.raises(anthropic.BadRequestError) as bad_info:
            client.messages.create(model="m", max_tokens=8, messages=[{"role": "tool", "content": "x"}])
        assert bad_info.value.body["error"]["type"] == "invalid_request_error"
        status, reply = raw_request(url, "POST", "/v1/messages/nope", msg_body(), headers={"x-api-key": "sekret"})
        assert_anthropic_error(status, reply, 404, "not_found_error", "unknown URL")
        status, reply = raw_request(url, "GET", "/v1/messages", headers={"x-api-key": "sekret"})
        assert_anthropic_error(status, reply, 405, "invalid_request_error", "not allowed")


def test_unknown_model_is_a_404(smol_spec, smol_tokenizer):
    engine = ScriptedEngine(smol_tokenizer, answer_for)
    models = ModelManager([ServedModel("smol-a", smol_spec), ServedModel("smol-b", smol_spec)],
                          loader=lambda model: engine)
    with running(create_app(models=models)) as url:
        with pytest.raises(anthropic.NotFoundError) as info:
            api(url).messages.create(model="smol-xl", max_tokens=8, messages=hi())
        assert info.value.body["error"]["type"] == "not_found_error"
        assert "smol-a, smol-b" in info.value.body["error"]["message"]
        assert api(url).messages.create(model="smol-b", max_tokens=8, messages=hi()).model == "smol-b"


def test_oversize_input_is_refused_in_anthropics_shape(smol_spec, smol_tokenizer):
    with smol_server(smol_spec, smol_tokenizer, max_body_bytes=50_000, context_length=512) as (url, engine):
        status, reply = raw_request(url, "POST", "/v1/messages", msg_body(messages=hi("x" * 60_000)))
        assert_anthropic_error(status, reply, 413, "request_too_large", "larger than this server accepts")
        status, reply = raw_request(url, "POST", "/v1/messages", msg_body(messages=hi("word " * 2_000)))
        assert_anthropic_error(status, reply, 400, "invalid_request_error", "context")
        status, reply = raw_request(url, "POST", "/v1/messages", b"{}", headers={"Content-Type": "text/plain"})
        assert_anthropic_error(status, reply, 415, "invalid_request_error", "Content-Type")
        assert engine.generations == []
        assert api(url).messages.create(model="m", max_tokens=8, messages=hi()).content[0].text


def test_an_engine_failure_is_an_api_error_whole_and_streamed(smol):
    url, _ = smol
    status, reply = raw_request(url, "POST", "/v1/messages", msg_body(messages=hi("EXPLODE")))
    assert_anthropic_error(status, reply, 500, "api_error", "generation failed", "exploded")
    with pytest.raises(anthropic.APIStatusError) as info:
        with api(url).messages.stream(model="m", max_tokens=8, messages=hi("EXPLODE")) as stream:
            list(stream)
    assert "exploded" in str(info.value)
    assert api(url).messages.create(model="m", max_tokens=8, messages=hi()).content[0].text


# ------------------------------------------------------------------------------------------------ the real model
@pytest.fixture(scope="module")
def real(smollm2_gguf):
    with real_model_server(smollm2_gguf) as (url, spec, _engine):
        yield url, spec


FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
SYSTEM = "You are a helpful assistant."  # with the template's default system prompt the Q4_1 model answers in French


@pytest.mark.slow
def test_real_model_create_and_stream(real):
    url, spec = real
    client = api(url).with_options(timeout=300)
    whole = client.messages.create(model="m", max_tokens=64, system=SYSTEM, messages=FRANCE,
                                   extra_body={"temperature": 0})
    assert "Paris" in whole.content[0].text and whole.stop_reason == "end_turn" and whole.model == spec.name
    enc = spec.encode([{"role": "system", "content": SYSTEM}, *FRANCE], add_generation_prompt=True,
                      assistant_mask=False)
    assert whole.usage.input_tokens == len(enc.ids)
    counted = client.messages.count_tokens(model="m", system=SYSTEM, messages=FRANCE)
    assert counted.input_tokens == len(enc.ids)
    with client.messages.stream(model="m", max_tokens=64, system=SYSTEM, messages=FRANCE,
                                extra_body={"temperature": 0}) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(texts) > 2 and "".join(texts) == whole.content[0].text == final.content[0].text
    assert final.usage.output_tokens == whole.usage.output_tokens


@pytest.mark.slow
def test_real_model_tool_choice_any_writes_valid_input_over_10_seeds(real):
    jsonschema = pytest.importorskip("jsonschema", reason="inputs are validated with jsonschema")
    url, _ = real
    client = api(url).with_options(timeout=300)
    weather = {**WEATHER, "input_schema": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 40}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"]}}
    for seed in range(10):
        reply = client.messages.create(model="m", max_tokens=160, system=SYSTEM, tools=[weather],
                                       tool_choice={"type": "any"},
                                       messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                                       extra_body={"temperature": 1.0, "seed": seed})
        calls = [b for b in reply.content if b.type == "tool_use"]
        assert calls and reply.stop_reason == "tool_use", (seed, reply)
        for call in calls:
            assert call.name == "get_weather" and call.id.startswith("toolu_")
            jsonschema.validate(call.input, weather["input_schema"])


# ------------------------------------------------------------------------------------------------ the fold
def test_a_streamed_call_cut_short_keeps_its_block_and_the_text_follows():
    from turnspec.server.anthropic_api import BlockAssembler

    asm = BlockAssembler(True, ())
    events = []
    for event in [ToolCallDelta("abcdefghi", "get_weather", ""), ToolCallDelta("abcdefghi", "", '{"city": "Par'),
                  ToolCallError('{"name": "get_weather", "arguments": {"city": "Par', "cut short"),
                  Done("length")]:
        events += asm.add(event)
    events += asm.finish()
    assert [name for name, _ in events] == ["content_block_start", "content_block_delta", "content_block_stop",
                                            "content_block_start", "content_block_delta", "content_block_stop"]
    assert asm.content[0] == {"type": "tool_use", "id": "toolu_abcdefghi", "name": "get_weather", "input": {}}
    assert asm.content[1]["type"] == "text" and asm.content[1]["text"].startswith('{"name": "get_weather"')
    assert asm.stop_reason == "max_tokens"


def test_an_assembler_without_argument_streaming_sends_each_call_whole():
    """APIs whose calls carry arguments as objects (Ollama's) fold with `stream_arguments=False`: the deltas every
    server job carries are skipped and the call arrives whole, as before."""
    from turnspec.server.responses import TurnAssembler

    events = [ToolCallDelta("abcdefghi", "get_weather", ""), ToolCallDelta("abcdefghi", "", '{"city": '),
              ToolCallDelta("abcdefghi", "", '"Paris"}'), ToolCall("get_weather", {"city": "Paris"}, "", "abcdefghi"),
              Done("tool_calls")]
    whole = TurnAssembler(True)
    deltas = [d for d in map(whole.add, events) if d is not None]
    assert deltas == [{"tool_calls": [{"index": 0, "id": "abcdefghi", "type": "function",
                                       "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}]
    streaming = TurnAssembler(True, stream_arguments=True)
    deltas = [d for d in map(streaming.add, events) if d is not None]
    assert len(deltas) == 3 and streaming.message()["tool_calls"] == whole.message()["tool_calls"]


def test_tool_use_ids_map_back_to_the_ids_the_template_renders(smol_tokenizer):
    """Mistral's template renders call ids and refuses any but 9 alphanumerics: a `toolu_` id sent back (in the
    tool_use and in the tool_result that answers it) is rendered as the reader's own 9-character id."""
    template = need(CORPUS / "templates" / "mistralai-Mistral-Nemo-Instruct-2407.jinja").read_text(encoding="utf-8")
    spec = turnspec.from_template(template, name="nemo", tokenizer=smol_tokenizer,
                                  special_tokens={"bos_token": "<s>", "eos_token": "</s>"})
    engine = ScriptedEngine(smol_tokenizer, lambda prompt: "It is 18 C.</s>")
    history = hi("Weather in Paris?") + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_a1b2c3d4e", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a1b2c3d4e", "content": "18 C"}]}]
    with running(create_app(spec, engine)) as url:
        reply = api(url).messages.create(model="m", max_tokens=16, messages=history, tools=[WEATHER])
    prompt = engine.generations[-1]["prompt"]
    assert '"id": "a1b2c3d4e"' in prompt and '"call_id": "a1b2c3d4e"' in prompt and "toolu_" not in prompt
    assert reply.content[0].text == "It is 18 C."


def test_concurrent_messages_and_chat_completions_are_not_mixed_up(smol_spec, smol_tokenizer):
    """12 requests at once, half Anthropic (half of those streamed), half OpenAI: each gets its own answer."""
    from concurrent.futures import ThreadPoolExecutor

    from test_server import client

    with smol_server(smol_spec, smol_tokenizer, delay=0.002) as (url, _):
        def ask(n: int) -> str:
            question = f"request {n}"
            if n % 2:
                return client(url).chat.completions.create(
                    model="m", messages=[{"role": "user", "content": question}]).choices[0].message.content
            if n % 4:
                with api(url).messages.stream(model="m", max_tokens=64, messages=hi(question)) as stream:
                    return stream.get_final_message().content[0].text
            return api(url).messages.create(model="m", max_tokens=64, messages=hi(question)).content[0].text

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(ask, range(12)))
    for n, answer in enumerate(answers):
        assert answer == f"Answer {n}: " + " ".join(f"w{n}x{k}" for k in range(8)), (n, answer)


@pytest.mark.slow
def test_real_model_streams_a_forced_calls_input_as_it_is_written(smollm2_gguf):
    """SmolLM2's weights with Qwen2.5's template (Hermes `<tool_call>` syntax): the grammar writes the call in the
    template's syntax and its input streams in several input_json_delta pieces that join into the final input."""
    pytest.importorskip("llama_cpp", reason="the llamacpp engine needs llama-cpp-python: pip install 'turnspec[llamacpp]'")
    from turnspec.engines import load_engine

    spec = turnspec.load(smollm2_gguf, template=need(CORPUS / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja"))
    engine = load_engine("llamacpp", smollm2_gguf)
    try:
        with running(create_app(spec, engine)) as url:
            client = api(url).with_options(timeout=300)
            ask = dict(model="m", max_tokens=160, system=SYSTEM, tools=[WEATHER],
                       tool_choice={"type": "any", "disable_parallel_tool_use": True},
                       messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                       extra_body={"temperature": 0})
            with client.messages.stream(**ask) as stream:
                events = list(stream)
                final = stream.get_final_message()
            whole = client.messages.create(**ask)
    finally:
        engine.close()
    pieces = [e.delta.partial_json for e in events if e.type == "content_block_delta"
              and e.delta.type == "input_json_delta"]
    [call] = [b for b in final.content if b.type == "tool_use"]
    assert len(pieces) > 3 and json.loads("".join(pieces)) == call.input and isinstance(call.input.get("city"), str)
    assert final.stop_reason == whole.stop_reason == "tool_use"
    assert [b.input for b in whole.content if b.type == "tool_use"] == [call.input]
