"""Loose call forms small models write, read when they name a declared tool — and prose that stays prose.

Outputs are synthetic, in the shapes small models are seen to produce (a call in a ```json fence, a bare JSON
object after some prose, `<function=name>{…}</function>`, a pythonic list, a Hermes call on a template that writes
calls another way). The templates are real (../shared/corpus); SmolLM2's tokenizer splits every output into real
byte-level tokens for the token-by-token reads.
"""

from __future__ import annotations

import random

import pytest

from turnspec.reader import reader_for

from helpers.corpus_models import corpus_spec

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string"}, "days": {"type": "integer"}}}}}
TOOLS = [WEATHER]
LLAMA = "meta-llama-Llama-3.1-8B-Instruct.jinja"
QWEN = "Qwen-Qwen2.5-7B-Instruct.jinja"
GEMMA = "google-gemma-2-2b-it.jinja"  # renders no tools at all


@pytest.fixture(scope="module")
def tok(smollm2_dir):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))


def read(template: str, output: str, tok, tools=TOOLS):
    """The result read whole, in random chunks and token by token; all three must agree."""
    spec = corpus_spec(template)
    whole = reader_for(spec, "", declared_tools=tools).read_all(output)
    r = reader_for(spec, "", declared_tools=tools)
    rnd, i = random.Random(len(output)), 0
    while i < len(output):
        n = rnd.randint(1, 6)
        r.feed_text(output[i:i + n])
        i += n
    r.finish()
    assert r.result == whole
    r = reader_for(spec, "", declared_tools=tools)
    for tid in tok.encode(output, add_special_tokens=False).ids:
        r.feed_text(tok.decode([tid]))
    r.finish()
    assert r.result == whole
    return whole


def calls(res):
    return [(c.name, c.arguments) for c in res.tool_calls]


@pytest.mark.parametrize("template", [LLAMA, QWEN, GEMMA])
def test_a_call_in_a_json_fence(template, tok):
    out = 'Sure.\n```json\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n```\nDone.'
    res = read(template, out, tok)
    assert calls(res) == [("get_weather", {"city": "Paris", "days": 2})]
    assert res.content == "Sure."  # a message is its answer, then its calls: what follows the call is dropped
    assert any("after the tool calls" in w for w in res.warnings)


def test_a_json_call_after_some_prose_on_llama3(tok):
    out = 'Let me look that up. {"name": "get_weather", "parameters": {"city": "Paris"}}'
    res = read(LLAMA, out, tok)
    assert calls(res) == [("get_weather", {"city": "Paris"})] and res.content == "Let me look that up."


def test_function_tags_and_pythonic_lists_and_hermes_on_other_templates(tok):
    res = read(QWEN, 'Checking <function=get_weather>{"city": "Oslo"}</function>', tok)
    assert calls(res) == [("get_weather", {"city": "Oslo"})] and res.content == "Checking"
    res = read(GEMMA, '[get_weather(city="Rome", days=3)]', tok)
    assert calls(res) == [("get_weather", {"city": "Rome", "days": 3})] and res.content == ""
    res = read(LLAMA, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lima"}}\n</tool_call>', tok)
    assert calls(res) == [("get_weather", {"city": "Lima"})] and res.content == ""


@pytest.mark.parametrize("out", [
    'Use {name} as a placeholder and [1, 2] for lists: a < b > c.',
    '{"capital": "Paris"}',  # a JSON answer that is not a call
    '```json\n{"name": "Paris", "country": "France"}\n```',  # names no declared tool
    '{"name": "get_time", "arguments": {}}',  # an undeclared tool
    "[see(this)] and <function=other>{}</function>",
    "Call get_weather(city='Paris') when you need it.",  # a declared name in prose, not in a list
    "```python\nprint({'a': [1]})\n```",
])
@pytest.mark.parametrize("template", [QWEN, GEMMA])
def test_prose_stays_prose(template, out, tok):
    res = read(template, out, tok)
    assert not res.tool_calls and not res.errors
    assert res.content == out


def test_no_declared_tools_no_loose_calls(tok):
    out = '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```'
    res = read(GEMMA, out, tok, tools=None)
    assert not res.tool_calls and res.content == out
