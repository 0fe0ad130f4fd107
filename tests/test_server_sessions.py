"""serve keeps conversations as exact ids: a request that continues one (its messages = an earlier request's +
that answer + new ones) is extended from the kept ids, so only its new tokens are prefilled
(usage.prompt_tokens_details.cached_tokens), on the Qwen3 template, which drops past reasoning when re-rendered.

The engine is the scripted one of test_server.py, given a KV cache as llama.cpp's: the common prefix of the new
prompt with the last prompt + its output (minus the last sampled token, never evaluated) is reused.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'turnspec[serve]'")

import turnspec  # noqa: E402
from turnspec.engines.base import common_prefix  # noqa: E402
from turnspec.server import create_app  # noqa: E402

from helpers.paths import CORPUS, need  # noqa: E402
from test_server import WEATHER_TOOL, ScriptedEngine, client, raw_request, running, smol_tokenizer  # noqa: E402,F401

CALL = ('<think>\nThe user wants the weather: call the tool.\n</think>\n\n<tool_call>\n'
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>')
FINAL = "<think>\nThe tool answered.\n</think>\n\nIt is 18 C and sunny in Paris.<|im_end|>"


class CachingEngine(ScriptedEngine):
    """A scripted engine that reports the KV prefix it would reuse (llama.cpp's rule)."""

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.held: list[int] = []

    def generate(self, prompt_ids, **kw):
        prompt = list(prompt_ids)
        self.last_reused = min(common_prefix(self.held, prompt), len(prompt) - 1)
        steps = super().generate(prompt_ids, **kw)

        def kept():
            out = []
            try:
                for t in steps:
                    out.append(t)
                    yield t
            finally:  # the caller closes the generator once the reader has the stop
                self.held = prompt + out[:-1]

        return kept()


@pytest.fixture
def qwen3(smol_tokenizer):
    template = need(CORPUS / "templates" / "Qwen-Qwen3-0.6B.jinja").read_text(encoding="utf-8")
    return turnspec.from_template(template, name="qwen3-template", tokenizer=smol_tokenizer,
                                  special_tokens={"eos_token": "<|im_end|>"})


def serve(spec, tokenizer, **app_kw):
    engine = CachingEngine(tokenizer, lambda p: FINAL if p.endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")
                           else CALL)
    return engine, running(create_app(spec, engine, **app_kw))


def as_sent_back(message: Any) -> dict[str, Any]:
    """The answer as an OpenAI client appends it to its history (no reasoning, arguments as a JSON string)."""
    out = {"role": "assistant", "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.function.name, "arguments": c.function.arguments}}
                             for c in message.tool_calls]
    return out


def whole_ids(spec: Any, messages: list[dict[str, Any]]) -> list[int]:
    """What the server renders for `messages` without a kept session (content null as "", arguments as objects)."""
    msgs = []
    for m in messages:
        m = {**m, "content": m.get("content") or ""}
        if m.get("tool_calls"):
            m["tool_calls"] = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                               for c in m["tool_calls"]]
        msgs.append(m)
    return spec.encode(msgs, add_generation_prompt=True, tools=[WEATHER_TOOL]).ids


def agent_turns(url: str, turns: int = 2, **create: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    api = client(url)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    replies = []
    for k in range(turns):
        reply = api.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL], **create)
        replies.append(reply)
        msg = reply.choices[0].message
        messages.append(as_sent_back(msg))
        if msg.tool_calls:
            messages.append({"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": "18 C, sunny"})
        else:
            messages.append({"role": "user", "content": f"And tomorrow ({k})?"})
    return messages, replies


def test_a_continued_conversation_keeps_its_ids_and_prefills_only_new_tokens(qwen3, smol_tokenizer):
    engine, server = serve(qwen3, smol_tokenizer)
    with server as url:
        messages, replies = agent_turns(url, 3)
        status, health = raw_request(url, "GET", "/health")
    first, second, third = engine.generations
    sampled = smol_tokenizer.encode(CALL, add_special_tokens=False).ids
    # every earlier id verbatim, the sampled reasoning included (the template's re-render drops it)
    assert second["prompt_ids"][:len(first["prompt_ids"]) + len(sampled)] == first["prompt_ids"] + sampled
    whole = whole_ids(qwen3, messages[:3])
    assert common_prefix(whole, second["prompt_ids"]) < len(first["prompt_ids"]) + len(sampled) - 1
    assert "The user wants the weather" in second["prompt"]
    # only the stop token, the tool result and the generation prompt were new
    usage = replies[1].usage
    assert usage.prompt_tokens == len(second["prompt_ids"])
    assert usage.prompt_tokens_details.cached_tokens == len(first["prompt_ids"]) + len(sampled) - 1
    new = usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens
    assert new == len(smol_tokenizer.encode("<|im_end|>\n<|im_start|>user\n<tool_response>\n18 C, sunny\n"
                                            "</tool_response><|im_end|>\n<|im_start|>assistant\n",
                                            add_special_tokens=False).ids)
    assert third["prompt_ids"][:len(second["prompt_ids"])] == second["prompt_ids"]
    assert replies[2].usage.prompt_tokens_details.cached_tokens >= len(second["prompt_ids"])
    assert status == 200 and health["sessions"]["continued"] == 2 and health["sessions"]["kept"] == 3


def test_streamed_usage_reports_cached_tokens(qwen3, smol_tokenizer):
    engine, server = serve(qwen3, smol_tokenizer)
    with server as url:
        messages, _ = agent_turns(url, 1)
        chunks = list(client(url).chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL],
                                                          stream=True, stream_options={"include_usage": True}))
    first, second = engine.generations
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == len(first["prompt_ids"]) + first["produced"] - 1
    assert second["prompt_ids"][:len(first["prompt_ids"])] == first["prompt_ids"]


def test_an_edited_history_is_rendered_whole(qwen3, smol_tokenizer):
    engine, server = serve(qwen3, smol_tokenizer)
    with server as url:
        messages, _ = agent_turns(url, 1)
        messages[0]["content"] = "Weather in Rome?"  # not the conversation that was kept
        client(url).chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
        _, health = raw_request(url, "GET", "/health")
    assert engine.generations[-1]["prompt_ids"] == whole_ids(qwen3, messages)
    assert health["sessions"]["continued"] == 0


def test_an_answer_returned_otherwise_is_not_continued(qwen3, smol_tokenizer):
    """The client changed the arguments of the call it got back: the hash does not match, a whole render."""
    engine, server = serve(qwen3, smol_tokenizer)
    with server as url:
        messages, _ = agent_turns(url, 1)
        messages[1]["tool_calls"][0]["function"]["arguments"] = json.dumps({"city": "Lyon"})
        client(url).chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
    assert engine.generations[-1]["prompt_ids"] == whole_ids(qwen3, messages)


def test_sessions_off_and_lru_bound(qwen3, smol_tokenizer):
    engine, server = serve(qwen3, smol_tokenizer, max_sessions=0)
    with server as url:
        messages, _ = agent_turns(url, 2)
    assert engine.generations[-1]["prompt_ids"] == whole_ids(qwen3, messages[:3])
    engine, server = serve(qwen3, smol_tokenizer, max_sessions=1)
    with server as url:
        api = client(url)
        first = [{"role": "user", "content": "Weather in Paris?"}]
        a = api.chat.completions.create(model="m", messages=first, tools=[WEATHER_TOOL]).choices[0].message
        other = [{"role": "user", "content": "Weather in Oslo?"}]
        api.chat.completions.create(model="m", messages=other, tools=[WEATHER_TOOL])  # evicts the first
        follow = [*first, as_sent_back(a), {"role": "tool", "tool_call_id": a.tool_calls[0].id, "content": "18 C"}]
        api.chat.completions.create(model="m", messages=follow, tools=[WEATHER_TOOL])
        _, health = raw_request(url, "GET", "/health")
    assert health["sessions"]["evicted"] >= 1 and health["sessions"]["held"] == 1
    assert engine.generations[-1]["prompt_ids"] == whole_ids(qwen3, follow)


def test_a_fresh_request_encodes_as_spec_encode(qwen3, smol_tokenizer):
    engine, server = serve(qwen3, smol_tokenizer)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather? <|im_end|> x"}]
    with server as url:
        client(url).chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
    assert engine.generations[0]["prompt_ids"] == whole_ids(qwen3, messages)
