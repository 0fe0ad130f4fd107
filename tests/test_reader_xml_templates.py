"""Tagged and XML-style calls as three real templates write them (llama.cpp's test templates, byte for byte):
Tencent Hy3 (`<tool_calls:opensource>` … `<tool_call:opensource>name<tool_sep:opensource>` with `<arg_key…>` /
`<arg_value…>` pairs; every marker carries the suffix the template's HYTK variable adds), StepFun Step-3.5 (Qwen3-Coder
calls after a `<think>` the generation prompt always opens) and OpenBMB MiniCPM5 (`<function name="f"><param
name="k">v</param></function>`, values holding `<`, `&` or a newline wrapped in CDATA).

The syntax comes from each template's analysis and the value types from the declared tools' schemas. Each output is
read whole and token by token through the SmolLM2 vocabulary with the template's markers as special tokens (as the
models' own vocabularies have them); both reads must agree.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import AddedToken, Tokenizer

import turnspec

from helpers.paths import need

TEMPLATES = Path(__file__).parent / "data" / "llamacpp_templates"
HY3_MARKERS = [f"<{slash}{name}:opensource>" for name in ("think", "tool_calls", "tool_call", "arg_key", "arg_value")
               for slash in ("", "/")] + ["<tool_sep:opensource>"]


def tool(name: str, **props: str) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": {k: {"type": t} for k, t in props.items()}}}}


WEATHER = tool("get_weather", city="string", days="integer")
DATE = tool("get_current_date")
WRITE = tool("write_file", path="string", content="string")


def load(smollm2_dir: Path, name: str, extra_special: list[str] = ()):
    text = need(TEMPLATES / name).read_text(encoding="utf-8")
    tok = Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    bare = turnspec.from_template(text)
    specials = list(dict.fromkeys([*bare.analysis.control_tokens, *extra_special]))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return turnspec.from_template(text, tokenizer=tok), tok


def read(loaded, output: str, tools: list[dict], **render_kwargs):
    """(content, reasoning, calls) read whole; the token-by-token read must give the same."""
    spec, tok = loaded
    prompt = spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tools=tools, **render_kwargs)
    whole = spec.reader(prompt, tools=tools).read_all(output)
    reader = spec.reader(prompt, tools=tools)
    for tid in tok.encode(output, add_special_tokens=False).ids:
        reader.feed_token(tid)
    reader.finish()
    parts = [(r.content, r.reasoning, [(c.name, c.arguments) for c in r.tool_calls]) for r in (whole, reader.result)]
    assert parts[0] == parts[1]
    return parts[0]


@pytest.fixture(scope="module")
def hy3(smollm2_dir):
    return load(smollm2_dir, "tencent-Hy3.jinja", HY3_MARKERS)


@pytest.fixture(scope="module")
def step35(smollm2_dir):
    return load(smollm2_dir, "StepFun3.5-Flash.jinja")


@pytest.fixture(scope="module")
def minicpm5(smollm2_dir):
    return load(smollm2_dir, "openbmb-MiniCPM5-1B.jinja")


@pytest.mark.parametrize("nl", ["\n", ""])
def test_hy3_reasoning_then_parallel_calls_typed_by_the_schema(hy3, nl):
    out = (f"The user wants the weather.</think:opensource><tool_calls:opensource>{nl}"
           f"<tool_call:opensource>get_weather<tool_sep:opensource>{nl}"
           f"<arg_key:opensource>city</arg_key:opensource>{nl}<arg_value:opensource>Beijing</arg_value:opensource>{nl}"
           f"<arg_key:opensource>days</arg_key:opensource>{nl}<arg_value:opensource>3</arg_value:opensource>{nl}"
           f"</tool_call:opensource>{nl}<tool_call:opensource>get_current_date<tool_sep:opensource>{nl}"
           f"</tool_call:opensource>{nl}</tool_calls:opensource>")
    assert read(hy3, out, [WEATHER, DATE], reasoning_effort="high") == (
        "", "The user wants the weather.", [("get_weather", {"city": "Beijing", "days": 3}), ("get_current_date", {})])


def test_hy3_without_reasoning_text_before_the_calls_is_the_answer(hy3):
    out = ("Checking.<tool_calls:opensource>\n<tool_call:opensource>get_current_date<tool_sep:opensource>\n"
           "</tool_call:opensource>\n</tool_calls:opensource>")
    assert read(hy3, out, [DATE]) == ("Checking.", "", [("get_current_date", {})])


def test_hy3_markers_without_the_templates_suffix_are_text(hy3):
    """`<tool_calls>` is another vocabulary's marker (Hy3-preview's, whose token suffix is empty), not this
    template's: a model prompted by this template never writes it, so it is prose."""
    out = "<tool_calls>\n<tool_call>get_current_date<tool_sep>\n</tool_call>\n</tool_calls>"
    content, _, calls = read(hy3, out, [DATE])
    assert calls == [] and content == out


def test_step35_answer_and_calls_after_the_reasoning_the_prompt_opened(step35):
    out = ("The user asks for Dallas.\n</think>\nSure! Let me check.<tool_call>\n<function=get_weather>\n"
           "<parameter=city>\nDallas\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>")
    assert read(step35, out, [WEATHER]) == (
        "Sure! Let me check.", "The user asks for Dallas.", [("get_weather", {"city": "Dallas", "days": 2})])


def test_step35_an_answer_with_an_empty_reasoning(step35):
    assert read(step35, "</think>\nHello there.", [WEATHER]) == ("Hello there.", "", [])


def test_minicpm5_calls_between_text_and_a_cdata_value(minicpm5):
    out = ('Head\n<function name="get_weather"><param name="city">北京</param><param name="days">3</param>'
           '</function>\nTXT\n<function name="write_file"><param name="path">a.py</param><param name="content">'
           '<![CDATA[if a < b & c:\n    pass\n]]></param></function>\nTail\n')
    content, reasoning, calls = read(minicpm5, out, [WEATHER, WRITE])
    assert (content.split(), reasoning) == (["Head"], "")  # README: text after the calls is dropped (calls still read)
    assert calls == [("get_weather", {"city": "北京", "days": 3}),
                     ("write_file", {"path": "a.py", "content": "if a < b & c:\n    pass\n"})]


def test_minicpm5_text_is_read_as_written(minicpm5):
    """U+0120 'Ġ' is a letter (Maltese), not a space: only a broken detokenizer writes it for one, and the reader
    never rewrites text; a tag without its space is not the template's call syntax."""
    out = 'Il-Ġermanja.\n<functionname="get_weather"><paramname="city">Rome</param></function>'
    content, _, calls = read(minicpm5, out, [WEATHER])
    assert calls == [] and content.startswith("Il-Ġermanja.") and "Rome" in content


PHONE = tool("get_customer_by_phone", phone_number="string", limit="integer")


@pytest.mark.parametrize("wrapped", ["{'phone_number': '555-123-2002', 'limit': '2'}",
                                     '{"phone_number": "555-123-2002", "limit": 2}'])
def test_minicpm5_every_argument_in_one_undeclared_parameter_is_unwrapped(minicpm5, wrapped):
    """The model put the whole object into one parameter the tool does not declare: the schema declares each of
    its keys, so those are the arguments (typed by the schema)."""
    out = f'<function name="get_customer_by_phone"><param name="properties">{wrapped}</param></function>'
    assert read(minicpm5, out, [PHONE])[2] == [("get_customer_by_phone", {"phone_number": "555-123-2002", "limit": 2})]


@pytest.mark.parametrize("param, value", [("properties", '{"unknown": "x"}'), ("phone_number", '{"limit": 2}')])
def test_minicpm5_a_parameter_is_not_unwrapped_when_the_schema_does_not_fit(minicpm5, param, value):
    out = f'<function name="get_customer_by_phone"><param name="{param}">{value}</param></function>'
    assert read(minicpm5, out, [PHONE])[2] == [("get_customer_by_phone", {param: value})]


@pytest.mark.parametrize("body", ['<param>北京</param><param name="days">2</param>',
                                  '<param name="days">2</param>and the city is 北京'])
def test_minicpm5_text_in_a_call_that_is_not_a_parameter_makes_it_malformed(minicpm5, body):
    """Never a call that lost an argument (get_weather without its city) with the rest shown as broken text: the
    call is reported as malformed, like any call that does not parse."""
    spec, _ = minicpm5
    out = f'<function name="get_weather">{body}</function>\n'
    content, _, calls = read(minicpm5, out, [WEATHER])
    assert calls == [] and content.strip() == ""
    result = spec.reader("", tools=[WEATHER]).read_all(out)
    assert len(result.errors) == 1 and "is not a parameter" in result.errors[0].message


def test_step35_text_in_a_call_that_is_not_a_parameter_makes_it_malformed(step35):
    out = ("</think>\n<tool_call>\n<function=get_weather>\n<parameter=days>\n2\n</parameter>\nDallas, I think\n"
           "</function>\n</tool_call>")
    assert read(step35, out, [WEATHER])[2] == []
