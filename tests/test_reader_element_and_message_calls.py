"""Two call syntaxes learned from what the templates render (issue 21), on llama.cpp's real test templates:

- MiniMax-M3 writes each argument as an element closed by its own key, every part behind the token run
  `]<]minimax[>[`, objects and lists as nested elements (`<tags><item>a</item>…</tags>`);
- GigaChat3 writes a call as a message of its own after the answer: `<|message_sep|>\\n\\nfunction call<|role_sep|>\\n`
  then a JSON object, where `<|message_sep|>` alone ends the turn.

Outputs are written the way those models write them (the shapes of llama.cpp's and vLLM's parser tests); each is
read whole, in small text chunks and token by token (the SmolLM2 vocabulary with the template's control tokens as
special tokens, as tests/helpers/parser_eval.py builds it), and the three reads must agree.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.parser_eval import SMOLLM2_TOKENIZER, spec_and_vocab
from helpers.paths import need
from helpers.reading import read_reply
from turnspec.analysis.syntax import KEY

TEMPLATES = Path(__file__).parent / "data" / "llamacpp_templates"
NS = "]<]minimax[>["


def spec_for(template: str, special: dict[str, str]):
    need(TEMPLATES / template)
    need(SMOLLM2_TOKENIZER)
    return spec_and_vocab({"template": f"llamacpp/{template}", "special_tokens": special})


@pytest.fixture(scope="module")
def minimax():
    return spec_for("MiniMax-M3.jinja", {"bos_token": "]~!b[", "eos_token": "[e~["})


@pytest.fixture(scope="module")
def gigachat():
    return spec_for("GigaChat3-10B-A1.8B.jinja", {"bos_token": "<s>", "eos_token": "</s>"})


def read(spec_vocab, output: str, tools: list[dict] | None):
    """The result read whole, after checking that text chunks and token ids give the same split."""
    spec, tok = spec_vocab
    return read_reply(spec, output, tools, tokenizer=tok, stop_when_done=True)


def tool(name: str, properties: dict) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object",
                                                                          "properties": properties}}}


ORDER = tool("create_order", {
    "user_id": {"type": "integer"}, "urgent": {"type": "boolean"}, "note": {"type": "string"},
    "shipping": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}},
    "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"},
                                                                          "qty": {"type": "integer"}}}},
    "tags": {"type": "array", "items": {"type": "string"}}})
ORDER_ARGS = {"user_id": 42, "urgent": True, "note": "Please leave <at> the front desk.",
              "shipping": {"city": "Singapore", "zip": "018956"},
              "items": [{"sku": "book-001", "qty": 2}, {"sku": "pen-007", "qty": 5}], "tags": ["gift", "fragile"]}


def el(key: str, inner: str) -> str:
    return f"{NS}<{key}>{inner}{NS}</{key}>"


# --------------------------------------------------------------------------------------------- MiniMax-M3
def test_minimax_m3_learns_elements_closed_by_their_key_and_nested_values(minimax):
    (syntax,) = minimax[0].analysis.tools.calls
    p = syntax.params
    assert p is not None and KEY in p.value_suffix and p.nested and p.list_item == "item"
    assert syntax.triggers[0] == f"{NS}<tool_call>" and syntax.section_close == f"{NS}</tool_call>"


def test_minimax_m3_call_with_nested_arguments_after_reasoning_and_text(minimax):
    items = "".join(el("item", el("sku", s) + el("qty", q)) for s, q in (("book-001", "2"), ("pen-007", "5")))
    out = ("<mm:think>The user wants an order.</mm:think>I will create it.\n"
           f"{NS}<tool_call>\n{NS}<invoke name=\"create_order\">" + el("user_id", "42") + el("urgent", "true")
           + el("note", "Please leave <at> the front desk.")
           + el("shipping", el("city", "Singapore") + el("zip", "018956")) + el("items", items)
           + el("tags", el("item", "gift") + el("item", "fragile")) + f"{NS}</invoke>\n{NS}</tool_call>")
    r = read(minimax, out, [ORDER])
    assert (r.reasoning, r.content.strip()) == ("The user wants an order.", "I will create it.")
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("create_order", ORDER_ARGS)]


def test_minimax_m3_reads_back_what_its_template_renders(minimax):
    spec, _ = minimax
    call = {"type": "function", "function": {"name": "create_order", "arguments": ORDER_ARGS}}
    convo = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "On it.", "tool_calls": [call, call]}]
    rendered = spec.render(convo, tools=[ORDER])
    turn = rendered[rendered.rindex("]~b]ai\n") + len("]~b]ai\n"):]
    r = read(minimax, turn, [ORDER])
    assert r.content == "On it." and [(c.name, c.arguments) for c in r.tool_calls] == [("create_order", ORDER_ARGS)] * 2


def test_minimax_m3_string_parameter_keeps_its_text_and_parallel_calls(minimax):
    note = tool("note", {"text": {"type": "string"}, "n": {"type": "integer"}})
    out = (f"{NS}<tool_call>\n{NS}<invoke name=\"note\">" + el("text", el("b", "bold")) + el("n", "-3")
           + f"{NS}</invoke>\n{NS}<invoke name=\"note\">{NS}</invoke>\n{NS}</tool_call>")
    r = read(minimax, out, [note])
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("note", {"text": el("b", "bold"), "n": -3}),
                                                             ("note", {})]
    assert r.content == ""


def test_minimax_m3_prose_with_tags_stays_content(minimax):
    out = f"Wrap the city as <city>Paris</city>{NS}<zip>1</zip>; {NS} starts each element."
    r = read(minimax, out, [ORDER])
    assert (r.content, r.tool_calls) == (out, [])


# --------------------------------------------------------------------------------------------- GigaChat3
MEMORY = tool("manage_user_memory", {"action": {"type": "string"}, "id": {"type": "string"},
                                     "content": {"type": "object"}})
CALL_MESSAGE = ('<|message_sep|>\n\nfunction call<|role_sep|>\n{"name": "manage_user_memory", "arguments": '
                '{"action": "create", "id": "preferences", "content": {"short_answers": true}}}')


def test_gigachat3_call_opener_that_starts_with_the_turn_end_is_one_trigger(gigachat):
    (syntax,) = gigachat[0].analysis.tools.calls
    assert "<|message_sep|>" in gigachat[0].analysis.turn_ends
    assert syntax.triggers == ("<|message_sep|>\n\nfunction call<|role_sep|>",)


@pytest.mark.parametrize("lead,end", [("", ""), ("I'll check that for you.", ""), ("Noted.", "</s>")])
def test_gigachat3_call_message_after_the_answer(gigachat, lead, end):
    r = read(gigachat, lead + CALL_MESSAGE + end, [MEMORY])
    assert r.content == lead
    assert [(c.name, c.arguments) for c in r.tool_calls] == [
        ("manage_user_memory", {"action": "create", "id": "preferences", "content": {"short_answers": True}})]


@pytest.mark.parametrize("after", ["", "\n\nuser<|role_sep|>\nThanks"])
def test_gigachat3_message_sep_alone_still_ends_the_turn(gigachat, after):
    r = read(gigachat, "Hello, world!<|message_sep|>" + after, [MEMORY])
    assert (r.content, r.tool_calls, r.stopped_by) == ("Hello, world!", [], "<|message_sep|>")
    assert not any("inside a marker" in w for w in r.warnings)


def test_gigachat3_engines_do_not_halt_on_the_turn_end_a_call_message_starts_with(gigachat):
    """An engine that halted on `<|message_sep|>` would cut every call message off before its opener: the stop set
    leaves it to the reader (which ends the turn there unless `function call<|role_sep|>` follows) and says why."""
    from turnspec.formats import format_of

    spec = gigachat[0]
    assert format_of(spec.analysis).message_end == "<|message_sep|>"
    assert "<|message_sep|>" not in spec.stops.tokens and spec.stops.message_end == "<|message_sep|>"
    assert any("start a tool call's opener" in w for w in spec.stops.warnings)


def test_minimax_m3_leaves_no_schema_types_and_nesting_too_deep(minimax):
    untyped = tool("log", {})
    meta = el("n", "7") + el("flag", "true") + el("zip", "018956") + el("word", "None") + el("tag", "a") + el("tag", "b")
    out = f"{NS}<tool_call>\n{NS}<invoke name=\"log\">" + el("meta", meta) + f"{NS}</invoke>\n{NS}</tool_call>"
    r = read(minimax, out, [untyped])
    assert [(c.name, c.arguments) for c in r.tool_calls] == [
        ("log", {"meta": {"n": 7, "flag": True, "zip": "018956", "word": "None", "tag": ["a", "b"]}})]
    deep = f"{NS}<k>" * 100 + "x" + f"{NS}</k>" * 100
    r = read(minimax, f"{NS}<tool_call>\n{NS}<invoke name=\"log\">{deep}{NS}</invoke>\n{NS}</tool_call>", [untyped])
    assert r.tool_calls == [] and len(r.errors) == 1 and "nest deeper" in r.errors[0].message


# --------------------------------------------------------------------------------------------- found on the way
def test_an_answer_with_thousands_of_angle_brackets_reads_whole(minimax):
    """The loose-call filter released held text by recursion, one level per `<`: a whole-text read of an answer
    with some hundreds of them raised RecursionError (streamed chunks did not)."""
    out = "if a<b and c<d then " * 600
    r = read(minimax, out, [ORDER])
    assert (r.content, r.tool_calls) == (out, [])
