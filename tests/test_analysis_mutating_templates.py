"""Templates that build their call ids with `list.append` (llama.cpp's copies of Kimi-K2-Thinking and Kimi-K2-Instruct,
real, byte for byte): transformers' immutable sandbox refuses the mutation, so no plain rendering shows a tool call.
The analysis learns the call syntax from a rendering that permits it (what the template would write), says so in
its notes, and never renders that way for the user: rendering a history with calls still raises, as in transformers.
Outputs below are written the way Kimi-K2 writes them (vLLM's and llama.cpp's parser tests).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import turnspec
from turnspec.errors import TemplateError
from turnspec.template import mutation_permitted, permitting_mutation, refuses_mutation

from helpers.paths import CORPUS, need
from helpers.reading import read_reply, split

LLAMACPP = Path(__file__).parent / "data" / "llamacpp_templates"

SPECIAL = {"type": "function", "function": {"name": "special_function", "parameters": {
    "type": "object", "properties": {"arg1": {"type": "integer"}}, "required": ["arg1"]}}}
PYTHON = {"type": "function", "function": {"name": "python", "parameters": {
    "type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}}}
TOOLS = [SPECIAL, PYTHON]
CALL_HISTORY = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "", "tool_calls": [
    {"type": "function", "function": {"name": "python", "arguments": {"code": "1"}}}]}]


def spec_of(name: str) -> turnspec.ChatSpec:
    return turnspec.from_template(need(LLAMACPP / name).read_text(encoding="utf-8"))


def read(spec, output: str):
    """(content, reasoning, calls) read whole; the same text fed in 3-character pieces must read the same."""
    return split(read_reply(spec, output, TOOLS))


@pytest.mark.parametrize("name", ["Kimi-K2-Thinking.jinja", "Kimi-K2-Instruct.jinja"])
def test_calls_are_learned_where_only_the_sandbox_refuses_them(name):
    spec = spec_of(name)
    calls = spec.analysis.tools.calls
    assert [c.describe() for c in calls] == ["<|tool_calls_section_begin|><|tool_call_begin|>functions.{name}:{index}"
                                             "<|tool_call_argument_begin|>{arguments}<|tool_call_end|>"
                                             "<|tool_calls_section_end|>"]
    assert any("transformers' sandbox refuses" in note for note in spec.analysis.notes)
    with pytest.raises(TemplateError, match="'append' of 'list' object is unsafe"):
        spec.render(CALL_HISTORY)  # the user's renders keep transformers' semantics


def test_transformers_refuses_the_same_rendering():
    """The premise, checked against the installed transformers: its sandbox refuses `list.append` too."""
    pytest.importorskip("transformers")
    import jinja2
    from transformers.utils.chat_template_utils import render_jinja_template

    source = need(LLAMACPP / "Kimi-K2-Thinking.jinja").read_text(encoding="utf-8")
    with pytest.raises(jinja2.exceptions.SecurityError, match="'append' of 'list' object is unsafe"):
        render_jinja_template(conversations=[CALL_HISTORY], chat_template=source)


def test_the_learned_syntax_is_the_one_kimi_k2_renders_plainly():
    """Moonshot's Kimi-K2 template writes calls without mutating a list: the syntax learned from the templates that
    need the mutation (llama.cpp's copy and Moonshot's own Kimi-K2-Thinking) is the same."""
    def official(name):
        return turnspec.from_template(need(CORPUS / "templates" / name).read_text(encoding="utf-8")).analysis

    plain = official("moonshotai-Kimi-K2.jinja")
    assert plain.tools.calls and not any("sandbox" in note for note in plain.notes)
    assert spec_of("Kimi-K2-Thinking.jinja").analysis.tools.calls == plain.tools.calls
    assert official("Kimi-K2-Thinking.jinja").tools.calls == plain.tools.calls


@pytest.mark.parametrize("output, want", [
    ("<|tool_calls_section_begin|><|tool_call_begin|>functions.special_function:0<|tool_call_argument_begin|>"
     '{"arg1": 1}<|tool_call_end|><|tool_calls_section_end|>',
     ("", "", [("special_function", {"arg1": 1})])),
    ("<think>I need to call two functions</think>Sure.<|tool_calls_section_begin|><|tool_call_begin|>"
     'functions.special_function:0<|tool_call_argument_begin|>{"arg1": 1}<|tool_call_end|><|tool_call_begin|>'
     'functions.python:1<|tool_call_argument_begin|>{"code": "print(\'hey\')"}<|tool_call_end|>'
     "<|tool_calls_section_end|>",
     ("Sure.", "I need to call two functions", [("special_function", {"arg1": 1}), ("python", {"code": "print('hey')"})])),
    ("<think>Calling it now<|tool_call_begin|>functions.python:0<|tool_call_argument_begin|>"
     '{"code": "print(1)"}',  # reasoning left open, section and call never closed (llama.cpp's test)
     ("", "Calling it now", [("python", {"code": "print(1)"})])),
])
def test_kimi_k2_thinking_outputs_read_whole_and_streamed(output, want):
    assert read(spec_of("Kimi-K2-Thinking.jinja"), output) == want


def test_prose_about_the_markers_stays_text():
    out = "Kimi writes calls after functions.python:0 and a JSON object {\"code\": 1}."
    assert read(spec_of("Kimi-K2-Thinking.jinja"), out) == (out, "", [])


def test_permitting_mutation_is_scoped_and_names_only_mutating_methods():
    spec = spec_of("Kimi-K2-Instruct.jinja")
    with permitting_mutation():
        assert "functions.python:0" in spec.render(CALL_HISTORY)
    with pytest.raises(TemplateError):
        spec.render(CALL_HISTORY)
    assert refuses_mutation("access to attribute 'append' of 'list' object is unsafe.")
    assert refuses_mutation("access to attribute 'update' of 'dict' object is unsafe.")
    assert not refuses_mutation("access to attribute '__class__' of 'list' object is unsafe.")
    assert not refuses_mutation("'foo' is undefined")


def test_onboarding_says_how_the_calls_were_learned():
    from turnspec.onboard import onboard_spec
    from turnspec.onboard.report import format_report

    report = onboard_spec(spec_of("Kimi-K2-Thinking.jinja"))
    assert "transformers' sandbox refuses" in report.findings["tools"]["learned"]
    assert "lets the template mutate a list" in format_report(report)


def test_the_permission_ends_with_an_exception_and_stays_in_its_thread():
    spec = spec_of("Kimi-K2-Instruct.jinja")
    seen: list[bool] = []
    with pytest.raises(KeyError), permitting_mutation():
        other = threading.Thread(target=lambda: seen.append(mutation_permitted()))
        other.start()
        other.join()
        raise KeyError("a probe failed")
    assert seen == [False] and not mutation_permitted()
    with pytest.raises(TemplateError, match="unsafe"):
        spec.render(CALL_HISTORY)


def test_a_template_quoting_the_refusal_is_probed_once_with_mutation(monkeypatch):
    """Synthetic: the template's own error quotes the sandbox's refusal. Probing again with mutation permitted fails
    the same way; the analysis must not retry that again and again (it recursed until the stack ran out)."""
    source = ("{%- for m in messages -%}{%- if m.tool_calls -%}{{ raise_exception(\"access to attribute 'append' "
              "of 'list' object is unsafe.\") }}{%- endif -%}<|{{ m.role }}|>{{ m.content }}<|end|>{%- endfor -%}"
              "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}")
    import turnspec.spec as spec_module

    renders = []
    real = spec_module.render_conversation
    monkeypatch.setattr(spec_module, "render_conversation", lambda *a, **k: renders.append(1) or real(*a, **k))
    analysis = turnspec.from_template(source, name="synthetic-quoted-refusal").analysis
    assert not analysis.tools.readable and not any("sandbox refuses" in n for n in analysis.notes)
    assert len(renders) < 200
