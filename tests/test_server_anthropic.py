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
from turnspec.server import create_app  # noqa: E402
from turnspec.server.models import ModelManager, ServedModel  # noqa: E402

from conftest import CORPUS, need  # noqa: E402
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
