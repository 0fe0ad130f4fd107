"""Calls only the vocabulary tells, calls to tools the request did not declare, and pythonic calls that are not
quite Python — on LFM2's real templates (tests/data/llamacpp_templates, from llama.cpp).

LFM2.5-Instruct's template never renders a tool call, yet LFM2's tokenizer has `<|tool_call_start|>` and
`<|tool_call_end|>` as special tokens and the model writes `<|tool_call_start|>[name(key=value)]<|tool_call_end|>`.
The vocabulary here is SmolLM2's with the templates' control tokens and that pair added as special tokens, as LFM2's
own tokenizer has them. Outputs are written the way LFM2 models write them (the shapes of vLLM's and llama.cpp's LFM2
parser tests). Every output is read whole, in random chunks and token by token; all must agree.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, Tokenizer

import turnspec
from turnspec.analysis.vocab_calls import vocab_call_markers
from turnspec.reader.call_parse import ToolParseError, pythonic_calls

TEMPLATES = Path(__file__).parent / "data" / "llamacpp_templates"
CALL_TOKENS = ["<|tool_call_start|>", "<|tool_call_end|>"]
SPECIAL = {"bos_token": "<|startoftext|>", "eos_token": "<|im_end|>"}
START, END = CALL_TOKENS


def tool(name: str, **props: dict) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": props}}}


WEATHER = tool("get_weather", city={"type": "string"})


def lfm2(template: str, smollm2_dir: Path, call_tokens: bool = True):
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    vocab = Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    bare = turnspec.from_template(text, special_tokens=SPECIAL)
    tokens = [*bare.analysis.control_tokens, *SPECIAL.values(), *(CALL_TOKENS if call_tokens else [])]
    vocab.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in dict.fromkeys(tokens)])
    return turnspec.from_template(text, name=template, special_tokens=SPECIAL, tokenizer=vocab), vocab


@pytest.fixture(scope="module")
def instruct(smollm2_dir):
    return lfm2("LFM2.5-Instruct.jinja", smollm2_dir)


@pytest.fixture(scope="module")
def thinking(smollm2_dir):
    return lfm2("LFM2.5-8B-A1B.jinja", smollm2_dir)


def read(spec_vocab, output: str, tools=None, **render):
    """The result of reading `output` whole; chunked and token-by-token reads must give the same, warnings too."""
    spec, vocab = spec_vocab
    prompt = spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tools=tools, **render)
    whole = spec.reader(prompt, tools=tools).read_all(output)
    chunked = spec.reader(prompt, tools=tools)
    rnd, i = random.Random(len(output)), 0
    while i < len(output):
        n = rnd.randint(1, 5)
        chunked.feed_text(output[i:i + n])
        i += n
    chunked.finish()
    by_token = spec.reader(prompt, tools=tools)
    for tid in vocab.encode(output, add_special_tokens=False).ids:
        by_token.feed_token(tid)
    by_token.finish()
    for other in (chunked.result, by_token.result):
        assert other == whole and other.warnings == whole.warnings
    return whole


def calls(res):
    return [(c.name, c.arguments) for c in res.tool_calls]


def undeclared(res):
    return [w for w in res.warnings if "did not declare" in w]


# --- the vocabulary's call tokens --------------------------------------------------------------------------------

def test_the_template_renders_no_call_and_the_vocabulary_has_the_call_tokens(instruct):
    spec, vocab = instruct
    assert spec.analysis.tools.calls == ()
    assert vocab_call_markers(vocab.get_added_tokens_decoder()[i].content for i in vocab.get_added_tokens_decoder()
                              ) == [(START, END)]


@pytest.mark.parametrize("special, pairs", [
    (["<tool_call>", "</tool_call>", "<think>", "</think>"], [("<tool_call>", "</tool_call>")]),
    (["<|tool_call>", "<tool_call|>", "<|turn>", "<turn|>"], [("<|tool_call>", "<tool_call|>")]),
    (["<start_function_call>", "<end_function_call>", "<escape>"], [("<start_function_call>", "<end_function_call>")]),
    (["<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"], [("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>")]),
    # LFM2-8B-A1B's other pairs frame the tool list and tool results, which a model never writes as a call
    (["<|tool_list_start|>", "<|tool_list_end|>", "<|tool_response_start|>", "<|tool_response_end|>"], []),
    (["<|tool_call_start|>"], []),  # an opener without its closer frames nothing
])
def test_call_token_pairs_are_found_by_their_names_and_pairing(special, pairs):
    assert vocab_call_markers(special) == pairs


@pytest.mark.parametrize("output, content, expected", [
    (f"{START}[get_candidate_status(candidate_id='12345')]{END}", "", [("get_candidate_status",
                                                                        {"candidate_id": "12345"})]),
    (f"{START} [get_weather(), do_something_cool(steps=[])]{END}", "",
     [("get_weather", {}), ("do_something_cool", {"steps": []})]),
    (f"Let me check. {START}[grocery.orderIngredients(ingredientList=[{{'name': 'apple', 'amount': 2}}])]{END}\nDone.",
     "Let me check.", [("grocery.orderIngredients", {"ingredientList": [{"name": "apple", "amount": 2}]})]),
    (f'{START}[{{"name": "get_candidate_status", "arguments": {{"candidate_id": "12345"}}}}]{END}', "",
     [("get_candidate_status", {"candidate_id": "12345"})]),  # JSON call objects between the same tokens
])
def test_a_call_to_an_undeclared_tool_between_the_call_tokens_is_read_with_a_warning(instruct, output, content,
                                                                                      expected):
    res = read(instruct, output, tools=[WEATHER])
    assert (res.content, calls(res)) == (content, expected)
    names = {name for name, _ in expected} - {"get_weather"}
    assert len(undeclared(res)) == len(names) and all(any(repr(n) in w for w in res.warnings) for n in names)
    assert any(START in w and END in w for w in res.warnings)  # says where calls are read, since the template can't


def test_a_declared_tool_between_the_call_tokens_reads_without_a_warning(instruct):
    res = read(instruct, f"{START}[get_weather(city='Paris')]{END}", tools=[WEATHER])
    assert calls(res) == [("get_weather", {"city": "Paris"})] and undeclared(res) == []


def test_without_declared_tools_calls_are_read_and_nothing_claims_they_were_undeclared(instruct):
    res = read(instruct, f"{START}[get_weather(city='Paris')]{END}")
    assert calls(res) == [("get_weather", {"city": "Paris"})] and res.warnings == []


@pytest.mark.parametrize("output", [
    "[get_candidate_status(candidate_id='12345')]",  # a bare list naming no declared tool: the guard stays
    "Use this format: [link text](url). Example: [Wikipedia](https://www.wikipedia.org).",
    "In Python, [f(x=1) for x in y] builds a list.",
])
def test_prose_outside_the_call_tokens_stays_prose(instruct, output):
    res = read(instruct, output, tools=[WEATHER])
    assert res.tool_calls == [] and res.content == output


def test_call_tokens_holding_no_call_give_no_call(instruct):
    res = read(instruct, f"{START}[]{END}Hello")
    assert calls(res) == [] and res.content == "Hello" and len(res.errors) == 1


def test_a_spec_without_the_call_tokens_in_its_vocabulary_reads_no_call(smollm2_dir):
    spec_vocab = lfm2("LFM2.5-Instruct.jinja", smollm2_dir, call_tokens=False)
    res = read(spec_vocab, f"{START}[get_candidate_status(candidate_id='12345')]{END}")
    assert calls(res) == []


# --- a call inside reasoning (LFM2.5-8B-A1B renders calls and <think>) ------------------------------------------

def test_a_call_inside_a_closed_think_block_is_reasoning_and_only_the_one_after_counts(thinking):
    musing = f"Let me think about {START}[special_function(arg1=1)]{END} hmm"
    res = read(thinking, f"<think>{musing}</think>{START}[special_function(arg1=1)]{END}", enable_thinking=True)
    assert (res.reasoning, res.content, calls(res)) == (musing, "", [("special_function", {"arg1": 1})])


def test_a_call_in_a_think_block_never_closed_ends_it(thinking):
    res = read(thinking, f"<think>I should call it {START}[special_function(arg1=1)]{END}\nDone.",
               enable_thinking=True)
    assert (res.reasoning, res.content, calls(res)) == ("I should call it", "", [("special_function", {"arg1": 1})])
    assert any("after the tool calls was dropped" in w for w in res.warnings)  # README: text after the calls


# --- pythonic calls beyond Python --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("[exec(command='cat > f.py << EOF\nimport csv\nprint(1)\nEOF')]",  # a raw line break inside the string
     [("exec", {"command": "cat > f.py << EOF\nimport csv\nprint(1)\nEOF"})]),
    ("[bash(command='sed -n '360,450p' /testbed/common.py')]",  # inner quotes left unescaped
     [("bash", {"command": "sed -n '360,450p' /testbed/common.py"})]),
    ("[bash(command='python3 -c \"print(latex(x, mul_symbol='\\,'))\"')]",
     [("bash", {"command": "python3 -c \"print(latex(x, mul_symbol='\\,'))\""})]),
    ("[set_date(month=07, day=05)]", [("set_date", {"month": 7, "day": 5})]),
    ("[label(tags={'urgent', 'bug'})]", [("label", {"tags": ["urgent", "bug"]})]),
    ("[exec(command='printf a\x00b')]", [("exec", {"command": "printf a\x00b"})]),
    ("[get_weather(city='Martha\\'s Vineyard', metric='\\\"cool units\\\"')]",  # plain Python: ast reads it
     [("get_weather", {"city": "Martha's Vineyard", "metric": '"cool units"'})]),
    ("[f(a=true, b=null, c=[1, 2,],), g()]", [("f", {"a": True, "b": None, "c": [1, 2]}), ("g", {})]),
])
def test_pythonic_calls_models_write_beyond_python(text, expected):
    assert [(c.name, c.arguments) for c in pythonic_calls(text)] == expected


@pytest.mark.parametrize("text", ["[A(A=\t)A(A=,\t\t)A(A=,\t", "[f(1, 2)]", "[f(x=y)]", "[f(x='a' + 'b')]",
                                  "[f(x='" + "'," * 400 + "y)]"])
def test_what_is_not_a_call_list_still_fails(text):
    with pytest.raises(ToolParseError):
        pythonic_calls(text)


def test_a_hard_value_between_the_call_tokens_reads_whole_and_streamed(instruct):
    out = f"{START}[bash(command='sed -n '360,450p' /testbed/common.py')]{END}"
    assert calls(read(instruct, out)) == [("bash", {"command": "sed -n '360,450p' /testbed/common.py"})]


def test_readiness_says_calls_are_read_between_the_vocabulary_call_tokens(instruct, smollm2_dir):
    from turnspec.readiness import output_syntax

    _, tools = output_syntax(instruct[0])
    assert tools["readable"] and tools["format"] == START and "vocabulary" in tools["reason"]
    _, without = output_syntax(lfm2("LFM2.5-Instruct.jinja", smollm2_dir, call_tokens=False)[0])
    assert not without["readable"] and "does not render" in without["reason"]


PROSE = ["[", "]", "(", ")", "get_weather", "f", "=", "'", '"', ", ", "city", "Paris", " ", "\n", "{", "}", ":",
         "x=1", "[link](url)", "</", "<", ">", "07", "True"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PROSE), max_size=30))
def test_prose_with_call_like_text_never_becomes_a_call_outside_the_call_tokens(instruct, parts):
    """No tool is declared and no call token is written: whatever the brackets and quotes, it is all content."""
    text = "".join(parts)
    res = read(instruct, text)
    assert res.tool_calls == [] and res.content.strip() == text.strip()
