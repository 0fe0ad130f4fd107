"""Tool-call arguments streamed as they are written (`ToolCallDelta`, readers with `call_deltas=True`).

On every template in ../shared, the calls the template itself writes (one call, two parallel calls; the round
trip's messages) are read token by token and in random text chunks with deltas on. The deltas must change nothing
else the reader says, and each streamed call's pieces must join into JSON text that parses to the arguments of the
ToolCall that follows with the same id: a reassembled stream equals the whole response.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

import turnspec
from turnspec.reader.events import ToolCall, ToolCallDelta, ToolCallError

from helpers.paths import CORPUS, SMOLLM2_DIR, need
from helpers.corpus_models import special_tokens_for, template_files, template_id
from helpers.roundtrip import _render, spec_for, tools_for

STREAMED: dict[str, int] = {}  # template -> calls whose arguments streamed (filled by the tests below)


def read(spec: Any, prompt: str, chunks: list[Any], *, deltas: bool) -> list[Any]:
    reader = spec.reader(prompt, tools=tools_for(spec), call_deltas=deltas)
    events: list[Any] = []
    for chunk in chunks:
        events += reader.feed_token(chunk) if isinstance(chunk, int) else reader.feed_text(chunk)
        if reader.done:
            break
    return events + reader.finish()


def check(events: list[Any]) -> int:
    """The invariants of one read; how many calls streamed their arguments."""
    pieces: dict[str, list[ToolCallDelta]] = {}
    closed: set[str] = set()
    for event in events:
        if isinstance(event, ToolCallDelta):
            assert event.id not in closed, "a delta after its call ended"
            pieces.setdefault(event.id, []).append(event)
        elif isinstance(event, ToolCall) and event.id in pieces:
            first, *rest = pieces[event.id]
            assert first.name == event.name and first.arguments == "" and all(not d.name for d in rest)
            text = "".join(d.arguments for d in rest)
            assert json.loads(text) == event.arguments, (text, event.arguments)
            closed.add(event.id)
        elif isinstance(event, ToolCallError):
            closed.update(pieces)
    return len(closed)


def without_deltas(events: list[Any]) -> list[Any]:
    return [e for e in events if not isinstance(e, ToolCallDelta)]


@pytest.mark.parametrize("path", template_files(), ids=template_id)
def test_streamed_arguments_join_into_the_calls_arguments(path):
    need(path)
    if path.name == "chat_template.jinja":
        spec = turnspec.load(path.parent)
    else:
        spec = spec_for(path.read_text(encoding="utf-8"), special_tokens_for(path), SMOLLM2_DIR / "tokenizer.json")
    tokenizer = spec.vocab.tokenizer
    rng = random.Random(path.name)
    streamed = 0
    for case in ("one call", "two calls"):
        rendered = _render(spec, case)
        if isinstance(rendered, str):
            continue
        prompt, output = rendered
        ids = tokenizer.encode(output, add_special_tokens=False).ids
        plain = read(spec, prompt, ids, deltas=False)
        by_token = read(spec, prompt, ids, deltas=True)
        assert without_deltas(by_token) == plain  # deltas add events, they change none
        streamed += check(by_token)
        cuts = sorted(rng.sample(range(1, len(output)), min(len(output) - 1, 12)))
        chunks = [output[a:b] for a, b in zip([0, *cuts], [*cuts, len(output)])]
        by_text = read(spec, prompt, chunks, deltas=True)
        assert without_deltas(by_text) == read(spec, prompt, chunks, deltas=False)
        check(by_text)
    STREAMED[template_id(path)] = streamed


def test_arguments_stream_on_the_common_syntaxes():
    """Not vacuous: Hermes-style JSON calls (Qwen2.5), Harmony and Llama 3's bare JSON stream, and so do 21 of the
    corpus templates today."""
    if len(STREAMED) < len(template_files()):
        pytest.skip("runs after the per-template tests (whole module)")
    assert STREAMED.get("Qwen-Qwen2.5-7B-Instruct", 0) >= 3  # one call, then two
    assert STREAMED.get("openai-gpt-oss-120b", 0) >= 1  # Harmony: the function message body
    assert STREAMED.get("meta-llama-Llama-3.1-8B-Instruct", 0) >= 1  # a call with no trigger, held at the start
    assert sum(1 for n in STREAMED.values() if n) >= 20, STREAMED


def test_a_call_cut_short_ends_in_an_error_after_its_deltas():
    template = need(CORPUS / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text(encoding="utf-8")
    spec = spec_for(template, {"eos_token": "<|im_end|>"}, SMOLLM2_DIR / "tokenizer.json")
    events = read(spec, "", ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par'], deltas=True)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["ToolCallDelta", "ToolCallDelta", "ToolCallError", "Done"], kinds
    assert events[0].name == "get_weather" and events[1].arguments == '{"city": "Par'
    check(events)


def test_arguments_given_as_a_string_are_not_streamed_but_still_read():
    """`"arguments": "{…}"` is JSON inside a string: nothing streams (its text is not the arguments' JSON), and the
    call arrives whole."""
    template = need(CORPUS / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text(encoding="utf-8")
    spec = spec_for(template, {"eos_token": "<|im_end|>"}, SMOLLM2_DIR / "tokenizer.json")
    events = read(spec, "", ['<tool_call>\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}\n',
                             "</tool_call>"], deltas=True)
    assert not [e for e in events if isinstance(e, ToolCallDelta)]
    [call] = [e for e in events if isinstance(e, ToolCall)]
    assert call.arguments == {"city": "Paris"}
