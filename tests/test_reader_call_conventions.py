"""What a user sees around tool calls, the same for every syntax (reader/content.py, reader/turn_parser.py), on real
templates: Mistral-Small-3.2 (v11), Mistral-Nemo (list form), DeepSeek-V3.1, Qwen3 from ../shared; Reka-Edge and
DeepSeek-V3.2 from llama.cpp's test templates. Outputs are written the way those models write them (and the way
vLLM's and llama.cpp's parser tests write them), read whole and in 3-character chunks.

- Text after the calls is dropped with a warning: a message is its answer, then its calls.
- A call written inside a reasoning block that the model then goes on with and closes was reasoning; a call that
  ends an unclosed block is a call.
- DSML's `string="false"` says a value is JSON; arguments wrapped in one undeclared parameter are unwrapped.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.corpus_models import corpus_spec
from helpers.paths import need
from helpers.reading import calls, everything, read_every_way, tool

import turnspec

LLAMACPP = Path(__file__).parent / "data" / "llamacpp_templates"
DEEPSEEK_TOKENS = {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}


WEATHER = tool("get_current_weather", city="string")


def read(spec, output: str, tools: list[dict] | None, render_tools: bool = True, **switches: bool):
    """The result read whole; the text read in 3-character chunks must give the same."""
    prompt = spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                         tools=tools if render_tools else None, **switches)
    return read_every_way(lambda: spec.reader(prompt, tools=tools), output)


def llamacpp_spec(name: str, **special: str):
    return turnspec.from_template(need(LLAMACPP / name).read_text(encoding="utf-8"), special_tokens=special or None)


# --- text after the calls ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("template, output", [
    ("Mistral-Small-3.2-24B-Instruct-2506.jinja",
     '[TOOL_CALLS]get_current_weather[ARGS]{"city": "San Francisco"}Estimating the weather...'),
    ("mistralai-Mistral-Nemo-Instruct-2407.jinja",
     '[TOOL_CALLS][{"name": "get_current_weather", "arguments": {"city": "San Francisco"}}]\nIt is 30 degrees.'),
    ("deepseek-ai-DeepSeek-V3.1.jinja",
     ("Let me look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_current_weather<｜tool▁sep｜>"
      '{"city": "San Francisco"}<｜tool▁call▁end｜><｜tool▁calls▁end｜> It is 30 degrees.')),
    ("Qwen-Qwen3-0.6B.jinja",
     ('Let me look.\n<tool_call>\n{"name": "get_current_weather", "arguments": {"city": "San Francisco"}}\n'
      "</tool_call>\nThe weather in San Francisco is 30 degrees.")),
])
def test_text_after_the_calls_is_dropped_with_a_warning(template, output):
    res = read(corpus_spec(template), output, [WEATHER])
    assert calls(res) == [("get_current_weather", {"city": "San Francisco"})]
    assert res.content == ("" if output.startswith("[") else "Let me look.")
    assert any("after the tool calls" in w for w in res.warnings)


def test_a_call_after_dropped_text_is_still_read():
    out = ('<tool_call>\n{"name": "get_current_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
           'And Oslo:\n<tool_call>\n{"name": "get_current_weather", "arguments": {"city": "Oslo"}}\n</tool_call>')
    res = read(corpus_spec("Qwen-Qwen3-0.6B.jinja"), out, [WEATHER])
    assert calls(res) == [("get_current_weather", {"city": "Paris"}), ("get_current_weather", {"city": "Oslo"})]
    assert res.content == ""


PARIS = '{"name": "get_current_weather", "arguments": {"city": "Paris"}}'


@pytest.mark.parametrize("echo", [PARIS + "\n</tool_call>", "```json\n" + PARIS + "\n```"])
def test_a_loose_call_that_only_repeats_the_calls_just_read_is_read_once(echo):
    """Models echo a call's body after its end (vLLM's LFM2 test: the body again, capped with a second end token);
    executing it twice would repeat the action."""
    out = "<tool_call>\n" + PARIS + "\n</tool_call>\n" + echo
    res = read(corpus_spec("Qwen-Qwen3-0.6B.jinja"), out, [WEATHER])
    assert (calls(res), res.content) == ([("get_current_weather", {"city": "Paris"})], "")
    assert any("repeats the calls just read" in w for w in res.warnings)


def test_the_same_call_written_twice_in_the_templates_own_syntax_is_two_calls():
    out = "<tool_call>\n" + PARIS + "\n</tool_call>\n<tool_call>\n" + PARIS + "\n</tool_call>"
    res = read(corpus_spec("Qwen-Qwen3-0.6B.jinja"), out, [WEATHER])
    assert calls(res) == [("get_current_weather", {"city": "Paris"})] * 2


def test_an_answer_without_calls_is_untouched():
    out = "It is sunny. Shall I check [the forecast] for {tomorrow}?"
    res = read(corpus_spec("Qwen-Qwen3-0.6B.jinja"), out, [WEATHER])
    assert (res.content, res.tool_calls, res.warnings) == (out, [], [])


# --- a call inside a reasoning block ------------------------------------------------------------------------------

SPECIAL = tool("special_function", arg1="integer")


def test_a_call_the_model_thinks_about_then_goes_on_is_reasoning():
    spec = llamacpp_spec("Reka-Edge.jinja")
    out = ('Let me think about <tool_call>\n{"name": "special_function", "arguments": {"arg1": 2}}</tool_call> hmm\n'
           '</think>\n\n<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}</tool_call>')
    res = read(spec, out, [SPECIAL], enable_thinking=True)  # the prompt opens <think>
    assert res.reasoning == ('Let me think about <tool_call>\n{"name": "special_function", "arguments": {"arg1": 2}}'
                             "</tool_call> hmm")
    assert calls(res) == [("special_function", {"arg1": 1})] and res.content == ""


def test_a_call_that_ends_an_unclosed_block_is_a_call():
    spec = llamacpp_spec("Reka-Edge.jinja")
    out = 'Let me check.\n<tool_call>\n{"name": "special_function", "arguments": {"arg1": 2}}</tool_call>'
    res = read(spec, out, [SPECIAL], enable_thinking=True)
    assert (res.reasoning, calls(res), res.content) == ("Let me check.", [("special_function", {"arg1": 2})], "")


@pytest.mark.parametrize("after, is_call", [(" but no.</think>It is sunny.", False), ("", True)])
def test_a_note_about_a_call_in_reasoning_is_given_only_if_it_counts(after, is_call):
    """Synthetic syntax (a JSON call list between `<calls>` tags): the list's non-call entry is dropped with a note
    when the call counts (the block never closed), never when the block closes and it was all reasoning."""
    from turnspec.analysis.syntax import CallSyntax
    from turnspec.reader.reader import ReaderConfig, StreamReader

    syntax = CallSyntax("json", section_open="<calls>", section_close="</calls>", list_wrapped=True,
                        triggers=("<calls>",))
    config = ReaderConfig(reasoning="tags", call_format="template", call_syntaxes=(syntax,),
                          tool_schemas={"get_weather": {"city": {"type": "string"}}})
    out = '<think>I could write <calls>[{"name": "get_weather", "arguments": {"city": "Paris"}}, 5]</calls>' + after
    res = read_every_way(lambda: StreamReader(config), out, same=everything)
    assert calls(res) == ([("get_weather", {"city": "Paris"})] if is_call else [])
    assert any("not a call was dropped" in w for w in res.warnings) == is_call


# --- DSML values -------------------------------------------------------------------------------------------------

def dsml(name: str, *params: tuple[str, str, str]) -> str:
    body = "".join(f'<｜DSML｜parameter name="{k}" string="{s}">{v}</｜DSML｜parameter>\n' for k, s, v in params)
    return (f'<｜DSML｜function_calls>\n<｜DSML｜invoke name="{name}">\n{body}</｜DSML｜invoke>\n'
            "</｜DSML｜function_calls>")


@pytest.fixture(scope="module")
def v32():
    spec = llamacpp_spec("deepseek-ai-DeepSeek-V3.2.jinja", **DEEPSEEK_TOKENS)
    assert spec.analysis.tools.calls[0].params.json_suffix.strip() == '" string="false">'
    return spec


def test_dsml_string_false_values_are_json_without_a_schema(v32):
    out = dsml("unknown_fn", ("count", "false", "42"), ("flag", "false", "true"), ("opts", "false", '{"a": [1]}'),
               ("city", "true", "42"))
    assert calls(read(v32, out, None)) == [("unknown_fn", {"count": 42, "flag": True, "opts": {"a": [1]},
                                                           "city": "42"})]


def test_dsml_the_schema_wins_over_the_attribute(v32):
    out = dsml("echo", ("text", "false", "null"))
    assert calls(read(v32, out, [tool("echo", text="string")])) == [("echo", {"text": "null"})]


@pytest.mark.parametrize("key, string", [("arguments", "false"), ("input", "true")])
def test_arguments_wrapped_in_one_undeclared_parameter_are_unwrapped(v32, key, string):
    out = dsml("get_weather", (key, string, '{"location": "Beijing"}'))
    assert calls(read(v32, out, [tool("get_weather", location="string")])) == [
        ("get_weather", {"location": "Beijing"})]


@pytest.mark.parametrize("wrapped", ['{"arguments": {"city": "Paris", "days": 3}}',
                                     '{"input": "{\'city\': \'Paris\', \'days\': \'3\'}"}'])
def test_wrapped_arguments_of_a_json_call_are_unwrapped_as_tagged_ones_are(wrapped):
    """One rule for every syntax: a JSON call's arguments wrapped in one undeclared parameter, as an object or as a
    Python literal in a string (typed by the schema), read like MiniCPM5's tagged wrapper."""
    out = f'<tool_call>\n{{"name": "get_weather", "arguments": {wrapped}}}\n</tool_call>'
    res = read(corpus_spec("Qwen-Qwen3-0.6B.jinja"), out, [tool("get_weather", city="string", days="integer")],
               enable_thinking=False)
    assert calls(res) == [("get_weather", {"city": "Paris", "days": 3})]


def test_a_declared_wrapper_parameter_is_kept(v32):
    out = dsml("run", ("input", "false", '{"location": "Beijing"}'))
    assert calls(read(v32, out, [tool("run", input="object")])) == [("run", {"input": {"location": "Beijing"}})]


# --- a list-form syntax written without its brackets -------------------------------------------------------------

def test_objects_joined_by_commas_without_the_lists_brackets_are_all_read():
    out = ('[TOOL_CALLS] {"name": "add", "arguments": {"a": 1}}, {"name": "sub", "arguments": {"b": 2}}')
    res = read(corpus_spec("mistralai-Mistral-Nemo-Instruct-2407.jinja"), out,
               [tool("add", a="integer"), tool("sub", b="integer")])
    assert (calls(res), res.content) == ([("add", {"a": 1}), ("sub", {"b": 2})], "")


def test_a_call_list_the_output_ends_inside_is_what_the_model_wrote():
    """The rule of tagged values left open (test_reader_malformed_ends.py), for a JSON call list (Apertus)."""
    out = '<|tools_prefix|>[{"get_weather": {"location": "London"}'
    weather = tool("get_weather", location="string")  # (the template wants flat tools: not rendered here)
    res = read(corpus_spec("Apertus-8B-Instruct.jinja"), out, [weather], render_tools=False)
    assert (calls(res), res.content, res.errors) == ([("get_weather", {"location": "London"})], "", [])


KIMI_CALL = "<|tool_call_begin|>functions.{}:{} <|tool_call_argument_begin|>{}<|tool_call_end|>"


def test_json_arguments_the_calls_own_end_cuts_short_are_closed_there():
    """The same rule when the call's closing token, not the output's end, stops the arguments (Kimi-K2, as vLLM's
    test_invalid_json_still_extracted writes it); the next call is read as usual."""
    out = ("Help. <|tool_calls_section_begin|>" + KIMI_CALL.format("get_current_weather", 0, '{"city": "Beijing"')
           + KIMI_CALL.format("get_current_weather", 1, '{"city": "Shanghai"}') + "<|tool_calls_section_end|>")
    res = read(corpus_spec("moonshotai-Kimi-K2.jinja"), out, [WEATHER])
    assert calls(res) == [("get_current_weather", {"city": "Beijing"}), ("get_current_weather", {"city": "Shanghai"})]
    assert (res.content, res.errors) == ("Help.", [])
    assert any("closed where its call ends" in w for w in res.warnings)


def test_json_arguments_that_do_not_close_at_the_calls_end_stay_an_error():
    out = ("<|tool_calls_section_begin|>" + KIMI_CALL.format("get_current_weather", 0, '{"city": Beijing')
           + "<|tool_calls_section_end|>")
    res = read(corpus_spec("moonshotai-Kimi-K2.jinja"), out, [WEATHER])
    assert calls(res) == [] and res.errors


def test_a_call_list_the_output_ends_inside_a_name_of_is_no_call():
    out = '[TOOL_CALLS][{"name": "get_current_wea'
    res = read(corpus_spec("mistralai-Mistral-Nemo-Instruct-2407.jinja"), out, [WEATHER])
    assert calls(res) == [] and res.errors


# --- another template's syntax behind the same trigger (reader/habits.py SAME_TRIGGER_FORMS) ------------------------

BASH = tool("bash", command="string")
CODER_CALL = "<tool_call>\n<function=bash>\n<parameter=command>\ncat /etc/hosts\n</parameter>\n</function>\n</tool_call>"


def test_qwen3_coder_parameters_inside_qwen3s_tool_call_are_read_for_a_declared_tool():
    spec = corpus_spec("Qwen-Qwen3-0.6B.jinja")
    res = read(spec, "<think>I need to read the file.\n\n" + CODER_CALL, [BASH])
    assert (res.reasoning, calls(res)) == ("I need to read the file.", [("bash", {"command": "cat /etc/hosts"})])
    res = read(spec, CODER_CALL, [tool("other", x="string")])
    assert calls(res) == [] and res.errors  # an undeclared name: not read as a call in a foreign syntax


def test_an_entry_of_a_call_list_that_is_not_a_call_is_dropped_with_a_warning():
    out = '[TOOL_CALLS] [{"name": "add", "arguments": {"a": 1}}, "junk"]'
    res = read(corpus_spec("mistralai-Mistral-Nemo-Instruct-2407.jinja"), out, [tool("add", a="integer")])
    assert (calls(res), res.content, res.errors) == ([("add", {"a": 1})], "", [])
    assert any("not a call was dropped" in w for w in res.warnings)


# --- a JSON answer where calls have no trigger (Llama 3.1: a call is a bare JSON object opening the turn) ----------

LLAMA31 = "meta-llama-Llama-3.1-8B-Instruct.jinja"


@pytest.mark.parametrize("output, tools, n_calls", [
    ('{"name": "Alice", "age": 3}', None, 0),  # a user asked for JSON: never a call named Alice
    ('{"name": "Alice", "age": 3}', [WEATHER], 0),
    ('{"name": "toolWithoutParams"}', None, 0),
    ('{"name": "get_current_weather"}', [WEATHER], 1),  # a declared tool, its arguments left out
    ('{"name": "search", "parameters": {"q": "x"}}', None, 1),  # the template's own shape
])
def test_a_json_answer_is_not_a_call(output, tools, n_calls):
    res = read(corpus_spec(LLAMA31), output, tools, render_tools=bool(tools))
    assert len(res.tool_calls) == n_calls and not res.errors
    assert res.content == ("" if n_calls else output)
