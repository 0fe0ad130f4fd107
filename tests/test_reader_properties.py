"""Fuzzing every format with random outputs built from its own markers: never a crash, chunking never
changes the result, and no control token ever reaches visible text. Outputs are synthetic by design."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnspec.reader import StreamReader
from turnspec.reader.events import collect
from turnspec.formats import HARMONY as HARMONY_FORMAT

FRAGMENTS = [
    "a", "b c", " ", "\n", "\n\n", "👋", "é", "<", "|", ">", "{", "}", '"', ":",
    '{"name": "f", "arguments": {"x": 1}}', '{"name": "g", "parameters": {}}', '[{"name": "h", "arguments": {}}]',
    "<think>", "</think>", "<tool_call>", "</tool_call>", "<|python_tag|>", "[TOOL_CALLS]", "[ARGS]",
    *HARMONY_FORMAT.tokens, "analysis", "final", "commentary", " to=functions.f ", "json", "<|ctl|>", "STOP",
]  # fmt: skip

CONFIGS = {
    "plain": dict(),
    "think+hermes": dict(reasoning="think", call_format="hermes"),
    "think opened": dict(reasoning="think", starts_in_reasoning=True),
    "llama3": dict(call_format="llama3"),
    "mistral": dict(call_format="mistral"),
    "harmony": dict(reasoning="harmony", channel_prefix="<|start|>assistant"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30), st.lists(st.integers(0, 400), max_size=12))
def test_any_output_any_chunking(name, fragments, cuts):
    config = dict(CONFIGS[name], control_tokens=("<|ctl|>",), stop_strings=("STOP",))
    text = "".join(fragments)
    whole = StreamReader(**config).read_all(text)
    r = StreamReader(**config)
    events = []
    bounds = [0, *sorted({c % (len(text) + 1) for c in cuts}), len(text)]
    for a, b in zip(bounds, bounds[1:]):
        events += r.feed_text(text[a:b])
    events += r.finish()
    assert r.result == whole == collect(events)
    visible = whole.content + whole.reasoning
    assert "<|ctl|>" not in visible and "STOP" not in visible
    if name == "harmony":
        assert not any(t in visible for t in HARMONY_FORMAT.tokens)
    if name.startswith("think"):
        assert "<think>" not in visible and "</think>" not in visible
    assert whole.finish_reason in ("stop", "tool_calls")
    assert (whole.finish_reason == "tool_calls") == bool(whole.tool_calls)
    for call in whole.tool_calls:
        assert isinstance(call.arguments, dict)
