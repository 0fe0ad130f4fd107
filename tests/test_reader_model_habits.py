"""What models write that their template never does, read anyway — learned from the template, not from a name.

Seed-OSS and Mistral-Small 3.2 are real templates (../shared/corpus). The Gemma-4-like template is synthetic: it
writes reasoning as `<|channel>thought\\n…<channel|>` and calls as `<|tool_call>call:name{key:<|"|>text<|"|>}`
(the notation of Google's Gemma 4 template), and is read with a vocabulary where those markers are special tokens,
as a real Gemma 4 tokenizer has them. Outputs are synthetic, in the shapes vLLM's and llama.cpp's parser tests
record from these models. Every output is read whole, in random chunks and token by token; all must agree.
"""

from __future__ import annotations

import random

import pytest
from tokenizers import AddedToken, Tokenizer

import turnspec
from turnspec.reader import reader_for

from helpers.corpus_models import corpus_spec

SEED = "ByteDance-Seed-OSS.jinja"
MISTRAL = "Mistral-Small-3.2-24B-Instruct-2506.jinja"


def tool(name: str, **props: dict) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": props}}}


WRITE = tool("write_file", path={"type": "string"}, content={"type": "string"})
WEATHER = tool("get_weather", city={"type": "string"}, days={"type": "integer"})
UNION = tool("set_value", value={"type": ["string", "object"]}, amount={"type": ["string", "integer"]},
             note={"type": ["string", "null"]})

SYNTHETIC_GEMMA4 = """{{- bos_token -}}
{%- for m in messages -%}
{%- if m.role == 'assistant' -%}
{{- '<|turn>model\\n' -}}
{%- if m.reasoning_content -%}{{- '<|channel>thought\\n' + m.reasoning_content + '<channel|>' -}}{%- endif -%}
{%- for tc in m.tool_calls or [] -%}
{{- '<|tool_call>call:' + tc.function.name + '{' -}}
{%- for k, v in tc.function.arguments | dictsort -%}
{{- k + ':' -}}{%- if v is string -%}{{- '<|"|>' + v + '<|"|>' -}}{%- else -%}{{- v | tojson -}}{%- endif -%}
{%- if not loop.last -%},{%- endif -%}
{%- endfor -%}
{{- '}<tool_call|>' -}}
{%- endfor -%}
{{- (m.content or '') + '<turn|>\\n' -}}
{%- else -%}
{{- '<|turn>' + m.role + '\\n' + m.content + '<turn|>\\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|turn>model\\n' -}}{%- if not enable_thinking | default(false) -%}{{- '<|channel>thought\\n<channel|>' -}}{%- endif -%}
{%- endif -%}"""
GEMMA4_TOKENS = ["<|turn>", "<turn|>", "<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", '<|"|>']


@pytest.fixture(scope="module")
def tok(smollm2_dir):
    return Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))


@pytest.fixture(scope="module")
def gemma4(smollm2_dir):
    """The synthetic Gemma-4-like template with its markers as special tokens of the (SmolLM2) vocabulary."""
    vocab = Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    vocab.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in GEMMA4_TOKENS])
    spec = turnspec.from_template(SYNTHETIC_GEMMA4, name="synthetic-gemma4",
                                  special_tokens={"bos_token": "<bos>", "eos_token": "<eos>"}, tokenizer=vocab)
    return spec, vocab


def read_three_ways(spec, output: str, vocab, tools, prompt: str = ""):
    whole = reader_for(spec, prompt, declared_tools=tools).read_all(output)
    r = reader_for(spec, prompt, declared_tools=tools)
    rnd, i = random.Random(len(output)), 0
    while i < len(output):
        n = rnd.randint(1, 5)
        r.feed_text(output[i:i + n])
        i += n
    r.finish()
    assert r.result == whole
    r = reader_for(spec, prompt, declared_tools=tools)
    for tid in vocab.encode(output, add_special_tokens=False).ids:
        r.feed_text(vocab.decode([tid], skip_special_tokens=False))
    r.finish()
    assert r.result == whole
    return whole


def calls(res):
    return [(c.name, c.arguments) for c in res.tool_calls]


# --- tagged parameters (Seed-OSS: <parameter=key>value</parameter>) -------------------------------------------

def test_a_parameter_left_unclosed_ends_at_the_next_one(tok):
    out = ("<seed:tool_call>\n<function=get_weather>\n<parameter=city>Paris, France\n"
           "<parameter=days>3</parameter>\n</function>\n</seed:tool_call>")
    res = read_three_ways(corpus_spec(SEED), out, tok, [WEATHER])
    assert calls(res) == [("get_weather", {"city": "Paris, France\n", "days": 3})]
    assert not res.errors


def test_a_code_value_keeps_its_indentation(tok):
    code = "    def foo():\n        return 1\n"
    out = (f"<seed:tool_call>\n<function=write_file>\n<parameter=path>a.py</parameter>\n"
           f"<parameter=content>{code}</parameter>\n</function>\n</seed:tool_call>")
    res = read_three_ways(corpus_spec(SEED), out, tok, [WRITE])
    assert calls(res) == [("write_file", {"path": "a.py", "content": code})]


def test_union_types_prefer_the_non_string_reading(tok):
    out = ("<seed:tool_call>\n<function=set_value>\n<parameter=value>{\"a\": 1}</parameter>\n"
           "<parameter=amount>42</parameter>\n<parameter=note>null</parameter>\n</function>\n</seed:tool_call>")
    res = read_three_ways(corpus_spec(SEED), out, tok, [UNION])
    assert calls(res) == [("set_value", {"value": {"a": 1}, "amount": 42, "note": None})]
    out = out.replace("42", "2 dollars").replace("{\"a\": 1}", "{not json")
    res = read_three_ways(corpus_spec(SEED), out, tok, [UNION])
    assert calls(res)[0][1]["amount"] == "2 dollars" and calls(res)[0][1]["value"] == "{not json"


def test_a_call_without_the_section_opener(tok):
    """The model starts at `<function=` (the trigger inside the template's opener) and skips `<seed:tool_call>`."""
    out = "<function=get_weather>\n<parameter=city>Oslo</parameter>\n</function>\n</seed:tool_call>"
    res = read_three_ways(corpus_spec(SEED), out, tok, [WEATHER])
    assert calls(res) == [("get_weather", {"city": "Oslo"})] and res.content == ""


# --- Mistral: the trigger written twice ------------------------------------------------------------------------

def test_the_trigger_written_twice_is_one_call(tok):
    out = '[TOOL_CALLS][TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}'
    res = read_three_ways(corpus_spec(MISTRAL), out, tok, [WEATHER])
    assert calls(res) == [("get_weather", {"city": "Oslo"})] and not res.errors


# --- Gemma-4-like notation -------------------------------------------------------------------------------------

def test_gemma4_like_syntax_is_learned(gemma4):
    spec, _ = gemma4
    a = spec.analysis
    assert (a.reasoning.open, a.reasoning.close, a.reasoning.label) == ("<|channel>", "<channel|>", "thought")
    assert a.tools.calls[0].params is not None and a.tools.calls[0].params.string_quote == '<|"|>'


@pytest.mark.parametrize("output, reasoning, content", [
    ("<|channel>thought\nI'm\nthinking<channel|>Hello", "I'm\nthinking", "Hello"),
    ("<|channel>thousand reasons<channel|>Done", "thousand reasons", "Done"),  # not the label
    ("<|channel><|channel>thought\n<channel|>Hello", "", "Hello"),  # a repeated opener
    ("Before\n<|channel>thought\nmid<channel|>\nafter", "mid", "Before\n\nafter"),  # a block inside the answer
])
def test_gemma4_like_reasoning(gemma4, output, reasoning, content):
    spec, vocab = gemma4
    prompt = spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True, enable_thinking=True)
    res = read_three_ways(spec, output, vocab, None, prompt)
    assert (res.reasoning, res.content) == (reasoning, content)


@pytest.mark.parametrize("output, expected", [
    ('<|tool_call>call:get_weather{city:<|"|>Paris, France<|"|>,days:3}<tool_call|>',
     ("get_weather", {"city": "Paris, France", "days": 3})),
    ('<|tool_call>call:set_config{config:{theme:<|"|>dark, blue<|"|>,count:3,tags:[<|"|>a<|"|>,<|"|>b<|"|>]}}'
     '<tool_call|>', ("set_config", {"config": {"theme": "dark, blue", "count": 3, "tags": ["a", "b"]}})),
    ("<|tool_call>call:set_config{active:true,count:42,ratio:0.5,gone:null}<tool_call|>",
     ("set_config", {"active": True, "count": 42, "ratio": 0.5, "gone": None})),
    ('<|tool_call>:get_weather{city:<|"|>Oslo<|"|>}<tool_call|>', ("get_weather", {"city": "Oslo"})),  # `call` skipped
    ("<|tool_call>call:set_config{}<tool_call|>", ("set_config", {})),
])
def test_gemma4_like_calls_with_quote_tokens(gemma4, output, expected):
    """`<|"|>` is a special token of the vocabulary: the reader must still see it inside a call."""
    spec, vocab = gemma4
    tools = [WEATHER, tool("set_config")]
    res = read_three_ways(spec, output, vocab, tools)
    assert calls(res) == [expected] and res.content == "" and not res.errors


# --- a value wrapper the template writes only around awkward values (synthetic, MiniCPM5's CDATA rule) ---------

SYNTHETIC_CDATA = """{%- for m in messages -%}
{{- '<|im_start|>' + m.role + '\\n' + (m.content or '') -}}
{%- for tc in m.tool_calls or [] -%}
{{- '<function name="' + tc.function.name + '">' -}}
{%- for k, v in tc.function.arguments | dictsort -%}
{%- set v = v if v is string else v | tojson -%}
{{- '<param name="' + k + '">' -}}
{%- if '<' in v or '&' in v or '\\n' in v -%}{{- '<![CDATA[' + v + ']]>' -}}{%- else -%}{{- v -}}{%- endif -%}
{{- '</param>' -}}
{%- endfor -%}
{{- '</function>' -}}
{%- endfor -%}
{{- '<|im_end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"""


def test_a_value_wrapper_is_learned_and_unwrapped(tok):
    spec = turnspec.from_template(SYNTHETIC_CDATA, name="synthetic-cdata", special_tokens={"eos_token": "<|im_end|>"})
    assert spec.analysis.tools.calls[0].params.value_wrap == ("<![CDATA[", "]]>")
    markup = '<a href="/x">hi</a> </param>\nnext'
    out = (f'<function name="write_file"><param name="content"><![CDATA[{markup}]]></param>'
           '<param name="path">a.html</param></function>')
    res = read_three_ways(spec, out, tok, [WRITE])
    assert calls(res) == [("write_file", {"content": markup, "path": "a.html"})] and res.content == ""


# --- a call inside an unclosed reasoning block (Nemotron Nano v2: the generation prompt opens <think>) ----------

NEMOTRON = "NVIDIA-Nemotron-Nano-v2.jinja"


@pytest.mark.parametrize("output, reasoning, content, n_calls", [
    # the call ends the block the prompt opened, as llama.cpp reads Qwen 3.5 and Ling 3 ...
    ('Let me check.\n<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Oslo"}}]</TOOLCALL>',
     "Let me check.", "", 1),
    ('<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Oslo"}}]</TOOLCALL>\nDone.', "", "", 1),  # text after
    # the calls is dropped (reader/content.py)
    # ... but a trigger that leads to no call was the model musing: reasoning, and the answer after </think>
    ("I could use <TOOLCALL> here.</think>It is sunny.", "I could use <TOOLCALL> here.", "It is sunny.", 0),
    ('Maybe <TOOLCALL>[{"name": "get_weather"</think>Sunny.', 'Maybe <TOOLCALL>[{"name": "get_weather"', "Sunny.", 0),
    ('Trying <TOOLCALL>[{"name": "get_weat', 'Trying <TOOLCALL>[{"name": "get_weat', "", 0),
])
def test_a_call_ends_an_unclosed_reasoning_block(tok, output, reasoning, content, n_calls):
    spec = corpus_spec(NEMOTRON)
    prompt = spec.render([{"role": "user", "content": "Weather in Oslo?"}], add_generation_prompt=True,
                         tools=[WEATHER])
    assert spec.analysis.reasoning.prompt_opens and prompt.rstrip().endswith("<think>")
    res = read_three_ways(spec, output, tok, [WEATHER], prompt)
    assert (res.reasoning, res.content, len(res.tool_calls)) == (reasoning, content, n_calls)
    assert not res.errors


# --- reasoning a template takes only as a content chunk (synthetic, the shape of Ministral 3 Reasoning's) --------

SYNTHETIC_THINKING_CHUNKS = """{%- for m in messages -%}
{%- if m.role == 'user' -%}{{- '[INST]' + m.content + '[/INST]' -}}
{%- elif m.content is string -%}{{- m.content + eos_token -}}
{%- else -%}
{%- for block in m.content -%}
{%- if block.type == 'thinking' -%}{{- '[THINK]' + block.thinking + '[/THINK]' -}}{%- else -%}{{- block.text -}}{%- endif -%}
{%- endfor -%}{{- eos_token -}}
{%- endif -%}
{%- endfor -%}"""


def test_reasoning_learned_from_a_thinking_chunk(tok):
    spec = turnspec.from_template(SYNTHETIC_THINKING_CHUNKS, name="synthetic-thinking-chunks",
                                  special_tokens={"eos_token": "</s>"})
    r = spec.analysis.reasoning
    assert (r.kind, r.open, r.close) == ("tags", "[THINK]", "[/THINK]")
    res = read_three_ways(spec, "[THINK]I'm\nthinking[/THINK]Hello", tok, None)
    assert (res.reasoning, res.content) == ("I'm\nthinking", "Hello")
