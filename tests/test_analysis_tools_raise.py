"""A template that raises when given tools but writes calls in a history rendered without them: llama.cpp's
DeepSeek-R1 template (real, from llama.cpp's test templates) pipes `tools | map(...)` into `tojson`,
which jinja2 and transformers refuse (../shared's older revision of it shows no call to the probes). The call syntax is learned from the history renderings, the analysis says
so, and a prompt declaring tools still raises. Outputs are written the way llama.cpp's test-chat.cpp writes them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import turnspec
from turnspec.errors import TemplateError

from helpers.paths import need

NAME = "llama-cpp-deepseek-r1.jinja"
PATH = Path(__file__).parent / "data" / "llamacpp_templates" / NAME
TOKENS = {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}
SPECIAL = {"type": "function", "function": {"name": "special_function", "parameters": {
    "type": "object", "properties": {"arg1": {"type": "integer"}}, "required": ["arg1"]}}}
CALL = ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>special_function\n"
        "```json\n{\"arg1\": 1}```<｜tool▁call▁end｜><｜tool▁calls▁end｜>")


@pytest.fixture(scope="module")
def spec() -> turnspec.ChatSpec:
    return turnspec.from_template(need(PATH).read_text(encoding="utf-8"), special_tokens=TOKENS)


def read(spec, output: str):
    """Read whole and in 3-character pieces (the two must agree); the prompt is rendered without tools."""
    prompt = spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    whole = spec.reader(prompt, tools=[SPECIAL]).read_all(output)
    reader = spec.reader(prompt, tools=[SPECIAL])
    for i in range(0, len(output), 3):
        reader.feed_text(output[i:i + 3])
    reader.finish()
    parts = [(r.content, r.reasoning, [(c.name, c.arguments) for c in r.tool_calls]) for r in (whole, reader.result)]
    assert parts[0] == parts[1]
    return parts[0]


def test_the_call_syntax_is_learned_from_a_history_without_tools(spec):
    tools = spec.analysis.tools
    assert tools.rendered.startswith("raises: TypeError")
    assert tools.readable and tools.calls[0].section_open == "<｜tool▁calls▁begin｜>"
    assert any("rendered without tools" in note for note in spec.analysis.notes)
    with pytest.raises(TemplateError):  # a prompt declaring tools still raises, as in transformers
        spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tools=[SPECIAL])


@pytest.mark.parametrize("output, expected", [
    ("I'm\nthinking</think>" + CALL, ("", "I'm\nthinking", [("special_function", {"arg1": 1})])),
    ("</think>" + CALL, ("", "", [("special_function", {"arg1": 1})])),
    ("I'm\nthinking</think>Hello, world!", ("Hello, world!", "I'm\nthinking", [])),
])
def test_calls_are_read_as_the_model_writes_them(spec, output, expected):
    assert read(spec, output) == expected
