"""Calls as the two templates vLLM ships with its functiongemma and llama4_pythonic tool parsers write them
(tests/data/vllm_templates, vLLM 0.33's examples, Apache-2.0, byte for byte): FunctionGemma's
`<start_function_call>call:name{key:<escape>value<escape>,…}<end_function_call>` and Llama 4's bare pythonic list
`[name(key='value', …)]`.

The syntax comes from each template's analysis (nothing here names a model). Each assistant message the template
renders reads back as the same message, whole and token by token through the SmolLM2 vocabulary with the template's
control tokens as special tokens; the outputs vLLM's own parser tests use read the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.paths import SMOLLM2_DIR, need
from helpers.reading import read_reply, split, tool
from helpers.roundtrip import CASES, round_trip, spec_for

TEMPLATES = Path(__file__).parent / "data" / "vllm_templates"
FUNCTIONGEMMA = "tool_chat_template_functiongemma.jinja"
LLAMA4_PYTHONIC = "tool_chat_template_llama4_pythonic.jinja"
WEATHER = tool("get_weather", location="string", unit="string")
TIME = tool("get_time", timezone="string")


def load(name: str):
    return spec_for(need(TEMPLATES / name).read_text(encoding="utf-8"), {"bos_token": "<|begin_of_text|>"},
                    need(SMOLLM2_DIR / "tokenizer.json"))


@pytest.fixture(scope="module")
def functiongemma():
    return load(FUNCTIONGEMMA)


@pytest.fixture(scope="module")
def llama4():
    return load(LLAMA4_PYTHONIC)


def read(spec, output: str, tools: list[dict]):
    """(content, reasoning, calls) read whole; the token-by-token read must give the same."""
    return split(read_reply(spec, output, tools, tokenizer=spec.vocab.tokenizer, chunk=0))


def rendered_reply(spec, calls: list[tuple[str, dict]], tools: list[dict]) -> str:
    """What the template writes for an assistant message with these calls: the rendering minus the prompt."""
    conversation = [{"role": "user", "content": "Hi"}]
    message = {"role": "assistant", "content": "", "tool_calls": [
        {"id": f"call{i}", "type": "function", "function": {"name": n, "arguments": a}} for i, (n, a) in enumerate(calls)]}
    prompt = spec.render(conversation, add_generation_prompt=True, tools=tools)
    full = spec.render([*conversation, message], tools=tools)
    assert full.startswith(prompt)
    return full[len(prompt):]


def test_functiongemma_round_trip():
    """The shared round trip (an answer, one call, two parallel calls, typed by the schema) reads back."""
    spec = load(FUNCTIONGEMMA)
    report = round_trip(FUNCTIONGEMMA, spec, spec.vocab.tokenizer)
    verdicts = {o.case: o.verdict for o in report.outcomes}
    assert set(verdicts) == set(CASES) and not report.failures
    assert [verdicts[c] for c in ("content", "one call", "two calls")] == ["ok"] * 3


@pytest.mark.parametrize("name", [FUNCTIONGEMMA, LLAMA4_PYTHONIC])
def test_rendered_calls_read_back(name):
    """String values holding the separator and brackets (`San Francisco, CA (US)`). Llama 4's template quotes every
    value (`days="3"`), so only strings survive its rendering as written; the shared round trip's integer does not."""
    spec = load(name)
    calls = [("get_weather", {"location": "San Francisco, CA (US)", "unit": "celsius"}), ("get_time", {"timezone": "UTC"})]
    output = rendered_reply(spec, calls, [WEATHER, TIME])
    assert "San Francisco, CA (US)" in output
    assert read(spec, output, [WEATHER, TIME]) == ("", "", calls)


def test_functiongemma_escaped_strings_and_parallel_calls(functiongemma):
    out = ("<start_function_call>call:get_weather{location:<escape>San Francisco, CA<escape>,unit:<escape>celsius"
           "<escape>}<end_function_call><start_function_call>call:get_time{timezone:<escape>UTC<escape>}"
           "<end_function_call>")
    assert read(functiongemma, out, [WEATHER, TIME]) == (
        "", "", [("get_weather", {"location": "San Francisco, CA", "unit": "celsius"}),
                 ("get_time", {"timezone": "UTC"})])


def test_functiongemma_plain_answer_stays_content(functiongemma):
    assert read(functiongemma, "Hello, how can I help you today?", [WEATHER]) == (
        "Hello, how can I help you today?", "", [])


def test_llama4_pythonic_list_of_calls(llama4):
    out = "[get_weather(location='LA', unit='C'), get_time(timezone='America/Los_Angeles')]"
    assert read(llama4, out, [WEATHER, TIME]) == (
        "", "", [("get_weather", {"location": "LA", "unit": "C"}), ("get_time", {"timezone": "America/Los_Angeles"})])


def test_llama4_pythonic_prose_with_brackets_is_not_a_call(llama4):
    out = "Use a list like [1, 2] or call get_weather(location='LA') yourself."
    assert read(llama4, out, [WEATHER]) == (out, "", [])
