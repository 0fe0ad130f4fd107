"""Constrained decoding without a model: the grammars of forced calls and JSON answers (turnspec.constrain).

For every call syntax the template analysis learns from the templates in ../shared, a call the template itself
renders is accepted by both compiled grammars (llguidance's Lark, checked token by token with a vocabulary that has
the template's control tokens as special tokens; llama.cpp's GBNF, checked token by token with llama.cpp's own
grammar sampler on the SmolLM2 vocabulary), and calls the grammar generates (random walks through llguidance's
masks) read back through the spec's reader as that call. Plus: the plan's phases (reasoning stays free), the
generic form for templates without a call syntax, and the 400s for what cannot be enforced.
"""

from __future__ import annotations

import random
import re

import pytest

import turnspec
from turnspec.constrain import ConstraintError, ConstraintState, check, plan
from turnspec.constrain.calls import CallGrammar, Tool
from turnspec.constrain.gbnf import to_gbnf
from turnspec.constrain.grammar import Lit
from turnspec.constrain.lark import to_lark
from turnspec.formats import format_of

from helpers.paths import SHARED, SMOLLM2_DIR, need
from helpers.corpus_models import special_tokens_for, template_files, template_id
from helpers.grammar_check import lark_matcher
from helpers.roundtrip import CALL_1, TOOLS, _render, spec_for

llg = pytest.importorskip("llguidance", reason="the grammar tests use llguidance: pip install llguidance")

WEATHER_ONLY = [TOOLS[0]]
ENUM_TOOL = {"type": "function", "function": {"name": "set_mode", "description": "Set the mode.", "parameters": {
    "type": "object", "properties": {"mode": {"type": "string", "enum": ["eco", "fast"], "description": "Mode."},
                                     "level": {"type": "integer", "enum": [1, 2, 3], "description": "Level."}},
    "required": ["mode", "level"]}}}


def _paths():
    return [*template_files(), SHARED / "models" / "gpt-oss-tokenizer"]


def _spec(path):
    need(path)
    if path.is_dir() or path.name == "chat_template.jinja":
        return turnspec.load(path if path.is_dir() else path.parent)
    return spec_for(path.read_text(encoding="utf-8"), special_tokens_for(path), SMOLLM2_DIR / "tokenizer.json")


def _with_syntax():
    out = []
    for path in _paths():
        if not path.exists():
            continue
        spec = _spec(path)
        if spec.analysis.tools.calls:
            out.append(path)
    return out or [SHARED / "corpus"]  # absent data: one test that skips


def _call_text(spec, prompt: str, output: str) -> str:
    """The rendered call as a model continues the prompt: from the call's opener (a template may render a finished
    turn differently from how its prompt opens one) to the turn end the engine stops on, trailing blanks dropped."""
    from turnspec.constrain.calls import already_written

    lead = CallGrammar(spec.analysis.tools.calls[0], [Tool("x", {})]).section_lead()
    lead = lead[len(already_written(format_of(spec.analysis).prompt_tail(prompt), lead)):]
    start = output.find(lead) if lead.strip() else -1
    text = output[start:] if start > 0 else output
    ends = [text.find(t) for t in (*spec.analysis.turn_ends, *spec.stops.tokens, *spec.analysis.guards)
            if t and text.find(t) > 0]
    text = text[:min(ends)] if ends else text
    return text.rstrip()


def _tools_for(spec, tools):
    return [t["function"] for t in tools] if "bare function schemas" in spec.analysis.tools.rendered else tools


@pytest.mark.parametrize("path", _with_syntax(), ids=lambda p: template_id(p) if p.suffix else p.name)
def test_the_grammar_accepts_the_call_the_template_renders(path, gbnf_checker):
    spec = _spec(path)
    rendered = _render(spec, "one call")
    if isinstance(rendered, str):
        pytest.skip(rendered)
    prompt, output = rendered
    tools = _tools_for(spec, TOOLS)
    constraint = plan(spec, prompt, tools=tools, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    text = _call_text(spec, prompt, output)
    if re.search(r'"(id|tool_call_id)": ', text):
        pytest.skip("the template writes a call id key, which the call syntax does not record (ids are optional)")
    node = constraint.start
    # llguidance, with the template's control tokens as special tokens
    tok, matcher = lark_matcher(spec, node)
    ids = spec.vocab.tokenizer.encode(text, add_special_tokens=False).ids
    consumed = matcher.try_consume_tokens(ids)
    assert consumed == len(ids), f"llguidance stopped at {tok.dbg_tokens(ids[consumed:consumed + 5])} in {text!r}"
    assert matcher.is_accepting(), f"{text!r} is incomplete for the grammar"
    # llama.cpp's grammar, everything as text
    assert gbnf_checker.accepts(to_gbnf(node), text), f"GBNF refused {text!r}:\n{to_gbnf(node)}"
    # and the reader reads it back as the call
    result = spec.reader(prompt, tools=tools).read_all(output)
    assert [(c.name, c.arguments) for c in result.tool_calls] == [CALL_1]


def _random_walk(tok, matcher, rng, limit=600) -> list[int]:
    """Tokens drawn at random among those the grammar allows, until it is complete (or `limit`)."""
    import numpy as np

    out = []
    for _ in range(limit):
        if matcher.is_stopped():
            break
        mask = np.zeros((tok.vocab_size + 31) // 32, dtype=np.int32)
        matcher.unsafe_compute_mask_ptr(mask.ctypes.data, mask.size * 4)
        allowed = np.flatnonzero(np.unpackbits(mask.view(np.uint8), bitorder="little")[:tok.vocab_size])
        if matcher.is_accepting() and rng.random() < 0.5:
            break
        forced = matcher.compute_ff_tokens()
        # mostly tokens with text in them: a uniform draw spends the budget on JSON whitespace
        solid = [t for t in allowed.tolist() if tok.decode_bytes([t]).strip()]
        token = forced[0] if forced else int(rng.choice(solid if solid and rng.random() < 0.9 else allowed))
        assert matcher.consume_token(token), matcher.get_error()
        out.append(token)
    return out


@pytest.mark.parametrize("path", _with_syntax(), ids=lambda p: template_id(p) if p.suffix else p.name)
def test_calls_the_grammar_generates_read_back(path):
    spec = _spec(path)
    tools = _tools_for(spec, [ENUM_TOOL])
    messages = [{"role": "user", "content": "Go."}]
    try:
        prompt = spec.render(messages, add_generation_prompt=True, tools=tools,
                             **{k: "" for k in spec.analysis.requires if k != "tools"})
    except turnspec.TurnspecError as exc:
        pytest.skip(f"the template raises: {exc}")
    constraint = plan(spec, prompt, tools=tools, tool_choice="required")
    node = constraint.resume if constraint.reasoning_open else constraint.start  # the call, not the reasoning
    rng = random.Random(12)
    for _ in range(5):
        tok, matcher = lark_matcher(spec, node)
        ids = _random_walk(tok, matcher, rng)
        assert matcher.is_accepting(), spec.vocab.decode(ids)
        text = spec.vocab.tokenizer.decode(ids, skip_special_tokens=False)
        if constraint.starts_free:  # the prompt opened reasoning: the model closes it before the call
            text = "Let me think." + constraint.reasoning_close + text
        result = spec.reader(prompt, tools=tools).read_all(text)
        assert len(result.tool_calls) == 1, (text, result)
        call = result.tool_calls[0]
        assert call.name == "set_mode" and call.arguments["mode"] in ("eco", "fast") and \
            call.arguments["level"] in (1, 2, 3), (text, call)


# ------------------------------------------------------------------------------------------------ the plan
@pytest.fixture(scope="module")
def smol(smollm2_gguf):
    return turnspec.load(smollm2_gguf)


def _prompt(spec, tools=None):
    return spec.render([{"role": "user", "content": "Weather in Paris?"}], add_generation_prompt=True, tools=tools)


def test_a_template_without_call_syntax_gets_the_generic_json_form(smol):
    assert not smol.analysis.tools.calls
    constraint = plan(smol, _prompt(smol, WEATHER_ONLY), tools=WEATHER_ONLY, tool_choice="required")
    assert constraint.kind == "tool_call" and "no tool-call syntax" in constraint.notices[0]
    assert to_gbnf(constraint.start).startswith("root ::= ts-call")
    text = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    tok, matcher = lark_matcher(smol, constraint.start)
    ids = smol.vocab.tokenizer.encode(text, add_special_tokens=False).ids
    assert matcher.try_consume_tokens(ids) == len(ids) and matcher.is_accepting()
    result = smol.reader(_prompt(smol, WEATHER_ONLY), tools=WEATHER_ONLY).read_all(text)
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("get_weather", {"city": "Paris"})]


def test_nothing_forced_means_no_constraint(smol):
    assert plan(smol, _prompt(smol), tools=WEATHER_ONLY, tool_choice="auto") is None
    assert plan(smol, _prompt(smol), response_format={"type": "text"}) is None


@pytest.mark.parametrize("choice,words", [
    ({"type": "function", "function": {"name": "nope"}}, ("'nope'", "declared: get_weather")),
    ("sometimes", ("'sometimes'",)),
    ({"type": "function"}, ("tool_choice",)),
])
def test_bad_tool_choice(smol, choice, words):
    with pytest.raises(ConstraintError) as err:
        plan(smol, _prompt(smol), tools=WEATHER_ONLY, tool_choice=choice)
    assert all(w in str(err.value) for w in words) and err.value.param == "tool_choice"


def test_response_format_json_object_and_schema(smol):
    schema = {"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"]}
    for fmt, ok, bad in [({"type": "json_object"}, '{"a": [1, {"b": null}]}', '[1]'),
                         ({"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
                          '{"capital": "Paris"}', '{"city": "Paris"}')]:
        constraint = plan(smol, _prompt(smol), response_format=fmt)
        assert constraint.kind == "json"
        for text, accepted in ((ok, True), (bad, False)):
            _, matcher = lark_matcher(smol, constraint.start)
            ids = smol.vocab.tokenizer.encode(text, add_special_tokens=False).ids
            assert (matcher.try_consume_tokens(ids) == len(ids) and matcher.is_accepting()) is accepted, text


@pytest.mark.parametrize("schema,feature", [
    ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}, "'minimum'"),
    ({"type": "object", "properties": {"e": {"type": "string", "format": "email"}}}, "'format: email'"),
    ({"type": "object", "patternProperties": {"^x": {}}}, "'patternProperties'"),
    ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "'not'"),
])
def test_an_unsupported_schema_feature_is_named_for_llamacpp(smol, schema, feature):
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    constraint = plan(smol, _prompt(smol), response_format=fmt)
    with pytest.raises(ConstraintError) as err:
        check(constraint, "gbnf")
    assert feature in str(err.value) and "llama.cpp" in str(err.value)


def test_llguidance_names_what_it_cannot_enforce(smol):
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "if": {}}}}
    with pytest.raises(ConstraintError, match=r'Unimplemented keys: \["if"\]'):
        check(plan(smol, _prompt(smol), response_format=fmt), "llguidance")
    check(plan(smol, _prompt(smol), response_format={"type": "json_object"}), "llguidance")  # fine


def test_an_engine_without_grammar_support_is_a_clear_error(smol):
    with pytest.raises(ConstraintError, match="cannot constrain"):
        check(plan(smol, _prompt(smol), response_format={"type": "json_object"}), None)


# ------------------------------------------------------------------------------------------------ phases
def _corpus(name):
    path = need(SHARED / "corpus" / "templates" / f"{name}.jinja")
    return spec_for(path.read_text(encoding="utf-8"), special_tokens_for(path), SMOLLM2_DIR / "tokenizer.json")


def test_reasoning_stays_free_before_a_forced_call():
    spec = _corpus("Qwen-Qwen3-0.6B")
    tools = TOOLS
    prompt = spec.render([{"role": "user", "content": "Weather?"}], add_generation_prompt=True, tools=tools)
    c = plan(spec, prompt, tools=tools, tool_choice="required")
    state = ConstraintState(c)
    assert state.grammar is c.start and c.reasoning_open == "<think>"
    assert state.advance("<think>") and state.grammar is None  # reasoning: free
    assert not state.advance("Let me call the tool") and state.grammar is None
    assert state.advance("</think>") and state.grammar is c.resume  # the call is forced after it
    # the start grammar offers either the opener or the call
    _, matcher = lark_matcher(spec, c.start)
    assert matcher.try_consume_tokens(spec.vocab.tokenizer.encode("<think>", add_special_tokens=False).ids)
    # a turn that starts with the call never opens reasoning
    state = ConstraintState(c)
    assert not state.advance("<tool_call>") and state.grammar is c.start


def test_a_prompt_that_opened_reasoning_starts_free():
    spec = _corpus("Qwen-QwQ-32B")
    prompt = spec.render([{"role": "user", "content": "Weather?"}], add_generation_prompt=True, tools=TOOLS)
    c = plan(spec, prompt, tools=TOOLS, tool_choice="required")
    assert c.starts_free and ConstraintState(c).grammar is None


def test_the_prompt_already_wrote_the_call_opener():
    """functionary v3.2: the generation prompt ends with `>>>`, which opens a call: it is not generated again."""
    spec = _corpus("meetkai-functionary-medium-v3.2")
    prompt = spec.render([{"role": "user", "content": "Weather?"}], add_generation_prompt=True, tools=TOOLS)
    c = plan(spec, prompt, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert prompt.endswith(">>>")
    _, matcher = lark_matcher(spec, c.start)
    text = 'get_weather\n{"city": "Paris"}'
    ids = spec.vocab.tokenizer.encode(text, add_special_tokens=False).ids
    assert matcher.try_consume_tokens(ids) == len(ids) and matcher.is_accepting()


def test_parallel_calls_only_when_asked():
    spec = _corpus("Qwen-Qwen2.5-7B-Instruct")
    prompt = spec.render([{"role": "user", "content": "Weather?"}], add_generation_prompt=True, tools=TOOLS)
    two = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
           '<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call>')
    ids = spec.vocab.tokenizer.encode(two, add_special_tokens=False).ids
    for parallel, accepted in ((False, False), (True, True)):
        c = plan(spec, prompt, tools=TOOLS, tool_choice="required", parallel_tool_calls=parallel)
        _, matcher = lark_matcher(spec, c.start)
        assert (matcher.try_consume_tokens(ids) == len(ids)) is accepted


def test_tagged_text_parameters_end_at_their_closer():
    spec = _corpus("ByteDance-Seed-OSS")
    syntax = spec.analysis.tools.calls[0]
    node = CallGrammar(syntax, [Tool("note", {"type": "object", "properties": {"text": {"type": "string"}},
                                              "required": ["text"]})]).turn()
    ok = "<seed:tool_call>\n<function=note>\n<parameter=text>a <b> c</parameter>\n</function>\n</seed:tool_call>"
    bad = "<seed:tool_call>\n<function=note>\n<parameter=text>a</parameter>b</parameter>\n</function>\n</seed:tool_call>"
    for text, accepted in ((ok, True), (bad, False)):
        _, matcher = lark_matcher(spec, node)
        ids = spec.vocab.tokenizer.encode(text, add_special_tokens=False).ids
        assert (matcher.try_consume_tokens(ids) == len(ids) and matcher.is_accepting()) is accepted, text


def test_literals_keep_the_templates_exact_text():
    assert to_lark(Lit('a "b"\n')) == 'start: "a \\"b\\"\\n"\n'
    assert to_gbnf(Lit('a "b"\n\\')).startswith('root ::= "a \\"b\\"\\n\\\\"')


def test_json_strings_hold_no_raw_control_characters(smol, gbnf_checker):
    """A raw newline inside a JSON string is not JSON: neither grammar lets one in (an escaped one is fine)."""
    schema = {"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]}
    node = plan(smol, _prompt(smol), response_format={"type": "json_schema", "json_schema": {"schema": schema}}).start
    for text, accepted in (('{"s": "a\\nb"}', True), ('{"s": "a\nb"}', False)):
        assert gbnf_checker.accepts(to_gbnf(node), text) is accepted, text
        _, matcher = lark_matcher(smol, node)
        ids = smol.vocab.tokenizer.encode(text, add_special_tokens=False).ids
        assert (matcher.try_consume_tokens(ids) == len(ids)) is accepted, text
