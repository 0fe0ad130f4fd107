"""Learn how a template writes tool calls, from renderings of one call and of two parallel calls.

The sentinel name, id, argument keys and values are located in the rendering of an assistant turn; what lies
around them is the syntax:

- JSON: the sentinel name sits in a JSON object that also holds the arguments (`{"name": …, "arguments": …}`,
  `{"tool_name": …, "parameters": …}`, `{"tsfn_alpha": {…}}`), possibly inside a JSON list.
- tagged: the name is followed by the arguments as one JSON object (`[ARGS]{…}`, `<｜tool▁sep｜>{…}`), or as
  parameters with keys and values between literals (`<parameter=k>v</parameter>`, `<arg_key>k</arg_key>…`).
- pythonic: the name is followed by `(key=value, …)` inside a list.

Two calls show what repeats per call (`call_open`/`call_close`), what is written once (`section_open`/`close`)
and what joins them. Parts that differ between the two calls become holes (a call index, an attribute value).
Every syntax found is checked by parsing the probe renderings back with the reader's own parser; a syntax that
does not read back is reported as not readable, never used.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from ..reader.call_parse import bracket_end
from ..template import mutation_permitted, permitting_mutation, refuses_mutation
from .markup import Markup
from ..affixes import common_prefix, common_suffix
from .probes import ARGS_A, ARGS_B, FLAT_TOOLS, ID_A, ID_B, NAME_A, NAME_B, TOOLS, Prober, assistant, call, user
from .syntax import (ANY, HOLES, ID, INDEX, KEY, CallSyntax, ParamSyntax, Pattern, ReasoningSyntax, ToolSyntax,
                     literal_text, with_key)

_DECODER = json.JSONDecoder()

#: The analysis note for calls learned with `permitting_mutation` (onboarding repeats it next to the syntax).
MUTATION_NOTE = ("tool calls learned from a rendering that lets the template mutate a list (jinja's plain sandbox): "
                 "transformers' sandbox refuses that, so a history with tool calls does not render with this template")

#: The analysis note for calls learned from renderings without tools, on a template that raises when given tools
#: (llama.cpp's DeepSeek-R1 template pipes `map` into `tojson`, which jinja2 and transformers refuse).
WITHOUT_TOOLS_NOTE = ("tool calls learned from a history rendered without tools: the template raises when given "
                      "tools, so a prompt that declares them does not render; calls the model writes are still read")


class _NotFound(Exception):
    """The rendering does not show a syntax of this shape."""


@dataclass
class CallsFound:
    """The tool syntax and what the call probes showed around it."""

    tools: ToolSyntax
    turn_ends: dict[str, str]  # what the template writes right after the calls
    outputs: list[str]  # the assistant's own text in the call probes (up to the calls' end)
    empty_block: tuple[str, str] | None = None  # an empty tag pair written before the calls (a reasoning block)
    note: str | None = None  # how the syntax was learned, when not from a plain rendering


@dataclass
class _Call:
    start: int  # where the call's own text starts (the JSON object, or the name)
    end: int  # where its arguments end


def learn_tools(prober: Prober, markup: Markup, turn: Any, turn_ends: set[str], reasoning: ReasoningSyntax
                ) -> CallsFound:
    u = [user()]
    plain, _ = prober.attempt(u, add_generation_prompt=True)
    tools: list[dict[str, Any]] | None = TOOLS
    with_tools, error = prober.attempt(u, add_generation_prompt=True, tools=tools)
    note = ""
    raised = None
    if with_tools is None:
        flat, _ = prober.attempt(u, add_generation_prompt=True, tools=FLAT_TOOLS)
        if flat is None and ("tools" in prober.requires or plain is None or _render_calls(prober, u, None) is None):
            return CallsFound(ToolSyntax(rendered=f"raises: {error}",
                                         reason=f"the template raises when given tools ({error})"), {}, [])
        if flat is None:  # tools raise, yet a history without them shows the calls (see WITHOUT_TOOLS_NOTE)
            tools, with_tools, raised = None, plain, error
        else:
            tools, with_tools = FLAT_TOOLS, flat
            note = " (it wants bare function schemas, not {type, function} objects)"
    rendered = (f"raises: {raised}" if raised else "required" if "tools" in prober.requires else
                "ignored" if with_tools == plain else "rendered") + note
    renders = _render_calls(prober, u, tools)
    # once only: a template whose own error merely quotes the refusal would otherwise recurse until the stack ends
    if renders is None and not mutation_permitted() and _refuses_mutation(prober, u, tools):
        with permitting_mutation():
            found = learn_tools(Prober(prober.spec, base=dict(prober.base), requires=dict(prober.requires),
                                       base_found=True), markup, turn, turn_ends, reasoning)
        if found.tools.readable:
            found.note = MUTATION_NOTE
        return found
    if renders is None:
        why = ("the template ignores tools and does not render assistant tool calls" if rendered == "ignored"
               else "the template does not render assistant tool calls")
        return CallsFound(ToolSyntax(rendered=rendered, reason=why), {}, [])
    full1, full2 = renders
    one = turn.body_of(full1, NAME_A, with_tools)
    two = turn.body_of(full2, NAME_A, with_tools) if full2 is not None else None
    one, empty1 = _strip_reasoning(one, markup, reasoning)
    if two is not None:  # both ids read as the same text, so that only real differences become holes
        two, _ = _strip_reasoning(two.replace(ID_B, ID_A), markup, reasoning)
    try:
        syntax, (start1, end1), bounds2 = _learn(one, two, markup, turn_ends)
    except _NotFound as exc:
        return CallsFound(ToolSyntax(rendered=rendered, reason=str(exc)), {}, [one], empty1)
    problem = _self_check(syntax, one[start1:end1], two[bounds2[0]:bounds2[1]] if two and bounds2 else None)
    if problem:
        return CallsFound(ToolSyntax(rendered=rendered, reason=f"the syntax found ({syntax.describe()!r}) does not "
                                                               f"read its own rendering back: {problem}"),
                          {}, [one], empty1)
    if syntax.params is not None:
        wrap = _value_wrap(prober, u, tools, full1)
        if wrap is not None:
            syntax = replace(syntax, params=replace(syntax.params, value_wrap=wrap))
        if KEY in syntax.params.value_suffix:
            syntax = _nested_values(prober, u, tools, turn, with_tools, markup, reasoning, syntax)
    parallel = bounds2 is not None
    ends: dict[str, str] = {}
    first = markup.first(one, end1)
    if first is not None and not one[end1:first.start].strip():
        ends[first.text] = "template:tool_call"
    outputs = [one[:end1]] + ([two[:bounds2[1]]] if two is not None and bounds2 else [])
    calls = [syntax]
    builtin = _builtin_syntax(prober, markup, turn, turn_ends, tools, one)
    if builtin is not None:
        calls.append(builtin[0])
        for tok in builtin[1]:
            ends.setdefault(tok, "template:builtin_tool_call")
        outputs.append(builtin[2])
    return CallsFound(ToolSyntax(rendered=rendered, calls=tuple(calls), parallel=parallel), ends, outputs, empty1,
                      WITHOUT_TOOLS_NOTE if raised else None)


def _builtin_syntax(prober: Prober, markup: Markup, turn: Any, turn_ends: set[str], tools: list[dict[str, Any]],
                    plain_call: str) -> tuple[CallSyntax, list[str], str] | None:
    """A second syntax for the template's built-in tools, when it reads `builtin_tools` (Llama 3.1 writes
    `<|python_tag|>name.call(key="value")` and ends the turn with `<|eom_id|>`)."""
    from ..template import template_variables

    if "builtin_tools" not in template_variables(prober.spec.select_template()):
        return None
    args = {"tsk_one": "tsv_one"}
    conv = [user(), assistant(calls=[call(NAME_A, args, ID_A, False)])]
    full, _ = prober.attempt(conv, tools=tools, builtin_tools=[NAME_A])
    if full is None or NAME_A not in full:
        return None
    with_prompt, _ = prober.attempt([user()], add_generation_prompt=True, tools=tools, builtin_tools=[NAME_A])
    one = turn.body_of(full, NAME_A, with_prompt)
    if one == plain_call:
        return None
    try:
        syntax, (_, end), _ = _learn(one, None, markup, turn_ends)
    except _NotFound:
        return None
    if _self_check(syntax, one[:end], None, [(NAME_A, args)]):
        return None
    first = markup.first(one, end)
    ends = [first.text] if first is not None and not one[end:first.start].strip() else []
    return syntax, ends, one[:end]


def _refuses_mutation(prober: Prober, u: list[dict[str, Any]], tools: list[dict[str, Any]]) -> bool:
    """Whether the one-call rendering fails only because the sandbox refuses a mutating method (`list.append`)."""
    _, error = prober.attempt([*u, assistant(calls=[call(NAME_A, ARGS_A, ID_A, False)])], tools=tools)
    return error is not None and refuses_mutation(error)


def _render_calls(prober: Prober, u: list[dict[str, Any]], tools: list[dict[str, Any]]
                  ) -> tuple[str, str | None] | None:
    """Renderings of a turn with one call and with two: arguments as objects, or as JSON strings if the template
    needs those; None when no form shows the call."""
    for as_string in (False, True):
        one = [*u, assistant(calls=[call(NAME_A, ARGS_A, ID_A, as_string)])]
        text, _ = prober.attempt(one, tools=tools)
        if text is None or NAME_A not in text or "tsv_one" not in text or "4711" not in text:
            continue
        two = [*u, assistant(calls=[call(NAME_A, ARGS_A, ID_A, as_string), call(NAME_B, ARGS_B, ID_B, as_string)])]
        text2, _ = prober.attempt(two, tools=tools)
        if text2 is not None and (NAME_B not in text2 or text2.count(NAME_A) != text.count(NAME_A)):
            text2 = None
        return text, text2
    return None


#: A string value with the characters markup-like syntaxes must protect (MiniCPM wraps it in `<![CDATA[…]]>`).
_AWKWARD = "tsv_one <a&b>\nline"


def _value_wrap(prober: Prober, u: list[dict[str, Any]], tools: list[dict[str, Any]], plain: str
                ) -> tuple[str, str] | None:
    """What the template writes around a string value holding `<`, `&` or a line break, when it writes more than
    around a plain one: the two renderings differ only there."""
    for as_string in (False, True):
        args = {**ARGS_A, "tsk_one": _AWKWARD}
        text, _ = prober.attempt([*u, assistant(calls=[call(NAME_A, ARGS_A, ID_A, as_string)])], tools=tools)
        if text != plain:
            continue
        awkward, _ = prober.attempt([*u, assistant(calls=[call(NAME_A, args, ID_A, as_string)])], tools=tools)
        if awkward is None:
            return None
        p = common_prefix(plain, awkward)
        q = common_suffix(plain[p:], awkward[p:])
        middle = awkward[p:len(awkward) - q]
        at = middle.find(_AWKWARD)
        if at < 0:  # escaped or encoded: nothing to unwrap
            return None
        before, after = middle[:at], middle[at + len(_AWKWARD):]
        return (before, after) if before.strip() and after.strip() else None
    return None


#: Arguments with an object and a list, to see whether the template writes them as nested parameters.
_NESTED_ARGS = {"tsk_one": {"tsk_inner": "tsv_inner"}, "tsk_two": ["tsv_x", "tsv_y"], "tsk_num": 4711}


def _nested_values(prober: Prober, u: list[dict[str, Any]], tools: list[dict[str, Any]], turn: Any, with_tools: str,
                   markup: Markup, reasoning: ReasoningSyntax, syntax: CallSyntax) -> CallSyntax:
    """The syntax with `nested` (and the list's item key) when the template writes an object argument as parameters
    inside the value and a list as repeated parameters (MiniMax-M3: `<tsk_two><item>tsv_x</item>…</tsk_two>`), and
    the reader's parser reads that rendering back; the syntax unchanged otherwise."""
    from ..reader.call_parse import CallParser, ToolParseError

    p = syntax.params
    assert p is not None
    full, _ = prober.attempt([*u, assistant(calls=[call(NAME_A, _NESTED_ARGS, ID_A, False)])], tools=tools)
    if full is None or "tsv_x" not in full:
        return syntax
    body, _ = _strip_reasoning(turn.body_of(full, NAME_A, with_tools), markup, reasoning)
    item = re.search(re.escape(literal_text(p.key_prefix)) + r"(\w+)" + re.escape(literal_text(p.key_suffix))
                     + "tsv_x", body)
    candidate = replace(syntax, params=replace(p, nested=True, list_item=item.group(1) if item else ""))
    try:
        calls, _ = CallParser(candidate).parse_prefix(body)
    except ToolParseError:
        return syntax
    return candidate if [(c.name, c.arguments) for c in calls] == [(NAME_A, _NESTED_ARGS)] else syntax


def _strip_reasoning(text: str, markup: Markup, reasoning: ReasoningSyntax) -> tuple[str, tuple[str, str] | None]:
    """Drop a reasoning block written before the calls (Qwen3's empty `<think>\\n\\n</think>`); report an empty tag
    pair there even when reasoning was not found elsewhere (Command-R7B's `<|START_THINKING|><|END_THINKING|>`)."""
    if reasoning.kind == "tags":
        if text.lstrip().startswith(reasoning.close):  # the prompt opened reasoning; the turn closes it
            return _drop_empty_pair(text.lstrip()[len(reasoning.close):].lstrip(), markup), None
        i = text.find(reasoning.open)
        j = text.find(reasoning.close, i)
        name_at = text.find(NAME_A)
        if 0 <= i <= j < name_at and not text[:i].strip():
            return _drop_empty_pair(text[j + len(reasoning.close):].lstrip(), markup), None
    spans = markup.spans(text)
    if len(spans) >= 3 and not text[:spans[0].start].strip() and not text[spans[0].end:spans[1].start].strip():
        from .turn import pairs

        if pairs(spans[0].text, spans[1].text):
            return text[spans[1].end:].lstrip(), (spans[0].text, spans[1].text)
    return text, None


def _drop_empty_pair(text: str, markup: Markup) -> str:
    """`text` without an empty answer block the template writes between the reasoning and the calls (Kimi-K3's
    `<|open|>response<|sep|><|close|>response<|sep|>`): the answer's markers, not the calls' syntax."""
    from .turn import pairs

    spans = markup.spans(text)
    if len(spans) >= 3 and spans[0].start == 0 and not text[spans[0].end:spans[1].start].strip() \
            and pairs(spans[0].text, spans[1].text):
        return text[spans[1].end:].lstrip()
    return text


# --------------------------------------------------------------------------------------------- shapes
def _learn(one: str, two: str | None, markup: Markup, turn_ends: set[str]
           ) -> tuple[CallSyntax, tuple[int, int], tuple[int, int] | None]:
    """The syntax, the section's bounds in `one`, and in `two` (None when two calls do not render)."""
    name_at = one.find(NAME_A)
    json_call = _json_object_around(one, name_at)
    if json_call is not None:
        return _learn_json(one, two, json_call, markup, turn_ends)
    after = one[name_at + len(NAME_A):]
    paren = after.find("(")
    if 0 <= paren <= 16 and re.fullmatch(r"[\w.]*", after[:paren]) and after[paren + 1:].lstrip().startswith("tsk_"):
        if _enclosing_list(one, name_at) is not None:
            return _learn_list(one, two, "pythonic", {}, markup, turn_ends)
        return _learn_single_pythonic(one, two, after[:paren], markup, turn_ends)
    return _learn_tagged(one, two, markup, turn_ends)


def _learn_single_pythonic(one: str, two: str | None, between: str, markup: Markup, turn_ends: set[str]
                           ) -> tuple[CallSyntax, tuple[int, int], tuple[int, int] | None]:
    """`name.call(key="value")` after an opener (Llama 3.1's built-in tools after <|python_tag|>)."""
    name_at = one.find(NAME_A)
    end = bracket_end(one, one.index("(", name_at))
    if end is None:
        raise _NotFound("a pythonic call whose parentheses do not close")
    calls2 = None
    if two is not None and NAME_B in two:
        a, b = two.find(NAME_A), two.find(NAME_B)
        ea, eb = bracket_end(two, two.index("(", a)), bracket_end(two, two.index("(", b))
        if ea is not None and eb is not None:
            calls2 = [_Call(a, ea), _Call(b, eb)]
    return _frame(one, two, _Call(name_at, end), calls2, markup, turn_ends, "pythonic",
                  {"between": (between,) if between else ()})


def _json_object_around(text: str, name_at: int) -> tuple[int, int, dict[str, Any]] | None:
    """The outermost JSON object holding exactly one call around `name_at`: (start, end, object)."""
    best = None
    for start in range(name_at - 1, -1, -1):
        if text[start] != "{":
            continue
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if end <= name_at:
            continue
        if text[start:end].count(NAME_A) + text[start:end].count(NAME_B) != 1:
            break
        if isinstance(value, dict) and _call_fields(value) is not None:
            best = (start, end, value)
    return best


def _call_fields(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The call object's shape: where the name and arguments are, or the name as the only key."""
    for name, args in ((NAME_A, ARGS_A), (NAME_B, ARGS_B)):
        if len(obj) == 1 and obj.get(name) == args:
            return {"name_is_key": True}
        name_path = _find(obj, lambda v, name=name: v == name)
        args_path = _find(obj, lambda v, args=args: v == args or (isinstance(v, str) and _json_equals(v, args)))
        if name_path is not None and args_path is not None:
            return {"json_name": name_path, "json_args": args_path,
                    "args_as_string": isinstance(_get(obj, args_path), str)}
    return None


def _find(obj: Any, pred: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if pred(v):
                return (*path, k)
        for k, v in obj.items():
            found = _find(v, pred, (*path, k))
            if found:
                return found
    return None


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def _json_equals(text: str, value: Any) -> bool:
    try:
        return json.loads(text) == value
    except ValueError:
        return False


def _learn_json(one: str, two: str | None, found: tuple[int, int, dict[str, Any]], markup: Markup,
                turn_ends: set[str]) -> tuple[CallSyntax, tuple[int, int], tuple[int, int] | None]:
    start, end, obj = found
    fields = _call_fields(obj) or {}
    if _enclosing_list(one, start) is not None:
        return _learn_list(one, two, "json", fields, markup, turn_ends)
    calls2 = None
    if two is not None:
        a = _json_object_around(two, two.find(NAME_A))
        b = _json_object_around(two, two.find(NAME_B))
        if a is not None and b is not None:
            calls2 = [_Call(a[0], a[1]), _Call(b[0], b[1])]
    return _frame(one, two, _Call(start, end), calls2, markup, turn_ends, "json", fields)


def _enclosing_list(text: str, start: int) -> tuple[int, int] | None:
    """The list that directly encloses the value at `start`: (list start, list end)."""
    i = start - 1
    while i >= 0 and text[i].isspace():
        i -= 1
    if i < 0 or text[i] != "[":
        return None
    end = bracket_end(text, i)
    return (i, end) if end is not None else None


def _learn_list(one: str, two: str | None, shape: str, fields: dict[str, Any], markup: Markup, turn_ends: set[str]
                ) -> tuple[CallSyntax, tuple[int, int], tuple[int, int] | None]:
    """All calls in one list (`[{…}, {…}]`, `[f(a=1), g(b=2)]`): the list is the section."""
    name_at = one.find(NAME_A)
    l_start = one.rfind("[", 0, name_at)
    l_end = bracket_end(one, l_start) if l_start >= 0 else None
    if l_end is None:
        raise _NotFound("the calls sit in a list that does not close")
    section_open, rest = one[:l_start], one[l_end:]
    section_close = _section_close(section_open, rest, markup, turn_ends)
    syntax = CallSyntax(shape, section_open=section_open, section_close=section_close, list_wrapped=True,
                        triggers=_triggers([section_open], markup, turn_ends), **fields)
    bounds2 = None
    if two is not None:
        b_start = two.rfind("[", 0, two.find(NAME_A))
        b_end = bracket_end(two, b_start) if b_start >= 0 else None
        if b_end is not None and NAME_B in two[b_start:b_end]:
            bounds2 = (0, b_end + _closing(two[b_end:], section_close))
    return syntax, (0, l_end + _closing(rest, section_close)), bounds2


def _learn_tagged(one: str, two: str | None, markup: Markup, turn_ends: set[str]
                  ) -> tuple[CallSyntax, tuple[int, int], tuple[int, int] | None]:
    name_at = one.find(NAME_A)
    after = name_at + len(NAME_A)
    args_at = _json_args_at(one, after, ARGS_A)
    if args_at is not None:
        between_b, calls2 = None, None
        if two is not None:
            a2, b2 = two.find(NAME_A), two.find(NAME_B)
            x = _json_args_at(two, a2 + len(NAME_A), ARGS_A)
            y = _json_args_at(two, b2 + len(NAME_B), ARGS_B)
            if x is not None and y is not None:
                calls2 = [_Call(a2, x[1]), _Call(b2, y[1])]
                between_b = two[b2 + len(NAME_B):y[0]]
        fields: dict[str, Any] = {"args": "json", "between": _generalize(one[after:args_at[0]], between_b)}
        return _frame(one, two, _Call(name_at, args_at[1]), calls2, markup, turn_ends, "tagged", fields)
    params = _learn_params(one, after, ARGS_A, markup)
    if params is None:
        raise _NotFound("the call's arguments are neither JSON nor tagged key/value pairs this analysis can read")
    between, param_syntax, a_end = params
    calls2, between_b = None, None
    if two is not None:
        a2, b2 = two.find(NAME_A), two.find(NAME_B)
        p_a = _learn_params(two, a2 + len(NAME_A), ARGS_A, markup)
        b_end = _params_end(two, b2 + len(NAME_B), ARGS_B, param_syntax)
        if p_a is not None and b_end is not None:
            calls2 = [_Call(a2, p_a[2]), _Call(b2, b_end)]
            key_prefix = "".join(param_syntax.key_prefix)
            lead_b = two[b2 + len(NAME_B):two.find(next(iter(ARGS_B)), b2)]
            if not set(param_syntax.key_prefix) & set(HOLES) and lead_b.endswith(key_prefix):
                between_b = lead_b[:len(lead_b) - len(key_prefix)]  # a call index differs (Kimi-K3's index="2")
    generalized = _generalize(between, between_b)
    if ANY in generalized or INDEX not in generalized:  # only a call index may differ, never the text around it
        generalized = _split_holes(between)
    fields = {"args": "params", "params": param_syntax, "between": generalized}
    return _frame(one, two, _Call(name_at, a_end), calls2, markup, turn_ends, "tagged", fields)


def _json_args_at(text: str, after: int, args: dict[str, Any]) -> tuple[int, int] | None:
    """Span of the JSON object equal to `args` that follows the name (within a short distance)."""
    i = after
    while True:
        i = text.find("{", i)
        if i < 0 or i - after > 400:
            return None
        try:
            value, end = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        if value == args:
            return i, end
        i += 1


def _learn_params(text: str, after: int, args: dict[str, Any], markup: Markup
                  ) -> tuple[str, ParamSyntax, int] | None:
    """(text between the name and the first key, the parameter syntax, end of the arguments) or None.

    Keys and values are located in order; the text before each key that repeats is the key's prefix, the text
    between a key and its value its suffix (a difference between string and number values is the string quote,
    or an attribute hole), and what follows the last value up to the call's end is the value suffix.
    """
    found = []
    pos = after
    for key, value in sorted(args.items(), key=lambda kv: text.find(kv[0], after)):
        k = text.find(key, pos)
        v = text.find(str(value), k + len(key)) if k >= 0 else -1
        if k < 0 or v < 0 or v - (k + len(key)) > 80:
            return None
        found.append((k, key, v, str(value), isinstance(value, str)))
        pos = v + len(str(value))
    suffixes = [text[k + len(key):v] for k, key, v, _, _ in found]
    quote = _string_quote(text, found, suffixes)
    ends = [v + len(val) + (len(quote) if is_str and quote else 0) for _, _, v, val, is_str in found]
    lead = text[after:found[0][0]]
    if len(found) >= 2:
        gaps = [text[ends[i]:found[i + 1][0]] for i in range(len(found) - 1)]
        n = _snap_suffix(gaps[0], min(common_suffix(lead, g) for g in gaps), markup)
        key_prefix = gaps[0][len(gaps[0]) - n:] if n else ""
        mid = gaps[0][:len(gaps[0]) - n].replace(found[0][1], KEY, 1)  # a closing that names its key: `</{key}>`
    else:
        key_prefix, mid = "", ""
    tail = text[ends[-1]:]
    if KEY in mid:
        tail = tail.replace(found[-1][1], KEY, 1)
    n = common_prefix(mid, tail) if mid else 0
    value_suffix, separator = mid[:n], mid[n:]
    written = len(value_suffix.replace(KEY, found[-1][1]))  # its length in the text, with the last key
    between = lead[: len(lead) - len(key_prefix)]
    open_ = close = ""
    if between.rstrip().endswith("{") and text[ends[-1] + written:].lstrip().startswith("}"):
        open_, close = "{", "}"
        between = between.rstrip()[:-1]
    end = ends[-1] + written
    if close:
        end = text.index("}", end) + 1
    key_suffix = _generalize_many([s[: len(s) - len(quote)] if quote and is_str else s
                                   for s, (_, _, _, _, is_str) in zip(suffixes, found)])
    params = ParamSyntax(key_prefix=_split_holes(key_prefix), key_suffix=key_suffix,
                         value_suffix=_split_holes(value_suffix), separator=separator, open=open_, close=close,
                         string_quote=quote, json_suffix=_json_suffix(suffixes, found, quote))
    return between, params, end


def _json_suffix(suffixes: list[str], found: list[tuple[int, str, int, str, bool]], quote: str) -> str:
    """The key suffix written only before non-string values (`" string="false">`), when it tells them apart."""
    if quote:
        return ""
    strs = {s for s, f in zip(suffixes, found) if f[4]}
    others = {s for s, f in zip(suffixes, found) if not f[4]}
    return next(iter(others)) if len(strs) == 1 and len(others) == 1 and strs != others else ""


def _params_end(text: str, after: int, args: dict[str, Any], params: ParamSyntax) -> int | None:
    """End of a call's arguments written with an already learned parameter syntax."""
    pos = after
    for key, value in args.items():
        k = text.find(key, pos)
        v = text.find(str(value), k + len(key)) if k >= 0 else -1
        if v < 0:
            return None
        pos = max(pos, v + len(str(value)))
    if params.string_quote and text.startswith(params.string_quote, pos):
        pos += len(params.string_quote)
    last = list(args)[-1] if args else ""
    for lit in (literal_text(with_key(params.value_suffix, last)), params.close):
        stripped = lit.strip()
        if stripped:
            i = text.find(stripped, pos)
            if i < 0 or text[pos:i].strip():
                return None
            pos = i + len(stripped)
    return pos


def _string_quote(text: str, found: list[tuple[int, str, int, str, bool]], suffixes: list[str]) -> str:
    """Text wrapped around string values only (`<|"|>` in Gemma 4, `"` in some templates)."""
    strs = [i for i, f in enumerate(found) if f[4]]
    nums = [i for i, f in enumerate(found) if not f[4]]
    if not strs or not nums:
        return ""
    s, i = suffixes[strs[0]], suffixes[nums[0]]
    if s == i or not s.startswith(i):
        return ""
    quote = s[len(i):]
    k, _, v, val, _ = found[strs[0]]
    return quote if text.startswith(quote, v + len(val)) else ""


def _frame(one: str, two: str | None, call1: _Call, calls2: list[_Call] | None, markup: Markup,
           turn_ends: set[str], shape: str, fields: dict[str, Any]
           ) -> tuple[CallSyntax, tuple[int, int], tuple[int, int] | None]:
    """Split what surrounds the calls into section and per-call parts, using the two-call rendering."""
    pre, post = one[:call1.start], one[call1.end:]
    if calls2 is not None and two is not None:
        a, b = calls2
        between = two[a.end:b.start]
        open_len = _snap_suffix(between, common_suffix(pre, between), markup)
        close_len = _snap_prefix(between, min(common_prefix(post, between), len(between) - open_len), markup)
        call_open = between[len(between) - open_len:] if open_len else ""
        call_close = between[:close_len]
        separator = between[close_len:len(between) - open_len]
        section_open = pre[: len(pre) - open_len]
        rest = post[close_len:]
    else:
        call_open, call_close, separator, section_open, rest = pre, "", "", "", post
        first = markup.first(post)
        opener = markup.first(call_open)
        if first is not None and opener is not None and not post[:first.start].strip() and first.text not in turn_ends:
            from .turn import pairs

            if pairs(opener.text, first.text):  # <tool_call> … </tool_call>, not Harmony's … <|call|>
                call_close, rest = post[:first.end], post[first.end:]
    section_close = _section_close(section_open, rest, markup, turn_ends)
    syntax = CallSyntax(shape, section_open=section_open, section_close=section_close,
                        call_open=_split_holes(call_open), call_close=_split_holes(call_close), separator=separator,
                        triggers=_triggers([section_open, call_open, _value_opener(call_open)], markup, turn_ends),
                        **{k: _with_id(v) if k == "between" else v for k, v in fields.items()})
    bounds1 = (0, call1.end + len(call_close) + _closing(rest, section_close))
    bounds2 = None
    if calls2 is not None and two is not None:
        after = two[calls2[1].end + len(call_close):]
        bounds2 = (0, calls2[1].end + len(call_close) + _closing(after, section_close))
    return syntax, bounds1, bounds2


def _closing(rest: str, section_close: str) -> int:
    """Length of the whitespace and section closer at the start of `rest`."""
    if not section_close:
        return 0
    stripped = rest.lstrip()
    return len(rest) - len(stripped) + len(section_close.strip()) if stripped.startswith(section_close.strip()) else 0


def _section_close(section_open: str, rest: str, markup: Markup, turn_ends: set[str]) -> str:
    """What closes a section that has an opener: the first token after the calls, unless it ends the turn."""
    if not section_open.strip():
        return ""
    stripped = rest.lstrip()
    first = markup.first(stripped)
    if first is not None and first.start == 0:
        return "" if first.text in turn_ends else first.text
    opener = markup.first(section_open.strip())
    lead = section_open.strip()[:opener.start] if opener is not None else ""
    if first is not None and lead.strip() and stripped[:first.start] == lead:  # the opener's lead before a token
        return "" if first.text in turn_ends else stripped[:first.end]  # (`]<]minimax[>[</tool_call>`)
    word = stripped.split(None, 1)[0] if stripped else ""
    if word and not word[0].isalnum() and markup.first(word) is None:
        return word  # a plain-text closer, such as a code fence
    return ""


def _snap_suffix(text: str, n: int, markup: Markup) -> int:
    """Shorten a suffix of length n so that it does not start inside a token."""
    start = len(text) - n
    for span in markup.spans(text):
        if span.start < start < span.end:
            return len(text) - span.end
    return n


def _snap_prefix(text: str, n: int, markup: Markup) -> int:
    """Shorten a prefix of length n so that it does not end inside a token."""
    for span in markup.spans(text):
        if span.start < n < span.end:
            return span.start
    return n


def _generalize(a: str, b: str | None) -> Pattern:
    """A pattern for text that may differ between two calls: ids become ID, differing digits INDEX, other
    differences ANY."""
    a = a.replace(ID_A, ID).replace(ID_B, ID)
    if b is None:
        return _split_holes(a)
    b = b.replace(ID_A, ID).replace(ID_B, ID)
    if a == b:
        return _split_holes(a)
    p = common_prefix(a, b)
    s = common_suffix(a[p:], b[p:])
    while p and a[p - 1].isdigit():
        p -= 1
    ma, mb = a[p:len(a) - s], b[p:len(b) - s]
    hole = INDEX if ma.isdigit() and mb.isdigit() else ANY
    return (*_split_holes(a[:p]), hole, *_split_holes(a[len(a) - s:]))


def _generalize_many(texts: list[str]) -> Pattern:
    for other in texts[1:]:
        if other != texts[0]:
            return _generalize(texts[0], other)
    return _split_holes(texts[0])


def _split_holes(text: str) -> Pattern:
    """A literal as a pattern, with the probe's call ids turned into ID holes (and a KEY placeholder into KEY)."""
    text = text.replace(ID_A, ID).replace(ID_B, ID)
    return tuple(piece for piece in re.split(f"({ID}|{KEY})", text) if piece)


def _with_id(pattern: Pattern) -> Pattern:
    out: list[str] = []
    for part in pattern:
        out.extend(_split_holes(part) if part not in HOLES else (part,))
    return tuple(out)


def _value_opener(text: str) -> str:
    """The value-carrying opener a call's name follows (`<function=`, `<invoke name="`), which some models write
    without the section or call opener before it."""
    stripped = text.rstrip()
    for opener in ("<", "["):
        i = stripped.rfind(opener)
        if i >= 0 and ">" not in stripped[i:] and "]" not in stripped[i:]:
            return stripped[i:]
    return ""


def _triggers(literals: list[str], markup: Markup, turn_ends: set[str] = frozenset()) -> tuple[str, ...]:
    """Distinctive literals that start calls in a model's output: the first token of each opener, a value-carrying
    tag opener, or a multi-line plain-text opener (`Action:\\n```json`). An opener whose first token also ends the
    turn (GigaChat3 writes a call as a new message, `<|message_sep|>\\n\\nfunction call<|role_sep|>`) is a trigger
    as a whole: the token alone still ends the turn."""
    out: list[str] = []
    for lit in literals:
        stripped = lit.strip()
        if not stripped or stripped[0] in ">])}" and not re.match(r"[>\])}][<\[]", stripped):
            continue  # never from the middle of a tag (`]<]minimax[>[<tool_call>` is a token run of its own)
        first = markup.first(stripped)
        if first is not None and not stripped[:first.start].strip() and first.text in turn_ends:
            if stripped != first.text:
                out.append(stripped)
        elif first is not None and not stripped[:first.start].strip():
            name = re.match(r"[A-Za-z_][\w\-]*", stripped[first.end:])
            tagged = first.text + name.group() if name else ""
            generic = any(t.startswith(first.text) and not t.startswith(tagged) for t in markup.tokens if t != first.text)
            # a token that opens other tags too (Kimi-K3's <|open|>think<|sep|>) triggers a call only with its name
            out.append(tagged if name and generic else first.text)
        elif markup.is_markup(stripped) and "\n" not in stripped:
            out.append(stripped)
        elif "\n" in stripped and len(stripped) >= 6:
            out.append(stripped)
    return tuple(dict.fromkeys(out))


# --------------------------------------------------------------------------------------------- self-check
def _self_check(syntax: CallSyntax, one: str, two: str | None,
                expected: list[tuple[str, dict[str, Any]]] | None = None) -> str | None:
    """Parse the probe sections with the reader's parser: None when they read back exactly, else why not."""
    from ..reader.call_parse import CallParser, ToolParseError, parameter_schemas

    parser = CallParser(syntax, parameter_schemas(TOOLS))
    cases = [(one, expected or [(NAME_A, ARGS_A)])]
    if two is not None:
        cases.append((two, [(NAME_A, ARGS_A), (NAME_B, ARGS_B)]))
    for text, expected in cases:
        try:
            got = [(c.name, c.arguments) for c in parser.parse(text)]
        except ToolParseError as exc:
            return str(exc)
        if got != expected:
            return f"read {got!r} from {text!r}"
    return None
