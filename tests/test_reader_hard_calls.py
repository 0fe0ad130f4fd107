"""Hard call values in XML-style and tagged calls (issue 21, class 4), on official templates: Qwen3-Coder and GLM-4.6
from ../shared, Gemma 4 from llama.cpp's test templates (real, byte for byte). Outputs are written the way those
models write them; the syntax comes from each template's analysis, the types from the declared tools' schemas.

Names and keys run up to the literal the template writes after them, so they may hold spaces, unicode, `-`, `.`,
`&` (and `<`, `>` where that literal is longer than one character); a value left open when the output ends is
what the model wrote; a key whose value tag is missing has an empty value; Python literals and quoted values are
typed by the schema; a Gemma 4 group of calls is read as calls, never as a call named `call`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import turnspec

from helpers.paths import need
from helpers.corpus_models import corpus_spec
from helpers.reading import calls, read_reply, tool

GEMMA4 = Path(__file__).parent / "data" / "llamacpp_templates" / "google-gemma-4-31B-it.jinja"


def read(spec, output: str, tools: list[dict]):
    """(content, calls) read whole; also checks that the text read in small chunks gives the same."""
    def seen(result):
        return result.content, calls(result)

    return seen(read_reply(spec, output, tools, same=seen))


@pytest.fixture(scope="module")
def gemma4():
    return turnspec.from_template(need(GEMMA4).read_text(encoding="utf-8"))


WEATHER = tool("get weather", **{"the city": "string", "a<b>&c": "integer", "opts": "object", "tags": "array",
                                 "n": "integer"})


def test_qwen3_coder_names_and_keys_with_spaces_and_python_literals():
    out = ("<tool_call>\n<function=get weather>\n<parameter=the city>\nSão Paulo\n</parameter>\n"
           "<parameter=opts>\n{'metric': True, 'lang': None}\n</parameter>\n<parameter=tags>\n['x', 'y']\n"
           "</parameter>\n<parameter=n>\n\"3\"\n</parameter>\n</function>\n</tool_call>")
    assert read(corpus_spec("Qwen3-Coder.jinja"), out, [WEATHER]) == ("", [(
        "get weather", {"the city": "São Paulo", "opts": {"metric": True, "lang": None}, "tags": ["x", "y"],
                        "n": 3})])


def test_a_quoted_string_value_keeps_its_quotes():
    out = '<tool_call>\n<function=get weather>\n<parameter=the city>\n"Paris"\n</parameter>\n</function>\n</tool_call>'
    assert read(corpus_spec("Qwen3-Coder.jinja"), out, [WEATHER])[1] == [("get weather", {"the city": '"Paris"'})]


@pytest.mark.parametrize("out, args", [
    ("<tool_call>\n<function=get weather>\n<parameter=the city>\nPar", {"the city": "Par"}),
    ("<tool_call>\n<function=get weather>\n<parameter=the city>\n</function>\n</tool_call>", {"the city": ""}),
])
def test_qwen3_coder_value_unclosed_at_the_end_or_missing(out, args):
    assert read(corpus_spec("Qwen3-Coder.jinja"), out, [WEATHER])[1] == [("get weather", args)]


def test_glm_keys_with_markup_characters_and_a_value_left_open():
    spec = corpus_spec("GLM-4.6.jinja")
    out = ("<tool_call>get weather\n<arg_key>a<b>&c</arg_key>\n<arg_value>3</arg_value>\n"
           "<arg_key>the city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>")
    assert read(spec, out, [WEATHER])[1] == [("get weather", {"a<b>&c": 3, "the city": "Paris"})]
    out = "<tool_call>get weather\n<arg_key>the city</arg_key>\n<arg_value>Paris"
    assert read(spec, out, [WEATHER])[1] == [("get weather", {"the city": "Paris"})]


@pytest.mark.parametrize("out", [
    '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|><|tool_call>call:get_time{tz:<|"|>UTC<|"|>}<tool_call|>',
    '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}call:get_time{tz:<|"|>UTC<|"|>}<tool_call|>',
    '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>},call:get_time{tz:<|"|>UTC<|"|>}<tool_call|>',
], ids=["two groups", "one group", "one group, comma"])
def test_gemma4_parallel_calls(gemma4, out):
    tools = [tool("get_weather", city="string"), tool("get_time", tz="string")]
    assert read(gemma4, out, tools) == ("", [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "UTC"})])


def test_gemma4_names_with_spaces_unicode_and_symbols(gemma4):
    tools = [tool("bad func"), tool("météo-v2.x", **{"a&b": "string"})]
    assert read(gemma4, "<|tool_call>call:bad func no brace<tool_call|>", tools)[1] == [("bad func no brace", {})]
    out = '<|tool_call>call:météo-v2.x{a&b:<|"|>x<|"|>}<tool_call|>'
    assert read(gemma4, out, tools)[1] == [("météo-v2.x", {"a&b": "x"})]


def test_gemma4_value_unclosed_at_the_end(gemma4):
    out = '<|tool_call>call:get_weather{location:<|"|>London'
    assert read(gemma4, out, [tool("get_weather", location="string")])[1] == [("get_weather", {"location": "London"})]


def test_an_unclosed_value_mid_stream_is_not_a_call_yet(gemma4):
    """Only the end of the output closes a value: before it, the reader waits."""
    tools = [tool("get_weather", location="string")]
    prompt = gemma4.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tools=tools)
    reader = gemma4.reader(prompt, tools=tools)
    assert not [e for e in reader.feed_text('<|tool_call>call:get_weather{location:<|"|>Lon') if hasattr(e, "name")]
    reader.feed_text('don<|"|>}<tool_call|>')
    reader.finish()
    assert [(c.name, c.arguments) for c in reader.result.tool_calls] == [("get_weather", {"location": "London"})]


def test_kimi_k2_arguments_cut_at_the_end_and_a_call_without_its_prefix():
    spec = corpus_spec("moonshotai-Kimi-K2.jinja")
    tools = [tool("get_weather", city="string")]
    out = ("<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0 <|tool_call_argument_begin|>"
           '{"city": "Bei')
    assert read(spec, out, tools)[1] == [("get_weather", {"city": "Bei"})]
    out = ("<|tool_calls_section_begin|><|tool_call_begin|>get_weather:0 <|tool_call_argument_begin|>"
           '{"city": "Tokyo"}<|tool_call_end|><|tool_calls_section_end|>')
    assert read(spec, out, tools)[1] == [("get_weather", {"city": "Tokyo"})]


def test_glm47_flash_line_breaks_between_adjacent_tags():
    """GLM-4.7-Flash's template writes `</arg_key><arg_value>` with nothing between; models add line breaks."""
    out = "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Beijing</arg_value>\n</tool_call>"
    spec = corpus_spec("GLM-4.7-Flash.jinja")
    assert read(spec, out, [tool("get_weather", city="string")]) == ("", [("get_weather", {"city": "Beijing"})])
