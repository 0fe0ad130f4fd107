"""Tags built from generic tokens and a name, on llama.cpp's Kimi-K3 template (real, byte for byte): `<|open|>think<|sep|>`
… `<|close|>think<|sep|>`, the answer in `<|open|>response<|sep|>` … `<|close|>response<|sep|>`, calls in
`<|open|>tools<|sep|><|open|>call tool="f" index="1"<|sep|><|open|>argument key="k" type="number"<|sep|>1<|close|>argument<|sep|>…`
and the turn closed by `<|close|>message<|sep|>`. All learned by rendering (turnspec.analysis.compound); outputs
below are written the way Kimi-K3 writes them (llama.cpp's parser tests), read whole and in 3-character pieces.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import turnspec
from turnspec.analysis.compound import compound_tags

from helpers.paths import CORPUS, need
from helpers.reading import read_reply, split

KIMI_K3 = Path(__file__).parent / "data" / "llamacpp_templates" / "Kimi-K3.jinja"
TOOLS = [{"type": "function", "function": {"name": "special_function", "parameters": {
    "type": "object", "properties": {"arg1": {"type": "integer"}, "arg2": {"type": "integer"}}}}},
         {"type": "function", "function": {"name": "python", "parameters": {
             "type": "object", "properties": {"code": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def k3():
    return turnspec.from_template(need(KIMI_K3).read_text(encoding="utf-8"))


def read(spec, output: str, **render_kwargs):
    """(content, reasoning, calls) read whole; the same text fed in 3-character pieces must read the same."""
    return split(read_reply(spec, output, TOOLS, **render_kwargs))


def test_the_analysis_learns_the_compound_tags(k3):
    a = k3.analysis
    assert a.assistant_header == '<|open|>message role="assistant"<|sep|>'
    assert (a.reasoning.kind, a.reasoning.open, a.reasoning.close, a.reasoning.prompt_opens) == \
        ("tags", "<|open|>think<|sep|>", "<|close|>think<|sep|>", True)
    assert (a.content.open, a.content.close) == ("<|open|>response<|sep|>", "<|close|>response<|sep|>")
    assert a.turn_ends == ("<|close|>message<|sep|>",)
    assert [c.describe() for c in a.tools.calls] == [
        '<|open|>tools<|sep|><|open|>call tool="{name}" index="{index}"<|sep|><|open|>argument key="{key}" '
        'type="{…}"<|sep|>{value}<|close|>argument<|sep|>…<|close|>call<|sep|><|close|>tools<|sep|>']


END = "<|close|>message<|sep|>"


@pytest.mark.parametrize("output, want", [
    ("I'm thinking about this<|close|>think<|sep|><|open|>response<|sep|>Hello, world!\nWhat's up?"
     "<|close|>response<|sep|>" + END, ("Hello, world!\nWhat's up?", "I'm thinking about this", [])),
    ("<|open|>response<|sep|>Hello<|close|>response<|sep|>" + END, ("Hello", "", [])),  # no reasoning written
    ("I was still thinking when the budget ran out", ("", "I was still thinking when the budget ran out", [])),
    ("I should call it<|close|>think<|sep|><|open|>response<|sep|>On it.<|close|>response<|sep|><|open|>tools<|sep|>"
     '<|open|>call tool="special_function" index="1"<|sep|><|open|>argument key="arg1" type="number"<|sep|>1'
     '<|close|>argument<|sep|><|open|>argument key="arg2" type="number"<|sep|>2<|close|>argument<|sep|>'
     '<|close|>call<|sep|><|open|>call tool="python" index="2"<|sep|><|open|>argument key="code" type="string"<|sep|>'
     "print('hey')\nprint(1 < 2)<|close|>argument<|sep|><|close|>call<|sep|><|close|>tools<|sep|>" + END,
     ("On it.", "I should call it", [("special_function", {"arg1": 1, "arg2": 2}),
                                     ("python", {"code": "print('hey')\nprint(1 < 2)"})])),
])
def test_kimi_k3_outputs_read_whole_and_streamed(k3, output, want):
    assert read(k3, output) == want


def test_a_call_without_its_section_and_a_stray_generic_token(k3):
    """The generic `<|open|>` starts a call only with the call's tag name; alone it is a control token, never shown."""
    call = ('<|open|>call tool="python" index="1"<|sep|><|open|>argument key="code" type="string"<|sep|>x = 1'
            "<|close|>argument<|sep|><|close|>call<|sep|>")
    assert k3.analysis.tools.calls[0].triggers == ("<|open|>tools<|sep|>", "<|open|>call")
    assert read(k3, "R<|close|>think<|sep|>" + call + END) == ("", "R", [("python", {"code": "x = 1"})])
    out = "R<|close|>think<|sep|><|open|>response<|sep|>Hello <|open|> world<|close|>response<|sep|>" + END
    assert read(k3, out) == ("Hello  world", "R", [])


def test_prose_naming_the_tags_stays_the_answer(k3):
    out = "<|open|>response<|sep|>Use the response tag, then message the handler: think, tools, call.<|close|>response<|sep|>"
    assert read(k3, out + END) == ("Use the response tag, then message the handler: think, tools, call.", "", [])


def test_with_thinking_off_the_answer_is_read_from_the_start(k3):
    assert read(k3, "Hello<|close|>response<|sep|>" + END, thinking=False) == ("Hello", "", [])


def test_tokens_that_do_not_pair_make_no_compound_tags():
    """Llama 3's `<|start_header_id|>user<|end_header_id|>` is a header, not an open/close pair around a name."""
    spec = turnspec.from_template(need(CORPUS / "templates" / "meta-llama-Llama-3.1-8B-Instruct.jinja")
                                  .read_text(encoding="utf-8"))
    text = spec.render([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])
    assert compound_tags([text], spec.markup) == set()


def test_the_reader_finds_compound_tags_among_control_tokens():
    """Synthetic token lists: a tag is a token, a name and a token, all three control tokens; others are not."""
    from turnspec.analysis.compound import compound_members

    tokens = ("<|open|>", "<|close|>", "<|sep|>", "<|open|>think<|sep|>", "<|close|>think<|sep|>", "<|im_end|>",
              *(f"<unused{i}>" for i in range(3000)))
    assert compound_members(tokens) == ("<|close|>think<|sep|>", "<|open|>think<|sep|>")
    assert compound_members(("<|im_start|>", "<|im_end|>", "<think>", "</think>")) == ()
